//! The state tracker against Pod and Job states as a kubelet and the Job controller write them.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kaniko_builder_core::Digest;
use kaniko_builder_core::flow::{BuildEvent, BuildReason, Decision, FailureReason};
use serde_json::{Value, json};

use super::state::{Action, Tracker, Verdict};

fn pod(status: &Value, node: Option<&str>) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": "kb-app-1", "namespace": "kaniko" },
        "spec": { "containers": [], "nodeName": node },
        "status": status,
    }))
    .expect("pod")
}

fn terminated(name: &str, code: i32, reason: &str, message: &str) -> Value {
    json!({ "name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": { "terminated": { "exitCode": code, "reason": reason, "message": message } } })
}

fn running(name: &str) -> Value {
    json!({ "name": name, "image": "i", "imageID": "", "ready": true, "restartCount": 0,
            "state": { "running": {} } })
}

fn waiting(name: &str, reason: &str, message: &str) -> Value {
    json!({ "name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": { "waiting": { "reason": reason, "message": message } } })
}

fn events(actions: &[Action]) -> Vec<BuildEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

const DIGEST: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

#[test]
fn a_build_from_pending_to_pushed() {
    let mut t = Tracker::default();
    let (a, v) = t.pod(
        &pod(
            &json!({ "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/0 nodes" }] }),
            None,
        ),
        false,
    );
    assert!(v.is_none());
    assert_eq!(a, [Action::Unschedulable("0/0 nodes".into())]);

    let (a, _) = t.pod(
        &pod(
            &json!({ "phase": "Pending", "initContainerStatuses": [waiting("kaniko-init", "ContainerCreating", "")] }),
            Some("node-1"),
        ),
        true,
    );
    assert!(a.contains(&Action::Scheduled));
    assert_eq!(
        events(&a),
        [
            BuildEvent::Scheduled {
                node: "node-1".into()
            },
            BuildEvent::PullingImage {
                container: "kaniko-init".into()
            }
        ]
    );

    let (a, _) = t.pod(
        &pod(
            &json!({ "phase": "Pending", "initContainerStatuses": [running("kaniko-init")] }),
            Some("node-1"),
        ),
        true,
    );
    assert_eq!(a, [Action::FollowLogs("kaniko-init"), Action::Upload]);

    let init_done = terminated(
        "kaniko-init",
        0,
        "Completed",
        r#"{"decision":"build","reason":"absent"}"#,
    );
    let (a, v) = t.pod(
        &pod(
            &json!({ "phase": "Running", "initContainerStatuses": [init_done], "containerStatuses": [running("image-builder")] }),
            Some("node-1"),
        ),
        true,
    );
    assert!(v.is_none());
    assert_eq!(
        events(&a),
        [
            BuildEvent::InitCheck {
                decision: Decision::Build {
                    reason: BuildReason::Absent
                }
            },
            BuildEvent::Building
        ]
    );
    assert!(a.contains(&Action::FollowLogs("image-builder")));

    let (a, v) = t.pod(
        &pod(
            &json!({ "phase": "Succeeded", "initContainerStatuses": [init_done], "containerStatuses": [terminated("image-builder", 0, "Completed", &format!("{DIGEST}\n"))] }),
            Some("node-1"),
        ),
        true,
    );
    let digest: Digest = DIGEST.parse().expect("digest");
    assert_eq!(v, Some(Verdict::Built(digest.clone())));
    assert_eq!(events(&a), [BuildEvent::Pushed { digest }]);
}

#[test]
fn failures_map_to_their_reasons() {
    let init_ok = terminated(
        "kaniko-init",
        0,
        "Completed",
        r#"{"decision":"build","reason":"forced"}"#,
    );
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "phase": "Pending", "initContainerStatuses": [waiting("kaniko-init", "InvalidImageName", "couldn't parse image reference")] }),
            "image_pull",
        ),
        (
            json!({ "phase": "Failed", "initContainerStatuses": [terminated("kaniko-init", 1, "Error", r#"{"decision":"error","message":"401 from registry"}"#)] }),
            "init_check_failed",
        ),
        (
            json!({ "phase": "Failed", "initContainerStatuses": [init_ok], "containerStatuses": [terminated("image-builder", 137, "OOMKilled", "")] }),
            "oom_killed",
        ),
        (
            json!({ "phase": "Failed", "initContainerStatuses": [init_ok], "containerStatuses": [terminated("image-builder", 2, "Error", "")] }),
            "exit_code",
        ),
        (
            json!({ "phase": "Failed", "reason": "Evicted", "message": "low on disk" }),
            "evicted",
        ),
        (
            json!({ "phase": "Pending", "reason": "NodeLost", "message": "node stopped" }),
            "node_lost",
        ),
        (
            json!({ "phase": "Succeeded", "initContainerStatuses": [init_ok], "containerStatuses": [terminated("image-builder", 0, "Completed", "nonsense")] }),
            "unexpected_termination",
        ),
    ];
    for (status, kind) in cases {
        let mut t = Tracker::default();
        let (_, v) = t.pod(&pod(&status, Some("n")), false);
        match v {
            Some(Verdict::Failed(reason)) => assert_eq!(reason.kind(), kind, "{status}"),
            other => panic!("{status}: expected {kind}, got {other:?}"),
        }
    }
}

#[test]
fn an_in_cluster_skip() {
    let mut t = Tracker::default();
    let skip = format!(r#"{{"decision":"skip","digest":"{DIGEST}"}}"#);
    let (a, v) = t.pod(
        &pod(
            &json!({ "phase": "Succeeded", "initContainerStatuses": [terminated("kaniko-init", 0, "Completed", &skip)], "containerStatuses": [terminated("image-builder", 0, "Completed", &skip)] }),
            Some("n"),
        ),
        false,
    );
    assert_eq!(v, Some(Verdict::Skipped(DIGEST.parse().expect("digest"))));
    assert!(!events(&a).contains(&BuildEvent::Building), "a skip never builds");
}

#[test]
fn job_conditions() {
    let job = |t: &str, reason: &str| -> Job {
        serde_json::from_value(json!({ "metadata": { "name": "j" }, "status": { "conditions": [
            { "type": t, "status": "True", "reason": reason, "message": "m" }
        ] } }))
        .expect("job")
    };
    let mut t = Tracker::default();
    assert!(matches!(
        t.job(&job("Failed", "DeadlineExceeded")),
        Some(Action::AwaitPod(Verdict::Failed(
            FailureReason::DeadlineExceeded { .. }
        )))
    ));
    assert!(matches!(
        t.job(&job("Failed", "BackoffLimitExceeded")),
        Some(Action::AwaitPod(Verdict::Failed(FailureReason::JobFailed { .. })))
    ));
    assert_eq!(super::state::job_finished(&job("Complete", "")), Some(true));
    assert_eq!(super::state::job_finished(&job("Failed", "x")), Some(false));
}

fn conditions(ready: &str, containers_ready: &str) -> Value {
    json!([
        { "type": "PodScheduled", "status": "True" },
        { "type": "Initialized", "status": "True" },
        { "type": "ContainersReady", "status": containers_ready },
        { "type": "Ready", "status": ready },
    ])
}

fn node_lost_actions(a: &[Action]) -> Vec<&Action> {
    a.iter()
        .filter(|a| matches!(a, Action::NodeNotReady(_) | Action::NodeReady))
        .collect()
}

#[test]
fn a_pod_marked_not_ready_by_the_node_controller_suspects_the_node_once() {
    let init_ok = terminated(
        "kaniko-init",
        0,
        "Completed",
        r#"{"decision":"build","reason":"absent"}"#,
    );
    let status = |ready: &str, containers_ready: &str| {
        json!({ "phase": "Running", "conditions": conditions(ready, containers_ready),
                "initContainerStatuses": [init_ok], "containerStatuses": [running("image-builder")] })
    };
    let mut t = Tracker::default();
    let (a, v) = t.pod(&pod(&status("True", "True"), Some("node-1")), false);
    assert!(v.is_none());
    assert!(node_lost_actions(&a).is_empty());

    // The node lifecycle controller flips only Ready; the kubelet would flip both.
    let (a, v) = t.pod(&pod(&status("False", "True"), Some("node-1")), false);
    assert!(v.is_none(), "not a verdict yet: the runner's grace decides");
    assert!(
        matches!(node_lost_actions(&a)[..], [Action::NodeNotReady(_)]),
        "{a:?}"
    );
    assert!(events(&a).iter().any(|e| matches!(e,
        BuildEvent::NodeNotReady { node: Some(n), .. } if n == "node-1")));
    let (a, _) = t.pod(&pod(&status("False", "True"), Some("node-1")), false);
    assert!(node_lost_actions(&a).is_empty(), "once per transition: {a:?}");

    let (a, _) = t.pod(&pod(&status("True", "True"), Some("node-1")), false);
    assert_eq!(node_lost_actions(&a), [&Action::NodeReady]);
}

#[test]
fn a_kubelet_reporting_unready_containers_is_not_a_lost_node() {
    let mut t = Tracker::default();
    let init = json!({ "phase": "Pending", "conditions": conditions("False", "False"),
                       "initContainerStatuses": [running("kaniko-init")],
                       "containerStatuses": [waiting("image-builder", "PodInitializing", "")] });
    let (a, _) = t.pod(&pod(&init, Some("n")), false);
    assert!(node_lost_actions(&a).is_empty(), "{a:?}");
    // A readiness gate (e.g. added by a webhook) makes Ready=False alone normal.
    let mut gated = pod(
        &json!({ "phase": "Running", "conditions": conditions("False", "True"),
                 "containerStatuses": [running("image-builder")] }),
        Some("n"),
    );
    gated.spec.as_mut().expect("spec").readiness_gates =
        Some(vec![k8s_openapi::api::core::v1::PodReadinessGate {
            condition_type: "example.com/gate".into(),
        }]);
    let (a, _) = t.pod(&gated, false);
    assert!(node_lost_actions(&a).is_empty(), "{a:?}");
    let done = json!({ "phase": "Failed", "conditions": conditions("False", "False"),
                       "containerStatuses": [terminated("image-builder", 1, "Error", "")] });
    let (a, _) = t.pod(&pod(&done, Some("n")), false);
    assert!(node_lost_actions(&a).is_empty(), "{a:?}");
}

#[test]
fn a_node_not_ready_suspects_the_node_until_it_is_ready_again() {
    let node = |status: &str, reason: &str| -> k8s_openapi::api::core::v1::Node {
        serde_json::from_value(json!({ "metadata": { "name": "node-1" }, "status": { "conditions": [
            { "type": "Ready", "status": status, "reason": reason, "message": "Kubelet stopped posting node status." }
        ] } }))
        .expect("node")
    };
    let mut t = Tracker::default();
    t.pod(
        &pod(
            &json!({ "phase": "Pending", "initContainerStatuses": [running("kaniko-init")] }),
            Some("node-1"),
        ),
        false,
    );
    assert!(t.node(&node("True", "KubeletReady")).is_empty());
    let a = t.node(&node("Unknown", "NodeStatusUnknown"));
    assert_eq!(
        node_lost_actions(&a),
        [&Action::NodeNotReady(
            "NodeStatusUnknown: Kubelet stopped posting node status.".into()
        )]
    );
    assert!(t.node(&node("Unknown", "NodeStatusUnknown")).is_empty());
    assert_eq!(
        node_lost_actions(&t.node(&node("True", "KubeletReady"))),
        [&Action::NodeReady]
    );
    assert!(
        t.node(&node("False", "KubeletNotReady")).is_empty(),
        "a kubelet saying not ready still reports: not lost"
    );
    let empty: k8s_openapi::api::core::v1::Node =
        serde_json::from_value(json!({ "metadata": { "name": "node-1" } })).expect("node");
    assert!(
        t.node(&empty).is_empty(),
        "a node without conditions is still registering"
    );
}

#[test]
fn a_node_reporting_again_outranks_the_pods_stale_mark() {
    let node = |status: &str| -> k8s_openapi::api::core::v1::Node {
        serde_json::from_value(
            json!({ "metadata": { "name": "node-1" }, "status": { "conditions": [
            { "type": "Ready", "status": status, "reason": "r", "message": "m" }
        ] } }),
        )
        .expect("node")
    };
    let init_ok = terminated(
        "kaniko-init",
        0,
        "Completed",
        r#"{"decision":"build","reason":"absent"}"#,
    );
    let marked = json!({ "phase": "Running", "conditions": conditions("False", "True"),
                         "initContainerStatuses": [init_ok], "containerStatuses": [running("image-builder")] });
    let mut t = Tracker::default();
    assert!(t.node(&node("True")).is_empty());
    // The Pod's mark arrives before the Node's Unknown: the Node still says it reports.
    let (a, _) = t.pod(&pod(&marked, Some("node-1")), false);
    assert!(node_lost_actions(&a).is_empty(), "{a:?}");
    assert!(matches!(
        node_lost_actions(&t.node(&node("Unknown")))[..],
        [Action::NodeNotReady(_)]
    ));
    // Back: the Pod keeps its stale mark until the kubelet writes it again; the Node decides.
    assert_eq!(node_lost_actions(&t.node(&node("True"))), [&Action::NodeReady]);
    let (a, _) = t.pod(&pod(&marked, Some("node-1")), false);
    assert!(node_lost_actions(&a).is_empty(), "{a:?}");
}

fn pull_actions(a: &[Action]) -> Vec<&Action> {
    a.iter()
        .filter(|a| {
            matches!(
                a,
                Action::PullFailing { .. }
                    | Action::PullRecovered(_)
                    | Action::Emit(BuildEvent::PullingImage { .. })
            )
        })
        .collect()
}

#[test]
fn a_retried_pull_asks_for_the_grace_and_its_recovery_stops_it() {
    let mut t = Tracker::default();
    let mut init = |state: Value| {
        let status = json!({ "phase": "Pending", "initContainerStatuses": [state] });
        let (a, v) = t.pod(&pod(&status, Some("n")), false);
        assert_eq!(v, None, "a retried pull is no verdict: {status}");
        a
    };
    let pulling = Action::Emit(BuildEvent::PullingImage {
        container: "kaniko-init".into(),
    });
    let failing = |message: &str| Action::PullFailing {
        container: "kaniko-init",
        message: message.into(),
    };
    let error = r#"ErrImagePull: rpc error: failed to pull "img:1""#;
    init(waiting("kaniko-init", "ContainerCreating", ""));
    let a = init(waiting(
        "kaniko-init",
        "ErrImagePull",
        r#"rpc error: failed to pull "img:1""#,
    ));
    assert_eq!(pull_actions(&a), [&pulling, &failing(error)]);
    // The back-off names the image only: the last attempt's error goes with it.
    let a = init(waiting(
        "kaniko-init",
        "ImagePullBackOff",
        r#"Back-off pulling image "img:1""#,
    ));
    let backoff =
        format!(r#"ImagePullBackOff: Back-off pulling image "img:1"; the last attempt failed: {error}"#);
    assert_eq!(pull_actions(&a), [&failing(&backoff)]);
    // The next attempt fails too: the container still waits for its image.
    let a = init(waiting(
        "kaniko-init",
        "ErrImagePull",
        r#"rpc error: failed to pull "img:1""#,
    ));
    assert_eq!(pull_actions(&a), [&pulling, &failing(error)]);
    let a = init(running("kaniko-init"));
    assert_eq!(pull_actions(&a), [&Action::PullRecovered("kaniko-init")]);
    assert!(pull_actions(&init(running("kaniko-init"))).is_empty(), "once");
}
