//! Following the Job and its Pods to a verdict with kube-runtime watchers.

use std::pin::pin;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kaniko_builder_core::flow::{EventSink, ExecError, FailureReason};
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::cleanup::{Tracked, lock};
use super::deadlines::Deadlines;
use super::handover::LocalContext;
use super::logs::{self, Tails};
use super::state::{Action, Tracker, Verdict};
use super::{KubeRunner, POD_GRACE, UPLOAD_GRACE, exec_error, upload};

/// Why the drive loop stopped without a cluster verdict.
pub(super) enum Stop {
    Verdict(Verdict),
    /// An attached Job vanished before its verdict: create again.
    Reattach,
}

/// A node watch, started once the Pod is bound.
type NodeWatch = BoxStream<'static, watcher::Result<Event<Node>>>;

/// What an event means for the watch loop.
enum Next {
    /// Keep following.
    Continue,
    /// The cluster gave its verdict.
    Verdict(Verdict),
    /// Stop without a verdict (a watch ended, or an attached Job vanished).
    Stop(Result<Stop, ExecError>),
}

/// The watch loop's state between events.
struct Follow<'a> {
    runner: &'a KubeRunner,
    pods: &'a Api<Pod>,
    name: &'a str,
    uid: &'a str,
    exec_context: Option<LocalContext>,
    events: &'a EventSink,
    tracked: &'a Mutex<Tracked>,
    tails: &'a Tails,
    /// Whether this run created the Job (else it attached).
    created: bool,
    tracker: Tracker,
    logs: JoinSet<()>,
    upload: Option<AbortOnDrop>,
    /// Whether the Job was seen in the current (re)list of the Job watch.
    job_in_init: bool,
    deadlines: Deadlines,
    node_watch: Option<NodeWatch>,
}

impl KubeRunner {
    /// Follows the Job and its Pods to a verdict.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn watch(
        &self,
        jobs: &Api<Job>,
        pods: &Api<Pod>,
        name: &str,
        uid: &str,
        exec_context: Option<LocalContext>,
        events: &EventSink,
        tracked: &Mutex<Tracked>,
        tails: &Tails,
    ) -> Result<Stop, ExecError> {
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
        let mut f = Follow {
            runner: self,
            pods,
            name,
            uid,
            exec_context,
            events,
            tracked,
            tails,
            created: lock(tracked).created,
            tracker: Tracker::default(),
            logs: JoinSet::new(),
            upload: None,
            job_in_init: false,
            deadlines: Deadlines::default(),
            node_watch: None,
        };
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let verdict = loop {
            let wake = f.deadlines.next().unwrap_or(far);
            let next = tokio::select! {
                event = job_watch.next() => f.on_job(event),
                event = pod_watch.next() => f.on_pod(event).await,
                event = async { f.node_watch.as_mut().expect("guarded by the condition").next().await }, if f.node_watch.is_some() => {
                    f.on_node(event);
                    Next::Continue
                }
                result = async { (&mut f.upload.as_mut().expect("guarded by the condition").0).await }, if f.upload.is_some() => {
                    f.on_upload(result);
                    Next::Continue
                }
                () = tokio::time::sleep_until(wake) => f.deadlines.take_due(Instant::now()).map_or(Next::Continue, Next::Verdict),
            };
            match next {
                Next::Continue => {}
                Next::Verdict(v) => break v,
                Next::Stop(stop) => return stop,
            }
        };
        f.finish().await;
        Ok(Stop::Verdict(verdict))
    }
}

impl Follow<'_> {
    /// A Job watch event: a deadline verdict, or the Job gone (deleted, or replaced by another
    /// of the same name).
    fn on_job(&mut self, event: Option<watcher::Result<Event<Job>>>) -> Next {
        let gone = match event {
            None => return Next::Stop(Err(watch_ended(format!("watch job {}", self.name)))),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "job watch error; the watcher resumes");
                false
            }
            Some(Ok(Event::Init)) => {
                self.job_in_init = false;
                false
            }
            Some(Ok(Event::InitApply(job) | Event::Apply(job))) => {
                if job.uid().as_deref() != Some(self.uid) {
                    true
                } else {
                    self.job_in_init = true;
                    if let Some(Action::AwaitPod(v)) = self.tracker.job(&job) {
                        if matches!(v, Verdict::Failed(FailureReason::DeadlineExceeded { .. })) {
                            return Next::Verdict(v);
                        }
                        self.deadlines.job(Instant::now() + POD_GRACE, v);
                    }
                    false
                }
            }
            Some(Ok(Event::InitDone)) => !self.job_in_init,
            Some(Ok(Event::Delete(job))) => job.uid().as_deref() == Some(self.uid),
        };
        if !gone {
            return Next::Continue;
        }
        lock(self.tracked).gone = true;
        if self.created {
            Next::Verdict(Verdict::Failed(FailureReason::JobDeletedExternally))
        } else {
            Next::Stop(Ok(Stop::Reattach))
        }
    }

    /// A Pod watch event: the tracker's actions, then its verdict, if any.
    async fn on_pod(&mut self, event: Option<watcher::Result<Event<Pod>>>) -> Next {
        let pod = match event {
            None => {
                let action = format!("watch the pods of job {}", self.name);
                return Next::Stop(Err(watch_ended(action)));
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "pod watch error; the watcher resumes");
                return Next::Continue;
            }
            Some(Ok(Event::InitApply(pod) | Event::Apply(pod))) => pod,
            Some(Ok(_)) => return Next::Continue,
        };
        let pod_name = pod.name_any();
        lock(self.tracked)
            .pods
            .insert(pod_name.clone(), pod.uid().unwrap_or_default());
        let (actions, verdict) = self.tracker.pod(&pod, self.exec_context.is_some());
        for action in actions {
            self.act(action, &pod_name).await;
        }
        // A grace of zero is due at once, before another event could stop it.
        let verdict = verdict.or_else(|| self.deadlines.take_due(Instant::now()));
        verdict.map_or(Next::Continue, Next::Verdict)
    }

    /// Carries out one of the tracker's actions for the Pod `pod_name`.
    async fn act(&mut self, action: Action, pod_name: &str) {
        let inner = &*self.runner.inner;
        match action {
            Action::Emit(e) => self.events.send(e),
            Action::FollowLogs(container) => {
                self.logs.spawn(logs::follow(
                    self.pods.clone(),
                    pod_name.to_owned(),
                    container,
                    self.events.clone(),
                    self.tails.clone(),
                    inner.log_tail_lines,
                ));
            }
            Action::Upload => {
                if let Some(local) = self.exec_context.clone() {
                    // No deadline on the whole transfer: the upload fails on a stall.
                    let upload = upload::exec_upload(
                        self.pods.clone(),
                        pod_name.to_owned(),
                        local,
                        inner.upload_stall_timeout,
                        self.events.clone(),
                    );
                    let task = tokio::spawn(upload);
                    self.upload = Some(AbortOnDrop(task));
                }
            }
            Action::Unschedulable(message) => {
                if let Some(t) = inner.unschedulable_timeout {
                    self.deadlines.unschedulable(Instant::now() + t, message);
                }
            }
            Action::Scheduled => {
                self.deadlines.scheduled();
                if let Some(node) = self.tracker.node_name()
                    && self.runner.may_watch_nodes().await
                {
                    self.node_watch = Some(watch_node(&inner.client, node));
                }
            }
            Action::NodeNotReady(message) => self.node_lost(&message),
            Action::NodeReady => self.node_back(),
            Action::PullFailing { container, message } => self.pull_failing(container, &message),
            Action::PullRecovered(container) => {
                if self.deadlines.image_pull_recovered(container) {
                    tracing::info!(container, "the image pull recovered; the build goes on");
                }
            }
            Action::AwaitPod(_) => {}
        }
    }

    /// A container's image pull fails and the kubelet retries: the build fails if it still
    /// fails after the runner's grace.
    fn pull_failing(&mut self, container: &'static str, message: &str) {
        let grace = self.runner.inner.image_pull_grace;
        // A grace beyond any clock (`Duration::MAX`) leaves it to the deadlines.
        let Some(at) = Instant::now().checked_add(grace) else {
            tracing::debug!(container, %message, "the image pull fails; waiting for the kubelet's retries");
            return;
        };
        if self.deadlines.image_pull_failing(at, container, message) {
            tracing::warn!(container, %message, ?grace, "the image pull failed; waiting for the kubelet's retries");
        } else {
            tracing::debug!(container, %message, "the image pull still fails");
        }
    }

    /// A Node watch event: whether the build's node is lost or back.
    fn on_node(&mut self, event: Option<watcher::Result<Event<Node>>>) {
        let node = match event {
            Some(Ok(Event::InitApply(node) | Event::Apply(node))) => node,
            Some(Err(e)) if forbidden(&e) => {
                tracing::debug!(error = %e, "may not watch the build's Node; a lost node is seen through the Pod's conditions only");
                self.node_watch = None;
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "node watch error; the watcher resumes");
                return;
            }
            None => {
                self.node_watch = None;
                return;
            }
            Some(Ok(_)) => return,
        };
        for action in self.tracker.node(&node) {
            match action {
                Action::Emit(e) => self.events.send(e),
                Action::NodeNotReady(message) => self.node_lost(&message),
                Action::NodeReady => self.node_back(),
                _ => {}
            }
        }
    }

    /// The exec upload ended: a failure waits briefly for the init container's own verdict.
    fn on_upload(&mut self, result: Result<Result<(), String>, tokio::task::JoinError>) {
        self.upload = None;
        let failed = match result {
            Ok(Ok(())) => None,
            Ok(Err(message)) => Some(message),
            Err(e) => Some(format!("upload task failed: {e}")),
        };
        if let Some(message) = failed {
            tracing::debug!(%message, "exec upload failed; waiting briefly for the init container's own verdict");
            self.deadlines
                .upload_failed(Instant::now() + UPLOAD_GRACE, message);
        }
    }

    /// The node stopped reporting: its Pods need force to delete, and the build fails as lost
    /// after the runner's grace (none: wait for the deadlines).
    fn node_lost(&mut self, message: &str) {
        let grace = self.runner.inner.node_lost_timeout;
        let node = self.tracker.node_name();
        tracing::warn!(node = node.unwrap_or_default(), %message, ?grace, "the build's node is not ready");
        lock(self.tracked).node_lost = true;
        if let Some(grace) = grace {
            let message = format!("{message} (not back within {grace:?})");
            self.deadlines.node_lost(Instant::now() + grace, node, message);
        }
    }

    /// The node reports again: the build goes on.
    fn node_back(&mut self) {
        let node = self.tracker.node_name();
        tracing::info!(node = node.unwrap_or_default(), "the build's node is ready again");
        lock(self.tracked).node_lost = false;
        self.deadlines.node_back();
    }

    /// Stops the upload and gives the log streams, which end when their containers do, a moment
    /// to deliver the last lines.
    async fn finish(mut self) {
        drop(self.upload.take());
        let draining = Instant::now();
        let logs = &mut self.logs;
        let drained = tokio::time::timeout(self.runner.inner.log_drain_timeout, async {
            while logs.join_next().await.is_some() {}
        })
        .await;
        tracing::debug!(elapsed = ?draining.elapsed(), complete = drained.is_ok(), "log streams drained");
    }
}

fn watch_ended(action: String) -> ExecError {
    exec_error(FailureReason::Cluster {
        action,
        message: "the watch ended".to_owned(),
        status: None,
    })
}

impl KubeRunner {
    /// Whether this runner's client may list Nodes; asked once per runner, so that a client
    /// without the permission (the generated Role has none) meets no failing watch.
    async fn may_watch_nodes(&self) -> bool {
        if let Some(known) = self.inner.node_access.get() {
            return *known;
        }
        let nodes: Api<Node> = Api::all(self.inner.client.clone());
        match nodes
            .list_metadata(&kube::api::ListParams::default().limit(1))
            .await
        {
            Ok(_) => {
                let _ = self.inner.node_access.set(true);
                true
            }
            Err(kube::Error::Api(s)) if s.code == 403 => {
                tracing::debug!("may not list Nodes; a lost node is seen through the Pod's conditions only");
                let _ = self.inner.node_access.set(false);
                false
            }
            // Not a definite answer: this build goes without, the next one asks again.
            Err(e) => {
                tracing::debug!(error = %e, "cannot tell whether Nodes may be watched");
                false
            }
        }
    }
}

/// Watches the one Node the build's Pod is bound to.
fn watch_node(client: &kube::Client, node: &str) -> NodeWatch {
    let nodes: Api<Node> = Api::all(client.clone());
    watcher::watcher(
        nodes,
        watcher::Config::default().fields(&format!("metadata.name={node}")),
    )
    .default_backoff()
    .boxed()
}

/// Whether a watch failed for lack of permission (Nodes are cluster-scoped: the generated,
/// namespaced Role cannot grant them).
fn forbidden(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s))
        | watcher::Error::WatchError(s) => s.code == 403,
        _ => false,
    }
}

/// The exec upload task, aborted when the watch ends in any way (also when its future is
/// dropped on cancellation), so it never outlives the run.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), String>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
