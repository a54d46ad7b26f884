//! The Kubernetes executor: runs a [`BuildPlan`] as a Job and follows it to a verdict.
//!
//! [`KubeRunner`] implements the core flow's [`BuildExecutor`]. For one build it
//! 1. for a local directory, hashes its files first ([`crate::context::hash`]): their digest is
//!    part of the build hash and so of the Job's name, so changed files are another build that
//!    never attaches to a Job building the old ones
//!    ([`BuildConfig::with_context_digest`](kaniko_builder_core::BuildConfig::with_context_digest));
//! 2. renders the manifests ([`render`]); for a local directory, packs it as a stream, in
//!    bounded memory whatever its size ([`crate::context::pack_stream`]), either straight into a
//!    blob of the destination repository (the default, [`UploadMethod::Registry`]) or into the
//!    init container once it waits ([`UploadMethod::Exec`]), checking that the files packed are
//!    the files hashed; progress comes as [`BuildEvent::ContextProgress`], and a stall (no
//!    progress for a while), not a long transfer, fails it;
//! 3. applies the namespace's objects once per runner ([`Setup`]) and the build's ConfigMap (and
//!    a Secret shared by name) with server-side apply ([`crate::apply`]);
//! 4. creates the Job. When a Job of that name exists: the same build (same
//!    `kaniko-builder.io/build-hash`) still running is **attached to** ([`BuildEvent::Attached`]),
//!    never duplicated; the same build finished with success is reported again (unless forced);
//!    a failed or (when forced) succeeded one is deleted and replaced; another build's Job of the
//!    same name is a [`FailureReason::Conflict`]; then makes the per-credentials Secret exist,
//!    owned by the Job ([`apply::own_secret`]);
//! 5. watches the Job (by name) and its Pods (by `controller-uid`) with kube-runtime watchers,
//!    which resume after a disconnect — no polling anywhere — and turns their states into
//!    [`BuildEvent`]s and a verdict read from the containers' termination messages;
//!    A node that stops reporting (the Node not `Ready`, when the client may watch Nodes; or
//!    the Pod marked not ready by the node controller, which needs no permission) fails the build
//!    with [`FailureReason::NodeLost`] after [`KubeRunnerBuilder::node_lost_timeout`];
//! 6. follows the `kaniko-init` and `image-builder` logs as lines ([`BuildEvent::Log`]), keeping the
//!    last [`KubeRunnerBuilder::log_tail_lines`] of each for the failure report;
//! 7. cleans up per [`CleanupPolicy`], and says what was kept.
//!
//! # Concurrent callers
//! Calls for the same build (the same [`BuildPlan::key`]: namespace, build hash, both forced or
//! both not) that overlap in one runner (or its clones) share one run: one Job, every caller gets
//! the events from when it joined (the Job's creation reads as [`BuildEvent::Attached`] to all
//! but the first; a late joiner gets an `Attached` first) and the same result. A caller that is
//! cancelled leaves; the build goes on for the others and is cancelled with the last one. Across
//! runners and processes, callers attach to the same Job by name instead. A caller's
//! [`EventSink`] callback runs under no lock of the runner, so it may call back into it.
//!
//! # Cleanup
//! - The per-build ConfigMap is made owned by the Job right after the Job exists, so the garbage
//!   collector removes it with the Job — also when the Job's `ttlSecondsAfterFinished` (the
//!   backstop) removes a Job kept after a failure.
//! - Success: the Job is deleted with **Background** propagation and `run` returns at once: the
//!   Pod has terminated and the ConfigMap is owned by the Job, so the garbage collector removes
//!   both within moments and nothing waits for that (one request; a ConfigMap that could not be
//!   made owned is deleted explicitly).
//! - Failure: the Job, its Pod and its ConfigMap are kept for inspection (default), or deleted
//!   like a cancellation ([`CleanupPolicy::delete_on_failure`]).
//! - Cancellation (the token), the client-side deadline ([`KubeRunnerBuilder::timeout`]): the Job
//!   is deleted with **Foreground** propagation and the run waits (up to
//!   [`KubeRunnerBuilder::cleanup_timeout`]) until the Job is gone, which with Foreground means
//!   its Pods are gone first; the ConfigMap is deleted explicitly: when the run returns,
//!   nothing of it is left (except, rarely, a Pod the Job controller created from a stale cache
//!   while the Job was being deleted: an orphan the garbage collector removes moments later).
//!   With [`CleanupPolicy::delete_on_cancel`] off, a cancelled (or dropped) run leaves the Job
//!   it created running, for another process to attach to.
//! - Dropping the future: the run itself goes on in a task of the current tokio runtime; when
//!   no other caller shares it, it is cancelled and cleans up as above, with nobody waiting. If
//!   that task is dropped too (the runtime shuts down), a guard spawns a Background delete,
//!   which runs only if the runtime still polls it; otherwise the Job's deadline and
//!   `ttlSecondsAfterFinished` are the backstop.
//! - A lost node ([`FailureReason::NodeLost`], see [`KubeRunnerBuilder::node_lost_timeout`]), an
//!   image that could not be pulled within [`KubeRunnerBuilder::image_pull_grace`]
//!   ([`FailureReason::ImagePull`]) and a Pod that could not be scheduled
//!   ([`FailureReason::Unschedulable`]) are cleaned up like a cancellation, whatever the
//!   policy: the build was given up, and its container could otherwise still run and push when
//!   the node comes back, the registry recovers or a node frees up. A Pod to be deleted while its node
//!   is not reporting is force-deleted: its kubelet cannot confirm the deletion.
//! - Only the run that created a Job deletes it: a run attached to another run's Job leaves it.
//! - The per-credentials Secret (`kb-docker-config-<hash>`, the default) is owned by every Job
//!   that mounts it (each run adds its Job right after creating it, before anything else), so
//!   the garbage collector deletes it with the last of them, never while another build's Job is
//!   left: a cancellation deletes its Job, and the Secret stays for the others. It is listed in
//!   what is kept when this run's Job is kept. A Secret shared by name (seed-compatible mode,
//!   `secret_name`) is kept, and always listed in what is kept. When the last other owner of a
//!   Secret goes at the very moment a new Job adds itself, the collector (which deletes with a
//!   uid precondition only, as of 1.20) may delete it under the new Job: while it follows the
//!   Job, the run watches the namespace's `FailedMount` Events and makes the Secret again when
//!   the kubelet reports it missing for the Job's Pod (`secret_keeper`), and the kubelet's next
//!   mount attempt finds it. A Secret collected just *before* a run adds its Job is created
//!   again as well.

mod cleanup;
mod deadlines;
mod flight;
mod handover;
mod logs;
mod options;
mod secret_keeper;
mod state;
#[cfg(test)]
mod tests;
mod upload;
mod watch;

use std::collections::HashSet;
use std::fmt;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kaniko_builder_core::flow::{
    BlobStore, BuildEvent, BuildExecutor, BuildPlan, BuildReason, CancellationToken, EventSink, ExecError,
    Executed, FailureReason, ObjectRef,
};
use kube::api::{Api, DeleteParams, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Resource as _, ResourceExt as _};

use crate::apply::{self, ApplyParams};
use crate::context::PackOptions;
use crate::manifest::{
    ANNOTATION_BUILD_HASH, ANNOTATION_RUN, BuildManifests, JobOptions, LABEL_INSTANCE, render,
};
use cleanup::{DropGuard, Tracked, delete_created, force_delete_pods, lock, wait_job_and_pods_gone};
use handover::LocalContext;
use logs::Tails;
pub use options::{
    CleanupPolicy, DEFAULT_CLEANUP_TIMEOUT, DEFAULT_IMAGE_PULL_GRACE, DEFAULT_LOG_DRAIN_TIMEOUT,
    DEFAULT_LOG_TAIL_LINES, DEFAULT_NODE_LOST_TIMEOUT, DEFAULT_UNSCHEDULABLE_TIMEOUT,
    DEFAULT_UPLOAD_STALL_TIMEOUT, KubeRunnerBuilder, Setup, UploadMethod,
};
use state::Verdict;
pub use state::job_finished;
use watch::Stop;

/// How long the Pod watch may lag behind a finished Job before the Job's word is taken.
const POD_GRACE: Duration = Duration::from_secs(2);
/// How long an init container may keep running after an exec upload failed.
const UPLOAD_GRACE: Duration = Duration::from_secs(10);
/// Create attempts when a Job of the same name comes and goes meanwhile.
const CREATE_ATTEMPTS: usize = 5;

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
    upload_stall_timeout: Duration,
    unschedulable_timeout: Option<Duration>,
    node_lost_timeout: Option<Duration>,
    image_pull_grace: Duration,
    cleanup_timeout: Duration,
    log_drain_timeout: Duration,
    log_tail_lines: usize,
    pack: PackOptions,
    apply: ApplyParams,
    setup: Setup,
    setup_done: Mutex<HashSet<String>>,
    flights: flight::Flights,
    /// Whether the client may list and watch Nodes (asked once).
    node_access: std::sync::OnceLock<bool>,
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
            upload_stall_timeout: DEFAULT_UPLOAD_STALL_TIMEOUT,
            unschedulable_timeout: Some(DEFAULT_UNSCHEDULABLE_TIMEOUT),
            node_lost_timeout: Some(DEFAULT_NODE_LOST_TIMEOUT),
            image_pull_grace: DEFAULT_IMAGE_PULL_GRACE,
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

/// What to do with a Job of the build's name that already exists.
enum Existing {
    /// Being deleted: wait, then create.
    Deleting,
    /// The same build, running (or finished well and not forced): follow it.
    Attach,
    /// The same build, failed (or finished and forced): delete it, then create.
    Replace,
}

/// `POST` the Job; `None` when one of that name exists (409). Until an answer comes the Job
/// may exist without this run knowing its uid, so `creating` names it for the cleanup.
async fn create_job(
    jobs: &Api<Job>,
    job: &Job,
    run: &str,
    tracked: &Mutex<Tracked>,
) -> Result<Option<Job>, ExecError> {
    let name = job.name_any();
    lock(tracked).creating = Some((name.clone(), run.to_owned()));
    let created = jobs.create(&PostParams::default(), job).await;
    let answered = match &created {
        Ok(_) => true,
        // A 5xx (e.g. 504 "may still be processing") leaves it open, like a lost answer.
        Err(kube::Error::Api(s)) => s.code < 500,
        Err(_) => false,
    };
    if answered {
        lock(tracked).creating = None;
    }
    match created {
        Ok(job) => Ok(Some(job)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(e) => {
            let namespace = job.namespace().unwrap_or_default();
            Err(api_error(format!("create job {namespace}/{name}"), e))
        }
    }
}

/// Attach, replace or wait for `existing`; a Job of another build under the name is a conflict.
fn existing_job(existing: &Job, plan: &BuildPlan, hash: &str) -> Result<Existing, ExecError> {
    if existing.meta().deletion_timestamp.is_some() {
        return Ok(Existing::Deleting);
    }
    let theirs = existing
        .annotations()
        .get(ANNOTATION_BUILD_HASH)
        .cloned()
        .unwrap_or_default();
    if theirs != hash {
        let (namespace, name) = (existing.namespace().unwrap_or_default(), existing.name_any());
        return Err(exec_error(FailureReason::Conflict {
            object: format!("job/{namespace}/{name}"),
            message: format!(
                "a Job of this name exists for another build ({ANNOTATION_BUILD_HASH} {theirs:?}, this build {hash})"
            ),
        }));
    }
    let attach = match state::job_finished(existing) {
        None => true,
        Some(true) => plan.reason != BuildReason::Forced,
        Some(false) => false,
    };
    Ok(if attach {
        Existing::Attach
    } else {
        Existing::Replace
    })
}

/// Deletes the Job `name` with this `uid` (Foreground, so its Pods go first); gone already is fine.
async fn delete_job(jobs: &Api<Job>, name: &str, uid: &str) -> Result<(), ExecError> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match jobs.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => {
            let namespace = jobs.namespace().unwrap_or_default();
            Err(api_error(format!("delete job {namespace}/{name}"), e))
        }
    }
}

/// The run now follows the Job `name` (`created` by it, or attached to).
fn track_job(tracked: &Mutex<Tracked>, name: &str, uid: String, created: bool) {
    let mut t = lock(tracked);
    t.job = Some((name.to_owned(), uid));
    t.created = created;
    t.gone = false;
    t.node_lost = false;
}

/// An option the manifests refuse, as the run's failure.
fn invalid(e: crate::Error) -> ExecError {
    exec_error(FailureReason::Invalid {
        message: e.to_string(),
    })
    .with_source(e)
}

fn exec_error(reason: FailureReason) -> ExecError {
    ExecError::new(reason)
}

fn api_error(action: String, e: kube::Error) -> ExecError {
    ExecError::new(apply::cluster_failure(action, &e)).with_source(e)
}

#[async_trait::async_trait]
impl BuildExecutor for KubeRunner {
    /// Runs the build, or joins the same build already running in this runner (see the module
    /// docs, "Concurrent callers").
    async fn execute(
        &self,
        plan: &BuildPlan,
        events: &EventSink,
        cancel: CancellationToken,
    ) -> Result<Executed, ExecError> {
        // A local directory's content is part of the build's identity: hashed before the
        // build is shared or its Job named.
        match handover::pin_content(plan, &self.inner.pack, &cancel).await? {
            Some(pinned) => self.execute_shared(&pinned, events, cancel).await,
            None => self.execute_shared(plan, events, cancel).await,
        }
    }
}

impl KubeRunner {
    /// One run of a build, from render to cleanup.
    async fn execute_once(
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
            armed: inner.cleanup.delete_on_cancel,
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

    /// Cleans up per policy and turns the run's result into the executor's answer.
    async fn finish(
        &self,
        result: Result<Verdict, ExecError>,
        tracked: &Mutex<Tracked>,
        tails: &Tails,
        events: &EventSink,
    ) -> Result<Executed, ExecError> {
        let inner = &*self.inner;
        let adopted = self.adopt_unanswered_create(tracked).await;
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
            // A Job this run created without hearing so was never followed, or one that cannot
            // run (its Secret could not be made): it goes.
            _ if snapshot.discard => (true, true),
            Err(e) if matches!(e.reason(), FailureReason::Cancelled) => {
                (inner.cleanup.delete_on_cancel, true)
            }
            _ if adopted => (true, true),
            Ok(_) => (inner.cleanup.delete_on_success, false),
            Err(e)
                if matches!(
                    e.reason(),
                    FailureReason::Timeout { .. }
                        | FailureReason::NodeLost { .. }
                        | FailureReason::ImagePull { .. }
                        | FailureReason::Unschedulable { .. }
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
            // On success nobody waits for the ConfigMap: the garbage collector removes it with
            // the Job. After a cancellation it goes before the run returns.
            deleted = delete_created(&inner.client, &snapshot, policy, !wait).await;
            if deleted && snapshot.created && snapshot.node_lost {
                force_delete_pods(&inner.client, &snapshot).await;
            }
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
                    .keys()
                    .map(|p| ObjectRef::namespaced("Pod", &snapshot.namespace, p)),
            );
            if let Some(cm) = &snapshot.config_map {
                kept.push(ObjectRef::namespaced("ConfigMap", &snapshot.namespace, cm));
            }
            // Owned by the Job (among others, maybe): it stays as long as the Job does.
            if let Some(secret) = &snapshot.secret {
                kept.push(ObjectRef::namespaced("Secret", &snapshot.namespace, secret));
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

    /// A create whose answer never came (the run was cancelled or timed out during the request,
    /// or the connection broke after the API server took it) may have made the Job: if a Job of
    /// that name carries this run's id, it is this run's, and is tracked for cleanup. Returns
    /// whether one was found.
    async fn adopt_unanswered_create(&self, tracked: &Mutex<Tracked>) -> bool {
        let (namespace, (name, run)) = {
            let t = lock(tracked);
            match (&t.job, &t.creating) {
                (None, Some(creating)) => (t.namespace.clone(), creating.clone()),
                _ => return false,
            }
        };
        let jobs: Api<Job> = Api::namespaced(self.inner.client.clone(), &namespace);
        match jobs.get_opt(&name).await {
            Ok(Some(job)) if job.annotations().get(ANNOTATION_RUN) == Some(&run) => {
                tracing::info!(job = %name, "the Job was created though its create call got no answer; removing it");
                let mut t = lock(tracked);
                t.job = Some((name, job.uid().unwrap_or_default()));
                t.created = true;
                t.gone = false;
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(job = %name, error = %e, "cannot tell whether an unanswered create made the Job");
                false
            }
        }
    }

    /// Everything from render to verdict: render, hand over the context, apply, then create
    /// (or attach to) the Job and follow it, again if an attached Job vanishes.
    async fn drive(
        &self,
        plan: &BuildPlan,
        events: &EventSink,
        tracked: &Mutex<Tracked>,
        tails: &Tails,
    ) -> Result<Verdict, ExecError> {
        let inner = &*self.inner;
        let mut manifests = self.render(&plan.config).map_err(invalid)?;
        if plan.reason == BuildReason::Absent {
            // The caller's probe found no image: a registry that refuses crane's credentials
            // defers to the executor's rather than failing the build.
            manifests = manifests.with_caller_probe_absent();
        }
        let namespace = manifests.namespace_name().to_owned();
        let job_name = manifests.job_name().to_owned();
        let (manifests, exec_context) = self.hand_over_context(&plan.config, manifests, events).await?;

        self.apply(&manifests, events, tracked).await?;

        let jobs: Api<Job> = Api::namespaced(inner.client.clone(), &namespace);
        let pods: Api<Pod> = Api::namespaced(inner.client.clone(), &namespace);
        for _ in 0..CREATE_ATTEMPTS {
            let job = Box::pin(self.create_or_attach(plan, &manifests, &jobs, events, tracked)).await?;
            let uid = job.uid().unwrap_or_default();
            self.own_objects(&manifests, &job, tracked).await?;
            let watch = self.watch(
                &jobs,
                &pods,
                &job_name,
                &uid,
                exec_context.clone(),
                events,
                tracked,
                tails,
            );
            let keeper = secret_keeper::keep(&inner.client, &manifests, &job, &inner.apply);
            let stop = tokio::select! {
                stop = Box::pin(watch) => stop?,
                never = keeper => match never {},
            };
            match stop {
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

    /// A local directory context: packed straight into the registry as a blob (its digest set
    /// on the init container), or kept to be packed into the Pod over exec. Other contexts
    /// need nothing.
    async fn hand_over_context(
        &self,
        config: &kaniko_builder_core::BuildConfig,
        manifests: BuildManifests,
        events: &EventSink,
    ) -> Result<(BuildManifests, Option<LocalContext>), ExecError> {
        let inner = &*self.inner;
        let Some(local) = LocalContext::of(config, &inner.pack) else {
            return Ok((manifests, None));
        };
        if inner.upload == UploadMethod::Exec {
            return Ok((manifests, Some(local)));
        }
        let store = inner.blob_store.as_ref().ok_or_else(|| {
            exec_error(FailureReason::Invalid {
                message:
                    "a local context uploaded to the registry needs a blob store (the registry client); \
                          set one, or upload over exec"
                        .to_owned(),
            })
        })?;
        let pushed = handover::push(store.as_ref(), config.image(), &local, events).await?;
        let manifests = manifests.with_context_blob(&pushed).map_err(invalid)?;
        Ok((manifests, None))
    }

    /// Makes the build's own objects owned by its Job: first the Secret (the Pod cannot start
    /// without it), then the build's ConfigMap (best effort: one left unowned is deleted
    /// explicitly).
    async fn own_objects(
        &self,
        manifests: &BuildManifests,
        job: &Job,
        tracked: &Mutex<Tracked>,
    ) -> Result<(), ExecError> {
        let inner = &*self.inner;
        let job_name = manifests.job_name();
        self.own_secret(manifests, job, tracked).await?;
        let own_config_map = manifests
            .config_map
            .labels()
            .get(LABEL_INSTANCE)
            .is_some_and(|i| i == job_name);
        if !own_config_map {
            return Ok(());
        }
        let uid = job.uid().unwrap_or_default();
        match apply::own_config_map(&inner.client, &manifests.config_map, job_name, &uid, &inner.apply).await
        {
            Ok(()) => lock(tracked).config_map_owned = true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot make the ConfigMap owned by its Job; it is deleted explicitly");
            }
        }
        Ok(())
    }

    /// Makes the per-credentials Secret exist, owned by `job` (see [`apply::own_secret`]), when
    /// the Job mounts it: always for a Job this run created; for a Job it attached to, only when
    /// that Job was made with the same credentials (a Job made with others mounts another
    /// Secret, which its own run made). A Job this run created whose Secret cannot be made
    /// would never start: the run fails and the Job is deleted.
    async fn own_secret(
        &self,
        manifests: &BuildManifests,
        job: &Job,
        tracked: &Mutex<Tracked>,
    ) -> Result<(), ExecError> {
        let Some(secret) = manifests
            .secret
            .as_ref()
            .filter(|_| manifests.secret_per_credentials())
        else {
            return Ok(());
        };
        let name = secret.name_any();
        if !mounts_secret(job, &name) {
            return Ok(());
        }
        let inner = &*self.inner;
        let created = lock(tracked).created;
        match apply::own_secret(
            &inner.client,
            manifests,
            &job.name_any(),
            &job.uid().unwrap_or_default(),
            &inner.apply,
        )
        .await
        {
            Ok(_) => {
                lock(tracked).secret = Some(name);
                Ok(())
            }
            Err(e) if created => {
                lock(tracked).discard = true;
                let reason = e.reason.clone();
                Err(exec_error(reason).with_source(e))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot add the attached Job to the owners of its Secret");
                Ok(())
            }
        }
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
            // A per-credentials Secret is made once the Job exists, owned by it.
            if let Some(secret) = manifests
                .secret
                .as_ref()
                .filter(|_| !manifests.secret_per_credentials())
            {
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
        let hash = plan.config.build_hash().to_string();
        let run = cleanup::run_id();
        let mut job = manifests.job.clone();
        job.annotations_mut()
            .insert(ANNOTATION_RUN.to_owned(), run.clone());
        for _ in 0..CREATE_ATTEMPTS {
            if let Some(created) = create_job(jobs, &job, &run, tracked).await? {
                track_job(tracked, &name, created.uid().unwrap_or_default(), true);
                events.send(BuildEvent::Queued {
                    job: name.clone(),
                    namespace: namespace.clone(),
                });
                return Ok(created);
            }
            let Some(existing) = jobs
                .get_opt(&name)
                .await
                .map_err(|e| api_error(format!("get job {namespace}/{name}"), e))?
            else {
                continue;
            };
            let uid = existing.uid().unwrap_or_default();
            match existing_job(&existing, plan, &hash)? {
                Existing::Deleting => self.wait_gone(jobs, &name, &uid).await,
                Existing::Attach => {
                    track_job(tracked, &name, uid, false);
                    events.send(BuildEvent::Attached {
                        job: name.clone(),
                        namespace: namespace.clone(),
                    });
                    return Ok(existing);
                }
                Existing::Replace => {
                    delete_job(jobs, &name, &uid).await?;
                    self.wait_gone(jobs, &name, &uid).await;
                }
            }
        }
        Err(exec_error(FailureReason::Cluster {
            action: format!("create job {namespace}/{name}"),
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
}

/// Whether the Pod template of `job` mounts the Secret `name`.
fn mounts_secret(job: &Job, name: &str) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.volumes.as_ref())
        .is_some_and(|volumes| {
            volumes.iter().any(|v| {
                v.secret
                    .as_ref()
                    .is_some_and(|s| s.secret_name.as_deref() == Some(name))
            })
        })
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
