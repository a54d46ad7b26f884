//! 50 concurrent builds of 10 distinct images on the real control plane and the stand-in node:
//! exactly one Job per image, and every caller gets its own image's outcome, with the digest the
//! registry holds.
//!
//! Nothing holds the builds back: the runner shares one run per build among the callers that
//! overlap (see `KubeRunner`, "Concurrent callers"), and a caller that comes after its image's
//! build has pushed finds the image in its own probe and builds nothing. Either way, one Job.

mod runner_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kaniko_builder_core::BuildConfig;
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{BuildEvent, BuildOutcome, CancellationToken, FlowOptions, run_build};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_k8s::runner::CleanupPolicy;
use kaniko_builder_registry::{ImageRef, RegistryClient};
use kaniko_builder_testkit::node::{Fault, NodeOptions, StandInNode, Target};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use runner_support::*;

const IMAGES: usize = 10;
const CALLERS: usize = 50;

/// What every test here starts: a cluster, an anonymous registry, a stand-in node pulling from
/// it, and a client of that registry. Fields drop in order: the node before the cluster.
struct Bed {
    node: StandInNode,
    registry: TestRegistry,
    cluster: TestCluster,
    client: RegistryClient,
}

impl Bed {
    async fn start() -> anyhow::Result<Bed> {
        kaniko_builder_testkit::init_tracing();
        let (cluster, registry) =
            tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Anonymous))?;
        let node = StandInNode::start(&cluster, NodeOptions::default().registry(&registry)).await?;
        let client = anonymous_client(&registry)?;
        Ok(Bed {
            node,
            registry,
            cluster,
            client,
        })
    }
}

/// A runner through `admin` with the registry's credentials, pushing contexts through `client`.
fn runner_builder(
    admin: &kube::Client,
    registry: &TestRegistry,
    client: &RegistryClient,
) -> kaniko_builder_k8s::KubeRunnerBuilder {
    KubeRunner::builder(admin.clone())
        .docker_config_json(registry.docker_config_json())
        .blob_store(Arc::new(client.clone()))
}

/// A build of `repo_tag` in `ns` from a context of its own (`COPY id.txt` holding `id`, so each
/// id gives its own digest); the context dir lives as long as the returned guard.
fn build(
    registry: &TestRegistry,
    ns: &str,
    repo_tag: &str,
    id: &str,
) -> anyhow::Result<(tempfile::TempDir, BuildConfig)> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY id.txt /\n")?;
    std::fs::write(dir.path().join("id.txt"), format!("{id}\n"))?;
    let cfg = BuildConfig::builder(format!("{}/{repo_tag}", registry.host()).parse::<ImageRef>()?)
        .namespace(ns)
        .context(ContextSource::LocalDir(dir.path().to_owned()))
        .build()?;
    Ok((dir, cfg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_callers_ten_images_ten_jobs() -> anyhow::Result<()> {
    let Bed {
        node,
        registry,
        cluster,
        client,
    } = Bed::start().await?;
    let admin = cluster.admin_client();
    let runner = Arc::new(
        runner_builder(&admin, &registry, &client)
            .cleanup(CleanupPolicy::default().delete_on_failure(true))
            .timeout(Duration::from_secs(240))
            .build(),
    );
    let ns = "many";
    // One context per image, each with its own content (so its own digest).
    let mut contexts = Vec::new();
    let mut configs = Vec::new();
    for i in 0..IMAGES {
        let (dir, cfg) = build(&registry, ns, &format!("many/img{i}:v1"), &format!("image {i}"))?;
        configs.push(cfg);
        contexts.push(dir);
    }
    let (watch, created) = record_jobs(&admin, ns);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let runs = (0..CALLERS).map(|caller| {
        let (cfg, runner, client) = (
            configs[caller % IMAGES].clone(),
            Arc::clone(&runner),
            client.clone(),
        );
        async move {
            let rec = Recorder::default();
            let result = run_build(
                &cfg,
                &client,
                runner.as_ref(),
                &rec.sink(),
                &CancellationToken::new(),
                &FlowOptions::default(),
            )
            .await;
            (caller, cfg, result, rec.events())
        }
    });
    let results = futures::future::join_all(runs).await;

    let mut digests: BTreeMap<String, String> = BTreeMap::new();
    let (mut queued, mut attached, mut found) = (0, 0, 0);
    for (caller, cfg, result, events) in &results {
        let outcome = result
            .as_ref()
            .unwrap_or_else(|e| panic!("caller {caller} ({}): {e}", cfg.image()));
        let (image, digest) = match outcome {
            BuildOutcome::Built { image, digest, .. } | BuildOutcome::Skipped { image, digest, .. } => {
                (image, digest)
            }
            other => panic!("caller {caller}: {other:?}"),
        };
        assert_eq!(image, cfg.image(), "caller {caller} got another image's outcome");
        let held = client.probe(cfg.image()).await?;
        assert_eq!(
            held.manifest().map(|m| &m.digest),
            Some(digest),
            "caller {caller}"
        );
        let previous = digests.insert(image.to_string(), digest.to_string());
        assert!(
            previous.is_none_or(|p| p == digest.to_string()),
            "two digests for {image}"
        );
        queued += events
            .iter()
            .filter(|e| matches!(e, BuildEvent::Queued { .. }))
            .count();
        attached += events
            .iter()
            .filter(|e| matches!(e, BuildEvent::Attached { .. }))
            .count();
        if matches!(outcome, BuildOutcome::Skipped { .. })
            && events
                .iter()
                .any(|e| matches!(e, BuildEvent::Probed { exists: true, .. }))
        {
            found += 1;
        }
    }
    assert_eq!(digests.len(), IMAGES);
    let distinct: std::collections::BTreeSet<_> = digests.values().collect();
    assert_eq!(distinct.len(), IMAGES, "each image has its own digest");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let jobs = created.lock().expect("lock").len();
    tracing::info!(
        "{CALLERS} callers: {jobs} Jobs created, {queued} queued, {attached} attached, {found} found the image"
    );
    assert_eq!(
        (jobs, queued, attached + found),
        (IMAGES, IMAGES, CALLERS - IMAGES),
        "exactly one Job per image (Jobs seen by a watch, runs that created one, runs that shared \
         one or found the image already pushed)"
    );
    assert_eq!(
        leftovers_settled(&admin, ns, &[]).await?,
        Vec::<String>::new(),
        "the Secret went with the last Job"
    );
    watch.abort();
    drop(node);
    Ok(())
}

/// Two callers share one build. The one that created the Job is cancelled once the other has
/// joined: it returns `Cancelled`, while the build goes on and the other caller gets it,
/// verified. One Job. (Without shared runs, the creator's cancellation would delete the Job
/// under the other caller.)
#[tokio::test]
async fn a_cancelled_caller_leaves_and_the_build_goes_on_for_the_other() -> anyhow::Result<()> {
    let Bed {
        node,
        registry,
        cluster,
        client,
    } = Bed::start().await?;
    let admin = cluster.admin_client();
    let runner = runner_builder(&admin, &registry, &client).build();
    let ns = "shared";
    let (_dir, cfg) = build(&registry, ns, "shared/app:v1", "shared")?;
    let (watch, created) = record_jobs(&admin, ns);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (leaving, staying) = (Recorder::default(), Recorder::default());
    let (cancel, never) = (CancellationToken::new(), CancellationToken::new());
    let (leaving_sink, staying_sink, opts) = (leaving.sink(), staying.sink(), FlowOptions::default());
    let (left, stayed, ()) = tokio::join!(
        run_build(&cfg, &client, &runner, &leaving_sink, &cancel, &opts),
        async {
            leaving
                .wait_for("queued", |e| matches!(e, BuildEvent::Queued { .. }))
                .await;
            run_build(&cfg, &client, &runner, &staying_sink, &never, &opts).await
        },
        async {
            staying
                .wait_for("attached", |e| matches!(e, BuildEvent::Attached { .. }))
                .await;
            cancel.cancel();
        }
    );
    let err = left.expect_err("cancelled");
    assert!(err.is_cancelled(), "{err}");
    let digest = match stayed {
        Ok(BuildOutcome::Built { digest, .. }) => digest,
        other => panic!("the other caller should get the build: {other:?}"),
    };
    let held = client.probe(cfg.image()).await?;
    assert_eq!(held.manifest().map(|m| &m.digest), Some(&digest));
    let job_events = |r: &Recorder| {
        r.events()
            .into_iter()
            .filter(|e| matches!(e, BuildEvent::Queued { .. } | BuildEvent::Attached { .. }))
            .count()
    };
    assert_eq!(job_events(&staying), 1, "{:?}", staying.steps());
    assert!(
        staying
            .events()
            .iter()
            .any(|e| matches!(e, BuildEvent::Pushed { .. })),
        "{:?}",
        staying.steps()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(created.lock().expect("lock").len(), 1, "one Job for both callers");
    assert_eq!(
        leftovers_settled(&admin, ns, &[]).await?,
        Vec::<String>::new(),
        "the Secret went with the last Job"
    );
    watch.abort();
    drop(node);
    Ok(())
}

/// The only caller of a build is cancelled, and a new caller of the same build comes while that
/// run is still cleaning up: the newcomer never inherits the cancellation; it waits for the
/// cleanup and builds afresh.
#[tokio::test]
async fn a_caller_arriving_at_a_cancelled_run_builds_afresh() -> anyhow::Result<()> {
    let Bed {
        node,
        registry,
        cluster,
        client,
    } = Bed::start().await?;
    let admin = cluster.admin_client();
    let runner = runner_builder(&admin, &registry, &client).build();
    let ns = "again";
    let (_dir, cfg) = build(&registry, ns, "again/app:v1", "again")?;
    // The cancelled run's Pod must not push before its Job is deleted: its containers start late.
    node.inject(Fault::SlowStart(Duration::from_secs(60)), Target::NextPod)
        .await?;
    let (watch, created) = record_jobs(&admin, ns);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (first, second) = (Recorder::default(), Recorder::default());
    let (cancel, never) = (CancellationToken::new(), CancellationToken::new());
    let (first_sink, second_sink, opts) = (first.sink(), second.sink(), FlowOptions::default());
    let (cancelled, built) = tokio::join!(
        run_build(&cfg, &client, &runner, &first_sink, &cancel, &opts),
        async {
            first
                .wait_for("scheduled", |e| matches!(e, BuildEvent::Scheduled { .. }))
                .await;
            // The cleanup (a Foreground delete, waited for) starts now; the newcomer comes at once.
            cancel.cancel();
            run_build(&cfg, &client, &runner, &second_sink, &never, &opts).await
        }
    );
    let err = cancelled.expect_err("cancelled");
    assert!(err.is_cancelled(), "{err}");
    let digest = match built {
        Ok(BuildOutcome::Built { digest, .. }) => digest,
        other => panic!("the newcomer should build: {other:?}"),
    };
    let held = client.probe(cfg.image()).await?;
    assert_eq!(held.manifest().map(|m| &m.digest), Some(&digest));
    assert!(
        second
            .events()
            .iter()
            .any(|e| matches!(e, BuildEvent::Queued { .. })),
        "the newcomer created its own Job: {:?}",
        second.steps()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        created.lock().expect("lock").len(),
        2,
        "the cancelled Job, then the new one"
    );
    assert_eq!(
        leftovers_settled(&admin, ns, &[]).await?,
        Vec::<String>::new(),
        "the Secret went with the last Job"
    );
    watch.abort();
    drop(node);
    Ok(())
}
