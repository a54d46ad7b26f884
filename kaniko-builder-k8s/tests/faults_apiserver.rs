//! The kube-apiserver process killed and restarted while a build runs (real control plane,
//! stand-in node): the runner's watch reconnects and the outcome is the real one — built, with
//! the digest the registry holds — never a success or failure that did not happen.

mod runner_support;

use std::sync::Arc;
use std::time::Duration;

use kaniko_builder_core::BuildConfig;
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{BuildEvent, BuildOutcome, CancellationToken, FlowOptions, run_build};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_k8s::runner::CleanupPolicy;
use kaniko_builder_registry::ImageRef;
use kaniko_builder_testkit::node::{Fault, NodeOptions, StandInNode, Target};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use runner_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_survives_an_apiserver_restart() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let (mut cluster, registry) =
        tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Anonymous))?;
    let node = StandInNode::start(&cluster, NodeOptions::default().registry(&registry)).await?;
    let client = anonymous_client(&registry)?;
    let admin = cluster.admin_client();
    let runner = KubeRunner::builder(admin.clone())
        .docker_config_json(registry.docker_config_json())
        .blob_store(Arc::new(client.clone()))
        .cleanup(CleanupPolicy::default().delete_on_failure(true))
        .timeout(Duration::from_secs(120))
        .build();
    let ctx = tempfile::tempdir()?;
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY hello.txt /\n")?;
    std::fs::write(ctx.path().join("hello.txt"), "survives a restart\n")?;
    let ns = "restart";
    let image: ImageRef = format!("{}/team/app:v1", registry.host()).parse()?;
    let cfg = BuildConfig::builder(image)
        .namespace(ns)
        .context(ContextSource::LocalDir(ctx.path().to_owned()))
        .build()?;
    // The containers start 6 s after the Pod is scheduled: the restart falls inside the build.
    node.inject(Fault::SlowStart(Duration::from_secs(6)), Target::NextPod)
        .await?;

    let pid_before = cluster.pid(kaniko_builder_testkit::cluster::Component::ApiServer);
    let rec = Recorder::default();
    let (sink, opts, cancel) = (rec.sink(), FlowOptions::default(), CancellationToken::new());
    let (result, restarted) = tokio::join!(run_build(&cfg, &client, &runner, &sink, &cancel, &opts), async {
        rec.wait_for("scheduled", |e| matches!(e, BuildEvent::Scheduled { .. }))
            .await;
        cluster.restart_apiserver(Duration::from_secs(2)).await
    });
    restarted?;
    assert_ne!(
        cluster.pid(kaniko_builder_testkit::cluster::Component::ApiServer),
        pid_before
    );
    let outcome = result.map_err(|e| anyhow::anyhow!("{e}: {:?}", rec.steps()))?;
    let BuildOutcome::Built { digest, .. } = &outcome else {
        panic!("expected Built, got {outcome:?}")
    };
    let held = client.probe(cfg.image()).await?;
    assert_eq!(held.manifest().map(|m| &m.digest), Some(digest));
    assert!(rec.steps().contains(&"verified".to_owned()), "{:?}", rec.steps());
    assert_eq!(
        leftovers_settled(&admin, ns, &[]).await?,
        Vec::<String>::new(),
        "the Secret went with the Job"
    );
    drop(node);
    Ok(())
}
