//! Skip or build, and why: the one vocabulary of the caller's probe ([`run_build`](super::run_build)
//! and plans), the in-cluster check (`kaniko-init`'s termination message) and events.

use serde::{Deserialize, Serialize};

use crate::{Digest, Platform, Probe};

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
    /// A multi-platform build: the tag holds an index that lacks a requested platform.
    #[serde(rename = "incomplete_index")]
    IncompleteIndex,
    /// A multi-platform build: the tag holds a single-platform image, not an index.
    #[serde(rename = "not_an_index")]
    NotAnIndex,
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

    /// The rule of a multi-platform build of `requested`: an index under the tag holding every
    /// requested platform (`index_platforms`, read from it) is skipped unless forced; an index
    /// lacking one, or a single-platform image, is built again, and the reason says which.
    /// `index_platforms` is `None` when the tag is not an index.
    pub fn for_platforms(
        probe: &Probe,
        index_platforms: Option<&[Platform]>,
        requested: &[Platform],
        force: bool,
    ) -> Self {
        let single = Self::from_probe(probe, force);
        let Self::Skip { digest } = single else {
            return single;
        };
        match index_platforms {
            None => Self::Build {
                reason: BuildReason::NotAnIndex,
            },
            Some(held) if requested.iter().all(|r| held.iter().any(|h| r.is_served_by(h))) => {
                Self::Skip { digest }
            }
            Some(_) => Self::Build {
                reason: BuildReason::IncompleteIndex,
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
    /// `absent`, `forced`, `unverified`, `incomplete_index` or `not_an_index`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Absent => "absent",
            Self::Forced => "forced",
            Self::Unverified => "unverified",
            Self::IncompleteIndex => "incomplete_index",
            Self::NotAnIndex => "not_an_index",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Manifest;

    #[test]
    fn an_index_is_skipped_only_when_it_holds_every_platform() {
        let p = |s: &str| s.parse::<Platform>().expect("platform");
        let digest = Digest::sha256(b"index");
        let exists = Probe::Exists(Manifest::new(digest.clone(), crate::media_types::OCI_INDEX, None));
        let requested = [p("linux/amd64"), p("linux/arm64")];
        let held = [p("linux/amd64"), p("linux/arm64/v8")];
        let decide =
            |index: Option<&[Platform]>, force| Decision::for_platforms(&exists, index, &requested, force);
        assert_eq!(decide(Some(&held), false), Decision::Skip { digest });
        assert_eq!(
            decide(Some(&held[..1]), false),
            Decision::Build {
                reason: BuildReason::IncompleteIndex
            }
        );
        assert_eq!(
            decide(None, false),
            Decision::Build {
                reason: BuildReason::NotAnIndex
            }
        );
        assert_eq!(
            decide(Some(&held), true),
            Decision::Build {
                reason: BuildReason::Forced
            }
        );
        assert_eq!(
            Decision::for_platforms(&Probe::Absent, None, &requested, false),
            Decision::Build {
                reason: BuildReason::Absent
            }
        );
        assert_eq!(
            serde_json::to_string(&BuildReason::IncompleteIndex).expect("json"),
            r#""incomplete_index""#
        );
    }

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
