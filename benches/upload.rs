//! Upload benchmark (issue 13): a local build context packed and streamed to a real registry,
//! next to the shell tools that do the same, side by side in one run.
//!
//! For each size (1 GiB and 4 GiB by default: incompressible random data, a few large files and
//! 20 000 small ones of 1–8 KiB, generated in a temp dir; setup, not measured), against a real
//! CNCF registry over plain HTTP on 127.0.0.1 (`TestRegistry`):
//!
//! - **(a)** pack + streaming upload with the library (`pack_stream` into
//!   `RegistryClient::push_blob_stream`), in a child process (this binary again) that reports
//!   its peak RSS (`VmHWM`); the issue's bound is 64 MiB at every size.
//! - **(b)** the upload alone, of the same pre-made `tar.gz` (the library's, from (d)): `curl -T`
//!   (`POST`, then one monolithic `PUT …&digest=` with `Content-Length`, the digest known
//!   beforehand) against the library streaming the file (`POST`, one chunked `PATCH`, `PUT`,
//!   hashing on the way), and the library in chunked mode (`upload_chunk_size`, 8 MiB).
//! - **(c)** end to end, (a) against a skopeo-style pipeline: `tar -cf - . | gzip -6 | tee
//!   >(sha256sum) | curl -T - -X PATCH`, then the `PUT` with the digest the pipeline computed.
//! - **(d)** packing alone into a file: `pack_to` against GNU `tar -cf out.tar.gz
//!   --use-compress-program='gzip -6'` (gzip's default level, the library's too).
//!
//! Every way runs under `/usr/bin/time`: wall time, and the CPU seconds of the client side (the
//! process and its children; not the registry). Throughput is the context's size (files'
//! bytes) for (a), (c) and (d), the `tar.gz`'s size for (b). Ratios are ours / peer, by
//! throughput (higher is better for us); the issue's target for (b) is at least 0.8.
//!
//! ```text
//! cargo bench --bench upload                         # 1 GiB and 4 GiB (minutes, ~20 GB of disk at 4 GiB)
//! KB_BENCH_SIZES=1G cargo bench --bench upload       # sizes: 64M, 1G, 4G, ...
//! cargo bench --bench upload -- --quick              # 64 MiB: checks the bench runs
//! KB_BENCH_ROUNDS=3 KB_BENCH_DIR=/var/tmp cargo bench --bench upload
//! ```
//!
//! Disk: the context, its `tar.gz` and GNU tar's (deleted after each measurement) under
//! `KB_BENCH_DIR` (default the temp dir), and the registry's storage in `$TMPDIR`: about five
//! times the size at the peak. Everything is removed at the end of each size.

// A benchmark's report is its output: printing the table to stdout is the point of this binary.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::{Bytes, BytesMut};
use clap::Parser;
use futures::Stream;
use kaniko_builder_context::{PackOptions, pack_stream, pack_to};
use kaniko_builder_registry::{Digest, DockerConfig, ImageRef, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::{RegistryAuth, TestRegistry, install_crypto_provider};
use tokio::io::AsyncReadExt as _;

/// The issue's bounds and targets.
const RSS_LIMIT_KIB: u64 = 64 * 1024;
const TARGET_VS_CURL: f64 = 0.8;
/// The gzip level on both sides.
const GZIP_LEVEL: u32 = 6;
/// Small files in a full-size context, and their sizes.
const SMALL_FILES: usize = 20_000;
const SMALL_MIN: usize = 1024;
const SMALL_MAX: usize = 8 * 1024;
/// Large files share the rest of the size.
const LARGE_FILES: usize = 4;
/// The size of the items the file stream reads.
const FILE_ITEM: usize = 256 << 10;
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Parser)]
#[command(about = "Pack a context and stream it to a registry, against curl, tar and gzip")]
struct Args {
    /// Context sizes, comma-separated, with K, M or G (binary units).
    #[arg(long, env = "KB_BENCH_SIZES", default_value = "1G,4G", value_delimiter = ',')]
    sizes: Vec<String>,
    /// One small size (64M), to check that the bench runs.
    #[arg(long, env = "KB_BENCH_QUICK")]
    quick: bool,
    /// Measured rounds of every way (interleaved: peer, ours).
    #[arg(long, env = "KB_BENCH_ROUNDS", default_value_t = 1)]
    rounds: usize,
    /// Where the contexts, archives and the registry's storage go (default: the temp dir).
    #[arg(long, env = "KB_BENCH_DIR")]
    dir: Option<PathBuf>,
    /// The chunk size of the chunked-mode row, MiB.
    #[arg(long, default_value_t = 8)]
    chunk_mib: u64,
    /// Internal: run one measured way in this process (see `Child`).
    #[arg(long, hide = true)]
    child: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Filters passed by `cargo bench`; ignored.
    #[arg(hide = true)]
    filter: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(io::stderr)
        .init();
    install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    if let Some(child) = &args.child {
        return runtime.block_on(Box::pin(run_child(child)));
    }
    runtime.block_on(Box::pin(run(&args)))
}

// ---------------------------------------------------------------------------------------------
// The child: one of the library's ways, alone in its process, reporting its peak RSS.

/// `pack-upload|DIR|HOST|REPO`, `file-upload|FILE|HOST|REPO|CHUNK_BYTES_OR_EMPTY`,
/// `pack-file|DIR|OUT`. Prints `RESULT <digest> <bytes> <VmHWM KiB>`.
async fn run_child(spec: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = spec.split('|').collect();
    let (digest, bytes) = match parts.as_slice() {
        ["pack-upload", dir, host, repo] => {
            let packing = pack_stream(
                PathBuf::from(dir),
                "Dockerfile".to_owned(),
                PackOptions::default().compression_level(GZIP_LEVEL),
            );
            let client = client(host, None)?;
            let image = image(host, repo)?;
            let (pushed, summary) =
                tokio::join!(client.push_blob_stream(&image, packing.body), packing.summary);
            let (pushed, summary) = (pushed?, summary?);
            ensure!(
                pushed == summary.digest,
                "pushed {pushed}, packed {}",
                summary.digest
            );
            (pushed, summary.compressed)
        }
        ["file-upload", file, host, repo, chunk] => {
            let client = client(host, chunk.parse().ok())?;
            let f = tokio::fs::File::open(file).await.context("open the tar.gz")?;
            let len = f.metadata().await?.len();
            let pushed = client
                .push_blob_stream(&image(host, repo)?, file_stream(f))
                .await?;
            (pushed, len)
        }
        ["pack-file", dir, out] => {
            let (dir, out) = (PathBuf::from(dir), PathBuf::from(out));
            let summary = tokio::task::spawn_blocking(move || {
                let file = std::fs::File::create(&out)?;
                let mut w = io::BufWriter::with_capacity(FILE_ITEM, file);
                let summary = pack_to(
                    &dir,
                    "Dockerfile",
                    &PackOptions::default().compression_level(GZIP_LEVEL),
                    &mut w,
                )?;
                w.flush()?;
                anyhow::Ok(summary)
            })
            .await??;
            (summary.digest, summary.compressed)
        }
        _ => bail!("unknown child {spec:?}"),
    };
    println!("RESULT {digest} {bytes} {}", vm_hwm_kib()?);
    Ok(())
}

fn client(host: &str, chunk: Option<u64>) -> anyhow::Result<RegistryClient> {
    Ok(RegistryClient::builder()
        .docker_config(DockerConfig::anonymous())
        .registry(host, RegistrySettings::default().plain_http(true).no_proxy())
        .upload_chunk_size(chunk)
        .build()?)
}

fn image(host: &str, repo: &str) -> anyhow::Result<ImageRef> {
    Ok(format!("{host}/{repo}:bench").parse()?)
}

/// A file as a stream of fresh 256 KiB items.
fn file_stream(file: tokio::fs::File) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold(file, |mut f| async move {
        let mut buf = BytesMut::with_capacity(FILE_ITEM);
        while buf.len() < FILE_ITEM {
            if f.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        Ok((!buf.is_empty()).then(|| (buf.freeze(), f)))
    })
}

/// This process's peak RSS, KiB.
fn vm_hwm_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmHWM in /proc/self/status")
}

// ---------------------------------------------------------------------------------------------
// The parent: setup, the ways side by side, the table.

/// One run of one way.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    wall: Duration,
    /// User + system CPU of the process and its children.
    cpu: Duration,
    /// Peak RSS: the child's own VmHWM for ours, the largest process's for the peers (KiB).
    rss_kib: u64,
}

#[derive(Debug)]
struct Row {
    way: String,
    /// Bytes the throughput is computed on.
    bytes: u64,
    samples: Vec<Sample>,
}

impl Row {
    fn new(way: impl Into<String>, bytes: u64) -> Self {
        Self {
            way: way.into(),
            bytes,
            samples: Vec::new(),
        }
    }

    fn median(&self) -> Sample {
        let mut s = self.samples.clone();
        s.sort_by_key(|s| s.wall);
        s.get(s.len() / 2).copied().unwrap_or_default()
    }

    fn mb_s(&self) -> f64 {
        self.bytes as f64 / MIB / self.median().wall.as_secs_f64().max(1e-9)
    }

    fn max_rss(&self) -> u64 {
        self.samples.iter().map(|s| s.rss_kib).max().unwrap_or_default()
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    ensure!(args.rounds > 0, "nothing to measure");
    let sizes: Vec<u64> = if args.quick {
        vec![64 << 20]
    } else {
        args.sizes
            .iter()
            .map(|s| parse_size(s))
            .collect::<anyhow::Result<_>>()?
    };
    for tool in ["curl", "tar", "gzip", "tee", "sha256sum", "bash", "/usr/bin/time"] {
        ensure!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()?
                .status
                .success(),
            "{tool} is needed"
        );
    }
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir(),
    };
    println!(
        "upload bench: sizes {}, {} round(s), gzip -{GZIP_LEVEL} on both sides, {} cores, load {}",
        sizes.iter().map(|s| human(*s)).collect::<Vec<_>>().join(", "),
        args.rounds,
        std::thread::available_parallelism().map_or(0, usize::from),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    let mut verdicts = Vec::new();
    for size in sizes {
        verdicts.extend(Box::pin(measure_size(args, &base, size)).await?);
    }
    println!();
    let failed = verdicts.iter().filter(|(ok, _)| !ok).count();
    for (ok, line) in &verdicts {
        println!("{} {line}", if *ok { "PASS" } else { "FAIL" });
    }
    ensure!(failed == 0, "{failed} check(s) failed");
    Ok(())
}

async fn measure_size(args: &Args, base: &Path, size: u64) -> anyhow::Result<Vec<(bool, String)>> {
    let work = tempfile::Builder::new()
        .prefix("kb-upload-bench-")
        .tempdir_in(base)
        .context("bench temp dir")?;
    let ctx = work.path().join("context");
    let started = Instant::now();
    let (files, content) = generate_context(&ctx, size)?;
    println!(
        "\n== {}: {files} files, {} of content, generated in {:.1} s in {}",
        human(size),
        human(content),
        started.elapsed().as_secs_f64(),
        work.path().display()
    );
    // The registry's storage is in $TMPDIR (TestRegistry's temp dir), removed when it stops.
    let reg = TestRegistry::start(RegistryAuth::Anonymous).await?;
    let host = reg.host();
    let exe = std::env::current_exe()?;
    let tgz = work.path().join("ours.tar.gz");
    let gnu = work.path().join("gnu.tar.gz");
    let tmp = work.path().join("tmp");
    std::fs::create_dir_all(&tmp)?;

    let mut pack_ours = Row::new("(d) pack: ours pack_to -> file", content);
    let mut pack_gnu = Row::new("(d) pack: GNU tar, gzip -6 -> file", content);
    let mut up_curl = Row::new("(b) upload file: curl -T (POST, PUT)", 0);
    let mut up_ours = Row::new("(b) upload file: ours, streamed PATCH", 0);
    let mut up_chunked = Row::new(
        format!("(b) upload file: ours, chunked PATCHes of {} MiB", args.chunk_mib),
        0,
    );
    let mut e2e_peer = Row::new("(c) pack+upload: tar|gzip|tee|curl", content);
    let mut e2e_ours = Row::new("(a) pack+upload: ours, pack_stream", content);
    let mut packed_digest = None;
    let mut compressed = 0;
    let chunk = args.chunk_mib << 20;

    for round in 0..args.rounds {
        // (d) packing alone; ours leaves the tar.gz that (b) uploads.
        let (s, _) = timed(
            &tmp,
            Command::new("bash").args([
                "-c",
                &format!(
                    "tar -C {} --use-compress-program='gzip -{GZIP_LEVEL}' -cf {} .",
                    sh(&ctx),
                    sh(&gnu)
                ),
            ]),
        )?;
        pack_gnu.samples.push(s);
        std::fs::remove_file(&gnu)?;
        let (s, out) = timed(
            &tmp,
            Command::new(&exe).args([
                "--child",
                &format!("pack-file|{}|{}", ctx.display(), tgz.display()),
            ]),
        )?;
        pack_ours.samples.push(s);
        let (digest, bytes) = parse_result(&out)?;
        ensure!(
            packed_digest.as_ref().is_none_or(|d| *d == digest),
            "packing is not reproducible"
        );
        packed_digest = Some(digest.clone());
        compressed = bytes;

        // (b) the same file, uploaded.
        let repo = format!("bench/b{round}");
        let script = format!(
            r#"set -eo pipefail
base=http://{host}
loc=$(curl -fsS --noproxy '*' -o /dev/null -D - -X POST "$base/v2/{repo}-curl/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
case $loc in /*) loc="$base$loc";; esac
case $loc in *\?*) sep='&';; *) sep='?';; esac
curl -fsS --noproxy '*' -o /dev/null -H 'Expect:' -H 'Content-Type: application/octet-stream' -T {file} -X PUT "$loc${{sep}}digest={digest}"
"#,
            file = sh(&tgz),
        );
        let (s, _) = timed(&tmp, Command::new("bash").args(["-c", &script]))?;
        up_curl.samples.push(s);
        for (row, chunk, suffix) in [
            (&mut up_ours, String::new(), "ours"),
            (&mut up_chunked, chunk.to_string(), "chunked"),
        ] {
            let (s, out) = timed(
                &tmp,
                Command::new(&exe).args([
                    "--child",
                    &format!("file-upload|{}|{host}|{repo}-{suffix}|{chunk}", tgz.display()),
                ]),
            )?;
            let (pushed, _) = parse_result(&out)?;
            ensure!(pushed == digest, "uploaded {pushed}, packed {digest}");
            row.samples.push(s);
        }

        // (c) end to end.
        let repo = format!("bench/c{round}");
        let script = format!(
            r#"set -eo pipefail
base=http://{host}
loc=$(curl -fsS --noproxy '*' -o /dev/null -D - -X POST "$base/v2/{repo}-pipe/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
case $loc in /*) loc="$base$loc";; esac
tar -C {ctx} -cf - . | gzip -{GZIP_LEVEL} | tee >(sha256sum | cut -d' ' -f1 > {tmp}/sum) \
  | curl -fsS --noproxy '*' -o /dev/null -D {tmp}/patch -H 'Expect:' -H 'Content-Type: application/octet-stream' -X PATCH -T - "$loc"
wait $!
test -s {tmp}/sum
loc=$(tr -d '\r' < {tmp}/patch | sed -n 's/^[Ll]ocation: //p')
case $loc in /*) loc="$base$loc";; esac
case $loc in *\?*) sep='&';; *) sep='?';; esac
curl -fsS --noproxy '*' -o /dev/null -X PUT "$loc${{sep}}digest=sha256:$(cat {tmp}/sum)"
"#,
            ctx = sh(&ctx),
            tmp = sh(&tmp),
        );
        let (s, _) = timed(&tmp, Command::new("bash").args(["-c", &script]))?;
        e2e_peer.samples.push(s);
        let (s, out) = timed(
            &tmp,
            Command::new(&exe).args([
                "--child",
                &format!("pack-upload|{}|{host}|{repo}-ours", ctx.display()),
            ]),
        )?;
        let (pushed, _) = parse_result(&out)?;
        ensure!(pushed == digest, "pack+upload gave {pushed}, pack_to {digest}");
        e2e_ours.samples.push(s);
    }
    for row in [&mut up_curl, &mut up_ours, &mut up_chunked] {
        row.bytes = compressed;
    }

    println!(
        "tar.gz {} ({}); registry {host}; MB/s = MiB/s of the context (a, c, d) or of the tar.gz (b)",
        human(compressed),
        packed_digest.map(|d| d.to_string()).unwrap_or_default()
    );
    let mut table = String::new();
    writeln!(
        table,
        "{:<50} {:>9} {:>9} {:>8} {:>10}  ratio ours/peer",
        "way", "MB/s", "wall s", "CPU s", "RSS MiB"
    )?;
    let rows: [(&Row, Option<&Row>); 7] = [
        (&up_curl, None),
        (&up_ours, Some(&up_curl)),
        (&up_chunked, Some(&up_curl)),
        (&e2e_peer, None),
        (&e2e_ours, Some(&e2e_peer)),
        (&pack_gnu, None),
        (&pack_ours, Some(&pack_gnu)),
    ];
    for (row, peer) in rows {
        let m = row.median();
        let ratio = peer.map_or(String::new(), |p| format!("{:.2}x", row.mb_s() / p.mb_s()));
        writeln!(
            table,
            "{:<50} {:>9.1} {:>9.2} {:>8.2} {:>10.1}  {ratio}",
            row.way,
            row.mb_s(),
            m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            row.max_rss() as f64 / 1024.0
        )?;
    }
    print!("{table}");

    let mut verdicts = Vec::new();
    let rss = e2e_ours.max_rss();
    verdicts.push((
        rss <= RSS_LIMIT_KIB,
        format!(
            "{}: pack+upload peak RSS {:.1} MiB (bound {} MiB)",
            human(size),
            rss as f64 / 1024.0,
            RSS_LIMIT_KIB / 1024
        ),
    ));
    let vs_curl = up_ours.mb_s() / up_curl.mb_s();
    verdicts.push((
        vs_curl >= TARGET_VS_CURL,
        format!(
            "{}: streamed upload at {vs_curl:.2}x curl's throughput (target >= {TARGET_VS_CURL}x)",
            human(size)
        ),
    ));
    drop(reg);
    Ok(verdicts)
}

/// Runs `cmd` under `/usr/bin/time`, with `TMPDIR` under the bench's dir. Fails on a non-zero
/// exit, with its output.
fn timed(tmp: &Path, cmd: &mut Command) -> anyhow::Result<(Sample, String)> {
    let report = tmp.join("time");
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(&report)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env("TMPDIR", tmp);
    let started = Instant::now();
    let out = wrapped.output().context("run a measured command")?;
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{:?} failed ({}):\n{stdout}\n{}",
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let times = std::fs::read_to_string(&report)?;
    let fields: Vec<f64> = times
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [_, user, sys, max_rss] = fields[..] else {
        bail!("unexpected /usr/bin/time output {times:?}");
    };
    // Ours report their own VmHWM; /usr/bin/time's %M is the largest single process's.
    let rss_kib = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|r| r.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or(max_rss as u64);
    Ok((
        Sample {
            wall,
            cpu: Duration::from_secs_f64(user + sys),
            rss_kib,
        },
        stdout,
    ))
}

/// `RESULT <digest> <bytes> <hwm>` from a child.
fn parse_result(out: &str) -> anyhow::Result<(Digest, u64)> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .with_context(|| format!("no RESULT line in {out:?}"))?;
    let mut f = line.split_whitespace();
    let digest = Digest::parse(f.next().unwrap_or_default())?;
    let bytes = f.next().unwrap_or_default().parse()?;
    Ok((digest, bytes))
}

/// Writes the context: a Dockerfile, [`SMALL_FILES`] files of 1–8 KiB in 100 directories (scaled
/// down for small sizes), and the rest in [`LARGE_FILES`] files, all random. Returns the number
/// of files and their total size.
fn generate_context(root: &Path, size: u64) -> anyhow::Result<(usize, u64)> {
    std::fs::create_dir_all(root)?;
    let mut rng = SplitMix(size ^ 0x6b62_7570);
    std::fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY . /ctx\n")?;
    let mut total = 0u64;
    let small = if size >= 1 << 30 {
        SMALL_FILES
    } else {
        (SMALL_FILES as u64 * size / (1 << 30)).max(100) as usize
    };
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..small {
        let dir = root.join(format!("small/d{:03}", i % 100));
        if i < 100 {
            std::fs::create_dir_all(&dir)?;
        }
        let len = SMALL_MIN + (rng.next() as usize) % (SMALL_MAX - SMALL_MIN + 1);
        rng.fill(&mut buf[..len]);
        std::fs::write(dir.join(format!("f{i:05}.bin")), &buf[..len])?;
        total += len as u64;
    }
    let rest = size.saturating_sub(total);
    for i in 0..LARGE_FILES {
        let mut left = rest / LARGE_FILES as u64 + u64::from(i == 0) * (rest % LARGE_FILES as u64);
        let mut f = io::BufWriter::new(std::fs::File::create(root.join(format!("large-{i}.bin")))?);
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            rng.fill(&mut buf[..n]);
            f.write_all(&buf[..n])?;
            left -= n as u64;
        }
        f.flush()?;
        total += rest / LARGE_FILES as u64 + u64::from(i == 0) * (rest % LARGE_FILES as u64);
    }
    Ok((small + LARGE_FILES + 1, total))
}

/// A fast PRNG (splitmix64): incompressible enough for gzip.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next().to_le_bytes());
        }
        let tail = words.into_remainder();
        let last = self.next().to_le_bytes();
        tail.copy_from_slice(&last[..tail.len()]);
    }
}

fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, shift) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = num.parse().with_context(|| format!("size {s:?}"))?;
    Ok(n << shift)
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB)
    }
}

/// `path` quoted for bash.
fn sh(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
