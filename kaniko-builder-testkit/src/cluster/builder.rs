//! [`TestClusterBuilder`]: the options of a cluster and the order it starts in.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::runtime::wait::await_condition;

use super::bins::Binaries;
use super::kubeconfig::{self, Credentials};
use super::pki::{self, Pki};
use super::supervise::{Launcher, Probe, Processes, until};
use super::{
    ADMIN_CERT_CONTEXT, ADMIN_CONTEXT, Component, DEFAULT_CONTROLLERS, StartTimings, TestCluster, accounts,
    flags, stale,
};

/// Options for [`TestCluster`]; [`TestCluster::builder`] starts from the defaults.
#[derive(Debug, Clone)]
#[must_use]
pub struct TestClusterBuilder {
    controller_manager: bool,
    scheduler: bool,
    controllers: Vec<String>,
    feature_gates: Vec<(String, bool)>,
    extra_args: Vec<(Component, String)>,
    bin_dir: Option<PathBuf>,
    start_timeout: Duration,
    audit_log: bool,
}

/// Environment variable that turns on [`TestClusterBuilder::audit_log`] by default (`1`), for
/// every cluster of a process: a benchmark counting requests, or a look at what a test's
/// clients send.
pub const AUDIT_LOG_ENV: &str = "KB_APISERVER_AUDIT";

impl Default for TestClusterBuilder {
    fn default() -> Self {
        TestClusterBuilder {
            controller_manager: true,
            scheduler: true,
            controllers: DEFAULT_CONTROLLERS.iter().map(|c| (*c).to_owned()).collect(),
            // 1.20 needs it for ttlSecondsAfterFinished (alpha there).
            feature_gates: vec![("TTLAfterFinished".to_owned(), true)],
            extra_args: Vec::new(),
            bin_dir: None,
            start_timeout: Duration::from_secs(60),
            audit_log: std::env::var_os(AUDIT_LOG_ENV).is_some_and(|v| v == "1"),
        }
    }
}

impl TestClusterBuilder {
    /// Whether to run kube-controller-manager. Default: true. Without it nothing creates
    /// service-account tokens, so [`TestCluster::create_namespace`] creates the `default`
    /// ServiceAccount itself with `automountServiceAccountToken: false`.
    pub fn controller_manager(mut self, enabled: bool) -> Self {
        self.controller_manager = enabled;
        self
    }

    /// Whether to run kube-scheduler. Default: true.
    pub fn scheduler(mut self, enabled: bool) -> Self {
        self.scheduler = enabled;
        self
    }

    /// The controllers the controller manager runs. Default: [`DEFAULT_CONTROLLERS`].
    pub fn controllers<I, S>(mut self, controllers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.controllers = controllers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets a feature gate on the API server, the controller manager and the scheduler
    /// (replacing an earlier setting of the same gate). Default: `TTLAfterFinished=true` only.
    pub fn feature_gate(mut self, name: impl Into<String>, enabled: bool) -> Self {
        let name = name.into();
        self.feature_gates.retain(|(n, _)| *n != name);
        self.feature_gates.push((name, enabled));
        self
    }

    /// Appends a command-line argument (`--flag=value`) for `component`; it comes after the
    /// harness's own flags, so it wins over them. Default: none.
    pub fn arg(mut self, component: Component, arg: impl Into<String>) -> Self {
        self.extra_args.push((component, arg.into()));
        self
    }

    /// Directory holding kube-apiserver, kube-controller-manager and kube-scheduler. Default:
    /// `$KB_K8S_BIN`, else the cache of `scripts/build-k8s.sh` (`$KB_CACHE`, else
    /// `${XDG_CACHE_HOME:-~/.cache}/kaniko-builder`, then `k8s-v1.20.2/bin`). etcd comes
    /// from `$KB_ETCD_BIN` or `/usr/bin/etcd`.
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// How long the whole start may take before it fails. Default: 60 s (generous: the
    /// machines are small and tests start clusters in parallel).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Whether the API server writes an audit log (every request at `Metadata` level, JSON
    /// lines) to [`TestCluster::audit_log_path`]. Default: off, unless [`AUDIT_LOG_ENV`] is `1`.
    pub fn audit_log(mut self, enabled: bool) -> Self {
        self.audit_log = enabled;
        self
    }

    /// Whether the token controller runs (service accounts then get legacy token Secrets,
    /// which the 1.20 ServiceAccount admission plugin needs to mount into Pods).
    fn token_controller(&self) -> bool {
        self.controller_manager
            && self
                .controllers
                .iter()
                .any(|c| c == "serviceaccount-token" || c == "*")
    }

    /// Starts the cluster and waits until it is usable: the API server ready, the controller
    /// manager and the scheduler healthy, the namespaces `default` and `kube-system` present and
    /// the `default/default` ServiceAccount usable by Pods. The error of a failed start carries
    /// the tail of the failing component's log.
    pub async fn start(self) -> anyhow::Result<TestCluster> {
        crate::init_tracing();
        crate::install_crypto_provider();
        let t0 = Instant::now();
        let deadline = t0 + self.start_timeout;
        let bins = Binaries::locate(self.bin_dir.as_deref())?;
        stale::reap(&std::env::temp_dir());
        // Declared before `procs`, so on an early return the processes die before their dir.
        let dir = tempfile::Builder::new()
            .prefix(stale::DIR_PREFIX)
            .tempdir()
            .context("create cluster temp dir")?;
        stale::claim(dir.path()).context("write owner.pid")?;
        let log_dir = dir.path().join("logs");
        std::fs::create_dir_all(&log_dir).context("create log dir")?;
        let launcher = Launcher {
            bins: &bins,
            log_dir: &log_dir,
            deadline,
        };
        let mut procs = Processes::default();
        let mut timings = StartTimings::default();

        // etcd boots while the keys and certificates are made.
        let pki_dir = dir.path().to_owned();
        let pki_task = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            pki::generate(&pki_dir).map(|pki| (pki, start.elapsed()))
        });
        let phase = Instant::now();
        let etcd_port = self
            .start_etcd(&launcher, &mut procs.etcd, &dir.path().join("etcd"))
            .await?;
        timings.etcd = phase.elapsed();
        let (pki, pki_time) = pki_task.await.context("certificate generation panicked")??;
        timings.pki = pki_time;

        let https = crate::reqwest_client(Some(&pki.ca.ca_pem()))?;
        let (audit_log, audit_args) = self.audit(dir.path(), &log_dir)?;
        let apiserver_spawned = Instant::now();
        let (api_port, apiserver_args) = self
            .spawn_apiserver(
                &launcher,
                &mut procs.apiserver,
                &pki,
                etcd_port,
                &https,
                &audit_args,
            )
            .await?;
        let server_url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig_doc = admin_kubeconfig(&server_url, &pki);
        let kubeconfig_path = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig_path, serde_json::to_string_pretty(&kubeconfig_doc)?)
            .context("write kubeconfig")?;
        let admin = kubeconfig::client(kubeconfig_doc.clone(), ADMIN_CONTEXT).await?;

        // The controller manager and the scheduler start while the API server finishes its
        // bootstrap (both wait for it on their own; the controller manager for up to 10 s).
        let Processes {
            apiserver,
            controller_manager,
            scheduler,
            ..
        } = &mut procs;
        let apiserver_ready = async {
            let process = apiserver.as_mut().context("kube-apiserver was launched")?;
            let probe = Probe::ok(format!("{server_url}/readyz"), Some(pki.admin_token.clone()));
            launcher.wait_ready(process, &probe, &https).await?;
            anyhow::Ok(apiserver_spawned.elapsed())
        };
        let controllers_spawned = Instant::now();
        let controller_manager = async {
            if self.controller_manager {
                let component = Component::ControllerManager;
                launcher
                    .launch(controller_manager, component, &https, || {
                        let port = crate::free_port();
                        let args = flags::controller_manager(
                            &pki.files,
                            &kubeconfig_path,
                            port,
                            &self.gates(),
                            &self.controllers,
                        );
                        Ok((self.with_extra(component, args), healthz(port), ()))
                    })
                    .await?;
            }
            anyhow::Ok(controllers_spawned.elapsed())
        };
        let scheduler = async {
            if self.scheduler {
                let component = Component::Scheduler;
                launcher
                    .launch(scheduler, component, &https, || {
                        let port = crate::free_port();
                        let args = flags::scheduler(&pki.files, &kubeconfig_path, port, &self.gates());
                        Ok((self.with_extra(component, args), healthz(port), ()))
                    })
                    .await?;
            }
            anyhow::Ok(controllers_spawned.elapsed())
        };
        let (api, cm, sched) = tokio::try_join!(apiserver_ready, controller_manager, scheduler)?;
        timings.apiserver = api;
        timings.controllers = cm.max(sched);

        let phase = Instant::now();
        self.wait_for_accounts(&admin, deadline).await.with_context(|| {
            format!(
                "the cluster's namespaces and default service account\n{}",
                procs.tail(Component::ControllerManager)
            )
        })?;
        timings.accounts = phase.elapsed();
        timings.total = t0.elapsed();
        tracing::info!(?timings, %server_url, dir = %dir.path().display(), "test cluster ready");

        Ok(TestCluster {
            processes: procs,
            admin,
            pki,
            server_url,
            kubeconfig_path,
            kubeconfig_doc,
            token_controller: self.token_controller(),
            start_timeout: self.start_timeout,
            bins,
            apiserver_args,
            timings,
            audit_log,
            dir,
        })
    }

    /// With [`Self::audit_log`]: writes the policy in `dir` and returns the log's path (in
    /// `log_dir`) and the API server's flags; otherwise nothing.
    fn audit(&self, dir: &Path, log_dir: &Path) -> anyhow::Result<(Option<PathBuf>, Vec<String>)> {
        if !self.audit_log {
            return Ok((None, Vec::new()));
        }
        let policy = dir.join("audit-policy.yaml");
        std::fs::write(&policy, flags::AUDIT_POLICY).context("write the audit policy")?;
        let log = log_dir.join("audit.log");
        let args = flags::audit(&policy, &log);
        Ok((Some(log), args))
    }

    /// Starts etcd on fresh ports and waits until it is healthy; returns its client port.
    async fn start_etcd(
        &self,
        launcher: &Launcher<'_>,
        slot: &mut Option<super::process::Process>,
        data_dir: &Path,
    ) -> anyhow::Result<u16> {
        let http = crate::reqwest_client(None)?;
        launcher
            .launch(slot, Component::Etcd, &http, || {
                // A failed attempt may have left a member behind that knows other ports.
                if data_dir.exists() {
                    std::fs::remove_dir_all(data_dir).context("clear etcd data dir")?;
                }
                let (client, peer) = (crate::free_port(), crate::free_port());
                let args = self.with_extra(Component::Etcd, flags::etcd(data_dir, client, peer));
                let probe = Probe::body(format!("http://127.0.0.1:{client}/health"), "\"health\":\"true\"");
                Ok((args, probe, client))
            })
            .await
    }

    /// Starts the API server and waits only until it listens (any answer): then the port is
    /// known to be ours, and readiness is awaited alongside the other components. Returns the port
    /// and the arguments (for [`TestCluster::restart_apiserver`]).
    async fn spawn_apiserver(
        &self,
        launcher: &Launcher<'_>,
        slot: &mut Option<super::process::Process>,
        pki: &Pki,
        etcd_port: u16,
        https: &reqwest::Client,
        audit: &[String],
    ) -> anyhow::Result<(u16, Vec<String>)> {
        launcher
            .launch(slot, Component::ApiServer, https, || {
                let port = crate::free_port();
                let mut args = flags::apiserver(&pki.files, etcd_port, port, &self.gates());
                args.extend_from_slice(audit);
                let probe = Probe::any_answer(format!("https://127.0.0.1:{port}/livez"));
                let args = self.with_extra(Component::ApiServer, args);
                Ok((args.clone(), probe, (port, args)))
            })
            .await
    }

    /// Waits for the namespaces `default` and `kube-system` and makes sure `default/default`
    /// can be used by Pods.
    async fn wait_for_accounts(&self, admin: &kube::Client, deadline: Instant) -> anyhow::Result<()> {
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        for ns in ["default", "kube-system"] {
            until(
                deadline,
                &format!("namespace {ns}"),
                await_condition(namespaces.clone(), ns, |n: Option<&Namespace>| n.is_some()),
            )
            .await?
            .with_context(|| format!("watch namespace {ns}"))?;
        }
        accounts::ensure_service_account(admin, "default", "default", self.token_controller(), deadline)
            .await?;
        Ok(())
    }

    /// `--feature-gates` value for every component.
    fn gates(&self) -> String {
        flags::feature_gates(&self.feature_gates)
    }

    /// `args` followed by the [`Self::arg`]s for `component`.
    fn with_extra(&self, component: Component, mut args: Vec<String>) -> Vec<String> {
        args.extend(
            self.extra_args
                .iter()
                .filter(|(c, _)| *c == component)
                .map(|(_, arg)| arg.clone()),
        );
        args
    }
}

/// Probe for the HTTPS `/healthz` of the controller manager or the scheduler.
fn healthz(port: u16) -> Probe {
    Probe::ok(format!("https://127.0.0.1:{port}/healthz"), None)
}

/// The admin kubeconfig: contexts [`ADMIN_CONTEXT`] (token, current) and
/// [`ADMIN_CERT_CONTEXT`] (client certificate).
fn admin_kubeconfig(server_url: &str, pki: &Pki) -> serde_json::Value {
    kubeconfig::render(
        server_url,
        &pki.ca.ca_pem(),
        &[
            (ADMIN_CONTEXT, Credentials::Token(&pki.admin_token)),
            (
                ADMIN_CERT_CONTEXT,
                Credentials::ClientCert {
                    cert_pem: &pki.admin_cert_pem,
                    key_pem: &pki.admin_key_pem,
                },
            ),
        ],
    )
}
