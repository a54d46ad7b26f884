//! From an `ImageBuild`'s spec to the library's [`BuildConfig`], with errors that name the field.

use std::fmt;

use kaniko_builder::core::config::ContextSource;
use kaniko_builder::{BuildConfig, Digest, ImageRef, Platform};
use kube::ResourceExt as _;

use crate::crd::{BuildContext, ImageBuild};

/// Why a spec cannot be built: the field (as `spec.<path>`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct InvalidSpec {
    /// The field at fault, e.g. `spec.image`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl InvalidSpec {
    fn new(field: impl Into<String>, problem: impl fmt::Display) -> Self {
        Self {
            field: field.into(),
            problem: problem.to_string(),
        }
    }
}

/// The build an `ImageBuild` asks for, in its own namespace.
///
/// # Errors
/// [`InvalidSpec`] naming the first invalid field: the image reference, the context (a URL
/// scheme, a claim name, a digest), a platform, or what the library's
/// [`BuildConfigBuilder::build`](kaniko_builder::BuildConfigBuilder::build) refuses.
pub fn build_config(build: &ImageBuild) -> Result<BuildConfig, InvalidSpec> {
    let spec = &build.spec;
    let image: ImageRef = spec
        .image
        .parse()
        .map_err(|e| InvalidSpec::new("spec.image", e))?;
    let mut b = BuildConfig::builder(image)
        .namespace(build.namespace().unwrap_or_default())
        .context(context(&spec.context)?)
        .force(spec.force);
    if let Some(dockerfile) = &spec.dockerfile {
        b = b.dockerfile(dockerfile.clone());
    }
    for (k, v) in &spec.build_args {
        b = b.build_arg(k.clone(), v.clone());
    }
    if let Some(target) = &spec.target {
        b = b.target(target.clone());
    }
    for (k, v) in &spec.labels {
        b = b.label(k.clone(), v.clone());
    }
    let platforms = spec
        .platforms
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.parse::<Platform>()
                .map_err(|e| InvalidSpec::new(format!("spec.platforms[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    b = b.platforms(platforms);
    b.build().map_err(|e| match e.culprit() {
        Some(field) => InvalidSpec::new(spec_field(field), e),
        None => InvalidSpec::new("spec", e),
    })
}

/// The spec's name for a field of the library's builder.
fn spec_field(builder_field: &str) -> String {
    match builder_field {
        "build_arg" | "build_args" => "spec.buildArgs".to_owned(),
        "label" | "labels" => "spec.labels".to_owned(),
        other => format!("spec.{other}"),
    }
}

fn context(context: &BuildContext) -> Result<ContextSource, InvalidSpec> {
    Ok(match context {
        BuildContext::Git(git) => ContextSource::Git {
            url: git.url.clone(),
            reference: git.reference.clone(),
            sub_path: git.sub_path.clone(),
        },
        BuildContext::Url(url) => ContextSource::Url(url.clone()),
        BuildContext::Pvc(pvc) => ContextSource::Pvc {
            claim: pvc.claim_name.clone(),
            sub_path: pvc.sub_path.clone(),
        },
        BuildContext::Blob(blob) => ContextSource::Blob(
            blob.digest
                .parse::<Digest>()
                .map_err(|e| InvalidSpec::new("spec.context.blob.digest", e))?,
        ),
    })
}

#[cfg(test)]
mod tests;
