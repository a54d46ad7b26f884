//! What to build: the image, its destinations, the build context and the kaniko options users ask
//! for. Pure data, validated once by [`BuildConfigBuilder::build`].
//!
//! ```
//! use kaniko_builder_core::config::{BuildConfig, CacheConfig, ContextSource};
//! use kaniko_builder_core::ImageRef;
//!
//! let config = BuildConfig::builder("registry.local:5000/team/app:v1".parse::<ImageRef>()?)
//!     .context(ContextSource::Pvc { claim: "sources".into(), sub_path: Some("app".into()) })
//!     .dockerfile("docker/Dockerfile")
//!     .build_arg("VERSION", "1.2.3")
//!     .cache(CacheConfig::default())
//!     .build()?;
//! assert_eq!(config.namespace(), "kaniko");
//! assert!(config.job_name().starts_with("kb-team-app-v1-"));
//! // The same build gets the same name.
//! assert_eq!(config.job_name(), config.clone().job_name());
//! # Ok::<(), kaniko_builder_core::Error>(())
//! ```

mod builder;
mod context;
pub mod names;
pub mod seed;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::digest::Digest;
use crate::image_ref::ImageRef;
use crate::platform::Platform;

pub use builder::BuildConfigBuilder;
pub use context::ContextSource;
pub use seed::SeedConfig;

/// The seed's context directory, mounted from the node at the same path.
pub const DEFAULT_CONTEXT_DIR: &str = "/workspace";
/// The Dockerfile kaniko reads when none is named.
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";
/// The seed's namespace.
pub const DEFAULT_NAMESPACE: &str = "kaniko";

/// kaniko's layer cache (`--cache=true`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct CacheConfig {
    /// The repository that holds cached layers (`--cache-repo`); kaniko's default is
    /// `<destination>/cache`.
    pub repo: Option<String>,
    /// How long a cached layer stays valid (`--cache-ttl`); kaniko's default is two weeks.
    pub ttl: Option<Duration>,
}

/// kaniko's `--snapshot-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SnapshotMode {
    /// Hash every file's content (kaniko's default).
    Full,
    /// Hash metadata only, faster and good enough for most builds.
    Redo,
    /// Look at modification times only.
    Time,
}

impl SnapshotMode {
    /// The flag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Redo => "redo",
            Self::Time => "time",
        }
    }
}

/// kaniko's `--verbosity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Verbosity {
    /// `panic`
    Panic,
    /// `fatal`
    Fatal,
    /// `error`
    Error,
    /// `warn`
    Warn,
    /// `info` (kaniko's default)
    Info,
    /// `debug`
    Debug,
    /// `trace`
    Trace,
}

impl Verbosity {
    /// The flag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Panic => "panic",
            Self::Fatal => "fatal",
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// A validated description of one image build. Build it with [`BuildConfig::builder`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildConfig {
    image: ImageRef,
    destinations: Vec<ImageRef>,
    context: ContextSource,
    dockerfile: String,
    force: bool,
    namespace: String,
    build_args: BTreeMap<String, String>,
    target: Option<String>,
    labels: BTreeMap<String, String>,
    cache: Option<CacheConfig>,
    insecure_registries: Vec<String>,
    skip_tls_verify_registries: Vec<String>,
    registry_mirrors: Vec<String>,
    snapshot_mode: Option<SnapshotMode>,
    reproducible: bool,
    push_retry: Option<u32>,
    verbosity: Option<Verbosity>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    platforms: Vec<Platform>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_digest: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_platform: Option<Platform>,
}

impl BuildConfig {
    /// Starts a configuration that builds and pushes `image` (which must carry a tag, not a digest).
    pub fn builder(image: ImageRef) -> BuildConfigBuilder {
        BuildConfigBuilder {
            image,
            destinations: Vec::new(),
            context: ContextSource::default(),
            dockerfile: DEFAULT_DOCKERFILE.to_owned(),
            force: false,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            build_args: BTreeMap::new(),
            target: None,
            labels: BTreeMap::new(),
            cache: None,
            insecure_registries: Vec::new(),
            skip_tls_verify_registries: Vec::new(),
            registry_mirrors: Vec::new(),
            snapshot_mode: None,
            reproducible: false,
            push_retry: None,
            verbosity: None,
            platforms: Vec::new(),
        }
    }

    /// The platforms of a multi-platform build, in the order given; empty for a build of the
    /// executor's own platform (one Job, one image under the tag, as before).
    pub fn platforms(&self) -> &[Platform] {
        &self.platforms
    }

    /// The one platform of a multi-platform build this configuration builds, as one Job of it
    /// ([`for_platform`](Self::for_platform)); `None` for a whole build.
    pub fn target_platform(&self) -> Option<&Platform> {
        self.target_platform.as_ref()
    }

    /// One platform of this multi-platform build: the configuration of its own Job, which builds
    /// for `platform` (kaniko's `--custom-platform`, on a node of that platform) and pushes the
    /// image by digest only, for the index that the whole build then pushes under the tag. Its
    /// [`build_hash`](Self::build_hash) and [`job_name`](Self::job_name) name the platform.
    pub fn for_platform(&self, platform: &Platform) -> Self {
        let mut one = self.clone();
        one.platforms = Vec::new();
        one.target_platform = Some(platform.clone());
        one
    }

    /// The same build, pinned to the content of its local directory: `digest` is what the
    /// directory's files hash to (the packed context's uncompressed `diff_id`, see
    /// `kaniko_builder_context::hash`). The Kubernetes runner sets it after hashing a
    /// [`ContextSource::LocalDir`] and before naming the Job, so the [`build_hash`](Self::build_hash)
    /// and the [`job_name`](Self::job_name) follow the files, not the path: the same directory
    /// with changed files is another build, and two checkouts of the same files are one. Other
    /// contexts ignore it. [`into_builder`](Self::into_builder) drops it.
    pub fn with_context_digest(mut self, digest: Digest) -> Self {
        self.context_digest = Some(digest);
        self
    }

    /// The local directory's content digest, once set by [`with_context_digest`](Self::with_context_digest).
    pub fn context_digest(&self) -> Option<&Digest> {
        self.context_digest.as_ref()
    }

    /// The image whose existence decides whether to build; the first destination.
    pub fn image(&self) -> &ImageRef {
        &self.image
    }

    /// Every destination kaniko pushes to: [`image`](Self::image) first, then the extra ones.
    pub fn destinations(&self) -> impl Iterator<Item = &ImageRef> {
        std::iter::once(&self.image).chain(&self.destinations)
    }

    /// Where kaniko finds the build context.
    pub fn context(&self) -> &ContextSource {
        &self.context
    }

    /// The Dockerfile path, relative to the context.
    pub fn dockerfile(&self) -> &str {
        &self.dockerfile
    }

    /// Whether to build even when the image exists.
    pub fn force(&self) -> bool {
        self.force
    }

    /// The namespace the build runs in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `--build-arg` values, by name.
    pub fn build_args(&self) -> &BTreeMap<String, String> {
        &self.build_args
    }

    /// The Dockerfile stage to build.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// `--label` values, by key.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// The layer cache, when enabled.
    pub fn cache(&self) -> Option<&CacheConfig> {
        self.cache.as_ref()
    }

    /// Registries spoken to over plain HTTP.
    pub fn insecure_registries(&self) -> &[String] {
        &self.insecure_registries
    }

    /// Registries whose TLS certificate is not verified.
    pub fn skip_tls_verify_registries(&self) -> &[String] {
        &self.skip_tls_verify_registries
    }

    /// Mirrors tried before Docker Hub for base images.
    pub fn registry_mirrors(&self) -> &[String] {
        &self.registry_mirrors
    }

    /// The snapshot mode, when set.
    pub fn snapshot_mode(&self) -> Option<SnapshotMode> {
        self.snapshot_mode
    }

    /// Whether kaniko strips timestamps for a reproducible image.
    pub fn reproducible(&self) -> bool {
        self.reproducible
    }

    /// How many times kaniko retries a failed push, when set.
    pub fn push_retry(&self) -> Option<u32> {
        self.push_retry
    }

    /// kaniko's log level, when set.
    pub fn verbosity(&self) -> Option<Verbosity> {
        self.verbosity
    }

    /// Whether the destination registry is reached without TLS verification: listed in
    /// [`insecure_registries`](Self::insecure_registries) or
    /// [`skip_tls_verify_registries`](Self::skip_tls_verify_registries).
    pub fn destination_is_insecure(&self) -> bool {
        let host = self.image.registry();
        self.insecure_registries
            .iter()
            .chain(&self.skip_tls_verify_registries)
            .any(|r| r == host)
    }

    /// A digest of what defines "the same build": the destinations, the context (for a local
    /// directory: its [content digest](Self::with_context_digest) once known, its path before),
    /// the Dockerfile, the build args, the target, the labels, the snapshot mode and
    /// reproducibility. Forcing, the
    /// namespace, the cache and registry transport settings, retries and verbosity do not change
    /// what is built, so they do not count.
    pub fn build_hash(&self) -> Digest {
        let mut destinations: Vec<String> = self.destinations().map(ToString::to_string).collect();
        destinations.sort();
        destinations.dedup();
        let mut fields: Vec<(&str, String)> = vec![
            ("schema", "kaniko-builder/build/v1".to_owned()),
            ("destinations", destinations.join(",")),
            ("context.kind", self.context.kind().to_owned()),
        ];
        match &self.context {
            ContextSource::LocalDir(_) if self.context_digest.is_some() => {
                let digest = self.context_digest.as_ref().map(ToString::to_string);
                fields.push(("context.digest", digest.unwrap_or_default()));
            }
            ContextSource::HostPath(p) | ContextSource::LocalDir(p) => {
                fields.push(("context.path", p.to_string_lossy().into_owned()));
            }
            ContextSource::Pvc { claim, sub_path } => {
                fields.push(("context.claim", claim.clone()));
                fields.push(("context.sub_path", sub_path.clone().unwrap_or_default()));
            }
            ContextSource::Git {
                url,
                reference,
                sub_path,
            } => {
                fields.push(("context.url", url.clone()));
                fields.push(("context.reference", reference.clone().unwrap_or_default()));
                fields.push(("context.sub_path", sub_path.clone().unwrap_or_default()));
            }
            ContextSource::Url(url) => fields.push(("context.url", url.clone())),
            ContextSource::Blob(digest) => fields.push(("context.digest", digest.to_string())),
        }
        fields.push(("dockerfile", self.dockerfile.clone()));
        for (k, v) in &self.build_args {
            fields.push(("build_arg", format!("{k}={v}")));
        }
        fields.push(("target", self.target.clone().unwrap_or_default()));
        for (k, v) in &self.labels {
            fields.push(("label", format!("{k}={v}")));
        }
        fields.push((
            "snapshot_mode",
            self.snapshot_mode
                .map(SnapshotMode::as_str)
                .unwrap_or_default()
                .to_owned(),
        ));
        fields.push(("reproducible", self.reproducible.to_string()));
        for platform in &self.platforms {
            fields.push(("platform", platform.to_string()));
        }
        if let Some(target) = &self.target_platform {
            fields.push(("target_platform", target.to_string()));
        }
        // Length-prefixed, so no two field lists encode alike.
        let mut canonical = Vec::new();
        for (name, value) in fields {
            canonical.extend_from_slice(format!("{}:{name}={}:", name.len(), value.len()).as_bytes());
            canonical.extend_from_slice(value.as_bytes());
            canonical.push(b'\n');
        }
        Digest::sha256(&canonical)
    }

    /// The sha256 of the normalised image reference, for finding a build's objects by label.
    pub fn image_hash(&self) -> Digest {
        Digest::sha256(self.image.to_string().as_bytes())
    }

    /// The deterministic Job name: `kb-<repository>-<tag>-<10 hex of the build hash>` (with the
    /// platform after the tag for one platform of a multi-platform build), a DNS-1123 label of at
    /// most 63 characters. The same build always gets the same name.
    pub fn job_name(&self) -> String {
        let tag = match (&self.target_platform, self.image.tag()) {
            (Some(p), Some(tag)) => Some(format!("{tag}-{}", p.slug())),
            (Some(p), None) => Some(p.slug()),
            (None, tag) => tag.map(str::to_owned),
        };
        names::job_name(self.image.repository(), tag.as_deref(), self.build_hash().hex())
    }

    /// A builder holding this configuration, to change it.
    pub fn into_builder(self) -> BuildConfigBuilder {
        BuildConfigBuilder {
            image: self.image,
            destinations: self.destinations,
            context: self.context,
            dockerfile: self.dockerfile,
            force: self.force,
            namespace: self.namespace,
            build_args: self.build_args,
            target: self.target,
            labels: self.labels,
            cache: self.cache,
            insecure_registries: self.insecure_registries,
            skip_tls_verify_registries: self.skip_tls_verify_registries,
            registry_mirrors: self.registry_mirrors,
            snapshot_mode: self.snapshot_mode,
            reproducible: self.reproducible,
            push_retry: self.push_retry,
            verbosity: self.verbosity,
            platforms: self.platforms,
        }
    }
}

#[cfg(test)]
mod tests;
