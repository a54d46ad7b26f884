//! Proves the test harness against the real registry process: every auth mode starts, pushed
//! digests are what the registry stores, and refusals are real refusals.

use std::sync::Arc;

use kaniko_builder_testkit::{
    DOCKER_MANIFEST, ImageSpec, LayerCompression, MANIFEST_ACCEPT, ManifestFormat, OCI_INDEX, OCI_MANIFEST,
    RegistryAuth, StubServer, TestRegistry,
};

/// How a HEAD request authenticates.
enum Creds {
    None,
    Basic(&'static str, &'static str),
    Bearer(String),
}

/// A reqwest client on ring trusting the registry's CA (if any).
fn client(reg: &TestRegistry) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = reg.ca_pem() {
        use rustls::pki_types::pem::PemObject as _;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots
                .add(cert.expect("CA PEM parses"))
                .expect("CA is a valid root");
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::ClientBuilder::new()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .build()
        .expect("build reqwest client")
}

async fn head_manifest(
    reg: &TestRegistry,
    repo: &str,
    reference: &str,
    creds: Creds,
) -> reqwest::Result<reqwest::Response> {
    let url = format!("{}/v2/{repo}/manifests/{reference}", reg.base_url());
    let mut req = client(reg).head(url).header("Accept", MANIFEST_ACCEPT);
    req = match creds {
        Creds::None => req,
        Creds::Basic(u, p) => req.basic_auth(u, Some(p)),
        Creds::Bearer(t) => req.bearer_auth(t),
    };
    req.send().await
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Credentials that the registry accepts in each mode.
async fn good_creds(reg: &TestRegistry, repo: &str) -> Creds {
    match reg.auth() {
        RegistryAuth::Token => Creds::Bearer(
            reg.token_for(
                &format!("repository:{repo}:pull"),
                Some((TestRegistry::USERNAME, TestRegistry::PASSWORD)),
            )
            .await
            .expect("token for valid credentials"),
        ),
        RegistryAuth::Basic => Creds::Basic(TestRegistry::USERNAME, TestRegistry::PASSWORD),
        _ => Creds::None,
    }
}

async fn assert_stored(reg: &TestRegistry, repo: &str, tag: &str, digest: &str, media_type: &str) {
    let creds = good_creds(reg, repo).await;
    let resp = head_manifest(reg, repo, tag, creds).await.expect("HEAD manifest");
    assert_eq!(resp.status(), 200, "HEAD {repo}:{tag}");
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    assert_eq!(header(&resp, "content-type"), media_type);
}

async fn push_and_check(auth: RegistryAuth) -> TestRegistry {
    let reg = TestRegistry::start(auth).await.expect("registry starts");
    assert_eq!(reg.is_tls(), auth != RegistryAuth::Anonymous);
    assert_eq!(reg.base_url().starts_with("https://"), reg.is_tls());
    let digest = reg
        .push_image("team/app", "v1", b"hello")
        .await
        .expect("push image");
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    assert_stored(&reg, "team/app", "v1", &digest, OCI_MANIFEST).await;
    reg
}

#[tokio::test]
async fn anonymous_mode_push_and_head() {
    let reg = push_and_check(RegistryAuth::Anonymous).await;
    assert!(reg.ca_pem().is_none() && reg.ca_dir().is_none());
    assert_eq!(reg.docker_config_json(), r#"{"auths":{}}"#);
    assert_eq!(reg.token_requests(), 0);
}

#[tokio::test]
async fn basic_mode_push_and_head() {
    let reg = push_and_check(RegistryAuth::Basic).await;
    let ca_dir = reg.ca_dir().expect("TLS mode has a CA dir");
    assert!(ca_dir.join("ca.crt").is_file());
    let config: serde_json::Value =
        serde_json::from_str(&reg.docker_config_json()).expect("docker config is JSON");
    // base64("kb-user:s3cr3t-Pa55-9f2c")
    assert_eq!(
        config["auths"][reg.host()]["auth"],
        "a2ItdXNlcjpzM2NyM3QtUGE1NS05ZjJj"
    );
}

#[tokio::test]
async fn token_mode_push_and_head() {
    let reg = push_and_check(RegistryAuth::Token).await;
    assert!(
        reg.token_requests() >= 2,
        "oci-client and the test both asked for tokens"
    );
}

#[tokio::test]
async fn basic_mode_wrong_password_is_refused() {
    let reg = TestRegistry::start(RegistryAuth::Basic)
        .await
        .expect("registry starts");
    let digest = reg.push_image("app", "v1", b"x").await.expect("push image");
    let resp = head_manifest(
        &reg,
        "app",
        &digest,
        Creds::Basic(TestRegistry::USERNAME, "wrong"),
    )
    .await
    .expect("HEAD answers");
    assert_eq!(resp.status(), 401);
    let resp = head_manifest(&reg, "app", &digest, Creds::None)
        .await
        .expect("HEAD answers");
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn token_mode_refuses_anonymous_tokens_and_bad_credentials() {
    let reg = TestRegistry::start(RegistryAuth::Token)
        .await
        .expect("registry starts");
    reg.push_image("app", "v1", b"x").await.expect("push image");

    // Without credentials the issuer still answers, but with no access in the token.
    let anonymous = reg
        .token_for("repository:app:pull", None)
        .await
        .expect("anonymous token");
    let resp = head_manifest(&reg, "app", "v1", Creds::Bearer(anonymous))
        .await
        .expect("HEAD");
    assert_eq!(resp.status(), 401);
    // Signature and audience were fine; only the (empty) access list is refused.
    let challenge = header(&resp, "www-authenticate");
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");

    let err = reg
        .token_for("repository:app:pull", Some((TestRegistry::USERNAME, "wrong")))
        .await
        .expect_err("wrong password is refused by the issuer");
    assert!(format!("{err:#}").contains("401"), "{err:#}");

    // Direct to the registry without a token: the challenge points at our issuer.
    let resp = head_manifest(&reg, "app", "v1", Creds::None).await.expect("HEAD");
    assert_eq!(resp.status(), 401);
    let challenge = header(&resp, "www-authenticate");
    let realm = reg.token_realm().expect("token mode has a realm");
    assert!(challenge.contains(&realm), "{challenge}");
    assert!(challenge.contains("service=\"kb-test-registry\""), "{challenge}");
}

#[tokio::test]
async fn token_mode_oauth2_refresh_and_password_grants() {
    let reg = TestRegistry::start(RegistryAuth::Token)
        .await
        .expect("registry starts");
    let digest = reg.push_image("app", "v1", b"x").await.expect("push image");
    let realm = reg.token_realm().expect("realm");
    let http = client(&reg);
    let post = |form: Vec<(&'static str, &'static str)>| {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        http.post(realm.clone())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let base = [
        ("service", "kb-test-registry"),
        ("scope", "repository:app:pull"),
        ("client_id", "kb"),
    ];

    let mut form = base.to_vec();
    form.extend([("grant_type", "password"), ("username", TestRegistry::USERNAME)]);
    form.extend([("password", TestRegistry::PASSWORD), ("access_type", "offline")]);
    let resp = post(form).await.expect("password grant");
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = resp.json_body().await;
    assert_eq!(json["refresh_token"], TestRegistry::REFRESH_TOKEN);

    let mut form = base.to_vec();
    form.extend([
        ("grant_type", "refresh_token"),
        ("refresh_token", TestRegistry::REFRESH_TOKEN),
    ]);
    let resp = post(form).await.expect("refresh grant");
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = resp.json_body().await;
    assert_eq!(json["expires_in"], 300);
    let token = json["access_token"].as_str().expect("access_token").to_owned();
    let resp = head_manifest(&reg, "app", "v1", Creds::Bearer(token))
        .await
        .expect("HEAD");
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "docker-content-digest"), digest);

    let mut form = base.to_vec();
    form.extend([("grant_type", "refresh_token"), ("refresh_token", "not-it")]);
    assert_eq!(post(form).await.expect("bad refresh").status(), 401);
}

/// reqwest here has no `json` feature; parse the body ourselves.
trait JsonBody {
    async fn json_body(self) -> serde_json::Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> serde_json::Value {
        let text = self.text().await.expect("response body");
        serde_json::from_str(&text).expect("JSON body")
    }
}

#[tokio::test]
async fn push_index_stores_an_oci_index() {
    for auth in [RegistryAuth::Anonymous, RegistryAuth::Token] {
        let reg = TestRegistry::start(auth).await.expect("registry starts");
        let index = reg.push_index_detailed("multi", "v1").await.expect("push index");
        assert_stored(&reg, "multi", "v1", &index.digest, OCI_INDEX).await;
        let platforms: Vec<_> = index.manifests.iter().map(|m| m.platform.as_str()).collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
        for child in &index.manifests {
            assert_stored(&reg, "multi", &child.digest, &child.digest, OCI_MANIFEST).await;
        }
        assert_eq!(
            reg.push_index("multi", "v2").await.expect("push again"),
            index.digest
        );
    }
}

#[tokio::test]
async fn docker_manifest_with_uncompressed_layer() {
    let reg = TestRegistry::start(RegistryAuth::Basic)
        .await
        .expect("registry starts");
    let mut spec = ImageSpec::new(b"docker!");
    spec.format = ManifestFormat::Docker;
    spec.compression = LayerCompression::None;
    let digest = reg
        .push_image_with("legacy", "v1", &spec)
        .await
        .expect("push docker image");
    assert_stored(&reg, "legacy", "v1", &digest, DOCKER_MANIFEST).await;
}

#[tokio::test]
async fn restart_keeps_the_image() {
    let mut reg = TestRegistry::start(RegistryAuth::Basic)
        .await
        .expect("registry starts");
    let digest = reg.push_image("app", "v1", b"persist").await.expect("push image");
    reg.stop();
    // stop() returns once the process is gone: the port refuses at once.
    let down = head_manifest(&reg, "app", "v1", Creds::None).await;
    assert!(down.is_err(), "stopped registry still answers: {down:?}");
    reg.restart().await.expect("registry restarts");
    assert_stored(&reg, "app", "v1", &digest, OCI_MANIFEST).await;
}

#[tokio::test]
async fn skopeo_reads_pushed_image_with_ca_dir() {
    let reg = TestRegistry::start(RegistryAuth::Basic)
        .await
        .expect("registry starts");
    let digest = reg
        .push_image("app", "v1", b"for skopeo")
        .await
        .expect("push image");
    let ca_dir = reg.ca_dir().expect("CA dir");
    let out = tokio::process::Command::new("skopeo")
        .arg("inspect")
        .arg("--cert-dir")
        .arg(&ca_dir)
        .arg("--creds")
        .arg(format!("{}:{}", TestRegistry::USERNAME, TestRegistry::PASSWORD))
        .arg(format!("docker://{}/app:v1", reg.host()))
        .output()
        .await
        .expect("run skopeo (apt package skopeo)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo JSON");
    assert_eq!(json["Digest"], digest);
}

#[tokio::test]
async fn stub_server_records_and_answers() {
    let stub = StubServer::start(|req| async move {
        let status = if req.path.starts_with("/v2/") { 401 } else { 404 };
        http::Response::builder()
            .status(status)
            .header("WWW-Authenticate", "Bearer realm=\"odd\"")
            .body(axum::body::Body::from(req.method))
            .expect("valid response")
    })
    .await;
    // The crate's client carries its own ring TLS config, so no process provider is needed.
    let http = kaniko_builder_testkit::reqwest_client(None).expect("plain client");
    let resp = http
        .get(format!("{}/v2/?x=1", stub.url()))
        .header("X-Test", "yes")
        .send()
        .await
        .expect("stub answers");
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "www-authenticate"), "Bearer realm=\"odd\"");
    assert_eq!(resp.text().await.expect("body"), "GET");
    let seen = stub.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v2/?x=1");
    assert_eq!(seen[0].header("x-test"), Some("yes"));
    assert_eq!(stub.host(), stub.url().trim_start_matches("http://"));
}
