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
//! ```no_run
//! use kaniko_builder_context::{PackOptions, pack};
//! let packed = pack("./app".as_ref(), "Dockerfile", &PackOptions::default())?;
//! println!("{} entries, {} bytes, {}", packed.entries, packed.data.len(), packed.digest);
//! # Ok::<(), kaniko_builder_context::ContextError>(())
//! ```

mod dockerignore;

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kaniko_builder_core::Digest;

pub use dockerignore::{DockerIgnore, PatternError};

/// The default limit on the files' total size: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// Options of [`pack`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct PackOptions {
    max_bytes: u64,
}

impl Default for PackOptions {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl PackOptions {
    /// The limit on the total size of the files sent, before compression. Default: 1 GiB.
    pub fn max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = max;
        self
    }
}

/// A packed context.
#[derive(Clone)]
#[non_exhaustive]
pub struct PackedContext {
    /// The `tar.gz` bytes.
    pub data: Bytes,
    /// Their sha256.
    pub digest: Digest,
    /// Entries in the archive (files, directories, links).
    pub entries: u64,
    /// The files' total size before compression.
    pub uncompressed: u64,
}

impl std::fmt::Debug for PackedContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedContext")
            .field("bytes", &self.data.len())
            .field("digest", &self.digest)
            .field("entries", &self.entries)
            .field("uncompressed", &self.uncompressed)
            .finish()
    }
}

/// Why a context cannot be packed. Each variant names the path.
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
    /// The files are larger than the limit.
    #[error("build context is larger than {max} bytes; ignore what is not needed in .dockerignore")]
    TooLarge {
        /// The limit.
        max: u64,
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
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug)]
enum Kind {
    Dir,
    File { executable: bool },
    Link(PathBuf),
}

/// Packs the directory `root` into a reproducible `tar.gz`, honouring its `.dockerignore`;
/// `dockerfile` (relative to `root`) must be a regular file in it. Blocking IO: call it from
/// `spawn_blocking` in async code.
///
/// # Errors
/// See [`ContextError`].
pub fn pack(root: &Path, dockerfile: &str, options: &PackOptions) -> Result<PackedContext, ContextError> {
    let meta = fs::metadata(root).map_err(io_err(root))?;
    if !meta.is_dir() {
        return Err(ContextError::NotADirectory {
            path: root.to_owned(),
        });
    }
    let ignore_path = root.join(".dockerignore");
    let ignore = match fs::symlink_metadata(&ignore_path) {
        Ok(m) if m.is_file() => {
            DockerIgnore::parse(&fs::read_to_string(&ignore_path).map_err(io_err(&ignore_path))?)?
        }
        Ok(_) => DockerIgnore::default(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(e) => return Err(io_err(&ignore_path)(e)),
    };
    let dockerfile = dockerfile.trim_start_matches("./").to_owned();
    match fs::symlink_metadata(root.join(&dockerfile)) {
        Ok(m) if m.is_file() => {}
        _ => {
            return Err(ContextError::MissingDockerfile {
                root: root.to_owned(),
                dockerfile,
            });
        }
    }
    let always = [dockerfile.as_str(), ".dockerignore"];

    let mut entries: Vec<(String, Kind)> = Vec::new();
    walk(root, "", &ignore, &always, &mut entries)?;
    // Re-included files under excluded directories need their parents.
    let mut dirs: Vec<String> = Vec::new();
    for (path, _) in &entries {
        let mut p = path.as_str();
        while let Some(i) = p.rfind('/') {
            p = &p[..i];
            dirs.push(p.to_owned());
        }
    }
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        if !entries.iter().any(|(p, _)| *p == d) {
            entries.push((d, Kind::Dir));
        }
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));

    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut uncompressed = 0u64;
    for (path, kind) in &entries {
        let full = root.join(path);
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let tar_err = io_err(&full);
        match kind {
            Kind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, format!("{path}/"), io::empty())
                    .map_err(tar_err)?;
            }
            Kind::File { executable } => {
                // The size is checked before reading, and the read is bounded too (the file may
                // grow meanwhile): a huge file is refused without being loaded into memory.
                let too_large = || ContextError::TooLarge {
                    max: options.max_bytes,
                };
                let room = options.max_bytes.saturating_sub(uncompressed);
                let file = fs::File::open(&full).map_err(io_err(&full))?;
                let len = file.metadata().map_err(io_err(&full))?.len();
                if len > room {
                    return Err(too_large());
                }
                let mut content = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
                io::Read::read_to_end(&mut io::Read::take(file, room.saturating_add(1)), &mut content)
                    .map_err(io_err(&full))?;
                uncompressed += content.len() as u64;
                if uncompressed > options.max_bytes {
                    return Err(too_large());
                }
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if *executable { 0o755 } else { 0o644 });
                header.set_size(content.len() as u64);
                tar.append_data(&mut header, path, content.as_slice())
                    .map_err(tar_err)?;
            }
            Kind::Link(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, path, target).map_err(tar_err)?;
            }
        }
    }
    let gz = tar.into_inner().map_err(io_err(root))?;
    let mut data = gz.finish().map_err(io_err(root))?;
    data.flush().map_err(io_err(root))?;
    let digest = Digest::sha256(&data);
    Ok(PackedContext {
        data: Bytes::from(data),
        digest,
        entries: entries.len() as u64,
        uncompressed,
    })
}

/// Collects the entries under `dir` (relative path `rel`), never following symlinks.
fn walk(
    dir: &Path,
    rel: &str,
    ignore: &DockerIgnore,
    always: &[&str],
    out: &mut Vec<(String, Kind)>,
) -> Result<(), ContextError> {
    let mut children: Vec<fs::DirEntry> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    children.sort_by_key(fs::DirEntry::file_name);
    for child in children {
        let name = child.file_name();
        let name = name.to_string_lossy();
        let path = if rel.is_empty() {
            name.into_owned()
        } else {
            format!("{rel}/{name}")
        };
        let full = child.path();
        let meta = fs::symlink_metadata(&full).map_err(io_err(&full))?;
        let excluded = ignore.is_excluded(&path) && !always.contains(&path.as_str());
        let ft = meta.file_type();
        if ft.is_dir() {
            if !excluded {
                out.push((path.clone(), Kind::Dir));
            }
            // An excluded directory is walked only when a `!` pattern may re-include inside it,
            // or when it holds the Dockerfile.
            let holds_always = always.iter().any(|a| {
                a.len() > path.len() && a.starts_with(path.as_str()) && a.as_bytes()[path.len()] == b'/'
            });
            if !excluded || ignore.has_exclusions() || holds_always {
                walk(&full, &path, ignore, always, out)?;
            }
            continue;
        }
        if excluded {
            continue;
        }
        if ft.is_symlink() {
            let target = fs::read_link(&full).map_err(io_err(&full))?;
            out.push((path, Kind::Link(target)));
        } else if ft.is_file() {
            out.push((
                path,
                Kind::File {
                    executable: is_executable(&meta),
                },
            ));
        } else {
            // Not a directory, link or regular file: a socket, FIFO or device.
            return Err(ContextError::SpecialFile { path: full });
        }
    }
    Ok(())
}

/// Whether any execute bit is set; without Unix modes a file is never executable.
#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &fs::Metadata) -> bool {
    false
}

#[cfg(all(test, unix))]
mod tests;
