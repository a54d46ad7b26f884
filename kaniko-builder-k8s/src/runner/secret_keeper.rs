//! The per-credentials Secret, kept while the build's Pod needs it.
//!
//! A Secret shared by the Jobs of one set of credentials is deleted by the garbage collector
//! with its last owner. When that owner goes at the moment a new Job adds itself, a collector
//! that deletes with a uid precondition only (as 1.20's does) may delete the Secret anyway: the
//! new Pod then cannot mount it. The kubelet says so in a `FailedMount` Event on the Pod
//! (`MountVolume.SetUp failed for volume "…" : secret "…" not found`) and retries the mount; on
//! that Event this makes the Secret again, owned by the Job, and the next attempt mounts it.
//! Event-driven: one watch of the namespace's `FailedMount` Events, nothing polled.

use std::convert::Infallible;
use std::pin::pin;

use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Event;
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event as WatchEvent};

use crate::apply::{self, ApplyParams};
use crate::manifest::BuildManifests;

/// Watches for the kubelet's report that a Pod of `job` cannot mount the build's
/// per-credentials Secret, and makes it again each time. Never returns: dropped when the run
/// stops following the Job. Nothing to keep (a shared Secret by name, or a Job mounting
/// another Secret): waits forever without a request.
pub(super) async fn keep(
    client: &kube::Client,
    manifests: &BuildManifests,
    job: &Job,
    params: &ApplyParams,
) -> Infallible {
    let Some(secret) = manifests
        .secret
        .as_ref()
        .filter(|_| manifests.secret_per_credentials())
        .map(kube::ResourceExt::name_any)
        .filter(|name| super::mounts_secret(job, name))
    else {
        return std::future::pending().await;
    };
    let (job_name, uid) = (job.name_any(), job.uid().unwrap_or_default());
    let events: Api<Event> = Api::namespaced(client.clone(), manifests.namespace_name());
    let config = watcher::Config::default().fields("involvedObject.kind=Pod,reason=FailedMount");
    let mut stream = pin!(watcher::watcher(events, config).default_backoff());
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(WatchEvent::Apply(e) | WatchEvent::InitApply(e)) => e,
            Ok(_) => continue,
            // The watcher backs off and tries again by itself.
            Err(e) => {
                tracing::debug!(error = %e, "watching FailedMount events");
                continue;
            }
        };
        if !names_missing_secret(&event, &job_name, &secret) {
            continue;
        }
        tracing::warn!(job = %job_name, %secret, "the build's Secret is gone while its Pod needs it; making it again");
        if let Err(e) = apply::own_secret(client, manifests, &job_name, &uid, params).await {
            tracing::warn!(job = %job_name, %secret, error = %e, "cannot make the Secret again");
        }
    }
    std::future::pending().await
}

/// Whether `event` says a Pod of Job `job` cannot mount Secret `secret` because it is missing.
fn names_missing_secret(event: &Event, job: &str, secret: &str) -> bool {
    let pod_of_job = event
        .involved_object
        .name
        .as_deref()
        .and_then(|pod| pod.strip_prefix(job))
        .is_some_and(|rest| rest.starts_with('-'));
    let needle = format!("secret \"{secret}\" not found");
    pod_of_job && event.message.as_deref().is_some_and(|m| m.contains(&needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;

    fn event(pod: &str, message: &str) -> Event {
        Event {
            involved_object: ObjectReference {
                kind: Some("Pod".to_owned()),
                name: Some(pod.to_owned()),
                ..ObjectReference::default()
            },
            message: Some(message.to_owned()),
            ..Event::default()
        }
    }

    /// The kubelet's message (pkg/volume/util/operationexecutor/operation_generator.go and the
    /// secret volume plugin), for this Job's Pods only.
    #[test]
    fn only_this_jobs_pods_missing_this_secret() {
        let missing = r#"MountVolume.SetUp failed for volume "docker-config" : secret "kb-docker-config-0ff1" not found"#;
        assert!(names_missing_secret(
            &event("kb-app-v1-abc-x7k2p", missing),
            "kb-app-v1-abc",
            "kb-docker-config-0ff1"
        ));
        assert!(!names_missing_secret(
            &event("kb-app-v1-abcd-x7k2p", missing),
            "kb-app-v1-abc",
            "kb-docker-config-0ff1"
        ));
        assert!(!names_missing_secret(
            &event("kb-app-v1-abc-x7k2p", missing),
            "kb-app-v1-abc",
            "kb-docker-config-0ff"
        ));
        let other = r#"MountVolume.SetUp failed for volume "context" : configmap "kb-app-v1-abc" not found"#;
        assert!(!names_missing_secret(
            &event("kb-app-v1-abc-x7k2p", other),
            "kb-app-v1-abc",
            "kb-docker-config-0ff1"
        ));
    }
}
