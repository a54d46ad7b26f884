//! [`NodeOptions`]: how the stand-in node registers and what it trusts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kaniko_builder_core::Platform;

use super::fault::{Fault, Target};
use crate::TestRegistry;

/// Where `scripts/build-crane.sh` caches crane, under the project's cache directory.
const CRANE_CACHE_PATH: &str = "crane-v0.20.1/crane";

/// The default node name.
pub const DEFAULT_NODE_NAME: &str = "kb-node-1";

/// Options for [`StandInNode::start`](super::StandInNode::start); start from
/// [`NodeOptions::default`] and chain setters.
#[derive(Debug, Clone)]
#[must_use]
pub struct NodeOptions {
    pub(super) name: String,
    pub(super) platform: Platform,
    pub(super) registry_cas: Vec<String>,
    pub(super) insecure_registries: Vec<String>,
    pub(super) host_paths: Vec<(PathBuf, PathBuf)>,
    pub(super) buildah_root: Option<PathBuf>,
    pub(super) crane: Option<PathBuf>,
    pub(super) heartbeat: Duration,
    pub(super) pull_time: Duration,
    pub(super) pull_backoff: Duration,
    pub(super) faults: Vec<(Fault, Target)>,
    pub(super) cpu: String,
    pub(super) memory: String,
    pub(super) pods: String,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            name: DEFAULT_NODE_NAME.to_owned(),
            platform: host_platform(),
            registry_cas: Vec::new(),
            insecure_registries: Vec::new(),
            host_paths: Vec::new(),
            buildah_root: None,
            crane: None,
            heartbeat: Duration::from_secs(2),
            pull_time: Duration::from_millis(50),
            pull_backoff: Duration::from_secs(10),
            faults: Vec::new(),
            cpu: "8".to_owned(),
            memory: "32Gi".to_owned(),
            pods: "110".to_owned(),
        }
    }
}

impl NodeOptions {
    /// The `Node` object's name. Default: [`DEFAULT_NODE_NAME`] (`kb-node-1`). Nodes on one
    /// cluster need distinct names (each runs only the Pods bound to its name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The platform the node reports, as a kubelet on such a machine would: the labels
    /// `kubernetes.io/os`, `kubernetes.io/arch` and their deprecated `beta.kubernetes.io/`
    /// twins (the 1.20 kubelet still sets both), and `status.nodeInfo.operatingSystem` and
    /// `architecture` (a variant shows in none of them, as with a kubelet). The real scheduler
    /// then places Pods by their `nodeSelector` on it. It is also the platform kaniko's stand-in
    /// builds for when the executor gets no `--custom-platform` (kaniko defaults to its own
    /// machine's). Nothing is emulated: containers still run on this machine. Default:
    /// [`host_platform`] (`linux/amd64` on x86-64).
    pub fn platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// Trusts this CA certificate (PEM) for registries: in `kaniko-init`'s check, the context
    /// blob fetch and buildah's pulls and pushes. Default: none (the system roots only).
    pub fn registry_ca(mut self, pem: impl Into<String>) -> Self {
        self.registry_cas.push(pem.into());
        self
    }

    /// Speaks plain HTTP to this registry (`host:port`), as a container runtime configured with an
    /// insecure registry would, whatever the Pod's flags say. Default: none.
    pub fn insecure_registry(mut self, host: impl Into<String>) -> Self {
        self.insecure_registries.push(host.into());
        self
    }

    /// Trusts `registry` the way its clients must: its CA when it serves TLS, plain HTTP
    /// otherwise. Shorthand for [`Self::registry_ca`] or [`Self::insecure_registry`].
    pub fn registry(self, registry: &TestRegistry) -> Self {
        match registry.ca_pem() {
            Some(pem) => self.registry_ca(pem),
            None => self.insecure_registry(registry.host()),
        }
    }

    /// Maps `hostPath` volumes under `prefix` (as the Pod spec names them, e.g. `/workspace`) to
    /// `local` on this machine (e.g. a test's temp dir); the longest matching prefix wins.
    /// Unmapped `hostPath`s are used as they are, since the node is this machine. Default: none.
    pub fn host_path(mut self, prefix: impl Into<PathBuf>, local: impl Into<PathBuf>) -> Self {
        self.host_paths.push((prefix.into(), local.into()));
        self
    }

    /// buildah's storage root (`--root`), shareable between nodes so base images are pulled
    /// once. Default: `buildah/root` in the node's temp dir.
    pub fn buildah_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.buildah_root = Some(dir.into());
        self
    }

    /// The `crane` binary the init image runs (at `/ko-app/crane`). Default: `$KB_CRANE`, else
    /// what `scripts/build-crane.sh` caches (`<cache>/crane-v0.20.1/crane`).
    pub fn crane(mut self, path: impl Into<PathBuf>) -> Self {
        self.crane = Some(path.into());
        self
    }

    /// How often the node posts its status and renews its Lease. Default: 2 s.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// How long the "image pull" of each container takes. Default: 50 ms.
    pub fn pull_time(mut self, duration: Duration) -> Self {
        self.pull_time = duration;
        self
    }

    /// The wait after the first failed image pull ([`Fault::ImagePullBackOff`],
    /// [`Fault::ImagePullFailures`]), during which the container shows `ImagePullBackOff`; it
    /// doubles after each further failure, up to 5 minutes, as the kubelet's. Default: 10 s
    /// (the kubelet's).
    pub fn pull_backoff(mut self, first: Duration) -> Self {
        self.pull_backoff = first;
        self
    }

    /// A fault armed from the start (see [`StandInNode::inject`](super::StandInNode::inject)).
    /// Default: none.
    pub fn fault(mut self, fault: Fault, target: Target) -> Self {
        self.faults.push((fault, target));
        self
    }

    /// Capacity (and allocatable) the node reports: cpu, memory and pods. Default: `8`, `32Gi`,
    /// `110`.
    pub fn capacity(
        mut self,
        cpu: impl Into<String>,
        memory: impl Into<String>,
        pods: impl Into<String>,
    ) -> Self {
        self.cpu = cpu.into();
        self.memory = memory.into();
        self.pods = pods.into();
        self
    }

    /// The crane binary to use (see [`Self::crane`]).
    pub(crate) fn crane_path(&self) -> PathBuf {
        if let Some(path) = &self.crane {
            return path.clone();
        }
        if let Some(path) = std::env::var_os("KB_CRANE").filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        crate::cluster::bins::cache_dir(&|name| std::env::var_os(name))
            .map(|cache| cache.join(CRANE_CACHE_PATH))
            .unwrap_or_else(|_| PathBuf::from("crane"))
    }

    /// The local directory a Pod's `hostPath` refers to (see [`Self::host_path`]).
    pub(super) fn map_host_path(&self, path: &Path) -> PathBuf {
        self.host_paths
            .iter()
            .filter_map(|(prefix, local)| {
                path.strip_prefix(prefix)
                    .ok()
                    .map(|rest| (prefix.components().count(), local, rest))
            })
            .max_by_key(|(depth, _, _)| *depth)
            .map_or_else(
                || path.to_owned(),
                |(_, local, rest)| {
                    if rest.as_os_str().is_empty() {
                        local.clone()
                    } else {
                        local.join(rest)
                    }
                },
            )
    }

    /// Whether the node speaks plain HTTP to `host`.
    pub(super) fn is_insecure(&self, host: &str) -> bool {
        self.insecure_registries.iter().any(|h| h == host)
    }
}

/// This machine's platform as Go (and so a kubelet) spells it: `linux/amd64` on x86-64,
/// `linux/arm64` on aarch64.
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    Platform::new(std::env::consts::OS, architecture, None).expect("Rust's OS and ARCH are lowercase words")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_map_by_longest_prefix() {
        let options = NodeOptions::default()
            .host_path("/workspace", "/tmp/a")
            .host_path("/workspace/deep", "/tmp/b");
        let cases = [
            ("/workspace", "/tmp/a"),
            ("/workspace/app", "/tmp/a/app"),
            ("/workspace/deep/x", "/tmp/b/x"),
            ("/workspacex", "/workspacex"),
            ("/srv/ctx", "/srv/ctx"),
        ];
        for (input, want) in cases {
            assert_eq!(
                options.map_host_path(Path::new(input)),
                PathBuf::from(want),
                "{input}"
            );
        }
    }
}
