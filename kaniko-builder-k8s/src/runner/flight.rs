//! One execution per build per runner: concurrent `execute` calls for the same build share it.
//!
//! Without this, callers of one build that arrive together each try to create the Job and all
//! but one attach after a 409, each following the Job with its own watches and log streams.
//! Within one process, the callers of a build (same namespace, same build hash, same forcing)
//! join one *flight*: a task that runs the build once, fans its events out to every member (the
//! Job's creation reads as [`BuildEvent::Attached`] to all but the first) and hands each member
//! the result.
//!
//! A member that is cancelled (or dropped) leaves the flight; the build goes on for the others.
//! When the last member leaves, the flight is cancelled, and a cancelled last member waits for
//! the flight's cleanup, so nothing of the build is left when it returns. A caller arriving at a
//! cancelled flight waits for its cleanup and starts a new one. A member that joins late gets
//! an `Attached` for the Job (if there is one yet) and the events from then on. Across
//! processes, the Job name and its build hash still make the callers attach to one Job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use kaniko_builder_core::flow::{
    BuildEvent, BuildPlan, CancellationToken, EventSink, ExecError, Executed, FailureReason, PlanReason,
};
use tokio::sync::watch;

use super::KubeRunner;

type Outcome = Result<Executed, ExecError>;

/// What identifies one build for sharing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct FlightKey {
    namespace: String,
    build_hash: String,
    forced: bool,
}

impl FlightKey {
    pub(super) fn of(plan: &BuildPlan) -> Self {
        Self {
            namespace: plan.config.namespace().to_owned(),
            build_hash: plan.config.build_hash().to_string(),
            forced: plan.reason == PlanReason::Forced,
        }
    }
}

/// The flights of one runner.
pub(super) type Flights = Mutex<HashMap<FlightKey, Arc<Flight>>>;

/// One running build and the callers waiting for it.
pub(super) struct Flight {
    members: Mutex<Members>,
    cancel: CancellationToken,
    result: watch::Receiver<Option<Outcome>>,
}

#[derive(Default)]
struct Members {
    next_id: u64,
    /// (id, sink, whether this member started the flight).
    sinks: Vec<(u64, EventSink, bool)>,
    /// The Job event (`Queued` or `Attached`), for members joining after it.
    job_event: Option<BuildEvent>,
}

impl Flight {
    /// Sends `event` to every member. The Job's creation is the first member's: the others see
    /// that they attached to it.
    fn fan_out(&self, event: &BuildEvent) {
        let mut m = self.members.lock().unwrap_or_else(PoisonError::into_inner);
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
        for (_, sink, first) in &m.sinks {
            match &attached {
                Some(a) if !first => sink.send(a.clone()),
                _ => sink.send(event.clone()),
            }
        }
    }

    /// Adds a member, unless the flight was cancelled (its last member left): then `None`.
    /// Checked under the members lock, which [`Self::leave`] cancels under.
    fn join(&self, sink: &EventSink, first: bool) -> Option<u64> {
        let mut m = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        if self.cancel.is_cancelled() {
            return None;
        }
        let id = m.next_id;
        m.next_id += 1;
        if let Some(e) = &m.job_event {
            sink.send(e.clone());
        }
        m.sinks.push((id, sink.clone(), first));
        Some(id)
    }

    /// The run ended: its members' sinks are let go (a caller's event stream ends with its call).
    fn close(&self) {
        let mut m = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        m.sinks.clear();
    }

    /// Removes a member; cancels the flight when it was the last. Returns whether it was.
    fn leave(&self, id: u64) -> bool {
        let mut m = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        m.sinks.retain(|(i, _, _)| *i != id);
        let last = m.sinks.is_empty();
        if last {
            self.cancel.cancel();
        }
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
        let key = FlightKey::of(plan);
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
    fn launch(&self, plan: &BuildPlan, key: &FlightKey, events: &EventSink) -> (Arc<Flight>, u64) {
        let (tx, rx) = watch::channel(None);
        let flight = Arc::new(Flight {
            members: Mutex::new(Members::default()),
            cancel: CancellationToken::new(),
            result: rx,
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
            let _ = tx.send(Some(outcome));
        });
        (flight, id)
    }
}

/// Takes a flight out of its runner's map when its task ends, also by a panic or when the
/// runtime drops the task: a later call then starts afresh instead of joining a dead flight.
struct Landing {
    runner: KubeRunner,
    key: FlightKey,
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
