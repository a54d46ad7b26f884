//! The preflight check against a real CNCF distribution registry (Debian's `docker-registry`):
//! the executor and init images pushed under mirror names, then resolved, missed, or refused.

use kaniko_builder_k8s::Error;
use kaniko_builder_k8s::manifest::JobOptions;
use kaniko_builder_k8s::preflight::{self, ImageField, ImageStatus};
use kaniko_builder_registry::{DockerConfig, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::{RegistryAuth, TestRegistry};

const EXECUTOR_REPO: &str = "mirror/kaniko";
const EXECUTOR_TAG: &str = "v1.28.5-debug";
const INIT_REPO: &str = "mirror/crane/debug";
const INIT_TAG: &str = "v0.22.1";

/// A client that trusts the registry's CA (when it has one) and uses `config`.
fn client(reg: &TestRegistry, config: DockerConfig) -> RegistryClient {
    let settings = match reg.ca_pem() {
        Some(ca) => RegistrySettings::default().ca_pem(ca),
        None => RegistrySettings::default().plain_http(true),
    };
    RegistryClient::builder()
        .docker_config(config)
        .registry(reg.host(), settings)
        .build()
        .expect("client")
}

/// Options whose executor and init images live in `reg` under the mirror names.
fn mirrored(reg: &TestRegistry) -> JobOptions {
    JobOptions::default()
        .executor_image(format!("{}/{EXECUTOR_REPO}:{EXECUTOR_TAG}", reg.host()))
        .init_image(format!("{}/{INIT_REPO}:{INIT_TAG}", reg.host()))
}

/// Pushes both images, the executor as a multi-platform index (as the fork publishes it); returns
/// their digests.
async fn push_both(reg: &TestRegistry) -> (String, String) {
    let executor = reg
        .push_index(EXECUTOR_REPO, EXECUTOR_TAG)
        .await
        .expect("push executor");
    let init = reg
        .push_image(INIT_REPO, INIT_TAG, b"crane")
        .await
        .expect("push init");
    (executor, init)
}

#[tokio::test]
async fn both_images_resolve_with_the_pushed_digests() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    let (executor_digest, init_digest) = push_both(&reg).await;
    let options = mirrored(&reg);
    let c = client(&reg, DockerConfig::anonymous());

    let report = preflight::check_images(&options, &c).await.expect("report");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.executor.field, ImageField::ExecutorImage);
    assert_eq!(report.init.field, ImageField::InitImage);
    assert_eq!(
        report.executor.status.digest().map(ToString::to_string),
        Some(executor_digest.clone())
    );
    assert_eq!(
        report.init.status.digest().map(ToString::to_string),
        Some(init_digest.clone())
    );

    let images = preflight::require_images(&options, &c).await.expect("resolved");
    assert_eq!(images.executor.digest.to_string(), executor_digest);
    assert_eq!(images.init.digest.to_string(), init_digest);
    assert_eq!(
        images.executor.pinned().to_string(),
        format!("{}/{EXECUTOR_REPO}:{EXECUTOR_TAG}@{executor_digest}", reg.host())
    );

    // Pinned by digest, the options resolve to the same digests.
    let pinned = options
        .executor_image(images.executor.pinned().to_string())
        .init_image(images.init.pinned().to_string());
    let again = preflight::require_images(&pinned, &c).await.expect("pinned");
    assert_eq!(again.executor.digest, images.executor.digest);
    assert_eq!(again.init.digest, images.init.digest);
    assert_eq!(again.executor.reference, images.executor.pinned());
}

#[tokio::test]
async fn a_missing_image_names_its_field_and_reference() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    let executor_digest = reg
        .push_index(EXECUTOR_REPO, EXECUTOR_TAG)
        .await
        .expect("push executor");
    let c = client(&reg, DockerConfig::anonymous());

    // The init image was never mirrored.
    let options = mirrored(&reg);
    let report = preflight::check_images(&options, &c).await.expect("report");
    assert!(!report.is_ok());
    assert_eq!(
        report.executor.status.digest().map(ToString::to_string),
        Some(executor_digest)
    );
    assert!(matches!(report.init.status, ImageStatus::Missing), "{report:?}");
    let missing = format!("{}/{INIT_REPO}:{INIT_TAG}", reg.host());
    match preflight::require_images(&options, &c).await {
        Err(
            ref e @ Error::ImageMissing {
                field: ImageField::InitImage,
                ref reference,
            },
        ) => {
            assert_eq!(reference, &missing);
            assert_eq!(e.image_field(), Some(ImageField::InitImage));
            assert!(e.is_invalid_input());
            let message = e.to_string();
            assert!(
                message.contains("init_image") && message.contains(&missing),
                "{message}"
            );
        }
        other => panic!("expected the init image missing, got {other:?}"),
    }

    // A tag the executor's repository does not have.
    let options = mirrored(&reg).executor_image(format!("{}/{EXECUTOR_REPO}:v9.9.9-debug", reg.host()));
    match preflight::require_images(&options, &c).await {
        Err(Error::ImageMissing {
            field: ImageField::ExecutorImage,
            reference,
        }) => assert_eq!(reference, format!("{}/{EXECUTOR_REPO}:v9.9.9-debug", reg.host())),
        other => panic!("expected the executor image missing, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_credentials_are_an_error_not_missing() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Basic).await.expect("registry");
    let (executor_digest, _) = push_both(&reg).await;
    let options = mirrored(&reg);

    let wrong_password = "wr0ng-Preflight-7c3e";
    kaniko_builder_testkit::ledger::register("tests/preflight.rs wrong password", wrong_password);
    let wrong = DockerConfig::from_json(&format!(
        r#"{{"auths":{{"{}":{{"username":"{}","password":"{wrong_password}"}}}}}}"#,
        reg.host(),
        TestRegistry::USERNAME
    ))
    .expect("config");
    let c = client(&reg, wrong);

    let report = preflight::check_images(&options, &c).await.expect("report");
    for check in report.checks() {
        match &check.status {
            ImageStatus::Failed(e) => assert!(e.is_unauthorized(), "{}: {e}", check.field),
            other => panic!("{}: expected a registry error, got {other:?}", check.field),
        }
    }
    match preflight::require_images(&options, &c).await {
        Err(
            ref e @ Error::ImageCheckFailed {
                field: ImageField::ExecutorImage,
                ref reference,
                ..
            },
        ) => {
            assert_eq!(
                reference,
                &format!("{}/{EXECUTOR_REPO}:{EXECUTOR_TAG}", reg.host())
            );
            assert!(e.registry_error().is_some_and(|r| r.is_unauthorized()), "{e:?}");
            assert!(!e.is_invalid_input());
            assert!(!e.to_string().contains(wrong_password));
        }
        other => panic!("expected an unauthorized check, got {other:?}"),
    }

    // The same registry with the right credentials resolves: it was the credentials.
    let right = DockerConfig::from_json(&reg.docker_config_json()).expect("config");
    let images = preflight::require_images(&options, &client(&reg, right))
        .await
        .expect("resolved");
    assert_eq!(images.executor.digest.to_string(), executor_digest);
}

#[tokio::test]
async fn an_unparsable_image_names_its_field_and_asks_nothing() {
    kaniko_builder_testkit::init_tracing();
    let reg = TestRegistry::start(RegistryAuth::Anonymous)
        .await
        .expect("registry");
    let c = client(&reg, DockerConfig::anonymous());

    let options = mirrored(&reg).init_image("Not A Reference!");
    match preflight::check_images(&options, &c).await {
        Err(
            ref e @ Error::InvalidImageReference {
                field: ImageField::InitImage,
                ref reference,
                ..
            },
        ) => {
            assert_eq!(reference, "Not A Reference!");
            assert!(e.is_invalid_input());
            assert!(e.to_string().contains("init_image"), "{e}");
        }
        other => panic!("expected an invalid init image, got {other:?}"),
    }
    let options = JobOptions::default().executor_image("");
    match preflight::require_images(&options, &c).await {
        Err(Error::InvalidImageReference {
            field: ImageField::ExecutorImage,
            ..
        }) => {}
        other => panic!("expected an invalid executor image, got {other:?}"),
    }
    assert!(
        !reg.logs().contains("/manifests/"),
        "nothing is asked for unparsable options"
    );
}
