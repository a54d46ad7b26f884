//! Credentials end to end, on a full build with a password-protected registry (real control
//! plane, stand-in node building for real): the password and its base64 never appear in the
//! TRACE-level logs of the whole run, in the outcome's `Debug`, in any cluster object but the
//! generated Secret, or in any blob of the built image or the uploaded context.

mod runner_support;

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kaniko_builder_core::BuildConfig;
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{BuildOutcome, CancellationToken, FlowOptions, run_build};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_k8s::runner::CleanupPolicy;
use kaniko_builder_registry::{DockerConfig, ImageRef, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::node::{NodeOptions, StandInNode};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use kube::api::{Api, ListParams};
use runner_support::*;

/// The forms a leak could take: the password, `user:password` in base64, and the config JSON's
/// base64 (as a Secret's data holds it).
fn needles(docker_config_json: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        TestRegistry::PASSWORD.to_owned(),
        b64.encode(format!("{}:{}", TestRegistry::USERNAME, TestRegistry::PASSWORD)),
        b64.encode(docker_config_json),
    ]
}

fn assert_clean(what: &str, haystack: &[u8], needles: &[String]) {
    for n in needles {
        assert!(
            !haystack.windows(n.len()).any(|w| w == n.as_bytes()),
            "a credential ({} chars) leaked into {what}",
            n.len()
        );
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_live_only_in_the_generated_secret() -> anyhow::Result<()> {
    let captured = kaniko_builder_testkit::capture_trace_logs();

    let (cluster, registry) =
        tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Basic))?;
    let node = StandInNode::start(&cluster, NodeOptions::default().registry(&registry)).await?;
    let docker_config_json = registry.docker_config_json();
    let needles = needles(&docker_config_json);
    let ca = registry.ca_pem().expect("a TLS registry");
    let client = RegistryClient::builder()
        .docker_config(DockerConfig::from_json(&docker_config_json)?)
        .registry(registry.host(), RegistrySettings::default().ca_pem(ca.clone()))
        .build()?;
    let admin = cluster.admin_client();
    // Kept on failure and on success, so the Job and Pod are there to be scanned.
    let runner = KubeRunner::builder(admin.clone())
        .docker_config_json(docker_config_json.clone())
        .blob_store(Arc::new(client.clone()))
        .cleanup(CleanupPolicy::default())
        .timeout(Duration::from_secs(120))
        .build();
    let ctx = tempfile::tempdir()?;
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY . /ctx/\n")?;
    std::fs::write(ctx.path().join("hello.txt"), "no secrets here\n")?;
    let ns = "creds";
    let image: ImageRef = format!("{}/team/secretive:v1", registry.host()).parse()?;
    let cfg = BuildConfig::builder(image.clone())
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
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let BuildOutcome::Built { digest, .. } = &outcome else {
        panic!("expected Built, got {outcome:?}")
    };
    assert_clean(
        "the outcome's Debug",
        format!("{outcome:?} {client:?} {runner:?}").as_bytes(),
        &needles,
    );
    assert_clean(
        "the events",
        serde_json::to_string(&rec.events())?.as_bytes(),
        &needles,
    );

    // Cluster objects: only the generated Secret holds the credentials.
    let mut objects = Vec::new();
    objects.extend(list_json::<Secret>(&admin).await?);
    objects.extend(list_json::<ConfigMap>(&admin).await?);
    objects.extend(list_json::<Job>(&admin).await?);
    objects.extend(list_json::<Pod>(&admin).await?);
    let mut holders = Vec::new();
    for (id, json) in &objects {
        if needles.iter().any(|n| json.contains(n.as_str())) {
            holders.push(id.clone());
        }
    }
    assert_eq!(holders, [format!("Secret/{ns}/docker-config-secret")]);

    // Every blob of the built image, compressed and not.
    let http = kaniko_builder_testkit::reqwest_client(Some(&ca))?;
    let base = format!("https://{}/v2/team/secretive", registry.host());
    let get = |url: String, accept: &'static str| {
        http.get(url)
            .basic_auth(TestRegistry::USERNAME, Some(TestRegistry::PASSWORD))
            .header("accept", accept)
            .send()
    };
    let manifest: serde_json::Value = get(
        format!("{base}/manifests/{digest}"),
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
    )
    .await?
    .error_for_status()?
    .json()
    .await?;
    let mut blobs = vec![
        manifest["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ];
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        blobs.push(layer["digest"].as_str().unwrap_or_default().to_owned());
    }
    assert!(blobs.len() >= 2, "{manifest}");
    let mut scanned = 0;
    for blob in blobs {
        let bytes = get(format!("{base}/blobs/{blob}"), "*/*")
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        assert_clean(&format!("blob {blob}"), &bytes, &needles);
        let mut plain = Vec::new();
        if flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut plain)
            .is_ok()
        {
            assert_clean(&format!("blob {blob} (gunzipped)"), &plain, &needles);
            scanned += 1;
        }
    }
    assert!(scanned >= 1, "no layer was scanned");

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
