//! Image indexes against a real CNCF distribution registry: images pushed by digest (no tags),
//! an OCI index pushed over them under a tag and read back, a Docker manifest list pushed by
//! hand read too, a single-platform image that is not an index, images the registry lacks or
//! cannot list, and credentials that may not push (Basic and token auth).

use bytes::Bytes;
use kaniko_builder_core::flow::ImageProbe;
use kaniko_builder_registry::{
    Digest, DockerConfig, Error, ImageRef, Platform, Probe, RegistryClient, RegistrySettings,
};
use kaniko_builder_testkit::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MANIFEST_ACCEPT, OCI_INDEX, OCI_MANIFEST, RegistryAuth,
    TestRegistry,
};
use serde_json::{Value, json};

const REPO: &str = "team/app";

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

fn configured(reg: &TestRegistry) -> DockerConfig {
    DockerConfig::from_json(&reg.docker_config_json()).expect("config")
}

fn platforms(list: &[&str]) -> Vec<Platform> {
    list.iter().map(|p| p.parse().expect("platform")).collect()
}

/// Raw requests to the registry, authenticated as the test user, for what the client under test
/// does not do: putting image manifests, reading what the registry serves.
struct Raw<'a> {
    reg: &'a TestRegistry,
    http: reqwest::Client,
}

impl<'a> Raw<'a> {
    fn new(reg: &'a TestRegistry) -> Self {
        kaniko_builder_testkit::install_crypto_provider();
        let http = kaniko_builder_testkit::reqwest_client(reg.ca_pem().as_deref()).expect("http client");
        Raw { reg, http }
    }

    async fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.reg.auth() {
            RegistryAuth::Basic => req.basic_auth(TestRegistry::USERNAME, Some(TestRegistry::PASSWORD)),
            RegistryAuth::Token => {
                let token = self
                    .reg
                    .token_for(
                        &format!("repository:{REPO}:pull,push"),
                        Some((TestRegistry::USERNAME, TestRegistry::PASSWORD)),
                    )
                    .await
                    .expect("token");
                req.bearer_auth(token)
            }
            _ => req,
        }
    }

    /// PUTs a manifest under `reference` (a digest or a tag); returns its digest.
    async fn put_manifest(&self, reference: &str, media_type: &str, body: &[u8]) -> Digest {
        let url = format!("{}/v2/{REPO}/manifests/{reference}", self.reg.base_url());
        let req = self
            .http
            .put(url)
            .header("content-type", media_type)
            .body(body.to_vec());
        let resp = self.authed(req).await.send().await.expect("PUT manifest");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 201, "manifest PUT accepted: {text}");
        Digest::sha256(body)
    }

    /// GET of a manifest with every manifest type in `Accept`: (status, content type, digest
    /// header, body).
    async fn get_manifest(&self, reference: &str) -> (u16, String, String, Vec<u8>) {
        let url = format!("{}/v2/{REPO}/manifests/{reference}", self.reg.base_url());
        let req = self.http.get(url).header("accept", MANIFEST_ACCEPT);
        let resp = self.authed(req).await.send().await.expect("GET manifest");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (content_type, digest) = (header("content-type"), header("docker-content-digest"));
        let status = resp.status().as_u16();
        (
            status,
            content_type,
            digest,
            resp.bytes().await.expect("body").to_vec(),
        )
    }
}

/// Manifest schema of a test image.
#[derive(Clone, Copy)]
enum Format {
    Oci,
    Docker,
}

/// An empty tar archive (two zero blocks): a real, if empty, layer.
const EMPTY_TAR: [u8; 1024] = [0; 1024];

/// Pushes an image whose config holds `config_fields` (os, architecture...) by digest: its
/// layer and config with the client under test, its manifest by hand. Returns (manifest digest,
/// manifest size).
async fn push_image(
    reg: &TestRegistry,
    c: &RegistryClient,
    format: Format,
    config_fields: Value,
) -> (Digest, usize) {
    let repo = img(reg, REPO);
    let layer = Bytes::from_static(&EMPTY_TAR);
    let diff_id = Digest::sha256(&layer);
    let mut config = json!({
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
        "history": [{ "created_by": "kaniko-builder-registry tests/index.rs" }],
    });
    for (k, v) in config_fields.as_object().expect("an object") {
        config[k] = v.clone();
    }
    let config = Bytes::from(serde_json::to_vec(&config).expect("config JSON"));
    let layer_digest = c.push_blob(&repo, layer.clone()).await.expect("push layer");
    let config_digest = c.push_blob(&repo, config.clone()).await.expect("push config");
    let (manifest_type, config_type, layer_type) = match format {
        Format::Oci => (
            OCI_MANIFEST,
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar",
        ),
        Format::Docker => (
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar",
        ),
    };
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": { "mediaType": config_type, "digest": config_digest.to_string(), "size": config.len() },
        "layers": [{ "mediaType": layer_type, "digest": layer_digest.to_string(), "size": layer.len() }],
    }))
    .expect("manifest JSON");
    let digest = Digest::sha256(&manifest);
    let put = Raw::new(reg)
        .put_manifest(&digest.to_string(), manifest_type, &manifest)
        .await;
    assert_eq!(put, digest);
    (digest, manifest.len())
}

fn entry_platform(entry: &Value) -> Value {
    entry["platform"].clone()
}

#[tokio::test]
async fn an_index_is_pushed_under_the_tag_and_read_back() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    let c = client(&reg, DockerConfig::anonymous());
    let (amd64, amd64_size) = push_image(
        &reg,
        &c,
        Format::Oci,
        json!({"os": "linux", "architecture": "amd64"}),
    )
    .await;
    let (arm64, arm64_size) = push_image(
        &reg,
        &c,
        Format::Oci,
        json!({"os": "linux", "architecture": "arm64", "variant": "v8"}),
    )
    .await;
    let tag = img(&reg, &format!("{REPO}:v1"));
    assert_eq!(c.probe(&tag).await.expect("probe"), Probe::Absent, "no tags yet");

    let digest = c
        .push_index(&tag, &[amd64.clone(), arm64.clone()])
        .await
        .expect("push index");

    // What the registry serves under the tag is exactly that index.
    let raw = Raw::new(&reg);
    let (status, content_type, said, body) = raw.get_manifest("v1").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, OCI_INDEX);
    assert_eq!(said, digest.to_string());
    assert_eq!(Digest::sha256(&body), digest);
    let index: Value = serde_json::from_slice(&body).expect("index JSON");
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let entries = index["manifests"].as_array().expect("manifests");
    assert_eq!(entries.len(), 2);
    for (entry, (d, size)) in entries.iter().zip([(&amd64, amd64_size), (&arm64, arm64_size)]) {
        assert_eq!(entry["mediaType"], OCI_MANIFEST);
        assert_eq!(entry["digest"], d.to_string());
        assert_eq!(entry["size"], size);
    }
    assert_eq!(
        entry_platform(&entries[0]),
        json!({"architecture": "amd64", "os": "linux"})
    );
    assert_eq!(
        entry_platform(&entries[1]),
        json!({"architecture": "arm64", "os": "linux", "variant": "v8"})
    );

    let probed = c.probe(&tag).await.expect("probe");
    let m = probed.manifest().expect("the tag exists");
    assert!(m.is_index());
    assert_eq!(m.digest, digest);

    // Read back, by tag, by digest, and through the core flow's trait.
    let want = platforms(&["linux/amd64", "linux/arm64/v8"]);
    assert_eq!(c.index_platforms(&tag).await.expect("by tag"), want);
    let pinned = img(&reg, &format!("{REPO}@{digest}"));
    assert_eq!(c.index_platforms(&pinned).await.expect("by digest"), want);
    let probe: &dyn ImageProbe = &c;
    assert_eq!(probe.index_platforms(&tag).await.expect("trait"), want);

    // Again through the trait, in another order and with a Docker schema 2 image: its entry
    // carries its own media type; an OCI index still.
    let (docker, _) = push_image(
        &reg,
        &c,
        Format::Docker,
        json!({"os": "linux", "architecture": "arm", "variant": "v7"}),
    )
    .await;
    let mixed = img(&reg, &format!("{REPO}:mixed"));
    let mixed_digest = probe
        .push_index(&mixed, &[docker.clone(), amd64.clone()])
        .await
        .expect("push through the trait");
    let (_, content_type, said, body) = raw.get_manifest("mixed").await;
    assert_eq!(
        (content_type.as_str(), said),
        (OCI_INDEX, mixed_digest.to_string())
    );
    let index: Value = serde_json::from_slice(&body).expect("index JSON");
    assert_eq!(index["manifests"][0]["mediaType"], DOCKER_MANIFEST);
    assert_eq!(index["manifests"][0]["digest"], docker.to_string());
    assert_eq!(index["manifests"][1]["mediaType"], OCI_MANIFEST);
    assert_eq!(
        c.index_platforms(&mixed).await.expect("mixed"),
        platforms(&["linux/arm/v7", "linux/amd64"])
    );
    // The first tag is untouched.
    assert_eq!(
        c.probe(&tag)
            .await
            .expect("probe")
            .manifest()
            .map(|m| m.digest.clone()),
        Some(digest)
    );
}

#[tokio::test]
async fn a_docker_manifest_list_is_read_without_its_attestation() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    let c = client(&reg, DockerConfig::anonymous());
    let mut children = Vec::new();
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
        let mut fields = json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            fields["variant"] = json!(v);
        }
        let (digest, size) = push_image(&reg, &c, Format::Docker, fields.clone()).await;
        children.push(json!({
            "mediaType": DOCKER_MANIFEST, "digest": digest.to_string(), "size": size, "platform": fields,
        }));
    }
    // An attestation entry as buildx writes one (here over an existing image: the registry
    // checks that every listed manifest exists).
    let mut attestation = children[0].clone();
    attestation["platform"] = json!({"os": "unknown", "architecture": "unknown"});
    children.push(attestation);
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": children,
    }))
    .expect("list JSON");
    let raw = Raw::new(&reg);
    let digest = raw.put_manifest("list", DOCKER_MANIFEST_LIST, &list).await;

    let want = platforms(&["linux/amd64", "linux/arm64/v8"]);
    let tag = img(&reg, &format!("{REPO}:list"));
    assert_eq!(c.index_platforms(&tag).await.expect("by tag"), want);
    let pinned = img(&reg, &format!("{REPO}@{digest}"));
    assert_eq!(c.index_platforms(&pinned).await.expect("by digest"), want);
}

#[tokio::test]
async fn a_single_platform_image_is_not_an_index() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    let c = client(&reg, DockerConfig::anonymous());
    let single = reg
        .push_image(REPO, "single", b"one platform")
        .await
        .expect("push");

    let image = img(&reg, &format!("{REPO}:single"));
    let err = c.index_platforms(&image).await.expect_err("not an index");
    match &err {
        Error::NotAnIndex {
            registry,
            reference,
            media_type,
        } => {
            assert_eq!(registry, &reg.host());
            assert_eq!(reference, &image.to_string());
            assert_eq!(media_type, OCI_MANIFEST);
        }
        other => panic!("expected NotAnIndex, got {other:?}"),
    }
    assert_eq!(err.kind(), "not_an_index");
    assert!(err.to_string().contains("is not an image index"), "{err}");
    let pinned = img(&reg, &format!("{REPO}@{single}"));
    assert!(matches!(
        c.index_platforms(&pinned).await,
        Err(Error::NotAnIndex { .. })
    ));
    // Through the trait: the cause is the kind.
    let probe: &dyn ImageProbe = &c;
    let failure = probe.index_platforms(&image).await.expect_err("not an index");
    assert_eq!(failure.cause(), "not_an_index");
    assert!(!failure.is_unauthorized() && !failure.is_retryable());

    // A tag that does not exist is not found, not "not an index".
    let absent = c
        .index_platforms(&img(&reg, &format!("{REPO}:nope")))
        .await
        .expect_err("absent");
    assert!(
        matches!(&absent, Error::ManifestUnknown { reference, .. } if reference == "nope"),
        "{absent:?}"
    );
    assert_eq!(absent.kind(), "not_found");
}

#[tokio::test]
async fn images_the_registry_lacks_or_cannot_list_are_named_and_nothing_is_pushed() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    let c = client(&reg, DockerConfig::anonymous());
    let (amd64, _) = push_image(
        &reg,
        &c,
        Format::Oci,
        json!({"os": "linux", "architecture": "amd64"}),
    )
    .await;
    let tag = img(&reg, &format!("{REPO}:v1"));

    let missing = Digest::sha256(b"never pushed");
    let err = c
        .push_index(&tag, &[amd64.clone(), missing.clone()])
        .await
        .expect_err("a missing image");
    match &err {
        Error::ManifestUnknown {
            registry,
            repository,
            reference,
        } => {
            assert_eq!(
                (registry.as_str(), repository.as_str()),
                (reg.host().as_str(), REPO)
            );
            assert_eq!(reference, &missing.to_string());
        }
        other => panic!("expected ManifestUnknown, got {other:?}"),
    }
    let msg = err.to_string();
    for part in [reg.host().as_str(), REPO, missing.to_string().as_str()] {
        assert!(msg.contains(part), "{msg} names {part}");
    }
    assert_eq!(
        c.probe(&tag).await.expect("probe"),
        Probe::Absent,
        "tag not created"
    );

    // An image whose config names no architecture.
    let (no_arch, _) = push_image(&reg, &c, Format::Oci, json!({"os": "linux"})).await;
    let err = c
        .push_index(&tag, &[amd64.clone(), no_arch.clone()])
        .await
        .expect_err("no architecture");
    match &err {
        Error::InvalidManifest {
            reference, problem, ..
        } => {
            assert_eq!(reference, &no_arch.to_string());
            assert!(problem.contains("names no os or no architecture"), "{problem}");
        }
        other => panic!("expected InvalidManifest, got {other:?}"),
    }
    assert_eq!(err.kind(), "invalid_manifest");

    // An index cannot be listed in an index.
    let inner = c
        .push_index(&img(&reg, &format!("{REPO}:inner")), std::slice::from_ref(&amd64))
        .await
        .expect("an index of one");
    let err = c
        .push_index(&tag, &[amd64.clone(), inner.clone()])
        .await
        .expect_err("nested index");
    assert!(
        matches!(&err, Error::InvalidManifest { reference, problem, .. }
            if reference == &inner.to_string() && problem.contains("is an image index")),
        "{err:?}"
    );

    // Refused before anything is sent.
    let by_digest = img(&reg, &format!("{REPO}@{amd64}"));
    for (image, list) in [(&by_digest, vec![amd64.clone()]), (&tag, Vec::new())] {
        let err = c.push_index(image, &list).await.expect_err("refused");
        assert!(matches!(err, Error::InvalidIndexRequest { .. }), "{err:?}");
    }
    assert_eq!(
        c.probe(&tag).await.expect("probe"),
        Probe::Absent,
        "tag still absent"
    );
}

/// With credentials that may push, the index is pushed and read; with a wrong password, or
/// none, both calls fail as unauthorized and the tag is left as it was.
async fn unauthorized_credentials_are_refused(auth: RegistryAuth) {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(auth).await.expect("registry");
    let c = client(&reg, configured(&reg));
    let (amd64, _) = push_image(
        &reg,
        &c,
        Format::Oci,
        json!({"os": "linux", "architecture": "amd64"}),
    )
    .await;
    let (arm64, _) = push_image(
        &reg,
        &c,
        Format::Oci,
        json!({"os": "linux", "architecture": "arm64", "variant": "v8"}),
    )
    .await;
    let tag = img(&reg, &format!("{REPO}:v1"));
    let digest = c
        .push_index(&tag, std::slice::from_ref(&amd64))
        .await
        .expect("push with credentials");
    assert_eq!(
        c.index_platforms(&tag).await.expect("read"),
        platforms(&["linux/amd64"])
    );

    let wrong = DockerConfig::from_json(
        &json!({"auths": {reg.host(): {"username": TestRegistry::USERNAME, "password": "wrong-password"}}})
            .to_string(),
    )
    .expect("config");
    for (who, config) in [
        ("wrong password", wrong),
        ("anonymous", DockerConfig::anonymous()),
    ] {
        let other = client(&reg, config);
        let err = other
            .push_index(&tag, &[amd64.clone(), arm64.clone()])
            .await
            .expect_err("refused");
        assert!(err.is_unauthorized(), "{who}: {err:?}");
        let err = other.index_platforms(&tag).await.expect_err("refused");
        assert!(err.is_unauthorized(), "{who}: {err:?}");
        let failure = ImageProbe::push_index(&other, &tag, std::slice::from_ref(&amd64))
            .await
            .expect_err("refused");
        assert!(failure.is_unauthorized(), "{who}: {failure:?}");
    }
    let still = c.probe(&tag).await.expect("probe");
    assert_eq!(
        still.manifest().map(|m| m.digest.clone()),
        Some(digest),
        "tag unchanged"
    );
}

#[tokio::test]
async fn basic_auth_refuses_unauthorized_credentials() {
    unauthorized_credentials_are_refused(RegistryAuth::Basic).await;
}

#[tokio::test]
async fn token_auth_refuses_unauthorized_credentials() {
    unauthorized_credentials_are_refused(RegistryAuth::Token).await;
}
