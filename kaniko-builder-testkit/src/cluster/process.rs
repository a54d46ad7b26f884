//! One control-plane process: spawned with its output in a log file, killed and reaped on drop.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::{Child, Command};

use super::Component;

/// How many lines of a log an error message carries.
const TAIL_LINES: usize = 30;

/// A running (or exited) process of the cluster.
#[derive(Debug)]
pub(crate) struct Process {
    component: Component,
    child: Child,
    pid: u32,
    log: PathBuf,
    /// Length of the log before this process was spawned: the log is appended to across retries.
    log_offset: u64,
}

impl Process {
    /// Spawns `bin args…` with stdin closed and stdout/stderr appended to `log`.
    pub(crate) fn spawn(
        component: Component,
        bin: &Path,
        args: &[String],
        log: &Path,
    ) -> anyhow::Result<Process> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let log_offset = file.metadata().map(|m| m.len()).unwrap_or(0);
        tracing::debug!(%component, bin = %bin.display(), ?args, "spawn");
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().context("duplicate log handle")?)
            .stderr(file)
            // A backstop only: Drop below kills and reaps explicitly.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {component} ({})", bin.display()))?;
        let pid = child.id().context("a just-spawned child has a pid")?;
        // For the clean-up of clusters whose test process was killed (see `stale`).
        std::fs::write(super::stale::pid_file(log), pid.to_string()).context("write pid file")?;
        Ok(Process {
            component,
            child,
            pid,
            log: log.to_owned(),
            log_offset,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn component(&self) -> Component {
        self.component
    }

    /// `Some(status)` once the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// What this process (not an earlier attempt) wrote to its log.
    pub(crate) fn own_log(&self) -> String {
        let read = || -> std::io::Result<String> {
            let mut file = std::fs::File::open(&self.log)?;
            file.seek(SeekFrom::Start(self.log_offset))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        read().unwrap_or_default()
    }

    /// The last lines of [`Self::own_log`], for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let log = self.own_log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
        format!(
            "--- last {} lines of {} ---\n{}",
            tail.len(),
            self.log.display(),
            tail.join("\n")
        )
    }

    /// Sends SIGKILL (no-op when it has exited already).
    pub(crate) fn start_kill(&mut self) {
        if self.exited().is_none()
            && let Err(e) = self.child.start_kill()
        {
            tracing::debug!(component = %self.component, error = %e, "kill");
        }
    }

    /// Waits (blocking, briefly) until the killed process is reaped, so its pid is gone.
    pub(crate) fn reap(&mut self, deadline: Instant) {
        // try_wait reaps without a runtime; SIGKILL takes effect within milliseconds.
        while self.exited().is_none() {
            if Instant::now() >= deadline {
                tracing::warn!(component = %self.component, pid = self.pid, "process not reaped in time");
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
