//! The `basic` example's local sandbox (`kaniko_builder_testkit::sandbox`): used when no cluster
//! is configured and the bundled example is built, or with `--sandbox`. It runs in a daemon
//! (this binary re-executed as `basic --sandbox-serve DIR`), so that `--keep` can leave it
//! running; without `--keep` it is stopped before the command ends (also on Ctrl-C), and the
//! daemon stops by itself should this process die first.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kaniko_builder::CancellationToken;
use kaniko_builder_testkit::sandbox::{self, DESCRIPTION, State};

use super::Args;

/// A sandbox this run builds on.
pub(crate) struct Session {
    pub(crate) state: State,
    /// This run started it (so it stops it, unless kept).
    started: bool,
    keep: bool,
    /// Fired by Ctrl-C: the build is cancelled (its Job deleted).
    pub(crate) cancel: CancellationToken,
    interrupted: Arc<AtomicBool>,
}

/// Whether a cluster is configured: `$KUBECONFIG`, `~/.kube/config`, or in a Pod.
fn cluster_configured() -> bool {
    let set = |n: &str| std::env::var_os(n).is_some_and(|v| !v.is_empty());
    set("KUBECONFIG")
        || set("KUBERNETES_SERVICE_HOST")
        || std::env::var_os("HOME").is_some_and(|h| Path::new(&h).join(".kube/config").exists())
}

/// `$KUBECONFIG` names the kubeconfig of the sandbox running in `dir`.
fn kubeconfig_is_sandbox(dir: &Path) -> Option<State> {
    let state = sandbox::running(dir)?;
    let kubeconfig = PathBuf::from(std::env::var_os("KUBECONFIG")?);
    (kubeconfig.canonicalize().ok()? == state.kubeconfig).then_some(state)
}

/// The sandbox this run uses, started when needed, or `None` (then the run goes on as without
/// one: a configured cluster, or the plan). Says so on its first line.
pub(crate) async fn open(args: &Args) -> anyhow::Result<Option<Session>> {
    let bundled = args.image.is_none() && std::env::var_os("DOCKER_IMAGENAME").is_none();
    if args.dry_run || args.no_sandbox || !(args.sandbox || bundled) {
        return Ok(None);
    }
    let dir = sandbox::default_dir()?;
    let reused = match kubeconfig_is_sandbox(&dir) {
        Some(state) => Some(state),
        None if args.sandbox || !cluster_configured() => sandbox::running(&dir),
        None => return Ok(None),
    };
    let why = if args.sandbox {
        "--sandbox".to_owned()
    } else if reused.is_some() && cluster_configured() {
        "KUBECONFIG is the sandbox's".to_owned()
    } else {
        "no cluster is configured ($KUBECONFIG unset, no ~/.kube/config, not in a Pod)".to_owned()
    };
    let missing = sandbox::missing_platform();
    if !missing.is_empty() {
        eprintln!(
            "sandbox: {why}, and the local sandbox ({DESCRIPTION}) cannot start here: it needs {}; \
             printing the plan instead. To build, point KUBECONFIG at a cluster",
            missing.join("; and ")
        );
        return Ok(None);
    }
    eprintln!(
        "sandbox: {why}: building on the local sandbox in {}: {DESCRIPTION}. To build on a real \
         cluster instead, point KUBECONFIG at it and --image at a registry it can pull from; \
         --no-sandbox prints the plan only",
        dir.display()
    );
    let cancel = CancellationToken::new();
    let interrupted = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(cancel.clone(), Arc::clone(&interrupted));
    let (state, started) = match reused {
        Some(state) => {
            eprintln!("sandbox: using the one left running (pid {})", state.pid);
            (state, false)
        }
        None => {
            let say = |line: &str| eprintln!("sandbox: {line}");
            sandbox::prepare(&say)?;
            let t = std::time::Instant::now();
            eprintln!("sandbox: starting (etcd, API server, controllers, scheduler, registry, node)");
            let mut daemon = std::process::Command::new(std::env::current_exe()?);
            // Owned by this process until `--keep` keeps it (at the end): should this process die
            // first, the daemon stops the sandbox by itself.
            daemon
                .arg("--sandbox-serve")
                .arg(&dir)
                .arg("--sandbox-owner")
                .arg(std::process::id().to_string());
            let state = tokio::select! {
                state = sandbox::spawn(daemon, &dir) => state?,
                () = cancel.cancelled() => {
                    anyhow::bail!("interrupted while the sandbox started; it stops when this process exits");
                }
            };
            let pids: Vec<String> = std::iter::once(state.pid)
                .chain(state.pids.iter().copied())
                .map(|p| p.to_string())
                .collect();
            eprintln!(
                "sandbox: ready in {:.1} s: API server {}, registry {} (plain HTTP); pids {}",
                t.elapsed().as_secs_f64(),
                state.server,
                state.registry,
                pids.join(" ")
            );
            (state, true)
        }
    };
    Ok(Some(Session {
        state,
        started,
        keep: args.keep,
        cancel,
        interrupted,
    }))
}

fn watch_ctrl_c(cancel: CancellationToken, interrupted: Arc<AtomicBool>) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        interrupted.store(true, Ordering::SeqCst);
        eprintln!("interrupted: cancelling the build (its Job is deleted), then stopping the sandbox");
        cancel.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted again: exiting now (the sandbox stops by itself)");
            std::process::exit(130);
        }
    });
}

impl Session {
    /// The image the bundled example is built as: `REGISTRY/example:v1.0.0`.
    pub(crate) fn default_image(&self) -> String {
        format!("{}/example:v1.0.0", self.state.registry)
    }

    /// A client for the sandbox's API server.
    pub(crate) async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.state.kubeconfig)?;
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        // The API server is on loopback: never through a proxy.
        config.proxy_url = None;
        Ok(kaniko_builder::k8s::client::client(config)?)
    }

    /// After the run: what is left of its Jobs, then the sandbox stopped (unless kept, or left
    /// running by an earlier `--keep`).
    pub(crate) async fn close(self, namespace: &str) {
        let interrupted = self.interrupted.load(Ordering::SeqCst);
        if let Ok(client) = self.client().await {
            let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> = kube::Api::namespaced(client, namespace);
            match jobs.list(&Default::default()).await {
                Ok(list) => {
                    let names: Vec<_> = list
                        .items
                        .iter()
                        .filter_map(|j| j.metadata.name.clone())
                        .collect();
                    eprintln!(
                        "sandbox: Jobs left in namespace {namespace}: {}",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    );
                }
                Err(e) => eprintln!("sandbox: cannot list the Jobs: {e}"),
            }
        }
        let dir = &self.state.dir;
        let keep = self.started && self.keep && !interrupted;
        if keep && let Err(e) = sandbox::keep(dir) {
            eprintln!("sandbox: {e:#}");
        }
        if self.started && !keep {
            match sandbox::stop(dir).await {
                Ok(_) => eprintln!(
                    "sandbox: stopped (the registry's storage stays in {})",
                    dir.display()
                ),
                Err(e) => eprintln!("sandbox: stopping failed: {e:#}"),
            }
        } else {
            eprintln!(
                "sandbox: still running (pid {}); for kubectl and further runs:\n  export KUBECONFIG={}\n  \
                 registry: {} (plain HTTP: --insecure-registry {})\n  stop it: cargo run --example basic -- --stop",
                self.state.pid,
                self.state.kubeconfig.display(),
                self.state.registry,
                self.state.registry,
            );
        }
    }
}

/// `--stop`: stops a kept sandbox.
pub(crate) async fn stop_main() -> ExitCode {
    let dir = match sandbox::default_dir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match sandbox::stop(&dir).await {
        Ok(Some(state)) => {
            eprintln!(
                "sandbox: stopped (pid {}); its storage stays in {}",
                state.pid,
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("sandbox: none running in {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--sandbox-serve DIR`: the daemon holding a sandbox (see `sandbox::serve`).
pub(crate) async fn serve_main(dir: &Path, owner: Option<u32>) -> ExitCode {
    match Box::pin(sandbox::serve(dir, owner)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}
