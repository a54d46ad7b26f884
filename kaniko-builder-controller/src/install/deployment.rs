//! The controller's Deployment: `run` under its ServiceAccount, locked down.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kaniko_builder::k8s::manifest::{LABEL_COMPONENT, LABEL_NAME};

use super::{COMPONENT_CONTROLLER, InstallOptions, NAME, labels, meta};

/// The controller container's name.
pub const CONTAINER: &str = "controller";
/// The user and group the controller runs as (distroless' `nonroot`).
pub const UID: i64 = 65532;

/// `run` with the options' flags; the Lease namespace and identity come from the environment.
fn args(options: &InstallOptions) -> Vec<String> {
    let mut args = vec![
        "run".to_owned(),
        "--concurrency".to_owned(),
        options.concurrency.to_string(),
    ];
    if let Some(ns) = &options.watch_namespace {
        args.extend(["--namespace".to_owned(), ns.clone()]);
    }
    for host in &options.insecure_registries {
        args.extend(["--insecure-registry".to_owned(), host.clone()]);
    }
    args
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn env() -> Vec<EnvVar> {
    vec![
        // The binary elects a leader through a Lease in POD_NAMESPACE, as POD_NAME.
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        EnvVar {
            name: "RUST_LOG".to_owned(),
            value: Some("info".to_owned()),
            ..EnvVar::default()
        },
    ]
}

fn quantities(items: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

fn container(options: &InstallOptions) -> Container {
    Container {
        name: CONTAINER.to_owned(),
        image: Some(options.image.clone()),
        args: Some(args(options)),
        env: Some(env()),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "50m"), ("memory", "64Mi")])),
            limits: Some(quantities(&[("memory", "512Mi")])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// The controller's Deployment in its namespace.
pub(super) fn deployment(options: &InstallOptions) -> Deployment {
    let selector = BTreeMap::from([
        (LABEL_NAME.to_owned(), NAME.to_owned()),
        (LABEL_COMPONENT.to_owned(), COMPONENT_CONTROLLER.to_owned()),
    ]);
    let pod = PodSpec {
        service_account_name: Some(NAME.to_owned()),
        // The controller calls the API server with this token.
        automount_service_account_token: Some(true),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(UID),
            run_as_group: Some(UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        containers: vec![container(options)],
        ..PodSpec::default()
    };
    Deployment {
        metadata: meta(NAME, Some(&options.namespace), COMPONENT_CONTROLLER),
        spec: Some(DeploymentSpec {
            replicas: Some(options.replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(COMPONENT_CONTROLLER)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}
