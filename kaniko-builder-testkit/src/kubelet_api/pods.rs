//! Finding a pod's files from the namespace and name in a kubelet URL.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::node::layout;

/// One pod's directory on the node, found by [`PodFiles::find`].
#[derive(Debug, Clone)]
pub(super) struct PodFiles {
    node_dir: PathBuf,
    namespace: String,
    name: String,
    uid: String,
}

impl PodFiles {
    /// The newest (by creation time) `<node_dir>/pods/<namespace>_<name>_<uid>/` directory, if any.
    ///
    /// Namespaces, pod names and uids never contain `_`, so the prefix is unambiguous.
    pub(super) fn find(node_dir: &Path, namespace: &str, name: &str) -> Option<PodFiles> {
        let prefix = format!("{namespace}_{name}_");
        let entries = std::fs::read_dir(node_dir.join("pods")).ok()?;
        let mut newest: Option<(SystemTime, String)> = None;
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(uid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            if uid.is_empty() || uid.contains('_') {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_dir() {
                continue;
            }
            // Creation time where the file system records it: a directory's mtime changes
            // whenever a file is added to it.
            let born = meta
                .created()
                .or_else(|_| meta.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            if newest.as_ref().is_none_or(|(t, _)| born > *t) {
                newest = Some((born, uid.to_owned()));
            }
        }
        newest.map(|(_, uid)| PodFiles {
            node_dir: node_dir.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid,
        })
    }

    /// The pod's directory.
    pub(super) fn dir(&self) -> PathBuf {
        layout::pod_dir(&self.node_dir, &self.namespace, &self.name, &self.uid)
    }

    /// `<container>.log`.
    pub(super) fn log(&self, container: &str) -> PathBuf {
        layout::log_path(&self.node_dir, &self.namespace, &self.name, &self.uid, container)
    }

    /// `<container>.done`.
    pub(super) fn done(&self, container: &str) -> PathBuf {
        layout::done_path(&self.node_dir, &self.namespace, &self.name, &self.uid, container)
    }

    /// The pod's `/workspace`.
    pub(super) fn workspace(&self) -> PathBuf {
        layout::workspace_dir(&self.node_dir, &self.namespace, &self.name, &self.uid)
    }
}

/// Whether `name` can be a namespace, pod or container name (DNS-1123 characters): anything
/// else (a `/` or `..` smuggled in percent-encoded) never reaches the file system.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_1123() {
        for ok in ["kaniko-init", "a", "my.pod-1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "..", ".x", "a/b", "A", "a_b", "a b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn finds_the_newest_pod_dir_by_prefix() -> std::io::Result<()> {
        let node = tempfile::tempdir()?;
        let pods = node.path().join("pods");
        for dir in ["ns_web_old", "ns_web-2_x", "ns_we_y"] {
            std::fs::create_dir_all(pods.join(dir))?;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::create_dir_all(pods.join("ns_web_new"))?;
        let found = PodFiles::find(node.path(), "ns", "web").expect("ns/web is found");
        assert_eq!(found.dir(), pods.join("ns_web_new"));
        assert_eq!(found.log("c"), pods.join("ns_web_new").join("c.log"));
        assert!(PodFiles::find(node.path(), "ns", "other").is_none());
        Ok(())
    }
}
