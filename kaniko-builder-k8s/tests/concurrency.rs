//! 50 concurrent builds of 10 distinct images on the real control plane and the stand-in node:
//! exactly one Job per image (the others attach to it), and every caller gets its own image's
//! outcome, with the digest the registry holds.

mod runner_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kaniko_builder_core::BuildConfig;
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{BuildEvent, BuildOutcome, CancellationToken, FlowOptions, run_build};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_k8s::runner::CleanupPolicy;
use kaniko_builder_registry::{DockerConfig, ImageRef, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::node::{Fault, NodeOptions, StandInNode, Target};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use runner_support::*;

const IMAGES: usize = 10;
const CALLERS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_callers_ten_images_ten_jobs() -> anyhow::Result<()> {
    let (cluster, registry) =
        tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Anonymous))?;
    let node = StandInNode::start(&cluster, NodeOptions::default().registry(&registry)).await?;
    let client = RegistryClient::builder()
        .docker_config(DockerConfig::anonymous())
        .registry(registry.host(), RegistrySettings::default().plain_http(true))
        .build()?;
    let admin = cluster.admin_client();
    let runner = Arc::new(
        KubeRunner::builder(admin.clone())
            .docker_config_json(registry.docker_config_json())
            .blob_store(Arc::new(client.clone()))
            .cleanup(CleanupPolicy::default().delete_on_failure(true))
            .timeout(Duration::from_secs(240))
            .build(),
    );
    let ns = "many";
    // One context per image, each with its own content (so its own digest).
    let mut contexts = Vec::new();
    let mut configs = Vec::new();
    for i in 0..IMAGES {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY id.txt /\n")?;
        std::fs::write(dir.path().join("id.txt"), format!("image {i}\n"))?;
        let image: ImageRef = format!("{}/many/img{i}:v1", registry.host()).parse()?;
        configs.push(
            BuildConfig::builder(image)
                .namespace(ns)
                .context(ContextSource::LocalDir(dir.path().to_owned()))
                .build()?,
        );
        contexts.push(dir);
    }
    // Each build starts 3 s after its Pod is scheduled, so every caller has probed (and found
    // the image absent) while its image's Job still runs, even on a loaded machine: a caller that
    // comes after a Job is gone legitimately creates another one (the in-cluster check then skips).
    for cfg in &configs {
        node.inject(
            Fault::SlowStart(Duration::from_secs(3)),
            Target::NamePrefix(cfg.job_name()),
        )
        .await?;
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
    let (mut queued, mut attached) = (0, 0);
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
    }
    assert_eq!(digests.len(), IMAGES);
    let distinct: std::collections::BTreeSet<_> = digests.values().collect();
    assert_eq!(distinct.len(), IMAGES, "each image has its own digest");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let jobs = created.lock().expect("lock").len();
    tracing::info!("{CALLERS} callers: {jobs} Jobs created, {queued} queued, {attached} attached");
    assert_eq!(
        (jobs, queued, attached),
        (IMAGES, IMAGES, CALLERS - IMAGES),
        "exactly one Job per image (Jobs seen by a watch, runs that created one, runs that attached)"
    );
    assert_eq!(
        leftovers_settled(&admin, ns, &["secret/docker-config-secret"]).await?,
        ["secret/docker-config-secret"]
    );
    watch.abort();
    drop(node);
    Ok(())
}
