//! The original tool's configuration: the ConfigMap keys `DOCKER_FILENAME`, `DOCKER_IMAGENAME`,
//! `DOCKER_IMAGETAG` and `FORCE_BUILD`.
//!
//! ```
//! use std::collections::BTreeMap;
//! use kaniko_builder_core::config::SeedConfig;
//!
//! let data = BTreeMap::from([
//!     ("DOCKER_FILENAME".to_owned(), "example.dockerfile".to_owned()),
//!     ("DOCKER_IMAGENAME".to_owned(), "example".to_owned()),
//!     ("DOCKER_IMAGETAG".to_owned(), "v1.0.0".to_owned()),
//!     ("FORCE_BUILD".to_owned(), "Y".to_owned()),
//! ]);
//! let seed = SeedConfig::from_data(&data, Some("registry.local:5000"))?;
//! assert_eq!(seed.image.to_string(), "registry.local:5000/example:v1.0.0");
//! assert!(seed.force);
//! let config = seed.into_builder().build()?;
//! assert_eq!(config.dockerfile(), "example.dockerfile");
//!
//! let bad = BTreeMap::from([
//!     ("DOCKER_IMAGENAME".to_owned(), "example".to_owned()),
//!     ("DOCKER_IMAGETAG".to_owned(), "".to_owned()),
//! ]);
//! let err = SeedConfig::from_data(&bad, None).unwrap_err();
//! assert!(err.to_string().contains("DOCKER_IMAGETAG"), "{err}");
//! # Ok::<(), kaniko_builder_core::Error>(())
//! ```

use std::collections::BTreeMap;

use crate::config::{BuildConfig, BuildConfigBuilder, DEFAULT_DOCKERFILE};
use crate::error::Error;
use crate::image_ref::ImageRef;
use crate::platform::Platform;

/// The Dockerfile path, relative to the context. Optional: `Dockerfile`.
pub const DOCKER_FILENAME: &str = "DOCKER_FILENAME";
/// The image name without tag, e.g. `example` or `team/app`. Required.
pub const DOCKER_IMAGENAME: &str = "DOCKER_IMAGENAME";
/// The tag to build. Required.
pub const DOCKER_IMAGETAG: &str = "DOCKER_IMAGETAG";
/// `Y` to build even when the image exists. Optional: no.
pub const FORCE_BUILD: &str = "FORCE_BUILD";
/// Not in the original tool: the platforms of a multi-platform build, comma-separated
/// (`linux/amd64,linux/arm64`); absent or empty builds one image for the executor's platform.
pub const DOCKER_PLATFORMS: &str = "DOCKER_PLATFORMS";
/// Not a seed key: the full normalised destination, written for the init container and for people.
pub const KB_DESTINATION: &str = "KB_DESTINATION";
/// Not a seed key: the context kind (`hostpath`, `pvc`, `upload`, `git`, `url`).
pub const KB_CONTEXT_KIND: &str = "KB_CONTEXT_KIND";

/// The values a seed ConfigMap (or environment) holds, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SeedConfig {
    /// `DOCKER_IMAGENAME:DOCKER_IMAGETAG`, prefixed with the registry when one was given.
    pub image: ImageRef,
    /// `DOCKER_FILENAME`, or `Dockerfile`.
    pub dockerfile: String,
    /// `FORCE_BUILD`.
    pub force: bool,
    /// `DOCKER_PLATFORMS`.
    pub platforms: Vec<Platform>,
}

impl SeedConfig {
    /// Reads the seed keys through `lookup` (an absent key is `None`). The seed pushed to Docker
    /// Hub; `registry` (`host[:port]`) puts the image on another registry instead, in which case
    /// `DOCKER_IMAGENAME` must not name a registry itself.
    ///
    /// # Errors
    /// [`Error::InvalidSeedValue`] naming the key: `DOCKER_IMAGENAME` or `DOCKER_IMAGETAG` absent,
    /// empty or invalid, a `DOCKER_IMAGENAME` with a tag or digest, an invalid `DOCKER_FILENAME`, or
    /// a `FORCE_BUILD` other than `Y`/`y`/`yes`/`true`/`1`/`N`/`n`/`no`/`false`/`0`/empty.
    pub fn from_lookup<F>(mut lookup: F, registry: Option<&str>) -> Result<Self, Error>
    where
        F: FnMut(&str) -> Option<String>,
    {
        let fail = |key: &'static str, problem: String| Error::InvalidSeedValue { key, problem };
        let name = lookup(DOCKER_IMAGENAME).ok_or_else(|| fail(DOCKER_IMAGENAME, "is not set".to_owned()))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(fail(DOCKER_IMAGENAME, "is empty".to_owned()));
        }
        let last = name.rsplit('/').next().unwrap_or(name);
        if last.contains(':') || name.contains('@') {
            return Err(fail(
                DOCKER_IMAGENAME,
                format!("{name:?} must be a name without tag or digest; the tag goes in {DOCKER_IMAGETAG}"),
            ));
        }
        let tag = lookup(DOCKER_IMAGETAG).ok_or_else(|| fail(DOCKER_IMAGETAG, "is not set".to_owned()))?;
        let tag = tag.trim();
        if tag.is_empty() {
            return Err(fail(DOCKER_IMAGETAG, "is empty".to_owned()));
        }
        let full_name = match registry {
            Some(registry) => {
                let first = name.split('/').next().unwrap_or(name);
                if name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost")
                {
                    return Err(fail(
                        DOCKER_IMAGENAME,
                        format!("{name:?} names a registry, and registry {registry:?} was also given"),
                    ));
                }
                format!("{registry}/{name}")
            }
            None => name.to_owned(),
        };
        let base = ImageRef::parse(&full_name).map_err(|e| fail(DOCKER_IMAGENAME, e.to_string()))?;
        let image = base.with_tag(tag).map_err(|e| match e {
            Error::InvalidReference { problem, .. } => fail(DOCKER_IMAGETAG, problem.to_string()),
            other => fail(DOCKER_IMAGETAG, other.to_string()),
        })?;
        let dockerfile = match lookup(DOCKER_FILENAME).map(|s| s.trim().to_owned()) {
            None => DEFAULT_DOCKERFILE.to_owned(),
            Some(s) if s.is_empty() => DEFAULT_DOCKERFILE.to_owned(),
            Some(s) => s,
        };
        // Checked here so the error names the seed key, not the builder field.
        BuildConfig::builder(image.clone())
            .dockerfile(dockerfile.clone())
            .build()
            .map_err(|e| match e {
                Error::InvalidConfig { problem, .. } => fail(DOCKER_FILENAME, problem),
                other => fail(DOCKER_FILENAME, other.to_string()),
            })?;
        let force = match lookup(FORCE_BUILD) {
            None => false,
            Some(v) => parse_force_build(&v)?,
        };
        let platforms = match lookup(DOCKER_PLATFORMS) {
            None => Vec::new(),
            Some(v) => parse_platforms(&v)?,
        };
        Ok(Self {
            image,
            dockerfile,
            force,
            platforms,
        })
    }

    /// Reads the seed keys from a ConfigMap's `data`; see [`from_lookup`](Self::from_lookup).
    ///
    /// # Errors
    /// As [`from_lookup`](Self::from_lookup).
    pub fn from_data(data: &BTreeMap<String, String>, registry: Option<&str>) -> Result<Self, Error> {
        Self::from_lookup(|key| data.get(key).cloned(), registry)
    }

    /// A [`BuildConfigBuilder`] with the image, the Dockerfile and `force` set, for the rest to be
    /// added.
    pub fn into_builder(self) -> BuildConfigBuilder {
        BuildConfig::builder(self.image)
            .dockerfile(self.dockerfile)
            .force(self.force)
            .platforms(self.platforms)
    }

    /// The ConfigMap `data` describing `config`: the seed's four keys plus `KB_DESTINATION` and
    /// `KB_CONTEXT_KIND`. Reading it back with [`from_data`](Self::from_data) (no registry) gives
    /// the same image, Dockerfile and `force`.
    pub fn data_for(config: &BuildConfig) -> BTreeMap<String, String> {
        let image = config.image();
        let mut data = BTreeMap::from([
            (DOCKER_FILENAME.to_owned(), config.dockerfile().to_owned()),
            (DOCKER_IMAGENAME.to_owned(), image.name()),
            (
                DOCKER_IMAGETAG.to_owned(),
                image.tag().unwrap_or("latest").to_owned(),
            ),
            (
                FORCE_BUILD.to_owned(),
                if config.force() { "Y" } else { "N" }.to_owned(),
            ),
            (KB_DESTINATION.to_owned(), image.to_string()),
            (KB_CONTEXT_KIND.to_owned(), config.context().kind().to_owned()),
        ]);
        if !config.platforms().is_empty() {
            let list: Vec<String> = config.platforms().iter().map(ToString::to_string).collect();
            data.insert(DOCKER_PLATFORMS.to_owned(), list.join(","));
        }
        data
    }
}

impl From<SeedConfig> for BuildConfigBuilder {
    fn from(seed: SeedConfig) -> Self {
        seed.into_builder()
    }
}

/// Parses a `DOCKER_PLATFORMS` value: comma-separated platforms, blanks ignored.
///
/// # Errors
/// [`Error::InvalidSeedValue`] for `DOCKER_PLATFORMS`, naming the bad entry or a duplicate.
pub fn parse_platforms(value: &str) -> Result<Vec<Platform>, Error> {
    let mut platforms: Vec<Platform> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let p: Platform = entry.parse().map_err(|e: Error| Error::InvalidSeedValue {
            key: DOCKER_PLATFORMS,
            problem: match e {
                Error::InvalidConfig { problem, .. } => problem,
                other => other.to_string(),
            },
        })?;
        if platforms.contains(&p) {
            return Err(Error::InvalidSeedValue {
                key: DOCKER_PLATFORMS,
                problem: format!("{p} is listed twice"),
            });
        }
        platforms.push(p);
    }
    Ok(platforms)
}

/// Parses a `FORCE_BUILD` value: `Y`, `y`, `yes`, `true` or `1` force a build; `N`, `n`, `no`,
/// `false`, `0` or empty do not. Surrounding whitespace is ignored.
///
/// # Errors
/// [`Error::InvalidSeedValue`] for `FORCE_BUILD` with any other value.
pub fn parse_force_build(value: &str) -> Result<bool, Error> {
    match value.trim() {
        "Y" | "y" | "yes" | "true" | "1" => Ok(true),
        "N" | "n" | "no" | "false" | "0" | "" => Ok(false),
        other => Err(Error::InvalidSeedValue {
            key: FORCE_BUILD,
            problem: format!("{other:?} is not one of Y, y, yes, true, 1, N, n, no, false, 0 or empty"),
        }),
    }
}
