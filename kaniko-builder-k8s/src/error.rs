//! The Kubernetes crate's error type.

/// Errors of the Kubernetes crate. None of them ever carries a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The build configuration is invalid (from the core crate: a field or a seed key).
    #[error(transparent)]
    Config(#[from] kaniko_builder_core::Error),
    /// An object name that Kubernetes would reject.
    #[error("invalid {kind} name {name:?}: {problem}")]
    InvalidName {
        /// What the name is for: `namespace`, `secret`, `configmap`, `service account`, ...
        kind: &'static str,
        /// The name given.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A label or annotation that Kubernetes would reject.
    #[error("invalid {kind} {key:?}: {problem}")]
    InvalidMetadata {
        /// `label` or `annotation`.
        kind: &'static str,
        /// The key.
        key: String,
        /// What is wrong with the key or the value.
        problem: &'static str,
    },
    /// A resource quantity that Kubernetes would reject.
    #[error("invalid resource quantity {quantity:?} for {field}: expected e.g. 500m, 2, 512Mi, 1Gi")]
    InvalidQuantity {
        /// Where it was given, e.g. `executor_resources.limits.memory`.
        field: String,
        /// The quantity given.
        quantity: String,
    },
    /// An option of [`JobOptions`](crate::manifest::JobOptions) that is invalid or conflicts with
    /// another.
    #[error("invalid option {option}: {problem}")]
    InvalidOption {
        /// The option, as its setter is named.
        option: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The docker `config.json` given for the Secret is not a JSON object. The message never
    /// quotes the content.
    #[error("docker config is not a JSON object with an \"auths\" map: {problem}")]
    InvalidDockerConfig {
        /// What is wrong with it, without any of its content.
        problem: String,
    },
    /// The manifests could not be serialised (as YAML or JSON).
    #[error("cannot serialise the manifests")]
    Serialize(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// An image of [`JobOptions`](crate::manifest::JobOptions) is not a valid image reference
    /// (from [`preflight`](crate::preflight)).
    #[error("invalid {field} {reference:?}")]
    InvalidImageReference {
        /// `executor_image` or `init_image`.
        field: crate::preflight::ImageField,
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        #[source]
        source: kaniko_builder_core::Error,
    },
    /// An image of [`JobOptions`](crate::manifest::JobOptions) is missing from its registry: 404
    /// for the tag or the repository (from [`preflight`](crate::preflight)).
    #[error("{field} {reference} is missing from its registry")]
    ImageMissing {
        /// `executor_image` or `init_image`.
        field: crate::preflight::ImageField,
        /// The reference, normalised.
        reference: String,
    },
    /// An image of [`JobOptions`](crate::manifest::JobOptions) could not be checked: the registry
    /// refused the credentials, could not be reached, or failed (from
    /// [`preflight`](crate::preflight)). Not taken as missing.
    #[error("cannot check {field} {reference} in its registry")]
    ImageCheckFailed {
        /// `executor_image` or `init_image`.
        field: crate::preflight::ImageField,
        /// The reference, normalised.
        reference: String,
        /// The registry client's error (boxed: it is the largest, and errors stay small).
        #[source]
        source: Box<kaniko_builder_registry::Error>,
    },
}

impl Error {
    /// Whether the error is about the build configuration or the options (the caller's input),
    /// as opposed to an internal failure such as serialisation or a registry that could not be
    /// asked. An image the options name and its registry lacks counts as input.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, Self::Serialize(_) | Self::ImageCheckFailed { .. })
    }

    /// The image option a [`preflight`](crate::preflight) error is about.
    pub fn image_field(&self) -> Option<crate::preflight::ImageField> {
        match self {
            Self::InvalidImageReference { field, .. }
            | Self::ImageMissing { field, .. }
            | Self::ImageCheckFailed { field, .. } => Some(*field),
            _ => None,
        }
    }

    /// The registry client's error behind [`Error::ImageCheckFailed`], to classify it
    /// ([`is_unauthorized`](kaniko_builder_registry::Error::is_unauthorized),
    /// [`is_retryable`](kaniko_builder_registry::Error::is_retryable)).
    pub fn registry_error(&self) -> Option<&kaniko_builder_registry::Error> {
        match self {
            Self::ImageCheckFailed { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
