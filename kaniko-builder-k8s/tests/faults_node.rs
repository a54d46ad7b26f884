//! Faults not covered by `runner_node.rs`, end to end on the real control plane and the stand-in
//! node: a probe that errors never leads to a Job; the build Pod deleted from outside; and
//! cancellation at every step (before create, during upload, during build, during verify),
//! each ending with a listing of what is left: only the shared docker-config Secret, which the
//! runner keeps by policy (see `CleanupPolicy`).

mod runner_support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{
    BlobStore, BuildEvent, BuildFailure, BuildOutcome, CancellationToken, FailureReason, FlowOptions,
    ImageProbe, RegistryFailure, run_build,
};
use kaniko_builder_core::{BuildConfig, Digest, ImageRef, Probe};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_k8s::runner::CleanupPolicy;
use kaniko_builder_registry::{DockerConfig, RegistryClient, RegistrySettings, RetryPolicy};
use kaniko_builder_testkit::node::{Fault, NodeOptions, StandInNode, Target};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams};
use runner_support::*;

/// Nothing of ours left: the Secret goes with the last Job that owns it.
const NOTHING: [&str; 0] = [];

/// The caller's probe is real, the verify probes (pinned by digest) never answer: a stub, because
/// a real registry cannot be told to hang at exactly this step.
struct Hangs<'a>(&'a RegistryClient);

#[async_trait::async_trait]
impl ImageProbe for Hangs<'_> {
    /// The caller's probe is real; the verify probes (pinned by digest) hang.
    async fn probe(&self, image: &ImageRef) -> Result<Probe, RegistryFailure> {
        if image.digest().is_some() {
            return std::future::pending().await;
        }
        ImageProbe::probe(self.0, image).await
    }
}

/// An upload that takes the whole body and then never answers (a stub, as above).
struct HangingStore;

#[async_trait::async_trait]
impl BlobStore for HangingStore {
    async fn push_blob(
        &self,
        _: &ImageRef,
        body: kaniko_builder_core::flow::BlobBody,
    ) -> Result<Digest, RegistryFailure> {
        use futures::StreamExt as _;
        body.for_each(|_| async {}).await;
        std::future::pending().await
    }
}

async fn run_cancelled_at(
    config: &BuildConfig,
    probe: &dyn ImageProbe,
    runner: &KubeRunner,
    step: &str,
    at: impl Fn(&BuildEvent) -> bool,
) -> BuildFailure {
    let rec = Recorder::default();
    let cancel = CancellationToken::new();
    let (sink, opts) = (rec.sink(), FlowOptions::default());
    let (result, ()) = tokio::join!(run_build(config, probe, runner, &sink, &cancel, &opts), async {
        rec.wait_for(step, &at).await;
        cancel.cancel();
    });
    let err = result.expect_err(step);
    assert!(err.is_cancelled(), "{step}: {err}");
    err
}

#[tokio::test]
async fn errors_never_build_deleted_pods_fail_and_cancellation_leaves_nothing() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let (cluster, registry, mut down) = tokio::try_join!(
        TestCluster::start(),
        TestRegistry::start(RegistryAuth::Anonymous),
        TestRegistry::start(RegistryAuth::Anonymous)
    )?;
    let node = StandInNode::start(&cluster, NodeOptions::default().registry(&registry)).await?;
    let client = RegistryClient::builder()
        .docker_config(DockerConfig::anonymous())
        .registry(registry.host(), RegistrySettings::default().plain_http(true))
        .registry(
            down.host(),
            RegistrySettings::default().plain_http(true).retry(
                RetryPolicy::default()
                    .max_attempts(2)
                    .base_delay(Duration::from_millis(10)),
            ),
        )
        .build()?;
    let admin = cluster.admin_client();
    let ctx = tempfile::tempdir()?;
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY hello.txt /\n")?;
    std::fs::write(ctx.path().join("hello.txt"), "hello\n")?;
    let runner_with = |store: Arc<dyn BlobStore>| {
        KubeRunner::builder(admin.clone())
            .docker_config_json(registry.docker_config_json())
            .blob_store(store)
            .cleanup(CleanupPolicy::default().delete_on_failure(true))
            .build()
    };
    let runner = runner_with(Arc::new(client.clone()));
    let ns = "faults";
    let config = |image: String| {
        BuildConfig::builder(image.parse::<ImageRef>().expect("image"))
            .namespace(ns)
            .context(ContextSource::LocalDir(ctx.path().to_owned()))
            .build()
            .expect("config")
    };
    let (watch, created) = record_jobs(&admin, ns);

    // 1. The registry is down: the probe fails, typed and retryable; nothing is built.
    down.stop();
    let cfg = config(format!("{}/team/app:v1", down.host()));
    let err = run_build(
        &cfg,
        &client,
        &runner,
        &Recorder::default().sink(),
        &CancellationToken::new(),
        &FlowOptions::default(),
    )
    .await
    .expect_err("probe failed");
    match err.reason() {
        FailureReason::ProbeFailed { retryable, .. } => assert!(retryable, "{err}"),
        other => panic!("expected ProbeFailed, got {other:?}"),
    }

    // 2. Cancelled before anything is created.
    let cfg = config(format!("{}/team/app:before", registry.host()));
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = run_build(
        &cfg,
        &client,
        &runner,
        &Recorder::default().sink(),
        &cancel,
        &FlowOptions::default(),
    )
    .await
    .expect_err("cancelled");
    assert!(err.is_cancelled(), "{err}");

    // 3. Cancelled during the context upload (the blob store hangs).
    let cfg = config(format!("{}/team/app:upload", registry.host()));
    let hanging = runner_with(Arc::new(HangingStore));
    run_cancelled_at(&cfg, &client, &hanging, "context_packed", |e| {
        matches!(e, BuildEvent::ContextPacked { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        created.lock().expect("lock").is_empty(),
        "a Job was created for a failed probe or a run cancelled before its Job"
    );
    assert!(leftovers(&admin, ns).await?.is_empty());

    // 4. Cancelled while building (the containers start late).
    let cfg = config(format!("{}/team/app:build", registry.host()));
    node.inject(Fault::SlowStart(Duration::from_secs(30)), Target::NextPod)
        .await?;
    run_cancelled_at(&cfg, &client, &runner, "scheduled", |e| {
        matches!(e, BuildEvent::Scheduled { .. })
    })
    .await;
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, NOTHING);

    // 5. Cancelled during verify: built and cleaned up, then the verify probe hangs.
    let cfg = config(format!("{}/team/app:verify", registry.host()));
    let err = run_cancelled_at(&cfg, &Hangs(&client), &runner, "cleaned_up", |e| {
        matches!(e, BuildEvent::CleanedUp { .. })
    })
    .await;
    assert!(err.job().is_some(), "{err:?}");
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, NOTHING);

    // 6. The build Pod deleted from outside mid-build: a failure, never success; cleaned up.
    let cfg = config(format!("{}/team/app:podgone", registry.host()));
    node.inject(Fault::SlowStart(Duration::from_secs(30)), Target::NextPod)
        .await?;
    let rec = Recorder::default();
    let (sink, opts, never) = (rec.sink(), FlowOptions::default(), CancellationToken::new());
    let job_name = pinned(&cfg).job_name();
    let (result, deleted) = tokio::join!(run_build(&cfg, &client, &runner, &sink, &never, &opts), async {
        rec.wait_for("scheduled", |e| matches!(e, BuildEvent::Scheduled { .. }))
            .await;
        let pod = pod_of(&admin, ns, &job_name).await?;
        Api::<Pod>::namespaced(admin.clone(), ns)
            .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
            .await?;
        anyhow::Ok(())
    });
    deleted?;
    // The Job controller may replace the Pod (it was deleted, not failed): then the build really
    // happens and its digest is the registry's. Otherwise a named failure. Never a success that
    // did not happen, never "cancelled".
    match result {
        Ok(BuildOutcome::Built { digest, .. }) => {
            let tag = client.probe(cfg.image()).await?;
            assert_eq!(tag.manifest().map(|m| &m.digest), Some(&digest));
            let pods = rec
                .events()
                .iter()
                .filter(|e| matches!(e, BuildEvent::Scheduled { .. }))
                .count();
            tracing::info!("pod deleted from outside: replaced, built {digest} ({pods} scheduled)");
        }
        Ok(other) => panic!("a deleted Pod reported as {other:?}"),
        Err(err) => {
            assert!(!err.is_cancelled(), "{err}");
            tracing::info!("pod deleted from outside: {} ({err})", err.reason().kind());
        }
    }
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, NOTHING);
    watch.abort();
    drop(node);
    Ok(())
}
