//! The decision flow of one build, written against traits the other crates implement: a registry
//! that answers probes and stores blobs ([`ImageProbe`], [`BlobStore`]) and something that runs the
//! build ([`BuildExecutor`], the Kubernetes Job runner in `kaniko-builder-k8s`). No IO here.
//!
//! [`run_build`] is the whole story:
//! 1. probe the image from the caller's side: when it exists and the build is not forced, the
//!    outcome is [`BuildOutcome::Skipped`] by [`SkippedBy::Caller`] and nothing runs at all;
//! 2. otherwise hand a [`BuildPlan`] to the executor, which reports progress as [`BuildEvent`]s
//!    through an [`EventSink`] and returns [`Executed`];
//! 3. after a build, verify in the registry that the pushed digest exists and that the tag now
//!    resolves to it ([`BuildEvent::Verified`]);
//! 4. anything else ends as a [`BuildFailure`] whose [`FailureReason`] says what a user needs.
//!
//! Cancelling the token, or dropping the future, stops the flow; the executor cleans up what it
//! created (see its documentation for what is kept).
//!
//! ```
//! # use kaniko_builder_core::flow::*;
//! # use kaniko_builder_core::{BuildConfig, Digest, ImageRef, Manifest, Probe};
//! # use tokio_util::sync::CancellationToken;
//! struct Registry;
//! #[async_trait::async_trait]
//! impl ImageProbe for Registry {
//!     async fn probe(&self, _image: &ImageRef) -> Result<Probe, RegistryFailure> {
//!         let digest = Digest::sha256(b"manifest");
//!         Ok(Probe::Exists(Manifest::new(digest, "application/vnd.oci.image.manifest.v1+json", None)))
//!     }
//! }
//! struct NeverRuns;
//! #[async_trait::async_trait]
//! impl BuildExecutor for NeverRuns {
//!     async fn execute(&self, _: &BuildPlan, _: &EventSink, _: CancellationToken) -> Result<Executed, ExecError> {
//!         unreachable!("the image exists")
//!     }
//! }
//! # futures::executor::block_on(async {
//! let config = BuildConfig::builder("registry.local:5000/app:v1".parse()?).build()?;
//! let outcome = run_build(&config, &Registry, &NeverRuns, &EventSink::discard(), &CancellationToken::new(), &FlowOptions::default())
//!     .await
//!     .expect("skipped");
//! assert!(matches!(outcome, BuildOutcome::Skipped { by: SkippedBy::Caller, .. }));
//! # Ok::<(), kaniko_builder_core::Error>(()) }).unwrap();
//! ```

mod decision;
mod events;
mod outcome;
mod platforms;
mod run;

use std::fmt;

pub use tokio_util::sync::CancellationToken;

use crate::config::BuildConfig;
use crate::digest::Digest;
use crate::image_ref::ImageRef;
use crate::platform::Platform;
use crate::probe::{Manifest, Probe};

pub use decision::{BuildReason, Decision};
pub use events::{BuildEvent, EventSink, EventStream, UploadVia};
pub use outcome::{
    BuildFailure, BuildOutcome, ExecError, FailureReason, ObjectRef, PlatformImage, PlatformResult, SkippedBy,
};
pub use run::{FlowOptions, run_build};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error from a registry, as the flow sees it: the cause (boxed, so no registry client's type
/// leaks into this crate) and the two questions a caller branches on.
pub struct RegistryFailure {
    source: BoxError,
    unauthorized: bool,
    retryable: bool,
    cause: &'static str,
}

/// The name the probe side of the flow uses for [`RegistryFailure`].
pub type ProbeFailure = RegistryFailure;

impl RegistryFailure {
    /// Wraps a registry error.
    pub fn new(source: impl Into<BoxError>, unauthorized: bool, retryable: bool) -> Self {
        Self {
            source: source.into(),
            unauthorized,
            retryable,
            cause: if unauthorized { "unauthorized" } else { "registry" },
        }
    }

    /// What kind of failure it is, as the registry client names it (`unauthorized`, `tls`,
    /// `unreachable`, `rate_limited`, `registry_error`…). Default: `unauthorized` or `registry`.
    #[must_use]
    pub fn with_cause(mut self, cause: &'static str) -> Self {
        self.cause = cause;
        self
    }

    /// The kind of failure (see [`with_cause`](Self::with_cause)).
    pub fn cause(&self) -> &'static str {
        self.cause
    }

    /// The registry rejected or lacked credentials (401, 403, a refused token).
    pub fn is_unauthorized(&self) -> bool {
        self.unauthorized
    }

    /// A later attempt might succeed (transport failure, 429, 5xx).
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The registry client's own error, to downcast.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.source.as_ref()
    }
}

impl fmt::Debug for RegistryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryFailure")
            .field("source", &self.source)
            .field("unauthorized", &self.unauthorized)
            .field("retryable", &self.retryable)
            .field("cause", &self.cause)
            .finish()
    }
}

impl fmt::Display for RegistryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for RegistryFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Answers "does this image exist, and with which digest?", and for multi-platform builds reads
/// and pushes image indexes. Implemented by the registry client.
#[async_trait::async_trait]
pub trait ImageProbe: Send + Sync {
    /// Probes `image` (a tag, or a reference pinned by digest). An error is never "absent".
    async fn probe(&self, image: &ImageRef) -> Result<Probe, RegistryFailure>;

    /// The platforms listed by the image index `image` (by tag or digest; an OCI index or a
    /// Docker manifest list). Multi-platform builds call it when the tag holds an index. The
    /// default answers that this registry client cannot read indexes.
    async fn index_platforms(&self, image: &ImageRef) -> Result<Vec<Platform>, RegistryFailure> {
        Err(unsupported("read an image index", image))
    }

    /// Pushes an OCI image index under `image`'s tag listing `manifests` (images of its
    /// repository, by digest), each entry's platform read from its image's config; returns the
    /// index's digest. The default answers that this registry client cannot push indexes.
    async fn push_index(&self, image: &ImageRef, manifests: &[Digest]) -> Result<Digest, RegistryFailure> {
        let _ = manifests;
        Err(unsupported("push an image index", image))
    }
}

fn unsupported(what: &str, image: &ImageRef) -> RegistryFailure {
    RegistryFailure::new(
        format!("this registry client cannot {what} ({image})"),
        false,
        false,
    )
    .with_cause("unsupported")
}

/// A blob's bytes as a stream of chunks, produced while they are sent (a context being packed):
/// never held whole in memory. An `Err` item aborts the upload with that error.
pub type BlobBody = futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// Stores a blob in a repository, content-addressed. Implemented by the registry client; the
/// Kubernetes runner uses it to hand a local build context to the Pod.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync {
    /// Uploads `body` to `repository` (its registry and repository; tag and digest ignored) as it
    /// is produced, and returns the digest of the bytes sent, computed on the way. The upload may
    /// take as long as the body does; implementations time out on a stall (no progress), never
    /// on the whole transfer.
    async fn push_blob(&self, repository: &ImageRef, body: BlobBody) -> Result<Digest, RegistryFailure>;
}

/// What the executor is asked to do: build `config`, for `reason`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildPlan {
    /// The build.
    pub config: BuildConfig,
    /// Why it runs.
    pub reason: BuildReason,
    /// What the caller's probe found (an existing manifest when forced), if it probed.
    pub probed: Option<Manifest>,
}

impl BuildPlan {
    /// A plan to build `config`.
    pub fn new(config: BuildConfig, reason: BuildReason, probed: Option<Manifest>) -> Self {
        Self {
            config,
            reason,
            probed,
        }
    }

    /// What identifies this build for sharing: [`BuildKey::new`] of the config, forced when the
    /// plan's reason is [`BuildReason::Forced`].
    pub fn key(&self) -> BuildKey {
        BuildKey::new(&self.config, self.reason == BuildReason::Forced)
    }
}

/// What identifies one build for sharing: the namespace it runs in, its
/// [`build_hash`](BuildConfig::build_hash) (what is built and where it is pushed) and whether it
/// is forced. Builds with the same key have the same result, so they can share one run: the
/// Kubernetes runner's concurrent callers share a run by this key, and a batch of builds builds
/// each key once. The [`job_name`](BuildConfig::job_name) is not such a key: it leaves out the
/// namespace and the forcing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BuildKey {
    namespace: String,
    build_hash: Digest,
    forced: bool,
}

impl BuildKey {
    /// The key of `config`, built `forced` or not (a caller's build is forced when
    /// [`BuildConfig::force`] is set: that is the plan [`run_build`] hands the executor).
    pub fn new(config: &BuildConfig, forced: bool) -> Self {
        Self {
            namespace: config.namespace().to_owned(),
            build_hash: config.build_hash(),
            forced,
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The build hash.
    pub fn build_hash(&self) -> &Digest {
        &self.build_hash
    }

    /// Whether the build is forced.
    pub fn forced(&self) -> bool {
        self.forced
    }
}

/// What an executor reports when the build ran to a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Executed {
    /// The image was built and pushed with this digest.
    Built {
        /// The digest kaniko pushed.
        digest: Digest,
        /// The Job (or whatever ran it).
        job: ObjectRef,
        /// What the executor left on the cluster.
        kept: Vec<ObjectRef>,
    },
    /// The check inside the cluster found the image (pushed since the caller probed).
    Skipped {
        /// The digest the in-cluster check saw.
        digest: Digest,
        /// The Job that checked.
        job: ObjectRef,
        /// What the executor left on the cluster.
        kept: Vec<ObjectRef>,
    },
}

/// Runs a [`BuildPlan`] somewhere (a Kubernetes Job) and reports what happened.
#[async_trait::async_trait]
pub trait BuildExecutor: Send + Sync {
    /// Runs the plan to a verdict, sending progress to `events`. Cancelling `cancel` (or dropping
    /// the future) stops it and cleans up; a cancelled run returns
    /// [`FailureReason::Cancelled`].
    async fn execute(
        &self,
        plan: &BuildPlan,
        events: &EventSink,
        cancel: CancellationToken,
    ) -> Result<Executed, ExecError>;
}

#[cfg(test)]
mod tests;
