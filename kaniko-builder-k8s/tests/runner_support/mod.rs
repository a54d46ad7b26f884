//! Shared by the runner's end-to-end tests: configurations, event recording, playing the kubelet
//! by patching Pod status (for tests without a node), and listing what is left.
#![allow(dead_code, unreachable_pub)] // each test binary uses part of this module

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kaniko_builder_core::flow::{BuildEvent, BuildPlan, BuildReason, EventSink, ObjectRef};
use kaniko_builder_core::{BuildConfig, ImageRef};
use kube::ResourceExt as _;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use serde_json::json;

/// Safety net for every wait; nothing asserts on timing.
pub const WAIT: Duration = Duration::from_secs(90);
/// Label every object of ours carries.
pub const OURS: &str = "app.kubernetes.io/managed-by=kaniko-builder";
pub const DIGEST: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

pub fn config(image: &str, namespace: &str) -> BuildConfig {
    BuildConfig::builder(image.parse::<ImageRef>().expect("image"))
        .namespace(namespace)
        .build()
        .expect("config")
}

pub fn plan(config: &BuildConfig) -> BuildPlan {
    BuildPlan::new(config.clone(), BuildReason::Absent, None)
}

/// A sink that records every event.
#[derive(Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<BuildEvent>>>,
    notify: Arc<tokio::sync::Notify>,
}

impl Recorder {
    pub fn sink(&self) -> EventSink {
        let me = self.clone();
        EventSink::from_fn(move |e| {
            me.events.lock().expect("lock").push(e);
            me.notify.notify_waiters();
        })
    }

    pub fn events(&self) -> Vec<BuildEvent> {
        self.events.lock().expect("lock").clone()
    }

    pub fn steps(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| !e.is_log())
            .map(|e| {
                serde_json::to_value(e).expect("json")["event"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    pub fn logs(&self, container: &str) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                BuildEvent::Log { container: c, line } if c == container => Some(line),
                _ => None,
            })
            .collect()
    }

    /// Waits until an event matches.
    pub async fn wait_for(&self, what: &str, f: impl Fn(&BuildEvent) -> bool) {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let notified = self.notify.notified();
                if self.events().iter().any(&f) {
                    return;
                }
                notified.await;
            }
        })
        .await;
        assert!(found.is_ok(), "no {what} event: {:?}", self.steps());
    }
}

/// The first Pod of `job` (watched, not polled).
pub async fn pod_of(client: &kube::Client, ns: &str, job: &str) -> anyhow::Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let stream = watcher(
        pods,
        watcher::Config::default().labels(&format!("job-name={job}")),
    )
    .applied_objects();
    let pod = tokio::time::timeout(WAIT, std::pin::pin!(stream).try_next())
        .await
        .context("no pod")??
        .context("watch ended")?;
    Ok(pod)
}

fn container(name: &str, state: &serde_json::Value) -> serde_json::Value {
    json!({ "name": name, "image": "stand-in", "imageID": "", "ready": false, "restartCount": 0, "state": state })
}

fn terminated(code: i32, reason: &str, message: &str) -> serde_json::Value {
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    json!({ "terminated": { "exitCode": code, "reason": reason, "message": message, "startedAt": now, "finishedAt": now } })
}

/// Plays the kubelet: `init` and `main` are `(exit code, reason, termination message)`; `None`
/// leaves the main container out (an init failure).
pub async fn finish_pod(
    client: &kube::Client,
    pod: &Pod,
    init: (i32, &str, &str),
    main: Option<(i32, &str, &str)>,
) -> anyhow::Result<()> {
    let ns = pod.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let failed = init.0 != 0 || main.is_some_and(|m| m.0 != 0);
    let mut status = json!({
        "phase": if failed { "Failed" } else { "Succeeded" },
        "initContainerStatuses": [container("kaniko-init", &terminated(init.0, init.1, init.2))],
    });
    if let Some(m) = main {
        status["containerStatuses"] = json!([container("image-builder", &terminated(m.0, m.1, m.2))]);
    }
    pods.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await?;
    Ok(())
}

pub const BUILD_ABSENT: &str = r#"{"decision":"build","reason":"absent"}"#;

/// Names of our objects of kind `K` in `ns`.
pub async fn ours<K>(client: &kube::Client, ns: &str) -> anyhow::Result<Vec<String>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default().labels(OURS)).await?;
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect();
    names.sort();
    Ok(names)
}

/// Everything of ours in `ns`, as sorted `kind/name` (Jobs, Pods, ConfigMaps, Secrets).
pub async fn leftovers(client: &kube::Client, ns: &str) -> anyhow::Result<Vec<String>> {
    let mut all = Vec::new();
    all.extend(
        ours::<Job>(client, ns)
            .await?
            .into_iter()
            .map(|n| format!("job/{n}")),
    );
    all.extend(
        ours::<Pod>(client, ns)
            .await?
            .into_iter()
            .map(|n| format!("pod/{n}")),
    );
    all.extend(
        ours::<ConfigMap>(client, ns)
            .await?
            .into_iter()
            .map(|n| format!("configmap/{n}")),
    );
    all.extend(
        ours::<Secret>(client, ns)
            .await?
            .into_iter()
            .map(|n| format!("secret/{n}")),
    );
    all.sort();
    Ok(all)
}

/// [`leftovers`] once it equals `expected`: Pods removed by the garbage collector after a
/// background delete may take a moment, so the list is taken again until it matches or
/// [`WAIT`] passes (then the last list is returned, for the assertion to show).
pub async fn leftovers_settled(
    client: &kube::Client,
    ns: &str,
    expected: &[&str],
) -> anyhow::Result<Vec<String>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = leftovers(client, ns).await?;
        if all == expected || tokio::time::Instant::now() > deadline {
            return Ok(all);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `kept` as `kind/name`, sorted.
pub fn kept_names(kept: &[ObjectRef]) -> Vec<String> {
    let mut v: Vec<String> = kept
        .iter()
        .map(|o| format!("{}/{}", o.kind.to_lowercase(), o.name))
        .collect();
    v.sort();
    v
}

/// Collects the names of every Job created in `ns` while the returned task runs.
pub fn record_jobs(
    client: &kube::Client,
    ns: &str,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let out = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(jobs, watcher::Config::default()).applied_objects());
        while let Some(Ok(job)) = stream.next().await {
            let uid = job.uid().unwrap_or_default();
            let mut seen = out.lock().expect("lock");
            if !seen.contains(&uid) {
                seen.push(uid);
            }
        }
    });
    (task, seen)
}

/// A client built by [`kaniko_builder_k8s::client::client`] (the `ring` provider passed
/// explicitly) from the cluster's kubeconfig file.
pub async fn provider_independent_client(
    cluster: &kaniko_builder_testkit::TestCluster,
) -> anyhow::Result<kube::Client> {
    let file = kube::config::Kubeconfig::read_from(cluster.kubeconfig_path())?;
    let mut config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
    config.proxy_url = None;
    Ok(kaniko_builder_k8s::client::client(config)?)
}

/// A registry client for the anonymous, plain-HTTP test registry.
pub fn anonymous_client(
    registry: &kaniko_builder_testkit::TestRegistry,
) -> anyhow::Result<kaniko_builder_registry::RegistryClient> {
    use kaniko_builder_registry::{DockerConfig, RegistryClient, RegistrySettings};
    Ok(RegistryClient::builder()
        .docker_config(DockerConfig::anonymous())
        .registry(registry.host(), RegistrySettings::default().plain_http(true))
        .build()?)
}

/// `cfg` as the runner names its Job: a local directory's files hashed into it.
pub fn pinned(cfg: &BuildConfig) -> BuildConfig {
    match cfg.context() {
        kaniko_builder_core::config::ContextSource::LocalDir(dir) => {
            let options = kaniko_builder_k8s::context::PackOptions::default();
            let hashed =
                kaniko_builder_k8s::context::hash(dir, cfg.dockerfile(), &options).expect("hash the context");
            cfg.clone().with_context_digest(hashed.diff_id)
        }
        _ => cfg.clone(),
    }
}
