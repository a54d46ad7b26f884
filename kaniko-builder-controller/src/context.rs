//! What the reconciler shares: the client, the options, the build slots, the event recorder and
//! the builds this process runs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::ControllerOptions;

/// The reconciler's shared state.
pub(crate) struct Context {
    pub(crate) client: kube::Client,
    pub(crate) options: ControllerOptions,
    /// One permit per build that may run at once.
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) recorder: Recorder,
    pub(crate) builds: Builds,
    /// The build ServiceAccounts (`namespace/name`) this process made sure of.
    pub(crate) accounts: Mutex<HashSet<String>>,
    /// Consecutive reconcile errors per object, for the back-off.
    pub(crate) errors: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub(crate) fn new(client: kube::Client, options: ControllerOptions, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: crate::status::FIELD_MANAGER.to_owned(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            slots: Arc::new(Semaphore::new(options.concurrency)),
            client,
            options,
            builds: Builds::default(),
            accounts: Mutex::default(),
            errors: Mutex::default(),
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The builds this process runs or ran, by the `ImageBuild`'s uid: at most one per object, for
/// one generation. A finished build stays until its final status is seen, so a reconcile that
/// still sees an older status does not start the generation again.
#[derive(Default)]
pub(crate) struct Builds {
    entries: Mutex<HashMap<String, Entry>>,
    /// Set by [`Builds::stop_all`]: this process no longer starts builds.
    closed: std::sync::atomic::AtomicBool,
}

struct Entry {
    generation: Option<i64>,
    cancel: CancellationToken,
    done: watch::Receiver<bool>,
}

/// A started build's handle, held by its task: marks the build finished when dropped.
pub(crate) struct Started {
    pub(crate) cancel: CancellationToken,
    done: watch::Sender<bool>,
}

impl Drop for Started {
    fn drop(&mut self) {
        self.done.send_replace(true);
    }
}

/// What [`Builds::start`] found.
pub(crate) enum Start {
    /// This generation is running or ran in this process: nothing to do.
    Known,
    /// Start it with this handle (an older generation's build was cancelled first).
    New(Started),
}

impl Builds {
    /// Registers the build of `generation` for `uid` unless it is known; cancels (and waits
    /// for) a build of another generation first. After [`stop_all`](Self::stop_all), nothing
    /// starts (every build counts as known).
    pub(crate) async fn start(&self, uid: &str, generation: Option<i64>) -> Start {
        if self.is_closed() {
            return Start::Known;
        }
        let older = {
            let entries = lock(&self.entries);
            match entries.get(uid) {
                Some(e) if e.generation == generation => return Start::Known,
                Some(e) => Some((e.cancel.clone(), e.done.clone())),
                None => None,
            }
        };
        if let Some((cancel, done)) = older {
            cancel.cancel();
            wait_done(done).await;
        }
        let cancel = CancellationToken::new();
        let (tx, rx) = watch::channel(false);
        let mut entries = lock(&self.entries);
        // Checked under the lock stop_all drains with: no build slips in after it.
        if self.is_closed() {
            return Start::Known;
        }
        entries.insert(
            uid.to_owned(),
            Entry {
                generation,
                cancel: cancel.clone(),
                done: rx,
            },
        );
        Start::New(Started { cancel, done: tx })
    }

    /// Forgets the finished build of `uid` once its final status for `generation` is seen.
    pub(crate) fn forget_done(&self, uid: &str, generation: Option<i64>) {
        let mut entries = lock(&self.entries);
        if entries
            .get(uid)
            .is_some_and(|e| e.generation == generation && *e.done.borrow())
        {
            entries.remove(uid);
        }
    }

    /// Cancels the build of `uid` (its Job stays: see the caller) and waits until its task ended.
    pub(crate) async fn stop(&self, uid: &str) {
        let entry = lock(&self.entries).remove(uid).map(|e| (e.cancel, e.done));
        if let Some((cancel, done)) = entry {
            cancel.cancel();
            wait_done(done).await;
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Cancels every build and waits for their tasks (shutting down, or no longer the leader);
    /// no build starts afterwards.
    pub(crate) async fn stop_all(&self) {
        let all: Vec<_> = {
            let mut entries = lock(&self.entries);
            self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
            entries.drain().map(|(_, e)| (e.cancel, e.done)).collect()
        };
        for (cancel, _) in &all {
            cancel.cancel();
        }
        for (_, done) in all {
            wait_done(done).await;
        }
    }

    #[cfg(test)]
    fn generations(&self) -> Vec<Option<i64>> {
        lock(&self.entries).values().map(|e| e.generation).collect()
    }
}

async fn wait_done(mut done: watch::Receiver<bool>) {
    // An error means the sender is gone: the task ended too.
    let _ = done.wait_for(|d| *d).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_build_per_generation_and_a_new_generation_cancels_the_old() {
        let builds = Builds::default();
        let Start::New(first) = builds.start("uid", Some(1)).await else {
            panic!("first start")
        };
        assert!(matches!(builds.start("uid", Some(1)).await, Start::Known));

        let cancel = first.cancel.clone();
        let task = tokio::spawn(async move {
            first.cancel.cancelled().await;
            drop(first);
        });
        let Start::New(second) = builds.start("uid", Some(2)).await else {
            panic!("second generation")
        };
        assert!(cancel.is_cancelled(), "the older generation was cancelled");
        task.await.expect("task");
        assert_eq!(builds.generations(), [Some(2)]);

        // Finished: known until its final status is seen, then forgotten.
        drop(second);
        assert!(matches!(builds.start("uid", Some(2)).await, Start::Known));
        builds.forget_done("uid", Some(1));
        assert_eq!(
            builds.generations().len(),
            1,
            "another generation's status forgets nothing"
        );
        builds.forget_done("uid", Some(2));
        assert!(builds.generations().is_empty());
    }

    #[tokio::test]
    async fn stop_all_cancels_and_waits() {
        let builds = Builds::default();
        let mut tasks = Vec::new();
        for uid in ["a", "b"] {
            let Start::New(started) = builds.start(uid, Some(1)).await else {
                panic!("start")
            };
            tasks.push(tokio::spawn(async move {
                started.cancel.cancelled().await;
            }));
        }
        builds.stop_all().await;
        for t in tasks {
            assert!(t.is_finished() || t.await.is_ok());
        }
        assert!(builds.generations().is_empty());
        assert!(
            matches!(builds.start("c", Some(1)).await, Start::Known),
            "nothing starts after stop_all"
        );
        assert!(builds.generations().is_empty());
    }
}
