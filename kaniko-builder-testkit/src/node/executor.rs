//! The one stand-in left: kaniko's executor. `/kaniko/executor` in the kaniko image's root is a
//! script ([`super::image`]) that writes its pid to a FIFO and waits on another for an exit
//! code. The node reads the executor's real arguments from `/proc/<pid>/cmdline` (exactly what
//! the `image-builder` wrapper ran it with, by `exec` or as a child), runs the build with buildah
//! ([`super::builder`]), whose output goes to the container's log, and answers with the exit
//! code.

use std::path::Path;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::unix::pipe;
use tokio::process::Command;

use super::container::Ctx;
use super::runtime::run_logged;

/// The executor's path in the kaniko image.
const EXECUTOR: &str = "/kaniko/executor";

/// Makes the hand-over FIFOs in the container's `executor/` scratch dir (mounted at
/// [`EXECUTOR_DIR`](super::image::EXECUTOR_DIR)).
pub(super) async fn prepare(scratch: &Path) -> anyhow::Result<()> {
    let dir = scratch.join("executor");
    tokio::fs::create_dir_all(&dir)
        .await
        .context("create the executor dir")?;
    for fifo in ["request", "result"] {
        let status = Command::new("mkfifo")
            .arg("-m")
            .arg("0666")
            .arg(dir.join(fifo))
            .status()
            .await
            .context("run mkfifo")?;
        anyhow::ensure!(status.success(), "mkfifo {fifo} failed: {status}");
    }
    Ok(())
}

/// Runs the container (`command`), serving its one executor call; returns its exit code.
pub(super) async fn run(ctx: &Ctx<'_>, command: Command) -> anyhow::Result<i32> {
    let dir = ctx.scratch.join("executor");
    // Read-write ends: neither open waits for the other side, and the answer stays in the pipe
    // until the shim reads it.
    let request = pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(dir.join("request"))
        .context("open the executor request FIFO")?;
    let mut result = pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(dir.join("result"))
        .context("open the executor result FIFO")?;
    let container = run_logged(command, ctx.log, &ctx.shared.procs);
    tokio::pin!(container);
    let mut lines = BufReader::new(request).lines();
    tokio::select! {
        code = &mut container => return code,
        line = lines.next_line() => {
            let code = match line {
                Ok(Some(pid)) => build(ctx, pid.trim()).await,
                other => {
                    ctx.log.line(&format!("stand-in executor: no request ({other:?})")).await;
                    1
                }
            };
            result
                .write_all(format!("{code}\n").as_bytes())
                .await
                .context("answer the executor")?;
        }
    }
    container.await
}

/// The build for the executor process `pid`: its arguments after `/kaniko/executor`.
async fn build(ctx: &Ctx<'_>, pid: &str) -> i32 {
    let cmdline = match tokio::fs::read(format!("/proc/{pid}/cmdline")).await {
        Ok(bytes) => bytes,
        Err(e) => {
            ctx.log
                .line(&format!(
                    "stand-in executor: cannot read the arguments of pid {pid}: {e}"
                ))
                .await;
            return 1;
        }
    };
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // A script's argv is [interpreter, script, args…, ""] (cmdline ends with a NUL).
    let args = match argv.iter().position(|a| a == EXECUTOR) {
        Some(i) => &argv[i + 1..argv.len().saturating_sub(1).max(i + 1)],
        None => {
            ctx.log
                .line(&format!(
                    "stand-in executor: pid {pid} is not {EXECUTOR}: {argv:?}"
                ))
                .await;
            return 1;
        }
    };
    super::builder::run(ctx, args).await
}
