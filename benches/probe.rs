//! Probe benchmark (issue 2): 500 existing tags in a local token-auth registry, probed three ways
//! in one run, side by side.
//!
//! 1. this crate: a fresh [`RegistryClient`] per round, `probe_many` over all tags (ping and one
//!    token fetch per repository included: what a user pays), then a second call on the same
//!    client (warm: pooled connections, cached tokens);
//! 2. the floor: a bare keep-alive `HEAD` loop over one pooled reqwest client with tokens fetched
//!    beforehand (not timed), at the crate's concurrency, plus variants for information
//!    (sequential; HTTP/2);
//! 3. `skopeo inspect --format {{.Digest}}` per tag, sequentially, as a shell script would.
//!
//! Every answer is checked against the digest pushed during setup; any mismatch, miss or error
//! fails the run (non-zero exit). Pushing the images is setup and is not measured.
//!
//! ```text
//! cargo bench --bench probe                      # defaults: 10 repos x 50 tags, 5 rounds
//! cargo bench --bench probe -- --skopeo-max 0    # skip skopeo
//! RUST_LOG=reqwest=debug cargo bench --bench probe
//! ```

// A benchmark's report is its output: printing the table to stdout is the point of this binary.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use futures::{StreamExt as _, TryStreamExt as _};
use kaniko_builder::registry::{DockerConfig, RegistryClient, RegistrySettings};
use kaniko_builder::{ImageRef, Probe};
use kaniko_builder_testkit::{
    MANIFEST_ACCEPT, RegistryAuth, TestRegistry, install_crypto_provider, reqwest_client,
    rustls_client_config,
};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};

/// `RegistryClientBuilder`'s default concurrency (not exported); the floor runs at the same level.
const CRATE_DEFAULT_CONCURRENCY: usize = 32;
/// The issue's targets.
const TARGET_VS_FLOOR: f64 = 1.3;
const TARGET_VS_SKOPEO: f64 = 20.0;

#[derive(Debug, Parser)]
#[command(about = "Probe N existing tags three ways: this crate, a bare HEAD loop, skopeo")]
struct Args {
    /// Repositories to push.
    #[arg(long, default_value_t = 10)]
    repos: usize,
    /// Tags per repository.
    #[arg(long, default_value_t = 50)]
    tags: usize,
    /// Measured rounds of the fast ways (after one warm-up round).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Concurrency for the crate and the floor (default: the crate's default, 32; the crate is
    /// then built without `.concurrency()`).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Concurrent pushes during setup.
    #[arg(long, default_value_t = 16)]
    push_concurrency: usize,
    /// Run every tag through skopeo only if that is projected to take at most this long ...
    #[arg(long, default_value_t = 180)]
    skopeo_budget_secs: u64,
    /// ... otherwise this many tags (spread over all repositories), extrapolated.
    #[arg(long, default_value_t = 100)]
    skopeo_subset: usize,
    /// Hard cap on skopeo runs (0 skips skopeo).
    #[arg(long)]
    skopeo_max: Option<usize>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Filters passed by `cargo bench`; ignored.
    #[arg(hide = true)]
    filter: Vec<String>,
}

/// One pushed tag.
#[derive(Debug)]
struct Target {
    image: ImageRef,
    /// "bench/r3:t17".
    reference: String,
    /// Index into the per-repository token list.
    repo: usize,
    /// Manifest URL for the floor.
    url: String,
    /// Digest the registry stores ("sha256:…").
    digest: String,
}

/// Timings of one way.
#[derive(Debug)]
struct Row {
    way: String,
    samples: Vec<Duration>,
    /// CPU time per sample: (this process, the registry process).
    cpu: Vec<(Duration, Duration)>,
    /// Tags probed per sample.
    tags: usize,
    /// Tags the full job has (skopeo may run a subset).
    of: usize,
}

impl Row {
    fn new(way: impl Into<String>, tags: usize) -> Self {
        Self {
            way: way.into(),
            samples: Vec::new(),
            cpu: Vec::new(),
            tags,
            of: tags,
        }
    }

    fn median(&self) -> Duration {
        median(self.samples.clone())
    }

    fn record(&mut self, measured: bool, elapsed: Duration, cpu: (Duration, Duration)) {
        if measured {
            self.samples.push(elapsed);
            self.cpu.push(cpu);
        }
    }

    /// Mean CPU per tag, µs: (this process, the registry).
    fn cpu_per_tag(&self) -> (f64, f64) {
        let n = (self.cpu.len() * self.tags).max(1) as f64;
        let (me, reg) = self.cpu.iter().fold((0.0, 0.0), |(a, b), (m, r)| {
            (a + m.as_secs_f64(), b + r.as_secs_f64())
        });
        (me / n * 1e6, reg / n * 1e6)
    }

    fn min(&self) -> Duration {
        self.samples.iter().min().copied().unwrap_or_default()
    }

    /// Median per tag, seconds.
    fn per_tag(&self) -> f64 {
        self.median().as_secs_f64() / self.tags.max(1) as f64
    }

    /// Median for the full job (extrapolated when a subset ran), seconds.
    fn full_job(&self) -> f64 {
        self.per_tag() * self.of as f64
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(Box::pin(run(&args)))
}

async fn run(args: &Args) -> anyhow::Result<()> {
    ensure!(
        args.repos > 0 && args.tags > 0 && args.rounds > 0,
        "nothing to measure"
    );
    let concurrency = args.concurrency.unwrap_or(CRATE_DEFAULT_CONCURRENCY).max(1);
    let total = args.repos * args.tags;

    // ---- setup (not measured) ----
    let reg = TestRegistry::start(RegistryAuth::Token).await?;
    let host = reg.host();
    let port: u16 = host.rsplit(':').next().unwrap_or_default().parse()?;
    let ca = reg.ca_pem().context("a token registry serves TLS")?;
    let ca_dir = reg.ca_dir().context("a token registry has a CA dir")?;
    let docker_json = reg.docker_config_json();
    println!(
        "registry {host} (distribution, TLS, token auth); {} repos x {} tags = {total}; {} tokio workers on {} cores",
        args.repos,
        args.tags,
        tokio::runtime::Handle::current().metrics().num_workers(),
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    let targets = push_all(&reg, args).await?;
    let reg_pid = registry_pid();

    let creds = (TestRegistry::USERNAME, TestRegistry::PASSWORD);
    let mut tokens = Vec::with_capacity(args.repos);
    for i in 0..args.repos {
        let token = reg
            .token_for(&format!("repository:{}:pull", repo_name(i)), Some(creds))
            .await?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))?;
        value.set_sensitive(true);
        tokens.push(value);
    }
    let floor_h1 = reqwest_client(Some(&ca))?;
    let floor_h2 = {
        let mut tls = rustls_client_config(Some(&ca))?;
        // What the crate's TLS config offers (tls.rs): h2 first.
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?
    };

    // ---- the fast ways, interleaved round by round (round 0 is the warm-up) ----
    let by = if args.concurrency.is_some() {
        format!("concurrency {concurrency}")
    } else {
        format!("default concurrency ({concurrency})")
    };
    let mut cold = Row::new(format!("crate probe_many, fresh client, {by}"), total);
    let mut warm = Row::new("crate probe_many, same client again (warm)", total);
    let mut unordered = Row::new(
        format!("  diag: crate probe() x buffer_unordered({concurrency}), warm"),
        total,
    );
    let mut h1 = Row::new(format!("floor: HEAD loop, {concurrency} concurrent"), total);
    let mut h2 = Row::new(format!("  info: floor over h2, {concurrency} concurrent"), total);
    let mut seq = Row::new("  info: floor, sequential", total);
    let mut h1_version = None;
    let mut h2_version = None;
    let mut token_fetches = Vec::new();
    let mut conns = Vec::new();

    let new_client = || {
        let mut builder = RegistryClient::builder()
            .docker_config(DockerConfig::from_json(&docker_json)?)
            .registry(host.as_str(), RegistrySettings::default().ca_pem(ca.as_str()));
        if let Some(n) = args.concurrency {
            builder = builder.concurrency(n);
        }
        anyhow::Ok(builder.build()?)
    };
    let mut builds = Vec::new();
    let mut singles = Vec::new();

    for round in 0..=args.rounds {
        let measured = round > 0;
        // cold, warm, unordered, floor, floor h2 (sequential printed from `elapsed`).
        let mut round_times = [Duration::ZERO; 5];

        // 1. the crate, cold then warm on the same client.
        let tokens_before = reg.token_requests();
        let conns_before = connections_to(port);
        let cpu = Cpu::now(reg_pid.as_deref());
        let started = Instant::now();
        let client = new_client()?;
        let built = started.elapsed();
        let results = client.probe_many(targets.iter().map(|t| &t.image)).await;
        let elapsed = started.elapsed();
        check_probes(&targets, results).context("crate, cold")?;
        let fetched = reg.token_requests() - tokens_before;
        ensure!(
            fetched == args.repos,
            "a fresh client fetched {fetched} tokens for {} repositories",
            args.repos
        );
        if let (true, Some(before), Some(after)) = (measured, conns_before, connections_to(port)) {
            conns.push(after.saturating_sub(before));
        }
        round_times[0] = elapsed;
        cold.record(measured, elapsed, cpu.since(reg_pid.as_deref()));
        if measured {
            token_fetches.push(fetched);
            builds.push(built);
        }

        let tokens_before = reg.token_requests();
        let cpu = Cpu::now(reg_pid.as_deref());
        let started = Instant::now();
        let results = client.probe_many(targets.iter().map(|t| &t.image)).await;
        let elapsed = started.elapsed();
        check_probes(&targets, results).context("crate, warm")?;
        ensure!(
            reg.token_requests() == tokens_before,
            "a warm client fetched tokens again"
        );
        round_times[1] = elapsed;
        warm.record(measured, elapsed, cpu.since(reg_pid.as_deref()));

        // Diagnostic: the same warm client, probes unordered (what probe_many would be without
        // head-of-line blocking in `buffered`).
        let cpu = Cpu::now(reg_pid.as_deref());
        let started = Instant::now();
        let mut results: Vec<_> = futures::stream::iter(targets.iter().enumerate())
            .map(|(i, t)| {
                let client = &client;
                async move { (i, client.probe(&t.image).await) }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        results.sort_by_key(|(i, _)| *i);
        let elapsed = started.elapsed();
        check_probes(&targets, results.into_iter().map(|(_, r)| r).collect()).context("crate, unordered")?;
        round_times[2] = elapsed;
        unordered.record(measured, elapsed, cpu.since(reg_pid.as_deref()));
        drop(client);

        // Fixed cost of a fresh client: one probe (handshake, ping, token, HEAD).
        let started = Instant::now();
        let one = new_client()?;
        let probe = one.probe(&targets[0].image).await;
        let single = started.elapsed();
        drop(one);
        check_probes(&targets[..1], vec![probe]).context("crate, single")?;
        if measured {
            singles.push(single);
        }

        // 2. the floor.
        let cpu = Cpu::now(reg_pid.as_deref());
        let (elapsed, version) = floor(&floor_h1, &targets, &tokens, concurrency).await?;
        h1_version = Some(version);
        round_times[3] = elapsed;
        h1.record(measured, elapsed, cpu.since(reg_pid.as_deref()));
        let cpu = Cpu::now(reg_pid.as_deref());
        let (elapsed, version) = floor(&floor_h2, &targets, &tokens, concurrency).await?;
        h2_version = Some(version);
        round_times[4] = elapsed;
        h2.record(measured, elapsed, cpu.since(reg_pid.as_deref()));
        let cpu = Cpu::now(reg_pid.as_deref());
        let (elapsed, _) = floor(&floor_h1, &targets, &tokens, 1).await?;
        seq.record(measured, elapsed, cpu.since(reg_pid.as_deref()));
        println!(
            "round {round}{}: crate cold {:.1} ms, warm {:.1} ms, unordered {:.1} ms; floor {:.1} ms, h2 {:.1} ms, sequential {:.1} ms",
            if measured { "" } else { " (warm-up)" },
            ms(round_times[0]),
            ms(round_times[1]),
            ms(round_times[2]),
            ms(round_times[3]),
            ms(round_times[4]),
            ms(elapsed),
        );
    }
    if let Some(v) = h1_version {
        h1.way.push_str(&format!(" ({v:?}, one pooled client)"));
    }
    if let Some(v) = h2_version {
        h2.way = format!("  info: floor offering h2 ({v:?}), {concurrency} concurrent");
    }

    // 3. skopeo, sequentially, as a script would.
    let skopeo = run_skopeo(args, &host, &ca_dir, &targets).await?;

    // ---- report ----
    let floor_median = h1.median().as_secs_f64();
    println!();
    println!(
        "{:<64} {:>4} {:>10} {:>8} {:>10} {:>8} {:>13}",
        "way", "runs", "median ms", "min ms", "per-tag µs", "vs floor", "CPU/tag µs*"
    );
    let mut rows = vec![&cold, &warm, &unordered, &h1, &h2, &seq];
    if let Some(s) = &skopeo {
        rows.push(s);
    }
    for row in rows {
        let extrapolated = row.tags != row.of;
        let (cpu_me, cpu_reg) = row.cpu_per_tag();
        println!(
            "{:<64} {:>4} {:>10.1} {:>8} {:>10.1} {:>7.2}x {:>6.0} + {:<4.0}",
            row.way,
            row.samples.len(),
            row.full_job() * 1e3,
            if extrapolated {
                "-".to_owned()
            } else {
                format!("{:.1}", ms(row.min()))
            },
            row.per_tag() * 1e6,
            row.full_job() / floor_median,
            cpu_me,
            cpu_reg,
        );
    }
    println!(
        "* CPU per tag: this process (client, token issuer; skopeo's own CPU is not counted) + the registry process"
    );
    println!();
    println!(
        "token fetches per fresh client: {token_fetches:?} (one per repository: {}); TCP connections a fresh crate client holds after probe_many: {conns:?}",
        args.repos
    );
    println!(
        "fresh client, median: build {:.2} ms; one probe on a fresh client (connect, ping, token, HEAD) {:.1} ms; one HEAD in the sequential floor {:.2} ms",
        ms(median(builds)),
        ms(median(singles)),
        seq.median().as_secs_f64() * 1e3 / total as f64,
    );
    let vs_floor_cold = cold.median().as_secs_f64() / floor_median;
    let vs_floor_warm = warm.median().as_secs_f64() / floor_median;
    let floor_min = h1.min().as_secs_f64();
    println!(
        "crate/floor (medians): cold {vs_floor_cold:.2}x, warm {vs_floor_warm:.2}x (target <= {TARGET_VS_FLOOR}x): {}; by minimums: cold {:.2}x, warm {:.2}x",
        verdict(vs_floor_cold <= TARGET_VS_FLOOR),
        cold.min().as_secs_f64() / floor_min,
        warm.min().as_secs_f64() / floor_min,
    );
    if let Some(s) = &skopeo {
        let vs_cold = s.per_tag() / cold.per_tag();
        let vs_warm = s.per_tag() / warm.per_tag();
        println!(
            "skopeo/crate: {vs_cold:.1}x vs cold, {vs_warm:.1}x vs warm (target >= {TARGET_VS_SKOPEO}x): {}{}",
            verdict(vs_cold >= TARGET_VS_SKOPEO),
            if s.tags == s.of {
                String::new()
            } else {
                format!(
                    " [skopeo ran {} of {} tags; its total is extrapolated]",
                    s.tags, s.of
                )
            }
        );
    }
    Ok(())
}

fn repo_name(i: usize) -> String {
    format!("bench/r{i}")
}

/// Pushes every tag (distinct content, so distinct digests), `push_concurrency` at a time.
async fn push_all(reg: &TestRegistry, args: &Args) -> anyhow::Result<Vec<Target>> {
    let total = args.repos * args.tags;
    let started = Instant::now();
    let mut pushed: Vec<(usize, String)> = futures::stream::iter(0..total)
        .map(|k| async move {
            let (repo, tag) = (repo_name(k / args.tags), format!("t{}", k % args.tags));
            let content = format!("probe bench {repo}:{tag}\n");
            let digest = reg
                .push_image(&repo, &tag, content.as_bytes())
                .await
                .with_context(|| format!("push {repo}:{tag}"))?;
            anyhow::Ok((k, digest))
        })
        .buffer_unordered(args.push_concurrency.max(1))
        .try_collect()
        .await?;
    pushed.sort_by_key(|(k, _)| *k);
    println!(
        "setup: pushed {total} tags in {:.1} s ({} at a time; not measured)",
        started.elapsed().as_secs_f64(),
        args.push_concurrency
    );
    let host = reg.host();
    pushed
        .into_iter()
        .map(|(k, digest)| {
            let (repo, tag) = (repo_name(k / args.tags), format!("t{}", k % args.tags));
            Ok(Target {
                image: ImageRef::parse(&format!("{host}/{repo}:{tag}"))?,
                reference: format!("{repo}:{tag}"),
                repo: k / args.tags,
                url: format!("https://{host}/v2/{repo}/manifests/{tag}"),
                digest,
            })
        })
        .collect()
}

/// Every probe must be `Exists` with the pushed digest.
fn check_probes(
    targets: &[Target],
    results: Vec<kaniko_builder::registry::Result<Probe>>,
) -> anyhow::Result<()> {
    ensure!(
        results.len() == targets.len(),
        "{} results for {} images",
        results.len(),
        targets.len()
    );
    for (t, r) in targets.iter().zip(results) {
        let probe = r.with_context(|| format!("probe {}", t.reference))?;
        let Some(m) = probe.manifest() else {
            bail!("{} reported absent", t.reference);
        };
        ensure!(
            m.digest.to_string() == t.digest,
            "{}: probe says {}, pushed {}",
            t.reference,
            m.digest,
            t.digest
        );
    }
    Ok(())
}

/// The floor: HEAD with the four manifest types and a pre-fetched token, `concurrency` at a
/// time over one pooled client. Returns the time and the HTTP version that was spoken.
async fn floor(
    http: &reqwest::Client,
    targets: &[Target],
    tokens: &[HeaderValue],
    concurrency: usize,
) -> anyhow::Result<(Duration, reqwest::Version)> {
    let accept = HeaderValue::from_static(MANIFEST_ACCEPT);
    let started = Instant::now();
    let answers: Vec<(usize, anyhow::Result<(String, reqwest::Version)>)> =
        futures::stream::iter(targets.iter().enumerate())
            .map(|(i, t)| {
                let request = http
                    .head(&t.url)
                    .header(ACCEPT, accept.clone())
                    .header(AUTHORIZATION, tokens[t.repo].clone());
                async move { (i, head(request).await) }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let elapsed = started.elapsed();
    let mut version = None;
    for (i, answer) in answers {
        let t = &targets[i];
        let (digest, v) = answer.with_context(|| format!("floor HEAD {}", t.reference))?;
        ensure!(
            digest == t.digest,
            "floor: {} has {digest}, pushed {}",
            t.reference,
            t.digest
        );
        version = Some(v);
    }
    Ok((elapsed, version.context("no requests")?))
}

async fn head(request: reqwest::RequestBuilder) -> anyhow::Result<(String, reqwest::Version)> {
    let resp = request.send().await?;
    ensure!(resp.status() == StatusCode::OK, "HTTP {}", resp.status());
    let digest = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .context("no Docker-Content-Digest")?
        .to_owned();
    Ok((digest, resp.version()))
}

/// `skopeo inspect --format {{.Digest}}` per tag, one after the other. Runs every tag when
/// that fits the budget, else a subset spread over all repositories (reported as such).
async fn run_skopeo(
    args: &Args,
    host: &str,
    ca_dir: &Path,
    targets: &[Target],
) -> anyhow::Result<Option<Row>> {
    let cap = args.skopeo_max.unwrap_or(targets.len()).min(targets.len());
    if cap == 0 {
        println!("skopeo: skipped (--skopeo-max 0)");
        return Ok(None);
    }
    // Tag-major order: any prefix covers every repository.
    let order: Vec<usize> = (0..args.tags)
        .flat_map(|j| (0..args.repos).map(move |i| i * args.tags + j))
        .collect();
    // Warm-up run (page cache, first exec), not counted.
    skopeo_digest(host, ca_dir, &targets[order[0]]).await?;
    let budget = Duration::from_secs(args.skopeo_budget_secs);
    let mut limit = cap;
    let reg_pid = registry_pid();
    let cpu = Cpu::now(reg_pid.as_deref());
    let started = Instant::now();
    let mut done = 0;
    while done < limit {
        let t = &targets[order[done]];
        let digest = skopeo_digest(host, ca_dir, t).await?;
        ensure!(
            digest == t.digest,
            "skopeo: {} has {digest}, pushed {}",
            t.reference,
            t.digest
        );
        done += 1;
        if done == 10 && limit > args.skopeo_subset {
            let projected = started.elapsed() / 10 * u32::try_from(limit)?;
            if projected > budget {
                println!(
                    "skopeo: {limit} runs projected at {:.0} s > {} s budget: running {} and extrapolating",
                    projected.as_secs_f64(),
                    budget.as_secs(),
                    args.skopeo_subset
                );
                limit = args.skopeo_subset;
            }
        }
    }
    let elapsed = started.elapsed();
    println!("skopeo: {done} sequential runs in {:.1} s", elapsed.as_secs_f64());
    let mut row = Row::new(
        if done == targets.len() {
            "skopeo inspect --format {{.Digest}} per tag, sequential".to_owned()
        } else {
            format!(
                "skopeo inspect per tag, sequential: {done} run, x{:.0} EXTRAPOLATED",
                targets.len() as f64 / done as f64
            )
        },
        done,
    );
    row.of = targets.len();
    row.record(true, elapsed, cpu.since(reg_pid.as_deref()));
    Ok(Some(row))
}

async fn skopeo_digest(host: &str, ca_dir: &Path, t: &Target) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("skopeo")
        .args(["inspect", "--format", "{{.Digest}}", "--cert-dir"])
        .arg(ca_dir)
        .arg("--creds")
        .arg(format!("{}:{}", TestRegistry::USERNAME, TestRegistry::PASSWORD))
        .arg(format!("docker://{host}/{}", t.reference))
        .output()
        .await
        .context("run skopeo (apt-get install skopeo)")?;
    if !out.status.success() {
        bail!(
            "skopeo inspect {} failed: {}",
            t.reference,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Established TCP connections from this process to 127.0.0.1:`port` (Linux; `None` elsewhere).
fn connections_to(port: u16) -> Option<usize> {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        if let Ok(link) = std::fs::read_link(fd.path()) {
            let link = link.to_string_lossy().into_owned();
            if let Some(inode) = link.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let remote = format!("0100007F:{port:04X}");
    Some(
        table
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() > 9 && f[2] == remote && f[3] == "01" && inodes.contains(f[9]))
            .count(),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn verdict(ok: bool) -> &'static str {
    if ok { "MET" } else { "NOT MET" }
}

/// CPU time used so far by this process and by the registry process.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    me: Duration,
    registry: Duration,
}

impl Cpu {
    fn now(registry_pid: Option<&str>) -> Self {
        Self {
            me: process_cpu("self").unwrap_or_default(),
            registry: registry_pid.and_then(process_cpu).unwrap_or_default(),
        }
    }

    /// CPU used since `self`: (this process, the registry).
    fn since(self, registry_pid: Option<&str>) -> (Duration, Duration) {
        let now = Self::now(registry_pid);
        (
            now.me.saturating_sub(self.me),
            now.registry.saturating_sub(self.registry),
        )
    }
}

/// CPU time of all live threads of a process, from `/proc/PID/task/*/schedstat` (Linux).
fn process_cpu(pid: &str) -> Option<Duration> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        ns += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default();
    }
    Some(Duration::from_nanos(ns))
}

/// The pid of our `docker-registry` child process, if it can be found.
fn registry_pid() -> Option<String> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        let (comm, rest) = stat.split_once(") ")?;
        let ppid = rest.split_whitespace().nth(1)?;
        (comm.ends_with("(docker-registry") && ppid == me)
            .then(|| entry.file_name().to_string_lossy().into_owned())
    })
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    match samples.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => samples[n / 2],
        n => (samples[n / 2 - 1] + samples[n / 2]) / 2,
    }
}
