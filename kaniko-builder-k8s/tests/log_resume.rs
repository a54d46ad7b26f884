//! The kube-apiserver process killed and restarted while the builder's log streams (real
//! control plane, stand-in node, buildah running a `RUN` step that prints numbered lines): the
//! runner resumes the stream, and the lines it delivers are exactly the container's log as the
//! node recorded it — none lost, none repeated, in order — and the build succeeds.

mod runner_support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kaniko_builder_core::BuildConfig;
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{BuildEvent, BuildOutcome, CancellationToken, FlowOptions, run_build};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_k8s::runner::CleanupPolicy;
use kaniko_builder_registry::ImageRef;
use kaniko_builder_testkit::cluster::Component;
use kaniko_builder_testkit::node::{NodeOptions, StandInNode};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry, push_busybox_base};
use kube::api::{Api, ListParams};
use runner_support::*;

const BUILDER: &str = "image-builder";
/// Numbered lines the `RUN` step prints, a short sleep after each: the log lasts well beyond
/// the restart.
const LINES: usize = 300;

fn dockerfile(registry: &TestRegistry) -> String {
    format!(
        "FROM {}/base/busybox:1\nRUN for i in $(seq 1 {LINES}); do echo \"line $i\"; sleep 0.05; done\n",
        registry.host()
    )
}

fn is_line(e: &BuildEvent, n: usize) -> bool {
    matches!(e, BuildEvent::Log { container, line } if container == BUILDER && *line == format!("line {n}"))
}

/// The build's only Pod.
async fn build_pod(client: &kube::Client, ns: &str) -> anyhow::Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut list = pods.list(&ListParams::default().labels(OURS)).await?.items;
    anyhow::ensure!(list.len() == 1, "expected one build Pod, found {}", list.len());
    Ok(list.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_log_survives_an_apiserver_restart_without_loss_or_repeat() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let (mut cluster, registry) =
        tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Anonymous))?;
    push_busybox_base(&registry, "base/busybox", "1").await?;
    let node = StandInNode::start(&cluster, NodeOptions::default().registry(&registry)).await?;
    let client = anonymous_client(&registry)?;
    let admin = cluster.admin_client();
    let runner = KubeRunner::builder(admin.clone())
        .docker_config_json(registry.docker_config_json())
        .blob_store(Arc::new(client.clone()))
        .cleanup(CleanupPolicy::default().delete_on_failure(true))
        .timeout(Duration::from_secs(300))
        // Safety net only: a resumed stream delivers the last lines after the verdict, and a
        // short drain would cut the log for a reason other than the one under test.
        .log_drain_timeout(WAIT)
        .build();
    let ctx = tempfile::tempdir()?;
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile(&registry))?;
    let ns = "log-resume";
    let image: ImageRef = format!("{}/team/chatty:v1", registry.host()).parse()?;
    let cfg = BuildConfig::builder(image)
        .namespace(ns)
        .context(ContextSource::LocalDir(ctx.path().to_owned()))
        .build()?;

    let pid_before = cluster.pid(Component::ApiServer);
    let rec = Recorder::default();
    let (sink, opts, cancel) = (rec.sink(), FlowOptions::default(), CancellationToken::new());
    let (result, restarted) = tokio::join!(run_build(&cfg, &client, &runner, &sink, &cancel, &opts), async {
        rec.wait_for("line 30", |e| is_line(e, 30)).await;
        let pod = build_pod(&admin, ns).await?;
        // The restart falls inside the numbered lines: the last one is not written yet.
        let written = node.container_log(&pod, BUILDER);
        anyhow::ensure!(
            !written.contains(&format!("line {LINES}\n")),
            "the log ended before the restart"
        );
        cluster.restart_apiserver(Duration::from_secs(1)).await?;
        anyhow::Ok(pod)
    });
    let pod = restarted?;
    assert_ne!(cluster.pid(Component::ApiServer), pid_before);
    let outcome = result.map_err(|e| anyhow::anyhow!("{e}: {:?}", rec.steps()))?;
    assert!(matches!(outcome, BuildOutcome::Built { .. }), "{outcome:?}");

    let recorded: Vec<String> = node
        .container_log(&pod, BUILDER)
        .lines()
        .map(str::to_owned)
        .collect();
    let numbered = (1..=LINES).map(|n| format!("line {n}"));
    assert!(
        numbered.clone().all(|l| recorded.contains(&l)),
        "the node recorded every numbered line: {recorded:#?}"
    );
    let streamed = rec.logs(BUILDER);
    assert_eq!(
        streamed, recorded,
        "the streamed log is the recorded one, line for line"
    );
    let streamed_numbers: Vec<String> = streamed.into_iter().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(streamed_numbers, numbered.collect::<Vec<_>>());
    drop(node);
    Ok(())
}
