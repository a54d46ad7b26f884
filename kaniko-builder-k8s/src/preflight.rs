//! Preflight: do the executor and init images of [`JobOptions`] resolve in their registries?
//!
//! A build Pod whose image is missing (a tag never published, a mirror not yet filled) only shows
//! as `ErrImagePull`/`ImagePullBackOff` once the Job runs. [`check_images`] asks the registries
//! first, with the same [`RegistryClient`] (credentials, TLS and plain-HTTP settings) the caller
//! probes destinations with, and reports per image; [`require_images`] turns the first problem
//! into an [`Error`] naming the option (`executor_image` or `init_image`) and the reference.
//!
//! The client must be able to read both images: a registry that needs credentials needs them in
//! the client's docker config, as the cluster needs them in an `imagePullSecrets` entry. Nodes
//! may still pull through a registry mirror of their own; this checks the references as written.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use kaniko_builder_k8s::manifest::JobOptions;
//! use kaniko_builder_k8s::preflight;
//! use kaniko_builder_registry::RegistryClient;
//!
//! let options = JobOptions::default()
//!     .executor_image("registry.local:5000/mirror/kaniko:v1.28.5-debug")
//!     .init_image("registry.local:5000/mirror/crane/debug:v0.22.1");
//! let client = RegistryClient::builder().insecure_registry("registry.local:5000").build()?;
//! let images = preflight::require_images(&options, &client).await?;
//! // Pin both by digest from now on.
//! let pinned = options
//!     .executor_image(images.executor.pinned().to_string())
//!     .init_image(images.init.pinned().to_string());
//! # let _ = pinned;
//! # Ok(()) }
//! ```

use std::fmt;

use kaniko_builder_core::{Digest, ImageRef, Probe};
use kaniko_builder_registry::RegistryClient;

use crate::error::{Error, Result};
use crate::manifest::{BUILDER_CONTAINER, INIT_CONTAINER, JobOptions};

/// Which image of [`JobOptions`] a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ImageField {
    /// [`JobOptions::executor_image`], the `image-builder` container's image.
    ExecutorImage,
    /// [`JobOptions::init_image`], the `kaniko-init` container's image.
    InitImage,
}

impl ImageField {
    /// The option's name, as its setter is named: `executor_image` or `init_image`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExecutorImage => "executor_image",
            Self::InitImage => "init_image",
        }
    }

    /// The container that runs the image: `image-builder` or `kaniko-init`.
    pub fn container(self) -> &'static str {
        match self {
            Self::ExecutorImage => BUILDER_CONTAINER,
            Self::InitImage => INIT_CONTAINER,
        }
    }
}

impl fmt::Display for ImageField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the registry said about one image.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImageStatus {
    /// The manifest (or index) exists, with this digest.
    Resolved {
        /// The digest the reference resolves to: an index's for a multi-platform image.
        digest: Digest,
    },
    /// The registry answered 404 for the tag or the repository.
    Missing,
    /// The registry could not be asked, or refused: credentials, TLS, network, 429, 5xx. Never
    /// taken as missing.
    Failed(kaniko_builder_registry::Error),
}

impl ImageStatus {
    /// The digest, when the image resolved.
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            Self::Resolved { digest } => Some(digest),
            Self::Missing | Self::Failed(_) => None,
        }
    }

    /// Whether the image resolved.
    pub fn is_resolved(&self) -> bool {
        matches!(self, Self::Resolved { .. })
    }
}

/// The check of one image.
#[derive(Debug)]
#[non_exhaustive]
pub struct ImageCheck {
    /// Which option.
    pub field: ImageField,
    /// The reference checked, normalised (`docker.io/library/…` for Docker Hub short names).
    pub reference: ImageRef,
    /// The registry's answer.
    pub status: ImageStatus,
}

impl ImageCheck {
    /// The check as a result: the resolved image, or an [`Error`] naming the field and reference.
    ///
    /// # Errors
    /// [`Error::ImageMissing`] or [`Error::ImageCheckFailed`].
    pub fn into_result(self) -> Result<ResolvedImage> {
        match self.status {
            ImageStatus::Resolved { digest } => Ok(ResolvedImage {
                field: self.field,
                reference: self.reference,
                digest,
            }),
            ImageStatus::Missing => Err(Error::ImageMissing {
                field: self.field,
                reference: self.reference.to_string(),
            }),
            ImageStatus::Failed(source) => Err(Error::ImageCheckFailed {
                field: self.field,
                reference: self.reference.to_string(),
                source: Box::new(source),
            }),
        }
    }
}

/// The checks of both images, from [`check_images`].
#[derive(Debug)]
#[non_exhaustive]
pub struct PreflightReport {
    /// [`JobOptions::executor_image`].
    pub executor: ImageCheck,
    /// [`JobOptions::init_image`].
    pub init: ImageCheck,
}

impl PreflightReport {
    /// Both checks, the executor's first.
    pub fn checks(&self) -> [&ImageCheck; 2] {
        [&self.executor, &self.init]
    }

    /// Whether both images resolved.
    pub fn is_ok(&self) -> bool {
        self.checks().iter().all(|c| c.status.is_resolved())
    }

    /// Both images resolved, or the first problem (the executor's before the init image's).
    ///
    /// # Errors
    /// [`Error::ImageMissing`] or [`Error::ImageCheckFailed`], naming the field and reference.
    pub fn into_result(self) -> Result<ResolvedImages> {
        Ok(ResolvedImages {
            executor: self.executor.into_result()?,
            init: self.init.into_result()?,
        })
    }
}

/// An image that resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolvedImage {
    /// Which option.
    pub field: ImageField,
    /// The reference checked, normalised.
    pub reference: ImageRef,
    /// Its digest.
    pub digest: Digest,
}

impl ResolvedImage {
    /// The reference pinned to the digest it resolved to, for [`JobOptions::executor_image`] or
    /// [`JobOptions::init_image`]: the cluster then pulls exactly what was checked.
    pub fn pinned(&self) -> ImageRef {
        self.reference.with_digest(self.digest.clone())
    }
}

/// Both images, resolved: from [`require_images`] or [`PreflightReport::into_result`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolvedImages {
    /// [`JobOptions::executor_image`].
    pub executor: ResolvedImage,
    /// [`JobOptions::init_image`].
    pub init: ResolvedImage,
}

/// Asks the registries whether the executor image and the init image of `options` exist, both at
/// once, and reports each: resolved with its digest, missing (404), or the registry's error. A
/// registry error is never reported as missing.
///
/// # Errors
/// [`Error::InvalidImageReference`] naming the field when an image is not a valid reference;
/// nothing is asked then.
pub async fn check_images(options: &JobOptions, client: &RegistryClient) -> Result<PreflightReport> {
    let executor = parse(ImageField::ExecutorImage, &options.executor_image)?;
    let init = parse(ImageField::InitImage, &options.init_image)?;
    let (executor_probe, init_probe) = futures::join!(client.probe(&executor), client.probe(&init));
    Ok(PreflightReport {
        executor: check(ImageField::ExecutorImage, executor, executor_probe),
        init: check(ImageField::InitImage, init, init_probe),
    })
}

/// [`check_images`], then [`PreflightReport::into_result`]: both images with their digests, or
/// an error naming the first image that is missing or could not be checked.
///
/// # Errors
/// [`Error::InvalidImageReference`], [`Error::ImageMissing`] or [`Error::ImageCheckFailed`], each
/// with the field (`executor_image` or `init_image`) and the reference.
pub async fn require_images(options: &JobOptions, client: &RegistryClient) -> Result<ResolvedImages> {
    check_images(options, client).await?.into_result()
}

fn parse(field: ImageField, image: &str) -> Result<ImageRef> {
    image
        .parse::<ImageRef>()
        .map_err(|source| Error::InvalidImageReference {
            field,
            reference: image.to_owned(),
            source,
        })
}

fn check(
    field: ImageField,
    reference: ImageRef,
    probe: kaniko_builder_registry::Result<Probe>,
) -> ImageCheck {
    let status = match probe {
        Ok(probe) => match probe.manifest() {
            Some(manifest) => ImageStatus::Resolved {
                digest: manifest.digest.clone(),
            },
            None => ImageStatus::Missing,
        },
        Err(e) => ImageStatus::Failed(e),
    };
    match &status {
        ImageStatus::Resolved { digest } => {
            tracing::debug!(%field, image = %reference, %digest, "preflight: image resolves");
        }
        ImageStatus::Missing => tracing::warn!(%field, image = %reference, "preflight: image missing"),
        ImageStatus::Failed(e) => {
            tracing::warn!(%field, image = %reference, error = %e, "preflight: image not checked");
        }
    }
    ImageCheck {
        field,
        reference,
        status,
    }
}
