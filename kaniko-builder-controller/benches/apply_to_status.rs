//! Apply-to-status benchmark of the `ImageBuild` controller (issue 15), against the peer a user
//! has without it: `kubectl apply` of a bare Job and `kubectl wait --for=condition=complete`.
//!
//! One run, one local control plane, one TLS registry with Basic auth and one stand-in node
//! building with buildah (the controller tests' [`support::Bed`]), the controller binary running
//! with its ServiceAccount's token under the RBAC it installs with:
//!
//! 1. **Time from apply to status**, from just before `kubectl apply -f` until `kubectl wait`
//!    returns, for `KB_BENCH_BUILDS` (default 5) distinct images per peer, interleaved (A1, B1,
//!    A2, B2, …) after one warm-up pair so that noise hits both:
//!    - A, `ImageBuild`: `kubectl apply` of an ImageBuild of a blob context, then
//!      `kubectl wait --for=condition=Succeeded imagebuild/NAME`;
//!    - B, bare Job: the Job the library renders for the same build (the controller's own
//!      [`build_config`](kaniko_builder_controller::build_config), the registry Secret
//!      mounted), `kubectl apply` then `kubectl wait --for=condition=complete job/NAME`; its
//!      per-build ConfigMap and the build ServiceAccount are applied beforehand, untimed.
//!
//!    Then the skip path alone (B has none): an ImageBuild of a tag that exists, until
//!    `Succeeded` (reason `Skipped`, no Job).
//! 2. **API requests per build**, from the API server's audit log (`Metadata` level, every
//!    request once, by `auditID`) in each build's window (apply until a settle time after the
//!    wait returned, so trailing writes count): the controller's identity (its ServiceAccount),
//!    kubectl's (user agent `kubectl/…`), the controller manager's and the scheduler's (the
//!    Job controller's work, for both peers). The stand-in node plays kubelet with the admin
//!    client and no user agent: its traffic is shown apart and counted for neither; so is the
//!    controller manager's API discovery, which it repeats every 30 s whatever runs.
//!
//! Nothing is asserted about timings. The audit log needs kube-apiserver flags, which the
//! testkit adds when `KB_APISERVER_AUDIT=1`; without it, the bench runs itself again with it set.
//!
//! ```text
//! export KB_CRANE=$(scripts/build-crane.sh --print-path)
//! cargo bench -p kaniko-builder-controller --bench apply_to_status
//! KB_BENCH_BUILDS=10 cargo bench -p kaniko-builder-controller --bench apply_to_status
//! ```

// A benchmark's report is its output: the table goes to stdout, progress to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kaniko_builder::JobOptions;
use kaniko_builder_controller::{ImageBuild, ImageBuildSpec, build_config, install};
use kaniko_builder_testkit::cluster::AUDIT_LOG_ENV;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::{Bed, SECRET, blob_spec, builds, succeeded};

/// The namespace every build runs in.
const NS: &str = "bench";
/// `kubectl wait`'s own timeout: a safety net, not a target.
const WAIT_TIMEOUT: &str = "--timeout=300s";
/// After a wait returns, how long its window stays open for the writes that follow the
/// condition (Events, the Job's cleanup, the Job controller's last status).
const SETTLE: Duration = Duration::from_secs(2);

/// What one timed build was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    ImageBuild,
    BareJob,
    Skipped,
}

impl Peer {
    const ALL: [Peer; 3] = [Peer::ImageBuild, Peer::BareJob, Peer::Skipped];

    fn label(self) -> &'static str {
        match self {
            Peer::ImageBuild => "A ImageBuild (controller)",
            Peer::BareJob => "B bare Job (kubectl)",
            Peer::Skipped => "A ImageBuild, tag exists",
        }
    }
}

/// Who sent a request, as the audit log tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Sender {
    Controller,
    Kubectl,
    ControllerManager,
    Scheduler,
    Other,
    /// The stand-in node (admin client, no user agent): excluded from the counts.
    StandIn,
    /// The controller manager's API discovery (`GET /api`, `/apis/…`), every 30 s whatever
    /// runs: it lands in whichever window is open, so it is excluded from the counts.
    Discovery,
}

impl Sender {
    const COUNTED: [Sender; 5] = [
        Sender::Controller,
        Sender::Kubectl,
        Sender::ControllerManager,
        Sender::Scheduler,
        Sender::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Sender::Controller => "controller",
            Sender::Kubectl => "kubectl",
            Sender::ControllerManager => "ctrl-manager",
            Sender::Scheduler => "scheduler",
            Sender::Other => "other",
            Sender::StandIn => "node (excl.)",
            Sender::Discovery => "disc. (excl.)",
        }
    }
}

/// One timed build: its peer, its apply-to-condition time and its window (ns since the epoch).
#[derive(Debug, Clone, Copy)]
struct Timed {
    peer: Peer,
    took: Duration,
    window: (i128, i128),
}

/// One request of the audit log.
#[derive(Debug)]
struct Request {
    at: i128,
    sender: Sender,
    /// `verb resource[/subresource]`, or `verb /path` for a non-resource URL.
    what: String,
}

/// `kubectl` with the admin kubeconfig, its own discovery cache, no proxy.
struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = tokio::process::Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .kill_on_drop(true);
        kaniko_builder_testkit::clear_proxy_env(&mut command);
        let out = command.output().await.context("run kubectl")?;
        ensure!(
            out.status.success(),
            "kubectl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl apply -f file` then `kubectl wait --for=condition=C target`: how long both took,
    /// and the window they (and [`SETTLE`]) span.
    async fn apply_and_wait(
        &self,
        file: &Path,
        target: &str,
        condition: &str,
    ) -> anyhow::Result<(Duration, (i128, i128))> {
        let file = file.to_str().context("UTF-8 temp path")?;
        let start = now();
        let clock = Instant::now();
        self.run(&["-n", NS, "apply", "-f", file]).await?;
        self.run(&["-n", NS, "wait", condition, target, WAIT_TIMEOUT])
            .await?;
        let took = clock.elapsed();
        tokio::time::sleep(SETTLE).await;
        Ok((took, (start, now())))
    }
}

/// Wall-clock time in ns since the epoch, the audit log's clock.
fn now() -> i128 {
    Timestamp::now().as_nanosecond()
}

/// Everything a run needs besides the bed.
struct Run<'a> {
    bed: &'a Bed,
    kubectl: Kubectl,
    /// The manifests kubectl applies.
    files: tempfile::TempDir,
}

impl Run<'_> {
    /// Peer A: an ImageBuild `name` of `image` built from a fresh context holding `content`;
    /// returns its spec too (for the skip path).
    async fn image_build(&self, name: &str, image: &str, content: &str) -> anyhow::Result<(Timed, Value)> {
        let digest = self.bed.push_context(image, content).await?;
        let spec = blob_spec(image, &digest);
        let timed = self
            .apply_image_build(name, &spec, Peer::ImageBuild, "Built")
            .await?;
        Ok((timed, spec))
    }

    /// Applies ImageBuild `name` with `spec`, waits for `Succeeded`, then checks its reason.
    async fn apply_image_build(
        &self,
        name: &str,
        spec: &Value,
        peer: Peer,
        reason: &str,
    ) -> anyhow::Result<Timed> {
        let object = json!({
            "apiVersion": "kaniko-builder.io/v1alpha1",
            "kind": "ImageBuild",
            "metadata": { "name": name, "namespace": NS },
            "spec": spec,
        });
        let file = self.write(&format!("imagebuild-{name}.json"), &object)?;
        let target = format!("imagebuild/{name}");
        let (took, window) = self.timed(&file, &target, "--for=condition=Succeeded").await?;
        let done = builds(&self.bed.admin(), NS).get(name).await?;
        let got = succeeded(&done);
        self.bed
            .ensure(
                NS,
                got == ("True".into(), reason.into()),
                format!("{name}: {got:?}, not True/{reason}"),
            )
            .await?;
        Ok(Timed { peer, took, window })
    }

    /// Peer B: the Job the library renders for the same build, applied by kubectl; its
    /// ConfigMap and ServiceAccount first, untimed.
    async fn bare_job(&self, name: &str, image: &str, content: &str) -> anyhow::Result<Timed> {
        let digest = self.bed.push_context(image, content).await?;
        let spec: ImageBuildSpec = serde_json::from_value(blob_spec(image, &digest))?;
        let mut build = ImageBuild::new(name, spec);
        build.metadata.namespace = Some(NS.to_owned());
        let config = build_config(&build)?;
        // As the controller's runner: the namespace's registry Secret, mounted by name.
        let manifests =
            kaniko_builder::k8s::render(&config, &JobOptions::default().secret_name(SECRET), None)?;
        if let Some(account) = &manifests.service_account {
            create_if_missing(Api::<ServiceAccount>::namespaced(self.bed.admin(), NS), account).await?;
        }
        create_if_missing(
            Api::<ConfigMap>::namespaced(self.bed.admin(), NS),
            &manifests.config_map,
        )
        .await?;
        let job = config.job_name();
        let file = self.write(&format!("job-{job}.json"), &serde_json::to_value(&manifests.job)?)?;
        let (took, window) = self
            .timed(&file, &format!("job/{job}"), "--for=condition=complete")
            .await?;
        let pushed = self.bed.registry_digest(image).await?;
        ensure!(
            pushed.is_some(),
            "Job {job} completed but {image} is not in the registry"
        );
        Ok(Timed {
            peer: Peer::BareJob,
            took,
            window,
        })
    }

    /// [`Kubectl::apply_and_wait`], with the namespace's state on failure.
    async fn timed(
        &self,
        file: &Path,
        target: &str,
        condition: &str,
    ) -> anyhow::Result<(Duration, (i128, i128))> {
        match self.kubectl.apply_and_wait(file, target, condition).await {
            Ok(timed) => Ok(timed),
            Err(e) => Err(e.context(self.bed.dump(NS).await)),
        }
    }

    fn write(&self, name: &str, object: &Value) -> anyhow::Result<PathBuf> {
        let path = self.files.path().join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(object)?)?;
        Ok(path)
    }

    /// Waits until kubectl knows the CRD's schema: it validates against `/openapi/v2`, which
    /// the API server publishes a moment after the CRD is established.
    async fn wait_for_schema(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + support::WAIT;
        while self.kubectl.run(&["explain", "imagebuild.spec"]).await.is_err() {
            ensure!(
                Instant::now() < deadline,
                "kubectl never learnt the ImageBuild schema"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(())
    }
}

async fn create_if_missing<K>(api: Api<K>, object: &K) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Builds the peers interleaved, then the skip path; returns the measured builds (not the
/// warm-up pair).
async fn measure(run: &Run<'_>, n: usize) -> anyhow::Result<Vec<Timed>> {
    let mut timed = Vec::new();
    let mut specs = Vec::new();
    for i in 0..=n {
        let (a, spec) = Box::pin(run.image_build(
            &format!("a{i}"),
            &run.bed.image(&format!("bench/controller:{i}")),
            &format!("controller {i}"),
        ))
        .await
        .with_context(|| format!("ImageBuild a{i}"))?;
        let b = Box::pin(run.bare_job(
            &format!("b{i}"),
            &run.bed.image(&format!("bench/job:{i}")),
            &format!("job {i}"),
        ))
        .await
        .with_context(|| format!("bare Job b{i}"))?;
        eprintln!(
            "round {i}{}: ImageBuild {:.2} s, bare Job {:.2} s",
            if i == 0 { " (warm-up)" } else { "" },
            a.took.as_secs_f64(),
            b.took.as_secs_f64()
        );
        if i > 0 {
            timed.extend([a, b]);
            specs.push(spec);
        }
    }
    for (i, spec) in specs.iter().enumerate() {
        let s = Box::pin(run.apply_image_build(&format!("skip{}", i + 1), spec, Peer::Skipped, "Skipped"))
            .await
            .with_context(|| format!("skipped ImageBuild skip{}", i + 1))?;
        eprintln!("skip {}: {:.2} s", i + 1, s.took.as_secs_f64());
        timed.push(s);
    }
    Ok(timed)
}

/// Every request of the audit log, once each (a request has an event per stage).
fn read_audit(path: &Path, controller_user: &str) -> anyhow::Result<Vec<Request>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut seen = HashSet::new();
    let mut requests = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value = serde_json::from_str(line).context("an audit event")?;
        let id = event["auditID"].as_str().unwrap_or_default().to_owned();
        if !seen.insert(id) {
            continue;
        }
        let at = event["requestReceivedTimestamp"]
            .as_str()
            .context("requestReceivedTimestamp")?
            .parse::<Timestamp>()?
            .as_nanosecond();
        requests.push(Request {
            at,
            sender: sender(&event, controller_user),
            what: what(&event),
        });
    }
    Ok(requests)
}

fn sender(event: &Value, controller_user: &str) -> Sender {
    let user = event["user"]["username"].as_str().unwrap_or_default();
    let agent = event["userAgent"].as_str().unwrap_or_default();
    if user == controller_user {
        Sender::Controller
    } else if agent.starts_with("kubectl") {
        Sender::Kubectl
    } else if agent.starts_with("kube-controller-manager") {
        if event["objectRef"].is_null() {
            Sender::Discovery
        } else {
            Sender::ControllerManager
        }
    } else if agent.starts_with("kube-scheduler") {
        Sender::Scheduler
    } else if user == "kb-admin" && agent.is_empty() {
        // The testkit's admin client: the stand-in node (the bench's own calls are outside
        // the windows).
        Sender::StandIn
    } else {
        Sender::Other
    }
}

fn what(event: &Value) -> String {
    let verb = event["verb"].as_str().unwrap_or("?");
    let object = &event["objectRef"];
    match object["resource"].as_str() {
        Some(resource) => match object["subresource"].as_str() {
            Some(sub) => format!("{verb} {resource}/{sub}"),
            None => format!("{verb} {resource}"),
        },
        None => {
            let uri = event["requestURI"].as_str().unwrap_or("?");
            format!("{verb} {}", uri.split('?').next().unwrap_or(uri))
        }
    }
}

/// Requests per (peer, sender), and per (peer, sender, what).
#[derive(Default)]
struct Tally {
    by_sender: BTreeMap<(Peer, Sender), usize>,
    by_what: BTreeMap<(Peer, Sender), BTreeMap<String, usize>>,
}

fn tally(timed: &[Timed], requests: &[Request]) -> Tally {
    let mut t = Tally::default();
    for r in requests {
        let Some(build) = timed.iter().find(|b| (b.window.0..=b.window.1).contains(&r.at)) else {
            continue;
        };
        *t.by_sender.entry((build.peer, r.sender)).or_default() += 1;
        *t.by_what
            .entry((build.peer, r.sender))
            .or_default()
            .entry(r.what.clone())
            .or_default() += 1;
    }
    t
}

fn sorted(timed: &[Timed], peer: Peer) -> Vec<Duration> {
    let mut v: Vec<Duration> = timed.iter().filter(|t| t.peer == peer).map(|t| t.took).collect();
    v.sort();
    v
}

/// Nearest rank: the smallest value with at least `q` of the values at or below it.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn median(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn print_times(timed: &[Timed], n: usize) {
    println!();
    println!("== apply -> condition, {n} builds per peer, interleaved A/B after a warm-up pair ==");
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10}",
        "peer", "median", "p90", "min", "max"
    );
    for peer in Peer::ALL {
        let v = sorted(timed, peer);
        println!(
            "{:<28} {:>10} {:>10} {:>10} {:>10}",
            peer.label(),
            ms(median(&v)),
            ms(quantile(&v, 0.9)),
            ms(v[0]),
            ms(v[v.len() - 1])
        );
    }
    let (a, b) = (
        median(&sorted(timed, Peer::ImageBuild)),
        median(&sorted(timed, Peer::BareJob)),
    );
    println!(
        "ratio A/B of medians: {:.2}x  (A/B - 1 is the controller's overhead on a whole build)",
        a.as_secs_f64() / b.as_secs_f64()
    );
}

fn print_requests(t: &Tally, n: usize) {
    let per =
        |peer: Peer, sender: Sender| t.by_sender.get(&(peer, sender)).copied().unwrap_or(0) as f64 / n as f64;
    let total = |peer: Peer| Sender::COUNTED.iter().map(|s| per(peer, *s)).sum::<f64>();
    println!();
    println!(
        "== API requests per build (audit log, Metadata level; stand-in node and periodic discovery excluded) =="
    );
    print!("{:<28}", "peer");
    for s in Sender::COUNTED {
        print!(" {:>12}", s.label());
    }
    println!(
        " {:>8} {:>13} {:>13}",
        "total",
        Sender::StandIn.label(),
        Sender::Discovery.label()
    );
    for peer in Peer::ALL {
        print!("{:<28}", peer.label());
        for s in Sender::COUNTED {
            print!(" {:>12.1}", per(peer, s));
        }
        println!(
            " {:>8.1} {:>13.1} {:>13.1}",
            total(peer),
            per(peer, Sender::StandIn),
            per(peer, Sender::Discovery)
        );
    }
    // A's own clients are the controller and the user's kubectl; B's, kubectl alone.
    let own_a = per(Peer::ImageBuild, Sender::Controller) + per(Peer::ImageBuild, Sender::Kubectl);
    let own_b = per(Peer::BareJob, Sender::Kubectl);
    println!(
        "ratio A/B: controller / kubectl {:.2}x; controller + kubectl / kubectl {:.2}x; every counted client {:.2}x",
        per(Peer::ImageBuild, Sender::Controller) / own_b,
        own_a / own_b,
        total(Peer::ImageBuild) / total(Peer::BareJob)
    );
    for (sender, peer) in [
        (Sender::Controller, Peer::ImageBuild),
        (Sender::Controller, Peer::Skipped),
        (Sender::ControllerManager, Peer::ImageBuild),
        (Sender::ControllerManager, Peer::BareJob),
    ] {
        let mut top: Vec<(&String, &usize)> = t.by_what.get(&(peer, sender)).into_iter().flatten().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let list: Vec<String> = top
            .iter()
            .map(|(what, count)| format!("{:.1} {what}", **count as f64 / n as f64))
            .collect();
        println!(
            "{} per build, {}: {}",
            sender.label(),
            peer.label(),
            list.join(", ")
        );
    }
}

async fn bench() -> anyhow::Result<()> {
    let n: usize = std::env::var("KB_BENCH_BUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let bed = Bed::start().await?;
    let audit = bed
        .cluster
        .audit_log_path()
        .context("the cluster has no audit log")?
        .to_owned();
    let account = install::manifests(&install::InstallOptions::default())?.service_account;
    let controller_user = format!(
        "system:serviceaccount:{}:{}",
        account
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(support::SYSTEM_NAMESPACE),
        account.metadata.name.as_deref().unwrap_or_default()
    );
    bed.namespace(NS).await?;
    let run = Run {
        bed: &bed,
        kubectl: Kubectl {
            kubeconfig: bed.cluster.kubeconfig_path().to_owned(),
            cache: bed.dir.path().join("kubectl-cache"),
        },
        files: tempfile::tempdir()?,
    };
    run.wait_for_schema().await?;
    let controller = bed.controller("bench", &[])?;
    let timed = Box::pin(measure(&run, n)).await?;
    controller.stop().await?;

    let requests = read_audit(&audit, &controller_user)?;
    println!("apply_to_status: {n} builds per peer, controller as {controller_user}");
    print_times(&timed, n);
    print_requests(&tally(&timed, &requests), n);
    Ok(())
}

/// Runs the bench in this process when the API server will write an audit log, else in a
/// child with the testkit's switch set (the environment of this process is not changed).
fn main() -> anyhow::Result<()> {
    if std::env::var_os(AUDIT_LOG_ENV).is_some_and(|v| v == "1") {
        return tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(Box::pin(bench()));
    }
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(AUDIT_LOG_ENV, "1")
        .status()
        .context("run the bench with the audit log")?;
    std::process::exit(status.code().unwrap_or(1));
}
