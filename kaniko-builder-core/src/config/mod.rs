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
        }
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

    /// A digest of what defines "the same build": the destinations, the context, the Dockerfile, the
    /// build args, the target, the labels, the snapshot mode and reproducibility. Forcing, the
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

    /// The deterministic Job name: `kb-<repository>-<tag>-<10 hex of the build hash>`, a DNS-1123
    /// label of at most 63 characters. The same build always gets the same name.
    pub fn job_name(&self) -> String {
        names::job_name(self.image.repository(), self.image.tag(), self.build_hash().hex())
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
        }
    }
}

#[cfg(test)]
mod tests;
