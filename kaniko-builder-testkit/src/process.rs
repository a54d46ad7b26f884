//! A program a test runs as a child process, its output in a file: [`LoggedProcess`].
//!
//! Stopped gracefully ([`LoggedProcess::terminate`], SIGTERM) or killed
//! ([`LoggedProcess::kill`], SIGKILL); killed and reaped on drop. The log stays readable for
//! a failure message ([`LoggedProcess::log_tail`]) and, with `KB_TRACE_DIR`, is kept there for
//! the secrets scan like the servers' logs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// How often [`LoggedProcess::terminate`] looks whether the process has exited.
const POLL: Duration = Duration::from_millis(50);

/// A child process whose stdout and stderr go to one file.
#[derive(Debug)]
pub struct LoggedProcess {
    name: String,
    child: Option<Child>,
    pid: u32,
    log: PathBuf,
}

impl Drop for LoggedProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // Already gone is fine: there is nothing left to stop.
            let _ = child.kill();
            let _ = child.wait();
        }
        crate::trace::keep_server_log(&format!("{}-{}", self.name, self.pid), &self.log);
    }
}

impl LoggedProcess {
    /// Spawns `command` with stdin closed and stdout and stderr appended to `log` (created if
    /// missing); `name` says which process it is in messages.
    ///
    /// # Errors
    /// When the log cannot be opened or the program cannot be started.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<LoggedProcess> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {name}'s log {}", log.display()))?;
        let stderr = file
            .try_clone()
            .with_context(|| format!("clone {name}'s log handle"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("start {name} ({:?})", command.get_program()))?;
        Ok(LoggedProcess {
            name: name.to_owned(),
            pid: child.id(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    /// The name given at [`Self::spawn`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything it wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its last `lines` lines of output.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// How it exited, if it has (reaping it); `None` while it runs.
    ///
    /// # Errors
    /// When its status cannot be read.
    pub fn exit_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(child) => child
                .try_wait()
                .with_context(|| format!("status of {} (pid {})", self.name, self.pid)),
            None => Ok(None),
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for it to exit.
    ///
    /// # Errors
    /// When the signal cannot be sent, or the process is still running after `timeout` (it is
    /// then killed).
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .context("run kill -TERM")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status()? {
                self.child = None;
                return Ok(status);
            }
            if !sent.success() || Instant::now() >= deadline {
                self.kill()?;
                bail!(
                    "{} (pid {}) did not exit within {timeout:?} of SIGTERM (kill: {sent})",
                    self.name,
                    self.pid
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends SIGKILL and reaps it.
    ///
    /// # Errors
    /// When it cannot be signalled or reaped.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} (pid {}) was already stopped", self.name, self.pid);
        };
        // Err only when it already exited, which `wait` then reports.
        let _ = child.kill();
        child
            .wait()
            .with_context(|| format!("reap {} (pid {})", self.name, self.pid))
    }
}
