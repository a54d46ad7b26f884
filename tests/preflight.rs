//! `Build::preflight` with the build's own credentials against a real registry requiring them
//! (Basic auth over TLS): both pinned images resolve; a missing one is named by its option.

use kaniko_builder::k8s::preflight::ImageField;
use kaniko_builder::registry::RegistrySettings;
use kaniko_builder::{Build, BuildConfig, JobOptions, RegistryClient};
use kaniko_builder_testkit::{RegistryAuth, TestRegistry};

fn client(reg: &TestRegistry) -> anyhow::Result<RegistryClient> {
    let docker = kaniko_builder::DockerConfig::from_json(&reg.docker_config_json())?;
    let settings = RegistrySettings::default().ca_pem(reg.ca_pem().unwrap_or_default());
    Ok(RegistryClient::builder()
        .docker_config(docker)
        .registry(reg.host(), settings)
        .build()?)
}

#[tokio::test]
async fn preflight_resolves_the_pins_with_the_builds_credentials_and_names_a_missing_one()
-> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Basic).await?;
    let executor = reg.push_image("mirror/kaniko", "v1-debug", b"executor").await?;
    let init = reg.push_image("mirror/crane/debug", "v1", b"crane").await?;
    let host = reg.host();
    let config = BuildConfig::builder(format!("{host}/team/app:v1").parse()?).build()?;
    let options = JobOptions::default()
        .executor_image(format!("{host}/mirror/kaniko:v1-debug"))
        .init_image(format!("{host}/mirror/crane/debug:v1"));

    let report = Build::new(config.clone())
        .registry_client(client(&reg)?)
        .job_options(options.clone())
        .preflight()
        .await?;
    let resolved = report.into_result()?;
    assert_eq!(resolved.executor.digest.to_string(), executor);
    assert_eq!(resolved.init.digest.to_string(), init);

    let report = Build::new(config)
        .registry_client(client(&reg)?)
        .job_options(options.init_image(format!("{host}/mirror/crane/debug:v404")))
        .preflight()
        .await?;
    assert!(!report.is_ok());
    let err = report.into_result().expect_err("the init image is missing");
    assert!(
        matches!(err.image_field(), Some(ImageField::InitImage)),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("init_image") && text.contains("mirror/crane/debug:v404"),
        "{text}"
    );
    Ok(())
}
