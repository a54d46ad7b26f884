//! The runner's options: upload method, cleanup policy, setup, timeouts, and the builder.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kaniko_builder_core::flow::BlobStore;

use super::{Inner, KubeRunner};
use crate::apply::ApplyParams;
use crate::context::PackOptions;
use crate::manifest::JobOptions;

/// Default [`KubeRunnerBuilder::unschedulable_timeout`].
pub const DEFAULT_UNSCHEDULABLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default [`KubeRunnerBuilder::node_lost_timeout`].
pub const DEFAULT_NODE_LOST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`KubeRunnerBuilder::image_pull_grace`].
pub const DEFAULT_IMAGE_PULL_GRACE: Duration = Duration::from_secs(120);
/// Default [`KubeRunnerBuilder::upload_stall_timeout`].
pub const DEFAULT_UPLOAD_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`KubeRunnerBuilder::cleanup_timeout`].
pub const DEFAULT_CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`KubeRunnerBuilder::log_drain_timeout`].
pub const DEFAULT_LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Default [`KubeRunnerBuilder::log_tail_lines`].
pub const DEFAULT_LOG_TAIL_LINES: usize = 50;

/// How a local directory reaches the build Pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UploadMethod {
    /// Push the packed context as a blob to the destination repository (content-addressed, no
    /// `pods/exec` permission needed); the init container fetches it. Needs a
    /// [`KubeRunnerBuilder::blob_store`].
    #[default]
    Registry,
    /// Stream it into the waiting init container over `pods/exec` (the generated Role then needs
    /// [`JobOptions::exec_upload`]).
    Exec,
}

/// What to do with a finished build's Job, Pod and ConfigMap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct CleanupPolicy {
    pub(super) delete_on_success: bool,
    pub(super) delete_on_failure: bool,
    pub(super) delete_on_cancel: bool,
}

impl Default for CleanupPolicy {
    /// Delete on success and on cancellation, keep on failure.
    fn default() -> Self {
        Self {
            delete_on_success: true,
            delete_on_failure: false,
            delete_on_cancel: true,
        }
    }
}

impl CleanupPolicy {
    /// Whether to delete after a success. Default: true.
    pub fn delete_on_success(mut self, delete: bool) -> Self {
        self.delete_on_success = delete;
        self
    }

    /// Whether to delete after a failure. Default: false (kept for inspection until the Job's
    /// TTL removes it).
    pub fn delete_on_failure(mut self, delete: bool) -> Self {
        self.delete_on_failure = delete;
        self
    }

    /// Whether a run that is cancelled (or dropped) deletes the Job it created. Default: true.
    /// `false` hands the running Job over: a controller stopping, or losing its leader lease,
    /// leaves it to the process that takes over, which attaches to it by name.
    pub fn delete_on_cancel(mut self, delete: bool) -> Self {
        self.delete_on_cancel = delete;
        self
    }
}

/// Whether to apply the namespace's shared objects (Namespace, ServiceAccounts, Role,
/// RoleBinding) before the first build in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Setup {
    /// Apply them; when the API server forbids it (an orchestrator limited to the generated Role
    /// may not), assume an administrator did. Default.
    #[default]
    IfAllowed,
    /// Apply them; a refusal is an error.
    Always,
    /// Never: an administrator applied them.
    Never,
}

/// Options of a [`KubeRunner`]; setters never fail (the options are checked when a build is
/// rendered, and a bad one fails that build with [`FailureReason::Invalid`](kaniko_builder_core::flow::FailureReason::Invalid)).
#[must_use]
pub struct KubeRunnerBuilder {
    pub(super) client: kube::Client,
    pub(super) job_options: JobOptions,
    pub(super) docker_config_json: Option<Arc<[u8]>>,
    pub(super) blob_store: Option<Arc<dyn BlobStore>>,
    pub(super) upload: UploadMethod,
    pub(super) cleanup: CleanupPolicy,
    pub(super) timeout: Option<Duration>,
    pub(super) upload_stall_timeout: Duration,
    pub(super) unschedulable_timeout: Option<Duration>,
    pub(super) node_lost_timeout: Option<Duration>,
    pub(super) image_pull_grace: Duration,
    pub(super) cleanup_timeout: Duration,
    pub(super) log_drain_timeout: Duration,
    pub(super) log_tail_lines: usize,
    pub(super) pack: PackOptions,
    pub(super) apply: ApplyParams,
    pub(super) setup: Setup,
}

impl fmt::Debug for KubeRunnerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeRunnerBuilder")
            .field("job_options", &self.job_options)
            .field("upload", &self.upload)
            .finish_non_exhaustive()
    }
}

impl KubeRunnerBuilder {
    /// How the Job is rendered. Default: [`JobOptions::default`].
    pub fn job_options(mut self, options: JobOptions) -> Self {
        self.job_options = options;
        self
    }

    /// The docker `config.json` put in the build's Secret. Default: none (the Pod mounts the
    /// Secret named in the options if it exists).
    pub fn docker_config_json(mut self, json: impl Into<Vec<u8>>) -> Self {
        self.docker_config_json = Some(Arc::from(json.into()));
        self
    }

    /// Where packed local contexts go for [`UploadMethod::Registry`] (the registry client).
    /// Default: none.
    pub fn blob_store(mut self, store: Arc<dyn BlobStore>) -> Self {
        self.blob_store = Some(store);
        self
    }

    /// How local contexts reach the Pod. Default: [`UploadMethod::Registry`].
    pub fn upload(mut self, method: UploadMethod) -> Self {
        self.upload = method;
        self
    }

    /// What to delete after a build. Default: [`CleanupPolicy::default`].
    pub fn cleanup(mut self, policy: CleanupPolicy) -> Self {
        self.cleanup = policy;
        self
    }

    /// The client-side deadline of one build, from the start of `execute` (the Job is then
    /// deleted and the build fails with [`FailureReason::Timeout`](kaniko_builder_core::flow::FailureReason::Timeout)). Default: the Job's
    /// `activeDeadlineSeconds` plus two minutes.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long an exec upload ([`UploadMethod::Exec`]) of a local context may make no progress
    /// (no chunk packed, or none accepted by the connection) before it fails. A long upload
    /// that moves never times out; the Job's deadline still bounds the build. The registry
    /// upload's stall timeout is the registry client's (`upload_stall_timeout` there). Default:
    /// 1 minute.
    pub fn upload_stall_timeout(mut self, timeout: Duration) -> Self {
        self.upload_stall_timeout = timeout;
        self
    }

    /// How long the Pod may stay unschedulable before the build fails with
    /// [`FailureReason::Unschedulable`](kaniko_builder_core::flow::FailureReason::Unschedulable); `None` waits (until the deadlines). Default: 5 minutes.
    pub fn unschedulable_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.unschedulable_timeout = timeout;
        self
    }

    /// How long the build's node may stay not ready (it stopped reporting: the Node's `Ready`
    /// condition is `Unknown` or `False`, or the node controller marked the Pod not ready) before
    /// the build fails with
    /// [`FailureReason::NodeLost`](kaniko_builder_core::flow::FailureReason::NodeLost); the
    /// build goes on if the node comes back in time. `None` waits (until the deadlines), as
    /// Kubernetes itself does for about 5 minutes before it evicts. Default: 1 minute, counted
    /// from when the cluster noticed (after its own `node-monitor-grace-period`).
    ///
    /// A build failed as lost is cleaned up like a cancellation, whatever the
    /// [`CleanupPolicy`]: its container could otherwise push when the node comes back. A Pod
    /// deleted while its node is not reporting is force-deleted: its kubelet cannot confirm the
    /// deletion, and the Job would wait for it forever.
    pub fn node_lost_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.node_lost_timeout = timeout;
        self
    }

    /// How long a container's image pull may keep failing before the build fails with
    /// [`FailureReason::ImagePull`](kaniko_builder_core::flow::FailureReason::ImagePull), which
    /// then carries the kubelet's last reason and message (they name the image). Counted from
    /// the first failure: while the container waits in `ErrImagePull` or `ImagePullBackOff`
    /// (also `RegistryUnavailable`, `ImageInspectError`) the kubelet tries again, and a pull
    /// that succeeds stops the count; a later failure starts a new one. Failures no retry
    /// fixes (`InvalidImageName`, `ErrImageNeverPull`, `SignatureValidationFailed`) fail the
    /// build at once. [`Duration::ZERO`] fails at the first error.
    ///
    /// Default: 2 minutes. The kubelet waits 10 s after the first failed attempt and doubles
    /// the wait after each one, so 2 minutes cover four attempts (at about 0, 10, 30 and 70 s,
    /// the fifth at 150 s): enough for a registry restart or a short outage, short enough that
    /// a typo in an image name (which looks the same: `ErrImagePull` with "not found") is
    /// reported in minutes rather than at the Job's deadline.
    pub fn image_pull_grace(mut self, grace: Duration) -> Self {
        self.image_pull_grace = grace;
        self
    }

    /// How long cleanup after a cancellation or timeout waits for the Job and its Pods to be
    /// gone. Default: 60 seconds.
    pub fn cleanup_timeout(mut self, timeout: Duration) -> Self {
        self.cleanup_timeout = timeout;
        self
    }

    /// How long to wait, once the verdict is known, for the log streams to deliver their last
    /// lines. Default: 2 seconds.
    pub fn log_drain_timeout(mut self, timeout: Duration) -> Self {
        self.log_drain_timeout = timeout;
        self
    }

    /// Log lines kept per container for a failure report. Default: 50.
    pub fn log_tail_lines(mut self, lines: usize) -> Self {
        self.log_tail_lines = lines;
        self
    }

    /// Packing options for local contexts. Default: [`PackOptions::default`].
    pub fn pack_options(mut self, options: PackOptions) -> Self {
        self.pack = options;
        self
    }

    /// Server-side apply options (field manager, force). Default: manager `kaniko-builder`, not
    /// forced.
    pub fn apply_params(mut self, params: ApplyParams) -> Self {
        self.apply = params;
        self
    }

    /// Whether to apply the namespace's shared objects. Default: [`Setup::IfAllowed`].
    pub fn setup(mut self, setup: Setup) -> Self {
        self.setup = setup;
        self
    }

    /// The runner.
    pub fn build(self) -> KubeRunner {
        KubeRunner {
            inner: Arc::new(Inner {
                client: self.client,
                docker_config_json: self.docker_config_json,
                blob_store: self.blob_store,
                upload: self.upload,
                cleanup: self.cleanup,
                timeout: self.timeout,
                upload_stall_timeout: self.upload_stall_timeout,
                unschedulable_timeout: self.unschedulable_timeout,
                node_lost_timeout: self.node_lost_timeout,
                image_pull_grace: self.image_pull_grace,
                cleanup_timeout: self.cleanup_timeout,
                log_drain_timeout: self.log_drain_timeout,
                log_tail_lines: self.log_tail_lines,
                pack: self.pack,
                apply: self.apply,
                setup: self.setup,
                setup_done: Mutex::new(HashSet::new()),
                flights: Mutex::default(),
                node_access: std::sync::OnceLock::new(),
                job_options: self.job_options,
            }),
        }
    }
}
