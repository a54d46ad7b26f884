//! The `Node` object: registration, heartbeats (status and Lease), cordoning.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Namespace, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::Shared;
use super::options::NodeOptions;
use super::status::NODE_IP;

/// The namespace of node Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The taint the `TaintNodesByCondition` admission plugin puts on every new Node.
const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// Annotation saying what the node is.
pub(super) const STAND_IN_ANNOTATION: &str = "kaniko-builder.io/stand-in-node";

/// The Node as the stand-in registers it: Ready, with capacity, the address 127.0.0.1, the
/// kubelet endpoint's port, and its platform in the labels and `nodeInfo` as the kubelet's
/// `initialNode` sets them (`runtime.GOOS`/`GOARCH`, the GA and the beta labels).
pub(super) fn node_object(options: &NodeOptions, kubelet_port: u16, since: &Time) -> Node {
    let name = &options.name;
    let os = options.platform.os();
    let arch = options.platform.architecture();
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), name.clone()),
        ("kubernetes.io/os".to_owned(), os.to_owned()),
        ("kubernetes.io/arch".to_owned(), arch.to_owned()),
        ("beta.kubernetes.io/os".to_owned(), os.to_owned()),
        ("beta.kubernetes.io/arch".to_owned(), arch.to_owned()),
    ]);
    let resources = BTreeMap::from([
        ("cpu".to_owned(), Quantity(options.cpu.clone())),
        ("memory".to_owned(), Quantity(options.memory.clone())),
        ("pods".to_owned(), Quantity(options.pods.clone())),
        ("ephemeral-storage".to_owned(), Quantity("100Gi".to_owned())),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                STAND_IN_ANNOTATION.to_owned(),
                "kaniko-builder testkit: replaces only the kubelet and the container runtime".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            conditions: Some(conditions(since)),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".to_owned(),
                    address: NODE_IP.to_owned(),
                },
                NodeAddress {
                    type_: "Hostname".to_owned(),
                    address: name.clone(),
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(kubelet_port),
                }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: arch.to_owned(),
                operating_system: os.to_owned(),
                os_image: "kaniko-builder stand-in node".to_owned(),
                kernel_version: String::new(),
                container_runtime_version: "stand-in://buildah".to_owned(),
                kubelet_version: "v1.20.2-stand-in".to_owned(),
                kube_proxy_version: String::new(),
                machine_id: String::new(),
                system_uuid: String::new(),
                boot_id: String::new(),
                ..NodeSystemInfo::default()
            }),
            ..NodeStatus::default()
        }),
    }
}

/// The kubelet's four conditions, heartbeat now, last transition `since`.
fn conditions(since: &Time) -> Vec<NodeCondition> {
    let now = Time(Timestamp::now());
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(since.clone()),
    };
    vec![
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status (stand-in node)",
        ),
    ]
}

/// Creates the Node (failing if one of that name exists), makes sure its status is ours and
/// removes the `not-ready` taint admission put on it (the node lifecycle controller would,
/// once the node reports Ready; it is not always running in the test cluster). Returns the
/// Node's uid.
pub(super) async fn register(client: &kube::Client, node: &Node) -> anyhow::Result<String> {
    let api: Api<Node> = Api::all(client.clone());
    let name = node.metadata.name.clone().unwrap_or_default();
    let created = match api.create(&PostParams::default(), node).await {
        Ok(n) => n,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            anyhow::bail!("a Node named {name} already exists: choose another NodeOptions::name")
        }
        Err(e) => return Err(e).with_context(|| format!("create Node {name}")),
    };
    let status = json!({ "status": node.status });
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("set the status of Node {name}"))?;
    let taints = created.spec.and_then(|s| s.taints).unwrap_or_default();
    if taints.iter().any(|t| t.key == NOT_READY_TAINT) {
        let kept: Vec<_> = taints.into_iter().filter(|t| t.key != NOT_READY_TAINT).collect();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "taints": kept } })),
        )
        .await
        .with_context(|| format!("remove the not-ready taint of Node {name}"))?;
    }
    created
        .metadata
        .uid
        .with_context(|| format!("Node {name} has no uid"))
}

/// Posts the node's conditions and renews its Lease every `interval`, while reporting.
pub(super) async fn heartbeat(shared: std::sync::Arc<Shared>, node_uid: String, interval: Duration) {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let name = shared.options.name.clone();
    let since = Time(Timestamp::now());
    let lease = has_lease_namespace(&shared.client).await;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !shared.is_reporting() {
            continue;
        }
        let patch = json!({ "status": { "conditions": conditions(&since) } });
        if let Err(e) = nodes
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(node = %name, error = %e, "post node status");
        }
        if lease && let Err(e) = renew_lease(&shared.client, &name, &node_uid).await {
            tracing::warn!(node = %name, error = %e, "renew node lease");
        }
    }
}

async fn has_lease_namespace(client: &kube::Client) -> bool {
    let api: Api<Namespace> = Api::all(client.clone());
    matches!(api.get_opt(LEASE_NAMESPACE).await, Ok(Some(_)))
}

/// Creates or renews `kube-node-lease/<node>` (40 s, like the kubelet's).
async fn renew_lease(client: &kube::Client, name: &str, node_uid: &str) -> anyhow::Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = MicroTime(Timestamp::now());
    let patch = json!({ "spec": { "renewTime": now } });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => return Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e).context("patch lease"),
    }
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Node".to_owned(),
                name: name.to_owned(),
                uid: node_uid.to_owned(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.to_owned()),
            lease_duration_seconds: Some(40),
            renew_time: Some(now),
            ..LeaseSpec::default()
        }),
    };
    api.create(&PostParams::default(), &lease)
        .await
        .context("create lease")?;
    Ok(())
}

/// Sets `spec.unschedulable` (what `kubectl cordon` does).
pub(super) async fn set_unschedulable(
    client: &kube::Client,
    name: &str,
    cordoned: bool,
) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "spec": { "unschedulable": cordoned } })),
    )
    .await
    .with_context(|| format!("set spec.unschedulable={cordoned} on Node {name}"))?;
    Ok(())
}

/// Deletes the Node (its Lease goes with it through the owner reference).
pub(super) async fn deregister(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("delete Node {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_reports_its_platform_as_a_kubelet_would() {
        let since = Time(Timestamp::now());
        let cases = [
            (
                NodeOptions::default(),
                "linux",
                super::super::host_platform().architecture().to_owned(),
            ),
            (
                NodeOptions::default().platform("linux/arm64".parse().expect("platform")),
                "linux",
                "arm64".to_owned(),
            ),
            // A variant shows nowhere: the kubelet has no label for it.
            (
                NodeOptions::default().platform("linux/arm/v7".parse().expect("platform")),
                "linux",
                "arm".to_owned(),
            ),
        ];
        for (options, os, arch) in cases {
            let node = node_object(&options.name("n1"), 10250, &since);
            let labels = node.metadata.labels.expect("labels");
            let want = BTreeMap::from([
                ("kubernetes.io/hostname".to_owned(), "n1".to_owned()),
                ("kubernetes.io/os".to_owned(), os.to_owned()),
                ("kubernetes.io/arch".to_owned(), arch.clone()),
                ("beta.kubernetes.io/os".to_owned(), os.to_owned()),
                ("beta.kubernetes.io/arch".to_owned(), arch.clone()),
            ]);
            assert_eq!(labels, want);
            let info = node.status.and_then(|s| s.node_info).expect("nodeInfo");
            assert_eq!(
                (info.operating_system.as_str(), info.architecture.as_str()),
                (os, arch.as_str())
            );
        }
    }
}
