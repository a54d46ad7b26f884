//! A `kube::Client` whose TLS never depends on a process-level rustls `CryptoProvider`.
//!
//! kube's own `Client::try_from(config)` builds its TLS with `rustls::ClientConfig::builder()`,
//! which takes the process-wide default provider: when none is installed it installs one from
//! rustls' crate features (a side effect on the embedding program), and when the final binary's
//! dependency graph enables both of rustls' `ring` and `aws-lc-rs` features (another dependency
//! may do so) and the program installed none, it panics with "Could not automatically determine
//! the process-level CryptoProvider". [`client`] passes the `ring` provider explicitly instead,
//! so an embedding program may install any provider, or none.
//!
//! Supported from the kubeconfig: the cluster URL, its CA (data or file, or the system roots
//! when none is given), `tls-server-name`, client certificates (data or files), tokens, token
//! files, basic auth and exec/auth-provider tokens (kube's own auth layer), impersonation
//! headers and kube's timeouts. Not supported (an error, never a silent fallback):
//! `insecure-skip-tls-verify`, proxies, and client certificates returned by an exec plugin; use
//! `kube::Client::try_from` for those, after installing a provider.

use std::sync::Arc;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use secrecy::ExposeSecret as _;
use tower::{BoxError, ServiceBuilder};

/// Why a client cannot be built from a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No configuration could be found (kubeconfig or in-cluster).
    #[error("no Kubernetes configuration found")]
    Infer(#[source] kube::config::InferConfigError),
    /// The configuration asks for something this client does not do.
    #[error("unsupported Kubernetes client configuration: {0}")]
    Unsupported(&'static str),
    /// A certificate, key or file of the configuration cannot be used.
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    /// kube refused the authentication or header settings.
    #[error("invalid Kubernetes client configuration")]
    Config(#[source] kube::Error),
}

/// Builds a client for `config` with the `ring` provider passed explicitly (see the module docs).
///
/// # Errors
/// [`ClientError`] naming what cannot be used.
pub fn client(config: kube::Config) -> Result<kube::Client, ClientError> {
    if config.accept_invalid_certs {
        return Err(ClientError::Unsupported("insecure-skip-tls-verify"));
    }
    if config.proxy_url.is_some() {
        return Err(ClientError::Unsupported("a proxy (HTTPS_PROXY or proxy-url)"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &config.root_cert {
        Some(ders) => {
            for der in ders {
                roots
                    .add(CertificateDer::from(der.clone()))
                    .map_err(|e| ClientError::Tls(format!("cluster CA certificate: {e}")))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(ClientError::Tls(
                    "no cluster CA given and no usable system root certificate".to_owned(),
                ));
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let tls = match identity(&config.auth_info)? {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| ClientError::Tls(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = ServerName::try_from(name.clone())
            .map_err(|e| ClientError::Tls(format!("tls-server-name {name:?}: {e}")))?;
        https = https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = https.enable_http1().wrap_connector(http);
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);

    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(ClientError::Config)?)
        .layer(config.extra_headers_layer().map_err(ClientError::Config)?)
        .map_err(BoxError::from)
        .service(hyper);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// [`client`] for the configuration kube infers: `$KUBECONFIG`, `~/.kube/config`, then the
/// in-cluster service account.
///
/// # Errors
/// [`ClientError::Infer`] when there is none; otherwise as [`client`].
pub async fn infer() -> Result<kube::Client, ClientError> {
    client(kube::Config::infer().await.map_err(ClientError::Infer)?)
}

/// The client certificate chain and key, from data (base64 PEM) or files.
fn identity(
    info: &kube::config::AuthInfo,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, ClientError> {
    let cert = pem_bytes(
        "client-certificate",
        info.client_certificate_data.as_deref(),
        info.client_certificate.as_deref(),
    )?;
    let key = pem_bytes(
        "client-key",
        info.client_key_data.as_ref().map(|s| s.expose_secret()),
        info.client_key.as_deref(),
    )?;
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(&cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ClientError::Tls(format!("client certificate: {e}")))?;
            if chain.is_empty() {
                return Err(ClientError::Tls(
                    "client certificate: no certificate in the PEM".to_owned(),
                ));
            }
            // The message never quotes the key.
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|_| ClientError::Tls("client key: not a PEM private key".to_owned()))?;
            Ok(Some((chain, key)))
        }
        _ => Err(ClientError::Tls(
            "a client certificate needs both the certificate and its key".to_owned(),
        )),
    }
}

fn pem_bytes(what: &str, data: Option<&str>, file: Option<&str>) -> Result<Option<Vec<u8>>, ClientError> {
    use base64::Engine as _;
    if let Some(data) = data {
        return base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map(Some)
            .map_err(|_| ClientError::Tls(format!("{what}-data is not base64")));
    }
    match file {
        Some(path) => std::fs::read(path)
            .map(Some)
            .map_err(|e| ClientError::Tls(format!("{what} {path}: {e}"))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn building_needs_and_installs_no_process_provider() {
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
        let mut config = kube::Config::new("https://127.0.0.1:1".parse().expect("url"));
        config.root_cert = Some(Vec::new());
        let c = client(config.clone()).expect("client");
        // Nothing listens there: an error, not a panic about a missing provider.
        assert!(c.apiserver_version().await.is_err());
        assert!(
            rustls::crypto::CryptoProvider::get_default().is_none(),
            "nothing installed behind the program's back"
        );
        config.accept_invalid_certs = true;
        assert!(matches!(client(config), Err(ClientError::Unsupported(_))));
    }
}
