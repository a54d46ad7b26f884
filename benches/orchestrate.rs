//! Orchestration benchmark (issue 5), against the local control plane, the stand-in node building
//! with buildah for real, and a local registry:
//!
//! 1. **API requests per build**: every request the runner's `kube::Client` sends, counted by a
//!    tower layer on that client, per build and by kind (default cleanup policy: the Job and the
//!    ConfigMap are deleted on success).
//! 2. **Delay from the Pod's final state to `run()` returning**, next to `kubectl wait
//!    --for=condition=complete job/NAME` started on the same Job as soon as it is queued (so
//!    kubectl is already watching when the Pod ends). The Pod's final state is timed by a separate
//!    watch of the bench on the Pod (the first moment anyone can know). The Job is kept on success
//!    during this part (`delete_on_success(false)`), or kubectl would lose its Job; part 1 shows
//!    the delay with the default policy too. `run()` here is the whole core flow: the caller's
//!    probe, the runner, and the verification of the pushed digest in the registry.
//!
//! 3. **Concurrent callers of one build**: API requests for 10 callers of the same image with one
//!    shared runner (the callers share one run) against the same callers with a runner each (the
//!    peer: each runner creates the Job or attaches to it by name, and follows it itself).
//!
//! Medians over the measured builds (after one warm-up build). Nothing here polls: the runner
//! follows watches; the bench's own timing watch is a watch too.
//!
//! ```text
//! cargo bench --bench orchestrate                # 10 builds for the delay, 3 for the counts
//! KB_BENCH_BUILDS=20 cargo bench --bench orchestrate
//! ```

// A benchmark's report is its output: printing the table to stdout is the point of this binary.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{
    BuildEvent, BuildOutcome, CancellationToken, EventSink, FlowOptions, run_build,
};
use kaniko_builder_core::{BuildConfig, ImageRef};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_k8s::runner::CleanupPolicy;
use kaniko_builder_registry::{DockerConfig, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::node::{NodeOptions, StandInNode};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry, install_crypto_provider};
use kube::runtime::watcher::{self, Event};

/// The issue's target for the median delay.
const TARGET_DELAY: Duration = Duration::from_millis(50);

/// Counts the requests a `kube::Client` sends, by method and path shape.
#[derive(Clone, Default)]
struct Counter {
    total: Arc<AtomicUsize>,
    by_kind: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Counter {
    fn snapshot(&self) -> (usize, BTreeMap<String, usize>) {
        (
            self.total.load(Ordering::SeqCst),
            self.by_kind.lock().expect("lock").clone(),
        )
    }
}

/// `GET /api/v1/namespaces/x/pods?watch=true&...` → `GET pods (watch)`.
fn kind_of<B>(req: &http::Request<B>) -> String {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or_default();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    // .../namespaces/NS/RESOURCE[/NAME[/SUB]] or /api/v1/namespaces/NAME
    let resource = match parts.iter().position(|p| *p == "namespaces") {
        Some(i) if parts.len() > i + 2 => {
            let mut r = parts[i + 2].to_owned();
            if let Some(sub) = parts.get(i + 4) {
                r = format!("{r}/{sub}");
            }
            r
        }
        Some(_) => "namespaces".to_owned(),
        None => parts.last().copied().unwrap_or_default().to_owned(),
    };
    let watch = if query.contains("watch=true") {
        " (watch)"
    } else if query.contains("follow=true") {
        " (follow)"
    } else {
        ""
    };
    format!("{} {resource}{watch}", req.method())
}

#[derive(Clone)]
struct CountLayer(Counter);

impl<S> tower::Layer<S> for CountLayer {
    type Service = CountService<S>;
    fn layer(&self, inner: S) -> CountService<S> {
        CountService {
            inner,
            counter: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct CountService<S> {
    inner: S,
    counter: Counter,
}

impl<S, B> tower::Service<http::Request<B>> for CountService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> S::Future {
        self.counter.total.fetch_add(1, Ordering::SeqCst);
        *self
            .counter
            .by_kind
            .lock()
            .expect("lock")
            .entry(kind_of(&req))
            .or_default() += 1;
        self.inner.call(req)
    }
}

async fn counting_client(cluster: &TestCluster, counter: &Counter) -> anyhow::Result<kube::Client> {
    let file = kube::config::Kubeconfig::read_from(cluster.kubeconfig_path())?;
    let mut config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
    config.proxy_url = None;
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&CountLayer(counter.clone()))
        .build())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// When a Pod of `job` first shows a final phase.
async fn pod_final(client: kube::Client, ns: String, job: String) -> anyhow::Result<Instant> {
    let pods: kube::Api<Pod> = kube::Api::namespaced(client, &ns);
    let mut stream = pin!(watcher::watcher(
        pods,
        watcher::Config::default().labels(&format!("job-name={job}"))
    ));
    while let Some(event) = stream.next().await {
        if let Ok(Event::Apply(pod) | Event::InitApply(pod)) = event {
            let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
            if phase == "Succeeded" || phase == "Failed" {
                return Ok(Instant::now());
            }
        }
    }
    anyhow::bail!("pod watch ended")
}

struct Measured {
    ours: Duration,
    kubectl: Option<Duration>,
    requests: usize,
}

#[allow(clippy::too_many_arguments)]
async fn one_build(
    cluster: &TestCluster,
    registry: &TestRegistry,
    probe: &RegistryClient,
    runner: &KubeRunner,
    counter: &Counter,
    context: &std::path::Path,
    tag: &str,
    with_kubectl: bool,
) -> anyhow::Result<Measured> {
    let image: ImageRef = format!("{}/bench/app:{tag}", registry.host()).parse()?;
    let config = BuildConfig::builder(image)
        .context(ContextSource::LocalDir(context.to_owned()))
        .insecure_registry(registry.host())
        .build()?;
    // The runner names the Job after the context's files: pinned as it pins it.
    let hashed = kaniko_builder_k8s::context::hash(context, config.dockerfile(), &Default::default())?;
    let job = config.clone().with_context_digest(hashed.diff_id).job_name();
    let ns = config.namespace().to_owned();
    let final_at = tokio::spawn(pod_final(cluster.admin_client(), ns.clone(), job.clone()));
    let kubectl: Arc<Mutex<Option<tokio::task::JoinHandle<anyhow::Result<Instant>>>>> = Arc::default();
    let sink = {
        let kubectl = Arc::clone(&kubectl);
        let kubeconfig = cluster.kubeconfig_path().to_owned();
        let (job, ns) = (job.clone(), ns.clone());
        EventSink::from_fn(move |event| {
            if with_kubectl && matches!(event, BuildEvent::Queued { .. }) {
                let mut command = tokio::process::Command::new("kubectl");
                command
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(["-n", &ns, "wait", "--for=condition=complete", "--timeout=120s"])
                    .arg(format!("job/{job}"))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true);
                *kubectl.lock().expect("lock") = Some(tokio::spawn(async move {
                    let status = command.status().await?;
                    ensure!(status.success(), "kubectl wait failed: {status}");
                    Ok(Instant::now())
                }));
            }
        })
    };
    let before = counter.snapshot().0;
    let outcome = run_build(
        &config,
        probe,
        runner,
        &sink,
        &CancellationToken::new(),
        &FlowOptions::default(),
    )
    .await;
    let returned = Instant::now();
    let requests = counter.snapshot().0 - before;
    let outcome = outcome.map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(
        matches!(outcome, BuildOutcome::Built { .. }),
        "not built: {outcome:?}"
    );
    let final_at = final_at.await??;
    let kubectl = kubectl.lock().expect("lock").take();
    let kubectl = match kubectl {
        Some(task) => Some(task.await??.saturating_duration_since(final_at)),
        None => None,
    };
    if with_kubectl {
        // Kept for kubectl; removed now.
        let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> =
            kube::Api::namespaced(cluster.admin_client(), &ns);
        jobs.delete(&job, &kube::api::DeleteParams::background()).await?;
    }
    Ok(Measured {
        ours: returned.saturating_duration_since(final_at),
        kubectl,
        requests,
    })
}

async fn bench() -> anyhow::Result<()> {
    install_crypto_provider();
    // RUST_LOG=kaniko_builder_k8s=debug shows where the time goes (on stderr).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let builds: usize = std::env::var("KB_BENCH_BUILDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10)
        .max(1);
    let (cluster, registry) =
        tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Anonymous))?;
    let _node = StandInNode::start(&cluster, NodeOptions::default().registry(&registry)).await?;
    let probe = RegistryClient::builder()
        .docker_config(DockerConfig::anonymous())
        .registry(registry.host(), RegistrySettings::default().plain_http(true))
        .build()?;
    let context = tempfile::tempdir()?;
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    )?;
    std::fs::write(context.path().join("hello.txt"), "hello\n")?;

    let counter = Counter::default();
    let client = counting_client(&cluster, &counter).await?;
    let base = || {
        KubeRunner::builder(client.clone())
            .docker_config_json(registry.docker_config_json())
            .blob_store(Arc::new(probe.clone()))
    };

    // Part 1: requests per build with the default policy (first build applies the namespace).
    let runner = base().build();
    println!("== API requests per build (default cleanup policy) ==");
    let mut default_delays = Vec::new();
    for i in 0..4 {
        let (_, kinds_before) = counter.snapshot();
        let m = one_build(
            &cluster,
            &registry,
            &probe,
            &runner,
            &counter,
            context.path(),
            &format!("count{i}"),
            false,
        )
        .await
        .with_context(|| format!("count build {i}"))?;
        let (_, kinds_after) = counter.snapshot();
        let diff: Vec<String> = kinds_after
            .iter()
            .filter_map(|(k, n)| {
                let d = n - kinds_before.get(k).copied().unwrap_or_default();
                (d > 0).then(|| format!("{d}× {k}"))
            })
            .collect();
        println!(
            "build {i}{}: {} requests, delay {}: {}",
            if i == 0 { " (first in namespace)" } else { "" },
            m.requests,
            ms(m.ours),
            diff.join(", ")
        );
        if i > 0 {
            default_delays.push(m.ours);
        }
    }

    // Part 2: the delay, side by side with kubectl wait on the same Job.
    let keeping = base()
        .cleanup(CleanupPolicy::default().delete_on_success(false))
        .build();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    println!();
    println!("== Pod final state -> return, {builds} builds after a warm-up ==");
    println!("{:>5}  {:>12}  {:>22}", "build", "run()", "kubectl wait complete");
    for i in 0..=builds {
        let m = one_build(
            &cluster,
            &registry,
            &probe,
            &keeping,
            &counter,
            context.path(),
            &format!("delay{i}"),
            true,
        )
        .await
        .with_context(|| format!("delay build {i}"))?;
        let kubectl = m.kubectl.context("kubectl timing")?;
        println!(
            "{:>5}  {:>12}  {:>22}{}",
            i,
            ms(m.ours),
            ms(kubectl),
            if i == 0 { "  (warm-up)" } else { "" }
        );
        if i > 0 {
            ours.push(m.ours);
            theirs.push(kubectl);
        }
    }
    callers(&registry, &probe, &base, context.path(), &counter).await?;

    let (ours, theirs) = (median(ours), median(theirs));
    println!();
    println!(
        "median delay: run() {} | kubectl wait {} | default policy (with deletes) {}",
        ms(ours),
        ms(theirs),
        ms(median(default_delays))
    );
    println!(
        "target: < {} and below kubectl: {}",
        ms(TARGET_DELAY),
        if ours < TARGET_DELAY && ours < theirs {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

/// Part 3: requests for `CALLERS` concurrent callers of one build, shared run against a runner
/// each.
async fn callers(
    registry: &TestRegistry,
    probe: &RegistryClient,
    base: &impl Fn() -> kaniko_builder_k8s::runner::KubeRunnerBuilder,
    context: &std::path::Path,
    counter: &Counter,
) -> anyhow::Result<()> {
    const CALLERS: usize = 10;
    println!();
    println!("== {CALLERS} concurrent callers of one build: API requests ==");
    let mut totals = Vec::new();
    for (label, runners) in [("one runner, shared run", 1), ("a runner each (peer)", CALLERS)] {
        let runners: Vec<KubeRunner> = (0..runners)
            .map(|_| base().setup(kaniko_builder_k8s::runner::Setup::Never).build())
            .collect();
        let image: ImageRef = format!("{}/bench/callers:{}", registry.host(), runners.len()).parse()?;
        let config = BuildConfig::builder(image)
            .context(ContextSource::LocalDir(context.to_owned()))
            .insecure_registry(registry.host())
            .build()?;
        let before = counter.snapshot().0;
        let (sink, never, opts) = (
            EventSink::discard(),
            CancellationToken::new(),
            FlowOptions::default(),
        );
        let runs = (0..CALLERS)
            .map(|i| run_build(&config, probe, &runners[i % runners.len()], &sink, &never, &opts));
        for outcome in futures::future::join_all(runs).await {
            let outcome = outcome.map_err(|e| anyhow::anyhow!("{e}"))?;
            ensure!(
                matches!(outcome, BuildOutcome::Built { .. } | BuildOutcome::Skipped { .. }),
                "{outcome:?}"
            );
        }
        let requests = counter.snapshot().0 - before;
        println!("{label:>24}: {requests} requests");
        totals.push(requests);
    }
    println!(
        "ratio: a runner each / shared run = {:.1}",
        totals[1] as f64 / totals[0].max(1) as f64
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}
