//! A running build's steps, told to people: Kubernetes Events on the `ImageBuild`
//! (`kubectl describe`), the Job reference in its status as soon as there is a Job, and the last
//! log lines for the status of a failed build.

use std::collections::VecDeque;

use futures::StreamExt as _;
use kaniko_builder::{BuildEvent, EventStream};
use kube::Resource as _;
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder};
use serde_json::json;

use crate::crd::ImageBuild;
use crate::status;

/// A Normal event on `build`; a failure to publish is logged, never fatal.
pub(crate) async fn publish(
    recorder: &Recorder,
    build: &ImageBuild,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate(note, 1000)),
        action: reason.to_owned(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &build.object_ref(&())).await {
        tracing::warn!(imagebuild = %status::key(build), reason, error = %e, "cannot publish an event");
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Follows the build's events until the stream ends (the build finished); returns the last
/// `tail` log lines of the executor.
pub(crate) async fn follow(
    mut events: EventStream,
    recorder: &Recorder,
    api: &Api<ImageBuild>,
    build: &ImageBuild,
    tail: usize,
) -> Vec<String> {
    let mut lines = VecDeque::with_capacity(tail);
    while let Some(event) = events.next().await {
        let step = match &event {
            BuildEvent::Platform { step, .. } => step.as_ref(),
            other => other,
        };
        if let BuildEvent::Log { line, .. } = step {
            if tail > 0 {
                if lines.len() == tail {
                    lines.pop_front();
                }
                lines.push_back(line.clone());
            }
            continue;
        }
        if let BuildEvent::Queued { job, namespace } | BuildEvent::Attached { job, namespace } = step {
            let attached = matches!(step, BuildEvent::Attached { .. });
            tracing::info!(imagebuild = %status::key(build), job = %format!("{namespace}/{job}"), attached, "following the build's Job");
            let patch = json!({ "status": { "jobRef": status::job_ref(namespace, job) } });
            if let Err(e) = status::write(api, build, &patch).await {
                tracing::warn!(imagebuild = %status::key(build), error = %e, "cannot record the Job");
            }
        }
        if let Some((reason, note)) = describe(&event) {
            publish(recorder, build, EventType::Normal, reason, note).await;
        }
    }
    lines.into()
}

/// The event (reason, note) a step gets, if it gets one: the steps a person follows, not every
/// log line or progress tick.
fn describe(event: &BuildEvent) -> Option<(&'static str, String)> {
    let (platform, step) = match event {
        BuildEvent::Platform { platform, step } => (format!(" ({platform})"), step.as_ref()),
        other => (String::new(), other),
    };
    let (reason, note) = match step {
        BuildEvent::Probed { exists: false, .. } => {
            ("Probed", "the tag is not in the registry: building".to_owned())
        }
        BuildEvent::Probed { exists: true, digest } => (
            "Probed",
            format!(
                "the tag is in the registry as {}",
                digest.as_ref().map(ToString::to_string).unwrap_or_default()
            ),
        ),
        BuildEvent::Queued { job, namespace } => ("JobCreated", format!("created Job {namespace}/{job}")),
        BuildEvent::Attached { job, namespace } => (
            "JobAttached",
            format!("following the running Job {namespace}/{job}"),
        ),
        BuildEvent::Scheduled { node } => ("Scheduled", format!("the build Pod runs on node {node}")),
        BuildEvent::InitCheck { decision } => {
            ("InitCheck", format!("the in-cluster check decided: {decision:?}"))
        }
        BuildEvent::Building => ("Building", "kaniko started".to_owned()),
        BuildEvent::Pushed { digest } => ("Pushed", format!("kaniko pushed {digest}")),
        BuildEvent::Verified { digest } => {
            ("Verified", format!("the registry serves {digest} under the tag"))
        }
        BuildEvent::IndexPushed { digest, .. } => ("IndexPushed", format!("pushed the image index {digest}")),
        BuildEvent::NodeNotReady { message, .. } => ("NodeNotReady", message.clone()),
        _ => return None,
    };
    Some((reason, format!("{note}{platform}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaniko_builder::Digest;

    #[test]
    fn steps_get_events_and_log_lines_do_not() {
        let digest = Digest::sha256(b"m");
        let queued = BuildEvent::Queued {
            job: "kb-app".into(),
            namespace: "builds".into(),
        };
        assert_eq!(
            describe(&queued),
            Some(("JobCreated", "created Job builds/kb-app".to_owned()))
        );
        let pushed = BuildEvent::Platform {
            platform: "linux/arm64".parse().expect("platform"),
            step: Box::new(BuildEvent::Pushed {
                digest: digest.clone(),
            }),
        };
        assert_eq!(
            describe(&pushed),
            Some(("Pushed", format!("kaniko pushed {digest} (linux/arm64)")))
        );
        let log = BuildEvent::Log {
            container: "image-builder".into(),
            line: "STEP 1".into(),
        };
        assert_eq!(describe(&log), None);
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        let s = "é".repeat(600);
        let cut = truncate(s, 1000);
        assert_eq!(cut.len(), 1000);
        assert!(truncate("short".to_owned(), 1000) == "short");
    }
}
