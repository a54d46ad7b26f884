//! The hidden cost of a multi-platform build (issue 14): the wall time of one two-platform build
//! (`linux/amd64` + `linux/arm64`, one Job each, in parallel, then the index) against the slower
//! of the two single-platform builds of the same context, measured side by side in one run on
//! the local control plane with two stand-in nodes (one per platform, buildah building for real)
//! and a local registry. Parallel means a ratio near 1×, not 2×.
//!
//! Every build is forced (each one builds), interleaved (amd64, arm64, both) so load drifts hit
//! all three alike; medians over `KB_BENCH_BUILDS` rounds (default 3) after one warm-up round.
//!
//! ```text
//! cargo bench --bench multiplatform
//! ```

// A benchmark's report is its output.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{BuildOutcome, CancellationToken, EventSink, FlowOptions, run_build};
use kaniko_builder_core::{BuildConfig, Platform};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_registry::{DockerConfig, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::node::{NodeOptions, StandInNode};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry, install_crypto_provider};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    install_crypto_provider();
    let rounds: usize = std::env::var("KB_BENCH_BUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let (cluster, registry) =
        tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Anonymous))?;
    let node = |name: &str, platform: &str| -> anyhow::Result<NodeOptions> {
        Ok(NodeOptions::default()
            .registry(&registry)
            .name(name)
            .platform(platform.parse()?))
    };
    let (_amd64, _arm64) = tokio::try_join!(
        StandInNode::start(&cluster, node("kb-node-amd64", "linux/amd64")?),
        StandInNode::start(&cluster, node("kb-node-arm64", "linux/arm64")?),
    )?;
    let settings = match registry.ca_pem() {
        Some(ca) => RegistrySettings::default().ca_pem(ca),
        None => RegistrySettings::default().plain_http(true),
    };
    let client = RegistryClient::builder()
        .docker_config(DockerConfig::from_json(&registry.docker_config_json())?)
        .registry(registry.host(), settings)
        .build()?;
    let runner = KubeRunner::builder(cluster.admin_client())
        .docker_config_json(registry.docker_config_json())
        .blob_store(Arc::new(client.clone()))
        .build();
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY app.txt /app.txt\n",
    )?;
    std::fs::write(dir.path().join("app.txt"), "one image, two platforms\n")?;
    let config = |tag: &str, platforms: &[&str]| -> anyhow::Result<BuildConfig> {
        let platforms: Vec<Platform> = platforms.iter().map(|p| p.parse()).collect::<Result<_, _>>()?;
        Ok(
            BuildConfig::builder(format!("{}/bench/app:{tag}", registry.host()).parse()?)
                .context(ContextSource::LocalDir(dir.path().to_owned()))
                .insecure_registry(registry.host())
                .platforms(platforms)
                .force(true)
                .build()?,
        )
    };
    let kinds = [
        ("amd64 alone", config("amd64", &["linux/amd64"])?),
        ("arm64 alone", config("arm64", &["linux/arm64"])?),
        ("both", config("both", &["linux/amd64", "linux/arm64"])?),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    for round in 0..=rounds {
        for (i, (name, config)) in kinds.iter().enumerate() {
            let started = Instant::now();
            let out = run_build(
                config,
                &client,
                &runner,
                &EventSink::discard(),
                &CancellationToken::new(),
                &FlowOptions::default(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            ensure!(matches!(out, BuildOutcome::Built { .. }), "{name}: {out:?}");
            if round > 0 {
                times[i].push(started.elapsed());
            }
        }
    }
    let [amd64, arm64, both] = [0, 1, 2].map(|i| median(times[i].clone()));
    let slower = amd64.max(arm64);
    println!("multi-platform wall time, medians of {rounds} rounds (after a warm-up):");
    println!("  linux/amd64 alone           {:>8.2} s", amd64.as_secs_f64());
    println!("  linux/arm64 alone           {:>8.2} s", arm64.as_secs_f64());
    println!("  both, one index             {:>8.2} s", both.as_secs_f64());
    println!(
        "  ratio both / slower single  {:>8.2}x  (parallel ≈ 1x; sequential would be ≈ 2x)",
        both.as_secs_f64() / slower.as_secs_f64()
    );
    Ok(())
}
