//! The registry's answer to "does this image exist?".

use serde::Serialize;

use crate::digest::Digest;

/// What a registry said about a manifest. Errors (auth, rate limits, outages) are never folded
/// into [`Probe::Absent`]: they are the `Err` side of whatever returned this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Probe {
    /// The manifest exists.
    Exists(Manifest),
    /// The registry answered 404 for the manifest or its repository.
    Absent,
}

impl Probe {
    /// The manifest, when it exists.
    pub fn manifest(&self) -> Option<&Manifest> {
        match self {
            Self::Exists(m) => Some(m),
            Self::Absent => None,
        }
    }

    /// Whether the manifest exists.
    pub fn exists(&self) -> bool {
        matches!(self, Self::Exists(_))
    }
}

/// A manifest found in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Manifest {
    /// Its digest (`Docker-Content-Digest`, or computed from the body).
    pub digest: Digest,
    /// Its media type (`Content-Type`), e.g. an OCI index for a multi-platform image.
    pub media_type: String,
    /// Its size in bytes, when the registry said.
    pub size: Option<u64>,
}

impl Manifest {
    /// A manifest description.
    pub fn new(digest: Digest, media_type: impl Into<String>, size: Option<u64>) -> Self {
        Self {
            digest,
            media_type: media_type.into(),
            size,
        }
    }

    /// Whether it is an index / manifest list (a multi-platform image).
    pub fn is_index(&self) -> bool {
        matches!(
            self.media_type.as_str(),
            crate::media_types::OCI_INDEX | crate::media_types::DOCKER_MANIFEST_LIST
        )
    }
}
