//! Typed Kubernetes objects for one kaniko build, generated from a [`BuildConfig`](kaniko_builder_core::BuildConfig) and
//! [`JobOptions`]. Pure: nothing here touches the network or the filesystem.
//!
//! ```
//! use kaniko_builder_core::{BuildConfig, ImageRef};
//! use kaniko_builder_k8s::manifest::{self, JobOptions};
//!
//! let config = BuildConfig::builder("registry.local:5000/team/app:v1".parse::<ImageRef>()?).build()?;
//! let docker_config = br#"{"auths":{"registry.local:5000":{"auth":"dXNlcjpwYXNz"}}}"#;
//! let manifests = manifest::render(&config, &JobOptions::default(), Some(docker_config))?;
//! assert_eq!(manifests.job_name(), config.job_name());
//! let yaml = manifests.to_yaml()?;
//! assert!(yaml.contains("kind: Job"));
//! # Ok::<(), kaniko_builder_k8s::Error>(())
//! ```
//!
//! # What is rendered, in apply order
//! Namespace; the build Pod's ServiceAccount (no token, no permissions); the orchestrator's
//! ServiceAccount, Role and RoleBinding; the `kubernetes.io/dockerconfigjson` Secret (only when
//! credentials are given); the ConfigMap with the seed's keys; the `batch/v1` Job. The Namespace,
//! ServiceAccounts, Role and RoleBinding are shared by the builds of a namespace; the ConfigMap
//! (outside seed-compatible mode) and the Job belong to one build and carry the
//! `app.kubernetes.io/instance=<job name>` and [`LABEL_IMAGE_HASH`] labels. The Secret is, by
//! default, one per set of credentials, `kb-docker-config-<hash of its content>`: shared by the
//! builds with the same credentials, never touched by builds with others, and owned by the Jobs
//! that mount it once the runner made them ([`crate::apply::own_secret`]), so it goes with the
//! last of them ([`BuildManifests::secret_per_credentials`]). In seed-compatible mode or with
//! [`JobOptions::secret_name`] it is the one Secret of that name, shared by the namespace's builds
//! and kept.
//!
//! # The contract between the containers
//! A stand-in kubelet and the orchestrator rely on exactly this; change it only deliberately.
//!
//! **Volumes.** `docker-config`: the Secret, item `.dockerconfigjson` as `config.json`, mounted
//! read-only at `/kaniko/.docker` in both containers (never inside the context; `optional` when
//! no credentials were rendered but a Secret is named — seed-compatible mode or
//! [`JobOptions::secret_name`] — so a Secret created by hand as in the seed is still used; absent
//! when neither credentials nor a name are given).
//! `kaniko-state`: an `emptyDir` at `/kaniko/state`, writable by `kaniko-init`, read-only in
//! `image-builder`. `build-context` at `/workspace`: a `hostPath` (type `Directory`), a PVC
//! (read-only, with `subPath`) or, for uploads, an `emptyDir` writable by `kaniko-init`; always
//! read-only in `image-builder`; git and URL contexts have none (kaniko fetches them).
//! Both containers use `terminationMessagePath: /dev/termination-log`, policy `File`.
//!
//! **`kaniko-init`** runs `["/busybox/sh", "-c", INIT_SCRIPT]` ([`scripts::INIT_SCRIPT`]) as uid
//! and gid 65532 ([`INIT_UID`]): the container's `securityContext` sets `runAsUser`/`runAsGroup`
//! 65532 and `runAsNonRoot`, because the crane debug image itself runs as root by default. Its
//! environment:
//! `KB_DESTINATION` (the full normalised image reference), `FORCE_BUILD` (from the ConfigMap's
//! key `FORCE_BUILD`, optional), `DOCKER_CONFIG=/kaniko/.docker`, `KB_INSECURE=true` (only when the
//! destination registry is insecure or skips TLS verification), `KB_CONTEXT_KIND`
//! (`hostpath|pvc|upload|git|url`), `KB_CALLER_PROBE` (rendered empty; `absent` when the
//! orchestrator's own probe found no image, see [`BuildManifests::with_caller_probe_absent`]); for
//! uploads `KB_CONTEXT_BLOB` (rendered empty, see [`BuildManifests::with_context_blob`]); for git
//! `KB_GIT_URL` and `KB_GIT_REF` (informational: kaniko clones the repository itself).
//! 1. `FORCE_BUILD` in `Y y yes true 1` → build, reason `forced`; in `N n no false 0` or empty →
//!    check; anything else → error.
//! 2. Otherwise `crane digest [--insecure] "$KB_DESTINATION"` (its stderr is copied to the
//!    container's log): a `sha256:` digest → skip with that digest. On failure only crane's
//!    final `Error: ` line counts (crane first tries HEAD and prints the HEAD's error, often a
//!    bodiless 404, as a warning before it tries GET): a GET answered 404 (`MANIFEST_UNKNOWN`,
//!    `NAME_UNKNOWN` or `unexpected status code 404 Not Found`) → build, reason `absent`. A
//!    refusal (`UNAUTHORIZED`, `DENIED`, 401, 403, a credential helper crane lacks) when
//!    `KB_CALLER_PROBE=absent` or the Secret's `config.json` has no entry for the destination
//!    registry → build, reason `unverified`: crane has only the Secret, kaniko also has its
//!    credential helpers and workload identity, so the executor's push decides. Any other
//!    failure (a refusal with credentials and no caller probe, 429, 5xx, network, TLS) → error:
//!    never build blind.
//! 3. The decision goes to `/kaniko/state/decision` (one JSON line).
//! 4. Upload contexts, when building: with `KB_CONTEXT_BLOB` set, `crane blob
//!    "<destination repository>@$KB_CONTEXT_BLOB"` is unpacked (`tar -xz`) into `/workspace`;
//!    otherwise the script waits for the orchestrator's `exec` upload to create
//!    `/workspace/.kb-upload-complete`, then deletes the marker so it never enters the image.
//! 5. The decision is written to `/dev/termination-log` and the script exits 0 — a skip is a
//!    success, not a failed Pod. An error writes `{"decision":"error","message":"…"}` there and
//!    exits 1 (the Job fails, backoffLimit 0).
//!
//! Decisions ([`Decision`], read with [`parse_init_message`]): `{"decision":"skip","digest":"sha256:…"}`,
//! `{"decision":"build","reason":"absent"}`, `{"decision":"build","reason":"forced"}`,
//! `{"decision":"build","reason":"unverified"}`.
//!
//! **`image-builder`** runs `["/busybox/sh", "-c", BUILDER_WRAPPER, "kaniko", <kaniko args…>]`
//! ([`scripts::BUILDER_WRAPPER`]) with `DOCKER_CONFIG=/kaniko/.docker` (and `GIT_PULL_METHOD=http`
//! for `http://` git contexts). A `skip` decision is copied to its `/dev/termination-log` and it
//! exits 0; a `build` decision `exec`s `/kaniko/executor "$@"`; no decision exits 1. The kaniko
//! arguments ([`kaniko_args`]) are one `--flag=value` (or bare `--flag`) per element, in this
//! order: `--context=` (`dir:///workspace`, `git://host/path[#ref]` or the URL),
//! `--context-sub-path=` (git), `--dockerfile=`, `--destination=` (one per destination, the image
//! first), `--build-arg=K=V`, `--target=`, `--label=K=V`, `--digest-file=/dev/termination-log`,
//! `--cache=true`, `--cache-repo=`, `--cache-ttl=` (Go duration), `--insecure-registry=`,
//! `--skip-tls-verify-registry=`, `--registry-mirror=`, `--snapshot-mode=`, `--reproducible`,
//! `--push-retry=`, `--verbosity=`. After a build, the termination message is the pushed
//! `sha256:` digest.
//!
//! **One platform of a multi-platform build** ([`BuildConfig::for_platform`](kaniko_builder_core::BuildConfig::for_platform);
//! the whole request, [`BuildConfig::platforms`](kaniko_builder_core::BuildConfig::platforms), is
//! one such Job per platform, [`render_platforms`], and [`render`] refuses it). kaniko cannot push
//! by digest, and the platform's image must not go under the tag (the orchestrator pushes the
//! index there), so such a Job differs from the above in exactly this:
//! - the Job's name names the platform; the Job, its Pod and its own ConfigMap carry the label
//!   [`LABEL_PLATFORM`] (`linux-arm64`) and the annotation [`ANNOTATION_PLATFORM`] (`linux/arm64`);
//! - the Pod's node selector is `kubernetes.io/os=<os>`, `kubernetes.io/arch=<architecture>`, or
//!   the platform's [`JobOptions::platform_node_selector`], merged over
//!   [`JobOptions::node_selector`] (whose `kubernetes.io/os` and `kubernetes.io/arch` it replaces);
//! - two more `emptyDir`s: `kaniko-tools` at `/kaniko/tools` (writable in `kaniko-init`, read-only
//!   in `image-builder`) and `kaniko-out` at `/kaniko/out` (only in `image-builder`, writable,
//!   `sizeLimit` from [`JobOptions::output_size_limit`], none by default);
//! - `kaniko-init` runs [`scripts::PLATFORM_INIT_PRELUDE`] then `INIT_SCRIPT`: it copies crane to
//!   `/kaniko/tools/crane` first, and `FORCE_BUILD` is the literal `Y` instead of the ConfigMap's
//!   key, so the decision is always `{"decision":"build","reason":"forced"}` (the tag holds the
//!   index, not this platform's image);
//! - `image-builder` runs [`scripts::PLATFORM_BUILDER_WRAPPER`] with `KB_PUSH` ([`ENV_PUSH`]):
//!   one line per destination repository, `<registry>/<repository>` followed by ` --insecure`
//!   when its registry is insecure or skips TLS verification. The kaniko arguments have no
//!   `--destination`; after `--dockerfile=` come `--custom-platform=<os/arch[/variant]>`,
//!   `--no-push`, `--image-format=oci`, `--oci-layout-path=/kaniko/out/layout`, and the digest
//!   goes to `--digest-file=/kaniko/out/digest` (a cache without a repository gets
//!   `--cache-repo=<registry>/<repository>/cache`, as kaniko would infer it). Then
//!   `/kaniko/tools/crane push [--insecure] /kaniko/out/layout <registry>/<repository>@<digest>`
//!   per line, and the digest goes to the termination message, as after any build. Every
//!   failure exits 1 with `image-builder: <what failed>` on stderr and as the termination
//!   message.
//!
//! Credentials live only in the Secret, base64-encoded as Kubernetes requires: never in an
//! environment variable, an argument, the ConfigMap, an annotation or the context volume.

mod args;
mod options;
mod platform;
mod render;
pub mod scripts;
mod validate;

use std::fmt;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kaniko_builder_core::Digest;
pub use kaniko_builder_core::flow::{BuildReason, Decision};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use args::kaniko_args;
pub use platform::{platforms_to_yaml, render_platforms};
pub use render::render;

pub use options::{
    DEFAULT_ACTIVE_DEADLINE, DEFAULT_BUILD_SERVICE_ACCOUNT, DEFAULT_EXECUTOR_IMAGE, DEFAULT_INIT_IMAGE,
    DEFAULT_ORCHESTRATOR_SERVICE_ACCOUNT, DEFAULT_SECRET_NAME, DEFAULT_TTL_AFTER_FINISHED, INIT_UID,
    JobOptions, ORCHESTRATOR_ROLE, Orchestrator, SECRET_NAME_PREFIX, SEED_CONFIG_MAP_NAME,
};

/// The init container's name (the seed's).
pub const INIT_CONTAINER: &str = "kaniko-init";
/// The main container's name (the seed's).
pub const BUILDER_CONTAINER: &str = "image-builder";
/// Where both containers find the docker `config.json` (kaniko's `DOCKER_CONFIG`).
pub const DOCKER_CONFIG_DIR: &str = "/kaniko/.docker";
/// The directory the containers share.
pub const STATE_DIR: &str = "/kaniko/state";
/// The file holding the init container's decision.
pub const DECISION_FILE: &str = "/kaniko/state/decision";
/// Where the build context is mounted.
pub const CONTEXT_DIR: &str = "/workspace";
/// The marker an `exec` upload creates when the context is complete.
pub const UPLOAD_MARKER: &str = "/workspace/.kb-upload-complete";
/// Both containers' termination message path; kaniko's `--digest-file` points here.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// The `kaniko-tools` emptyDir of a platform's Job: `kaniko-init` copies crane here.
pub const TOOLS_DIR: &str = "/kaniko/tools";
/// The crane `image-builder` pushes a platform's image with.
pub const CRANE_TOOL: &str = "/kaniko/tools/crane";
/// The `kaniko-out` emptyDir of a platform's Job: kaniko's OCI layout and digest file.
pub const OUT_DIR: &str = "/kaniko/out";
/// Where kaniko writes a platform's image as an OCI layout (`--oci-layout-path`).
pub const OCI_LAYOUT_DIR: &str = "/kaniko/out/layout";
/// Where kaniko writes a platform's image digest (`--digest-file`); the wrapper copies it to the
/// termination message once pushed.
pub const PLATFORM_DIGEST_FILE: &str = "/kaniko/out/digest";
/// `image-builder`'s variable listing where a platform's image is pushed by digest: one line per
/// destination repository, `<registry>/<repository>` then crane's flags (`--insecure`).
pub const ENV_PUSH: &str = "KB_PUSH";
/// The Secret key holding the docker `config.json`.
pub const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";
/// The Secret type for a docker `config.json`.
pub const DOCKER_CONFIG_SECRET_TYPE: &str = "kubernetes.io/dockerconfigjson";

/// `app.kubernetes.io/name`, always `kaniko-builder` unless overridden.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/managed-by`, always `kaniko-builder` unless overridden.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/instance`: the Job name, on a build's own objects.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: what the object is for.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// The first 40 hex digits of the sha256 of the normalised image reference, so an orchestrator
/// finds the builds of an image by label.
pub const LABEL_IMAGE_HASH: &str = "kaniko-builder.io/image-hash";
/// The platform a Job builds, on the Job, its Pod and its own ConfigMap, for one platform of a
/// multi-platform build: the platform's [slug](kaniko_builder_core::Platform::slug)
/// (`linux-arm64`; a label value cannot hold `/`).
pub const LABEL_PLATFORM: &str = "kaniko-builder.io/platform";
/// The platform a Job builds, as written (`linux/arm64`), next to [`LABEL_PLATFORM`].
pub const ANNOTATION_PLATFORM: &str = "kaniko-builder.io/platform";
/// The init container's variable saying what the caller's probe found (`absent`, or empty).
pub(crate) const ENV_CALLER_PROBE: &str = "KB_CALLER_PROBE";
/// Annotation holding the normalised image reference.
pub const ANNOTATION_IMAGE: &str = "kaniko-builder.io/image";
/// Annotation holding the full build hash (`sha256:…`) behind the Job name.
pub const ANNOTATION_BUILD_HASH: &str = "kaniko-builder.io/build-hash";
/// Annotation the runner puts on a Job it creates: an id unique to that run, so that a create
/// whose answer never came (cancelled, or a broken connection) is recognised as its own.
pub const ANNOTATION_RUN: &str = "kaniko-builder.io/run";
const APP: &str = "kaniko-builder";
const IMAGE_HASH_LEN: usize = 40;

const VOLUME_DOCKER_CONFIG: &str = "docker-config";
const VOLUME_STATE: &str = "kaniko-state";
const VOLUME_CONTEXT: &str = "build-context";
const VOLUME_TOOLS: &str = "kaniko-tools";
const VOLUME_OUT: &str = "kaniko-out";

/// Parses what `kaniko-init` wrote to its termination message or `/kaniko/state/decision`: its
/// [`Decision`], or `Err(message)` when it could not tell (`{"decision":"error","message":…}`:
/// auth, network, registry error; the Pod failed). `None` when it is neither (after a build,
/// `image-builder`'s termination message is the pushed digest instead).
pub fn parse_init_message(message: &str) -> Option<std::result::Result<Decision, String>> {
    #[derive(Deserialize)]
    #[serde(tag = "decision", rename_all = "lowercase")]
    enum CannotTell {
        Error { message: String },
    }
    let message = message.trim();
    if let Ok(decision) = serde_json::from_str::<Decision>(message) {
        return Some(Ok(decision));
    }
    serde_json::from_str::<CannotTell>(message)
        .ok()
        .map(|CannotTell::Error { message }| Err(message))
}

/// Every object of one build. Fields are public for callers that apply them one by one;
/// [`objects`](Self::objects) lists them in apply order. `Debug` redacts the Secret's data.
#[derive(Clone)]
#[non_exhaustive]
pub struct BuildManifests {
    /// The build namespace.
    pub namespace: Namespace,
    /// The build Pod's ServiceAccount; `None` when the options name an existing one.
    pub service_account: Option<ServiceAccount>,
    /// The orchestrator's ServiceAccount, when it is one generated in the build namespace.
    pub orchestrator_service_account: Option<ServiceAccount>,
    /// The orchestrator's Role, when an orchestrator is configured.
    pub role: Option<Role>,
    /// The binding of [`role`](Self::role) to the orchestrator.
    pub role_binding: Option<RoleBinding>,
    /// The docker `config.json`, when credentials were given.
    pub secret: Option<Secret>,
    /// The seed's keys for this build.
    pub config_map: ConfigMap,
    /// The build.
    pub job: Job,
    /// Whether [`secret`](Self::secret) is a per-credentials Secret (the default).
    secret_per_credentials: bool,
}

/// One object of [`BuildManifests`], borrowed; serialises as the object itself.
#[derive(Clone, Copy, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Object<'a> {
    /// A Namespace.
    Namespace(&'a Namespace),
    /// A ServiceAccount.
    ServiceAccount(&'a ServiceAccount),
    /// A Role.
    Role(&'a Role),
    /// A RoleBinding.
    RoleBinding(&'a RoleBinding),
    /// A Secret.
    Secret(&'a Secret),
    /// A ConfigMap.
    ConfigMap(&'a ConfigMap),
    /// A Job.
    Job(&'a Job),
}

impl Object<'_> {
    /// The object's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Namespace(_) => "Namespace",
            Self::ServiceAccount(_) => "ServiceAccount",
            Self::Role(_) => "Role",
            Self::RoleBinding(_) => "RoleBinding",
            Self::Secret(_) => "Secret",
            Self::ConfigMap(_) => "ConfigMap",
            Self::Job(_) => "Job",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::Namespace(o) => &o.metadata,
            Self::ServiceAccount(o) => &o.metadata,
            Self::Role(o) => &o.metadata,
            Self::RoleBinding(o) => &o.metadata,
            Self::Secret(o) => &o.metadata,
            Self::ConfigMap(o) => &o.metadata,
            Self::Job(o) => &o.metadata,
        }
    }

    /// The object as JSON, as the API server receives it.
    ///
    /// # Errors
    /// [`Error::Serialize`] if serialisation fails (it does not for these types).
    pub fn to_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self).map_err(|e| Error::Serialize(Box::new(e)))
    }
}

impl fmt::Debug for Object<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(s) => fmt::Debug::fmt(&RedactedSecret(s), f),
            other => write!(f, "{}({:?})", other.kind(), other.metadata().name),
        }
    }
}

struct RedactedSecret<'a>(&'a Secret);

impl fmt::Debug for RedactedSecret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&String> = self.0.data.iter().flatten().map(|(k, _)| k).collect();
        f.debug_struct("Secret")
            .field("metadata", &self.0.metadata)
            .field("type_", &self.0.type_)
            .field(
                "data",
                &format_args!("<{} key(s) redacted: {keys:?}>", keys.len()),
            )
            .finish()
    }
}

impl fmt::Debug for BuildManifests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildManifests")
            .field("namespace", &self.namespace)
            .field("service_account", &self.service_account)
            .field("orchestrator_service_account", &self.orchestrator_service_account)
            .field("role", &self.role)
            .field("role_binding", &self.role_binding)
            .field("secret", &self.secret.as_ref().map(RedactedSecret))
            .field("config_map", &self.config_map)
            .field("job", &self.job)
            .field("secret_per_credentials", &self.secret_per_credentials)
            .finish()
    }
}

impl BuildManifests {
    /// Every object, in the order to apply them.
    pub fn objects(&self) -> Vec<Object<'_>> {
        let mut out = vec![Object::Namespace(&self.namespace)];
        out.extend(self.service_account.iter().map(Object::ServiceAccount));
        out.extend(
            self.orchestrator_service_account
                .iter()
                .map(Object::ServiceAccount),
        );
        out.extend(self.role.iter().map(Object::Role));
        out.extend(self.role_binding.iter().map(Object::RoleBinding));
        out.extend(self.secret.iter().map(Object::Secret));
        out.push(Object::ConfigMap(&self.config_map));
        out.push(Object::Job(&self.job));
        out
    }

    /// The Job's name.
    pub fn job_name(&self) -> &str {
        self.job.metadata.name.as_deref().unwrap_or_default()
    }

    /// Whether the Secret is a per-credentials one (the default, without seed-compatible mode or
    /// [`JobOptions::secret_name`]): `kb-docker-config-<hash>`, shared by every build with the
    /// same credentials. Such a Secret is made after the Job, owned by it
    /// ([`crate::apply::own_secret`]; each Job that mounts it adds itself as an owner), and the
    /// garbage collector deletes it once its last owner is gone. `false` for a Secret shared by
    /// name, which [`crate::apply::apply_build`] applies before the Job and which is kept.
    pub fn secret_per_credentials(&self) -> bool {
        self.secret_per_credentials && self.secret.is_some()
    }

    /// The build namespace.
    pub fn namespace_name(&self) -> &str {
        self.namespace.metadata.name.as_deref().unwrap_or_default()
    }

    /// Multi-document YAML (`---` between documents, apply order) that `kubectl apply -f -`
    /// accepts.
    ///
    /// # Errors
    /// [`Error::Serialize`] if serialisation fails.
    pub fn to_yaml(&self) -> Result<String> {
        to_yaml(self)
    }

    /// Sets `KB_CONTEXT_BLOB` on `kaniko-init`: the digest of a gzipped tar of the context that
    /// the orchestrator pushed as a blob to the destination repository. Do this before creating
    /// the Job; without it the init container waits for an `exec` upload.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when the build's context is not an upload.
    pub fn with_context_blob(mut self, digest: &Digest) -> Result<Self> {
        match self.init_env("KB_CONTEXT_BLOB") {
            Some(var) => {
                var.value = Some(digest.to_string());
                Ok(self)
            }
            None => Err(Error::InvalidOption {
                option: "context_blob",
                problem: "the build context is not an upload".to_owned(),
            }),
        }
    }

    /// Tells `kaniko-init` that the caller's own probe found the tag absent (`KB_CALLER_PROBE=absent`),
    /// so a registry that refuses crane's credentials defers to the executor instead of failing
    /// the build (see [`scripts::INIT_SCRIPT`]). The runner sets it; rendered YAML leaves it empty.
    #[must_use]
    pub fn with_caller_probe_absent(mut self) -> Self {
        if let Some(var) = self.init_env(ENV_CALLER_PROBE) {
            var.value = Some("absent".to_owned());
        }
        self
    }

    /// The init container's environment variable `name`, when rendered.
    fn init_env(&mut self, name: &str) -> Option<&mut k8s_openapi::api::core::v1::EnvVar> {
        self.job
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
            .and_then(|s| s.init_containers.as_mut())
            .and_then(|c| c.iter_mut().find(|c| c.name == INIT_CONTAINER))
            .and_then(|c| c.env.as_mut())
            .and_then(|env| env.iter_mut().find(|e| e.name == name))
    }
}

/// Writes `manifests` as multi-document YAML with serde-saphyr; see [`BuildManifests::to_yaml`].
///
/// # Errors
/// [`Error::Serialize`] if serialisation fails.
pub fn to_yaml(manifests: &BuildManifests) -> Result<String> {
    let mut out = String::new();
    for (i, object) in manifests.objects().iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(object).map_err(|e| Error::Serialize(Box::new(e)))?);
    }
    Ok(out)
}

#[cfg(test)]
mod script_tests;
#[cfg(test)]
mod tests;
