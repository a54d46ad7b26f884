//! A caller's `EventSink` callback runs under no lock of the runner: a callback that calls back
//! into the same runner (here: joins the build it is watching) completes instead of
//! deadlocking. Against the real local control plane, without a node: the build waits for a
//! Pod that never runs, and both callers cancel at the end.
//!
//! The callback calls back in from a helper thread and waits for it (a safety net bounds the
//! wait), so a lock held around the callback shows as a clear failure instead of a hung test.

mod runner_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt as _;
use k8s_openapi::api::batch::v1::Job;
use kaniko_builder_core::flow::{BuildEvent, BuildExecutor, BuildPlan, CancellationToken, EventSink};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_testkit::TestCluster;
use runner_support::*;

const DOCKER_CONFIG: &str = r#"{"auths":{"registry.local:5000":{"auth":"dXNlcjpwYXNz"}}}"#;
/// Safety net for a call back into the runner; nothing asserts on timing.
const REENTRY_WAIT: Duration = Duration::from_secs(20);

/// Where the callbacks say what their calls back into the runner did: `Ok` when the call
/// returned, `Err` when it did not within [`REENTRY_WAIT`].
type Reentries = tokio::sync::mpsc::UnboundedSender<Result<String, String>>;

/// A sink that records every event and, at the first event `trigger` matches, calls back into
/// `runner`: a helper thread joins the same build (`execute`, polled once, then dropped: it
/// joins the shared run and leaves it), and the callback waits for that thread.
fn reentrant_sink(
    name: &'static str,
    rec: &Recorder,
    runner: &Arc<KubeRunner>,
    plan: &BuildPlan,
    reentries: &Reentries,
    trigger: fn(&BuildEvent) -> bool,
) -> EventSink {
    let record = rec.sink();
    let (runner, plan, reentries) = (Arc::clone(runner), plan.clone(), reentries.clone());
    let handle = tokio::runtime::Handle::current();
    let fired = AtomicBool::new(false);
    let joiner = Recorder::default();
    EventSink::from_fn(move |event| {
        let reenter = trigger(&event) && !fired.swap(true, Ordering::SeqCst);
        record.send(event);
        if !reenter {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (runner, plan, handle, sink) = (Arc::clone(&runner), plan.clone(), handle.clone(), joiner.sink());
        std::thread::spawn(move || {
            let polled = handle.block_on(async {
                runner
                    .execute(&plan, &sink, CancellationToken::new())
                    .now_or_never()
                    .is_none()
            });
            let _ = tx.send(polled);
        });
        let outcome = match rx.recv_timeout(REENTRY_WAIT) {
            Ok(true) => Ok(format!("{name}: joined the running build from its callback")),
            Ok(false) => Err(format!("{name}: the call back into the runner ended at once")),
            Err(_) => Err(format!(
                "{name}: the call back into the runner from its event callback did not return \
                 within {REENTRY_WAIT:?}: the callback runs under a lock the runner needs (deadlock)"
            )),
        };
        let _ = reentries.send(outcome);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_callback_may_call_back_into_the_runner() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_client();
    let ns = "reentry";
    let runner = Arc::new(
        KubeRunner::builder(admin.clone())
            .docker_config_json(DOCKER_CONFIG)
            .unschedulable_timeout(None)
            .log_drain_timeout(Duration::from_millis(200))
            .build(),
    );
    let cfg = config("registry.local:5000/team/reentry:v1", ns);
    let plan = plan(&cfg);
    let (reentries, mut reentered) = tokio::sync::mpsc::unbounded_channel();

    // The first caller's callback calls back in when its Job is created (an event fanned out to
    // the run's members).
    let (first, second) = (Recorder::default(), Recorder::default());
    let first_sink = reentrant_sink("first caller", &first, &runner, &plan, &reentries, |e| {
        matches!(e, BuildEvent::Queued { .. })
    });
    let (cancel_first, cancel_second) = (CancellationToken::new(), CancellationToken::new());
    let first_run = {
        let (runner, plan, cancel) = (Arc::clone(&runner), plan.clone(), cancel_first.clone());
        tokio::spawn(async move { runner.execute(&plan, &first_sink, cancel).await })
    };
    first
        .wait_for("Queued", |e| matches!(e, BuildEvent::Queued { .. }))
        .await;

    // A second caller joins the running build: its first event (`Attached`, handed to a member
    // joining late) makes its callback call back in too.
    let second_sink = reentrant_sink("second caller", &second, &runner, &plan, &reentries, |e| {
        matches!(e, BuildEvent::Attached { .. })
    });
    let second_run = {
        let (runner, plan, cancel) = (Arc::clone(&runner), plan.clone(), cancel_second.clone());
        tokio::spawn(async move { runner.execute(&plan, &second_sink, cancel).await })
    };
    second
        .wait_for("Attached", |e| matches!(e, BuildEvent::Attached { .. }))
        .await;
    let mut failed = Vec::new();
    for _ in 0..2 {
        let reentry = tokio::time::timeout(WAIT, reentered.recv()).await;
        match reentry {
            Ok(Some(Ok(done))) => tracing::info!("{done}"),
            Ok(Some(Err(e))) => failed.push(e),
            Ok(None) | Err(_) => failed.push("the callbacks did not both call back in".to_owned()),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));

    // Both callers leave; the last one out waits for the cleanup: nothing is left.
    cancel_second.cancel();
    cancel_first.cancel();
    let (a, b) = (first_run.await?, second_run.await?);
    for r in [&a, &b] {
        let e = r.as_ref().expect_err("cancelled");
        assert!(
            matches!(e.reason(), kaniko_builder_core::flow::FailureReason::Cancelled),
            "{e:?}"
        );
    }
    assert!(
        ours::<Job>(&admin, ns).await?.is_empty(),
        "the Job is left: {:?}",
        leftovers(&admin, ns).await?
    );
    assert_eq!(
        first
            .events()
            .iter()
            .filter(|e| matches!(e, BuildEvent::Queued { .. }))
            .count(),
        1,
        "{:?}",
        first.steps()
    );
    Ok(())
}
