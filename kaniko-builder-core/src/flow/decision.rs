//! Skip or build, and why: the one vocabulary of the caller's probe ([`run_build`](super::run_build)
//! and plans), the in-cluster check (`kaniko-init`'s termination message) and events.

use serde::{Deserialize, Serialize};

use crate::{Digest, Probe};

/// Whether an image is built, and why. Serialised as the init container writes it:
/// `{"decision":"skip","digest":"sha256:…"}` or `{"decision":"build","reason":"absent"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Decision {
    /// The tag exists with this digest and the build is not forced: nothing is built.
    Skip {
        /// The existing image's digest.
        digest: Digest,
    },
    /// kaniko builds and pushes.
    Build {
        /// Why.
        reason: BuildReason,
    },
}

/// Why a build runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BuildReason {
    /// The registry said the tag does not exist.
    Absent,
    /// The build is forced (`FORCE_BUILD`); the image may exist.
    Forced,
    /// The in-cluster check was refused by the registry, but the executor may hold credentials
    /// the check lacks (kaniko's credential helpers, workload identity): the caller's probe found
    /// the tag absent, or the Secret has no entry for the registry. The executor's push decides.
    Unverified,
}

impl Decision {
    /// The caller's rule: skip an existing tag unless forced; build an absent one. A probe that
    /// could not tell never gets here: it is an error, not a decision.
    pub fn from_probe(probe: &Probe, force: bool) -> Self {
        match (probe.manifest(), force) {
            (_, true) => Self::Build {
                reason: BuildReason::Forced,
            },
            (Some(m), false) => Self::Skip {
                digest: m.digest.clone(),
            },
            (None, false) => Self::Build {
                reason: BuildReason::Absent,
            },
        }
    }

    /// `skip` or `build`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Skip { .. } => "skip",
            Self::Build { .. } => "build",
        }
    }

    /// Whether a build runs.
    pub fn is_build(&self) -> bool {
        matches!(self, Self::Build { .. })
    }
}

impl BuildReason {
    /// `absent`, `forced` or `unverified`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Absent => "absent",
            Self::Forced => "forced",
            Self::Unverified => "unverified",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_is_the_init_containers() {
        let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().expect("digest");
        let cases = [
            (
                Decision::Skip {
                    digest: digest.clone(),
                },
                format!(r#"{{"decision":"skip","digest":"{digest}"}}"#),
            ),
            (
                Decision::Build {
                    reason: BuildReason::Absent,
                },
                r#"{"decision":"build","reason":"absent"}"#.to_owned(),
            ),
            (
                Decision::Build {
                    reason: BuildReason::Unverified,
                },
                r#"{"decision":"build","reason":"unverified"}"#.to_owned(),
            ),
        ];
        for (decision, json) in cases {
            assert_eq!(serde_json::to_string(&decision).expect("serialise"), json);
            assert_eq!(serde_json::from_str::<Decision>(&json).expect("parse"), decision);
        }
    }
}
