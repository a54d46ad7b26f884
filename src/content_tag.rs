//! Content-derived tags: "the tag exists" means "these exact inputs were already built".
//!
//! See [`content_tag`].

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::Result;
use kaniko_builder_context::{PackOptions, hash};

/// The prefix of every content tag.
pub const CONTENT_TAG_PREFIX: &str = "kb-";

/// The content tag of a build from the directory `dir`. It hashes, with sha256:
/// - a version prefix (`kaniko-builder content tag v2`);
/// - the build context as it would be sent: the digest of the same reproducible archive the
///   runner uploads, uncompressed ([`context::hash`](crate::context::hash), its `diff_id`,
///   computed while streaming: nothing is held in memory) — so `.dockerignore` is honoured with
///   Docker's semantics, paths are relative and `/`-separated in byte order, modes are
///   normalised to 0644/0755, and mtimes, owners and the absolute location of the directory play
///   no part;
/// - the Dockerfile's path within the context (its content is in the archive);
/// - the build args, sorted by name, and the target stage.
///
/// The tag is `kb-` followed by the first 16 hex digits of the hash. It is the same on every
/// machine and every run for the same inputs, and changes when any file's path, content or
/// executable bit, the Dockerfile, a build arg or the target changes. Files excluded by
/// `.dockerignore` do not affect it.
///
/// Version 2 (this one) hashes the archive's digest where version 1 hashed the archive itself,
/// which needed it whole in memory: the same inputs give another tag than in releases before
/// the streaming upload, so images tagged by version 1 are built once more.
///
/// Blocking IO: call it from `spawn_blocking` in async code for large contexts.
///
/// Use it to name the image before building the [`BuildConfig`](crate::BuildConfig):
///
/// ```
/// # fn demo() -> Result<(), kaniko_builder::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
/// let tag = kaniko_builder::content_tag(dir.path(), "Dockerfile", &Default::default(), None)?;
/// assert!(tag.starts_with("kb-") && tag.len() == 19);
/// let image: kaniko_builder::ImageRef = "registry.local:5000/team/app".parse()?;
/// let config = kaniko_builder::BuildConfig::builder(image.with_tag(&tag)?)
///     .context(kaniko_builder::ContextSource::LocalDir(dir.path().to_owned()))
///     .build()?;
/// # let _ = config;
/// # Ok(()) }
/// # demo().unwrap();
/// ```
///
/// # Errors
/// [`Error::Context`](crate::Error::Context) when the directory cannot be read or the Dockerfile is not in it.
pub fn content_tag(
    dir: &Path,
    dockerfile: &str,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Result<String> {
    let content = hash(dir, dockerfile, &PackOptions::default())?;
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        h.update(name.as_bytes());
        h.update((value.len() as u64).to_be_bytes());
        h.update(value);
    };
    field("version", b"kaniko-builder content tag v2");
    field("context", content.diff_id.to_string().as_bytes());
    field("dockerfile", dockerfile.as_bytes());
    for (k, v) in build_args {
        field("arg", k.as_bytes());
        field("value", v.as_bytes());
    }
    if let Some(t) = target {
        field("target", t.as_bytes());
    }
    let hex: String = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(format!("{CONTENT_TAG_PREFIX}{hex}"))
}

#[cfg(test)]
mod tests;
