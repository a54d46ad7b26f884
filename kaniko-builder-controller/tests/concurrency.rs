//! `--concurrency 4` and 50 ImageBuilds applied at once: 50 right statuses (each image built
//! once, with the registry's digest) and never more than 4 build Jobs unfinished at a time, as
//! seen by a watch on the Jobs from before the first ImageBuild. Real API server, stand-in node
//! running buildah, real TLS registry. No assertion is about time; the run's length is printed.

mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use futures::{StreamExt as _, TryStreamExt as _};
use kaniko_builder_controller::Phase;
use support::{Bed, JobWatch, blob_spec, succeeded};

const NS: &str = "many";
const BUILDS: usize = 50;
const CONCURRENCY: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_builds_run_at_most_four_at_a_time() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    bed.namespace(NS).await?;
    let names: Vec<String> = (0..BUILDS).map(|i| format!("img{i}")).collect();
    // Contexts first, so the ImageBuilds can be applied together.
    let specs: Vec<_> = futures::stream::iter(&names)
        .map(|name| {
            let bed = &bed;
            async move {
                let image = bed.image(&format!("many/{name}:v1"));
                let digest = bed.push_context(&image, name).await?;
                anyhow::Ok(blob_spec(&image, &digest))
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let jobs = JobWatch::start(&bed.admin(), NS).await?;
    let controller = bed.controller("main", &["--concurrency".to_owned(), CONCURRENCY.to_string()])?;

    let started = Instant::now();
    futures::future::try_join_all(
        names
            .iter()
            .zip(specs)
            .map(|(name, spec)| bed.apply(NS, name, spec)),
    )
    .await?;
    let mut digests = BTreeSet::new();
    for name in &names {
        let done = bed.wait_done(NS, name).await?;
        let status = done.status.clone().unwrap_or_default();
        let digest = bed
            .registry_digest(&bed.image(&format!("many/{name}:v1")))
            .await?;
        bed.ensure(
            NS,
            status.phase == Some(Phase::Succeeded)
                && succeeded(&done) == ("True".into(), "Built".into())
                && digest.is_some()
                && status.digest == digest,
            format!("{name}: expected Built with the registry's {digest:?}"),
        )
        .await?;
        digests.insert(digest);
    }
    let elapsed = started.elapsed();
    let tally = jobs.tally();
    report(&format!(
        "{BUILDS} builds at concurrency {CONCURRENCY}: {elapsed:?}, {} Jobs, at most {} unfinished at once",
        tally.created.len(),
        tally.max_unfinished
    ));
    bed.ensure(NS, digests.len() == BUILDS, "each image has its own digest")
        .await?;
    bed.ensure(
        NS,
        tally.created.len() == BUILDS && (1..=CONCURRENCY).contains(&tally.max_unfinished),
        format!(
            "expected {BUILDS} Jobs, at most {CONCURRENCY} unfinished at once; saw {} Jobs, {} at once",
            tally.created.len(),
            tally.max_unfinished
        ),
    )
    .await?;
    controller.stop().await
}

#[allow(clippy::print_stderr)] // the run's length, for people; never asserted
fn report(line: &str) {
    eprintln!("{line}");
}
