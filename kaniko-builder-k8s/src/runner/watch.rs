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
use super::logs::{self, Tails};
use super::state::{Action, Tracker, Verdict};
use super::{KubeRunner, POD_GRACE, UPLOAD_GRACE, exec_error, upload};

/// Why the drive loop stopped without a cluster verdict.
pub(super) enum Stop {
    Verdict(Verdict),
    /// An attached Job vanished before its verdict: create again.
    Reattach,
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
        let mut upload: Option<AbortOnDrop> = None;
        let mut job_in_init = false;
        let mut deadlines = Deadlines::default();
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        // Started once the Pod is bound; dropped if the client may not watch Nodes.
        let mut node_watch: Option<BoxStream<'static, watcher::Result<Event<Node>>>> = None;

        let verdict = loop {
            let wake = deadlines.next().unwrap_or(far);
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
                                    deadlines.job(Instant::now() + POD_GRACE, v);
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
                    lock(tracked).pods.insert(pod_name.clone(), pod.uid().unwrap_or_default());
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
                                    upload = Some(AbortOnDrop(tokio::spawn(tokio::time::timeout(
                                        inner.upload_timeout,
                                        upload::exec_upload(pods.clone(), pod_name.clone(), data, events.clone()),
                                    ).map_timeout())));
                                }
                            }
                            Action::Unschedulable(message) => {
                                if let Some(t) = inner.unschedulable_timeout {
                                    deadlines.unschedulable(Instant::now() + t, message);
                                }
                            }
                            Action::Scheduled => {
                                deadlines.scheduled();
                                if let Some(node) = tracker.node_name()
                                    && self.may_watch_nodes().await
                                {
                                    node_watch = Some(watch_node(&inner.client, node));
                                }
                            }
                            Action::NodeNotReady(message) => {
                                node_lost(&mut deadlines, tracked, inner.node_lost_timeout, tracker.node_name(), &message);
                            }
                            Action::NodeReady => node_back(&mut deadlines, tracked, tracker.node_name()),
                            Action::AwaitPod(_) => {}
                        }
                    }
                    if let Some(v) = verdict {
                        break v;
                    }
                }
                event = async { node_watch.as_mut().expect("guarded by the condition").next().await }, if node_watch.is_some() => {
                    let node = match event {
                        Some(Ok(Event::InitApply(node) | Event::Apply(node))) => node,
                        Some(Err(e)) if forbidden(&e) => {
                            tracing::debug!(error = %e, "may not watch the build's Node; a lost node is seen through the Pod's conditions only");
                            node_watch = None;
                            continue;
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "node watch error; the watcher resumes");
                            continue;
                        }
                        None => {
                            node_watch = None;
                            continue;
                        }
                        Some(Ok(_)) => continue,
                    };
                    for action in tracker.node(&node) {
                        match action {
                            Action::Emit(e) => events.send(e),
                            Action::NodeNotReady(message) => {
                                node_lost(&mut deadlines, tracked, inner.node_lost_timeout, tracker.node_name(), &message);
                            }
                            Action::NodeReady => node_back(&mut deadlines, tracked, tracker.node_name()),
                            _ => {}
                        }
                    }
                }
                result = async { (&mut upload.as_mut().expect("guarded by the condition").0).await }, if upload.is_some() => {
                    upload = None;
                    let failed = match result {
                        Ok(Ok(())) => None,
                        Ok(Err(message)) => Some(message),
                        Err(e) => Some(format!("upload task failed: {e}")),
                    };
                    if let Some(message) = failed {
                        tracing::debug!(%message, "exec upload failed; waiting briefly for the init container's own verdict");
                        deadlines.upload_failed(Instant::now() + UPLOAD_GRACE, message);
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    if let Some(v) = deadlines.take_due(Instant::now()) {
                        break v;
                    }
                }
            }
        };
        drop(upload);
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
fn watch_node(client: &kube::Client, node: &str) -> BoxStream<'static, watcher::Result<Event<Node>>> {
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

/// The node stopped reporting: its Pods need force to delete, and the build fails as lost after
/// `grace` (`None`: wait for the deadlines).
fn node_lost(
    deadlines: &mut Deadlines,
    tracked: &Mutex<Tracked>,
    grace: Option<Duration>,
    node: Option<&str>,
    message: &str,
) {
    tracing::warn!(node = node.unwrap_or_default(), %message, ?grace, "the build's node is not ready");
    lock(tracked).node_lost = true;
    if let Some(grace) = grace {
        let message = format!("{message} (not back within {grace:?})");
        deadlines.node_lost(Instant::now() + grace, node, message);
    }
}

/// The node reports again: the build goes on.
fn node_back(deadlines: &mut Deadlines, tracked: &Mutex<Tracked>, node: Option<&str>) {
    tracing::info!(node = node.unwrap_or_default(), "the build's node is ready again");
    lock(tracked).node_lost = false;
    deadlines.node_back();
}

/// The exec upload task, aborted when the watch ends in any way (also when its future is
/// dropped on cancellation), so it never outlives the run.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), String>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
