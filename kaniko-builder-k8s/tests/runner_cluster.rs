//! The runner against the real local control plane (API server, controller manager, scheduler)
//! without a node: this test plays the kubelet by writing Pod status. It proves Job creation,
//! attaching to a running duplicate, cancellation, the client-side deadline, dropping the
//! future, failures and cleanup policies, field-manager conflicts, and that the generated Role
//! suffices for an orchestrator while the build Pod's own account can do nothing. Every scenario
//! ends by listing what is left.

mod runner_support;

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kaniko_builder_core::flow::{
    BuildEvent, BuildExecutor, CancellationToken, EventSink, Executed, FailureReason,
};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_k8s::apply::{self, ApplyParams};
use kaniko_builder_k8s::manifest::JobOptions;
use kaniko_builder_k8s::runner::{CleanupPolicy, Setup};
use kaniko_builder_testkit::TestCluster;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use runner_support::*;
use serde_json::json;

const DOCKER_CONFIG: &str = r#"{"auths":{"registry.local:5000":{"auth":"dXNlcjpwYXNz"}}}"#;

/// `secret/<name>` of the per-credentials Secret of [`DOCKER_CONFIG`].
fn secret() -> String {
    let m = kaniko_builder_k8s::render(
        &config("registry.local:5000/team/app:v1", "any"),
        &JobOptions::default(),
        Some(DOCKER_CONFIG.as_bytes()),
    )
    .expect("render");
    format!(
        "secret/{}",
        m.secret.expect("secret").metadata.name.expect("name")
    )
}

fn runner_for(client: &kube::Client) -> kaniko_builder_k8s::KubeRunnerBuilder {
    KubeRunner::builder(client.clone())
        .docker_config_json(DOCKER_CONFIG)
        .unschedulable_timeout(None)
        .log_drain_timeout(Duration::from_millis(200))
}

#[tokio::test]
async fn attach_cancel_timeout_and_drop_leave_nothing_behind() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_client();

    // 1. The same build twice, concurrently: one Job, both runs get the outcome.
    let ns = "dup";
    let (watch, created) = record_jobs(&admin, ns);
    let cfg = config("registry.local:5000/team/app:v1", ns);
    let runner = runner_for(&admin).build();
    let (first, second) = (Recorder::default(), Recorder::default());
    let kubelet = {
        let admin = admin.clone();
        let job = cfg.job_name();
        tokio::spawn(async move {
            let pod = pod_of(&admin, ns, &job).await?;
            // Let both runs reach the watch before the Pod ends.
            tokio::time::sleep(Duration::from_millis(500)).await;
            finish_pod(
                &admin,
                &pod,
                (0, "Completed", BUILD_ABSENT),
                Some((0, "Completed", DIGEST)),
            )
            .await
        })
    };
    let plan = plan(&cfg);
    let (sink_a, sink_b) = (first.sink(), second.sink());
    let (a, b) = tokio::join!(
        runner.execute(&plan, &sink_a, CancellationToken::new()),
        runner.execute(&plan, &sink_b, CancellationToken::new()),
    );
    kubelet.await??;
    for r in [&a, &b] {
        match r {
            Ok(Executed::Built { digest, job, .. }) => {
                assert_eq!(digest.to_string(), DIGEST);
                assert_eq!(job.name, cfg.job_name());
            }
            other => panic!("expected Built, got {other:?}"),
        }
    }
    let steps = [first.steps(), second.steps()];
    let queued = steps.iter().filter(|s| s.contains(&"queued".to_owned())).count();
    let attached = steps
        .iter()
        .filter(|s| s.contains(&"attached".to_owned()))
        .count();
    assert_eq!((queued, attached), (1, 1), "{steps:?}");
    assert_eq!(
        created.lock().expect("lock").len(),
        1,
        "exactly one Job was ever created"
    );
    watch.abort();
    // Success: Job and ConfigMap deleted, the Secret with the Job; nothing is kept.
    let Ok(Executed::Built { kept, .. }) = &a else {
        unreachable!()
    };
    assert_eq!(kept_names(kept), Vec::<String>::new());
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());

    // 2. Cancellation once the Job is queued: Foreground delete, waited for.
    let ns = "cancel";
    let cfg = config("registry.local:5000/team/app:v2", ns);
    let rec = Recorder::default();
    let cancel = CancellationToken::new();
    let (plan, sink) = (runner_support::plan(&cfg), rec.sink());
    let run = runner.execute(&plan, &sink, cancel.clone());
    let (result, ()) = tokio::join!(run, async {
        rec.wait_for("queued", |e| matches!(e, BuildEvent::Queued { .. }))
            .await;
        cancel.cancel();
    });
    let err = result.expect_err("cancelled");
    assert_eq!(*err.reason(), FailureReason::Cancelled);
    assert_eq!(kept_names(err.kept()), Vec::<String>::new());
    // The Job is gone when the run returns. A Pod the Job controller created from a stale cache
    // while the Job was being deleted is an orphan the garbage collector removes moments later.
    let left = leftovers(&admin, ns).await?;
    assert!(
        !left
            .iter()
            .any(|o| o.starts_with("job/") || o.starts_with("configmap/")),
        "{left:?}"
    );
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());

    // 3. The client-side deadline.
    let ns = "deadline";
    let cfg = config("registry.local:5000/team/app:v3", ns);
    let short = runner_for(&admin).timeout(Duration::from_secs(3)).build();
    let err = short
        .execute(
            &runner_support::plan(&cfg),
            &EventSink::discard(),
            CancellationToken::new(),
        )
        .await
        .expect_err("timeout");
    assert!(matches!(err.reason(), FailureReason::Timeout { .. }), "{err}");
    let left = leftovers(&admin, ns).await?;
    assert!(
        left.iter().all(|o| o.starts_with("secret/")),
        "nothing of the build left when run returns: {left:?}"
    );
    // The Secret goes with the Job, collected by the garbage collector moments later.
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());

    // 4. Dropping the future: the guard deletes the Job in the background.
    let ns = "dropped";
    let cfg = config("registry.local:5000/team/app:v4", ns);
    let rec = Recorder::default();
    let task = {
        let runner = runner.clone();
        let plan = runner_support::plan(&cfg);
        let sink = rec.sink();
        tokio::spawn(async move { runner.execute(&plan, &sink, CancellationToken::new()).await })
    };
    rec.wait_for("queued", |e| matches!(e, BuildEvent::Queued { .. }))
        .await;
    task.abort();
    assert!(task.await.is_err(), "aborted");
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn failures_keep_or_delete_by_policy_and_conflicts_name_the_object() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_client();
    let keep = runner_for(&admin).build();

    // An exit code: the Job, its Pod and ConfigMap are kept and listed.
    let ns = "fail";
    let cfg = config("registry.local:5000/team/app:v1", ns);
    let job = cfg.job_name();
    let kubelet = {
        let (admin, job) = (admin.clone(), job.clone());
        tokio::spawn(async move {
            let pod = pod_of(&admin, ns, &job).await?;
            finish_pod(
                &admin,
                &pod,
                (0, "Completed", BUILD_ABSENT),
                Some((2, "Error", "")),
            )
            .await?;
            anyhow::Ok(pod.name_any())
        })
    };
    let err = keep
        .execute(&plan(&cfg), &EventSink::discard(), CancellationToken::new())
        .await
        .expect_err("exit code");
    let pod = kubelet.await??;
    assert!(
        matches!(err.reason(), FailureReason::ExitCode { container, code: 2, .. } if container == "image-builder"),
        "{err}"
    );
    let mut expected = vec![
        format!("configmap/{job}"),
        format!("job/{job}"),
        format!("pod/{pod}"),
        // Owned by the kept Job: kept with it.
        secret(),
    ];
    expected.sort();
    assert_eq!(kept_names(err.kept()), expected);
    assert_eq!(leftovers(&admin, ns).await?, expected);
    // The ConfigMap and the Secret are owned by the Job: deleting the Job (as its TTL would)
    // takes them along.
    Api::<Job>::namespaced(admin.clone(), ns)
        .delete(&job, &DeleteParams::background())
        .await?;
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());
    let cms = ours::<ConfigMap>(&admin, ns).await?;
    assert!(cms.is_empty(), "{cms:?}");

    // The init check could not tell: its message; deleted by policy this time.
    let ns = "init";
    let cfg = config("registry.local:5000/team/app:v2", ns);
    let delete = runner_for(&admin)
        .cleanup(CleanupPolicy::default().delete_on_failure(true))
        .build();
    let kubelet = {
        let (admin, job) = (admin.clone(), cfg.job_name());
        tokio::spawn(async move {
            let pod = pod_of(&admin, ns, &job).await?;
            finish_pod(
                &admin,
                &pod,
                (1, "Error", r#"{"decision":"error","message":"HTTP 401"}"#),
                None,
            )
            .await
        })
    };
    let err = delete
        .execute(&plan(&cfg), &EventSink::discard(), CancellationToken::new())
        .await
        .expect_err("init failure");
    kubelet.await??;
    assert_eq!(
        *err.reason(),
        FailureReason::InitCheckFailed {
            message: "HTTP 401".into()
        }
    );
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());

    // Unschedulable (no node at all): reported after the grace period and deleted whatever the
    // policy: a Pod scheduled later would still build and push after the failure was reported.
    let ns = "nowhere";
    let cfg = config("registry.local:5000/team/app:v3", ns);
    let impatient = runner_for(&admin)
        .unschedulable_timeout(Some(Duration::from_millis(100)))
        .build();
    let err = impatient
        .execute(&plan(&cfg), &EventSink::discard(), CancellationToken::new())
        .await
        .expect_err("unschedulable");
    assert!(
        matches!(err.reason(), FailureReason::Unschedulable { .. }),
        "{err}"
    );
    assert!(!err.kept().iter().any(|o| o.kind == "Job"), "{:?}", err.kept());
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());

    // The Job deleted by someone else while it runs.
    let ns = "deleted";
    let cfg = config("registry.local:5000/team/app:v4", ns);
    let rec = Recorder::default();
    let (the_plan, sink) = (plan(&cfg), rec.sink());
    let run = keep.execute(&the_plan, &sink, CancellationToken::new());
    let (result, ()) = tokio::join!(run, async {
        rec.wait_for("queued", |e| matches!(e, BuildEvent::Queued { .. }))
            .await;
        let _ = pod_of(&admin, ns, &cfg.job_name()).await;
        Api::<Job>::namespaced(admin.clone(), ns)
            .delete(&cfg.job_name(), &DeleteParams::background())
            .await
            .expect("delete the job");
    });
    let err = result.expect_err("deleted");
    assert_eq!(*err.reason(), FailureReason::JobDeletedExternally);
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());

    // Another field manager owns the ConfigMap's FORCE_BUILD: a conflict naming it, unless forced.
    let ns = "conflict";
    let cfg = config("registry.local:5000/team/app:v5", ns);
    cluster.create_namespace(ns).await?;
    let theirs: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": cfg.job_name(), "namespace": ns },
        "data": { "FORCE_BUILD": "Y" },
    }))?;
    Api::<ConfigMap>::namespaced(admin.clone(), ns)
        .patch(
            &cfg.job_name(),
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&theirs),
        )
        .await?;
    let err = keep
        .execute(&plan(&cfg), &EventSink::discard(), CancellationToken::new())
        .await
        .expect_err("conflict");
    match err.reason() {
        FailureReason::Conflict { object, message } => {
            assert_eq!(object, &format!("configmap/{ns}/{}", cfg.job_name()));
            assert!(message.contains("someone-else"), "{message}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(
        ours::<Job>(&admin, ns).await?.is_empty(),
        "no Job after a conflict"
    );
    let forcing = runner_for(&admin)
        .apply_params(ApplyParams::default().force(true))
        .timeout(Duration::from_secs(2))
        .build();
    let err = forcing
        .execute(&plan(&cfg), &EventSink::discard(), CancellationToken::new())
        .await
        .expect_err("no kubelet: times out after applying");
    assert!(matches!(err.reason(), FailureReason::Timeout { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn the_generated_role_suffices_and_the_build_pod_can_do_nothing() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_client();
    let ns = "kaniko";
    let cfg = config("registry.local:5000/team/app:v1", ns);
    // The administrator's step: the namespace, both ServiceAccounts, the Role and its binding.
    let manifests = kaniko_builder_k8s::render(&cfg, &JobOptions::default(), Some(DOCKER_CONFIG.as_bytes()))?;
    apply::apply_setup(&admin, &manifests, &ApplyParams::default()).await?;

    let orchestrator = cluster
        .client_for_service_account(
            ns,
            kaniko_builder_k8s::manifest::DEFAULT_ORCHESTRATOR_SERVICE_ACCOUNT,
        )
        .await?;
    // RBAC reads bindings from a cache: wait until the grant is visible.
    let jobs: Api<Job> = Api::namespaced(orchestrator.clone(), ns);
    let deadline = tokio::time::Instant::now() + WAIT;
    while jobs.list(&Default::default()).await.is_err() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the Role never took effect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // As the orchestrator: the setup is forbidden (and skipped), the build goes through.
    let runner = runner_for(&orchestrator).setup(Setup::IfAllowed).build();
    let kubelet = {
        let (admin, job) = (admin.clone(), cfg.job_name());
        tokio::spawn(async move {
            let pod = pod_of(&admin, ns, &job).await?;
            finish_pod(
                &admin,
                &pod,
                (0, "Completed", BUILD_ABSENT),
                Some((0, "Completed", DIGEST)),
            )
            .await?;
            anyhow::Ok(pod)
        })
    };
    let rec = Recorder::default();
    let done = runner
        .execute(&plan(&cfg), &rec.sink(), CancellationToken::new())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pod = kubelet.await??;
    assert!(matches!(done, Executed::Built { .. }));
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());
    // Cancellation as the orchestrator too (Foreground delete, waited for with its watch).
    let cfg2 = config("registry.local:5000/team/app:v2", ns);
    let cancel = CancellationToken::new();
    let rec = Recorder::default();
    let (plan2, sink) = (plan(&cfg2), rec.sink());
    let (result, ()) = tokio::join!(runner.execute(&plan2, &sink, cancel.clone()), async {
        rec.wait_for("queued", |e| matches!(e, BuildEvent::Queued { .. }))
            .await;
        cancel.cancel();
    });
    assert!(result.expect_err("cancelled").reason() == &FailureReason::Cancelled);
    assert_eq!(leftovers_settled(&admin, ns, &[]).await?, Vec::<String>::new());

    // The build Pod's ServiceAccount has no token mounted and no permission at all.
    let spec = pod.spec.context("pod spec")?;
    assert_eq!(spec.service_account_name.as_deref(), Some("kaniko-builder"));
    assert_eq!(spec.automount_service_account_token, Some(false));
    let build_sa = cluster.client_for_service_account(ns, "kaniko-builder").await?;
    for result in [
        Api::<Pod>::namespaced(build_sa.clone(), ns)
            .list(&Default::default())
            .await
            .err(),
        Api::<Job>::namespaced(build_sa.clone(), ns)
            .list(&Default::default())
            .await
            .err(),
        Api::<ConfigMap>::namespaced(build_sa.clone(), ns)
            .get(&cfg.job_name())
            .await
            .err(),
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(build_sa, ns)
            .get(secret().trim_start_matches("secret/"))
            .await
            .err(),
    ] {
        match result {
            Some(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
            other => panic!("the build account was allowed something: {other:?}"),
        }
    }
    Ok(())
}

/// A client whose answers to `POST …/jobs` arrive `delay` late (the API server has created the
/// Job by then): a stand-in for a slow or broken connection, which a real API server cannot be
/// told to produce at exactly this request. `answered` is notified when the answer is held.
#[derive(Clone)]
struct HoldJobCreates {
    delay: Duration,
    answered: std::sync::Arc<tokio::sync::Notify>,
}

impl<S> tower::Layer<S> for HoldJobCreates {
    type Service = HoldJobCreatesService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        HoldJobCreatesService {
            inner,
            hold: self.clone(),
        }
    }
}

#[derive(Clone)]
struct HoldJobCreatesService<S> {
    inner: S,
    hold: HoldJobCreates,
}

impl<S, B> tower::Service<http::Request<B>> for HoldJobCreatesService<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let held = req.method() == http::Method::POST && req.uri().path().ends_with("/jobs");
        let hold = self.hold.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let answer = answer.await;
            if held {
                hold.answered.notify_one();
                tokio::time::sleep(hold.delay).await;
            }
            answer
        })
    }
}

/// Cancelled while the create call waits for its answer, which the API server has already acted
/// on: the run finds the Job by its run id and removes it. Nothing is left.
#[tokio::test]
async fn a_cancel_during_the_create_call_leaves_no_job() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_client();
    let hold = HoldJobCreates {
        delay: Duration::from_secs(30),
        answered: std::sync::Arc::default(),
    };
    let file = kube::config::Kubeconfig::read_from(cluster.kubeconfig_path())?;
    let mut kube_config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
    kube_config.proxy_url = None;
    let slow = kube::client::ClientBuilder::try_from(kube_config)?
        .with_layer(&hold)
        .build();
    let ns = "unanswered";
    let cfg = config("registry.local:5000/team/app:unanswered", ns);
    let runner = runner_for(&slow).build();
    let cancel = CancellationToken::new();
    let rec = Recorder::default();
    let (plan, sink) = (plan(&cfg), rec.sink());
    let (result, ()) = tokio::join!(runner.execute(&plan, &sink, cancel.clone()), async {
        hold.answered.notified().await;
        cancel.cancel();
    });
    let err = result.expect_err("cancelled");
    assert_eq!(err.reason(), &FailureReason::Cancelled);
    assert!(
        !rec.events()
            .iter()
            .any(|e| matches!(e, BuildEvent::Queued { .. })),
        "the create's answer never came"
    );
    // The Secret is made only for a Job the run knows: never here.
    assert_eq!(leftovers(&admin, ns).await?, Vec::<String>::new());
    Ok(())
}

/// A handover (a controller stopping or losing its lease): with `delete_on_cancel(false)` a
/// cancelled run leaves the Job it created running, and another runner (another process)
/// attaches to it instead of creating a second one.
#[tokio::test]
async fn a_cancel_without_delete_hands_the_running_job_over() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_client();
    let ns = "handover";
    let (watch, created) = record_jobs(&admin, ns);
    let cfg = config("registry.local:5000/team/app:handover", ns);
    let plan = runner_support::plan(&cfg);
    let keep = CleanupPolicy::default().delete_on_cancel(false);

    let leaving = runner_for(&admin).cleanup(keep).build();
    let rec = Recorder::default();
    let cancel = CancellationToken::new();
    let sink = rec.sink();
    let (result, ()) = tokio::join!(leaving.execute(&plan, &sink, cancel.clone()), async {
        rec.wait_for("queued", |e| matches!(e, BuildEvent::Queued { .. }))
            .await;
        cancel.cancel();
    });
    let err = result.expect_err("cancelled");
    assert_eq!(*err.reason(), FailureReason::Cancelled);
    let job = format!("job/{}", cfg.job_name());
    assert!(kept_names(err.kept()).contains(&job), "{:?}", err.kept());
    assert!(leftovers(&admin, ns).await?.contains(&job));

    let taking_over = runner_for(&admin).build();
    let rec = Recorder::default();
    let kubelet = {
        let admin = admin.clone();
        let job = cfg.job_name();
        tokio::spawn(async move {
            let pod = pod_of(&admin, ns, &job).await?;
            finish_pod(
                &admin,
                &pod,
                (0, "Completed", BUILD_ABSENT),
                Some((0, "Completed", DIGEST)),
            )
            .await
        })
    };
    let sink = rec.sink();
    let outcome = taking_over.execute(&plan, &sink, CancellationToken::new()).await;
    kubelet.await??;
    match outcome {
        Ok(Executed::Built { digest, .. }) => assert_eq!(digest.to_string(), DIGEST),
        other => panic!("expected Built, got {other:?}"),
    }
    assert!(rec.steps().contains(&"attached".to_owned()), "{:?}", rec.steps());
    assert_eq!(created.lock().expect("lock").len(), 1, "one Job was ever created");
    watch.abort();
    Ok(())
}
