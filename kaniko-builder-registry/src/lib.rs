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
pub use settings::RegistrySettings;
