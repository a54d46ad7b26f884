//! `WWW-Authenticate` challenges from a registry, parsed with the `http-auth` crate.

/// How a registry wants to be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// HTTP Basic.
    Basic,
    /// Docker's token flow: get a bearer token from `realm`.
    Bearer { realm: String, service: Option<String> },
}

/// Picks the first challenge we can answer (Bearer or Basic) from a `WWW-Authenticate` value.
/// `Err` holds a description of what is wrong with the header (never credentials: it is the
/// registry's own header).
pub(crate) fn parse(header: &str) -> Result<Challenge, String> {
    if header.trim().is_empty() {
        return Err("401 without a WWW-Authenticate challenge".to_owned());
    }
    let challenges = http_auth::parse_challenges(header)
        .map_err(|e| format!("unparsable WWW-Authenticate {header:?}: {e}"))?;
    for c in &challenges {
        let param = |name: &str| {
            c.params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_unescaped())
        };
        if c.scheme.eq_ignore_ascii_case("bearer") {
            let realm =
                param("realm").ok_or_else(|| format!("Bearer challenge without realm in {header:?}"))?;
            if !(realm.starts_with("https://") || realm.starts_with("http://")) {
                return Err(format!("Bearer realm {realm:?} is not an http(s) URL"));
            }
            return Ok(Challenge::Bearer {
                realm,
                service: param("service"),
            });
        }
        if c.scheme.eq_ignore_ascii_case("basic") {
            return Ok(Challenge::Basic);
        }
    }
    Err(format!("no Bearer or Basic challenge in {header:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        Challenge::Bearer { realm: "https://auth.example/token".into(), service: Some("registry.example".into()) }
    )]
    #[case(r#"bearer realm="http://127.0.0.1:1/t""#, Challenge::Bearer { realm: "http://127.0.0.1:1/t".into(), service: None })]
    #[case(r#"Basic realm="Registry Realm""#, Challenge::Basic)]
    #[case(r#"Negotiate, Basic realm="x""#, Challenge::Basic)]
    fn parses(#[case] header: &str, #[case] expected: Challenge) {
        assert_eq!(parse(header), Ok(expected));
    }

    #[rstest]
    #[case("", "without a WWW-Authenticate")]
    #[case("Digest realm=\"x\", nonce=\"y\"", "no Bearer or Basic")]
    #[case("Bearer", "without realm")]
    #[case(r#"Bearer service="x""#, "without realm")]
    #[case(r#"Bearer realm="file:///etc/passwd""#, "not an http(s) URL")]
    #[case(r#"Bearer realm="unterminated"#, "unparsable")]
    #[case("Negotiate abc==", "unparsable")]
    fn rejects(#[case] header: &str, #[case] expected: &str) {
        let err = parse(header).expect_err(header);
        assert!(err.contains(expected), "{header}: {err}");
    }
}
