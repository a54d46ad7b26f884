//! The whole flow end to end: the caller's probe against the real registry, the Job on the real
//! control plane, the stand-in node running `kaniko-init` and building with buildah for real,
//! logs streamed through the API server, the digest read back and verified in the registry;
//! then every failure the node can inject. Every scenario ends by listing what is left.

mod runner_support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{
    BuildEvent, BuildOutcome, CancellationToken, FailureReason, FlowOptions, ImageProbe, RegistryFailure,
    SkippedBy, UploadVia, run_build,
};
use kaniko_builder_core::{BuildConfig, ImageRef, Probe};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_k8s::manifest::JobOptions;
use kaniko_builder_k8s::runner::{CleanupPolicy, UploadMethod};
use kaniko_builder_registry::{DockerConfig, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::node::{Fault, NodeOptions, StandInNode, Target};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use kube::api::{Api, DeleteParams};
use runner_support::*;

struct Bed {
    cluster: TestCluster,
    registry: TestRegistry,
    node: StandInNode,
    client: RegistryClient,
}

async fn bed(auth: RegistryAuth) -> anyhow::Result<Bed> {
    kaniko_builder_testkit::init_tracing();
    let (cluster, registry) = tokio::try_join!(TestCluster::start(), TestRegistry::start(auth))?;
    let node = StandInNode::start(&cluster, NodeOptions::default().registry(&registry)).await?;
    let settings = match registry.ca_pem() {
        Some(ca) => RegistrySettings::default().ca_pem(ca),
        None => RegistrySettings::default().plain_http(true),
    };
    let client = RegistryClient::builder()
        .docker_config(DockerConfig::from_json(&registry.docker_config_json())?)
        .registry(registry.host(), settings)
        .build()?;
    Ok(Bed {
        cluster,
        registry,
        node,
        client,
    })
}

impl Bed {
    fn runner(&self) -> kaniko_builder_k8s::KubeRunnerBuilder {
        KubeRunner::builder(self.cluster.admin_client())
            .docker_config_json(self.registry.docker_config_json())
            .blob_store(Arc::new(self.client.clone()))
            .unschedulable_timeout(Some(Duration::from_secs(3)))
            .cleanup(CleanupPolicy::default().delete_on_failure(true))
    }

    fn image(&self, repo_tag: &str) -> ImageRef {
        format!("{}/{repo_tag}", self.registry.host())
            .parse()
            .expect("image")
    }

    fn config(&self, repo_tag: &str, ns: &str, context: &std::path::Path) -> BuildConfig {
        BuildConfig::builder(self.image(repo_tag))
            .namespace(ns)
            .context(ContextSource::LocalDir(context.to_owned()))
            .build()
            .expect("config")
    }

    async fn run(
        &self,
        runner: &KubeRunner,
        config: &BuildConfig,
        probe: &dyn ImageProbe,
        rec: &Recorder,
    ) -> Result<BuildOutcome, kaniko_builder_core::flow::BuildFailure> {
        run_build(
            config,
            probe,
            runner,
            &rec.sink(),
            &CancellationToken::new(),
            &FlowOptions::default(),
        )
        .await
    }
}

/// A probe that says "absent" whatever the registry holds: the image appears between the
/// caller's probe and the Job.
struct StaleProbe<'a>(&'a RegistryClient);

#[async_trait::async_trait]
impl ImageProbe for StaleProbe<'_> {
    async fn probe(&self, image: &ImageRef) -> Result<Probe, RegistryFailure> {
        if image.digest().is_some() {
            return ImageProbe::probe(self.0, image).await;
        }
        Ok(Probe::Absent)
    }
}

fn context(dockerfile: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("Dockerfile"), dockerfile)?;
    std::fs::write(dir.path().join("hello.txt"), "hello from a local context\n")?;
    std::fs::write(dir.path().join("secret.env"), "must not be sent\n")?;
    std::fs::write(dir.path().join(".dockerignore"), "*.env\n")?;
    Ok(dir)
}

#[tokio::test]
async fn builds_skips_and_forces_through_the_whole_flow() -> anyhow::Result<()> {
    let bed = bed(RegistryAuth::Basic).await?;
    let admin = bed.cluster.admin_client();
    let ctx = context("FROM scratch\nCOPY hello.txt /hello.txt\n")?;
    let runner = bed.runner().build();
    let ns = "kaniko";

    // 1. Absent: built from the local directory (uploaded as a blob), verified, cleaned up.
    let cfg = bed.config("team/app:v1", ns, ctx.path());
    let rec = Recorder::default();
    let built = bed
        .run(&runner, &cfg, &bed.client, &rec)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let BuildOutcome::Built { digest, kept, .. } = &built else {
        panic!("expected Built, got {built:?}")
    };
    let steps = rec.steps();
    for step in [
        "probed",
        "context_packed",
        "context_uploaded",
        "applied",
        "queued",
        "scheduled",
        "init_check",
        "building",
        "pushed",
        "cleaned_up",
        "verified",
    ] {
        assert!(steps.contains(&step.to_owned()), "{step} missing from {steps:?}");
    }
    assert!(rec.events().iter().any(|e| matches!(
        e,
        BuildEvent::ContextUploaded {
            via: UploadVia::Registry { .. },
            ..
        }
    )));
    assert!(
        !rec.logs("image-builder").is_empty(),
        "the build log was streamed"
    );
    assert!(!rec.logs("kaniko-init").is_empty(), "the init log was streamed");
    let tag = bed.client.probe(cfg.image()).await?;
    assert_eq!(tag.manifest().map(|m| &m.digest), Some(digest));
    // The Secret went with the Job: nothing is kept.
    assert_eq!(kept_names(kept), Vec::<String>::new());
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());

    // 2. Exists: skipped by the caller, and no Job is ever created.
    let (watch, created) = record_jobs(&admin, ns);
    let rec = Recorder::default();
    let skipped = bed
        .run(&runner, &cfg, &bed.client, &rec)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(
        matches!(&skipped, BuildOutcome::Skipped { by: SkippedBy::Caller, digest: d, job: None, .. } if d == digest)
    );
    assert_eq!(rec.steps(), ["probed"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        created.lock().expect("lock").is_empty(),
        "a Job was created for a skip"
    );
    watch.abort();

    // 3. Exists, but the caller's probe is stale: the init container finds it, nothing is built.
    let rec = Recorder::default();
    let in_cluster = bed
        .run(&runner, &cfg, &StaleProbe(&bed.client), &rec)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(
        matches!(&in_cluster, BuildOutcome::Skipped { by: SkippedBy::InCluster, digest: d, job: Some(_), .. } if d == digest),
        "{in_cluster:?}"
    );
    assert!(!rec.steps().contains(&"building".to_owned()));
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());

    // 4. Forced: built again even though it exists.
    let forced_cfg = cfg.clone().into_builder().force(true).build()?;
    let rec = Recorder::default();
    let forced = bed
        .run(&runner, &forced_cfg, &bed.client, &rec)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(matches!(forced, BuildOutcome::Built { .. }), "{forced:?}");
    assert!(rec.events().iter().any(|e| matches!(
        e,
        BuildEvent::InitCheck {
            decision: kaniko_builder_core::flow::Decision::Build {
                reason: kaniko_builder_core::flow::BuildReason::Forced
            }
        }
    )));
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());

    // 5. The other upload path: streamed over pods/exec into the waiting init container.
    // Through a client whose TLS passes its provider explicitly: exec's websocket upgrade too.
    let own_client = provider_independent_client(&bed.cluster).await?;
    let exec_runner = KubeRunner::builder(own_client)
        .docker_config_json(bed.registry.docker_config_json())
        .upload(UploadMethod::Exec)
        .job_options(JobOptions::default().exec_upload(true))
        .build();
    let cfg = bed.config("team/app:exec", ns, ctx.path());
    let rec = Recorder::default();
    let built = bed
        .run(&exec_runner, &cfg, &bed.client, &rec)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(matches!(built, BuildOutcome::Built { .. }), "{built:?}");
    assert!(
        rec.events().iter().any(|e| matches!(
            e,
            BuildEvent::ContextUploaded {
                via: UploadVia::Exec,
                ..
            }
        )),
        "{:?}",
        rec.steps()
    );
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());
    drop(bed.node);
    Ok(())
}

#[tokio::test]
async fn every_failure_has_its_reason_and_cleanup_still_runs() -> anyhow::Result<()> {
    let bed = bed(RegistryAuth::Basic).await?;
    let admin = bed.cluster.admin_client();
    let ctx = context("FROM scratch\nCOPY hello.txt /hello.txt\n")?;
    // No grace for a failing image pull: this one never recovers (`image_pull_grace.rs` has
    // the grace).
    let runner = bed.runner().image_pull_grace(Duration::ZERO).build();
    let ns = "faults";
    let mut n = 0;
    let mut next = |ctx: &std::path::Path| {
        n += 1;
        bed.config(&format!("team/fault:f{n}"), ns, ctx)
    };

    let cases: Vec<(Option<Fault>, &str)> = vec![
        (Some(Fault::OomKilled), "oom_killed"),
        (Some(Fault::ImagePullBackOff), "image_pull"),
        (Some(Fault::Evict), "evicted"),
    ];
    for (fault, kind) in cases {
        let cfg = next(ctx.path());
        if let Some(f) = fault {
            bed.node.inject(f, Target::NextPod).await?;
        }
        let err = bed
            .run(&runner, &cfg, &bed.client, &Recorder::default())
            .await
            .expect_err(kind);
        assert_eq!(err.reason().kind(), kind, "{err}");
        assert_eq!(
            leftovers_settled(&admin, ns, &[]).await?,
            Vec::<String>::new(),
            "after {kind}"
        );
    }

    // A Dockerfile that fails: the exit code and the build log's last lines; kept by default.
    let broken = context("FROM scratch\nCOPY missing.txt /\n")?;
    let cfg = next(broken.path());
    let keep = bed.runner().cleanup(CleanupPolicy::default()).build();
    let err = bed
        .run(&keep, &cfg, &bed.client, &Recorder::default())
        .await
        .expect_err("exit code");
    match err.reason() {
        FailureReason::ExitCode {
            container,
            last_lines,
            ..
        } => {
            assert_eq!(container, "image-builder");
            assert!(!last_lines.is_empty(), "last lines kept");
        }
        other => panic!("expected an exit code, got {other:?}"),
    }
    assert!(err.kept().iter().any(|o| o.kind == "Job"), "{:?}", err.kept());
    // Its Secret stays as long as the kept Job, which owns it: listed too.
    assert!(
        err.kept()
            .iter()
            .any(|o| o.kind == "Secret" && o.name.starts_with("kb-docker-config-")),
        "{:?}",
        err.kept()
    );
    let left = leftovers(&admin, ns).await?;
    let kept_job = pinned(&cfg).job_name();
    assert!(left.contains(&format!("job/{kept_job}")), "{left:?}");

    // Wrong credentials in the cluster: the init check refuses to guess.
    let cfg = next(ctx.path());
    let bad = bed
        .runner()
        .docker_config_json(format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            bed.registry.host(),
            "a2ItdXNlcjp3cm9uZw=="
        ))
        .build();
    let err = bed
        .run(&bad, &cfg, &StaleProbe(&bed.client), &Recorder::default())
        .await
        .expect_err("init check");
    assert_eq!(err.reason().kind(), "init_check_failed", "{err}");

    // The Job's own deadline, and the client-side one.
    let cfg = next(ctx.path());
    bed.node
        .inject(Fault::SlowStart(Duration::from_secs(20)), Target::NextPod)
        .await?;
    let deadline = bed
        .runner()
        .job_options(JobOptions::default().active_deadline(Duration::from_secs(2)))
        .build();
    let err = bed
        .run(&deadline, &cfg, &bed.client, &Recorder::default())
        .await
        .expect_err("deadline");
    assert_eq!(err.reason().kind(), "deadline_exceeded", "{err}");
    let cfg = next(ctx.path());
    bed.node
        .inject(Fault::SlowStart(Duration::from_secs(20)), Target::NextPod)
        .await?;
    let impatient = bed.runner().timeout(Duration::from_secs(2)).build();
    let err = bed
        .run(&impatient, &cfg, &bed.client, &Recorder::default())
        .await
        .expect_err("timeout");
    assert!(err.is_timeout(), "{err}");

    // Unschedulable: the node cordoned.
    let cfg = next(ctx.path());
    bed.node.inject(Fault::Unschedulable, Target::Node).await?;
    let err = bed
        .run(&runner, &cfg, &bed.client, &Recorder::default())
        .await
        .expect_err("unschedulable");
    assert_eq!(err.reason().kind(), "unschedulable", "{err}");
    bed.node.clear_faults().await?;

    // Cancellation while building.
    let cfg = next(ctx.path());
    bed.node
        .inject(Fault::SlowStart(Duration::from_secs(20)), Target::NextPod)
        .await?;
    let rec = Recorder::default();
    let cancel = CancellationToken::new();
    let (sink, opts) = (rec.sink(), FlowOptions::default());
    let (result, ()) = tokio::join!(
        run_build(&cfg, &bed.client, &runner, &sink, &cancel, &opts),
        async {
            rec.wait_for("scheduled", |e| matches!(e, BuildEvent::Scheduled { .. }))
                .await;
            cancel.cancel();
        }
    );
    assert!(result.expect_err("cancelled").is_cancelled());
    let left = leftovers(&admin, ns).await?;
    assert!(
        !left.iter().any(|o| o.contains(&pinned(&cfg).job_name())),
        "nothing of the cancelled run: {left:?}"
    );

    // Only the Job kept on purpose (and its Pod, ConfigMap and Secret) remains; once it goes, as
    // its TTL would remove it, nothing of any of these runs is left.
    Api::<Job>::namespaced(admin.clone(), ns)
        .delete(&kept_job, &DeleteParams::background())
        .await?;
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());
    Ok(())
}
