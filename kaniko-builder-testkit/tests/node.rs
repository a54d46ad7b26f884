//! Proves the stand-in node: rendered kaniko Jobs run on it through the real API server,
//! scheduler and Job controller; `kaniko-init` checks the real registry, `image-builder` really
//! builds and pushes with buildah; failures and injected faults show up in the Pod and Job
//! status as a kubelet would report them.
//!
//! Timeouts are safety nets so a broken setup fails instead of hanging; nothing asserts that
//! something was fast.

use std::path::Path;
use std::pin::pin;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::TryStreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerState, ContainerStateTerminated, ContainerStatus, Node, Pod, PodCondition, Secret,
    ServiceAccount,
};
use kaniko_builder_core::{BuildConfig, ContextSource, ImageRef};
use kaniko_builder_k8s::manifest::{
    BUILDER_CONTAINER, BuildManifests, INIT_CONTAINER, JobOptions, parse_init_message, render,
};
use kaniko_builder_registry::{DockerConfig, Probe, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::cluster::{Component, DEFAULT_CONTROLLERS};
use kaniko_builder_testkit::node::{Fault, NodeOptions, StandInNode, Target, push_busybox_base};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use kube::Api;
use kube::api::{DeleteParams, LogParams, PostParams, PropagationPolicy};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{WatchStreamExt as _, watcher};

/// Safety net for every wait.
const WAIT: Duration = Duration::from_secs(180);
/// Where the rendered Jobs' `hostPath` contexts live, as the Pod spec names them.
const HOST_CONTEXT: &str = "/srv/kb-context";

/// A cluster, a registry and a build context dir, started together.
async fn start(auth: RegistryAuth) -> anyhow::Result<(TestCluster, TestRegistry)> {
    kaniko_builder_testkit::init_tracing();
    let (cluster, registry) = tokio::try_join!(
        async { TestCluster::start().await.context("start the test cluster") },
        async { TestRegistry::start(auth).await.context("start the test registry") },
    )?;
    Ok((cluster, registry))
}

/// A temp dir holding `Dockerfile` (= `dockerfile`) and `hello.txt`.
fn context_dir(dockerfile: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("Dockerfile"), dockerfile)?;
    std::fs::write(dir.path().join("hello.txt"), "hello from the stand-in node\n")?;
    Ok(dir)
}

fn image(registry: &TestRegistry, repo_tag: &str) -> anyhow::Result<ImageRef> {
    Ok(format!("{}/{repo_tag}", registry.host()).parse()?)
}

/// A build of `image` from the `hostPath` context, plain HTTP allowed when the registry is.
fn config(registry: &TestRegistry, image: ImageRef) -> anyhow::Result<BuildConfig> {
    let mut builder = BuildConfig::builder(image).context(ContextSource::HostPath(HOST_CONTEXT.into()));
    if !registry.is_tls() {
        builder = builder.insecure_registry(registry.host());
    }
    Ok(builder.build()?)
}

/// Renders `config` with `docker_config` as the Secret (none: no Secret).
fn manifests(config: &BuildConfig, docker_config: Option<&str>) -> anyhow::Result<BuildManifests> {
    Ok(render(
        config,
        &JobOptions::default().orchestrator(None),
        docker_config.map(str::as_bytes),
    )?)
}

/// Creates what the build needs through the API, as an orchestrator would; returns the Job.
async fn apply(cluster: &TestCluster, m: &BuildManifests) -> anyhow::Result<Job> {
    let ns = m.namespace_name();
    cluster.create_namespace(ns).await?;
    let client = cluster.admin_client();
    let post = PostParams::default();
    let ignore_conflict = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        other => other,
    };
    if let Some(sa) = &m.service_account {
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        ignore_conflict(api.create(&post, sa).await.map(drop)).context("create service account")?;
    }
    if let Some(secret) = &m.secret {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        ignore_conflict(api.create(&post, secret).await.map(drop)).context("create secret")?;
    }
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    ignore_conflict(api.create(&post, &m.config_map).await.map(drop)).context("create config map")?;
    let api: Api<Job> = Api::namespaced(client, ns);
    api.create(&post, &m.job).await.context("create job")
}

fn jobs(cluster: &TestCluster, m: &BuildManifests) -> Api<Job> {
    Api::namespaced(cluster.admin_client(), m.namespace_name())
}

fn pods(cluster: &TestCluster, m: &BuildManifests) -> Api<Pod> {
    Api::namespaced(cluster.admin_client(), m.namespace_name())
}

/// `future` with the [`WAIT`] safety net; boxed, since watch futures are large.
fn within<F: std::future::Future>(
    what: &str,
    future: F,
) -> impl std::future::Future<Output = anyhow::Result<F::Output>> {
    let what = what.to_owned();
    let future = Box::pin(future);
    async move {
        tokio::time::timeout(WAIT, future)
            .await
            .with_context(|| format!("timed out waiting for {what}"))
    }
}

/// Waits until the Job has condition `type_` = True; returns the Job.
async fn job_condition(cluster: &TestCluster, m: &BuildManifests, type_: &str) -> anyhow::Result<Job> {
    let has = |job: Option<&Job>| {
        job.and_then(|j| j.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
    };
    within(
        &format!("job {} {type_}", m.job_name()),
        await_condition(jobs(cluster, m), m.job_name(), has),
    )
    .await??
    .with_context(|| format!("job {} was deleted", m.job_name()))
}

/// Watches the Job's Pods until one satisfies `ok`; returns it.
async fn job_pod(
    cluster: &TestCluster,
    m: &BuildManifests,
    what: &str,
    ok: impl Fn(&Pod) -> bool,
) -> anyhow::Result<Pod> {
    let config = watcher::Config::default().labels(&format!("job-name={}", m.job_name()));
    let stream = watcher(pods(cluster, m), config).applied_objects();
    let mut stream = pin!(stream);
    let found = within(&format!("a pod of {} {what}", m.job_name()), async {
        while let Some(pod) = stream.try_next().await? {
            if ok(&pod) {
                return anyhow::Ok(pod);
            }
        }
        anyhow::bail!("pod watch ended")
    })
    .await??;
    Ok(found)
}

fn statuses<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find(|s| s.name == container)
}

fn state<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerState> {
    statuses(pod, container)?.state.as_ref()
}

fn terminated<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStateTerminated> {
    state(pod, container)?.terminated.as_ref()
}

fn waiting_reason<'a>(pod: &'a Pod, container: &str) -> Option<&'a str> {
    state(pod, container)?.waiting.as_ref()?.reason.as_deref()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn job_condition_reason<'a>(job: &'a Job, type_: &str) -> Option<&'a str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?
        .reason
        .as_deref()
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Deletes the Job as an orchestrator would (background propagation).
async fn delete_job(cluster: &TestCluster, m: &BuildManifests) -> anyhow::Result<()> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    jobs(cluster, m)
        .delete(m.job_name(), &params)
        .await
        .context("delete job")?;
    Ok(())
}

/// Waits until `pod` is gone from the API (the node confirmed its deletion).
async fn pod_deleted(cluster: &TestCluster, m: &BuildManifests, pod: &Pod) -> anyhow::Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    within(
        &format!("pod {name} deleted"),
        await_condition(pods(cluster, m), &name, conditions::is_deleted(&uid)),
    )
    .await??;
    Ok(())
}

/// Probes `image` in `registry` with its credentials and CA.
async fn probe(registry: &TestRegistry, image: &ImageRef) -> anyhow::Result<Probe> {
    let mut settings = RegistrySettings::default();
    match registry.ca_pem() {
        Some(pem) => settings = settings.ca_pem(pem),
        None => settings = settings.plain_http(true),
    }
    let client = RegistryClient::builder()
        .docker_config(DockerConfig::from_json(&registry.docker_config_json())?)
        .registry(registry.host(), settings)
        .build()?;
    Ok(client.probe(image).await?)
}

#[tokio::test]
async fn a_rendered_job_builds_for_real_and_completes_with_the_pushed_digest() -> anyhow::Result<()> {
    let (cluster, registry) = start(RegistryAuth::Basic).await?;
    let context = context_dir("FROM scratch\nCOPY hello.txt /\n")?;
    let node = StandInNode::start(
        &cluster,
        NodeOptions::default()
            .registry(&registry)
            .host_path(HOST_CONTEXT, context.path()),
    )
    .await?;
    let image = image(&registry, "team/hello:v1")?;
    assert!(matches!(probe(&registry, &image).await?, Probe::Absent));
    let m = manifests(
        &config(&registry, image.clone())?,
        Some(&registry.docker_config_json()),
    )?;

    let started = Instant::now();
    apply(&cluster, &m).await?;
    let job = job_condition(&cluster, &m, "Complete").await?;
    tracing::info!(elapsed = ?started.elapsed(), "job created → complete, one real build");
    assert_eq!(job.status.as_ref().and_then(|s| s.succeeded), Some(1));

    let pod = job_pod(&cluster, &m, "finished", is_terminal).await?;
    assert_eq!(phase(&pod), "Succeeded");
    let status = pod.status.as_ref().context("pod status")?;
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(status.pod_ip.as_deref(), Some("127.0.0.1"));
    assert!(status.start_time.is_some());
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(node.name())
    );
    for (type_, want) in [
        ("PodScheduled", "True"),
        ("Initialized", "True"),
        ("ContainersReady", "False"),
        ("Ready", "False"),
    ] {
        let condition = pod_condition(&pod, type_).with_context(|| format!("condition {type_}"))?;
        assert_eq!(condition.status, want, "{type_}: {condition:?}");
    }
    assert_eq!(
        pod_condition(&pod, "Ready").and_then(|c| c.reason.as_deref()),
        Some("PodCompleted")
    );

    let init = terminated(&pod, INIT_CONTAINER).context("init terminated")?;
    assert_eq!((init.exit_code, init.reason.as_deref()), (0, Some("Completed")));
    assert_eq!(
        init.message.as_deref().and_then(parse_init_message),
        parse_init_message(r#"{"decision":"build","reason":"absent"}"#)
    );
    let built = terminated(&pod, BUILDER_CONTAINER).context("builder terminated")?;
    assert_eq!((built.exit_code, built.reason.as_deref()), (0, Some("Completed")));
    assert!(built.started_at.is_some() && built.finished_at.is_some());
    assert!(
        built
            .container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("standin://"))
    );
    for name in [INIT_CONTAINER, BUILDER_CONTAINER] {
        assert_eq!(statuses(&pod, name).map(|s| s.restart_count), Some(0));
    }
    let digest = built.message.clone().context("builder message")?;
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest:?}");

    // The registry now has exactly that digest under the tag.
    match probe(&registry, &image).await? {
        Probe::Exists(manifest) => assert_eq!(manifest.digest.to_string(), digest),
        other => panic!("expected the pushed image, got {other:?}"),
    }
    let log = node.container_log(&pod, BUILDER_CONTAINER);
    assert!(log.contains("COPY hello.txt /"), "{log}");
    // The Node's address and kubelet port are right: the API server reaches its log endpoint.
    let params = LogParams {
        container: Some(BUILDER_CONTAINER.to_owned()),
        ..LogParams::default()
    };
    let through_api = pods(&cluster, &m)
        .logs(pod.metadata.name.as_deref().unwrap_or_default(), &params)
        .await
        .context("pods/log through the API server")?;
    assert_eq!(through_api, log);
    assert!(
        node.container_log(&pod, INIT_CONTAINER)
            .contains(r#"kaniko-init: {"decision":"build","reason":"absent"}"#)
    );
    node.shutdown().await?;
    let nodes: Api<Node> = Api::all(cluster.admin_client());
    assert!(
        nodes.get_opt("kb-node-1").await?.is_none(),
        "shutdown deletes the Node"
    );
    Ok(())
}

#[tokio::test]
async fn an_existing_image_is_skipped_and_the_job_completes() -> anyhow::Result<()> {
    let (cluster, registry) = start(RegistryAuth::Anonymous).await?;
    let context = context_dir("FROM scratch\nCOPY hello.txt /\n")?;
    // No node-level trust: the Job's own insecure-registry settings must carry the check.
    let _node = StandInNode::start(
        &cluster,
        NodeOptions::default().host_path(HOST_CONTEXT, context.path()),
    )
    .await?;
    let existing = registry.push_image("team/app", "v1", b"already there").await?;
    let m = manifests(&config(&registry, image(&registry, "team/app:v1")?)?, None)?;

    apply(&cluster, &m).await?;
    let job = job_condition(&cluster, &m, "Complete").await?;
    assert_eq!(job_condition_reason(&job, "Failed"), None);

    let pod = job_pod(&cluster, &m, "finished", is_terminal).await?;
    let skip = format!(r#"{{"decision":"skip","digest":"{existing}"}}"#);
    let init = terminated(&pod, INIT_CONTAINER).context("init terminated")?;
    assert_eq!(
        (init.exit_code, init.message.as_deref()),
        (0, Some(skip.as_str()))
    );
    let builder = terminated(&pod, BUILDER_CONTAINER).context("builder terminated")?;
    assert_eq!(
        (builder.exit_code, builder.message.as_deref()),
        (0, Some(skip.as_str()))
    );
    assert_eq!(phase(&pod), "Succeeded");
    Ok(())
}

#[tokio::test]
async fn a_registry_that_rejects_the_credentials_fails_the_init_container_and_the_job() -> anyhow::Result<()>
{
    let (cluster, registry) = start(RegistryAuth::Basic).await?;
    let context = context_dir("FROM scratch\nCOPY hello.txt /\n")?;
    let node = StandInNode::start(
        &cluster,
        NodeOptions::default()
            .registry(&registry)
            .host_path(HOST_CONTEXT, context.path()),
    )
    .await?;
    let wrong = registry.docker_config_json().replace(
        &base64_auth(TestRegistry::PASSWORD),
        &base64_auth("not-the-password"),
    );
    assert!(!wrong.contains(&base64_auth(TestRegistry::PASSWORD)));
    let m = manifests(
        &config(&registry, image(&registry, "team/app:v1")?)?,
        Some(&wrong),
    )?;

    apply(&cluster, &m).await?;
    let job = job_condition(&cluster, &m, "Failed").await?;
    assert_eq!(job_condition_reason(&job, "Failed"), Some("BackoffLimitExceeded"));

    let pod = job_pod(&cluster, &m, "failed", is_terminal).await?;
    assert_eq!(phase(&pod), "Failed");
    let init = terminated(&pod, INIT_CONTAINER).context("init terminated")?;
    assert_eq!((init.exit_code, init.reason.as_deref()), (1, Some("Error")));
    let message = init.message.clone().unwrap_or_default();
    match parse_init_message(&message) {
        Some(Err(message)) => {
            assert!(message.contains("cannot tell whether"), "{message}");
            assert!(message.contains("401"), "{message}");
        }
        other => panic!("expected an error decision, got {other:?} from {message:?}"),
    }
    // The main container never started.
    assert_eq!(waiting_reason(&pod, BUILDER_CONTAINER), Some("PodInitializing"));
    assert!(node.container_log(&pod, BUILDER_CONTAINER).is_empty());
    Ok(())
}

fn base64_auth(password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", TestRegistry::USERNAME))
}

#[tokio::test]
async fn a_failing_dockerfile_fails_the_job_with_buildahs_exit_code_and_log() -> anyhow::Result<()> {
    let (cluster, registry) = start(RegistryAuth::Anonymous).await?;
    let base = push_busybox_base(&registry, "base/busybox", "1").await?;
    assert!(base.starts_with("sha256:"), "{base}");
    let context = context_dir(&format!(
        "FROM {}/base/busybox:1\nRUN echo about to fail && exit 3\n",
        registry.host()
    ))?;
    let node = StandInNode::start(
        &cluster,
        NodeOptions::default()
            .registry(&registry)
            .host_path(HOST_CONTEXT, context.path()),
    )
    .await?;
    let m = manifests(&config(&registry, image(&registry, "team/broken:v1")?)?, None)?;

    apply(&cluster, &m).await?;
    let job = job_condition(&cluster, &m, "Failed").await?;
    assert_eq!(job_condition_reason(&job, "Failed"), Some("BackoffLimitExceeded"));
    let pod = job_pod(&cluster, &m, "failed", is_terminal).await?;
    assert_eq!(phase(&pod), "Failed");
    let init = terminated(&pod, INIT_CONTAINER).context("init terminated")?;
    assert_eq!(init.exit_code, 0);
    let builder = terminated(&pod, BUILDER_CONTAINER).context("builder terminated")?;
    assert_ne!(builder.exit_code, 0);
    assert_eq!(builder.reason.as_deref(), Some("Error"));
    let log = node.container_log(&pod, BUILDER_CONTAINER);
    // busybox's sh ran the step (the base image works), and buildah's error is in the log.
    assert!(log.contains("about to fail"), "{log}");
    assert!(log.contains("exit status 3"), "{log}");
    assert!(matches!(
        probe(&registry, &image(&registry, "team/broken:v1")?).await?,
        Probe::Absent
    ));
    Ok(())
}

#[tokio::test]
async fn oom_kill_and_eviction_fail_the_job_as_a_kubelet_reports_them() -> anyhow::Result<()> {
    let (cluster, registry) = start(RegistryAuth::Anonymous).await?;
    let context = context_dir("FROM scratch\nCOPY hello.txt /\n")?;
    let node = StandInNode::start(
        &cluster,
        NodeOptions::default()
            .registry(&registry)
            .host_path(HOST_CONTEXT, context.path()),
    )
    .await?;

    let oom = manifests(&config(&registry, image(&registry, "team/oom:v1")?)?, None)?;
    node.inject(
        Fault::OomKilled,
        Target::NamePrefix(format!("{}-", oom.job_name())),
    )
    .await?;
    apply(&cluster, &oom).await?;
    let job = job_condition(&cluster, &oom, "Failed").await?;
    assert_eq!(job_condition_reason(&job, "Failed"), Some("BackoffLimitExceeded"));
    let pod = job_pod(&cluster, &oom, "failed", is_terminal).await?;
    assert_eq!(phase(&pod), "Failed");
    let killed = terminated(&pod, BUILDER_CONTAINER).context("builder terminated")?;
    assert_eq!(
        (killed.exit_code, killed.reason.as_deref()),
        (137, Some("OOMKilled"))
    );
    assert_eq!(terminated(&pod, INIT_CONTAINER).map(|t| t.exit_code), Some(0));

    let evict = manifests(&config(&registry, image(&registry, "team/evict:v1")?)?, None)?;
    node.inject(Fault::Evict, Target::label("job-name", evict.job_name()))
        .await?;
    apply(&cluster, &evict).await?;
    let job = job_condition(&cluster, &evict, "Failed").await?;
    assert_eq!(job_condition_reason(&job, "Failed"), Some("BackoffLimitExceeded"));
    let pod = job_pod(&cluster, &evict, "failed", is_terminal).await?;
    let status = pod.status.as_ref().context("pod status")?;
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    let message = status.message.as_deref().unwrap_or_default();
    assert!(
        message.starts_with("The node was low on resource: memory. Container image-builder was using"),
        "{message}"
    );
    assert_eq!(
        terminated(&pod, BUILDER_CONTAINER).map(|t| t.exit_code),
        Some(137)
    );
    Ok(())
}

#[tokio::test]
async fn image_pull_back_off_stays_pending_and_deleted_jobs_take_their_running_pods_with_them()
-> anyhow::Result<()> {
    let (cluster, registry) = start(RegistryAuth::Anonymous).await?;
    push_busybox_base(&registry, "base/busybox", "1").await?;
    let context = context_dir(&format!(
        "FROM {}/base/busybox:1\nRUN echo pid=$$ && sleep 600\n",
        registry.host()
    ))?;
    let node = StandInNode::start(
        &cluster,
        NodeOptions::default()
            .registry(&registry)
            .host_path(HOST_CONTEXT, context.path()),
    )
    .await?;

    let backoff = manifests(&config(&registry, image(&registry, "team/pull:v1")?)?, None)?;
    node.inject(Fault::ImagePullBackOff, Target::NextPod).await?;
    apply(&cluster, &backoff).await?;
    let stuck = job_pod(&cluster, &backoff, "in ImagePullBackOff", |p| {
        waiting_reason(p, INIT_CONTAINER) == Some("ImagePullBackOff")
    })
    .await?;
    assert_eq!(phase(&stuck), "Pending");
    let waiting = state(&stuck, INIT_CONTAINER)
        .and_then(|s| s.waiting.as_ref())
        .context("waiting")?;
    assert!(
        waiting
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("Back-off pulling image")),
        "{waiting:?}"
    );
    assert_eq!(waiting_reason(&stuck, BUILDER_CONTAINER), Some("PodInitializing"));

    // A build that really runs: buildah's RUN step sleeps.
    let running = manifests(&config(&registry, image(&registry, "team/sleep:v1")?)?, None)?;
    apply(&cluster, &running).await?;
    let pod = job_pod(&cluster, &running, "running", |p| {
        phase(p) == "Running" && pod_condition(p, "Ready").is_some_and(|c| c.status == "True")
    })
    .await?;
    let pid = within("the RUN step to print its pid", async {
        loop {
            let log = node.container_log(&pod, BUILDER_CONTAINER);
            if let Some(pid) = log
                .lines()
                .find_map(|l| l.trim().strip_prefix("pid="))
                .and_then(|p| p.trim().parse::<u32>().ok())
            {
                break pid;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "the RUN step runs");

    delete_job(&cluster, &backoff).await?;
    delete_job(&cluster, &running).await?;
    pod_deleted(&cluster, &backoff, &stuck).await?;
    pod_deleted(&cluster, &running, &pod).await?;
    // The node killed the build's process group before confirming.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z"),
        "the RUN step survived its pod: {stat}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unschedulable_node_leaves_pods_pending_and_slow_start_delays_the_containers() -> anyhow::Result<()>
{
    let (cluster, registry) = start(RegistryAuth::Anonymous).await?;
    let context = context_dir("FROM scratch\nCOPY hello.txt /\n")?;
    let node = StandInNode::start(
        &cluster,
        NodeOptions::default()
            .registry(&registry)
            .host_path(HOST_CONTEXT, context.path()),
    )
    .await?;
    assert!(
        node.inject(Fault::Unschedulable, Target::NextPod).await.is_err(),
        "a node fault needs Target::Node"
    );
    node.inject(Fault::Unschedulable, Target::Node).await?;
    let m = manifests(&config(&registry, image(&registry, "team/later:v1")?)?, None)?;
    apply(&cluster, &m).await?;
    let pending = job_pod(&cluster, &m, "unschedulable", |p| {
        pod_condition(p, "PodScheduled")
            .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
    })
    .await?;
    let message = pod_condition(&pending, "PodScheduled")
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("unschedulable"), "{message}");
    assert_eq!(phase(&pending), "Pending");

    // Uncordoned, the same Pod is scheduled; it starts slowly but completes.
    node.clear_faults().await?;
    let delay = Duration::from_secs(2);
    node.inject(Fault::SlowStart(delay), Target::NextPod).await?;
    job_condition(&cluster, &m, "Complete").await?;
    let pod = job_pod(&cluster, &m, "finished", is_terminal).await?;
    assert_eq!(pod.metadata.uid, pending.metadata.uid);
    let start = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .context("start time")?;
    let init_started = terminated(&pod, INIT_CONTAINER)
        .and_then(|t| t.started_at.as_ref())
        .context("init started")?;
    // A lower bound on a deliberate delay (second resolution), not a speed check.
    let waited = init_started.0.as_second() - start.0.as_second();
    assert!(waited >= 2, "containers started {waited} s after the pod");
    Ok(())
}

#[tokio::test]
async fn a_node_that_stops_reporting_turns_unknown_and_its_pods_not_ready() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let mut controllers: Vec<&str> = DEFAULT_CONTROLLERS.to_vec();
    controllers.push("nodelifecycle");
    let (cluster, registry) = tokio::try_join!(
        async {
            TestCluster::builder()
                .controllers(controllers)
                .arg(Component::ControllerManager, "--node-monitor-period=1s")
                .arg(Component::ControllerManager, "--node-monitor-grace-period=5s")
                .start()
                .await
                .context("start the test cluster")
        },
        async {
            TestRegistry::start(RegistryAuth::Anonymous)
                .await
                .context("start the test registry")
        },
    )?;
    push_busybox_base(&registry, "base/busybox", "1").await?;
    let context = context_dir(&format!(
        "FROM {}/base/busybox:1\nRUN sleep 600\n",
        registry.host()
    ))?;
    let node = StandInNode::start(
        &cluster,
        NodeOptions::default()
            .registry(&registry)
            .host_path(HOST_CONTEXT, context.path())
            .heartbeat(Duration::from_secs(1)),
    )
    .await?;
    let m = manifests(&config(&registry, image(&registry, "team/lost:v1")?)?, None)?;
    apply(&cluster, &m).await?;
    let pod = job_pod(&cluster, &m, "ready", |p| {
        pod_condition(p, "Ready").is_some_and(|c| c.status == "True")
    })
    .await?;

    node.inject(Fault::StopReporting, Target::Node).await?;
    let nodes: Api<Node> = Api::all(cluster.admin_client());
    let ready = |status: &'static str| {
        move |n: Option<&Node>| {
            n.and_then(|n| n.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == status)
        }
    };
    let lost = within(
        "the node Ready=Unknown",
        await_condition(nodes.clone(), node.name(), ready("Unknown")),
    )
    .await??
    .context("node deleted")?;
    let condition = lost
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"))
        .context("Ready condition")?;
    assert_eq!(condition.reason.as_deref(), Some("NodeStatusUnknown"));
    let name = pod.metadata.name.clone().unwrap_or_default();
    let not_ready = within(
        "the pod Ready=False",
        await_condition(pods(&cluster, &m), &name, |p: Option<&Pod>| {
            p.and_then(|p| pod_condition(p, "Ready"))
                .is_some_and(|c| c.status == "False")
        }),
    )
    .await??
    .context("pod deleted")?;
    // Nobody reported the Pod as ended: it still runs on the lost node.
    assert_eq!(phase(&not_ready), "Running");

    node.clear_faults().await?;
    within(
        "the node Ready again",
        await_condition(nodes, node.name(), ready("True")),
    )
    .await??;
    delete_job(&cluster, &m).await?;
    pod_deleted(&cluster, &m, &pod).await?;
    Ok(())
}

/// A gzipped tar of `files` (name, content).
fn tar_gz(files: &[(&str, &str)]) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, content.as_bytes())?;
    }
    Ok(builder.into_inner()?.finish()?)
}

/// Pushes `blob` to `repo` of the token-auth `registry`, as an orchestrator uploads a context.
async fn push_context_blob(registry: &TestRegistry, repo: &str, blob: Vec<u8>) -> anyhow::Result<String> {
    use oci_client::client::{Certificate, CertificateEncoding, ClientConfig};
    let digest = kaniko_builder_testkit::sha256_digest(&blob);
    let config = ClientConfig {
        extra_root_certificates: registry
            .ca_pem()
            .map(|pem| Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.into_bytes(),
            })
            .into_iter()
            .collect(),
        ..ClientConfig::default()
    };
    kaniko_builder_testkit::install_crypto_provider();
    let client = oci_client::Client::try_from(config)?;
    let reference = oci_client::Reference::with_digest(registry.host(), repo.to_owned(), digest.clone());
    let auth = oci_client::secrets::RegistryAuth::Basic(
        TestRegistry::USERNAME.to_owned(),
        TestRegistry::PASSWORD.to_owned(),
    );
    client
        .auth(&reference, &auth, oci_client::RegistryOperation::Push)
        .await?;
    client.push_blob(&reference, blob, &digest).await?;
    Ok(digest)
}

#[tokio::test]
async fn an_upload_context_is_fetched_from_its_blob_and_built() -> anyhow::Result<()> {
    let (cluster, registry) = start(RegistryAuth::Token).await?;
    let _node = StandInNode::start(&cluster, NodeOptions::default().registry(&registry)).await?;
    let image = image(&registry, "team/uploaded:v1")?;
    let blob = tar_gz(&[
        ("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
        ("hello.txt", "uploaded\n"),
    ])?;
    let digest = push_context_blob(&registry, image.repository(), blob).await?;
    let config = BuildConfig::builder(image.clone())
        .context(ContextSource::LocalDir("/unused/local/dir".into()))
        .build()?;
    let m = manifests(&config, Some(&registry.docker_config_json()))?.with_context_blob(&digest.parse()?)?;

    apply(&cluster, &m).await?;
    job_condition(&cluster, &m, "Complete").await?;
    let pod = job_pod(&cluster, &m, "finished", is_terminal).await?;
    let pushed = terminated(&pod, BUILDER_CONTAINER)
        .and_then(|t| t.message.clone())
        .context("builder message")?;
    match probe(&registry, &image).await? {
        Probe::Exists(manifest) => assert_eq!(manifest.digest.to_string(), pushed),
        other => panic!("expected the pushed image, got {other:?}"),
    }
    Ok(())
}
