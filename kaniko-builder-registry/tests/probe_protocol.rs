//! Registry protocol corner cases that a real registry will not produce on demand (missing digest
//! headers, 429, 5xx, 401 loops, malformed challenges, slow answers, broken token services). Each
//! runs against an in-process stub server on 127.0.0.1; the happy paths run against a real
//! registry in `probe_registry.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use http::Response;
use kaniko_builder_registry::{
    Digest, DockerConfig, Error, ImageRef, Probe, RegistryClient, RegistrySettings, RetryPolicy,
    TransportKind,
};
use kaniko_builder_testkit::{StubRequest, StubServer};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response<Body> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).expect("response")
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(attempts)
        .base_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(5))
}

fn client_for(stub: &StubServer, config: DockerConfig, settings: RegistrySettings) -> RegistryClient {
    RegistryClient::builder()
        .docker_config(config)
        .registry(stub.host(), settings.plain_http(true))
        .build()
        .expect("client")
}

fn plain_client(stub: &StubServer) -> RegistryClient {
    client_for(
        stub,
        DockerConfig::anonymous(),
        RegistrySettings::default().retry(fast_retries(3)),
    )
}

fn image(stub: &StubServer, rest: &str) -> ImageRef {
    format!("{}/{rest}", stub.host()).parse().expect("reference")
}

fn manifest_requests(stub: &StubServer) -> Vec<StubRequest> {
    stub.requests()
        .into_iter()
        .filter(|r| r.path.contains("/manifests/"))
        .collect()
}

fn digest_of(body: &[u8]) -> String {
    Digest::sha256(body).to_string()
}

#[tokio::test]
async fn a_miss_costs_exactly_one_request_on_a_warm_client() {
    let stub = StubServer::start(|r: StubRequest| async move {
        if r.path == "/v2/" {
            reply(200, &[], "{}")
        } else {
            reply(404, &[], "")
        }
    })
    .await;
    let client = plain_client(&stub);
    assert_eq!(
        client.probe(&image(&stub, "app:v1")).await.expect("probe"),
        Probe::Absent
    );
    let before = stub.requests().len();
    assert_eq!(
        client.probe(&image(&stub, "other:v2")).await.expect("probe"),
        Probe::Absent
    );
    let after = stub.requests();
    assert_eq!(after.len() - before, 1, "{after:#?}");
    let last = after.last().expect("request");
    assert_eq!(last.method, "HEAD");
    assert_eq!(last.path, "/v2/other/manifests/v2");
    let accept = last.header("accept").expect("accept header");
    for media in [
        "application/vnd.oci.image.index.v1+json",
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ] {
        assert!(accept.contains(media), "{accept}");
    }
}

#[tokio::test]
async fn head_without_digest_header_falls_back_to_one_get() {
    let body = br#"{"schemaVersion":2}"#;
    let stub = StubServer::start(move |r: StubRequest| async move {
        match (r.method.as_str(), r.path.as_str()) {
            (_, "/v2/") => reply(200, &[], ""),
            ("HEAD", _) => reply(200, &[("content-type", OCI_MANIFEST)], ""),
            _ => reply(200, &[("content-type", OCI_MANIFEST)], &body[..]),
        }
    })
    .await;
    let probe = plain_client(&stub)
        .probe(&image(&stub, "app:v1"))
        .await
        .expect("probe");
    let m = probe.manifest().expect("exists");
    assert_eq!(m.digest.to_string(), digest_of(body));
    assert_eq!(m.media_type, OCI_MANIFEST);
    let methods: Vec<_> = manifest_requests(&stub).into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["HEAD", "GET"]);
}

#[tokio::test]
async fn digests_that_do_not_add_up_are_errors() {
    let body = br#"{"schemaVersion":2}"#;
    let wrong = digest_of(b"something else");
    let stub = StubServer::start(move |r: StubRequest| {
        let wrong = wrong.clone();
        async move {
            match (r.method.as_str(), r.path.as_str()) {
                (_, "/v2/") => reply(200, &[], ""),
                ("HEAD", p) if p.ends_with("/bad-header") => {
                    reply(200, &[("docker-content-digest", "sha256:xyz")], "")
                }
                ("HEAD", p) if p.ends_with("/pinned") || p.contains("sha256:") => {
                    reply(200, &[("docker-content-digest", wrong.as_str())], "")
                }
                ("HEAD", _) => reply(200, &[], ""),
                _ => reply(200, &[("docker-content-digest", wrong.as_str())], &body[..]),
            }
        }
    })
    .await;
    let client = plain_client(&stub);
    for (rest, expected) in [
        ("app:bad-header".to_owned(), "sha256:xyz"),
        ("app:get-mismatch".to_owned(), "content hashes to"),
        (format!("app:pinned@{}", digest_of(b"pinned")), "reference pins"),
    ] {
        match client.probe(&image(&stub, &rest)).await {
            Err(e @ Error::BadDigest { .. }) => assert!(e.to_string().contains(expected), "{rest}: {e}"),
            other => panic!("{rest}: expected BadDigest, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn rate_limits_are_retried_and_honour_retry_after() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let stub = StubServer::start(move |r: StubRequest| {
        let n = if r.path.contains("/manifests/") {
            seen.fetch_add(1, Ordering::SeqCst)
        } else {
            usize::MAX
        };
        async move {
            match (r.path.as_str(), n) {
                ("/v2/", _) => reply(200, &[], ""),
                (p, _) if p.contains("/forever/") => reply(429, &[("retry-after", "0")], ""),
                (p, _) if p.contains("/too-long/") => reply(429, &[("retry-after", "3600")], ""),
                (_, 0) => reply(429, &[("retry-after", "0")], ""),
                _ => reply(
                    200,
                    &[
                        ("docker-content-digest", &digest_of(b"m")),
                        ("content-type", OCI_MANIFEST),
                    ],
                    "",
                ),
            }
        }
    })
    .await;
    let client = plain_client(&stub);
    let probe = client.probe(&image(&stub, "app:v1")).await.expect("retried");
    assert!(probe.exists());
    assert_eq!(manifest_requests(&stub).len(), 2);

    match client.probe(&image(&stub, "forever/app:v1")).await {
        Err(e @ Error::RateLimited { attempts: 3, .. }) => assert!(e.is_retryable()),
        other => panic!("expected RateLimited after 3 attempts, got {other:?}"),
    }
    // A Retry-After beyond what we wait for fails at once and says how long the registry asked.
    let before = manifest_requests(&stub).len();
    match client.probe(&image(&stub, "too-long/app:v1")).await {
        Err(Error::RateLimited {
            attempts: 1,
            retry_after,
            ..
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(3600)));
        }
        other => panic!("expected immediate RateLimited, got {other:?}"),
    }
    assert_eq!(manifest_requests(&stub).len() - before, 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_never_absent() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let stub = StubServer::start(move |r: StubRequest| {
        let n = seen.fetch_add(usize::from(r.path.contains("/flaky/")), Ordering::SeqCst);
        async move {
            match r.path.as_str() {
                "/v2/" => reply(200, &[], ""),
                p if p.contains("/flaky/") && n == 0 => reply(502, &[], "bad gateway"),
                p if p.contains("/flaky/") => reply(200, &[("docker-content-digest", &digest_of(b"m"))], ""),
                p if p.contains("/teapot/") => reply(418, &[], ""),
                _ => reply(503, &[], "unavailable"),
            }
        }
    })
    .await;
    let client = plain_client(&stub);
    assert!(
        client
            .probe(&image(&stub, "flaky/app:v1"))
            .await
            .expect("second try")
            .exists()
    );
    match client.probe(&image(&stub, "down/app:v1")).await {
        Err(
            e @ Error::Server {
                status: 503,
                attempts: 3,
                ..
            },
        ) => {
            assert!(e.is_retryable() && !e.is_unauthorized());
            assert!(e.to_string().contains(&stub.host()), "{e}");
        }
        other => panic!("expected Server error, got {other:?}"),
    }
    assert!(matches!(
        client.probe(&image(&stub, "teapot/app:v1")).await,
        Err(Error::UnexpectedStatus { status: 418, .. })
    ));
}

/// A registry whose /v2/ asks for a Bearer token from the stub's own /token.
fn bearer(stub_host: &str) -> String {
    format!(r#"Bearer realm="http://{stub_host}/token",service="stub""#)
}

#[tokio::test]
async fn a_401_loop_is_bounded_and_reported_as_unauthorized() {
    let stub = StubServer::start(|r: StubRequest| async move {
        let host = r.header("host").unwrap_or_default().to_owned();
        match r.path.as_str() {
            p if p.starts_with("/token") => reply(200, &[], r#"{"token":"t0k3n-abc"}"#),
            _ => reply(401, &[("www-authenticate", &bearer(&host))], ""),
        }
    })
    .await;
    let config = DockerConfig::from_json(&format!(
        r#"{{"auths":{{"{}":{{"username":"u","password":"p"}}}}}}"#,
        stub.host()
    ))
    .expect("config");
    let client = client_for(&stub, config, RegistrySettings::default().retry(fast_retries(3)));
    match client.probe(&image(&stub, "app:v1")).await {
        Err(e @ Error::Unauthorized { anonymous: false, .. }) => assert!(e.is_unauthorized()),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let heads = manifest_requests(&stub);
    assert_eq!(heads.len(), 2, "one try and one fresh authentication, no loop");
    assert!(
        heads
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer t0k3n-abc"))
    );
    let tokens: Vec<_> = stub
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/token"))
        .collect();
    assert_eq!(tokens.len(), 2);
    assert!(
        tokens[0].path.contains("scope=repository%3Aapp%3Apull") && tokens[0].path.contains("service=stub")
    );
    assert!(
        tokens[0]
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))
    );
}

#[tokio::test]
async fn malformed_challenges_are_named() {
    for header in [
        r#"Bearer service="x""#,
        r#"Bearer realm="ftp://x/""#,
        "Bearer realm=\"unterminated",
        "",
    ] {
        let h = header.to_owned();
        let stub = StubServer::start(move |_r: StubRequest| {
            let h = h.clone();
            async move {
                if h.is_empty() {
                    reply(401, &[], "")
                } else {
                    reply(401, &[("www-authenticate", h.as_str())], "")
                }
            }
        })
        .await;
        match plain_client(&stub).probe(&image(&stub, "app:v1")).await {
            Err(e @ Error::Challenge { .. }) => assert!(e.to_string().contains(&stub.host()), "{e}"),
            other => panic!("{header:?}: expected Challenge error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn basic_challenge_without_credentials_is_unauthorized_anonymous() {
    let stub = StubServer::start(|_r: StubRequest| async {
        reply(401, &[("www-authenticate", r#"Basic realm="r""#)], "")
    })
    .await;
    match plain_client(&stub).probe(&image(&stub, "app:v1")).await {
        Err(e @ Error::Unauthorized { anonymous: true, .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("no credentials") && msg.contains("not taken as absent"),
                "{msg}"
            );
        }
        other => panic!("expected anonymous Unauthorized, got {other:?}"),
    }
    // The ping learned the challenge; the HEAD is not even worth sending twice.
    assert_eq!(manifest_requests(&stub).len(), 1);
}

#[tokio::test]
async fn forbidden_is_denied_not_absent() {
    let stub = StubServer::start(|r: StubRequest| async move {
        if r.path == "/v2/" {
            reply(200, &[], "")
        } else {
            reply(403, &[], r#"{"errors":[{"code":"DENIED"}]}"#)
        }
    })
    .await;
    assert!(matches!(
        plain_client(&stub).probe(&image(&stub, "app:v1")).await,
        Err(Error::Denied { anonymous: true, .. })
    ));
}

#[tokio::test]
async fn slow_answers_hit_the_timeout() {
    let stub = StubServer::start(|r: StubRequest| async move {
        if r.path != "/v2/" {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        reply(404, &[], "")
    })
    .await;
    let settings = RegistrySettings::default()
        .timeout(Duration::from_millis(200))
        .retry(fast_retries(2));
    let client = client_for(&stub, DockerConfig::anonymous(), settings);
    match client.probe(&image(&stub, "app:v1")).await {
        Err(
            e @ Error::Transport {
                kind: TransportKind::Timeout,
                attempts: 2,
                ..
            },
        ) => assert!(e.is_timeout() && e.is_retryable()),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    let port = kaniko_builder_testkit::free_port();
    let client = RegistryClient::builder()
        .docker_config(DockerConfig::anonymous())
        .default_settings(RegistrySettings::default().retry(fast_retries(2)))
        .insecure_registry(format!("127.0.0.1:{port}"))
        .build()
        .expect("client");
    let img: ImageRef = format!("127.0.0.1:{port}/app:v1").parse().expect("ref");
    match client.probe(&img).await {
        Err(
            e @ Error::Transport {
                kind: TransportKind::Connect,
                attempts: 2,
                ..
            },
        ) => assert!(e.is_retryable()),
        other => panic!("expected connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn token_service_failures_are_typed_and_bounded() {
    let stub = StubServer::start(|r: StubRequest| async move {
        let host = r.header("host").unwrap_or_default().to_owned();
        match r.path.as_str() {
            p if p.starts_with("/token") && p.contains("down") => reply(500, &[], "oops"),
            p if p.starts_with("/token") && p.contains("garbage") => reply(200, &[], "<html>not json</html>"),
            p if p.starts_with("/token") => reply(401, &[], ""),
            _ => reply(401, &[("www-authenticate", &bearer(&host))], ""),
        }
    })
    .await;
    let client = plain_client(&stub);
    match client.probe(&image(&stub, "down/app:v1")).await {
        Err(
            e @ Error::Token {
                status: Some(500), ..
            },
        ) => {
            assert!(e.is_retryable());
            assert!(e.to_string().contains("after 3 attempt"), "{e}");
        }
        other => panic!("expected Token 500, got {other:?}"),
    }
    match client.probe(&image(&stub, "garbage/app:v1")).await {
        Err(e @ Error::Token { .. }) => assert!(e.to_string().contains("not the token JSON"), "{e}"),
        other => panic!("expected Token garbage, got {other:?}"),
    }
    match client.probe(&image(&stub, "refused/app:v1")).await {
        Err(
            e @ Error::Token {
                status: Some(401), ..
            },
        ) => assert!(e.is_unauthorized()),
        other => panic!("expected Token 401, got {other:?}"),
    }
    let down_calls = stub
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/token") && r.path.contains("down"))
        .count();
    assert_eq!(down_calls, 3);
}

#[tokio::test]
async fn identity_tokens_use_the_oauth2_refresh_grant() {
    let stub = StubServer::start(|r: StubRequest| async move {
        let host = r.header("host").unwrap_or_default().to_owned();
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/token") => {
                let form = String::from_utf8_lossy(&r.body).into_owned();
                if form.contains("grant_type=refresh_token") && form.contains("refresh_token=rt-secret") {
                    reply(200, &[], r#"{"access_token":"access-1","expires_in":120}"#)
                } else {
                    reply(401, &[], "")
                }
            }
            (_, "/v2/") => reply(401, &[("www-authenticate", &bearer(&host))], ""),
            _ if r.header("authorization") == Some("Bearer access-1") => {
                reply(200, &[("docker-content-digest", &digest_of(b"m"))], "")
            }
            _ => reply(401, &[("www-authenticate", &bearer(&host))], ""),
        }
    })
    .await;
    let config = DockerConfig::from_json(&format!(
        r#"{{"auths":{{"{}":{{"identitytoken":"rt-secret"}}}}}}"#,
        stub.host()
    ))
    .expect("config");
    let client = client_for(&stub, config, RegistrySettings::default());
    assert!(
        client
            .probe(&image(&stub, "app:v1"))
            .await
            .expect("probe")
            .exists()
    );
    // Token reused for the same repository.
    assert!(
        client
            .probe(&image(&stub, "app:v2"))
            .await
            .expect("probe")
            .exists()
    );
    let posts = stub.requests().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 1);
}

#[tokio::test]
async fn registry_tokens_are_sent_as_bearer_directly() {
    let stub = StubServer::start(|r: StubRequest| async move {
        if r.header("authorization") == Some("Bearer direct-rt") {
            reply(200, &[("docker-content-digest", &digest_of(b"m"))], "")
        } else if r.path == "/v2/" {
            reply(200, &[], "")
        } else {
            reply(401, &[], "")
        }
    })
    .await;
    let config = DockerConfig::from_json(&format!(
        r#"{{"auths":{{"{}":{{"registrytoken":"direct-rt"}}}}}}"#,
        stub.host()
    ))
    .expect("config");
    let client = client_for(&stub, config, RegistrySettings::default());
    assert!(
        client
            .probe(&image(&stub, "app:v1"))
            .await
            .expect("probe")
            .exists()
    );
}

#[tokio::test]
async fn probe_many_keeps_input_order_and_fetches_one_token_per_repository() {
    let stub = StubServer::start(|r: StubRequest| async move {
        let host = r.header("host").unwrap_or_default().to_owned();
        match r.path.as_str() {
            p if p.starts_with("/token") => {
                // A slow token service makes concurrent probes of one repository overlap.
                tokio::time::sleep(Duration::from_millis(50)).await;
                reply(200, &[], r#"{"token":"tk"}"#)
            }
            _ if r.header("authorization") != Some("Bearer tk") => {
                reply(401, &[("www-authenticate", &bearer(&host))], "")
            }
            p if p.ends_with("/missing") => reply(404, &[], ""),
            p => reply(200, &[("docker-content-digest", &digest_of(p.as_bytes()))], ""),
        }
    })
    .await;
    let client = plain_client(&stub);
    let mut images = Vec::new();
    for i in 0..40 {
        let tag = if i % 7 == 3 {
            "missing".to_owned()
        } else {
            format!("t{i}")
        };
        images.push(image(&stub, &format!("repo{}/app:{tag}", i % 3)));
    }
    let results = client.probe_many(&images).await;
    assert_eq!(results.len(), images.len());
    for (img, res) in images.iter().zip(&results) {
        let probe = res.as_ref().expect("probe");
        if img.tag() == Some("missing") {
            assert_eq!(probe, &Probe::Absent);
        } else {
            let path = format!("/v2/{}/manifests/{}", img.repository(), img.tag().expect("tag"));
            assert_eq!(
                probe.manifest().expect("exists").digest.to_string(),
                digest_of(path.as_bytes())
            );
        }
    }
    let tokens = stub
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/token"))
        .count();
    assert_eq!(tokens, 3, "one token per repository");
}
