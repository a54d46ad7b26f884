//! The watch loop's pending verdicts, one slot per purpose, so that one never hides or drops
//! another: the Job's word waiting for the Pod's, an unschedulable Pod, a failed exec upload,
//! a node that stopped reporting, an image pull that keeps failing.

use kaniko_builder_core::flow::FailureReason;
use tokio::time::Instant;

use super::state::Verdict;

#[derive(Debug, Default)]
pub(super) struct Deadlines {
    job: Option<(Instant, Verdict)>,
    unschedulable: Option<(Instant, Verdict)>,
    upload: Option<(Instant, Verdict)>,
    node_lost: Option<(Instant, Verdict)>,
    image_pull: Option<(Instant, Verdict)>,
}

impl Deadlines {
    /// The Job finished without a Pod verdict yet: take its word at `at`. The first one stays.
    pub(super) fn job(&mut self, at: Instant, verdict: Verdict) {
        self.job.get_or_insert((at, verdict));
    }

    /// The Pod cannot be scheduled: fail at `at` unless it is scheduled before.
    pub(super) fn unschedulable(&mut self, at: Instant, message: String) {
        self.unschedulable
            .get_or_insert((at, Verdict::Failed(FailureReason::Unschedulable { message })));
    }

    pub(super) fn scheduled(&mut self) {
        self.unschedulable = None;
    }

    /// The exec upload failed: fail at `at` unless the init container says why first.
    pub(super) fn upload_failed(&mut self, at: Instant, message: String) {
        self.upload
            .get_or_insert((at, Verdict::Failed(FailureReason::Context { message })));
    }

    /// The node stopped reporting: fail as lost at `at` unless it comes back.
    pub(super) fn node_lost(&mut self, at: Instant, node: Option<&str>, message: String) {
        self.node_lost.get_or_insert((
            at,
            Verdict::Failed(FailureReason::NodeLost {
                node: node.map(str::to_owned),
                message,
            }),
        ));
    }

    /// The node reports again. An upload failure it caused meanwhile is due again.
    pub(super) fn node_back(&mut self) {
        self.node_lost = None;
    }

    /// `container`'s image pull fails and the kubelet retries: fail at `at` with `message`
    /// unless it recovers before. While it keeps failing, the first `at` stays and the message
    /// becomes the newest. Returns whether this started the grace.
    pub(super) fn image_pull_failing(&mut self, at: Instant, container: &str, message: &str) -> bool {
        let verdict = Verdict::Failed(FailureReason::ImagePull {
            container: container.to_owned(),
            message: message.to_owned(),
        });
        match &mut self.image_pull {
            Some((_, pending)) if pull_container(pending) == Some(container) => {
                *pending = verdict;
                false
            }
            slot => {
                *slot = Some((at, verdict));
                true
            }
        }
    }

    /// `container`'s image pull no longer fails. Returns whether a grace was running.
    pub(super) fn image_pull_recovered(&mut self, container: &str) -> bool {
        let theirs = self
            .image_pull
            .as_ref()
            .is_some_and(|(_, v)| pull_container(v) == Some(container));
        if theirs {
            self.image_pull = None;
        }
        theirs
    }

    /// The slots that may fire now, in the order that wins a tie. A failed upload and a failing
    /// image pull wait while the node is not reporting: their state is stale then, and the
    /// node's verdict says more.
    fn live(&self) -> impl Iterator<Item = &(Instant, Verdict)> {
        let reporting = self.node_lost.is_none();
        [
            self.job.as_ref(),
            self.node_lost.as_ref(),
            self.unschedulable.as_ref(),
            self.image_pull.as_ref().filter(|_| reporting),
            self.upload.as_ref().filter(|_| reporting),
        ]
        .into_iter()
        .flatten()
    }

    /// When the next pending verdict is due.
    pub(super) fn next(&self) -> Option<Instant> {
        self.live().map(|(at, _)| *at).min()
    }

    /// The earliest verdict due at `now`, if any.
    pub(super) fn take_due(&mut self, now: Instant) -> Option<Verdict> {
        let at = self.next().filter(|at| *at <= now)?;
        let due = |s: &Option<(Instant, Verdict)>| s.as_ref().is_some_and(|(t, _)| *t == at);
        let slot = if due(&self.job) {
            &mut self.job
        } else if due(&self.node_lost) {
            &mut self.node_lost
        } else if due(&self.unschedulable) {
            &mut self.unschedulable
        } else if self.node_lost.is_none() && due(&self.image_pull) {
            &mut self.image_pull
        } else if self.node_lost.is_none() && due(&self.upload) {
            &mut self.upload
        } else {
            return None;
        };
        slot.take().map(|(_, v)| v)
    }
}

/// The container an image pull verdict is about.
fn pull_container(verdict: &Verdict) -> Option<&str> {
    match verdict {
        Verdict::Failed(FailureReason::ImagePull { container, .. }) => Some(container),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn kind(v: Option<Verdict>) -> Option<&'static str> {
        match v {
            Some(Verdict::Failed(r)) => Some(r.kind()),
            _ => None,
        }
    }

    #[test]
    fn a_node_back_in_time_leaves_an_earlier_upload_failure_due() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.upload_failed(t0 + Duration::from_secs(10), "stream broke".into());
        d.node_lost(
            t0 + Duration::from_secs(60),
            Some("n"),
            "NodeStatusUnknown".into(),
        );
        // While the node is suspected, the upload failure waits for it.
        assert_eq!(d.next(), Some(t0 + Duration::from_secs(60)));
        assert_eq!(kind(d.take_due(t0 + Duration::from_secs(30))), None);
        d.node_back();
        assert_eq!(kind(d.take_due(t0 + Duration::from_secs(30))), Some("context"));
        assert_eq!(d.next(), None);
    }

    #[test]
    fn the_jobs_word_is_not_hidden_by_a_suspected_node() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.node_lost(t0 + Duration::from_secs(60), Some("n"), "m".into());
        d.job(
            t0 + Duration::from_secs(2),
            Verdict::Failed(FailureReason::JobFailed {
                reason: "BackoffLimitExceeded".into(),
                message: "m".into(),
            }),
        );
        assert_eq!(kind(d.take_due(t0 + Duration::from_secs(2))), Some("job_failed"));
        d.node_back();
        assert_eq!(d.next(), None, "nothing else pending");
    }

    fn message(v: Option<Verdict>) -> Option<String> {
        match v {
            Some(Verdict::Failed(FailureReason::ImagePull { message, .. })) => Some(message),
            _ => None,
        }
    }

    #[test]
    fn a_failing_pull_keeps_its_first_time_and_its_last_message_until_it_recovers() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = Deadlines::default();
        assert!(d.image_pull_failing(t0 + s(120), "kaniko-init", "ErrImagePull: x"));
        assert!(!d.image_pull_failing(t0 + s(130), "kaniko-init", "ImagePullBackOff: y"));
        assert_eq!(
            d.next(),
            Some(t0 + s(120)),
            "the grace counts from the first failure"
        );
        assert!(
            !d.image_pull_recovered("image-builder"),
            "another container's recovery"
        );
        assert!(d.image_pull_recovered("kaniko-init"));
        assert_eq!(d.next(), None);
        assert!(!d.image_pull_recovered("kaniko-init"), "nothing left to stop");

        assert!(d.image_pull_failing(t0 + s(200), "kaniko-init", "ErrImagePull: x"));
        d.image_pull_failing(t0 + s(210), "kaniko-init", "ImagePullBackOff: z");
        d.node_lost(t0 + s(260), Some("n"), "m".into());
        assert_eq!(d.take_due(t0 + s(230)), None, "waits while the node is suspected");
        d.node_back();
        assert_eq!(
            message(d.take_due(t0 + s(230))).as_deref(),
            Some("ImagePullBackOff: z")
        );
    }

    #[test]
    fn a_lost_node_fires_at_its_time_and_scheduling_clears_only_its_own_slot() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.unschedulable(t0 + Duration::from_secs(300), "0/1 nodes".into());
        d.scheduled();
        assert_eq!(d.next(), None);
        d.node_lost(t0 + Duration::from_secs(1), Some("n"), "m".into());
        d.node_lost(t0 + Duration::from_secs(9), Some("n"), "later".into());
        assert_eq!(kind(d.take_due(t0)), None, "not yet");
        assert_eq!(kind(d.take_due(t0 + Duration::from_secs(1))), Some("node_lost"));
    }
}
