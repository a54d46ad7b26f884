//! A target platform of a multi-platform build: `os/architecture[/variant]`, as Docker, kaniko's
//! `--custom-platform` and the OCI image index spell it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// A platform such as `linux/amd64` or `linux/arm/v7`.
///
/// ```
/// use kaniko_builder_core::Platform;
/// let p: Platform = "linux/arm64/v8".parse()?;
/// assert_eq!((p.os(), p.architecture(), p.variant()), ("linux", "arm64", Some("v8")));
/// assert_eq!(p.to_string(), "linux/arm64/v8");
/// assert!("linux".parse::<Platform>().is_err());
/// # Ok::<(), kaniko_builder_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl Platform {
    /// A platform from its parts; each must be a lowercase word of letters, digits, `_`, `.`
    /// or `-`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the `platform` field.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Result<Self, Error> {
        for (part, value) in [
            ("os", Some(os)),
            ("architecture", Some(architecture)),
            ("variant", variant),
        ] {
            let Some(value) = value else { continue };
            let valid = !value.is_empty()
                && value.len() <= 32
                && value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
            if !valid {
                return Err(Error::InvalidConfig {
                    field: "platform",
                    problem: format!(
                        "{part} {value:?} must be 1 to 32 lowercase letters, digits, `_`, `.` or `-`"
                    ),
                });
            }
        }
        Ok(Self {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        })
    }

    /// `linux`, `windows`…
    pub fn os(&self) -> &str {
        &self.os
    }

    /// `amd64`, `arm64`, `arm`…
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// `v7`, `v8`…, when set.
    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// Whether an image built for `other` serves this platform: same os and architecture, and
    /// the same variant when this one names a variant.
    pub fn is_served_by(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }

    /// A DNS-label-safe form for names: `linux-arm-v7`.
    pub fn slug(&self) -> String {
        let mut s = format!("{}-{}", self.os, self.architecture);
        if let Some(v) = &self.variant {
            s.push('-');
            s.push_str(v);
        }
        s.replace(['_', '.'], "-")
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        match parts.as_slice() {
            [os, arch] => Self::new(os, arch, None),
            [os, arch, variant] => Self::new(os, arch, Some(variant)),
            _ => Err(Error::InvalidConfig {
                field: "platform",
                problem: format!("{s:?} is not os/architecture[/variant], e.g. linux/amd64"),
            }),
        }
    }
}

impl Serialize for Platform {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_names() {
        let p: Platform = "linux/amd64".parse().expect("valid");
        assert_eq!(p.to_string(), "linux/amd64");
        assert_eq!(p.slug(), "linux-amd64");
        let v: Platform = "linux/arm/v7".parse().expect("valid");
        assert_eq!(v.slug(), "linux-arm-v7");
        assert_eq!(serde_json::to_string(&v).expect("json"), r#""linux/arm/v7""#);
        assert_eq!(
            serde_json::from_str::<Platform>(r#""linux/arm/v7""#).expect("json"),
            v
        );
        for bad in [
            "",
            "linux",
            "linux/",
            "Linux/amd64",
            "linux/amd64/v8/x",
            "linux/am d64",
        ] {
            let err = bad.parse::<Platform>().expect_err(bad);
            assert_eq!(err.culprit(), Some("platform"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_variantless_request_is_served_by_any_variant() {
        let arm64: Platform = "linux/arm64".parse().expect("valid");
        let v8: Platform = "linux/arm64/v8".parse().expect("valid");
        assert!(arm64.is_served_by(&v8));
        assert!(!v8.is_served_by(&arm64));
        assert!(!arm64.is_served_by(&"linux/amd64".parse().expect("valid")));
    }
}
