//! From the library's result of a build to the `ImageBuild`'s final status.

use kaniko_builder::core::flow::ObjectRef;
use kaniko_builder::{BuildFailure, BuildOutcome, FailureReason};
use serde_json::{Value, json};

use crate::crd::Phase;
use crate::status::{self, Step};

/// What to do with a build's result.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Record this final step with these status fields.
    Final(Step, Value),
    /// A failure that may pass (the registry or the API server unreachable): try again later.
    Retry(String),
    /// Cancelled by this controller (deleted, superseded, stopping): record nothing.
    Cancelled,
}

/// The verdict on `result`. `resumed`: the Job of this generation was created before this
/// process took over, so a tag found in the registry is that Job's work, not a skip.
pub(crate) fn verdict(
    result: Result<BuildOutcome, BuildFailure>,
    resumed: Option<&str>,
    log_tail: Vec<String>,
) -> Verdict {
    match result {
        Ok(outcome) => {
            let step = match (&outcome, resumed) {
                (BuildOutcome::Skipped { .. }, Some(job)) => Step::new(
                    Phase::Succeeded,
                    "Built",
                    format!(
                        "Job {job} pushed {}@{} while another controller process was in charge",
                        outcome.image(),
                        outcome.digest()
                    ),
                ),
                (BuildOutcome::Skipped { image, .. }, None) => Step::new(
                    Phase::Skipped,
                    "Skipped",
                    format!(
                        "{image} is already in the registry as {}: nothing built",
                        outcome.digest()
                    ),
                ),
                _ => Step::new(
                    Phase::Succeeded,
                    "Built",
                    format!("built and pushed {}@{}", outcome.image(), outcome.digest()),
                ),
            };
            let job = match &outcome {
                BuildOutcome::Built { job, .. } => Some(job),
                BuildOutcome::Skipped { job, .. } => job.as_ref(),
                _ => None,
            }
            .filter(|j| !j.name.is_empty());
            let mut extra =
                json!({ "digest": outcome.digest().to_string(), "completionTime": status::now() });
            if let Some(job) = job {
                extra["jobRef"] = status::job_ref(job.namespace.as_deref().unwrap_or_default(), &job.name);
            }
            Verdict::Final(step, extra)
        }
        Err(failure) => failed(failure.reason(), failure.job(), log_tail),
    }
}

/// The verdict on a failure for `reason`, of `job` when there was one.
fn failed(reason: &FailureReason, job: Option<&ObjectRef>, log_tail: Vec<String>) -> Verdict {
    match reason {
        FailureReason::Cancelled => return Verdict::Cancelled,
        FailureReason::ProbeFailed { retryable: true, .. } | FailureReason::Cluster { .. } => {
            return Verdict::Retry(reason.to_string());
        }
        _ => {}
    }
    let lines = if reason.last_lines().is_empty() {
        log_tail
    } else {
        reason.last_lines().to_vec()
    };
    let step = Step::new(Phase::Failed, condition_reason(reason), reason.to_string());
    let mut extra = json!({ "completionTime": status::now(), "lastLogLines": lines });
    if let Some(job) = job.filter(|j| !j.name.is_empty()) {
        extra["jobRef"] = status::job_ref(job.namespace.as_deref().unwrap_or_default(), &job.name);
    }
    Verdict::Final(step, extra)
}

/// The condition's CamelCase reason for a failure.
fn condition_reason(reason: &FailureReason) -> &'static str {
    match reason {
        FailureReason::ProbeFailed {
            unauthorized: true, ..
        } => "Unauthorized",
        FailureReason::ProbeFailed { .. } => "ProbeFailed",
        FailureReason::Invalid { .. } => "InvalidSpec",
        FailureReason::Context { .. } => "ContextFailed",
        FailureReason::Conflict { .. } => "Conflict",
        FailureReason::OomKilled { .. } => "OOMKilled",
        FailureReason::ImagePull { .. } => "ImagePullFailed",
        FailureReason::Unschedulable { .. } => "Unschedulable",
        FailureReason::Evicted { .. } => "Evicted",
        FailureReason::DeadlineExceeded { .. } | FailureReason::Timeout { .. } => "DeadlineExceeded",
        FailureReason::JobDeletedExternally => "JobDeleted",
        FailureReason::NodeLost { .. } => "NodeLost",
        FailureReason::InitCheckFailed { .. } => "InitCheckFailed",
        FailureReason::VerifyMismatch { .. } | FailureReason::VerifyFailed { .. } => "VerifyFailed",
        FailureReason::Platforms { .. } | FailureReason::IndexPush { .. } => "PlatformsFailed",
        // ExitCode, JobFailed, UnexpectedTermination, and what later versions add.
        _ => "BuildFailed",
    }
}

#[cfg(test)]
mod tests;
