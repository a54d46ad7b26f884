//! Checks of the values [`JobOptions`](super::JobOptions) carries, with errors naming the option.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kaniko_builder_core::config::names;

use crate::error::Error;

/// Whether `s` is a Kubernetes resource quantity: a signed decimal number with an optional binary
/// (`Ki` … `Ei`), decimal (`n`, `u`, `m`, `k`, `M` … `E`) or exponent (`e3`) suffix.
pub(crate) fn is_quantity(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    if number.matches('.').count() > 1 || (whole.is_empty() && fraction.is_none_or(str::is_empty)) {
        return false;
    }
    match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P"
        | "E" => true,
        exp => {
            let Some(rest) = exp.strip_prefix(['e', 'E']) else {
                return false;
            };
            let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
        }
    }
}

/// Every request and limit must be a non-negative quantity.
pub(crate) fn resources(option: &'static str, r: &ResourceRequirements) -> Result<(), Error> {
    for (part, map) in [("requests", &r.requests), ("limits", &r.limits)] {
        for (resource, q) in map.iter().flatten() {
            if !is_quantity(&q.0) || q.0.starts_with('-') {
                return Err(Error::InvalidQuantity {
                    field: format!("{option}.{part}.{resource}"),
                    quantity: q.0.clone(),
                });
            }
        }
    }
    Ok(())
}

pub(crate) fn subdomain(kind: &'static str, name: &str) -> Result<(), Error> {
    if names::is_dns1123_subdomain(name) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            kind,
            name: name.to_owned(),
            problem: "must be a DNS-1123 subdomain: lowercase alphanumerics, `-` and `.`, at most 253",
        })
    }
}

pub(crate) fn label(kind: &'static str, name: &str) -> Result<(), Error> {
    if names::is_dns1123_label(name) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            kind,
            name: name.to_owned(),
            problem: "must be a DNS-1123 label: lowercase alphanumerics and `-`, at most 63",
        })
    }
}

pub(crate) fn labels(map: &BTreeMap<String, String>) -> Result<(), Error> {
    for (key, value) in map {
        if !names::is_qualified_name(key) {
            return Err(Error::InvalidMetadata {
                kind: "label",
                key: key.clone(),
                problem: "the key must be [prefix/]name, name at most 63 alphanumerics, `-`, `_`, `.`",
            });
        }
        if !names::is_label_value(value) {
            return Err(Error::InvalidMetadata {
                kind: "label",
                key: key.clone(),
                problem: "the value must be at most 63 alphanumerics, `-`, `_`, `.`, alphanumeric at both ends",
            });
        }
    }
    Ok(())
}

pub(crate) fn annotations(map: &BTreeMap<String, String>) -> Result<(), Error> {
    for key in map.keys() {
        if !names::is_qualified_name(key) {
            return Err(Error::InvalidMetadata {
                kind: "annotation",
                key: key.clone(),
                problem: "the key must be [prefix/]name, name at most 63 alphanumerics, `-`, `_`, `.`",
            });
        }
    }
    Ok(())
}

pub(crate) fn image(option: &'static str, image: &str) -> Result<(), Error> {
    kaniko_builder_core::ImageRef::parse(image)
        .map(drop)
        .map_err(|e| Error::InvalidOption {
            option,
            problem: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("1", true)]
    #[case("500m", true)]
    #[case("0.5", true)]
    #[case(".5", true)]
    #[case("1.", true)]
    #[case("512Mi", true)]
    #[case("1Gi", true)]
    #[case("2k", true)]
    #[case("1e3", true)]
    #[case("1E-3", true)]
    #[case("+1", true)]
    #[case("", false)]
    #[case("Mi", false)]
    #[case("1 Gi", false)]
    #[case("1GB", false)]
    #[case("1.2.3", false)]
    #[case("1e", false)]
    #[case("1gi", false)]
    #[case(".", false)]
    fn quantities(#[case] q: &str, #[case] ok: bool) {
        assert_eq!(is_quantity(q), ok, "{q:?}");
    }
}
