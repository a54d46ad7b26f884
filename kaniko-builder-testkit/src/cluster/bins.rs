//! Where the control-plane binaries are: built by `scripts/build-k8s.sh`, etcd from Debian.

use std::path::{Path, PathBuf};

use anyhow::bail;

use super::Component;

/// The Kubernetes version `scripts/build-k8s.sh` builds.
pub(crate) const K8S_VERSION: &str = "v1.20.2";
/// Debian's `etcd-server` package installs it here; `KB_ETCD_BIN` overrides it.
const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";

/// Paths of the four binaries a cluster runs.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub(crate) etcd: PathBuf,
    pub(crate) apiserver: PathBuf,
    pub(crate) controller_manager: PathBuf,
    pub(crate) scheduler: PathBuf,
}

impl Binaries {
    /// The binary `component` runs.
    pub(crate) fn get(&self, component: Component) -> &Path {
        match component {
            Component::Etcd => &self.etcd,
            Component::ApiServer => &self.apiserver,
            Component::ControllerManager => &self.controller_manager,
            Component::Scheduler => &self.scheduler,
        }
    }

    /// Finds the binaries: Kubernetes in `dir`, else `$KB_K8S_BIN`, else the build script's cache
    /// (`$KB_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/kaniko-builder`, then
    /// `k8s-v1.20.2/bin`); etcd from `$KB_ETCD_BIN` or `/usr/bin/etcd`.
    pub(crate) fn locate(dir: Option<&Path>) -> anyhow::Result<Binaries> {
        let dir = match dir {
            Some(dir) => dir.to_owned(),
            None => default_bin_dir(&|name| std::env::var_os(name))?,
        };
        let k8s = |name: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            if !is_executable(&path) {
                bail!(
                    "{name} not found at {} (KB_K8S_BIN or the cache of KB_CACHE): run \
                     scripts/build-k8s.sh to build the Kubernetes {K8S_VERSION} binaries",
                    path.display()
                );
            }
            Ok(path)
        };
        let etcd =
            std::env::var_os("KB_ETCD_BIN").map_or_else(|| PathBuf::from(DEFAULT_ETCD_BIN), PathBuf::from);
        if !is_executable(&etcd) {
            bail!(
                "etcd not found at {} (KB_ETCD_BIN): install Debian's etcd-server package \
                 (apt-get install etcd-server)",
                etcd.display()
            );
        }
        Ok(Binaries {
            etcd,
            apiserver: k8s("kube-apiserver")?,
            controller_manager: k8s("kube-controller-manager")?,
            scheduler: k8s("kube-scheduler")?,
        })
    }
}

/// The directory `scripts/build-k8s.sh` installs into, from the environment seen through `env`.
fn default_bin_dir(env: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = env("KB_K8S_BIN").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let cache = cache_dir(env).map_err(|e| anyhow::anyhow!("neither KB_K8S_BIN, {e}"))?;
    Ok(cache.join(format!("k8s-{K8S_VERSION}")).join("bin"))
}

/// The project's cache of heavy one-time builds (the scripts' `$KB_CACHE`, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/kaniko-builder`).
pub(crate) fn cache_dir(env: &dyn Fn(&str) -> Option<std::ffi::OsString>) -> anyhow::Result<PathBuf> {
    if let Some(cache) = env("KB_CACHE").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(cache));
    }
    let base = match env("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        Some(xdg) => PathBuf::from(xdg),
        None => match env("HOME").filter(|d| !d.is_empty()) {
            Some(home) => PathBuf::from(home).join(".cache"),
            None => bail!("KB_CACHE, XDG_CACHE_HOME nor HOME is set"),
        },
    };
    Ok(base.join("kaniko-builder"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::default_bin_dir;

    fn dir_for(vars: &[(&str, &str)]) -> String {
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        };
        default_bin_dir(&env).expect("a directory").display().to_string()
    }

    #[test]
    fn bin_dir_follows_the_build_script() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("HOME", "/h")], "/h/.cache/kaniko-builder/k8s-v1.20.2/bin"),
            (
                &[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")],
                "/x/kaniko-builder/k8s-v1.20.2/bin",
            ),
            (
                &[("HOME", "/h"), ("XDG_CACHE_HOME", "/x"), ("KB_CACHE", "/c")],
                "/c/k8s-v1.20.2/bin",
            ),
            (&[("HOME", "/h"), ("KB_CACHE", "/c"), ("KB_K8S_BIN", "/b")], "/b"),
            (
                &[("HOME", "/h"), ("KB_CACHE", "")],
                "/h/.cache/kaniko-builder/k8s-v1.20.2/bin",
            ),
        ];
        for (vars, want) in cases {
            assert_eq!(dir_for(vars), *want, "{vars:?}");
        }
    }

    #[test]
    fn no_home_is_an_error() {
        assert!(default_bin_dir(&|_| None).is_err());
    }
}
