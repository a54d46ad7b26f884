//! One generation of one `ImageBuild`, in its own task: wait for a slot, prepare, run the
//! library's flow (probe first, then run or attach to the Job), record the outcome. Transient
//! problems are retried with back-off; cancellation records nothing and leaves a running Job to
//! whoever takes over (a newer generation of the object deletes it: [`crate::cleanup`]).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use k8s_openapi::api::batch::v1::Job;
use kaniko_builder::core::flow::{FlowOptions, run_build};
use kaniko_builder::k8s::runner::job_finished;
use kaniko_builder::k8s::{CleanupPolicy, KubeRunner, Setup};
use kaniko_builder::{BuildConfig, EventSink};
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::events::EventType;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::context::{Context, Started};
use crate::crd::{ImageBuild, Phase};
use crate::outcome::{self, Verdict};
use crate::prepare::{self, NotReady};
use crate::report;
use crate::status::{self, Step};

/// The shortest wait between two attempts, whatever the options say.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Log lines the report keeps while following (more than the status shows, none lost to a
/// slow status write).
const EVENT_LOG_CAPACITY: usize = 1024;

/// Starts the task that builds the current generation of `build`.
pub(crate) fn spawn(ctx: Arc<Context>, build: Arc<ImageBuild>, config: BuildConfig, started: Started) {
    tokio::spawn(async move {
        let cancel = started.cancel.clone();
        let task = AssertUnwindSafe(run(&ctx, &build, config, &cancel)).catch_unwind();
        if task.await.is_err() {
            // A bug: say so in the status rather than leave the generation in progress forever.
            tracing::error!(imagebuild = %status::key(&build), "the build task panicked");
            let step = Step::new(
                Phase::Failed,
                "InternalError",
                "the controller's build task panicked: see its log",
            );
            let extra = json!({ "completionTime": status::now() });
            let api: Api<ImageBuild> =
                Api::namespaced(ctx.client.clone(), &build.namespace().unwrap_or_default());
            finish(&ctx, &api, &build, &step, extra, &cancel).await;
        }
        drop(started);
    });
}

async fn run(ctx: &Context, build: &ImageBuild, config: BuildConfig, cancel: &CancellationToken) {
    let api: Api<ImageBuild> = Api::namespaced(ctx.client.clone(), &build.namespace().unwrap_or_default());
    let (first, max) = ctx.options.error_backoff;
    let mut backoff = first.max(MIN_BACKOFF);
    loop {
        let problem = match attempt(ctx, &api, build, &config, cancel).await {
            Attempt::Done(step, extra) => return finish(ctx, &api, build, &step, extra, cancel).await,
            Attempt::Cancelled => return,
            Attempt::Retry(problem) => problem,
        };
        tracing::warn!(imagebuild = %status::key(build), %problem, retry_in = ?backoff, "build not started");
        let step = Step::new(
            Phase::Pending,
            "Retrying",
            format!("{problem} (retrying in {}s)", backoff.as_secs()),
        );
        if let Err(e) = status::write(&api, build, &status::patch(build, &step, json!({}))).await
            && e.is_not_found()
        {
            return;
        }
        report::publish(&ctx.recorder, build, EventType::Warning, "Retrying", problem).await;
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = next_backoff(backoff, max);
    }
}

enum Attempt {
    Done(Step, Value),
    Retry(String),
    Cancelled,
}

async fn attempt(
    ctx: &Context,
    api: &Api<ImageBuild>,
    build: &ImageBuild,
    config: &BuildConfig,
    cancel: &CancellationToken,
) -> Attempt {
    let resumed = resumed_job(build);
    if resumed.is_none() {
        let step = Step::new(Phase::Pending, "Pending", "waiting for a build slot");
        let extra =
            json!({ "jobRef": null, "startTime": null, "completionTime": null, "lastLogLines": null });
        if let Err(e) = status::write(api, build, &status::patch(build, &step, extra)).await {
            return gone_or_retry(&e);
        }
    }
    let slot = tokio::select! {
        () = cancel.cancelled() => return Attempt::Cancelled,
        permit = Arc::clone(&ctx.slots).acquire_owned() => permit,
    };
    let Ok(_slot) = slot else {
        return Attempt::Cancelled;
    };
    let started = build
        .status
        .as_ref()
        .filter(|_| resumed.is_some())
        .and_then(|s| s.start_time.clone())
        .unwrap_or_else(status::now);
    let step = Step::new(
        Phase::Building,
        "Building",
        format!("building {}", build.spec.image),
    );
    if let Err(e) = status::write(
        api,
        build,
        &status::patch(build, &step, json!({ "startTime": started })),
    )
    .await
    {
        return gone_or_retry(&e);
    }
    report::publish(
        &ctx.recorder,
        build,
        EventType::Normal,
        "Started",
        step.message.clone(),
    )
    .await;
    match execute(ctx, api, build, config, resumed.as_deref(), cancel).await {
        Ok(Verdict::Final(step, extra)) => Attempt::Done(step, extra),
        Ok(Verdict::Retry(problem)) | Err(NotReady::Retry(problem)) => Attempt::Retry(problem),
        Ok(Verdict::Cancelled) if cancel.is_cancelled() => Attempt::Cancelled,
        // Not by this controller: the library gave up on its own; try again.
        Ok(Verdict::Cancelled) => Attempt::Retry("the build was cancelled unexpectedly".to_owned()),
        Err(NotReady::Invalid(e)) => Attempt::Done(
            Step::new(Phase::Failed, "InvalidSpec", e.to_string()),
            json!({ "completionTime": status::now() }),
        ),
    }
}

/// A status write failed: the object is gone (nothing more to do), or try again.
fn gone_or_retry(e: &crate::Error) -> Attempt {
    if e.is_not_found() {
        Attempt::Cancelled
    } else {
        Attempt::Retry(e.to_string())
    }
}

fn next_backoff(backoff: Duration, max: Duration) -> Duration {
    backoff.saturating_mul(2).min(max).max(MIN_BACKOFF)
}

/// `namespace/name` of the Job a previous controller process started for this generation.
fn resumed_job(build: &ImageBuild) -> Option<String> {
    let status = build.status.as_ref()?;
    let current =
        status.observed_generation == build.metadata.generation && status.phase == Some(Phase::Building);
    current.then_some(())?;
    status
        .job_ref
        .as_ref()
        .map(|j| format!("{}/{}", j.namespace, j.name))
}

/// Prepares and runs the build; the verdict on its result.
async fn execute(
    ctx: &Context,
    api: &Api<ImageBuild>,
    build: &ImageBuild,
    config: &BuildConfig,
    resumed: Option<&str>,
    cancel: &CancellationToken,
) -> Result<Verdict, NotReady> {
    let registry = prepare::registry_client(ctx, build).await?;
    let job_options = prepare::job_options(ctx, build).await?;
    let runner = KubeRunner::builder(ctx.client.clone())
        .job_options(job_options)
        .blob_store(Arc::new(registry.clone()))
        .setup(Setup::Never)
        .cleanup(CleanupPolicy::default().delete_on_cancel(false))
        .log_tail_lines(ctx.options.log_tail_lines)
        .build();
    let finished = match resumed {
        Some(_) => resumed_job_succeeded(ctx, build).await?,
        None => false,
    };
    let config = effective_config(ctx, build, config, finished)?;
    prepare::service_account(ctx, build, &runner, &config).await?;
    let (sink, events) = EventSink::channel(EVENT_LOG_CAPACITY);
    let follow = report::follow(events, &ctx.recorder, api, build, ctx.options.log_tail_lines);
    let run = async {
        let result = run_build(
            &config,
            &registry,
            &runner,
            &sink,
            cancel,
            &FlowOptions::default(),
        )
        .await;
        drop(sink);
        result
    };
    let (result, tail) = tokio::join!(run, follow);
    Ok(outcome::verdict(result, resumed, tail))
}

/// Whether the Job a previous process started for this generation (the status' `jobRef`) has
/// succeeded: then its image is the one under the tag.
async fn resumed_job_succeeded(ctx: &Context, build: &ImageBuild) -> Result<bool, NotReady> {
    let Some(job_ref) = build.status.as_ref().and_then(|s| s.job_ref.as_ref()) else {
        return Ok(false);
    };
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &job_ref.namespace);
    let job = jobs
        .get_opt(&job_ref.name)
        .await
        .map_err(|e| NotReady::Retry(format!("reading Job {}/{}: {e}", job_ref.namespace, job_ref.name)))?;
    Ok(job.is_some_and(|j| {
        job_finished(&j) == Some(true) || j.status.and_then(|s| s.succeeded).unwrap_or_default() > 0
    }))
}

/// The spec's config with what the controller decides: the insecure registries, and forcing.
/// A new generation that changes what is built under a tag this object already built is built
/// again (its tag exists: without forcing it would be skipped). A forced generation taken over
/// from a previous process stays forced while its Job runs (the runner attaches to a running
/// Job of the same build even when forced); once that Job `finished` well, it is not forced, so
/// the probe finds and reports the Job's image instead of building it again.
fn effective_config(
    ctx: &Context,
    build: &ImageBuild,
    config: &BuildConfig,
    finished: bool,
) -> Result<BuildConfig, NotReady> {
    let status = build.status.clone().unwrap_or_default();
    let hash = config.build_hash().to_string();
    let rebuilt = status.image.as_deref() == Some(build.spec.image.as_str())
        && status.digest.is_some()
        && status.build_hash.as_deref().is_some_and(|h| h != hash);
    let force = !finished && (build.spec.force || rebuilt);
    let mut b = config.clone().into_builder().force(force);
    for host in &ctx.options.insecure_registries {
        b = b.insecure_registry(host.clone());
    }
    b.build().map_err(|e| {
        NotReady::Invalid(crate::spec::InvalidSpec {
            field: "spec".to_owned(),
            problem: e.to_string(),
        })
    })
}

/// Records the final status (retrying while the API server refuses) and the closing event.
async fn finish(
    ctx: &Context,
    api: &Api<ImageBuild>,
    build: &ImageBuild,
    step: &Step,
    extra: Value,
    cancel: &CancellationToken,
) {
    let mut extra = extra;
    if step.phase != Phase::Failed || extra.get("digest").is_some() {
        extra["image"] = json!(build.spec.image);
    }
    // Only what this object built counts as "built before" for a later generation: a skip
    // found another's image under the tag.
    if step.phase == Phase::Succeeded
        && let Some(hash) = build_hash(build)
    {
        extra["buildHash"] = json!(hash);
    } else if step.phase == Phase::Skipped {
        extra["buildHash"] = Value::Null;
    }
    let patch = status::patch(build, step, extra);
    let mut backoff = ctx.options.error_backoff.0.max(MIN_BACKOFF);
    while let Err(e) = status::write(api, build, &patch).await {
        if e.is_not_found() {
            return;
        }
        tracing::warn!(imagebuild = %status::key(build), error = %e, "cannot record the outcome; retrying");
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = next_backoff(backoff, ctx.options.error_backoff.1);
    }
    let type_ = if step.phase == Phase::Failed {
        EventType::Warning
    } else {
        EventType::Normal
    };
    report::publish(&ctx.recorder, build, type_, step.reason, step.message.clone()).await;
}

/// The build hash of the spec as built (what a later generation is compared with).
fn build_hash(build: &ImageBuild) -> Option<String> {
    crate::spec::build_config(build)
        .ok()
        .map(|c| c.build_hash().to_string())
}
