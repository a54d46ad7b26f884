//! Unpacking a tar stream into a directory without letting it write anywhere else.
//!
//! Entry paths must be relative and free of `..`; hard link targets too. A symlink may climb
//! with leading `..` only as far as the directory it sits in is deep below the root (measured
//! on disk, through any symlinks already there) and may not climb again after a name, and must
//! not be absolute: so every link the archive creates resolves inside the root, and no later
//! entry can be written through one to the outside. The tar crate's `unpack_in` checks each
//! entry's parent again after canonicalizing it. Devices and fifos are refused.

use std::io::{BufRead as _, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

/// How to read the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    /// gzip (`tar -z`).
    Gzip,
    /// gzip if the stream starts with its magic bytes, else plain (what `tar -x` without `-z`
    /// does on GNU tar and busybox).
    Detect,
}

/// Options of [`unpack`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Options {
    pub(super) compression: Compression,
    /// Keep the archive's modification times (`tar -m` turns this off).
    pub(super) preserve_mtime: bool,
}

/// Unpacks `input` into `root` (an existing directory), calling `on_entry` with each entry's
/// name after it was written. The error is a message in `tar`'s words, without the `tar: `
/// prefix; entries before the failing one stay unpacked.
pub(super) fn unpack(
    input: impl Read,
    root: &Path,
    options: Options,
    on_entry: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let root = root
        .canonicalize()
        .map_err(|e| format!("{}: Cannot open: {e}", root.display()))?;
    let mut input = BufReader::new(input);
    let gzip = match options.compression {
        Compression::Gzip => true,
        Compression::Detect => input
            .fill_buf()
            .map_err(|e| format!("read error on stdin: {e}"))?
            .starts_with(&[0x1f, 0x8b]),
    };
    let input: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(input))
    } else {
        Box::new(input)
    };
    let mut archive = tar::Archive::new(input);
    archive.set_overwrite(true);
    archive.set_preserve_permissions(false);
    archive.set_preserve_ownerships(false);
    archive.set_unpack_xattrs(false);
    archive.set_preserve_mtime(options.preserve_mtime);
    let entries = archive.entries().map_err(|e| format!("read error: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("read error: {e}"))?;
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link => {}
            // Metadata for the whole archive: nothing to write.
            EntryType::XGlobalHeader => continue,
            other => return Err(format!("{shown}: refusing entry of unsupported type {other:?}")),
        }
        let rel = relative(&shown)?;
        if matches!(kind, EntryType::Symlink | EntryType::Link) {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .ok_or_else(|| format!("{shown}: link without a target"))?;
            if kind == EntryType::Symlink {
                check_symlink(&root, &rel, &shown, &target)?;
            } else {
                relative(&target).map_err(|e| format!("{shown}: hard link target {e}"))?;
            }
        }
        let written = entry
            .unpack_in(&root)
            .map_err(|e| format!("{shown}: Cannot extract: {e}"))?;
        if !written {
            return Err(format!("{shown}: refusing to write outside the target directory"));
        }
        on_entry(&shown);
    }
    Ok(())
}

/// `path` as plain names, refusing anything that could leave the root.
fn relative(path: &str) -> Result<PathBuf, String> {
    let mut rel = PathBuf::new();
    for part in Path::new(path).components() {
        match part {
            Component::CurDir => {}
            Component::Normal(name) => rel.push(name),
            Component::ParentDir => {
                return Err(format!("{path}: refusing a path containing `..`"));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("{path}: refusing an absolute path"));
            }
        }
    }
    Ok(rel)
}

/// Refuses symlink `rel` (shown as `shown`) → `target` unless it resolves inside `root`.
fn check_symlink(root: &Path, rel: &Path, shown: &str, target: &str) -> Result<(), String> {
    let escapes = || format!("{shown}: refusing a symlink to {target:?}, which leaves the target directory");
    let mut climbs = 0usize;
    let mut named = false;
    for part in Path::new(target).components() {
        match part {
            Component::CurDir => {}
            Component::Normal(_) => named = true,
            Component::ParentDir if !named => climbs += 1,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return Err(escapes()),
        }
    }
    if climbs == 0 {
        return Ok(());
    }
    // How deep the link's directory really is: its deepest existing ancestor canonicalized
    // (symlinks resolved), plus the names tar will create below it.
    let mut dir = root.join(rel.parent().unwrap_or(Path::new("")));
    let mut to_create = 0usize;
    while !dir.exists() {
        to_create += 1;
        if !dir.pop() {
            return Err(escapes());
        }
    }
    let canonical = dir.canonicalize().map_err(|e| format!("{shown}: {e}"))?;
    let depth = canonical
        .strip_prefix(root)
        .map_err(|_| escapes())?
        .components()
        .count()
        + to_create;
    if climbs > depth {
        return Err(escapes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(path, kind, data or link target)`.
    type Entry<'a> = (&'a str, EntryType, &'a str);

    const OPTIONS: Options = Options {
        compression: Compression::Detect,
        preserve_mtime: true,
    };

    /// A tar of `(path, kind, data or link target)` with names written raw, so that the
    /// builder's own checks cannot refuse the hostile ones.
    fn raw_tar(entries: &[Entry<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.as_gnu_mut().expect("a GNU header").name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_entry_type(*kind);
            header.set_mode(0o755);
            let body: &[u8] = if *kind == EntryType::Regular {
                data.as_bytes()
            } else {
                header.as_gnu_mut().expect("a GNU header").linkname[..data.len()]
                    .copy_from_slice(data.as_bytes());
                b""
            };
            header.set_size(body.len() as u64);
            header.set_cksum();
            builder.append(&header, body).expect("append to an in-memory tar");
        }
        builder.into_inner().expect("finish an in-memory tar")
    }

    fn run(entries: &[Entry<'_>]) -> (tempfile::TempDir, Result<(), String>) {
        let outer = tempfile::tempdir().expect("temp dir");
        let root = outer.path().join("a").join("b").join("root");
        std::fs::create_dir_all(&root).expect("create root");
        let result = unpack(&raw_tar(entries)[..], &root, OPTIONS, &mut |_| {});
        (outer, result)
    }

    /// Every file under `dir`, relative.
    fn files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
                let path = entry.path();
                if entry.file_type().expect("file type").is_dir() {
                    stack.push(path.clone());
                }
                out.push(path.strip_prefix(dir).expect("below dir").display().to_string());
            }
        }
        out.sort();
        out
    }

    #[test]
    fn unpacks_files_dirs_and_inside_links() {
        let (outer, result) = run(&[
            ("./", EntryType::Directory, ""),
            ("./src/", EntryType::Directory, ""),
            ("./src/main.rs", EntryType::Regular, "fn main() {}"),
            ("./src/up", EntryType::Symlink, "../Dockerfile"),
            ("Dockerfile", EntryType::Regular, "FROM scratch"),
            ("hard", EntryType::Link, "Dockerfile"),
            ("deep/x/y", EntryType::Symlink, "../../src"),
        ]);
        assert_eq!(result, Ok(()));
        let root = outer.path().join("a/b/root");
        assert_eq!(
            files(&root),
            [
                "Dockerfile",
                "deep",
                "deep/x",
                "deep/x/y",
                "hard",
                "src",
                "src/main.rs",
                "src/up"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(root.join("src/up")).expect("read via link"),
            "FROM scratch"
        );
    }

    #[test]
    fn refuses_everything_that_leaves_the_root() {
        let cases: &[(&[Entry<'_>], &str)] = &[
            (&[("../escape", EntryType::Regular, "x")], "`..`"),
            (&[("ok/../../escape", EntryType::Regular, "x")], "`..`"),
            (&[("/abs/escape", EntryType::Regular, "x")], "absolute"),
            (&[("link", EntryType::Symlink, "/etc")], "symlink"),
            (&[("link", EntryType::Symlink, "..")], "symlink"),
            (&[("d/link", EntryType::Symlink, "../..")], "symlink"),
            (&[("link", EntryType::Symlink, "d/../..")], "symlink"),
            // A link to the root itself, then a link through it that climbs out.
            (
                &[
                    ("self", EntryType::Symlink, "."),
                    ("self/l", EntryType::Symlink, "../escape"),
                ],
                "symlink",
            ),
            (&[("hard", EntryType::Link, "../outside")], "`..`"),
            (&[("hard", EntryType::Link, "/etc/passwd")], "absolute"),
            (&[("fifo", EntryType::Fifo, "")], "unsupported type"),
            (&[("dev", EntryType::Char, "")], "unsupported type"),
        ];
        for (entries, want) in cases {
            let (outer, result) = run(entries);
            let err = result.expect_err(&format!("{entries:?} is refused"));
            assert!(err.contains(want), "{entries:?}: {err}");
            // Nothing appeared next to the root or above it.
            let listed = files(outer.path());
            assert!(
                listed
                    .iter()
                    .all(|f| f.starts_with("a/b/root") || f == "a" || f == "a/b"),
                "{entries:?} wrote outside: {listed:?}"
            );
        }
    }

    #[test]
    fn detects_gzip_without_z() {
        let plain = raw_tar(&[("f", EntryType::Regular, "hello")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).expect("gzip in memory");
        let gz = gz.finish().expect("finish gzip");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut names = Vec::new();
        unpack(&gz[..], dir.path(), OPTIONS, &mut |n| names.push(n.to_owned())).expect("unpack tgz");
        assert_eq!(names, ["f"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("f")).expect("read"),
            "hello"
        );
        let forced = Options {
            compression: Compression::Gzip,
            ..OPTIONS
        };
        assert!(unpack(&plain[..], dir.path(), forced, &mut |_| {}).is_err());
    }
}
