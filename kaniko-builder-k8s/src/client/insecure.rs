//! kubeconfig `insecure-skip-tls-verify`: the API server's certificate chain is not checked.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;

/// Says, once per client, that `server`'s certificate is not verified.
pub(super) fn warn(server: &http::Uri) {
    tracing::warn!(
        %server,
        "insecure-skip-tls-verify: the API server's certificate is not verified; anyone on the \
         path can read and change the traffic"
    );
}

/// Accepts any certificate chain; the handshake signatures are still checked with `provider`'s
/// algorithms (the registry crate's verifier for `skip_tls_verify`).
pub(super) fn verifier(provider: &CryptoProvider) -> Arc<dyn ServerCertVerifier> {
    kaniko_builder_registry::__tls::accept_any_cert(provider)
}
