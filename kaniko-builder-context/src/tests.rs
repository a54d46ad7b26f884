use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, content).expect("write");
}

/// (path, type, mode, mtime, uid, link target) of every entry.
fn listing(packed: &PackedContext) -> Vec<(String, char, u32, u64, u64, String)> {
    let gz = flate2::read::GzDecoder::new(&packed.data[..]);
    let mut archive = tar::Archive::new(gz);
    let mut out = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let h = entry.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Regular => 'f',
            _ => '?',
        };
        let path = entry
            .path()
            .expect("path")
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        let link = entry
            .link_name()
            .expect("link")
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut sink = Vec::new();
        entry.read_to_end(&mut sink).expect("read");
        out.push((
            path,
            kind,
            h.mode().expect("mode"),
            h.mtime().expect("mtime"),
            h.uid().expect("uid"),
            link,
        ));
    }
    out
}

fn paths(packed: &PackedContext) -> Vec<String> {
    listing(packed).into_iter().map(|e| e.0).collect()
}

fn sample(root: &Path) {
    write(root, "Dockerfile", "FROM scratch\nCOPY . /\n");
    write(root, "src/main.rs", "fn main() {}\n");
    write(root, "src/deep/b.txt", "b");
    write(root, "README.md", "readme");
    write(root, "NOTES.md", "notes");
    write(root, "target/debug/big", "xxxxxxxx");
    write(root, "target/keep.txt", "keep");
    write(
        root,
        ".dockerignore",
        "*.md\n!README.md\ntarget\n!target/keep.txt\n",
    );
}

#[test]
fn honours_dockerignore_and_sorts() {
    let dir = tempfile::tempdir().expect("tmp");
    sample(dir.path());
    let packed = pack(dir.path(), "Dockerfile", &PackOptions::default()).expect("pack");
    assert_eq!(
        paths(&packed),
        [
            ".dockerignore",
            "Dockerfile",
            "README.md",
            "src",
            "src/deep",
            "src/deep/b.txt",
            "src/main.rs",
            "target",
            "target/keep.txt"
        ]
    );
    assert_eq!(packed.entries, 9);
}

#[test]
fn same_content_gives_the_same_bytes_whatever_the_metadata() {
    let a = tempfile::tempdir().expect("tmp");
    let b = tempfile::tempdir().expect("tmp");
    sample(a.path());
    // Created in another order, with other modes and times.
    write(b.path(), "target/keep.txt", "keep");
    write(b.path(), "src/deep/b.txt", "b");
    sample(b.path());
    fs::set_permissions(b.path().join("README.md"), fs::Permissions::from_mode(0o600)).expect("chmod");
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(b.path(), "src/main.rs", "fn main() {}\n");
    let pa = pack(a.path(), "Dockerfile", &PackOptions::default()).expect("pack a");
    let pb = pack(b.path(), "Dockerfile", &PackOptions::default()).expect("pack b");
    assert_eq!(pa.digest, pb.digest);
    assert_eq!(pa.data, pb.data);
    for (path, _, mode, mtime, uid, _) in listing(&pa) {
        assert_eq!((mtime, uid), (0, 0), "{path}");
        assert!(matches!(mode, 0o644 | 0o755), "{path}: {mode:o}");
    }
    // Content matters.
    write(b.path(), "src/main.rs", "fn main() { }\n");
    let pc = pack(b.path(), "Dockerfile", &PackOptions::default()).expect("pack c");
    assert_ne!(pa.digest, pc.digest);
}

#[test]
fn symlinks_are_never_followed_and_executables_keep_their_bit() {
    let outside = tempfile::tempdir().expect("tmp");
    write(outside.path(), "secret.txt", "do not send");
    let dir = tempfile::tempdir().expect("tmp");
    write(dir.path(), "Dockerfile", "FROM scratch\n");
    write(dir.path(), "run.sh", "#!/bin/sh\n");
    fs::set_permissions(dir.path().join("run.sh"), fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).expect("symlink dir");
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("leak"))
        .expect("symlink file");
    let packed = pack(dir.path(), "Dockerfile", &PackOptions::default()).expect("pack");
    let list = listing(&packed);
    let names: Vec<&str> = list.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["Dockerfile", "escape", "leak", "run.sh"]);
    assert_eq!(list[1].1, 'l');
    assert_eq!(list[3].2, 0o755);
    let raw = {
        let mut s = Vec::new();
        flate2::read::GzDecoder::new(&packed.data[..])
            .read_to_end(&mut s)
            .expect("gunzip");
        s
    };
    assert!(
        !raw.windows(11).any(|w| w == b"do not send"),
        "content from outside the context"
    );
}

#[test]
fn special_files_are_refused_unless_ignored() {
    let dir = tempfile::tempdir().expect("tmp");
    write(dir.path(), "Dockerfile", "FROM scratch\n");
    let status = std::process::Command::new("mkfifo")
        .arg(dir.path().join("pipe"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let err = pack(dir.path(), "Dockerfile", &PackOptions::default()).expect_err("fifo");
    assert!(matches!(err, ContextError::SpecialFile { .. }), "{err}");
    write(dir.path(), ".dockerignore", "pipe\n");
    pack(dir.path(), "Dockerfile", &PackOptions::default()).expect("ignored fifo");
}

#[test]
fn dockerfile_and_dockerignore_are_always_sent_and_limits_hold() {
    let dir = tempfile::tempdir().expect("tmp");
    write(dir.path(), "docker/Dockerfile", "FROM scratch\n");
    write(dir.path(), "data.bin", &"x".repeat(100));
    write(dir.path(), ".dockerignore", "docker\n.dockerignore\n");
    let packed = pack(dir.path(), "docker/Dockerfile", &PackOptions::default()).expect("pack");
    assert_eq!(
        paths(&packed),
        [".dockerignore", "data.bin", "docker", "docker/Dockerfile"]
    );
    let err = pack(
        dir.path(),
        "docker/Dockerfile",
        &PackOptions::default().max_bytes(50),
    )
    .expect_err("too large");
    assert!(matches!(err, ContextError::TooLarge { max: 50 }));
    let err = pack(dir.path(), "Dockerfile", &PackOptions::default()).expect_err("no dockerfile");
    assert!(matches!(err, ContextError::MissingDockerfile { .. }));
}

#[test]
fn long_paths_survive() {
    let dir = tempfile::tempdir().expect("tmp");
    write(dir.path(), "Dockerfile", "FROM scratch\n");
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    write(dir.path(), &long, "x");
    let packed = pack(dir.path(), "Dockerfile", &PackOptions::default()).expect("pack");
    assert!(paths(&packed).contains(&long));
}
