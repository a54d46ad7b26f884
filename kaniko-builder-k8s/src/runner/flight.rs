//! One execution per build per runner: concurrent `execute` calls for the same build share it.
//!
//! Without this, callers of one build that arrive together each try to create the Job and all
//! but one attach after a 409, each following the Job with its own watches and log streams.
//! Within one process, the callers of a build (the same [`BuildKey`]: namespace, build hash,
//! forcing) join one *flight*: a task that runs the build once, fans its events out to every
//! member (the Job's creation reads as [`BuildEvent::Attached`] to all but the first) and hands
//! each member the result.
//!
//! No member's sink is called under a lock of the runner: the events are queued under the
//! members lock and delivered after it is released, by one thread at a time, so every member
//! sees them in the order they were queued, and a callback may call back into the runner (join
//! or start a build) without deadlocking.
//!
//! A member that is cancelled (or dropped) leaves the flight; the build goes on for the others.
//! When the last member leaves, the flight is cancelled, and a cancelled last member waits for
//! the flight's cleanup, so nothing of the build is left when it returns. A caller arriving at a
//! cancelled flight waits for its cleanup and starts a new one. A member that joins late gets
//! an `Attached` for the Job (if there is one yet) and the events from then on. Across
//! processes, the Job name and its build hash still make the callers attach to one Job.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kaniko_builder_core::flow::{
    BuildEvent, BuildKey, BuildPlan, CancellationToken, EventSink, ExecError, Executed, FailureReason,
};
use tokio::sync::watch;

use super::KubeRunner;

type Outcome = Result<Executed, ExecError>;

/// The flights of one runner, by [`BuildPlan::key`].
pub(super) type Flights = Mutex<HashMap<BuildKey, Arc<Flight>>>;

/// One running build and the callers waiting for it.
pub(super) struct Flight {
    members: Mutex<Members>,
    cancel: CancellationToken,
    result: watch::Receiver<Option<Outcome>>,
    /// Notified when a thread stops delivering the outbox.
    idle: tokio::sync::Notify,
}

#[derive(Default)]
struct Members {
    next_id: u64,
    /// (id, sink, whether this member started the flight).
    sinks: Vec<(u64, EventSink, bool)>,
    /// The Job event (`Queued` or `Attached`), for members joining after it.
    job_event: Option<BuildEvent>,
    /// Events to deliver, in order, each with the sink it goes to.
    outbox: VecDeque<(EventSink, BuildEvent)>,
    /// Whether a thread is delivering the outbox (outside the lock).
    delivering: bool,
}

impl Flight {
    fn members(&self) -> MutexGuard<'_, Members> {
        // A panic under this lock leaves the member list consistent: keep using it.
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `event` for every member, then delivers. The Job's creation is the first
    /// member's: the others see that they attached to it.
    fn fan_out(&self, event: &BuildEvent) {
        let mut m = self.members();
        let attached = match event {
            BuildEvent::Queued { job, namespace } | BuildEvent::Attached { job, namespace } => {
                Some(BuildEvent::Attached {
                    job: job.clone(),
                    namespace: namespace.clone(),
                })
            }
            _ => None,
        };
        if let Some(a) = &attached {
            m.job_event = Some(a.clone());
        }
        let queued: Vec<(EventSink, BuildEvent)> = m
            .sinks
            .iter()
            .map(|(_, sink, first)| match &attached {
                Some(a) if !first => (sink.clone(), a.clone()),
                _ => (sink.clone(), event.clone()),
            })
            .collect();
        m.outbox.extend(queued);
        self.deliver(m);
    }

    /// Delivers the outbox with the lock released. One thread delivers at a time, so every
    /// sink gets its events in queue order; a thread that finds another delivering leaves its
    /// events to it. A sink that calls back into the runner (and so queues more events, or takes
    /// this lock) therefore neither deadlocks nor reorders anything.
    fn deliver<'a>(&'a self, mut m: MutexGuard<'a, Members>) {
        if m.delivering || m.outbox.is_empty() {
            return;
        }
        m.delivering = true;
        // A sink that panics must not leave the flight without a deliverer.
        let reset = DeliveringFlag(self);
        loop {
            let batch = std::mem::take(&mut m.outbox);
            if batch.is_empty() {
                m.delivering = false;
                std::mem::forget(reset);
                drop(m);
                self.idle.notify_waiters();
                return;
            }
            drop(m);
            for (sink, event) in batch {
                sink.send(event);
            }
            m = self.members();
        }
    }

    /// Delivers what is queued (after a [`Self::join`], once the caller holds no lock).
    fn flush(&self) {
        self.deliver(self.members());
    }

    /// Returns once every queued event has been handed out, delivering them here unless
    /// another thread is at it: the run's result goes out after its last events, as it did
    /// when they were handed out on the run's own task.
    async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let m = self.members();
                if !m.delivering {
                    if m.outbox.is_empty() {
                        return;
                    }
                    self.deliver(m);
                    continue;
                }
            }
            notified.await;
        }
    }

    /// Adds a member, unless the flight was cancelled (its last member left): then `None`.
    /// Checked under the members lock, which [`Self::leave`] cancels under. A member joining
    /// after the Job event gets it first: queued here, delivered by [`Self::flush`], which the
    /// caller calls once it holds no lock.
    fn join(&self, sink: &EventSink, first: bool) -> Option<u64> {
        let mut m = self.members();
        if self.cancel.is_cancelled() {
            return None;
        }
        let id = m.next_id;
        m.next_id += 1;
        if let Some(e) = m.job_event.clone() {
            m.outbox.push_back((sink.clone(), e));
        }
        m.sinks.push((id, sink.clone(), first));
        Some(id)
    }

    /// The run ended: its members' sinks are let go (a caller's event stream ends with its call
    /// and the events still queued for it). They are dropped outside the lock.
    fn close(&self) {
        let sinks = std::mem::take(&mut self.members().sinks);
        drop(sinks);
    }

    /// Removes a member; cancels the flight when it was the last. Returns whether it was.
    fn leave(&self, id: u64) -> bool {
        let mut m = self.members();
        let gone: Vec<_> = m.sinks.extract_if(.., |(i, _, _)| *i == id).collect();
        let last = m.sinks.is_empty();
        if last {
            self.cancel.cancel();
        }
        drop(m);
        drop(gone);
        last
    }

    async fn outcome(&self) -> Outcome {
        let mut rx = self.result.clone();
        let done = rx.wait_for(Option::is_some).await;
        match done {
            Ok(v) => v.clone().expect("waited for Some"),
            // The task ended without a result: it panicked or the runtime is shutting down.
            Err(_) => Err(ExecError::new(FailureReason::Cluster {
                action: "run the build".to_owned(),
                message: "the build task ended without a result".to_owned(),
                status: None,
            })),
        }
    }
}

/// Clears [`Members::delivering`] when the delivering thread unwinds out of a sink.
struct DeliveringFlag<'a>(&'a Flight);

impl Drop for DeliveringFlag<'_> {
    fn drop(&mut self) {
        self.0.members().delivering = false;
        self.0.idle.notify_waiters();
    }
}

/// Leaves the flight when the caller's future is dropped before it ended.
struct Membership {
    flight: Arc<Flight>,
    id: u64,
    armed: bool,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if self.armed {
            self.flight.leave(self.id);
        }
    }
}

impl KubeRunner {
    /// Runs `plan`, or joins the run of the same build already under way in this runner.
    pub(super) async fn execute_shared(
        &self,
        plan: &BuildPlan,
        events: &EventSink,
        cancel: CancellationToken,
    ) -> Outcome {
        let key = plan.key();
        let (flight, id) = loop {
            let dying = {
                let mut flights = self.inner.flights.lock().unwrap_or_else(PoisonError::into_inner);
                match flights.get(&key) {
                    Some(flight) => match flight.join(events, false) {
                        Some(id) => {
                            tracing::debug!(?key, "joining the build already under way");
                            break (Arc::clone(flight), id);
                        }
                        None => Arc::clone(flight),
                    },
                    None => {
                        let (flight, id) = self.launch(plan, &key, events);
                        flights.insert(key.clone(), Arc::clone(&flight));
                        break (flight, id);
                    }
                }
            };
            // Its callers all left and it is cleaning up: once its Job is gone, start afresh.
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(ExecError::new(FailureReason::Cancelled)),
                _ = dying.outcome() => {}
            }
        };
        let mut membership = Membership {
            flight: Arc::clone(&flight),
            id,
            armed: true,
        };
        // The flights lock is released: the Job event queued for a late joiner goes out now.
        flight.flush();
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                membership.armed = false;
                if flight.leave(id) {
                    // The last one out: the flight cleans up, and the caller sees it done.
                    flight.outcome().await
                } else {
                    Err(ExecError::new(FailureReason::Cancelled))
                }
            }
            outcome = flight.outcome() => outcome,
        };
        membership.armed = false;
        outcome
    }

    /// Starts the task that runs the build once for every member, with `events` as its first
    /// member (joined before the task starts, so it misses nothing).
    fn launch(&self, plan: &BuildPlan, key: &BuildKey, events: &EventSink) -> (Arc<Flight>, u64) {
        let (tx, rx) = watch::channel(None);
        let flight = Arc::new(Flight {
            members: Mutex::new(Members::default()),
            cancel: CancellationToken::new(),
            result: rx,
            idle: tokio::sync::Notify::new(),
        });
        let id = flight.join(events, true).expect("a new flight is not cancelled");
        let (runner, plan) = (self.clone(), plan.clone());
        let fan = Arc::clone(&flight);
        let sink = EventSink::from_fn(move |e| fan.fan_out(&e));
        let landing = Landing {
            runner: self.clone(),
            key: key.clone(),
            flight: Arc::clone(&flight),
        };
        tokio::spawn(async move {
            let outcome = Box::pin(runner.execute_once(&plan, &sink, landing.flight.cancel.clone())).await;
            let flight = Arc::clone(&landing.flight);
            // Out of the map before the result is out: a caller arriving later starts afresh
            // (after its own registry probe, which normally finds the image pushed).
            drop(landing);
            flight.close();
            flight.drained().await;
            let _ = tx.send(Some(outcome));
        });
        (flight, id)
    }
}

/// Takes a flight out of its runner's map when its task ends, also by a panic or when the
/// runtime drops the task: a later call then starts afresh instead of joining a dead flight.
struct Landing {
    runner: KubeRunner,
    key: BuildKey,
    flight: Arc<Flight>,
}

impl Drop for Landing {
    fn drop(&mut self) {
        let mut flights = self
            .runner
            .inner
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if flights
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            flights.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn line(n: &str) -> BuildEvent {
        BuildEvent::Log {
            container: "image-builder".to_owned(),
            line: n.to_owned(),
        }
    }

    fn names(events: &Mutex<Vec<BuildEvent>>) -> Vec<String> {
        events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|e| match e {
                BuildEvent::Log { line, .. } => line.clone(),
                BuildEvent::Queued { .. } => "queued".to_owned(),
                BuildEvent::Attached { .. } => "attached".to_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// A sink that, on the same thread, joins the flight with a second sink and fans out one
    /// more event (both take the members lock) neither deadlocks nor sees its events out of
    /// order; the new member gets the Job event first, then what follows.
    #[test]
    fn a_sink_may_call_back_in_and_every_member_keeps_its_order() {
        let (_tx, result) = watch::channel(None);
        let flight = Arc::new(Flight {
            members: Mutex::default(),
            cancel: CancellationToken::new(),
            result,
            idle: tokio::sync::Notify::new(),
        });
        let first: Arc<Mutex<Vec<BuildEvent>>> = Arc::default();
        let second: Arc<Mutex<Vec<BuildEvent>>> = Arc::default();
        let second_sink = {
            let second = Arc::clone(&second);
            EventSink::from_fn(move |e| second.lock().unwrap_or_else(PoisonError::into_inner).push(e))
        };
        let first_sink = {
            let (first, flight) = (Arc::clone(&first), Arc::downgrade(&flight));
            let called_back = AtomicBool::new(false);
            EventSink::from_fn(move |e| {
                let reenter = matches!(&e, BuildEvent::Log { line, .. } if line == "1");
                first.lock().unwrap_or_else(PoisonError::into_inner).push(e);
                if reenter && !called_back.swap(true, Ordering::SeqCst) {
                    let flight = flight.upgrade().expect("flight");
                    flight.join(&second_sink, false).expect("joined");
                    flight.flush();
                    flight.fan_out(&line("2"));
                }
            })
        };
        flight.join(&first_sink, true).expect("joined");
        flight.fan_out(&BuildEvent::Queued {
            job: "kb-app".to_owned(),
            namespace: "ns".to_owned(),
        });
        flight.fan_out(&line("1"));
        flight.fan_out(&line("3"));
        assert_eq!(names(&first), ["queued", "1", "2", "3"]);
        assert_eq!(names(&second), ["attached", "2", "3"]);
        let m = flight.members();
        assert!(!m.delivering && m.outbox.is_empty());
    }
}
