//! The reconciler: quick decisions per `ImageBuild`; the builds themselves run in their own
//! tasks ([`crate::build`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event};
use serde_json::json;

use crate::context::{Context, Start, lock};
use crate::crd::{FINALIZER, ImageBuild, Phase};
use crate::status::{self, Step};
use crate::{Error, Result, build, cleanup, report, spec};

/// Reconciles one `ImageBuild`: the finalizer first, then [`apply`] or [`cleanup`].
pub(crate) async fn reconcile(build: Arc<ImageBuild>, ctx: Arc<Context>) -> Result<Action> {
    let ns = build.namespace().unwrap_or_default();
    let api: Api<ImageBuild> = Api::namespaced(ctx.client.clone(), &ns);
    let key = status::key(&build);
    // Boxed: the deletion's waits make a large future.
    let result = Box::pin(finalizer::finalizer(&api, FINALIZER, build, |event| async {
        match event {
            Event::Apply(build) => apply(build, Arc::clone(&ctx)).await,
            Event::Cleanup(build) => Box::pin(cleanup::cleanup(build, &ctx)).await,
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
    let key = status::key(&build);
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
        Start::New(started) => {
            // The older generation's task has ended; its Job must not push after this one.
            let keep = cleanup::job_names(&build);
            if let Err(e) = cleanup::delete_stale_jobs(&ctx, &build, &keep).await {
                tracing::warn!(imagebuild = %status::key(&build), error = %e, "cannot delete an outdated Job");
            }
            build::spawn(Arc::clone(&ctx), build, config, started);
        }
    }
    Ok(Action::await_change())
}

/// An invalid spec: `Failed/InvalidSpec` naming the field; nothing is created.
async fn reject(build: &ImageBuild, ctx: &Context, invalid: spec::InvalidSpec) -> Result<Action> {
    let uid = build.uid().unwrap_or_default();
    // A running build of an older generation is superseded by this (invalid) one.
    ctx.builds.stop(&uid).await;
    cleanup::delete_stale_jobs(ctx, build, &BTreeSet::new()).await?;
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
