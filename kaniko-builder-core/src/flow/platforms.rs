//! A multi-platform build: one Job per platform, in parallel, each pushing its image by digest;
//! then one image index under the tag, pushed only when every platform was built.

use std::time::Instant;

use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::run::{unless_cancelled, verify};
use super::{
    BuildEvent, BuildExecutor, BuildFailure, BuildOutcome, BuildPlan, BuildReason, Decision, EventSink,
    ExecError, Executed, FailureReason, FlowOptions, ImageProbe, ObjectRef, PlatformImage, PlatformResult,
};
use crate::config::BuildConfig;
use crate::digest::Digest;
use crate::platform::Platform;
use crate::probe::Probe;

/// What one platform's Job gave.
type PlatformRun = Result<(Digest, ObjectRef, Vec<ObjectRef>), ExecError>;

/// The caller's decision for a multi-platform build: an index under the tag is read to see
/// whether it holds every platform asked for.
pub(super) async fn decide(
    config: &BuildConfig,
    probe: &dyn ImageProbe,
    probed: &Probe,
) -> Result<Decision, FailureReason> {
    let held = match probed.manifest() {
        Some(m) if m.is_index() && !config.force() => {
            let listed =
                probe
                    .index_platforms(config.image())
                    .await
                    .map_err(|e| FailureReason::ProbeFailed {
                        cause: e.cause(),
                        message: format!("cannot read the index under the tag: {e}"),
                        unauthorized: e.is_unauthorized(),
                        retryable: e.is_retryable(),
                    })?;
            Some(listed)
        }
        _ => None,
    };
    let decision = Decision::for_platforms(probed, held.as_deref(), config.platforms(), config.force());
    Ok(decision)
}

/// Builds every platform, then pushes and verifies the index. `started` is the run's start.
#[allow(clippy::too_many_arguments)]
pub(super) async fn build(
    config: &BuildConfig,
    reason: BuildReason,
    probe: &dyn ImageProbe,
    executor: &dyn BuildExecutor,
    events: &EventSink,
    cancel: &CancellationToken,
    options: &FlowOptions,
    started: Instant,
) -> Result<BuildOutcome, BuildFailure> {
    let image = config.image();
    let runs = join_all(config.platforms().iter().map(|p| {
        let plan = BuildPlan::new(config.for_platform(p), reason, None);
        let events = events.for_platform(p.clone());
        let cancel = cancel.child_token();
        async move { run_one(executor, &plan, &events, cancel).await }
    }))
    .await;
    let fail = |reason: FailureReason, job: Option<ObjectRef>, kept: Vec<ObjectRef>| {
        BuildFailure::new(
            image.clone(),
            started.elapsed(),
            ExecError::new(reason).with_job(job).with_kept(kept),
        )
    };
    let kept: Vec<ObjectRef> = runs
        .iter()
        .flat_map(|r| match r {
            Ok((_, _, kept)) => kept.clone(),
            Err(e) => e.kept().to_vec(),
        })
        .collect();
    let built = match collect(config.platforms(), runs) {
        Ok(built) => built,
        Err(results) => {
            if cancel.is_cancelled() {
                return Err(fail(FailureReason::Cancelled, None, kept));
            }
            return Err(fail(FailureReason::Platforms { results }, None, kept));
        }
    };
    let job = built.first().map(|b| b.job.clone());
    let digests: Vec<Digest> = built.iter().map(|b| b.digest.clone()).collect();
    let index = match unless_cancelled(cancel, push_index(config, probe, &digests)).await {
        None => return Err(fail(FailureReason::Cancelled, job, kept)),
        Some(Err(reason)) => return Err(fail(reason, job, kept)),
        Some(Ok(index)) => index,
    };
    events.send(BuildEvent::IndexPushed {
        digest: index.clone(),
        platforms: config.platforms().to_vec(),
    });
    if options.verify {
        match unless_cancelled(cancel, verify(probe, config, &index)).await {
            None => return Err(fail(FailureReason::Cancelled, job, kept)),
            Some(Err(reason)) => return Err(fail(reason, job, kept)),
            Some(Ok(())) => events.send(BuildEvent::Verified {
                digest: index.clone(),
            }),
        }
    }
    Ok(BuildOutcome::Built {
        image: image.clone(),
        digest: index,
        job: job.unwrap_or_else(|| ObjectRef::namespaced("Job", config.namespace(), "")),
        kept,
        duration: started.elapsed(),
        platforms: built,
    })
}

/// One platform's Job. Its in-cluster check never skips (the tag holds the index, not this
/// platform's image): a skip is reported as a failure rather than taken for a build.
async fn run_one(
    executor: &dyn BuildExecutor,
    plan: &BuildPlan,
    events: &EventSink,
    cancel: CancellationToken,
) -> PlatformRun {
    match executor.execute(plan, events, cancel).await? {
        Executed::Built { digest, job, kept } => Ok((digest, job, kept)),
        Executed::Skipped { job, kept, .. } => Err(ExecError::new(FailureReason::Invalid {
            message: format!("the in-cluster check of {job} skipped one platform of a multi-platform build"),
        })
        .with_job(Some(job))
        .with_kept(kept)),
    }
}

/// Every platform's image, or every platform's result when one failed.
fn collect(
    platforms: &[Platform],
    runs: Vec<PlatformRun>,
) -> Result<Vec<PlatformImage>, Vec<PlatformResult>> {
    if runs.iter().all(Result::is_ok) {
        return Ok(platforms
            .iter()
            .zip(runs)
            .filter_map(|(p, r)| {
                r.ok()
                    .map(|(digest, job, _)| PlatformImage::new(p.clone(), digest, job))
            })
            .collect());
    }
    Err(platforms
        .iter()
        .zip(runs)
        .map(|(p, r)| match r {
            Ok((digest, _, _)) => PlatformResult::built(p.clone(), digest),
            Err(e) => PlatformResult::failed(p.clone(), e.reason().clone()),
        })
        .collect())
}

/// Pushes the index under every destination's tag; the digest is the same everywhere (the same
/// bytes), and the first destination's is returned.
async fn push_index(
    config: &BuildConfig,
    probe: &dyn ImageProbe,
    digests: &[Digest],
) -> Result<Digest, FailureReason> {
    let mut first = None;
    for destination in config.destinations() {
        let digest = probe
            .push_index(destination, digests)
            .await
            .map_err(|e| FailureReason::IndexPush {
                message: format!("{destination}: {e}"),
            })?;
        first.get_or_insert(digest);
    }
    first.ok_or_else(|| FailureReason::Invalid {
        message: "no destination to push the index to".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use futures::executor::block_on;

    use super::super::{RegistryFailure, run_build};
    use super::*;
    use crate::{ImageRef, Manifest, media_types};

    /// What a tag holds: its digest, and its platforms if it is an index.
    type Tagged = (Digest, Option<Vec<Platform>>);

    /// A registry of tags and indexes.
    #[derive(Default)]
    struct Registry {
        tags: Mutex<HashMap<String, Tagged>>,
        images: Mutex<HashMap<Digest, Platform>>,
        indexes_pushed: Mutex<Vec<Vec<Digest>>>,
    }

    #[async_trait::async_trait]
    impl ImageProbe for Registry {
        async fn probe(&self, image: &ImageRef) -> Result<Probe, RegistryFailure> {
            if let Some(d) = image.digest() {
                let known = self.tags.lock().expect("lock").values().any(|(t, _)| t == d);
                return Ok(if known {
                    Probe::Exists(Manifest::new(d.clone(), media_types::OCI_INDEX, None))
                } else {
                    Probe::Absent
                });
            }
            Ok(match self.tags.lock().expect("lock").get(&image.to_string()) {
                Some((d, Some(_))) => Probe::Exists(Manifest::new(d.clone(), media_types::OCI_INDEX, None)),
                Some((d, None)) => Probe::Exists(Manifest::new(d.clone(), media_types::OCI_MANIFEST, None)),
                None => Probe::Absent,
            })
        }

        async fn index_platforms(&self, image: &ImageRef) -> Result<Vec<Platform>, RegistryFailure> {
            let tags = self.tags.lock().expect("lock");
            Ok(tags
                .get(&image.to_string())
                .and_then(|(_, p)| p.clone())
                .unwrap_or_default())
        }

        async fn push_index(
            &self,
            image: &ImageRef,
            manifests: &[Digest],
        ) -> Result<Digest, RegistryFailure> {
            let images = self.images.lock().expect("lock");
            let platforms: Vec<Platform> = manifests.iter().filter_map(|d| images.get(d).cloned()).collect();
            let digest = Digest::sha256(format!("{manifests:?}").as_bytes());
            self.indexes_pushed.lock().expect("lock").push(manifests.to_vec());
            self.tags
                .lock()
                .expect("lock")
                .insert(image.to_string(), (digest.clone(), Some(platforms)));
            Ok(digest)
        }
    }

    /// Builds every platform but `fails`, recording the image's platform in the registry.
    struct Executor<'a> {
        registry: &'a Registry,
        fails: Option<Platform>,
        runs: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl BuildExecutor for Executor<'_> {
        async fn execute(
            &self,
            plan: &BuildPlan,
            events: &EventSink,
            _: CancellationToken,
        ) -> Result<Executed, ExecError> {
            let platform = plan
                .config
                .target_platform()
                .cloned()
                .expect("one platform per Job");
            self.runs.lock().expect("lock").push(plan.config.job_name());
            events.send(BuildEvent::Building);
            let job = ObjectRef::namespaced("Job", "kaniko", plan.config.job_name());
            if self.fails.as_ref() == Some(&platform) {
                return Err(ExecError::new(FailureReason::ExitCode {
                    container: "image-builder".into(),
                    code: 1,
                    message: None,
                    last_lines: Vec::new(),
                })
                .with_job(Some(job)));
            }
            let digest = Digest::sha256(platform.to_string().as_bytes());
            self.registry
                .images
                .lock()
                .expect("lock")
                .insert(digest.clone(), platform);
            Ok(Executed::Built {
                digest,
                job,
                kept: Vec::new(),
            })
        }
    }

    fn p(s: &str) -> Platform {
        s.parse().expect("platform")
    }

    fn config(platforms: &[&str]) -> BuildConfig {
        BuildConfig::builder("registry.local:5000/team/app:v1".parse().expect("image"))
            .platforms(platforms.iter().map(|s| p(s)))
            .build()
            .expect("config")
    }

    fn run(
        registry: &Registry,
        executor: &Executor<'_>,
        config: &BuildConfig,
    ) -> (Result<BuildOutcome, BuildFailure>, Vec<BuildEvent>) {
        let (sink, mut stream) = EventSink::channel(100);
        let out = block_on(run_build(
            config,
            registry,
            executor,
            &sink,
            &CancellationToken::new(),
            &FlowOptions::default(),
        ));
        drop(sink);
        let mut events = Vec::new();
        while let Some(e) = stream.try_next() {
            events.push(e);
        }
        (out, events)
    }

    #[test]
    fn builds_each_platform_then_pushes_one_index_then_skips_then_builds_a_new_platform() {
        let registry = Registry::default();
        let executor = Executor {
            registry: &registry,
            fails: None,
            runs: Mutex::default(),
        };
        let two = config(&["linux/amd64", "linux/arm64"]);
        let (out, events) = run(&registry, &executor, &two);
        let BuildOutcome::Built {
            digest, platforms, ..
        } = out.expect("built")
        else {
            panic!("not built")
        };
        assert_eq!(
            platforms
                .iter()
                .map(|i| i.platform.to_string())
                .collect::<Vec<_>>(),
            ["linux/amd64", "linux/arm64"]
        );
        let runs = executor.runs.lock().expect("lock").clone();
        assert!(
            runs[0].starts_with("kb-team-app-v1-linux-amd64-")
                && runs[1].starts_with("kb-team-app-v1-linux-arm64-"),
            "{runs:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e.platform(), Some((pl, BuildEvent::Building)) if *pl == p("linux/arm64")))
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, BuildEvent::IndexPushed { digest: d, .. } if *d == digest))
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, BuildEvent::Verified { digest: d } if *d == digest))
        );

        // The index holds both: skipped, nothing runs.
        let (out, _) = run(&registry, &executor, &two);
        assert!(matches!(out.expect("skipped"), BuildOutcome::Skipped { .. }));
        assert_eq!(executor.runs.lock().expect("lock").len(), 2);

        // A third platform: the index is incomplete, every platform is built again.
        let three = config(&["linux/amd64", "linux/arm64", "linux/arm/v7"]);
        let (out, _) = run(&registry, &executor, &three);
        let BuildOutcome::Built { platforms, .. } = out.expect("built") else {
            panic!("not built")
        };
        assert_eq!(platforms.len(), 3);
        assert_eq!(registry.indexes_pushed.lock().expect("lock").len(), 2);
    }

    #[test]
    fn a_single_platform_image_under_the_tag_is_built_again() {
        let registry = Registry::default();
        registry.tags.lock().expect("lock").insert(
            "registry.local:5000/team/app:v1".into(),
            (Digest::sha256(b"old"), None),
        );
        let probed = block_on(registry.probe(&"registry.local:5000/team/app:v1".parse().expect("image")))
            .expect("probe");
        let decision = block_on(decide(&config(&["linux/amd64"]), &registry, &probed)).expect("decide");
        assert_eq!(
            decision,
            Decision::Build {
                reason: BuildReason::NotAnIndex
            }
        );
    }

    #[test]
    fn one_platform_failing_pushes_no_index_and_names_every_result() {
        let registry = Registry::default();
        let executor = Executor {
            registry: &registry,
            fails: Some(p("linux/arm64")),
            runs: Mutex::default(),
        };
        let (out, _) = run(&registry, &executor, &config(&["linux/amd64", "linux/arm64"]));
        let failure = out.expect_err("failed");
        let FailureReason::Platforms { results } = failure.reason() else {
            panic!("{failure}")
        };
        assert_eq!(results[0].digest, Some(Digest::sha256(b"linux/amd64")));
        assert_eq!(results[1].failure.as_ref().map(|f| f.kind()), Some("exit_code"));
        assert!(
            failure.to_string().contains("linux/arm64: exit_code"),
            "{failure}"
        );
        assert!(registry.indexes_pushed.lock().expect("lock").is_empty());
        assert_eq!(
            executor.runs.lock().expect("lock").len(),
            2,
            "the other platform still ran"
        );
    }
}
