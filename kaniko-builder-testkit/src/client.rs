//! HTTP clients that trust the test CA, built on ring (never aws-lc-rs).

use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// A rustls client config on the ring provider trusting exactly the certificates in `ca_pem`
/// (none: an empty root store, fine for plain-HTTP use).
pub fn rustls_client_config(ca_pem: Option<&str>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots
                .add(cert.context("parse CA PEM")?)
                .context("add CA to root store")?;
        }
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("ring supports the default TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(config)
}

/// A reqwest client trusting `ca_pem` (see [`rustls_client_config`]), no proxies, no redirects.
pub fn reqwest_client(ca_pem: Option<&str>) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls(rustls_client_config(ca_pem)?)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("build reqwest client")
}
