//! The finalizer's work: a deleted `ImageBuild`'s build is stopped and its Jobs (so their Pods)
//! deleted before the object goes, except a Job another live `ImageBuild` is still built by.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, ListParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::wait::{await_condition, conditions};

use crate::context::{Context, lock};
use crate::crd::ImageBuild;
use crate::prepare::LABEL_IMAGEBUILD_UID;
use crate::{Error, Result, report, spec, status};

/// How long a deletion waits for the build's Jobs and Pods to go.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);

/// A deleted object: stop its build, delete its Jobs (and so their Pods), then let it go.
pub(crate) async fn cleanup(build: std::sync::Arc<ImageBuild>, ctx: &Context) -> Result<Action> {
    let uid = build.uid().unwrap_or_default();
    let ns = build.namespace().unwrap_or_default();
    ctx.builds.stop(&uid).await;
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    for job in its_jobs(&jobs, &build).await? {
        let name = job.name_any();
        if let Some(other) = still_used_by(ctx, &build, &name).await? {
            let message = format!("kept Job {ns}/{name}: ImageBuild {ns}/{other} is built by it too");
            report::publish(&ctx.recorder, &build, EventType::Normal, "Kept", message).await;
            continue;
        }
        Box::pin(delete_and_wait(&jobs, &build, &job, ctx)).await?;
    }
    lock(&ctx.errors).remove(&format!("{ns}/{}", build.name_any()));
    Ok(Action::await_change())
}

/// After a new generation took over (or an invalid one stopped the build): deletes the Jobs an
/// older generation of this object created that are still running and that the current
/// generation (`keep`, its Job names) and no other object is built by, so an outdated build
/// cannot push after the new one. Also after a restart: the Jobs are found by label.
pub(crate) async fn delete_stale_jobs(
    ctx: &Context,
    build: &ImageBuild,
    keep: &BTreeSet<String>,
) -> Result<()> {
    let ns = build.namespace().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = format!("{LABEL_IMAGEBUILD_UID}={}", build.uid().unwrap_or_default());
    let list = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| {
            Error::kube(
                format!("listing the Jobs of ImageBuild {}", status::key(build)),
                e,
            )
        })?;
    for job in list {
        let name = job.name_any();
        if keep.contains(&name) || finished(&job) || job.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if still_used_by(ctx, build, &name).await?.is_some() {
            continue;
        }
        tracing::info!(imagebuild = %status::key(build), job = %name, "deleting an outdated generation's Job");
        Box::pin(delete_and_wait(&jobs, build, &job, ctx)).await?;
    }
    Ok(())
}

/// Whether the Job completed or failed.
fn finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

/// The Jobs this object's builds created (labelled with its uid), and the Job its status
/// references when a controller created it (another object's Job it attached to, whose creator
/// may be gone).
async fn its_jobs(jobs: &Api<Job>, build: &ImageBuild) -> Result<Vec<Job>> {
    let uid = build.uid().unwrap_or_default();
    let what = || {
        format!(
            "the Jobs of ImageBuild {}/{}",
            build.namespace().unwrap_or_default(),
            build.name_any()
        )
    };
    let selector = format!("{LABEL_IMAGEBUILD_UID}={uid}");
    let mut found = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::kube(format!("listing {}", what()), e))?
        .items;
    let referenced = build.status.as_ref().and_then(|s| s.job_ref.as_ref());
    if let Some(name) = referenced.map(|r| r.name.as_str())
        && !found.iter().any(|j| j.name_any() == name)
    {
        let job = jobs
            .get_opt(name)
            .await
            .map_err(|e| Error::kube(format!("reading {}", what()), e))?;
        found.extend(job.filter(|j| j.labels().contains_key(LABEL_IMAGEBUILD_UID)));
    }
    Ok(found)
}

/// Another live, unfinished `ImageBuild` of the namespace whose build has Job `job`: two
/// objects asking for the same build share its Job, so one's deletion must not fail the other.
async fn still_used_by(ctx: &Context, build: &ImageBuild, job: &str) -> Result<Option<String>> {
    let ns = build.namespace().unwrap_or_default();
    let others = Api::<ImageBuild>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube(format!("listing the ImageBuilds of {ns}"), e))?;
    let user = others.into_iter().find(|other| {
        other.uid() != build.uid()
            && other.metadata.deletion_timestamp.is_none()
            && !other
                .status
                .as_ref()
                .is_some_and(|s| s.is_done_for(other.metadata.generation))
            && job_names(other).contains(job)
    });
    Ok(user.map(|u| u.name_any()))
}

/// The names of the Jobs `build`'s current spec runs (one per platform); none if it is invalid.
pub(crate) fn job_names(build: &ImageBuild) -> BTreeSet<String> {
    let Ok(config) = spec::build_config(build) else {
        return BTreeSet::new();
    };
    if config.platforms().is_empty() {
        return BTreeSet::from([config.job_name()]);
    }
    config
        .platforms()
        .iter()
        .map(|p| config.for_platform(p).job_name())
        .collect()
}

/// Deletes `job` in the foreground and waits until it (so its Pods) is gone.
async fn delete_and_wait(jobs: &Api<Job>, build: &ImageBuild, job: &Job, ctx: &Context) -> Result<()> {
    let ns = build.namespace().unwrap_or_default();
    let (name, job_uid) = (job.name_any(), job.uid().unwrap_or_default());
    let foreground = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..DeleteParams::default()
    };
    match jobs.delete(&name, &foreground).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(Error::kube(format!("deleting Job {ns}/{name}"), e)),
    }
    let message = format!("deleting Job {ns}/{name}");
    report::publish(&ctx.recorder, build, EventType::Normal, "Deleting", message).await;
    // Foreground: the Job goes once its Pods are gone.
    let gone = await_condition(jobs.clone(), &name, conditions::is_deleted(&job_uid));
    if tokio::time::timeout(CLEANUP_TIMEOUT, gone).await.is_err() {
        return Err(Error::Object {
            object: format!("Job {ns}/{name}"),
            problem: format!("not gone {}s after its deletion", CLEANUP_TIMEOUT.as_secs()),
        });
    }
    Ok(())
}
