//! Test support for kaniko-builder (never published).
//!
//! Real servers where they exist on the machine (a CNCF distribution registry process) and small
//! in-process ones where they don't (a token issuer, stub HTTP servers for protocol corner cases).

mod client;
pub mod cluster;
mod examples;
mod image;
mod jwt;
mod kubelet_api;
pub mod ledger;
mod logs;
pub mod node;
mod process;
mod proxy;
mod push;
mod registry;
mod registry_config;
pub mod sandbox;
pub mod scan;
mod server;
mod stub;
mod time;
mod tls;
mod token_issuer;
mod token_kubeconfig;
pub mod trace;

pub use client::{reqwest_client, rustls_client_config};
pub use cluster::{TestCluster, TestClusterBuilder};
pub use examples::example_binary;
pub use image::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, ImageSpec, LayerCompression, MANIFEST_ACCEPT, ManifestFormat,
    OCI_INDEX, OCI_MANIFEST, sha256_digest,
};
pub use kubelet_api::KubeletApi;
pub use logs::{CapturedLogs, capture_trace_logs};
pub use node::{Fault, NodeOptions, StandInNode, Target, push_busybox_base};
pub use process::LoggedProcess;
pub use proxy::{PROXY_VARS, TestProxy, clear_proxy_env};
pub use push::{PushedIndex, PushedManifest};
pub use registry::{RegistryAuth, TestRegistry};
pub use stub::{StubRequest, StubServer};
pub use tls::TestCa;
pub use token_issuer::TokenIssuer;
pub use trace::init_tracing;

/// Installs rustls' ring provider as the process default.
///
/// reqwest is built without a provider of its own (no aws-lc-rs in the tree), so every client
/// that does not bring a preconfigured TLS config needs this first. Idempotent: a provider that
/// is already installed is kept.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want anyway.
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        tracing::trace!("rustls crypto provider already installed");
    }
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The listener is dropped before returning, so another process may in theory take the port
/// first; good enough for tests on one machine.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port on 127.0.0.1")
        .local_addr()
        .expect("a bound listener has a local address")
        .port()
}
