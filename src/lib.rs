//! kaniko-builder: build container images on Kubernetes with the kaniko executor, without a
//! Docker daemon.
//!
//! This facade re-exports the layered crates, as `kube` does: [`core`] (types, no IO),
//! [`registry`] (the OCI distribution client side) and [`k8s`] (manifests and their execution).
//! The headline types are lifted to the root.
//!
//! The flow starts with one question, answered by [`registry::RegistryClient::probe`]: does the
//! target tag already exist?
//!
//! ```no_run
//! use kaniko_builder::registry::{DockerConfig, RegistryClient};
//! use kaniko_builder::{ImageRef, Probe};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = RegistryClient::builder()
//!     .docker_config(DockerConfig::load_default()?)
//!     .build()?;
//! let image: ImageRef = "ghcr.io/acme/app:v1".parse()?;
//! match client.probe(&image).await? {
//!     Probe::Exists(m) => println!("{image} exists as {}: nothing to build", m.digest),
//!     _ => println!("{image} is absent: build it"),
//! }
//! # Ok(()) }
//! ```

#[doc(inline)]
pub use kaniko_builder_core::{
    BuildConfig, BuildConfigBuilder, ContextSource, Digest, ImageRef, Manifest, Probe,
};
#[doc(inline)]
pub use kaniko_builder_k8s::{BuildManifests, JobOptions};

pub use kaniko_builder_core as core;
pub use kaniko_builder_k8s as k8s;
pub use kaniko_builder_registry as registry;

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        send_sync::<crate::registry::RegistryClient>();
        send_sync::<crate::registry::Error>();
        send_sync::<crate::core::Error>();
        send_sync::<crate::ImageRef>();
        send_sync::<crate::Probe>();
    }
}
