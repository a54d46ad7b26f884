//! [`BuildSet`]: many images at once, as a platform tool rebuilds a fleet after a base-image
//! change.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;

use crate::build::{EVENT_LOG_CAPACITY, Options};
use crate::core::flow::{
    BuildEvent, BuildKey, BuildOutcome, EventSink, EventStream, FlowOptions, ImageProbe, RegistryFailure,
    run_build,
};
use crate::core::{BuildConfig, ImageRef, Probe};
use crate::{Error, Result};

/// Default [`BuildSet::concurrency`].
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Builds many images: the probes are batched (concurrent, before any Job), identical
/// targets (the same [`BuildKey`](crate::core::flow::BuildKey): namespace, build hash and
/// forcing, the key the runner shares runs by) are built once, at most
/// [`concurrency`](Self::concurrency) Jobs run at a time, and every image gets its own outcome,
/// in input order. A failure does not cancel the others unless [`fail_fast`](Self::fail_fast).
/// Each event says which image it belongs to ([`SetEvent`], from [`events`](Self::events) or
/// [`on_event`](Self::on_event)). Dropping the [`run`](Self::run) future cancels the builds and
/// cleans up, as dropping [`Build::run`](crate::Build::run)'s does.
///
/// ```no_run
/// use kaniko_builder::{BuildConfig, BuildSet};
/// # async fn demo() -> Result<(), kaniko_builder::Error> {
/// let configs = ["app-a", "app-b"].map(|name| {
///     BuildConfig::builder(format!("registry.local:5000/{name}:v2").parse().unwrap()).build().unwrap()
/// });
/// for outcome in BuildSet::new(configs).concurrency(2).run().await? {
///     match outcome {
///         Ok(o) => println!("{}: {}", o.image(), o.digest()),
///         Err(e) => eprintln!("{e}"),
///     }
/// }
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Debug)]
pub struct BuildSet {
    configs: Vec<BuildConfig>,
    opts: Options,
    concurrency: usize,
    fail_fast: bool,
    events: SetSinks,
}

/// One image's result in a [`BuildSet`]; the error is shared by the duplicates of a target.
pub type SetResult = std::result::Result<BuildOutcome, Arc<Error>>;

impl BuildSet {
    /// A set of builds with every option at its default.
    pub fn new(configs: impl IntoIterator<Item = BuildConfig>) -> Self {
        Self {
            configs: configs.into_iter().collect(),
            opts: Options::default(),
            concurrency: DEFAULT_CONCURRENCY,
            fail_fast: false,
            events: SetSinks::Discard,
        }
    }

    crate::build::option_setters!();

    /// How many Jobs run at a time (at least 1). Default: [`DEFAULT_CONCURRENCY`].
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Whether the first failure cancels the builds still running or waiting (they then fail
    /// with [`FailureReason::Cancelled`](crate::FailureReason::Cancelled)). Default: false.
    pub fn fail_fast(mut self, yes: bool) -> Self {
        self.fail_fast = yes;
        self
    }

    /// The set's progress as one [`Stream`] of [`SetEvent`]s: every image's steps and log
    /// lines, each tagged with the image and its index in the input. Events of one image arrive
    /// in order; images interleave. Each image buffers up to [`EVENT_LOG_CAPACITY`] log lines
    /// (beyond that its lines are dropped and counted in a [`BuildEvent::LogsDropped`] under its
    /// index; steps never are). An image that duplicates an earlier one (built once) gets the
    /// same events under its own index. Take it before [`run`](Self::run); the stream ends when
    /// the run does. Calling it again, or [`on_event`](Self::on_event), replaces it.
    pub fn events(&mut self) -> SetEventStream {
        let mut sinks = Vec::with_capacity(self.configs.len());
        let mut streams = futures::stream::SelectAll::new();
        for (index, config) in self.configs.iter().enumerate() {
            let (sink, stream) = EventSink::channel(EVENT_LOG_CAPACITY);
            sinks.push(sink);
            streams.push(Tagged {
                index,
                image: config.image().clone(),
                stream,
            });
        }
        self.events = SetSinks::Streams(sinks);
        SetEventStream { streams }
    }

    /// Calls `f` with every [`SetEvent`] (a callback instead of [`events`](Self::events)), on
    /// the task that runs the image's build: `f` must be quick and must not block. Default:
    /// events are discarded.
    pub fn on_event(mut self, f: impl Fn(SetEvent) + Send + Sync + 'static) -> Self {
        self.events = SetSinks::Callback(Arc::new(f));
        self
    }

    /// Runs the set. Dropping the future cancels the builds still running or waiting: each
    /// one's Job is deleted (unless another caller of the same runner shares it), with nobody
    /// waiting, as when a [`Build::run`](crate::Build::run) future is dropped.
    ///
    /// # Errors
    /// The outer error is for the whole set (no Kubernetes configuration, a registry client or
    /// credentials that cannot be set up); each image's own failure is in its [`SetResult`].
    pub async fn run(mut self) -> Result<Vec<SetResult>> {
        if self.configs.is_empty() {
            return Ok(Vec::new());
        }
        let registry = self.opts.registry(&self.configs).await?;
        let client = self.opts.kube().await?;
        // Collected first: a borrowing iterator adapter would make this future not `Send`.
        let destinations: Vec<&ImageRef> = self.configs.iter().flat_map(|c| c.destinations()).collect();
        let json = registry.secret_docker_config(destinations).await?;
        let runner = self.opts.runner(client, &registry, json);

        // Distinct targets (by the key the runner shares runs by), in order of first
        // appearance, each with the indices of the images it serves.
        let mut target_of: HashMap<BuildKey, usize> = HashMap::new();
        let mut targets: Vec<(&BuildConfig, Vec<usize>)> = Vec::new();
        let mut slot: Vec<usize> = Vec::with_capacity(self.configs.len());
        for (index, config) in self.configs.iter().enumerate() {
            let key = BuildKey::new(config, config.force());
            let t = *target_of.entry(key).or_insert_with(|| {
                targets.push((config, Vec::new()));
                targets.len() - 1
            });
            targets[t].1.push(index);
            slot.push(t);
        }

        // All at once over the client's pooled connections, one token fetch per repository.
        let probes = registry
            .probe_many(targets.iter().map(|(config, _)| config.image()))
            .await;
        let cancel = self.opts.cancel.child_token();
        let permits = Arc::new(tokio::sync::Semaphore::new(self.concurrency));
        let registry = Arc::new(registry);
        let runner = Arc::new(runner);
        let fail_fast = self.fail_fast;
        // Each build is a task (bounded by the semaphore) owned by this set: dropping the
        // `run` future drops the set, which aborts them; each aborted build leaves its shared
        // run in the runner, which (as the last member) cancels it and cleans up.
        let mut tasks = tokio::task::JoinSet::new();
        for (t, ((config, indices), first)) in targets.into_iter().zip(probes).enumerate() {
            let sink = self.events.sink_for(&indices, config.image());
            let (config, registry, runner, cancel, permits) = (
                config.clone(),
                Arc::clone(&registry),
                Arc::clone(&runner),
                cancel.clone(),
                Arc::clone(&permits),
            );
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let probe = FirstProbe {
                    registry: &registry,
                    image: config.image(),
                    first: Mutex::new(Some(first)),
                };
                let out = run_build(&config, &probe, &*runner, &sink, &cancel, &FlowOptions::default()).await;
                if out.is_err() && fail_fast {
                    cancel.cancel();
                }
                (t, out.map_err(|e| Arc::new(Error::Build(e))))
            });
        }
        // The set's own ends of the event streams: the streams end when the builds do.
        self.events = SetSinks::Discard;
        let mut results: Vec<Option<SetResult>> = vec![None; tasks.len()];
        while let Some(joined) = tasks.join_next().await {
            let (t, r) = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            results[t] = Some(r);
        }
        Ok(slot
            .into_iter()
            .map(|t| results[t].clone().expect("every build answered"))
            .collect())
    }
}

/// One event of a [`BuildSet`], tagged with the image it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetEvent {
    /// The image's position in the set's input (its result's position in [`BuildSet::run`]'s
    /// answer).
    pub index: usize,
    /// The image.
    pub image: ImageRef,
    /// What happened.
    pub event: BuildEvent,
}

/// Where a [`BuildSet`]'s events go.
enum SetSinks {
    Discard,
    Callback(Arc<dyn Fn(SetEvent) + Send + Sync>),
    /// One queue per input index.
    Streams(Vec<EventSink>),
}

impl fmt::Debug for SetSinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Discard => "discard",
            Self::Callback(_) => "callback",
            Self::Streams(_) => "streams",
        })
    }
}

impl SetSinks {
    /// The sink of one target's build: its events go to every image (index) it serves.
    fn sink_for(&self, indices: &[usize], image: &ImageRef) -> EventSink {
        match self {
            Self::Discard => EventSink::discard(),
            Self::Callback(f) => {
                let (f, indices, image) = (Arc::clone(f), indices.to_vec(), image.clone());
                EventSink::from_fn(move |event| {
                    for &index in &indices {
                        f(SetEvent {
                            index,
                            image: image.clone(),
                            event: event.clone(),
                        });
                    }
                })
            }
            Self::Streams(sinks) => match indices {
                [index] => sinks[*index].clone(),
                _ => {
                    let sinks: Vec<EventSink> = indices.iter().map(|&i| sinks[i].clone()).collect();
                    EventSink::from_fn(move |event| {
                        for sink in &sinks {
                            sink.send(event.clone());
                        }
                    })
                }
            },
        }
    }
}

/// The receiving end of [`BuildSet::events`]: a [`Stream`] of [`SetEvent`]s that ends when the
/// set's run does.
pub struct SetEventStream {
    streams: futures::stream::SelectAll<Tagged>,
}

impl fmt::Debug for SetEventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetEventStream")
            .field("open", &self.streams.len())
            .finish()
    }
}

impl Stream for SetEventStream {
    type Item = SetEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SetEvent>> {
        Pin::new(&mut self.streams).poll_next(cx)
    }
}

/// One image's events, tagged.
struct Tagged {
    index: usize,
    image: ImageRef,
    stream: EventStream,
}

impl Stream for Tagged {
    type Item = SetEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SetEvent>> {
        let this = &mut *self;
        Pin::new(&mut this.stream).poll_next(cx).map(|event| {
            event.map(|event| SetEvent {
                index: this.index,
                image: this.image.clone(),
                event,
            })
        })
    }
}

/// Answers the first probe of the image with the batched result, every later one (the
/// verification) from the registry.
struct FirstProbe<'a> {
    registry: &'a crate::registry::RegistryClient,
    image: &'a ImageRef,
    first: Mutex<Option<crate::registry::Result<Probe>>>,
}

#[async_trait::async_trait]
impl ImageProbe for FirstProbe<'_> {
    async fn probe(&self, image: &ImageRef) -> std::result::Result<Probe, RegistryFailure> {
        if image == self.image {
            let first = self
                .first
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(first) = first {
                return first.map_err(RegistryFailure::from);
            }
        }
        ImageProbe::probe(self.registry, image).await
    }
}
