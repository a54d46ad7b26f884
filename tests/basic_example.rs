//! The compiled `basic` example run as a process: its JSON report on stdout and its exit status,
//! with and without a cluster. `cargo test` does not build the plain example binary, so
//! `scripts/test.sh` runs `cargo build --examples` first.

use std::path::PathBuf;
use std::process::{Command, Output};

use kaniko_builder_testkit::{RegistryAuth, TestRegistry};
use serde_json::Value;

fn example() -> PathBuf {
    kaniko_builder_testkit::example_binary("basic")
}

/// The example with `args`, no cluster, no docker config, no seed keys and no proxy, then `env`.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(example());
    cmd.args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("DOCKER_CONFIG", "/nonexistent/docker")
        .env_remove("DOCKER_IMAGENAME")
        .env_remove("DOCKER_IMAGETAG")
        .env_remove("DOCKER_FILENAME")
        .env_remove("FORCE_BUILD")
        .env_remove("KUBERNETES_SERVICE_HOST");
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
        cmd.env_remove(var).env_remove(var.to_lowercase());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (Value, Output) {
    let out = command(args, env).output().expect("run the basic example");
    parse(out)
}

/// As [`run`], without blocking the runtime (a token registry's issuer runs in this process).
async fn run_async(args: &[&str], env: &[(&str, &str)]) -> (Value, Output) {
    let out = tokio::process::Command::from(command(args, env))
        .output()
        .await
        .expect("run the basic example");
    parse(out)
}

fn parse(out: Output) -> (Value, Output) {
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

/// When the registry cannot say whether the tag exists, the plan says so: decision `unknown` with
/// the failure's kind and text, exit 1, never `build`, with or without `--dry-run`, and no
/// password anywhere in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_probe_cannot_tell_the_decision_is_unknown() -> anyhow::Result<()> {
    const WRONG_PASSWORD: &str = "wr0ng-Pa55-5b7e";
    let (basic, token, mut down) = tokio::try_join!(
        TestRegistry::start(RegistryAuth::Basic),
        TestRegistry::start(RegistryAuth::Token),
        TestRegistry::start(RegistryAuth::Anonymous),
    )?;
    down.stop();
    let dir = tempfile::tempdir()?;
    let file = |name: &str, content: &str| -> anyhow::Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, content)?;
        Ok(path.display().to_string())
    };
    let wrong = |r: &TestRegistry| -> anyhow::Result<String> {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{WRONG_PASSWORD}", TestRegistry::USERNAME));
        let json = serde_json::json!({ "auths": { r.host(): { "auth": auth } } });
        file(&format!("wrong-{}.json", r.host()), &json.to_string())
    };
    let right = |r: &TestRegistry| file(&format!("right-{}.json", r.host()), &r.docker_config_json());
    let ca = |r: &TestRegistry| file(&format!("ca-{}.pem", r.host()), &r.ca_pem().expect("tls"));

    struct Case {
        name: &'static str,
        host: String,
        flags: Vec<String>,
        dry_run: bool,
        kind: &'static str,
    }
    let flags = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let cases = [
        Case {
            name: "wrong password, Basic over TLS",
            host: basic.host(),
            flags: flags(&["--ca-cert", &ca(&basic)?, "--docker-config", &wrong(&basic)?]),
            dry_run: true,
            kind: "unauthorized",
        },
        Case {
            name: "wrong password, token auth, no cluster",
            host: token.host(),
            flags: flags(&["--ca-cert", &ca(&token)?, "--docker-config", &wrong(&token)?]),
            dry_run: false,
            kind: "unauthorized",
        },
        Case {
            name: "no credentials for a registry that needs them",
            host: basic.host(),
            flags: flags(&["--ca-cert", &ca(&basic)?]),
            dry_run: true,
            kind: "unauthorized",
        },
        Case {
            name: "no credentials, token auth",
            host: token.host(),
            flags: flags(&["--ca-cert", &ca(&token)?]),
            dry_run: true,
            kind: "unauthorized",
        },
        Case {
            name: "CA not trusted (right credentials)",
            host: basic.host(),
            flags: flags(&["--docker-config", &right(&basic)?]),
            dry_run: true,
            kind: "tls",
        },
        Case {
            name: "registry down",
            host: down.host(),
            flags: flags(&["--insecure-registry", &down.host()]),
            dry_run: true,
            kind: "unreachable",
        },
        Case {
            name: "registry down, no cluster",
            host: down.host(),
            flags: flags(&["--insecure-registry", &down.host()]),
            dry_run: false,
            kind: "unreachable",
        },
    ];
    let runs = cases.iter().map(|case| {
        let image = format!("{}/team/app:v1", case.host);
        let mut args: Vec<&str> = vec!["--image", &image, "--output", "json"];
        args.extend(case.flags.iter().map(String::as_str));
        if case.dry_run {
            args.push("--dry-run");
        }
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            (image, run_async(&args, &[]).await)
        }
    });
    for (case, (image, (json, out))) in cases.iter().zip(futures::future::join_all(runs).await) {
        let name = case.name;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ctx = format!("{name}: {json}\n{stderr}");
        assert_eq!(out.status.code(), Some(1), "{ctx}");
        assert_eq!(json["outcome"], "planned", "{ctx}");
        assert_eq!(json["decision"], "unknown", "{ctx}");
        assert_eq!(json["kind"], case.kind, "{ctx}");
        assert_eq!(json["image"], image, "{ctx}");
        assert!(json["digest"].is_null(), "{ctx}");
        let reason = json["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(&case.host), "{ctx}");
        assert!(reason.contains("cannot tell"), "{ctx}");
        assert_eq!(stderr.contains("no cluster"), !case.dry_run, "{ctx}");
        assert!(stderr.contains("kind: Job"), "the objects are still shown: {ctx}");
        assert!(stderr.contains("decision: unknown"), "{ctx}");
        for secret in [TestRegistry::PASSWORD, WRONG_PASSWORD] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "{name}: leaks a password"
            );
        }
    }
    Ok(())
}

/// The no-argument run targets Docker Hub's `example:v1.0.0`. Where Docker Hub cannot be reached
/// (here: through a proxy nobody listens on, so the test does not depend on this machine's
/// network) it explains itself and says `unknown`/`unreachable`, exit 1.
#[test]
fn the_no_argument_run_without_internet_says_unknown() {
    let proxy = format!("http://127.0.0.1:{}", kaniko_builder_testkit::free_port());
    let (json, out) = run(
        &["--output", "json"],
        &[("HTTPS_PROXY", &proxy), ("HTTP_PROXY", &proxy)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{json}\n{stderr}");
    assert_eq!(json["outcome"], "planned", "{json}");
    assert_eq!(json["decision"], "unknown", "{json}");
    assert_eq!(json["kind"], "unreachable", "{json}");
    assert_eq!(json["image"], "docker.io/library/example:v1.0.0", "{json}");
    assert!(
        json["reason"].as_str().is_some_and(|r| r.contains("docker.io")),
        "{json}"
    );
    assert!(
        stderr.contains("no cluster") && stderr.contains("bundled example") && stderr.contains("--image"),
        "explains what happened and how to point it elsewhere: {stderr}"
    );
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
/// (found through `KUBECONFIG`) and a registry where the tag exists, against one `skopeo inspect`
/// of the same tag; for a token-auth registry over TLS (`--ca-cert`, `--docker-config`) and an
/// anonymous plain-HTTP one (`--insecure-registry`, the default docker config lookup in an empty
/// `DOCKER_CONFIG`), interleaved, 20 runs each. (Multi-threaded: the token issuer runs in this
/// process while the children wait for it.) Run with
/// `cargo test --release --test basic_example -- --ignored --nocapture measure_skip_path`
/// (after `cargo build --release --examples`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run it on purpose"]
#[allow(clippy::print_stderr)]
async fn measure_skip_path() -> anyhow::Result<()> {
    use kaniko_builder_testkit::TestCluster;
    use std::time::{Duration, Instant};
    const RUNS: usize = 20;
    let (cluster, tls, plain) = tokio::try_join!(
        TestCluster::start(),
        TestRegistry::start(RegistryAuth::Token),
        TestRegistry::start(RegistryAuth::Anonymous)
    )?;
    let tls_digest = tls.push_image("team/app", "v1", b"hello").await?;
    let plain_digest = plain.push_image("team/app", "v1", b"hello").await?;
    let (tls_image, plain_image) = (
        format!("{}/team/app:v1", tls.host()),
        format!("{}/team/app:v1", plain.host()),
    );
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("config.json"), tls.docker_config_json())?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, tls.ca_pem().expect("tls"))?;
    let ca_dir = tls.ca_dir().expect("tls");
    let empty_docker = tempfile::tempdir()?;
    let kubeconfig = cluster.kubeconfig_path().to_string_lossy().into_owned();
    let (ca, docker) = (ca.to_string_lossy(), dir.path().to_string_lossy());
    let creds = format!("{}:{}", TestRegistry::USERNAME, TestRegistry::PASSWORD);
    let ours = |args: &[&str], docker_config: &str, digest: &str| -> anyhow::Result<Duration> {
        let mut cmd = command(
            args,
            &[("KUBECONFIG", &kubeconfig), ("DOCKER_CONFIG", docker_config)],
        );
        let t = Instant::now();
        let out = cmd.output()?;
        let took = t.elapsed();
        let json: Value = serde_json::from_slice(&out.stdout)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(json["outcome"], "skipped", "{json} {stderr}");
        assert_eq!(json["digest"], digest);
        Ok(took)
    };
    let skopeo = |args: &[String], digest: &str| -> anyhow::Result<Duration> {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--format", "{{.Digest}}"]).args(args);
        let t = Instant::now();
        let out = cmd.output()?;
        let took = t.elapsed();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest);
        Ok(took)
    };
    let [mut ours_tls, mut skopeo_tls, mut ours_plain, mut skopeo_plain] =
        std::array::from_fn::<Vec<Duration>, 4, _>(|_| Vec::with_capacity(RUNS));
    let empty = empty_docker.path().to_string_lossy();
    for _ in 0..RUNS {
        let args = ["--image", &tls_image, "--output", "json", "--ca-cert", &ca];
        ours_tls.push(ours(&args, &docker, &tls_digest)?);
        let args = [
            format!("--cert-dir={}", ca_dir.display()),
            format!("--creds={creds}"),
            format!("docker://{tls_image}"),
        ];
        skopeo_tls.push(skopeo(&args, &tls_digest)?);
        let host = plain.host();
        let args = [
            "--image",
            &plain_image,
            "--output",
            "json",
            "--insecure-registry",
            &host,
        ];
        ours_plain.push(ours(&args, &empty, &plain_digest)?);
        let args = ["--tls-verify=false".to_owned(), format!("docker://{plain_image}")];
        skopeo_plain.push(skopeo(&args, &plain_digest)?);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    for (what, ours, skopeo) in [
        ("token auth over TLS", &mut ours_tls, &mut skopeo_tls),
        ("anonymous plain HTTP", &mut ours_plain, &mut skopeo_plain),
    ] {
        let (a, b) = (median(ours), median(skopeo));
        eprintln!(
            "skip path, {what}, median of {RUNS}: basic example {a:.1?} (min {:.1?}), skopeo inspect \
             {b:.1?} (min {:.1?}), ratio example/skopeo {:.2}",
            ours[0],
            skopeo[0],
            a.as_secs_f64() / b.as_secs_f64()
        );
    }
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
