//! How a build runs on the cluster: images, resources, scheduling, identities, names and limits.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, PodSecurityContext, ResourceRequirements, SecurityContext, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kaniko_builder_core::Platform;

/// The maintained kaniko fork's debug image (`/busybox/sh` for the wrapper, `/kaniko/executor`,
/// runs as root), pinned by tag; Google archived `gcr.io/kaniko-project/executor` in 2025.
/// v1.28.5 is the newest release whose `-debug` image public sources pin by digest, and it carries
/// the security fixes of v1.27.6 to v1.28.3. Check it with `crane digest`, copy it to a mirror with
/// `crane copy` and point [`JobOptions::executor_image`] there, ideally by digest (README, "Default
/// images and how they were checked"; [`crate::preflight`] checks it resolves).
pub const DEFAULT_EXECUTOR_IMAGE: &str = "ghcr.io/osscontainertools/kaniko:v1.28.5-debug";
/// crane, the CLI of go-containerregistry (the registry library kaniko itself uses), so the check
/// resolves `DOCKER_CONFIG` credentials, insecure registries and mirrors as the executor will. The
/// debug variant (ko-built on `gcr.io/distroless/base:debug`: `/ko-app/crane`, `/busybox/sh`, runs
/// as root unless the Pod says otherwise) has busybox for the init script.
/// Tagged crane images have been published unreliably (go-containerregistry issues #1877, #2036);
/// v0.22.1 is the newest `crane/debug` tag public sources pin by digest. Check and mirror it like
/// [`DEFAULT_EXECUTOR_IMAGE`], then point [`JobOptions::init_image`] at the mirror.
pub const DEFAULT_INIT_IMAGE: &str = "gcr.io/go-containerregistry/crane/debug:v0.22.1";
/// The seed's Secret name: used in seed-compatible mode, and the usual explicit
/// [`JobOptions::secret_name`] for a Secret made by hand.
pub const DEFAULT_SECRET_NAME: &str = "docker-config-secret";
/// The prefix of a per-credentials Secret's name (the default): `kb-docker-config-` and the first
/// 20 hex digits of the sha256 of the `config.json` it holds, so builds with the same credentials
/// share one Secret and builds with other credentials never touch it.
pub const SECRET_NAME_PREFIX: &str = "kb-docker-config-";
/// The seed's ConfigMap name, used in seed-compatible mode.
pub const SEED_CONFIG_MAP_NAME: &str = "my-kaniko-builder-configmap";
/// The generated ServiceAccount the build Pod runs as: no token, no permissions.
pub const DEFAULT_BUILD_SERVICE_ACCOUNT: &str = "kaniko-builder";
/// The generated ServiceAccount an in-cluster orchestrator runs as.
pub const DEFAULT_ORCHESTRATOR_SERVICE_ACCOUNT: &str = "kaniko-builder-orchestrator";
/// The Role and RoleBinding granting the orchestrator what it needs.
pub const ORCHESTRATOR_ROLE: &str = "kaniko-builder-orchestrator";
/// The default `activeDeadlineSeconds`: 30 minutes.
pub const DEFAULT_ACTIVE_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// The default `ttlSecondsAfterFinished`: one hour.
pub const DEFAULT_TTL_AFTER_FINISHED: Duration = Duration::from_secs(60 * 60);
/// The uid (and gid) the init container runs as: distroless' `nonroot`, 65532. The crane debug
/// image itself runs as root by default (its base sets no user); the Pod spec sets `runAsUser`
/// and `runAsGroup` 65532 and `runAsNonRoot`, since the init script needs no root.
pub const INIT_UID: i64 = 65532;

/// Who orchestrates builds in the namespace, and so receives the Role's permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Orchestrator {
    /// A ServiceAccount in the build namespace, generated with the manifests.
    ServiceAccount(String),
    /// An existing ServiceAccount in another namespace; not generated.
    ExternalServiceAccount {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A user, as the API server authenticates it.
    User(String),
    /// A group, as the API server authenticates it.
    Group(String),
}

impl Default for Orchestrator {
    /// [`Orchestrator::ServiceAccount`] `kaniko-builder-orchestrator`.
    fn default() -> Self {
        Self::ServiceAccount(DEFAULT_ORCHESTRATOR_SERVICE_ACCOUNT.to_owned())
    }
}

/// How to run a build: everything that is not [`BuildConfig`](kaniko_builder_core::BuildConfig).
/// Start from [`JobOptions::default`] and chain setters; [`render`](super::render) validates.
///
/// ```
/// use std::time::Duration;
/// use kaniko_builder_k8s::manifest::JobOptions;
///
/// let options = JobOptions::default()
///     .node_selector("kubernetes.io/arch", "amd64")
///     .active_deadline(Duration::from_secs(3600))
///     .label("team", "platform");
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct JobOptions {
    pub(crate) executor_image: String,
    pub(crate) init_image: String,
    pub(crate) executor_resources: ResourceRequirements,
    pub(crate) init_resources: ResourceRequirements,
    pub(crate) node_selector: BTreeMap<String, String>,
    pub(crate) platform_node_selectors: BTreeMap<Platform, BTreeMap<String, String>>,
    pub(crate) output_size_limit: Option<Quantity>,
    pub(crate) tolerations: Vec<Toleration>,
    pub(crate) affinity: Option<Affinity>,
    pub(crate) service_account_name: Option<String>,
    pub(crate) image_pull_secrets: Vec<String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) pod_security_context: Option<PodSecurityContext>,
    pub(crate) init_security_context: SecurityContext,
    pub(crate) executor_security_context: Option<SecurityContext>,
    pub(crate) active_deadline: Duration,
    pub(crate) ttl_after_finished: Duration,
    pub(crate) secret_name: Option<String>,
    pub(crate) config_map_name: Option<String>,
    pub(crate) orchestrator: Option<Orchestrator>,
    pub(crate) exec_upload: bool,
    pub(crate) seed_compatible: bool,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            executor_image: DEFAULT_EXECUTOR_IMAGE.to_owned(),
            init_image: DEFAULT_INIT_IMAGE.to_owned(),
            executor_resources: resources(("500m", "1Gi"), ("2", "4Gi")),
            init_resources: resources(("50m", "64Mi"), ("500m", "256Mi")),
            node_selector: BTreeMap::new(),
            platform_node_selectors: BTreeMap::new(),
            output_size_limit: None,
            tolerations: Vec::new(),
            affinity: None,
            service_account_name: None,
            image_pull_secrets: Vec::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            pod_security_context: None,
            init_security_context: hardened_non_root(),
            executor_security_context: None,
            active_deadline: DEFAULT_ACTIVE_DEADLINE,
            ttl_after_finished: DEFAULT_TTL_AFTER_FINISHED,
            secret_name: None,
            config_map_name: None,
            orchestrator: Some(Orchestrator::default()),
            exec_upload: false,
            seed_compatible: false,
        }
    }
}

/// `requests` and `limits` for cpu and memory.
fn resources(requests: (&str, &str), limits: (&str, &str)) -> ResourceRequirements {
    let map = |(cpu, memory): (&str, &str)| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };
    ResourceRequirements {
        requests: Some(map(requests)),
        limits: Some(map(limits)),
        ..ResourceRequirements::default()
    }
}

/// Non-root, no privilege escalation, no capabilities, read-only root filesystem.
fn hardened_non_root() -> SecurityContext {
    SecurityContext {
        run_as_user: Some(INIT_UID),
        run_as_group: Some(INIT_UID),
        run_as_non_root: Some(true),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

impl JobOptions {
    /// The kaniko executor image; it must have `/busybox/sh` (a `-debug` variant). Default:
    /// [`DEFAULT_EXECUTOR_IMAGE`].
    pub fn executor_image(mut self, image: impl Into<String>) -> Self {
        self.executor_image = image.into();
        self
    }

    /// The init container's image; it must have `/busybox/sh` and `crane`. Default:
    /// [`DEFAULT_INIT_IMAGE`].
    pub fn init_image(mut self, image: impl Into<String>) -> Self {
        self.init_image = image.into();
        self
    }

    /// Requests and limits of the `image-builder` container. Default: requests 500m cpu and 1Gi
    /// memory, limits 2 cpu and 4Gi memory.
    pub fn executor_resources(mut self, resources: ResourceRequirements) -> Self {
        self.executor_resources = resources;
        self
    }

    /// Requests and limits of the `kaniko-init` container. Default: requests 50m cpu and 64Mi
    /// memory, limits 500m cpu and 256Mi memory.
    pub fn init_resources(mut self, resources: ResourceRequirements) -> Self {
        self.init_resources = resources;
        self
    }

    /// Adds a `nodeSelector` entry. Default: none.
    pub fn node_selector(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.node_selector.insert(key.into(), value.into());
        self
    }

    /// The node selector of the Jobs that build `platform` in a multi-platform build, in place of
    /// the default `kubernetes.io/os=<os>` and `kubernetes.io/arch=<architecture>` (the labels the
    /// kubelet sets): for clusters that label their nodes otherwise, or an empty map to let the
    /// scheduler pick any node (e.g. when every node can build every platform). Either way the
    /// platform's selector is merged over [`node_selector`](Self::node_selector), whose
    /// `kubernetes.io/os` and `kubernetes.io/arch` entries it replaces. `platform` must be the
    /// requested one exactly (`linux/arm64` does not cover `linux/arm64/v8`). Set again for the
    /// same platform, the last selector wins. Default: none.
    pub fn platform_node_selector(mut self, platform: Platform, selector: BTreeMap<String, String>) -> Self {
        self.platform_node_selectors.insert(platform, selector);
        self
    }

    /// The `sizeLimit` of the `kaniko-out` emptyDir in the Job of one platform of a multi-platform
    /// build, where kaniko writes the image as an OCI layout (its compressed layers, and any cache
    /// layers it pushes) before crane pushes it; a Pod that writes more is evicted. A Kubernetes
    /// quantity such as `10Gi`. Default: none, so only the node's ephemeral storage bounds it
    /// (images differ too much in size for one default to fit).
    pub fn output_size_limit(mut self, limit: impl Into<String>) -> Self {
        self.output_size_limit = Some(Quantity(limit.into()));
        self
    }

    /// Adds a toleration. Default: none.
    pub fn toleration(mut self, toleration: Toleration) -> Self {
        self.tolerations.push(toleration);
        self
    }

    /// The Pod's affinity. Default: none.
    pub fn affinity(mut self, affinity: Affinity) -> Self {
        self.affinity = Some(affinity);
        self
    }

    /// Runs the build Pod as this existing ServiceAccount (e.g. one bound to a cloud identity that
    /// may push), and generates none. Default: a generated `kaniko-builder` ServiceAccount with no
    /// token and no permissions.
    pub fn service_account_name(mut self, name: impl Into<String>) -> Self {
        self.service_account_name = Some(name.into());
        self
    }

    /// Adds an `imagePullSecrets` entry, for pulling the executor and init images. Default: none.
    pub fn image_pull_secret(mut self, name: impl Into<String>) -> Self {
        self.image_pull_secrets.push(name.into());
        self
    }

    /// Adds a label to every object. Default: only the `app.kubernetes.io/*` labels, which this can
    /// override, except `app.kubernetes.io/instance` and the image-hash label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds an annotation to every object. Default: none besides the image annotations on the Job,
    /// its Pod and the ConfigMap.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// The Pod's security context. Default: none (kaniko runs as root to unpack images).
    pub fn pod_security_context(mut self, context: PodSecurityContext) -> Self {
        self.pod_security_context = Some(context);
        self
    }

    /// The `kaniko-init` container's security context. Default: `runAsUser`/`runAsGroup` 65532
    /// (the crane debug image would otherwise run as root), `runAsNonRoot`, no privilege
    /// escalation, read-only root filesystem, all capabilities dropped.
    pub fn init_security_context(mut self, context: SecurityContext) -> Self {
        self.init_security_context = context;
        self
    }

    /// The `image-builder` container's security context. Default: none (kaniko needs root).
    pub fn executor_security_context(mut self, context: SecurityContext) -> Self {
        self.executor_security_context = Some(context);
        self
    }

    /// The Job's `activeDeadlineSeconds`, at least one second; the upload wait counts. Default:
    /// 30 minutes.
    pub fn active_deadline(mut self, deadline: Duration) -> Self {
        self.active_deadline = deadline;
        self
    }

    /// The Job's `ttlSecondsAfterFinished`: how long a finished Job and its Pod stay for
    /// inspection. Default: one hour.
    pub fn ttl_after_finished(mut self, ttl: Duration) -> Self {
        self.ttl_after_finished = ttl;
        self
    }

    /// One Secret of this name holds the docker `config.json` of every build of the namespace
    /// that sets it (the last build applied wins), and is kept: only for a Secret made by hand
    /// or a namespace with one set of credentials. Default: a Secret per set of credentials,
    /// `kb-docker-config-<hash of its content>` ([`SECRET_NAME_PREFIX`]), owned by the Jobs that
    /// mount it and collected with the last of them; no Secret at all without credentials.
    /// Seed-compatible mode uses `docker-config-secret`.
    pub fn secret_name(mut self, name: impl Into<String>) -> Self {
        self.secret_name = Some(name.into());
        self
    }

    /// The ConfigMap with the seed's keys. Default: the Job's name (one per build), or
    /// `my-kaniko-builder-configmap` in seed-compatible mode.
    pub fn config_map_name(mut self, name: impl Into<String>) -> Self {
        self.config_map_name = Some(name.into());
        self
    }

    /// Who receives the orchestration Role; `None` renders no Role, RoleBinding or orchestrator
    /// ServiceAccount. Default: a generated ServiceAccount `kaniko-builder-orchestrator`.
    pub fn orchestrator(mut self, orchestrator: Option<Orchestrator>) -> Self {
        self.orchestrator = orchestrator;
        self
    }

    /// Whether the orchestrator uploads local contexts by `exec` into `kaniko-init` (granting
    /// `pods/exec`), rather than as a blob in the registry. Default: false.
    pub fn exec_upload(mut self, enabled: bool) -> Self {
        self.exec_upload = enabled;
        self
    }

    /// Reproduce the seed's object names: namespace `kaniko`, Secret `docker-config-secret`,
    /// ConfigMap `my-kaniko-builder-configmap`. A build namespace or an explicit name that differs
    /// is an error at render time. Default: false.
    pub fn seed_compatible(mut self, enabled: bool) -> Self {
        self.seed_compatible = enabled;
        self
    }
}
