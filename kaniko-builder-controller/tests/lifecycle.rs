//! An ImageBuild's life under the controller binary, on a real API server, a stand-in node
//! running buildah and a real TLS registry: built once, skipped when the tag exists, left alone
//! when nothing changed, rebuilt once per spec change that changes the build, and cleaned up
//! (Job and Pod) when deleted mid-build, except a Job another object is still built by; a
//! generation superseded mid-build loses its Job; a multi-platform spec builds an index.

mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kaniko_builder_controller::Phase;
use kaniko_builder_controller::crd::{FINALIZER, ImageBuild};
use kaniko_builder_testkit::node::host_platform;
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::{Bed, JobWatch, builds, succeeded};

const NS: &str = "life";
const GONE_NS: &str = "gone";
const SHARED_NS: &str = "shared";
const SUPERSEDED_NS: &str = "superseded";
const MULTI_NS: &str = "multi";
/// A quiet window in which nothing may happen; no assertion is about how long anything takes.
const SETTLE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_build_is_built_skipped_rebuilt_on_change_and_cleaned_up() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    bed.namespace(NS).await?;
    bed.namespace(GONE_NS).await?;
    for ns in [SHARED_NS, SUPERSEDED_NS, MULTI_NS] {
        bed.namespace(ns).await?;
    }
    let jobs = JobWatch::start(&bed.admin(), NS).await?;
    let controller = bed.controller("main", &[])?;

    let built = built_once(&bed, &jobs).await?;
    skipped_when_the_tag_exists(&bed, &jobs, &built).await?;
    left_alone_without_a_new_generation(&bed, &jobs).await?;
    rebuilt_once_per_change(&bed, &jobs, &built).await?;
    deleted_mid_build(&bed).await?;
    a_shared_job_outlives_one_of_its_builds(&bed).await?;
    superseded_mid_build(&bed).await?;
    multi_platform(&bed).await?;

    controller.stop().await
}

/// A new ImageBuild: one Job, `Succeeded`/`Built`, the registry's digest, every status field,
/// the finalizer and Events.
async fn built_once(bed: &Bed, jobs: &JobWatch) -> anyhow::Result<ImageBuild> {
    let image = bed.image("life/app:v1");
    let applied = bed.build(NS, "app", "life/app:v1", "one").await?;
    let done = bed.wait_done(NS, "app").await?;
    let status = done.status.clone().unwrap_or_default();
    let digest = bed.registry_digest(&image).await?;
    let job = status.job_ref.clone();
    let checks = [
        (status.phase == Some(Phase::Succeeded), "phase Succeeded"),
        (
            succeeded(&done) == ("True".into(), "Built".into()),
            "condition True/Built",
        ),
        (
            digest.is_some() && status.digest == digest,
            "the registry's digest",
        ),
        (
            status.observed_generation == applied.metadata.generation,
            "observedGeneration",
        ),
        (status.build_hash.is_some(), "buildHash"),
        (
            status.start_time.is_some() && status.completion_time.is_some(),
            "start and completion times",
        ),
        (job.as_ref().is_some_and(|j| j.namespace == NS), "jobRef"),
        (
            jobs.created() == job.iter().map(|j| j.name.clone()).collect::<Vec<_>>(),
            "exactly the referenced Job",
        ),
        (done.finalizers().iter().any(|f| f == FINALIZER), "the finalizer"),
    ];
    for (ok, what) in checks {
        bed.ensure(
            NS,
            ok,
            format!("built: {what} (registry {digest:?}, Jobs {:?})", jobs.created()),
        )
        .await?;
    }
    let events = bed.wait_events(&done).await?;
    tracing::info!(?events, "events of a build");
    Ok(done)
}

/// The same image again, in another object: `Skipped` with the digest, no Job.
async fn skipped_when_the_tag_exists(bed: &Bed, jobs: &JobWatch, built: &ImageBuild) -> anyhow::Result<()> {
    bed.apply(NS, "app-again", serde_json::to_value(&built.spec)?)
        .await?;
    let skipped = bed.wait_done(NS, "app-again").await?;
    let status = skipped.status.clone().unwrap_or_default();
    let digest = built.status.as_ref().and_then(|s| s.digest.clone());
    bed.ensure(
        NS,
        status.phase == Some(Phase::Skipped)
            && succeeded(&skipped) == ("True".into(), "Skipped".into())
            && status.digest == digest
            && jobs.created().len() == 1,
        format!(
            "skipped: expected Skipped with {digest:?} and no new Job; Jobs {:?}",
            jobs.created()
        ),
    )
    .await
}

/// The same spec applied again and a label added: no new generation, so nothing happens.
async fn left_alone_without_a_new_generation(bed: &Bed, jobs: &JobWatch) -> anyhow::Result<()> {
    let api = builds(&bed.admin(), NS);
    let before = api.get("app").await?;
    bed.apply(NS, "app", serde_json::to_value(&before.spec)?).await?;
    let labelled = api
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "touched": "yes" } } })),
        )
        .await?;
    tokio::time::sleep(SETTLE).await;
    let after = api.get("app").await?;
    bed.ensure(
        NS,
        labelled.metadata.generation == before.metadata.generation
            && after.status == before.status
            && jobs.created().len() == 1,
        format!(
            "unchanged spec: status or Jobs changed\nbefore {:?}\nafter {:?}\nJobs {:?}",
            before.status,
            after.status,
            jobs.created()
        ),
    )
    .await
}

/// A build arg, then another tag: each a new generation, built once, reported for it.
async fn rebuilt_once_per_change(bed: &Bed, jobs: &JobWatch, built: &ImageBuild) -> anyhow::Result<()> {
    let mut spec = serde_json::to_value(&built.spec)?;
    spec["buildArgs"] = json!({ "VERSION": "2" });
    let mut previous_hash = built.status.as_ref().and_then(|s| s.build_hash.clone());
    for (step, repo_tag) in [("build arg", "life/app:v1"), ("tag", "life/app:v2")] {
        spec["image"] = json!(bed.image(repo_tag));
        let applied = bed.apply(NS, "app", spec.clone()).await?;
        let done = bed.wait_done(NS, "app").await?;
        let status = done.status.clone().unwrap_or_default();
        let digest = bed.registry_digest(&bed.image(repo_tag)).await?;
        let created = jobs.created();
        let expected_jobs = if step == "tag" { 3 } else { 2 };
        bed.ensure(
            NS,
            status.phase == Some(Phase::Succeeded)
                && succeeded(&done) == ("True".into(), "Built".into())
                && status.observed_generation == applied.metadata.generation
                && digest.is_some()
                && status.digest == digest
                && status.build_hash != previous_hash
                && created.len() == expected_jobs
                && status.job_ref.as_ref().map(|j| &j.name) == created.last(),
            format!(
                "changed {step}: expected one new Job and Built for generation {:?} with {digest:?}; Jobs {created:?}",
                applied.metadata.generation
            ),
        )
        .await?;
        previous_hash = status.build_hash;
    }
    Ok(())
}

/// Deleted while its Pod is held: the Job and the Pod go, then the object; nothing is pushed.
async fn deleted_mid_build(bed: &Bed) -> anyhow::Result<()> {
    let jobs = JobWatch::start(&bed.admin(), GONE_NS).await?;
    bed.hold_pod("kb-gone-slow-v1-", Duration::from_secs(60)).await?;
    bed.build(GONE_NS, "slow", "gone/slow:v1", "slow").await?;
    bed.wait_job_ref(GONE_NS, "slow").await?;
    bed.wait_list::<Pod>(GONE_NS, "the build Pod", |pods| !pods.is_empty())
        .await?;
    bed.delete(GONE_NS, "slow").await?;
    bed.wait_gone(GONE_NS, "slow").await?;
    let job_name = jobs.created().first().cloned().unwrap_or_default();
    let job = Api::<Job>::namespaced(bed.admin(), GONE_NS)
        .get_opt(&job_name)
        .await?;
    bed.ensure(
        GONE_NS,
        jobs.created().len() == 1 && job.is_none_or(|j| j.metadata.deletion_timestamp.is_some()),
        format!(
            "deleted: the Job {job_name} outlived its ImageBuild; Jobs {:?}",
            jobs.created()
        ),
    )
    .await?;
    bed.wait_list::<Job>(GONE_NS, "every Job gone", <[Job]>::is_empty)
        .await?;
    bed.wait_list::<Pod>(GONE_NS, "every Pod gone", <[Pod]>::is_empty)
        .await?;
    let pushed = bed.registry_digest(&bed.image("gone/slow:v1")).await?;
    bed.ensure(
        GONE_NS,
        pushed.is_none(),
        format!("deleted: the image was pushed anyway ({pushed:?})"),
    )
    .await
}

/// Two objects asking for the same build share its Job; deleting the one whose build created it
/// keeps the Job, and the other is built by it.
async fn a_shared_job_outlives_one_of_its_builds(bed: &Bed) -> anyhow::Result<()> {
    let jobs = JobWatch::start(&bed.admin(), SHARED_NS).await?;
    bed.hold_pod("kb-shared-app-v1-", Duration::from_secs(15)).await?;
    bed.build(SHARED_NS, "first", "shared/app:v1", "shared").await?;
    let first = bed.wait_job_ref(SHARED_NS, "first").await?;
    bed.apply(SHARED_NS, "second", serde_json::to_value(&first.spec)?)
        .await?;
    let second = bed.wait_job_ref(SHARED_NS, "second").await?;
    let job_of = |b: &ImageBuild| b.status.as_ref().and_then(|s| s.job_ref.clone()).map(|j| j.name);
    bed.ensure(
        SHARED_NS,
        job_of(&first) == job_of(&second) && jobs.created().len() == 1,
        format!(
            "shared: expected one Job for both, got {:?} and {:?}; Jobs {:?}",
            job_of(&first),
            job_of(&second),
            jobs.created()
        ),
    )
    .await?;
    bed.delete(SHARED_NS, "first").await?;
    bed.wait_gone(SHARED_NS, "first").await?;
    let job_name = job_of(&first).unwrap_or_default();
    let job = Api::<Job>::namespaced(bed.admin(), SHARED_NS)
        .get_opt(&job_name)
        .await?;
    bed.ensure(
        SHARED_NS,
        job.is_some_and(|j| j.metadata.deletion_timestamp.is_none()),
        format!("shared: Job {job_name} was deleted with the first of its two ImageBuilds"),
    )
    .await?;
    let done = bed.wait_done(SHARED_NS, "second").await?;
    let digest = bed.registry_digest(&bed.image("shared/app:v1")).await?;
    let status = done.status.clone().unwrap_or_default();
    bed.ensure(
        SHARED_NS,
        succeeded(&done) == ("True".into(), "Built".into())
            && digest.is_some()
            && status.digest == digest
            && jobs.created().len() == 1,
        format!(
            "shared: the second ImageBuild ended {:?} with {:?} (registry {digest:?}); Jobs {:?}",
            succeeded(&done),
            status.digest,
            jobs.created()
        ),
    )
    .await
}

/// A new generation while the old one's Pod is held: the old Job is deleted before the new
/// build starts (it must not push over the new image), and the new one is built.
async fn superseded_mid_build(bed: &Bed) -> anyhow::Result<()> {
    let ns = SUPERSEDED_NS;
    let jobs = JobWatch::start(&bed.admin(), ns).await?;
    bed.hold_pod("kb-superseded-app-v1-", Duration::from_secs(60))
        .await?;
    let first = bed.build(ns, "app", "superseded/app:v1", "old").await?;
    let building = bed.wait_job_ref(ns, "app").await?;
    let old_job = building
        .status
        .and_then(|s| s.job_ref)
        .map(|j| j.name)
        .unwrap_or_default();
    let mut spec = serde_json::to_value(&first.spec)?;
    spec["buildArgs"] = json!({ "VERSION": "2" });
    let applied = bed.apply(ns, "app", spec).await?;
    let done = bed.wait_done(ns, "app").await?;
    let status = done.status.clone().unwrap_or_default();
    let digest = bed.registry_digest(&bed.image("superseded/app:v1")).await?;
    let old = Api::<Job>::namespaced(bed.admin(), ns).get_opt(&old_job).await?;
    let created = jobs.created();
    bed.ensure(
        ns,
        old.is_none()
            && created.len() == 2
            && succeeded(&done) == ("True".into(), "Built".into())
            && status.observed_generation == applied.metadata.generation
            && digest.is_some()
            && status.digest == digest
            && status.job_ref.as_ref().map(|j| &j.name) == created.last(),
        format!(
            "superseded: expected {old_job} gone and the new generation built with {digest:?}; old Job {:?}, Jobs {created:?}, status {status:?}",
            old.map(|j| j.metadata.deletion_timestamp)
        ),
    )
    .await
}

/// `spec.platforms`: one Job per platform (here the node's), then the index under the tag.
async fn multi_platform(bed: &Bed) -> anyhow::Result<()> {
    let ns = MULTI_NS;
    let jobs = JobWatch::start(&bed.admin(), ns).await?;
    let image = bed.image("multi/app:v1");
    let digest = bed.push_context(&image, "multi").await?;
    let mut spec = support::blob_spec(&image, &digest);
    spec["platforms"] = json!([host_platform().to_string()]);
    bed.apply(ns, "app", spec).await?;
    let done = bed.wait_done(ns, "app").await?;
    let status = done.status.clone().unwrap_or_default();
    let pushed = bed.registry_digest(&image).await?;
    bed.ensure(
        ns,
        succeeded(&done) == ("True".into(), "Built".into())
            && pushed.is_some()
            && status.digest == pushed
            && jobs.created().len() == 1,
        format!(
            "multi-platform: ended {:?}: {:?} with {:?} (registry {pushed:?}); Jobs {:?}",
            succeeded(&done),
            done.status.as_ref().map(|s| &s.conditions),
            status.digest,
            jobs.created()
        ),
    )
    .await
}
