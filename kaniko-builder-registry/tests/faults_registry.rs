//! Registry faults: the probe never turns an error into "absent". A real registry process for
//! "down" and "restarting mid-batch"; the in-process stub only for what a real registry will not
//! do on demand (a burst of 5xx, a token realm that is down). Timeouts, 429 + Retry-After and
//! garbage token answers are in `probe_protocol.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::Response;
use kaniko_builder_registry::{
    Digest, DockerConfig, Error, ImageRef, Probe, RegistryClient, RegistrySettings, RetryPolicy,
    TransportKind,
};
use kaniko_builder_testkit::{RegistryAuth, StubRequest, StubServer, TestRegistry};

fn retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(attempts)
        .base_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(50))
}

fn client(host: &str, attempts: u32) -> RegistryClient {
    RegistryClient::builder()
        .docker_config(DockerConfig::anonymous())
        .registry(
            host,
            RegistrySettings::default()
                .plain_http(true)
                .timeout(Duration::from_secs(2))
                .retry(retries(attempts)),
        )
        .build()
        .expect("client")
}

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response<Body> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).expect("response")
}

#[tokio::test]
async fn a_stopped_registry_is_a_bounded_transport_error_never_absent() {
    let mut reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    reg.push_image("app", "v1", b"down").await.expect("push");
    let c = client(&reg.host(), 3);
    reg.stop();
    let images: Vec<ImageRef> = ["app:v1", "app:never-pushed", "other:v1"]
        .iter()
        .map(|t| format!("{}/{t}", reg.host()).parse().expect("ref"))
        .collect();
    let started = Instant::now();
    for result in c.probe_many(&images).await {
        match result {
            Err(
                e @ Error::Transport {
                    kind: TransportKind::Connect,
                    attempts: 3,
                    ..
                },
            ) => assert!(e.is_retryable()),
            other => panic!("expected a Connect error after 3 attempts, got {other:?}"),
        }
    }
    // Three attempts with 20-50 ms backoff: bounded, not a hang.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_registry_restarting_mid_batch_gives_exists_or_an_error_never_absent() {
    const TAGS: usize = 20;
    let mut reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    let mut pushed = Vec::new();
    for i in 0..TAGS {
        let digest = reg
            .push_image("batch", &format!("t{i}"), format!("content {i}").as_bytes())
            .await
            .expect("push");
        pushed.push(digest);
    }
    // 100 references: the 20 pushed tags, and 80 that were never pushed (those may be Absent).
    let images: Vec<ImageRef> = (0..100)
        .map(|i| format!("{}/batch:t{i}", reg.host()).parse().expect("ref"))
        .collect();
    let c = client(&reg.host(), 2);

    let done = AtomicBool::new(false);
    let rounds = AtomicUsize::new(0);
    // Batches run back to back before, during and after the outage (same task: `join!`).
    let prober = async {
        let mut all = Vec::new();
        while !done.load(Ordering::SeqCst) {
            all.push(c.probe_many(&images).await);
            rounds.fetch_add(1, Ordering::SeqCst);
        }
        all.push(c.probe_many(&images).await);
        all
    };
    let outage = async {
        while rounds.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        reg.stop();
        tokio::time::sleep(Duration::from_millis(300)).await;
        reg.restart().await.expect("restart");
        done.store(true, Ordering::SeqCst);
    };
    let (batches, ()) = tokio::join!(prober, outage);

    let (mut exists, mut errors) = (0, 0);
    for batch in &batches {
        assert_eq!(batch.len(), images.len());
        for (i, result) in batch.iter().enumerate() {
            match result {
                Ok(Probe::Exists(m)) => {
                    assert!(i < TAGS, "t{i} was never pushed but exists");
                    assert_eq!(m.digest.to_string(), pushed[i], "t{i}");
                    exists += 1;
                }
                Ok(Probe::Absent) => assert!(i >= TAGS, "pushed tag t{i} reported Absent"),
                Ok(other) => panic!("t{i}: unexpected {other:?}"),
                Err(e) => {
                    assert!(e.is_retryable(), "t{i}: a non-retryable error {e:?}");
                    assert!(
                        matches!(e, Error::Transport { .. } | Error::Server { .. }),
                        "t{i}: {e:?}"
                    );
                    errors += 1;
                }
            }
        }
    }
    assert!(errors > 0, "the outage was not seen: {} batches", batches.len());
    assert!(exists >= TAGS, "{exists}");
    // The last batch ran after the restart: all correct again.
    let last = batches.last().expect("a batch");
    for (i, result) in last.iter().enumerate() {
        match result {
            Ok(Probe::Exists(m)) if i < TAGS => assert_eq!(m.digest.to_string(), pushed[i]),
            Ok(Probe::Absent) if i >= TAGS => {}
            other => panic!("after the restart, t{i}: {other:?}"),
        }
    }
}

/// A burst of 503s longer than the retry budget is a typed error; the same client then recovers.
/// A stub: a real registry does not answer 503 on demand.
#[tokio::test]
async fn a_5xx_burst_is_a_server_error_then_the_client_recovers() {
    let served = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&served);
    let digest = Digest::sha256(b"m").to_string();
    let stub = StubServer::start(move |r: StubRequest| {
        let n = if r.path.contains("/manifests/") {
            seen.fetch_add(1, Ordering::SeqCst)
        } else {
            usize::MAX
        };
        let digest = digest.clone();
        async move {
            match n {
                usize::MAX => reply(200, &[], ""),
                // The first 5 manifest requests fail: more than one probe's 3 attempts.
                0..5 => reply(if n % 2 == 0 { 503 } else { 502 }, &[], "burst"),
                _ => reply(200, &[("docker-content-digest", &digest)], ""),
            }
        }
    })
    .await;
    let c = client(&stub.host(), 3);
    let image: ImageRef = format!("{}/app:v1", stub.host()).parse().expect("ref");
    match c.probe(&image).await {
        Err(e @ Error::Server { attempts: 3, .. }) => assert!(e.is_retryable()),
        other => panic!("expected a Server error after 3 attempts, got {other:?}"),
    }
    // Requests 4 and 5 fail, the 6th succeeds: within the budget.
    let probe = c.probe(&image).await.expect("recovered");
    assert_eq!(
        probe.manifest().expect("exists").digest.to_string(),
        Digest::sha256(b"m").to_string()
    );
    assert_eq!(served.load(Ordering::SeqCst), 6);
}

/// The registry asks for a token from a realm where nothing listens: a typed, retryable error
/// naming the realm, after bounded attempts; never Absent. A stub registry, since the real one's
/// token issuer runs in-process and cannot be stopped apart from it.
#[tokio::test]
async fn a_token_issuer_that_is_down_is_a_typed_error() {
    let dead_port = kaniko_builder_testkit::free_port();
    let stub = StubServer::start(move |_r: StubRequest| async move {
        let challenge = format!(r#"Bearer realm="http://127.0.0.1:{dead_port}/token",service="stub""#);
        reply(401, &[("www-authenticate", challenge.as_str())], "")
    })
    .await;
    let c = client(&stub.host(), 3);
    let image: ImageRef = format!("{}/app:v1", stub.host()).parse().expect("ref");
    let started = Instant::now();
    match c.probe(&image).await {
        Err(
            e @ Error::Token {
                status: None,
                transport: Some(TransportKind::Connect),
                ..
            },
        ) => {
            assert!(e.is_retryable(), "{e:?}");
            assert!(e.to_string().contains(&dead_port.to_string()), "{e}");
            assert!(e.to_string().contains("after 3 attempt"), "{e}");
        }
        other => panic!("expected a Token connect error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}
