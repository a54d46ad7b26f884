//! Faults the stand-in node injects on demand, and which Pods they hit.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

/// Something going wrong on the node, reported the way a real kubelet reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Pod fault: the main container is killed once it runs and terminates with exit code 137,
    /// reason `OOMKilled`; the Pod fails.
    OomKilled,
    /// Pod fault: the first image pull (the first init container's) fails for good: the
    /// container waits with reason `ErrImagePull`, then `ImagePullBackOff` (message `Back-off
    /// pulling image "…"`) while the kubelet backs off, then the next attempt fails the same
    /// way, and so on; the Pod stays `Pending` until it is deleted. See
    /// [`NodeOptions::pull_backoff`](super::NodeOptions::pull_backoff).
    ImagePullBackOff,
    /// Pod fault: a registry that recovers. The first `times` attempts of the first image pull
    /// fail as with [`Fault::ImagePullBackOff`] (each one `ErrImagePull`, then
    /// `ImagePullBackOff` for the back-off); the attempt after them succeeds and the Pod goes
    /// on. `times: 0` is no fault.
    ImagePullFailures {
        /// How many attempts fail.
        times: u32,
    },
    /// Node fault: the node is cordoned (`spec.unschedulable: true`), so the real scheduler
    /// leaves new Pods `Pending` with condition `PodScheduled=False`, reason `Unschedulable`.
    Unschedulable,
    /// Pod fault: once the main container runs, the eviction manager kills the Pod: phase
    /// `Failed`, reason `Evicted`, message `The node was low on resource: memory. …`, containers
    /// terminated with exit code 137.
    Evict,
    /// Node fault: the node is lost; heartbeats (node status and Lease) and every Pod update
    /// stop, while its containers keep running. With the `nodelifecycle` controller running
    /// the Node turns `Ready=Unknown` and its Pods `Ready=False`.
    StopReporting,
    /// Pod fault: the containers start only after this delay (the Pod stays `Pending` with its
    /// containers waiting in `ContainerCreating`/`PodInitializing`).
    SlowStart(Duration),
    /// Pod fault: the volumes are set up only after this delay (the Pod stays `Pending` in
    /// `ContainerCreating`): what the Pod mounts is read after it, as a slow kubelet would.
    SlowMount(Duration),
}

impl Fault {
    /// Whether the fault concerns the whole node rather than one Pod.
    pub fn is_node_fault(&self) -> bool {
        matches!(self, Self::Unschedulable | Self::StopReporting)
    }
}

/// Which Pod a Pod fault hits. Every Pod fault is one-shot: the first Pod that matches (among
/// those the node starts after the injection) takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// The node itself (for [`Fault::Unschedulable`] and [`Fault::StopReporting`]).
    Node,
    /// The next Pod the node starts.
    NextPod,
    /// A Pod whose name starts with this (a Job's Pods are named `<job name>-<suffix>`).
    NamePrefix(String),
    /// A Pod carrying all of these labels (e.g. `job-name=<job>`).
    Labels(BTreeMap<String, String>),
}

impl Target {
    /// A Pod carrying label `key=value`.
    pub fn label(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self::Labels(BTreeMap::from([(key.into(), value.into())]))
    }

    /// Whether a Pod fault aimed at this target hits `pod`.
    pub(super) fn matches(&self, pod: &Pod) -> bool {
        match self {
            Self::Node => false,
            Self::NextPod => true,
            Self::NamePrefix(prefix) => pod
                .metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(prefix.as_str())),
            Self::Labels(wanted) => {
                let labels = pod.metadata.labels.as_ref();
                wanted
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            }
        }
    }
}

/// [`PodFaults::failed_pulls`] of [`Fault::ImagePullBackOff`]: more attempts than any test
/// lives through.
pub(super) const PULLS_FAIL_FOREVER: u32 = u32::MAX;

/// The Pod faults one Pod took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PodFaults {
    pub(super) oom_killed: bool,
    /// How many attempts of the first image pull fail.
    pub(super) failed_pulls: u32,
    pub(super) evict: bool,
    pub(super) slow_start: Option<Duration>,
    pub(super) slow_mount: Option<Duration>,
}

/// Armed Pod faults, in injection order.
#[derive(Debug, Default)]
pub(super) struct FaultBook {
    armed: Vec<(Fault, Target)>,
}

impl FaultBook {
    pub(super) fn arm(&mut self, fault: Fault, target: Target) {
        self.armed.push((fault, target));
    }

    pub(super) fn clear(&mut self) {
        self.armed.clear();
    }

    /// Removes and returns the faults aimed at `pod`.
    pub(super) fn take_for(&mut self, pod: &Pod) -> PodFaults {
        let mut taken = PodFaults::default();
        self.armed.retain(|(fault, target)| {
            if !target.matches(pod) {
                return true;
            }
            match fault {
                Fault::OomKilled => taken.oom_killed = true,
                Fault::ImagePullBackOff => taken.failed_pulls = PULLS_FAIL_FOREVER,
                Fault::ImagePullFailures { times } => taken.failed_pulls = *times,
                Fault::Evict => taken.evict = true,
                Fault::SlowStart(d) => taken.slow_start = Some(*d),
                Fault::SlowMount(d) => taken.slow_mount = Some(*d),
                Fault::Unschedulable | Fault::StopReporting => return true,
            }
            false
        });
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn pod_faults_are_one_shot_and_go_to_the_matching_pod() {
        let mut book = FaultBook::default();
        book.arm(Fault::OomKilled, Target::NamePrefix("job-a-".to_owned()));
        book.arm(Fault::Evict, Target::label("job-name", "job-b"));
        book.arm(Fault::SlowStart(Duration::from_secs(1)), Target::NextPod);

        let b = book.take_for(&pod("job-b-xyz", &[("job-name", "job-b")]));
        assert_eq!(
            b,
            PodFaults {
                evict: true,
                slow_start: Some(Duration::from_secs(1)),
                ..PodFaults::default()
            }
        );
        let a = book.take_for(&pod("job-a-123", &[]));
        assert!(a.oom_killed && !a.evict && a.slow_start.is_none(), "{a:?}");
        assert_eq!(book.take_for(&pod("job-a-456", &[])), PodFaults::default());
    }

    #[test]
    fn pull_faults_say_how_many_attempts_fail() {
        let mut book = FaultBook::default();
        book.arm(Fault::ImagePullFailures { times: 2 }, Target::NextPod);
        assert_eq!(book.take_for(&pod("a", &[])).failed_pulls, 2);
        book.arm(Fault::ImagePullBackOff, Target::NextPod);
        assert_eq!(book.take_for(&pod("b", &[])).failed_pulls, PULLS_FAIL_FOREVER);
        assert_eq!(book.take_for(&pod("c", &[])).failed_pulls, 0, "one-shot");
    }
}
