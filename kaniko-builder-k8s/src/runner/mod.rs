//! The Kubernetes executor: runs a [`BuildPlan`] as a Job and follows it to a verdict.
//!
//! [`KubeRunner`] implements the core flow's [`BuildExecutor`]. For one build it
//! 1. renders the manifests ([`render`]); for a local directory, packs it ([`crate::context`]) and
//!    either pushes it as a blob to the destination repository (the default, [`UploadMethod::Registry`])
//!    or streams it into the init container later ([`UploadMethod::Exec`]);
//! 2. applies the namespace's objects once per runner ([`Setup`]) and the build's Secret and
//!    ConfigMap with server-side apply ([`crate::apply`]);
//! 3. creates the Job. When a Job of that name exists: the same build (same
//!    `kaniko-builder.io/build-hash`) still running is **attached to** ([`BuildEvent::Attached`]),
//!    never duplicated; the same build finished with success is reported again (unless forced);
//!    a failed or (when forced) succeeded one is deleted and replaced; another build's Job of the
//!    same name is a [`FailureReason::Conflict`];
//! 4. watches the Job (by name) and its Pods (by `controller-uid`) with kube-runtime watchers,
//!    which resume after a disconnect — no polling anywhere — and turns their states into
//!    [`BuildEvent`]s and a verdict read from the containers' termination messages;
//! 5. follows the `kaniko-init` and `image-builder` logs as lines ([`BuildEvent::Log`]), keeping the
//!    last [`KubeRunnerBuilder::log_tail_lines`] of each for the failure report;
//! 6. cleans up per [`CleanupPolicy`], and says what was kept.
//!
//! # Cleanup
//! - The per-build ConfigMap is made owned by the Job right after the Job exists, so the garbage
//!   collector removes it with the Job — also when the Job's `ttlSecondsAfterFinished` (the
//!   backstop) removes a Job kept after a failure.
//! - Success: the Job is deleted with **Background** propagation and `run` returns at once: the
//!   Pod has terminated, so the garbage collector removes it within moments and nothing waits
//!   for that. The per-build ConfigMap is deleted explicitly too.
//! - Failure: the Job, its Pod and its ConfigMap are kept for inspection (default), or deleted
//!   like a cancellation ([`CleanupPolicy::delete_on_failure`]).
//! - Cancellation (the token), the client-side deadline ([`KubeRunnerBuilder::timeout`]): the Job
//!   is deleted with **Foreground** propagation and the run waits (up to
//!   [`KubeRunnerBuilder::cleanup_timeout`]) until the Job is gone, which with Foreground means
//!   its Pods are gone first: when the run returns, nothing of it is left.
//! - Dropping the future: a guard spawns the same delete (Background, since nobody waits for
//!   it) on the current tokio runtime.
//! - Only the run that created a Job deletes it: a run attached to another run's Job leaves it.
//! - The docker-config Secret is shared by the builds of a namespace (and limited to one name by
//!   the generated Role): it is kept, and listed in what is kept.

mod logs;
mod state;
#[cfg(test)]
mod tests;
mod upload;

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{
    BlobStore, BuildEvent, BuildExecutor, BuildPlan, CancellationToken, EventSink, ExecError, Executed,
    FailureReason, ObjectRef, PlanReason, UploadVia,
};
use kube::api::{Api, DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher::{self, Event};
use kube::{Resource as _, ResourceExt as _};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::apply::{self, ApplyParams};
use crate::context::{self, PackOptions};
use crate::manifest::{ANNOTATION_BUILD_HASH, BuildManifests, JobOptions, LABEL_INSTANCE, render};
use logs::Tails;
use state::{Action, Tracker, Verdict};

/// Default [`KubeRunnerBuilder::unschedulable_timeout`].
pub const DEFAULT_UNSCHEDULABLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default [`KubeRunnerBuilder::upload_timeout`].
pub const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// Default [`KubeRunnerBuilder::cleanup_timeout`].
pub const DEFAULT_CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`KubeRunnerBuilder::log_drain_timeout`].
pub const DEFAULT_LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Default [`KubeRunnerBuilder::log_tail_lines`].
pub const DEFAULT_LOG_TAIL_LINES: usize = 50;
/// How long the Pod watch may lag behind a finished Job before the Job's word is taken.
const POD_GRACE: Duration = Duration::from_secs(2);
/// How long an init container may keep running after an exec upload failed.
const UPLOAD_GRACE: Duration = Duration::from_secs(10);
/// Create attempts when a Job of the same name comes and goes meanwhile.
const CREATE_ATTEMPTS: usize = 5;

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
    delete_on_success: bool,
    delete_on_failure: bool,
}

impl Default for CleanupPolicy {
    /// Delete on success, keep on failure.
    fn default() -> Self {
        Self {
            delete_on_success: true,
            delete_on_failure: false,
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

/// Runs builds as Kubernetes Jobs. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct KubeRunner {
    inner: Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    job_options: JobOptions,
    docker_config_json: Option<Arc<[u8]>>,
    blob_store: Option<Arc<dyn BlobStore>>,
    upload: UploadMethod,
    cleanup: CleanupPolicy,
    timeout: Option<Duration>,
    upload_timeout: Duration,
    unschedulable_timeout: Option<Duration>,
    cleanup_timeout: Duration,
    log_drain_timeout: Duration,
    log_tail_lines: usize,
    pack: PackOptions,
    apply: ApplyParams,
    setup: Setup,
    setup_done: Mutex<HashSet<String>>,
}

impl fmt::Debug for KubeRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("KubeRunner")
            .field("job_options", &i.job_options)
            .field(
                "docker_config_json",
                &i.docker_config_json.as_ref().map(|_| "<redacted>"),
            )
            .field("blob_store", &i.blob_store.is_some())
            .field("upload", &i.upload)
            .field("cleanup", &i.cleanup)
            .field("timeout", &i.timeout)
            .field("setup", &i.setup)
            .finish_non_exhaustive()
    }
}

/// Options of a [`KubeRunner`]; setters never fail (the options are checked when a build is
/// rendered, and a bad one fails that build with [`FailureReason::Invalid`]).
#[must_use]
pub struct KubeRunnerBuilder {
    client: kube::Client,
    job_options: JobOptions,
    docker_config_json: Option<Arc<[u8]>>,
    blob_store: Option<Arc<dyn BlobStore>>,
    upload: UploadMethod,
    cleanup: CleanupPolicy,
    timeout: Option<Duration>,
    upload_timeout: Duration,
    unschedulable_timeout: Option<Duration>,
    cleanup_timeout: Duration,
    log_drain_timeout: Duration,
    log_tail_lines: usize,
    pack: PackOptions,
    apply: ApplyParams,
    setup: Setup,
}

impl fmt::Debug for KubeRunnerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeRunnerBuilder")
            .field("job_options", &self.job_options)
            .field("upload", &self.upload)
            .finish_non_exhaustive()
    }
}

impl KubeRunner {
    /// Options with their defaults, for builds through `client`.
    pub fn builder(client: kube::Client) -> KubeRunnerBuilder {
        KubeRunnerBuilder {
            client,
            job_options: JobOptions::default(),
            docker_config_json: None,
            blob_store: None,
            upload: UploadMethod::default(),
            cleanup: CleanupPolicy::default(),
            timeout: None,
            upload_timeout: DEFAULT_UPLOAD_TIMEOUT,
            unschedulable_timeout: Some(DEFAULT_UNSCHEDULABLE_TIMEOUT),
            cleanup_timeout: DEFAULT_CLEANUP_TIMEOUT,
            log_drain_timeout: DEFAULT_LOG_DRAIN_TIMEOUT,
            log_tail_lines: DEFAULT_LOG_TAIL_LINES,
            pack: PackOptions::default(),
            apply: ApplyParams::default(),
            setup: Setup::default(),
        }
    }

    /// The objects a build would apply, touching nothing (for a dry run).
    ///
    /// # Errors
    /// As [`render`].
    pub fn render(&self, config: &kaniko_builder_core::BuildConfig) -> crate::Result<BuildManifests> {
        render(
            config,
            &self.inner.job_options,
            self.inner.docker_config_json.as_deref(),
        )
    }

    /// The client.
    pub fn client(&self) -> &kube::Client {
        &self.inner.client
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
    /// deleted and the build fails with [`FailureReason::Timeout`]). Default: the Job's
    /// `activeDeadlineSeconds` plus two minutes.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long packing and uploading a local context may take. Default: 5 minutes.
    pub fn upload_timeout(mut self, timeout: Duration) -> Self {
        self.upload_timeout = timeout;
        self
    }

    /// How long the Pod may stay unschedulable before the build fails with
    /// [`FailureReason::Unschedulable`]; `None` waits (until the deadlines). Default: 5 minutes.
    pub fn unschedulable_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.unschedulable_timeout = timeout;
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
                upload_timeout: self.upload_timeout,
                unschedulable_timeout: self.unschedulable_timeout,
                cleanup_timeout: self.cleanup_timeout,
                log_drain_timeout: self.log_drain_timeout,
                log_tail_lines: self.log_tail_lines,
                pack: self.pack,
                apply: self.apply,
                setup: self.setup,
                setup_done: Mutex::new(HashSet::new()),
                job_options: self.job_options,
            }),
        }
    }
}

/// What one run created or found, shared with the drop guard.
#[derive(Debug, Clone, Default)]
struct Tracked {
    namespace: String,
    /// The Job's name and uid, once created or attached.
    job: Option<(String, String)>,
    /// Whether this run created it (only then does it delete it).
    created: bool,
    /// The per-build ConfigMap this run applied.
    config_map: Option<String>,
    /// Shared objects this run applied and leaves (the Secret; a seed-compatible ConfigMap).
    shared: Vec<ObjectRef>,
    /// Pods seen.
    pods: BTreeSet<String>,
    /// The Job is gone (deleted by someone else, or by us).
    gone: bool,
}

fn lock(t: &Mutex<Tracked>) -> std::sync::MutexGuard<'_, Tracked> {
    t.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Deletes what a dropped run created.
struct DropGuard {
    client: kube::Client,
    tracked: Arc<Mutex<Tracked>>,
    armed: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let tracked = lock(&self.tracked).clone();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(?tracked.job, "build dropped outside a tokio runtime: cannot delete its Job");
            return;
        };
        let client = self.client.clone();
        handle.spawn(async move {
            delete_created(&client, &tracked, PropagationPolicy::Background).await;
        });
    }
}

/// Deletes the Job (when this run created it) and the per-build ConfigMap, concurrently; errors
/// are logged. Returns whether the Job is deleted (or was already gone).
async fn delete_created(client: &kube::Client, tracked: &Tracked, policy: PropagationPolicy) -> bool {
    let job = async {
        let (true, false, Some((name, uid))) = (tracked.created, tracked.gone, &tracked.job) else {
            return false;
        };
        let jobs: Api<Job> = Api::namespaced(client.clone(), &tracked.namespace);
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let t = Instant::now();
        let r = jobs.delete(name, &params).await;
        tracing::debug!(elapsed = ?t.elapsed(), "DELETE job");
        match r {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => true,
            Err(e) => {
                tracing::warn!(job = %name, error = %e, "cannot delete the Job");
                false
            }
        }
    };
    // The ConfigMap of a Job this run did not create belongs to that Job's run.
    let config_map = async {
        if !(tracked.created || tracked.job.is_none()) {
            return;
        }
        let Some(cm) = &tracked.config_map else {
            return;
        };
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &tracked.namespace);
        let t = Instant::now();
        let r = cms.delete(cm, &DeleteParams::default()).await;
        tracing::debug!(elapsed = ?t.elapsed(), "DELETE configmap");
        match r {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(configmap = %cm, error = %e, "cannot delete the ConfigMap"),
        }
    };
    futures::join!(job, config_map).0
}

/// Waits until the Job is gone and then until no Pod of it is left. With Foreground deletion
/// the Job goes after its Pods; a Pod the Job controller created from a stale cache just as the
/// Job was deleted is an orphan the garbage collector removes: waited for too.
async fn wait_job_and_pods_gone(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<(), kube::runtime::wait::Error> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    await_condition(jobs, name, conditions::is_deleted(uid)).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("controller-uid={uid}");
    let left = match pods
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
    {
        Ok(list) => list.items,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list the Job's pods");
            return Ok(());
        }
    };
    for pod in left {
        let (pod_name, pod_uid) = (pod.name_any(), pod.uid().unwrap_or_default());
        await_condition(pods.clone(), &pod_name, conditions::is_deleted(&pod_uid)).await?;
    }
    Ok(())
}

/// Why the drive loop stopped without a cluster verdict.
enum Stop {
    Verdict(Verdict),
    /// An attached Job vanished before its verdict: create again.
    Reattach,
}

fn exec_error(reason: FailureReason) -> ExecError {
    ExecError::new(reason)
}

fn api_error(action: String, e: kube::Error) -> ExecError {
    ExecError::new(apply::cluster_failure(action, &e)).with_source(e)
}

#[async_trait::async_trait]
impl BuildExecutor for KubeRunner {
    async fn execute(
        &self,
        plan: &BuildPlan,
        events: &EventSink,
        cancel: CancellationToken,
    ) -> Result<Executed, ExecError> {
        let inner = &*self.inner;
        let tracked = Arc::new(Mutex::new(Tracked {
            namespace: plan.config.namespace().to_owned(),
            ..Tracked::default()
        }));
        let mut guard = DropGuard {
            client: inner.client.clone(),
            tracked: Arc::clone(&tracked),
            armed: true,
        };
        let timeout = inner
            .timeout
            .unwrap_or(inner.job_options.active_deadline + Duration::from_secs(120));
        let tails = Tails::default();
        let result = {
            let drive = pin!(self.drive(plan, events, &tracked, &tails));
            tokio::select! {
                biased;
                () = cancel.cancelled() => Err(exec_error(FailureReason::Cancelled)),
                () = tokio::time::sleep(timeout) => Err(exec_error(FailureReason::Timeout { after: timeout })),
                r = drive => r,
            }
        };
        let out = self.finish(result, &tracked, &tails, events).await;
        guard.armed = false;
        out
    }
}

impl KubeRunner {
    /// Cleans up per policy and turns the run's result into the executor's answer.
    async fn finish(
        &self,
        result: Result<Verdict, ExecError>,
        tracked: &Mutex<Tracked>,
        tails: &Tails,
        events: &EventSink,
    ) -> Result<Executed, ExecError> {
        let inner = &*self.inner;
        let snapshot = lock(tracked).clone();
        let job_ref = snapshot
            .job
            .as_ref()
            .map(|(name, _)| ObjectRef::namespaced("Job", &snapshot.namespace, name));
        let result = match result {
            Ok(Verdict::Failed(reason)) => Err(exec_error(with_last_lines(reason, tails))),
            other => other,
        };
        let (delete, wait) = match &result {
            Ok(_) => (inner.cleanup.delete_on_success, false),
            Err(e)
                if matches!(
                    e.reason(),
                    FailureReason::Cancelled | FailureReason::Timeout { .. }
                ) =>
            {
                (true, true)
            }
            Err(_) => (inner.cleanup.delete_on_failure, true),
        };
        let mut kept = snapshot.shared.clone();
        let owned_job_left = snapshot.created && !snapshot.gone && snapshot.job.is_some();
        let mut deleted = false;
        if delete || (snapshot.job.is_none() && snapshot.config_map.is_some()) {
            let policy = if wait {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            };
            let started = Instant::now();
            deleted = delete_created(&inner.client, &snapshot, policy).await;
            tracing::debug!(elapsed = ?started.elapsed(), deleted, "deleted what the run created");
            if deleted
                && wait
                && let Some((name, uid)) = &snapshot.job
            {
                let gone = tokio::time::timeout(
                    inner.cleanup_timeout,
                    wait_job_and_pods_gone(&inner.client, &snapshot.namespace, name, uid),
                )
                .await;
                if !matches!(gone, Ok(Ok(()))) {
                    tracing::warn!(job = %name, "the Job or its Pods were not gone within the cleanup timeout");
                }
            }
        }
        if owned_job_left && !(delete && deleted) {
            if let Some(job) = &job_ref {
                kept.push(job.clone());
            }
            kept.extend(
                snapshot
                    .pods
                    .iter()
                    .map(|p| ObjectRef::namespaced("Pod", &snapshot.namespace, p)),
            );
            if let Some(cm) = &snapshot.config_map {
                kept.push(ObjectRef::namespaced("ConfigMap", &snapshot.namespace, cm));
            }
        }
        events.send(BuildEvent::CleanedUp { kept: kept.clone() });
        match result {
            Ok(Verdict::Built(digest)) => Ok(Executed::Built {
                digest,
                job: job_ref.unwrap_or_else(|| ObjectRef::namespaced("Job", &snapshot.namespace, "")),
                kept,
            }),
            Ok(Verdict::Skipped(digest)) => Ok(Executed::Skipped {
                digest,
                job: job_ref.unwrap_or_else(|| ObjectRef::namespaced("Job", &snapshot.namespace, "")),
                kept,
            }),
            Ok(Verdict::Failed(reason)) => Err(exec_error(reason)),
            Err(e) => {
                let job = e.job().cloned().or(job_ref);
                Err(e.with_job(job).with_kept(kept))
            }
        }
    }

    /// Everything from render to verdict.
    async fn drive(
        &self,
        plan: &BuildPlan,
        events: &EventSink,
        tracked: &Mutex<Tracked>,
        tails: &Tails,
    ) -> Result<Verdict, ExecError> {
        let inner = &*self.inner;
        let config = &plan.config;
        let invalid = |e: crate::Error| {
            exec_error(FailureReason::Invalid {
                message: e.to_string(),
            })
            .with_source(e)
        };
        let mut manifests = self.render(config).map_err(invalid)?;
        let namespace = manifests.namespace_name().to_owned();
        let job_name = manifests.job_name().to_owned();

        let mut exec_context = None;
        if let ContextSource::LocalDir(dir) = config.context() {
            let packed = self.pack(dir, config.dockerfile(), events).await?;
            match inner.upload {
                UploadMethod::Registry => {
                    let store = inner.blob_store.as_ref().ok_or_else(|| {
                        exec_error(FailureReason::Invalid {
                            message: "a local context uploaded to the registry needs a blob store (the registry client); \
                                      set one, or upload over exec"
                                .to_owned(),
                        })
                    })?;
                    let pushed = tokio::time::timeout(
                        inner.upload_timeout,
                        store.push_blob(config.image(), packed.data.clone()),
                    )
                    .await
                    .map_err(|_| {
                        exec_error(FailureReason::Context {
                            message: format!(
                                "uploading the context took longer than {:?}",
                                inner.upload_timeout
                            ),
                        })
                    })?
                    .map_err(|e| {
                        exec_error(FailureReason::Context {
                            message: format!(
                                "cannot push the context blob to {}: {e}",
                                config.image().name()
                            ),
                        })
                        .with_source(e)
                    })?;
                    events.send(BuildEvent::ContextUploaded {
                        bytes: packed.data.len() as u64,
                        via: UploadVia::Registry {
                            digest: pushed.clone(),
                        },
                    });
                    manifests = manifests.with_context_blob(&pushed).map_err(invalid)?;
                }
                UploadMethod::Exec => exec_context = Some(packed.data),
            }
        }

        self.apply(&manifests, events, tracked).await?;

        let jobs: Api<Job> = Api::namespaced(inner.client.clone(), &namespace);
        let pods: Api<Pod> = Api::namespaced(inner.client.clone(), &namespace);
        for _ in 0..CREATE_ATTEMPTS {
            let job = self
                .create_or_attach(plan, &manifests, &jobs, events, tracked)
                .await?;
            let uid = job.uid().unwrap_or_default();
            if manifests
                .config_map
                .labels()
                .get(LABEL_INSTANCE)
                .is_some_and(|i| *i == job_name)
                && let Err(e) = apply::own_config_map(
                    &inner.client,
                    &manifests.config_map,
                    &job_name,
                    &uid,
                    &inner.apply,
                )
                .await
            {
                tracing::warn!(error = %e, "cannot make the ConfigMap owned by its Job; it is deleted explicitly");
            }
            match self
                .watch(
                    &jobs,
                    &pods,
                    &job_name,
                    &uid,
                    exec_context.clone(),
                    events,
                    tracked,
                    tails,
                )
                .await?
            {
                Stop::Verdict(v) => return Ok(v),
                Stop::Reattach => {
                    tracing::debug!(job = %job_name, "the attached Job vanished; creating it again");
                }
            }
        }
        Err(exec_error(FailureReason::Cluster {
            action: format!("create job {namespace}/{job_name}"),
            message: "the Job kept disappearing before a verdict".to_owned(),
            status: None,
        }))
    }

    async fn pack(
        &self,
        dir: &std::path::Path,
        dockerfile: &str,
        events: &EventSink,
    ) -> Result<context::PackedContext, ExecError> {
        let (dir, dockerfile, options) = (dir.to_owned(), dockerfile.to_owned(), self.inner.pack.clone());
        let packing = tokio::task::spawn_blocking(move || context::pack(&dir, &dockerfile, &options));
        let packed = tokio::time::timeout(self.inner.upload_timeout, packing)
            .await
            .map_err(|_| {
                exec_error(FailureReason::Context {
                    message: format!(
                        "packing the context took longer than {:?}",
                        self.inner.upload_timeout
                    ),
                })
            })?
            .map_err(|e| {
                exec_error(FailureReason::Context {
                    message: format!("packing task failed: {e}"),
                })
            })?
            .map_err(|e| {
                exec_error(FailureReason::Context {
                    message: e.to_string(),
                })
                .with_source(e)
            })?;
        events.send(BuildEvent::ContextPacked {
            entries: packed.entries,
            bytes: packed.data.len() as u64,
            digest: packed.digest.clone(),
        });
        Ok(packed)
    }

    /// Applies the namespace's shared objects (once per runner) and the build's own.
    async fn apply(
        &self,
        manifests: &BuildManifests,
        events: &EventSink,
        tracked: &Mutex<Tracked>,
    ) -> Result<(), ExecError> {
        let inner = &*self.inner;
        let namespace = manifests.namespace_name().to_owned();
        let mut applied = Vec::new();
        let done = inner
            .setup_done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&namespace);
        if !done && inner.setup != Setup::Never {
            match apply::apply_setup(&inner.client, manifests, &inner.apply).await {
                Ok(objects) => applied.extend(objects),
                Err(e) if e.is_forbidden() && inner.setup == Setup::IfAllowed => {
                    tracing::debug!(object = %e.object, "not allowed to apply the namespace's shared objects; assuming an administrator did");
                }
                Err(e) => {
                    let reason = e.reason.clone();
                    return Err(exec_error(reason).with_source(e));
                }
            }
            inner
                .setup_done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(namespace.clone());
        }
        {
            let mut t = lock(tracked);
            let per_build = manifests.config_map.labels().contains_key(LABEL_INSTANCE);
            let cm = manifests.config_map.name_any();
            if per_build {
                t.config_map = Some(cm);
            } else {
                t.shared.push(ObjectRef::namespaced("ConfigMap", &namespace, cm));
            }
            if let Some(secret) = &manifests.secret {
                t.shared.push(apply::object_ref(secret));
            }
        }
        let objects = apply::apply_build(&inner.client, manifests, &inner.apply)
            .await
            .map_err(|e| {
                let reason = e.reason.clone();
                exec_error(reason).with_source(e)
            })?;
        applied.extend(objects);
        events.send(BuildEvent::Applied { objects: applied });
        Ok(())
    }

    /// Creates the Job, or finds the same build's Job and attaches to it.
    async fn create_or_attach(
        &self,
        plan: &BuildPlan,
        manifests: &BuildManifests,
        jobs: &Api<Job>,
        events: &EventSink,
        tracked: &Mutex<Tracked>,
    ) -> Result<Job, ExecError> {
        let name = manifests.job_name().to_owned();
        let namespace = manifests.namespace_name().to_owned();
        let action = || format!("create job {namespace}/{name}");
        let hash = plan.config.build_hash().to_string();
        for _ in 0..CREATE_ATTEMPTS {
            match jobs.create(&PostParams::default(), &manifests.job).await {
                Ok(job) => {
                    {
                        let mut t = lock(tracked);
                        t.job = Some((name.clone(), job.uid().unwrap_or_default()));
                        t.created = true;
                        t.gone = false;
                    }
                    events.send(BuildEvent::Queued {
                        job: name.clone(),
                        namespace: namespace.clone(),
                    });
                    return Ok(job);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(api_error(action(), e)),
            }
            let Some(existing) = jobs
                .get_opt(&name)
                .await
                .map_err(|e| api_error(format!("get job {namespace}/{name}"), e))?
            else {
                continue;
            };
            let uid = existing.uid().unwrap_or_default();
            if existing.meta().deletion_timestamp.is_some() {
                self.wait_gone(jobs, &name, &uid).await;
                continue;
            }
            let theirs = existing
                .annotations()
                .get(ANNOTATION_BUILD_HASH)
                .cloned()
                .unwrap_or_default();
            if theirs != hash {
                return Err(exec_error(FailureReason::Conflict {
                    object: format!("job/{namespace}/{name}"),
                    message: format!(
                        "a Job of this name exists for another build ({ANNOTATION_BUILD_HASH} {theirs:?}, this build {hash})"
                    ),
                }));
            }
            let reuse = match state::job_finished(&existing) {
                None => true,
                Some(true) => plan.reason != PlanReason::Forced,
                Some(false) => false,
            };
            if reuse {
                {
                    let mut t = lock(tracked);
                    t.job = Some((name.clone(), uid));
                    t.created = false;
                    t.gone = false;
                }
                events.send(BuildEvent::Attached {
                    job: name.clone(),
                    namespace: namespace.clone(),
                });
                return Ok(existing);
            }
            // A failed (or, when forced, a succeeded) run of the same build: replace it.
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Foreground),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match jobs.delete(&name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(api_error(format!("delete job {namespace}/{name}"), e)),
            }
            self.wait_gone(jobs, &name, &uid).await;
        }
        Err(exec_error(FailureReason::Cluster {
            action: action(),
            message: "a Job of the same name kept coming and going".to_owned(),
            status: Some(409),
        }))
    }

    async fn wait_gone(&self, jobs: &Api<Job>, name: &str, uid: &str) {
        let gone = tokio::time::timeout(
            self.inner.cleanup_timeout,
            await_condition(jobs.clone(), name, conditions::is_deleted(uid)),
        )
        .await;
        if !matches!(gone, Ok(Ok(_))) {
            tracing::warn!(job = %name, "an old Job of this build was not gone in time");
        }
    }

    /// Follows the Job and its Pods to a verdict.
    #[allow(clippy::too_many_arguments)]
    async fn watch(
        &self,
        jobs: &Api<Job>,
        pods: &Api<Pod>,
        name: &str,
        uid: &str,
        exec_context: Option<bytes::Bytes>,
        events: &EventSink,
        tracked: &Mutex<Tracked>,
        tails: &Tails,
    ) -> Result<Stop, ExecError> {
        let inner = &*self.inner;
        let mut job_watch = pin!(
            watcher::watcher(
                jobs.clone(),
                watcher::Config::default().fields(&format!("metadata.name={name}"))
            )
            .default_backoff()
        );
        let mut pod_watch = pin!(
            watcher::watcher(
                pods.clone(),
                watcher::Config::default().labels(&format!("controller-uid={uid}"))
            )
            .default_backoff()
        );
        let created = lock(tracked).created;
        let mut tracker = Tracker::default();
        let mut logs: JoinSet<()> = JoinSet::new();
        let mut upload: Option<tokio::task::JoinHandle<Result<(), String>>> = None;
        let mut job_in_init = false;
        let mut timer: Option<(Instant, Verdict)> = None;
        let far = Instant::now() + Duration::from_secs(86_400 * 365);

        let verdict = loop {
            let wake = timer.as_ref().map_or(far, |(at, _)| *at);
            tokio::select! {
                event = job_watch.next() => {
                    let gone = match event {
                        None => return Err(exec_error(FailureReason::Cluster {
                            action: format!("watch job {name}"),
                            message: "the watch ended".to_owned(),
                            status: None,
                        })),
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "job watch error; the watcher resumes");
                            false
                        }
                        Some(Ok(Event::Init)) => { job_in_init = false; false }
                        Some(Ok(Event::InitApply(job) | Event::Apply(job))) => {
                            if job.uid().as_deref() == Some(uid) {
                                job_in_init = true;
                                if let Some(Action::AwaitPod(v)) = tracker.job(&job) {
                                    if matches!(v, Verdict::Failed(FailureReason::DeadlineExceeded { .. })) {
                                        break v;
                                    }
                                    if timer.is_none() {
                                        timer = Some((Instant::now() + POD_GRACE, v));
                                    }
                                }
                                false
                            } else {
                                true
                            }
                        }
                        Some(Ok(Event::InitDone)) => !job_in_init,
                        Some(Ok(Event::Delete(job))) => job.uid().as_deref() == Some(uid),
                    };
                    if gone {
                        lock(tracked).gone = true;
                        if !created {
                            return Ok(Stop::Reattach);
                        }
                        break Verdict::Failed(FailureReason::JobDeletedExternally);
                    }
                }
                event = pod_watch.next() => {
                    let pod = match event {
                        None => return Err(exec_error(FailureReason::Cluster {
                            action: format!("watch the pods of job {name}"),
                            message: "the watch ended".to_owned(),
                            status: None,
                        })),
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "pod watch error; the watcher resumes");
                            continue;
                        }
                        Some(Ok(Event::InitApply(pod) | Event::Apply(pod))) => pod,
                        Some(Ok(_)) => continue,
                    };
                    let pod_name = pod.name_any();
                    lock(tracked).pods.insert(pod_name.clone());
                    let (actions, verdict) = tracker.pod(&pod, exec_context.is_some());
                    for action in actions {
                        match action {
                            Action::Emit(e) => events.send(e),
                            Action::FollowLogs(container) => {
                                logs.spawn(logs::follow(
                                    pods.clone(),
                                    pod_name.clone(),
                                    container,
                                    events.clone(),
                                    tails.clone(),
                                    inner.log_tail_lines,
                                ));
                            }
                            Action::Upload => {
                                if let Some(data) = exec_context.clone() {
                                    upload = Some(tokio::spawn(tokio::time::timeout(
                                        inner.upload_timeout,
                                        upload::exec_upload(pods.clone(), pod_name.clone(), data, events.clone()),
                                    ).map_timeout()));
                                }
                            }
                            Action::Unschedulable(message) => {
                                if let Some(t) = inner.unschedulable_timeout && timer.is_none() {
                                    timer = Some((Instant::now() + t, Verdict::Failed(FailureReason::Unschedulable { message })));
                                }
                            }
                            Action::Scheduled => {
                                if matches!(timer, Some((_, Verdict::Failed(FailureReason::Unschedulable { .. })))) {
                                    timer = None;
                                }
                            }
                            Action::AwaitPod(_) => {}
                        }
                    }
                    if let Some(v) = verdict {
                        break v;
                    }
                }
                result = async { upload.as_mut().expect("guarded by the condition").await }, if upload.is_some() => {
                    upload = None;
                    let failed = match result {
                        Ok(Ok(())) => None,
                        Ok(Err(message)) => Some(message),
                        Err(e) => Some(format!("upload task failed: {e}")),
                    };
                    if let Some(message) = failed {
                        tracing::debug!(%message, "exec upload failed; waiting briefly for the init container's own verdict");
                        if timer.is_none() {
                            timer = Some((Instant::now() + UPLOAD_GRACE, Verdict::Failed(FailureReason::Context { message })));
                        }
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    if let Some((_, v)) = timer.take() {
                        break v;
                    }
                }
            }
        };
        if let Some(task) = upload {
            task.abort();
        }
        // The streams end when their containers do; give them a moment to deliver the last lines.
        let draining = Instant::now();
        let drained = tokio::time::timeout(inner.log_drain_timeout, async {
            while logs.join_next().await.is_some() {}
        })
        .await;
        tracing::debug!(elapsed = ?draining.elapsed(), complete = drained.is_ok(), "log streams drained");
        Ok(Stop::Verdict(verdict))
    }
}

/// Maps a timed-out upload to its message.
trait MapTimeout {
    fn map_timeout(self) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

impl<F> MapTimeout for tokio::time::Timeout<F>
where
    F: std::future::Future<Output = Result<(), String>> + Send,
{
    async fn map_timeout(self) -> Result<(), String> {
        match self.await {
            Ok(r) => r,
            Err(_) => Err("the context upload timed out".to_owned()),
        }
    }
}

/// Puts the kept log lines into a failure that reports them.
fn with_last_lines(reason: FailureReason, tails: &Tails) -> FailureReason {
    match reason {
        FailureReason::ExitCode {
            container,
            code,
            message,
            ..
        } => FailureReason::ExitCode {
            last_lines: tails.lines(&container),
            container,
            code,
            message,
        },
        FailureReason::OomKilled { container, .. } => FailureReason::OomKilled {
            last_lines: tails.lines(&container),
            container,
        },
        other => other,
    }
}
