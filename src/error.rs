//! The facade's error type: one enum over the layers' errors and the build's own failure.

use crate::core::flow::{BuildFailure, FailureReason};

/// Errors of [`Build`](crate::Build) and [`BuildSet`](crate::BuildSet). None of them ever carries
/// a credential. Branch with the `is_*` predicates rather than matching on the layers' types.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The build configuration is invalid (a field, a seed key).
    #[error(transparent)]
    Config(#[from] crate::core::Error),
    /// The registry client could not be built, or credentials could not be resolved.
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
    /// The manifests could not be rendered (an invalid option or name).
    #[error(transparent)]
    Manifest(#[from] crate::k8s::Error),
    /// No usable Kubernetes configuration (kubeconfig or in-cluster service account).
    #[error("cannot build a Kubernetes client")]
    Kube(#[from] crate::k8s::client::ClientError),
    /// A local build context could not be read (for a content tag).
    #[error(transparent)]
    Context(#[from] crate::k8s::context::ContextError),
    /// The build ran and failed: see [`BuildFailure::reason`].
    #[error(transparent)]
    Build(#[from] BuildFailure),
}

impl Error {
    /// The build's failure, when the build ran.
    pub fn build_failure(&self) -> Option<&BuildFailure> {
        match self {
            Self::Build(f) => Some(f),
            _ => None,
        }
    }

    /// Why the build failed, when it ran.
    pub fn reason(&self) -> Option<&FailureReason> {
        self.build_failure().map(BuildFailure::reason)
    }

    /// Whether the caller's input is at fault (configuration, options, a context directory).
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Self::Config(_) | Self::Context(_) => true,
            Self::Manifest(e) => e.is_invalid_input(),
            Self::Registry(e) => e.is_config(),
            Self::Build(f) => matches!(f.reason(), FailureReason::Invalid { .. }),
            Self::Kube(_) => false,
        }
    }

    /// Whether a registry refused or lacked credentials.
    pub fn is_unauthorized(&self) -> bool {
        match self {
            Self::Registry(e) => e.is_unauthorized(),
            Self::Build(f) => matches!(
                f.reason(),
                FailureReason::ProbeFailed {
                    unauthorized: true,
                    ..
                }
            ),
            _ => false,
        }
    }

    /// Whether a later attempt might succeed (a transport failure, 429, 5xx, a lost node).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Registry(e) => e.is_retryable(),
            Self::Build(f) => matches!(
                f.reason(),
                FailureReason::ProbeFailed { retryable: true, .. }
                    | FailureReason::NodeLost { .. }
                    | FailureReason::Evicted { .. }
                    | FailureReason::Timeout { .. }
            ),
            _ => false,
        }
    }

    /// Whether no Kubernetes configuration was found or usable.
    pub fn is_no_cluster(&self) -> bool {
        matches!(self, Self::Kube(_))
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.build_failure().is_some_and(BuildFailure::is_cancelled)
    }

    /// Whether a deadline passed.
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::Registry(e) => e.is_timeout(),
            Self::Build(f) => f.is_timeout(),
            _ => false,
        }
    }

    /// Whether the TLS handshake with a registry (or its token service) failed: an untrusted or
    /// mismatched certificate, or a plain HTTP server spoken to over HTTPS.
    pub fn is_tls(&self) -> bool {
        match self {
            Self::Registry(e) => e.is_tls(),
            _ => false,
        }
    }

    /// A short machine-readable name of the culprit: the [`FailureReason::kind`] of a build that
    /// ran; for a registry error its [`registry::Error::kind`](crate::registry::Error::kind)
    /// (`unauthorized`, `denied`, `tls`, `unreachable`, `timeout`, `transport`, `rate_limited`,
    /// `registry_error`, `docker_config`, `credential_helper`, `invalid_settings`, `stalled` for
    /// an upload that stopped moving, `body` for a streamed body that failed, `not_found`,
    /// `not_an_index`, `invalid_manifest`); else `config`,
    /// `manifest`, `kube_config` or `context`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Registry(e) => e.kind(),
            Self::Manifest(_) => "manifest",
            Self::Kube(_) => "kube_config",
            Self::Context(_) => "context",
            Self::Build(f) => f.reason().kind(),
        }
    }
}

/// `Result` with the facade's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_error_keeps_its_kind() {
        let e = Error::from(crate::registry::Error::Unauthorized {
            registry: "r.example".into(),
            repository: "app".into(),
            status: 401,
            anonymous: false,
        });
        assert_eq!(e.kind(), "unauthorized");
        assert!(e.is_unauthorized() && !e.is_tls() && !e.is_invalid_input());
        let e = Error::from(crate::registry::Error::Transport {
            registry: "r.example".into(),
            kind: crate::registry::TransportKind::Tls,
            attempts: 1,
            source: "bad certificate".into(),
        });
        assert_eq!(e.kind(), "tls");
        assert!(e.is_tls() && !e.is_retryable());
    }
}
