//! The facade end to end: `Build` and `BuildSet` against a real control plane, the stand-in node
//! (kaniko-init and real builds) and a real registry with token auth.

#[path = "../kaniko-builder-k8s/tests/runner_support/mod.rs"]
mod runner_support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kaniko_builder::registry::{RegistryClient, RegistrySettings};
use kaniko_builder::{
    Build, BuildConfig, BuildEvent, BuildOutcome, BuildSet, CleanupPolicy, ContextSource, Decision,
    DockerConfig, ImageRef, SetEvent, SkippedBy,
};
use kaniko_builder_testkit::node::{Fault, NodeOptions, StandInNode, Target};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use kube::ResourceExt as _;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use runner_support::{WAIT, leftovers, ours, record_jobs};

struct Bed {
    cluster: TestCluster,
    registry: TestRegistry,
    node: StandInNode,
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
        node,
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
        matches!(plan.decision, Decision::Build { .. }) && plan.existing.is_none(),
        "{:?}",
        plan.decision
    );
    // The Job is named after the files, as the run names it.
    assert_eq!(plan.manifests.job_name(), pinned(&cfg).job_name());
    assert_ne!(plan.manifests.job_name(), cfg.job_name());
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
    assert!(api.get_opt(&pinned(&cfg).job_name()).await?.is_none());

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

/// Watches the Jobs of `ns` (no polling) until their names satisfy `done`. A Job being deleted
/// counts until it is gone. [`WAIT`] is only a safety net.
async fn until_jobs(
    client: &kube::Client,
    ns: &str,
    what: &str,
    done: impl Fn(&BTreeSet<String>) -> bool,
) -> anyhow::Result<()> {
    let api: kube::Api<Job> = kube::Api::namespaced(client.clone(), ns);
    let (mut jobs, mut listing) = (BTreeSet::new(), BTreeSet::new());
    // Whether `jobs` holds a complete list (the watch's first list is done).
    let mut listed = false;
    let watch = async {
        let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()).default_backoff());
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Init) => {
                    listing.clear();
                    listed = false;
                }
                Ok(Event::InitApply(job)) => {
                    listing.insert(job.name_any());
                }
                Ok(Event::InitDone) => {
                    jobs = std::mem::take(&mut listing);
                    listed = true;
                }
                Ok(Event::Apply(job)) => {
                    jobs.insert(job.name_any());
                }
                Ok(Event::Delete(job)) => {
                    jobs.remove(&job.name_any());
                }
                Err(e) => tracing::debug!(error = %e, "job watch error; the watcher retries"),
            }
            if listed && done(&jobs) {
                return true;
            }
        }
        false
    };
    match tokio::time::timeout(WAIT, watch).await {
        Ok(true) => Ok(()),
        Ok(false) => anyhow::bail!("{what}: the Job watch ended; Jobs: {jobs:?}"),
        Err(_) => anyhow::bail!("{what}: not within {WAIT:?}; Jobs: {jobs:?}"),
    }
}

/// A forced duplicate of an existing image is a target of its own: the plain one is skipped,
/// the forced one built (keyed by the Job name, the set took both for one target and built
/// nothing).
#[tokio::test]
async fn build_set_builds_a_forced_duplicate_of_an_existing_image() -> anyhow::Result<()> {
    let bed = bed().await?;
    let ns = "forced";
    let ctx = context("FROM scratch\nCOPY hello.txt /hello.txt\n")?;
    let plain = bed.config("fleet/app:v1", ns, ctx.path());
    let existing = bed.build(plain.clone()).run().await?;
    assert!(matches!(existing, BuildOutcome::Built { .. }), "{existing:?}");
    let forced = plain.clone().into_builder().force(true).build()?;
    assert_eq!(forced.job_name(), plain.job_name());

    let results = bed.set(vec![plain.clone(), forced]).run().await?;
    match (&results[0], &results[1]) {
        (
            Ok(BuildOutcome::Skipped {
                by: SkippedBy::Caller,
                digest,
                ..
            }),
            Ok(BuildOutcome::Built { job, .. }),
        ) => {
            assert_eq!(digest, existing.digest());
            assert_eq!(job.name, pinned(&plain).job_name());
        }
        other => panic!("expected [skipped by the caller, built], got {other:?}"),
    }
    Ok(())
}

/// Dropping the `run` future of a set cancels its builds, which delete their Jobs (as dropping
/// `Build::run` does): the builds wait for a node that takes no Pod, the set is dropped once
/// both Jobs exist, and both Jobs (and their Pods) go.
#[tokio::test]
async fn dropping_a_build_set_cancels_its_builds_and_deletes_their_jobs() -> anyhow::Result<()> {
    let bed = bed().await?;
    let admin = bed.cluster.admin_client();
    let ns = "dropped";
    bed.node.inject(Fault::Unschedulable, Target::Node).await?;
    let ctx = context("FROM scratch\nCOPY hello.txt /hello.txt\n")?;
    let (a, b) = (
        bed.config("dropped/a:v1", ns, ctx.path()),
        bed.config("dropped/b:v1", ns, ctx.path()),
    );
    let names = [pinned(&a).job_name(), pinned(&b).job_name()];
    let run = bed.set(vec![a, b]).unschedulable_timeout(None).run();
    tokio::select! {
        result = run => panic!("the set ended before its Jobs existed: {result:?}"),
        exist = until_jobs(&admin, ns, "both Jobs exist", |jobs| names.iter().all(|n| jobs.contains(n))) => exist?,
    }
    // The set's future is dropped here.
    until_jobs(
        &admin,
        ns,
        "the Jobs are gone after the set was dropped",
        |jobs| jobs.is_empty(),
    )
    .await?;
    assert_eq!(ours::<Pod>(&admin, ns).await?, Vec::<String>::new());
    Ok(())
}

/// A set's events say which image they belong to: with two images built side by side, each
/// index gets its own image's whole story (its Job, its objects, its digest, its log lines) and
/// nothing of the other's.
#[tokio::test]
async fn build_set_events_say_which_image_they_belong_to() -> anyhow::Result<()> {
    let bed = bed().await?;
    let ns = "tagged";
    let (ctx_a, ctx_b) = (
        context("FROM scratch\nCOPY only-in-a.txt /\n")?,
        context("FROM scratch\nCOPY only-in-b.txt /\n")?,
    );
    std::fs::write(ctx_a.path().join("only-in-a.txt"), "a\n")?;
    std::fs::write(ctx_b.path().join("only-in-b.txt"), "b\n")?;
    let configs = [
        bed.config("tagged/a:v1", ns, ctx_a.path()),
        bed.config("tagged/b:v1", ns, ctx_b.path()),
    ];
    let files = ["only-in-a.txt", "only-in-b.txt"];
    let mut set = bed.set(configs.to_vec());
    let mut stream = set.events();
    let collect = tokio::spawn(async move {
        let mut all: Vec<SetEvent> = Vec::new();
        while let Some(e) = stream.next().await {
            all.push(e);
        }
        all
    });
    let results = set.run().await?;
    let events = collect.await?;

    for (index, config) in configs.iter().enumerate() {
        let (other, file, other_file) = (&configs[1 - index], files[index], files[1 - index]);
        let Ok(BuildOutcome::Built { digest, .. }) = &results[index] else {
            panic!("image {index}: expected Built, got {:?}", results[index])
        };
        let mine: Vec<&BuildEvent> = events
            .iter()
            .filter(|e| e.index == index)
            .map(|e| {
                assert_eq!(
                    &e.image,
                    config.image(),
                    "index {index} tagged with another image"
                );
                &e.event
            })
            .collect();
        let steps: Vec<String> = mine
            .iter()
            .filter(|e| !e.is_log())
            .map(|e| {
                serde_json::to_value(e).expect("json")["event"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        let story = [
            "probed",
            "applied",
            "queued",
            "building",
            "pushed",
            "cleaned_up",
            "verified",
        ];
        let mut at = steps.iter();
        for step in story {
            assert!(
                at.any(|s| s == step),
                "image {index}: no {step} in order in {steps:?}"
            );
        }
        let mut own_lines = 0;
        for event in &mine {
            match event {
                BuildEvent::Probed { exists, .. } => assert!(!exists, "image {index}: {event:?}"),
                BuildEvent::Queued { job, .. } | BuildEvent::Attached { job, .. } => {
                    assert_eq!(job, &pinned(config).job_name(), "image {index}: {event:?}");
                }
                BuildEvent::Applied { objects } => {
                    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
                    assert!(
                        names.contains(&pinned(config).job_name().as_str())
                            && !names.contains(&pinned(other).job_name().as_str()),
                        "image {index}: {names:?}"
                    );
                }
                BuildEvent::Pushed { digest: d } | BuildEvent::Verified { digest: d } => {
                    assert_eq!(d, digest, "image {index}: {event:?}");
                }
                BuildEvent::Log { line, .. } => {
                    assert!(
                        !line.contains(other_file),
                        "image {index} got the other's log: {line}"
                    );
                    own_lines += usize::from(line.contains(file));
                }
                _ => {}
            }
        }
        assert!(
            own_lines > 0,
            "image {index}: no log line of its own build names {file}"
        );
    }
    let indices: BTreeSet<usize> = events.iter().map(|e| e.index).collect();
    assert_eq!(indices, BTreeSet::from([0, 1]));
    Ok(())
}

/// `cfg` as the runner names its Job: the local directory's files hashed into it.
fn pinned(cfg: &kaniko_builder::BuildConfig) -> kaniko_builder::BuildConfig {
    let kaniko_builder::ContextSource::LocalDir(dir) = cfg.context() else {
        return cfg.clone();
    };
    let options = kaniko_builder::context::PackOptions::default();
    let hashed = kaniko_builder::context::hash(dir, cfg.dockerfile(), &options).expect("hash the context");
    cfg.clone().with_context_digest(hashed.diff_id)
}
