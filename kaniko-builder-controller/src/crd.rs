//! The `ImageBuild` custom resource: what to build (the spec) and what happened (the status).
//!
//! ```yaml
//! apiVersion: kaniko-builder.io/v1alpha1
//! kind: ImageBuild
//! metadata: { name: app, namespace: builds }
//! spec:
//!   image: registry.example:5000/team/app:v1
//!   context: { git: { url: "https://git.example/team/app.git", reference: refs/heads/main } }
//! ```

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of [`ImageBuild`].
pub const GROUP: &str = "kaniko-builder.io";
/// The API version of [`ImageBuild`].
pub const VERSION: &str = "v1alpha1";
/// The finalizer the controller puts on every `ImageBuild` it works on, so a running build is
/// cleaned up before the object goes.
pub const FINALIZER: &str = "kaniko-builder.io/cleanup";
/// The condition `kubectl wait --for=condition=Succeeded` waits for: `True` once the image is in
/// the registry (built or already there), `False` when the build failed, `Unknown` meanwhile.
pub const CONDITION_SUCCEEDED: &str = "Succeeded";
/// The Secret the Job mounts (and the controller reads to probe) when the spec names none: the
/// original tool's name.
pub const DEFAULT_REGISTRY_SECRET: &str = "docker-config-secret";

/// A container image to build with kaniko on this cluster, unless its tag already exists (or
/// `force`). One generation of the spec is built at most once; a new generation is decided
/// again.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kaniko-builder.io",
    version = "v1alpha1",
    kind = "ImageBuild",
    doc = "An image built with kaniko by a Job of this namespace and pushed to a registry; `kubectl wait --for=condition=Succeeded` waits for it.",
    plural = "imagebuilds",
    shortname = "ib",
    namespaced,
    status = "ImageBuildStatus",
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","jsonPath":".status.digest","priority":0}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Succeeded\")].reason","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ImageBuildSpec {
    /// The image to push, `registry/repository:tag` (Docker Hub when the registry is left out).
    pub image: String,
    /// Where kaniko finds the build context.
    pub context: BuildContext,
    /// The Dockerfile's path inside the context. Default: `Dockerfile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// `--build-arg` values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
    /// The Dockerfile stage to build (`--target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Labels set on the image (`--label`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Platforms (`linux/amd64`, `linux/arm64/v8`) for a multi-platform image under one index:
    /// one Job per platform, on a node of that platform. Empty: one image for the node's platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Build even when the tag exists (the original tool's `FORCE_BUILD=Y`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// The `kubernetes.io/dockerconfigjson` Secret of this namespace holding the registry
    /// credentials: the controller reads it to probe, the Job mounts it. Default:
    /// `docker-config-secret`. The controller may read only the Secret names it was installed
    /// with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_secret: Option<String>,
    /// A ConfigMap of this namespace with options for the build's Job (images, resources,
    /// scheduling, deadline). Keys: executorImage, initImage, serviceAccountName,
    /// activeDeadlineSeconds, ttlSecondsAfterFinished, nodeSelector, labels, annotations,
    /// tolerations, executorResources, initResources, imagePullSecrets; values are YAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_options_ref: Option<LocalObjectReference>,
}

/// Where kaniko finds the build context: exactly one of the fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum BuildContext {
    /// A git repository that kaniko clones itself.
    Git(GitContext),
    /// A tarball kaniko fetches itself: `s3://`, `gs://` or `https://`.
    Url(String),
    /// A PersistentVolumeClaim of this namespace.
    Pvc(PvcContext),
    /// A gzipped tar of the context that a client pushed as a blob of the image's repository
    /// (e.g. `kaniko_builder::context::pack_stream` then `RegistryClient::push_blob_stream`).
    Blob(BlobContext),
}

/// A git context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitContext {
    /// The repository's `https://` (or `http://`) URL, without credentials.
    pub url: String,
    /// A full ref (`refs/heads/main`, `refs/tags/v1`) or a 40-hex commit; the default branch
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// A directory inside the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// A PersistentVolumeClaim context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcContext {
    /// The claim's name.
    pub claim_name: String,
    /// A directory inside the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// A context blob already in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlobContext {
    /// The blob's digest (`sha256:<64 hex>`) in the image's repository.
    pub digest: String,
}

/// A reference to an object of the same namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    /// Its name.
    pub name: String,
}

/// Where an `ImageBuild` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[non_exhaustive]
pub enum Phase {
    /// Accepted, waiting for a build slot.
    Pending,
    /// Probing the registry or running the Job.
    Building,
    /// The image was built, pushed and verified.
    Succeeded,
    /// The tag already held an image (and the build was not forced): nothing was run.
    Skipped,
    /// The build failed, or the spec is invalid; the conditions say why.
    Failed,
}

impl Phase {
    /// Whether the generation it was reached for is done.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Skipped | Self::Failed)
    }
}

/// What the controller observed and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageBuildStatus {
    /// Where the build of `observedGeneration` stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The generation of the spec this status is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The standard conditions; [`CONDITION_SUCCEEDED`] is the one to wait for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The image `digest` and `buildHash` are about (`spec.image` when they were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image's digest in the registry (built, or found when skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The library's build hash of the spec this object last built (what defines "the same
    /// build"): a later generation that changes it under the same `image` is built again even
    /// though the tag exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_hash: Option<String>,
    /// The build's Job (the first platform's, for a multi-platform build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_ref: Option<JobReference>,
    /// When the controller started the build of `observedGeneration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The last lines of the build's log, on failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_log_lines: Vec<String>,
}

/// A Job of the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JobReference {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// A standard condition (`metav1.Condition`'s fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type, e.g. `Succeeded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason, e.g. `Built`, `Skipped`, `InvalidSpec`.
    pub reason: String,
    /// For people.
    pub message: String,
    /// The generation it was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the status last changed.
    pub last_transition_time: Time,
}

impl ImageBuildStatus {
    /// The condition of type `type_`, if set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the build of `generation` is done (final phase reached for it).
    pub fn is_done_for(&self, generation: Option<i64>) -> bool {
        self.observed_generation == generation && self.phase.is_some_and(Phase::is_final)
    }
}
