//! Multi-platform builds end to end: two stand-in nodes labelled `linux/amd64` and
//! `linux/arm64` on one real control plane, the real scheduler placing each platform's Pod by
//! its node selector, buildah building for the requested platform, the real crane pushing each
//! image by digest, and the real registry holding the index the flow pushed under the tag.

mod runner_support;

use std::sync::Arc;
use std::time::Duration;

use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{
    BuildEvent, BuildOutcome, CancellationToken, FailureReason, FlowOptions, run_build,
};
use kaniko_builder_core::{BuildConfig, Platform, Probe};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_k8s::runner::CleanupPolicy;
use kaniko_builder_registry::{DockerConfig, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::node::{Fault, NodeOptions, StandInNode, Target};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use runner_support::{Recorder, leftovers_settled};

fn p(s: &str) -> Platform {
    s.parse().expect("platform")
}

/// The tags of `repository` in the registry's own storage: nothing else names an image.
fn tags(registry: &TestRegistry, repository: &str) -> Vec<String> {
    let dir = registry
        .storage_dir()
        .join("docker/registry/v2/repositories")
        .join(repository)
        .join("_manifests/tags");
    let mut tags: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    tags
}

#[tokio::test]
async fn every_platform_in_parallel_then_one_index() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let (cluster, registry) =
        tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Basic))?;
    let node = |name: &str, platform: &str| {
        NodeOptions::default()
            .registry(&registry)
            .name(name)
            .platform(p(platform))
    };
    let (_amd64, arm64) = tokio::try_join!(
        StandInNode::start(&cluster, node("kb-node-amd64", "linux/amd64")),
        StandInNode::start(&cluster, node("kb-node-arm64", "linux/arm64")),
    )?;
    let settings = match registry.ca_pem() {
        Some(ca) => RegistrySettings::default().ca_pem(ca),
        None => RegistrySettings::default().plain_http(true),
    };
    let client = RegistryClient::builder()
        .docker_config(DockerConfig::from_json(&registry.docker_config_json())?)
        .registry(registry.host(), settings)
        .build()?;
    let runner = KubeRunner::builder(cluster.admin_client())
        .docker_config_json(registry.docker_config_json())
        .blob_store(Arc::new(client.clone()))
        .unschedulable_timeout(Some(Duration::from_secs(3)))
        .cleanup(CleanupPolicy::default().delete_on_failure(true))
        .build();
    let admin = cluster.admin_client();
    let ns = "kaniko";
    let dir = tempfile::tempdir()?;
    // No RUN: nothing of the foreign architecture executes on the node.
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY app.txt /app.txt\n",
    )?;
    std::fs::write(dir.path().join("app.txt"), "one image, two platforms\n")?;
    let config = |tag: &str, platforms: &[&str]| {
        BuildConfig::builder(
            format!("{}/team/app:{tag}", registry.host())
                .parse()
                .expect("image"),
        )
        .namespace(ns)
        .context(ContextSource::LocalDir(dir.path().to_owned()))
        .platforms(platforms.iter().map(|s| p(s)))
        .build()
        .expect("config")
    };
    let run = |config: BuildConfig, rec: Recorder| {
        let (client, runner) = (client.clone(), runner.clone());
        async move {
            run_build(
                &config,
                &client,
                &runner,
                &rec.sink(),
                &CancellationToken::new(),
                &FlowOptions::default(),
            )
            .await
        }
    };

    // 1. One platform first: an index of one.
    let one = config("v1", &["linux/amd64"]);
    let rec = Recorder::default();
    let first = run(one, rec.clone()).await.map_err(|e| {
        let lines: Vec<String> = rec
            .events()
            .iter()
            .filter_map(|e| match e.platform() {
                Some((pl, BuildEvent::Log { container, line })) => Some(format!("{pl} {container}: {line}")),
                _ => None,
            })
            .collect();
        anyhow::anyhow!("{e}\n{}", lines.join("\n"))
    })?;
    assert!(matches!(first, BuildOutcome::Built { .. }), "{first:?}");

    // 2. A platform added: the index lacks it, so both are built, each on its own node.
    let two = config("v1", &["linux/amd64", "linux/arm64"]);
    let rec = Recorder::default();
    let built = run(two.clone(), rec.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let BuildOutcome::Built {
        digest, platforms, ..
    } = &built
    else {
        panic!("expected a build, got {built:?}")
    };
    assert_eq!(
        platforms
            .iter()
            .map(|i| i.platform.to_string())
            .collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64"]
    );
    for step in ["linux/amd64", "linux/arm64"] {
        assert!(
            rec.events().iter().any(
                |e| matches!(e.platform(), Some((pl, BuildEvent::Pushed { .. })) if pl.to_string() == step)
            ),
            "no pushed event for {step}: {:?}",
            rec.steps()
        );
    }
    // The index under the tag lists both platforms, and each entry resolves.
    let image = &two.image().clone();
    let probe = client.probe(image).await?;
    assert!(
        matches!(&probe, Probe::Exists(m) if m.is_index() && m.digest == *digest),
        "{probe:?}"
    );
    let listed = client.index_platforms(image).await?;
    assert_eq!(listed, [p("linux/amd64"), p("linux/arm64")]);
    for entry in platforms {
        assert!(
            client
                .probe(&image.with_digest(entry.digest.clone()))
                .await?
                .exists()
        );
    }
    // Pushed by digest: the tag is the only one.
    assert_eq!(tags(&registry, "team/app"), ["v1"]);
    // The scheduler put each platform's Pod on its node.
    for (platform, node) in [("linux/amd64", "kb-node-amd64"), ("linux/arm64", "kb-node-arm64")] {
        let scheduled = rec.events().iter().find_map(|e| match e.platform() {
            Some((pl, BuildEvent::Scheduled { node })) if pl.to_string() == platform => Some(node.clone()),
            _ => None,
        });
        assert_eq!(scheduled.as_deref(), Some(node), "{platform}");
    }

    // 3. Again: the index holds both; skipped without a Job.
    let skipped = run(two, Recorder::default())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(matches!(skipped, BuildOutcome::Skipped { .. }), "{skipped:?}");

    // 4. One platform fails: no index, every platform's result named.
    arm64
        .inject(
            Fault::OomKilled,
            Target::NamePrefix("kb-team-app-v2-linux-arm64".into()),
        )
        .await?;
    let failed = run(config("v2", &["linux/amd64", "linux/arm64"]), Recorder::default())
        .await
        .expect_err("arm64 fails");
    let FailureReason::Platforms { results } = failed.reason() else {
        panic!("expected platforms, got {failed}")
    };
    assert!(results[0].digest.is_some(), "{failed}");
    assert_eq!(
        results[1].failure.as_ref().map(|f| f.kind()),
        Some("oom_killed"),
        "{failed}"
    );
    assert!(
        !client.probe(&image.with_tag("v2")?).await?.exists(),
        "no index under v2"
    );

    // 5. No node for a platform: unschedulable, naming it.
    let failed = run(config("v3", &["linux/amd64", "linux/s390x"]), Recorder::default())
        .await
        .expect_err("no s390x node");
    let FailureReason::Platforms { results } = failed.reason() else {
        panic!("expected platforms, got {failed}")
    };
    assert_eq!(results[1].platform, p("linux/s390x"));
    assert_eq!(
        results[1].failure.as_ref().map(|f| f.kind()),
        Some("unschedulable"),
        "{failed}"
    );
    assert!(
        failed.to_string().contains("linux/s390x: unschedulable"),
        "{failed}"
    );
    assert_eq!(
        tags(&registry, "team/app"),
        ["v1"],
        "no stray tags after failures"
    );

    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());
    Ok(())
}
