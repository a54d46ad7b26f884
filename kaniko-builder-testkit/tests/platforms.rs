//! Multi-platform builds on stand-in nodes (issue 14): two nodes, `linux/amd64` and
//! `linux/arm64`, on one cluster. A per-platform Pod as the per-platform Job runs it —
//! `kaniko-init` copies the real crane into an emptyDir, `image-builder` calls kaniko's executor
//! with `--custom-platform=… --image-format=oci --no-push --oci-layout-path=… --digest-file=…`
//! and then pushes the layout by digest with that crane — is placed by the real scheduler on the
//! node its `nodeSelector` names, builds there, and the real registry then serves the image by
//! digest with that platform in its config. A platform no node has stays Pending,
//! `Unschedulable`.
//!
//! Timeouts are safety nets so a broken setup fails instead of hanging; nothing asserts that
//! something was fast.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use kaniko_builder_k8s::manifest::{
    BUILDER_CONTAINER, DEFAULT_EXECUTOR_IMAGE, DEFAULT_INIT_IMAGE, INIT_CONTAINER, TERMINATION_LOG,
};
use kaniko_builder_testkit::node::{NodeOptions, StandInNode};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry, reqwest_client};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// Safety net for every wait.
const WAIT: Duration = Duration::from_secs(180);
const NAMESPACE: &str = "platforms";
/// The build context's `hostPath`, as the Pod spec names it.
const HOST_CONTEXT: &str = "/srv/kb-context";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A cluster, an anonymous plain-HTTP registry, and one stand-in node per platform.
struct Bed {
    cluster: TestCluster,
    registry: TestRegistry,
    nodes: Vec<StandInNode>,
    _context: tempfile::TempDir,
}

impl Bed {
    /// Nodes `kb-node-amd64` (`linux/amd64`) and `kb-node-arm64` (`linux/arm64`), both serving
    /// the `FROM scratch` + `COPY` context at [`HOST_CONTEXT`].
    async fn start() -> anyhow::Result<Bed> {
        let (cluster, registry) = tokio::try_join!(
            async { TestCluster::start().await.context("start the test cluster") },
            async {
                TestRegistry::start(RegistryAuth::Anonymous)
                    .await
                    .context("start the test registry")
            },
        )?;
        let context = tempfile::tempdir()?;
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY hello.txt /\n",
        )?;
        std::fs::write(context.path().join("hello.txt"), "hello from every platform\n")?;
        let node = |arch: &str| -> anyhow::Result<NodeOptions> {
            Ok(NodeOptions::default()
                .name(format!("kb-node-{arch}"))
                .platform(format!("linux/{arch}").parse()?)
                .registry(&registry)
                .host_path(HOST_CONTEXT, context.path()))
        };
        let (amd64, arm64) = tokio::try_join!(
            StandInNode::start(&cluster, node("amd64")?),
            StandInNode::start(&cluster, node("arm64")?),
        )?;
        cluster.create_namespace(NAMESPACE).await?;
        Ok(Bed {
            cluster,
            registry,
            nodes: vec![amd64, arm64],
            _context: context,
        })
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.cluster.admin_client(), NAMESPACE)
    }

    /// Creates the per-platform Pod `name` for `platform` (`os/arch`), pushing to `repo`;
    /// `extra` flags go to the executor after the usual ones.
    async fn create_pod(&self, name: &str, platform: &str, repo: &str, extra: &str) -> anyhow::Result<Pod> {
        let pod = platform_pod(name, platform, &format!("{}/{repo}", self.registry.host()), extra)?;
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .with_context(|| format!("create pod {name}"))
    }

    /// Waits until Pod `name` satisfies `ok`; returns it.
    async fn pod_until(&self, name: &str, what: &str, ok: impl Fn(&Pod) -> bool) -> anyhow::Result<Pod> {
        let wait = await_condition(self.pods(), name, move |pod: Option<&Pod>| pod.is_some_and(&ok));
        tokio::time::timeout(WAIT, Box::pin(wait))
            .await
            .with_context(|| format!("timed out waiting for pod {name} {what}"))??
            .with_context(|| format!("pod {name} was deleted"))
    }

    /// The logs of Pod `pod`'s containers on whichever node ran it, for failure messages.
    fn logs(&self, pod: &Pod) -> String {
        let mut logs = String::new();
        for node in &self.nodes {
            for container in [INIT_CONTAINER, BUILDER_CONTAINER] {
                let log = node.container_log(pod, container);
                if !log.is_empty() {
                    logs.push_str(&format!("--- {} {container}:\n{log}", node.name()));
                }
            }
        }
        logs
    }

    /// Builds for `linux/<arch>` through a per-platform Pod; checks where it ran, and that the
    /// registry serves the pushed digest as an OCI image for that platform.
    async fn build_on_its_node(&self, arch: &str) -> anyhow::Result<()> {
        let name = format!("build-{arch}");
        let repo = format!("team/app-{arch}");
        self.create_pod(&name, &format!("linux/{arch}"), &repo, "")
            .await?;
        let pod = self
            .pod_until(&name, "to finish", |p| matches!(phase(p), "Succeeded" | "Failed"))
            .await?;
        anyhow::ensure!(
            phase(&pod) == "Succeeded",
            "pod {name} failed: {:?}\n{}",
            pod.status,
            self.logs(&pod)
        );
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        assert_eq!(
            node_name,
            Some(format!("kb-node-{arch}").as_str()),
            "{name} ran elsewhere"
        );

        let digest = termination_message(&pod, BUILDER_CONTAINER).context("the digest")?;
        anyhow::ensure!(digest.starts_with("sha256:"), "not a digest: {digest:?}");
        let (manifest, config) = self.fetch(&repo, &digest).await?;
        assert_eq!(manifest["mediaType"], OCI_MANIFEST, "{manifest}");
        assert_eq!(
            (config["os"].as_str(), config["architecture"].as_str()),
            (Some("linux"), Some(arch)),
            "{config}"
        );
        Ok(())
    }

    /// The manifest `repo@digest` as the registry serves it (its bytes checked against the
    /// digest) and its config blob.
    async fn fetch(&self, repo: &str, digest: &str) -> anyhow::Result<(Value, Value)> {
        let client = reqwest_client(None)?;
        let base = format!("{}/v2/{repo}", self.registry.base_url());
        let response = client
            .get(format!("{base}/manifests/{digest}"))
            .header("Accept", OCI_MANIFEST)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "GET {repo}@{digest}: {}",
            response.status()
        );
        let bytes = response.bytes().await?;
        assert_eq!(
            format!("sha256:{:x}", Sha256::digest(&bytes)),
            digest,
            "the registry's manifest bytes"
        );
        let manifest: Value = serde_json::from_slice(&bytes)?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .with_context(|| format!("no config digest in {manifest}"))?;
        let config = client
            .get(format!("{base}/blobs/{config_digest}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok((manifest, config))
    }
}

/// The per-platform Pod: `kaniko-init` copies crane into the emptyDir `/kaniko/tools`;
/// `image-builder` runs the executor for `platform` into an OCI layout on the emptyDir
/// `/kaniko/out`, then pushes it with that crane as `image@<digest>` and reports the digest.
/// `extra`: more executor flags.
fn platform_pod(name: &str, platform: &str, image: &str, extra: &str) -> anyhow::Result<Pod> {
    let (os, arch) = platform
        .split_once('/')
        .with_context(|| format!("{platform} is not os/arch"))?;
    let builder = format!(
        "set -e\n\
         /kaniko/executor --context=dir:///workspace --dockerfile=Dockerfile \
         --custom-platform={platform} --image-format=oci --no-push \
         --oci-layout-path=/kaniko/out/layout --digest-file=/kaniko/out/digest {extra}\n\
         digest=$(cat /kaniko/out/digest)\n\
         /kaniko/tools/crane push --insecure /kaniko/out/layout \"{image}@$digest\"\n\
         printf %s \"$digest\" > {TERMINATION_LOG}\n"
    );
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": NAMESPACE },
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": { "kubernetes.io/os": os, "kubernetes.io/arch": arch },
            "volumes": [
                { "name": "tools", "emptyDir": {} },
                { "name": "out", "emptyDir": {} },
                { "name": "context", "hostPath": { "path": HOST_CONTEXT, "type": "Directory" } },
            ],
            "initContainers": [{
                "name": INIT_CONTAINER,
                "image": DEFAULT_INIT_IMAGE,
                "command": ["/busybox/sh", "-c", "cp /ko-app/crane /kaniko/tools/crane"],
                "volumeMounts": [{ "name": "tools", "mountPath": "/kaniko/tools" }],
            }],
            "containers": [{
                "name": BUILDER_CONTAINER,
                "image": DEFAULT_EXECUTOR_IMAGE,
                "command": ["/busybox/sh", "-c", builder],
                "volumeMounts": [
                    { "name": "tools", "mountPath": "/kaniko/tools", "readOnly": true },
                    { "name": "out", "mountPath": "/kaniko/out" },
                    { "name": "context", "mountPath": "/workspace", "readOnly": true },
                ],
            }],
        },
    });
    Ok(serde_json::from_value(pod)?)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn termination_message(pod: &Pod, container: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == container)?
        .state
        .as_ref()?
        .terminated
        .as_ref()?
        .message
        .clone()
}

#[tokio::test]
async fn each_platform_builds_on_the_node_of_that_platform() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let bed = Box::pin(Bed::start()).await?;

    let nodes: Api<Node> = Api::all(bed.cluster.admin_client());
    for arch in ["amd64", "arm64"] {
        let node = nodes.get(&format!("kb-node-{arch}")).await?;
        let labels = node.metadata.labels.unwrap_or_default();
        for key in ["kubernetes.io/arch", "beta.kubernetes.io/arch"] {
            assert_eq!(labels.get(key).map(String::as_str), Some(arch), "{key}");
        }
        let info = node.status.and_then(|s| s.node_info).context("nodeInfo")?;
        assert_eq!(
            (info.operating_system.as_str(), info.architecture.as_str()),
            ("linux", arch)
        );
    }

    tokio::try_join!(bed.build_on_its_node("arm64"), bed.build_on_its_node("amd64"))?;
    Ok(())
}

#[tokio::test]
async fn a_platform_without_a_node_stays_pending_and_unschedulable() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let bed = Box::pin(Bed::start()).await?;
    bed.create_pod("build-s390x", "linux/s390x", "team/app-s390x", "")
        .await?;
    let unschedulable = |pod: &Pod| {
        pod_condition(pod, "PodScheduled")
            .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
    };
    let pod = bed
        .pod_until("build-s390x", "to be unschedulable", unschedulable)
        .await?;
    assert_eq!(phase(&pod), "Pending");
    assert_eq!(pod.spec.as_ref().and_then(|s| s.node_name.as_deref()), None);
    let message = pod_condition(&pod, "PodScheduled")
        .and_then(|c| c.message.as_deref())
        .unwrap_or_default();
    // The 1.20 scheduler: "0/2 nodes are available: 2 node(s) didn't match node selector."
    assert!(message.contains("0/2 nodes are available"), "{message}");
    assert!(message.contains("didn't match"), "{message}");
    bed.pods()
        .delete("build-s390x", &DeleteParams::default().grace_period(0))
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_flag_the_stand_in_cannot_translate_fails_the_container_with_a_message() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let bed = Box::pin(Bed::start()).await?;
    // kaniko itself refuses this one with --image-format=oci; the stand-in refuses any flag it
    // cannot translate, before building.
    let flag = "--tar-path=/kaniko/out/image.tar";
    bed.create_pod("refused", "linux/arm64", "team/refused", flag)
        .await?;
    let pod = bed
        .pod_until("refused", "to finish", |p| {
            matches!(phase(p), "Succeeded" | "Failed")
        })
        .await?;
    assert_eq!(phase(&pod), "Failed", "{}", bed.logs(&pod));
    let message = format!("stand-in node cannot translate kaniko flag {flag}");
    assert_eq!(
        termination_message(&pod, BUILDER_CONTAINER),
        Some(message.clone())
    );
    let code = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|s| s.iter().find(|s| s.name == BUILDER_CONTAINER))
        .and_then(|s| s.state.as_ref()?.terminated.as_ref())
        .map(|t| t.exit_code);
    assert_eq!(code, Some(1));
    assert!(bed.logs(&pod).contains(&message), "{}", bed.logs(&pod));
    Ok(())
}
