//! A node lost mid-build, on the real control plane with the node lifecycle controller running
//! (short monitor periods) and the stand-in node, which stops all reporting on
//! [`Fault::StopReporting`] while its containers keep running, as a partitioned node would.
//!
//! Both ways the runner notices end as `FailureReason::NodeLost`, never as a timeout, a deadline
//! or a success, and cleanup runs as for a cancellation even under the default policy (which
//! keeps other failures): the lost node cannot confirm its Pod's deletion, so the runner
//! force-deletes it, and the listing (Terminating Pods included) is empty but for the shared
//! Secret.
//! - Through the Node (a client allowed to watch Nodes), while `kaniko-init` has not even started:
//!   the Pod shows nothing then, only the Node turns `Ready=Unknown`.
//! - Through the Pod alone, as the orchestrator ServiceAccount with only the generated Role (no
//!   access to Nodes): once the build runs, the node controller marks the Pod not ready.
//!
//! And a node that comes back within the grace does not fail the build: it succeeds, verified.

mod runner_support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{
    BuildEvent, BuildFailure, BuildOutcome, CancellationToken, FailureReason, FlowOptions, run_build,
};
use kaniko_builder_core::{BuildConfig, ImageRef};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_k8s::apply::{self, ApplyParams};
use kaniko_builder_k8s::manifest::{DEFAULT_ORCHESTRATOR_SERVICE_ACCOUNT, JobOptions};
use kaniko_builder_k8s::runner::Setup;
use kaniko_builder_registry::RegistryClient;
use kaniko_builder_testkit::cluster::{Component, DEFAULT_CONTROLLERS};
use kaniko_builder_testkit::node::{Fault, NodeOptions, StandInNode, Target, push_busybox_base};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use kube::api::{Api, ListParams};
use runner_support::*;

const NS: &str = "lost";
/// Nothing of ours left: the Secret goes with the last Job that owns it.
const NOTHING: [&str; 0] = [];

/// Runs `config` until it fails, injecting `StopReporting` on `node` once `at` is seen.
async fn lose_node_at(
    config: &BuildConfig,
    registry: &RegistryClient,
    runner: &KubeRunner,
    node: &StandInNode,
    step: &str,
    at: impl Fn(&BuildEvent) -> bool,
) -> anyhow::Result<(BuildFailure, Vec<BuildEvent>)> {
    let rec = Recorder::default();
    let (sink, never, opts) = (rec.sink(), CancellationToken::new(), FlowOptions::default());
    let (result, injected) = tokio::join!(
        tokio::time::timeout(
            WAIT * 2,
            run_build(config, registry, runner, &sink, &never, &opts)
        ),
        async {
            rec.wait_for(step, &at).await;
            node.inject(Fault::StopReporting, Target::Node).await
        }
    );
    injected?;
    let err = result
        .context("the build neither ended nor failed")?
        .expect_err("a build on a lost node cannot succeed");
    Ok((err, rec.events()))
}

/// A stand-in node named `name` with a 1 s heartbeat, so the node controller notices soon.
async fn start_node(
    cluster: &TestCluster,
    registry: &TestRegistry,
    name: &str,
) -> anyhow::Result<StandInNode> {
    StandInNode::start(
        cluster,
        NodeOptions::default()
            .name(name)
            .registry(registry)
            .heartbeat(Duration::from_secs(1)),
    )
    .await
}

/// Every Pod of ours in the namespace, Terminating ones included (a lost node's Pod stays
/// Terminating unless force-deleted).
async fn all_pods(client: &kube::Client) -> anyhow::Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    Ok(pods
        .list(&ListParams::default().labels(OURS))
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect())
}

fn assert_node_lost(err: &BuildFailure, events: &[BuildEvent], node: &str, said: &str) {
    match err.reason() {
        FailureReason::NodeLost {
            node: Some(n),
            message,
        } => {
            assert_eq!(n, node, "{err}");
            assert!(message.contains(said), "{message:?} should say {said:?}");
        }
        other => panic!("expected NodeLost on {node}, got {other:?} ({err})"),
    }
    assert!(
        events.iter().any(|e| matches!(e,
            BuildEvent::NodeNotReady { node: Some(n), .. } if n == node)),
        "no NodeNotReady event: {events:?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, BuildEvent::Pushed { .. })),
        "nothing was pushed"
    );
}

#[tokio::test]
async fn lost_nodes_fail_as_node_lost_and_a_node_back_in_time_does_not() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let mut controllers = DEFAULT_CONTROLLERS.to_vec();
    controllers.push("nodelifecycle");
    let (cluster, registry) = tokio::try_join!(
        TestCluster::builder()
            .controllers(controllers)
            .arg(Component::ControllerManager, "--node-monitor-period=1s")
            .arg(Component::ControllerManager, "--node-monitor-grace-period=5s")
            .start(),
        TestRegistry::start(RegistryAuth::Anonymous),
    )?;
    push_busybox_base(&registry, "base/busybox", "1").await?;
    let ctx = tempfile::tempdir()?;
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {}/base/busybox:1\nRUN sleep 600\n", registry.host()),
    )?;
    let client = anonymous_client(&registry)?;
    let config_in = |tag: &str, context: &std::path::Path| -> anyhow::Result<BuildConfig> {
        Ok(
            BuildConfig::builder(format!("{}/team/lost:{tag}", registry.host()).parse::<ImageRef>()?)
                .namespace(NS)
                .context(ContextSource::LocalDir(context.to_owned()))
                .insecure_registry(registry.host())
                .build()?,
        )
    };
    let config = |tag: &str| config_in(tag, ctx.path());
    let blobs = client.clone();
    let runner_with = |client: &kube::Client, grace: Duration| {
        KubeRunner::builder(client.clone())
            .docker_config_json(registry.docker_config_json())
            .blob_store(Arc::new(blobs.clone()))
            .node_lost_timeout(Some(grace))
            .setup(Setup::IfAllowed)
            .build()
    };
    let runner_for = |client: &kube::Client| runner_with(client, Duration::from_secs(1));
    let admin = cluster.admin_client();

    // 1. Through the Node: the containers never start, so only the Node tells.
    let node = start_node(&cluster, &registry, "kb-lost-1").await?;
    node.inject(Fault::SlowStart(Duration::from_secs(600)), Target::NextPod)
        .await?;
    let (err, events) = lose_node_at(
        &config("init")?,
        &client,
        &runner_for(&admin),
        &node,
        "scheduled",
        |e| matches!(e, BuildEvent::Scheduled { .. }),
    )
    .await?;
    assert_node_lost(&err, &events, "kb-lost-1", "NodeStatusUnknown");
    assert!(
        !events.iter().any(|e| matches!(e, BuildEvent::Building)),
        "lost before the build started"
    );
    assert_eq!(
        all_pods(&admin).await?,
        Vec::<String>::new(),
        "the lost node's Pod is force-deleted"
    );
    assert_eq!(leftovers_settled(&admin, NS, &[]).await?, NOTHING);
    drop(node);

    // 2. Through the Pod alone, as the orchestrator with only the generated Role.
    let probe_config = config("build")?;
    let manifests = kaniko_builder_k8s::render(
        &probe_config,
        &JobOptions::default(),
        Some(registry.docker_config_json().as_bytes()),
    )?;
    apply::apply_setup(&admin, &manifests, &ApplyParams::default()).await?;
    let orchestrator = cluster
        .client_for_service_account(NS, DEFAULT_ORCHESTRATOR_SERVICE_ACCOUNT)
        .await?;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(orchestrator.clone());
    match nodes.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("the orchestrator should not read Nodes: {other:?}"),
    }
    let node = start_node(&cluster, &registry, "kb-lost-2").await?;
    let (err, events) = lose_node_at(
        &probe_config,
        &client,
        &runner_for(&orchestrator),
        &node,
        "building",
        |e| matches!(e, BuildEvent::Building),
    )
    .await?;
    assert_node_lost(&err, &events, "kb-lost-2", "marked the Pod not ready");
    assert_eq!(
        all_pods(&admin).await?,
        Vec::<String>::new(),
        "the lost node's Pod is force-deleted"
    );
    assert_eq!(leftovers_settled(&admin, NS, &[]).await?, NOTHING);
    drop(node);

    // 3. A node back within the grace: the build goes on and succeeds, verified.
    let short = tempfile::tempdir()?;
    std::fs::write(
        short.path().join("Dockerfile"),
        format!("FROM {}/base/busybox:1\nRUN sleep 30\n", registry.host()),
    )?;
    let back_config = config_in("back", short.path())?;
    let node = start_node(&cluster, &registry, "kb-lost-3").await?;
    let runner = runner_with(&admin, Duration::from_secs(15));
    let rec = Recorder::default();
    let (sink, never, opts) = (rec.sink(), CancellationToken::new(), FlowOptions::default());
    let (outcome, blip) = tokio::join!(
        run_build(&back_config, &client, &runner, &sink, &never, &opts),
        async {
            rec.wait_for("building", |e| matches!(e, BuildEvent::Building))
                .await;
            node.inject(Fault::StopReporting, Target::Node).await?;
            rec.wait_for("node not ready", |e| matches!(e, BuildEvent::NodeNotReady { .. }))
                .await;
            node.clear_faults().await
        }
    );
    blip?;
    let digest = match outcome {
        Ok(BuildOutcome::Built { digest, .. }) => digest,
        other => panic!("a node back in time should not fail the build: {other:?}"),
    };
    let held = client.probe(back_config.image()).await?;
    assert_eq!(held.manifest().map(|m| &m.digest), Some(&digest));
    assert_eq!(leftovers_settled(&admin, NS, &[]).await?, NOTHING);
    drop(node);
    Ok(())
}
