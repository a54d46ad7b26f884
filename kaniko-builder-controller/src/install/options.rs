//! [`InstallOptions`]: what the install renders, and the checks on it.

use crate::crd::DEFAULT_REGISTRY_SECRET;
use crate::{DEFAULT_CONCURRENCY, Error, Result};

/// Where the controller runs (and its Lease lives), by default.
pub const DEFAULT_NAMESPACE: &str = "kaniko-builder-system";
/// The controller image by default: a placeholder. No image is published; build one with the
/// crate's `Dockerfile`, push it, and pass it to [`InstallOptions::image`].
pub const DEFAULT_IMAGE: &str = "registry.example/kaniko-builder-controller:0.1.0";
/// Replicas by default: leader election makes the second a standby.
pub const DEFAULT_REPLICAS: i32 = 2;

/// What [`manifests`](super::manifests) renders; start from [`InstallOptions::default`] and chain
/// setters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct InstallOptions {
    pub(crate) namespace: String,
    pub(crate) image: String,
    pub(crate) replicas: i32,
    pub(crate) watch_namespace: Option<String>,
    pub(crate) registry_secrets: Vec<String>,
    pub(crate) concurrency: usize,
    pub(crate) insecure_registries: Vec<String>,
}

impl Default for InstallOptions {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            image: DEFAULT_IMAGE.to_owned(),
            replicas: DEFAULT_REPLICAS,
            watch_namespace: None,
            registry_secrets: vec![DEFAULT_REGISTRY_SECRET.to_owned()],
            concurrency: DEFAULT_CONCURRENCY,
            insecure_registries: Vec::new(),
        }
    }
}

impl InstallOptions {
    /// The namespace the controller runs in and elects its leader in (created by the install).
    /// Default: [`DEFAULT_NAMESPACE`].
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The controller image. Default: [`DEFAULT_IMAGE`], a placeholder: build your own.
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = image.into();
        self
    }

    /// The Deployment's replicas; one works, the others stand by. Default: [`DEFAULT_REPLICAS`].
    pub fn replicas(mut self, replicas: i32) -> Self {
        self.replicas = replicas;
        self
    }

    /// Watch only this namespace, which must exist: the rights become a Role in it instead of a
    /// ClusterRole. Default: all namespaces.
    pub fn watch_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.watch_namespace = Some(namespace.into());
        self
    }

    /// The Secret names (in every build namespace) the controller may read: what
    /// `spec.registrySecret` may name. Replaces the list. Default: `docker-config-secret`.
    pub fn registry_secrets<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.registry_secrets = names.into_iter().map(Into::into).collect();
        self
    }

    /// At most this many builds at once (`run --concurrency`). Default: [`DEFAULT_CONCURRENCY`].
    pub fn concurrency(mut self, builds: usize) -> Self {
        self.concurrency = builds;
        self
    }

    /// A registry (`host[:port]`) the controller speaks plain HTTP to (`run
    /// --insecure-registry`). Repeatable. Default: none.
    pub fn insecure_registry(mut self, host: impl Into<String>) -> Self {
        self.insecure_registries.push(host.into());
        self
    }

    /// Checks every option; the error names the one at fault.
    pub(crate) fn validate(&self) -> Result<()> {
        dns_label("namespace", &self.namespace)?;
        if let Some(ns) = &self.watch_namespace {
            dns_label("watch_namespace", ns)?;
        }
        if self.registry_secrets.is_empty() {
            return Err(invalid("registry_secrets", "at least one Secret name is needed"));
        }
        for name in &self.registry_secrets {
            dns_subdomain("registry_secrets", name)?;
        }
        if self.image.is_empty() || self.image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "image",
                format!("{:?} is no image reference", self.image),
            ));
        }
        if self.replicas < 1 {
            return Err(invalid("replicas", format!("{} is less than 1", self.replicas)));
        }
        if self.concurrency < 1 {
            return Err(invalid("concurrency", "must be at least 1"));
        }
        for host in &self.insecure_registries {
            if host.is_empty()
                || host.contains('/')
                || host.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(invalid(
                    "insecure_registries",
                    format!("{host:?} is no host[:port]"),
                ));
            }
        }
        Ok(())
    }
}

fn invalid(option: &'static str, problem: impl Into<String>) -> Error {
    Error::InvalidOption {
        option,
        problem: problem.into(),
    }
}

/// An RFC 1123 label, as namespace names are: at most 63 of `a-z`, `0-9`, `-`, alphanumeric at
/// both ends.
fn dns_label(option: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            option,
            format!("{name:?} is no DNS-1123 label (at most 63 of a-z, 0-9, '-', alphanumeric at both ends)"),
        ))
    }
}

/// An RFC 1123 subdomain, as Secret names are: dot-separated labels, at most 253 characters.
fn dns_subdomain(option: &'static str, name: &str) -> Result<()> {
    let ok = name.len() <= 253 && name.split('.').all(|label| dns_label(option, label).is_ok());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            option,
            format!("{name:?} is no DNS-1123 subdomain (dot-separated labels of a-z, 0-9, '-')"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_option_is_named() {
        let cases = [
            (InstallOptions::default().namespace("Kaniko"), "namespace"),
            (InstallOptions::default().namespace(""), "namespace"),
            (
                InstallOptions::default().watch_namespace("a_b"),
                "watch_namespace",
            ),
            (
                InstallOptions::default().registry_secrets(Vec::<String>::new()),
                "registry_secrets",
            ),
            (
                InstallOptions::default().registry_secrets(["ok", "-bad"]),
                "registry_secrets",
            ),
            (
                InstallOptions::default().registry_secrets(["a..b"]),
                "registry_secrets",
            ),
            (InstallOptions::default().image("a b"), "image"),
            (InstallOptions::default().replicas(0), "replicas"),
            (InstallOptions::default().concurrency(0), "concurrency"),
            (
                InstallOptions::default().insecure_registry("http://x"),
                "insecure_registries",
            ),
        ];
        for (options, expected) in cases {
            match options.validate() {
                Err(Error::InvalidOption { option, .. }) => assert_eq!(option, expected, "{options:?}"),
                other => panic!("{options:?}: expected an invalid {expected}, got {other:?}"),
            }
        }
    }

    #[test]
    fn good_options_pass() {
        let options = InstallOptions::default()
            .namespace("ops")
            .watch_namespace("builds")
            .registry_secrets(["docker-config-secret", "team.registry"])
            .replicas(1)
            .insecure_registry("registry.local:5000");
        assert!(options.validate().is_ok());
    }
}
