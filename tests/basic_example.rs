//! The compiled `basic` example run as a process: its JSON report on stdout and its exit status,
//! with and without a cluster. `cargo test` does not build the plain example binary, so
//! `scripts/test.sh` runs `cargo build --examples` first.

use std::path::PathBuf;
use std::process::{Command, Output};

use kaniko_builder_testkit::{RegistryAuth, TestRegistry};
use serde_json::Value;

fn example() -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary");
    dir.pop(); // deps
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join("basic");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --examples` before this test (scripts/test.sh does)",
        path.display()
    );
    path
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (Value, Output) {
    let mut cmd = Command::new(example());
    cmd.args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("DOCKER_CONFIG", "/nonexistent/docker")
        .env_remove("DOCKER_IMAGENAME")
        .env_remove("DOCKER_IMAGETAG")
        .env_remove("DOCKER_FILENAME")
        .env_remove("FORCE_BUILD")
        .env_remove("KUBERNETES_SERVICE_HOST");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the basic example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, out)
}

#[tokio::test]
async fn without_a_cluster_it_probes_and_plans() -> anyhow::Result<()> {
    let registry = TestRegistry::start(RegistryAuth::Anonymous).await?;
    let host = registry.host();
    let image = format!("{host}/team/app:v1");
    let (json, out) = run(
        &[
            "--image",
            &image,
            "--insecure-registry",
            &host,
            "--output",
            "json",
        ],
        &[],
    );
    assert!(out.status.success(), "{json}");
    assert_eq!(json["outcome"], "planned");
    assert_eq!(json["decision"], "build");
    assert_eq!(json["image"], image);
    assert_eq!(json["namespace"], "kaniko");
    assert!(json["duration_ms"].is_u64());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no cluster"), "{stderr}");
    assert!(
        stderr.contains("kind: Job"),
        "the plan's objects are printed: {stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("kind: Job"),
        "stdout holds the JSON only"
    );
    Ok(())
}

#[tokio::test]
async fn the_seed_keys_are_fallbacks() -> anyhow::Result<()> {
    let registry = TestRegistry::start(RegistryAuth::Anonymous).await?;
    let host = registry.host();
    let (json, out) = run(
        &["--insecure-registry", &host, "--output", "json", "--dry-run"],
        &[
            ("DOCKER_IMAGENAME", &format!("{host}/seed/example")),
            ("DOCKER_IMAGETAG", "v2"),
            ("FORCE_BUILD", "Y"),
        ],
    );
    assert!(out.status.success(), "{json}");
    assert_eq!(json["image"], format!("{host}/seed/example:v2"));
    assert_eq!(json["decision"], "build");
    assert_eq!(json["outcome"], "planned");
    Ok(())
}

#[test]
fn a_failure_is_one_json_object_and_a_non_zero_exit() {
    let (json, out) = run(&["--image", "Not An Image!", "--output", "json"], &[]);
    assert!(!out.status.success());
    assert_eq!(json["outcome"], "failed");
    assert!(
        json["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Not An Image!")),
        "{json}"
    );
}

#[test]
fn a_missing_context_fails_naming_it() {
    let (json, out) = run(
        &[
            "--image",
            "registry.invalid/x:v1",
            "--context",
            "/nonexistent/ctx",
            "--dry-run",
            "--output",
            "json",
        ],
        &[],
    );
    assert!(!out.status.success(), "{json}");
    assert_eq!(json["outcome"], "failed");
}

/// The skip path end to end, measured: the compiled example against a real control plane
/// (found through `KUBECONFIG`) and a token-auth registry where the tag exists, against one
/// `skopeo inspect` of the same tag; interleaved, 20 runs each. (Multi-threaded: the token
/// issuer runs in this process while the children wait for it.) Run with
/// `cargo test --release --test basic_example -- --ignored --nocapture measure_skip_path`
/// (after `cargo build --release --examples`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run it on purpose"]
#[allow(clippy::print_stderr)]
async fn measure_skip_path() -> anyhow::Result<()> {
    use kaniko_builder_testkit::TestCluster;
    use std::time::{Duration, Instant};
    let (cluster, registry) =
        tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Token))?;
    let digest = registry.push_image("team/app", "v1", b"hello").await?;
    let host = registry.host();
    let image = format!("{host}/team/app:v1");
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("config.json"), registry.docker_config_json())?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, registry.ca_pem().expect("tls"))?;
    let ca_dir = registry.ca_dir().expect("tls");
    let kubeconfig = cluster.kubeconfig_path().to_owned();
    let (mut ours, mut skopeo) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let t = Instant::now();
        let out = Command::new(example())
            .args(["--image", &image, "--output", "json", "--ca-cert"])
            .arg(&ca)
            .arg("--docker-config")
            .arg(dir.path())
            .env("KUBECONFIG", &kubeconfig)
            .output()?;
        ours.push(t.elapsed());
        let json: Value = serde_json::from_slice(&out.stdout)?;
        assert_eq!(
            json["outcome"],
            "skipped",
            "{json} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(json["digest"], digest);

        let t = Instant::now();
        let out = Command::new("skopeo")
            .args(["inspect", "--format", "{{.Digest}}", "--cert-dir"])
            .arg(&ca_dir)
            .arg("--creds")
            .arg(format!("{}:{}", TestRegistry::USERNAME, TestRegistry::PASSWORD))
            .arg(format!("docker://{image}"))
            .output()?;
        skopeo.push(t.elapsed());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (a, b) = (median(&mut ours), median(&mut skopeo));
    eprintln!(
        "skip path, median of 20: basic example {a:?} (min {:?}), skopeo inspect {b:?} (min {:?}), ratio example/skopeo {:.2}",
        ours[0],
        skopeo[0],
        a.as_secs_f64() / b.as_secs_f64()
    );
    Ok(())
}

/// With a cluster (the real API server in `KUBECONFIG`, the stand-in node, a token-auth
/// registry): built with the log on stderr, then skipped; a broken Dockerfile fails with the
/// culprit named and a non-zero exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_cluster_it_builds_skips_and_reports_failures() -> anyhow::Result<()> {
    use kaniko_builder_testkit::TestCluster;
    use kaniko_builder_testkit::node::{NodeOptions, StandInNode};
    let (cluster, registry) =
        tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Token))?;
    let _node = StandInNode::start(&cluster, NodeOptions::default().registry(&registry)).await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("config.json"), registry.docker_config_json())?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, registry.ca_pem().expect("tls"))?;
    let ctx = tempfile::tempdir()?;
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    )?;
    std::fs::write(ctx.path().join("hello.txt"), "hello\n")?;
    std::fs::write(
        ctx.path().join("Broken.dockerfile"),
        "FROM scratch\nCOPY missing.txt /m\n",
    )?;
    let run = |image: String, dockerfile: &'static str| {
        let mut cmd = tokio::process::Command::new(example());
        cmd.args([
            "--image",
            &image,
            "--dockerfile",
            dockerfile,
            "--output",
            "json",
            "--ca-cert",
        ])
        .arg(&ca)
        .arg("--docker-config")
        .arg(dir.path())
        .arg("--context")
        .arg(ctx.path())
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env_remove("FORCE_BUILD")
        .env_remove("DOCKER_FILENAME");
        async move {
            let out = cmd.output().await.expect("run the example");
            let json: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
            (json, out)
        }
    };
    let image = format!("{}/team/tool:v1", registry.host());
    let (json, out) = run(image.clone(), "Dockerfile").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{json}\n{stderr}");
    assert_eq!(json["outcome"], "built", "{json}\n{stderr}");
    assert!(json["job"].is_string() && json["digest"].is_string());
    assert!(
        stderr.contains("==> probed") && stderr.contains("[image-builder]"),
        "{stderr}"
    );
    assert!(!stderr.contains(TestRegistry::PASSWORD));

    let (again, out) = run(image, "Dockerfile").await;
    assert!(out.status.success());
    assert_eq!(again["outcome"], "skipped");
    assert_eq!(again["digest"], json["digest"]);

    let (failed, out) = run(format!("{}/team/broken:v1", registry.host()), "Broken.dockerfile").await;
    assert!(!out.status.success(), "{failed}");
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["kind"], "exit_code", "{failed}");
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("image-builder") || r.contains("exit")),
        "{failed}"
    );
    Ok(())
}
