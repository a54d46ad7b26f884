//! Content digests (`algorithm:hex`) as the OCI image and distribution specs define them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

use crate::error::{DigestProblem, Error};

/// A digest algorithm registered by the OCI image spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DigestAlgorithm {
    /// `sha256`, 64 lowercase hex characters.
    Sha256,
    /// `sha384`, 96 lowercase hex characters (accepted by distribution, rarely used).
    Sha384,
    /// `sha512`, 128 lowercase hex characters.
    Sha512,
}

impl DigestAlgorithm {
    /// The name used in the `algorithm:hex` form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// Length of the hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha384 => 96,
            Self::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            "sha384" => Some(Self::Sha384),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }
}

/// A validated content digest such as `sha256:9f86d0…`.
///
/// ```
/// use kaniko_builder_core::Digest;
/// let d: Digest = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae".parse()?;
/// assert_eq!(d, Digest::sha256(b"foo"));
/// assert!("sha256:abc".parse::<Digest>().is_err());
/// # Ok::<(), kaniko_builder_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: DigestAlgorithm,
    hex: String,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    ///
    /// # Errors
    /// [`Error::InvalidDigest`] naming what is wrong: the separator, the algorithm, the length or
    /// a character of the hex part.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let err = |problem| Error::InvalidDigest {
            input: input.to_owned(),
            problem,
        };
        let (alg, hex) = input
            .split_once(':')
            .ok_or_else(|| err(DigestProblem::MissingSeparator))?;
        if !valid_algorithm_grammar(alg) {
            return Err(err(DigestProblem::InvalidAlgorithm));
        }
        let algorithm = DigestAlgorithm::from_name(alg).ok_or_else(|| {
            err(DigestProblem::UnsupportedAlgorithm {
                algorithm: alg.to_owned(),
            })
        })?;
        if let Some(bad) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(err(DigestProblem::InvalidHex { character: bad }));
        }
        if hex.len() != algorithm.hex_len() {
            return Err(err(DigestProblem::WrongLength {
                expected: algorithm.hex_len(),
                actual: hex.len(),
            }));
        }
        Ok(Self {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// The sha256 digest of `data`.
    pub fn sha256(data: &[u8]) -> Self {
        let sum = sha2::Sha256::digest(data);
        Self {
            algorithm: DigestAlgorithm::Sha256,
            hex: sum.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// The digest of `data` computed with this digest's algorithm, to verify content.
    pub fn matches(&self, data: &[u8]) -> bool {
        let hex: String = match self.algorithm {
            DigestAlgorithm::Sha256 => hex_of(&sha2::Sha256::digest(data)),
            DigestAlgorithm::Sha384 => hex_of(&sha2::Sha384::digest(data)),
            DigestAlgorithm::Sha512 => hex_of(&sha2::Sha512::digest(data)),
        };
        hex == self.hex
    }

    /// The algorithm.
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*` from the OCI image spec.
fn valid_algorithm_grammar(alg: &str) -> bool {
    !alg.is_empty()
        && alg.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const HEX64: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(Digest::sha256(b"foo").to_string(), format!("sha256:{HEX64}"));
        assert!(Digest::sha256(b"foo").matches(b"foo"));
        assert!(!Digest::sha256(b"foo").matches(b"bar"));
    }

    #[rstest]
    #[case("sha256", DigestProblem::MissingSeparator)]
    #[case(":abc", DigestProblem::InvalidAlgorithm)]
    #[case("SHA256:abc", DigestProblem::InvalidAlgorithm)]
    #[case("sha256+:abc", DigestProblem::InvalidAlgorithm)]
    #[case("md5:d41d8cd98f00b204e9800998ecf8427e", DigestProblem::UnsupportedAlgorithm { algorithm: "md5".into() })]
    #[case("sha256:abc", DigestProblem::WrongLength { expected: 64, actual: 3 })]
    #[case("sha256:2C26B46B68FFC68FF99B453C1D30413413422D706483BFA0F98A5E886266E7AE", DigestProblem::InvalidHex { character: 'C' })]
    #[case("sha256:zz", DigestProblem::InvalidHex { character: 'z' })]
    fn rejects_with_the_problem_named(#[case] input: &str, #[case] expected: DigestProblem) {
        match Digest::parse(input) {
            Err(Error::InvalidDigest { input: got, problem }) => {
                assert_eq!(got, input);
                assert_eq!(problem, expected);
            }
            other => panic!("{input}: expected InvalidDigest, got {other:?}"),
        }
    }

    #[test]
    fn serde_round_trip_is_the_string_form() {
        let d = Digest::sha256(b"x");
        let json = serde_json::to_string(&d).expect("serialize");
        assert_eq!(json, format!("\"{d}\""));
        let back: Digest = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Digest>("\"sha256:nope\"").is_err());
    }
}
