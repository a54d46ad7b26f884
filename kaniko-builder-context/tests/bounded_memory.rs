//! Packing streams in bounded memory: a context of 256 MiB, consumed slowly, never has more than
//! a few MiB of heap live. Its own test binary, because the global allocator that counts the
//! live bytes would count every other test's allocations too.

use std::io::Write as _;
use std::path::Path;

use futures::StreamExt as _;
use kaniko_builder_context::{PackOptions, pack_stream};
use peak_alloc::PeakAlloc;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

/// The bound asserted: the channel holds 4 chunks of 256 KiB, the deflate state and read buffer
/// add about 1 MiB (2.0 MiB peak measured); 16 MiB is a generous ceiling that buffering the
/// output would break at once.
const LIMIT: usize = 16 << 20;

/// Waits until the live heap stops changing (the packing thread is blocked on the full channel)
/// or exceeds [`LIMIT`] (it is not blocked: nothing bounds it). The consumer stands still
/// meanwhile, as a slow upload would; this makes the test fail on unbounded buffering however
/// fast or slow the machine, and never on a correct packer (at worst it waits 10 s).
async fn until_packing_waits() {
    let started = tokio::time::Instant::now();
    let mut last = HEAP.current_usage();
    let mut stable = 0;
    while stable < 3 && last <= LIMIT && started.elapsed() < std::time::Duration::from_secs(10) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = HEAP.current_usage();
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
    }
}

/// Writes `len` pseudo-random bytes (xorshift64) to `path`, in small pieces.
fn noise_file(path: &Path, len: usize, mut seed: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut written = 0;
    while written < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let bytes = seed.to_le_bytes();
        let n = bytes.len().min(len - written);
        file.write_all(&bytes[..n]).expect("write");
        written += n;
    }
    file.flush().expect("flush");
}

#[tokio::test(flavor = "current_thread")]
async fn a_large_context_streams_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    let dockerfile = "FROM scratch\nCOPY . /\n";
    std::fs::write(root.join("Dockerfile"), dockerfile).expect("write");
    // 224 MiB in four large files (sparse: no disk, fast to read) ...
    for i in 0..4 {
        std::fs::File::create(root.join(format!("large-{i}.bin")))
            .expect("create")
            .set_len(56 << 20)
            .expect("set_len");
    }
    // ... and 32 MiB in 2048 small files.
    std::fs::create_dir(root.join("small")).expect("mkdir");
    for i in 0..2048u64 {
        noise_file(&root.join(format!("small/{i:04}")), 16 << 10, i + 1);
    }

    HEAP.reset_peak_usage();
    let before = HEAP.current_usage();
    // Level 0 (stored): the output is as large as the input, so the channel is filled at once
    // and all along, and debug builds pack fast enough. The deflate state is allocated as for
    // any level.
    let options = PackOptions::default().compression_level(0);
    let packing = pack_stream(root.to_owned(), "Dockerfile".to_owned(), options);
    let mut body = packing.body;
    let (mut chunks, mut sent) = (0u64, 0u64);
    until_packing_waits().await;
    while let Some(chunk) = body.next().await {
        sent += chunk.expect("chunk").len() as u64;
        chunks += 1;
        // A slow consumer: it stops now and then, and packing has to wait for it.
        if chunks % 256 == 0 {
            until_packing_waits().await;
        }
    }
    let summary = packing.summary.await.expect("summary");
    let peak = HEAP.peak_usage();

    assert_eq!(
        summary.content.uncompressed,
        (256 << 20) + dockerfile.len() as u64
    );
    assert_eq!(summary.content.entries, 1 + 4 + 1 + 2048);
    assert_eq!(summary.compressed, sent);
    assert!(sent > 256 << 20, "{sent} bytes sent in {chunks} chunks");
    assert!(
        peak < LIMIT,
        "peak live heap {peak} bytes (before packing {before}) for {} bytes packed",
        summary.content.uncompressed
    );
}
