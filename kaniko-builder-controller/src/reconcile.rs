//! The reconciler: quick decisions per `ImageBuild`; the builds themselves run in their own
//! tasks ([`crate::build`]).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, ListParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

use crate::context::{Context, Start, lock};
use crate::crd::{FINALIZER, ImageBuild, Phase};
use crate::prepare::LABEL_IMAGEBUILD_UID;
use crate::status::{self, Step};
use crate::{Error, Result, build, report, spec};

/// How long a deletion waits for the build's Jobs and Pods to go.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Reconciles one `ImageBuild`: the finalizer first, then [`apply`] or [`cleanup`].
pub(crate) async fn reconcile(build: Arc<ImageBuild>, ctx: Arc<Context>) -> Result<Action> {
    let ns = build.namespace().unwrap_or_default();
    let api: Api<ImageBuild> = Api::namespaced(ctx.client.clone(), &ns);
    let key = format!("{ns}/{}", build.name_any());
    // Boxed: the deletion's waits make a large future.
    let result = Box::pin(finalizer::finalizer(&api, FINALIZER, build, |event| async {
        match event {
            Event::Apply(build) => apply(build, Arc::clone(&ctx)).await,
            Event::Cleanup(build) => Box::pin(cleanup(build, &ctx)).await,
        }
    }))
    .await
    .map_err(|e| finalizer_error(&key, e));
    if result.is_ok() {
        lock(&ctx.errors).remove(&key);
    }
    result
}

fn finalizer_error(key: &str, e: finalizer::Error<Error>) -> Error {
    match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(e) => {
            Error::kube(format!("adding the finalizer to ImageBuild {key}"), e)
        }
        finalizer::Error::RemoveFinalizer(e) => {
            Error::kube(format!("removing the finalizer of ImageBuild {key}"), e)
        }
        other => Error::Object {
            object: format!("ImageBuild {key}"),
            problem: other.to_string(),
        },
    }
}

/// The back-off after a failed reconcile: doubling per consecutive failure of the object.
#[allow(
    clippy::needless_pass_by_value,
    reason = "kube-runtime's error policy signature"
)]
pub(crate) fn error_policy(build: Arc<ImageBuild>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", build.namespace().unwrap_or_default(), build.name_any());
    let failures = {
        let mut errors = lock(&ctx.errors);
        let n = errors.entry(key.clone()).or_default();
        *n = n.saturating_add(1);
        *n
    };
    let (first, max) = ctx.options.error_backoff;
    let delay = first
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(max);
    tracing::warn!(imagebuild = %key, %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// A live object: start the build of its generation unless it is done or running.
async fn apply(build: Arc<ImageBuild>, ctx: Arc<Context>) -> Result<Action> {
    let uid = build.uid().unwrap_or_default();
    let generation = build.metadata.generation;
    if build.status.as_ref().is_some_and(|s| s.is_done_for(generation)) {
        ctx.builds.forget_done(&uid, generation);
        return Ok(Action::await_change());
    }
    let config = match spec::build_config(&build) {
        Ok(config) => config,
        Err(invalid) => return reject(&build, &ctx, invalid).await,
    };
    match ctx.builds.start(&uid, generation).await {
        Start::Known => {}
        Start::New(started) => build::spawn(Arc::clone(&ctx), build, config, started),
    }
    Ok(Action::await_change())
}

/// An invalid spec: `Failed/InvalidSpec` naming the field; nothing is created.
async fn reject(build: &ImageBuild, ctx: &Context, invalid: spec::InvalidSpec) -> Result<Action> {
    let uid = build.uid().unwrap_or_default();
    // A running build of an older generation is superseded by this (invalid) one.
    ctx.builds.stop(&uid).await;
    let api: Api<ImageBuild> = Api::namespaced(ctx.client.clone(), &build.namespace().unwrap_or_default());
    let step = Step::new(Phase::Failed, "InvalidSpec", invalid.to_string());
    let extra = json!({ "completionTime": status::now(), "jobRef": null, "lastLogLines": null });
    status::write(&api, build, &status::patch(build, &step, extra)).await?;
    report::publish(
        &ctx.recorder,
        build,
        EventType::Warning,
        "InvalidSpec",
        invalid.to_string(),
    )
    .await;
    Ok(Action::await_change())
}

/// A deleted object: stop its build, delete its Jobs (and so their Pods), then let it go.
async fn cleanup(build: Arc<ImageBuild>, ctx: &Context) -> Result<Action> {
    let uid = build.uid().unwrap_or_default();
    let ns = build.namespace().unwrap_or_default();
    ctx.builds.stop(&uid).await;
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = format!("{LABEL_IMAGEBUILD_UID}={uid}");
    let list = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| {
            Error::kube(
                format!("listing the Jobs of ImageBuild {ns}/{}", build.name_any()),
                e,
            )
        })?;
    let foreground = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..DeleteParams::default()
    };
    for job in list {
        let (name, job_uid) = (job.name_any(), job.uid().unwrap_or_default());
        match jobs.delete(&name, &foreground).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(Error::kube(format!("deleting Job {ns}/{name}"), e)),
        }
        report::publish(
            &ctx.recorder,
            &build,
            EventType::Normal,
            "Deleting",
            format!("deleting Job {ns}/{name}"),
        )
        .await;
        // Foreground: the Job goes once its Pods are gone.
        let gone = await_condition(jobs.clone(), &name, conditions::is_deleted(&job_uid));
        if tokio::time::timeout(CLEANUP_TIMEOUT, gone).await.is_err() {
            return Err(Error::Object {
                object: format!("Job {ns}/{name}"),
                problem: format!("not gone {}s after its deletion", CLEANUP_TIMEOUT.as_secs()),
            });
        }
    }
    lock(&ctx.errors).remove(&format!("{ns}/{}", build.name_any()));
    Ok(Action::await_change())
}
