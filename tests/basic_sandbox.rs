//! The README's first command, `cargo run --example basic`, on a machine with no cluster
//! configured: the compiled example as a process (no `KUBECONFIG`, `HOME` and `XDG_STATE_HOME` in
//! temp dirs) starts the local sandbox, builds the bundled example, then skips it; `--keep` leaves
//! it for `kubectl`, `--stop` removes it; Ctrl-C cancels the build. No sandbox process is left
//! (checked by pid). Needs root, the Debian packages and the cached Kubernetes binaries and crane
//! (`scripts/test.sh` makes sure of them); `cargo build --examples` first.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kaniko_builder_testkit::sandbox;
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;

fn example() -> PathBuf {
    kaniko_builder_testkit::example_binary("basic")
}

/// A fresh machine, as far as the example can tell: its own HOME and XDG state dir, no cluster,
/// no docker config, no seed keys, no proxy. The binary caches stay this machine's (they take
/// minutes to build).
struct Machine {
    home: tempfile::TempDir,
    cache: PathBuf,
}

impl Machine {
    fn new() -> Machine {
        kaniko_builder_testkit::init_tracing();
        let env = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty()).map(PathBuf::from);
        let cache = env("KB_CACHE").unwrap_or_else(|| {
            env("XDG_CACHE_HOME")
                .unwrap_or_else(|| env("HOME").expect("HOME").join(".cache"))
                .join("kaniko-builder")
        });
        Machine {
            home: tempfile::tempdir().expect("temp HOME"),
            cache,
        }
    }

    fn state_home(&self) -> PathBuf {
        self.home.path().join("state")
    }

    /// Where the example keeps the sandbox.
    fn sandbox_dir(&self) -> PathBuf {
        self.state_home().join("kaniko-builder").join("sandbox")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(example());
        cmd.args(args)
            .env("HOME", self.home.path())
            .env("XDG_STATE_HOME", self.state_home())
            .env("KB_CACHE", &self.cache)
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("DOCKER_CONFIG")
            .env_remove("DOCKER_IMAGENAME")
            .env_remove("DOCKER_IMAGETAG")
            .env_remove("DOCKER_FILENAME")
            .env_remove("FORCE_BUILD");
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
            cmd.env_remove(var).env_remove(var.to_lowercase());
        }
        cmd
    }

    async fn run(&self, args: &[&str]) -> (Value, Output) {
        let out = tokio::process::Command::from(self.command(args))
            .output()
            .await
            .expect("run the basic example");
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (json, out)
    }
}

/// The pids of the sandbox the example started, from its `sandbox: ready … pids …` line.
fn started_pids(stderr: &str) -> Vec<u32> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("sandbox: ready"))
        .unwrap_or_else(|| panic!("no ready line: {stderr}"));
    let pids: Vec<u32> = line
        .rsplit_once("pids ")
        .expect("pids")
        .1
        .split_whitespace()
        .map(|p| p.parse().expect("a pid"))
        .collect();
    assert!(
        pids.len() >= 6,
        "the daemon, etcd, 3 control-plane processes, the registry: {line}"
    );
    pids
}

fn assert_gone(pids: &[u32], stderr: &str) {
    let alive: Vec<u32> = pids.iter().copied().filter(|p| sandbox::is_alive(*p)).collect();
    assert!(alive.is_empty(), "sandbox processes left: {alive:?}\n{stderr}");
}

fn assert_first_line(stderr: &str) {
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("sandbox: no cluster is configured")
            && first.contains("stand-in kubelet")
            && first.contains("buildah in place of the kaniko executor")
            && first.contains("KUBECONFIG"),
        "the first line says what runs and how to use a real cluster: {first}"
    );
}

/// No arguments, twice: built (pushed, verified, digest), then skipped with the same digest,
/// every process of the sandbox gone after each run; the JSON report as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_command_builds_then_skips_and_leaves_nothing_running() {
    let machine = Machine::new();
    let (json, out) = machine.run(&["--output", "json"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{json}\n{stderr}");
    assert_first_line(&stderr);
    assert_eq!(json["outcome"], "built", "{json}\n{stderr}");
    let image = json["image"].as_str().expect("image");
    assert!(
        image.starts_with("127.0.0.1:") && image.ends_with("/example:v1.0.0"),
        "{json}"
    );
    let digest = json["digest"].as_str().expect("digest");
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{json}");
    assert!(
        json["job"].as_str().is_some_and(|j| j.starts_with("kb-example-")),
        "{json}"
    );
    assert_eq!(json["namespace"], "kaniko");
    assert!(json["duration_ms"].is_u64());
    assert!(json["kind"].is_null() && json["decision"].is_null(), "{json}");
    assert!(
        stderr.contains("[image-builder]") && stderr.contains("==> verified"),
        "{stderr}"
    );
    assert!(stderr.contains("Jobs left in namespace kaniko: none"), "{stderr}");
    assert!(stderr.contains("sandbox: stopped"), "{stderr}");
    assert_gone(&started_pids(&stderr), &stderr);
    assert!(
        sandbox::running(&machine.sandbox_dir()).is_none(),
        "no state file of a running sandbox"
    );

    // The same command again: the registry's storage persisted in the sandbox dir.
    let (again, out) = machine.run(&["--output", "json"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{again}\n{stderr}");
    assert_first_line(&stderr);
    assert_eq!(again["outcome"], "skipped", "{again}\n{stderr}");
    assert_eq!(again["digest"], digest, "{again}");
    assert!(again["job"].is_null(), "{again}");
    assert_gone(&started_pids(&stderr), &stderr);

    // The text output of a skip names the image and the digest on stdout.
    let out = tokio::process::Command::from(machine.command(&[]))
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("skipped: 127.0.0.1:"), "{stdout}");
    assert!(stdout.contains(&format!("digest: {digest}")), "{stdout}");
    assert_gone(&started_pids(&stderr), &stderr);
}

/// `--keep` leaves the sandbox running and prints `export KUBECONFIG=…`; kubectl works through
/// it; a later run reuses it (and leaves it running); `--stop` removes it, every process gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_then_kubectl_then_stop() {
    let machine = Machine::new();
    let (json, out) = machine.run(&["--keep", "--output", "json"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{json}\n{stderr}");
    assert_eq!(json["outcome"], "built", "{json}\n{stderr}");
    let pids = started_pids(&stderr);
    let kubeconfig = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("export KUBECONFIG="))
        .unwrap_or_else(|| panic!("no export line: {stderr}"))
        .to_owned();
    assert!(
        Path::new(&kubeconfig).starts_with(machine.sandbox_dir()),
        "{kubeconfig}"
    );
    let registry = json["image"]
        .as_str()
        .expect("image")
        .split('/')
        .next()
        .expect("host");
    assert!(stderr.contains(&format!("registry: {registry}")), "{stderr}");
    assert!(pids.iter().all(|p| sandbox::is_alive(*p)), "kept: {pids:?}");

    let kubectl = |args: &[&str]| {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let jobs = kubectl(&["get", "jobs", "--all-namespaces"]);
    assert!(
        jobs.contains("No resources found"),
        "the built Job was cleaned up: {jobs}"
    );
    let nodes = kubectl(&["get", "nodes"]);
    assert!(nodes.contains("kb-node-1") && nodes.contains("Ready"), "{nodes}");

    // A later run finds the kept sandbox, through the printed KUBECONFIG too, and keeps it.
    let mut cmd = machine.command(&["--output", "json"]);
    cmd.env("KUBECONFIG", &kubeconfig);
    let out = tokio::process::Command::from(cmd).output().await.expect("run");
    let again: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let stderr2 = String::from_utf8_lossy(&out.stderr);
    assert_eq!(again["outcome"], "skipped", "{again}\n{stderr2}");
    assert_eq!(again["digest"], json["digest"]);
    assert!(stderr2.contains("using the one left running"), "{stderr2}");
    assert!(pids.iter().all(|p| sandbox::is_alive(*p)), "still kept: {pids:?}");

    let out = tokio::process::Command::from(machine.command(&["--stop"]))
        .output()
        .await
        .expect("run --stop");
    let stop_err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stop_err}");
    assert!(stop_err.contains("sandbox: stopped"), "{stop_err}");
    assert_gone(&pids, &stop_err);
    // Stopping again is not an error.
    let out = machine.command(&["--stop"]).output().expect("run --stop");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("none running"));
}

/// Ctrl-C (SIGINT) while the build runs: the build is cancelled, its Job deleted (the example
/// lists the Jobs left before it stops the sandbox), the sandbox stopped, every process gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_the_build_cleans_up_the_job_and_stops_the_sandbox() {
    let machine = Machine::new();
    let ctx = tempfile::tempdir().expect("context dir");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:1.36\nRUN echo started && sleep 120\n",
    )
    .expect("write Dockerfile");
    let mut cmd = machine.command(&["--output", "json", "--context"]);
    cmd.arg(ctx.path()).stderr(Stdio::piped()).stdout(Stdio::piped());
    let mut child = tokio::process::Command::from(cmd).spawn().expect("spawn");
    let pid = child.id().expect("pid");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut stderr = String::new();
    let reading = async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            stderr.push_str(&line);
            stderr.push('\n');
            if line.contains("[image-builder] started") {
                return true;
            }
        }
        false
    };
    let building = tokio::time::timeout(Duration::from_secs(300), reading)
        .await
        .unwrap_or(false);
    assert!(building, "the build never started: {stderr}");
    let sent = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    while let Some(line) = lines.next_line().await.expect("read stderr") {
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let out = child.wait_with_output().await.expect("wait");
    let json: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    assert_eq!(json["outcome"], "failed", "{json}\n{stderr}");
    assert_eq!(json["kind"], "cancelled", "{json}\n{stderr}");
    assert!(!out.status.success());
    assert!(stderr.contains("interrupted: cancelling the build"), "{stderr}");
    assert!(stderr.contains("Jobs left in namespace kaniko: none"), "{stderr}");
    assert!(stderr.contains("sandbox: stopped"), "{stderr}");
    assert_gone(&started_pids(&stderr), &stderr);
}
