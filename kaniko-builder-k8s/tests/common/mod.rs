//! The main configurations the golden and schema tests render.
#![allow(dead_code, unreachable_pub)] // each test binary uses part of this module

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kaniko_builder_core::config::{CacheConfig, ContextSource, SnapshotMode, Verbosity};
use kaniko_builder_core::{BuildConfig, ImageRef, Platform};
use kaniko_builder_k8s::manifest::{self, BuildManifests, JobOptions, Orchestrator};

/// A password no rendered object may contain outside the Secret.
pub const PASSWORD: &str = "Sup3r-S3cret-Golden-9f2c";
pub const USER: &str = "ci-bot";

/// A docker `config.json` with [`PASSWORD`] both as a field and inside `auth`.
pub fn docker_config_json() -> Vec<u8> {
    let auth = STANDARD.encode(format!("{USER}:{PASSWORD}"));
    format!(
        r#"{{"auths":{{"registry.local:5000":{{"auth":"{auth}"}},"https://index.docker.io/v1/":{{"username":"{USER}","password":"{PASSWORD}"}}}}}}"#
    )
    .into_bytes()
}

/// Every encoding of the credential that must stay inside the Secret.
pub fn secret_needles() -> Vec<String> {
    vec![
        PASSWORD.to_owned(),
        STANDARD.encode(format!("{USER}:{PASSWORD}")),
        STANDARD.encode(docker_config_json()),
    ]
}

fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).expect("test image parses")
}

/// A named configuration: the build, how it runs, and whether credentials are rendered.
pub struct Case {
    pub name: &'static str,
    pub config: BuildConfig,
    pub options: JobOptions,
    pub credentials: bool,
}

impl Case {
    pub fn render(&self) -> BuildManifests {
        let json = docker_config_json();
        manifest::render(
            &self.config,
            &self.options,
            self.credentials.then_some(json.as_slice()),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

pub fn cases() -> Vec<Case> {
    let quantity = |s: &str| Quantity(s.to_owned());
    vec![
        Case {
            name: "seed_hostpath",
            config: BuildConfig::builder(image("example:v1.0.0"))
                .dockerfile("example.dockerfile")
                .force(true)
                .build()
                .expect("valid"),
            options: JobOptions::default().seed_compatible(true),
            credentials: true,
        },
        Case {
            name: "pvc_build_args_cache",
            config: BuildConfig::builder(image("registry.local:5000/team/app:v2.1.0"))
                .destinations([
                    image("registry.local:5000/team/app:latest"),
                    image("mirror.example.com/team/app:v2.1.0"),
                ])
                .context(ContextSource::Pvc {
                    claim: "sources".into(),
                    sub_path: Some("services/app".into()),
                })
                .dockerfile("docker/Dockerfile")
                .namespace("builds")
                .build_arg("VERSION", "2.1.0")
                .build_arg("GREETING", "hello, world: yes")
                .target("runtime")
                .label(
                    "org.opencontainers.image.source",
                    "https://git.example.com/team/app",
                )
                .cache(CacheConfig {
                    repo: Some("registry.local:5000/team/cache".into()),
                    ttl: Some(Duration::from_secs(24 * 3600)),
                })
                .insecure_registry("registry.local:5000")
                .registry_mirror("mirror.gcr.io")
                .snapshot_mode(SnapshotMode::Redo)
                .reproducible(true)
                .push_retry(3)
                .verbosity(Verbosity::Debug)
                .build()
                .expect("valid"),
            options: JobOptions::default()
                .node_selector("kubernetes.io/arch", "amd64")
                .toleration(Toleration {
                    key: Some("dedicated".into()),
                    operator: Some("Equal".into()),
                    value: Some("builds".into()),
                    effect: Some("NoSchedule".into()),
                    ..Toleration::default()
                })
                .executor_resources(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".to_owned(), quantity("1")),
                        ("memory".to_owned(), quantity("2Gi")),
                    ])),
                    limits: Some(BTreeMap::from([("memory".to_owned(), quantity("8Gi"))])),
                    ..ResourceRequirements::default()
                })
                .image_pull_secret("ghcr-pull")
                .label("team", "platform")
                .annotation("example.com/owner", "platform@example.com")
                .active_deadline(Duration::from_secs(3600))
                .ttl_after_finished(Duration::from_secs(600)),
            credentials: true,
        },
        Case {
            name: "upload",
            config: BuildConfig::builder(image("registry.local:5000/team/web:dev"))
                .context(ContextSource::LocalDir(PathBuf::from("./web")))
                .insecure_registry("registry.local:5000")
                .build()
                .expect("valid"),
            options: JobOptions::default().exec_upload(true),
            credentials: false,
        },
        Case {
            name: "git",
            config: BuildConfig::builder(image("ghcr.io/example/tool:1.4.0"))
                .context(ContextSource::Git {
                    url: "http://git.local:3000/example/tool.git".into(),
                    reference: Some("refs/tags/v1.4.0".into()),
                    sub_path: Some("cmd/tool".into()),
                })
                .build()
                .expect("valid"),
            options: JobOptions::default().orchestrator(Some(Orchestrator::Group("ci-builders".into()))),
            credentials: true,
        },
        Case {
            name: "url",
            config: BuildConfig::builder(image("registry.local:5000/team/batch:nightly"))
                .context(ContextSource::Url("s3://build-contexts/team/batch.tar.gz".into()))
                .build()
                .expect("valid"),
            options: JobOptions::default()
                .service_account_name("s3-reader")
                .orchestrator(Some(Orchestrator::ExternalServiceAccount {
                    namespace: "ci".into(),
                    name: "dispatcher".into(),
                })),
            credentials: true,
        },
        Case {
            name: "platform_arm64",
            // One platform's Job of a two-platform build: no tag pushed, crane pushes by digest.
            config: BuildConfig::builder(image("registry.local:5000/team/app:v3.0.0"))
                .destination(image("ghcr.io/acme/app:v3.0.0"))
                .context(ContextSource::Pvc {
                    claim: "sources".into(),
                    sub_path: Some("services/app".into()),
                })
                .insecure_registry("registry.local:5000")
                .cache(CacheConfig::default())
                .platforms([platform("linux/amd64"), platform("linux/arm64")])
                .build()
                .expect("valid")
                .for_platform(&platform("linux/arm64")),
            options: JobOptions::default()
                .node_selector("pool", "builds")
                .output_size_limit("20Gi"),
            credentials: true,
        },
    ]
}

fn platform(s: &str) -> Platform {
    s.parse().expect("test platform parses")
}

/// The golden fixture directory.
pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
}
