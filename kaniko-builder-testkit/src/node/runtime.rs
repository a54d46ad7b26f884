//! The container runtime's small part: container logs, child processes in their own process
//! group (killed with the whole group when the container is stopped), exit codes.

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::Stdio;

use anyhow::Context as _;
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWriteExt as _, BufReader};
use tokio::process::Command;

use super::layout;

/// Opens `path` for appending, creating it.
async fn append_to(path: &Path) -> anyhow::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .with_context(|| format!("open container log {}", path.display()))
}

/// A container's combined stdout+stderr file (`<container>.log`), appended line by line, and
/// beside it the time each line was written (`<container>.timestamps`, one RFC 3339 time with
/// nine fractional digits per line, as a container runtime records it in a CRI log), which the
/// kubelet endpoint serves with `timestamps` and filters with `sinceTime`.
#[derive(Debug)]
pub(super) struct Log {
    files: tokio::sync::Mutex<LogFiles>,
}

#[derive(Debug)]
struct LogFiles {
    log: tokio::fs::File,
    stamps: tokio::fs::File,
}

impl Log {
    pub(super) async fn open(path: &Path) -> anyhow::Result<Self> {
        // The times first: whoever finds the log finds its times.
        let stamps = append_to(&layout::timestamps_of(path)).await?;
        let log = append_to(path).await?;
        Ok(Self {
            files: tokio::sync::Mutex::new(LogFiles { log, stamps }),
        })
    }

    /// Appends one line (a newline is added) and flushes it, so readers see it at once; its
    /// time is written and flushed first, so a reader that sees the line finds its time.
    pub(super) async fn line(&self, line: &str) {
        let mut files = self.files.lock().await;
        let mut bytes = line.trim_end_matches(['\r', '\n']).as_bytes().to_vec();
        bytes.push(b'\n');
        // One time per line written (a message may hold several).
        let lines = bytes.iter().filter(|b| **b == b'\n').count();
        let times = format!("{:.9}\n", Timestamp::now()).repeat(lines);
        let written = async {
            files.stamps.write_all(times.as_bytes()).await?;
            files.stamps.flush().await?;
            files.log.write_all(&bytes).await?;
            files.log.flush().await
        };
        if let Err(e) = written.await {
            tracing::warn!(error = %e, "append to container log");
        }
    }

    /// Copies `reader` into the log line by line until it ends.
    async fn copy_lines(&self, reader: impl AsyncRead + Unpin) {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) => return,
                Ok(_) => self.line(&String::from_utf8_lossy(&buf)).await,
                Err(e) => {
                    tracing::warn!(error = %e, "read container output");
                    return;
                }
            }
        }
    }
}

/// The process groups of the node's running containers, so the node can kill them all at
/// once when it goes away.
#[derive(Debug, Default)]
pub(super) struct ProcTable(std::sync::Mutex<std::collections::HashSet<u32>>);

impl ProcTable {
    fn set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u32>> {
        // A poisoned set is still a set of process groups to kill.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// SIGKILLs every registered process group.
    pub(super) fn kill_all(&self) {
        let groups: Vec<u32> = self.set().drain().collect();
        for pgid in groups {
            kill_group(pgid);
        }
    }
}

/// Kills a process group with SIGKILL when dropped, unless disarmed: dropping a container's
/// future (deletion, eviction, the node going away) takes its processes with it.
#[derive(Debug)]
struct GroupGuard<'a> {
    pgid: Option<u32>,
    table: &'a ProcTable,
}

impl<'a> GroupGuard<'a> {
    fn new(pgid: Option<u32>, table: &'a ProcTable) -> Self {
        if let Some(pgid) = pgid {
            table.set().insert(pgid);
        }
        Self { pgid, table }
    }

    fn disarm(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            self.table.set().remove(&pgid);
        }
    }
}

impl Drop for GroupGuard<'_> {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            self.table.set().remove(&pgid);
            kill_group(pgid);
        }
    }
}

/// `kill -KILL -- -PGID` (the crate forbids `unsafe`, so no direct `kill(2)`).
fn kill_group(pgid: u32) {
    let result = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = result {
        tracing::warn!(pgid, error = %e, "kill process group");
    }
}

/// Runs `command` in its own process group, streaming its stdout and stderr into `log`, and
/// returns its exit code (128 + signal when killed by a signal, as container runtimes report).
pub(super) async fn run_logged(mut command: Command, log: &Log, procs: &ProcTable) -> anyhow::Result<i32> {
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let program = command.as_std().get_program().to_string_lossy().into_owned();
    let mut child = command.spawn().with_context(|| format!("spawn {program}"))?;
    let mut guard = GroupGuard::new(child.id(), procs);
    let stdout = child.stdout.take().context("piped stdout")?;
    let stderr = child.stderr.take().context("piped stderr")?;
    let (_, _, status) = tokio::join!(log.copy_lines(stdout), log.copy_lines(stderr), child.wait());
    guard.disarm();
    let status = status.with_context(|| format!("wait for {program}"))?;
    Ok(exit_code(status))
}

/// The exit code a container runtime reports for `status`.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_is_logged_line_by_line_and_exit_codes_are_kept() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.log");
        let log = Log::open(&path).await?;
        let mut command = Command::new("sh");
        command.args(["-c", "echo out; echo err >&2; exit 3"]);
        assert_eq!(run_logged(command, &log, &ProcTable::default()).await?, 3);
        let text = std::fs::read_to_string(&path)?;
        assert!(text.contains("out\n") && text.contains("err\n"), "{text:?}");
        let mut killed = Command::new("sh");
        killed.args(["-c", "kill -9 $$"]);
        assert_eq!(run_logged(killed, &log, &ProcTable::default()).await?, 137);
        Ok(())
    }

    #[tokio::test]
    async fn dropping_a_run_kills_its_process_group() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = Log::open(&dir.path().join("c.log")).await?;
        let pid_file = dir.path().join("pid");
        let mut command = Command::new("sh");
        // The grandchild is what would outlive a plain kill of the direct child.
        command
            .arg("-c")
            .arg(format!("sleep 600 & echo $! > {}; wait", pid_file.display()));
        let procs = ProcTable::default();
        let run = run_logged(command, &log, &procs);
        let pid = tokio::select! {
            r = run => anyhow::bail!("sleep ended early: {r:?}"),
            pid = async {
                loop {
                    if let Ok(pid) = std::fs::read_to_string(&pid_file)
                        && !pid.trim().is_empty()
                    {
                        break pid.trim().to_owned();
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            } => pid,
        };
        // The select dropped the run: the grandchild must be gone (reaped by init or a zombie).
        let stat = format!("/proc/{pid}/stat");
        for _ in 0..200 {
            match std::fs::read_to_string(&stat) {
                Err(_) => return Ok(()),
                Ok(s) if s.split_whitespace().nth(2) == Some("Z") => return Ok(()),
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        anyhow::bail!("process {pid} survived its container")
    }
}
