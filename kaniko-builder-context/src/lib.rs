//! A local build context packed into a reproducible `tar.gz`: the same directory gives the same
//! bytes (and so the same blob digest) on any machine.
//!
//! - Paths are relative to the context root, `/`-separated, sorted bytewise; parents come first.
//! - `.dockerignore` at the root is honoured with Docker's semantics ([`DockerIgnore`]); the
//!   Dockerfile and `.dockerignore` themselves are always sent (as Docker does; kaniko reads both).
//! - Headers are normalised: mtime 0, uid/gid 0, no user or group names, mode 0644 (0755 when
//!   any execute bit is set) for files, 0755 for directories, 0777 for symlinks; gzip with mtime
//!   0 and no file name.
//! - Symlinks are stored as links and never followed: nothing outside the context is read.
//!   Sockets, FIFOs and devices are refused (unless ignored). Hard links are stored as files.
//!
//! Packing streams: each file goes from disk through tar, gzip and two sha256 hashers to the
//! output in small pieces, so memory stays bounded whatever the files' sizes (it grows only with
//! the number of entries, whose paths are listed and sorted first). The entry points:
//!
//! - [`hash`]: the context's [`ContextDigest`] (the `diff_id` of its tar) without compressing;
//! - [`pack_to`]: the `tar.gz` written to any [`std::io::Write`];
//! - [`pack_stream`]: the `tar.gz` as an async stream of chunks, packed on a blocking thread;
//! - [`pack`]: the `tar.gz` in memory, for small contexts and tests.
//!
//! ```
//! use kaniko_builder_context::{PackOptions, hash, pack_to};
//! # let dir = tempfile::tempdir()?;
//! # std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n")?;
//! # let root = dir.path();
//! # let out_dir = tempfile::tempdir()?;
//! # let out = out_dir.path();
//! // let root = std::path::Path::new("./app");
//! let options = PackOptions::default().max_bytes(4 << 30);
//! let file = std::fs::File::create(out.join("context.tar.gz"))?;
//! let summary = pack_to(root, "Dockerfile", &options, std::io::BufWriter::new(file))?;
//! println!("{} ({} bytes), {} entries", summary.digest, summary.compressed, summary.content.entries);
//! // Hashing alone gives the same diff_id, cheaply.
//! assert_eq!(hash(root, "Dockerfile", &options)?, summary.content);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod archive;
mod dockerignore;
mod stream;
mod walk;

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kaniko_builder_core::Digest;

use crate::archive::{Hashing, Output, write_err};
pub use dockerignore::{DockerIgnore, PatternError};
pub use stream::{PackStream, pack_stream};

/// The gzip level used unless [`PackOptions::compression_level`] says otherwise: 6, gzip's own
/// default.
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 6;

/// Options of [`pack_to`], [`pack_stream`], [`pack`] and [`hash`].
///
/// ```
/// use kaniko_builder_context::PackOptions;
/// let options = PackOptions::default().max_bytes(2 << 30).compression_level(1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct PackOptions {
    max_bytes: Option<u64>,
    compression_level: u32,
}

impl Default for PackOptions {
    fn default() -> Self {
        Self {
            max_bytes: None,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
        }
    }
}

impl PackOptions {
    /// The limit on the total size of the files sent, before compression: packing fails with
    /// [`ContextError::TooLarge`] as soon as the files listed so far exceed it, from their sizes,
    /// before reading the one that crosses it. Default: no limit.
    pub fn max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = Some(max);
        self
    }

    /// The gzip compression level, from 0 (stored, fastest) to 9 (smallest). Default: 6
    /// ([`DEFAULT_COMPRESSION_LEVEL`]). The level changes the `tar.gz` bytes and so its digest,
    /// never the [`ContextDigest`]. A level above 9 makes packing fail with
    /// [`ContextError::InvalidOption`].
    pub fn compression_level(mut self, level: u32) -> Self {
        self.compression_level = level;
        self
    }

    fn validate(&self) -> Result<(), ContextError> {
        if self.compression_level > 9 {
            return Err(ContextError::InvalidOption {
                field: "compression_level",
                problem: format!("gzip levels are 0 to 9, not {}", self.compression_level),
            });
        }
        Ok(())
    }
}

/// What a context's files hash to, independently of compression: the sha256 of the
/// uncompressed reproducible tar, like an OCI layer's `diff_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContextDigest {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Entries in the archive (files, directories, links).
    pub entries: u64,
    /// The files' total size (their contents, without tar headers or padding).
    pub uncompressed: u64,
}

/// What [`pack_to`] (and the other packers) produced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PackSummary {
    /// sha256 of the `tar.gz`: its blob digest.
    pub digest: Digest,
    /// The `tar.gz`'s size in bytes.
    pub compressed: u64,
    /// What the files hash to, as [`hash`] reports it.
    pub content: ContextDigest,
}

/// A context packed in memory by [`pack`].
#[derive(Clone)]
#[non_exhaustive]
pub struct PackedContext {
    /// The `tar.gz` bytes.
    pub data: Bytes,
    /// Their digest, size and content digest.
    pub summary: PackSummary,
}

impl std::fmt::Debug for PackedContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedContext")
            .field("bytes", &self.data.len())
            .field("summary", &self.summary)
            .finish()
    }
}

/// Why a context cannot be packed. Each variant names the path or option at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The context root is not a directory.
    #[error("build context {} is not a directory", path.display())]
    NotADirectory {
        /// The root given.
        path: PathBuf,
    },
    /// The Dockerfile is not a regular file inside the context.
    #[error("dockerfile {dockerfile:?} is not a regular file in the build context {}", root.display())]
    MissingDockerfile {
        /// The context root.
        root: PathBuf,
        /// The Dockerfile path, relative to the root.
        dockerfile: String,
    },
    /// A socket, FIFO or device in the context (and not ignored).
    #[error("{} is a special file (socket, FIFO or device); ignore it in .dockerignore", path.display())]
    SpecialFile {
        /// The file.
        path: PathBuf,
    },
    /// The files are larger than the limit ([`PackOptions::max_bytes`]).
    #[error("build context is larger than {max} bytes; ignore what is not needed in .dockerignore")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// A file's size or type changed between reading its metadata (which its tar header holds)
    /// and reading its content: packing stops rather than write a corrupt archive.
    #[error("{} changed while the context was packed", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// An option is out of range.
    #[error("invalid pack option {field}: {problem}")]
    InvalidOption {
        /// The option, as its [`PackOptions`] setter is named.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The `.dockerignore` is invalid.
    #[error(transparent)]
    DockerIgnore(#[from] PatternError),
    /// Reading a file or directory failed.
    #[error("cannot read {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// Writing the packed context failed: the writer given to [`pack_to`] failed, or the
    /// consumer of a [`pack_stream`] went away.
    #[error("cannot write the packed build context")]
    Write {
        /// The IO error.
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Hashes the context at `root` as [`pack_to`] would pack it, without compressing: the same
/// listing, the same checks, the same [`ContextDigest`] as `pack_to`'s `summary.content`, for
/// the cost of reading the files and one sha256. Blocking IO: call it from `spawn_blocking` in
/// async code.
///
/// ```
/// use kaniko_builder_context::{PackOptions, hash};
/// # let dir = tempfile::tempdir()?;
/// # std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n")?;
/// # let root = dir.path();
/// let digest = hash(root, "Dockerfile", &PackOptions::default())?;
/// assert_eq!(digest.entries, 1);
/// println!("diff_id {}", digest.diff_id);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// See [`ContextError`]; never [`ContextError::Write`].
pub fn hash(root: &Path, dockerfile: &str, options: &PackOptions) -> Result<ContextDigest, ContextError> {
    options.validate()?;
    let entries = walk::list(root, dockerfile)?;
    let mut tar = tar::Builder::new(Hashing::new(io::sink()));
    let written = archive::write_entries(&mut tar, root, &entries, options.max_bytes)?;
    let (diff_id, _, _) = tar.into_inner().map_err(write_err)?.finish();
    Ok(ContextDigest {
        diff_id,
        entries: written.entries,
        uncompressed: written.uncompressed,
    })
}

/// Packs the directory `root` into a reproducible `tar.gz` written to `out` as it is produced,
/// honouring its `.dockerignore`; `dockerfile` (relative to `root`) must be a regular file in it.
/// Memory stays bounded whatever the files' sizes. `out` is written in pieces of up to 32 KiB:
/// wrap a file or socket in a [`std::io::BufWriter`]. Blocking IO: call it from `spawn_blocking`
/// in async code, or use [`pack_stream`].
///
/// When packing fails, nothing more is written to `out` after the failure: what it received is
/// an incomplete archive, never one that looks complete.
///
/// ```
/// use kaniko_builder_context::{PackOptions, pack_to};
/// # let dir = tempfile::tempdir()?;
/// # std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n")?;
/// # let root = dir.path();
/// let mut out = Vec::new();
/// let summary = pack_to(root, "Dockerfile", &PackOptions::default(), &mut out)?;
/// assert_eq!(summary.compressed, out.len() as u64);
/// assert!(summary.digest.matches(&out));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// See [`ContextError`]: [`ContextError::Write`] when `out` fails.
pub fn pack_to<W: io::Write>(
    root: &Path,
    dockerfile: &str,
    options: &PackOptions,
    out: W,
) -> Result<PackSummary, ContextError> {
    options.validate()?;
    let entries = walk::list(root, dockerfile)?;
    let gz = flate2::GzBuilder::new().mtime(0).operating_system(255).write(
        Hashing::new(Output::new(out)),
        flate2::Compression::new(options.compression_level),
    );
    let mut tar = tar::Builder::new(Hashing::new(gz));
    let written = match archive::write_entries(&mut tar, root, &entries, options.max_bytes) {
        Ok(written) => written,
        Err(e) => {
            // The encoders write their trailers when dropped: keep them from `out`.
            tar.get_mut().get_mut().get_mut().get_mut().silence();
            return Err(e);
        }
    };
    let (diff_id, _, gz) = tar.into_inner().map_err(write_err)?.finish();
    let (digest, compressed, out) = gz.finish().map_err(write_err)?.finish();
    out.into_inner().flush().map_err(write_err)?;
    Ok(PackSummary {
        digest,
        compressed,
        content: ContextDigest {
            diff_id,
            entries: written.entries,
            uncompressed: written.uncompressed,
        },
    })
}

/// Packs the directory `root` into memory: [`pack_to`] into a `Vec`. For small contexts and
/// tests; use [`pack_to`] or [`pack_stream`] for anything that may be large. Blocking IO.
///
/// ```
/// use kaniko_builder_context::{PackOptions, pack};
/// # let dir = tempfile::tempdir()?;
/// # std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n")?;
/// # let root = dir.path();
/// let packed = pack(root, "Dockerfile", &PackOptions::default())?;
/// println!("{} entries, {} bytes, {}", packed.summary.content.entries, packed.data.len(), packed.summary.digest);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// See [`ContextError`].
pub fn pack(root: &Path, dockerfile: &str, options: &PackOptions) -> Result<PackedContext, ContextError> {
    let mut data = Vec::new();
    let summary = pack_to(root, dockerfile, options, &mut data)?;
    Ok(PackedContext {
        data: Bytes::from(data),
        summary,
    })
}

#[cfg(all(test, unix))]
mod tests;
