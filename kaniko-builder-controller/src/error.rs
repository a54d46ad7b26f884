//! The controller's errors.

/// What can go wrong running the controller (a build's own failure is recorded in its status,
/// not returned).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, naming the object.
        action: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The registry client could not be set up.
    #[error("registry client: {0}")]
    Registry(#[from] Box<kaniko_builder::registry::Error>),
    /// The Lease for leader election could not be used.
    #[error("leader election with Lease {lease}: {message}")]
    Lease {
        /// `namespace/name` of the Lease.
        lease: String,
        /// What failed.
        message: String,
    },
    /// An option is invalid.
    #[error("invalid option {option}: {problem}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// An object is not as the controller needs it (no name, a Job that will not go).
    #[error("{object}: {problem}")]
    Object {
        /// The object, e.g. `ImageBuild builds/app`.
        object: String,
        /// What is wrong.
        problem: String,
    },
    /// An installed object did not become ready (the CRD not `Established`).
    #[error("installing {object}: {problem}")]
    Install {
        /// The object, kind and name.
        object: String,
        /// What went wrong.
        problem: String,
    },
    /// Manifests could not be rendered or serialised.
    #[error("manifests: {0}")]
    Manifest(String),
}

impl Error {
    pub(crate) fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source: Box::new(source),
        }
    }

    /// Whether the API server answered 404: the object is gone.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Self::Kube { source, .. } if matches!(source.as_ref(), kube::Error::Api(s) if s.code == 404))
    }
}

/// The controller's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
