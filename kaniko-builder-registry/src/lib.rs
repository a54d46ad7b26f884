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
//! TLS uses rustls with the `ring` provider passed explicitly, so embedding programs may install
//! any process-wide provider, or none.

pub mod auth;
mod blob;
mod client;
pub mod error;
mod flow;
mod probe;
pub mod retry;
pub mod settings;
mod tls;

pub use auth::{ConfigOrigin, Credentials, DockerConfig};
pub use client::{RegistryClient, RegistryClientBuilder};
pub use error::{Error, Result, TransportKind};
pub use kaniko_builder_core::{Digest, ImageRef, Manifest, Probe};
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
