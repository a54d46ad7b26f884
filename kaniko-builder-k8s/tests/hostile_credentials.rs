//! Credentials end to end, on full builds with a password-protected registry (real control
//! plane, stand-in node building for real), through both upload paths (registry blob and
//! `pods/exec`): no secret of the testkit's ledger (the password, `user:password` and the
//! config.json in base64, TLS keys...) appears in the TRACE-level logs of the whole run, in the
//! outcome's `Debug`, in any cluster object but the generated Secrets, in any blob in the
//! registry (image and context, gunzipped too), or in what the node holds for the Pod (the
//! context directory, logs, state) outside the Secret's own volume.

mod runner_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kaniko_builder_core::BuildConfig;
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{
    BuildEvent, BuildOutcome, CancellationToken, FlowOptions, UploadVia, run_build,
};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_k8s::manifest::JobOptions;
use kaniko_builder_k8s::runner::{CleanupPolicy, UploadMethod};
use kaniko_builder_registry::{DockerConfig, ImageRef, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::ledger::{self, Secret as Needle};
use kaniko_builder_testkit::node::{NodeOptions, StandInNode};
use kaniko_builder_testkit::scan::{Needles, leaks_in_tree};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use kube::api::{Api, ListParams};
use runner_support::*;

fn assert_clean(what: &str, haystack: &[u8], needles: &[Needle]) {
    let mut found = std::collections::BTreeSet::new();
    Needles::new(needles.iter().map(|n| n.value.as_bytes())).find_in(haystack, &mut found);
    let labels: Vec<&str> = found.iter().map(|&i| needles[i].label.as_str()).collect();
    assert!(labels.is_empty(), "secrets leaked into {what}: {labels:?}");
}

async fn list_json<K>(client: &kube::Client) -> anyhow::Result<Vec<(String, String)>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|o| {
            let id = format!(
                "{}/{}/{}",
                K::kind(&()),
                o.meta().namespace.clone().unwrap_or_default(),
                o.meta().name.clone().unwrap_or_default()
            );
            (id, serde_json::to_string(o).expect("json"))
        })
        .collect())
}

/// Scans what the node holds for `pod` (context dir, container logs, state) except the
/// Secret's volume, which must hold the credentials: the positive control of the scan.
fn assert_pod_dir_clean(node: &StandInNode, pod: &Pod, needles: &[Needle]) -> anyhow::Result<()> {
    let pod_dir = node.pod_dir(pod);
    let context = node.context_dir(pod);
    for file in ["Dockerfile", "hello.txt"] {
        assert!(context.join(file).is_file(), "{} lacks {file}", context.display());
    }
    let secret_dirs: Vec<PathBuf> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter(|v| v.secret.is_some())
        .map(|v| pod_dir.join("volumes").join(&v.name))
        .collect();
    assert_eq!(secret_dirs.len(), 1, "one Secret volume");
    let (files, leaks) = leaks_in_tree(&pod_dir, &secret_dirs, needles)?;
    assert!(files >= 4, "only {files} files under {}", pod_dir.display());
    assert!(
        leaks.is_empty(),
        "secrets on the node outside the Secret volume: {leaks:?}"
    );
    let (_, in_secret) = leaks_in_tree(&secret_dirs[0], &[], needles)?;
    assert!(
        !in_secret.is_empty(),
        "the scan finds the credentials in the Secret volume"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_live_only_in_the_generated_secret() -> anyhow::Result<()> {
    let captured = kaniko_builder_testkit::capture_trace_logs();

    let (cluster, registry) =
        tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Basic))?;
    let node = StandInNode::start(&cluster, NodeOptions::default().registry(&registry)).await?;
    let docker_config_json = registry.docker_config_json();
    let ca = registry.ca_pem().expect("a TLS registry");
    let client = RegistryClient::builder()
        .docker_config(DockerConfig::from_json(&docker_config_json)?)
        .registry(registry.host(), RegistrySettings::default().ca_pem(ca.clone()))
        .build()?;
    let admin = cluster.admin_client();
    let ctx = tempfile::tempdir()?;
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY . /ctx/\n")?;
    std::fs::write(ctx.path().join("hello.txt"), "no secrets here\n")?;

    let mut context_blobs = Vec::new();
    for (method, ns) in [
        (UploadMethod::Registry, "creds-blob"),
        (UploadMethod::Exec, "creds-exec"),
    ] {
        // Kept on success too, so the Job and Pod are there to be scanned.
        let runner = KubeRunner::builder(admin.clone())
            .docker_config_json(docker_config_json.clone())
            .blob_store(Arc::new(client.clone()))
            .upload(method)
            .job_options(JobOptions::default().exec_upload(method == UploadMethod::Exec))
            .cleanup(CleanupPolicy::default().delete_on_success(false))
            .timeout(Duration::from_secs(120))
            .build();
        let image: ImageRef = format!("{}/team/secretive:{ns}", registry.host()).parse()?;
        let cfg = BuildConfig::builder(image)
            .namespace(ns)
            .context(ContextSource::LocalDir(ctx.path().to_owned()))
            .build()?;
        let rec = Recorder::default();
        let outcome = run_build(
            &cfg,
            &client,
            &runner,
            &rec.sink(),
            &CancellationToken::new(),
            &FlowOptions::default(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{ns}: {e}"))?;
        let BuildOutcome::Built { job, .. } = &outcome else {
            panic!("{ns}: expected Built, got {outcome:?}")
        };
        let via = rec.events().into_iter().find_map(|e| match e {
            BuildEvent::ContextUploaded { via, .. } => Some(via),
            _ => None,
        });
        match (method, via) {
            (UploadMethod::Registry, Some(UploadVia::Registry { digest })) => context_blobs.push(digest),
            (UploadMethod::Exec, Some(UploadVia::Exec)) => {}
            (_, via) => panic!("{ns}: uploaded via {via:?}"),
        }
        let needles = ledger::secrets();
        assert_clean(
            &format!("{ns}: the outcome's, clients' and runner's Debug"),
            format!("{outcome:?} {client:?} {runner:?}").as_bytes(),
            &needles,
        );
        assert_clean(
            &format!("{ns}: the events"),
            serde_json::to_string(&rec.events())?.as_bytes(),
            &needles,
        );

        // What the node holds for the Pod, before the node is dropped.
        let pod = pod_of(&admin, ns, &job.name).await?;
        assert_pod_dir_clean(&node, &pod, &needles)?;
    }
    let needles = ledger::secrets();

    // Cluster objects: only the generated Secrets hold the credentials.
    let mut objects = Vec::new();
    objects.extend(list_json::<Secret>(&admin).await?);
    objects.extend(list_json::<ConfigMap>(&admin).await?);
    objects.extend(list_json::<Job>(&admin).await?);
    objects.extend(list_json::<Pod>(&admin).await?);
    assert!(
        objects
            .iter()
            .filter(|(id, _)| id.starts_with("Pod/creds-"))
            .count()
            >= 2
    );
    let mut holders = Vec::new();
    for (id, json) in &objects {
        let mut found = std::collections::BTreeSet::new();
        Needles::new(needles.iter().map(|n| n.value.as_bytes())).find_in(json.as_bytes(), &mut found);
        if !found.is_empty() {
            holders.push(id.clone());
        }
    }
    holders.sort();
    // The per-credentials Secret of each namespace, kept with its Job.
    assert_eq!(holders.len(), 2, "{holders:?}");
    for (holder, ns) in holders.iter().zip(["creds-blob", "creds-exec"]) {
        assert!(
            holder.starts_with(&format!("Secret/{ns}/kb-docker-config-")),
            "{holders:?}"
        );
    }

    // Every file of the registry's storage: both images' blobs and the context blob, gunzipped
    // too, and the manifests.
    let storage = registry.storage_dir();
    let (files, leaks) = leaks_in_tree(&storage, &[], &needles)?;
    assert!(leaks.is_empty(), "secrets in the registry's storage: {leaks:?}");
    assert!(files >= 6, "only {files} files in the registry's storage");
    for blob in &context_blobs {
        let hex = blob.hex();
        let data = storage.join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ));
        assert!(
            data.is_file(),
            "the context blob {blob} is in the scanned storage"
        );
    }
    assert_eq!(context_blobs.len(), 1);

    // The whole run's TRACE logs (runner, kube client, reqwest, hyper, rustls, the stand-in).
    let logs = captured.bytes();
    assert!(
        logs.len() > 1000,
        "the subscriber captured the run ({} bytes)",
        logs.len()
    );
    assert_clean("the TRACE logs", &logs, &needles);
    drop(node);
    Ok(())
}
