//! Shared by the controller's end-to-end tests (and its benchmark): a real cluster, registry and
//! stand-in node with the controller installed ([`Bed`]), the controller binary as a child
//! process ([`Controller`]), ImageBuilds with blob contexts, waits that fail with the objects'
//! state, and a watch that counts build Jobs ([`JobWatch`]).
#![allow(dead_code, unreachable_pub, clippy::print_stderr)] // each test binary uses part of this

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kaniko_builder::ImageRef;
use kaniko_builder::context::{PackOptions, pack};
use kaniko_builder::registry::{DockerConfig, RegistryClient, RegistrySettings};
use kaniko_builder_controller::crd::ImageBuild;
use kaniko_builder_controller::install;
use kaniko_builder_testkit::node::{Fault, NodeOptions, StandInNode, Target};
use kaniko_builder_testkit::{LoggedProcess, PROXY_VARS, RegistryAuth, TestCluster, TestRegistry};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::runtime::watcher;
use kube::{Resource as _, ResourceExt as _};
use serde_json::{Value, json};

/// Safety net for every wait; nothing asserts on timing.
pub const WAIT: Duration = Duration::from_secs(120);
/// The Secret every test namespace holds, the controller's default.
pub const SECRET: &str = "docker-config-secret";
/// Every context's Dockerfile; `app.txt` makes each image's content.
pub const DOCKERFILE: &str = "FROM scratch\nCOPY app.txt /app.txt\n";
/// The field manager of the tests' writes.
pub const MANAGER: &str = "kb-controller-tests";
/// Where the controller is installed, and where its replicas hold their Lease.
pub const SYSTEM_NAMESPACE: &str = "kaniko-builder-system";
/// How long a replica's Lease lasts in the tests.
pub const LEASE_SECONDS: u64 = 5;

/// A cluster, a TLS registry with Basic auth, a stand-in node and the CRD; fields drop in
/// order (the node before the cluster).
pub struct Bed {
    pub node: StandInNode,
    pub registry: TestRegistry,
    pub cluster: TestCluster,
    pub registry_client: RegistryClient,
    /// The kubeconfig the controller runs with.
    kubeconfig: PathBuf,
    ca_file: PathBuf,
    /// Controller logs, kubeconfig, CA file; removed last.
    pub dir: tempfile::TempDir,
}

impl Bed {
    /// Starts everything and installs the controller's CRD and RBAC (not its Deployment).
    pub async fn start() -> anyhow::Result<Bed> {
        // Boxed: starting a cluster, a registry and a node is a large future.
        Box::pin(Self::start_unboxed()).await
    }

    async fn start_unboxed() -> anyhow::Result<Bed> {
        kaniko_builder_testkit::init_tracing();
        let (cluster, registry) =
            tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Basic))?;
        let node = StandInNode::start(&cluster, NodeOptions::default().registry(&registry)).await?;
        let ca = registry.ca_pem().context("a Basic registry serves TLS")?;
        let registry_client = RegistryClient::builder()
            .docker_config(DockerConfig::from_json(&registry.docker_config_json())?)
            .registry(registry.host(), RegistrySettings::default().ca_pem(ca.clone()))
            .build()?;
        let dir = tempfile::Builder::new().prefix("kb-controller-").tempdir()?;
        let ca_file = dir.path().join("registry-ca.pem");
        std::fs::write(&ca_file, ca)?;
        let kubeconfig = install(&cluster, dir.path()).await?;
        Ok(Bed {
            node,
            registry,
            cluster,
            registry_client,
            kubeconfig,
            ca_file,
            dir,
        })
    }

    /// A client with the cluster's admin rights (the tests', never the controller's).
    pub fn admin(&self) -> kube::Client {
        self.cluster.admin_client()
    }

    /// Creates namespace `ns` with the registry's credentials in [`SECRET`].
    pub async fn namespace(&self, ns: &str) -> anyhow::Result<()> {
        self.cluster.create_namespace(ns).await?;
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": SECRET, "namespace": ns },
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": { ".dockerconfigjson": self.registry.docker_config_json() },
        }))?;
        Api::<Secret>::namespaced(self.admin(), ns)
            .create(&PostParams::default(), &secret)
            .await
            .with_context(|| format!("create Secret {ns}/{SECRET}"))?;
        Ok(())
    }

    /// `repo_tag` (`team/app:v1`) in the test registry.
    pub fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.registry.host())
    }

    /// Packs a context ([`DOCKERFILE`], `app.txt` holding `content`) and pushes it as a blob of
    /// `image`'s repository; returns its digest.
    pub async fn push_context(&self, image: &str, content: &str) -> anyhow::Result<String> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("Dockerfile"), DOCKERFILE)?;
        std::fs::write(dir.path().join("app.txt"), format!("{content}\n"))?;
        let packed = pack(dir.path(), "Dockerfile", &PackOptions::default())?;
        let image: ImageRef = image.parse()?;
        let digest = self
            .registry_client
            .push_blob(&image, packed.data)
            .await
            .with_context(|| format!("push the context of {image}"))?;
        Ok(digest.to_string())
    }

    /// The digest `image` has in the registry, if any.
    pub async fn registry_digest(&self, image: &str) -> anyhow::Result<Option<String>> {
        let probe = self.registry_client.probe(&image.parse::<ImageRef>()?).await?;
        Ok(probe.manifest().map(|m| m.digest.to_string()))
    }

    /// Starts the controller binary as `name` with `args` after `run` and the registry's CA.
    pub fn controller(&self, name: &str, args: &[String]) -> anyhow::Result<Controller> {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kaniko-builder-controller"));
        command
            .arg("run")
            .arg("--registry-ca")
            .arg(format!("{}={}", self.registry.host(), self.ca_file.display()))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            // Plain text in the log file.
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("KB_CONTROLLER_LOG")
                    .unwrap_or_else(|_| "info,kaniko_builder_controller=debug,kube=warn".to_owned()),
            );
        // No election, no namespace, no proxy unless a test asks.
        for var in ["POD_NAMESPACE", "POD_NAME", "KB_WATCH_NAMESPACE"]
            .into_iter()
            .chain(PROXY_VARS)
        {
            command.env_remove(var).env_remove(var.to_ascii_lowercase());
        }
        let log = self.dir.path().join(format!("controller-{name}.log"));
        Ok(Controller {
            process: LoggedProcess::spawn(&format!("controller-{name}"), command, &log)?,
            done: false,
        })
    }

    /// Server-side applies an ImageBuild `name` in `ns` with `spec` (as `kubectl apply` would).
    pub async fn apply(&self, ns: &str, name: &str, spec: Value) -> anyhow::Result<ImageBuild> {
        let object = json!({
            "apiVersion": "kaniko-builder.io/v1alpha1",
            "kind": "ImageBuild",
            "metadata": { "name": name },
            "spec": spec,
        });
        builds(&self.admin(), ns)
            .patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&object))
            .await
            .with_context(|| format!("apply ImageBuild {ns}/{name}"))
    }

    /// Pushes a context holding `content` for `repo_tag` and applies an ImageBuild of it.
    pub async fn build(
        &self,
        ns: &str,
        name: &str,
        repo_tag: &str,
        content: &str,
    ) -> anyhow::Result<ImageBuild> {
        let image = self.image(repo_tag);
        let digest = self.push_context(&image, content).await?;
        self.apply(ns, name, blob_spec(&image, &digest)).await
    }

    /// Deletes ImageBuild `ns/name` (the finalizer decides when it is gone).
    pub async fn delete(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        builds(&self.admin(), ns)
            .delete(name, &DeleteParams::default())
            .await
            .with_context(|| format!("delete ImageBuild {ns}/{name}"))?;
        Ok(())
    }

    /// Waits until `ready` holds for ImageBuild `ns/name`; on timeout, fails with the
    /// namespace's state.
    pub async fn wait_build(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        ready: impl Fn(&ImageBuild) -> bool,
    ) -> anyhow::Result<ImageBuild> {
        let found = await_condition(builds(&self.admin(), ns), name, move |b: Option<&ImageBuild>| {
            b.is_some_and(&ready)
        });
        match tokio::time::timeout(WAIT, found).await {
            Ok(Ok(Some(build))) => Ok(build),
            Ok(Ok(None)) => anyhow::bail!("ImageBuild {ns}/{name} vanished waiting for {what}"),
            Ok(Err(e)) => Err(e).context(format!("watch ImageBuild {ns}/{name}")),
            Err(_) => anyhow::bail!(
                "no {what} for ImageBuild {ns}/{name} within {WAIT:?}\n{}",
                self.dump(ns).await
            ),
        }
    }

    /// Waits until ImageBuild `ns/name` references a Job (its build created or attached to one).
    pub async fn wait_job_ref(&self, ns: &str, name: &str) -> anyhow::Result<ImageBuild> {
        self.wait_build(ns, name, "a Job reference", |b| {
            b.status.as_ref().is_some_and(|s| s.job_ref.is_some())
        })
        .await
    }

    /// Holds the next Pod whose name starts with `prefix` (a Job's Pods are `<job>-<suffix>`)
    /// for `hold` before its containers start.
    pub async fn hold_pod(&self, prefix: &str, hold: Duration) -> anyhow::Result<()> {
        self.node
            .inject(Fault::SlowStart(hold), Target::NamePrefix(prefix.to_owned()))
            .await
    }

    /// Waits until ImageBuild `ns/name` is done with its current generation.
    pub async fn wait_done(&self, ns: &str, name: &str) -> anyhow::Result<ImageBuild> {
        self.wait_build(ns, name, "final status for its generation", |b| {
            b.status
                .as_ref()
                .is_some_and(|s| s.is_done_for(b.metadata.generation))
        })
        .await
    }

    /// Waits until ImageBuild `ns/name` no longer exists.
    pub async fn wait_gone(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        let gone = await_condition(builds(&self.admin(), ns), name, |b: Option<&ImageBuild>| {
            b.is_none()
        });
        match tokio::time::timeout(WAIT, gone).await {
            Ok(result) => result.map(drop).context(format!("watch ImageBuild {ns}/{name}")),
            Err(_) => anyhow::bail!(
                "ImageBuild {ns}/{name} still exists after {WAIT:?}\n{}",
                self.dump(ns).await
            ),
        }
    }

    /// Waits until `ready` holds for the list of `K` in `ns`, polling.
    pub async fn wait_list<K>(
        &self,
        ns: &str,
        what: &str,
        ready: impl Fn(&[K]) -> bool,
    ) -> anyhow::Result<Vec<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.admin(), ns);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let items = api.list(&ListParams::default()).await?.items;
            if ready(&items) {
                return Ok(items);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("waited {WAIT:?} in {ns} for {what}\n{}", self.dump(ns).await);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The `reason: note` of the Events regarding `build`, oldest first.
    pub async fn events(&self, build: &ImageBuild) -> anyhow::Result<Vec<String>> {
        Ok(self
            .event_objects(build)
            .await?
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.as_deref().unwrap_or("?"),
                    e.note.as_deref().unwrap_or("")
                )
            })
            .collect())
    }

    /// The `reportingInstance`s of the Events regarding `build` (with leader election, the
    /// replicas' identities).
    pub async fn event_reporters(&self, build: &ImageBuild) -> anyhow::Result<BTreeSet<String>> {
        Ok(self
            .event_objects(build)
            .await?
            .into_iter()
            .map(|e| e.reporting_instance.unwrap_or_default())
            .collect())
    }

    /// The Events regarding `build`, oldest first.
    pub async fn event_objects(&self, build: &ImageBuild) -> anyhow::Result<Vec<Event>> {
        let ns = build.namespace().unwrap_or_default();
        let mut events: Vec<Event> = Api::namespaced(self.admin(), &ns)
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e: &Event| e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == build.uid().as_deref())
            .collect();
        events.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        Ok(events)
    }

    /// Fails with `what` and the state of `ns` unless `ok`.
    pub async fn ensure(&self, ns: &str, ok: bool, what: impl std::fmt::Display) -> anyhow::Result<()> {
        if ok {
            return Ok(());
        }
        anyhow::bail!("{what}\n{}", self.dump(ns).await)
    }

    /// Waits until some Events regard `build`; returns them (see [`Self::events`]).
    pub async fn wait_events(&self, build: &ImageBuild) -> anyhow::Result<Vec<String>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let events = self.events(build).await?;
            if !events.is_empty() {
                return Ok(events);
            }
            let ns = build.namespace().unwrap_or_default();
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "no Event regards ImageBuild {ns}/{}\n{}",
                    build.name_any(),
                    self.dump(&ns).await
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until Lease `ns/name` is held by one of `identities`; returns the holder.
    pub async fn wait_lease_holder(
        &self,
        ns: &str,
        name: &str,
        identities: &[&str],
    ) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let holder = self.lease_holder(ns, name).await?;
            if let Some(h) = holder.as_deref().filter(|h| identities.contains(h)) {
                return Ok(h.to_owned());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "Lease {ns}/{name} held by {holder:?}, not one of {identities:?}, after {WAIT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The holder of Lease `ns/name`, if any.
    pub async fn lease_holder(&self, ns: &str, name: &str) -> anyhow::Result<Option<String>> {
        let lease = Api::<Lease>::namespaced(self.admin(), ns).get_opt(name).await?;
        Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
    }

    /// What a failing test shows: the ImageBuilds, Jobs, Pods and Events of `ns`.
    pub async fn dump(&self, ns: &str) -> String {
        match dump(&self.admin(), ns).await {
            Ok(text) => text,
            Err(e) => format!("(cannot list the state of {ns}: {e:#})"),
        }
    }
}

/// The spec of an ImageBuild of `image` from the context blob `digest`.
pub fn blob_spec(image: &str, digest: &str) -> Value {
    json!({ "image": image, "context": { "blob": { "digest": digest } } })
}

/// The ImageBuilds of `ns`.
pub fn builds(client: &kube::Client, ns: &str) -> Api<ImageBuild> {
    Api::namespaced(client.clone(), ns)
}

/// The `Succeeded` condition's status and reason, `("", "")` without one.
pub fn succeeded(build: &ImageBuild) -> (String, String) {
    build
        .status
        .as_ref()
        .and_then(|s| s.condition("Succeeded"))
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

/// The arguments that make a replica elect a leader as `identity` in [`SYSTEM_NAMESPACE`].
pub fn lease_args(identity: &str) -> Vec<String> {
    [
        "--lease-namespace",
        SYSTEM_NAMESPACE,
        "--identity",
        identity,
        "--lease-duration",
        &LEASE_SECONDS.to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Installs the controller's CRD and RBAC (not its Deployment) as `install` renders them by
/// default, and returns a kubeconfig (in `dir`) with the token of its ServiceAccount: the
/// controller runs with exactly the rights it is installed with.
async fn install(cluster: &TestCluster, dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let manifests = install::manifests(&install::InstallOptions::default())?;
    install::apply_rbac_and_crd(&cluster.admin_client(), &manifests)
        .await
        .context("install the CRD and RBAC")?;
    let account = &manifests.service_account;
    let token = cluster
        .service_account_token(
            account.metadata.namespace.as_deref().unwrap_or(SYSTEM_NAMESPACE),
            &account.name_any(),
        )
        .await?;
    let kubeconfig = dir.join("controller.kubeconfig");
    cluster.write_token_kubeconfig(&kubeconfig, &token)?;
    Ok(kubeconfig)
}

async fn dump(client: &kube::Client, ns: &str) -> anyhow::Result<String> {
    let mut out = format!("--- state of namespace {ns} ---\n");
    for b in builds(client, ns).list(&ListParams::default()).await? {
        let status = serde_json::to_string(&b.status)?;
        let _ = writeln!(
            out,
            "ImageBuild {} generation={:?} finalizers={:?} deleting={} status={status}",
            b.name_any(),
            b.metadata.generation,
            b.finalizers(),
            b.meta().deletion_timestamp.is_some()
        );
    }
    for j in Api::<Job>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
    {
        let s = j.status.clone().unwrap_or_default();
        let conditions: Vec<String> = s
            .conditions
            .unwrap_or_default()
            .iter()
            .map(|c| format!("{}={}", c.type_, c.status))
            .collect();
        let _ = writeln!(
            out,
            "Job {} active={:?} succeeded={:?} failed={:?} conditions={conditions:?} deleting={}",
            j.name_any(),
            s.active,
            s.succeeded,
            s.failed,
            j.metadata.deletion_timestamp.is_some()
        );
    }
    for p in Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
    {
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        let _ = writeln!(out, "Pod {} phase={phase:?}", p.name_any());
    }
    for e in Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
    {
        let regarding = e
            .regarding
            .as_ref()
            .and_then(|r| r.name.clone())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "Event {regarding}: {} {}",
            e.reason.as_deref().unwrap_or("?"),
            e.note.as_deref().unwrap_or("")
        );
    }
    Ok(out)
}

/// The controller binary, running. Stop it with [`Controller::stop`] (SIGTERM, must exit 0) or
/// [`Controller::kill`] (SIGKILL); dropped otherwise (a failing test), it is killed and its log's
/// tail printed.
pub struct Controller {
    process: LoggedProcess,
    done: bool,
}

impl Drop for Controller {
    fn drop(&mut self) {
        if !self.done {
            eprintln!(
                "--- {} (pid {}), last lines of {} ---\n{}\n---",
                self.process.name(),
                self.process.pid(),
                self.process.log_path().display(),
                self.process.log_tail(80)
            );
        }
    }
}

impl Controller {
    /// Its log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.process.exit_status(), Ok(None))
    }

    /// Stops it gracefully (SIGTERM): it must exit with status 0 within 30 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let status = self.process.terminate(Duration::from_secs(30)).await?;
        anyhow::ensure!(
            status.success(),
            "{} exited with {status} after SIGTERM",
            self.process.name()
        );
        self.done = true;
        Ok(())
    }

    /// Kills it (SIGKILL), as a crash or a lost node would.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.process.kill()?;
        self.done = true;
        Ok(())
    }
}

/// What [`JobWatch`] saw of the Jobs of a namespace.
#[derive(Debug, Clone, Default)]
pub struct JobTally {
    /// Every Job seen, by name, in the order they appeared (one entry per uid).
    pub created: Vec<String>,
    seen: BTreeSet<String>,
    unfinished: BTreeSet<String>,
    /// The most Jobs unfinished (neither complete, failed nor deleted) at one time.
    pub max_unfinished: usize,
}

impl JobTally {
    fn saw(&mut self, job: &Job, deleted: bool) {
        let uid = job.uid().unwrap_or_default();
        if self.seen.insert(uid.clone()) {
            self.created.push(job.name_any());
        }
        let finished = deleted
            || job.metadata.deletion_timestamp.is_some()
            || job
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
                });
        if finished {
            self.unfinished.remove(&uid);
        } else {
            self.unfinished.insert(uid);
            self.max_unfinished = self.max_unfinished.max(self.unfinished.len());
        }
    }
}

/// Watches the Jobs of a namespace from before a test creates anything: every Job created and
/// the most unfinished at once. Stops on drop.
pub struct JobWatch {
    tally: Arc<Mutex<JobTally>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JobWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JobWatch {
    /// Starts watching the Jobs of `ns` and returns once the watch has listed them.
    pub async fn start(client: &kube::Client, ns: &str) -> anyhow::Result<JobWatch> {
        let tally = Arc::new(Mutex::new(JobTally::default()));
        let (listed, is_listed) = tokio::sync::oneshot::channel();
        let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
        let out = Arc::clone(&tally);
        let task = tokio::spawn(async move {
            let mut listed = Some(listed);
            let mut events = std::pin::pin!(watcher(jobs, watcher::Config::default()));
            while let Some(event) = events.next().await {
                let mut tally = out.lock().expect("tally");
                match event {
                    Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => tally.saw(&job, false),
                    Ok(watcher::Event::Delete(job)) => tally.saw(&job, true),
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = listed.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(watcher::Event::Init) => {}
                    Err(e) => tracing::warn!(error = %e, "Job watch"),
                }
            }
        });
        tokio::time::timeout(WAIT, is_listed)
            .await
            .context("the Job watch did not list")?
            .context("the Job watch ended")?;
        Ok(JobWatch { tally, task })
    }

    /// What it saw so far.
    pub fn tally(&self) -> JobTally {
        self.tally.lock().expect("tally").clone()
    }

    /// The names of the Jobs it saw.
    pub fn created(&self) -> Vec<String> {
        self.tally().created
    }
}
