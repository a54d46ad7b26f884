//! From Pod and Job states to events and a verdict. Pure: the runner feeds it what its watches
//! see and acts on what it returns.
//!
//! Image pulls: a failure no retry fixes (`InvalidImageName`, `ErrImageNeverPull`,
//! `SignatureValidationFailed`) is a verdict at once. A failure the kubelet retries
//! (`ErrImagePull`, `ImagePullBackOff`, …) is not: it asks the runner for its image pull grace
//! ([`Action::PullFailing`], with the kubelet's newest message), and any other state of that
//! container ends it ([`Action::PullRecovered`]). Each failed attempt sends
//! [`BuildEvent::PullingImage`] again: the container still waits for its image.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Node, Pod, PodCondition};
use kaniko_builder_core::Digest;
use kaniko_builder_core::flow::{BuildEvent, FailureReason};

use crate::manifest::{BUILDER_CONTAINER, Decision, INIT_CONTAINER, parse_init_message};

/// Waiting reasons of the kubelet's image manager (`pkg/kubelet/images`) that mean the image will
/// not come: the name does not parse, the pull policy is `Never` and the image is absent, or the
/// runtime refused the image's signature (CRI `SignatureValidationFailed`, which no retry fixes).
const PERMANENT_PULL_FAILURES: [&str; 3] = [
    "InvalidImageName",
    "ErrImageNeverPull",
    "SignatureValidationFailed",
];

/// Waiting reasons of a pull the kubelet tries again (with a back-off of 10 s, doubling up to
/// 5 minutes): a failed attempt (`ErrImagePull`; CRI `RegistryUnavailable`; the runtime failing
/// to inspect the image, `ImageInspectError`) and the wait before the next one
/// (`ImagePullBackOff`). A registry hiccup looks like this too: these fail the build only after
/// the runner's grace.
const RETRIED_PULL_FAILURES: [&str; 4] = [
    "ErrImagePull",
    "RegistryUnavailable",
    "ImageInspectError",
    BACK_OFF,
];

/// The wait between two failed pulls.
const BACK_OFF: &str = "ImagePullBackOff";

/// How the build ended, as far as the cluster says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// kaniko pushed this digest.
    Built(Digest),
    /// The in-cluster check found the image with this digest.
    Skipped(Digest),
    /// It failed; `last_lines` are filled in by the runner from the logs.
    Failed(FailureReason),
}

/// What the runner should do besides emitting events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send this event.
    Emit(BuildEvent),
    /// Start following this container's log.
    FollowLogs(&'static str),
    /// The init container runs: stream the context in (exec uploads).
    Upload,
    /// The scheduler cannot place the Pod: start the grace timer (with its message).
    Unschedulable(String),
    /// The Pod was scheduled: stop the grace timer.
    Scheduled,
    /// The Job failed or completed without a Pod verdict yet: give the Pod watch a moment.
    AwaitPod(Verdict),
    /// The build's node stopped reporting: start the node-lost grace timer (with the message).
    NodeNotReady(String),
    /// The node reports again: stop that timer.
    NodeReady,
    /// This container's image pull fails and the kubelet retries: start the image pull grace
    /// timer, or keep it running with this newer message.
    PullFailing {
        /// The container.
        container: &'static str,
        /// What to fail with when the grace ends: the kubelet's reason and last message.
        message: String,
    },
    /// This container's image pull no longer fails: stop that timer.
    PullRecovered(&'static str),
}

/// A container whose image pull fails while the kubelet retries.
#[derive(Debug, Default)]
struct FailingPull {
    /// The last waiting reason.
    reason: String,
    /// The last failed attempt (not a back-off), as reason and message.
    last_error: Option<String>,
}

/// Tracks one build's Pod and Job.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    scheduled: bool,
    unschedulable: bool,
    pulling: HashSet<&'static str>,
    failing_pulls: HashMap<&'static str, FailingPull>,
    following: HashSet<&'static str>,
    upload_requested: bool,
    decision: Option<Decision>,
    building: bool,
    pushed: bool,
    node: Option<String>,
    /// The node controller marked the Pod not ready (its node stopped reporting).
    pod_marked: bool,
    /// What the Node says, when it can be watched: `Some(false)` once it stopped reporting
    /// (`Ready=Unknown`), `Some(true)` while it reports. It outranks the Pod's mark, which stays
    /// stale until the kubelet next writes the Pod.
    node_reporting: Option<bool>,
}

fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_))
}

/// Whether someone other than the kubelet marked the Pod not ready. Without readiness gates the
/// kubelet sets `Ready` and `ContainersReady` together; the node lifecycle controller, when the
/// node stops reporting, flips only `Ready` to `False`. With a readiness gate (a webhook may add
/// one), `Ready=False` alone is normal, so the Pod tells nothing and only the Node watch does.
fn marked_not_ready_by_node_controller(pod: &Pod) -> bool {
    let gated = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|g| !g.is_empty());
    let status = |t| condition(pod, t).map(|c| c.status.as_str());
    !gated && status("Ready") == Some("False") && status("ContainersReady") == Some("True")
}

/// The kubelet's reason and message, as a failure reports them.
fn describe(reason: &str, message: &str) -> String {
    if message.is_empty() {
        reason.to_owned()
    } else {
        format!("{reason}: {message}")
    }
}

fn status<'a>(statuses: Option<&'a Vec<ContainerStatus>>, name: &str) -> Option<&'a ContainerStatus> {
    statuses.and_then(|s| s.iter().find(|c| c.name == name))
}

impl Tracker {
    /// A new state of the build's Pod. `exec_upload`: whether the context goes in by exec.
    pub(crate) fn pod(&mut self, pod: &Pod, exec_upload: bool) -> (Vec<Action>, Option<Verdict>) {
        let mut actions = Vec::new();
        let Some(st) = pod.status.as_ref() else {
            return (actions, None);
        };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        if let Some(node) = node
            && !self.scheduled
        {
            self.scheduled = true;
            self.unschedulable = false;
            self.node = Some(node.clone());
            actions.push(Action::Scheduled);
            actions.push(Action::Emit(BuildEvent::Scheduled { node }));
        }
        if !self.scheduled {
            let unschedulable = st.conditions.iter().flatten().find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            });
            if let Some(c) = unschedulable
                && !self.unschedulable
            {
                self.unschedulable = true;
                actions.push(Action::Unschedulable(c.message.clone().unwrap_or_default()));
            }
        }
        if self.scheduled {
            let marked = marked_not_ready_by_node_controller(pod);
            if marked != self.pod_marked {
                let was = self.suspects_node();
                self.pod_marked = marked;
                self.node_transition(
                    was,
                    "the node controller marked the Pod not ready: its node stopped reporting",
                    &mut actions,
                );
            }
        }
        let message = st.message.clone().unwrap_or_default();
        match st.reason.as_deref() {
            Some("Evicted") => return (actions, Some(Verdict::Failed(FailureReason::Evicted { message }))),
            Some("NodeLost") => {
                let node = self.node.clone();
                return (
                    actions,
                    Some(Verdict::Failed(FailureReason::NodeLost { node, message })),
                );
            }
            Some("DeadlineExceeded") => {
                return (
                    actions,
                    Some(Verdict::Failed(FailureReason::DeadlineExceeded { message })),
                );
            }
            _ => {}
        }

        if let Some(init) = status(st.init_container_statuses.as_ref(), INIT_CONTAINER)
            && let Some(v) = self.init(init, exec_upload, &mut actions)
        {
            return (actions, Some(v));
        }
        if let Some(main) = status(st.container_statuses.as_ref(), BUILDER_CONTAINER)
            && let Some(v) = self.main(main, &mut actions)
        {
            return (actions, Some(v));
        }
        if st.phase.as_deref() == Some("Failed") {
            let reason = st.reason.clone().unwrap_or_else(|| "Failed".to_owned());
            return (
                actions,
                Some(Verdict::Failed(FailureReason::UnexpectedTermination {
                    message: format!("the Pod failed ({reason}) {message}")
                        .trim_end()
                        .to_owned(),
                })),
            );
        }
        (actions, None)
    }

    /// A container's state before it runs: the image pull's failures, `PullingImage`.
    fn waiting(
        &mut self,
        c: &ContainerStatus,
        name: &'static str,
        actions: &mut Vec<Action>,
    ) -> Option<Verdict> {
        let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
        let reason = waiting.and_then(|w| w.reason.as_deref()).unwrap_or_default();
        let message = waiting.and_then(|w| w.message.as_deref()).unwrap_or_default();
        if PERMANENT_PULL_FAILURES.contains(&reason) {
            return Some(Verdict::Failed(FailureReason::ImagePull {
                container: name.to_owned(),
                message: describe(reason, message),
            }));
        }
        if RETRIED_PULL_FAILURES.contains(&reason) {
            self.pull_failing(name, reason, message, actions);
            return None;
        }
        // Any other state (running, terminated, waiting for something else) ends the failures.
        if self.failing_pulls.remove(name).is_some() {
            actions.push(Action::PullRecovered(name));
        }
        if reason == "ContainerCreating" && self.pulling.insert(name) {
            actions.push(Action::Emit(BuildEvent::PullingImage {
                container: name.to_owned(),
            }));
        }
        None
    }

    /// The kubelet reports a failed pull it will retry. Each failed attempt (not the back-off
    /// between two) says again that the container waits for its image.
    fn pull_failing(&mut self, name: &'static str, reason: &str, message: &str, actions: &mut Vec<Action>) {
        let pull = self.failing_pulls.entry(name).or_default();
        let new_attempt = pull.reason.is_empty() || (reason != BACK_OFF && pull.reason != reason);
        reason.clone_into(&mut pull.reason);
        if reason != BACK_OFF {
            pull.last_error = Some(describe(reason, message));
        }
        let message = match &pull.last_error {
            // A back-off message names the image only; older kubelets leave out why.
            Some(error) if reason == BACK_OFF && !message.contains(error.as_str()) => {
                format!("{}; the last attempt failed: {error}", describe(reason, message))
            }
            _ => describe(reason, message),
        };
        if new_attempt {
            self.pulling.insert(name);
            actions.push(Action::Emit(BuildEvent::PullingImage {
                container: name.to_owned(),
            }));
        }
        actions.push(Action::PullFailing {
            container: name,
            message,
        });
    }

    fn follow(&mut self, name: &'static str, actions: &mut Vec<Action>) {
        if self.following.insert(name) {
            actions.push(Action::FollowLogs(name));
        }
    }

    fn init(&mut self, c: &ContainerStatus, exec_upload: bool, actions: &mut Vec<Action>) -> Option<Verdict> {
        if let Some(v) = self.waiting(c, INIT_CONTAINER, actions) {
            return Some(v);
        }
        let state = c.state.as_ref()?;
        if state.running.is_some() {
            self.follow(INIT_CONTAINER, actions);
            if exec_upload && !self.upload_requested {
                self.upload_requested = true;
                actions.push(Action::Upload);
            }
        }
        let t = state.terminated.as_ref()?;
        self.follow(INIT_CONTAINER, actions);
        let message = t.message.clone().unwrap_or_default();
        if t.exit_code == 0 {
            if self.decision.is_none() {
                let decision = parse_init_message(&message).and_then(Result::ok);
                if let Some(decision) = &decision {
                    actions.push(Action::Emit(BuildEvent::InitCheck {
                        decision: decision.clone(),
                    }));
                }
                self.decision = decision;
            }
            return None;
        }
        if t.reason.as_deref() == Some("OOMKilled") {
            return Some(Verdict::Failed(FailureReason::OomKilled {
                container: INIT_CONTAINER.to_owned(),
                last_lines: Vec::new(),
            }));
        }
        Some(Verdict::Failed(match parse_init_message(&message) {
            Some(Err(message)) => FailureReason::InitCheckFailed { message },
            _ => FailureReason::ExitCode {
                container: INIT_CONTAINER.to_owned(),
                code: t.exit_code,
                message: (!message.is_empty()).then_some(message),
                last_lines: Vec::new(),
            },
        }))
    }

    fn main(&mut self, c: &ContainerStatus, actions: &mut Vec<Action>) -> Option<Verdict> {
        if let Some(v) = self.waiting(c, BUILDER_CONTAINER, actions) {
            return Some(v);
        }
        let state = c.state.as_ref()?;
        let builds = matches!(self.decision, Some(Decision::Build { .. }));
        if state.running.is_some() || state.terminated.is_some() {
            self.follow(BUILDER_CONTAINER, actions);
            if builds && !self.building {
                self.building = true;
                actions.push(Action::Emit(BuildEvent::Building));
            }
        }
        let t = state.terminated.as_ref()?;
        let message = t.message.clone().unwrap_or_default();
        if t.exit_code != 0 {
            if t.reason.as_deref() == Some("OOMKilled") {
                return Some(Verdict::Failed(FailureReason::OomKilled {
                    container: BUILDER_CONTAINER.to_owned(),
                    last_lines: Vec::new(),
                }));
            }
            return Some(Verdict::Failed(FailureReason::ExitCode {
                container: BUILDER_CONTAINER.to_owned(),
                code: t.exit_code,
                message: (!message.is_empty()).then_some(message),
                last_lines: Vec::new(),
            }));
        }
        if let Some(Ok(Decision::Skip { digest })) = parse_init_message(&message) {
            return Some(Verdict::Skipped(digest));
        }
        match Digest::parse(message.trim()) {
            Ok(digest) => {
                if !self.pushed {
                    self.pushed = true;
                    actions.push(Action::Emit(BuildEvent::Pushed {
                        digest: digest.clone(),
                    }));
                }
                Some(Verdict::Built(digest))
            }
            Err(_) => Some(Verdict::Failed(FailureReason::UnexpectedTermination {
                message: format!(
                    "{BUILDER_CONTAINER} exited 0 without a digest in its termination message: {message:?}"
                ),
            })),
        }
    }

    /// A new state of the Node the Pod runs on.
    pub(crate) fn node(&mut self, node: &Node) -> Vec<Action> {
        let mut actions = Vec::new();
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
        // No Ready condition yet is a node still registering, not a lost one.
        let Some(ready) = ready else {
            return actions;
        };
        // `Unknown` is the node controller's word for "stopped reporting". `False` comes from a
        // kubelet that still reports (e.g. its network plugin is not ready): not lost.
        let reporting = ready.status != "Unknown";
        if self.node_reporting != Some(reporting) {
            let was = self.suspects_node();
            self.node_reporting = Some(reporting);
            let message = match (&ready.reason, &ready.message) {
                (Some(r), Some(m)) => format!("{r}: {m}"),
                (Some(x), None) | (None, Some(x)) => x.clone(),
                (None, None) => format!("the Node's Ready condition is {}", ready.status),
            };
            self.node_transition(was, &message, &mut actions);
        }
        actions
    }

    fn suspects_node(&self) -> bool {
        self.node_reporting
            .map_or(self.pod_marked, |reporting| !reporting)
    }

    /// Emits the start or the end of a suspicion, once per transition.
    fn node_transition(&self, was: bool, message: &str, actions: &mut Vec<Action>) {
        match (was, self.suspects_node()) {
            (false, true) => {
                actions.push(Action::Emit(BuildEvent::NodeNotReady {
                    node: self.node.clone(),
                    message: message.to_owned(),
                }));
                actions.push(Action::NodeNotReady(message.to_owned()));
            }
            (true, false) => actions.push(Action::NodeReady),
            _ => {}
        }
    }

    /// The node the Pod was bound to.
    pub(crate) fn node_name(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// A new state of the Job.
    pub(crate) fn job(&mut self, job: &Job) -> Option<Action> {
        let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref())?;
        for c in conditions.iter().filter(|c| c.status == "True") {
            let reason = c.reason.clone().unwrap_or_default();
            let message = c.message.clone().unwrap_or_default();
            match c.type_.as_str() {
                "Failed" if reason == "DeadlineExceeded" => {
                    return Some(Action::AwaitPod(Verdict::Failed(
                        FailureReason::DeadlineExceeded { message },
                    )));
                }
                "Failed" => {
                    return Some(Action::AwaitPod(Verdict::Failed(FailureReason::JobFailed {
                        reason,
                        message,
                    })));
                }
                "Complete" => {
                    return Some(Action::AwaitPod(Verdict::Failed(
                        FailureReason::UnexpectedTermination {
                            message: "the Job completed but its Pod and termination message are gone"
                                .to_owned(),
                        },
                    )));
                }
                _ => {}
            }
        }
        None
    }
}

/// Whether a Job has finished: `Some(true)` with its `Complete` condition, `Some(false)` with
/// its `Failed` one, `None` while it runs.
pub fn job_finished(job: &Job) -> Option<bool> {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref())?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some(true),
            "Failed" => Some(false),
            _ => None,
        })
}
