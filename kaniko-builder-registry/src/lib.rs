//! The registry side of kaniko-builder: credentials from a docker `config.json` (and credential
//! helpers) and manifest probes that never mistake an error for "absent".
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use kaniko_builder_registry::{DockerConfig, Probe, RegistryClient};
//!
//! let client = RegistryClient::builder()
//!     .docker_config(DockerConfig::load_default()?)
//!     .build()?;
//! match client.probe(&"ghcr.io/acme/app:v1".parse()?).await? {
//!     Probe::Exists(m) => println!("exists as {}", m.digest),
//!     Probe::Absent => println!("absent: would build"),
//!     _ => {}
//! }
//! # Ok(()) }
//! ```
//!
//! # Blob uploads
//!
//! [`RegistryClient::push_blob_stream`] sends a blob as it is produced (a build context being
//! packed, a file), in constant memory, with no timeout on the whole transfer but a stall
//! timeout ([`RegistryClientBuilder::upload_stall_timeout`], [`Error::Stalled`]);
//! [`RegistryClient::push_blob`] sends a small blob already in memory in one request.
//!
//! # Image indexes
//!
//! [`RegistryClient::index_platforms`] lists the platforms of an OCI index or Docker manifest
//! list; [`RegistryClient::push_index`] pushes an OCI index under a tag over images already
//! pushed by digest, each entry's platform read from the image's config.
//!
//! # TLS and cargo features
//!
//! TLS is rustls, with the crypto provider passed explicitly to every configuration: the
//! program's process-wide default when it installed one, otherwise the one a feature names.
//! The library never installs a process-wide provider.
//!
//! - `ring` (default): rustls' `ring` provider.
//! - `aws-lc-rs`: rustls' `aws-lc-rs` provider, rustls' own default. Turn off the default
//!   features with it (`default-features = false, features = ["aws-lc-rs"]`) so a program that
//!   uses rustls' defaults has one provider compiled in. When both features are enabled,
//!   `aws-lc-rs` is used. With neither, the program must install a process default before it
//!   builds a client (else [`RegistryClientBuilder::build`] returns an error).
//!
//! The system's trust roots are read once per process, off the async runtime, and only when a
//! connection needs them (not for plain HTTP, nor when a registry's own CA verifies it).

pub mod auth;
mod blob;
mod client;
pub mod error;
mod flow;
mod index;
mod probe;
mod proxy;
pub mod retry;
mod secret_config;
pub mod settings;
mod tls;
mod upload;

/// rustls plumbing shared with `kaniko-builder-k8s` (the provider choice, the lazily read system
/// roots). Not part of the API.
#[doc(hidden)]
pub mod __tls {
    pub use crate::tls::{
        MissingRoots, NO_PROVIDER, accept_any_cert, crypto_provider, load_system_roots, needs_system_roots,
        roots_verifier, system_roots_loaded,
    };
}

pub use auth::{ConfigOrigin, Credentials, DockerConfig};
pub use client::{RegistryClient, RegistryClientBuilder};
pub use error::{Error, Result, StallSide, TransportKind};
pub use kaniko_builder_core::{Digest, ImageRef, Manifest, Platform, Probe};
pub use retry::RetryPolicy;

/// Entry points for `fuzz/` (cargo-fuzz) into parsers that are private. Not part of the API.
#[doc(hidden)]
pub mod __fuzz {
    /// Parses a `WWW-Authenticate` value; `Ok` tells whether it was a Bearer challenge.
    ///
    /// # Errors
    /// What is wrong with the header.
    pub fn parse_challenge(header: &str) -> Result<bool, String> {
        let challenge = crate::auth::challenge::parse(header)?;
        if let crate::auth::challenge::Challenge::Bearer { realm, .. } = &challenge {
            assert!(realm.starts_with("http://") || realm.starts_with("https://"));
        }
        Ok(matches!(
            challenge,
            crate::auth::challenge::Challenge::Bearer { .. }
        ))
    }
}
pub use settings::RegistrySettings;
