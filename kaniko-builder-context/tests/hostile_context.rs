//! Hostile build contexts: whatever the directory holds, the packer reads nothing outside it,
//! writes only relative entry names without `..`, refuses special files and refuses a huge file
//! without loading it into memory.
#![cfg(unix)]

use std::io::Read as _;
use std::path::Path;

use kaniko_builder_context::{ContextError, PackOptions, PackedContext, pack};

const OUTSIDE_SECRET: &str = "outside-secret-8c1f2";

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, content).expect("write");
}

/// (name, type, link target, content) of every entry, read with the raw header names.
fn entries(packed: &PackedContext) -> Vec<(String, tar::EntryType, String, Vec<u8>)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&packed.data[..]));
    let mut out = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let kind = entry.header().entry_type();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("read");
        out.push((name, kind, link, content));
    }
    out
}

fn unpacked_text(packed: &PackedContext) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&packed.data[..])
        .read_to_end(&mut raw)
        .expect("gunzip");
    raw
}

#[test]
fn links_out_of_the_context_are_stored_as_links_and_never_followed() {
    let outside = tempfile::tempdir().expect("tmp");
    write(outside.path(), "secret.txt", OUTSIDE_SECRET);
    write(outside.path(), "sub/also.txt", OUTSIDE_SECRET);
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\nCOPY . /\n");
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, root.join(name)).expect("symlink");
    };
    link(&outside.path().join("secret.txt"), "abs-file");
    link(outside.path(), "abs-dir");
    link(Path::new("../../../../../../etc/passwd"), "dotdot");
    link(Path::new("/"), "root");
    link(Path::new("loop"), "loop");
    // A Dockerfile that is a link out of the context is not a regular file in it.
    link(&outside.path().join("secret.txt"), "Dockerfile.out");
    // A .dockerignore that is a link is not followed either (treated as absent).
    link(&outside.path().join("secret.txt"), ".dockerignore");

    let packed = pack(root, "Dockerfile", &PackOptions::default()).expect("pack");
    let all = entries(&packed);
    for (name, kind, target, content) in &all {
        assert!(!name.starts_with('/'), "absolute entry {name}");
        assert!(
            !name.split('/').any(|c| c == ".."),
            "entry with a .. component {name}"
        );
        if name != "Dockerfile" {
            assert_eq!(*kind, tar::EntryType::Symlink, "{name}");
            assert!(content.is_empty(), "{name} has content");
            assert!(!target.is_empty(), "{name}");
        }
    }
    assert_eq!(all.len(), 8, "{all:?}");
    let raw = unpacked_text(&packed);
    assert!(
        !raw.windows(OUTSIDE_SECRET.len())
            .any(|w| w == OUTSIDE_SECRET.as_bytes()),
        "content from outside the context was packed"
    );
    assert!(matches!(
        pack(root, "Dockerfile.out", &PackOptions::default()),
        Err(ContextError::MissingDockerfile { .. })
    ));
    assert!(matches!(
        pack(root, "../Dockerfile", &PackOptions::default()),
        Err(ContextError::MissingDockerfile { .. })
    ));
}

#[test]
fn odd_names_stay_relative_and_never_gain_dotdot() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    for name in [
        "..a",
        "a..",
        "...",
        "a/..b/c",
        " lead",
        "back\\slash",
        "x:y",
        "new\nline",
    ] {
        write(root, name, "x");
    }
    let packed = pack(root, "Dockerfile", &PackOptions::default()).expect("pack");
    for (name, ..) in entries(&packed) {
        assert!(!name.starts_with('/'), "{name}");
        assert!(!name.split('/').any(|c| c == ".." || c == "."), "{name}");
    }
}

#[test]
fn sockets_and_fifos_are_refused_and_devices_via_links_are_not_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).expect("bind");
    match pack(root, "Dockerfile", &PackOptions::default()) {
        Err(ContextError::SpecialFile { path }) => assert!(path.ends_with("sock")),
        other => panic!("expected SpecialFile, got {other:?}"),
    }
    write(root, ".dockerignore", "sock\n");
    // A link to a device is a link: /dev/zero is never opened (it would never end).
    std::os::unix::fs::symlink("/dev/zero", root.join("zero")).expect("symlink");
    std::os::unix::fs::symlink("/dev/urandom", root.join("random")).expect("symlink");
    let packed = pack(root, "Dockerfile", &PackOptions::default()).expect("pack");
    assert!(packed.data.len() < 4096, "{}", packed.data.len());
}

#[test]
fn a_huge_file_is_refused_without_being_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    // 2 GiB, sparse: costs no disk, but reading it would allocate 2 GiB.
    let huge = std::fs::File::create(root.join("huge.bin")).expect("create");
    huge.set_len(2 << 30).expect("set_len");
    let started = std::time::Instant::now();
    match pack(root, "Dockerfile", &PackOptions::default().max_bytes(1 << 30)) {
        Err(e @ ContextError::TooLarge { max }) => {
            assert_eq!(max, 1 << 30);
            assert!(e.to_string().contains(".dockerignore"), "{e}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Refused from its size: reading 2 GiB of zeros would take seconds and the memory.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Many small files adding up past a small cap: refused too.
    for i in 0..20 {
        write(root, &format!("many/{i}"), &"y".repeat(100));
    }
    std::fs::remove_file(root.join("huge.bin")).expect("rm");
    assert!(matches!(
        pack(root, "Dockerfile", &PackOptions::default().max_bytes(1000)),
        Err(ContextError::TooLarge { max: 1000 })
    ));
    pack(root, "Dockerfile", &PackOptions::default().max_bytes(3000)).expect("within the cap");
}
