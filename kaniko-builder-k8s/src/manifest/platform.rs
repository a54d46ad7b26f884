//! One platform of a multi-platform build: what a per-platform Job adds, and the whole request
//! rendered as one Job per platform.

use std::collections::BTreeMap;

use kaniko_builder_core::config::names;
use kaniko_builder_core::{BuildConfig, Platform};

use super::options::JobOptions;
use super::{BuildManifests, render};
use crate::error::{Error, Result};

/// A whole multi-platform request is not one Job; a platform's slug must be a label value.
pub(super) fn check_platform(config: &BuildConfig) -> Result<()> {
    if let Some(p) = config.target_platform() {
        let slug = p.slug();
        if !names::is_label_value(&slug) {
            return Err(Error::Config(kaniko_builder_core::Error::InvalidConfig {
                field: "platform",
                problem: format!(
                    "{p} gives the label value {slug:?}: at most 63 characters, alphanumeric at both ends"
                ),
            }));
        }
    } else if !config.platforms().is_empty() {
        let list: Vec<String> = config.platforms().iter().map(ToString::to_string).collect();
        return Err(Error::Config(kaniko_builder_core::Error::InvalidConfig {
            field: "platforms",
            problem: format!(
                "a multi-platform build ({}) is one Job per platform: render each config.for_platform(p), \
                 or all of them with render_platforms",
                list.join(", ")
            ),
        }));
    }
    Ok(())
}

/// Renders the Job of each platform of a multi-platform request, in the order of
/// [`BuildConfig::platforms`]: [`render`] of [`config.for_platform(p)`](BuildConfig::for_platform)
/// for each, exactly what the runner applies for it. The index under the tag is not a Kubernetes
/// object: the orchestrator pushes it once every platform is built. For plans, and, with
/// [`platforms_to_yaml`], for YAML to apply.
///
/// ```
/// use kaniko_builder_core::{BuildConfig, ImageRef, Platform};
/// use kaniko_builder_k8s::manifest::{self, JobOptions};
///
/// let config = BuildConfig::builder("registry.local:5000/team/app:v1".parse::<ImageRef>()?)
///     .platforms(["linux/amd64".parse::<Platform>()?, "linux/arm64".parse()?])
///     .build()?;
/// assert!(manifest::render(&config, &JobOptions::default(), None).is_err());
/// let jobs = manifest::render_platforms(&config, &JobOptions::default(), None)?;
/// let (arm64, manifests) = &jobs[1];
/// assert_eq!(manifests.job_name(), config.for_platform(arm64).job_name());
/// let yaml = manifest::platforms_to_yaml(&jobs)?;
/// assert_eq!(yaml.matches("\nkind: Job\n").count(), 2);
/// # Ok::<(), kaniko_builder_k8s::Error>(())
/// ```
///
/// # Errors
/// As [`render`]; [`Error::Config`] naming the `platforms` field when `config` requests no
/// platforms (render it with [`render`]).
pub fn render_platforms(
    config: &BuildConfig,
    options: &JobOptions,
    docker_config_json: Option<&[u8]>,
) -> Result<Vec<(Platform, BuildManifests)>> {
    if config.platforms().is_empty() {
        return Err(Error::Config(kaniko_builder_core::Error::InvalidConfig {
            field: "platforms",
            problem: "no platforms requested: a single-platform build is one Job, see render".to_owned(),
        }));
    }
    config
        .platforms()
        .iter()
        .map(|p| {
            Ok((
                p.clone(),
                render(&config.for_platform(p), options, docker_config_json)?,
            ))
        })
        .collect()
}

/// The objects of every platform's Job ([`render_platforms`]) as one multi-document YAML that
/// `kubectl apply -f -` accepts: in platform order, each object in apply order, and an object
/// identical to one already written (the Namespace, ServiceAccounts, Role, RoleBinding and
/// Secret the platforms share; the seed's ConfigMap in seed-compatible mode) only once.
///
/// # Errors
/// [`Error::Serialize`] if serialisation fails.
pub fn platforms_to_yaml(rendered: &[(Platform, BuildManifests)]) -> Result<String> {
    let mut written: Vec<serde_json::Value> = Vec::new();
    let mut out = String::new();
    for object in rendered.iter().flat_map(|(_, m)| m.objects()) {
        let json = object.to_json()?;
        if written.contains(&json) {
            continue;
        }
        written.push(json);
        if !out.is_empty() {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(&object).map_err(|e| Error::Serialize(Box::new(e)))?);
    }
    Ok(out)
}

/// The node selector: the options', and for one platform of a multi-platform build the
/// platform's ([`JobOptions::platform_node_selector`], else `kubernetes.io/os` and
/// `kubernetes.io/arch`) over it, replacing its `kubernetes.io/os` and `kubernetes.io/arch`.
pub(super) fn node_selector(config: &BuildConfig, options: &JobOptions) -> BTreeMap<String, String> {
    let mut selector = options.node_selector.clone();
    if let Some(p) = config.target_platform() {
        selector.remove(LABEL_OS);
        selector.remove(LABEL_ARCH);
        match options.platform_node_selectors.get(p) {
            Some(own) => selector.extend(own.clone()),
            None => selector.extend([
                (LABEL_OS.to_owned(), p.os().to_owned()),
                (LABEL_ARCH.to_owned(), p.architecture().to_owned()),
            ]),
        }
    }
    selector
}

/// The kubelet's node label for the operating system.
const LABEL_OS: &str = "kubernetes.io/os";
/// The kubelet's node label for the architecture.
const LABEL_ARCH: &str = "kubernetes.io/arch";
