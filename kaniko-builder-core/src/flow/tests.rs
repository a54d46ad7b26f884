use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt as _;
use futures::executor::block_on;

use super::*;
use crate::Manifest;

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

/// A registry holding manifests by reference string (`repo:tag` or `repo@digest`).
#[derive(Default)]
struct FakeRegistry {
    manifests: Mutex<HashMap<String, Digest>>,
    fail: bool,
    probes: AtomicUsize,
}

impl FakeRegistry {
    fn put(&self, image: &ImageRef, digest: &Digest) {
        let mut m = self.manifests.lock().expect("lock");
        m.insert(image.to_string(), digest.clone());
        m.insert(image.with_digest(digest.clone()).to_string(), digest.clone());
    }
}

#[derive(Debug)]
struct Boom;
impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("registry said 401")
    }
}
impl std::error::Error for Boom {}

#[async_trait::async_trait]
impl ImageProbe for FakeRegistry {
    async fn probe(&self, image: &ImageRef) -> Result<Probe, RegistryFailure> {
        self.probes.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(RegistryFailure::new(Boom, true, false));
        }
        Ok(
            match self.manifests.lock().expect("lock").get(&image.to_string()) {
                Some(d) => Probe::Exists(Manifest::new(d.clone(), OCI, None)),
                None => Probe::Absent,
            },
        )
    }
}

enum Script {
    Build(Digest),
    BuildButPushElsewhere(Digest),
    InCluster(Digest),
    Fail,
    WaitForCancel,
}

struct FakeExecutor<'a> {
    registry: &'a FakeRegistry,
    script: Script,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl BuildExecutor for FakeExecutor<'_> {
    async fn execute(
        &self,
        plan: &BuildPlan,
        events: &EventSink,
        cancel: CancellationToken,
    ) -> Result<Executed, ExecError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let job = ObjectRef::namespaced("Job", "kaniko", plan.config.job_name());
        events.send(BuildEvent::Queued {
            job: job.name.clone(),
            namespace: "kaniko".into(),
        });
        match &self.script {
            Script::Build(d) => {
                self.registry.put(plan.config.image(), d);
                events.send(BuildEvent::Pushed { digest: d.clone() });
                Ok(Executed::Built {
                    digest: d.clone(),
                    job,
                    kept: Vec::new(),
                })
            }
            Script::BuildButPushElsewhere(d) => Ok(Executed::Built {
                digest: d.clone(),
                job,
                kept: Vec::new(),
            }),
            Script::InCluster(d) => Ok(Executed::Skipped {
                digest: d.clone(),
                job,
                kept: Vec::new(),
            }),
            Script::Fail => Err(ExecError::new(FailureReason::OomKilled {
                container: "image-builder".into(),
                last_lines: vec!["killed".into()],
            })
            .with_job(Some(job.clone()))
            .with_kept(vec![job])),
            Script::WaitForCancel => {
                cancel.cancelled().await;
                Err(ExecError::new(FailureReason::Cancelled))
            }
        }
    }
}

fn config(force: bool) -> BuildConfig {
    BuildConfig::builder("registry.local:5000/team/app:v1".parse().expect("ref"))
        .force(force)
        .build()
        .expect("config")
}

fn exec<'a>(registry: &'a FakeRegistry, script: Script) -> FakeExecutor<'a> {
    FakeExecutor {
        registry,
        script,
        calls: AtomicUsize::new(0),
    }
}

fn run(
    cfg: &BuildConfig,
    registry: &FakeRegistry,
    executor: &FakeExecutor<'_>,
) -> Result<BuildOutcome, BuildFailure> {
    block_on(run_build(
        cfg,
        registry,
        executor,
        &EventSink::discard(),
        &CancellationToken::new(),
        &FlowOptions::default(),
    ))
}

#[test]
fn existing_image_is_skipped_by_the_caller_without_executing() {
    let registry = FakeRegistry::default();
    let digest = Digest::sha256(b"old");
    let cfg = config(false);
    registry.put(cfg.image(), &digest);
    let executor = exec(&registry, Script::Fail);
    let outcome = run(&cfg, &registry, &executor).expect("skip");
    assert!(matches!(
        &outcome,
        BuildOutcome::Skipped {
            by: SkippedBy::Caller,
            job: None,
            ..
        }
    ));
    assert_eq!(outcome.digest(), &digest);
    assert_eq!(executor.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn forced_build_runs_and_is_verified() {
    let registry = FakeRegistry::default();
    let cfg = config(true);
    registry.put(cfg.image(), &Digest::sha256(b"old"));
    let new = Digest::sha256(b"new");
    let executor = exec(&registry, Script::Build(new.clone()));
    let (sink, stream) = EventSink::channel(8);
    let outcome = block_on(run_build(
        &cfg,
        &registry,
        &executor,
        &sink,
        &CancellationToken::new(),
        &FlowOptions::default(),
    ))
    .expect("built");
    drop(sink);
    assert!(matches!(&outcome, BuildOutcome::Built { digest, .. } if *digest == new));
    let events: Vec<BuildEvent> = block_on(stream.collect());
    assert!(matches!(
        events.first(),
        Some(BuildEvent::Probed { exists: true, .. })
    ));
    assert_eq!(events.last(), Some(&BuildEvent::Verified { digest: new }));
}

#[test]
fn in_cluster_skip_is_reported_as_such() {
    let registry = FakeRegistry::default();
    let digest = Digest::sha256(b"raced");
    let executor = exec(&registry, Script::InCluster(digest));
    let outcome = run(&config(false), &registry, &executor).expect("skip");
    assert!(matches!(
        outcome,
        BuildOutcome::Skipped {
            by: SkippedBy::InCluster,
            job: Some(_),
            ..
        }
    ));
}

#[test]
fn a_digest_the_registry_does_not_serve_fails_verification() {
    let registry = FakeRegistry::default();
    let executor = exec(&registry, Script::BuildButPushElsewhere(Digest::sha256(b"ghost")));
    let failure = run(&config(false), &registry, &executor).expect_err("mismatch");
    assert!(matches!(
        *failure.reason(),
        FailureReason::VerifyMismatch {
            pinned_exists: false,
            tag_resolves_to: None,
            ..
        }
    ));
    assert!(failure.job().is_some());
}

#[test]
fn executor_failures_keep_their_reason_job_and_kept_objects() {
    let registry = FakeRegistry::default();
    let executor = exec(&registry, Script::Fail);
    let failure = run(&config(false), &registry, &executor).expect_err("oom");
    assert_eq!(failure.reason().kind(), "oom_killed");
    assert_eq!(failure.reason().last_lines(), ["killed"]);
    assert_eq!(failure.kept().len(), 1);
    let text = failure.to_string();
    assert!(
        text.contains("OOMKilled") && text.contains("kept for inspection: job/kaniko/kb-"),
        "{text}"
    );
}

#[test]
fn a_probe_error_is_never_absent() {
    let registry = FakeRegistry {
        fail: true,
        ..FakeRegistry::default()
    };
    let executor = exec(&registry, Script::Build(Digest::sha256(b"x")));
    let failure = run(&config(false), &registry, &executor).expect_err("probe");
    assert!(matches!(
        *failure.reason(),
        FailureReason::ProbeFailed {
            cause: "unauthorized",
            unauthorized: true,
            retryable: false,
            ..
        }
    ));
    assert_eq!(executor.calls.load(Ordering::SeqCst), 0);
    assert!(std::error::Error::source(&failure).is_some());
}

#[test]
fn cancellation_before_and_during_execution() {
    let registry = FakeRegistry::default();
    let executor = exec(&registry, Script::WaitForCancel);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let opts = FlowOptions::default();
    let failure = block_on(run_build(
        &config(false),
        &registry,
        &executor,
        &EventSink::discard(),
        &cancel,
        &opts,
    ))
    .expect_err("cancelled");
    assert!(failure.is_cancelled());
    assert_eq!(registry.probes.load(Ordering::SeqCst), 0, "nothing ran");

    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    let sink = EventSink::from_fn(move |e| {
        if matches!(e, BuildEvent::Queued { .. }) {
            canceller.cancel();
        }
    });
    let failure = block_on(run_build(
        &config(false),
        &registry,
        &executor,
        &sink,
        &cancel,
        &opts,
    ))
    .expect_err("cancelled");
    assert!(failure.is_cancelled());
}

#[test]
fn a_slow_consumer_loses_log_lines_never_steps() {
    let (sink, mut stream) = EventSink::channel(2);
    sink.send(BuildEvent::Building);
    for i in 0..5 {
        sink.log("image-builder", format!("line {i}"));
    }
    sink.send(BuildEvent::Pushed {
        digest: Digest::sha256(b"d"),
    });
    sink.log("image-builder", "dropped too");
    let mut got = Vec::new();
    while let Some(e) = stream.try_next() {
        got.push(e);
    }
    sink.log("image-builder", "after");
    got.extend(stream.try_next());
    assert_eq!(got.len(), 7, "{got:?}");
    assert_eq!(got[0], BuildEvent::Building);
    assert_eq!(got[3], BuildEvent::LogsDropped { count: 3 });
    assert!(matches!(got[4], BuildEvent::Pushed { .. }));
    assert_eq!(got[5], BuildEvent::LogsDropped { count: 1 });
    // Space freed: lines flow again.
    assert!(matches!(&got[6], BuildEvent::Log { line, .. } if line == "after"));
    drop(sink);
    assert_eq!(block_on(stream.next()), None, "ends with the last sink");
}

#[test]
fn unread_progress_is_replaced_by_newer_progress() {
    let (sink, mut stream) = EventSink::channel(2);
    for sent in 1..=1000 {
        sink.send(BuildEvent::ContextProgress { sent });
    }
    sink.send(BuildEvent::Building);
    sink.send(BuildEvent::ContextProgress { sent: 2000 });
    let mut got = Vec::new();
    while let Some(e) = stream.try_next() {
        got.push(e);
    }
    assert_eq!(
        got,
        [
            BuildEvent::ContextProgress { sent: 1000 },
            BuildEvent::Building,
            BuildEvent::ContextProgress { sent: 2000 }
        ]
    );
}

#[test]
fn events_and_outcomes_serialise_for_machines() {
    let e = BuildEvent::InitCheck {
        decision: Decision::Build {
            reason: BuildReason::Forced,
        },
    };
    let json = serde_json::to_value(&e).expect("json");
    assert_eq!(json["event"], "init_check");
    assert_eq!(json["decision"]["decision"], "build");
    let r = FailureReason::Timeout {
        after: std::time::Duration::from_secs(3),
    };
    assert_eq!(serde_json::to_value(&r).expect("json")["kind"], "timeout");
}

/// The key runs are shared by (and a batch dedupes by) counts the namespace and the forcing,
/// which the Job name leaves out, and not what does not change the result.
#[test]
fn build_keys_count_namespace_and_forcing_but_not_verbosity() {
    use crate::config::Verbosity;
    let image: ImageRef = "registry.local:5000/app:v1".parse().expect("image");
    let base = BuildConfig::builder(image.clone()).build().expect("config");
    let key = |c: &BuildConfig| BuildKey::new(c, c.force());
    let forced = BuildConfig::builder(image.clone())
        .force(true)
        .build()
        .expect("config");
    let elsewhere = BuildConfig::builder(image.clone())
        .namespace("elsewhere")
        .build()
        .expect("config");
    let chatty = BuildConfig::builder(image)
        .verbosity(Verbosity::Debug)
        .build()
        .expect("config");
    assert_eq!(forced.job_name(), base.job_name());
    assert_eq!(elsewhere.job_name(), base.job_name());
    assert_ne!(key(&forced), key(&base));
    assert_ne!(key(&elsewhere), key(&base));
    assert_eq!(key(&chatty), key(&base));
    let plan = BuildPlan::new(forced.clone(), BuildReason::Forced, None);
    assert_eq!(plan.key(), key(&forced));
}
