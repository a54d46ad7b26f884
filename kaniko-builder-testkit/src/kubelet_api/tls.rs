//! The endpoint's rustls configuration (ring provider, HTTP/1.1 only).

use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A server config serving `cert_pem` with `key_pem`; with `client_ca_pem`, clients must
/// present a certificate signed by one of its CAs.
pub(super) fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> anyhow::Result<rustls::ServerConfig> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parse the kubelet serving certificate PEM")?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate in the kubelet serving certificate PEM"
    );
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("parse the kubelet serving key PEM")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("ring supports the default TLS versions")?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots
                    .add(cert.context("parse the client CA PEM")?)
                    .context("add the client CA")?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .context("build the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("use the kubelet serving certificate and key")?;
    // Upgrades (exec) need HTTP/1.1; the API server speaks it to kubelets anyway.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
