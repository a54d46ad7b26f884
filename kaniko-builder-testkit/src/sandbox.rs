//! A local sandbox a person can start: the control plane, one stand-in node and a registry on
//! 127.0.0.1, with a kubeconfig and a docker config in a directory they can see (the `basic`
//! example's default when no cluster is configured).
//!
//! What it is, plainly: a **real** API server, scheduler and controllers (with etcd:
//! [`TestCluster`]); a **stand-in kubelet** ([`StandInNode`]) that runs the build Pod's real
//! scripts with a real crane, and **buildah in place of the kaniko executor**; a real CNCF
//! distribution registry, anonymous over plain HTTP, whose storage persists in the sandbox
//! directory across runs (so a second run finds the image it pushed and skips). The base image
//! `busybox:1.36` is preloaded into the node's image store from Debian's `busybox-static`, as a
//! kubelet may have a pre-pulled image: no internet is needed.
//!
//! [`Sandbox::start`] runs it in this process; it stops when dropped or [`Sandbox::stop`]ped.
//! Processes outlive their caller through a daemon: [`serve`] (in a process of its own, e.g.
//! `basic --sandbox-serve DIR`) holds a sandbox, writes [`STATE_FILE`] once it is ready and stops
//! it on SIGTERM/SIGINT/SIGHUP or when its owner process is gone; [`spawn`] starts one and waits
//! for it, [`running`] finds one, [`stop`] signals one and waits until every process of it is gone.
//!
//! Layout of the directory (default [`default_dir`]):
//! `kubeconfig` (admin token, mode 0600), `docker/config.json` (no credentials: the registry is
//! anonymous), `registry/` (storage, config, log), `buildah/` (the node's image store),
//! `sandbox.json` (the state: pids, addresses), `sandbox.log` (the daemon's log).
//!
//! Linux only, as root (the stand-in node runs containers in mount namespaces).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::process::Child;

use crate::TestCluster;
use crate::cluster::Component;
use crate::node::{NodeOptions, StandInNode};
use crate::registry_config::{AuthConfig, render};

/// The daemon's state file in the sandbox directory, written once everything is ready.
pub const STATE_FILE: &str = "sandbox.json";
/// In the sandbox directory: the owner asked to keep the sandbox running after it exits.
pub const KEPT_FILE: &str = "kept";
/// The daemon's log (its stdout and stderr) in the sandbox directory.
pub const LOG_FILE: &str = "sandbox.log";
/// Debian packages the sandbox runs: the registry, buildah, busybox (base image and the
/// containers' shell) and etcd.
pub const PACKAGES: &[&str] = &["docker-registry", "buildah", "busybox-static", "etcd-server"];
/// The base image of the bundled example, preloaded into the node's image store.
pub const PRELOADED_BASE: &str = "docker.io/library/busybox:1.36";
/// What the sandbox is, in one sentence for people.
pub const DESCRIPTION: &str = "a real Kubernetes API server, scheduler and controllers (v1.20.2, with etcd), \
     a stand-in kubelet that runs the build Pod's real scripts with buildah in place of the kaniko \
     executor, and an anonymous plain-HTTP registry, all on 127.0.0.1";

const START_TIMEOUT: Duration = Duration::from_secs(120);

/// `$XDG_STATE_HOME/kaniko-builder/sandbox`, else `$HOME/.local/state/kaniko-builder/sandbox`.
///
/// # Errors
/// Neither variable is set.
pub fn default_dir() -> anyhow::Result<PathBuf> {
    let var = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = match (var("XDG_STATE_HOME"), var("HOME")) {
        (Some(state), _) => state,
        (None, Some(home)) => home.join(".local").join("state"),
        (None, None) => bail!("neither XDG_STATE_HOME nor HOME is set"),
    };
    Ok(base.join("kaniko-builder").join("sandbox"))
}

/// What this machine lacks for a sandbox that nothing here can install: Linux, root. Empty when
/// it can run one.
pub fn missing_platform() -> Vec<String> {
    let mut missing = Vec::new();
    if !cfg!(target_os = "linux") {
        missing.push(format!(
            "Linux (this is {}): the stand-in node uses Linux mount namespaces",
            std::env::consts::OS
        ));
        return missing;
    }
    let uid = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
    });
    if uid.as_deref() != Some("0") {
        missing.push(format!(
            "root (effective uid {}): the stand-in node mounts the containers' roots (unshare --mount)",
            uid.as_deref().unwrap_or("unknown")
        ));
    }
    missing
}

/// The [`PACKAGES`] that are not installed (`dpkg -s`).
pub fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !std::process::Command::new("dpkg")
                .args(["-s", p])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect()
}

/// Makes sure of what a sandbox needs that can be made on this machine, with the output of each
/// step on stderr as it happens: the missing [`PACKAGES`] (`apt-get update`, `apt-get install`,
/// as `scripts/test.sh` does), the Kubernetes binaries (`scripts/build-k8s.sh`, about 6 minutes
/// once) and crane (`scripts/build-crane.sh`), each only when missing. `say` gets one line per
/// step taken.
///
/// # Errors
/// A step failing; the error names the command to run by hand.
pub fn prepare(say: &dyn Fn(&str)) -> anyhow::Result<()> {
    let missing = missing_packages();
    if !missing.is_empty() {
        say(&format!("installing Debian packages: {}", missing.join(" ")));
        let update = std::process::Command::new("apt-get")
            .args(["update", "-q"])
            .stdout(Stdio::from(std::io::stderr()))
            .status()
            .context("run apt-get update")?;
        let install = std::process::Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::from(std::io::stderr()))
            .status()
            .context("run apt-get install")?;
        if !update.success() || !install.success() {
            bail!(
                "installing the packages failed; run: apt-get update && apt-get install -y {}",
                missing.join(" ")
            );
        }
    }
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    if crate::cluster::bins::Binaries::locate(None).is_err() {
        say(
            "building the Kubernetes v1.20.2 control-plane binaries once (scripts/build-k8s.sh, about 6 minutes)",
        );
        run_script(&scripts.join("build-k8s.sh"))?;
    }
    if !NodeOptions::default().crane_path().is_file() {
        say("building crane once (scripts/build-crane.sh, about a minute)");
        run_script(&scripts.join("build-crane.sh"))?;
    }
    Ok(())
}

fn run_script(script: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new(script)
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("run {}", script.display()))?;
    if !status.success() {
        bail!(
            "{} failed ({status}); run it by hand to see why",
            script.display()
        );
    }
    Ok(())
}

/// Where a running sandbox is and what it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The sandbox directory.
    pub dir: PathBuf,
    /// The process holding the sandbox (the daemon, or the process that called [`Sandbox::start`]).
    pub pid: u32,
    /// Every process of the sandbox besides `pid`: etcd, the control plane, the registry.
    pub pids: Vec<u32>,
    /// The kubeconfig (admin) for the API server.
    pub kubeconfig: PathBuf,
    /// The directory holding `config.json` for the registry (`DOCKER_CONFIG`).
    pub docker_config: PathBuf,
    /// The registry, `127.0.0.1:PORT`, plain HTTP.
    pub registry: String,
    /// The API server, `https://127.0.0.1:PORT`.
    pub server: String,
}

impl State {
    fn to_json(&self) -> Value {
        json!({
            "dir": self.dir, "pid": self.pid, "pids": self.pids, "kubeconfig": self.kubeconfig,
            "docker_config": self.docker_config, "registry": self.registry, "server": self.server,
        })
    }

    fn from_json(v: &Value) -> Option<State> {
        let path = |k: &str| v[k].as_str().map(PathBuf::from);
        Some(State {
            dir: path("dir")?,
            pid: u32::try_from(v["pid"].as_u64()?).ok()?,
            pids: v["pids"]
                .as_array()?
                .iter()
                .filter_map(|p| p.as_u64().and_then(|p| u32::try_from(p).ok()))
                .collect(),
            kubeconfig: path("kubeconfig")?,
            docker_config: path("docker_config")?,
            registry: v["registry"].as_str()?.to_owned(),
            server: v["server"].as_str()?.to_owned(),
        })
    }

    /// Reads the state file of `dir`, if any (whether its processes run or not).
    pub fn read(dir: &Path) -> Option<State> {
        let text = std::fs::read_to_string(dir.join(STATE_FILE)).ok()?;
        State::from_json(&serde_json::from_str(&text).ok()?)
    }

    /// The processes of the sandbox that still exist (the holder included).
    pub fn alive_pids(&self) -> Vec<u32> {
        std::iter::once(self.pid)
            .chain(self.pids.iter().copied())
            .filter(|p| is_alive(*p))
            .collect()
    }
}

/// Whether process `pid` exists (and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // The state follows the parenthesised command name.
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// A running sandbox held by this process. Dropping it kills everything (best effort);
/// [`Self::stop`] does it in order and waits.
#[derive(Debug)]
pub struct Sandbox {
    // Declared in stop order.
    node: Option<StandInNode>,
    cluster: Option<TestCluster>,
    registry: Child,
    state: State,
}

impl Sandbox {
    /// Starts the registry (storage in `dir/registry/storage`, kept across starts), the control
    /// plane and the stand-in node, and writes `dir/kubeconfig` and `dir/docker/config.json`.
    /// Expects what [`prepare`] makes sure of.
    ///
    /// # Errors
    /// A part failing to start (the error says which; the logs are in `dir`).
    pub async fn start(dir: &Path) -> anyhow::Result<Sandbox> {
        crate::init_tracing();
        crate::install_crypto_provider();
        let missing = missing_platform();
        if !missing.is_empty() {
            bail!("the sandbox needs {}", missing.join("; "));
        }
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        restrict(&dir, 0o700)?;
        let buildah_root = dir.join("buildah");
        let (registry, cluster, ()) = tokio::try_join!(
            start_registry(&dir),
            async { TestCluster::start().await.context("start the control plane") },
            preload(&buildah_root),
        )?;
        let (registry, host) = registry;
        let node = StandInNode::start(
            &cluster,
            NodeOptions::default()
                .insecure_registry(host.clone())
                .buildah_root(&buildah_root),
        )
        .await
        .context("start the stand-in node")?;
        let kubeconfig = dir.join("kubeconfig");
        std::fs::copy(cluster.kubeconfig_path(), &kubeconfig).context("write the kubeconfig")?;
        restrict(&kubeconfig, 0o600)?;
        let docker_config = dir.join("docker");
        std::fs::create_dir_all(&docker_config)?;
        std::fs::write(docker_config.join("config.json"), "{\"auths\":{}}\n")?;
        let pids = [
            Component::Etcd,
            Component::ApiServer,
            Component::ControllerManager,
            Component::Scheduler,
        ]
        .into_iter()
        .filter_map(|c| cluster.pid(c))
        .chain(registry.id())
        .collect();
        let state = State {
            dir,
            pid: std::process::id(),
            pids,
            kubeconfig,
            docker_config,
            registry: host,
            server: cluster.server_url().to_owned(),
        };
        Ok(Sandbox {
            node: Some(node),
            cluster: Some(cluster),
            registry,
            state,
        })
    }

    /// Where it is and what it runs.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// A client for its API server (admin).
    ///
    /// # Panics
    /// Never: the cluster is there until [`Self::stop`].
    pub fn admin_client(&self) -> kube::Client {
        self.cluster.as_ref().expect("running").admin_client()
    }

    /// Stops the node (its containers killed, its Node deleted), the control plane and the
    /// registry, and waits until their processes are gone. The directory stays (the registry's
    /// storage, the node's image store, the logs).
    ///
    /// # Errors
    /// The Node could not be deleted (everything is stopped anyway).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let node = match self.node.take() {
            Some(node) => tokio::time::timeout(Duration::from_secs(10), node.shutdown())
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the node did not stop within 10 s"))),
            None => Ok(()),
        };
        drop(self.cluster.take());
        if let Err(e) = self.registry.kill().await {
            tracing::debug!(error = %e, "registry already gone");
        }
        node
    }
}

/// Creates the buildah image store at `root` with [`PRELOADED_BASE`] in it, once.
async fn preload(root: &Path) -> anyhow::Result<()> {
    let marker = root.join(".kb-preloaded-busybox-1.36");
    if marker.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(root)?;
    crate::node::preload_busybox(root, PRELOADED_BASE)
        .await
        .context("preload the busybox base image")?;
    std::fs::write(&marker, PRELOADED_BASE)?;
    Ok(())
}

/// `docker-registry serve` on a free port, anonymous plain HTTP, storage in `dir/registry`.
async fn start_registry(dir: &Path) -> anyhow::Result<(Child, String)> {
    let base = dir.join("registry");
    let storage = base.join("storage");
    std::fs::create_dir_all(&storage)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = crate::free_port();
        let config = base.join("config.yml");
        std::fs::write(&config, render(port, &storage, None, &AuthConfig::None))?;
        let mut child = crate::registry::spawn_registry(&config, &base.join("registry.log"))?;
        let client = crate::reqwest_client(None)?;
        let url = format!("http://127.0.0.1:{port}/v2/");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                if attempt < 3 {
                    break;
                }
                bail!(
                    "the registry exited ({status}); see {}",
                    base.join("registry.log").display()
                );
            }
            if client
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok()
            {
                return Ok((child, format!("127.0.0.1:{port}")));
            }
            if Instant::now() > deadline {
                bail!("the registry did not answer {url} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Holds a sandbox in `dir` until SIGTERM, SIGINT or SIGHUP, or until process `owner` is gone
/// without having called [`keep`]:
/// the body of a daemon process (its stdout and stderr should go to [`LOG_FILE`]). Writes
/// [`STATE_FILE`] once the sandbox is ready and removes it after stopping.
///
/// # Errors
/// The sandbox failing to start.
pub async fn serve(dir: &Path, owner: Option<u32>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let state_file = dir.join(STATE_FILE);
    // A state file left by a daemon that was killed is stale.
    let _stale = std::fs::remove_file(&state_file);
    let (mut term, mut int, mut hup) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
        signal(SignalKind::hangup())?,
    );
    let kept = dir.join(KEPT_FILE);
    let _stale = std::fs::remove_file(&kept);
    let owner_gone = async {
        match owner {
            Some(pid) => {
                while is_alive(pid) {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                if kept.exists() {
                    tracing::info!("the owner exited and kept the sandbox");
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(owner_gone);
    let started = tokio::select! {
        s = Sandbox::start(dir) => s?,
        _ = term.recv() => return Ok(()),
        _ = int.recv() => return Ok(()),
        _ = hup.recv() => return Ok(()),
        () = &mut owner_gone => return Ok(()),
    };
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    std::fs::write(&tmp, started.state().to_json().to_string())?;
    std::fs::rename(&tmp, &state_file)?;
    tracing::info!(dir = %dir.display(), "sandbox ready");
    let why = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
        () = &mut owner_gone => "its owner exited",
    };
    tracing::info!("stopping the sandbox: {why}");
    let stopped = started.stop().await;
    let _gone = std::fs::remove_file(&state_file);
    stopped
}

/// Marks the sandbox of `dir` as kept: its daemon no longer stops when its owner exits (only on
/// a signal, e.g. [`stop`]).
///
/// # Errors
/// The marker cannot be written.
pub fn keep(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(dir.join(KEPT_FILE), "").context("mark the sandbox as kept")
}

/// The sandbox running in `dir`, if its daemon is alive.
pub fn running(dir: &Path) -> Option<State> {
    State::read(dir).filter(|s| is_alive(s.pid) && is_daemon(s.pid))
}

/// Whether `pid` is a sandbox daemon (its command line says `--sandbox-serve`), so a reused pid is
/// never signalled.
fn is_daemon(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"--sandbox-serve"))
}

/// Starts `daemon` (a command that runs [`serve`] for `dir`; its arguments must include
/// `--sandbox-serve`) in a process group of its own (a Ctrl-C at the terminal does not reach it),
/// with its output in `dir/`[`LOG_FILE`], and waits until it is ready.
///
/// # Errors
/// The daemon exiting before it is ready (the error holds the end of its log), or not ready in
/// two minutes (then it is stopped).
pub async fn spawn(mut daemon: std::process::Command, dir: &Path) -> anyhow::Result<State> {
    use std::os::unix::process::CommandExt as _;
    std::fs::create_dir_all(dir)?;
    let _stale = std::fs::remove_file(dir.join(STATE_FILE));
    let log_path = dir.join(LOG_FILE);
    let log = std::fs::File::create(&log_path)?;
    daemon
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    let mut child = daemon.spawn().context("start the sandbox daemon")?;
    let pid = child.id();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(state) = State::read(dir).filter(|s| s.pid == pid) {
            // Reaped by nobody else: let a thread wait for it, so it never lingers as a zombie.
            std::thread::spawn(move || child.wait());
            return Ok(state);
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            bail!(
                "the sandbox did not start ({status}); the end of {}:\n{}",
                log_path.display(),
                tail.join("\n")
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the sandbox was not ready within {START_TIMEOUT:?}; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops the sandbox daemon of `dir` (SIGTERM) and waits until every process it recorded is gone
/// (SIGKILL after 30 s). `Ok(None)` when none runs.
///
/// # Errors
/// Processes still alive after the SIGKILL.
pub async fn stop(dir: &Path) -> anyhow::Result<Option<State>> {
    let Some(state) = running(dir) else {
        return Ok(None);
    };
    signal_pid(state.pid, "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !state.alive_pids().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = state.alive_pids();
    if !left.is_empty() {
        for pid in &left {
            signal_pid(*pid, "KILL");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let left = state.alive_pids();
        if !left.is_empty() {
            bail!("sandbox processes {left:?} did not stop");
        }
    }
    let _gone = std::fs::remove_file(dir.join(STATE_FILE));
    Ok(Some(state))
}

fn signal_pid(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
    if !sent.is_ok_and(|s| s.success()) {
        tracing::debug!(pid, signal, "kill failed (already gone?)");
    }
}
