//! kaniko-builder: build container images on Kubernetes with the kaniko executor.
//!
//! This facade re-exports the layered crates, as `kube` does: [`core`] (types, no IO),
//! [`registry`] (the OCI distribution client side) and [`k8s`].

#[doc(inline)]
pub use kaniko_builder_core::{Digest, ImageRef, Manifest, Probe};

pub use kaniko_builder_core as core;
pub use kaniko_builder_k8s as k8s;
pub use kaniko_builder_registry as registry;
