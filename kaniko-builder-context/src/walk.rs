//! The listing of a context: which entries the archive holds, in which order. Only metadata is
//! read here; file contents are streamed later by the archive writer.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::{ContextError, DockerIgnore, io_err};

/// What an entry is.
#[derive(Debug)]
pub(crate) enum Kind {
    Dir,
    File { executable: bool },
    Link(PathBuf),
}

/// The entries of the context at `root`, sorted bytewise by their relative `/`-separated path
/// (the archive's order), after checking the root and the Dockerfile and applying `.dockerignore`.
///
/// The list holds paths only, never contents: its size grows with the number of entries, not
/// with the files' sizes (a global sort is what makes the order independent of the walk).
pub(crate) fn list(root: &Path, dockerfile: &str) -> Result<Vec<(String, Kind)>, ContextError> {
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
    let listed: std::collections::HashSet<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
    dirs.retain(|d| !listed.contains(d.as_str()));
    entries.extend(dirs.into_iter().map(|d| (d, Kind::Dir)));
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(entries)
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
