//! The whole program behind a proxy: the compiled `basic` example run as a process with the
//! proxy variables (a real `tinyproxy`, [`TestProxy`], in front of a real TLS registry), and
//! [`Build::run`]'s warning event for a kubeconfig with `insecure-skip-tls-verify`, in a child
//! process (this test binary again) because `KUBECONFIG` and the variables are process-wide.
//! `cargo test` does not build the plain example binary: `scripts/test.sh` runs `cargo build
//! --examples` first.

use std::path::{Path, PathBuf};

use futures::StreamExt as _;
use kaniko_builder::{Build, BuildConfig, BuildEvent, BuildOutcome, ContextSource, ImageRef};
use kaniko_builder_testkit::{RegistryAuth, TestProxy, TestRegistry};
use serde_json::Value;

/// Environment variables for a child: (name, value).
type Vars<'a> = &'a [(&'a str, &'a str)];

fn example() -> PathBuf {
    kaniko_builder_testkit::example_binary("basic")
}

/// `cmd` without any proxy variable or cluster, then with `vars`.
fn isolated(cmd: &mut tokio::process::Command, vars: &[(&str, &str)]) {
    cmd.env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST");
    kaniko_builder_testkit::clear_proxy_env(cmd);
    cmd.envs(vars.iter().copied());
}

/// The skip path of the `basic` example (probe only, no cluster) against a TLS registry, with
/// the proxy variables: `HTTPS_PROXY`/`https_proxy` carry the probe (CONNECT to the registry's
/// port in tinyproxy's log), `NO_PROXY`/`no_proxy` naming the host bypass the proxy (no new
/// log line), and `HTTP_PROXY` is not for an HTTPS registry.
#[tokio::test]
async fn the_basic_example_honours_the_proxy_variables() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let registry = TestRegistry::start(RegistryAuth::Basic).await?;
    let digest = registry.push_image("team/app", "v1", b"hello").await?;
    let port: u16 = registry.host().rsplit(':').next().expect("port").parse()?;
    let proxy = TestProxy::start(&[port]).await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("config.json"), registry.docker_config_json())?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, registry.ca_pem().expect("tls"))?;
    let image = format!("{}/team/app:v1", registry.host());
    let url = proxy.url();
    let connect = format!("CONNECT {} HTTP/1.1", registry.host());
    #[rustfmt::skip]
    let cases: &[(&str, Vars<'_>, bool)] = &[
        ("HTTPS_PROXY", &[("HTTPS_PROXY", &url)], true),
        ("https_proxy", &[("https_proxy", &url)], true),
        ("HTTPS_PROXY, NO_PROXY=127.0.0.1", &[("HTTPS_PROXY", &url), ("NO_PROXY", "127.0.0.1")], false),
        ("https_proxy, no_proxy=localhost,127.0.0.1", &[("https_proxy", &url), ("no_proxy", "localhost,127.0.0.1")], false),
        ("HTTP_PROXY only", &[("HTTP_PROXY", &url)], false),
    ];
    for (what, vars, proxied) in cases {
        let before = proxy.requests().len();
        let mut cmd = tokio::process::Command::new(example());
        cmd.args(["--image", &image, "--output", "json", "--ca-cert"])
            .arg(&ca)
            .arg("--docker-config")
            .arg(dir.path());
        isolated(&mut cmd, vars);
        let out = cmd.output().await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let json: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {stderr}"));
        assert!(out.status.success(), "{what}: {json} {stderr}");
        assert_eq!(json["outcome"], "skipped", "{what}: {json} {stderr}");
        assert_eq!(json["digest"], digest, "{what}");
        let new = proxy.requests().split_off(before);
        if *proxied {
            assert!(!new.is_empty(), "{what}: nothing went through the proxy");
            assert!(new.iter().all(|r| *r == connect), "{what}: {new:?}");
        } else {
            assert!(new.is_empty(), "{what}: went through the proxy: {new:?}");
        }
    }
    Ok(())
}

/// Set for the child process; the child test does nothing without it.
const CHILD_ENV: &str = "KB_PROXY_TEST_CHILD";
/// The image the child builds (it exists: the run skips).
const CHILD_IMAGE_ENV: &str = "KB_PROXY_TEST_IMAGE";

/// [`Build::run`] with its default Kubernetes client (`KUBECONFIG`): with
/// `insecure-skip-tls-verify` its events start with [`BuildEvent::TlsNotVerified`] naming the
/// server; without, there is no such event. The image exists, so the run skips without asking
/// the API server anything.
#[tokio::test]
async fn build_run_warns_when_the_api_server_is_not_verified() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let registry = TestRegistry::start(RegistryAuth::Anonymous).await?;
    registry.push_image("team/app", "v1", b"hello").await?;
    let image = format!("{}/team/app:v1", registry.host());
    let dir = tempfile::tempdir()?;
    let write = |name: &str, insecure: bool| -> anyhow::Result<PathBuf> {
        let cluster = if insecure {
            serde_json::json!({ "server": "https://127.0.0.1:1", "insecure-skip-tls-verify": true })
        } else {
            serde_json::json!({ "server": "https://127.0.0.1:1" })
        };
        let doc = serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{ "name": "c", "cluster": cluster }],
            "users": [{ "name": "u", "user": { "token": "not-a-real-token-0000" } }],
            "contexts": [{ "name": "x", "context": { "cluster": "c", "user": "u" } }],
            "current-context": "x",
        });
        let path = dir.path().join(name);
        std::fs::write(&path, doc.to_string())?;
        Ok(path)
    };
    let insecure = write("insecure", true)?;
    let verified = write("verified", false)?;
    for (kubeconfig, want) in [(&insecure, "warned"), (&verified, "quiet")] {
        let out = run_child(kubeconfig, &image).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{want}: child failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        let said = stdout
            .lines()
            .find_map(|l| l.strip_prefix("child: "))
            .unwrap_or_default();
        assert_eq!(said, want, "{stdout}");
    }
    Ok(())
}

async fn run_child(kubeconfig: &Path, image: &str) -> std::process::Output {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["--exact", "child_runs_a_build", "--ignored", "--nocapture"]);
    isolated(&mut cmd, &[]);
    cmd.env(CHILD_ENV, "1")
        .env(CHILD_IMAGE_ENV, image)
        .env("KUBECONFIG", kubeconfig)
        .env("DOCKER_CONFIG", "/nonexistent/docker");
    cmd.output().await.expect("run the child")
}

/// The child of [`build_run_warns_when_the_api_server_is_not_verified`]: runs the skip and
/// prints `child: warned` or `child: quiet`.
#[tokio::test]
#[ignore = "run by build_run_warns_when_the_api_server_is_not_verified in a child process"]
#[allow(clippy::print_stdout)] // the parent reads the verdict from stdout
async fn child_runs_a_build() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    kaniko_builder_testkit::init_tracing();
    let image: ImageRef = std::env::var(CHILD_IMAGE_ENV)
        .expect("image")
        .parse()
        .expect("reference");
    let config = BuildConfig::builder(image.clone())
        .context(ContextSource::LocalDir(std::env::temp_dir()))
        .build()
        .expect("config");
    let mut build = Build::new(config).insecure_registry(image.registry());
    let mut events = build.events();
    let collect = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(e) = events.next().await {
            all.push(e);
        }
        all
    });
    let outcome = build.run().await.expect("run");
    assert!(matches!(outcome, BuildOutcome::Skipped { .. }), "{outcome:?}");
    let events = collect.await.expect("events");
    let warnings: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, BuildEvent::TlsNotVerified { .. }))
        .collect();
    match warnings.as_slice() {
        [] => println!("child: quiet"),
        [BuildEvent::TlsNotVerified { server }] => {
            assert_eq!(server, "https://127.0.0.1:1/");
            assert!(
                matches!(events.first(), Some(BuildEvent::TlsNotVerified { .. })),
                "the warning comes first: {events:?}"
            );
            println!("child: warned");
        }
        more => panic!("one warning, not {more:?}"),
    }
}
