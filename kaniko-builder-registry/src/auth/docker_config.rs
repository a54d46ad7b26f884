//! Reading a docker `config.json` and picking the credentials for a registry the way the docker
//! CLI does: `credHelpers[host]`, then `credsStore`, then `auths`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kaniko_builder_core::image_ref::{DOCKER_HUB, DOCKER_HUB_CONFIG_KEY};
use serde::Deserialize;

use super::cred_helper;
use super::credentials::Credentials;
use crate::error::{Error, Result};

const HUB_HOSTS: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Where a [`DockerConfig`] came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigOrigin {
    /// A file on disk.
    File(PathBuf),
    /// JSON handed over in memory (e.g. a `kubernetes.io/dockerconfigjson` secret payload).
    Inline,
    /// No config file was found: anonymous access everywhere.
    None,
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Inline => f.write_str("<inline config.json>"),
            Self::None => f.write_str("<no config.json>"),
        }
    }
}

#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawAuth>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// A parsed docker `config.json`. `Debug` shows which registries have entries, never a secret.
#[derive(Clone, Default)]
pub struct DockerConfig {
    origin: Option<ConfigOrigin>,
    auths: BTreeMap<String, Credentials>,
    cred_helpers: BTreeMap<String, String>,
    creds_store: Option<String>,
    helper_path: Option<std::ffi::OsString>,
}

impl DockerConfig {
    /// No credentials for any registry.
    pub fn anonymous() -> Self {
        Self {
            origin: Some(ConfigOrigin::None),
            ..Self::default()
        }
    }

    /// Parses `config.json` content, or the `.dockerconfigjson` payload of a Kubernetes secret.
    ///
    /// # Errors
    /// [`Error::ConfigParse`] for malformed JSON (the message gives line and column, never the
    /// content), [`Error::InvalidAuthEntry`] naming the key of an entry whose `auth` is not
    /// base64 `user:password`.
    pub fn from_json(json: &str) -> Result<Self> {
        Self::parse(json, ConfigOrigin::Inline)
    }

    /// Reads a config file, or `config.json` inside a directory (as `$DOCKER_CONFIG` names one).
    ///
    /// # Errors
    /// [`Error::ConfigRead`] with the path when it cannot be read, else as [`Self::from_json`].
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path.push("config.json");
        }
        let text = std::fs::read_to_string(&path).map_err(|source| Error::ConfigRead {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text, ConfigOrigin::File(path))
    }

    /// Loads the config the docker CLI would: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json`. A missing file means anonymous access, not an error.
    ///
    /// # Errors
    /// As [`Self::from_path`] for a file that exists but cannot be read or parsed.
    pub fn load_default() -> Result<Self> {
        match default_path() {
            Some(path) if path.exists() => Self::from_path(path),
            _ => Ok(Self::anonymous()),
        }
    }

    fn parse(json: &str, origin: ConfigOrigin) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(json).map_err(|e| Error::ConfigParse {
            origin: origin.to_string(),
            // Line and column only: serde's message can quote the offending value, a secret.
            line: e.line(),
            column: e.column(),
            category: format!("{:?}", e.classify()).to_lowercase(),
        })?;
        let mut auths = BTreeMap::new();
        for (key, entry) in raw.auths {
            let creds = decode_entry(entry).map_err(|problem| Error::InvalidAuthEntry {
                origin: origin.to_string(),
                key: key.clone(),
                problem,
            })?;
            auths.insert(key, creds);
        }
        Ok(Self {
            origin: Some(origin),
            auths,
            cred_helpers: raw.cred_helpers,
            creds_store: raw.creds_store.filter(|s| !s.is_empty()),
            helper_path: None,
        })
    }

    /// Where to look for `docker-credential-<name>` programs instead of `$PATH` (a `PATH`-style
    /// list), for programs that ship their helpers in a directory of their own.
    #[must_use]
    pub fn helper_path(mut self, path: impl Into<std::ffi::OsString>) -> Self {
        self.helper_path = Some(path.into());
        self
    }

    /// Where this config came from.
    pub fn origin(&self) -> &ConfigOrigin {
        self.origin.as_ref().unwrap_or(&ConfigOrigin::None)
    }

    /// The credentials for `registry` (as in [`kaniko_builder_core::ImageRef::registry`]:
    /// `docker.io` for Docker Hub, else `host[:port]`), running a credential helper if the config
    /// names one for it. No entry means [`Credentials::Anonymous`].
    ///
    /// # Errors
    /// A credential helper that is missing, fails, or prints something that is not its JSON.
    /// A helper's "credentials not found" is anonymous access, as in the docker CLI.
    pub async fn resolve(&self, registry: &str) -> Result<Credentials> {
        let hub = HUB_HOSTS.contains(&registry);
        let key = if hub { DOCKER_HUB_CONFIG_KEY } else { registry };
        let helper = self
            .cred_helpers
            .get(key)
            .or_else(|| {
                self.cred_helpers
                    .iter()
                    .find(|(k, _)| matches_registry(k, registry, hub))
                    .map(|(_, v)| v)
            })
            .or(self.creds_store.as_ref());
        if let Some(helper) = helper {
            return cred_helper::get(helper, key, registry, self.helper_path.as_deref()).await;
        }
        Ok(self.auth_entry(key, registry, hub).cloned().unwrap_or_default())
    }

    fn auth_entry(&self, key: &str, registry: &str, hub: bool) -> Option<&Credentials> {
        self.auths.get(key).or_else(|| {
            self.auths
                .iter()
                .find(|(k, _)| matches_registry(k, registry, hub))
                .map(|(_, v)| v)
        })
    }

    /// Registries with an `auths` entry, credential helper or a store (for diagnostics).
    pub fn registries(&self) -> impl Iterator<Item = &str> {
        self.auths
            .keys()
            .chain(self.cred_helpers.keys())
            .map(String::as_str)
    }
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// The docker CLI's `ConvertToHostname`: strip the scheme and any path.
fn hostname_of(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

fn matches_registry(key: &str, registry: &str, hub: bool) -> bool {
    let host = hostname_of(key);
    if hub {
        HUB_HOSTS.contains(&host) || host == DOCKER_HUB
    } else {
        host == registry
    }
}

fn decode_entry(entry: RawAuth) -> std::result::Result<Credentials, &'static str> {
    if let Some(token) = entry.registrytoken.filter(|t| !t.is_empty()) {
        return Ok(Credentials::RegistryToken { token: token.into() });
    }
    if let Some(token) = entry.identitytoken.filter(|t| !t.is_empty()) {
        return Ok(Credentials::IdentityToken { token: token.into() });
    }
    if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
        let bytes = STANDARD
            .decode(auth.trim())
            .map_err(|_| "`auth` is not valid base64")?;
        let text = String::from_utf8(bytes).map_err(|_| "`auth` does not decode to UTF-8")?;
        let (user, pass) = text
            .split_once(':')
            .ok_or("`auth` does not decode to user:password")?;
        return Ok(Credentials::basic(user, pass.trim_end_matches('\0')));
    }
    match (entry.username, entry.password) {
        (Some(u), Some(p)) if !u.is_empty() || !p.is_empty() => Ok(Credentials::basic(u, p)),
        _ => Ok(Credentials::Anonymous),
    }
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("origin", self.origin())
            .field("auths", &self.auths.keys().collect::<Vec<_>>())
            .field("cred_helpers", &self.cred_helpers)
            .field("creds_store", &self.creds_store)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[tokio::test]
    async fn every_key_spelling_resolves() {
        let json = format!(
            r#"{{"auths":{{
                "https://index.docker.io/v1/":{{"auth":"{}"}},
                "registry.local:5000":{{"username":"bob","password":"pw-b"}},
                "https://quay.example/v2/":{{"auth":"{}"}},
                "tokens.example":{{"identitytoken":"refresh-xyz"}},
                "direct.example":{{"registrytoken":"bearer-xyz"}}
            }}}}"#,
            b64("alice:pw-a"),
            b64("carol:pw:with:colons")
        );
        let cfg = DockerConfig::from_json(&json).expect("parse");
        assert_eq!(
            cfg.resolve("docker.io").await.expect("hub"),
            Credentials::basic("alice", "pw-a")
        );
        assert_eq!(
            cfg.resolve("index.docker.io").await.expect("hub alias"),
            Credentials::basic("alice", "pw-a")
        );
        assert_eq!(
            cfg.resolve("registry.local:5000").await.expect("host:port"),
            Credentials::basic("bob", "pw-b")
        );
        assert_eq!(
            cfg.resolve("quay.example").await.expect("url key"),
            Credentials::basic("carol", "pw:with:colons")
        );
        assert_eq!(
            cfg.resolve("tokens.example").await.expect("identity"),
            Credentials::IdentityToken {
                token: "refresh-xyz".into()
            }
        );
        assert_eq!(
            cfg.resolve("direct.example").await.expect("registry token"),
            Credentials::RegistryToken {
                token: "bearer-xyz".into()
            }
        );
        assert_eq!(
            cfg.resolve("other.example").await.expect("none"),
            Credentials::Anonymous
        );
    }

    #[tokio::test]
    async fn docker_io_key_counts_for_hub() {
        let json = format!(r#"{{"auths":{{"docker.io":{{"auth":"{}"}}}}}}"#, b64("u:p"));
        let cfg = DockerConfig::from_json(&json).expect("parse");
        assert_eq!(
            cfg.resolve("docker.io").await.expect("hub"),
            Credentials::basic("u", "p")
        );
    }

    #[test]
    fn malformed_json_names_the_origin_and_position_but_not_the_content() {
        let err = DockerConfig::from_json(r#"{"auths": {"h": {"auth": "c2VjcmV0LXZhbHVl"}"#)
            .expect_err("truncated");
        let msg = err.to_string();
        assert!(
            msg.contains("<inline config.json>") && msg.contains("line 1"),
            "{msg}"
        );
        let err = DockerConfig::from_json(r#"{"auths": "topsecret-value"}"#).expect_err("wrong type");
        assert!(!err.to_string().contains("topsecret"), "{err}");
        assert!(!format!("{err:?}").contains("topsecret"), "{err:?}");
    }

    #[test]
    fn bad_auth_field_names_the_key() {
        for (auth, problem) in [
            ("!!!not-base64", "base64"),
            (&b64("no-colon-here") as &str, "user:password"),
        ] {
            let json = format!(r#"{{"auths":{{"bad.example":{{"auth":"{auth}"}}}}}}"#);
            match DockerConfig::from_json(&json) {
                Err(Error::InvalidAuthEntry { key, problem: p, .. }) => {
                    assert_eq!(key, "bad.example");
                    assert!(p.contains(problem), "{p}");
                }
                other => panic!("expected InvalidAuthEntry, got {other:?}"),
            }
        }
    }

    #[test]
    fn unreadable_path_is_named_and_missing_default_is_anonymous() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.json");
        match DockerConfig::from_path(&missing) {
            Err(Error::ConfigRead { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected ConfigRead, got {other:?}"),
        }
        // A directory means config.json inside it, as $DOCKER_CONFIG does.
        std::fs::write(dir.path().join("config.json"), r#"{"auths":{}}"#).expect("write");
        let cfg = DockerConfig::from_path(dir.path()).expect("dir");
        assert_eq!(cfg.origin(), &ConfigOrigin::File(dir.path().join("config.json")));
    }

    #[test]
    fn debug_lists_registries_not_secrets() {
        let json = format!(
            r#"{{"auths":{{"h.example":{{"auth":"{}"}}}}}}"#,
            b64("user:very-secret-pw")
        );
        let cfg = DockerConfig::from_json(&json).expect("parse");
        let shown = format!("{cfg:?}");
        assert!(shown.contains("h.example"), "{shown}");
        assert!(
            !shown.contains("very-secret-pw") && !shown.contains(&b64("user:very-secret-pw")),
            "{shown}"
        );
    }
}
