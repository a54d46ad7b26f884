//! [`RegistryClient`]: pooled HTTP connections, per-registry settings, credentials and tokens.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kaniko_builder_core::ImageRef;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use secrecy::ExposeSecret as _;
use tokio::sync::OnceCell;

use crate::auth::challenge::{self, Challenge};
use crate::auth::token::{self, Token};
use crate::auth::{Credentials, DockerConfig};
use crate::error::{Error, Result, TransportKind};
use crate::retry::parse_retry_after;
use crate::settings::RegistrySettings;
use crate::tls;

const HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
const DEFAULT_CONCURRENCY: usize = 32;
/// Default [`RegistryClientBuilder::upload_stall_timeout`].
pub(crate) const DEFAULT_UPLOAD_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Cap on bodies we read (manifests, token answers): distribution's own manifest limit.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;

/// A client for the registry side of a build: "does this tag exist?", with the credentials a
/// docker `config.json` holds. Cheap to clone (an `Arc` inside); `Send + Sync`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use kaniko_builder_registry::{RegistryClient, RegistrySettings};
/// let client = RegistryClient::builder()
///     .registry("registry.local:5000", RegistrySettings::default().plain_http(true))
///     .build()?;
/// let probe = client.probe(&"registry.local:5000/team/app:v1".parse()?).await?;
/// println!("exists: {}", probe.exists());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RegistryClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    docker_config: DockerConfig,
    defaults: RegistrySettings,
    default_http: reqwest::Client,
    per_registry: HashMap<String, (RegistrySettings, reqwest::Client)>,
    pub(crate) concurrency: usize,
    pub(crate) upload: UploadOptions,
    states: Mutex<HashMap<String, Arc<RegistryState>>>,
}

/// How blobs are uploaded ([`RegistryClient::push_blob_stream`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UploadOptions {
    /// `None`: one streamed `PATCH`; `Some(n)`: `PATCH`es of `n` bytes with `Content-Range`.
    pub(crate) chunk_size: Option<usize>,
    /// No progress for this long fails the upload.
    pub(crate) stall_timeout: Duration,
}

/// What we know about one registry: its credentials, how it authenticates, its tokens.
pub(crate) struct RegistryState {
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) settings: RegistrySettings,
    pub(crate) http: reqwest::Client,
    credentials: OnceCell<Credentials>,
    pinged: OnceCell<()>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Token>>>>>,
}

impl RegistryState {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.settings.scheme(), self.host)
    }

    fn challenge(&self) -> Option<Challenge> {
        self.challenge
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn token_slot(&self, scope: &str) -> Arc<tokio::sync::Mutex<Option<Token>>> {
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(tokens.entry(scope.to_owned()).or_default())
    }
}

/// Builds a [`RegistryClient`]. Setters never fail; [`Self::build`] reports the first problem.
#[derive(Debug, Default)]
pub struct RegistryClientBuilder {
    docker_config: Option<DockerConfig>,
    defaults: RegistrySettings,
    per_registry: Vec<(String, RegistrySettings)>,
    concurrency: Option<usize>,
    user_agent: Option<String>,
    upload_chunk_size: Option<u64>,
    upload_stall_timeout: Option<Duration>,
}

impl RegistryClientBuilder {
    /// Credentials to use. Default: [`DockerConfig::load_default`] (`$DOCKER_CONFIG`, then
    /// `~/.docker/config.json`; none found means anonymous).
    #[must_use]
    pub fn docker_config(mut self, config: DockerConfig) -> Self {
        self.docker_config = Some(config);
        self
    }

    /// Settings for every registry without settings of its own. Default [`RegistrySettings::default`].
    #[must_use]
    pub fn default_settings(mut self, settings: RegistrySettings) -> Self {
        self.defaults = settings;
        self
    }

    /// Settings for one registry (`host[:port]`, or `docker.io`).
    #[must_use]
    pub fn registry(mut self, registry: impl Into<String>, settings: RegistrySettings) -> Self {
        self.per_registry.push((canonical(&registry.into()), settings));
        self
    }

    /// Shorthand for a registry spoken to over plain HTTP, with the default settings otherwise.
    #[must_use]
    pub fn insecure_registry(self, registry: impl Into<String>) -> Self {
        let settings = self.defaults.clone().plain_http(true);
        self.registry(registry, settings)
    }

    /// How many probes [`RegistryClient::probe_many`] runs at once. Default 32.
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }

    /// The `User-Agent` header. Default `kaniko-builder/<version>`.
    #[must_use]
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = Some(ua.into());
        self
    }

    /// How [`RegistryClient::push_blob_stream`] sends a blob. Default `None`: one `PATCH` whose
    /// body is streamed as it is produced (chunked transfer encoding, no `Content-Length`), as
    /// crane and kaniko do; the client holds no more than the producer's current item and the
    /// HTTP connection's write buffer (a few hundred KiB).
    ///
    /// `Some(n)`: the distribution spec's chunked upload, one `PATCH` per `n` bytes with
    /// `Content-Range` and `Content-Length`, for registries or proxies that cap the size of a
    /// request. Each chunk is collected before it is sent (its length must be known first), so
    /// the client holds up to `n` bytes plus the producer's current item; a registry that asks
    /// for larger chunks (`OCI-Chunk-Min-Length`, honoured up to 64 MiB) raises that to its
    /// minimum. `Some(0)` is an error at [`build`](Self::build).
    #[must_use]
    pub fn upload_chunk_size(mut self, bytes: Option<u64>) -> Self {
        self.upload_chunk_size = bytes;
        self
    }

    /// How long a blob upload may make no progress before it fails with [`Error::Stalled`]:
    /// neither the body (the caller's stream) yields anything, nor the connection takes any
    /// bytes, nor (once the body is sent) the registry answers. Default 60 s. Uploads have no
    /// timeout on the whole transfer: a large blob takes as long as it takes while it moves.
    /// Zero is an error at [`build`](Self::build).
    #[must_use]
    pub fn upload_stall_timeout(mut self, d: Duration) -> Self {
        self.upload_stall_timeout = Some(d);
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// A docker config that cannot be read or parsed; a CA certificate that is not PEM
    /// ([`Error::InvalidSettings`] naming the registry); an upload chunk size of zero (or
    /// larger than the address space) or a zero stall timeout ([`Error::InvalidSettings`] for
    /// `<default>`).
    pub fn build(self) -> Result<RegistryClient> {
        let upload = upload_options(self.upload_chunk_size, self.upload_stall_timeout)?;
        let docker_config = match self.docker_config {
            Some(c) => c,
            None => DockerConfig::load_default()?,
        };
        let ua = self
            .user_agent
            .unwrap_or_else(|| format!("kaniko-builder/{}", env!("CARGO_PKG_VERSION")));
        let default_http = http_client(&self.defaults, &ua, "<default>")?;
        let mut per_registry = HashMap::new();
        for (name, settings) in self.per_registry {
            let http = if settings.tls_key() == self.defaults.tls_key()
                && settings.connect_timeout == self.defaults.connect_timeout
                && settings.proxy == self.defaults.proxy
            {
                default_http.clone()
            } else {
                http_client(&settings, &ua, &name)?
            };
            per_registry.insert(name, (settings, http));
        }
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                docker_config,
                defaults: self.defaults,
                default_http,
                per_registry,
                concurrency: self.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
                upload,
                states: Mutex::new(HashMap::new()),
            }),
        })
    }
}

fn upload_options(chunk_size: Option<u64>, stall_timeout: Option<Duration>) -> Result<UploadOptions> {
    let invalid = |problem: &str| Error::InvalidSettings {
        registry: "<default>".to_owned(),
        problem: problem.to_owned(),
    };
    let chunk_size = match chunk_size {
        None => None,
        Some(0) => return Err(invalid("the upload chunk size must be at least 1 byte")),
        Some(n) => {
            Some(usize::try_from(n).map_err(|_| invalid("the upload chunk size does not fit in memory"))?)
        }
    };
    let stall_timeout = stall_timeout.unwrap_or(DEFAULT_UPLOAD_STALL_TIMEOUT);
    if stall_timeout.is_zero() {
        return Err(invalid("the upload stall timeout must be longer than zero"));
    }
    Ok(UploadOptions {
        chunk_size,
        stall_timeout,
    })
}

fn http_client(settings: &RegistrySettings, ua: &str, registry: &str) -> Result<reqwest::Client> {
    let invalid = |problem: String| Error::InvalidSettings {
        registry: registry.to_owned(),
        problem,
    };
    let (skip, cas) = settings.tls_key();
    let tls = tls::client_config(skip, cas).map_err(invalid)?;
    let builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(settings.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(ua)
        // Registries answer manifests from the same host; a redirect (to blob storage) is for blobs.
        .redirect(reqwest::redirect::Policy::limited(5));
    // The default leaves reqwest's own reading of the proxy variables on.
    settings
        .proxy
        .apply(builder)
        .map_err(invalid)?
        .build()
        .map_err(|e| invalid(format!("cannot build HTTP client: {e}")))
}

fn canonical(registry: &str) -> String {
    if HUB_ALIASES.contains(&registry) {
        "docker.io".to_owned()
    } else {
        registry.to_owned()
    }
}

impl RegistryClient {
    /// A builder with the defaults.
    pub fn builder() -> RegistryClientBuilder {
        RegistryClientBuilder::default()
    }

    /// The docker config this client takes credentials from.
    pub fn docker_config(&self) -> &DockerConfig {
        &self.inner.docker_config
    }

    pub(crate) fn state_for(&self, image: &ImageRef) -> Arc<RegistryState> {
        let name = image.registry();
        let mut states = self
            .inner
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let state = states.entry(name.to_owned()).or_insert_with(|| {
            let (settings, http) = match self.inner.per_registry.get(name) {
                Some((s, h)) => (s.clone(), h.clone()),
                None => (self.inner.defaults.clone(), self.inner.default_http.clone()),
            };
            Arc::new(RegistryState {
                name: name.to_owned(),
                host: image.registry_host().to_owned(),
                settings,
                http,
                credentials: OnceCell::new(),
                pinged: OnceCell::new(),
                challenge: Mutex::new(None),
                tokens: Mutex::new(HashMap::new()),
            })
        });
        Arc::clone(state)
    }

    /// The credentials configured for a registry (resolved once per client: a credential helper
    /// runs at most once per registry).
    ///
    /// # Errors
    /// A credential helper that is missing or fails.
    pub async fn credentials_for(&self, image: &ImageRef) -> Result<Credentials> {
        let st = self.state_for(image);
        self.credentials(&st).await.cloned()
    }

    pub(crate) async fn credentials<'s>(&self, st: &'s RegistryState) -> Result<&'s Credentials> {
        st.credentials
            .get_or_try_init(|| self.inner.docker_config.resolve(&st.name))
            .await
    }

    /// Learns how the registry authenticates from `GET /v2/`, once per registry.
    async fn ping(&self, st: &RegistryState) -> Result<()> {
        st.pinged
            .get_or_try_init(|| async {
                let url = st.url("/v2/");
                let resp = self
                    .send_raw(st, "/v2/", || st.http.get(&url), None, st.settings.timeout)
                    .await?;
                if resp.status() == StatusCode::UNAUTHORIZED {
                    self.learn_challenge(st, &resp)?;
                }
                tracing::debug!(registry = %st.name, status = resp.status().as_u16(), challenge = ?st.challenge(), "pinged registry");
                Ok(())
            })
            .await
            .map(|_| ())
    }

    fn learn_challenge(&self, st: &RegistryState, resp: &reqwest::Response) -> Result<()> {
        let header = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let parsed = challenge::parse(header).map_err(|problem| Error::Challenge {
            registry: st.name.clone(),
            problem,
        })?;
        *st.challenge
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(parsed);
        Ok(())
    }

    /// The `Authorization` header for `actions` (`pull`, or `pull,push`) on `repository`,
    /// fetching a token for exactly that scope when needed.
    pub(crate) async fn authorization(
        &self,
        st: &RegistryState,
        repository: &str,
        actions: &str,
        fresh: bool,
    ) -> Result<Option<String>> {
        let creds = self.credentials(st).await?;
        if let Credentials::RegistryToken { token } = creds {
            return Ok(Some(format!("Bearer {}", token.expose_secret())));
        }
        match st.challenge() {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(match creds {
                Credentials::Basic { username, password } => {
                    Some(basic_header(username, password.expose_secret()))
                }
                _ => None,
            }),
            Some(Challenge::Bearer { realm, service }) => {
                let scope = format!("repository:{repository}:{actions}");
                let slot = st.token_slot(&scope);
                let mut guard = slot.lock().await;
                if !fresh && let Some(t) = guard.as_ref().filter(|t| t.is_fresh()) {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let t = self
                    .fetch_token(st, &realm, service.as_deref(), &scope, creds)
                    .await?;
                let header = format!("Bearer {}", t.value);
                *guard = Some(t);
                Ok(Some(header))
            }
        }
    }

    async fn fetch_token(
        &self,
        st: &RegistryState,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: &Credentials,
    ) -> Result<Token> {
        let fail_with =
            |problem: String, status: Option<u16>, transport: Option<TransportKind>| Error::Token {
                registry: st.name.clone(),
                realm: realm.to_owned(),
                problem,
                status,
                transport,
            };
        let fail = |problem: String, status: Option<u16>| fail_with(problem, status, None);
        let policy = &st.settings.retry;
        let mut attempt = 0;
        let mut roots_retried = false;
        loop {
            attempt += 1;
            let req = token::request(&st.http, realm, service, scope, creds)
                .map_err(|p| fail(p, None))?
                .timeout(st.settings.timeout);
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    if roots_were_missing(&e, &mut roots_retried).await {
                        attempt -= 1;
                        continue;
                    }
                    let kind = transport_kind(&e);
                    if kind != TransportKind::Tls
                        && let Some(d) = policy.next_delay(attempt, None)
                    {
                        tokio::time::sleep(d).await;
                        continue;
                    }
                    return Err(fail_with(
                        format!("{kind:?} error after {attempt} attempt(s): {}", e.without_url()),
                        None,
                        Some(kind),
                    ));
                }
            };
            let status = resp.status();
            if status.is_success() {
                let received = Instant::now();
                let body = read_body(resp)
                    .await
                    .map_err(|p| fail(p, Some(status.as_u16())))?;
                tracing::debug!(registry = %st.name, scope, "token issued");
                return token::parse_response(&body, received)
                    .map_err(|p| fail(p.to_owned(), Some(status.as_u16())));
            }
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                let retry_after = header_retry_after(&resp);
                if let Some(d) = policy.next_delay(attempt, retry_after) {
                    tokio::time::sleep(d).await;
                    continue;
                }
            }
            let what = match status.as_u16() {
                401 | 403 => "credentials rejected".to_owned(),
                _ => "unexpected answer".to_owned(),
            };
            return Err(fail(
                format!("{what} (HTTP {}) after {attempt} attempt(s)", status.as_u16()),
                Some(status.as_u16()),
            ));
        }
    }

    /// Sends an authenticated pull request for `repository`, following one fresh authentication
    /// on 401 and retrying transient failures. Returns any other status for the caller to judge.
    pub(crate) async fn send<F>(
        &self,
        st: &RegistryState,
        repository: &str,
        build: F,
    ) -> Result<reqwest::Response>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        self.send_scoped(st, repository, "pull", build).await
    }

    /// [`send`](Self::send) with the token scope's `actions` (`pull` or `pull,push`).
    pub(crate) async fn send_scoped<F>(
        &self,
        st: &RegistryState,
        repository: &str,
        actions: &str,
        build: F,
    ) -> Result<reqwest::Response>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        self.send_scoped_within(st, repository, actions, st.settings.timeout, build)
            .await
    }

    /// [`send_scoped`](Self::send_scoped) with another timeout than the registry's for each
    /// attempt (requests without a body only: the body must be replayable).
    pub(crate) async fn send_scoped_within<F>(
        &self,
        st: &RegistryState,
        repository: &str,
        actions: &str,
        timeout: Duration,
        build: F,
    ) -> Result<reqwest::Response>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        self.ping(st).await?;
        let mut reauthenticated = false;
        loop {
            let auth = self
                .authorization(st, repository, actions, reauthenticated)
                .await?;
            let resp = self
                .send_raw(st, repository, &build, auth.as_deref(), timeout)
                .await?;
            match resp.status() {
                StatusCode::UNAUTHORIZED => {
                    let anonymous = self.credentials(st).await?.is_anonymous();
                    if !reauthenticated && resp.headers().contains_key(WWW_AUTHENTICATE) {
                        self.learn_challenge(st, &resp)?;
                        // One fresh authentication per request, never a loop; anonymous access
                        // cannot answer a Basic challenge at all.
                        if !(anonymous && st.challenge() == Some(Challenge::Basic)) {
                            reauthenticated = true;
                            continue;
                        }
                    }
                    return Err(Error::Unauthorized {
                        registry: st.name.clone(),
                        repository: repository.to_owned(),
                        status: 401,
                        anonymous,
                    });
                }
                StatusCode::FORBIDDEN => {
                    return Err(Error::Denied {
                        registry: st.name.clone(),
                        repository: repository.to_owned(),
                        anonymous: self.credentials(st).await?.is_anonymous(),
                    });
                }
                _ => return Ok(resp),
            }
        }
    }

    /// One request with transport, 429 and 5xx retries. 4xx answers are returned as they are.
    async fn send_raw<F>(
        &self,
        st: &RegistryState,
        repository: &str,
        build: F,
        authorization: Option<&str>,
        timeout: Duration,
    ) -> Result<reqwest::Response>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        let policy = &st.settings.retry;
        if st.settings.needs_system_roots() {
            tls::load_system_roots().await;
        }
        let mut attempt = 0;
        let mut roots_retried = false;
        loop {
            attempt += 1;
            let mut req = build().timeout(timeout);
            if let Some(a) = authorization {
                req = req.header(AUTHORIZATION, sensitive(a)?);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    if roots_were_missing(&e, &mut roots_retried).await {
                        attempt -= 1;
                        continue;
                    }
                    let kind = transport_kind(&e);
                    tracing::debug!(registry = %st.name, attempt, ?kind, "request failed");
                    if kind != TransportKind::Tls
                        && let Some(d) = policy.next_delay(attempt, None)
                    {
                        tokio::time::sleep(d).await;
                        continue;
                    }
                    return Err(Error::Transport {
                        registry: st.name.clone(),
                        kind,
                        attempts: attempt,
                        source: Box::new(e.without_url()),
                    });
                }
            };
            let status = resp.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let retry_after = header_retry_after(&resp);
                tracing::debug!(registry = %st.name, attempt, ?retry_after, "rate limited");
                if let Some(d) = policy.next_delay(attempt, retry_after) {
                    tokio::time::sleep(d).await;
                    continue;
                }
                return Err(Error::RateLimited {
                    registry: st.name.clone(),
                    repository: repository.to_owned(),
                    attempts: attempt,
                    retry_after,
                });
            }
            if matches!(status.as_u16(), 500 | 502 | 503 | 504) {
                tracing::debug!(registry = %st.name, attempt, status = status.as_u16(), "server error");
                if let Some(d) = policy.next_delay(attempt, header_retry_after(&resp)) {
                    tokio::time::sleep(d).await;
                    continue;
                }
                return Err(Error::Server {
                    registry: st.name.clone(),
                    repository: repository.to_owned(),
                    status: status.as_u16(),
                    attempts: attempt,
                });
            }
            return Ok(resp);
        }
    }
}

/// After a handshake that needed the system trust roots before they were read (a chain that is
/// not the registry's own CA's, or a token realm or redirect elsewhere): reads them, once per
/// process and off the runtime, and says to send again. Once per request.
async fn roots_were_missing(e: &reqwest::Error, retried: &mut bool) -> bool {
    if *retried || !tls::needs_system_roots(e) {
        return false;
    }
    tracing::debug!("reading the system trust roots for a TLS connection");
    tls::load_system_roots().await;
    *retried = true;
    true
}

/// Marks the value sensitive: `http`'s `Debug` then prints "Sensitive" and HTTP/2 never indexes it.
pub(crate) fn sensitive(value: &str) -> Result<reqwest::header::HeaderValue> {
    let mut v = reqwest::header::HeaderValue::from_str(value).map_err(|_| Error::InvalidSettings {
        registry: "<credentials>".to_owned(),
        problem: "a credential contains characters not allowed in an HTTP header".to_owned(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn basic_header(username: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

fn header_retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Reads a body up to [`MAX_BODY`]. `Err` says why.
pub(crate) async fn read_body(mut resp: reqwest::Response) -> std::result::Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the body failed: {}", e.without_url()))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("body larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(crate) fn transport_kind(e: &reqwest::Error) -> TransportKind {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return TransportKind::Tls;
        }
        // io::Error::source() skips the error it wraps, so step into it explicitly.
        source = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Other
    }
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("docker_config", &self.inner.docker_config)
            .field("defaults", &self.inner.defaults)
            .field("registries", &self.inner.per_registry.keys().collect::<Vec<_>>())
            .field("concurrency", &self.inner.concurrency)
            .field("upload", &self.inner.upload)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn client_is_send_sync_and_cheap_to_clone() {
        assert_send_sync_clone::<RegistryClient>();
    }

    /// Poisons `lock` the way a bug would: a thread panics while holding it.
    fn poison<T: Send>(lock: &Mutex<T>) {
        std::thread::scope(|s| {
            let holder = s.spawn(|| {
                let _held = lock.lock();
                panic!("a panic while holding the lock (expected by this test)");
            });
            assert!(holder.join().is_err());
        });
        assert!(lock.is_poisoned());
    }

    /// A panic under one of the client's locks must not turn every later probe into a panic:
    /// with the registry table, a registry's challenge and its token table poisoned, the same
    /// client still probes (a cached token's scope and a new one) against a real token-auth
    /// registry.
    #[tokio::test]
    async fn a_poisoned_lock_does_not_break_later_probes() {
        use kaniko_builder_core::Probe;
        use kaniko_builder_testkit::{RegistryAuth, TestRegistry};
        kaniko_builder_testkit::init_tracing();
        let reg = TestRegistry::start(RegistryAuth::Token).await.expect("registry");
        let digest = reg.push_image("team/app", "v1", b"hello").await.expect("push");
        let client = RegistryClient::builder()
            .docker_config(DockerConfig::from_json(&reg.docker_config_json()).expect("config"))
            .registry(
                reg.host(),
                RegistrySettings::default().ca_pem(reg.ca_pem().expect("a TLS registry")),
            )
            .build()
            .expect("client");
        let image: ImageRef = format!("{}/team/app:v1", reg.host()).parse().expect("image");
        let exists = |p: Probe| p.manifest().map(|m| m.digest.to_string());
        assert_eq!(
            exists(client.probe(&image).await.expect("first probe")),
            Some(digest.clone())
        );

        let st = client.state_for(&image);
        poison(&client.inner.states);
        poison(&st.challenge);
        poison(&st.tokens);

        assert_eq!(
            exists(client.probe(&image).await.expect("probe after the poisoning")),
            Some(digest)
        );
        let other: ImageRef = format!("{}/team/other:v1", reg.host()).parse().expect("image");
        assert_eq!(
            client
                .probe(&other)
                .await
                .expect("a new scope after the poisoning"),
            Probe::Absent
        );
    }

    #[test]
    fn upload_options_are_checked_when_the_client_is_built() {
        let built = |chunk: Option<u64>, stall: Option<Duration>| {
            let mut b = RegistryClient::builder()
                .docker_config(DockerConfig::anonymous())
                .upload_chunk_size(chunk);
            if let Some(d) = stall {
                b = b.upload_stall_timeout(d);
            }
            b.build().map(|c| c.inner.upload)
        };
        assert_eq!(
            built(None, None).expect("defaults"),
            UploadOptions {
                chunk_size: None,
                stall_timeout: Duration::from_secs(60)
            }
        );
        assert_eq!(
            built(Some(1 << 20), Some(Duration::from_secs(5))).expect("set"),
            UploadOptions {
                chunk_size: Some(1 << 20),
                stall_timeout: Duration::from_secs(5)
            }
        );
        for (chunk, stall, says) in [
            (Some(0), None, "chunk size"),
            (None, Some(Duration::ZERO), "stall timeout"),
        ] {
            match built(chunk, stall) {
                Err(Error::InvalidSettings { problem, .. }) => assert!(problem.contains(says), "{problem}"),
                other => panic!("expected InvalidSettings, got {other:?}"),
            }
        }
    }

    #[test]
    fn bad_ca_names_the_registry() {
        let err = RegistryClient::builder()
            .docker_config(DockerConfig::anonymous())
            .registry("my.registry:5000", RegistrySettings::default().ca_pem("garbage"))
            .build()
            .expect_err("bad CA");
        match err {
            Error::InvalidSettings { registry, .. } => assert_eq!(registry, "my.registry:5000"),
            other => panic!("expected InvalidSettings, got {other:?}"),
        }
    }
}
