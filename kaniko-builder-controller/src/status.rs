//! What the controller writes in an `ImageBuild`'s status: the phase, the `Succeeded` condition
//! and the build's facts, as merge patches of the status subresource.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::crd::{CONDITION_SUCCEEDED, Condition, ImageBuild, ImageBuildStatus, JobReference, Phase};
use crate::{Error, Result};

/// The field manager of the controller's writes.
pub(crate) const FIELD_MANAGER: &str = "kaniko-builder-controller";

/// One step of a generation's story: the phase and the `Succeeded` condition's reason and message.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) phase: Phase,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

impl Step {
    pub(crate) fn new(phase: Phase, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            phase,
            reason,
            message: message.into(),
        }
    }

    /// `True` once the image is in the registry, `False` on failure, `Unknown` meanwhile.
    fn condition_status(&self) -> &'static str {
        match self.phase {
            Phase::Succeeded | Phase::Skipped => "True",
            Phase::Failed => "False",
            Phase::Pending | Phase::Building => "Unknown",
        }
    }
}

/// The `Succeeded` condition for `step`, keeping the transition time when its status is unchanged.
pub(crate) fn condition(
    previous: Option<&ImageBuildStatus>,
    generation: Option<i64>,
    step: &Step,
) -> Condition {
    let status = step.condition_status();
    let last_transition_time = previous
        .and_then(|s| s.condition(CONDITION_SUCCEEDED))
        .filter(|c| c.status == status)
        .map_or_else(now, |c| c.last_transition_time.clone());
    Condition {
        type_: CONDITION_SUCCEEDED.to_owned(),
        status: status.to_owned(),
        reason: step.reason.to_owned(),
        message: step.message.clone(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// Now, as the API's `Time`.
pub(crate) fn now() -> Time {
    Time(Timestamp::now())
}

/// The status patch for `step` of `generation`: phase, condition, observed generation, plus the
/// `extra` fields (`digest`, `jobRef`, times…; `null` removes one).
pub(crate) fn patch(build: &ImageBuild, step: &Step, extra: Value) -> Value {
    let generation = build.metadata.generation;
    let condition = condition(build.status.as_ref(), generation, step);
    let mut status = json!({
        "phase": step.phase,
        "observedGeneration": generation,
        "conditions": [condition],
    });
    if let (Some(status), Value::Object(extra)) = (status.as_object_mut(), extra) {
        status.extend(extra);
    }
    json!({ "status": status })
}

/// Writes `patch` (from [`patch`] or a partial one) to the status subresource.
pub(crate) async fn write(api: &Api<ImageBuild>, build: &ImageBuild, patch: &Value) -> Result<ImageBuild> {
    let name = build.name_any();
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch_status(&name, &params, &Patch::Merge(patch))
        .await
        .map_err(|e| {
            Error::kube(
                format!(
                    "writing the status of ImageBuild {}/{name}",
                    build.namespace().unwrap_or_default()
                ),
                e,
            )
        })
}

/// The Job reference as the status holds it.
pub(crate) fn job_ref(namespace: &str, name: &str) -> Value {
    json!(JobReference {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

/// `namespace/name` of `build`, how logs and messages name it.
pub(crate) fn key(build: &ImageBuild) -> String {
    format!("{}/{}", build.namespace().unwrap_or_default(), build.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(status: Option<ImageBuildStatus>) -> ImageBuild {
        let spec = serde_json::from_value(json!({
            "image": "registry.local:5000/app:v1",
            "context": { "url": "https://example.com/ctx.tar.gz" },
        }))
        .expect("spec");
        let mut b = ImageBuild::new("app", spec);
        b.metadata.generation = Some(3);
        b.status = status;
        b
    }

    #[test]
    fn the_condition_keeps_its_transition_time_while_its_status_holds() {
        let pending = Step::new(Phase::Pending, "Pending", "waiting");
        let first = patch(&build(None), &pending, json!({}));
        let c: Condition =
            serde_json::from_value(first["status"]["conditions"][0].clone()).expect("condition");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.observed_generation),
            ("Unknown", "Pending", Some(3))
        );
        assert_eq!(first["status"]["phase"], "Pending");
        assert_eq!(first["status"]["observedGeneration"], 3);

        let old = Time(Timestamp::from_second(1_000_000).expect("time"));
        let previous = ImageBuildStatus {
            conditions: vec![Condition {
                last_transition_time: old.clone(),
                ..c
            }],
            ..ImageBuildStatus::default()
        };
        let building = Step::new(Phase::Building, "Building", "running");
        let kept = condition(Some(&previous), Some(3), &building);
        assert_eq!(kept.last_transition_time, old, "Unknown → Unknown keeps the time");
        let done = Step::new(Phase::Succeeded, "Built", "pushed");
        let moved = condition(Some(&previous), Some(3), &done);
        assert_eq!(moved.status, "True");
        assert_ne!(moved.last_transition_time, old, "Unknown → True is a transition");
    }

    #[test]
    fn extra_fields_join_the_status_and_null_removes_one() {
        let step = Step::new(Phase::Building, "Building", "running");
        let p = patch(
            &build(None),
            &step,
            json!({ "jobRef": job_ref("builds", "kb-app"), "digest": null }),
        );
        assert_eq!(
            p["status"]["jobRef"],
            json!({ "namespace": "builds", "name": "kb-app" })
        );
        assert!(p["status"]["digest"].is_null());
        assert!(p["status"].as_object().expect("object").contains_key("digest"));
    }
}
