//! kaniko-builder: build container images on Kubernetes with the kaniko executor, without a
//! Docker daemon — and only when the tag is not in the registry yet.
//!
//! This facade re-exports the layered crates, as `kube` does: [`core`] (types and the decision
//! flow, no IO), [`registry`] (the OCI distribution client side) and [`k8s`] (manifests and the
//! Job runner). The headline types are lifted to the root.
//!
//! # Quick start
//!
//! ```no_run
//! use kaniko_builder::{Build, BuildConfig, BuildOutcome, ContextSource};
//!
//! # async fn demo() -> Result<(), kaniko_builder::Error> {
//! let config = BuildConfig::builder("registry.local:5000/team/app:v1".parse()?)
//!     .context(ContextSource::LocalDir("./app".into()))
//!     .build()?;
//! match Build::new(config).run().await? {
//!     BuildOutcome::Skipped { digest, .. } => println!("exists as {digest}"),
//!     outcome => println!("built {}", outcome.digest()),
//! }
//! # Ok(()) }
//! ```
//!
//! [`Build::run`] probes the registry, and when the tag is absent (or the build forced) runs a
//! kaniko Job through the cluster found in the usual places (kubeconfig or in-cluster), follows
//! it, and verifies the pushed digest. [`Build::events`] streams the steps and the build log;
//! [`Build::plan`] returns the decision and the objects a run would apply, touching nothing.
//! [`BuildSet`] builds many images; [`content_tag`] names an image after its inputs.
//!
//! # Errors
//! Everything returns the facade's [`Error`]: a build that ran and failed is
//! [`Error::Build`], whose [`FailureReason`] says what went wrong; the predicates
//! ([`Error::is_unauthorized`], [`Error::is_retryable`], ...) answer the usual questions.

mod build;
mod content_tag;
mod error;
mod preflight;
mod set;

pub use build::{Build, EVENT_LOG_CAPACITY, Plan};
pub use content_tag::{CONTENT_TAG_PREFIX, content_tag};
pub use error::{Error, Result};
pub use set::{BuildSet, DEFAULT_CONCURRENCY, SetEvent, SetEventStream, SetResult};

#[doc(inline)]
pub use kaniko_builder_core::flow::{
    BuildEvent, BuildFailure, BuildOutcome, BuildReason, CancellationToken, Decision, EventSink, EventStream,
    FailureReason, PlatformImage, PlatformResult, SkippedBy,
};
#[doc(inline)]
pub use kaniko_builder_core::{
    BuildConfig, BuildConfigBuilder, ContextSource, Digest, ImageRef, Manifest, Platform, Probe,
};
#[doc(inline)]
pub use kaniko_builder_k8s::{BuildManifests, CleanupPolicy, JobOptions, UploadMethod};
#[doc(inline)]
pub use kaniko_builder_registry::{DockerConfig, RegistryClient};

pub use kaniko_builder_context as context;
pub use kaniko_builder_core as core;
pub use kaniko_builder_k8s as k8s;
pub use kaniko_builder_registry as registry;

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        send_sync::<crate::Build>();
        send_sync::<crate::BuildSet>();
        send_sync::<crate::Plan>();
        send_sync::<crate::Error>();
        send_sync::<crate::BuildOutcome>();
        send_sync::<crate::BuildEvent>();
        send_sync::<crate::EventStream>();
        send_sync::<crate::SetEvent>();
        send_sync::<crate::SetEventStream>();
        send_sync::<crate::registry::RegistryClient>();
        send_sync::<crate::registry::Error>();
        send_sync::<crate::core::Error>();
        send_sync::<crate::ImageRef>();
        send_sync::<crate::Probe>();
    }

    /// The Secret gets only the destination registry's entry; nothing secret shows in `Debug`.
    #[tokio::test]
    async fn the_secret_holds_only_the_destination_and_debug_redacts() {
        use base64::Engine as _;
        let auth = |u: &str, p: &str| base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        let json = serde_json::json!({ "auths": {
            "registry.local:5000": { "auth": auth("me", "dest-pa55") },
            "other.example": { "auth": auth("them", "other-pa55") },
        }})
        .to_string();
        let docker = crate::DockerConfig::from_json(&json).expect("config");
        let registry = crate::RegistryClient::builder()
            .docker_config(docker.clone())
            .build()
            .expect("client");
        let config = crate::BuildConfig::builder("registry.local:5000/team/app:v1".parse().expect("image"))
            .build()
            .expect("config");
        let secret = registry
            .secret_docker_config(config.destinations())
            .await
            .expect("resolved")
            .expect("an entry");
        let secret: serde_json::Value = serde_json::from_slice(&secret).expect("json");
        let keys: Vec<&String> = secret["auths"].as_object().expect("auths").keys().collect();
        assert_eq!(keys, ["registry.local:5000"]);
        assert_eq!(
            secret["auths"]["registry.local:5000"]["auth"],
            auth("me", "dest-pa55")
        );

        let build = crate::Build::new(config)
            .docker_config(docker)
            .registry_client(registry);
        let debug = format!("{build:?}");
        for secret in ["dest-pa55", "other-pa55", &auth("me", "dest-pa55")] {
            assert!(!debug.contains(secret), "Debug leaks {secret}: {debug}");
        }

        let anonymous = crate::BuildConfig::builder("elsewhere.example/app:v1".parse().expect("image"))
            .build()
            .expect("config");
        let none = crate::RegistryClient::builder()
            .build()
            .expect("client")
            .secret_docker_config(anonymous.destinations())
            .await
            .expect("resolved");
        assert!(none.is_none());
    }

    /// Futures of `run` (and of `probe_many`, which `BuildSet::run` awaits) are `Send`, so they
    /// can be spawned.
    #[allow(dead_code)]
    fn futures_are_send(
        b: crate::Build,
        s: crate::BuildSet,
        r: &crate::RegistryClient,
        i: &[crate::ImageRef],
    ) {
        fn send<T: Send>(_: T) {}
        send(b.run());
        send(s.run());
        send(r.probe_many(i));
    }
}
