//! `kaniko-builder-controller`: run the `ImageBuild` controller, or print its manifests.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kaniko_builder_controller::{ControllerOptions, install};

#[derive(Debug, Parser)]
#[command(version, about = "The ImageBuild controller of kaniko-builder")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller with the usual Kubernetes configuration (`$KUBECONFIG`,
    /// `~/.kube/config`, or the in-cluster ServiceAccount).
    Run(RunArgs),
    /// Print the ImageBuild CRD as YAML.
    Crd,
    /// Print everything that installs the controller (CRD, Namespace, ServiceAccount, RBAC,
    /// Deployment) as YAML for `kubectl apply -f -`.
    Install(InstallArgs),
}

#[derive(Debug, clap::Args)]
struct InstallArgs {
    /// The controller image (build it with the crate's Dockerfile; the default is a placeholder).
    #[arg(long, default_value = install::DEFAULT_IMAGE)]
    image: String,
    /// The namespace the controller runs in and elects its leader in.
    #[arg(long = "controller-namespace", default_value = install::DEFAULT_NAMESPACE)]
    controller_namespace: String,
    /// Watch only this namespace (it must exist): a Role there instead of a ClusterRole.
    #[arg(long)]
    namespace: Option<String>,
    /// A Secret name the controller may read in build namespaces (`spec.registrySecret`).
    /// Repeatable; default: docker-config-secret.
    #[arg(long = "registry-secret")]
    registry_secrets: Vec<String>,
    /// The Deployment's replicas (one works, the others stand by).
    #[arg(long, default_value_t = install::DEFAULT_REPLICAS)]
    replicas: i32,
    /// At most this many builds at once.
    #[arg(long, default_value_t = kaniko_builder_controller::DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// A registry (`host[:port]`) spoken to over plain HTTP. Repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: all).
    #[arg(long, env = "KB_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// At most this many builds at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Elect a leader through a Lease in this namespace (default: the Pod's, `$POD_NAMESPACE`);
    /// without it and without `$POD_NAMESPACE`, no election: run one replica.
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// The Lease's name. The installed Role lets the controller read and renew only the
    /// default name: another one needs that Role's `resourceNames` changed too.
    #[arg(long, default_value = "kaniko-builder-controller")]
    lease_name: String,
    /// This replica's identity in the Lease (default: `$POD_NAME`, else the host name and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease lasts without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// A registry (`host[:port]`) spoken to over plain HTTP. Repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// `HOST=FILE`: a CA (PEM file) trusted for the registry `HOST`. Repeatable.
    #[arg(long = "registry-ca")]
    registry_cas: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print(&install::crd_yaml()?);
            Ok(())
        }
        Command::Install(args) => {
            print(&install::manifests(&install_options(args))?.to_yaml()?);
            Ok(())
        }
        Command::Run(args) => run(args).await,
    }
}

#[allow(clippy::print_stdout)] // printing manifests is this command's job
fn print(yaml: &str) {
    print!("{yaml}");
}

fn install_options(args: InstallArgs) -> install::InstallOptions {
    let mut options = install::InstallOptions::default()
        .image(args.image)
        .namespace(args.controller_namespace)
        .replicas(args.replicas)
        .concurrency(args.concurrency);
    if let Some(ns) = args.namespace {
        options = options.watch_namespace(ns);
    }
    if !args.registry_secrets.is_empty() {
        options = options.registry_secrets(args.registry_secrets);
    }
    for host in args.insecure_registries {
        options = options.insecure_registry(host);
    }
    options
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let mut options = ControllerOptions::default().concurrency(args.concurrency);
    if let Some(ns) = args.namespace {
        options = options.namespace(ns);
    }
    if let Some(lease_ns) = args.lease_namespace {
        let identity = args.identity.unwrap_or_else(default_identity);
        options = options.leader_election(
            lease_ns,
            args.lease_name,
            identity,
            Duration::from_secs(args.lease_duration),
        );
    }
    for host in args.insecure_registries {
        options = options.insecure_registry(host);
    }
    for spec in args.registry_cas {
        let (host, file) = spec
            .split_once('=')
            .with_context(|| format!("--registry-ca {spec:?}: expected HOST=FILE"))?;
        let pem = std::fs::read_to_string(file).with_context(|| format!("--registry-ca: reading {file}"))?;
        options = options.registry_ca(host, pem);
    }
    let client = kaniko_builder::k8s::client::infer()
        .await
        .context("no Kubernetes configuration")?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        on_signal.cancel();
    });
    kaniko_builder_controller::run_until(client, options, shutdown).await?;
    Ok(())
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
