//! A container-like root for one container, as a runtime would make it: a private mount
//! namespace (`unshare --mount --propagation private`) in which the image's files, the Pod's
//! volumes (at their `mountPath`s, read-only where the mount says so), the termination message
//! file and a few `/dev` nodes are bind-mounted into a per-container directory, which becomes
//! the root (`unshare --root`), with the container's working directory, user and group. The
//! container's own `command`/`args` then run there with the Pod's environment. Nothing is
//! mounted outside that namespace, so nothing is left behind when its processes end.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::Container;
use tokio::process::Command;

use super::container::Ctx;
use super::image::{ImageKind, Images};

/// `/dev` nodes every container gets.
const DEVICES: [&str; 4] = ["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"];
/// util-linux' `unshare` and `mount` (Debian's paths).
const UNSHARE: &str = "/usr/bin/unshare";
const MOUNT: &str = "/bin/mount";

/// One bind mount into the root.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bind {
    source: PathBuf,
    /// The absolute path inside the container.
    target: String,
    read_only: bool,
}

/// A prepared root: the directory, what to mount into it and how to start the process.
#[derive(Debug)]
pub(super) struct ContainerRoot {
    dir: PathBuf,
    binds: Vec<Bind>,
    read_only_root: bool,
    working_dir: String,
    user: Option<(i64, i64)>,
    env: Vec<(String, String)>,
}

impl ContainerRoot {
    /// Lays out the root directory of `ctx`'s container (in its scratch dir) with a mount point
    /// for each bind.
    ///
    /// # Errors
    /// A message for the container's status: a volume mount without a volume, a path that
    /// leaves the root, or the directory cannot be made.
    pub(super) async fn prepare(ctx: &Ctx<'_>, kind: ImageKind, images: &Images) -> Result<Self, String> {
        let container = ctx.container;
        let mut binds: Vec<Bind> = images
            .files(kind)
            .into_iter()
            .map(|(source, target)| Bind {
                source: source.to_owned(),
                target: target.to_owned(),
                read_only: true,
            })
            .collect();
        binds.extend(DEVICES.iter().map(|d| Bind {
            source: PathBuf::from(d),
            target: (*d).to_owned(),
            read_only: false,
        }));
        for mount in container.volume_mounts.iter().flatten() {
            let source = ctx.volumes.source(mount).ok_or_else(|| {
                format!(
                    "stand-in node: volume mount {} names no volume of the Pod",
                    mount.name
                )
            })?;
            binds.push(Bind {
                source,
                target: mount.mount_path.clone(),
                read_only: mount.read_only == Some(true),
            });
        }
        set_mode(ctx.termination_log, 0o666).await?;
        binds.push(Bind {
            source: ctx.termination_log.to_owned(),
            target: ctx.termination_message_path().to_owned(),
            read_only: false,
        });
        if kind == ImageKind::KanikoDebug {
            binds.push(Bind {
                source: ctx.scratch.join("executor"),
                target: super::image::EXECUTOR_DIR.to_owned(),
                read_only: false,
            });
        }
        // Parents before children, so a volume inside another shows on top of it.
        binds.sort_by_key(|b| Path::new(&b.target).components().count());

        let dir = ctx.scratch.join("rootfs");
        for sub in ["tmp", "dev", "etc"] {
            create_dir(&dir.join(sub)).await?;
        }
        set_mode(&dir.join("tmp"), 0o1777).await?;
        for bind in &binds {
            make_mount_point(&dir, bind).await?;
        }
        let security = container.security_context.as_ref();
        let pod_security = ctx.pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
        let uid = security
            .and_then(|s| s.run_as_user)
            .or_else(|| pod_security.and_then(|s| s.run_as_user));
        let gid = security
            .and_then(|s| s.run_as_group)
            .or_else(|| pod_security.and_then(|s| s.run_as_group));
        Ok(Self {
            dir,
            binds,
            read_only_root: security.and_then(|s| s.read_only_root_filesystem) == Some(true),
            working_dir: container
                .working_dir
                .clone()
                .unwrap_or_else(|| kind.working_dir().to_owned()),
            user: uid.map(|u| (u, gid.unwrap_or(0))),
            env: environment(kind, ctx),
        })
    }

    /// The command that runs `container`'s `command` + `args` in this root (a container with
    /// neither runs nothing useful: the images have no entrypoint the stand-in knows).
    pub(super) fn command(&self, container: &Container) -> Command {
        let argv: Vec<String> = container
            .command
            .iter()
            .flatten()
            .chain(container.args.iter().flatten())
            .cloned()
            .collect();
        let mut command = Command::new(UNSHARE);
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(self.setup_script())
            .arg("stand-in-node")
            .args(argv);
        command
    }

    /// The shell run inside the new mount namespace: the binds, then `exec unshare --root`.
    fn setup_script(&self) -> String {
        let root = self.dir.display().to_string();
        let mut lines = vec![
            "set -e".to_owned(),
            format!("{MOUNT} --bind {r} {r}", r = quote(&root)),
        ];
        for bind in &self.binds {
            let target = quote(&format!("{root}{}", bind.target));
            lines.push(format!(
                "{MOUNT} --bind {} {target}",
                quote(&bind.source.display().to_string())
            ));
            if bind.read_only {
                lines.push(format!("{MOUNT} -o remount,bind,ro {target}"));
            }
        }
        if self.read_only_root {
            lines.push(format!("{MOUNT} -o remount,bind,ro {}", quote(&root)));
        }
        let mut exec = format!(
            "exec {UNSHARE} --root={} --wd={}",
            quote(&root),
            quote(&self.working_dir)
        );
        if let Some((uid, gid)) = self.user {
            exec.push_str(&format!(" --setuid {uid} --setgid {gid}"));
        }
        exec.push_str(" -- \"$@\"");
        lines.push(exec);
        lines.join("\n")
    }
}

/// The image's environment, then the Pod's (which wins), then `HOSTNAME` as the kubelet sets it.
fn environment(kind: ImageKind, ctx: &Ctx<'_>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = kind
        .env()
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for (name, value) in ctx.env {
        env.retain(|(k, _)| k != name);
        env.push((name.clone(), value.clone()));
    }
    let hostname = ctx.pod.metadata.name.clone().unwrap_or_default();
    env.retain(|(k, _)| k != "HOSTNAME");
    env.push(("HOSTNAME".to_owned(), hostname));
    env
}

/// A directory, or an empty file when the source is a file, at the bind's target in `root`.
async fn make_mount_point(root: &Path, bind: &Bind) -> Result<(), String> {
    let relative = Path::new(&bind.target)
        .strip_prefix("/")
        .map_err(|_| format!("stand-in node: mount path {} is not absolute", bind.target))?;
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!(
            "stand-in node: mount path {} leaves the container's root",
            bind.target
        ));
    }
    let target = root.join(relative);
    let is_dir = tokio::fs::metadata(&bind.source)
        .await
        .map_err(|e| format!("stand-in node: mount source {}: {e}", bind.source.display()))?
        .is_dir();
    if is_dir {
        create_dir(&target).await
    } else {
        if let Some(parent) = target.parent() {
            create_dir(parent).await?;
        }
        tokio::fs::write(&target, b"")
            .await
            .map_err(|e| format!("stand-in node: create {}: {e}", target.display()))
    }
}

async fn create_dir(dir: &Path) -> Result<(), String> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| format!("stand-in node: create {}: {e}", dir.display()))
}

async fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(|e| format!("stand-in node: chmod {}: {e}", path.display()))
}

/// `s` as one single-quoted shell word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setup_script_binds_parents_first_and_quotes_every_path() {
        let root = ContainerRoot {
            dir: PathBuf::from("/n/it's"),
            binds: vec![
                Bind {
                    source: PathBuf::from("/v/state"),
                    target: "/kaniko/state".to_owned(),
                    read_only: true,
                },
                Bind {
                    source: PathBuf::from("/v/t"),
                    target: "/dev/termination-log".to_owned(),
                    read_only: false,
                },
            ],
            read_only_root: true,
            working_dir: "/".to_owned(),
            user: Some((65532, 65532)),
            env: Vec::new(),
        };
        assert_eq!(
            root.setup_script(),
            "set -e\n\
             /bin/mount --bind '/n/it'\\''s' '/n/it'\\''s'\n\
             /bin/mount --bind '/v/state' '/n/it'\\''s/kaniko/state'\n\
             /bin/mount -o remount,bind,ro '/n/it'\\''s/kaniko/state'\n\
             /bin/mount --bind '/v/t' '/n/it'\\''s/dev/termination-log'\n\
             /bin/mount -o remount,bind,ro '/n/it'\\''s'\n\
             exec /usr/bin/unshare --root='/n/it'\\''s' --wd='/' --setuid 65532 --setgid 65532 -- \"$@\""
        );
    }
}
