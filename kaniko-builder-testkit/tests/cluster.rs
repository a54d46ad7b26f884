//! Proves the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler
//! v1.20.2) the tests run against: it starts, authenticates and authorizes for real, its Job
//! controller, scheduler and garbage collector work, and dropping it leaves nothing behind.
//!
//! Timeouts below are safety nets so a broken cluster fails the test instead of hanging it;
//! nothing asserts on timing.

use std::path::PathBuf;
use std::pin::pin;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::TryStreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kaniko_builder_testkit::TestCluster;
use kaniko_builder_testkit::cluster::Component;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;

/// Safety net for every wait.
const WAIT: Duration = Duration::from_secs(60);

async fn start() -> anyhow::Result<TestCluster> {
    TestCluster::start().await.context("start the test cluster")
}

/// Asserts that `result` is the API server's 403 and returns its message.
fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) -> String {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{what}: {status:?}");
            assert_eq!(status.reason, "Forbidden", "{what}: {status:?}");
            status.message
        }
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

fn is_alive(pid: u32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

fn names<K: kube::Resource + Clone>(list: &kube::core::ObjectList<K>) -> Vec<String> {
    list.items.iter().map(ResourceExt::name_any).collect()
}

#[tokio::test]
async fn starts_and_serves_kubernetes_v1_20_2_to_token_cert_and_kubeconfig_clients() -> anyhow::Result<()> {
    let cluster = start().await?;
    let admin = cluster.admin_client();

    let namespaces = names(
        &Api::<Namespace>::all(admin.clone())
            .list(&ListParams::default())
            .await?,
    );
    assert!(namespaces.contains(&"default".to_owned()), "{namespaces:?}");
    assert!(namespaces.contains(&"kube-system".to_owned()), "{namespaces:?}");
    assert_eq!(admin.apiserver_version().await?.git_version, "v1.20.2");

    // The admin client certificate (O=system:masters) may read secrets in kube-system.
    let by_cert = cluster.admin_cert_client().await?;
    Api::<Secret>::namespaced(by_cert, "kube-system")
        .list(&ListParams::default())
        .await
        .context("list secrets with the admin client certificate")?;

    // The kubeconfig file on disk works as written.
    let file = kube::config::Kubeconfig::read_from(cluster.kubeconfig_path())?;
    let mut config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
    config.proxy_url = None;
    let from_file = kube::Client::try_from(config)?;
    assert_eq!(from_file.apiserver_version().await?.git_version, "v1.20.2");

    // A made-up token is not authenticated.
    let stranger = cluster.client_with_token("not-a-token").await?;
    match Api::<Namespace>::all(stranger).list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 401, "{status:?}"),
        other => panic!("expected 401 for an unknown token, got {other:?}"),
    }

    for component in [
        Component::Etcd,
        Component::ApiServer,
        Component::ControllerManager,
        Component::Scheduler,
    ] {
        assert!(cluster.pid(component).is_some(), "{component} runs");
        assert!(!cluster.logs(component).is_empty(), "{component} logs");
    }

    // The admin token is in the kubeconfig file, never in debug output.
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(cluster.kubeconfig_path())?)?;
    let token = written["users"][0]["user"]["token"]
        .as_str()
        .context("admin token in kubeconfig")?;
    assert!(!format!("{cluster:?}").contains(token));
    Ok(())
}

/// Tests may hold a cluster across awaits on any runtime.
#[test]
fn test_cluster_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<TestCluster>();
}

#[tokio::test]
async fn rbac_limits_a_service_account_to_what_its_role_allows() -> anyhow::Result<()> {
    let cluster = start().await?;
    let admin = cluster.admin_client();
    cluster.create_namespace("team").await?;

    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": "configmap-reader" },
        "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"] }],
    }))?;
    Api::<Role>::namespaced(admin.clone(), "team")
        .create(&PostParams::default(), &role)
        .await?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": "limited-reads-configmaps" },
        "subjects": [{ "kind": "ServiceAccount", "name": "limited", "namespace": "team" }],
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader" },
    }))?;
    Api::<RoleBinding>::namespaced(admin.clone(), "team")
        .create(&PostParams::default(), &binding)
        .await?;
    let settings: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "settings" },
        "data": { "k": "v" },
    }))?;
    Api::<ConfigMap>::namespaced(admin.clone(), "team")
        .create(&PostParams::default(), &settings)
        .await?;

    let limited = cluster.client_for_service_account("team", "limited").await?;
    let configmaps = Api::<ConfigMap>::namespaced(limited.clone(), "team");
    // The authorizer reads roles from an informer cache: a binding made a moment ago may not be
    // there yet, so a 403 is retried (briefly) until the grant shows up.
    let deadline = Instant::now() + WAIT;
    let listed = loop {
        match configmaps.list(&ListParams::default()).await {
            Ok(list) => break list,
            Err(kube::Error::Api(status)) if status.code == 403 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e).context("list configmaps as the limited service account"),
        }
    };
    assert!(names(&listed).contains(&"settings".to_owned()));
    assert_eq!(
        configmaps.get("settings").await?.data.unwrap_or_default()["k"],
        "v"
    );

    let job: Job = serde_json::from_value(json!({
        "metadata": { "name": "sneaky" },
        "spec": { "template": { "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "main", "image": "busybox" }],
        } } },
    }))?;
    let message = forbidden(
        Api::<Job>::namespaced(limited.clone(), "team")
            .create(&PostParams::default(), &job)
            .await,
        "create a Job",
    );
    assert!(
        message.contains("system:serviceaccount:team:limited"),
        "{message}"
    );
    forbidden(
        Api::<Secret>::namespaced(limited.clone(), "team")
            .list(&ListParams::default())
            .await,
        "list secrets",
    );
    forbidden(
        configmaps.create(&PostParams::default(), &settings).await,
        "create a configmap (verbs are get and list only)",
    );
    forbidden(
        Api::<ConfigMap>::namespaced(limited, "default")
            .list(&ListParams::default())
            .await,
        "list configmaps in another namespace",
    );
    Ok(())
}

fn is_unschedulable(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| {
        cs.iter().any(|c| {
            c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
        })
    })
}

#[tokio::test]
async fn job_pod_is_created_left_unschedulable_completes_the_job_and_is_collected() -> anyhow::Result<()> {
    let cluster = start().await?;
    let client = cluster.admin_client();
    cluster.create_namespace("builds").await?;
    let jobs = Api::<Job>::namespaced(client.clone(), "builds");
    let pods = Api::<Pod>::namespaced(client, "builds");

    let job: Job = serde_json::from_value(json!({
        "metadata": { "name": "build" },
        "spec": {
            "backoffLimit": 0,
            "template": { "spec": {
                "restartPolicy": "Never",
                "containers": [{ "name": "main", "image": "busybox:1.36", "command": ["true"] }],
            } },
        },
    }))?;
    let job = jobs.create(&PostParams::default(), &job).await?;

    // The Job controller creates the Pod; the scheduler, finding no node, marks it unschedulable.
    let watch = watcher(pods.clone(), watcher::Config::default().labels("job-name=build"))
        .applied_objects()
        .try_filter(|pod| std::future::ready(is_unschedulable(pod)));
    let pod = tokio::time::timeout(WAIT, pin!(watch).try_next())
        .await
        .context("no unschedulable Pod of the Job")??
        .context("pod watch ended")?;
    assert_eq!(pod.labels().get("job-name").map(String::as_str), Some("build"));
    let status = pod.status.as_ref().context("pod status")?;
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert!(pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none());
    let pod_name = pod.name_any();
    let pod_uid = pod.uid().context("pod uid")?;

    // Play the kubelet: the container terminated with exit code 0 and a termination message.
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let patch = json!({ "status": {
        "phase": "Succeeded",
        "containerStatuses": [{
            "name": "main",
            "image": "busybox:1.36",
            "imageID": "",
            "ready": false,
            "restartCount": 0,
            "state": { "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "message": "digest sha256:0123",
                "startedAt": now,
                "finishedAt": now,
            } },
        }],
    } });
    let patched = pods
        .patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let terminated = patched
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|cs| cs.into_iter().next())
        .and_then(|c| c.state)
        .and_then(|s| s.terminated)
        .context("terminated state after the patch")?;
    assert_eq!(terminated.message.as_deref(), Some("digest sha256:0123"));

    let done = tokio::time::timeout(
        WAIT,
        await_condition(jobs.clone(), "build", conditions::is_job_completed()),
    )
    .await
    .context("job not completed")??
    .context("job gone")?;
    assert_eq!(done.status.and_then(|s| s.succeeded), Some(1));

    // Background deletion: the Job goes at once, the garbage collector takes its Pod.
    jobs.delete("build", &DeleteParams::background()).await?;
    let job_uid = job.uid().context("job uid")?;
    tokio::time::timeout(
        WAIT,
        await_condition(jobs, "build", conditions::is_deleted(&job_uid)),
    )
    .await
    .context("job not deleted")??;
    tokio::time::timeout(
        WAIT,
        await_condition(pods, &pod_name, conditions::is_deleted(&pod_uid)),
    )
    .await
    .context("pod not collected")??;
    Ok(())
}

#[tokio::test]
async fn drop_kills_every_process_and_removes_the_dir() -> anyhow::Result<()> {
    let cluster = start().await?;
    let components = [
        Component::Etcd,
        Component::ApiServer,
        Component::ControllerManager,
        Component::Scheduler,
    ];
    let pids: Vec<u32> = components
        .iter()
        .map(|c| cluster.pid(*c).with_context(|| format!("{c} pid")))
        .collect::<anyhow::Result<_>>()?;
    let dir = cluster.dir().to_owned();
    assert!(pids.iter().all(|pid| is_alive(*pid)));
    assert!(dir.exists());

    drop(cluster);
    for (component, pid) in components.iter().zip(&pids) {
        assert!(!is_alive(*pid), "{component} (pid {pid}) survived the drop");
    }
    assert!(!dir.exists(), "{} survived the drop", dir.display());
    Ok(())
}

#[test]
fn a_panicking_test_still_tears_down_a_minimal_cluster() {
    let (tx, rx) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a runtime");
        runtime.block_on(async {
            let cluster = TestCluster::builder()
                .controller_manager(false)
                .scheduler(false)
                .start()
                .await
                .expect("start a cluster without controller manager and scheduler");
            assert!(cluster.pid(Component::ControllerManager).is_none());
            // Without the token controller the harness makes `default` itself, token-less, so
            // Pods are still admitted.
            cluster.create_namespace("solo").await.expect("create namespace");
            let pod: Pod = serde_json::from_value(json!({
                "metadata": { "name": "p" },
                "spec": { "containers": [{ "name": "main", "image": "busybox" }] },
            }))
            .expect("pod JSON");
            Api::<Pod>::namespaced(cluster.admin_client(), "solo")
                .create(&PostParams::default(), &pod)
                .await
                .expect("pod admitted");
            let pids = [Component::Etcd, Component::ApiServer].map(|c| cluster.pid(c).expect("pid"));
            tx.send((pids, cluster.dir().to_owned())).expect("send pids");
            panic!("deliberate panic with the cluster alive");
        });
    });
    assert!(test.join().is_err(), "the thread panicked");
    let (pids, dir) = rx.recv().expect("the thread reported its cluster");
    for pid in pids {
        assert!(!is_alive(pid), "pid {pid} survived the panic");
    }
    assert!(!dir.exists(), "{} survived the panic", dir.display());
}

#[tokio::test]
async fn a_failed_start_reports_the_component_log() -> anyhow::Result<()> {
    let err = TestCluster::builder()
        .arg(Component::ApiServer, "--no-such-flag=1")
        .start()
        .await
        .expect_err("kube-apiserver rejects an unknown flag");
    let message = format!("{err:#}");
    assert!(message.contains("kube-apiserver exited"), "{message}");
    assert!(message.contains("unknown flag: --no-such-flag"), "{message}");
    Ok(())
}

#[tokio::test]
async fn missing_binaries_point_to_the_build_script() {
    let err = TestCluster::builder()
        .bin_dir("/nonexistent/k8s/bin")
        .start()
        .await
        .expect_err("no binaries there");
    let message = format!("{err:#}");
    assert!(message.contains("scripts/build-k8s.sh"), "{message}");
    assert!(
        message.contains("/nonexistent/k8s/bin/kube-apiserver"),
        "{message}"
    );
}

/// Set for [`helper_start_a_cluster_and_wait_to_be_killed`]: where it reports its cluster.
const REPORT_ENV: &str = "KB_CLUSTER_TEST_REPORT";

/// Run in a child process by [`a_killed_test_process_leaves_nothing_running_after_the_next_start`];
/// does nothing when run directly.
#[tokio::test]
#[ignore = "helper, run in a child process by another test"]
async fn helper_start_a_cluster_and_wait_to_be_killed() -> anyhow::Result<()> {
    let Some(report) = std::env::var_os(REPORT_ENV).map(PathBuf::from) else {
        return Ok(());
    };
    let cluster = start().await?;
    let pids: Vec<String> = [
        Component::Etcd,
        Component::ApiServer,
        Component::ControllerManager,
        Component::Scheduler,
    ]
    .iter()
    .filter_map(|c| cluster.pid(*c).map(|p| p.to_string()))
    .collect();
    let text = format!("{}\n{}\n", cluster.dir().display(), pids.join(" "));
    // Written whole, then renamed: the parent never reads half a report.
    std::fs::write(report.with_extension("tmp"), text)?;
    std::fs::rename(report.with_extension("tmp"), &report)?;
    std::future::pending::<()>().await;
    Ok(())
}

/// Whether `pid` has exited: gone, or a zombie its new parent has not reaped yet (a killed
/// test's processes are reparented to init).
fn has_exited(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "pid (comm) STATE ..."; comm may contain spaces, so read after the last ')'.
    stat.rsplit_once(')')
        .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'))
}

#[tokio::test]
async fn a_killed_test_process_leaves_nothing_running_after_the_next_start() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let report = scratch.path().join("report");
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "--ignored",
            "--exact",
            "helper_start_a_cluster_and_wait_to_be_killed",
        ])
        .env(REPORT_ENV, &report)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    // The child is another process: its report file is the only signal there is.
    let deadline = Instant::now() + WAIT;
    while !report.exists() {
        anyhow::ensure!(
            child.try_wait()?.is_none(),
            "the helper test exited before reporting"
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "the helper test did not report its cluster"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&report)?;
    let (dir, pids) = text.split_once('\n').context("report has two lines")?;
    let dir = PathBuf::from(dir);
    let pids: Vec<u32> = pids
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    assert_eq!(pids.len(), 4, "{text}");

    // SIGKILL: no Drop runs in the child, its control plane is orphaned.
    child.kill().await?;
    assert!(pids.iter().all(|pid| !has_exited(*pid)), "the orphans still run");
    assert!(dir.exists());

    // The next start cleans up after it.
    let _cluster = start().await?;
    for pid in &pids {
        assert!(has_exited(*pid), "orphan {pid} survived the next start");
    }
    assert!(!dir.exists(), "{} survived the next start", dir.display());
    Ok(())
}

/// Start-up time of a full cluster, binaries cached. Run with
/// `cargo test -p kaniko-builder-testkit --test cluster -- --ignored --nocapture startup_time`
/// (`KB_CLUSTER_STARTS` sets the number of starts, default 5).
#[tokio::test]
#[ignore = "measurement, not a test"]
async fn startup_time() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
    let starts: usize = std::env::var("KB_CLUSTER_STARTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let mut all = Vec::new();
    for _ in 0..starts {
        let cluster = start().await?;
        all.push(cluster.start_timings());
    }
    let median = |f: fn(&kaniko_builder_testkit::cluster::StartTimings) -> Duration| {
        let mut v: Vec<Duration> = all.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    let totals: Vec<String> = all
        .iter()
        .map(|t| format!("{:.2}", t.total.as_secs_f64()))
        .collect();
    tracing::info!(
        starts,
        totals_s = %totals.join(" "),
        median_total = ?median(|t| t.total),
        median_etcd = ?median(|t| t.etcd),
        median_pki = ?median(|t| t.pki),
        median_apiserver = ?median(|t| t.apiserver),
        median_controllers = ?median(|t| t.controllers),
        median_accounts = ?median(|t| t.accounts),
        "cluster start-up"
    );
    Ok(())
}
