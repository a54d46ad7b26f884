//! The two container images of a kaniko build, laid out from this machine's parts, as the
//! node's container runtime "pulls" them:
//! - **crane's debug image** (`kaniko-init`): the real `crane` at `/ko-app/crane`, busybox at
//!   `/busybox`, the CA bundle at `/etc/ssl/certs/ca-certificates.crt` (this machine's roots
//!   plus the node's registry CAs, as a cluster whose nodes trust a private CA would provide);
//! - **kaniko's debug image** (`image-builder`): busybox at `/busybox` and `/kaniko/executor`,
//!   the one stand-in left: a script that hands its arguments to the node, which builds with
//!   buildah (see [`super::executor`]); the same CA bundle at
//!   `/kaniko/ssl/certs/ca-certificates.crt` (the image's `SSL_CERT_DIR`), which the crane a
//!   multi-platform build copies in uses to push.
//!
//! Their environment and working directory are the real images' (read from their build files).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Container;
use kaniko_builder_k8s::manifest::{BUILDER_CONTAINER, INIT_CONTAINER};

/// Where Debian's `busybox-static` installs the static binary.
pub(super) const BUSYBOX: &str = "/bin/busybox";
/// The system CA bundle the crane image's bundle starts from, when this machine has one.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The stand-in executor's side of the hand-over, inside the container.
pub(super) const EXECUTOR_DIR: &str = "/.kb-node";

/// `/kaniko/executor`: writes its pid to the request FIFO (the node reads its arguments from
/// `/proc/<pid>/cmdline`), then waits for the exit code of the build the node ran.
const EXECUTOR_SHIM: &str = "#!/busybox/sh
# kaniko-builder stand-in node: the kaniko executor is replaced by buildah on the node, which reads
# this process's arguments and answers with the build's exit code.
echo $$ > /.kb-node/request
read -r code < /.kb-node/result
exit \"${code:-1}\"
";

/// Which image a container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ImageKind {
    /// `gcr.io/go-containerregistry/crane/debug` or a mirror of it.
    CraneDebug,
    /// `…/kaniko…:…-debug` or a mirror of it.
    KanikoDebug,
}

impl ImageKind {
    /// By the image's repository (`crane`, `kaniko`), else by the build contract's container
    /// name; `None` for anything else.
    pub(super) fn of(container: &Container) -> Option<Self> {
        let image = container.image.as_deref().unwrap_or_default();
        let name = image.split('@').next().unwrap_or_default();
        let repository = match name.rsplit_once(':') {
            // A `:` after the last `/` starts the tag; one before it is a port.
            Some((repo, tag)) if !tag.contains('/') => repo,
            _ => name,
        };
        if repository.contains("crane") {
            Some(Self::CraneDebug)
        } else if repository.contains("kaniko") {
            Some(Self::KanikoDebug)
        } else {
            match container.name.as_str() {
                INIT_CONTAINER => Some(Self::CraneDebug),
                BUILDER_CONTAINER => Some(Self::KanikoDebug),
                _ => None,
            }
        }
    }

    /// The image's own environment (`ENV`), which the Pod's `env` overrides.
    pub(super) fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            // distroless base:debug, which ko builds crane's debug image on.
            Self::CraneDebug => &[
                (
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/busybox",
                ),
                ("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),
            ],
            Self::KanikoDebug => &[
                ("PATH", "/usr/local/bin:/kaniko:/busybox"),
                ("HOME", "/root"),
                ("USER", "root"),
                ("SSL_CERT_DIR", "/kaniko/ssl/certs"),
                ("DOCKER_CONFIG", "/kaniko/.docker/"),
            ],
        }
    }

    /// The image's `WORKDIR`.
    pub(super) fn working_dir(self) -> &'static str {
        match self {
            Self::CraneDebug => "/",
            Self::KanikoDebug => "/workspace",
        }
    }
}

/// The node's copy of the images' files, made once when the node starts.
#[derive(Debug)]
pub(super) struct Images {
    /// `busybox` and a symlink per applet, bind-mounted read-only at `/busybox`.
    pub(super) busybox_dir: PathBuf,
    /// The real crane binary, bind-mounted at `/ko-app/crane`.
    pub(super) crane: PathBuf,
    /// This machine's roots plus the node's registry CAs.
    pub(super) ca_bundle: PathBuf,
    /// The executor shim, bind-mounted at `/kaniko/executor`.
    pub(super) executor: PathBuf,
}

impl Images {
    /// Lays the files out under `dir/images`.
    ///
    /// # Errors
    /// busybox or crane missing (with what to install or run), or the files cannot be written.
    pub(super) fn prepare(dir: &Path, crane: &Path, registry_cas: &[String]) -> anyhow::Result<Self> {
        if !Path::new(BUSYBOX).is_file() {
            anyhow::bail!("{BUSYBOX} is missing: install busybox-static");
        }
        if !crane.is_file() {
            anyhow::bail!(
                "crane is missing at {}: run scripts/build-crane.sh (or point KB_CRANE at a crane binary)",
                crane.display()
            );
        }
        let base = dir.join("images");
        let busybox_dir = base.join("busybox");
        std::fs::create_dir_all(&busybox_dir).context("create the busybox dir")?;
        std::fs::copy(BUSYBOX, busybox_dir.join("busybox")).context("copy busybox")?;
        let list = std::process::Command::new(BUSYBOX)
            .arg("--list")
            .output()
            .context("busybox --list")?;
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" && !applet.contains('/') && !applet.is_empty() {
                std::os::unix::fs::symlink("busybox", busybox_dir.join(applet))
                    .with_context(|| format!("link busybox applet {applet}"))?;
            }
        }

        let mut bundle = std::fs::read_to_string(SYSTEM_CA_BUNDLE).unwrap_or_default();
        for pem in registry_cas {
            bundle.push('\n');
            bundle.push_str(pem);
        }
        let ca_bundle = base.join("ca-certificates.crt");
        std::fs::write(&ca_bundle, bundle).context("write the CA bundle")?;

        let executor = base.join("executor");
        std::fs::write(&executor, EXECUTOR_SHIM).context("write the executor shim")?;
        std::fs::set_permissions(&executor, std::fs::Permissions::from_mode(0o755))
            .context("chmod the executor shim")?;
        Ok(Self {
            busybox_dir,
            crane: crane.to_owned(),
            ca_bundle,
            executor,
        })
    }

    /// The image's own files: (local source, path in the container).
    pub(super) fn files(&self, kind: ImageKind) -> Vec<(&Path, &'static str)> {
        let mut files = vec![(self.busybox_dir.as_path(), "/busybox")];
        match kind {
            ImageKind::CraneDebug => {
                files.push((self.crane.as_path(), "/ko-app/crane"));
                files.push((self.ca_bundle.as_path(), "/etc/ssl/certs/ca-certificates.crt"));
            }
            ImageKind::KanikoDebug => {
                files.push((self.executor.as_path(), "/kaniko/executor"));
                // The real image ships the roots at /kaniko/ssl/certs (its SSL_CERT_DIR); a
                // private registry's CA is added there, as for kaniko itself.
                files.push((self.ca_bundle.as_path(), "/kaniko/ssl/certs/ca-certificates.crt"));
            }
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_known_by_repository_then_by_container_name() {
        let container = |name: &str, image: &str| Container {
            name: name.to_owned(),
            image: Some(image.to_owned()),
            ..Container::default()
        };
        let cases = [
            (
                "x",
                "gcr.io/go-containerregistry/crane/debug:v0.21.6",
                Some(ImageKind::CraneDebug),
            ),
            (
                "x",
                "127.0.0.1:5000/mirror/crane:debug",
                Some(ImageKind::CraneDebug),
            ),
            (
                "x",
                "ghcr.io/osscontainertools/kaniko:v1.28.3-debug",
                Some(ImageKind::KanikoDebug),
            ),
            (
                "x",
                "127.0.0.1:5000/kaniko@sha256:00",
                Some(ImageKind::KanikoDebug),
            ),
            (
                INIT_CONTAINER,
                "127.0.0.1:5000/tools/init:v1",
                Some(ImageKind::CraneDebug),
            ),
            (
                BUILDER_CONTAINER,
                "registry.local/builder:v1",
                Some(ImageKind::KanikoDebug),
            ),
            ("sidecar", "nginx:1", None),
        ];
        for (name, image, want) in cases {
            assert_eq!(ImageKind::of(&container(name, image)), want, "{name} {image}");
        }
    }
}
