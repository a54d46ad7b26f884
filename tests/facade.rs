//! The facade end to end: `Build` and `BuildSet` against a real control plane, the stand-in node
//! (kaniko-init and real builds) and a real registry with token auth.

#[path = "../kaniko-builder-k8s/tests/runner_support/mod.rs"]
mod runner_support;

use std::time::Duration;

use futures::StreamExt as _;
use kaniko_builder::registry::{RegistryClient, RegistrySettings};
use kaniko_builder::{
    Build, BuildConfig, BuildEvent, BuildOutcome, BuildSet, CleanupPolicy, ContextSource, Decision,
    DockerConfig, ImageRef, SkippedBy,
};
use kaniko_builder_testkit::node::{NodeOptions, StandInNode};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use runner_support::{leftovers, record_jobs};

struct Bed {
    cluster: TestCluster,
    registry: TestRegistry,
    _node: StandInNode,
    client: RegistryClient,
}

async fn bed() -> anyhow::Result<Bed> {
    kaniko_builder_testkit::init_tracing();
    let (cluster, registry) =
        tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Token))?;
    let node = StandInNode::start(&cluster, NodeOptions::default().registry(&registry)).await?;
    let settings = RegistrySettings::default().ca_pem(registry.ca_pem().expect("tls"));
    let client = RegistryClient::builder()
        .docker_config(DockerConfig::from_json(&registry.docker_config_json())?)
        .registry(registry.host(), settings)
        .build()?;
    Ok(Bed {
        cluster,
        registry,
        _node: node,
        client,
    })
}

impl Bed {
    fn config(&self, repo_tag: &str, ns: &str, ctx: &std::path::Path) -> BuildConfig {
        let image: ImageRef = format!("{}/{repo_tag}", self.registry.host())
            .parse()
            .expect("image");
        BuildConfig::builder(image)
            .namespace(ns)
            .context(ContextSource::LocalDir(ctx.to_owned()))
            .build()
            .expect("config")
    }

    fn build(&self, cfg: BuildConfig) -> Build {
        Build::new(cfg)
            .registry_client(self.client.clone())
            .kube_client(self.cluster.admin_client())
            .unschedulable_timeout(Some(Duration::from_secs(3)))
            .cleanup(CleanupPolicy::default().delete_on_failure(true))
    }

    fn set(&self, cfgs: Vec<BuildConfig>) -> BuildSet {
        BuildSet::new(cfgs)
            .registry_client(self.client.clone())
            .kube_client(self.cluster.admin_client())
            .unschedulable_timeout(Some(Duration::from_secs(3)))
            .cleanup(CleanupPolicy::default().delete_on_failure(true))
    }
}

fn context(dockerfile: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("Dockerfile"), dockerfile)?;
    std::fs::write(dir.path().join("hello.txt"), "hello from the facade\n")?;
    Ok(dir)
}

#[tokio::test]
async fn build_plans_runs_with_events_and_skips() -> anyhow::Result<()> {
    let bed = bed().await?;
    let admin = bed.cluster.admin_client();
    let ns = "kaniko";
    let ctx = context("FROM scratch\nCOPY hello.txt /hello.txt\n")?;
    let cfg = bed.config("team/facade:v1", ns, ctx.path());

    // plan(): the decision and the objects, and nothing on the cluster.
    let before = leftovers(&admin, ns).await?;
    let plan = bed.build(cfg.clone()).plan().await?;
    assert!(
        matches!(plan.decision, Decision::Build { existing: None, .. }),
        "{:?}",
        plan.decision
    );
    assert_eq!(plan.manifests.job_name(), cfg.job_name());
    let yaml = plan.to_yaml_redacted()?;
    assert!(yaml.contains("kind: Job") && yaml.contains("kind: Secret"));
    assert!(
        !yaml.contains(TestRegistry::PASSWORD),
        "redacted YAML leaks the password"
    );
    // The Secret holds only the destination registry's entry.
    let secret = plan.manifests.secret.as_ref().expect("secret");
    let json = &secret.data.as_ref().expect("data")[".dockerconfigjson"].0;
    let auths: serde_json::Value = serde_json::from_slice(json)?;
    assert_eq!(
        auths["auths"]
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec![bed.registry.host()])
    );
    assert_eq!(leftovers(&admin, ns).await?, before, "plan() touched the cluster");
    let api: kube::Api<k8s_openapi::api::batch::v1::Job> = kube::Api::namespaced(admin.clone(), ns);
    assert!(api.get_opt(&cfg.job_name()).await?.is_none());

    // run(): built, with the events streamed, and the digest in the registry.
    let mut build = bed.build(cfg.clone());
    let mut events = build.events();
    let collect = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(e) = events.next().await {
            all.push(e);
        }
        all
    });
    let built = build.run().await?;
    let events = collect.await?;
    let BuildOutcome::Built { digest, .. } = &built else {
        panic!("expected Built, got {built:?}")
    };
    assert!(
        events
            .iter()
            .any(|e| matches!(e, BuildEvent::Probed { exists: false, .. }))
    );
    assert!(
        events.iter().any(|e| matches!(e, BuildEvent::Log { .. })),
        "no log lines streamed"
    );
    assert!(events.iter().any(|e| matches!(e, BuildEvent::Verified { .. })));
    let probe = bed.client.probe(cfg.image()).await?;
    assert_eq!(probe.manifest().map(|m| &m.digest), Some(digest));

    // Again: skipped by the caller, and the plan says skip.
    let skipped = bed.build(cfg.clone()).run().await?;
    assert!(
        matches!(&skipped, BuildOutcome::Skipped { by: SkippedBy::Caller, digest: d, job: None, .. } if d == digest)
    );
    let plan = bed.build(cfg).plan().await?;
    assert_eq!(
        plan.decision,
        Decision::Skip {
            digest: digest.clone()
        }
    );
    Ok(())
}

#[tokio::test]
async fn build_set_dedupes_keeps_order_and_isolates_failures() -> anyhow::Result<()> {
    let bed = bed().await?;
    let admin = bed.cluster.admin_client();
    let ns = "fleet";
    let good = context("FROM scratch\nCOPY hello.txt /hello.txt\n")?;
    let bad = context("FROM scratch\nCOPY missing.txt /missing.txt\n")?;
    let a = bed.config("fleet/a:v1", ns, good.path());
    let b = bed.config("fleet/b:v1", ns, good.path());
    let broken = bed.config("fleet/broken:v1", ns, bad.path());
    let (watch, created) = record_jobs(&admin, ns);

    let results = bed
        .set(vec![a.clone(), broken.clone(), b.clone(), a.clone()])
        .concurrency(2)
        .run()
        .await?;
    assert_eq!(results.len(), 4);
    let images: Vec<String> = results
        .iter()
        .map(|r| match r {
            Ok(o) => o.image().to_string(),
            Err(e) => e.build_failure().expect("a build failure").image().to_string(),
        })
        .collect();
    assert_eq!(images, [&a, &broken, &b, &a].map(|c| c.image().to_string()));
    let (Ok(first), Ok(dup)) = (&results[0], &results[3]) else {
        panic!("a failed: {results:?}")
    };
    assert!(matches!(first, BuildOutcome::Built { .. }), "{first:?}");
    assert_eq!(first.digest(), dup.digest());
    assert!(
        matches!(&results[2], Ok(BuildOutcome::Built { .. })),
        "one failure cancelled another: {:?}",
        results[2]
    );
    let err = results[1].as_ref().expect_err("broken must fail");
    assert!(!err.is_cancelled(), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        created.lock().expect("lock").len(),
        3,
        "each distinct target builds once"
    );
    watch.abort();

    // Everything exists now: the whole set is skipped, no Job.
    let (watch, created) = record_jobs(&admin, ns);
    let again = bed.set(vec![b, a]).run().await?;
    assert!(
        again
            .iter()
            .all(|r| matches!(r, Ok(BuildOutcome::Skipped { .. }))),
        "{again:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(created.lock().expect("lock").is_empty());
    watch.abort();
    Ok(())
}
