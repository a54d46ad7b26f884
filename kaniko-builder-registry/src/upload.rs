//! Streamed blob uploads: `POST` to open an upload session, the body sent with `PATCH` as it is
//! produced (one streamed request, or the distribution spec's chunks), then `PUT ?digest=` with
//! an empty body to commit. The digest and size are computed on the way.
//!
//! No timeout bounds the whole transfer; a watchdog fails the upload when nothing moves for the
//! stall timeout: the body yields nothing ([`StallSide::Body`], timed inside [`Source`]), the
//! connection pulls nothing from the body ([`StallSide::Registry`], timed by [`watchdog`] from
//! what [`Meter`] sees), or the registry does not answer once the body is sent
//! ([`StallSide::Answer`]).

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use kaniko_builder_core::{Digest, ImageRef};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use sha2::Digest as _;
use tokio::time::{Instant, Sleep};
use url::Url;

use crate::blob::{PUSH, unexpected};
use crate::client::{RegistryClient, RegistryState, sensitive, transport_kind};
use crate::error::{Error, Result, StallSide};
use crate::tls;

const OCTET_STREAM: &str = "application/octet-stream";
/// A collected chunk is handed to the connection in slices of this size, so that the watchdog
/// sees the connection's progress within a chunk.
const SLICE: usize = 64 * 1024;
/// The largest `OCI-Chunk-Min-Length` honoured (it raises the memory a chunk needs).
const MAX_MIN_CHUNK: usize = 64 << 20;
/// The longest wait for the best-effort `DELETE` of an abandoned upload session.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

impl RegistryClient {
    /// Uploads `body` as a blob to `repository`'s repository (its tag or digest is ignored) as
    /// it is produced, and returns the blob's sha256 digest, computed on the way.
    ///
    /// `POST /v2/<name>/blobs/uploads/` (with a `pull,push` token, as for
    /// [`push_blob`](Self::push_blob)), then the body to the upload's `Location`: by default
    /// one `PATCH` streamed with chunked transfer encoding (no `Content-Length`), as crane and
    /// kaniko do, or one `PATCH` per chunk with
    /// [`upload_chunk_size`](crate::RegistryClientBuilder::upload_chunk_size); then
    /// `PUT <location>?digest=sha256:…` with an empty body. Each `Location` the registry
    /// returns is followed; credentials are only sent to the registry's own host.
    ///
    /// Memory: the client holds the producer's current item and the connection's write buffer
    /// (a few hundred KiB; plus one chunk in chunked mode). A blob the registry already has is
    /// uploaded again (its digest is not known beforehand; the registry keeps one copy).
    ///
    /// Time: no timeout on the whole transfer; [`Error::Stalled`] when nothing moves for the
    /// [stall timeout](crate::RegistryClientBuilder::upload_stall_timeout), on either side.
    /// Dropping the future abandons the upload.
    ///
    /// Progress: wrap `body` to count what it yields. The connection pulls the next item only
    /// when it has room, so the count runs ahead of what the registry received by at most the
    /// connection's buffers (hyper's write buffer, about 400 KiB, and the kernel's socket
    /// buffer).
    ///
    /// Retries: a streamed body cannot be replayed, so nothing after the `POST` is retried
    /// (the `POST`, which has no body, is retried and authenticated like a probe). On failure
    /// the upload session is cancelled (`DELETE`, best effort) and nothing is committed.
    ///
    /// # Errors
    /// As for [`push_blob`](Self::push_blob); [`Error::Body`] with the body's own error when
    /// the body yields one; [`Error::Stalled`] (retryable, with a new body) as above;
    /// [`Error::Transport`] with one attempt when the connection breaks during the upload.
    #[tracing::instrument(level = "debug", skip(self, body), fields(repository = %repository.name()))]
    pub async fn push_blob_stream<S>(&self, repository: &ImageRef, body: S) -> Result<Digest>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        let st = self.state_for(repository);
        let name = repository.repository();
        let options = self.inner.upload;
        let start_url = st.url(&format!("/v2/{name}/blobs/uploads/"));
        let started = self
            .send_scoped(&st, name, PUSH, || {
                st.http.post(&start_url).header(CONTENT_LENGTH, "0")
            })
            .await?;
        if started.status() != StatusCode::ACCEPTED {
            return Err(unexpected(&st, name, started.status()));
        }
        let base = Url::parse(&start_url).map_err(|_| unexpected(&st, name, StatusCode::ACCEPTED))?;
        let mut location =
            next_location(&st, &started, &base).ok_or_else(|| unexpected(&st, name, StatusCode::ACCEPTED))?;
        let min_chunk = started
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        drop(started);

        let shared = Arc::new(Shared::new(options.stall_timeout));
        let source = Source::new(Box::pin(body), Arc::clone(&shared));
        let up = Upload {
            client: self,
            st: &st,
            name,
            shared: &shared,
        };
        let sent = match options.chunk_size {
            None => up.streamed(source, &mut location).await,
            Some(n) => {
                let chunk = match min_chunk {
                    Some(min) if min > n && min <= MAX_MIN_CHUNK => {
                        tracing::debug!(configured = n, min, "registry asks for larger chunks");
                        min
                    }
                    _ => n,
                };
                up.chunked(source, chunk, &mut location).await
            }
        };
        let (digest, size) = match sent {
            Ok(done) => done,
            Err(e) => {
                up.cancel(&location).await;
                return Err(e);
            }
        };
        tracing::debug!(%digest, size, "blob sent, committing");
        match up.commit(&location, &digest).await {
            Ok(()) => {
                tracing::debug!(%digest, size, "blob uploaded");
                Ok(digest)
            }
            Err(e) => {
                up.cancel(&location).await;
                Err(e)
            }
        }
    }
}

/// One upload in progress.
struct Upload<'a> {
    client: &'a RegistryClient,
    st: &'a RegistryState,
    name: &'a str,
    shared: &'a Shared,
}

impl Upload<'_> {
    /// The whole body in one `PATCH`, chunked transfer encoding.
    async fn streamed<S>(&self, source: Source<S>, location: &mut Url) -> Result<(Digest, u64)>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static,
    {
        let shared = Arc::clone(&source.shared);
        let body = reqwest::Body::wrap_stream(Meter {
            inner: source,
            shared,
        });
        let req = self
            .st
            .http
            .patch(location.as_str())
            .header(CONTENT_TYPE, OCTET_STREAM)
            .body(body);
        let resp = self.send(req, location).await?;
        let status = resp.status();
        // The registry answered before the end of the body: it cannot have it all.
        let Some(done) = self.shared.finished() else {
            return Err(unexpected(self.st, self.name, status));
        };
        if !matches!(
            status,
            StatusCode::ACCEPTED | StatusCode::NO_CONTENT | StatusCode::CREATED
        ) {
            return Err(unexpected(self.st, self.name, status));
        }
        if let Some(next) = next_location(self.st, &resp, location) {
            *location = next;
        }
        Ok(done)
    }

    /// `PATCH`es of `chunk` bytes with `Content-Range`; each chunk is collected first (its
    /// length goes in `Content-Length`) and sent in [`SLICE`]s without copying.
    async fn chunked<S>(
        &self,
        mut source: Source<S>,
        chunk: usize,
        location: &mut Url,
    ) -> Result<(Digest, u64)>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static,
    {
        let mut offset: u64 = 0;
        let mut carry = Bytes::new();
        loop {
            let mut parts = Vec::new();
            let mut len = 0;
            let mut ended = false;
            while len < chunk {
                let mut item = if carry.is_empty() {
                    match source.next().await {
                        Some(Ok(b)) => b,
                        Some(Err(_)) => return Err(self.failure(None)),
                        None => {
                            ended = true;
                            break;
                        }
                    }
                } else {
                    std::mem::take(&mut carry)
                };
                if len + item.len() > chunk {
                    carry = item.split_off(chunk - len);
                }
                len += item.len();
                parts.extend(slices(item));
            }
            if len > 0 {
                let end = offset + len as u64 - 1;
                let body = reqwest::Body::wrap_stream(Meter {
                    inner: futures::stream::iter(parts.into_iter().map(Ok::<_, io::Error>)),
                    shared: Arc::clone(&source.shared),
                });
                let req = self
                    .st
                    .http
                    .patch(location.as_str())
                    .header(CONTENT_TYPE, OCTET_STREAM)
                    .header(CONTENT_LENGTH, len)
                    .header("content-range", format!("{offset}-{end}"))
                    .body(body);
                let resp = self.send(req, location).await?;
                if !matches!(resp.status(), StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
                    return Err(unexpected(self.st, self.name, resp.status()));
                }
                if let Some(next) = next_location(self.st, &resp, location) {
                    *location = next;
                }
                offset = end + 1;
            }
            if ended {
                return self.shared.finished().ok_or_else(|| self.failure(None));
            }
        }
    }

    /// `PUT <location>?digest=…`, empty body; checks the digest the registry names.
    async fn commit(&self, location: &Url, digest: &Digest) -> Result<()> {
        let mut url = location.clone();
        url.query_pairs_mut().append_pair("digest", &digest.to_string());
        let build = || {
            self.st
                .http
                .put(url.as_str())
                .header(CONTENT_TYPE, OCTET_STREAM)
                .header(CONTENT_LENGTH, "0")
        };
        // A registry may need a while to move a large blob into place: the stall timeout, when
        // longer than the request timeout, bounds the wait for this answer.
        let timeout = self.st.settings.timeout.max(self.shared.stall);
        let resp = if same_origin(self.st, &url) {
            self.client
                .send_scoped_within(self.st, self.name, PUSH, timeout, build)
                .await?
        } else {
            build()
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| self.transport(e))?
        };
        if resp.status() != StatusCode::CREATED {
            return Err(unexpected(self.st, self.name, resp.status()));
        }
        if let Some(said) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && said != digest.to_string()
        {
            return Err(Error::BadDigest {
                registry: self.st.name.clone(),
                reference: format!("{}/{}@{digest}", self.st.name, self.name),
                problem: format!("registry stored the blob as {said}"),
            });
        }
        Ok(())
    }

    /// Sends one upload request once (its body cannot be replayed), authenticated with the
    /// token the `POST` obtained when it goes to the registry's own host, raced against the
    /// [`watchdog`].
    async fn send(&self, mut req: reqwest::RequestBuilder, url: &Url) -> Result<reqwest::Response> {
        if same_origin(self.st, url) {
            if let Some(auth) = self.client.authorization(self.st, self.name, PUSH, false).await? {
                req = req.header(AUTHORIZATION, sensitive(&auth)?);
            }
        } else if url.scheme() == "https" && !self.st.settings.skip_tls_verify {
            // Another host (blob storage): its chain may need the system roots, and a handshake
            // that fails for want of them cannot be retried here.
            tls::load_system_roots().await;
        }
        self.shared.touch(SENDING);
        let sent = tokio::select! {
            sent = req.send() => sent,
            side = watchdog(self.shared) => return Err(self.stalled(side)),
        };
        if self.shared.failed() {
            return Err(self.failure(None));
        }
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => return Err(self.failure(Some(e))),
        };
        let (registry, repository) = (self.st.name.clone(), self.name.to_owned());
        match resp.status() {
            StatusCode::UNAUTHORIZED => Err(Error::Unauthorized {
                registry,
                repository,
                status: 401,
                anonymous: self.anonymous().await?,
            }),
            StatusCode::FORBIDDEN => Err(Error::Denied {
                registry,
                repository,
                anonymous: self.anonymous().await?,
            }),
            StatusCode::TOO_MANY_REQUESTS => Err(Error::RateLimited {
                registry,
                repository,
                attempts: 1,
                retry_after: None,
            }),
            s if s.is_server_error() => Err(Error::Server {
                registry,
                repository,
                status: s.as_u16(),
                attempts: 1,
            }),
            _ => Ok(resp),
        }
    }

    async fn anonymous(&self) -> Result<bool> {
        Ok(self.client.credentials(self.st).await?.is_anonymous())
    }

    /// Cancels the upload session (`DELETE`), best effort: the registry would expire it anyway.
    async fn cancel(&self, location: &Url) {
        let mut req = self
            .st
            .http
            .delete(location.as_str())
            .timeout(self.st.settings.timeout.min(CANCEL_TIMEOUT));
        if same_origin(self.st, location)
            && let Ok(Some(auth)) = self.client.authorization(self.st, self.name, PUSH, false).await
            && let Ok(value) = sensitive(&auth)
        {
            req = req.header(AUTHORIZATION, value);
        }
        match req.send().await {
            Ok(resp) => tracing::debug!(status = resp.status().as_u16(), "upload session cancelled"),
            Err(e) => tracing::debug!(error = %e.without_url(), "cancelling the upload session failed"),
        }
    }

    /// What made the upload fail: the body's error or stall when it had one, else the
    /// connection's error.
    fn failure(&self, transport: Option<reqwest::Error>) -> Error {
        match self.shared.take_failure() {
            Some(Failure::Body(source)) => Error::Body {
                registry: self.st.name.clone(),
                repository: self.name.to_owned(),
                sent: self.shared.sent(),
                source,
            },
            Some(Failure::Stalled) => self.stalled(StallSide::Body),
            None => match transport {
                Some(e) => self.transport(e),
                None => Error::Body {
                    registry: self.st.name.clone(),
                    repository: self.name.to_owned(),
                    sent: self.shared.sent(),
                    source: io::Error::other("the body ended without its digest (already failed)"),
                },
            },
        }
    }

    fn transport(&self, e: reqwest::Error) -> Error {
        let kind = transport_kind(&e);
        tracing::debug!(registry = %self.st.name, ?kind, "upload request failed");
        Error::Transport {
            registry: self.st.name.clone(),
            kind,
            attempts: 1,
            source: Box::new(e.without_url()),
        }
    }

    fn stalled(&self, side: StallSide) -> Error {
        tracing::debug!(registry = %self.st.name, side = side.as_str(), sent = self.shared.sent(), "upload stalled");
        Error::Stalled {
            registry: self.st.name.clone(),
            repository: self.name.to_owned(),
            sent: self.shared.sent(),
            after: self.shared.stall,
            side,
        }
    }
}

/// `bytes` cut into [`SLICE`]s (no copy).
fn slices(mut bytes: Bytes) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(SLICE));
    while bytes.len() > SLICE {
        out.push(bytes.split_to(SLICE));
    }
    if !bytes.is_empty() {
        out.push(bytes);
    }
    out
}

/// The answer's `Location`, resolved against the request's URL; `None` when absent or not on
/// the registry's scheme.
fn next_location(st: &RegistryState, resp: &reqwest::Response, base: &Url) -> Option<Url> {
    let location = resp.headers().get(LOCATION)?.to_str().ok()?;
    let url = base.join(location).ok()?;
    (url.scheme() == st.settings.scheme()).then_some(url)
}

/// Whether `url` is on the registry's own host and port (credentials go nowhere else).
fn same_origin(st: &RegistryState, url: &Url) -> bool {
    Url::parse(&st.url("/")).is_ok_and(|base| {
        base.scheme() == url.scheme()
            && base.host_str() == url.host_str()
            && base.port_or_known_default() == url.port_or_known_default()
    })
}

/// The connection is taking the body (or about to).
const SENDING: u8 = 0;
/// The connection asked for more and the body has nothing yet: the body's own timer runs.
const PRODUCING: u8 = 1;
/// The body is sent; waiting for the answer.
const ANSWER: u8 = 2;

/// State shared by the body (inside the HTTP client), the watchdog and the upload.
#[derive(Debug)]
struct Shared {
    stall: Duration,
    origin: Instant,
    /// Bytes the connection pulled from the body.
    sent: AtomicU64,
    /// When the phase last changed or the connection last pulled bytes, in ms since `origin`.
    last: AtomicU64,
    phase: AtomicU8,
    failure: Mutex<Option<Failure>>,
    failed: std::sync::atomic::AtomicBool,
    /// The digest and size, once the body ended.
    finished: Mutex<Option<(Digest, u64)>>,
}

#[derive(Debug)]
enum Failure {
    /// The body yielded this error.
    Body(io::Error),
    /// The body yielded nothing for the stall timeout.
    Stalled,
}

impl Shared {
    fn new(stall: Duration) -> Self {
        Self {
            stall,
            origin: Instant::now(),
            sent: AtomicU64::new(0),
            last: AtomicU64::new(0),
            phase: AtomicU8::new(SENDING),
            failure: Mutex::new(None),
            failed: std::sync::atomic::AtomicBool::new(false),
            finished: Mutex::new(None),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self, phase: u8) {
        self.last.store(self.now_ms(), Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn fail(&self, failure: Failure) {
        let mut slot = self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(failure);
        }
        self.failed.store(true, Ordering::Relaxed);
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn take_failure(&self) -> Option<Failure> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn finished(&self) -> Option<(Digest, u64)> {
        self.finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Resolves when the connection has made no progress for the stall timeout, saying where.
/// While the connection waits for the body, the body's own timer ([`Source`]) decides.
async fn watchdog(shared: &Shared) -> StallSide {
    let stall_ms = u64::try_from(shared.stall.as_millis()).unwrap_or(u64::MAX);
    loop {
        let idle = shared
            .now_ms()
            .saturating_sub(shared.last.load(Ordering::Relaxed));
        if idle < stall_ms {
            tokio::time::sleep(Duration::from_millis(stall_ms - idle)).await;
            continue;
        }
        match shared.phase.load(Ordering::Relaxed) {
            SENDING => return StallSide::Registry,
            ANSWER => return StallSide::Answer,
            _ => tokio::time::sleep(shared.stall).await,
        }
    }
}

/// The caller's body: hashes and counts what it yields, times its stalls, and keeps its error
/// for the upload to report (the HTTP client gets a stand-in).
struct Source<S> {
    inner: S,
    shared: Arc<Shared>,
    hasher: sha2::Sha256,
    size: u64,
    timer: Pin<Box<Sleep>>,
    armed: bool,
    done: bool,
}

impl<S> Source<S> {
    fn new(inner: S, shared: Arc<Shared>) -> Self {
        let timer = Box::pin(tokio::time::sleep(shared.stall));
        Self {
            inner,
            shared,
            hasher: sha2::Sha256::new(),
            size: 0,
            timer,
            armed: false,
            done: false,
        }
    }
}

impl<S> Stream for Source<S>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.shared.failed() {
            return Poll::Ready(Some(Err(io::Error::other("the blob's body failed"))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                this.armed = false;
                this.hasher.update(&bytes);
                this.size += bytes.len() as u64;
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                let kind = e.kind();
                this.shared.fail(Failure::Body(e));
                Poll::Ready(Some(Err(io::Error::new(kind, "the blob's body failed"))))
            }
            Poll::Ready(None) => {
                this.done = true;
                let hex: String = std::mem::take(&mut this.hasher)
                    .finalize()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                match Digest::parse(&format!("sha256:{hex}")) {
                    Ok(digest) => {
                        *this
                            .shared
                            .finished
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((digest, this.size));
                        Poll::Ready(None)
                    }
                    Err(e) => {
                        this.shared.fail(Failure::Body(io::Error::other(e)));
                        Poll::Ready(Some(Err(io::Error::other("the blob's body failed"))))
                    }
                }
            }
            Poll::Pending => {
                if !this.armed {
                    this.armed = true;
                    let deadline = Instant::now() + this.shared.stall;
                    this.timer.as_mut().reset(deadline);
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.shared.fail(Failure::Stalled);
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the blob's body produced no data",
                    ))));
                }
                Poll::Pending
            }
        }
    }
}

/// What the connection pulls from the body: counts it and tells the watchdog.
struct Meter<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Stream for Meter<S>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = this.inner.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(bytes))) => {
                this.shared.sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                this.shared.touch(SENDING);
            }
            Poll::Ready(None) => this.shared.touch(ANSWER),
            Poll::Ready(Some(Err(_))) => {}
            Poll::Pending => {
                if this.shared.phase.load(Ordering::Relaxed) != PRODUCING {
                    this.shared.touch(PRODUCING);
                }
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_bytes_without_copying() {
        let data = Bytes::from(vec![1u8; SLICE * 2 + 5]);
        let parts = slices(data.clone());
        assert_eq!(
            parts.iter().map(Bytes::len).collect::<Vec<_>>(),
            [SLICE, SLICE, 5]
        );
        assert_eq!(parts[0].as_ptr(), data.as_ptr());
        assert!(slices(Bytes::new()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_source_hashes_counts_and_times_out_a_silent_body() {
        let shared = Arc::new(Shared::new(Duration::from_secs(5)));
        let body = futures::stream::iter([Ok(Bytes::from_static(b"foo"))]).chain(futures::stream::pending());
        let mut source = Source::new(Box::pin(body), Arc::clone(&shared));
        assert_eq!(
            source.next().await.expect("an item").expect("data"),
            Bytes::from_static(b"foo")
        );
        let started = Instant::now();
        let err = source.next().await.expect("an item").expect_err("a stall");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(matches!(shared.take_failure(), Some(Failure::Stalled)));

        let shared = Arc::new(Shared::new(Duration::from_secs(5)));
        let mut source = Source::new(
            Box::pin(futures::stream::iter([Ok(Bytes::from_static(b"foo"))])),
            Arc::clone(&shared),
        );
        while source.next().await.is_some() {}
        assert_eq!(
            shared.finished(),
            Some((Digest::sha256(b"foo"), 3)),
            "digest and size of what went through"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_names_the_side_that_stopped() {
        let shared = Shared::new(Duration::from_secs(3));
        shared.touch(SENDING);
        let started = Instant::now();
        assert_eq!(watchdog(&shared).await, StallSide::Registry);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        shared.touch(ANSWER);
        assert_eq!(watchdog(&shared).await, StallSide::Answer);
        // Waiting for the body: the body's timer decides, the watchdog does not fire.
        shared.touch(PRODUCING);
        let waited = tokio::time::timeout(Duration::from_secs(60), watchdog(&shared)).await;
        assert!(waited.is_err(), "{waited:?}");
    }
}
