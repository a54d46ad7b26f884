//! Credentials for one registry, as a docker `config.json` or a credential helper yields them.

use std::fmt;

use secrecy::{ExposeSecret as _, SecretString};

/// What to authenticate with. The secrets are [`SecretString`]s (zeroed on drop, never in
/// `Debug`); `Debug` prints no secret.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Credentials {
    /// No credentials: anonymous access (also what a missing config means).
    #[default]
    Anonymous,
    /// User name and password (`auth`, or `username`/`password`).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: SecretString,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged for an access token at the registry's
    /// token endpoint.
    IdentityToken {
        /// The refresh token.
        token: SecretString,
    },
    /// A bearer token sent to the registry as is (`registrytoken`).
    RegistryToken {
        /// The token.
        token: SecretString,
    },
}

impl Credentials {
    /// User name and password.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::Basic {
            username: username.into(),
            password: SecretString::from(password.into()),
        }
    }

    /// Whether these are no credentials at all.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Self::Anonymous)
    }
}

impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Anonymous, Self::Anonymous) => true,
            (
                Self::Basic { username, password },
                Self::Basic {
                    username: u,
                    password: p,
                },
            ) => username == u && password.expose_secret() == p.expose_secret(),
            (Self::IdentityToken { token: a }, Self::IdentityToken { token: b })
            | (Self::RegistryToken { token: a }, Self::RegistryToken { token: b }) => {
                a.expose_secret() == b.expose_secret()
            }
            _ => false,
        }
    }
}

impl Eq for Credentials {}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Self::IdentityToken { .. } => f.write_str("IdentityToken(<redacted>)"),
            Self::RegistryToken { .. } => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_every_secret() {
        let cases = [
            Credentials::basic("alice", "hunter2-secret"),
            Credentials::IdentityToken {
                token: "hunter2-secret".into(),
            },
            Credentials::RegistryToken {
                token: "hunter2-secret".into(),
            },
        ];
        for c in cases {
            let shown = format!("{c:?} {c:#?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("redacted"), "{shown}");
        }
        assert!(format!("{:?}", Credentials::basic("alice", "x")).contains("alice"));
    }
}
