//! rustls for this crate and `kaniko-builder-k8s`: which crypto provider, and the system's trust
//! roots loaded only when a connection needs them.
//!
//! The provider is passed explicitly to every configuration, never installed process-wide: the
//! host program's process default when it installed one, otherwise the one this crate's cargo
//! features name (see [`crypto_provider`]).
//!
//! The system roots (the CA bundle file and every file of the certificate directory) cost tens
//! of milliseconds to read and parse, more than a whole probe of a local registry. They are read
//! once per process, on tokio's blocking pool ([`load_system_roots`]), and only when a
//! connection needs them: never for plain HTTP or `skip_tls_verify`, and for a registry with CA
//! certificates of its own only when its chain does not end at one of them.

use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

/// Why no TLS configuration can be made without a provider.
pub const NO_PROVIDER: &str = "no rustls crypto provider: enable the `ring` or `aws-lc-rs` feature of \
                               kaniko-builder, or install a process default provider";

/// The provider for a new TLS configuration: the process default when the host program
/// installed one (`CryptoProvider::install_default`); otherwise `aws-lc-rs` when that feature
/// is enabled (also when `ring` is too: `ring` is the default feature, so enabling `aws-lc-rs`
/// is the explicit choice); otherwise `ring`. `None` with neither feature and no process
/// default. Nothing is ever installed process-wide.
pub fn crypto_provider() -> Option<Arc<CryptoProvider>> {
    if let Some(p) = CryptoProvider::get_default() {
        return Some(Arc::clone(p));
    }
    static FROM_FEATURES: OnceLock<Option<Arc<CryptoProvider>>> = OnceLock::new();
    FROM_FEATURES
        .get_or_init(|| features_provider().map(Arc::new))
        .clone()
}

#[cfg(feature = "aws-lc-rs")]
fn features_provider() -> Option<CryptoProvider> {
    Some(rustls::crypto::aws_lc_rs::default_provider())
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn features_provider() -> Option<CryptoProvider> {
    Some(rustls::crypto::ring::default_provider())
}

#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
fn features_provider() -> Option<CryptoProvider> {
    None
}

/// The system's trust roots, parsed; set once per process.
static SYSTEM_ROOTS: tokio::sync::OnceCell<Arc<RootCertStore>> = tokio::sync::OnceCell::const_new();

/// Reads the system's trust roots on tokio's blocking pool, once per process; later calls
/// return at once. Connections made before this finished and that need the roots fail with an
/// error that [`needs_system_roots`] recognises (for the registry client, which then calls this
/// and retries), unless their verifier was made to load them itself.
pub async fn load_system_roots() {
    SYSTEM_ROOTS
        .get_or_init(|| async {
            tokio::task::spawn_blocking(read_system_roots)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "reading the system trust roots failed");
                    Arc::new(RootCertStore::empty())
                })
        })
        .await;
}

/// Whether this process has read the system roots (through this crate).
pub fn system_roots_loaded() -> bool {
    SYSTEM_ROOTS.initialized()
}

fn read_system_roots() -> Arc<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    if !found.errors.is_empty() {
        tracing::debug!(
            errors = found.errors.len(),
            "some system certificates could not be loaded"
        );
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "read the system trust roots");
    Arc::new(roots)
}

/// The roots now, read here (blocking) when no one did yet.
fn system_roots_blocking() -> Arc<RootCertStore> {
    if let Some(roots) = SYSTEM_ROOTS.get() {
        return Arc::clone(roots);
    }
    let roots = read_system_roots();
    // Err: loaded meanwhile by another caller; both copies are the same.
    let _ = SYSTEM_ROOTS.set(Arc::clone(&roots));
    roots
}

/// What a verifier does when it needs the system roots and they are not loaded yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingRoots {
    /// Fail the handshake with the error [`needs_system_roots`] recognises: the caller loads
    /// them with [`load_system_roots`] and tries again.
    Fail,
    /// Read them in the handshake, blocking (once per process): for callers that cannot retry
    /// and did not call [`load_system_roots`] first.
    ReadNow,
}

/// Whether `err` (or an error in its chain) is a handshake that needed the system roots before
/// they were loaded ([`MissingRoots::Fail`]).
pub fn needs_system_roots(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(rustls::Error::Other(OtherError(inner))) = e.downcast_ref::<rustls::Error>()
            && inner.downcast_ref::<RootsNotLoaded>().is_some()
        {
            return true;
        }
        // io::Error::source() skips the error it wraps, so step into it explicitly.
        source = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

#[derive(Debug, thiserror::Error)]
#[error("the system trust roots are not loaded yet")]
struct RootsNotLoaded;

/// A verifier trusting the system roots and `extra` CA certificates, reading the system roots
/// only when the extra CAs alone do not verify a chain (then as `missing` says).
pub fn roots_verifier(
    provider: Arc<CryptoProvider>,
    extra: Vec<CertificateDer<'static>>,
    missing: MissingRoots,
) -> Result<Arc<dyn ServerCertVerifier>, String> {
    Ok(Arc::new(RootsVerifier::new(provider, extra, missing)?))
}

/// Trusts the system roots plus extra CA certificates, reading the system roots only when the
/// extra CAs alone do not verify the chain. Adding trust anchors only adds valid paths, so a
/// chain the extra CAs verify is one the full set verifies too: the answer is the full set's.
#[derive(Debug)]
struct RootsVerifier {
    provider: Arc<CryptoProvider>,
    extra: Vec<CertificateDer<'static>>,
    /// The extra CAs alone, tried first; `None` without extra CAs.
    extra_only: Option<Arc<WebPkiServerVerifier>>,
    /// The system roots plus the extra CAs, made on first need.
    full: OnceLock<Arc<WebPkiServerVerifier>>,
    missing: MissingRoots,
}

impl RootsVerifier {
    fn new(
        provider: Arc<CryptoProvider>,
        extra: Vec<CertificateDer<'static>>,
        missing: MissingRoots,
    ) -> Result<Self, String> {
        let extra_only = if extra.is_empty() {
            None
        } else {
            let mut roots = RootCertStore::empty();
            for (i, cert) in extra.iter().enumerate() {
                roots
                    .add(cert.clone())
                    .map_err(|e| format!("CA certificate #{} cannot be used: {e}", i + 1))?;
            }
            Some(webpki_verifier(roots, &provider).map_err(|e| e.to_string())?)
        };
        Ok(Self {
            provider,
            extra,
            extra_only,
            full: OnceLock::new(),
            missing,
        })
    }

    fn full(&self) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
        if let Some(v) = self.full.get() {
            return Ok(Arc::clone(v));
        }
        let system = match (SYSTEM_ROOTS.get(), self.missing) {
            (Some(roots), _) => Arc::clone(roots),
            (None, MissingRoots::ReadNow) => system_roots_blocking(),
            (None, MissingRoots::Fail) => {
                return Err(rustls::Error::Other(OtherError(Arc::new(RootsNotLoaded))));
            }
        };
        let mut roots = RootCertStore::clone(&system);
        // Each was added to a store in `new` already.
        let (_added, _ignored) = roots.add_parsable_certificates(self.extra.iter().cloned());
        if roots.is_empty() {
            return Err(rustls::Error::General(
                "no trust roots: no CA certificate given and no usable system certificate".to_owned(),
            ));
        }
        let v = webpki_verifier(roots, &self.provider)?;
        Ok(Arc::clone(self.full.get_or_init(|| v)))
    }
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| rustls::Error::General(format!("certificate verifier: {e}")))
}

impl ServerCertVerifier for RootsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(v) = &self.extra_only
            && let Ok(ok) = v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            return Ok(ok);
        }
        self.full()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Builds the client TLS config. `Err` describes an unusable CA PEM, or a missing provider.
pub(crate) fn client_config(skip_verify: bool, ca_pems: &[String]) -> Result<rustls::ClientConfig, String> {
    let provider = crypto_provider().ok_or_else(|| NO_PROVIDER.to_owned())?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous();
    let verifier: Arc<dyn ServerCertVerifier> = if skip_verify {
        accept_any_cert(&provider)
    } else {
        let mut extra = Vec::new();
        for (i, pem) in ca_pems.iter().enumerate() {
            let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("CA certificate #{} is not valid PEM: {e}", i + 1))?;
            if certs.is_empty() {
                return Err(format!("CA certificate #{} holds no PEM certificate", i + 1));
            }
            extra.extend(certs);
        }
        roots_verifier(provider, extra, MissingRoots::Fail)?
    };
    let mut config = builder
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A verifier for registries configured with `skip_tls_verify` (and kubeconfig
/// `insecure-skip-tls-verify`): the handshake signatures are still checked with `provider`'s
/// algorithms, the certificate chain is not.
pub fn accept_any_cert(provider: &CryptoProvider) -> Arc<dyn ServerCertVerifier> {
    Arc::new(AcceptAnyCert(provider.signature_verification_algorithms))
}

#[derive(Debug)]
struct AcceptAnyCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_follows_the_features() {
        let provider = format!(
            "{:?}",
            features_provider().expect("a provider feature").key_provider
        );
        let expected = if cfg!(feature = "aws-lc-rs") {
            "AwsLcRs"
        } else {
            "Ring"
        };
        assert_eq!(provider, expected);
    }

    #[test]
    fn bad_ca_pem_is_an_error_not_a_silent_fallback() {
        let err = client_config(false, &["not a pem".to_owned()]).expect_err("no certificate");
        assert!(err.contains("CA certificate #1"), "{err}");
        let err = client_config(
            false,
            &["-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".to_owned()],
        )
        .expect_err("garbage");
        assert!(err.contains("#1"), "{err}");
        assert!(client_config(false, &[]).is_ok());
        assert!(client_config(true, &[]).is_ok());
    }
}
