//! Job options by reference: an `ImageBuild`'s `spec.jobOptionsRef` names a ConfigMap of its
//! namespace whose keys adjust the controller's [`JobOptions`] for that build. Values are YAML
//! (so JSON too); an unknown key is an error, so a typo is not silently ignored.
//!
//! | key | value |
//! |---|---|
//! | `executorImage`, `initImage` | an image reference |
//! | `serviceAccountName` | the build Pod's ServiceAccount (default `kaniko-builder`) |
//! | `activeDeadlineSeconds`, `ttlSecondsAfterFinished` | seconds |
//! | `nodeSelector`, `labels`, `annotations` | a map of strings |
//! | `tolerations` | a list of `Toleration`s |
//! | `executorResources`, `initResources` | a `ResourceRequirements` |
//! | `imagePullSecrets` | a list of Secret names |
//!
//! ```yaml
//! apiVersion: v1
//! kind: ConfigMap
//! metadata: { name: big-builds }
//! data:
//!   activeDeadlineSeconds: "3600"
//!   nodeSelector: '{"kubernetes.io/arch": "amd64"}'
//!   executorResources: |
//!     requests: { cpu: "2", memory: 4Gi }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ResourceRequirements, Toleration};
use kaniko_builder::JobOptions;
use serde::de::DeserializeOwned;

use crate::spec::InvalidSpec;

/// The keys a job options ConfigMap may hold.
pub const KEYS: &[&str] = &[
    "executorImage",
    "initImage",
    "serviceAccountName",
    "activeDeadlineSeconds",
    "ttlSecondsAfterFinished",
    "nodeSelector",
    "labels",
    "annotations",
    "tolerations",
    "executorResources",
    "initResources",
    "imagePullSecrets",
];

/// `base` adjusted by the ConfigMap's keys.
///
/// # Errors
/// [`InvalidSpec`] naming `spec.jobOptionsRef` with the ConfigMap and the key at fault: an
/// unknown key, or a value that does not parse.
pub fn apply(base: JobOptions, config_map: &ConfigMap) -> Result<JobOptions, InvalidSpec> {
    let name = config_map.metadata.name.as_deref().unwrap_or_default();
    let mut options = base;
    for (key, value) in config_map.data.iter().flatten() {
        let fail = |problem: String| InvalidSpec {
            field: "spec.jobOptionsRef".to_owned(),
            problem: format!("ConfigMap {name:?}, key {key:?}: {problem}"),
        };
        options = apply_key(options, key, value).map_err(fail)?;
    }
    Ok(options)
}

fn apply_key(options: JobOptions, key: &str, value: &str) -> Result<JobOptions, String> {
    Ok(match key {
        "executorImage" => options.executor_image(value.trim()),
        "initImage" => options.init_image(value.trim()),
        "serviceAccountName" => options.service_account_name(value.trim()),
        "activeDeadlineSeconds" => options.active_deadline(seconds(value)?),
        "ttlSecondsAfterFinished" => options.ttl_after_finished(seconds(value)?),
        "nodeSelector" => parse::<BTreeMap<String, String>>(value)?
            .into_iter()
            .fold(options, |o, (k, v)| o.node_selector(k, v)),
        "labels" => parse::<BTreeMap<String, String>>(value)?
            .into_iter()
            .fold(options, |o, (k, v)| o.label(k, v)),
        "annotations" => parse::<BTreeMap<String, String>>(value)?
            .into_iter()
            .fold(options, |o, (k, v)| o.annotation(k, v)),
        "tolerations" => parse::<Vec<Toleration>>(value)?
            .into_iter()
            .fold(options, JobOptions::toleration),
        "executorResources" => options.executor_resources(parse::<ResourceRequirements>(value)?),
        "initResources" => options.init_resources(parse::<ResourceRequirements>(value)?),
        "imagePullSecrets" => parse::<Vec<String>>(value)?
            .into_iter()
            .fold(options, JobOptions::image_pull_secret),
        other => return Err(format!("unknown key {other:?}; known keys: {}", KEYS.join(", "))),
    })
}

fn seconds(value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("{value:?} is not a number of seconds: {e}"))
}

fn parse<T: DeserializeOwned>(value: &str) -> Result<T, String> {
    serde_saphyr::from_str(value).map_err(|e| format!("cannot parse {value:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_map(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("opts".to_owned()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn every_key_is_applied() {
        let cm = config_map(&[
            ("executorImage", "mirror.local/kaniko:v1"),
            ("initImage", "mirror.local/crane:v1"),
            ("serviceAccountName", "builder"),
            ("activeDeadlineSeconds", "3600"),
            ("ttlSecondsAfterFinished", "60"),
            ("nodeSelector", r#"{"kubernetes.io/arch": "arm64"}"#),
            ("labels", "team: a"),
            ("annotations", "note: b"),
            (
                "tolerations",
                "- { key: builds, operator: Exists, effect: NoSchedule }",
            ),
            ("executorResources", "requests: { cpu: '2', memory: 4Gi }"),
            ("initResources", "limits: { cpu: 100m }"),
            ("imagePullSecrets", "[pull-a, pull-b]"),
        ]);
        let options = apply(JobOptions::default(), &cm).expect("valid");
        let debug = format!("{options:?}");
        for expected in [
            "mirror.local/kaniko:v1",
            "mirror.local/crane:v1",
            "\"builder\"",
            "3600s",
            "60s",
            "arm64",
            "\"team\": \"a\"",
            "\"note\": \"b\"",
            "NoSchedule",
            "4Gi",
            "100m",
            "pull-b",
        ] {
            assert!(debug.contains(expected), "{expected} missing from {debug}");
        }
    }

    #[test]
    fn an_unknown_key_or_bad_value_names_the_key() {
        let e = apply(JobOptions::default(), &config_map(&[("executorimage", "x")])).expect_err("typo");
        assert_eq!(e.field, "spec.jobOptionsRef");
        assert!(
            e.problem.contains("\"opts\"") && e.problem.contains("\"executorimage\""),
            "{e}"
        );
        let e = apply(
            JobOptions::default(),
            &config_map(&[("activeDeadlineSeconds", "1h")]),
        )
        .expect_err("bad");
        assert!(e.problem.contains("activeDeadlineSeconds"), "{e}");
        let e = apply(JobOptions::default(), &config_map(&[("nodeSelector", "[1, 2]")])).expect_err("bad");
        assert!(e.problem.contains("nodeSelector"), "{e}");
    }

    /// `kubectl explain imagebuild.spec.jobOptionsRef` lists the keys: the schema's copy
    /// must not drift from [`KEYS`].
    #[test]
    fn the_schema_lists_every_key() {
        use kube::CustomResourceExt as _;
        let crd = serde_json::to_value(crate::ImageBuild::crd()).expect("serialize");
        let description = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["jobOptionsRef"]["description"]
            .as_str()
            .expect("jobOptionsRef has a description")
            .to_owned();
        for key in KEYS {
            assert!(description.contains(key), "{key} missing from {description:?}");
        }
    }
}
