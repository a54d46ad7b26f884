//! Starting the processes and waiting until they answer; the set of processes a cluster owns.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::Component;
use super::bins::Binaries;
use super::process::Process;

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(50);
/// How often a component is started on fresh ports when its port was taken meanwhile.
const PORT_ATTEMPTS: u32 = 3;
/// How long Drop waits for the killed processes to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// `<log_dir>/<component>.log`.
pub(super) fn log_file(log_dir: &Path, component: Component) -> PathBuf {
    log_dir.join(format!("{component}.log"))
}

/// The processes of a cluster; dropping kills (SIGKILL) and reaps them all.
#[derive(Debug, Default)]
pub(super) struct Processes {
    pub(super) etcd: Option<Process>,
    pub(super) apiserver: Option<Process>,
    pub(super) controller_manager: Option<Process>,
    pub(super) scheduler: Option<Process>,
}

impl Processes {
    pub(super) fn get(&self, component: Component) -> Option<&Process> {
        match component {
            Component::Etcd => self.etcd.as_ref(),
            Component::ApiServer => self.apiserver.as_ref(),
            Component::ControllerManager => self.controller_manager.as_ref(),
            Component::Scheduler => self.scheduler.as_ref(),
        }
    }

    /// The tail of `component`'s log, for error context.
    pub(super) fn tail(&self, component: Component) -> String {
        self.get(component)
            .map_or_else(|| format!("({component} not running)"), Process::log_tail)
    }

    /// Clients first, etcd last.
    fn all_mut(&mut self) -> impl Iterator<Item = &mut Process> {
        [
            &mut self.scheduler,
            &mut self.controller_manager,
            &mut self.apiserver,
            &mut self.etcd,
        ]
        .into_iter()
        .flatten()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for process in self.all_mut() {
            process.start_kill();
        }
        let deadline = Instant::now() + REAP_TIMEOUT;
        for process in self.all_mut() {
            process.reap(deadline);
        }
    }
}

/// What "ready" means for a component.
#[derive(Clone)]
pub(super) struct Probe {
    url: String,
    bearer: Option<String>,
    /// `None`: any HTTP answer; `Some(text)`: a 2xx answer whose body contains `text`.
    expect: Option<&'static str>,
}

impl Probe {
    /// A 2xx answer with body `ok` (Kubernetes' `/readyz`, `/healthz`).
    pub(super) fn ok(url: String, bearer: Option<String>) -> Probe {
        Probe {
            url,
            bearer,
            expect: Some("ok"),
        }
    }

    /// A 2xx answer whose body contains `expect`.
    pub(super) fn body(url: String, expect: &'static str) -> Probe {
        Probe {
            url,
            bearer: None,
            expect: Some(expect),
        }
    }

    /// Any HTTP answer: the server listens.
    pub(super) fn any_answer(url: String) -> Probe {
        Probe {
            url,
            bearer: None,
            expect: None,
        }
    }

    fn passes(&self, status: reqwest::StatusCode, body: &str) -> bool {
        self.expect
            .is_none_or(|expect| status.is_success() && body.contains(expect))
    }
}

/// Spawns components and waits for them, all against one start deadline.
pub(super) struct Launcher<'a> {
    pub(super) bins: &'a Binaries,
    pub(super) log_dir: &'a Path,
    pub(super) deadline: Instant,
}

impl Launcher<'_> {
    /// Spawns `component` into `slot` with the arguments `attempt` returns and waits until its
    /// probe passes; when it died because a port was taken meanwhile, tries again with fresh
    /// ports. Returns what `attempt` returned with the arguments that worked (the chosen port).
    pub(super) async fn launch<T>(
        &self,
        slot: &mut Option<Process>,
        component: Component,
        http: &reqwest::Client,
        mut attempt: impl FnMut() -> anyhow::Result<(Vec<String>, Probe, T)>,
    ) -> anyhow::Result<T> {
        let bin = self.bins.get(component);
        let log = log_file(self.log_dir, component);
        let mut tries = 0;
        loop {
            tries += 1;
            let (args, probe, chosen) = attempt()?;
            if let Some(mut old) = slot.take() {
                old.start_kill();
                old.reap(Instant::now() + REAP_TIMEOUT);
            }
            let process = slot.insert(Process::spawn(component, bin, &args, &log)?);
            match self.wait_ready(process, &probe, http).await {
                Ok(()) => return Ok(chosen),
                Err(e)
                    if tries < PORT_ATTEMPTS
                        && process.exited().is_some()
                        && process.own_log().contains("address already in use") =>
                {
                    tracing::debug!(%component, error = %e, "port taken, retrying on fresh ports");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Polls `probe` until it passes, the process exits or the deadline passes; errors carry
    /// the tail of the process's log.
    pub(super) async fn wait_ready(
        &self,
        process: &mut Process,
        probe: &Probe,
        http: &reqwest::Client,
    ) -> anyhow::Result<()> {
        let component = process.component();
        loop {
            if let Some(status) = process.exited() {
                bail!(
                    "{component} exited ({status}) before it was ready\n{}",
                    process.log_tail()
                );
            }
            let mut request = http.get(&probe.url).timeout(Duration::from_secs(2));
            if let Some(token) = &probe.bearer {
                request = request.bearer_auth(token);
            }
            let last = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    if probe.passes(status, &body) {
                        return Ok(());
                    }
                    format!("{status}: {}", truncate(&body, 2000))
                }
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= self.deadline {
                bail!(
                    "{component} not ready at {} within the start timeout; last answer: {last}\n{}",
                    probe.url,
                    process.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Runs `fut` until `deadline`; the error names `what`.
pub(super) async fn until<F: Future>(deadline: Instant, what: &str, fut: F) -> anyhow::Result<F::Output> {
    tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), fut)
        .await
        .with_context(|| format!("timed out waiting for {what}"))
}
