//! The core crate's error type.

/// What is wrong with a digest string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestProblem {
    /// No `:` between algorithm and hex.
    #[error("expected algorithm:hex")]
    MissingSeparator,
    /// The algorithm part breaks the spec's grammar.
    #[error("algorithm must match [a-z0-9]+([+._-][a-z0-9]+)*")]
    InvalidAlgorithm,
    /// A well-formed algorithm that the spec does not register.
    #[error("unsupported algorithm {algorithm:?} (sha256, sha384 and sha512 are supported)")]
    UnsupportedAlgorithm {
        /// The algorithm given.
        algorithm: String,
    },
    /// A character outside lowercase hex.
    #[error("{character:?} is not a lowercase hex digit")]
    InvalidHex {
        /// The first offending character.
        character: char,
    },
    /// The hex part has the wrong length for its algorithm.
    #[error("expected {expected} hex digits, found {actual}")]
    WrongLength {
        /// What the algorithm needs.
        expected: usize,
        /// What was given.
        actual: usize,
    },
}

/// What is wrong with an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceProblem {
    /// The input is empty.
    #[error("reference is empty")]
    Empty,
    /// Whitespace, a control character or non-ASCII.
    #[error("character {character:?} at byte {position} is not allowed")]
    InvalidCharacter {
        /// The character.
        character: char,
        /// Its byte offset.
        position: usize,
    },
    /// A repository path component has an uppercase letter.
    #[error("repository component {component:?} must be lowercase")]
    Uppercase {
        /// The component.
        component: String,
    },
    /// A repository path component breaks the spec's grammar.
    #[error("repository component {component:?} must match [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*")]
    InvalidComponent {
        /// The component.
        component: String,
    },
    /// Two slashes in a row, or a trailing slash.
    #[error("repository has an empty path component")]
    EmptyComponent,
    /// The registry host or port is malformed.
    #[error("registry {registry:?} is not a valid host[:port]")]
    InvalidRegistry {
        /// The registry part.
        registry: String,
    },
    /// The tag breaks `[A-Za-z0-9_][A-Za-z0-9_.-]*`.
    #[error("tag {tag:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]*")]
    InvalidTag {
        /// The tag.
        tag: String,
    },
    /// The tag is longer than 128 characters.
    #[error("tag is {length} characters long, the maximum is {max}")]
    TagTooLong {
        /// Its length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The repository name is longer than 255 characters.
    #[error("repository name is {length} characters long, the maximum is {max}")]
    NameTooLong {
        /// Its length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The digest after `@` is invalid.
    #[error("digest: {0}")]
    Digest(DigestProblem),
    /// Anything else the reference grammar rejects.
    #[error("{detail}")]
    Format {
        /// What the grammar check said.
        detail: String,
    },
}

/// Errors of the core crate: invalid user input, each naming the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An image reference could not be parsed.
    #[error("invalid image reference {input:?}: {problem}")]
    InvalidReference {
        /// The reference as given.
        input: String,
        /// What is wrong with it.
        problem: ReferenceProblem,
    },
    /// A digest could not be parsed.
    #[error("invalid digest {input:?}: {problem}")]
    InvalidDigest {
        /// The digest as given.
        input: String,
        /// What is wrong with it.
        problem: DigestProblem,
    },
    /// A build configuration field is invalid.
    #[error("invalid build configuration: {field}: {problem}")]
    InvalidConfig {
        /// The field, as the builder's setter names it (`dockerfile`, `namespace`, `context`, ...).
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A key of the original tool's configuration (ConfigMap or environment) is absent or invalid.
    #[error("invalid {key}: {problem}")]
    InvalidSeedValue {
        /// The key: `DOCKER_FILENAME`, `DOCKER_IMAGENAME`, `DOCKER_IMAGETAG` or `FORCE_BUILD`.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl Error {
    /// The configuration field or seed key at fault, for the two configuration variants.
    pub fn culprit(&self) -> Option<&'static str> {
        match self {
            Self::InvalidConfig { field, .. } => Some(field),
            Self::InvalidSeedValue { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// `Result` with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
