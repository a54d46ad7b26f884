//! [`pack_stream`]: [`pack_to`](crate::pack_to) on a blocking thread, into a bounded channel of
//! chunks.

use std::io;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use kaniko_builder_core::flow::BlobBody;
use tokio::sync::mpsc;

use crate::{ContextError, PackOptions, PackSummary};

/// The size of the chunks sent: 256 KiB.
const CHUNK: usize = 256 << 10;

/// Chunks buffered in the channel when the consumer is slower than packing.
const BUFFERED_CHUNKS: usize = 4;

/// A context being packed by [`pack_stream`]: its `tar.gz` bytes and, once they are all
/// produced, their summary.
#[non_exhaustive]
pub struct PackStream {
    /// The `tar.gz` as chunks of about 256 KiB. At most a few chunks are buffered (a bounded
    /// channel), so memory stays bounded when the consumer is slow. If packing fails, the stream
    /// yields one `Err(io::Error)` whose message names the culprit, and ends. Dropping the body
    /// stops the packing thread promptly.
    pub body: BlobBody,
    /// Resolves when packing ends: the summary, or the typed [`ContextError`] (the same one the
    /// body's error describes). Dropping it does not stop packing.
    pub summary: BoxFuture<'static, Result<PackSummary, ContextError>>,
}

impl std::fmt::Debug for PackStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackStream").finish_non_exhaustive()
    }
}

/// Packs `root` as [`pack_to`](crate::pack_to) does, on a blocking thread of the current Tokio
/// runtime (`spawn_blocking`), and returns the `tar.gz` as a stream, ready for
/// [`BlobStore::push_blob`](kaniko_builder_core::flow::BlobStore::push_blob). Packing starts
/// at once and runs ahead of the consumer by a few chunks at most.
///
/// ```
/// use futures::StreamExt as _;
/// use kaniko_builder_context::{PackOptions, pack_stream};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n")?;
/// # let root = dir.path().to_owned();
/// let mut packing = pack_stream(root, "Dockerfile".to_owned(), PackOptions::default());
/// let mut sent = 0;
/// while let Some(chunk) = packing.body.next().await {
///     sent += chunk?.len(); // upload it
/// }
/// let summary = packing.summary.await?;
/// assert_eq!(summary.compressed, sent as u64);
/// # Ok(())
/// # }
/// ```
///
/// # Panics
/// When called outside a Tokio runtime.
pub fn pack_stream(root: PathBuf, dockerfile: String, options: PackOptions) -> PackStream {
    let (tx, mut rx) = mpsc::channel(BUFFERED_CHUNKS);
    let task = tokio::task::spawn_blocking(move || {
        let mut writer = ChunkWriter {
            tx,
            buffer: BytesMut::new(),
        };
        let result = crate::pack_to(&root, &dockerfile, &options, &mut writer);
        if let Err(e) = &result {
            // Nobody may be listening any more: then there is no one to tell.
            let _ = writer.tx.blocking_send(Err(stream_error(e)));
        }
        result
    });
    let summary = async move {
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(ContextError::Write {
                source: io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the runtime shut down before the context was packed",
                ),
            }),
        }
    };
    PackStream {
        body: futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed(),
        summary: summary.boxed(),
    }
}

/// The stream's error for `e`: its message with its causes, so that it names the culprit.
pub(crate) fn stream_error(e: &ContextError) -> io::Error {
    let kind = match e {
        ContextError::Io { source, .. } | ContextError::Write { source } => source.kind(),
        ContextError::TooLarge { .. } => io::ErrorKind::FileTooLarge,
        ContextError::Changed { .. } => io::ErrorKind::InvalidData,
        ContextError::InvalidOption { .. } => io::ErrorKind::InvalidInput,
        ContextError::NotADirectory { .. } => io::ErrorKind::NotADirectory,
        ContextError::MissingDockerfile { .. } => io::ErrorKind::NotFound,
        _ => io::ErrorKind::Other,
    };
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    io::Error::new(kind, message)
}

/// Cuts what is written into chunks of [`CHUNK`] bytes and sends them, blocking while the
/// channel is full; fails as soon as the receiver is gone.
struct ChunkWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buffer: BytesMut,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = self.buffer.split().freeze();
        self.tx.blocking_send(Ok(chunk)).map_err(|_| gone())
    }
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the receiver of the packed context was dropped",
    )
}

impl io::Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.tx.is_closed() {
            return Err(gone());
        }
        self.buffer.reserve(CHUNK - self.buffer.len());
        let n = buf.len().min(CHUNK - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    /// Sends what is buffered, however little.
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
