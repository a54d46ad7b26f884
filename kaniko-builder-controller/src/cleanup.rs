//! The finalizer's work: a deleted `ImageBuild`'s build is stopped and its Jobs (so their Pods)
//! deleted before the object goes, except a Job another live `ImageBuild` is still built by.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kaniko_builder::k8s::runner::job_finished;
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
    let found = its_jobs(&jobs, &build).await?;
    if !found.is_empty() {
        let others = Others::list(ctx, &build).await?;
        for job in found {
            let name = job.name_any();
            if let Some(other) = others.built_by(&name) {
                let message = format!("kept Job {ns}/{name}: ImageBuild {ns}/{other} is built by it too");
                report::publish(&ctx.recorder, &build, EventType::Normal, "Kept", message).await;
                continue;
            }
            Box::pin(delete_and_wait(&jobs, &build, &job, ctx)).await?;
        }
    }
    lock(&ctx.errors).remove(&status::key(&build));
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
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &build.namespace().unwrap_or_default());
    let stale: Vec<Job> = labelled_jobs(&jobs, build)
        .await?
        .into_iter()
        .filter(|job| {
            !keep.contains(&job.name_any())
                && job_finished(job).is_none()
                && job.metadata.deletion_timestamp.is_none()
        })
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    let others = Others::list(ctx, build).await?;
    for job in stale {
        let name = job.name_any();
        if others.built_by(&name).is_some() {
            continue;
        }
        tracing::info!(imagebuild = %status::key(build), job = %name, "deleting an outdated generation's Job");
        Box::pin(delete_and_wait(&jobs, build, &job, ctx)).await?;
    }
    Ok(())
}

/// The Jobs this object's builds created: labelled with its uid.
async fn labelled_jobs(jobs: &Api<Job>, build: &ImageBuild) -> Result<Vec<Job>> {
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
    Ok(list.items)
}

/// [`labelled_jobs`], and the Job its status references when a controller created it (another
/// object's Job it attached to, whose creator may be gone).
async fn its_jobs(jobs: &Api<Job>, build: &ImageBuild) -> Result<Vec<Job>> {
    let mut found = labelled_jobs(jobs, build).await?;
    let referenced = build.status.as_ref().and_then(|s| s.job_ref.as_ref());
    if let Some(name) = referenced.map(|r| r.name.as_str())
        && !found.iter().any(|j| j.name_any() == name)
    {
        let job = jobs.get_opt(name).await.map_err(|e| {
            Error::kube(
                format!("reading the Jobs of ImageBuild {}", status::key(build)),
                e,
            )
        })?;
        found.extend(job.filter(|j| j.labels().contains_key(LABEL_IMAGEBUILD_UID)));
    }
    Ok(found)
}

/// The other live, unfinished `ImageBuild`s of a namespace, with the Jobs their builds run: two
/// objects asking for the same build share its Job, so one's deletion must not fail the other.
struct Others(Vec<(String, BTreeSet<String>)>);

impl Others {
    /// One list of the namespace's `ImageBuild`s, for every Job a pass looks at.
    async fn list(ctx: &Context, build: &ImageBuild) -> Result<Self> {
        let ns = build.namespace().unwrap_or_default();
        let all = Api::<ImageBuild>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::kube(format!("listing the ImageBuilds of {ns}"), e))?;
        Ok(Self(
            all.into_iter()
                .filter(|other| {
                    other.uid() != build.uid()
                        && other.metadata.deletion_timestamp.is_none()
                        && !other
                            .status
                            .as_ref()
                            .is_some_and(|s| s.is_done_for(other.metadata.generation))
                })
                .map(|other| (other.name_any(), job_names(&other)))
                .collect(),
        ))
    }

    /// The name of one that is built by Job `job`.
    fn built_by(&self, job: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, jobs)| jobs.contains(job))
            .map(|(name, _)| name.as_str())
    }
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
