//! The builder of [`BuildConfig`] and its validation.

use std::collections::BTreeMap;

use super::context::check_relative;
use super::{BuildConfig, CacheConfig, ContextSource, SnapshotMode, Verbosity, names};
use crate::error::Error;
use crate::image_ref::ImageRef;
use crate::platform::Platform;

/// Builds a [`BuildConfig`]. Setters never fail; [`build`](Self::build) reports the first problem,
/// naming the field.
#[derive(Debug, Clone)]
#[must_use]
pub struct BuildConfigBuilder {
    pub(super) image: ImageRef,
    pub(super) destinations: Vec<ImageRef>,
    pub(super) context: ContextSource,
    pub(super) dockerfile: String,
    pub(super) force: bool,
    pub(super) namespace: String,
    pub(super) build_args: BTreeMap<String, String>,
    pub(super) target: Option<String>,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) cache: Option<CacheConfig>,
    pub(super) insecure_registries: Vec<String>,
    pub(super) skip_tls_verify_registries: Vec<String>,
    pub(super) registry_mirrors: Vec<String>,
    pub(super) snapshot_mode: Option<SnapshotMode>,
    pub(super) reproducible: bool,
    pub(super) push_retry: Option<u32>,
    pub(super) verbosity: Option<Verbosity>,
    pub(super) platforms: Vec<Platform>,
}

impl BuildConfigBuilder {
    /// Adds one more destination (`--destination`). Default: only the image itself.
    pub fn destination(mut self, image: ImageRef) -> Self {
        self.destinations.push(image);
        self
    }

    /// Adds more destinations (`--destination`, one each). Default: only the image itself.
    pub fn destinations(mut self, images: impl IntoIterator<Item = ImageRef>) -> Self {
        self.destinations.extend(images);
        self
    }

    /// Where the context comes from. Default: the seed's `hostPath` `/workspace`.
    pub fn context(mut self, context: ContextSource) -> Self {
        self.context = context;
        self
    }

    /// The Dockerfile, relative to the context, without `..`. Default: `Dockerfile`.
    pub fn dockerfile(mut self, path: impl Into<String>) -> Self {
        self.dockerfile = path.into();
        self
    }

    /// Build even when the image exists (the seed's `FORCE_BUILD=Y`). Default: false.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Adds a platform: the build becomes a multi-platform one, each platform built by its own
    /// Job on a node of that platform, in parallel, and one image index pushed under the tag.
    /// Default: none (one image for the executor's own platform).
    pub fn platform(mut self, platform: Platform) -> Self {
        self.platforms.push(platform);
        self
    }

    /// Adds platforms (see [`platform`](Self::platform)).
    pub fn platforms(mut self, platforms: impl IntoIterator<Item = Platform>) -> Self {
        self.platforms.extend(platforms);
        self
    }

    /// The namespace, a DNS-1123 label. Default: `kaniko`, the seed's.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets a `--build-arg`; the last value for a name wins. Default: none. Build args end up in
    /// the Pod spec and the image history: never pass credentials this way.
    pub fn build_arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.build_args.insert(name.into(), value.into());
        self
    }

    /// The stage to build (`--target`). Default: the last stage.
    pub fn target(mut self, stage: impl Into<String>) -> Self {
        self.target = Some(stage.into());
        self
    }

    /// Sets an image `--label`; the last value for a key wins. Default: none.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Enables kaniko's layer cache. Default: disabled.
    pub fn cache(mut self, cache: CacheConfig) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Adds a registry (`host[:port]`) spoken to over plain HTTP. Default: none.
    pub fn insecure_registry(mut self, host: impl Into<String>) -> Self {
        self.insecure_registries.push(host.into());
        self
    }

    /// Adds a registry (`host[:port]`) whose TLS certificate is not verified. Default: none.
    pub fn skip_tls_verify_registry(mut self, host: impl Into<String>) -> Self {
        self.skip_tls_verify_registries.push(host.into());
        self
    }

    /// Adds a mirror (`host[:port][/path]`) tried for Docker Hub base images. Default: none.
    pub fn registry_mirror(mut self, mirror: impl Into<String>) -> Self {
        self.registry_mirrors.push(mirror.into());
        self
    }

    /// The snapshot mode. Default: unset, kaniko's own (`full`).
    pub fn snapshot_mode(mut self, mode: SnapshotMode) -> Self {
        self.snapshot_mode = Some(mode);
        self
    }

    /// Strip timestamps for a reproducible image (`--reproducible`). Default: false.
    pub fn reproducible(mut self, reproducible: bool) -> Self {
        self.reproducible = reproducible;
        self
    }

    /// How many times to retry a failed push (`--push-retry`). Default: unset, kaniko's own (0).
    pub fn push_retry(mut self, retries: u32) -> Self {
        self.push_retry = Some(retries);
        self
    }

    /// kaniko's log level (`--verbosity`). Default: unset, kaniko's own (`info`).
    pub fn verbosity(mut self, verbosity: Verbosity) -> Self {
        self.verbosity = Some(verbosity);
        self
    }

    /// Validates and returns the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first field that is wrong: a destination pinned by digest
    /// (kaniko pushes tags), a Dockerfile path that is absolute or climbs out with `..`, a namespace
    /// that is not a DNS-1123 label, a context, build arg, target, label, cache or registry that
    /// kaniko would reject.
    pub fn build(mut self) -> Result<BuildConfig, Error> {
        let fail = |field: &'static str, problem: String| Error::InvalidConfig { field, problem };
        if self.image.digest().is_some() || self.image.tag().is_none() {
            return Err(fail(
                "image",
                format!("{} must name a tag, not a digest", self.image),
            ));
        }
        if let Some(d) = self
            .destinations
            .iter()
            .find(|d| d.digest().is_some() || d.tag().is_none())
        {
            return Err(fail("destinations", format!("{d} must name a tag, not a digest")));
        }
        let mut seen = vec![self.image.clone()];
        self.destinations.retain(|d| {
            let new = !seen.contains(d);
            seen.push(d.clone());
            new
        });
        self.context.validate().map_err(|p| fail("context", p))?;
        for (i, p) in self.platforms.iter().enumerate() {
            if self.platforms[..i].contains(p) {
                return Err(fail("platforms", format!("{p} is listed twice")));
            }
        }
        check_relative(&self.dockerfile)
            .map_err(|p| fail("dockerfile", format!("{:?} {p}", self.dockerfile)))?;
        if !names::is_dns1123_label(&self.namespace) {
            return Err(fail(
                "namespace",
                format!(
                    "{:?} is not a DNS-1123 label (lowercase, digits, `-`, at most 63)",
                    self.namespace
                ),
            ));
        }
        for (name, value) in &self.build_args {
            if !is_identifier(name) {
                return Err(fail(
                    "build_arg",
                    format!("name {name:?} must match [A-Za-z_][A-Za-z0-9_]*"),
                ));
            }
            if value.contains('\0') {
                return Err(fail(
                    "build_arg",
                    format!("value of {name:?} contains a NUL byte"),
                ));
            }
        }
        if let Some(t) = &self.target
            && !is_stage_name(t)
        {
            return Err(fail(
                "target",
                format!("{t:?} must match [A-Za-z][A-Za-z0-9_.-]*"),
            ));
        }
        for (key, value) in &self.labels {
            if key.is_empty() || key.contains('=') || key.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(fail(
                    "label",
                    format!("key {key:?} must be non-empty, without `=` or spaces"),
                ));
            }
            if value.contains('\0') {
                return Err(fail("label", format!("value of {key:?} contains a NUL byte")));
            }
        }
        if let Some(cache) = &self.cache {
            if let Some(repo) = &cache.repo {
                check_repository(repo).map_err(|p| fail("cache", format!("repo {repo:?} {p}")))?;
            }
            if let Some(ttl) = cache.ttl
                && ttl.as_secs() == 0
            {
                return Err(fail("cache", "ttl must be at least one second".to_owned()));
            }
        }
        for (field, hosts, allow_path) in [
            ("insecure_registry", &self.insecure_registries, false),
            (
                "skip_tls_verify_registry",
                &self.skip_tls_verify_registries,
                false,
            ),
            ("registry_mirror", &self.registry_mirrors, true),
        ] {
            for host in hosts {
                check_registry(host, allow_path).map_err(|p| fail(field, format!("{host:?} {p}")))?;
            }
        }
        Ok(BuildConfig {
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
            insecure_registries: dedup(self.insecure_registries),
            skip_tls_verify_registries: dedup(self.skip_tls_verify_registries),
            registry_mirrors: dedup(self.registry_mirrors),
            snapshot_mode: self.snapshot_mode,
            reproducible: self.reproducible,
            push_retry: self.push_retry,
            verbosity: self.verbosity,
            platforms: self.platforms,
            context_digest: None,
            target_platform: None,
        })
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
    v
}

/// `host[:port]`, or with `allow_path`, `host[:port]/path`.
fn check_registry(s: &str, allow_path: bool) -> Result<(), &'static str> {
    if s.contains("://") {
        return Err("must not have a scheme");
    }
    let (host, path) = match s.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if path.is_some() && !allow_path {
        return Err("must be host[:port]");
    }
    if let Some(p) = path
        && (p.is_empty() || p.split('/').any(str::is_empty) || p.chars().any(|c| c.is_whitespace()))
    {
        return Err("has an invalid path");
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err("has an invalid port");
    }
    let label = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.split('.').all(label) {
        Ok(())
    } else {
        Err("is not a valid host[:port]")
    }
}

/// A repository name without tag or digest, as `--cache-repo` takes it.
fn check_repository(s: &str) -> Result<(), String> {
    let parsed = ImageRef::parse(s).map_err(|e| e.to_string())?;
    let last = s.rsplit('/').next().unwrap_or(s);
    if parsed.digest().is_some() || last.contains(':') {
        return Err("must be a repository without tag or digest".to_owned());
    }
    Ok(())
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_stage_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}
