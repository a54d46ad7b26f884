//! How a build ends: an outcome, or a failure with the reason a user needs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::BoxError;
use crate::digest::Digest;
use crate::image_ref::ImageRef;
use crate::platform::Platform;

/// A Kubernetes object (or whatever an executor leaves behind), by kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    /// `Job`, `Pod`, `ConfigMap`, `Secret`…
    pub kind: String,
    /// Its namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

impl ObjectRef {
    /// A namespaced object.
    pub fn namespaced(
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    /// `kind/namespace/name`, as `kubectl` would not quite say it but a user can read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{ns}/{}", self.kind.to_lowercase(), self.name),
            None => write!(f, "{}/{}", self.kind.to_lowercase(), self.name),
        }
    }
}

/// Who found that the image already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkippedBy {
    /// The caller's probe: no Job was created.
    Caller,
    /// The init container's check (the image appeared after the caller probed).
    InCluster,
}

/// How a build ended well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BuildOutcome {
    /// The image exists; nothing was built.
    Skipped {
        /// The image.
        image: ImageRef,
        /// Its digest.
        digest: Digest,
        /// Who found it.
        by: SkippedBy,
        /// The Job that checked, for [`SkippedBy::InCluster`].
        job: Option<ObjectRef>,
        /// What stays on the cluster.
        kept: Vec<ObjectRef>,
        /// How long the run took.
        duration: Duration,
    },
    /// The image was built, pushed and verified in the registry.
    Built {
        /// The image.
        image: ImageRef,
        /// The pushed digest.
        digest: Digest,
        /// The Job that built it (the first platform's, for a multi-platform build).
        job: ObjectRef,
        /// What stays on the cluster.
        kept: Vec<ObjectRef>,
        /// How long the run took.
        duration: Duration,
        /// A multi-platform build: each platform's image, in the order asked, which the index
        /// (`digest`) lists. Empty for a single-platform build.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        platforms: Vec<PlatformImage>,
    },
}

/// One platform's image of a multi-platform build, pushed by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PlatformImage {
    /// The platform.
    pub platform: Platform,
    /// Its image's digest (`repository@digest`; no tag names it).
    pub digest: Digest,
    /// The Job that built it.
    pub job: ObjectRef,
}

impl PlatformImage {
    /// One platform's image.
    pub fn new(platform: Platform, digest: Digest, job: ObjectRef) -> Self {
        Self {
            platform,
            digest,
            job,
        }
    }
}

/// How one platform of a failed multi-platform build ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PlatformResult {
    /// The platform.
    pub platform: Platform,
    /// Its image's digest, when it was built.
    pub digest: Option<Digest>,
    /// Why it failed, when it did.
    pub failure: Option<Box<FailureReason>>,
}

impl PlatformResult {
    /// A platform that was built.
    pub fn built(platform: Platform, digest: Digest) -> Self {
        Self {
            platform,
            digest: Some(digest),
            failure: None,
        }
    }

    /// A platform that failed.
    pub fn failed(platform: Platform, reason: FailureReason) -> Self {
        Self {
            platform,
            digest: None,
            failure: Some(Box::new(reason)),
        }
    }
}

impl BuildOutcome {
    /// The image's digest.
    pub fn digest(&self) -> &Digest {
        match self {
            Self::Skipped { digest, .. } | Self::Built { digest, .. } => digest,
        }
    }

    /// The image.
    pub fn image(&self) -> &ImageRef {
        match self {
            Self::Skipped { image, .. } | Self::Built { image, .. } => image,
        }
    }

    /// How long the run took.
    pub fn duration(&self) -> Duration {
        match self {
            Self::Skipped { duration, .. } | Self::Built { duration, .. } => *duration,
        }
    }

    /// What the run left on the cluster.
    pub fn kept(&self) -> &[ObjectRef] {
        match self {
            Self::Skipped { kept, .. } | Self::Built { kept, .. } => kept,
        }
    }
}

/// Why a build failed. Each variant carries what a user needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureReason {
    /// The caller's probe could not tell whether the image exists (never taken as absent).
    ProbeFailed {
        /// The kind of failure, as the registry client names it: `unauthorized`, `tls`,
        /// `unreachable`, `rate_limited`, `registry_error`…
        cause: &'static str,
        /// The registry's error.
        message: String,
        /// Credentials were missing or rejected.
        unauthorized: bool,
        /// A later attempt might succeed.
        retryable: bool,
    },
    /// The local context could not be packed or uploaded.
    Context {
        /// What went wrong.
        message: String,
    },
    /// The Kubernetes API refused or failed a request.
    Cluster {
        /// What was being done, e.g. `create job kaniko/kb-app-v1-0123456789`.
        action: String,
        /// The API server's message.
        message: String,
        /// The HTTP status, when the server answered.
        status: Option<u16>,
    },
    /// Applying an object would take fields another field manager owns.
    Conflict {
        /// The object, e.g. `configmap/kaniko/kb-app-v1-0123456789`.
        object: String,
        /// The API server's message, naming the other manager and fields.
        message: String,
    },
    /// A container exited with a non-zero code.
    ExitCode {
        /// The container.
        container: String,
        /// Its exit code.
        code: i32,
        /// Its termination message, if any.
        message: Option<String>,
        /// The last lines of its log.
        last_lines: Vec<String>,
    },
    /// A container was killed for using too much memory.
    OomKilled {
        /// The container.
        container: String,
        /// The last lines of its log.
        last_lines: Vec<String>,
    },
    /// A container's image could not be pulled.
    ImagePull {
        /// The container.
        container: String,
        /// The kubelet's reason and message.
        message: String,
    },
    /// No node can run the Pod.
    Unschedulable {
        /// The scheduler's message.
        message: String,
    },
    /// The Pod was evicted from its node.
    Evicted {
        /// The kubelet's message.
        message: String,
    },
    /// The Job's `activeDeadlineSeconds` ran out.
    DeadlineExceeded {
        /// The Job condition's message.
        message: String,
    },
    /// The Job failed without a container to blame (e.g. `BackoffLimitExceeded`).
    JobFailed {
        /// The Job condition's reason.
        reason: String,
        /// Its message.
        message: String,
    },
    /// Someone else deleted the Job while it ran.
    JobDeletedExternally,
    /// The node running the Pod stopped answering.
    NodeLost {
        /// The node.
        node: Option<String>,
        /// What the cluster said.
        message: String,
    },
    /// The in-cluster check could not tell whether the image exists, so it did not build.
    InitCheckFailed {
        /// The init container's message.
        message: String,
    },
    /// A container ended in a way the contract does not allow (e.g. no digest after a build).
    UnexpectedTermination {
        /// What was found.
        message: String,
    },
    /// The client-side deadline passed.
    Timeout {
        /// The deadline.
        after: Duration,
    },
    /// The run was cancelled.
    Cancelled,
    /// The registry does not serve what kaniko said it pushed.
    VerifyMismatch {
        /// The digest kaniko reported.
        pushed: Digest,
        /// What the tag resolves to now (`None`: absent).
        tag_resolves_to: Option<Digest>,
        /// Whether `image@pushed` exists.
        pinned_exists: bool,
    },
    /// A multi-platform build: a platform failed, so no index was pushed. Each platform's result
    /// is listed, in the order asked.
    Platforms {
        /// Every platform's digest or failure.
        results: Vec<PlatformResult>,
    },
    /// A multi-platform build: every platform was built, but the image index could not be
    /// pushed under the tag.
    IndexPush {
        /// The registry's error, naming the destination.
        message: String,
    },
    /// The verifying probe itself failed.
    VerifyFailed {
        /// The registry's error.
        message: String,
    },
    /// The build configuration or the executor's options are invalid.
    Invalid {
        /// What is wrong.
        message: String,
    },
}

impl FailureReason {
    /// A short machine-readable name: `exit_code`, `oom_killed`, `timeout`…
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ProbeFailed { .. } => "probe_failed",
            Self::Context { .. } => "context",
            Self::Cluster { .. } => "cluster",
            Self::Conflict { .. } => "conflict",
            Self::ExitCode { .. } => "exit_code",
            Self::OomKilled { .. } => "oom_killed",
            Self::ImagePull { .. } => "image_pull",
            Self::Unschedulable { .. } => "unschedulable",
            Self::Evicted { .. } => "evicted",
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
            Self::JobFailed { .. } => "job_failed",
            Self::JobDeletedExternally => "job_deleted_externally",
            Self::NodeLost { .. } => "node_lost",
            Self::InitCheckFailed { .. } => "init_check_failed",
            Self::UnexpectedTermination { .. } => "unexpected_termination",
            Self::Timeout { .. } => "timeout",
            Self::Cancelled => "cancelled",
            Self::VerifyMismatch { .. } => "verify_mismatch",
            Self::VerifyFailed { .. } => "verify_failed",
            Self::Platforms { .. } => "platforms",
            Self::IndexPush { .. } => "index_push",
            Self::Invalid { .. } => "invalid",
        }
    }

    /// The log lines kept for the report, if the reason has any.
    pub fn last_lines(&self) -> &[String] {
        match self {
            Self::ExitCode { last_lines, .. } | Self::OomKilled { last_lines, .. } => last_lines,
            _ => &[],
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ProbeFailed { message, .. } => write!(f, "cannot tell whether the image exists: {message}"),
            Self::Context { message } => write!(f, "build context: {message}"),
            Self::Cluster {
                action,
                message,
                status,
            } => match status {
                Some(s) => write!(f, "{action}: HTTP {s}: {message}"),
                None => write!(f, "{action}: {message}"),
            },
            Self::Conflict { object, message } => write!(
                f,
                "{object} is managed by another field manager (allow taking it over to override): {message}"
            ),
            Self::ExitCode {
                container,
                code,
                message,
                ..
            } => {
                write!(f, "container {container} exited with code {code}")?;
                match message {
                    Some(m) if !m.is_empty() => write!(f, ": {m}"),
                    _ => Ok(()),
                }
            }
            Self::OomKilled { container, .. } => {
                write!(
                    f,
                    "container {container} was killed for exceeding its memory limit (OOMKilled)"
                )
            }
            Self::ImagePull { container, message } => {
                write!(f, "cannot pull the image of container {container}: {message}")
            }
            Self::Unschedulable { message } => write!(f, "no node can run the build pod: {message}"),
            Self::Evicted { message } => write!(f, "the build pod was evicted: {message}"),
            Self::DeadlineExceeded { message } => write!(f, "the Job's deadline was exceeded: {message}"),
            Self::JobFailed { reason, message } => write!(f, "the Job failed ({reason}): {message}"),
            Self::JobDeletedExternally => f.write_str("the Job was deleted by someone else while it ran"),
            Self::NodeLost { node, message } => match node {
                Some(n) => write!(f, "node {n} was lost: {message}"),
                None => write!(f, "the node was lost: {message}"),
            },
            Self::InitCheckFailed { message } => {
                write!(
                    f,
                    "the in-cluster check could not tell whether the image exists: {message}"
                )
            }
            Self::UnexpectedTermination { message } => write!(f, "unexpected termination: {message}"),
            Self::Timeout { after } => write!(f, "timed out after {after:?}"),
            Self::Cancelled => f.write_str("cancelled"),
            Self::VerifyMismatch {
                pushed,
                tag_resolves_to,
                pinned_exists,
            } => {
                write!(f, "kaniko reported {pushed}, but ")?;
                match (pinned_exists, tag_resolves_to) {
                    (false, _) => f.write_str("the registry does not serve it"),
                    (true, Some(other)) => write!(f, "the tag now resolves to {other}"),
                    (true, None) => f.write_str("the tag does not exist"),
                }
            }
            Self::VerifyFailed { message } => write!(f, "cannot verify the pushed image: {message}"),
            Self::IndexPush { message } => write!(f, "cannot push the image index: {message}"),
            Self::Platforms { results } => {
                f.write_str("a platform failed, no index was pushed:")?;
                for r in results {
                    match (&r.digest, &r.failure) {
                        (_, Some(failure)) => write!(f, " {}: {} ({failure});", r.platform, failure.kind())?,
                        (Some(digest), None) => write!(f, " {}: built {digest};", r.platform)?,
                        (None, None) => write!(f, " {}: not run;", r.platform)?,
                    }
                }
                Ok(())
            }
            Self::Invalid { message } => write!(f, "invalid build: {message}"),
        }
    }
}

/// An executor's failure: the reason, the Job involved and what was kept. Boxed inside, so a
/// `Result` carrying it stays small; cheap to clone (the source is shared), so one build's
/// failure can be handed to every caller waiting for that build.
#[derive(Debug, Clone)]
pub struct ExecError {
    inner: Box<Failure>,
}

#[derive(Debug, Clone)]
struct Failure {
    reason: FailureReason,
    job: Option<ObjectRef>,
    kept: Vec<ObjectRef>,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ExecError {
    /// A failure for `reason`, before any Job existed and with nothing kept.
    pub fn new(reason: FailureReason) -> Self {
        Self {
            inner: Box::new(Failure {
                reason,
                job: None,
                kept: Vec::new(),
                source: None,
            }),
        }
    }

    /// Names the Job involved.
    #[must_use]
    pub fn with_job(mut self, job: Option<ObjectRef>) -> Self {
        self.inner.job = job;
        self
    }

    /// Lists what stays on the cluster.
    #[must_use]
    pub fn with_kept(mut self, kept: Vec<ObjectRef>) -> Self {
        self.inner.kept = kept;
        self
    }

    /// Attaches the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(Arc::from(source.into()));
        self
    }

    /// Why it failed.
    pub fn reason(&self) -> &FailureReason {
        &self.inner.reason
    }

    /// The Job involved, once there was one.
    pub fn job(&self) -> Option<&ObjectRef> {
        self.inner.job.as_ref()
    }

    /// What stays on the cluster.
    pub fn kept(&self) -> &[ObjectRef] {
        &self.inner.kept
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner.reason, f)
    }
}

impl std::error::Error for ExecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A build that did not end well: the image, why, the Job involved and what stays on the
/// cluster. Boxed inside, so a `Result` carrying it stays small.
#[derive(Debug)]
pub struct BuildFailure {
    inner: Box<Failure>,
    image: Box<(ImageRef, Duration)>,
}

impl BuildFailure {
    pub(super) fn new(image: ImageRef, duration: Duration, exec: ExecError) -> Self {
        Self {
            inner: exec.inner,
            image: Box::new((image, duration)),
        }
    }

    /// The image.
    pub fn image(&self) -> &ImageRef {
        &self.image.0
    }

    /// Why it failed.
    pub fn reason(&self) -> &FailureReason {
        &self.inner.reason
    }

    /// The Job involved, if one was created or attached.
    pub fn job(&self) -> Option<&ObjectRef> {
        self.inner.job.as_ref()
    }

    /// What stays on the cluster (for debugging, per the cleanup policy).
    pub fn kept(&self) -> &[ObjectRef] {
        &self.inner.kept
    }

    /// How long the run took.
    pub fn duration(&self) -> Duration {
        self.image.1
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.inner.reason, FailureReason::Cancelled)
    }

    /// Whether the client-side deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.reason, FailureReason::Timeout { .. })
    }
}

impl fmt::Display for BuildFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "build of {} failed: {}", self.image.0, self.inner.reason)?;
        if let Some(job) = &self.inner.job {
            write!(f, " (job {job})")?;
        }
        if !self.inner.kept.is_empty() {
            let kept: Vec<String> = self.inner.kept.iter().map(ToString::to_string).collect();
            write!(f, "; kept for inspection: {}", kept.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
