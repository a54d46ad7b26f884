//! A stand-in node for the [`TestCluster`]: it replaces **only the kubelet and the container
//! runtime**. The API server, etcd, the scheduler and the controllers (Job, garbage collector,
//! …) stay the real ones; the stand-in talks to them exactly as a kubelet would, through the
//! API.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use kaniko_builder_testkit::node::{Fault, NodeOptions, StandInNode, Target};
//! use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
//!
//! let cluster = TestCluster::start().await?;
//! let registry = TestRegistry::start(RegistryAuth::Basic).await?;
//! let node = StandInNode::start(
//!     &cluster,
//!     NodeOptions::default()
//!         .registry(&registry)
//!         .host_path("/workspace", "/tmp/my-context"),
//! )
//! .await?;
//! node.inject(Fault::OomKilled, Target::NextPod).await?;
//! # Ok(()) }
//! ```
//!
//! # What it does
//! - **Registers a `Node`** (default name `kb-node-1`) that is `Ready`, with capacity and
//!   allocatable (cpu, memory, pods), `addresses: [{type: InternalIP, address: 127.0.0.1}]`,
//!   `daemonEndpoints.kubeletEndpoint.Port` = its [`KubeletApi`] (logs and exec, so the
//!   API server's `pods/log` and `pods/exec` reach it) and its platform
//!   ([`NodeOptions::platform`], default this machine's) in the `kubernetes.io/os` and
//!   `kubernetes.io/arch` labels (and the `beta.kubernetes.io/` ones) and `nodeInfo`, as a
//!   kubelet sets them. Several nodes, each with its own name, platform and temp dir, can run
//!   against one cluster: the scheduler places Pods among them by their `nodeSelector`, and each
//!   runs only the Pods bound to it. It posts its conditions and renews its
//!   Lease in `kube-node-lease` every [`NodeOptions::heartbeat`], and removes the
//!   `node.kubernetes.io/not-ready` taint that admission puts on a new Node (the node
//!   lifecycle controller would, but it is not among the cluster's default controllers). The
//!   real scheduler then binds Pods to it.
//! - **Plays the kubelet's part for each Pod bound to it** (a watch with
//!   `spec.nodeName=<node>`), through `pods/status`: containers waiting (`ContainerCreating`,
//!   `PodInitializing`), volumes set up, an image "pull" per container, the init containers
//!   one by one, then the main containers; running with `startedAt`, terminated with the exit
//!   code, reason `Completed`/`Error`/`OOMKilled`, the termination message (what the container
//!   wrote to its termination message path, at most 4096 bytes), `startedAt`/`finishedAt` and a
//!   `containerID` (`standin://…`); restart count 0; phase `Pending` → `Running` →
//!   `Succeeded`/`Failed`; conditions `PodScheduled`, `Initialized`, `ContainersReady`,
//!   `Ready`; `hostIP`/`podIP` 127.0.0.1. A failed init container fails the Pod and the main
//!   containers never start (restartPolicy `Never` is the only policy it implements: it never
//!   restarts a container).
//! - **Deletion**: when a Pod gets a `deletionTimestamp` (Job deleted, deadline exceeded,
//!   garbage collection), its running containers are killed at once (SIGKILL to their process
//!   groups; the grace period is not waited for), reported terminated with exit code 137, and
//!   the deletion is confirmed with grace period 0, as the kubelet does.
//! - **Runs each container as a runtime would** (`rootfs.rs`, `image.rs`): a private mount
//!   namespace whose root is a per-container directory holding the image's files, the Pod's
//!   volumes bind-mounted at their `mountPath`s (read-only where the mount says so), the
//!   termination message file at its path, `/dev/null` and friends; `readOnlyRootFilesystem`,
//!   `runAsUser`/`runAsGroup` and `workingDir` are honoured. The container's own
//!   `command`/`args` run there with the image's `ENV` and the Pod's env (values,
//!   `configMapKeyRef` and `secretKeyRef` read through the API honouring `optional`, a few
//!   downward-API fields), as a kubelet would. Two images are known, by repository (else by
//!   the build contract's container names):
//!   - crane's debug image (`kaniko-init`): the **real `crane`** (built by
//!     `scripts/build-crane.sh`, see [`NodeOptions::crane`]) at `/ko-app/crane`, busybox
//!     (`busybox-static`) at `/busybox`, and a CA bundle of this machine's roots plus the
//!     node's registry CAs. So the real `INIT_SCRIPT` runs under busybox with the real crane
//!     against the real registry.
//!   - kaniko's debug image (`image-builder`): busybox and `/kaniko/executor`, **the one
//!     stand-in left** (`executor.rs`): a script that hands its arguments (read by the node from
//!     `/proc/<pid>/cmdline`) to the node, which translates them into `buildah bud` (chroot
//!     isolation, vfs storage under the node's directory, `--authfile` = the Secret's
//!     `config.json`, `--cert-dir` with the node's CAs or `--tls-verify=false` for insecure
//!     registries) and `buildah push --digestfile` to each destination; the termination message
//!     is the digest really pushed; the exit code is buildah's. The real `BUILDER_WRAPPER`
//!     decides whether to call it. Translated: `--context=dir://…` (through the container's
//!     mounts), `--dockerfile`, `--destination`, `--build-arg`, `--target`, `--label`,
//!     `--digest-file` (the termination message path or a file on a volume),
//!     `--insecure-registry`, `--skip-tls-verify-registry`, and for per-platform builds
//!     `--custom-platform` (buildah's `--platform`; without it, the node's platform when it is
//!     not this machine's), `--image-format` (buildah's `--format`), `--no-push` and
//!     `--oci-layout-path` on a volume (with `--image-format=oci`: `buildah push … oci:<dir>`);
//!     see `builder.rs` for the exact commands. A `FROM scratch` build needs no emulation for
//!     a foreign platform; a `RUN` step for one would need qemu, which the node does not set
//!     up. Accepted and ignored: `--cache*`, `--snapshot-mode`, `--reproducible`,
//!     `--push-retry`, `--verbosity`. Any other argument fails the container with exit code 1
//!     and the message `stand-in node cannot translate kaniko flag <arg>`.
//!   - Any other image terminates at once with exit code 128, reason `ContainerCannotRun`.
//! - **Faults on demand**: [`StandInNode::inject`] with a [`Fault`] and a [`Target`].
//!
//! # On disk
//! The node's temp dir holds `pods/<namespace>_<pod>_<uid>/` per Pod (`workspace/`,
//! `<container>.log` with the container's output line by line, `<container>.done` with its exit
//! code once it ended; see [`KubeletApi`]), buildah's storage and the volumes.
//!
//! # Limits
//! Only `emptyDir`, `hostPath`, `secret` and `configMap` volumes (others leave the Pod in
//! `ContainerCreating`); no probes, resource enforcement, restarts, `envFrom` or `$(VAR)`
//! expansion; no PID or network namespace (containers share the host's, like `hostNetwork`);
//! no supplementary groups or `fsGroup`; git, URL and PVC build contexts are not translated.
//! `pods/exec` ([`KubeletApi`]) runs its `tar`/`touch` natively against the Pod's workspace
//! directory, not inside the container's root. Needs root (mount namespaces).

mod builder;
mod busybox;
mod container;
mod env;
mod executor;
mod fault;
mod image;
pub(crate) mod layout;
mod options;
mod pod;
mod register;
mod rootfs;
mod runtime;
mod status;
mod volumes;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::task::JoinHandle;

use self::builder::Buildah;
pub(crate) use self::busybox::preload_busybox;
pub use self::busybox::push_busybox_base;
use self::fault::FaultBook;
pub use self::fault::{Fault, Target};
use self::image::Images;
pub use self::options::{DEFAULT_NODE_NAME, NodeOptions, host_platform};
use self::pod::PodHandle;
use self::runtime::ProcTable;
use crate::{KubeletApi, TestCluster};

/// What the node's tasks share.
pub(crate) struct Shared {
    client: kube::Client,
    dir: PathBuf,
    options: NodeOptions,
    buildah: Buildah,
    images: Images,
    faults: Mutex<FaultBook>,
    procs: ProcTable,
    reporting: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node", &self.options.name)
            .field("dir", &self.dir)
            .field("reporting", &self.reporting)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn is_reporting(&self) -> bool {
        self.reporting.load(Ordering::SeqCst)
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, FaultBook> {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running stand-in node (see the [module docs](self)). Dropping it stops its tasks, kills
/// its containers' processes and deletes the `Node` (best effort: the delete is sent from a
/// task of the current runtime, if any); [`shutdown`](Self::shutdown) does the same and waits.
#[derive(Debug)]
pub struct StandInNode {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    kubelet: KubeletApi,
    deregistered: bool,
    // Last: removed after everything above stopped.
    dir: tempfile::TempDir,
}

impl StandInNode {
    /// Starts the kubelet endpoint, registers the `Node` with `cluster`'s API server and starts
    /// heartbeats and the Pod watch. Returns once the Node exists and is `Ready`.
    ///
    /// # Errors
    /// A Node of that name exists already (a dropped node deletes its Node in the background:
    /// [`shutdown`](Self::shutdown) a node before starting another of the same name on the same
    /// cluster); the kubelet endpoint or the API calls failing.
    pub async fn start(cluster: &TestCluster, options: NodeOptions) -> anyhow::Result<StandInNode> {
        crate::init_tracing();
        crate::install_crypto_provider();
        let dir = tempfile::Builder::new()
            .prefix("kb-node-")
            .tempdir()
            .context("create node temp dir")?;
        std::fs::create_dir_all(dir.path().join("pods")).context("create pods dir")?;
        let buildah = Buildah::prepare(dir.path(), options.buildah_root.as_deref(), &options.registry_cas)?;
        let images = Images::prepare(dir.path(), &options.crane_path(), &options.registry_cas)?;
        let (cert, key) = cluster.ca().issue_server_cert();
        let kubelet = KubeletApi::start_with_client_ca(dir.path(), &cert, &key, &cluster.ca_pem())
            .await
            .context("start the kubelet endpoint")?;

        let client = cluster.admin_client();
        let mut book = FaultBook::default();
        let mut node_faults = Vec::new();
        for (fault, target) in &options.faults {
            if fault.is_node_fault() {
                node_faults.push(fault.clone());
            } else {
                book.arm(fault.clone(), target.clone());
            }
        }
        let node = register::node_object(&options, kubelet.port(), &status::now());
        let heartbeat = options.heartbeat;
        let shared = Arc::new(Shared {
            client: client.clone(),
            dir: dir.path().to_owned(),
            options,
            buildah,
            images,
            faults: Mutex::new(book),
            procs: ProcTable::default(),
            reporting: AtomicBool::new(true),
        });
        let node_uid = register::register(&client, &node).await?;
        let tasks = vec![
            tokio::spawn(register::heartbeat(Arc::clone(&shared), node_uid, heartbeat)),
            tokio::spawn(watch_pods(Arc::clone(&shared))),
        ];
        let started = StandInNode {
            shared,
            tasks,
            kubelet,
            deregistered: false,
            dir,
        };
        for fault in node_faults {
            started.inject(fault, Target::Node).await?;
        }
        tracing::info!(node = %started.name(), kubelet_port = started.kubelet_port(), "stand-in node ready");
        Ok(started)
    }

    /// The `Node`'s name.
    pub fn name(&self) -> &str {
        &self.shared.options.name
    }

    /// The node's temp dir (Pods, buildah storage); removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The port of the kubelet endpoint on 127.0.0.1 (the Node's `kubeletEndpoint`).
    pub fn kubelet_port(&self) -> u16 {
        self.kubelet.port()
    }

    /// The directory of `pod` on the node (see [`KubeletApi`] for its layout).
    pub fn pod_dir(&self, pod: &Pod) -> PathBuf {
        let meta = &pod.metadata;
        layout::pod_dir(
            self.dir(),
            meta.namespace.as_deref().unwrap_or("default"),
            meta.name.as_deref().unwrap_or_default(),
            meta.uid.as_deref().unwrap_or_default(),
        )
    }

    /// The build context directory of `pod` on the node (what `/workspace` maps to: the
    /// unpacked context blob or the exec upload). Like the whole [`pod_dir`](Self::pod_dir) it
    /// stays until the node is dropped, so tests can inspect it after the Pod is gone.
    pub fn context_dir(&self, pod: &Pod) -> PathBuf {
        let meta = &pod.metadata;
        layout::workspace_dir(
            self.dir(),
            meta.namespace.as_deref().unwrap_or("default"),
            meta.name.as_deref().unwrap_or_default(),
            meta.uid.as_deref().unwrap_or_default(),
        )
    }

    /// Everything `container` of `pod` wrote to stdout and stderr so far (empty if it has not
    /// started), read from the node's disk.
    pub fn container_log(&self, pod: &Pod, container: &str) -> String {
        std::fs::read_to_string(self.pod_dir(pod).join(format!("{container}.log"))).unwrap_or_default()
    }

    /// Injects a fault. Pod faults ([`Fault::OomKilled`], [`Fault::ImagePullBackOff`],
    /// [`Fault::ImagePullFailures`], [`Fault::Evict`], [`Fault::SlowStart`]) are armed for the
    /// first Pod the node starts afterwards that matches `target` (not [`Target::Node`]). Node
    /// faults ([`Fault::Unschedulable`], [`Fault::StopReporting`]) take effect now and need
    /// [`Target::Node`]. [`clear_faults`](Self::clear_faults) undoes them.
    ///
    /// # Errors
    /// A fault with the wrong kind of target; the API call that cordons the node failing.
    pub async fn inject(&self, fault: Fault, target: Target) -> anyhow::Result<()> {
        tracing::info!(node = %self.name(), ?fault, ?target, "injecting fault");
        match (fault.is_node_fault(), &target) {
            (true, Target::Node) => match fault {
                Fault::Unschedulable => {
                    register::set_unschedulable(&self.shared.client, self.name(), true).await?;
                }
                _ => self.shared.reporting.store(false, Ordering::SeqCst),
            },
            (true, _) => anyhow::bail!("{fault:?} is a node fault: its target must be Target::Node"),
            (false, Target::Node) => anyhow::bail!("{fault:?} is a Pod fault: target a Pod, not the node"),
            (false, _) => self.shared.faults().arm(fault, target),
        }
        Ok(())
    }

    /// Disarms the Pod faults not taken yet, resumes reporting and uncordons the node.
    ///
    /// # Errors
    /// The API call that uncordons the node failing.
    pub async fn clear_faults(&self) -> anyhow::Result<()> {
        self.shared.faults().clear();
        self.shared.reporting.store(true, Ordering::SeqCst);
        register::set_unschedulable(&self.shared.client, self.name(), false).await
    }

    /// Stops the node: tasks, containers, and deletes the `Node` object.
    ///
    /// # Errors
    /// The Node cannot be deleted.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        for task in self.tasks.drain(..) {
            task.abort();
            // Err: cancelled, as asked.
            let _cancelled = task.await;
        }
        self.shared.procs.kill_all();
        self.deregistered = true;
        register::deregister(&self.shared.client, self.name()).await
    }
}

impl Drop for StandInNode {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.procs.kill_all();
        if !self.deregistered
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let client = self.shared.client.clone();
            let name = self.name().to_owned();
            runtime.spawn(async move {
                if let Err(e) = register::deregister(&client, &name).await {
                    tracing::debug!(error = %e, "delete the stand-in Node");
                }
            });
        }
    }
}

/// Watches the Pods bound to the node and runs a worker for each.
async fn watch_pods(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.options.name));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut workers: HashMap<String, PodHandle> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    listed.insert(uid.clone());
                    on_pod(&shared, &mut workers, uid, pod);
                }
            }
            Ok(Event::Delete(pod)) => {
                if let Some(handle) = pod.metadata.uid.as_ref().and_then(|uid| workers.remove(uid)) {
                    handle.abort();
                }
            }
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitDone) => {
                // Pods that vanished while the watch was down.
                workers.retain(|uid, handle| {
                    let keep = listed.contains(uid);
                    if !keep {
                        handle.abort();
                    }
                    keep
                });
            }
            Err(e) => tracing::warn!(node = %shared.options.name, error = %e, "pod watch"),
        }
    }
}

fn on_pod(shared: &Arc<Shared>, workers: &mut HashMap<String, PodHandle>, uid: String, pod: Pod) {
    let deleting = pod.metadata.deletion_timestamp.is_some();
    if let Some(handle) = workers.get(&uid) {
        if deleting {
            handle.delete();
        }
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        // Finished before this node knew it: only a deletion to confirm.
        if deleting {
            drop(pod::confirm_deletion_only(Arc::clone(shared), &pod));
        }
        return;
    }
    let faults = shared.faults().take_for(&pod);
    tracing::info!(pod = ?pod.metadata.name, ?faults, "pod bound to the stand-in node");
    workers.insert(uid, pod::spawn(Arc::clone(shared), pod, faults, deleting));
}
