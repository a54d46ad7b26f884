//! The stand-in node's on-disk layout, shared with the kubelet API endpoint.
//!
//! Each pod bound to the node gets `<node_dir>/pods/<namespace>_<pod-name>_<pod-uid>/` holding:
//! - `workspace/`: the pod's context directory (what `/workspace` maps to inside the container);
//! - `<container>.log`: the container's combined stdout and stderr, appended line by line as it runs;
//! - `<container>.timestamps`: when each line of the log was written, one RFC 3339 time (nine
//!   fractional digits, UTC) per line, each written before its line;
//! - `<container>.done`: created when the container has terminated; its content is the exit code.

use std::path::{Path, PathBuf};

/// The directory of one pod: `<node_dir>/pods/<namespace>_<name>_<uid>/`.
pub(crate) fn pod_dir(node_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    node_dir.join("pods").join(format!("{namespace}_{name}_{uid}"))
}

/// The combined stdout+stderr of one container: `<pod_dir>/<container>.log`.
pub(crate) fn log_path(node_dir: &Path, namespace: &str, name: &str, uid: &str, container: &str) -> PathBuf {
    pod_dir(node_dir, namespace, name, uid).join(format!("{container}.log"))
}

/// The times of the lines of the log at `log_path`: `<pod_dir>/<container>.timestamps`.
pub(crate) fn timestamps_of(log_path: &Path) -> PathBuf {
    log_path.with_extension("timestamps")
}

/// The marker written when a container terminated (content: its exit code):
/// `<pod_dir>/<container>.done`.
pub(crate) fn done_path(node_dir: &Path, namespace: &str, name: &str, uid: &str, container: &str) -> PathBuf {
    pod_dir(node_dir, namespace, name, uid).join(format!("{container}.done"))
}

/// The pod's context directory, what `/workspace` maps to: `<pod_dir>/workspace/`.
pub(crate) fn workspace_dir(node_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    pod_dir(node_dir, namespace, name, uid).join("workspace")
}
