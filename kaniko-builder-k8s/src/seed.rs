//! The original tool's configuration read from where it lived: the process environment (as the
//! seed's containers saw the ConfigMap) or a ConfigMap object.

use k8s_openapi::api::core::v1::ConfigMap;
use kaniko_builder_core::Error as CoreError;
use kaniko_builder_core::config::{SeedConfig, seed};

use crate::error::Result;

/// Reads `DOCKER_FILENAME`, `DOCKER_IMAGENAME`, `DOCKER_IMAGETAG` and `FORCE_BUILD` from the
/// environment; `registry` (`host[:port]`) puts the image on a registry other than Docker Hub. A
/// variable that is not valid UTF-8 is an error naming it, not an absent key.
///
/// # Errors
/// [`Error::Config`](crate::Error::Config) wrapping
/// [`InvalidSeedValue`](kaniko_builder_core::Error::InvalidSeedValue) naming the key.
pub fn from_env(registry: Option<&str>) -> Result<SeedConfig> {
    from_lookup_os(|key| std::env::var_os(key), registry)
}

fn from_lookup_os(
    mut lookup: impl FnMut(&str) -> Option<std::ffi::OsString>,
    registry: Option<&str>,
) -> Result<SeedConfig> {
    let mut values = std::collections::BTreeMap::new();
    for key in [
        seed::DOCKER_FILENAME,
        seed::DOCKER_IMAGENAME,
        seed::DOCKER_IMAGETAG,
        seed::FORCE_BUILD,
    ] {
        if let Some(value) = lookup(key) {
            let value = value.into_string().map_err(|_| CoreError::InvalidSeedValue {
                key,
                problem: "is not valid UTF-8".to_owned(),
            })?;
            values.insert(key.to_owned(), value);
        }
    }
    Ok(SeedConfig::from_data(&values, registry)?)
}

/// Reads the seed keys from a ConfigMap's `data` (a ConfigMap without data has no keys).
///
/// # Errors
/// As [`from_env`].
pub fn from_config_map(config_map: &ConfigMap, registry: Option<&str>) -> Result<SeedConfig> {
    let empty = std::collections::BTreeMap::new();
    Ok(SeedConfig::from_data(
        config_map.data.as_ref().unwrap_or(&empty),
        registry,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::ffi::OsString;

    #[test]
    fn reads_a_config_map() {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([
                ("DOCKER_IMAGENAME".to_owned(), "example".to_owned()),
                ("DOCKER_IMAGETAG".to_owned(), "v1.0.0".to_owned()),
                ("FORCE_BUILD".to_owned(), "Y".to_owned()),
            ])),
            ..ConfigMap::default()
        };
        let seed = from_config_map(&cm, Some("registry.local:5000")).expect("valid");
        assert_eq!(seed.image.to_string(), "registry.local:5000/example:v1.0.0");
        assert!(seed.force);
        let err = from_config_map(&ConfigMap::default(), None).expect_err("no data");
        assert!(err.to_string().contains("DOCKER_IMAGENAME"), "{err}");
    }

    #[test]
    fn non_unicode_values_are_invalid_not_absent() {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            for bad in ["DOCKER_FILENAME", "DOCKER_IMAGETAG"] {
                let lookup = |key: &str| match key {
                    k if k == bad => Some(OsString::from_vec(vec![b'v', 0xff])),
                    "DOCKER_IMAGENAME" => Some(OsString::from("example")),
                    "DOCKER_IMAGETAG" => Some(OsString::from("v1")),
                    _ => None,
                };
                let err = from_lookup_os(lookup, None).expect_err("invalid");
                assert_eq!(err.to_string(), format!("invalid {bad}: is not valid UTF-8"));
            }
            let lookup = |key: &str| match key {
                "DOCKER_IMAGENAME" => Some(OsString::from("example")),
                "DOCKER_IMAGETAG" => Some(OsString::from("v1")),
                _ => None,
            };
            assert_eq!(
                from_lookup_os(lookup, None).expect("valid").image.to_string(),
                "docker.io/library/example:v1"
            );
        }
    }
}
