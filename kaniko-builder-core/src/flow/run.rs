//! [`run_build`]: decide, execute, verify.

use std::future::Future;
use std::pin::pin;
use std::time::Instant;

use futures::future::{Either, select};
use tokio_util::sync::CancellationToken;

use super::platforms;
use super::{
    BuildEvent, BuildExecutor, BuildFailure, BuildOutcome, BuildPlan, Decision, EventSink, ExecError,
    Executed, FailureReason, ImageProbe, ObjectRef, SkippedBy,
};
use crate::config::BuildConfig;
use crate::digest::Digest;
use crate::probe::Probe;

/// Options of [`run_build`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct FlowOptions {
    pub(super) verify: bool,
}

impl Default for FlowOptions {
    fn default() -> Self {
        Self { verify: true }
    }
}

impl FlowOptions {
    /// Whether to confirm a build in the registry: the pushed digest must exist and the tag must
    /// resolve to it. Default: true.
    pub fn verify(mut self, verify: bool) -> Self {
        self.verify = verify;
        self
    }
}

/// Runs `future` unless `cancel` fires first (then `None`).
pub(super) async fn unless_cancelled<F: Future>(cancel: &CancellationToken, future: F) -> Option<F::Output> {
    if cancel.is_cancelled() {
        return None;
    }
    match select(pin!(future), pin!(cancel.cancelled())).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(((), _)) => None,
    }
}

/// Decides and runs one build: the caller-side probe, the executor, the verification. See the
/// [module docs](super).
///
/// # Errors
/// A [`BuildFailure`] whose [`FailureReason`] says why: the probe could not tell, the executor
/// failed (with what it kept), the verification found another digest, or the run was cancelled.
pub async fn run_build(
    config: &BuildConfig,
    probe: &dyn ImageProbe,
    executor: &dyn BuildExecutor,
    events: &EventSink,
    cancel: &CancellationToken,
    options: &FlowOptions,
) -> Result<BuildOutcome, BuildFailure> {
    let started = Instant::now();
    let image = config.image();
    let fail = |reason: FailureReason, job: Option<ObjectRef>, kept: Vec<ObjectRef>| {
        BuildFailure::new(
            image.clone(),
            started.elapsed(),
            ExecError::new(reason).with_job(job).with_kept(kept),
        )
    };

    let probed = match unless_cancelled(cancel, probe.probe(image)).await {
        None => return Err(fail(FailureReason::Cancelled, None, Vec::new())),
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            let reason = FailureReason::ProbeFailed {
                cause: e.cause(),
                message: e.to_string(),
                unauthorized: e.is_unauthorized(),
                retryable: e.is_retryable(),
            };
            return Err(BuildFailure::new(
                image.clone(),
                started.elapsed(),
                ExecError::new(reason).with_source(e),
            ));
        }
    };
    let existing = probed.manifest().cloned();
    events.send(BuildEvent::Probed {
        exists: existing.is_some(),
        digest: existing.as_ref().map(|m| m.digest.clone()),
    });
    let decision = if config.platforms().is_empty() {
        Decision::from_probe(&probed, config.force())
    } else {
        match unless_cancelled(cancel, platforms::decide(config, probe, &probed)).await {
            None => return Err(fail(FailureReason::Cancelled, None, Vec::new())),
            Some(Err(reason)) => return Err(fail(reason, None, Vec::new())),
            Some(Ok(decision)) => decision,
        }
    };
    let reason = match decision {
        Decision::Skip { digest } => {
            return Ok(BuildOutcome::Skipped {
                image: image.clone(),
                digest,
                by: SkippedBy::Caller,
                job: None,
                kept: Vec::new(),
                duration: started.elapsed(),
            });
        }
        Decision::Build { reason } => reason,
    };
    if !config.platforms().is_empty() {
        return platforms::build(config, reason, probe, executor, events, cancel, options, started).await;
    }
    let plan = BuildPlan::new(config.clone(), reason, existing);
    // The executor watches the token itself, so it can clean up before returning.
    let executed = executor.execute(&plan, events, cancel.clone()).await;
    let (digest, job, kept) = match executed {
        Ok(Executed::Skipped { digest, job, kept }) => {
            return Ok(BuildOutcome::Skipped {
                image: image.clone(),
                digest,
                by: SkippedBy::InCluster,
                job: Some(job),
                kept,
                duration: started.elapsed(),
            });
        }
        Ok(Executed::Built { digest, job, kept }) => (digest, job, kept),
        Err(e) => return Err(BuildFailure::new(image.clone(), started.elapsed(), e)),
    };

    if options.verify {
        match unless_cancelled(cancel, verify(probe, config, &digest)).await {
            None => return Err(fail(FailureReason::Cancelled, Some(job), kept)),
            Some(Err(reason)) => return Err(fail(reason, Some(job), kept)),
            Some(Ok(())) => events.send(BuildEvent::Verified {
                digest: digest.clone(),
            }),
        }
    }
    Ok(BuildOutcome::Built {
        image: image.clone(),
        digest,
        job,
        kept,
        duration: started.elapsed(),
        platforms: Vec::new(),
    })
}

/// The pinned digest must exist, and the tag must resolve to it.
pub(super) async fn verify(
    probe: &dyn ImageProbe,
    config: &BuildConfig,
    pushed: &Digest,
) -> Result<(), FailureReason> {
    let image = config.image();
    let failed = |e: super::RegistryFailure| FailureReason::VerifyFailed {
        message: e.to_string(),
    };
    let pinned = image.with_digest(pushed.clone());
    let (pinned, tag) = futures::join!(probe.probe(&pinned), probe.probe(image));
    let pinned_exists = pinned.map_err(failed)?.exists();
    let tag_resolves_to = match tag.map_err(failed)? {
        Probe::Exists(m) => Some(m.digest),
        _ => None,
    };
    if pinned_exists && tag_resolves_to.as_ref() == Some(pushed) {
        Ok(())
    } else {
        Err(FailureReason::VerifyMismatch {
            pushed: pushed.clone(),
            tag_resolves_to,
            pinned_exists,
        })
    }
}
