//! Domain types shared by the kaniko-builder crates: image references, digests and the registry's
//! answer to "does this tag exist?". This crate does no IO.
//!
//! ```
//! use kaniko_builder_core::{Digest, ImageRef};
//!
//! let image: ImageRef = "registry.local:5000/team/app:v1".parse()?;
//! assert_eq!(image.registry(), "registry.local:5000");
//! assert_eq!(image.repository(), "team/app");
//!
//! let digest = Digest::sha256(b"manifest bytes");
//! let pinned = image.with_digest(digest.clone());
//! assert_eq!(pinned.manifest_reference(), digest.to_string());
//! # Ok::<(), kaniko_builder_core::Error>(())
//! ```

pub mod config;
pub mod digest;
pub mod error;
pub mod flow;
pub mod image_ref;
pub mod media_types;
pub mod platform;
pub mod probe;

pub use config::{
    BuildConfig, BuildConfigBuilder, CacheConfig, ContextSource, SeedConfig, SnapshotMode, Verbosity,
};
pub use digest::{Digest, DigestAlgorithm};
pub use error::{DigestProblem, Error, ReferenceProblem, Result};
pub use image_ref::ImageRef;
pub use platform::Platform;
pub use probe::{Manifest, Probe};
