//! Kubernetes name and label rules, and the deterministic names derived from a build.
//!
//! The checks follow `k8s.io/apimachinery/pkg/util/validation`: a DNS-1123 label
//! (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters) names namespaces, Jobs and most
//! objects; a DNS-1123 subdomain (dot-separated labels, at most 253 characters) names Secrets,
//! ConfigMaps and claims; label values are at most 63 characters of
//! `(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?`.

/// The longest DNS-1123 label, and so the longest Job name this crate derives.
pub const MAX_LABEL_LEN: usize = 63;
/// The longest DNS-1123 subdomain.
pub const MAX_SUBDOMAIN_LEN: usize = 253;
/// The prefix of every derived Job name.
pub const JOB_NAME_PREFIX: &str = "kb";
/// How many hex digits of the build hash end a derived Job name.
pub const JOB_NAME_HASH_LEN: usize = 10;

/// Whether `s` is a DNS-1123 label: lowercase alphanumerics and `-`, starting and ending with an
/// alphanumeric, 1 to 63 characters.
///
/// ```
/// use kaniko_builder_core::config::names::is_dns1123_label;
/// assert!(is_dns1123_label("kaniko"));
/// assert!(!is_dns1123_label("Kaniko"));
/// assert!(!is_dns1123_label("-kaniko"));
/// ```
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= MAX_LABEL_LEN
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter().all(|&c| alnum(c) || c == b'-')
}

/// Whether `s` is a DNS-1123 subdomain: DNS-1123 labels joined by `.`, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_SUBDOMAIN_LEN && s.split('.').all(is_dns1123_label)
}

/// Whether `s` is a valid label value: empty, or at most 63 characters of alphanumerics, `-`, `_`
/// and `.`, starting and ending with an alphanumeric.
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return true;
    }
    b.len() <= MAX_LABEL_LEN
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Whether `s` is a valid label or annotation key: an optional DNS-1123 subdomain prefix and `/`,
/// then a name of at most 63 characters of alphanumerics, `-`, `_` and `.`, starting and ending
/// with an alphanumeric.
pub fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if prefix.is_some_and(|p| !is_dns1123_subdomain(p)) {
        return false;
    }
    !name.is_empty() && is_label_value(name)
}

/// Lowercases `s` and turns every run of characters outside `[a-z0-9]` into one `-`, trimming
/// dashes at both ends.
pub(crate) fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Builds `kb-<repo>-<tag>-<hash>` within 63 characters. The tag keeps up to 20 characters, the
/// repository the rest; a repository too long keeps its end (the last path component says most).
pub(crate) fn job_name(repository: &str, tag: Option<&str>, hash_hex: &str) -> String {
    const MAX_TAG: usize = 20;
    let hash = &hash_hex[..JOB_NAME_HASH_LEN.min(hash_hex.len())];
    // "kb-" + "-" + hash; the repo and the tag share what is left.
    let budget = MAX_LABEL_LEN - JOB_NAME_PREFIX.len() - 2 - hash.len();
    let mut tag = tag.map(sanitize).unwrap_or_default();
    tag.truncate(MAX_TAG);
    let tag = tag.trim_end_matches('-').to_owned();
    let repo_budget = if tag.is_empty() {
        budget
    } else {
        budget - tag.len() - 1
    };
    let repo = sanitize(repository);
    let repo = if repo.len() > repo_budget {
        repo[repo.len() - repo_budget..]
            .trim_start_matches('-')
            .to_owned()
    } else {
        repo
    };
    let mut parts = vec![JOB_NAME_PREFIX.to_owned()];
    parts.extend([repo, tag].into_iter().filter(|p| !p.is_empty()));
    parts.push(hash.to_owned());
    parts.join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("a", true)]
    #[case("kaniko", true)]
    #[case("a-b-1", true)]
    #[case("", false)]
    #[case("A", false)]
    #[case("a_b", false)]
    #[case("a.b", false)]
    #[case("-a", false)]
    #[case("a-", false)]
    fn labels(#[case] s: &str, #[case] ok: bool) {
        assert_eq!(is_dns1123_label(s), ok, "{s:?}");
    }

    #[test]
    fn length_limits() {
        assert!(is_dns1123_label(&"a".repeat(63)));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_label_value(&"a".repeat(63)));
        assert!(!is_label_value(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
    }

    #[rstest]
    #[case("app.kubernetes.io/name", true)]
    #[case("name", true)]
    #[case("A_b.c", true)]
    #[case("bad prefix/x", false)]
    #[case("x/", false)]
    #[case("/x", false)]
    #[case("-x", false)]
    fn qualified_names(#[case] s: &str, #[case] ok: bool) {
        assert_eq!(is_qualified_name(s), ok, "{s:?}");
    }

    #[test]
    fn sanitises() {
        assert_eq!(sanitize("Team/My__App.v1"), "team-my-app-v1");
        assert_eq!(sanitize("___"), "");
    }

    #[test]
    fn job_names_fit_and_keep_the_tail() {
        let hash = "0123456789abcdef";
        assert_eq!(
            job_name("library/app", Some("v1.0.0"), hash),
            "kb-library-app-v1-0-0-0123456789"
        );
        assert_eq!(job_name("app", Some("___"), hash), "kb-app-0123456789");
        let long = format!("{}/last-component", "x".repeat(200));
        let name = job_name(&long, Some(&"T".repeat(100)), hash);
        assert!(name.len() <= MAX_LABEL_LEN, "{name}");
        assert!(is_dns1123_label(&name), "{name}");
        assert!(name.contains("last-component"), "{name}");
    }
}
