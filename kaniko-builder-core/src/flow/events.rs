//! Progress of one build as typed events, and the sink they go through.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use serde::Serialize;

use super::{Decision, ObjectRef};
use crate::digest::Digest;
use crate::platform::Platform;

/// One step of a build, or a line of its log. Steps arrive in order; under pressure a slow
/// consumer loses log lines (replaced by one [`BuildEvent::LogsDropped`]), never steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BuildEvent {
    /// The caller's registry probe answered.
    Probed {
        /// Whether the image exists.
        exists: bool,
        /// Its digest, when it exists.
        digest: Option<Digest>,
    },
    /// The namespace-wide and per-build objects (Secret, ConfigMap…) were applied.
    Applied {
        /// What was applied, in order.
        objects: Vec<ObjectRef>,
    },
    /// The local build context was packed (sent as it was packed: this comes once the last byte
    /// was produced).
    ContextPacked {
        /// Files and directories in the archive.
        entries: u64,
        /// Size of the gzipped archive.
        bytes: u64,
        /// Its digest.
        digest: Digest,
    },
    /// The Job was created and waits for its Pod.
    Queued {
        /// The Job's name.
        job: String,
        /// Its namespace.
        namespace: String,
    },
    /// The same build was already running: this run follows that Job instead of creating one.
    Attached {
        /// The Job's name.
        job: String,
        /// Its namespace.
        namespace: String,
    },
    /// The Pod was bound to a node.
    Scheduled {
        /// The node's name.
        node: String,
    },
    /// The node running the Pod stopped reporting (the Node is not `Ready`, or the node
    /// controller marked the Pod not ready). The build fails as
    /// [`FailureReason::NodeLost`](super::FailureReason::NodeLost) unless the node comes back
    /// within the executor's grace.
    NodeNotReady {
        /// The node.
        node: Option<String>,
        /// What the cluster said.
        message: String,
    },
    /// A container waits for its image.
    PullingImage {
        /// The container.
        container: String,
    },
    /// The in-cluster check decided.
    InitCheck {
        /// What it decided.
        decision: Decision,
    },
    /// Part of the local context was sent, as it is packed (every few MiB): `sent` bytes of the
    /// `tar.gz` so far. Its total size is known only at the end ([`ContextUploaded`](Self::ContextUploaded)).
    /// A queue ([`EventSink::channel`]) keeps only the latest of those not read yet.
    ContextProgress {
        /// Bytes sent so far.
        sent: u64,
    },
    /// All of the local context reached the cluster.
    ContextUploaded {
        /// Bytes sent (the `tar.gz`).
        bytes: u64,
        /// How.
        via: UploadVia,
    },
    /// kaniko started building.
    Building,
    /// One line of a container's log (without its line ending; long lines are cut).
    Log {
        /// `kaniko-init` or `image-builder`.
        container: String,
        /// The line.
        line: String,
    },
    /// The consumer was too slow: this many log lines were dropped here.
    LogsDropped {
        /// How many.
        count: u64,
    },
    /// kaniko pushed the image.
    Pushed {
        /// The digest it reported.
        digest: Digest,
    },
    /// The registry serves the pushed digest, and the tag resolves to it.
    Verified {
        /// The digest.
        digest: Digest,
    },
    /// The executor removed what the policy says to remove.
    CleanedUp {
        /// What stays on the cluster.
        kept: Vec<ObjectRef>,
    },
    /// A warning: the Kubernetes API server's certificate is not verified (its kubeconfig sets
    /// `insecure-skip-tls-verify`), so anyone on the path can read and change the traffic, the
    /// build's registry credentials included. Sent first, by a run that builds its Kubernetes
    /// client itself from such a configuration.
    TlsNotVerified {
        /// The API server's URL.
        server: String,
    },
    /// A step of one platform of a multi-platform build (each platform runs its own Job).
    Platform {
        /// The platform.
        platform: Platform,
        /// What happened to it.
        step: Box<BuildEvent>,
    },
    /// A multi-platform build pushed its image index under the tag.
    IndexPushed {
        /// The index's digest.
        digest: Digest,
        /// The platforms it lists.
        platforms: Vec<Platform>,
    },
}

impl BuildEvent {
    /// Whether the event is a log line (which may be dropped under pressure).
    pub fn is_log(&self) -> bool {
        match self {
            Self::Log { .. } => true,
            Self::Platform { step, .. } => step.is_log(),
            _ => false,
        }
    }

    /// The platform a step of a multi-platform build belongs to, and the step.
    pub fn platform(&self) -> Option<(&Platform, &BuildEvent)> {
        match self {
            Self::Platform { platform, step } => Some((platform, step)),
            _ => None,
        }
    }
}

/// How the local context reached the Pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "via", rename_all = "snake_case")]
#[non_exhaustive]
pub enum UploadVia {
    /// As a blob in the destination repository, fetched by the init container.
    Registry {
        /// The blob's digest.
        digest: Digest,
    },
    /// Streamed into the init container over `pods/exec`.
    Exec,
}

/// Where a build's events go: a bounded queue read as an [`EventStream`], a callback, or nowhere.
/// Cheap to clone; sending never blocks and never fails.
#[derive(Clone)]
pub struct EventSink {
    kind: SinkKind,
}

#[derive(Clone)]
enum SinkKind {
    Discard,
    Queue(Arc<SenderGuard>),
    Callback(Arc<dyn Fn(BuildEvent) + Send + Sync>),
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            SinkKind::Discard => "discard",
            SinkKind::Queue(_) => "queue",
            SinkKind::Callback(_) => "callback",
        };
        f.debug_struct("EventSink").field("kind", &kind).finish()
    }
}

impl EventSink {
    /// A sink that drops every event.
    pub fn discard() -> Self {
        Self {
            kind: SinkKind::Discard,
        }
    }

    /// A sink that calls `f` for every event, on the task that runs the build: `f` must be quick
    /// and must not block.
    pub fn from_fn(f: impl Fn(BuildEvent) + Send + Sync + 'static) -> Self {
        Self {
            kind: SinkKind::Callback(Arc::new(f)),
        }
    }

    /// A queue holding up to `log_capacity` log lines (at least 1) plus every step; the stream
    /// ends when the last clone of the sink is dropped. When the queue holds `log_capacity` lines,
    /// new lines are dropped and counted in a [`BuildEvent::LogsDropped`].
    pub fn channel(log_capacity: usize) -> (Self, EventStream) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                logs: 0,
                capacity: log_capacity.max(1),
                closed: false,
                waker: None,
            }),
        });
        let sink = Self {
            kind: SinkKind::Queue(Arc::new(SenderGuard {
                shared: Arc::clone(&shared),
            })),
        };
        (sink, EventStream { shared })
    }

    /// Sends an event; never blocks.
    pub fn send(&self, event: BuildEvent) {
        match &self.kind {
            SinkKind::Discard => {}
            SinkKind::Callback(f) => f(event),
            SinkKind::Queue(guard) => guard.shared.push(event),
        }
    }

    /// A sink for one platform of a multi-platform build: each event is sent here wrapped in
    /// [`BuildEvent::Platform`].
    pub fn for_platform(&self, platform: Platform) -> Self {
        if matches!(self.kind, SinkKind::Discard) {
            return self.clone();
        }
        let parent = self.clone();
        Self::from_fn(move |event| {
            parent.send(BuildEvent::Platform {
                platform: platform.clone(),
                step: Box::new(event),
            });
        })
    }

    /// Sends a log line.
    pub fn log(&self, container: &str, line: impl Into<String>) {
        self.send(BuildEvent::Log {
            container: container.to_owned(),
            line: line.into(),
        });
    }
}

struct SenderGuard {
    shared: Arc<Shared>,
}

impl Drop for SenderGuard {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        if let Some(w) = state.waker.take() {
            w.wake();
        }
    }
}

struct Shared {
    state: Mutex<State>,
}

struct State {
    queue: VecDeque<BuildEvent>,
    /// Log lines in the queue.
    logs: usize,
    capacity: usize,
    closed: bool,
    waker: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves the queue consistent: keep using it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, event: BuildEvent) {
        let mut state = self.lock();
        if event.is_log() {
            if state.logs >= state.capacity {
                match state.queue.back_mut() {
                    Some(BuildEvent::LogsDropped { count }) => *count += 1,
                    _ => state.queue.push_back(BuildEvent::LogsDropped { count: 1 }),
                }
                return;
            }
            state.logs += 1;
        }
        // Progress not read yet is replaced by newer progress: the queue stays small however
        // long the upload.
        if let (BuildEvent::ContextProgress { sent }, Some(BuildEvent::ContextProgress { sent: queued })) =
            (&event, state.queue.back_mut())
        {
            *queued = *sent;
            return;
        }
        state.queue.push_back(event);
        if let Some(w) = state.waker.take() {
            w.wake();
        }
    }
}

/// The receiving end of [`EventSink::channel`]: a `Stream` of [`BuildEvent`]s that ends when the
/// build's sinks are all dropped (the run is over).
pub struct EventStream {
    shared: Arc<Shared>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("EventStream")
            .field("queued", &state.queue.len())
            .field("closed", &state.closed)
            .finish()
    }
}

impl EventStream {
    /// The next event without waiting: `None` when none is queued.
    pub fn try_next(&mut self) -> Option<BuildEvent> {
        let mut state = self.shared.lock();
        let event = state.queue.pop_front()?;
        if event.is_log() {
            state.logs -= 1;
        }
        Some(event)
    }
}

impl futures::Stream for EventStream {
    type Item = BuildEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BuildEvent>> {
        let mut state = self.shared.lock();
        if let Some(event) = state.queue.pop_front() {
            if event.is_log() {
                state.logs -= 1;
            }
            return Poll::Ready(Some(event));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
