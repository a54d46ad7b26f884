//! One Pod on the stand-in node, from "bound" to "deleted": the kubelet's pod worker.
//!
//! Order: first status (`Pending`, containers waiting), volumes, image "pull" per container,
//! init containers one by one, then the main containers together; every state change is
//! posted to `pods/status`. A deletion (a `deletionTimestamp`) stops whatever runs (SIGKILL to
//! the container's process group), posts the final status and confirms the deletion with
//! grace period 0.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kaniko_builder_k8s::manifest::BUILDER_CONTAINER;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Shared;
use super::container::{self, Ctx};
use super::fault::PodFaults;
use super::layout;
use super::runtime::Log;
use super::status::{EXIT_SIGKILL, Exit, Kind, PodState};
use super::volumes::{MountError, Volumes};

/// How often a failed volume setup or env resolution is retried.
const RETRY: Duration = Duration::from_secs(1);
/// A failing volume set-up is reported in an Event once per this many attempts.
const FAILED_MOUNT_EVERY: u32 = 10;
/// How long `ErrImagePull` shows before `ImagePullBackOff`.
const ERR_IMAGE_PULL_FOR: Duration = Duration::from_millis(500);
/// The kubelet's longest image pull back-off (it starts at [`NodeOptions::pull_backoff`] and
/// doubles).
///
/// [`NodeOptions::pull_backoff`]: super::NodeOptions::pull_backoff
const MAX_PULL_BACKOFF: Duration = Duration::from_secs(300);

/// The node's handle on a Pod worker.
#[derive(Debug)]
pub(super) struct PodHandle {
    deleting: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PodHandle {
    /// The Pod got a `deletionTimestamp`.
    pub(super) fn delete(&self) {
        self.deleting.send_replace(true);
    }

    /// The Pod is gone from the API: stop at once.
    pub(super) fn abort(&self) {
        self.task.abort();
    }
}

impl Drop for PodHandle {
    fn drop(&mut self) {
        // The node forgot the Pod (or is going away): so does the worker.
        self.task.abort();
    }
}

/// Starts the worker of a Pod the node has not seen before.
pub(super) fn spawn(shared: Arc<Shared>, pod: Pod, faults: PodFaults, deleting: bool) -> PodHandle {
    let (tx, rx) = watch::channel(deleting);
    let worker = Worker::new(shared, pod, faults);
    let task = tokio::spawn(worker.main(rx));
    PodHandle { deleting: tx, task }
}

/// Confirms the deletion of a Pod that finished before the node knew it (grace period 0).
pub(super) fn confirm_deletion_only(shared: Arc<Shared>, pod: &Pod) -> JoinHandle<()> {
    let (namespace, name, uid) = ids(pod);
    tokio::spawn(async move { confirm_deletion(&shared, &namespace, &name, &uid).await })
}

fn ids(pod: &Pod) -> (String, String, String) {
    (
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

async fn confirm_deletion(shared: &Shared, namespace: &str, name: &str, uid: &str) {
    if !shared.is_reporting() {
        return;
    }
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => tracing::debug!(pod = %name, "deletion confirmed"),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "confirm pod deletion"),
    }
}

/// What never changes while the Pod runs.
#[derive(Debug)]
struct PodEnv {
    shared: Arc<Shared>,
    pod: Pod,
    namespace: String,
    name: String,
    uid: String,
    dir: PathBuf,
}

#[derive(Debug)]
struct Worker {
    env: PodEnv,
    state: PodState,
    faults: PodFaults,
}

impl Worker {
    fn new(shared: Arc<Shared>, pod: Pod, faults: PodFaults) -> Self {
        let (namespace, name, uid) = ids(&pod);
        let dir = layout::pod_dir(&shared.dir, &namespace, &name, &uid);
        let state = PodState::new(&pod);
        Self {
            env: PodEnv {
                shared,
                pod,
                namespace,
                name,
                uid,
                dir,
            },
            state,
            faults,
        }
    }

    async fn main(mut self, mut deleting: watch::Receiver<bool>) {
        if !*deleting.borrow() {
            tokio::select! {
                () = self.lifecycle() => {}
                () = deletion(&mut deleting) => {}
            }
        }
        deletion(&mut deleting).await;
        let was_running = self
            .state
            .init
            .iter()
            .chain(&self.state.main)
            .filter(|s| s.is_running())
            .map(|s| s.name.clone())
            .collect::<Vec<_>>();
        if !was_running.is_empty() {
            // Dropping the lifecycle killed their process groups.
            self.state.kill_running("Error");
            for name in &was_running {
                self.mark_done(name, EXIT_SIGKILL).await;
            }
            self.report().await;
        }
        let PodEnv {
            shared,
            namespace,
            name,
            uid,
            ..
        } = &self.env;
        confirm_deletion(shared, namespace, name, uid).await;
    }

    async fn lifecycle(&mut self) {
        if let Err(e) = tokio::fs::create_dir_all(self.workspace()).await {
            tracing::warn!(pod = %self.env.name, error = %e, "create pod directory");
        }
        self.report().await;
        if let Some(delay) = self.faults.slow_mount {
            tokio::time::sleep(delay).await;
        }
        let volumes = self.mount().await;
        if let Some(delay) = self.faults.slow_start {
            tokio::time::sleep(delay).await;
        }
        let spec = self.env.pod.spec.clone().unwrap_or_default();
        for container in spec.init_containers.iter().flatten() {
            let env = self.prepare(Kind::Init, container).await;
            self.state.running(Kind::Init, &container.name);
            self.report().await;
            let exit = self.run(container, &env, &volumes).await;
            let failed = exit.code != 0;
            self.finish(Kind::Init, &container.name, exit).await;
            if failed {
                return;
            }
        }

        let mut envs = Vec::new();
        for container in &spec.containers {
            envs.push(self.prepare(Kind::Main, container).await);
        }
        for container in &spec.containers {
            self.state.running(Kind::Main, &container.name);
        }
        self.report().await;

        if self.faults.evict {
            self.evict(&spec.containers).await;
            return;
        }
        let oom_victim = self.faults.oom_killed.then(|| {
            spec.containers
                .iter()
                .find(|c| c.name == BUILDER_CONTAINER)
                .or(spec.containers.first())
                .map(|c| c.name.clone())
        });
        if let Some(Some(victim)) = &oom_victim {
            let exit = Exit {
                code: EXIT_SIGKILL,
                reason: "OOMKilled".to_owned(),
                message: None,
            };
            self.finish(Kind::Main, victim, exit).await;
        }
        let victim = oom_victim.flatten();
        let Worker { env, state, .. } = self;
        let env = &*env;
        let mut runs: FuturesUnordered<_> = spec
            .containers
            .iter()
            .zip(&envs)
            .filter(|(c, _)| Some(&c.name) != victim.as_ref())
            .map(|(c, e)| async {
                let exit = env.run(c, e, &volumes).await;
                (c.name.clone(), exit)
            })
            .collect();
        while let Some((name, exit)) = runs.next().await {
            env.finish(state, Kind::Main, &name, exit).await;
        }
    }

    /// The eviction manager's kill: every main container SIGKILLed, the Pod `Failed` with
    /// reason `Evicted` and the kubelet's message.
    async fn evict(&mut self, containers: &[Container]) {
        let mut message = "The node was low on resource: memory. ".to_owned();
        for c in containers {
            let resources = c.resources.clone().unwrap_or_default();
            let memory = |m: Option<std::collections::BTreeMap<String, Quantity>>| {
                m.and_then(|m| m.get("memory").map(|q| q.0.clone()))
                    .unwrap_or_else(|| "0".to_owned())
            };
            // The usage the eviction manager saw: the limit, the most it could use.
            let (usage, request) = (memory(resources.limits), memory(resources.requests));
            message.push_str(&format!(
                "Container {} was using {usage}, which exceeds its request of {request}. ",
                c.name
            ));
        }
        for c in containers {
            self.mark_done(&c.name, EXIT_SIGKILL).await;
        }
        self.state.kill_running("Error");
        self.state.fail_pod("Evicted", message);
        self.report().await;
    }

    fn workspace(&self) -> PathBuf {
        layout::workspace_dir(
            &self.env.shared.dir,
            &self.env.namespace,
            &self.env.name,
            &self.env.uid,
        )
    }

    /// Sets up the volumes, retrying (the Pod stays `ContainerCreating`) until they work. As the
    /// kubelet, each failure is told in a `FailedMount` Warning Event on the Pod (here at the
    /// first failure, then every [`FAILED_MOUNT_EVERY`] attempts).
    async fn mount(&mut self) -> Volumes {
        let mut warned = false;
        let mut attempt: u32 = 0;
        loop {
            let shared = &self.env.shared;
            match Volumes::prepare(
                &shared.client,
                &shared.options,
                &self.env.pod,
                &self.env.dir,
                &self.workspace(),
            )
            .await
            {
                Ok(v) => return v,
                Err(MountError(message)) => {
                    if !warned {
                        tracing::warn!(pod = %self.env.name, %message, "volume setup failed; retrying");
                        warned = true;
                    }
                    if attempt.is_multiple_of(FAILED_MOUNT_EVERY) {
                        self.failed_mount_event(&message).await;
                    }
                    attempt = attempt.wrapping_add(1);
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Posts a `FailedMount` Event as the kubelet's does (`core/v1`, source `kubelet` on this
    /// node); a failure to post is logged.
    async fn failed_mount_event(&self, message: &str) {
        let env = &self.env;
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
        let event = k8s_openapi::api::core::v1::Event {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("{}.{:x}", env.name, now.0.as_nanosecond())),
                namespace: Some(env.namespace.clone()),
                ..Default::default()
            },
            involved_object: k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: Some(env.name.clone()),
                namespace: Some(env.namespace.clone()),
                uid: Some(env.uid.clone()),
                ..Default::default()
            },
            reason: Some("FailedMount".to_owned()),
            message: Some(message.to_owned()),
            type_: Some("Warning".to_owned()),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some("kubelet".to_owned()),
                host: Some(env.shared.options.name.clone()),
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(env.shared.client.clone(), &env.namespace);
        if let Err(e) = api.create(&kube::api::PostParams::default(), &event).await {
            tracing::warn!(pod = %env.name, error = %e, "cannot post the FailedMount event");
        }
    }

    /// Pulls the image and resolves the environment (the container keeps waiting meanwhile).
    async fn prepare(&mut self, kind: Kind, container: &Container) -> Vec<(String, String)> {
        self.pull(kind, container).await;
        loop {
            match super::env::resolve(&self.env.shared.client, &self.env.pod, container).await {
                Ok(env) => return env,
                Err(message) => {
                    self.state
                        .waiting(kind, &container.name, "CreateContainerConfigError", Some(message));
                    self.report().await;
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// The image "pull": a short wait, after the failed attempts a fault asks for.
    async fn pull(&mut self, kind: Kind, container: &Container) {
        let failures = std::mem::take(&mut self.faults.failed_pulls);
        self.fail_pulls(kind, container, failures).await;
        tokio::time::sleep(self.env.shared.options.pull_time).await;
        self.state.pulled(kind, &container.name);
    }

    /// `failures` failed pull attempts as the kubelet reports them: `ErrImagePull` with the
    /// runtime's error, then `ImagePullBackOff` until the back-off ends, which doubles each time.
    async fn fail_pulls(&mut self, kind: Kind, container: &Container, failures: u32) {
        let image = container.image.clone().unwrap_or_default();
        let mut backoff = self.env.shared.options.pull_backoff;
        for attempt in 1..=failures {
            let error = format!(
                "rpc error: code = Unknown desc = failed to pull and unpack image \"{image}\": \
                 stand-in node fault injection (failed pull {attempt})"
            );
            self.state
                .waiting(kind, &container.name, "ErrImagePull", Some(error));
            self.report().await;
            tokio::time::sleep(ERR_IMAGE_PULL_FOR).await;
            let back_off = format!("Back-off pulling image \"{image}\"");
            self.state
                .waiting(kind, &container.name, "ImagePullBackOff", Some(back_off));
            self.report().await;
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2).min(MAX_PULL_BACKOFF);
        }
    }

    async fn run(&self, container: &Container, env: &[(String, String)], volumes: &Volumes) -> Exit {
        self.env.run(container, env, volumes).await
    }

    async fn finish(&mut self, kind: Kind, name: &str, exit: Exit) {
        self.env.finish(&mut self.state, kind, name, exit).await;
    }

    async fn mark_done(&self, name: &str, code: i32) {
        self.env.mark_done(name, code).await;
    }

    async fn report(&mut self) {
        self.env.report(&mut self.state).await;
    }
}

impl PodEnv {
    /// Runs one container to its end.
    async fn run(&self, container: &Container, env: &[(String, String)], volumes: &Volumes) -> Exit {
        let name = &container.name;
        let scratch = self.dir.join("scratch").join(name);
        let termination_log = self.dir.join(format!("{name}.termination-log"));
        let log_path = layout::log_path(&self.shared.dir, &self.namespace, &self.name, &self.uid, name);
        let prepared = async {
            tokio::fs::create_dir_all(&scratch).await?;
            // A fresh, empty termination message file, as the kubelet bind-mounts one.
            tokio::fs::write(&termination_log, b"").await?;
            Log::open(&log_path).await
        }
        .await;
        let log = match prepared {
            Ok(log) => log,
            Err(e) => {
                return Exit {
                    code: 128,
                    reason: "ContainerCannotRun".to_owned(),
                    message: Some(format!("stand-in node cannot set up container {name}: {e:#}")),
                };
            }
        };
        let ctx = Ctx {
            shared: &self.shared,
            pod: &self.pod,
            container,
            env,
            volumes,
            log: &log,
            termination_log: &termination_log,
            scratch: &scratch,
        };
        let exit = container::run(&ctx).await;
        tracing::info!(pod = %self.name, container = %name, code = exit.code, "container terminated");
        exit
    }

    /// Records a terminated container: `<container>.done`, then the status.
    async fn finish(&self, state: &mut PodState, kind: Kind, name: &str, exit: Exit) {
        self.mark_done(name, exit.code).await;
        state.terminated(kind, name, exit);
        self.report(state).await;
    }

    /// `<container>.done` with the exit code (the kubelet API stops following the log then).
    async fn mark_done(&self, name: &str, code: i32) {
        let path = layout::done_path(&self.shared.dir, &self.namespace, &self.name, &self.uid, name);
        if let Some(parent) = path.parent()
            && let Err(e) = tokio::fs::create_dir_all(parent).await
        {
            tracing::warn!(error = %e, "create pod directory");
        }
        if let Err(e) = tokio::fs::write(&path, code.to_string()).await {
            tracing::warn!(path = %path.display(), error = %e, "write done marker");
        }
    }

    /// Posts the status (JSON merge patch of `pods/status`), unless the node stopped reporting.
    async fn report(&self, state: &mut PodState) {
        if !self.shared.is_reporting() {
            return;
        }
        let status = state.snapshot();
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.namespace);
        let patch = json!({ "status": status });
        match api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::debug!(pod = %self.name, phase = state.phase(), "status posted"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(pod = %self.name, error = %e, "post pod status"),
        }
    }
}

/// Resolves once the Pod is being deleted; never if the node drops the handle first.
async fn deletion(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|d| *d).await.is_err() {
        std::future::pending::<()>().await;
    }
}
