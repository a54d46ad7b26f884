//! Where kaniko finds the build context.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::{DEFAULT_CONTEXT_DIR, names};
use crate::Digest;

/// Where kaniko finds the build context.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "source")]
#[non_exhaustive]
pub enum ContextSource {
    /// A directory on the node, mounted with `hostPath` (the seed's way; the node must hold the
    /// sources, so this suits single-node clusters).
    #[serde(rename = "hostpath")]
    HostPath(PathBuf),
    /// A PersistentVolumeClaim in the build namespace, optionally a sub-directory of it.
    #[serde(rename = "pvc")]
    Pvc {
        /// The claim's name.
        claim: String,
        /// A relative directory inside the volume.
        sub_path: Option<String>,
    },
    /// A directory on the orchestrator's machine, uploaded into an `emptyDir` once the Pod runs;
    /// the init container waits for it.
    #[serde(rename = "upload")]
    LocalDir(PathBuf),
    /// A git repository that kaniko clones itself (`https://` or `http://` URL, no credentials in it).
    #[serde(rename = "git")]
    Git {
        /// The repository URL.
        url: String,
        /// A full ref (`refs/heads/main`, `refs/tags/v1`, `refs/pull/1/head`) or a 40-hex commit;
        /// the default branch when absent.
        reference: Option<String>,
        /// A relative directory inside the repository.
        sub_path: Option<String>,
    },
    /// A tarball kaniko fetches itself: `s3://bucket/key.tar.gz`, `gs://bucket/key.tar.gz` or
    /// `https://host/path.tar.gz`.
    #[serde(rename = "url")]
    Url(String),
    /// A gzipped tar of the context already pushed as a blob of the destination repository (by
    /// a client, e.g. with `kaniko_builder_context::pack_stream` and the registry client's
    /// `push_blob_stream`): the init container fetches it by digest with the build's
    /// credentials and unpacks it, as for an uploaded [`LocalDir`](Self::LocalDir).
    #[serde(rename = "blob")]
    Blob(Digest),
}

impl ContextSource {
    /// The kind as the init container's `KB_CONTEXT_KIND` spells it: `hostpath`, `pvc`, `upload`
    /// (a local directory or a pushed blob: both arrive as a blob), `git` or `url`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::HostPath(_) => "hostpath",
            Self::Pvc { .. } => "pvc",
            Self::LocalDir(_) | Self::Blob(_) => "upload",
            Self::Git { .. } => "git",
            Self::Url(_) => "url",
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        match self {
            Self::HostPath(path) => {
                let s = path.to_str().ok_or("host path is not UTF-8")?;
                if !path.is_absolute() {
                    return Err(format!("host path {s:?} must be absolute"));
                }
                if has_parent_or_control(path) {
                    return Err(format!(
                        "host path {s:?} must not contain `..` or control characters"
                    ));
                }
                Ok(())
            }
            Self::Pvc { claim, sub_path } => {
                if !names::is_dns1123_subdomain(claim) {
                    return Err(format!("claim {claim:?} is not a DNS-1123 subdomain"));
                }
                if let Some(sub) = sub_path {
                    check_relative(sub).map_err(|p| format!("sub_path {sub:?} {p}"))?;
                }
                Ok(())
            }
            Self::LocalDir(path) => {
                if path.as_os_str().is_empty() {
                    return Err("local directory is empty".to_owned());
                }
                Ok(())
            }
            Self::Git {
                url,
                reference,
                sub_path,
            } => {
                check_url(url, &["https", "http"])?;
                if url.contains('#') {
                    return Err(format!("git url {url:?} must not contain `#`; use reference"));
                }
                if let Some(r) = reference
                    && (r.is_empty()
                        || r.contains('#')
                        || r.chars().any(|c| c.is_whitespace() || c.is_control()))
                {
                    return Err(format!(
                        "git reference {r:?} must be non-empty, without `#` or spaces"
                    ));
                }
                if let Some(r) = reference
                    && !(r.starts_with("refs/")
                        || (r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit())))
                {
                    return Err(format!(
                        "git reference {r:?} must be a full ref (refs/heads/main, refs/tags/v1) or a 40-hex commit"
                    ));
                }
                if let Some(sub) = sub_path {
                    check_relative(sub).map_err(|p| format!("sub_path {sub:?} {p}"))?;
                }
                Ok(())
            }
            Self::Url(url) => check_url(url, &["s3", "gs", "https"]),
            // A parsed digest is valid by construction.
            Self::Blob(_) => Ok(()),
        }
    }
}

impl Default for ContextSource {
    /// The seed's `hostPath` at `/workspace`.
    fn default() -> Self {
        Self::HostPath(PathBuf::from(DEFAULT_CONTEXT_DIR))
    }
}

fn has_parent_or_control(path: &Path) -> bool {
    path.components().any(|c| c == Component::ParentDir)
        || path.to_string_lossy().chars().any(char::is_control)
}

/// A non-empty relative path without `..` or control characters.
pub(super) fn check_relative(s: &str) -> Result<(), &'static str> {
    let path = Path::new(s);
    if s.is_empty() {
        return Err("is empty");
    }
    if path.is_absolute() || s.starts_with('/') {
        return Err("must be relative");
    }
    if has_parent_or_control(path) {
        return Err("must not contain `..` or control characters");
    }
    Ok(())
}

fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "url {url:?} has no scheme; expected one of {}",
            schemes.join(", ")
        ));
    };
    if !schemes.contains(&scheme) {
        return Err(format!(
            "url scheme {scheme:?} is not one of {}",
            schemes.join(", ")
        ));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("url {url:?} has no host"));
    }
    if authority.contains('@') {
        return Err("url must not embed credentials".to_owned());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("url {url:?} contains whitespace or control characters"));
    }
    Ok(())
}
