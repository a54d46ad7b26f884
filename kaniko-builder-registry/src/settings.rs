//! Per-registry connection settings: plain HTTP, TLS verification, extra CAs, timeouts, retries.

use std::time::Duration;

use crate::proxy::ProxyChoice;
use crate::retry::RetryPolicy;

/// How to talk to one registry. `Default` is HTTPS with the system's roots, a 30 s request
/// timeout, [`RetryPolicy::default`] and the proxy the environment names (see [`Self::proxy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    pub(crate) plain_http: bool,
    pub(crate) skip_tls_verify: bool,
    pub(crate) ca_pems: Vec<String>,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) proxy: ProxyChoice,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            plain_http: false,
            skip_tls_verify: false,
            ca_pems: Vec::new(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            proxy: ProxyChoice::default(),
        }
    }
}

impl RegistrySettings {
    /// Speak plain HTTP to this registry (an "insecure registry"). Default `false`.
    #[must_use]
    pub fn plain_http(mut self, yes: bool) -> Self {
        self.plain_http = yes;
        self
    }

    /// Use HTTPS but accept any certificate. Default `false`. Prefer [`Self::ca_pem`].
    #[must_use]
    pub fn skip_tls_verify(mut self, yes: bool) -> Self {
        self.skip_tls_verify = yes;
        self
    }

    /// Trust these PEM certificates in addition to the system roots. Checked when the client
    /// is built: a bad PEM is an error then, never silently ignored.
    #[must_use]
    pub fn ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_pems.push(pem.into());
        self
    }

    /// Timeout for one request, from send to the end of the headers. Default 30 s.
    ///
    /// Blob uploads' body requests ([`RegistryClient::push_blob_stream`]) have no timeout of
    /// their own: they take as long as the body does and fail when nothing moves for the
    /// [stall timeout](crate::RegistryClientBuilder::upload_stall_timeout) instead.
    ///
    /// [`RegistryClient::push_blob_stream`]: crate::RegistryClient::push_blob_stream
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Timeout for establishing a connection. Default 10 s.
    #[must_use]
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Retries of transient failures. Default [`RetryPolicy::default`].
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sends every request for this registry, its token service included, through the proxy
    /// at `url` (`http://[user:password@]host:port`, or `https://`; credentials percent-encoded
    /// and never logged), whatever the proxy variables say. Checked when the client is built.
    ///
    /// Default: the proxy variables, read when the client is built, with curl's and reqwest's
    /// rules: `HTTPS_PROXY`/`https_proxy` for HTTPS registries, `HTTP_PROXY`/`http_proxy` for
    /// plain-HTTP ones, `ALL_PROXY`/`all_proxy` for both when those are unset, and no proxy for
    /// the hosts `NO_PROXY`/`no_proxy` lists (names with their subdomains, IP addresses, CIDR
    /// ranges, or `*`); none count in a CGI program (`REQUEST_METHOD` set). Each request's own
    /// host decides, so a token service elsewhere may be proxied differently.
    #[must_use]
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = ProxyChoice::Url(url.into());
        self
    }

    /// Connects to this registry directly, whatever the proxy variables say (see
    /// [`Self::proxy`] for the default). The later of the two calls counts.
    #[must_use]
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxyChoice::Direct;
        self
    }

    /// Whether requests go over plain HTTP.
    pub fn is_plain_http(&self) -> bool {
        self.plain_http
    }

    pub(crate) fn scheme(&self) -> &'static str {
        if self.plain_http { "http" } else { "https" }
    }

    /// Whether every connection checks the server's chain against the system roots alone (HTTPS,
    /// verified, no CA of its own): they are read before the first request.
    pub(crate) fn needs_system_roots(&self) -> bool {
        !self.plain_http && !self.skip_tls_verify && self.ca_pems.is_empty()
    }

    /// Settings that need a TLS configuration of their own.
    pub(crate) fn tls_key(&self) -> (bool, &[String]) {
        (self.skip_tls_verify, &self.ca_pems)
    }
}
