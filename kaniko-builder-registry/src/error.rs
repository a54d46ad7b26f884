//! The registry crate's error type. No variant ever carries a password or token.

use std::path::PathBuf;
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a request could not complete at the transport level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// Could not connect (refused, unreachable, DNS).
    Connect,
    /// No answer within the configured timeout.
    Timeout,
    /// The TLS handshake failed (certificate not trusted, wrong name, plain HTTP server...).
    Tls,
    /// Anything else on the wire (connection reset mid-response...).
    Other,
}

/// Which side of a blob upload stopped making progress ([`Error::Stalled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StallSide {
    /// The body being uploaded (the caller's stream) yielded nothing.
    Body,
    /// The connection to the registry took no bytes: the registry (or a proxy) stopped reading.
    Registry,
    /// The whole body was sent and the registry did not answer.
    Answer,
}

/// Errors of the registry crate. Every variant names the registry (or config file) involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A docker config file exists but cannot be read.
    #[error("cannot read docker config {}", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A docker config is not valid JSON of the expected shape.
    #[error("docker config {origin} is invalid: {category} error at line {line}, column {column}")]
    ConfigParse {
        /// Where the config came from.
        origin: String,
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
        /// `syntax`, `data` (wrong shape) or `eof`.
        category: String,
    },
    /// An `auths` entry cannot be decoded.
    #[error("docker config {origin}: entry {key:?}: {problem}")]
    InvalidAuthEntry {
        /// Where the config came from.
        origin: String,
        /// The `auths` key.
        key: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The config names a credential helper that is not on `PATH`.
    #[error("credential helper docker-credential-{helper} (for {registry}) is not installed or not on PATH")]
    CredentialHelperMissing {
        /// The helper's name.
        helper: String,
        /// The registry it was asked about.
        registry: String,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} failed for {registry}: {message}")]
    CredentialHelperFailed {
        /// The helper's name.
        helper: String,
        /// The registry it was asked about.
        registry: String,
        /// Its exit status and message.
        message: String,
    },
    /// A credential helper printed something that is not its JSON answer.
    #[error("credential helper docker-credential-{helper} returned malformed output for {registry}")]
    CredentialHelperOutput {
        /// The helper's name.
        helper: String,
        /// The registry it was asked about.
        registry: String,
    },
    /// Per-registry settings that cannot be used (e.g. a CA certificate that is not PEM).
    #[error("invalid settings for registry {registry}: {problem}")]
    InvalidSettings {
        /// The registry (or `<default>`).
        registry: String,
        /// What is wrong.
        problem: String,
    },
    /// The registry could not be reached or the connection broke.
    #[error("cannot reach registry {registry} ({kind:?}) after {attempts} attempt(s)")]
    Transport {
        /// The registry.
        registry: String,
        /// What went wrong.
        kind: TransportKind,
        /// Attempts made.
        attempts: u32,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// 401 after authenticating (or anonymously, where the registry requires credentials).
    #[error("{}", auth_message("rejected the credentials for", registry, repository, *status, *anonymous))]
    Unauthorized {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The HTTP status (401).
        status: u16,
        /// Whether no credentials were configured for this registry.
        anonymous: bool,
    },
    /// 403: authenticated but not allowed.
    #[error("{}", auth_message("denied access to", registry, repository, 403, *anonymous))]
    Denied {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Whether no credentials were configured for this registry.
        anonymous: bool,
    },
    /// 429 until the retries ran out, or a `Retry-After` longer than we are willing to wait.
    #[error(
        "registry {registry} is rate limiting requests for {repository} (HTTP 429) after {attempts} attempt(s)"
    )]
    RateLimited {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Attempts made.
        attempts: u32,
        /// The registry's last `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// 5xx until the retries ran out.
    #[error("registry {registry} answered HTTP {status} for {repository} after {attempts} attempt(s)")]
    Server {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// A status the protocol does not allow here (e.g. 400, 405).
    #[error("registry {registry} answered unexpected HTTP {status} for {repository}")]
    UnexpectedStatus {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The status.
        status: u16,
    },
    /// The registry's authentication challenge cannot be followed.
    #[error("registry {registry} sent an unusable authentication challenge: {problem}")]
    Challenge {
        /// The registry.
        registry: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The token endpoint did not give a usable token.
    #[error("token service {realm} for registry {registry} failed: {problem}")]
    Token {
        /// The registry.
        registry: String,
        /// The token endpoint.
        realm: String,
        /// What went wrong (status, malformed answer).
        problem: String,
        /// The status, when the endpoint answered.
        status: Option<u16>,
        /// How the connection failed, when the endpoint could not be reached.
        transport: Option<TransportKind>,
    },
    /// A blob upload made no progress for the configured stall timeout
    /// ([`RegistryClientBuilder::upload_stall_timeout`](crate::RegistryClientBuilder::upload_stall_timeout)).
    /// The upload was abandoned and nothing was committed.
    #[error("{}", stall_message(registry, repository, *sent, *after, *side))]
    Stalled {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Bytes handed to the connection before the stall (the registry may have read fewer).
        sent: u64,
        /// How long nothing happened.
        after: Duration,
        /// Which side stopped: the body being uploaded, or the registry.
        side: StallSide,
    },
    /// The body of a blob upload (the caller's stream) yielded an error. The upload was
    /// abandoned and nothing was committed; the cause is the body's own error.
    #[error(
        "the blob being uploaded to registry {registry} for {repository} failed after {sent} bytes were sent"
    )]
    Body {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Bytes handed to the connection before the failure.
        sent: u64,
        /// The body's error.
        #[source]
        source: std::io::Error,
    },
    /// A digest header or computed digest that is malformed or does not match the pinned one.
    #[error("registry {registry} sent a bad digest for {reference}: {problem}")]
    BadDigest {
        /// The registry.
        registry: String,
        /// The image reference probed.
        reference: String,
        /// What is wrong.
        problem: String,
    },
    /// [`RegistryClient::index_platforms`](crate::RegistryClient::index_platforms): the manifest
    /// is not an image index (an OCI index or a Docker manifest list), typically a
    /// single-platform image.
    #[error("registry {registry}: {reference} is not an image index but {media_type}")]
    NotAnIndex {
        /// The registry.
        registry: String,
        /// The image reference read.
        reference: String,
        /// The media type served.
        media_type: String,
    },
    /// The registry has no such manifest (404, `MANIFEST_UNKNOWN`): the index read, or an image
    /// an index was to list.
    #[error("registry {registry} has no manifest {reference} in {repository}")]
    ManifestUnknown {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The tag or digest.
        reference: String,
    },
    /// The registry has no such blob (404, `BLOB_UNKNOWN`), e.g. the config of an image an index
    /// was to list.
    #[error("registry {registry} has no blob {digest} in {repository}")]
    BlobUnknown {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The blob's digest.
        digest: String,
    },
    /// A manifest or image config that cannot be used: not valid JSON, an index where an image
    /// was expected, a config that names no os or architecture.
    #[error("registry {registry}: {reference} in {repository} cannot be used: {problem}")]
    InvalidManifest {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The tag or digest at fault.
        reference: String,
        /// What is wrong.
        problem: String,
    },
    /// An index push refused before anything was sent (a reference without a tag, no images).
    #[error("cannot push an image index as {reference}: {problem}")]
    InvalidIndexRequest {
        /// The image reference.
        reference: String,
        /// What is wrong.
        problem: &'static str,
    },
}

fn auth_message(verb: &str, registry: &str, repository: &str, status: u16, anonymous: bool) -> String {
    if anonymous {
        format!(
            "registry {registry} {verb} anonymous access to {repository} (HTTP {status}): no credentials are \
             configured for it; the repository may be private or may not exist, so this is not taken as absent"
        )
    } else {
        format!("registry {registry} {verb} {repository} (HTTP {status})")
    }
}

fn stall_message(registry: &str, repository: &str, sent: u64, after: Duration, side: StallSide) -> String {
    let after = format!("{:.1} s", after.as_secs_f64());
    match side {
        StallSide::Body => format!(
            "blob upload to registry {registry} for {repository} stalled: the body being uploaded produced no \
             data for {after} ({sent} bytes sent)"
        ),
        StallSide::Registry => format!(
            "blob upload to registry {registry} for {repository} stalled: the registry accepted no data for \
             {after} ({sent} bytes sent)"
        ),
        StallSide::Answer => format!(
            "blob upload to registry {registry} for {repository} stalled: no answer for {after} after the \
             whole body ({sent} bytes) was sent"
        ),
    }
}

impl StallSide {
    /// `body`, `registry` or `answer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Body => "body",
            Self::Registry => "registry",
            Self::Answer => "answer",
        }
    }
}

impl TransportKind {
    /// `unreachable` (could not connect: refused, no route, DNS), `timeout`, `tls` or `transport`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "unreachable",
            Self::Timeout => "timeout",
            Self::Tls => "tls",
            Self::Other => "transport",
        }
    }
}

impl Error {
    /// A short machine-readable name of what went wrong, for scripts and reports:
    ///
    /// | kind | errors |
    /// |---|---|
    /// | `unauthorized` | 401: credentials missing or rejected (also by the token service) |
    /// | `denied` | 403: authenticated but not allowed |
    /// | `unreachable`, `timeout`, `tls`, `transport` | the [`TransportKind`] of a [`Transport`](Self::Transport) failure (or of the token service's) |
    /// | `rate_limited` | 429 until the retries ran out (also from the token service) |
    /// | `registry_error` | 5xx, an unexpected status, an unusable challenge or token answer, a bad digest |
    /// | `docker_config` | the docker config cannot be read or parsed |
    /// | `credential_helper` | a credential helper is missing or failed |
    /// | `invalid_settings` | per-registry settings that cannot be used |
    /// | `stalled` | a blob upload made no progress for the stall timeout (either side) |
    /// | `body` | the body of a blob upload failed (the caller's stream) |
    /// | `not_an_index` | the manifest read as an image index is not one |
    /// | `not_found` | a manifest or blob the registry does not have (reading or pushing an index) |
    /// | `invalid_manifest` | a manifest or image config that cannot be used |
    /// | `invalid_request` | an index push refused before anything was sent |
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ConfigRead { .. } | Self::ConfigParse { .. } | Self::InvalidAuthEntry { .. } => {
                "docker_config"
            }
            Self::CredentialHelperMissing { .. }
            | Self::CredentialHelperFailed { .. }
            | Self::CredentialHelperOutput { .. } => "credential_helper",
            Self::InvalidSettings { .. } => "invalid_settings",
            Self::Stalled { .. } => "stalled",
            Self::Body { .. } => "body",
            Self::NotAnIndex { .. } => "not_an_index",
            Self::ManifestUnknown { .. } | Self::BlobUnknown { .. } => "not_found",
            Self::InvalidManifest { .. } => "invalid_manifest",
            Self::InvalidIndexRequest { .. } => "invalid_request",
            Self::Transport { kind, .. }
            | Self::Token {
                status: None,
                transport: Some(kind),
                ..
            } => kind.as_str(),
            Self::Unauthorized { .. }
            | Self::Token {
                status: Some(401), ..
            } => "unauthorized",
            Self::Denied { .. }
            | Self::Token {
                status: Some(403), ..
            } => "denied",
            Self::RateLimited { .. }
            | Self::Token {
                status: Some(429), ..
            } => "rate_limited",
            Self::Server { .. }
            | Self::UnexpectedStatus { .. }
            | Self::Challenge { .. }
            | Self::Token { .. }
            | Self::BadDigest { .. } => "registry_error",
        }
    }

    /// The TLS handshake failed (an untrusted or mismatched certificate, a plain HTTP server),
    /// with the registry or its token service.
    pub fn is_tls(&self) -> bool {
        matches!(
            self,
            Self::Transport {
                kind: TransportKind::Tls,
                ..
            } | Self::Token {
                transport: Some(TransportKind::Tls),
                ..
            }
        )
    }

    /// The registry rejected or lacked credentials (401 or 403), or the token service refused them.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Unauthorized { .. } | Self::Denied { .. })
            || matches!(
                self,
                Self::Token {
                    status: Some(401 | 403),
                    ..
                }
            )
    }

    /// A later attempt might succeed: transport failures, 429, 5xx and stalled uploads (a new
    /// upload needs a new body: a streamed one cannot be replayed).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Transport {
                kind: TransportKind::Connect | TransportKind::Timeout | TransportKind::Other,
                ..
            } | Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Stalled { .. }
        ) || matches!(
            self,
            Self::Token {
                status: Some(429 | 500..=599),
                ..
            } | Self::Token {
                transport: Some(TransportKind::Connect | TransportKind::Timeout | TransportKind::Other),
                ..
            }
        )
    }

    /// The registry did not answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Self::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        )
    }

    /// The error is about the configuration (config file, helper, settings), not the registry.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::ConfigRead { .. }
                | Self::ConfigParse { .. }
                | Self::InvalidAuthEntry { .. }
                | Self::CredentialHelperMissing { .. }
                | Self::CredentialHelperFailed { .. }
                | Self::CredentialHelperOutput { .. }
                | Self::InvalidSettings { .. }
        )
    }
}

/// `Result` with the registry [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(kind: TransportKind) -> Error {
        Error::Transport {
            registry: "r.example".into(),
            kind,
            attempts: 1,
            source: "boom".into(),
        }
    }

    fn token(status: Option<u16>, transport: Option<TransportKind>) -> Error {
        Error::Token {
            registry: "r.example".into(),
            realm: "https://auth.example/token".into(),
            problem: "x".into(),
            status,
            transport,
        }
    }

    fn stalled(side: StallSide) -> Error {
        Error::Stalled {
            registry: "r.example".into(),
            repository: "team/app".into(),
            sent: 1234,
            after: Duration::from_secs(60),
            side,
        }
    }

    #[test]
    fn stalls_say_which_side_and_are_retryable() {
        let cases = [
            (
                StallSide::Body,
                "the body being uploaded produced no data for 60.0 s",
            ),
            (StallSide::Registry, "the registry accepted no data for 60.0 s"),
            (
                StallSide::Answer,
                "no answer for 60.0 s after the whole body (1234 bytes) was sent",
            ),
        ];
        for (side, says) in cases {
            let e = stalled(side);
            let msg = e.to_string();
            assert!(msg.contains(says), "{msg}");
            assert!(msg.contains("r.example") && msg.contains("team/app"), "{msg}");
            assert!(
                e.is_retryable() && !e.is_timeout() && !e.is_unauthorized(),
                "{e:?}"
            );
        }
        let body = Error::Body {
            registry: "r.example".into(),
            repository: "team/app".into(),
            sent: 7,
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(body.kind(), "body");
        assert!(!body.is_retryable());
        let cause = std::error::Error::source(&body).expect("the body's error is the source");
        assert_eq!(cause.to_string(), "disk on fire");
    }

    #[test]
    fn kinds_name_what_happened() {
        let unauthorized = Error::Unauthorized {
            registry: "r.example".into(),
            repository: "app".into(),
            status: 401,
            anonymous: true,
        };
        let server = Error::Server {
            registry: "r.example".into(),
            repository: "app".into(),
            status: 503,
            attempts: 4,
        };
        let cases = [
            (unauthorized, "unauthorized"),
            (token(Some(401), None), "unauthorized"),
            (token(Some(403), None), "denied"),
            (token(Some(429), None), "rate_limited"),
            (token(Some(500), None), "registry_error"),
            (token(None, None), "registry_error"),
            (token(None, Some(TransportKind::Tls)), "tls"),
            (token(None, Some(TransportKind::Connect)), "unreachable"),
            (transport(TransportKind::Connect), "unreachable"),
            (transport(TransportKind::Timeout), "timeout"),
            (transport(TransportKind::Tls), "tls"),
            (transport(TransportKind::Other), "transport"),
            (server, "registry_error"),
            (stalled(StallSide::Body), "stalled"),
            (stalled(StallSide::Registry), "stalled"),
        ];
        for (err, kind) in cases {
            assert_eq!(err.kind(), kind, "{err:?}");
            assert_eq!(err.is_tls(), kind == "tls", "{err:?}");
            if kind == "unauthorized" || kind == "denied" {
                assert!(err.is_unauthorized(), "{err:?}");
            }
        }
    }
}
