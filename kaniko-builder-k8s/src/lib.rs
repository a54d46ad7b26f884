//! Kubernetes side of kaniko-builder: [`manifest`] renders the typed objects of one build (pure,
//! no IO); [`seed`] reads the original tool's configuration from the environment or a ConfigMap.
//!
//! This library enables no `k8s-openapi` version feature: the final binary picks the Kubernetes
//! version (for example `k8s-openapi = { version = "0.29", features = ["v1_33"] }`).

pub mod apply;
pub mod client;
/// Build-context packing (the `kaniko-builder-context` crate), re-exported where the runner uses it.
pub use kaniko_builder_context as context;
pub mod error;
pub mod manifest;
pub mod preflight;
pub mod runner;
pub mod seed;

pub use error::{Error, Result};
pub use kaniko_builder_core as core;
pub use manifest::{BuildManifests, Decision, JobOptions, Orchestrator, render};
pub use runner::{CleanupPolicy, KubeRunner, KubeRunnerBuilder, Setup, UploadMethod};
