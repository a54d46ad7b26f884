//! Credentials: docker `config.json`, credential helpers, and the registry token flow.

pub(crate) mod challenge;
mod cred_helper;
pub mod credentials;
pub mod docker_config;
pub(crate) mod token;

pub use credentials::Credentials;
pub use docker_config::{ConfigOrigin, DockerConfig};
