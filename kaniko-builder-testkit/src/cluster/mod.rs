//! A local Kubernetes control plane of real binaries: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler (v1.20.2, built by `scripts/build-k8s.sh`).
//!
//! [`TestCluster::start`] runs them on free 127.0.0.1 ports in a temp dir and waits until they
//! are ready; dropping the cluster kills and reaps every process and removes the directory, also
//! when a test panics. There is no kubelet: Pods are scheduled only once a node is registered,
//! and nothing runs them.
//!
//! # Plugging in a node
//! A stand-in kubelet needs [`TestCluster::server_url`] and [`TestCluster::admin_client`] to
//! register its `Node` (status address `InternalIP` 127.0.0.1 and
//! `daemonEndpoints.kubeletEndpoint.Port`; the API server prefers `InternalIP`), and a serving
//! certificate for its kubelet endpoint from [`TestCluster::ca`]
//! ([`TestCa::issue_server_cert`](crate::TestCa::issue_server_cert)). The API server calls that
//! endpoint (logs, exec) with a client certificate from the same CA, subject
//! `CN=kube-apiserver-kubelet-client, O=system:masters`, so the node may verify clients against
//! [`TestCluster::ca_pem`].

mod accounts;
pub(crate) mod bins;
mod builder;
mod flags;
mod kubeconfig;
mod pki;
mod process;
mod stale;
mod supervise;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use self::builder::{AUDIT_LOG_ENV, TestClusterBuilder};
use self::kubeconfig::Credentials;
use self::pki::Pki;
use self::process::Process;
use self::supervise::Processes;
use crate::tls::TestCa;

/// Controllers the controller manager runs unless [`TestClusterBuilder::controllers`] says
/// otherwise.
pub const DEFAULT_CONTROLLERS: &[&str] = &[
    "job",
    "serviceaccount",
    "serviceaccount-token",
    "namespace",
    "garbagecollector",
    "ttl-after-finished",
];
/// Kubeconfig context (and user) authenticating with the admin token.
pub const ADMIN_CONTEXT: &str = "admin";
/// Kubeconfig context (and user) authenticating with the admin client certificate.
pub const ADMIN_CERT_CONTEXT: &str = "admin-cert";

/// One process of the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Component {
    /// etcd (Debian's `etcd-server`).
    Etcd,
    /// kube-apiserver.
    ApiServer,
    /// kube-controller-manager.
    ControllerManager,
    /// kube-scheduler.
    Scheduler,
}

impl Component {
    /// The binary's name, also the stem of its log file.
    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
        }
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How long each phase of [`TestCluster::start`] took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartTimings {
    /// Generating keys, certificates and the token file (concurrently with etcd's start).
    pub pki: Duration,
    /// From spawning etcd until `/health` is true.
    pub etcd: Duration,
    /// From spawning kube-apiserver until `/readyz` is ok.
    pub apiserver: Duration,
    /// From spawning the controller manager and the scheduler (concurrently, as soon as the
    /// API server listens, so this overlaps `apiserver`) until both `/healthz` are ok.
    pub controllers: Duration,
    /// Waiting for the system namespaces and the `default` ServiceAccount (with its token).
    pub accounts: Duration,
    /// The whole start, binaries lookup and temp dir included.
    pub total: Duration,
}

/// A running control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) in a
/// temp dir.
///
/// Dropping it kills (SIGKILL) and reaps every process, then removes the directory. The
/// [`admin_client`](Self::admin_client) belongs to the tokio runtime the cluster was started
/// in.
pub struct TestCluster {
    // Declared first so the processes are killed and reaped before the temp dir is removed.
    processes: Processes,
    admin: kube::Client,
    pki: Pki,
    server_url: String,
    kubeconfig_path: PathBuf,
    kubeconfig_doc: serde_json::Value,
    token_controller: bool,
    start_timeout: Duration,
    bins: bins::Binaries,
    apiserver_args: Vec<String>,
    timings: StartTimings,
    audit_log: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens and keys stay out of debug output.
        f.debug_struct("TestCluster")
            .field("server_url", &self.server_url)
            .field("dir", &self.dir.path())
            .field("processes", &self.processes)
            .finish_non_exhaustive()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let port = self.server_url.rsplit(':').next().unwrap_or_default().to_owned();
        for c in [
            Component::Etcd,
            Component::ApiServer,
            Component::ControllerManager,
            Component::Scheduler,
        ] {
            crate::trace::keep_server_log(&format!("{}-{port}", c.name()), &self.log_path(c));
        }
    }
}

impl TestCluster {
    /// Options with their defaults; `TestCluster::builder().scheduler(false).start()`.
    pub fn builder() -> TestClusterBuilder {
        TestClusterBuilder::default()
    }

    /// Starts a cluster with the default options (see [`TestClusterBuilder::start`]).
    pub async fn start() -> anyhow::Result<TestCluster> {
        Self::builder().start().await
    }

    /// `https://127.0.0.1:PORT` of the API server.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// A kubeconfig file for the admin (`kubectl --kubeconfig`); contexts [`ADMIN_CONTEXT`]
    /// (token, current) and [`ADMIN_CERT_CONTEXT`] (client certificate).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The cluster CA certificate, PEM: it signed the API server's serving certificate and
    /// the client certificates the API server accepts.
    pub fn ca_pem(&self) -> String {
        self.pki.ca.ca_pem()
    }

    /// The cluster CA, to issue more certificates (a stand-in kubelet's serving certificate,
    /// client certificates for other users).
    pub fn ca(&self) -> &TestCa {
        &self.pki.ca
    }

    /// A client authenticated with the admin token (group `system:masters`). Cheap to clone.
    pub fn admin_client(&self) -> kube::Client {
        self.admin.clone()
    }

    /// A new client authenticated with the admin client certificate
    /// (`CN=kb-admin, O=system:masters`).
    pub async fn admin_cert_client(&self) -> anyhow::Result<kube::Client> {
        kubeconfig::client(self.kubeconfig_doc.clone(), ADMIN_CERT_CONTEXT).await
    }

    /// A new client sending `token` as a bearer token (any token: valid, expired or made up).
    pub async fn client_with_token(&self, token: &str) -> anyhow::Result<kube::Client> {
        let doc = kubeconfig::render(
            &self.server_url,
            &self.ca_pem(),
            &[("token", Credentials::Token(token))],
        );
        kubeconfig::client(doc, "token").await
    }

    /// The API server's audit log (JSON lines, `Metadata` level), when the cluster was started
    /// with [`TestClusterBuilder::audit_log`].
    pub fn audit_log_path(&self) -> Option<&Path> {
        self.audit_log.as_deref()
    }

    /// Where `component` writes its stdout and stderr.
    pub fn log_path(&self, component: Component) -> PathBuf {
        supervise::log_file(&self.dir.path().join("logs"), component)
    }

    /// Everything `component` logged so far (empty if it is not running).
    pub fn logs(&self, component: Component) -> String {
        std::fs::read_to_string(self.log_path(component)).unwrap_or_default()
    }

    /// The process id of `component`, if it runs in this cluster.
    pub fn pid(&self, component: Component) -> Option<u32> {
        self.processes.get(component).map(Process::pid)
    }

    /// The cluster's temp dir (certificates, etcd data, logs, kubeconfig); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How long the start took, by phase.
    pub fn start_timings(&self) -> StartTimings {
        self.timings
    }

    /// Kills the API server (SIGKILL), waits `down_for`, then starts it again with the same
    /// flags, port and etcd, and waits until it is ready. Clients (and watches) see the
    /// connection drop and must reconnect; etcd, the controllers and the scheduler keep running.
    ///
    /// # Errors
    /// When the new process does not become ready within the start timeout.
    pub async fn restart_apiserver(&mut self, down_for: Duration) -> anyhow::Result<()> {
        let deadline = self.deadline();
        if let Some(mut old) = self.processes.apiserver.take() {
            old.start_kill();
            old.reap(deadline);
        }
        tokio::time::sleep(down_for).await;
        let log_dir = self.dir.path().join("logs");
        let launcher = supervise::Launcher {
            bins: &self.bins,
            log_dir: &log_dir,
            deadline: deadline + down_for,
        };
        let https = crate::reqwest_client(Some(&self.pki.ca.ca_pem()))?;
        let probe = supervise::Probe::ok(
            format!("{}/readyz", self.server_url),
            Some(self.pki.admin_token.clone()),
        );
        let args = self.apiserver_args.clone();
        launcher
            .launch(
                &mut self.processes.apiserver,
                Component::ApiServer,
                &https,
                || Ok((args.clone(), probe.clone(), ())),
            )
            .await
    }

    /// The deadline for a wait that should take about as long as a start at most.
    fn deadline(&self) -> Instant {
        Instant::now() + self.start_timeout
    }
}
