//! Streamed blob uploads (`push_blob_stream`) against a real CNCF distribution registry: a body of
//! many items, token auth with push scope, a refused push, the spec's chunked mode, a body that
//! fails or stalls, a slow body that outlives the request timeout, and the memory an upload of
//! 300 MiB needs (in a child process, so its peak RSS is the upload's alone).
//!
//! Debug builds hash at about 15 MB/s (sha2 unoptimised), which sets the memory test's time.
//!
//! One fault a real registry will not produce on demand, a registry that stops reading in the
//! middle of the body, uses the in-process stub for the `POST` and a raw `TcpListener` that
//! accepts the upload's connection and never reads from it.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use http::Response;
use kaniko_builder_core::flow::BlobStore;
use kaniko_builder_registry::{
    Digest, DockerConfig, Error, ImageRef, RegistryClient, RegistryClientBuilder, RegistrySettings, StallSide,
};
use kaniko_builder_testkit::{RegistryAuth, StubRequest, StubServer, TestRegistry};

fn img(host: &str, rest: &str) -> ImageRef {
    format!("{host}/{rest}").parse().expect("reference")
}

fn settings(reg: &TestRegistry) -> RegistrySettings {
    match reg.ca_pem() {
        Some(ca) => RegistrySettings::default().ca_pem(ca),
        None => RegistrySettings::default().plain_http(true),
    }
}

fn builder(reg: &TestRegistry, config: DockerConfig) -> RegistryClientBuilder {
    RegistryClient::builder()
        .docker_config(config)
        .registry(reg.host(), settings(reg))
}

fn client(reg: &TestRegistry, config: DockerConfig) -> RegistryClient {
    builder(reg, config).build().expect("client")
}

/// `len` bytes that do not repeat within a chunk (an LCG), so a misplaced chunk changes the digest.
fn data(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// `data` as a stream of items of the given sizes (cycled), each yielding to the runtime first
/// so the body is sometimes not ready when the connection asks.
fn items(data: &Bytes, sizes: &[usize]) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let mut parts = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let end = (at + size).min(data.len());
        parts.push(data.slice(at..end));
        at = end;
    }
    futures::stream::iter(parts).then(|part| async move {
        tokio::task::yield_now().await;
        Ok(part)
    })
}

async fn fetch_blob(
    reg: &TestRegistry,
    repo: &str,
    digest: &Digest,
    token: Option<String>,
) -> Option<Vec<u8>> {
    kaniko_builder_testkit::install_crypto_provider();
    let http = kaniko_builder_testkit::reqwest_client(reg.ca_pem().as_deref()).expect("http client");
    let mut req = http.get(format!("{}/v2/{repo}/blobs/{digest}", reg.base_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("GET blob");
    match resp.status().as_u16() {
        200 => Some(resp.bytes().await.expect("body").to_vec()),
        404 => None,
        other => panic!("GET blob answered {other}"),
    }
}

/// PATCH requests the registry logged (distribution logs one line per request).
fn patches(reg: &TestRegistry) -> usize {
    reg.logs()
        .lines()
        .filter(|l| l.contains("http.request.method=PATCH") && l.contains("response completed"))
        .count()
}

#[tokio::test]
async fn a_body_of_many_items_is_streamed_in_one_patch_and_reads_back_identical() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    let c = client(&reg, DockerConfig::anonymous());
    let blob = data(5 * 1024 * 1024 + 123, 1);
    // Through the core trait, as the runner calls it.
    let digest = BlobStore::push_blob(
        &c,
        &img(&reg.host(), "team/app:v1"),
        items(&blob, &[1, 70_000, 4096, 333_333, 17]).boxed(),
    )
    .await
    .expect("streamed upload");
    assert_eq!(digest, Digest::sha256(&blob));
    assert_eq!(
        fetch_blob(&reg, "team/app", &digest, None).await,
        Some(blob.to_vec())
    );
    assert_eq!(patches(&reg), 1, "one streamed PATCH:\n{}", reg.logs());

    // An empty body is a blob too.
    let empty = c
        .push_blob_stream(&img(&reg.host(), "team/app:v1"), futures::stream::empty())
        .await
        .expect("empty upload");
    assert_eq!(empty, Digest::sha256(b""));
    assert_eq!(fetch_blob(&reg, "team/app", &empty, None).await, Some(Vec::new()));
}

#[tokio::test]
async fn token_auth_streams_with_push_scope_and_a_refusal_touches_no_byte_of_the_body() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Token).await.expect("registry");
    let c = client(
        &reg,
        DockerConfig::from_json(&reg.docker_config_json()).expect("config"),
    );
    let blob = data(1024 * 1024, 2);
    let digest = c
        .push_blob_stream(&img(&reg.host(), "team/app:v1"), items(&blob, &[64 * 1024, 1000]))
        .await
        .expect("push with credentials");
    assert_eq!(digest, Digest::sha256(&blob));
    let token = reg
        .token_for(
            "repository:team/app:pull",
            Some((TestRegistry::USERNAME, TestRegistry::PASSWORD)),
        )
        .await
        .expect("token");
    assert_eq!(
        fetch_blob(&reg, "team/app", &digest, Some(token)).await,
        Some(blob.to_vec())
    );

    // Anonymous: refused at the POST, before the body is asked for anything.
    let polled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&polled);
    let body = futures::stream::poll_fn(move |_| {
        flag.store(true, Ordering::SeqCst);
        std::task::Poll::Ready(Some(Ok(Bytes::from_static(b"x"))))
    })
    .take(10);
    let err = client(&reg, DockerConfig::anonymous())
        .push_blob_stream(&img(&reg.host(), "team/app:v1"), body)
        .await
        .expect_err("anonymous push refused");
    assert!(err.is_unauthorized(), "{err}");
    assert!(
        err.to_string().contains(&reg.host()) && err.to_string().contains("team/app"),
        "{err}"
    );
    assert!(!polled.load(Ordering::SeqCst), "the body was not touched");
}

#[tokio::test]
async fn chunked_mode_sends_one_patch_per_chunk_with_content_range() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    let chunk = 100_000;
    let c = builder(&reg, DockerConfig::anonymous())
        .upload_chunk_size(Some(chunk))
        .build()
        .expect("client");
    let mut expected_patches = 0;
    // Items that straddle chunks, items larger than a chunk, an exact multiple of the chunk size.
    for (i, (len, sizes)) in [
        (1024 * 1024 + 17, &[30_000usize, 7][..]),
        (300_000, &[250_000][..]),
        (5, &[1][..]),
    ]
    .into_iter()
    .enumerate()
    {
        let blob = data(len, 10 + i as u64);
        let digest = c
            .push_blob_stream(&img(&reg.host(), "team/chunked:v1"), items(&blob, sizes))
            .await
            .unwrap_or_else(|e| panic!("chunked upload of {len} bytes: {e}"));
        assert_eq!(digest, Digest::sha256(&blob), "{len} bytes");
        assert_eq!(
            fetch_blob(&reg, "team/chunked", &digest, None).await,
            Some(blob.to_vec())
        );
        expected_patches += len.div_ceil(chunk as usize);
    }
    assert_eq!(patches(&reg), expected_patches, "{}", reg.logs());
}

#[tokio::test]
async fn a_body_that_fails_midway_fails_the_upload_with_its_error_and_commits_nothing() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    for chunk_size in [None, Some(100_000)] {
        let c = builder(&reg, DockerConfig::anonymous())
            .upload_chunk_size(chunk_size)
            .build()
            .expect("client");
        let blob = data(300_000, 3);
        let body =
            items(&blob, &[50_000]).chain(futures::stream::iter([Err(io::Error::other("disk on fire"))]));
        let err = c
            .push_blob_stream(&img(&reg.host(), "team/app:v1"), body)
            .await
            .expect_err("the body failed");
        let Error::Body { sent, ref source, .. } = err else {
            panic!("expected Error::Body, got {err:?}");
        };
        assert_eq!(source.to_string(), "disk on fire", "{chunk_size:?}");
        assert!(sent <= 300_000, "{sent}");
        assert_eq!(err.kind(), "body");
        let msg = err.to_string();
        assert!(msg.contains(&reg.host()) && msg.contains("team/app"), "{msg}");
        // Nothing committed: neither what was sent nor the whole.
        for prefix in [&blob[..], &blob[..sent as usize]] {
            assert_eq!(
                fetch_blob(&reg, "team/app", &Digest::sha256(prefix), None).await,
                None
            );
        }
    }
}

#[tokio::test]
async fn a_body_that_goes_silent_is_a_stall_of_the_body() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    for chunk_size in [None, Some(1024 * 1024)] {
        let c = builder(&reg, DockerConfig::anonymous())
            .upload_stall_timeout(Duration::from_secs(1))
            .upload_chunk_size(chunk_size)
            .build()
            .expect("client");
        let blob = data(200_000, 4);
        let body = items(&blob, &[100_000]).chain(futures::stream::pending());
        let started = Instant::now();
        let err = c
            .push_blob_stream(&img(&reg.host(), "team/app:v1"), body)
            .await
            .expect_err("stalled");
        match &err {
            Error::Stalled {
                side: StallSide::Body,
                after,
                sent,
                ..
            } => {
                assert_eq!(*after, Duration::from_secs(1));
                // Chunked: the first chunk never filled, nothing went out.
                let expected = if chunk_size.is_some() { 0 } else { 200_000 };
                assert_eq!(*sent, expected, "{chunk_size:?}");
            }
            other => panic!("expected a stall of the body, got {other:?}"),
        }
        assert!(err.is_retryable() && err.kind() == "stalled");
        let msg = err.to_string();
        assert!(
            msg.contains(&reg.host()) && msg.contains("team/app") && msg.contains("produced no data"),
            "{msg}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_registry_that_stops_reading_is_a_stall_of_the_registry() {
    kaniko_builder_testkit::init_tracing();
    // A registry will not stop reading on demand: the stub answers the ping and the POST, and
    // sends the upload to a listener that accepts the connection and never reads from it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("address");
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            connections.push(socket);
        }
    });
    let location = format!("http://{silent_addr}/v2/team/app/blobs/uploads/abc?_state=x");
    let stub = StubServer::start(move |req: StubRequest| {
        let location = location.clone();
        async move {
            let mut b = Response::builder();
            b = match req.method.as_str() {
                "POST" => b.status(202).header("location", location),
                _ => b.status(200),
            };
            b.body(Body::empty()).expect("response")
        }
    })
    .await;
    let c = RegistryClient::builder()
        .docker_config(DockerConfig::anonymous())
        .registry(
            stub.host(),
            RegistrySettings::default()
                .plain_http(true)
                .timeout(Duration::from_secs(1)),
        )
        .upload_stall_timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    let block = Bytes::from(vec![7u8; 256 * 1024]);
    let endless = futures::stream::repeat_with(move || Ok(block.clone()));
    let started = Instant::now();
    let err = c
        .push_blob_stream(&img(&stub.host(), "team/app:v1"), endless)
        .await
        .expect_err("stalled");
    match &err {
        Error::Stalled {
            side: StallSide::Registry,
            sent,
            ..
        } => assert!(*sent > 0, "something went into the socket's buffers first"),
        other => panic!("expected a stall of the registry, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&stub.host()) && msg.contains("team/app") && msg.contains("accepted no data"),
        "{msg}"
    );
    // The stall (1 s) plus the best-effort DELETE of the session (1 s timeout): bounded.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    held.abort();
}

#[tokio::test]
async fn a_slow_but_steady_body_outlives_the_request_timeout() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    let c = RegistryClient::builder()
        .docker_config(DockerConfig::anonymous())
        .registry(
            reg.host(),
            RegistrySettings::default()
                .plain_http(true)
                .timeout(Duration::from_secs(1)),
        )
        .upload_stall_timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let blob = data(80_000, 5);
    let parts: Vec<Bytes> = blob.chunks(10_000).map(Bytes::copy_from_slice).collect();
    // 8 items 400 ms apart: 3.2 s in all, longer than the request timeout, never a stall.
    let body = futures::stream::iter(parts).then(|part| async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        Ok(part)
    });
    let started = Instant::now();
    let digest = c
        .push_blob_stream(&img(&reg.host(), "team/app:v1"), body)
        .await
        .expect("a slow upload is not a stalled one");
    assert!(
        started.elapsed() > Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(digest, Digest::sha256(&blob));
}

const MEMORY_CHILD: &str = "KB_UPLOAD_MEMORY_CHILD";
const MEMORY_REPORT: &str = "KB_UPLOAD_MEMORY_REPORT";
/// MiB streamed in the default mode, and in chunked mode (more than the bound, so a client
/// that kept the body would fail; less than 300 to save time in debug builds).
const MEMORY_MIB: [(&str, usize); 2] = [("", 300), ("8388608", 96)];
const MEMORY_LIMIT_KIB: u64 = 64 * 1024;

/// The bound: streaming 300 MiB to the registry peaks at most at 64 MiB of RSS, in a
/// child process (this test binary again, running only this test) so the figure is the upload's.
/// Default mode with 300 MiB and chunked mode (8 MiB chunks) with 96 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploading_300_mib_stays_under_64_mib_of_rss() {
    kaniko_builder_testkit::init_tracing();
    if let Ok(target) = std::env::var(MEMORY_CHILD) {
        return memory_child(&target).await;
    }
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    let dir = tempfile::tempdir().expect("temp dir");
    for (chunk, mib) in MEMORY_MIB {
        let report = dir.path().join(format!("report{chunk}"));
        let out = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "uploading_300_mib_stays_under_64_mib_of_rss",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(MEMORY_CHILD, format!("{}|{chunk}|{mib}", reg.host()))
            .env(MEMORY_REPORT, &report)
            .output()
            .await
            .expect("run the child");
        assert!(
            out.status.success(),
            "child failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let hwm: u64 = std::fs::read_to_string(&report)
            .expect("the child's report")
            .trim()
            .parse()
            .expect("KiB");
        tracing::info!(hwm_kib = hwm, chunk, mib, "peak RSS of an upload");
        assert!(
            hwm <= MEMORY_LIMIT_KIB,
            "peak RSS {hwm} KiB > {MEMORY_LIMIT_KIB} KiB uploading {mib} MiB (chunk size {chunk:?})"
        );
    }
}

/// The child's side: upload generated 1 MiB items (each a fresh allocation, so
/// anything that keeps them shows), check the registry has it all, report VmHWM.
async fn memory_child(target: &str) {
    let mut fields = target.split('|');
    let (Some(host), Some(chunk), Some(mib)) = (fields.next(), fields.next(), fields.next()) else {
        panic!("{MEMORY_CHILD} is host|chunk|mib, not {target}");
    };
    let mib: usize = mib.parse().expect("MiB");
    let c = RegistryClient::builder()
        .docker_config(DockerConfig::anonymous())
        .insecure_registry(host)
        .upload_chunk_size(chunk.parse().ok())
        .build()
        .expect("client");
    let block = data(1 << 20, 6);
    let body = futures::stream::iter(0..mib).map(move |i| {
        let mut item = block.to_vec();
        item[..8].copy_from_slice(&(i as u64).to_le_bytes());
        Ok(Bytes::from(item))
    });
    let digest = c
        .push_blob_stream(&img(host, "memory/test:v1"), body)
        .await
        .expect("upload");
    let head = kaniko_builder_testkit::reqwest_client(None)
        .expect("http client")
        .head(format!("http://{host}/v2/memory/test/blobs/{digest}"))
        .send()
        .await
        .expect("HEAD blob");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers().get("content-length").and_then(|v| v.to_str().ok()),
        Some((mib << 20).to_string().as_str())
    );
    let report = std::env::var(MEMORY_REPORT).expect("report path");
    std::fs::write(report, vm_hwm_kib(Path::new("/proc/self/status")).to_string()).expect("write report");
}

/// `VmHWM` (peak resident set) in KiB.
fn vm_hwm_kib(status: &Path) -> u64 {
    std::fs::read_to_string(status)
        .expect("read /proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}
