//! Handing a local directory to the build, never holding it whole: hashed first (its content
//! digest is part of the build hash, and so of the Job's name), then packed as a stream straight
//! into the registry ([`push`]) or the init container ([`super::upload`]). Packing again checks
//! that the files are still the ones the name was computed from.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::Stream;
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{
    BlobBody, BlobStore, BuildEvent, BuildPlan, CancellationToken, EventSink, ExecError, FailureReason,
    UploadVia,
};
use kaniko_builder_core::{BuildConfig, Digest};

use super::exec_error;
use crate::context::{self, ContextError, PackOptions, PackStream, PackSummary};

/// Progress is reported every this many bytes sent.
pub(super) const PROGRESS_EVERY: u64 = 4 * 1024 * 1024;

/// A build's local directory, as the runner packs it.
#[derive(Debug, Clone)]
pub(crate) struct LocalContext {
    dir: PathBuf,
    dockerfile: String,
    options: PackOptions,
    /// The content digest the build (and its Job) was named after.
    expected: Option<Digest>,
}

impl LocalContext {
    /// The local directory of `config`, if its context is one.
    pub(super) fn of(config: &BuildConfig, options: &PackOptions) -> Option<Self> {
        let ContextSource::LocalDir(dir) = config.context() else {
            return None;
        };
        Some(Self {
            dir: dir.clone(),
            dockerfile: config.dockerfile().to_owned(),
            options: options.clone(),
            expected: config.context_digest().cloned(),
        })
    }

    /// Starts packing on a blocking thread.
    pub(crate) fn stream(&self) -> PackStream {
        context::pack_stream(self.dir.clone(), self.dockerfile.clone(), self.options.clone())
    }

    /// Whether the packed files are the ones the build was named after.
    pub(crate) fn check(&self, summary: &PackSummary) -> Result<(), FailureReason> {
        match &self.expected {
            Some(expected) if *expected != summary.content.diff_id => Err(FailureReason::Context {
                message: format!(
                    "the files in {} changed while the build started (hashed {expected}, packed {}); \
                     the Job is named after the files as first hashed: run the build again",
                    self.dir.display(),
                    summary.content.diff_id
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// The plan, its config pinned to the content of its local directory
/// ([`BuildConfig::with_context_digest`]); `None` for other contexts or an already pinned one.
/// Hashing reads every file (on the blocking pool); cancelling stops waiting for it.
pub(super) async fn pin_content(
    plan: &BuildPlan,
    options: &PackOptions,
    cancel: &CancellationToken,
) -> Result<Option<BuildPlan>, ExecError> {
    let ContextSource::LocalDir(dir) = plan.config.context() else {
        return Ok(None);
    };
    if plan.config.context_digest().is_some() {
        return Ok(None);
    }
    let (dir, dockerfile, options) = (dir.clone(), plan.config.dockerfile().to_owned(), options.clone());
    let hashing = tokio::task::spawn_blocking(move || context::hash(&dir, &dockerfile, &options));
    let hashed = tokio::select! {
        () = cancel.cancelled() => return Err(exec_error(FailureReason::Cancelled)),
        r = hashing => r,
    };
    let digest = hashed
        .map_err(|e| {
            exec_error(FailureReason::Context {
                message: format!("hashing task failed: {e}"),
            })
        })?
        .map_err(context_failure)?;
    tracing::debug!(diff_id = %digest.diff_id, entries = digest.entries, bytes = digest.uncompressed, "local context hashed");
    let config = plan.config.clone().with_context_digest(digest.diff_id);
    Ok(Some(BuildPlan::new(config, plan.reason, plan.probed.clone())))
}

/// A packing failure as the build's failure.
pub(crate) fn context_failure(e: ContextError) -> ExecError {
    exec_error(FailureReason::Context {
        message: e.to_string(),
    })
    .with_source(e)
}

/// Packs `local` straight into `store` as a blob of `image`'s repository; returns its digest.
/// The registry client times out on a stall, not on the whole transfer.
pub(super) async fn push(
    store: &dyn BlobStore,
    image: &kaniko_builder_core::ImageRef,
    local: &LocalContext,
    events: &EventSink,
) -> Result<Digest, ExecError> {
    let PackStream { body, summary, .. } = local.stream();
    let counted = Counted::new(body, events.clone());
    let body_failed = Arc::clone(&counted.failed);
    // Packed is reported when the last byte is produced, not when the registry answers.
    let summary = async {
        let summary = summary.await;
        if let Ok(s) = &summary {
            packed(events, s);
        }
        summary
    };
    let (pushed, summary) = tokio::join!(store.push_blob(image, Box::pin(counted)), summary);
    // A body that failed explains the upload's failure: report the packing error.
    let summary = match (summary, &pushed) {
        (Err(e), Err(_)) if body_failed.load(Ordering::Relaxed) => return Err(context_failure(e)),
        (Err(e), Ok(_)) => return Err(context_failure(e)),
        (summary, _) => summary,
    };
    let digest = pushed.map_err(|e| {
        exec_error(FailureReason::Context {
            message: format!("cannot push the context blob to {}: {e}", image.name()),
        })
        .with_source(e)
    })?;
    let summary = summary.map_err(context_failure)?;
    local.check(&summary).map_err(exec_error)?;
    if digest != summary.digest {
        return Err(exec_error(FailureReason::Context {
            message: format!(
                "the registry stored the context as {digest}, but it was packed as {}",
                summary.digest
            ),
        }));
    }
    events.send(BuildEvent::ContextUploaded {
        bytes: summary.compressed,
        via: UploadVia::Registry {
            digest: digest.clone(),
        },
    });
    Ok(digest)
}

/// Reports a finished packing.
pub(crate) fn packed(events: &EventSink, summary: &PackSummary) {
    events.send(BuildEvent::ContextPacked {
        entries: summary.content.entries,
        bytes: summary.compressed,
        digest: summary.digest.clone(),
    });
}

/// A body that reports progress as it is pulled, and remembers whether it yielded an error.
pub(crate) struct Counted {
    body: BlobBody,
    events: EventSink,
    sent: u64,
    reported: u64,
    failed: Arc<AtomicBool>,
}

impl Counted {
    pub(crate) fn new(body: BlobBody, events: EventSink) -> Self {
        Self {
            body,
            events,
            sent: 0,
            reported: 0,
            failed: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Stream for Counted {
    type Item = std::io::Result<bytes::Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = std::task::ready!(this.body.as_mut().poll_next(cx));
        match &item {
            Some(Ok(chunk)) => {
                this.sent += chunk.len() as u64;
                if this.sent - this.reported >= PROGRESS_EVERY {
                    this.reported = this.sent;
                    this.events.send(BuildEvent::ContextProgress { sent: this.sent });
                }
            }
            Some(Err(_)) => this.failed.store(true, Ordering::Relaxed),
            None => {}
        }
        Poll::Ready(item)
    }
}
