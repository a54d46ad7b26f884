//! The watch loop's pending verdicts, one slot per purpose, so that one never hides or drops
//! another: the Job's word waiting for the Pod's, an unschedulable Pod, a failed exec upload,
//! a node that stopped reporting.

use kaniko_builder_core::flow::FailureReason;
use tokio::time::Instant;

use super::state::Verdict;

#[derive(Debug, Default)]
pub(super) struct Deadlines {
    job: Option<(Instant, Verdict)>,
    unschedulable: Option<(Instant, Verdict)>,
    upload: Option<(Instant, Verdict)>,
    node_lost: Option<(Instant, Verdict)>,
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

    /// The slots that may fire now, in the order that wins a tie. A failed upload waits while
    /// the node is not reporting: that is its cause, and the node's verdict says more.
    fn live(&self) -> impl Iterator<Item = &(Instant, Verdict)> {
        let upload = if self.node_lost.is_some() {
            None
        } else {
            self.upload.as_ref()
        };
        [
            self.job.as_ref(),
            self.node_lost.as_ref(),
            self.unschedulable.as_ref(),
            upload,
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
        } else if self.node_lost.is_none() && due(&self.upload) {
            &mut self.upload
        } else {
            return None;
        };
        slot.take().map(|(_, v)| v)
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
