//! The volume manager's small part: where each volume of a Pod lives on this machine, and the
//! in-container path → local path translation through a container's mounts.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use std::os::unix::fs::PermissionsExt as _;

use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret, VolumeMount};
use kube::Api;

use super::options::NodeOptions;
use kaniko_builder_k8s::manifest::CONTEXT_DIR;

/// The local directories of a Pod's volumes, by volume name.
#[derive(Debug, Clone, Default)]
pub(super) struct Volumes {
    dirs: BTreeMap<String, PathBuf>,
}

/// Why a volume cannot be set up (yet): the kubelet retries, the Pod stays `ContainerCreating`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MountError(pub(super) String);

impl Volumes {
    /// Sets up every volume of `pod`: `emptyDir`s as directories in the Pod's directory (the one
    /// mounted at `/workspace` is the layout's `workspace/`), `hostPath`s mapped by the node's
    /// options, `secret` and `configMap` volumes written out from the API like a kubelet does.
    pub(super) async fn prepare(
        client: &kube::Client,
        options: &NodeOptions,
        pod: &Pod,
        pod_dir: &Path,
        workspace: &Path,
    ) -> Result<Self, MountError> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let spec = pod.spec.clone().unwrap_or_default();
        let mounted_at_workspace = |name: &str| {
            spec.init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
                .flat_map(|c| c.volume_mounts.iter().flatten())
                .any(|m| m.name == name && Path::new(&m.mount_path) == Path::new(CONTEXT_DIR))
        };
        let mut dirs = BTreeMap::new();
        for volume in spec.volumes.iter().flatten() {
            let name = volume.name.clone();
            let own_dir = pod_dir.join("volumes").join(&name);
            let dir = if volume.empty_dir.is_some() {
                let dir = if mounted_at_workspace(&name) {
                    workspace.to_owned()
                } else {
                    own_dir
                };
                create_dir(&dir).await?;
                // The kubelet makes emptyDirs world-writable: containers run as any uid.
                tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    .await
                    .map_err(|e| MountError(format!("chmod {}: {e}", dir.display())))?;
                dir
            } else if let Some(host) = &volume.host_path {
                let dir = options.map_host_path(Path::new(&host.path));
                if host.type_.as_deref() == Some("Directory") && !dir.is_dir() {
                    return Err(MountError(format!(
                        "hostPath type check failed: {} is not a directory (local {})",
                        host.path,
                        dir.display()
                    )));
                }
                dir
            } else if let Some(secret) = &volume.secret {
                let secret_name = secret.secret_name.clone().unwrap_or_default();
                let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                let found = api
                    .get_opt(&secret_name)
                    .await
                    .map_err(|e| MountError(format!("get secret {namespace}/{secret_name}: {e}")))?;
                let data = match found {
                    Some(s) => s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect(),
                    None if secret.optional == Some(true) => BTreeMap::new(),
                    None => {
                        return Err(MountError(format!(
                            "MountVolume.SetUp failed for volume \"{name}\" : secret \"{secret_name}\" not found"
                        )));
                    }
                };
                write_keys(
                    &own_dir,
                    &data,
                    secret.items.as_deref(),
                    secret.optional == Some(true),
                )
                .await?;
                own_dir
            } else if let Some(config_map) = &volume.config_map {
                let cm_name = config_map.name.clone();
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                let found = api
                    .get_opt(&cm_name)
                    .await
                    .map_err(|e| MountError(format!("get configmap {namespace}/{cm_name}: {e}")))?;
                let data = match found {
                    Some(cm) => cm
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect(),
                    None if config_map.optional == Some(true) => BTreeMap::new(),
                    None => {
                        return Err(MountError(format!(
                            "MountVolume.SetUp failed for volume \"{name}\" : configmap \"{cm_name}\" not found"
                        )));
                    }
                };
                write_keys(
                    &own_dir,
                    &data,
                    config_map.items.as_deref(),
                    config_map.optional == Some(true),
                )
                .await?;
                own_dir
            } else {
                return Err(MountError(format!(
                    "stand-in node cannot mount volume {name}: only emptyDir, hostPath, secret and \
                     configMap volumes are supported"
                )));
            };
            dirs.insert(name, dir);
        }
        Ok(Self { dirs })
    }

    /// The local path of `path` as `container` sees it, through its volume mounts (the longest
    /// mount path that contains it). Paths outside every volume (the image's own filesystem)
    /// have none.
    pub(super) fn resolve(&self, container: &Container, path: &str) -> Option<PathBuf> {
        let path = Path::new(path);
        let (mount, rest) = container
            .volume_mounts
            .iter()
            .flatten()
            .filter_map(|m| {
                path.strip_prefix(&m.mount_path)
                    .ok()
                    .map(|rest| (m, rest.to_owned()))
            })
            .max_by_key(|(m, _)| Path::new(&m.mount_path).components().count())?;
        let mut local = self.source(mount)?;
        if rest.components().any(|c| matches!(c, Component::ParentDir)) {
            return None;
        }
        if !rest.as_os_str().is_empty() {
            local.push(rest);
        }
        Some(local)
    }

    /// The local path a volume mount shows: its volume's directory, plus the `subPath`.
    pub(super) fn source(&self, mount: &VolumeMount) -> Option<PathBuf> {
        let mut local = self.dirs.get(&mount.name)?.clone();
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if Path::new(sub)
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                return None;
            }
            local.push(sub);
        }
        Some(local)
    }
}

async fn create_dir(dir: &Path) -> Result<(), MountError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| MountError(format!("create {}: {e}", dir.display())))
}

/// Writes `data` (all keys, or the listed `items` under their paths) into `dir`; a listed key
/// that is missing is an error unless the source is `optional`.
async fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
) -> Result<(), MountError> {
    create_dir(dir).await?;
    let files: Vec<(&str, &str)> = match items {
        Some(items) => items.iter().map(|i| (i.key.as_str(), i.path.as_str())).collect(),
        None => data.keys().map(|k| (k.as_str(), k.as_str())).collect(),
    };
    for (key, file) in files {
        let Some(bytes) = data.get(key) else {
            if optional {
                continue;
            }
            return Err(MountError(format!("key {key} is not in the volume's source")));
        };
        let target = dir.join(file);
        if let Some(parent) = target.parent() {
            create_dir(parent).await?;
        }
        tokio::fs::write(&target, bytes)
            .await
            .map_err(|e| MountError(format!("write {}: {e}", target.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_through_the_longest_mount() {
        let volumes = Volumes {
            dirs: BTreeMap::from([
                ("state".to_owned(), PathBuf::from("/pod/volumes/state")),
                ("docker".to_owned(), PathBuf::from("/pod/volumes/docker")),
                ("ctx".to_owned(), PathBuf::from("/srv/pvc")),
            ]),
        };
        let mount = |name: &str, path: &str, sub: Option<&str>| VolumeMount {
            name: name.to_owned(),
            mount_path: path.to_owned(),
            sub_path: sub.map(str::to_owned),
            ..VolumeMount::default()
        };
        let container = Container {
            name: "c".to_owned(),
            volume_mounts: Some(vec![
                mount("state", "/kaniko/state", None),
                mount("docker", "/kaniko/.docker", None),
                mount("ctx", "/workspace", Some("app")),
            ]),
            ..Container::default()
        };
        let cases = [
            ("/kaniko/state/decision", Some("/pod/volumes/state/decision")),
            (
                "/kaniko/.docker/config.json",
                Some("/pod/volumes/docker/config.json"),
            ),
            ("/workspace", Some("/srv/pvc/app")),
            ("/workspace/Dockerfile", Some("/srv/pvc/app/Dockerfile")),
            ("/workspace/../etc", None),
            ("/kaniko/executor", None),
            ("/dev/termination-log", None),
        ];
        for (path, want) in cases {
            assert_eq!(
                volumes.resolve(&container, path),
                want.map(PathBuf::from),
                "{path}"
            );
        }
    }
}
