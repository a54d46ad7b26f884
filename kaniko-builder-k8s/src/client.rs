//! A `kube::Client` whose TLS never depends on a process-level rustls `CryptoProvider`.
//!
//! kube's own `Client::try_from(config)` builds its TLS with `rustls::ClientConfig::builder()`,
//! which takes the process-wide default provider: when none is installed it installs one from
//! rustls' crate features (a side effect on the embedding program), and when the final binary's
//! dependency graph enables both of rustls' `ring` and `aws-lc-rs` features (another dependency
//! may do so) and the program installed none, it panics with "Could not automatically determine
//! the process-level CryptoProvider". [`client`] passes its provider explicitly instead (the
//! program's process default when it installed one, else the one this crate's `ring` or
//! `aws-lc-rs` feature names; `aws-lc-rs` when both are on), so an embedding program may install
//! any provider, or none, and this crate never installs one.
//!
//! Supported from the kubeconfig: the cluster URL, its CA (data or file, or the system roots
//! when none is given), `tls-server-name`, client certificates (data or files), tokens, token
//! files, basic auth and exec/auth-provider tokens (kube's own auth layer), impersonation
//! headers, kube's timeouts, `proxy-url` and `insecure-skip-tls-verify` (below). Not supported
//! (an error, never a silent fallback): client certificates returned by an exec plugin, and
//! proxies that are not `http://`; use `kube::Client::try_from` for those, after installing a
//! provider.
//!
//! # Proxies
//!
//! [`client`] and [`from_config`] connect exactly as `config.proxy_url` says: through that
//! proxy, or directly when it is `None`. [`infer_config`] (and so [`infer`], which the
//! library's `Build::run` uses by default) puts there, in this order:
//! 1. the kubeconfig cluster's `proxy-url`. `NO_PROXY` does not apply to it (as with kubectl).
//! 2. else the proxy the variables name, with the rules reqwest (and so this library's registry
//!    client) and curl apply: `HTTPS_PROXY`/`https_proxy` for an `https://` server,
//!    `HTTP_PROXY`/`http_proxy` for an `http://` one, `ALL_PROXY`/`all_proxy` when that one is
//!    unset; none for a server whose host `NO_PROXY`/`no_proxy` lists (comma-separated host
//!    names, which also cover their subdomains, IP addresses, CIDR ranges, or `*`). The
//!    upper-case name is read first; in a CGI program (`REQUEST_METHOD` set) no variable
//!    counts. Loopback addresses are not special (unlike Go's rule): list `127.0.0.1` or
//!    `localhost` in `NO_PROXY` for a local cluster. This also holds in a Pod (in-cluster
//!    configuration), as with client-go: list the API server's address in `NO_PROXY` there if
//!    the proxy cannot reach it.
//!
//! kube's own `Config::infer` and `Config::from_kubeconfig` copy `HTTPS_PROXY` into `proxy_url`
//! when the cluster has no `proxy-url`, without `NO_PROXY` (kube 5 checks `NO_PROXY` only with
//! its `http-proxy` feature, and against the proxy's address) and also for an `http://` server.
//! A configuration from them used with [`client`] keeps that; [`infer_config`] takes a
//! `proxy_url` equal to `HTTPS_PROXY` as the variable's and applies rule 2 instead. To connect
//! directly whatever the environment says, set `proxy_url` to `None` and call [`client`].
//!
//! Only `http://` proxies are supported (a URL without scheme counts as `http://`): the
//! connection to the API server is tunnelled with `CONNECT`, and TLS to the server runs inside
//! the tunnel. Credentials in the proxy URL (`http://user:password@proxy:3128`,
//! percent-encoded) are sent as `Proxy-Authorization: Basic`, and are never logged.
//!
//! # `insecure-skip-tls-verify`
//!
//! Honoured, with a `tracing` warning each time a client is built: the server's certificate
//! chain is not checked (the handshake's signatures still are), so anyone on the path can read
//! and change the traffic, tokens and registry credentials included. [`Build::run`] also sends a
//! warning event when it builds its client from such a kubeconfig. Prefer the cluster's CA in
//! `certificate-authority-data`.
//!
//! [`Build::run`]: https://docs.rs/kaniko-builder/latest/kaniko_builder/struct.Build.html#method.run

mod insecure;
mod proxy;

use std::sync::Arc;

use hyper_util::rt::TokioExecutor;
use kaniko_builder_registry::__tls as tls;
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

/// Builds a client for `config` with its crypto provider passed explicitly (see the module docs),
/// through `config.proxy_url` when it is set, directly otherwise (no proxy variable is read).
///
/// # Errors
/// [`ClientError`] naming what cannot be used.
pub fn client(config: kube::Config) -> Result<kube::Client, ClientError> {
    let provider = tls::crypto_provider().ok_or_else(|| ClientError::Tls(tls::NO_PROVIDER.to_owned()))?;
    let mut roots = rustls::RootCertStore::empty();
    // No cluster CA: the system roots, read when the first connection needs them (see
    // `system_roots`), or none at all when no chain is checked.
    if let Some(ders) = &config.root_cert {
        for der in ders {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| ClientError::Tls(format!("cluster CA certificate: {e}")))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let builder = if config.accept_invalid_certs {
        insecure::warn(&config.cluster_url);
        let verifier = insecure::verifier(builder.crypto_provider());
        builder.dangerous().with_custom_certificate_verifier(verifier)
    } else if config.root_cert.is_none() {
        builder
            .dangerous()
            .with_custom_certificate_verifier(system_roots(provider)?)
    } else {
        builder.with_root_certificates(roots)
    };
    let tls = match identity(&config.auth_info)? {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| ClientError::Tls(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };

    let http = proxy::connector(&config)?;
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
/// in-cluster service account; with the proxy of [`infer_config`].
///
/// # Errors
/// [`ClientError::Infer`] when there is none; otherwise as [`client`].
pub async fn infer() -> Result<kube::Client, ClientError> {
    from_config(infer_config().await?).await
}

/// The configuration kube infers (`$KUBECONFIG`, `~/.kube/config`, then the in-cluster service
/// account), with `proxy_url` set as the [module docs](self#proxies) say: the kubeconfig's
/// `proxy-url`, else the one the proxy variables name for the server, else `None`.
///
/// # Errors
/// [`ClientError::Infer`] when there is none; [`ClientError::Unsupported`] for a proxy that is
/// not `http://`.
pub async fn infer_config() -> Result<kube::Config, ClientError> {
    let mut config = kube::Config::infer().await.map_err(ClientError::Infer)?;
    proxy::resolve(&mut config, &|name| std::env::var(name).ok())?;
    Ok(config)
}

/// [`client`] for `config` (its `proxy_url` as given), reading the system roots off the async
/// runtime first when the configuration needs them (no cluster CA).
///
/// # Errors
/// As [`client`].
pub async fn from_config(config: kube::Config) -> Result<kube::Client, ClientError> {
    if config.root_cert.is_none() && !config.accept_invalid_certs {
        tls::load_system_roots().await;
    }
    client(config)
}

/// A verifier trusting the system's roots, for a configuration without a cluster CA. They are
/// read once per process (shared with the registry client); [`infer`] and [`from_config`] read
/// them off the async runtime first, otherwise the first handshake reads them.
fn system_roots(
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::client::danger::ServerCertVerifier>, ClientError> {
    tls::roots_verifier(provider, Vec::new(), tls::MissingRoots::ReadNow).map_err(ClientError::Tls)
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
        config.proxy_url = Some("socks5://127.0.0.1:1".parse().expect("url"));
        assert!(matches!(client(config), Err(ClientError::Unsupported(_))));
    }
}
