//! A local directory's files are part of the build's identity: the same path with changed files
//! is another build, with another Job, and never attaches to a Job building the old files. Real
//! API server, stand-in node running the Pod's scripts, real registry, buildah as the executor.

mod runner_support;

use std::sync::Arc;
use std::time::Duration;

use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::flow::{
    BuildEvent, BuildExecutor as _, BuildPlan, BuildReason, CancellationToken, Executed,
};
use kaniko_builder_core::{BuildConfig, Digest};
use kaniko_builder_k8s::KubeRunner;
use kaniko_builder_k8s::runner::{CleanupPolicy, UploadMethod};
use kaniko_builder_registry::{DockerConfig, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::node::{Fault, NodeOptions, StandInNode, Target};
use kaniko_builder_testkit::{RegistryAuth, TestCluster, TestRegistry};
use runner_support::Recorder;

fn job_of(rec: &Recorder) -> Option<(String, bool)> {
    rec.events().into_iter().find_map(|e| match e {
        BuildEvent::Queued { job, .. } => Some((job, false)),
        BuildEvent::Attached { job, .. } => Some((job, true)),
        _ => None,
    })
}

/// Runs the build forced, as the flow would (each run builds, whatever the tag holds meanwhile);
/// returns the pushed digest, the Job's name and whether it attached.
async fn build(
    runner: &KubeRunner,
    config: &BuildConfig,
    rec: &Recorder,
) -> anyhow::Result<(Digest, String, bool)> {
    let plan = BuildPlan::new(config.clone(), BuildReason::Forced, None);
    let executed = runner
        .execute(&plan, &rec.sink(), CancellationToken::new())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let Executed::Built { digest, .. } = executed else {
        anyhow::bail!("expected a build, got {executed:?}")
    };
    let (job, attached) = job_of(rec).ok_or_else(|| anyhow::anyhow!("no Job event: {:?}", rec.steps()))?;
    Ok((digest, job, attached))
}

async fn changed_files_are_another_build(upload: UploadMethod) -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let (cluster, registry) =
        tokio::try_join!(TestCluster::start(), TestRegistry::start(RegistryAuth::Basic))?;
    let node = StandInNode::start(&cluster, NodeOptions::default().registry(&registry)).await?;
    let settings = match registry.ca_pem() {
        Some(ca) => RegistrySettings::default().ca_pem(ca),
        None => RegistrySettings::default().plain_http(true),
    };
    let client = RegistryClient::builder()
        .docker_config(DockerConfig::from_json(&registry.docker_config_json())?)
        .registry(registry.host(), settings)
        .build()?;
    // Two runners, as two processes would be: nothing is shared in memory, only the cluster.
    let runner = || {
        KubeRunner::builder(cluster.admin_client())
            .docker_config_json(registry.docker_config_json())
            .blob_store(Arc::new(client.clone()))
            .upload(upload)
            .cleanup(CleanupPolicy::default().delete_on_failure(true))
            .build()
    };
    let (first_runner, second_runner) = (runner(), runner());
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY app.txt /app.txt\n",
    )?;
    std::fs::write(dir.path().join("app.txt"), "version one\n")?;
    let config = BuildConfig::builder(format!("{}/team/app:v1", registry.host()).parse()?)
        .context(ContextSource::LocalDir(dir.path().to_owned()))
        .force(true)
        .build()?;

    // The first build's Pod is held, so its Job is still running when the files change.
    node.inject(Fault::SlowStart(Duration::from_secs(8)), Target::NextPod)
        .await?;
    let first_rec = Recorder::default();
    let first = {
        let (runner, config, rec) = (first_runner.clone(), config.clone(), first_rec.clone());
        tokio::spawn(async move { build(&runner, &config, &rec).await })
    };
    first_rec
        .wait_for("queued", |e| matches!(e, BuildEvent::Queued { .. }))
        .await;
    std::fs::write(dir.path().join("app.txt"), "version two\n")?;

    let second_rec = Recorder::default();
    let (second_digest, second_job, second_attached) = build(&second_runner, &config, &second_rec).await?;
    assert!(
        !second_attached,
        "the changed files attached to the Job building the old ones: {:?}",
        second_rec.steps()
    );
    assert!(
        second_job.len() <= 63 && second_job.starts_with("kb-team-app-v1-"),
        "{second_job}"
    );
    let first_job = job_of(&first_rec).map(|(job, _)| job);
    assert_ne!(
        first_job.as_deref(),
        Some(second_job.as_str()),
        "the Job name must follow the files"
    );
    match (upload, first.await?) {
        // Uploaded before its Job existed: the first build built the old files.
        (UploadMethod::Registry, Ok((first_digest, _, _))) => {
            assert_ne!(first_digest, second_digest, "the two builds built other files");
        }
        // Packed once its Pod ran, after the change: refused, never built under the old name.
        (UploadMethod::Exec, Err(e)) => {
            assert!(e.to_string().contains("changed while the build started"), "{e}");
        }
        (_, other) => anyhow::bail!("first build: {other:?}"),
    }

    // The same files again: the same name as the second build, deterministically.
    let third_rec = Recorder::default();
    let (_, third_job, _) = build(&first_runner, &config, &third_rec).await?;
    assert_eq!(third_job, second_job);
    Ok(())
}

#[tokio::test]
async fn changed_files_are_another_build_uploaded_to_the_registry() -> anyhow::Result<()> {
    Box::pin(changed_files_are_another_build(UploadMethod::Registry)).await
}

#[tokio::test]
async fn changed_files_are_another_build_uploaded_over_exec() -> anyhow::Result<()> {
    Box::pin(changed_files_are_another_build(UploadMethod::Exec)).await
}
