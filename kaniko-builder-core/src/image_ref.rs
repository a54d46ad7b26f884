//! Image references as users write them (`app`, `team/app:v1`, `host:5000/a/b@sha256:…`), normalised
//! the way the docker CLI and the distribution project do.
//!
//! The input is checked piece by piece against distribution's reference grammar, so that an error
//! names the offending part (a tag, a path component, the digest) instead of "invalid reference
//! format", then normalised as distribution's `reference` package does (`splitDockerDomain`). A
//! test compares the result with `oci_spec::distribution::Reference`, a port of that package,
//! which this code used until it showed that compiling that port's reference regex (its
//! Unicode `\w` classes) took most of a skip run's time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;
use crate::error::{Error, ReferenceProblem};

/// The canonical name of Docker Hub in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The key the docker CLI uses for Docker Hub in `config.json`.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

const HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalised image reference: registry, repository, and a tag, a digest, or both.
///
/// ```
/// use kaniko_builder_core::ImageRef;
/// let r: ImageRef = "app".parse()?;
/// assert_eq!(r.to_string(), "docker.io/library/app:latest");
/// assert_eq!(r.registry_host(), "registry-1.docker.io");
///
/// let r: ImageRef = "registry.local:5000/a/b/c:tag".parse()?;
/// assert_eq!((r.registry(), r.repository(), r.tag()), ("registry.local:5000", "a/b/c", Some("tag")));
///
/// let err = "team/App:v1".parse::<ImageRef>().unwrap_err();
/// assert!(err.to_string().contains("\"App\" must be lowercase"), "{err}");
/// # Ok::<(), kaniko_builder_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses and normalises a reference. A missing tag and digest means `latest`.
    ///
    /// # Errors
    /// [`Error::InvalidReference`] naming the input and the part that is wrong.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let fail = |problem| Error::InvalidReference {
            input: input.to_owned(),
            problem,
        };
        if input.is_empty() {
            return Err(fail(ReferenceProblem::Empty));
        }
        if let Some((position, character)) = input
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || c.is_control() || !c.is_ascii())
        {
            return Err(fail(ReferenceProblem::InvalidCharacter { character, position }));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let digest = Digest::parse(d).map_err(|e| match e {
                    Error::InvalidDigest { problem, .. } => fail(ReferenceProblem::Digest(problem)),
                    other => other,
                })?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        let (name, tag) = split_tag(name_and_tag);
        if let Some(tag) = tag {
            check_tag(tag).map_err(fail)?;
        }
        check_name(name).map_err(fail)?;

        // Every part is valid here: split off the registry as distribution does.
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if has_host(first) => (first, rest),
            _ => (DOCKER_HUB, name),
        };
        let registry = if HUB_ALIASES.contains(&registry) {
            DOCKER_HUB.to_owned()
        } else {
            registry.to_owned()
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        if repository.len() > MAX_NAME_LEN {
            return Err(fail(ReferenceProblem::NameTooLong {
                length: repository.len(),
                max: MAX_NAME_LEN,
            }));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry as written in references, Docker Hub's aliases folded to `docker.io`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) that serves the registry API: `registry-1.docker.io` for Docker Hub.
    pub fn registry_host(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// Whether the image lives on Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.registry == DOCKER_HUB
    }

    /// The repository path, with Docker Hub's implicit `library/` made explicit.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What goes after `/manifests/` in the registry API: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The same repository with another tag (and no digest).
    ///
    /// # Errors
    /// [`Error::InvalidReference`] when `tag` is not a valid tag.
    pub fn with_tag(&self, tag: &str) -> Result<Self, Error> {
        check_tag(tag).map_err(|problem| Error::InvalidReference {
            input: format!("{}/{}:{tag}", self.registry, self.repository),
            problem,
        })?;
        Ok(Self {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository and tag, pinned to `digest`.
    #[must_use]
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// Splits `name[:tag]`: a `:` after the last `/` starts the tag (a `:` before it is a port).
fn split_tag(s: &str) -> (&str, Option<&str>) {
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[last_slash..].rfind(':') {
        Some(i) => (&s[..last_slash + i], Some(&s[last_slash + i + 1..])),
        None => (s, None),
    }
}

/// `[\w][\w.-]{0,127}` from the distribution spec.
fn check_tag(tag: &str) -> Result<(), ReferenceProblem> {
    let bad = || ReferenceProblem::InvalidTag { tag: tag.to_owned() };
    let mut chars = tag.chars();
    let first = chars.next().ok_or_else(bad)?;
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(bad());
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(bad());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(ReferenceProblem::TagTooLong {
            length: tag.len(),
            max: MAX_TAG_LEN,
        });
    }
    Ok(())
}

/// Checks each path component after the optional registry host.
fn check_name(name: &str) -> Result<(), ReferenceProblem> {
    let mut components: Vec<&str> = name.split('/').collect();
    let first = components[0];
    if components.len() > 1 && has_host(first) {
        components.remove(0);
        check_host(first)?;
    }
    let length = components
        .iter()
        .map(|c| c.len() + 1)
        .sum::<usize>()
        .saturating_sub(1);
    if length > MAX_NAME_LEN {
        return Err(ReferenceProblem::NameTooLong {
            length,
            max: MAX_NAME_LEN,
        });
    }
    for component in components {
        if component.is_empty() {
            return Err(ReferenceProblem::EmptyComponent);
        }
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceProblem::Uppercase {
                component: component.to_owned(),
            });
        }
        if !valid_path_component(component) {
            return Err(ReferenceProblem::InvalidComponent {
                component: component.to_owned(),
            });
        }
    }
    Ok(())
}

/// Whether the first of several path components names a registry (distribution's rule).
fn has_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn check_host(host: &str) -> Result<(), ReferenceProblem> {
    let bad = || ReferenceProblem::InvalidRegistry {
        registry: host.to_owned(),
    };
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err())
    {
        return Err(bad());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` from the distribution spec.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !b.first().copied().is_some_and(alnum) || !b.last().copied().is_some_and(alnum) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &b[start..i];
        let ok = sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|&x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({self})")
    }
}

impl FromStr for ImageRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DigestProblem;
    use proptest::prelude::*;
    use rstest::rstest;

    const D: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    #[rstest]
    #[case("app", "docker.io", "library/app", Some("latest"), false)]
    #[case("team/app:v1", "docker.io", "team/app", Some("v1"), false)]
    #[case("docker.io/library/app", "docker.io", "library/app", Some("latest"), false)]
    #[case("docker.io/app", "docker.io", "library/app", Some("latest"), false)]
    #[case("index.docker.io/app:1", "docker.io", "library/app", Some("1"), false)]
    #[case(
        "registry-1.docker.io/team/app",
        "docker.io",
        "team/app",
        Some("latest"),
        false
    )]
    #[case(
        "registry.local:5000/a/b/c:tag",
        "registry.local:5000",
        "a/b/c",
        Some("tag"),
        false
    )]
    #[case("localhost/app", "localhost", "app", Some("latest"), false)]
    #[case(
        "localhost:5000/app:v_1.2-rc",
        "localhost:5000",
        "app",
        Some("v_1.2-rc"),
        false
    )]
    #[case(
        "127.0.0.1:5000/my__app/x-y",
        "127.0.0.1:5000",
        "my__app/x-y",
        Some("latest"),
        false
    )]
    #[case(
        "host.example/app@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "host.example",
        "app",
        None,
        true
    )]
    #[case(
        "host.example/app:tag@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "host.example",
        "app",
        Some("tag"),
        true
    )]
    fn parses_and_normalises(
        #[case] input: &str,
        #[case] registry: &str,
        #[case] repository: &str,
        #[case] tag: Option<&str>,
        #[case] has_digest: bool,
    ) {
        let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(r.registry(), registry, "{input}");
        assert_eq!(r.repository(), repository, "{input}");
        assert_eq!(r.tag(), tag, "{input}");
        assert_eq!(
            r.digest().map(ToString::to_string),
            has_digest.then(|| D.to_owned())
        );
        // The display form parses back to the same value.
        assert_eq!(ImageRef::parse(&r.to_string()).expect("round trip"), r);
    }

    #[test]
    fn hub_api_host_and_manifest_reference() {
        let r = ImageRef::parse("app").expect("parse");
        assert_eq!(r.registry_host(), DOCKER_HUB_API_HOST);
        assert_eq!(r.manifest_reference(), "latest");
        let pinned = ImageRef::parse(&format!("h.io/app:v1@{D}")).expect("parse");
        assert_eq!(pinned.registry_host(), "h.io");
        assert_eq!(pinned.manifest_reference(), D);
        assert_eq!(pinned.name(), "h.io/app");
    }

    #[rstest]
    #[case("", ReferenceProblem::Empty)]
    #[case("app :v1", ReferenceProblem::InvalidCharacter { character: ' ', position: 3 })]
    #[case("team/App:v1", ReferenceProblem::Uppercase { component: "App".into() })]
    #[case("app:-bad", ReferenceProblem::InvalidTag { tag: "-bad".into() })]
    #[case("app:", ReferenceProblem::InvalidTag { tag: String::new() })]
    #[case("app:v1+x", ReferenceProblem::InvalidTag { tag: "v1+x".into() })]
    #[case("a//b", ReferenceProblem::EmptyComponent)]
    #[case("team/app-:v1", ReferenceProblem::InvalidComponent { component: "app-".into() })]
    #[case("team/a...b", ReferenceProblem::InvalidComponent { component: "a...b".into() })]
    #[case("host:99999/app", ReferenceProblem::InvalidRegistry { registry: "host:99999".into() })]
    #[case("-host.io/app", ReferenceProblem::InvalidRegistry { registry: "-host.io".into() })]
    #[case("app@sha256:abc", ReferenceProblem::Digest(DigestProblem::WrongLength { expected: 64, actual: 3 }))]
    #[case("app@md5:d41d8cd98f00b204e9800998ecf8427e", ReferenceProblem::Digest(DigestProblem::UnsupportedAlgorithm { algorithm: "md5".into() }))]
    fn rejects_naming_the_part(#[case] input: &str, #[case] expected: ReferenceProblem) {
        match ImageRef::parse(input) {
            Err(Error::InvalidReference { input: got, problem }) => {
                assert_eq!(got, input);
                assert_eq!(problem, expected, "{input}");
            }
            other => panic!("{input}: expected InvalidReference, got {other:?}"),
        }
    }

    #[test]
    fn long_tag_and_long_name_are_named() {
        let tag = "a".repeat(129);
        assert!(matches!(
            ImageRef::parse(&format!("app:{tag}")),
            Err(Error::InvalidReference {
                problem: ReferenceProblem::TagTooLong {
                    length: 129,
                    max: 128
                },
                ..
            })
        ));
        let name = vec!["abcdefghij"; 30].join("/");
        assert!(matches!(
            ImageRef::parse(&format!("h.io/{name}")),
            Err(Error::InvalidReference {
                problem: ReferenceProblem::NameTooLong { .. },
                ..
            })
        ));
    }

    #[test]
    fn with_tag_validates_and_drops_digest() {
        let r = ImageRef::parse(&format!("h.io/app:v1@{D}")).expect("parse");
        let t = r.with_tag("v2").expect("valid");
        assert_eq!(t.to_string(), "h.io/app:v2");
        assert!(r.with_tag("bad tag").is_err());
    }

    proptest! {
        // Whatever the input, parsing returns (no panic), and a success round-trips.
        #[test]
        fn never_panics_and_round_trips(s in "\\PC{0,80}") {
            if let Ok(r) = ImageRef::parse(&s) {
                prop_assert_eq!(ImageRef::parse(&r.to_string()).expect("round trip"), r);
            }
        }

        // The normalisation is distribution's: whatever parses here parses the same with
        // oci-spec's port of distribution's `reference` package.
        #[test]
        fn normalises_as_distribution_does(
            host in prop::option::of(prop_oneof![
                Just("localhost".to_owned()),
                Just("docker.io".to_owned()),
                Just("index.docker.io".to_owned()),
                "[a-z0-9-]{1,6}(\\.[a-z0-9-]{1,4}){0,2}(:[0-9]{1,5})?",
            ]),
            path in prop::collection::vec("[a-z0-9]{1,4}([._-]{1,2}[a-z0-9]{1,3})?|[a-zA-Z0-9:._-]{1,6}", 1..4),
            tag in prop::option::of("[A-Za-z0-9_.-]{1,8}"),
            digest in any::<bool>(),
        ) {
            let mut input = host.map(|h| format!("{h}/")).unwrap_or_default() + &path.join("/");
            if let Some(t) = tag {
                input = format!("{input}:{t}");
            }
            if digest {
                input = format!("{input}@{D}");
            }
            if let Ok(ours) = ImageRef::parse(&input) {
                let theirs = oci_spec::distribution::Reference::try_from(input.as_str())
                    .map_err(|e| TestCaseError::fail(format!("{input}: oci-spec says {e}")))?;
                let registry = if HUB_ALIASES.contains(&theirs.registry()) { DOCKER_HUB } else { theirs.registry() };
                prop_assert_eq!(ours.registry(), registry, "{}", input);
                prop_assert_eq!(ours.repository(), theirs.repository(), "{}", input);
                prop_assert_eq!(ours.tag(), theirs.tag(), "{}", input);
                let digest = ours.digest().map(ToString::to_string);
                prop_assert_eq!(digest.as_deref(), theirs.digest(), "{}", input);
            }
        }

        #[test]
        fn generated_valid_references_parse(
            host in "[a-z][a-z0-9]{0,8}\\.[a-z]{2,4}(:[1-9][0-9]{1,3})?",
            path in prop::collection::vec("[a-z0-9]{1,5}([._-][a-z0-9]{1,5})?", 1..4),
            tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}",
        ) {
            let input = format!("{host}/{}:{tag}", path.join("/"));
            let r = ImageRef::parse(&input).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(r.registry(), host.as_str());
            prop_assert_eq!(r.tag(), Some(tag.as_str()));
        }
    }
}
