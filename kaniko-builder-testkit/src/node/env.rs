//! A container's environment, resolved like the kubelet does: plain values, ConfigMap and
//! Secret keys read through the API (honouring `optional`), a few downward-API fields.

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Api;

use super::status::NODE_IP;

/// Resolves `container`'s `env`; `Err` carries the kubelet's `CreateContainerConfigError`
/// message (the container keeps waiting and the node retries).
pub(super) async fn resolve(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = Vec::new();
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            out.push((var.name.clone(), var.value.clone().unwrap_or_default()));
            continue;
        };
        let value = if let Some(key_ref) = &from.config_map_key_ref {
            let name = &key_ref.name;
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let cm = api
                .get_opt(name)
                .await
                .map_err(|e| format!("get configmap {namespace}/{name}: {e}"))?;
            let optional = key_ref.optional == Some(true);
            match cm {
                None if optional => None,
                None => return Err(format!("configmap \"{name}\" not found")),
                Some(cm) => match cm.data.and_then(|mut d| d.remove(&key_ref.key)) {
                    Some(v) => Some(v),
                    None if optional => None,
                    None => {
                        return Err(format!(
                            "couldn't find key {} in ConfigMap {namespace}/{name}",
                            key_ref.key
                        ));
                    }
                },
            }
        } else if let Some(key_ref) = &from.secret_key_ref {
            let name = &key_ref.name;
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let secret = api
                .get_opt(name)
                .await
                .map_err(|e| format!("get secret {namespace}/{name}: {e}"))?;
            let optional = key_ref.optional == Some(true);
            match secret {
                None if optional => None,
                None => return Err(format!("secret \"{name}\" not found")),
                Some(s) => match s.data.and_then(|mut d| d.remove(&key_ref.key)) {
                    Some(v) => Some(String::from_utf8_lossy(&v.0).into_owned()),
                    None if optional => None,
                    None => {
                        return Err(format!(
                            "couldn't find key {} in Secret {namespace}/{name}",
                            key_ref.key
                        ));
                    }
                },
            }
        } else if let Some(field) = &from.field_ref {
            Some(field_value(pod, &field.field_path).ok_or_else(|| {
                format!(
                    "stand-in node cannot resolve fieldRef {} of env {}",
                    field.field_path, var.name
                )
            })?)
        } else {
            return Err(format!(
                "stand-in node cannot resolve env {}: only value, configMapKeyRef, secretKeyRef \
                 and fieldRef are supported",
                var.name
            ));
        };
        if let Some(value) = value {
            out.push((var.name.clone(), value));
        }
    }
    Ok(out)
}

/// The downward-API fields the stand-in supports.
fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let from_map = |map: Option<&std::collections::BTreeMap<String, String>>, key: &str| {
        map.and_then(|m| m.get(key)).cloned().or(Some(String::new()))
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.hostIP" | "status.podIP" => Some(NODE_IP.to_owned()),
        _ => {
            let (map, rest) = if let Some(rest) = path.strip_prefix("metadata.labels['") {
                (meta.labels.as_ref(), rest)
            } else if let Some(rest) = path.strip_prefix("metadata.annotations['") {
                (meta.annotations.as_ref(), rest)
            } else {
                return None;
            };
            from_map(map, rest.strip_suffix("']")?)
        }
    }
}
