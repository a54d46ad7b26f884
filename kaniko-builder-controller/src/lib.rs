//! The `ImageBuild` custom resource and its controller, built on [`kaniko_builder`]: ask for an
//! image with `kubectl apply`, read the outcome in the object's status.
//!
//! ```yaml
//! apiVersion: kaniko-builder.io/v1alpha1
//! kind: ImageBuild
//! metadata: { name: app, namespace: builds }
//! spec:
//!   image: registry.example:5000/team/app:v1
//!   context: { git: { url: "https://git.example/team/app.git" } }
//! ```
//!
//! `kubectl wait --for=condition=Succeeded imagebuild/app` then returns once the image is in the
//! registry; `kubectl get imagebuilds` shows the image, the phase and the digest.
//!
//! The controller ([`run`]) probes the registry first and skips without a Job when the tag
//! exists, as [`kaniko_builder::Build::run`] does; otherwise it runs (or, after a restart,
//! attaches to) the build's Job, records the outcome in the status, and does this once per
//! generation of the spec. A finalizer cleans up a build whose object is deleted; builds run at
//! most [`ControllerOptions::concurrency`] at a time; a `coordination.k8s.io` Lease lets one
//! replica of several work. [`install`] renders the CRD and the least-privilege RBAC and
//! Deployment that run it.
//!
//! # Example
//! ```no_run
//! use kaniko_builder_controller::{ControllerOptions, run};
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let client = kube::Client::try_default().await?;
//! run(client, ControllerOptions::default().concurrency(4)).await?;
//! # Ok(()) }
//! ```

mod build;
mod cleanup;
mod context;
mod controller;
pub mod crd;
mod error;
pub mod install;
pub mod job_options;
mod leader;
mod options;
mod outcome;
mod prepare;
mod reconcile;
mod report;
mod spec;
mod status;

pub use controller::{run, run_until};
pub use crd::{ImageBuild, ImageBuildSpec, ImageBuildStatus, Phase};
pub use error::{Error, Result};
pub use options::{ControllerOptions, DEFAULT_CONCURRENCY, DEFAULT_LEASE_NAME};
pub use prepare::{ANNOTATION_IMAGEBUILD, LABEL_IMAGEBUILD_UID};
pub use spec::{InvalidSpec, build_config};
