//! Writing the listed entries as a tar stream, file contents streamed through and checked
//! against their headers, and the writers that hash and count what passes.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use kaniko_builder_core::Digest;
use sha2::Digest as _;

use crate::ContextError;
use crate::walk::Kind;

/// Read size for file contents: large enough that syscalls cost nothing next to hashing and
/// compression, small enough to be irrelevant to memory.
const READ_BUFFER: usize = 64 << 10;

/// What the entries added up to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    pub(crate) entries: u64,
    /// The files' total size.
    pub(crate) uncompressed: u64,
}

/// Writes `entries` (from [`crate::walk::list`]) to `tar`, streaming each file from disk.
///
/// Write errors of the output are reported as [`ContextError::Write`]; failures to read a file as
/// [`ContextError::Io`] naming it; a file whose length differs from its header as
/// [`ContextError::Changed`]. On error the tar stream is left incomplete: the caller must
/// discard it.
pub(crate) fn write_entries<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    entries: &[(String, Kind)],
    max_bytes: Option<u64>,
) -> Result<Written, ContextError> {
    let mut uncompressed = 0u64;
    for (path, kind) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match kind {
            Kind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, format!("{path}/"), io::empty())
                    .map_err(write_err)?;
            }
            Kind::File { executable } => {
                let full = root.join(path);
                let file = fs::File::open(&full).map_err(crate::io_err(&full))?;
                let meta = file.metadata().map_err(crate::io_err(&full))?;
                if !meta.is_file() {
                    // Replaced (by a link to a device, say) since the directory was listed.
                    return Err(ContextError::Changed { path: full });
                }
                // The size is checked before reading: a huge file is refused unread.
                let len = meta.len();
                uncompressed = uncompressed.saturating_add(len);
                if let Some(max) = max_bytes
                    && uncompressed > max
                {
                    return Err(ContextError::TooLarge { max });
                }
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if *executable { 0o755 } else { 0o644 });
                header.set_size(len);
                let mut exact = ExactReader::new(file, len);
                let appended = tar.append_data(
                    &mut header,
                    path,
                    io::BufReader::with_capacity(READ_BUFFER, &mut exact),
                );
                match (appended, exact.failure) {
                    (_, Some(ReadFailure::Changed)) => return Err(ContextError::Changed { path: full }),
                    (Err(source), Some(ReadFailure::Read)) => {
                        return Err(ContextError::Io { path: full, source });
                    }
                    (Err(source), None) => return Err(write_err(source)),
                    (Ok(()), _) if !exact.ended => return Err(ContextError::Changed { path: full }),
                    (Ok(()), _) => {}
                }
            }
            Kind::Link(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, path, target).map_err(write_err)?;
            }
        }
    }
    Ok(Written {
        entries: entries.len() as u64,
        uncompressed,
    })
}

pub(crate) fn write_err(source: io::Error) -> ContextError {
    ContextError::Write { source }
}

/// Why an [`ExactReader`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadFailure {
    /// The file yielded fewer or more bytes than its header says.
    Changed,
    /// Reading failed.
    Read,
}

/// Reads exactly `len` bytes from `inner` and then checks that it has ended: a file that is
/// shorter or longer than when its header was written (it changed while being packed) fails
/// with [`ReadFailure::Changed`] recorded, instead of corrupting the archive.
#[derive(Debug)]
pub(crate) struct ExactReader<R> {
    inner: R,
    remaining: u64,
    /// Whether the end was read after exactly `len` bytes.
    pub(crate) ended: bool,
    pub(crate) failure: Option<ReadFailure>,
}

impl<R: Read> ExactReader<R> {
    pub(crate) fn new(inner: R, len: u64) -> Self {
        Self {
            inner,
            remaining: len,
            ended: false,
            failure: None,
        }
    }

    fn fail(&mut self, failure: ReadFailure, error: io::Error) -> io::Error {
        self.failure = Some(failure);
        error
    }
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(failure) = self.failure {
            let message = match failure {
                ReadFailure::Changed => "the file changed while it was read",
                ReadFailure::Read => "reading the file failed",
            };
            return Err(io::Error::other(message));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            // Everything the header announced was read: the file must end here.
            let mut probe = [0u8; 1];
            return loop {
                match self.inner.read(&mut probe) {
                    Ok(0) => {
                        self.ended = true;
                        break Ok(0);
                    }
                    Ok(_) => {
                        break Err(self.fail(
                            ReadFailure::Changed,
                            io::Error::new(io::ErrorKind::InvalidData, "the file grew while it was read"),
                        ));
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(self.fail(ReadFailure::Read, e)),
                }
            };
        }
        let want = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        match self.inner.read(&mut buf[..want]) {
            Ok(0) => Err(self.fail(
                ReadFailure::Changed,
                io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was read"),
            )),
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(self.fail(ReadFailure::Read, e)),
        }
    }
}

/// Hashes (sha256) and counts what is written through it.
#[derive(Debug)]
pub(crate) struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
    count: u64,
}

impl<W: Write> Hashing<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: sha2::Sha256::new(),
            count: 0,
        }
    }

    pub(crate) fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The digest and count of what was written, and the inner writer.
    pub(crate) fn finish(self) -> (Digest, u64, W) {
        let hex: String = self
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let digest = Digest::parse(&format!("sha256:{hex}")).expect("a sha256 in hex is a valid digest");
        (digest, self.count, self.inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The caller's writer, silenced once packing failed: the tar and gzip encoders write their
/// trailers when dropped, and an archive that failed must not end looking complete.
#[derive(Debug)]
pub(crate) struct Output<W> {
    inner: W,
    silenced: bool,
}

impl<W: Write> Output<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            silenced: false,
        }
    }

    /// Discards everything written from now on.
    pub(crate) fn silence(&mut self) {
        self.silenced = true;
    }

    pub(crate) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.silenced {
            return Ok(buf.len());
        }
        self.inner.write(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                // Whatever follows is written after a hole: drop it.
                self.silenced = true;
            }
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.silenced {
            return Ok(());
        }
        self.inner.flush()
    }
}
