//! Blob uploads against a real CNCF distribution registry: anonymous over HTTP and token auth over
//! TLS (the token must carry `pull,push`), idempotent re-uploads, and a refused push.

use bytes::Bytes;
use kaniko_builder_registry::{Digest, DockerConfig, ImageRef, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::{RegistryAuth, TestRegistry};

fn img(reg: &TestRegistry, rest: &str) -> ImageRef {
    format!("{}/{rest}", reg.host()).parse().expect("reference")
}

fn client(reg: &TestRegistry, config: DockerConfig) -> RegistryClient {
    let settings = match reg.ca_pem() {
        Some(ca) => RegistrySettings::default().ca_pem(ca),
        None => RegistrySettings::default().plain_http(true),
    };
    RegistryClient::builder()
        .docker_config(config)
        .registry(reg.host(), settings)
        .build()
        .expect("client")
}

async fn fetch_blob(reg: &TestRegistry, repo: &str, digest: &Digest, token: Option<String>) -> Vec<u8> {
    kaniko_builder_testkit::install_crypto_provider();
    let http = kaniko_builder_testkit::reqwest_client(reg.ca_pem().as_deref()).expect("http client");
    let mut req = http.get(format!("{}/v2/{repo}/blobs/{digest}", reg.base_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("GET blob");
    assert_eq!(resp.status(), 200, "blob is served");
    resp.bytes().await.expect("body").to_vec()
}

#[tokio::test]
async fn anonymous_push_is_content_addressed_and_idempotent() {
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    let c = client(&reg, DockerConfig::anonymous());
    let data = Bytes::from_static(b"a context tarball, pretend");
    let image = img(&reg, "team/app:v1");
    let digest = c.push_blob(&image, data.clone()).await.expect("push");
    assert_eq!(digest, Digest::sha256(&data));
    assert_eq!(fetch_blob(&reg, "team/app", &digest, None).await, data.to_vec());
    // Again: already there, same digest.
    assert_eq!(c.push_blob(&image, data).await.expect("again"), digest);
}

#[tokio::test]
async fn token_auth_asks_for_push_scope() {
    let reg = TestRegistry::start(RegistryAuth::Token).await.expect("registry");
    let c = client(
        &reg,
        DockerConfig::from_json(&reg.docker_config_json()).expect("config"),
    );
    let data = Bytes::from(vec![7u8; 300_000]);
    let digest = c
        .push_blob(&img(&reg, "team/app:v1"), data.clone())
        .await
        .expect("push");
    let token = reg
        .token_for(
            "repository:team/app:pull",
            Some((TestRegistry::USERNAME, TestRegistry::PASSWORD)),
        )
        .await
        .expect("token");
    assert_eq!(
        fetch_blob(&reg, "team/app", &digest, Some(token)).await.len(),
        data.len()
    );

    // Anonymous: refused, and the error says so.
    let anon = client(&reg, DockerConfig::anonymous());
    let err = anon
        .push_blob(&img(&reg, "team/app:v1"), Bytes::from_static(b"x"))
        .await
        .expect_err("anonymous push refused");
    assert!(err.is_unauthorized(), "{err}");
}
