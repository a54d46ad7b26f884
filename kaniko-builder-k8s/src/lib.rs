//! Kubernetes side of kaniko-builder. Manifest generation and the Job runner arrive with the
//! manifests and orchestration work; today this crate only re-exports the core types it will use.

pub use kaniko_builder_core as core;
