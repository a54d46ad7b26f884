//! Clean-up after test processes that died without dropping their cluster (SIGKILL, a `timeout`
//! around `cargo test`): Drop never ran, so their control planes would run on forever.
//!
//! Each cluster dir holds `owner.pid` (the test process) and `logs/<component>.pid`. A new
//! cluster kills the processes of every `kb-cluster-*` dir whose owner is gone (only pids whose
//! command line still names that dir, so a reused pid is never hit) and removes the dir.

use std::path::Path;

/// Prefix of cluster temp dirs.
pub(crate) const DIR_PREFIX: &str = "kb-cluster-";
const OWNER_FILE: &str = "owner.pid";

/// Marks `dir` as owned by this process.
pub(crate) fn claim(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join(OWNER_FILE), std::process::id().to_string())
}

/// Where [`super::process::Process`] records the pid of the process logging to `log`.
pub(crate) fn pid_file(log: &Path) -> std::path::PathBuf {
    log.with_extension("pid")
}

/// Kills the processes of abandoned cluster dirs under `tmp` and removes those dirs.
pub(crate) fn reap(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        // No owner file yet: a cluster being created right now.
        let Some(owner) = read_pid(&dir.join(OWNER_FILE)) else {
            continue;
        };
        if is_running(owner) {
            continue;
        }
        tracing::info!(dir = %dir.display(), owner, "removing the cluster of a test process that is gone");
        let pid_files = std::fs::read_dir(dir.join("logs"))
            .into_iter()
            .flatten()
            .flatten();
        for pid_file in pid_files.filter(|f| f.path().extension().is_some_and(|e| e == "pid")) {
            if let Some(pid) = read_pid(&pid_file.path())
                && cmdline_mentions(pid, &dir)
            {
                kill(pid);
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::debug!(dir = %dir.display(), error = %e, "remove abandoned cluster dir");
        }
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn is_running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn cmdline_mentions(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = dir.as_os_str().as_encoded_bytes();
    cmdline.windows(needle.len()).any(|w| w == needle)
}

/// SIGKILL through kill(1): the pid is not our child, and this crate has no unsafe code.
fn kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    tracing::debug!(pid, ?status, "killed abandoned cluster process");
}
