use std::fs;
use std::io::{Read as _, Write as _};
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
    assert_eq!(packed.summary.content.entries, 9);
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
    assert_eq!(pa.summary, pb.summary);
    assert_eq!(pa.data, pb.data);
    for (path, _, mode, mtime, uid, _) in listing(&pa) {
        assert_eq!((mtime, uid), (0, 0), "{path}");
        assert!(matches!(mode, 0o644 | 0o755), "{path}: {mode:o}");
    }
    // Content matters.
    write(b.path(), "src/main.rs", "fn main() { }\n");
    let pc = pack(b.path(), "Dockerfile", &PackOptions::default()).expect("pack c");
    assert_ne!(pa.summary.digest, pc.summary.digest);
    assert_ne!(pa.summary.content.diff_id, pc.summary.content.diff_id);
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

/// Deterministic pseudo-random bytes (xorshift64), incompressible enough to fill deflate blocks.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A tree exercising every kind of entry and the block boundaries of tar and deflate.
fn pinned_tree(root: &Path) {
    sample(root);
    write(root, "run.sh", "#!/bin/sh\necho hi\n");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o750)).expect("chmod");
    std::os::unix::fs::symlink("src/main.rs", root.join("link")).expect("symlink");
    write(root, "empty", "");
    write(root, "blocks/512", &"a".repeat(512));
    write(root, "blocks/513", &"b".repeat(513));
    write(root, "a-b/c", "dash sorts before slash");
    write(root, "\u{fc}n\u{ef}code.txt", "unicode");
    write(root, &format!("{}/{}", "d".repeat(120), "f".repeat(150)), "long");
    fs::write(root.join("noise.bin"), noise(3 << 20, 0x9e37_79b9_7f4a_7c15)).expect("noise");
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut raw)
        .expect("gunzip");
    raw
}

/// The archive's bytes are pinned. The diff_ids (and sizes) were recorded with the in-memory
/// packer that read each file whole: the streaming tar is byte-for-byte the same. The blob
/// digests pin the deflate backend and level too: they changed once, when the workspace moved
/// flate2 from miniz_oxide to zlib-rs (the old ones were sha256:618e359c… and sha256:82e4cd69…);
/// zlib-rs gives the same bytes whatever the CPU's features.
#[test]
fn the_archive_bytes_are_pinned() {
    struct Pinned {
        make: fn(&Path),
        blob: &'static str,
        diff_id: &'static str,
        /// (entries, files' bytes, tar.gz bytes)
        sizes: (u64, u64, u64),
    }
    let cases = [
        Pinned {
            make: sample,
            blob: "sha256:6f3408808fbbdd1a3d7a0cbfb868cc98ded5ba99f5d40dc80d88ea8349eb6359",
            diff_id: "sha256:df813215e53e7f018e012c87f0dc6ddc182b495ccb95d19119fa83c360fad8f0",
            sizes: (9, 86, 336),
        },
        Pinned {
            make: pinned_tree,
            blob: "sha256:9e3b7a0fde7a627b210c43018012afedf703d68d6e8bed35b2c6bd8d10b2c09e",
            diff_id: "sha256:19073d750c81ec47df8a7caf8b8cd1c146294c72f53afa742dc58933f10a93bc",
            sizes: (21, 3_146_891, 3_147_651),
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().expect("tmp");
        (case.make)(dir.path());
        let packed = pack(dir.path(), "Dockerfile", &PackOptions::default()).expect("pack");
        let summary = &packed.summary;
        assert_eq!(summary.content.diff_id.to_string(), case.diff_id);
        assert_eq!(summary.digest.to_string(), case.blob);
        let content = &summary.content;
        assert_eq!(
            (content.entries, content.uncompressed, summary.compressed),
            case.sizes
        );
        assert_eq!(packed.data.len() as u64, summary.compressed);
    }
}

#[test]
fn pack_to_pack_and_hash_agree() {
    let dir = tempfile::tempdir().expect("tmp");
    pinned_tree(dir.path());
    let options = PackOptions::default();
    let packed = pack(dir.path(), "Dockerfile", &options).expect("pack");
    let mut out = Vec::new();
    let summary = pack_to(dir.path(), "Dockerfile", &options, &mut out).expect("pack_to");
    assert_eq!(out, packed.data);
    assert_eq!(summary, packed.summary);
    assert!(summary.digest.matches(&out));
    assert_eq!(summary.compressed, out.len() as u64);
    let content = hash(dir.path(), "Dockerfile", &options).expect("hash");
    assert_eq!(content, summary.content);
    assert_eq!(content.diff_id, Digest::sha256(&gunzip(&out)));
    // The Debug of a packed context shows its size, not its bytes.
    let debug = format!("{packed:?}");
    assert!(debug.contains("bytes: 3147651"), "{debug}");
    assert!(debug.len() < 1000, "{debug}");
}

#[test]
fn the_compression_level_changes_the_blob_never_the_content_and_is_checked() {
    let dir = tempfile::tempdir().expect("tmp");
    sample(dir.path());
    fs::write(dir.path().join("noise.bin"), noise(64 << 10, 7)).expect("noise");
    let default = pack(dir.path(), "Dockerfile", &PackOptions::default()).expect("pack");
    let six = pack(
        dir.path(),
        "Dockerfile",
        &PackOptions::default().compression_level(6),
    )
    .expect("6");
    assert_eq!(six.data, default.data);
    for level in [0, 1, 9] {
        let packed = pack(
            dir.path(),
            "Dockerfile",
            &PackOptions::default().compression_level(level),
        )
        .expect("pack");
        assert_eq!(packed.summary.content, default.summary.content, "level {level}");
        assert_ne!(packed.summary.digest, default.summary.digest, "level {level}");
        assert_eq!(
            Digest::sha256(&gunzip(&packed.data)),
            default.summary.content.diff_id
        );
    }
    let bad = PackOptions::default().compression_level(10);
    let errors = [
        pack(dir.path(), "Dockerfile", &bad).map(|_| ()),
        pack_to(dir.path(), "Dockerfile", &bad, io::sink()).map(|_| ()),
        hash(dir.path(), "Dockerfile", &bad).map(|_| ()),
    ];
    for err in errors {
        let err = err.expect_err("level 10");
        assert!(
            matches!(
                err,
                ContextError::InvalidOption {
                    field: "compression_level",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("compression_level"), "{err}");
    }
}

#[test]
fn by_default_the_size_is_unlimited() {
    assert_eq!(PackOptions::default().max_bytes, None);
    assert_eq!(PackOptions::default().max_bytes(7).max_bytes, Some(7));
    assert_eq!(PackOptions::default().compression_level, 6);
}

/// A file that yields fewer or more bytes than its header says is caught by the reader that
/// streams it (a unit test of the wrapper, as racing a real file being written is flaky; the
/// test below covers the real path with files whose size lies).
#[test]
fn the_exact_reader_refuses_a_file_that_changed() {
    use archive::{ExactReader, ReadFailure};
    struct Failing;
    impl io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    fn run(content: &[u8], len: u64) -> (io::Result<u64>, Option<ReadFailure>, bool) {
        let mut exact = ExactReader::new(content, len);
        let copied = io::copy(&mut exact, &mut io::sink());
        (copied, exact.failure, exact.ended)
    }
    // (content, header size, expected failure)
    let cases: [(&[u8], u64, Option<ReadFailure>); 5] = [
        (b"hello", 5, None),
        (b"", 0, None),
        (b"hell", 5, Some(ReadFailure::Changed)),
        (b"hello!", 5, Some(ReadFailure::Changed)),
        (b"x", 0, Some(ReadFailure::Changed)),
    ];
    for (content, len, failure) in cases {
        let (copied, got, ended) = run(content, len);
        assert_eq!(got, failure, "{content:?} as {len} bytes");
        assert_eq!(copied.is_ok(), failure.is_none(), "{content:?} as {len} bytes");
        assert_eq!(ended, failure.is_none(), "{content:?} as {len} bytes");
    }
    // Through a BufReader, as the packer reads: the same.
    let mut exact = ExactReader::new(&b"hello!"[..], 5);
    let copied = io::copy(&mut io::BufReader::new(&mut exact), &mut io::sink());
    assert!(copied.is_err());
    assert_eq!(exact.failure, Some(ReadFailure::Changed));
    // A read error is a read error, not a change.
    let mut exact = ExactReader::new(Failing, 5);
    let err = io::copy(&mut exact, &mut io::sink()).expect_err("failing");
    assert_eq!(err.to_string(), "disk on fire");
    assert_eq!(exact.failure, Some(ReadFailure::Read));
}

/// The real path: a file is listed, then replaced before it is read (by a link to a file whose
/// size lies, or to a device). Linux's /proc and /sys files report sizes their contents do not
/// have, which makes a shrinking or growing file deterministic.
#[cfg(target_os = "linux")]
#[test]
fn a_file_that_changed_after_listing_fails_the_pack() {
    // (replacement target, why)
    let cases = [
        ("/proc/self/status", "size 0, yields bytes: grew"),
        (
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "size 4096, yields less: shrank",
        ),
        ("/dev/null", "not a regular file any more"),
    ];
    for (target, why) in cases {
        if !Path::new(target).exists() {
            continue;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        write(root, "Dockerfile", "FROM scratch\n");
        write(root, "data.bin", "data");
        let entries = walk::list(root, "Dockerfile").expect("list");
        fs::remove_file(root.join("data.bin")).expect("rm");
        std::os::unix::fs::symlink(target, root.join("data.bin")).expect("symlink");
        let mut tar = tar::Builder::new(Vec::new());
        let err = archive::write_entries(&mut tar, root, &entries, None).expect_err(why);
        match &err {
            ContextError::Changed { path } => assert!(path.ends_with("data.bin"), "{why}: {err}"),
            other => panic!("{why}: expected Changed, got {other:?}"),
        }
        assert!(
            err.to_string()
                .ends_with("data.bin changed while the context was packed"),
            "{err}"
        );
    }
}

/// A writer that fails once, after `fail_at` bytes, and accepts everything afterwards.
struct FailOnce {
    written: Vec<u8>,
    fail_at: usize,
    failed: bool,
}

impl io::Write for FailOnce {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.failed && self.written.len() + buf.len() > self.fail_at {
            self.failed = true;
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "peer went away"));
        }
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_writer_is_a_write_error_and_gets_nothing_more() {
    let dir = tempfile::tempdir().expect("tmp");
    pinned_tree(dir.path());
    let mut out = FailOnce {
        written: Vec::new(),
        fail_at: 100_000,
        failed: false,
    };
    let err = pack_to(dir.path(), "Dockerfile", &PackOptions::default(), &mut out).expect_err("fails");
    match &err {
        ContextError::Write { source } => assert_eq!(source.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("expected Write, got {other:?}"),
    }
    assert!(out.failed);
    // Nothing was written after the failure: no trailer that would make the archive look whole.
    assert!(out.written.len() <= 100_000, "{}", out.written.len());
    let mut raw = Vec::new();
    assert!(
        flate2::read::GzDecoder::new(&out.written[..])
            .read_to_end(&mut raw)
            .is_err()
    );
    out.flush().expect("flush");
}

/// A context of `mib` MiB of zeros (a sparse file: no disk, fast to read), packed at level 0 so
/// that the output is as large as the input.
fn big_context(mib: u64) -> (tempfile::TempDir, PackOptions) {
    let dir = tempfile::tempdir().expect("tmp");
    write(dir.path(), "Dockerfile", "FROM scratch\n");
    fs::File::create(dir.path().join("zeros.bin"))
        .expect("create")
        .set_len(mib << 20)
        .expect("set_len");
    (dir, PackOptions::default().compression_level(0))
}

#[tokio::test]
async fn pack_stream_yields_the_same_bytes_and_summary_in_bounded_chunks() {
    use futures::StreamExt as _;
    let dir = tempfile::tempdir().expect("tmp");
    pinned_tree(dir.path());
    let root = dir.path().to_owned();
    let packed = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || pack(&root, "Dockerfile", &PackOptions::default()))
            .await
            .expect("join")
            .expect("pack")
    };
    let stream = pack_stream(root, "Dockerfile".to_owned(), PackOptions::default());
    let chunks: Vec<Bytes> = stream.body.map(|c| c.expect("chunk")).collect().await;
    let summary = stream.summary.await.expect("summary");
    assert_eq!(summary, packed.summary);
    assert_eq!(chunks.concat(), packed.data);
    let (last, full) = chunks.split_last().expect("chunks");
    assert!(
        full.iter().all(|c| c.len() == 256 << 10),
        "{:?}",
        chunks.iter().map(Bytes::len).collect::<Vec<_>>()
    );
    assert!(!last.is_empty() && last.len() <= 256 << 10);
}

#[tokio::test]
async fn pack_stream_fails_with_one_error_naming_the_culprit() {
    use futures::StreamExt as _;
    let dir = tempfile::tempdir().expect("tmp");
    write(dir.path(), "Dockerfile", "FROM scratch\n");
    let cases = [
        ("Containerfile", PackOptions::default(), "\"Containerfile\""),
        (
            "Dockerfile",
            PackOptions::default().compression_level(12),
            "compression_level",
        ),
    ];
    for (dockerfile, options, culprit) in cases {
        let mut stream = pack_stream(dir.path().to_owned(), dockerfile.to_owned(), options);
        let err = stream.body.next().await.expect("an item").expect_err("an error");
        assert!(err.to_string().contains(culprit), "{err}");
        assert!(stream.body.next().await.is_none(), "ends after the error");
        let typed = stream.summary.await.expect_err("summary");
        assert!(typed.to_string().contains(culprit), "{typed}");
    }
    // The limit, once the files are listed.
    let (dir, options) = big_context(1);
    let stream = pack_stream(
        dir.path().to_owned(),
        "Dockerfile".to_owned(),
        options.max_bytes(1000),
    );
    let items: Vec<io::Result<Bytes>> = stream.body.collect().await;
    let [Err(err)] = &items[..] else {
        panic!("expected one error, got {items:?}");
    };
    assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
    assert!(
        matches!(stream.summary.await, Err(ContextError::TooLarge { max: 1000 })),
        "{err}"
    );
    // A read error's message carries its cause, and its kind.
    let err = stream::stream_error(&ContextError::Io {
        path: "/ctx/locked".into(),
        source: io::Error::new(io::ErrorKind::PermissionDenied, "permission denied"),
    });
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    assert_eq!(err.to_string(), "cannot read /ctx/locked: permission denied");
}

#[tokio::test]
async fn dropping_the_body_stops_packing_promptly() {
    use futures::StreamExt as _;
    // 1 GiB at level 0: far more than the channel holds, and minutes of work if it went on.
    let (dir, options) = big_context(1024);
    let mut stream = pack_stream(dir.path().to_owned(), "Dockerfile".to_owned(), options);
    let first = stream.body.next().await.expect("a chunk").expect("ok");
    assert_eq!(first.len(), 256 << 10);
    drop(stream.body);
    // The summary resolving means the packing thread has returned. The timeout only keeps a
    // regression from hanging the suite.
    let summary = tokio::time::timeout(std::time::Duration::from_secs(60), stream.summary)
        .await
        .expect("packing stopped");
    match summary {
        Err(ContextError::Write { source }) => {
            assert_eq!(source.kind(), io::ErrorKind::BrokenPipe);
        }
        other => panic!("expected a write error, got {other:?}"),
    }
}
