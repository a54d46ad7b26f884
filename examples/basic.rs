//! The main job: build an image on Kubernetes with kaniko when its tag is not in the registry.
//!
//! ```text
//! cargo run --example basic                      # the bundled example (examples/seed/)
//! cargo run --example basic -- --image registry.local:5000/team/app:v1 --context ./app \
//!     --insecure-registry registry.local:5000 --output json
//! ```
//!
//! Flags fall back to the original tool's configmap keys: `DOCKER_FILENAME`, `DOCKER_IMAGENAME`,
//! `DOCKER_IMAGETAG`, `FORCE_BUILD` (`Y` forces). With a reachable cluster it runs the build with
//! its progress and log on stderr. With none configured, the bundled example runs on a local
//! sandbox (`basic/sandbox.rs`; `--keep`, `--stop`). Without a cluster (or with `--dry-run`,
//! `--no-sandbox`) it probes the registry and
//! prints the decision and the objects it would apply. When the registry cannot say whether the
//! tag exists (credentials rejected or missing, an untrusted certificate, no connection...) the
//! decision is `unknown`, with the failure's `kind`: never `build`. Exit status: 0 built, skipped
//! or planned (`skip`/`build`); 1 failed, or planned with decision `unknown`; 2 bad usage.
#![allow(clippy::print_stdout, clippy::print_stderr)] // an example prints its result

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt as _;
use kaniko_builder::registry::{DockerConfig, Error as RegistryError, RegistryClient, RegistrySettings};
use kaniko_builder::{
    Build, BuildConfig, BuildEvent, BuildOutcome, ContextSource, Decision, Error, ImageRef, Plan,
};
use serde_json::{Value, json};

#[path = "basic/sandbox.rs"]
mod sandbox;

/// The bundled example's directory.
const SEED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed");

#[derive(Parser, Debug)]
#[command(
    about = "Build an image on Kubernetes with kaniko, unless its tag already exists",
    after_help = "With no arguments: builds the bundled example (examples/seed/) as example:v1.0.0 \
                  (Docker Hub) in namespace kaniko. The cluster is found through $KUBECONFIG, \
                  ~/.kube/config or the in-cluster service account; when none is configured, the \
                  bundled example is built on a local sandbox (a real API server, scheduler and \
                  controllers, a stand-in kubelet with buildah in place of the kaniko executor, a \
                  registry; Linux and root; --keep leaves it running, --stop removes it), else the \
                  decision and the manifests are printed.\n\n\
                  The decision is skip (the tag exists), build (it does not, or --force) or \
                  unknown (the registry could not tell: the JSON `kind` says why, e.g. \
                  unauthorized, tls, unreachable). Unknown is never taken as absent.\n\n\
                  Exit status: 0 built, skipped, or planned with decision skip/build; 1 failed, \
                  or decision unknown (also for the no-argument run on a machine that cannot \
                  reach Docker Hub); 2 bad usage."
)]
struct Args {
    /// Image to build, `[registry/]name[:tag]`. Default: $DOCKER_IMAGENAME:$DOCKER_IMAGETAG,
    /// else example:v1.0.0 (Docker Hub).
    #[arg(long)]
    image: Option<String>,
    /// Local directory sent as the build context (packed, `.dockerignore` honoured). Default: the
    /// bundled example.
    #[arg(long)]
    context: Option<PathBuf>,
    /// Dockerfile, relative to the context. Default: $DOCKER_FILENAME, else Dockerfile
    /// (example.dockerfile for the bundled example).
    #[arg(long, env = "DOCKER_FILENAME")]
    dockerfile: Option<String>,
    /// Build even when the tag exists (the seed's FORCE_BUILD=Y).
    #[arg(long, env = "FORCE_BUILD", value_parser = parse_force, default_value = "N", num_args = 0..=1, default_missing_value = "Y")]
    force: bool,
    /// Platforms to build, comma-separated (`linux/amd64,linux/arm64`): one Job per platform on
    /// a node of that platform, in parallel, then one image index under the tag. Default:
    /// $DOCKER_PLATFORMS, else one image for the build node's platform.
    #[arg(long, env = "DOCKER_PLATFORMS", value_parser = parse_platforms, default_value = "")]
    platform: Platforms,
    /// Namespace of the build's objects.
    #[arg(long, default_value = "kaniko")]
    namespace: String,
    /// A docker config.json (or a directory holding one). Only the destination registry's
    /// credentials go into the build's Secret. Default: $DOCKER_CONFIG, ~/.docker.
    #[arg(long)]
    docker_config: Option<PathBuf>,
    /// A registry (host:port) spoken to over plain HTTP, here and by kaniko. Repeatable.
    #[arg(long)]
    insecure_registry: Vec<String>,
    /// Extra CA certificate (PEM) this process trusts for every registry.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Probe and print the decision and the objects, touching nothing on the cluster.
    #[arg(long)]
    dry_run: bool,
    /// `text` for people, `json` for scripts (one object on stdout).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    output: String,
    /// Give up on the build after this many seconds (the Job is deleted).
    #[arg(long, value_parser = |s: &str| s.parse::<u64>().map(Duration::from_secs))]
    timeout: Option<Duration>,
    /// Build on the local sandbox (a real API server, scheduler and controllers, a stand-in
    /// kubelet with buildah in place of the kaniko executor, a registry; Linux, root), also when a
    /// cluster is configured. It is the default for the bundled example when none is.
    #[arg(long, conflicts_with_all = ["no_sandbox", "dry_run"])]
    sandbox: bool,
    /// Never start the local sandbox: without a cluster, print the plan.
    #[arg(long)]
    no_sandbox: bool,
    /// Leave the sandbox running afterwards (prints `export KUBECONFIG=…`); `--stop` removes it.
    #[arg(long)]
    keep: bool,
    /// Stop the sandbox left running by `--keep`, and exit.
    #[arg(long, exclusive = true)]
    stop: bool,
    /// Internal: hold a sandbox in this directory (the daemon `--keep` leaves running).
    #[arg(long, hide = true)]
    sandbox_serve: Option<PathBuf>,
    /// Internal: the process the daemon stops with.
    #[arg(long, hide = true)]
    sandbox_owner: Option<u32>,
}

/// `--platform`'s value.
#[derive(Debug, Clone, Default)]
struct Platforms(Vec<kaniko_builder::Platform>);

fn parse_platforms(v: &str) -> Result<Platforms, String> {
    kaniko_builder::core::config::seed::parse_platforms(v)
        .map(Platforms)
        .map_err(|e| e.to_string())
}

fn parse_force(v: &str) -> Result<bool, String> {
    match v.trim() {
        "Y" | "y" | "yes" | "true" | "1" => Ok(true),
        "N" | "n" | "no" | "false" | "0" | "" => Ok(false),
        other => Err(format!("FORCE_BUILD must be Y or N, not {other:?}")),
    }
}

/// What the tool prints on stdout with `--output json`.
#[derive(Default)]
struct Report {
    outcome: &'static str,
    decision: Option<&'static str>,
    image: Option<String>,
    digest: Option<String>,
    job: Option<String>,
    namespace: Option<String>,
    duration_ms: u128,
    reason: Option<String>,
    kind: Option<&'static str>,
}

impl Report {
    fn json(&self) -> Value {
        json!({
            "outcome": self.outcome, "decision": self.decision, "image": self.image,
            "digest": self.digest, "job": self.job, "namespace": self.namespace,
            "duration_ms": self.duration_ms, "reason": self.reason, "kind": self.kind,
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(dir) = &args.sandbox_serve {
        return Box::pin(sandbox::serve_main(dir, args.sandbox_owner)).await;
    }
    if args.stop {
        return sandbox::stop_main().await;
    }
    let json = args.output == "json";
    let started = Instant::now();
    let mut report = Box::pin(run(&args)).await.unwrap_or_else(|e| Report {
        outcome: "failed",
        reason: Some(chain(&e)),
        kind: Some(e.downcast_ref::<Error>().map(Error::kind).unwrap_or_else(|| {
            e.downcast_ref::<RegistryError>()
                .map_or("invalid_input", RegistryError::kind)
        })),
        ..Report::default()
    });
    report.duration_ms = started.elapsed().as_millis();
    if json {
        println!("{}", report.json());
    } else {
        match (report.outcome, &report.reason) {
            ("failed", Some(r)) => eprintln!("error: {r}"),
            (o, r) => {
                println!("{o}: {}", report.image.as_deref().unwrap_or("-"));
                if let Some(d) = report.decision {
                    println!("decision: {d}");
                }
                if let Some(d) = &report.digest {
                    println!("digest: {d}");
                }
                if let Some(k) = report.kind {
                    println!("kind: {k}");
                }
                if let Some(r) = r {
                    println!("reason: {r}");
                }
            }
        }
    }
    report.exit_code()
}

impl Report {
    /// 0 for a result (built, skipped, a plan that decided); 1 for a failure or a plan that could
    /// not decide. (Bad usage exits 2, from clap.)
    fn exit_code(&self) -> ExitCode {
        if self.outcome == "failed" || self.decision == Some(UNKNOWN) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// The plan's decision when the registry could not say whether the tag exists.
const UNKNOWN: &str = "unknown";

fn chain(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

fn config(args: &Args, sandbox: Option<&sandbox::Session>) -> anyhow::Result<BuildConfig> {
    let image: ImageRef = match &args.image {
        Some(i) => i.parse()?,
        None if std::env::var_os("DOCKER_IMAGENAME").is_some() => {
            let seed = kaniko_builder::k8s::seed::from_env(None)?;
            seed.into_builder().build()?.image().clone()
        }
        None => match sandbox {
            Some(s) => s.default_image().parse()?,
            None => "example:v1.0.0".parse()?,
        },
    };
    let (context, default_file) = match &args.context {
        Some(dir) => (dir.clone(), "Dockerfile"),
        None => (PathBuf::from(SEED_DIR), "example.dockerfile"),
    };
    let mut b = BuildConfig::builder(image)
        .context(ContextSource::LocalDir(context))
        .dockerfile(args.dockerfile.clone().unwrap_or_else(|| default_file.to_owned()))
        .force(args.force)
        .platforms(args.platform.0.clone())
        .namespace(args.namespace.clone());
    for host in &args.insecure_registry {
        b = b.insecure_registry(host.clone());
    }
    if let Some(s) = sandbox {
        b = b.insecure_registry(s.state.registry.clone());
    }
    Ok(b.build()?)
}

/// The run, on the local sandbox when there is no cluster (see `basic/sandbox.rs`), which is
/// stopped afterwards (unless kept), whatever the outcome.
async fn run(args: &Args) -> anyhow::Result<Report> {
    let Some(session) = sandbox::open(args).await? else {
        return Box::pin(run_on(args, None)).await;
    };
    let report = Box::pin(run_on(args, Some(&session))).await;
    session.close(&args.namespace).await;
    report
}

async fn run_on(args: &Args, sandbox: Option<&sandbox::Session>) -> anyhow::Result<Report> {
    let config = config(args, sandbox)?;
    let image = config.image().to_string();
    let namespace = config.namespace().to_owned();
    let docker = match (&args.docker_config, sandbox) {
        (Some(path), _) => DockerConfig::from_path(path)?,
        (None, Some(s)) => DockerConfig::from_path(&s.state.docker_config)?,
        (None, None) => DockerConfig::load_default()?,
    };
    let mut build = Build::new(config);
    if let Some(ca) = &args.ca_cert {
        let settings = RegistrySettings::default().ca_pem(std::fs::read_to_string(ca)?);
        let mut client = RegistryClient::builder()
            .docker_config(docker)
            .default_settings(settings);
        for host in &args.insecure_registry {
            client = client.insecure_registry(host.clone());
        }
        build = build.registry_client(client.build()?);
    } else {
        build = build.docker_config(docker);
    }
    if let Some(t) = args.timeout {
        build = build.timeout(t);
    }
    if let Some(s) = sandbox {
        build = build.cancellation(s.cancel.clone());
    }
    let base = Report {
        image: Some(image),
        namespace: Some(namespace),
        ..Report::default()
    };

    // The skip needs no cluster: probe first, as `run()` would, and only then look for one.
    let planned = build.plan().await;
    if !args.dry_run
        && let Ok(plan) = &planned
        && let Decision::Skip { digest } = &plan.decision
    {
        eprintln!("{}: exists as {digest}; nothing to build", plan.image);
        return Ok(Report {
            outcome: "skipped",
            digest: Some(digest.to_string()),
            reason: Some("the tag exists in the registry".to_owned()),
            ..base
        });
    }
    let cluster = if args.dry_run {
        Err("--dry-run".to_owned())
    } else if let Some(s) = sandbox {
        s.client().await.map_err(|e| format!("the sandbox: {e:#}"))
    } else {
        find_cluster().await
    };
    let client = match cluster {
        Ok(client) => client,
        Err(why) => return plan(args, &build, planned, base, &why),
    };
    eprintln!(
        "cluster: found; building in namespace {}",
        build.config().namespace()
    );
    let mut events = build.events();
    let printer = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            print_event(&event);
        }
    });
    let result = build.kube_client(client).run().await;
    let _ = printer.await;
    Ok(match result {
        Ok(outcome) => Report {
            outcome: match outcome {
                BuildOutcome::Skipped { .. } => "skipped",
                _ => "built",
            },
            digest: Some(outcome.digest().to_string()),
            job: job_of(&outcome),
            reason: Some(match &outcome {
                BuildOutcome::Skipped { .. } => "the tag exists in the registry".to_owned(),
                _ => "built, pushed and verified".to_owned(),
            }),
            ..base
        },
        Err(e) => Report {
            outcome: "failed",
            job: e.build_failure().and_then(|f| f.job()).map(|j| j.name.clone()),
            kind: Some(e.kind()),
            reason: Some(error_chain(&e)),
            ..base
        },
    })
}

fn job_of(outcome: &BuildOutcome) -> Option<String> {
    match outcome {
        BuildOutcome::Built { job, .. } => Some(job.name.clone()),
        BuildOutcome::Skipped { job, .. } => job.as_ref().map(|j| j.name.clone()),
        _ => None,
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

/// A client for a cluster that answers, or why there is none.
async fn find_cluster() -> Result<kube::Client, String> {
    let client = kaniko_builder::k8s::client::infer()
        .await
        .map_err(|e| error_chain(&e))?;
    match tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(format!("the API server did not answer: {}", error_chain(&e))),
        Err(_) => Err("the API server did not answer within 5 s".to_owned()),
    }
}

/// No cluster (or `--dry-run`): the probe's decision and the objects a run would apply. When the
/// registry could not tell whether the tag exists, the decision is `unknown`, with the error's kind
/// and text: error is not absent.
fn plan(
    args: &Args,
    build: &Build,
    planned: kaniko_builder::Result<Plan>,
    base: Report,
    why: &str,
) -> anyhow::Result<Report> {
    if why != "--dry-run" {
        eprintln!("no cluster: {why}");
        eprintln!(
            "  point KUBECONFIG at a kubeconfig (or run in a Pod with a service account) to build; \
             printing the plan instead"
        );
    }
    let (decision, digest, kind, reason, yaml, hint) = match planned {
        Ok(plan) => {
            let (digest, reason) = match (&plan.decision, &plan.existing) {
                (Decision::Skip { digest }, _) => (
                    Some(digest.to_string()),
                    "the tag exists in the registry".to_owned(),
                ),
                (_, Some(d)) => (
                    Some(d.to_string()),
                    "the tag exists, but the build is forced".to_owned(),
                ),
                _ => (None, "the tag does not exist in the registry".to_owned()),
            };
            let yaml = plan.to_yaml_redacted()?;
            (plan.decision.as_str(), digest, None, reason, yaml, None)
        }
        // The probe could not tell (credentials, TLS, network, the registry itself): say so.
        Err(Error::Registry(e)) if !e.is_config() => {
            let registry = build.config().image().registry().to_owned();
            let reason = format!("cannot tell whether the tag exists: {}", error_chain(&e));
            let hint = hint(args, &registry, e.kind());
            let config = build.config();
            let yaml = if config.platforms().is_empty() {
                kaniko_builder::k8s::render(config, &Default::default(), None)?.to_yaml()?
            } else {
                let jobs =
                    kaniko_builder::k8s::manifest::render_platforms(config, &Default::default(), None)?;
                kaniko_builder::k8s::manifest::platforms_to_yaml(&jobs)?
            };
            (UNKNOWN, None, Some(e.kind()), reason, yaml, Some(hint))
        }
        Err(e) => return Err(e.into()),
    };
    if decision == UNKNOWN {
        eprintln!(
            "--- objects a run would apply if the tag were absent (kubectl apply -f -); no Secret: \
             the decision is unknown ---"
        );
    } else {
        eprintln!("--- objects a run would apply (kubectl apply -f -); Secret values redacted ---");
    }
    eprint!("{yaml}");
    // Last, where a person at a terminal sees it.
    match kind {
        Some(kind) => eprintln!("decision: {decision}, {kind} ({reason})"),
        None => eprintln!("decision: {decision} ({reason})"),
    }
    if let Some(hint) = hint {
        eprintln!("  {hint}");
    }
    Ok(Report {
        outcome: "planned",
        decision: Some(decision),
        digest,
        kind,
        reason: Some(reason),
        ..base
    })
}

/// What to try when the probe of `registry` failed with `kind`.
fn hint(args: &Args, registry: &str, kind: &str) -> String {
    let bundled = args.image.is_none() && std::env::var_os("DOCKER_IMAGENAME").is_none();
    let fix = match kind {
        "unauthorized" | "denied" => format!(
            "the registry wants credentials that work: pass --docker-config with a config.json \
             holding an entry for {registry} (docker login / skopeo login write one)"
        ),
        "tls" => format!(
            "the certificate of {registry} is not trusted here: pass --ca-cert with its CA (PEM), \
             or --insecure-registry {registry} if it speaks plain HTTP"
        ),
        "unreachable" | "timeout" | "transport" if bundled => format!(
            "this is the bundled example, aimed at Docker Hub ({registry}), which this machine \
             cannot reach; point it at a registry it can reach: --image HOST/REPO:TAG (and \
             --insecure-registry HOST for plain HTTP), and at a cluster with KUBECONFIG"
        ),
        "unreachable" | "timeout" | "transport" => format!(
            "is {registry} up and reachable from here? (--insecure-registry {registry} for plain \
             HTTP)"
        ),
        _ => "the registry's answer is above; retry later, or check the registry".to_owned(),
    };
    format!("{fix}; the decision stays unknown rather than guessing build")
}

fn print_event(event: &BuildEvent) {
    match event {
        BuildEvent::Log { container, line } => eprintln!("  [{container}] {line}"),
        other => {
            let v = serde_json::to_value(other).unwrap_or_default();
            let step = v["event"].as_str().unwrap_or("event").to_owned();
            let mut detail = v;
            if let Some(o) = detail.as_object_mut() {
                o.remove("event");
            }
            let detail = if detail.as_object().is_some_and(|o| !o.is_empty()) {
                detail.to_string()
            } else {
                String::new()
            };
            eprintln!("==> {step} {detail}");
        }
    }
}
