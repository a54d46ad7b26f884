//! Proves the stand-in kubelet endpoint through the real API server (v1.20.2): a `Node`
//! pointing at it is registered by hand, Pods are bound to it with `spec.nodeName` (no
//! scheduler), their directories are laid out by hand as the stand-in node lays them out, and
//! kube-rs' `log_stream`, `logs` and `exec` go through the API server's `pods/log` and
//! `pods/exec` proxies to it.
//!
//! Timeouts below are safety nets so a broken endpoint fails the test instead of hanging it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::{AsyncBufReadExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kaniko_builder_testkit::{KubeletApi, TestCluster};
use kube::api::{Api, AttachParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Safety net for every wait.
const WAIT: Duration = Duration::from_secs(60);
/// The stand-in node's name.
const NODE: &str = "stand-in";
/// The init container that receives the build context.
const INIT: &str = "kaniko-init";
/// The main container, whose log is streamed.
const BUILDER: &str = "image-builder";

/// A control plane without scheduler and controller manager, a kubelet endpoint serving
/// `node_dir`, and the `Node` pointing at it.
struct Fixture {
    // Declared first: the endpoint stops before the cluster and the directory go.
    kubelet: KubeletApi,
    cluster: TestCluster,
    node_dir: tempfile::TempDir,
    namespace: String,
    pods: Api<Pod>,
}

/// How the endpoint treats clients.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    Anonymous,
    ClusterCa,
}

async fn fixture(namespace: &str, auth: ClientAuth) -> anyhow::Result<Fixture> {
    let cluster = TestCluster::builder()
        .controller_manager(false)
        .scheduler(false)
        .start()
        .await
        .context("start the test cluster")?;
    let node_dir = tempfile::tempdir()?;
    let (cert, key) = cluster.ca().issue_server_cert();
    let kubelet = match auth {
        ClientAuth::Anonymous => KubeletApi::start(node_dir.path(), &cert, &key).await?,
        ClientAuth::ClusterCa => {
            KubeletApi::start_with_client_ca(node_dir.path(), &cert, &key, &cluster.ca_pem()).await?
        }
    };
    register_node(cluster.admin_client(), kubelet.port()).await?;
    cluster.create_namespace(namespace).await?;
    let pods = Api::namespaced(cluster.admin_client(), namespace);
    Ok(Fixture {
        kubelet,
        cluster,
        node_dir,
        namespace: namespace.to_owned(),
        pods,
    })
}

/// Creates the `Node` and reports it Ready with the endpoint's address and port.
async fn register_node(client: kube::Client, port: u16) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client);
    let node: Node = serde_json::from_value(json!({"metadata": {"name": NODE}}))?;
    nodes
        .create(&PostParams::default(), &node)
        .await
        .context("create the node")?;
    let status = json!({"status": {
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": NODE},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "conditions": [{
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "stand-in kubelet endpoint",
        }],
    }});
    nodes
        .patch_status(NODE, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .context("report the node's status")?;
    Ok(())
}

impl Fixture {
    /// Creates Pod `name` bound to the node (an init container and a main container) and,
    /// unless `on_disk` is false, its directory with an empty workspace. Returns the directory.
    async fn pod(&self, name: &str, on_disk: bool) -> anyhow::Result<PathBuf> {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "nodeName": NODE,
                "restartPolicy": "Never",
                "initContainers": [{"name": INIT, "image": "busybox"}],
                "containers": [{"name": BUILDER, "image": "kaniko"}],
            },
        }))?;
        let created = self
            .pods
            .create(&PostParams::default(), &pod)
            .await
            .with_context(|| format!("create pod {name}"))?;
        let uid = created.metadata.uid.context("a created pod has a uid")?;
        let dir = self
            .node_dir
            .path()
            .join("pods")
            .join(format!("{}_{name}_{uid}", self.namespace));
        if on_disk {
            std::fs::create_dir_all(dir.join("workspace"))?;
        }
        Ok(dir)
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    std::io::Write::write_all(&mut file, text.as_bytes())
}

fn log_params(container: &str) -> LogParams {
    LogParams {
        container: Some(container.to_owned()),
        ..LogParams::default()
    }
}

/// The API server's error status, or a panic naming what was expected.
fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("{what}: expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn logs_stream_through_the_api_server_line_by_line_until_the_container_is_done() -> anyhow::Result<()> {
    let f = fixture("logs", ClientAuth::Anonymous).await?;
    let dir = f.pod("build", true).await?;
    let log = dir.join(format!("{BUILDER}.log"));
    append(&log, "step 1/3\nstep 2/3\n")?;

    let follow = LogParams {
        follow: true,
        ..log_params(BUILDER)
    };
    let mut lines = f.pods.log_stream("build", &follow).await?.lines();
    let mut next = async || -> anyhow::Result<Option<String>> {
        Ok(tokio::time::timeout(WAIT, lines.try_next())
            .await
            .context("the next log line in time")??)
    };
    assert_eq!(next().await?.as_deref(), Some("step 1/3"));
    assert_eq!(next().await?.as_deref(), Some("step 2/3"));
    // Lines appended later arrive one by one while the container runs.
    for step in ["step 3/3", "pushing"] {
        append(&log, &format!("{step}\n"))?;
        assert_eq!(next().await?.as_deref(), Some(step));
    }
    // The stream stays open while the container runs (no `.done` yet).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next())
            .await
            .is_err(),
        "the followed log ended before the container was done"
    );
    // An unterminated last line is sent once the container is done, then the stream ends.
    append(&log, "digest sha256:abc")?;
    std::fs::write(dir.join(format!("{BUILDER}.done")), "0")?;
    assert_eq!(next().await?.as_deref(), Some("digest sha256:abc"));
    assert_eq!(next().await?, None);

    // Without follow: the whole file.
    let whole = "step 1/3\nstep 2/3\nstep 3/3\npushing\ndigest sha256:abc";
    assert_eq!(f.pods.logs("build", &log_params(BUILDER)).await?, whole);
    let tail = LogParams {
        tail_lines: Some(2),
        ..log_params(BUILDER)
    };
    assert_eq!(f.pods.logs("build", &tail).await?, "pushing\ndigest sha256:abc");
    let limited = LogParams {
        limit_bytes: Some(4),
        ..log_params(BUILDER)
    };
    assert_eq!(f.pods.logs("build", &limited).await?, "step");
    let stamped = LogParams {
        timestamps: true,
        ..log_params(BUILDER)
    };
    let stamped = f.pods.logs("build", &stamped).await?;
    for (line, plain) in stamped.lines().zip(whole.lines()) {
        let (stamp, rest) = line.split_once(' ').context("a timestamp before each line")?;
        assert_eq!(rest, plain);
        assert!(stamp.len() == 30 && stamp.ends_with('Z'), "{stamp}");
    }
    // Following a finished container returns everything and ends.
    let mut lines = f.pods.log_stream("build", &follow).await?.lines();
    let mut all = Vec::new();
    while let Some(line) = tokio::time::timeout(WAIT, lines.try_next()).await?? {
        all.push(line);
    }
    assert_eq!(all.join("\n"), whole);

    // Errors come back as errors, never as a hang.
    let not_started = tokio::time::timeout(
        WAIT,
        f.pods.log_stream(
            "build",
            &LogParams {
                follow: true,
                ..log_params(INIT)
            },
        ),
    )
    .await
    .context("an answer for a container without a log")?;
    let status = api_error(not_started.map(drop), "a container without a log file");
    assert_eq!(status.code, 400, "{status:?}");
    assert!(
        status
            .message
            .contains("container \"kaniko-init\" in pod \"logs/build\" is waiting to start"),
        "{status:?}"
    );
    let status = api_error(
        f.pods.logs("build", &log_params("nope")).await,
        "a container not in the pod",
    );
    assert_eq!(status.code, 400, "{status:?}");
    f.pod("elsewhere", false).await?;
    let status = api_error(
        f.pods.logs("elsewhere", &log_params(BUILDER)).await,
        "a pod not on disk",
    );
    // The API server keeps the status of the kubelet's 404, not its message.
    assert_eq!(status.code, 404, "{status:?}");
    Ok(())
}

/// What an exec returned.
struct Exec {
    status: Status,
    stdout: String,
    stderr: String,
}

/// Runs `argv` in the init container with `input` on stdin, closes stdin and waits for the
/// status.
async fn exec(pods: &Api<Pod>, pod: &str, argv: &[&str], input: Option<&[u8]>) -> anyhow::Result<Exec> {
    let params = AttachParams::default()
        .container(INIT)
        .stdin(input.is_some())
        .stdout(true)
        .stderr(true);
    let mut process = tokio::time::timeout(WAIT, pods.exec(pod, argv.to_vec(), &params))
        .await
        .context("the exec upgrade in time")??;
    let mut stdout = process.stdout().context("stdout attached")?;
    let mut stderr = process.stderr().context("stderr attached")?;
    let status = process.take_status().context("a status future")?;
    let stdout = tokio::spawn(async move {
        let mut text = String::new();
        stdout.read_to_string(&mut text).await.map(|_| text)
    });
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.map(|_| text)
    });
    if let Some(input) = input {
        let mut stdin = process.stdin().context("stdin attached")?;
        stdin.write_all(input).await.context("write stdin")?;
        // Dropping the writer is not enough: only a shutdown ends the stream kube-rs reads.
        stdin.shutdown().await.context("close stdin")?;
    }
    let status = tokio::time::timeout(WAIT, status)
        .await
        .context("the exec status in time")?
        .context("the exec sent a status")?;
    let exec = Exec {
        status,
        stdout: stdout.await??,
        stderr: stderr.await??,
    };
    process.join().await.context("the exec session ends cleanly")?;
    Ok(exec)
}

/// A tar of `(path, data)` files, the builder's way (normal, safe paths).
fn tar_of(files: &[(&str, &str)]) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, data.as_bytes())?;
    }
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    builder.append_data(&mut dir, "empty/dir", &[][..])?;
    Ok(builder.into_inner()?)
}

/// One entry with its name written raw, so that the tar builder's own checks cannot refuse
/// a hostile path.
fn hostile_tar(path: &str, kind: tar::EntryType, link: &str) -> anyhow::Result<Vec<u8>> {
    let mut header = tar::Header::new_gnu();
    let gnu = header.as_gnu_mut().context("a GNU header")?;
    gnu.name[..path.len()].copy_from_slice(path.as_bytes());
    gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(0o644);
    let body: &[u8] = if kind == tar::EntryType::Regular {
        b"pwned"
    } else {
        b""
    };
    header.set_size(body.len() as u64);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, body)?;
    Ok(builder.into_inner()?)
}

fn assert_success(exec: &Exec, what: &str) {
    assert_eq!(
        exec.status.status.as_deref(),
        Some("Success"),
        "{what}: {:?}",
        exec.status
    );
}

/// Asserts a `NonZeroExitCode` failure with `code`, returns its message.
fn assert_exit_code(exec: &Exec, code: &str, what: &str) -> String {
    let status = &exec.status;
    assert_eq!(status.status.as_deref(), Some("Failure"), "{what}: {status:?}");
    assert_eq!(
        status.reason.as_deref(),
        Some("NonZeroExitCode"),
        "{what}: {status:?}"
    );
    let causes = status.details.as_ref().and_then(|d| d.causes.as_ref());
    let cause = causes.and_then(|c| c.first()).cloned().unwrap_or_default();
    assert_eq!(cause.reason.as_deref(), Some("ExitCode"), "{what}: {status:?}");
    assert_eq!(cause.message.as_deref(), Some(code), "{what}: {status:?}");
    status.message.clone().unwrap_or_default()
}

/// Every path below `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn exec_uploads_a_context_into_the_workspace_through_the_api_server() -> anyhow::Result<()> {
    // The endpoint checks the API server's kubelet client certificate against the cluster CA.
    let f = fixture("upload", ClientAuth::ClusterCa).await?;
    let dir = f.pod("build", true).await?;
    let workspace = dir.join("workspace");

    let context = tar_of(&[
        ("Dockerfile", "FROM scratch\nCOPY src /src\n"),
        ("src/app/main.rs", "fn main() {}\n"),
    ])?;
    let untar = exec(
        &f.pods,
        "build",
        &["tar", "-xf", "-", "-C", "/workspace"],
        Some(&context),
    )
    .await?;
    assert_success(&untar, "tar -xf");
    assert_eq!(
        std::fs::read_to_string(workspace.join("Dockerfile"))?,
        "FROM scratch\nCOPY src /src\n"
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("src/app/main.rs"))?,
        "fn main() {}\n"
    );
    assert!(workspace.join("empty/dir").is_dir());

    // Gzip, bigger than any single websocket frame or buffer on the way, verbose.
    let big = "x".repeat(3 * 1024 * 1024);
    let plain = tar_of(&[("blob.bin", &big), ("src/lib.rs", "pub fn f() {}\n")])?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain)?;
    let gz = gz.finish()?;
    let untar = exec(
        &f.pods,
        "build",
        &["tar", "-xzvf", "-", "-C", "/workspace"],
        Some(&gz),
    )
    .await?;
    assert_success(&untar, "tar -xzvf");
    assert_eq!(std::fs::read_to_string(workspace.join("blob.bin"))?, big);
    assert_eq!(untar.stdout, "blob.bin\nsrc/lib.rs\nempty/dir\n");
    assert_eq!(untar.stderr, "");

    let touch = exec(
        &f.pods,
        "build",
        &["touch", "/workspace/.kb-upload-complete"],
        None,
    )
    .await?;
    assert_success(&touch, "touch");
    assert!(workspace.join(".kb-upload-complete").is_file());

    // The endpoint refuses clients without a certificate from the cluster CA.
    let healthz = format!("{}/healthz", f.kubelet.url());
    let anonymous = kaniko_builder_testkit::reqwest_client(Some(&f.cluster.ca_pem()))?;
    assert!(
        anonymous.get(&healthz).send().await.is_err(),
        "a client without certificate is refused"
    );
    let (cert, key) = f
        .cluster
        .ca()
        .issue_client_cert("kube-apiserver-kubelet-client", None);
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(client_cert_tls(&f.cluster.ca_pem(), &cert, &key)?)
        .no_proxy()
        .build()?;
    let answer = client.get(&healthz).send().await?;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await?, "ok");
    Ok(())
}

/// A rustls client config trusting `ca_pem` and presenting `cert_pem`/`key_pem`.
fn client_cert_tls(ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)?,
    )
}

#[tokio::test]
async fn exec_refuses_archives_that_leave_the_workspace_and_commands_it_cannot_run() -> anyhow::Result<()> {
    let f = fixture("refuse", ClientAuth::Anonymous).await?;
    let dir = f.pod("build", true).await?;
    let outside = std::env::temp_dir().join(format!("kb-kubelet-api-{}", std::process::id()));
    let outside = outside.to_str().context("a UTF-8 temp path")?.to_owned();

    let cases = [
        ("../escape", tar::EntryType::Regular, "", "`..`"),
        ("ok/../../escape", tar::EntryType::Regular, "", "`..`"),
        (outside.as_str(), tar::EntryType::Regular, "", "absolute"),
        ("link", tar::EntryType::Symlink, "../escape", "symlink"),
        ("abs-link", tar::EntryType::Symlink, "/etc", "symlink"),
        ("hard", tar::EntryType::Link, "../pod-file", "`..`"),
    ];
    for (path, kind, link, why) in cases {
        let archive = hostile_tar(path, kind, link)?;
        let untar = exec(
            &f.pods,
            "build",
            &["tar", "-xf", "-", "-C", "/workspace"],
            Some(&archive),
        )
        .await?;
        let message = assert_exit_code(&untar, "2", path);
        assert!(
            message.contains(why) && message.contains("refusing"),
            "{path}: {message}"
        );
        assert!(untar.stderr.starts_with("tar: "), "{path}: {:?}", untar.stderr);
    }
    // Nothing was written anywhere: not in the workspace, not next to it, not at the
    // absolute path.
    assert_eq!(
        tree(f.node_dir.path()),
        [
            "pods",
            &format!("pods/{}", file_name(&dir)),
            &format!("pods/{}/workspace", file_name(&dir))
        ]
    );
    assert!(!Path::new(&outside).exists());

    // A command the stand-in cannot run fails clearly.
    let shell = exec(&f.pods, "build", &["sh", "-c", "echo hi"], None).await?;
    let message = assert_exit_code(&shell, "126", "sh -c");
    assert!(message.contains("stand-in kubelet cannot run"), "{message}");
    assert!(
        shell.stderr.contains("stand-in kubelet cannot run"),
        "{:?}",
        shell.stderr
    );
    // So does a tar that does not unpack into /workspace, and a directory that is missing.
    let elsewhere = exec(&f.pods, "build", &["tar", "-xf", "-", "-C", "/tmp"], Some(b"")).await?;
    assert_exit_code(&elsewhere, "126", "tar -C /tmp");
    let missing = exec(
        &f.pods,
        "build",
        &["tar", "-xf", "-", "-C", "/workspace/nope"],
        Some(b""),
    )
    .await?;
    let message = assert_exit_code(&missing, "2", "tar -C /workspace/nope");
    assert!(message.contains("No such file or directory"), "{message}");

    // A pod the node does not have is refused before the upgrade, not left hanging.
    f.pod("elsewhere", false).await?;
    let params = AttachParams::default().container(INIT).stdout(true).stderr(false);
    let refused = tokio::time::timeout(WAIT, f.pods.exec("elsewhere", ["touch", "/workspace/x"], &params))
        .await
        .context("an answer for a pod not on disk")?;
    assert!(refused.is_err(), "exec into a pod the node does not have");
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
