//! Probes against a real CNCF distribution registry process (Debian's `docker-registry`), started
//! by the test harness on 127.0.0.1: anonymous over HTTP, htpasswd Basic over TLS, and token auth
//! over TLS with a token issuer whose signed tokens the registry verifies.

use kaniko_builder_registry::{
    Credentials, DockerConfig, Error, ImageRef, Probe, RegistryClient, RegistrySettings, TransportKind,
};
use kaniko_builder_testkit::{RegistryAuth, TestRegistry};

fn img(reg: &TestRegistry, rest: &str) -> ImageRef {
    format!("{}/{rest}", reg.host()).parse().expect("reference")
}

/// A client that trusts the registry's CA (when it has one) and uses `config`.
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

#[tokio::test]
async fn anonymous_registry_exists_absent_and_pinned() {
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    let digest = reg.push_image("team/app", "v1", b"hello").await.expect("push");
    let c = client(&reg, DockerConfig::anonymous());

    let probe = c.probe(&img(&reg, "team/app:v1")).await.expect("probe");
    let m = probe.manifest().expect("exists");
    assert_eq!(m.digest.to_string(), digest);
    assert_eq!(m.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert!(!m.is_index());

    assert_eq!(
        c.probe(&img(&reg, "team/app:v2")).await.expect("missing tag"),
        Probe::Absent
    );
    assert_eq!(
        c.probe(&img(&reg, "team/nothing:v1"))
            .await
            .expect("missing repo"),
        Probe::Absent
    );
    let pinned = c
        .probe(&img(&reg, &format!("team/app@{digest}")))
        .await
        .expect("by digest");
    assert_eq!(pinned.manifest().expect("exists").digest.to_string(), digest);
    let other = kaniko_builder_registry::Digest::sha256(b"never pushed");
    assert_eq!(
        c.probe(&img(&reg, &format!("team/app@{other}")))
            .await
            .expect("unknown digest"),
        Probe::Absent
    );
}

#[tokio::test]
async fn basic_auth_over_tls() {
    let reg = TestRegistry::start(RegistryAuth::Basic).await.expect("registry");
    let digest = reg.push_image("app", "v1", b"basic").await.expect("push");
    let image = img(&reg, "app:v1");

    let found = client(&reg, configured(&reg)).probe(&image).await.expect("probe");
    assert_eq!(found.manifest().expect("exists").digest.to_string(), digest);
    assert_eq!(
        client(&reg, configured(&reg))
            .probe(&img(&reg, "app:nope"))
            .await
            .expect("absent"),
        Probe::Absent
    );

    let wrong = DockerConfig::from_json(&format!(
        r#"{{"auths":{{"{}":{{"username":"{}","password":"wrong-password"}}}}}}"#,
        reg.host(),
        TestRegistry::USERNAME
    ))
    .expect("config");
    match client(&reg, wrong).probe(&image).await {
        Err(e @ Error::Unauthorized { anonymous: false, .. }) => assert!(e.is_unauthorized()),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    match client(&reg, DockerConfig::anonymous()).probe(&image).await {
        Err(Error::Unauthorized { anonymous: true, .. }) => {}
        other => panic!("expected anonymous Unauthorized, got {other:?}"),
    }

    // Without the CA the certificate is not trusted: a TLS error, not "absent", not retried.
    let untrusted = RegistryClient::builder()
        .docker_config(configured(&reg))
        .build()
        .expect("client");
    match untrusted.probe(&image).await {
        Err(
            e @ Error::Transport {
                kind: TransportKind::Tls,
                attempts: 1,
                ..
            },
        ) => assert!(!e.is_retryable()),
        other => panic!("expected TLS error, got {other:?}"),
    }
    // Skip-TLS for that registry only.
    let skip = RegistryClient::builder()
        .docker_config(configured(&reg))
        .registry(reg.host(), RegistrySettings::default().skip_tls_verify(true))
        .build()
        .expect("client");
    assert!(skip.probe(&image).await.expect("skip verify").exists());
    // Plain HTTP to a TLS port fails loudly.
    let plain = RegistryClient::builder()
        .docker_config(configured(&reg))
        .insecure_registry(reg.host())
        .build()
        .expect("client");
    assert!(plain.probe(&image).await.is_err());
}

#[tokio::test]
async fn token_auth_with_index_and_batch() {
    let reg = TestRegistry::start(RegistryAuth::Token).await.expect("registry");
    let mut expected = Vec::new();
    let mut images = Vec::new();
    for repo in ["one", "two", "three"] {
        for i in 0..6 {
            let tag = format!("v{i}");
            expected.push(Some(
                reg.push_image(repo, &tag, format!("{repo}{i}").as_bytes())
                    .await
                    .expect("push"),
            ));
            images.push(img(&reg, &format!("{repo}:{tag}")));
        }
        expected.push(None);
        images.push(img(&reg, &format!("{repo}:missing")));
    }
    let index = reg.push_index("multi", "latest").await.expect("index");
    let c = client(&reg, configured(&reg));
    let tokens_before = reg.token_requests();
    let results = c.probe_many(&images).await;
    assert_eq!(
        reg.token_requests() - tokens_before,
        3,
        "one token per repository"
    );
    for ((image, want), got) in images.iter().zip(&expected).zip(&results) {
        let got = got.as_ref().unwrap_or_else(|e| panic!("{image}: {e}"));
        assert_eq!(got.manifest().map(|m| m.digest.to_string()), *want, "{image}");
    }

    let multi = c.probe(&img(&reg, "multi")).await.expect("index probe");
    let m = multi.manifest().expect("exists");
    assert_eq!(m.digest.to_string(), index);
    assert!(m.is_index(), "{}", m.media_type);
}

#[tokio::test]
async fn token_auth_identity_token_and_refusals() {
    let reg = TestRegistry::start(RegistryAuth::Token).await.expect("registry");
    let digest = reg.push_image("app", "v1", b"tok").await.expect("push");
    let image = img(&reg, "app:v1");

    let identity = DockerConfig::from_json(&format!(
        r#"{{"auths":{{"{}":{{"identitytoken":"{}"}}}}}}"#,
        reg.host(),
        TestRegistry::REFRESH_TOKEN
    ))
    .expect("config");
    let c = client(&reg, identity);
    assert!(matches!(
        c.credentials_for(&image).await.expect("creds"),
        Credentials::IdentityToken { .. }
    ));
    assert_eq!(
        c.probe(&image)
            .await
            .expect("identity token")
            .manifest()
            .expect("exists")
            .digest
            .to_string(),
        digest
    );

    let wrong = DockerConfig::from_json(&format!(
        r#"{{"auths":{{"{}":{{"username":"{}","password":"nope"}}}}}}"#,
        reg.host(),
        TestRegistry::USERNAME
    ))
    .expect("config");
    match client(&reg, wrong).probe(&image).await {
        Err(
            e @ Error::Token {
                status: Some(401), ..
            },
        ) => assert!(e.is_unauthorized(), "{e}"),
        other => panic!("expected Token 401, got {other:?}"),
    }
    // Anonymous: the issuer grants nothing, the registry says 401; never "absent".
    match client(&reg, DockerConfig::anonymous())
        .probe(&img(&reg, "app:does-not-exist"))
        .await
    {
        Err(e @ Error::Unauthorized { anonymous: true, .. }) => {
            assert!(e.to_string().contains("not taken as absent"));
        }
        other => panic!("expected anonymous Unauthorized, got {other:?}"),
    }
}

#[tokio::test]
async fn registry_restarting_mid_probe_is_retried() {
    let mut reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    reg.push_image("app", "v1", b"r").await.expect("push");
    let c = client(&reg, DockerConfig::anonymous());
    assert!(c.probe(&img(&reg, "app:v1")).await.expect("up").exists());
    reg.stop();
    match c.probe(&img(&reg, "app:v1")).await {
        Err(
            e @ Error::Transport {
                kind: TransportKind::Connect,
                ..
            },
        ) => assert!(e.is_retryable()),
        other => panic!("expected a connect error while down, got {other:?}"),
    }
    reg.restart().await.expect("restart");
    assert!(c.probe(&img(&reg, "app:v1")).await.expect("back").exists());
}
