//! Two replicas elect a leader through a Lease: one works (one Job per build), and when it is
//! killed mid-build the other takes over, attaches to the running Job and goes on. Real API
//! server, stand-in node running buildah, real TLS registry.

mod support;

use std::time::Duration;

use kaniko_builder_controller::{DEFAULT_LEASE_NAME, Phase};
use support::{Bed, JobWatch, SYSTEM_NAMESPACE, builds, lease_args, succeeded};

const NS: &str = "leader";
/// How long the second build's Pod is held, so the leader dies while its Job runs.
const HOLD: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_the_other_takes_over_when_it_dies() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    bed.namespace(NS).await?;
    let jobs = JobWatch::start(&bed.admin(), NS).await?;
    let mut replicas = vec![
        ("a", Some(bed.controller("a", &lease_args("a"))?)),
        ("b", Some(bed.controller("b", &lease_args("b"))?)),
    ];
    let leader = bed
        .wait_lease_holder(SYSTEM_NAMESPACE, DEFAULT_LEASE_NAME, &["a", "b"])
        .await?;

    built_once(&bed, &jobs, "one", 1).await?;
    reported_by(&bed, "one", &[&leader]).await?;

    bed.hold_pod("kb-leader-two-v1-", HOLD).await?;
    bed.build(NS, "two", "leader/two:v1", "two").await?;
    bed.wait_job_ref(NS, "two").await?;
    for (name, replica) in &mut replicas {
        if *name == leader
            && let Some(r) = replica.take()
        {
            r.kill()?;
        }
    }
    let follower = if leader == "a" { "b" } else { "a" };
    bed.wait_lease_holder(SYSTEM_NAMESPACE, DEFAULT_LEASE_NAME, &[follower])
        .await?;
    check_built(&bed, &jobs, "two", 2).await?;
    built_once(&bed, &jobs, "three", 3).await?;
    reported_by(&bed, "three", &[follower]).await?;

    for (_, replica) in replicas {
        if let Some(r) = replica {
            r.stop().await?;
        }
    }
    Ok(())
}

/// The Events regarding `NS/name` come from the replicas `identities` only: the other one
/// stands by.
async fn reported_by(bed: &Bed, name: &str, identities: &[&str]) -> anyhow::Result<()> {
    let build = builds(&bed.admin(), NS).get(name).await?;
    bed.wait_events(&build).await?;
    let reporters = bed.event_reporters(&build).await?;
    bed.ensure(
        NS,
        reporters.iter().all(|r| identities.contains(&r.as_str())),
        format!("{name}: Events reported by {reporters:?}, expected only {identities:?}"),
    )
    .await
}

/// Builds `NS/name` and checks it was built by the `nth` Job.
async fn built_once(bed: &Bed, jobs: &JobWatch, name: &str, nth: usize) -> anyhow::Result<()> {
    bed.build(NS, name, &format!("leader/{name}:v1"), name).await?;
    check_built(bed, jobs, name, nth).await
}

/// `NS/name` is `Succeeded`/`Built` with the registry's digest, by the `nth` Job seen.
async fn check_built(bed: &Bed, jobs: &JobWatch, name: &str, nth: usize) -> anyhow::Result<()> {
    let done = bed.wait_done(NS, name).await?;
    let status = done.status.clone().unwrap_or_default();
    let digest = bed
        .registry_digest(&bed.image(&format!("leader/{name}:v1")))
        .await?;
    let created = jobs.created();
    bed.ensure(
        NS,
        status.phase == Some(Phase::Succeeded)
            && succeeded(&done) == ("True".into(), "Built".into())
            && digest.is_some()
            && status.digest == digest
            && created.len() == nth
            && status.job_ref.as_ref().map(|j| &j.name) == created.last(),
        format!("{name}: expected Built with {digest:?} by Job #{nth}; Jobs {created:?}"),
    )
    .await
}
