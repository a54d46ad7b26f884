use std::time::Duration;

use kaniko_builder::core::flow::ObjectRef;
use kaniko_builder::{BuildOutcome, Digest, FailureReason, ImageRef, SkippedBy};

use super::*;

fn image() -> ImageRef {
    "registry.local:5000/app:v1".parse().expect("image")
}

fn job() -> ObjectRef {
    ObjectRef::namespaced("Job", "builds", "kb-app-v1-0123456789")
}

fn skipped() -> BuildOutcome {
    BuildOutcome::Skipped {
        image: image(),
        digest: Digest::sha256(b"m"),
        by: SkippedBy::Caller,
        job: None,
        kept: Vec::new(),
        duration: Duration::ZERO,
    }
}

/// As `verdict` on a failure of the Job [`job`].
fn on_failure(reason: &FailureReason, log_tail: Vec<String>) -> Verdict {
    failed(reason, Some(&job()), log_tail)
}

#[test]
fn built_records_the_digest_and_the_job() {
    let built = BuildOutcome::Built {
        image: image(),
        digest: Digest::sha256(b"m"),
        job: job(),
        kept: Vec::new(),
        duration: Duration::ZERO,
        platforms: Vec::new(),
    };
    let Verdict::Final(step, extra) = verdict(Ok(built), None, Vec::new()) else {
        panic!("final")
    };
    assert_eq!((step.phase, step.reason), (Phase::Succeeded, "Built"));
    assert_eq!(extra["digest"], Digest::sha256(b"m").to_string());
    assert_eq!(extra["jobRef"]["name"], "kb-app-v1-0123456789");
    assert!(extra.get("completionTime").is_some());
}

#[test]
fn a_skip_is_a_skip_unless_a_job_of_this_generation_ran_before() {
    let Verdict::Final(step, extra) = verdict(Ok(skipped()), None, Vec::new()) else {
        panic!("final")
    };
    assert_eq!((step.phase, step.reason), (Phase::Skipped, "Skipped"));
    assert!(extra.get("jobRef").is_none(), "no Job ran");
    let Verdict::Final(step, _) = verdict(Ok(skipped()), Some("builds/kb-app"), Vec::new()) else {
        panic!("final")
    };
    assert_eq!((step.phase, step.reason), (Phase::Succeeded, "Built"));
    assert!(step.message.contains("builds/kb-app"), "{}", step.message);
}

#[test]
fn failures_name_their_reason_and_keep_the_log_tail() {
    let exit = FailureReason::ExitCode {
        container: "image-builder".into(),
        code: 1,
        message: None,
        last_lines: vec!["error: no such file".into()],
    };
    let Verdict::Final(step, extra) = on_failure(&exit, vec!["other".into()]) else {
        panic!("final")
    };
    assert_eq!((step.phase, step.reason), (Phase::Failed, "BuildFailed"));
    assert_eq!(extra["lastLogLines"], json!(["error: no such file"]));
    assert_eq!(extra["jobRef"]["namespace"], "builds");

    let deleted = on_failure(&FailureReason::JobDeletedExternally, vec!["tail".into()]);
    let Verdict::Final(step, extra) = deleted else {
        panic!("final")
    };
    assert_eq!(step.reason, "JobDeleted");
    assert_eq!(
        extra["lastLogLines"],
        json!(["tail"]),
        "the followed log's tail when the reason has none"
    );
}

#[test]
fn transient_failures_retry_and_cancellation_records_nothing() {
    let probe = FailureReason::ProbeFailed {
        cause: "connect",
        message: "connection refused".into(),
        unauthorized: false,
        retryable: true,
    };
    assert!(matches!(on_failure(&probe, Vec::new()), Verdict::Retry(m) if m.contains("connection refused")));
    assert!(matches!(
        on_failure(&FailureReason::Cancelled, Vec::new()),
        Verdict::Cancelled
    ));
    let denied = FailureReason::ProbeFailed {
        cause: "auth",
        message: "401".into(),
        unauthorized: true,
        retryable: false,
    };
    let Verdict::Final(step, _) = on_failure(&denied, Vec::new()) else {
        panic!("final")
    };
    assert_eq!((step.phase, step.reason), (Phase::Failed, "Unauthorized"));
}
