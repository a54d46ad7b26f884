//! The Pod status a kubelet reports, as a small state machine (pure: no IO).
//!
//! The rules follow the 1.20 kubelet for `restartPolicy: Never`: init containers wait in
//! `ContainerCreating`, main containers in `PodInitializing` while init containers remain; the
//! phase is `Pending` until the main containers start, `Failed` once an init container or a main
//! container fails, `Succeeded` when every main container exited 0; conditions `PodScheduled`,
//! `Initialized`, `ContainersReady` and `Ready` with the kubelet's reasons and messages.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The node's (and every Pod's) address.
pub(super) const NODE_IP: &str = "127.0.0.1";
/// Waiting reason of a container that has not started yet.
pub(super) const CONTAINER_CREATING: &str = "ContainerCreating";
/// Waiting reason of a main container while init containers remain.
pub(super) const POD_INITIALIZING: &str = "PodInitializing";
/// Exit code of a container killed with SIGKILL.
pub(super) const EXIT_SIGKILL: i32 = 137;

pub(super) fn now() -> Time {
    Time(Timestamp::now())
}

/// Which list a container belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Init,
    Main,
}

/// One container's reported status.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub(super) name: String,
    image: String,
    pulled: bool,
    container_id: Option<String>,
    state: ContainerState,
}

impl Slot {
    fn new(name: &str, image: &str, waiting: &str) -> Self {
        Self {
            name: name.to_owned(),
            image: image.to_owned(),
            pulled: false,
            container_id: None,
            state: waiting_state(waiting, None),
        }
    }

    pub(super) fn is_running(&self) -> bool {
        self.state.running.is_some()
    }

    pub(super) fn exit_code(&self) -> Option<i32> {
        self.state.terminated.as_ref().map(|t| t.exit_code)
    }

    fn to_status(&self, kind: Kind) -> ContainerStatus {
        let ready = match kind {
            Kind::Init => self.exit_code() == Some(0),
            Kind::Main => self.is_running(),
        };
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: if self.pulled {
                self.image.clone()
            } else {
                String::new()
            },
            container_id: self.container_id.clone(),
            ready,
            restart_count: 0,
            started: Some(self.is_running()),
            state: Some(self.state.clone()),
            last_state: Some(ContainerState::default()),
            ..ContainerStatus::default()
        }
    }
}

fn waiting_state(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..ContainerState::default()
    }
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Exit {
    pub(super) code: i32,
    /// `Completed`, `Error`, `OOMKilled`, `ContainerCannotRun`...
    pub(super) reason: String,
    /// What the container wrote to its termination message path.
    pub(super) message: Option<String>,
}

impl Exit {
    /// An exit with the kubelet's reason for `code`: `Completed` for 0, `Error` otherwise.
    pub(super) fn code(code: i32, message: Option<String>) -> Self {
        Self {
            code,
            reason: if code == 0 { "Completed" } else { "Error" }.to_owned(),
            message: message.filter(|m| !m.is_empty()),
        }
    }
}

/// A Pod's status as the node reports it.
#[derive(Debug, Clone)]
pub(super) struct PodState {
    uid: String,
    start_time: Time,
    pub(super) init: Vec<Slot>,
    pub(super) main: Vec<Slot>,
    /// A phase forced by the node (eviction), with the Pod-level reason and message.
    forced: Option<(&'static str, String, String)>,
    scheduled_at: Option<Time>,
    transitions: BTreeMap<&'static str, (bool, Time)>,
}

impl PodState {
    /// The first status of a Pod the node accepted: every container waiting.
    pub(super) fn new(pod: &Pod) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let has_init = spec.init_containers.as_ref().is_some_and(|c| !c.is_empty());
        let slot = |c: &k8s_openapi::api::core::v1::Container, waiting| {
            Slot::new(&c.name, c.image.as_deref().unwrap_or_default(), waiting)
        };
        let main_waiting = if has_init {
            POD_INITIALIZING
        } else {
            CONTAINER_CREATING
        };
        let scheduled_at = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .and_then(|c| c.last_transition_time.clone());
        Self {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            start_time: now(),
            init: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| slot(c, CONTAINER_CREATING))
                .collect(),
            main: spec.containers.iter().map(|c| slot(c, main_waiting)).collect(),
            forced: None,
            scheduled_at,
            transitions: BTreeMap::new(),
        }
    }

    fn slot_mut(&mut self, kind: Kind, name: &str) -> &mut Slot {
        let list = match kind {
            Kind::Init => &mut self.init,
            Kind::Main => &mut self.main,
        };
        list.iter_mut()
            .find(|s| s.name == name)
            .expect("the container is in the Pod spec")
    }

    /// The container's image is "pulled".
    pub(super) fn pulled(&mut self, kind: Kind, name: &str) {
        self.slot_mut(kind, name).pulled = true;
    }

    /// The container waits with `reason` (and `message`).
    pub(super) fn waiting(&mut self, kind: Kind, name: &str, reason: &str, message: Option<String>) {
        self.slot_mut(kind, name).state = waiting_state(reason, message);
    }

    /// The container runs from now on.
    pub(super) fn running(&mut self, kind: Kind, name: &str) {
        let id = container_id(&self.uid, name);
        let slot = self.slot_mut(kind, name);
        slot.container_id = Some(id);
        slot.state = ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(now()),
            }),
            ..ContainerState::default()
        };
    }

    /// The container ended now.
    pub(super) fn terminated(&mut self, kind: Kind, name: &str, exit: Exit) {
        let slot = self.slot_mut(kind, name);
        let started_at = slot
            .state
            .running
            .as_ref()
            .and_then(|r| r.started_at.clone())
            .unwrap_or_else(now);
        slot.state = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: exit.code,
                reason: Some(exit.reason),
                message: exit.message,
                started_at: Some(started_at),
                finished_at: Some(now()),
                container_id: slot.container_id.clone(),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        };
    }

    /// Every running container was killed (SIGKILL): terminated with exit code 137, `reason`.
    pub(super) fn kill_running(&mut self, reason: &str) {
        let running: Vec<(Kind, String)> = self
            .init
            .iter()
            .map(|s| (Kind::Init, s))
            .chain(self.main.iter().map(|s| (Kind::Main, s)))
            .filter(|(_, s)| s.is_running())
            .map(|(k, s)| (k, s.name.clone()))
            .collect();
        for (kind, name) in running {
            self.terminated(
                kind,
                &name,
                Exit {
                    code: EXIT_SIGKILL,
                    reason: reason.to_owned(),
                    message: None,
                },
            );
        }
    }

    /// The Pod failed for a node-level `reason` (e.g. `Evicted`) with `message`.
    pub(super) fn fail_pod(&mut self, reason: &str, message: String) {
        self.forced = Some(("Failed", reason.to_owned(), message));
    }

    /// The phase the kubelet computes from the container states (restartPolicy Never).
    pub(super) fn phase(&self) -> &'static str {
        if let Some((phase, _, _)) = &self.forced {
            return phase;
        }
        if self.init.iter().any(|s| s.exit_code().is_some_and(|c| c != 0)) {
            return "Failed";
        }
        if !self.init.iter().all(|s| s.exit_code() == Some(0)) {
            return "Pending";
        }
        let waiting = self.main.iter().filter(|s| s.state.waiting.is_some()).count();
        let running = self.main.iter().filter(|s| s.is_running()).count();
        if waiting == self.main.len() {
            "Pending"
        } else if running > 0 {
            "Running"
        } else if waiting > 0 {
            "Pending"
        } else if self.main.iter().any(|s| s.exit_code() != Some(0)) {
            "Failed"
        } else {
            "Succeeded"
        }
    }

    /// A condition, keeping its last transition time while its status stays the same.
    fn condition(
        &mut self,
        type_: &'static str,
        ok: bool,
        reason: Option<&str>,
        message: Option<String>,
    ) -> PodCondition {
        let since = match self.transitions.get(type_) {
            Some((was, at)) if *was == ok => at.clone(),
            _ => {
                let at = now();
                self.transitions.insert(type_, (ok, at.clone()));
                at
            }
        };
        PodCondition {
            type_: type_.to_owned(),
            status: if ok { "True" } else { "False" }.to_owned(),
            reason: reason.map(str::to_owned),
            message,
            last_transition_time: Some(since),
            last_probe_time: None,
            ..PodCondition::default()
        }
    }

    /// The `status` to send (a JSON merge patch replaces its lists whole).
    pub(super) fn snapshot(&mut self) -> PodStatus {
        let phase = self.phase();
        let incomplete: Vec<&str> = self
            .init
            .iter()
            .filter(|s| s.exit_code() != Some(0))
            .map(|s| s.name.as_str())
            .collect();
        let unready: Vec<&str> = self
            .main
            .iter()
            .filter(|s| !s.is_running())
            .map(|s| s.name.as_str())
            .collect();
        let initialized = incomplete.is_empty();
        let init_message =
            (!initialized).then(|| format!("containers with incomplete status: [{}]", incomplete.join(" ")));
        let ready = unready.is_empty();
        let (ready_reason, ready_message) = if ready {
            (None, None)
        } else if phase == "Succeeded" {
            (Some("PodCompleted"), None)
        } else {
            (
                Some("ContainersNotReady"),
                Some(format!("containers with unready status: [{}]", unready.join(" "))),
            )
        };
        let scheduled = PodCondition {
            type_: "PodScheduled".to_owned(),
            status: "True".to_owned(),
            last_transition_time: self.scheduled_at.clone(),
            ..PodCondition::default()
        };
        let conditions = vec![
            self.condition(
                "Initialized",
                initialized,
                (!initialized).then_some("ContainersNotInitialized"),
                init_message,
            ),
            self.condition("Ready", ready, ready_reason, ready_message.clone()),
            self.condition("ContainersReady", ready, ready_reason, ready_message),
            scheduled,
        ];
        let (reason, message) = match &self.forced {
            Some((_, reason, message)) => (Some(reason.clone()), Some(message.clone())),
            None => (None, None),
        };
        PodStatus {
            phase: Some(phase.to_owned()),
            conditions: Some(conditions),
            host_ip: Some(NODE_IP.to_owned()),
            host_ips: None,
            pod_ip: Some(NODE_IP.to_owned()),
            pod_ips: Some(vec![PodIP {
                ip: NODE_IP.to_owned(),
            }]),
            start_time: Some(self.start_time.clone()),
            init_container_statuses: (!self.init.is_empty())
                .then(|| self.init.iter().map(|s| s.to_status(Kind::Init)).collect()),
            container_statuses: Some(self.main.iter().map(|s| s.to_status(Kind::Main)).collect()),
            reason,
            message,
            ..PodStatus::default()
        }
    }
}

/// `standin://` and a hex id derived from the Pod uid and the container name, so it is stable
/// and unique per container (a real runtime says `containerd://<64 hex>`).
fn container_id(uid: &str, name: &str) -> String {
    let digest = crate::sha256_digest(format!("{uid}/{name}").as_bytes());
    format!("standin://{}", digest.trim_start_matches("sha256:"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod() -> Pod {
        let c = |name: &str| Container {
            name: name.to_owned(),
            image: Some(format!("{name}:1")),
            ..Container::default()
        };
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                uid: Some("u1".to_owned()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                init_containers: Some(vec![c("init")]),
                containers: vec![c("main")],
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    fn waiting_reason(s: &ContainerStatus) -> Option<&str> {
        s.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
    }

    fn condition<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .expect("condition present")
    }

    #[test]
    fn a_successful_pod_goes_pending_running_succeeded() {
        let mut state = PodState::new(&pod());
        let first = state.snapshot();
        assert_eq!(first.phase.as_deref(), Some("Pending"));
        let init = &first.init_container_statuses.as_ref().expect("init statuses")[0];
        assert_eq!(waiting_reason(init), Some(CONTAINER_CREATING));
        let main = &first.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!(waiting_reason(main), Some(POD_INITIALIZING));
        assert_eq!(
            condition(&first, "Initialized").message.as_deref(),
            Some("containers with incomplete status: [init]")
        );

        state.running(Kind::Init, "init");
        assert_eq!(state.phase(), "Pending");
        state.terminated(Kind::Init, "init", Exit::code(0, Some("ok".to_owned())));
        state.running(Kind::Main, "main");
        let running = state.snapshot();
        assert_eq!(running.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&running, "Ready").status, "True");
        assert_eq!(condition(&running, "Initialized").status, "True");
        let main = &running.container_statuses.as_ref().expect("statuses")[0];
        assert!(
            main.ready
                && main
                    .container_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with("standin://"))
        );

        state.terminated(Kind::Main, "main", Exit::code(0, Some("sha256:x".to_owned())));
        let done = state.snapshot();
        assert_eq!(done.phase.as_deref(), Some("Succeeded"));
        assert_eq!(condition(&done, "Ready").reason.as_deref(), Some("PodCompleted"));
        let term = done.container_statuses.as_ref().expect("statuses")[0]
            .state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .expect("terminated");
        assert_eq!((term.exit_code, term.reason.as_deref()), (0, Some("Completed")));
        assert_eq!(term.message.as_deref(), Some("sha256:x"));
    }

    #[test]
    fn a_failed_init_container_fails_the_pod_and_the_main_container_never_starts() {
        let mut state = PodState::new(&pod());
        state.running(Kind::Init, "init");
        state.terminated(Kind::Init, "init", Exit::code(1, None));
        let status = state.snapshot();
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        let main = &status.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!(waiting_reason(main), Some(POD_INITIALIZING));
        assert_eq!(condition(&status, "Initialized").status, "False");
    }

    #[test]
    fn killed_and_evicted() {
        let mut state = PodState::new(&pod());
        state.running(Kind::Init, "init");
        state.terminated(Kind::Init, "init", Exit::code(0, None));
        state.running(Kind::Main, "main");
        state.kill_running("Error");
        state.fail_pod("Evicted", "The node was low on resource: memory. ".to_owned());
        let status = state.snapshot();
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert_eq!(status.reason.as_deref(), Some("Evicted"));
        let main = &status.container_statuses.as_ref().expect("statuses")[0];
        let term = main
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("terminated");
        assert_eq!(term.exit_code, EXIT_SIGKILL);
    }
}
