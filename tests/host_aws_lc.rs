//! A host program built with rustls' defaults (the `aws-lc-rs` provider) and this library's
//! `aws-lc-rs` feature (`tests/host-aws-lc/`, its own workspace, built by `scripts/test.sh`):
//! run as a process, it probes a real token-auth registry over TLS and asks a real API server
//! for its version through `k8s::client`, then calls `rustls::ClientConfig::builder()` itself,
//! which panics when the library compiled `ring` in next to the program's `aws-lc-rs`, and talks
//! to both again.

use std::path::PathBuf;

use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};

/// The host binary, built into this target dir by
/// `cargo build --manifest-path tests/host-aws-lc/Cargo.toml --target-dir <this target dir>`.
fn host_binary() -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("host-aws-lc");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --locked --manifest-path tests/host-aws-lc/Cargo.toml \
         --target-dir target` before this test (scripts/test.sh does)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_on_rustls_defaults_with_the_aws_lc_rs_feature_probes_and_talks_to_the_api_server()
-> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let host = host_binary();
    let (cluster, registry) =
        tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Token))?;
    let digest = registry.push_image("team/app", "v1", b"host").await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("config.json"), registry.docker_config_json())?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, registry.ca_pem().expect("a token registry serves TLS"))?;

    let mut cmd = tokio::process::Command::new(&host);
    cmd.arg(format!("{}/team/app:v1", registry.host()))
        .arg(&ca)
        .arg(dir.path())
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("RUST_BACKTRACE", "0")
        .env_remove("KUBERNETES_SERVICE_HOST");
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"] {
        cmd.env_remove(var).env_remove(var.to_lowercase());
    }
    let out = cmd.output().await?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // Into this binary's trace, which the suite scans for secrets.
    tracing::trace!(%stdout, %stderr, status = ?out.status, "host-aws-lc ran");
    assert!(
        out.status.success(),
        "the host failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    for expected in [
        "process_provider_before=false".to_owned(),
        format!("library_probe=exists digest={digest}"),
        "process_provider_after_library=false".to_owned(),
        format!("after_host_probe=exists digest={digest}"),
        "done=ok".to_owned(),
    ] {
        assert!(lines.contains(&expected.as_str()), "no {expected:?} in\n{stdout}");
    }
    for step in [
        "library_apiserver=ok",
        "host_client_config=ok",
        "after_host_apiserver=ok",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(step)),
            "no {step} in\n{stdout}"
        );
    }
    assert!(!stdout.contains(TestRegistry::PASSWORD) && !stderr.contains(TestRegistry::PASSWORD));
    Ok(())
}
