//! Builds that share a namespace, as platform tools run them: builds with other credentials
//! never see each other's Secret nor break each other's builds, builds with the same
//! credentials share one Secret, and a cancelled build never takes the Secret from under a
//! build that still uses it. Real control plane (garbage collector included), the stand-in node
//! running the real `kaniko-init` with the real crane, and two real registries with
//! authentication: token auth and htpasswd Basic.

mod runner_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{
    BuildEvent, BuildFailure, BuildOutcome, CancellationToken, FlowOptions, run_build,
};
use kaniko_builder_core::{BuildConfig, ImageRef};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_registry::{DockerConfig, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::node::{Fault, NodeOptions, StandInNode, Target};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::watcher;
use runner_support::*;

/// A cluster, a token-auth and a Basic-auth registry, and a node trusting both. Fields drop in
/// order: the node before the cluster.
struct Bed {
    node: StandInNode,
    token: TestRegistry,
    basic: TestRegistry,
    cluster: TestCluster,
}

impl Bed {
    async fn start() -> anyhow::Result<Bed> {
        kaniko_builder_testkit::init_tracing();
        let (cluster, token, basic) = tokio::try_join!(
            TestCluster::start(),
            TestRegistry::start(RegistryAuth::Token),
            TestRegistry::start(RegistryAuth::Basic)
        )?;
        let node =
            StandInNode::start(&cluster, NodeOptions::default().registry(&token).registry(&basic)).await?;
        Ok(Bed {
            node,
            token,
            basic,
            cluster,
        })
    }
}

/// One tool: its own registry client and runner, holding only `registry`'s credentials.
struct Tool {
    client: RegistryClient,
    runner: KubeRunner,
}

impl Tool {
    fn new(admin: &kube::Client, registry: &TestRegistry) -> anyhow::Result<Tool> {
        let json = registry.docker_config_json();
        let client = RegistryClient::builder()
            .docker_config(DockerConfig::from_json(&json)?)
            .registry(
                registry.host(),
                RegistrySettings::default().ca_pem(registry.ca_pem().expect("TLS registry")),
            )
            .build()?;
        let runner = KubeRunner::builder(admin.clone())
            .docker_config_json(json)
            .blob_store(Arc::new(client.clone()))
            .timeout(Duration::from_secs(240))
            .build();
        Ok(Tool { client, runner })
    }

    async fn run(
        &self,
        cfg: &BuildConfig,
        rec: &Recorder,
        cancel: &CancellationToken,
    ) -> Result<BuildOutcome, BuildFailure> {
        run_build(
            cfg,
            &self.client,
            &self.runner,
            &rec.sink(),
            cancel,
            &FlowOptions::default(),
        )
        .await
    }
}

/// A build of `repo_tag` on `registry` in `ns`, from a context of its own (`COPY id.txt`, so
/// each build has its own digest); the context lives as long as the returned guard.
fn build(
    registry: &TestRegistry,
    ns: &str,
    repo_tag: &str,
) -> anyhow::Result<(tempfile::TempDir, BuildConfig)> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY id.txt /\n")?;
    std::fs::write(dir.path().join("id.txt"), format!("{repo_tag}\n"))?;
    let cfg = BuildConfig::builder(format!("{}/{repo_tag}", registry.host()).parse::<ImageRef>()?)
        .namespace(ns)
        .context(ContextSource::LocalDir(dir.path().to_owned()))
        .build()?;
    // Pinned to its files, as the runner names its Job.
    Ok((dir, pinned(&cfg)))
}

/// Every version of the objects of kind `K` of ours in a namespace that a watch saw, in order:
/// `(deleted, object)`. A deletion's object carries the resourceVersion of the deletion.
struct History<K> {
    seen: Arc<Mutex<Vec<(bool, K)>>>,
    notify: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> History<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    /// Starts the watch; returns once its initial list is done.
    async fn start(client: &kube::Client, ns: &str) -> anyhow::Result<History<K>> {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (ready, listed) = tokio::sync::oneshot::channel();
        let (out, woken) = (Arc::clone(&seen), Arc::clone(&notify));
        let task = tokio::spawn(async move {
            let mut ready = Some(ready);
            let mut stream = std::pin::pin!(watcher(api, watcher::Config::default().labels(OURS)));
            while let Some(event) = stream.next().await {
                let entry = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (false, o),
                    Ok(watcher::Event::Delete(o)) => (true, o),
                    Ok(watcher::Event::InitDone) => {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                        continue;
                    }
                    Ok(watcher::Event::Init) | Err(_) => continue,
                };
                out.lock().expect("lock").push(entry);
                woken.notify_waiters();
            }
        });
        tokio::time::timeout(WAIT, listed).await??;
        Ok(History { seen, notify, task })
    }

    fn seen(&self) -> Vec<(bool, K)> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits until `done` holds for what was seen.
    async fn wait_for(&self, what: &str, done: impl Fn(&[(bool, K)]) -> bool) {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.notify.notified();
                if done(&self.seen()) {
                    return;
                }
                notified.await;
            }
        })
        .await;
        assert!(found.is_ok(), "never saw {what}: {:#?}", self.seen());
    }

    /// The resourceVersion at which `name` was deleted, if it was.
    fn deleted_at(&self, name: &str) -> Option<u64> {
        self.seen()
            .iter()
            .find(|(deleted, o)| *deleted && o.meta().name.as_deref() == Some(name))
            .and_then(|(_, o)| o.meta().resource_version.as_deref()?.parse().ok())
    }
}

impl<K> Drop for History<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The registries a Secret's `config.json` has entries for.
fn registries_in(secret: &Secret) -> BTreeSet<String> {
    let json = secret
        .data
        .as_ref()
        .and_then(|d| d.get(".dockerconfigjson"))
        .map(|b| b.0.clone())
        .unwrap_or_default();
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap_or_default();
    value["auths"]
        .as_object()
        .map(|auths| auths.keys().cloned().collect())
        .unwrap_or_default()
}

/// The names of the Jobs owning a Secret.
fn owner_jobs(secret: &Secret) -> BTreeSet<String> {
    secret
        .owner_references()
        .iter()
        .filter(|o| o.kind == "Job")
        .map(|o| o.name.clone())
        .collect()
}

/// Three builds to a token-auth registry and three to a Basic-auth one, each through its own
/// runner holding only its registry's credentials, started together in one namespace: all six
/// succeed; the token builds share one Secret, which only ever held the token registry's
/// entry, and the Basic builds another, with only theirs; each Secret was owned by exactly its
/// three Jobs, and went with them. (With one Secret for the namespace, rewritten by each build
/// with its own credentials, the Pods of one registry mounted the other's, and failed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_builds_two_registries_one_namespace() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    let admin = bed.cluster.admin_client();
    let ns = "teams";
    let secrets = History::<Secret>::start(&admin, ns).await?;

    let mut runs = Vec::new();
    for (team, registry) in [("tokens", &bed.token), ("basics", &bed.basic)] {
        for i in 0..3 {
            let (dir, cfg) = build(registry, ns, &format!("{team}/app{i}:v1"))?;
            runs.push((team, dir, cfg, Tool::new(&admin, registry)?));
        }
    }
    let results = futures::future::join_all(runs.iter().map(|(_, _, cfg, tool)| async move {
        let rec = Recorder::default();
        tool.run(cfg, &rec, &CancellationToken::new()).await
    }))
    .await;
    let mut failed = Vec::new();
    for ((team, _, cfg, tool), result) in runs.iter().zip(&results) {
        match result {
            Ok(BuildOutcome::Built { digest, .. }) => {
                let held = tool.client.probe(cfg.image()).await?;
                assert_eq!(
                    held.manifest().map(|m| &m.digest),
                    Some(digest),
                    "{team}: {}",
                    cfg.image()
                );
            }
            other => failed.push(format!("{team} {}: {other:?}", cfg.image())),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 6 builds failed: {failed:#?}",
        failed.len()
    );

    // The Secrets every build made, as the watch saw each version of them.
    let mut held: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, secret) in secrets.seen() {
        let name = secret.name_any();
        let registries = registries_in(&secret);
        assert_eq!(registries.len(), 1, "{name} held {registries:?}");
        held.entry(name.clone()).or_default().extend(registries);
        owners.entry(name).or_default().extend(owner_jobs(&secret));
    }
    let jobs_of = |team: &str| -> BTreeSet<String> {
        runs.iter()
            .filter(|(t, ..)| *t == team)
            .map(|(_, _, cfg, _)| cfg.job_name())
            .collect()
    };
    assert_eq!(held.len(), 2, "one Secret per set of credentials: {held:?}");
    for (team, registry) in [("tokens", &bed.token), ("basics", &bed.basic)] {
        let (name, _) = held
            .iter()
            .find(|(_, hosts)| hosts.contains(&registry.host()))
            .unwrap_or_else(|| panic!("no Secret for {team}: {held:?}"));
        assert!(name.starts_with("kb-docker-config-"), "{name}");
        assert_eq!(
            held[name],
            BTreeSet::from([registry.host()]),
            "{team}'s Secret only ever held its own registry"
        );
        assert_eq!(
            owners[name],
            jobs_of(team),
            "{team}'s Secret is owned by its Jobs"
        );
    }
    // Collected with the last Job that owned it: nothing of ours is left.
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());
    drop(bed.node);
    Ok(())
}

/// How long the surviving build's containers wait before they start (its Pod has mounted the
/// Secret by then): long enough for the other build to be cancelled and gone meanwhile. Only an
/// ordering aid; nothing asserts on time.
const SURVIVOR_HOLD: Duration = Duration::from_secs(15);

/// Two builds with the same credentials, through two runners, share one Secret owned by both
/// Jobs. One is cancelled (its Job deleted, Foreground, waited for) while the other's Pod, which
/// mounted the Secret, waits to run: the Secret stays, the garbage collector drops only the
/// cancelled Job from its owners, the survivor succeeds, and the Secret is deleted only after
/// both Jobs are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_leaves_the_secret_to_the_build_that_still_mounts_it() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    let admin = bed.cluster.admin_client();
    let ns = "survive";
    let secrets = History::<Secret>::start(&admin, ns).await?;
    let jobs = History::<Job>::start(&admin, ns).await?;
    let (survivor_tool, cancelled_tool) = (Tool::new(&admin, &bed.token)?, Tool::new(&admin, &bed.token)?);
    let (_survivor_dir, survivor) = build(&bed.token, ns, "team/survivor:v1")?;
    let (_cancelled_dir, cancelled) = build(&bed.token, ns, "team/cancelled:v1")?;
    bed.node
        .inject(
            Fault::SlowStart(SURVIVOR_HOLD),
            Target::label("job-name", survivor.job_name()),
        )
        .await?;
    // The cancelled build never gets to run.
    bed.node
        .inject(
            Fault::SlowStart(Duration::from_secs(600)),
            Target::label("job-name", cancelled.job_name()),
        )
        .await?;

    let (survivor_rec, cancelled_rec) = (Recorder::default(), Recorder::default());
    let (cancel, never) = (CancellationToken::new(), CancellationToken::new());
    let scheduled = |e: &BuildEvent| matches!(e, BuildEvent::Scheduled { .. });
    let (survived, was_cancelled, ()) = tokio::join!(
        survivor_tool.run(&survivor, &survivor_rec, &never),
        async {
            survivor_rec.wait_for("survivor scheduled", scheduled).await;
            cancelled_tool.run(&cancelled, &cancelled_rec, &cancel).await
        },
        async {
            survivor_rec.wait_for("survivor scheduled", scheduled).await;
            cancelled_rec.wait_for("cancelled scheduled", scheduled).await;
            // Each run makes its Job an owner of the Secret before following it.
            let names: BTreeSet<String> = secrets.seen().iter().map(|(_, s)| s.name_any()).collect();
            assert_eq!(names.len(), 1, "the same credentials share one Secret: {names:?}");
            let name = names.into_iter().next().expect("one");
            let secret = Api::<Secret>::namespaced(admin.clone(), ns)
                .get(&name)
                .await
                .expect("secret");
            assert_eq!(
                owner_jobs(&secret),
                BTreeSet::from([survivor.job_name(), cancelled.job_name()]),
                "owned by both Jobs"
            );
            cancel.cancel();
        }
    );
    let err = was_cancelled.expect_err("cancelled");
    assert!(err.is_cancelled(), "{err}");

    let name = secrets.seen()[0].1.name_any();
    assert!(name.starts_with("kb-docker-config-"), "{name}");
    // The survivor's Job is still there (its containers wait): so is the Secret.
    if Api::<Job>::namespaced(admin.clone(), ns)
        .get_opt(&survivor.job_name())
        .await?
        .is_some()
    {
        let secret = Api::<Secret>::namespaced(admin.clone(), ns)
            .get_opt(&name)
            .await?;
        assert!(secret.is_some(), "the cancel took the survivor's Secret");
    } else {
        tracing::warn!("the survivor finished before the cancel did: only the ordering below is checked");
    }
    // The cancelled Job is gone (the run waited for it); the garbage collector looked at the
    // Secret and kept it for the survivor, dropping only the dangling owner.
    assert!(
        jobs.deleted_at(&cancelled.job_name()).is_some(),
        "the cancelled Job is gone"
    );
    secrets
        .wait_for("the Secret owned by the survivor alone", |seen| {
            seen.iter()
                .any(|(deleted, s)| !deleted && owner_jobs(s) == BTreeSet::from([survivor.job_name()]))
        })
        .await;

    match &survived {
        Ok(BuildOutcome::Built { digest, .. }) => {
            let held = survivor_tool.client.probe(survivor.image()).await?;
            assert_eq!(held.manifest().map(|m| &m.digest), Some(digest));
        }
        other => panic!("the survivor should build: {other:?}"),
    }
    // Gone with the survivor's Job, and not before it: the deletion came after both Jobs'.
    secrets
        .wait_for("the Secret deleted", |seen| {
            seen.iter().any(|(deleted, s)| *deleted && s.name_any() == name)
        })
        .await;
    let secret_deleted = secrets.deleted_at(&name).expect("deleted");
    for job in [&survivor, &cancelled] {
        let job_deleted = jobs
            .deleted_at(&job.job_name())
            .unwrap_or_else(|| panic!("{} not deleted: {:#?}", job.job_name(), jobs.seen()));
        assert!(
            job_deleted < secret_deleted,
            "the Secret (deleted at resourceVersion {secret_deleted}) outlived Job {} (deleted at {job_deleted})",
            job.job_name()
        );
    }
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());
    drop(bed.node);
    Ok(())
}

/// An orchestrator whose Role predates per-credentials Secrets (an administrator applied the Role
/// of a Secret shared by name: `patch` on that one name only) cannot add its Job to a Secret's
/// owners: the build fails naming the Secret and the 403, and its Job, which could never start
/// without its Secret, is deleted rather than left waiting for its deadline. No node needed.
#[tokio::test]
async fn a_job_whose_secret_cannot_be_made_is_deleted() -> anyhow::Result<()> {
    use kaniko_builder_core::flow::{BuildExecutor as _, FailureReason};
    use kaniko_builder_k8s::apply::{self, ApplyParams};
    use kaniko_builder_k8s::manifest::{DEFAULT_ORCHESTRATOR_SERVICE_ACCOUNT, JobOptions};
    use kaniko_builder_k8s::runner::Setup;

    const DOCKER_CONFIG: &str = r#"{"auths":{"registry.local:5000":{"auth":"dXNlcjpwYXNz"}}}"#;
    kaniko_builder_testkit::init_tracing();
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_client();
    let ns = "oldrole";
    let cfg = config("registry.local:5000/team/app:v1", ns);
    let named = JobOptions::default().secret_name("docker-config-secret");
    let manifests = kaniko_builder_k8s::render(&cfg, &named, Some(DOCKER_CONFIG.as_bytes()))?;
    apply::apply_setup(&admin, &manifests, &ApplyParams::default()).await?;
    let orchestrator = cluster
        .client_for_service_account(ns, DEFAULT_ORCHESTRATOR_SERVICE_ACCOUNT)
        .await?;
    // RBAC reads bindings from a cache: wait until the grant is visible.
    let deadline = tokio::time::Instant::now() + WAIT;
    while Api::<Job>::namespaced(orchestrator.clone(), ns)
        .list(&Default::default())
        .await
        .is_err()
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the Role never took effect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let runner = KubeRunner::builder(orchestrator)
        .docker_config_json(DOCKER_CONFIG)
        .setup(Setup::Never)
        .unschedulable_timeout(None)
        .build();
    let rec = Recorder::default();
    let err = runner
        .execute(&plan(&cfg), &rec.sink(), CancellationToken::new())
        .await
        .expect_err("no permission to own the Secret");
    assert!(
        matches!(err.reason(), FailureReason::Cluster { action, status: Some(403), .. }
            if action.contains("secret/oldrole/kb-docker-config-")),
        "{err}"
    );
    assert!(
        rec.events()
            .iter()
            .any(|e| matches!(e, BuildEvent::Queued { .. })),
        "the Job was created: {:?}",
        rec.steps()
    );
    assert_eq!(err.kept(), [], "nothing kept");
    assert_eq!(
        leftovers(&admin, ns).await?,
        Vec::<String>::new(),
        "the Job is gone"
    );
    Ok(())
}

/// The garbage collector's race on a shared Secret: its last other owner goes just as a new
/// Job adds itself, and a collector that deletes with a uid precondition only (1.20's) deletes
/// it anyway, under the new Job. That race cannot be made to happen on demand, so the test
/// does what the collector would: it deletes the Secret once the new Job owns it and before
/// the node mounts it (the node holds the mount). The kubelet's `FailedMount` Event must make
/// the run create the Secret again, and the build must succeed; nothing is left afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_collected_under_a_new_job_is_made_again() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    let admin = bed.cluster.admin_client();
    let ns = "collected";
    let tool = Tool::new(&admin, &bed.token)?;
    let (_dir, cfg) = build(&bed.token, ns, "team/collected:v1")?;
    let job_name = cfg.job_name();
    bed.node
        .inject(
            Fault::SlowMount(Duration::from_secs(4)),
            Target::label("job-name", job_name.clone()),
        )
        .await?;
    let rec = Recorder::default();
    let cancel = CancellationToken::new();
    let run = tokio::time::timeout(WAIT, tool.run(&cfg, &rec, &cancel));
    let collect = async {
        let jobs: Api<Job> = Api::namespaced(admin.clone(), ns);
        let job = tokio::time::timeout(
            WAIT,
            kube::runtime::wait::await_condition(jobs, &job_name, |j: Option<&Job>| j.is_some()),
        )
        .await??
        .ok_or_else(|| anyhow::anyhow!("Job {job_name} vanished"))?;
        let uid = job.uid().unwrap_or_default();
        let secret = job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.volumes.as_ref())
            .and_then(|vs| vs.iter().find_map(|v| v.secret.as_ref()?.secret_name.clone()))
            .ok_or_else(|| anyhow::anyhow!("Job {job_name} mounts no Secret"))?;
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
        tokio::time::timeout(
            WAIT,
            kube::runtime::wait::await_condition(secrets.clone(), &secret, move |s: Option<&Secret>| {
                s.is_some_and(|s| s.owner_references().iter().any(|o| o.uid == uid))
            }),
        )
        .await??;
        secrets.delete(&secret, &Default::default()).await?;
        anyhow::Ok(secret)
    };
    let (result, collected) = tokio::join!(run, collect);
    let secret = collected?;
    let outcome = result.map_err(|_| anyhow::anyhow!("the build hung without its Secret {secret}"))?;
    assert!(
        matches!(outcome, Ok(BuildOutcome::Built { .. })),
        "{outcome:?}\n{:#?}",
        rec.steps()
    );
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());
    Ok(())
}
