//! [`BuildSet`]: many images at once, as a platform tool rebuilds a fleet after a base-image
//! change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::build::{Options, secret_docker_config};
use crate::core::flow::{BuildOutcome, EventSink, FlowOptions, ImageProbe, RegistryFailure, run_build};
use crate::core::{BuildConfig, ImageRef, Probe};
use crate::{Error, Result};

/// Default [`BuildSet::concurrency`].
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Builds many images: the probes are batched (concurrent, before any Job), identical
/// targets (the same build hash, hence the same Job name) are built once, at most
/// [`concurrency`](Self::concurrency) Jobs run at a time, and every image gets its own outcome,
/// in input order. A failure does not cancel the others unless [`fail_fast`](Self::fail_fast).
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
    sink: Option<EventSink>,
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
            sink: None,
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

    /// Sends every build's events to `sink` (events carry no image: use one [`Build`](crate::Build)
    /// per image to tell them apart). Default: discarded.
    pub fn event_sink(mut self, sink: EventSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Runs the set.
    ///
    /// # Errors
    /// The outer error is for the whole set (no Kubernetes configuration, a registry client or
    /// credentials that cannot be set up); each image's own failure is in its [`SetResult`].
    pub async fn run(self) -> Result<Vec<SetResult>> {
        if self.configs.is_empty() {
            return Ok(Vec::new());
        }
        let registry = self.opts.registry(&self.configs)?;
        let client = self.opts.kube().await?;
        let json = secret_docker_config(&registry, &self.configs).await?;
        let runner = self.opts.runner(client, &registry, json);

        // Distinct targets, in order of first appearance.
        let mut index_of: HashMap<String, usize> = HashMap::new();
        let mut distinct: Vec<&BuildConfig> = Vec::new();
        let slot: Vec<usize> = self
            .configs
            .iter()
            .map(|c| {
                *index_of.entry(c.job_name()).or_insert_with(|| {
                    distinct.push(c);
                    distinct.len() - 1
                })
            })
            .collect();

        // Owned data from here on: each build is a task (bounded by a semaphore), which keeps
        // the future `Send` without higher-ranked closure bounds.
        let images: Vec<ImageRef> = distinct.iter().map(|c| c.image().clone()).collect();
        // All at once over the client's pooled connections, one token fetch per repository.
        // (`RegistryClient::probe_many`'s future is not provably `Send`, so it cannot be used in
        // a future that must be spawnable; this is the same batch without the stream adapter.)
        let probes = futures::future::join_all(images.iter().map(|i| registry.probe(i))).await;
        let cancel = self.opts.cancel.child_token();
        let sink = self.sink.clone().unwrap_or_else(EventSink::discard);
        let permits = Arc::new(tokio::sync::Semaphore::new(self.concurrency));
        let registry = Arc::new(registry);
        let runner = Arc::new(runner);
        let fail_fast = self.fail_fast;
        let tasks: Vec<_> = distinct
            .into_iter()
            .cloned()
            .zip(probes)
            .map(|(config, first)| {
                let (registry, runner, cancel, sink, permits) = (
                    Arc::clone(&registry),
                    Arc::clone(&runner),
                    cancel.clone(),
                    sink.clone(),
                    Arc::clone(&permits),
                );
                tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let probe = FirstProbe {
                        registry: &registry,
                        image: config.image(),
                        first: Mutex::new(Some(first)),
                    };
                    let out =
                        run_build(&config, &probe, &*runner, &sink, &cancel, &FlowOptions::default()).await;
                    if out.is_err() && fail_fast {
                        cancel.cancel();
                    }
                    out.map_err(|e| Arc::new(Error::Build(e)))
                })
            })
            .collect();
        let mut results: Vec<(usize, SetResult)> = Vec::with_capacity(tasks.len());
        for (i, task) in tasks.into_iter().enumerate() {
            let r = task
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            results.push((i, r));
        }
        results.sort_by_key(|(i, _)| *i);
        Ok(slot.into_iter().map(|i| results[i].1.clone()).collect())
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
                return first.map_err(|e| {
                    let (unauthorized, retryable) = (e.is_unauthorized(), e.is_retryable());
                    RegistryFailure::new(e, unauthorized, retryable)
                });
            }
        }
        ImageProbe::probe(self.registry, image).await
    }
}
