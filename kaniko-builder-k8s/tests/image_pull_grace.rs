//! Image pulls that fail, on the real control plane with the stand-in node, which reports failed
//! pulls as the kubelet does (`ErrImagePull`, then `ImagePullBackOff` while it backs off, then
//! the next attempt; a short back-off here, see `NodeOptions::pull_backoff`):
//! - a registry that recovers after two failed pulls: the build goes on and succeeds (under the
//!   default grace), and its events show the container waiting for its image again;
//! - a pull that never succeeds: after a short grace the build fails as `image_pull` with the
//!   kubelet's message, which names the image, and nothing of it is left;
//! - a grace of zero: the first failed pull fails the build, even one that would recover.

mod runner_support;

use std::sync::Arc;
use std::time::Duration;

use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{
    BuildEvent, BuildFailure, BuildOutcome, CancellationToken, FailureReason, FlowOptions, run_build,
};
use kaniko_builder_core::{BuildConfig, ImageRef};
use kaniko_builder_k8s::manifest::{DEFAULT_INIT_IMAGE, INIT_CONTAINER};
use kaniko_builder_k8s::runner::CleanupPolicy;
use kaniko_builder_k8s::{KubeRunner, KubeRunnerBuilder};
use kaniko_builder_registry::RegistryClient;
use kaniko_builder_testkit::node::{Fault, NodeOptions, StandInNode, Target};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use runner_support::*;

const NS: &str = "pulls";
/// Nothing of ours left: the Secret goes with the last Job that owns it.
const NOTHING: [&str; 0] = [];

struct Bed {
    cluster: TestCluster,
    registry: TestRegistry,
    node: StandInNode,
    client: RegistryClient,
    context: tempfile::TempDir,
}

/// A cluster, an anonymous registry and a stand-in node whose pull back-off starts at 500 ms.
async fn bed() -> anyhow::Result<Bed> {
    kaniko_builder_testkit::init_tracing();
    let (cluster, registry) =
        tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Anonymous))?;
    let options = NodeOptions::default()
        .registry(&registry)
        .pull_backoff(Duration::from_millis(500));
    let node = StandInNode::start(&cluster, options).await?;
    let client = anonymous_client(&registry)?;
    let context = tempfile::tempdir()?;
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /\n",
    )?;
    std::fs::write(context.path().join("hello.txt"), "hello\n")?;
    Ok(Bed {
        cluster,
        registry,
        node,
        client,
        context,
    })
}

impl Bed {
    /// A runner that deletes what a failure leaves, with the default image pull grace.
    fn runner(&self) -> KubeRunnerBuilder {
        KubeRunner::builder(self.cluster.admin_client())
            .docker_config_json(self.registry.docker_config_json())
            .blob_store(Arc::new(self.client.clone()))
            .cleanup(CleanupPolicy::default().delete_on_failure(true))
    }

    fn config(&self, tag: &str) -> BuildConfig {
        let image = format!("{}/team/pulls:{tag}", self.registry.host());
        BuildConfig::builder(image.parse::<ImageRef>().expect("image"))
            .namespace(NS)
            .context(ContextSource::LocalDir(self.context.path().to_owned()))
            .build()
            .expect("config")
    }

    /// Runs `tag` with the next Pod taking `fault`; the result and the events.
    async fn run(
        &self,
        runner: &KubeRunner,
        tag: &str,
        fault: Fault,
    ) -> anyhow::Result<(Result<BuildOutcome, BuildFailure>, Vec<BuildEvent>)> {
        self.node.inject(fault, Target::NextPod).await?;
        let rec = Recorder::default();
        let (sink, never, opts) = (rec.sink(), CancellationToken::new(), FlowOptions::default());
        let result = tokio::time::timeout(
            WAIT * 2,
            run_build(&self.config(tag), &self.client, runner, &sink, &never, &opts),
        )
        .await?;
        Ok((result, rec.events()))
    }
}

/// How many times `kaniko-init` was said to wait for its image, before `until` (if it came).
fn waits_for_the_init_image(events: &[BuildEvent], until: impl Fn(&BuildEvent) -> bool) -> usize {
    events
        .iter()
        .take_while(|e| !until(e))
        .filter(|e| matches!(e, BuildEvent::PullingImage { container } if container == INIT_CONTAINER))
        .count()
}

/// The build's milestones, in order: `kaniko-init` waiting for its image, the init check,
/// building, pushed, verified.
fn milestones(events: &[BuildEvent]) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|e| match e {
            BuildEvent::PullingImage { container } if container == INIT_CONTAINER => {
                Some("waits for its image")
            }
            BuildEvent::InitCheck { .. } => Some("init check"),
            BuildEvent::Building => Some("building"),
            BuildEvent::Pushed { .. } => Some("pushed"),
            BuildEvent::Verified { .. } => Some("verified"),
            _ => None,
        })
        .collect()
}

/// The failure is `image_pull` of `kaniko-init`, naming its image; returns the message.
fn assert_init_image_pull(err: &BuildFailure) -> &str {
    match err.reason() {
        FailureReason::ImagePull { container, message } => {
            assert_eq!(container, INIT_CONTAINER, "{err}");
            assert!(
                message.contains(&format!("\"{DEFAULT_INIT_IMAGE}\"")),
                "the message names the image: {message:?}"
            );
            message
        }
        other => panic!("expected an image pull failure, got {other:?} ({err})"),
    }
}

#[tokio::test]
async fn a_pull_that_recovers_within_the_grace_builds() -> anyhow::Result<()> {
    let bed = bed().await?;
    let runner = bed.runner().build();
    let (result, events) = bed
        .run(&runner, "recovers", Fault::ImagePullFailures { times: 2 })
        .await?;
    let outcome = result.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(matches!(outcome, BuildOutcome::Built { .. }), "{outcome:?}");
    // Each failed attempt says again that the container waits for its image, before it runs.
    let waits = waits_for_the_init_image(&events, |e| matches!(e, BuildEvent::InitCheck { .. }));
    assert!(waits >= 2, "two failed pulls, {waits} waits: {events:?}");
    let mut expected = vec!["waits for its image"; waits];
    expected.extend(["init check", "building", "pushed", "verified"]);
    assert_eq!(milestones(&events), expected, "in this order: {events:?}");
    assert_eq!(
        leftovers_settled(&bed.cluster.admin_client(), NS, &NOTHING).await?,
        NOTHING
    );
    Ok(())
}

#[tokio::test]
async fn a_pull_that_keeps_failing_fails_after_the_grace_and_leaves_nothing() -> anyhow::Result<()> {
    let bed = bed().await?;
    let runner = bed.runner().image_pull_grace(Duration::from_secs(3)).build();
    let (result, events) = bed.run(&runner, "never", Fault::ImagePullBackOff).await?;
    let err = result.expect_err("the image never comes");
    let message = assert_init_image_pull(&err);
    // The grace ends during a back-off or an attempt: either way the attempt's error is said.
    assert!(message.contains("ErrImagePull: "), "{message:?}");
    assert!(waits_for_the_init_image(&events, |_| false) >= 1, "{events:?}");
    assert!(
        !events.iter().any(|e| matches!(e, BuildEvent::InitCheck { .. })),
        "kaniko-init never ran: {events:?}"
    );
    assert_eq!(
        leftovers_settled(&bed.cluster.admin_client(), NS, &NOTHING).await?,
        NOTHING
    );
    Ok(())
}

#[tokio::test]
async fn a_grace_of_zero_fails_at_the_first_failed_pull() -> anyhow::Result<()> {
    let bed = bed().await?;
    let runner = bed.runner().image_pull_grace(Duration::ZERO).build();
    // A registry that would recover after one failure: too late for no grace at all.
    let (result, events) = bed
        .run(&runner, "zero", Fault::ImagePullFailures { times: 1 })
        .await?;
    let err = result.expect_err("no grace");
    let message = assert_init_image_pull(&err);
    assert!(
        message.starts_with("ErrImagePull: "),
        "the first error: {message:?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, BuildEvent::InitCheck { .. })),
        "kaniko-init never ran: {events:?}"
    );
    assert_eq!(
        leftovers_settled(&bed.cluster.admin_client(), NS, &NOTHING).await?,
        NOTHING
    );
    Ok(())
}
