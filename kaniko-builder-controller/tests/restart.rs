//! The controller stopped mid-build, killed (SIGKILL) or stopped gracefully (SIGTERM), then
//! started again: it attaches to the build's Job, so there is exactly one Job, and the status
//! ends right, also for a forced build whose tag already holds an older image. Real API
//! server, stand-in node running buildah, real TLS registry.

mod support;

use std::time::Duration;

use kaniko_builder_controller::Phase;
use serde_json::json;
use support::{Bed, Controller, JobWatch, blob_spec, succeeded};

/// How long the build's Pod is held, so the controller stops while its Job runs.
const HOLD: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy)]
enum Stop {
    Kill,
    Terminate,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_attaches_to_the_running_job() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    restarted_mid_build(&bed, "killed", Stop::Kill).await?;
    restarted_mid_build(&bed, "terminated", Stop::Terminate).await?;
    restarted_mid_forced_build(&bed, "forced").await?;
    Ok(())
}

/// Builds `ns/app` in namespace `ns`, stops the controller as `stop` once the Job exists, and
/// starts another.
async fn restarted_mid_build(bed: &Bed, ns: &str, stop: Stop) -> anyhow::Result<()> {
    bed.namespace(ns).await?;
    let jobs = JobWatch::start(&bed.admin(), ns).await?;
    bed.hold_pod(&format!("kb-{ns}-app-v1-"), HOLD).await?;
    let first = bed.controller(&format!("{ns}-first"), &[])?;
    bed.build(ns, "app", &format!("{ns}/app:v1"), ns).await?;
    bed.wait_job_ref(ns, "app").await?;
    stop_as(first, stop).await?;

    let second = bed.controller(&format!("{ns}-second"), &[])?;
    let done = bed.wait_done(ns, "app").await?;
    let status = done.status.clone().unwrap_or_default();
    let digest = bed.registry_digest(&bed.image(&format!("{ns}/app:v1"))).await?;
    let created = jobs.created();
    bed.ensure(
        ns,
        status.phase == Some(Phase::Succeeded)
            && succeeded(&done) == ("True".into(), "Built".into())
            && digest.is_some()
            && status.digest == digest
            && created.len() == 1
            && status.job_ref.as_ref().map(|j| &j.name) == created.first(),
        format!("{stop:?} mid-build: expected one Job and Built with {digest:?}; Jobs {created:?}"),
    )
    .await?;
    second.stop().await
}

/// The tag holds an image this object built; a forced generation (another context) is killed
/// mid-build: the next controller must not take the older image under the tag for the result,
/// but attach to the forced Job and record its image.
async fn restarted_mid_forced_build(bed: &Bed, ns: &str) -> anyhow::Result<()> {
    bed.namespace(ns).await?;
    let jobs = JobWatch::start(&bed.admin(), ns).await?;
    let image = bed.image(&format!("{ns}/app:v1"));
    let first = bed.controller(&format!("{ns}-first"), &[])?;
    bed.build(ns, "app", &format!("{ns}/app:v1"), "old").await?;
    let old = bed.wait_done(ns, "app").await?;
    let old_digest = old.status.and_then(|s| s.digest);
    bed.hold_pod(&format!("kb-{ns}-app-v1-"), HOLD).await?;
    let mut spec = blob_spec(&image, &bed.push_context(&image, "new").await?);
    spec["force"] = json!(true);
    let applied = bed.apply(ns, "app", spec).await?;
    let generation = applied.metadata.generation;
    bed.wait_build(ns, "app", "the forced generation's Job reference", |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.observed_generation == generation && s.job_ref.is_some())
    })
    .await?;
    first.kill()?;

    let second = bed.controller(&format!("{ns}-second"), &[])?;
    let done = bed.wait_done(ns, "app").await?;
    let status = done.status.clone().unwrap_or_default();
    let digest = bed.registry_digest(&image).await?;
    let created = jobs.created();
    bed.ensure(
        ns,
        succeeded(&done) == ("True".into(), "Built".into())
            && digest.is_some()
            && digest != old_digest
            && status.digest == digest
            && created.len() == 2
            && status.job_ref.as_ref().map(|j| &j.name) == created.last(),
        format!(
            "forced, killed mid-build: expected the forced Job's image, not the older {old_digest:?}; status {:?}, registry {digest:?}, Jobs {created:?}",
            status.digest
        ),
    )
    .await?;
    second.stop().await
}

async fn stop_as(controller: Controller, stop: Stop) -> anyhow::Result<()> {
    match stop {
        Stop::Kill => controller.kill(),
        Stop::Terminate => controller.stop().await,
    }
}
