use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kaniko_builder_core::config::ContextSource;
use kaniko_builder_core::config::{CacheConfig, SnapshotMode, Verbosity};
use kaniko_builder_core::{BuildConfig, BuildConfigBuilder, ImageRef, Platform};
use rstest::rstest;

use super::*;

const PASSWORD: &str = "hunter2-unit-Zq9";

fn docker_config() -> Vec<u8> {
    format!(r#"{{"auths":{{"registry.local:5000":{{"username":"ci","password":"{PASSWORD}"}}}}}}"#)
        .into_bytes()
}

fn builder(image: &str) -> BuildConfigBuilder {
    BuildConfig::builder(ImageRef::parse(image).expect("test image"))
}

fn config() -> BuildConfig {
    builder("registry.local:5000/team/app:v1").build().expect("valid")
}

fn pod(m: &BuildManifests) -> &PodSpec {
    m.job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("job has a pod spec")
}

fn init(m: &BuildManifests) -> &Container {
    &pod(m).init_containers.as_ref().expect("init containers")[0]
}

fn env_value<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

#[rstest]
#[case::hostpath(ContextSource::HostPath("/srv/ctx".into()), &["--context=dir:///workspace"])]
#[case::upload(ContextSource::LocalDir("./ctx".into()), &["--context=dir:///workspace"])]
#[case::pvc(ContextSource::Pvc { claim: "c".into(), sub_path: Some("a".into()) }, &["--context=dir:///workspace"])]
#[case::git(
    ContextSource::Git { url: "https://git.example/org/r.git".into(), reference: Some("refs/heads/main".into()), sub_path: Some("app".into()) },
    &["--context=git://git.example/org/r.git#refs/heads/main", "--context-sub-path=app"],
)]
#[case::git_no_ref(ContextSource::Git { url: "http://git.local/r.git".into(), reference: None, sub_path: None }, &["--context=git://git.local/r.git"])]
#[case::url(ContextSource::Url("s3://bucket/ctx.tar.gz".into()), &["--context=s3://bucket/ctx.tar.gz"])]
#[case::blob(ContextSource::Blob(kaniko_builder_core::Digest::sha256(b"ctx")), &["--context=dir:///workspace"])]
fn context_args(#[case] context: ContextSource, #[case] expected: &[&str]) {
    let c = builder("registry.local:5000/team/app:v1")
        .context(context)
        .build()
        .expect("valid");
    let args = kaniko_args(&c);
    assert_eq!(&args[..expected.len()], expected);
    assert_eq!(args[expected.len()], "--dockerfile=Dockerfile");
}

/// A blob pushed by a client: the init container fetches it by the digest rendered into the Job,
/// into the same `emptyDir` an uploaded directory lands in.
#[test]
fn a_pushed_blob_is_fetched_by_digest() {
    let digest = kaniko_builder_core::Digest::sha256(b"ctx");
    let c = builder("registry.local:5000/team/app:v1")
        .context(ContextSource::Blob(digest.clone()))
        .build()
        .expect("valid");
    let m = render(&c, &JobOptions::default(), None).expect("render");
    let pod = m
        .job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod");
    let init = &pod.init_containers.as_ref().expect("init")[0];
    assert_eq!(env_value(init, "KB_CONTEXT_KIND"), Some("upload"));
    assert_eq!(
        env_value(init, "KB_CONTEXT_BLOB"),
        Some(digest.to_string().as_str())
    );
    let context = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "build-context")
        .expect("volume");
    assert!(context.empty_dir.is_some(), "{context:?}");
    let other = builder("registry.local:5000/team/app:v1")
        .context(ContextSource::Blob(kaniko_builder_core::Digest::sha256(b"other")))
        .build()
        .expect("valid");
    assert_ne!(
        c.build_hash(),
        other.build_hash(),
        "the blob is part of the build"
    );
}

#[test]
fn all_args_in_order() {
    let c = builder("registry.local:5000/team/app:v1")
        .destination(ImageRef::parse("registry.local:5000/team/app:latest").expect("ref"))
        .build_arg("B", "2")
        .build_arg("A", "1 2=3")
        .target("final")
        .label("org.example.k", "v")
        .cache(CacheConfig {
            repo: Some("registry.local:5000/cache".into()),
            ttl: Some(Duration::from_secs(90 * 60)),
        })
        .insecure_registry("registry.local:5000")
        .skip_tls_verify_registry("other.io")
        .registry_mirror("mirror.gcr.io")
        .snapshot_mode(SnapshotMode::Redo)
        .reproducible(true)
        .push_retry(2)
        .verbosity(Verbosity::Debug)
        .build()
        .expect("valid");
    assert_eq!(
        kaniko_args(&c),
        [
            "--context=dir:///workspace",
            "--dockerfile=Dockerfile",
            "--destination=registry.local:5000/team/app:v1",
            "--destination=registry.local:5000/team/app:latest",
            "--build-arg=A=1 2=3",
            "--build-arg=B=2",
            "--target=final",
            "--label=org.example.k=v",
            "--digest-file=/dev/termination-log",
            "--cache=true",
            "--cache-repo=registry.local:5000/cache",
            "--cache-ttl=90m",
            "--insecure-registry=registry.local:5000",
            "--skip-tls-verify-registry=other.io",
            "--registry-mirror=mirror.gcr.io",
            "--snapshot-mode=redo",
            "--reproducible",
            "--push-retry=2",
            "--verbosity=debug",
        ]
    );
}

#[test]
fn debug_never_prints_the_credentials() {
    let m = render(&config(), &JobOptions::default(), Some(&docker_config())).expect("render");
    let debug = format!("{m:?}");
    assert!(!debug.contains(PASSWORD), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
    // Not even as the bytes ByteString's own Debug would print.
    let bytes = format!("{:?}", PASSWORD.as_bytes());
    assert!(!debug.contains(&bytes[1..bytes.len() - 1]));
    for object in m.objects() {
        assert!(!format!("{object:?}").contains(PASSWORD));
    }
    let err = render(
        &config(),
        &JobOptions::default(),
        Some(b"{\"auths\": [\"hunter2\""),
    )
    .expect_err("bad");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[rstest]
#[case::not_json(b"not json".as_slice())]
#[case::array(b"[]".as_slice())]
#[case::no_auths(b"{}".as_slice())]
#[case::auths_not_object(br#"{"auths":[]}"#.as_slice())]
fn docker_config_must_have_auths(#[case] json: &[u8]) {
    let err = render(&config(), &JobOptions::default(), Some(json)).expect_err("invalid");
    assert!(matches!(err, Error::InvalidDockerConfig { .. }), "{err:?}");
}

#[test]
fn shapes_of_the_default_render() {
    let m = render(&config(), &JobOptions::default(), Some(&docker_config())).expect("render");
    let kinds: Vec<&str> = m.objects().iter().map(Object::kind).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Secret",
            "ConfigMap",
            "Job"
        ]
    );
    assert_eq!(m.namespace_name(), "kaniko");
    assert_eq!(m.job_name(), config().job_name());
    let spec = m.job.spec.as_ref().expect("spec");
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, Some(1800));
    assert_eq!(spec.ttl_seconds_after_finished, Some(3600));
    let p = pod(&m);
    assert_eq!(p.restart_policy.as_deref(), Some("Never"));
    assert_eq!(p.service_account_name.as_deref(), Some("kaniko-builder"));
    assert_eq!(p.automount_service_account_token, Some(false));
    assert_eq!(p.containers[0].name, "image-builder");
    assert_eq!(init(&m).name, "kaniko-init");
    assert_eq!(
        env_value(init(&m), "KB_DESTINATION"),
        Some("registry.local:5000/team/app:v1")
    );
    assert_eq!(env_value(init(&m), "KB_CONTEXT_KIND"), Some("hostpath"));
    assert_eq!(env_value(init(&m), "KB_INSECURE"), None);
    let secret = m.secret.as_ref().expect("secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    assert_eq!(
        secret.data.as_ref().expect("data")[".dockerconfigjson"].0,
        docker_config()
    );
    let labels = m.job.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels[LABEL_INSTANCE], m.job_name());
    assert_eq!(labels[LABEL_IMAGE_HASH].len(), 40);
    assert_eq!(labels[LABEL_NAME], "kaniko-builder");
    assert_eq!(labels[LABEL_MANAGED_BY], "kaniko-builder");
    // Shared objects do not carry one build's instance label.
    let ns_labels = m.namespace.metadata.labels.as_ref().expect("labels");
    assert!(!ns_labels.contains_key(LABEL_INSTANCE));
}

/// The Secret volume of the Pod and the containers mounting `docker-config`.
fn secret_volume(m: &BuildManifests) -> (Option<&k8s_openapi::api::core::v1::SecretVolumeSource>, usize) {
    let p = pod(m);
    let volume = p.volumes.iter().flatten().find_map(|v| v.secret.as_ref());
    let mounts = p
        .init_containers
        .iter()
        .flatten()
        .chain(&p.containers)
        .filter(|c| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == "docker-config")
        })
        .count();
    (volume, mounts)
}

#[test]
fn without_credentials_no_secret_and_no_mount_unless_one_is_named() {
    // Default: nothing to mount, so no other build's Secret is ever mounted.
    let m = render(&config(), &JobOptions::default(), None).expect("render");
    assert!(m.secret.is_none() && !m.secret_per_credentials());
    assert_eq!(secret_volume(&m), (None, 0));
    // A Secret made by hand, named: mounted if it exists.
    for options in [
        JobOptions::default().secret_name("docker-config-secret"),
        JobOptions::default().seed_compatible(true),
    ] {
        let m = render(&config(), &options, None).expect("render");
        assert!(m.secret.is_none());
        let (volume, mounts) = secret_volume(&m);
        let secret = volume.expect("secret volume");
        assert_eq!(secret.secret_name.as_deref(), Some("docker-config-secret"));
        assert_eq!((secret.optional, mounts), (Some(true), 2));
    }
}

#[test]
fn a_secret_per_set_of_credentials_unless_one_is_named() {
    let other = br#"{"auths":{"other.example:5000":{"auth":"b3RoZXI6cGFzcw=="}}}"#;
    let name = |options: &JobOptions, json: &[u8]| {
        let m = render(&config(), options, Some(json)).expect("render");
        let name = m
            .secret
            .as_ref()
            .and_then(|s| s.metadata.name.clone())
            .expect("secret");
        let (volume, mounts) = secret_volume(&m);
        assert_eq!(volume.and_then(|v| v.secret_name.clone()), Some(name.clone()));
        assert_eq!((volume.and_then(|v| v.optional), mounts), (Some(false), 2));
        (name, m.secret_per_credentials())
    };
    let defaults = JobOptions::default();
    let (mine, per_credentials) = name(&defaults, &docker_config());
    assert!(per_credentials);
    assert!(
        mine.starts_with(SECRET_NAME_PREFIX) && mine.len() == SECRET_NAME_PREFIX.len() + 20,
        "{mine}"
    );
    assert!(
        mine[SECRET_NAME_PREFIX.len()..]
            .chars()
            .all(|c| c.is_ascii_hexdigit())
    );
    // The same credentials, another build: the same Secret. Other credentials: another.
    let m = render(
        &builder("registry.local:5000/team/other:v2")
            .build()
            .expect("valid"),
        &defaults,
        Some(&docker_config()),
    )
    .expect("render");
    assert_eq!(
        m.secret.as_ref().and_then(|s| s.metadata.name.clone()),
        Some(mine.clone())
    );
    let (theirs, _) = name(&defaults, other);
    assert_ne!(mine, theirs);
    // Named: the one Secret of that name, whatever it holds, not per credentials.
    for options in [
        JobOptions::default().secret_name("team-docker-config"),
        JobOptions::default().seed_compatible(true),
    ] {
        let (a, per_a) = name(&options, &docker_config());
        let (b, per_b) = name(&options, other);
        assert_eq!(a, b);
        assert!(!per_a && !per_b);
        assert!(a == "team-docker-config" || a == DEFAULT_SECRET_NAME, "{a}");
    }
}

#[test]
fn insecure_destination_sets_kb_insecure() {
    let c = builder("registry.local:5000/team/app:v1")
        .skip_tls_verify_registry("registry.local:5000")
        .build()
        .expect("valid");
    let m = render(&c, &JobOptions::default(), None).expect("render");
    assert_eq!(env_value(init(&m), "KB_INSECURE"), Some("true"));
}

#[test]
fn rbac_is_least_privilege() {
    let m = render(&config(), &JobOptions::default(), None).expect("render");
    let rules = m.role.as_ref().and_then(|r| r.rules.as_ref()).expect("rules");
    let find = |resource: &str| -> Vec<&PolicyRule> {
        rules
            .iter()
            .filter(|r| r.resources.iter().flatten().any(|x| x == resource))
            .collect()
    };
    assert!(find("pods/exec").is_empty(), "exec only with exec_upload");
    assert_eq!(
        find("jobs")[0].verbs,
        ["create", "get", "list", "watch", "delete"]
    );
    assert_eq!(find("pods")[0].verbs, ["get", "list", "watch", "delete"]);
    // Per-credentials Secrets: created, and patched to add owners; never read, listed or deleted.
    let secrets = find("secrets");
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].verbs, ["create", "patch"]);
    assert!(secrets[0].resource_names.is_none());
    // One Secret shared by name: everything but create limited to it.
    let named = render(
        &config(),
        &JobOptions::default().secret_name("docker-config-secret"),
        None,
    )
    .expect("render");
    let named_rules = named.role.as_ref().and_then(|r| r.rules.as_ref()).expect("rules");
    let secrets: Vec<&PolicyRule> = named_rules
        .iter()
        .filter(|r| r.resources.iter().flatten().any(|x| x == "secrets"))
        .collect();
    assert_eq!(secrets.len(), 2);
    assert_eq!(secrets[0].verbs, ["create"]);
    assert_eq!(secrets[1].verbs, ["get", "patch", "delete"]);
    assert_eq!(
        secrets[1].resource_names.as_deref(),
        Some(["docker-config-secret".to_owned()].as_slice())
    );
    assert!(rules.iter().all(|r| {
        !r.verbs.iter().any(|v| v == "*" || v == "update" || v == "list")
            || r.resources
                .iter()
                .flatten()
                .any(|x| x == "jobs" || x == "pods" || x == "events")
    }));
    let binding = m.role_binding.as_ref().expect("binding");
    let subject = &binding.subjects.as_ref().expect("subjects")[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", "kaniko-builder-orchestrator")
    );
    assert_eq!(subject.namespace.as_deref(), Some("kaniko"));

    let m = render(&config(), &JobOptions::default().exec_upload(true), None).expect("render");
    let rules = m.role.as_ref().and_then(|r| r.rules.as_ref()).expect("rules");
    assert!(
        rules
            .iter()
            .any(|r| r.resources.iter().flatten().any(|x| x == "pods/exec") && r.verbs == ["create"])
    );

    let m = render(&config(), &JobOptions::default().orchestrator(None), None).expect("render");
    assert!(m.role.is_none() && m.role_binding.is_none() && m.orchestrator_service_account.is_none());

    let m = render(
        &config(),
        &JobOptions::default().orchestrator(Some(Orchestrator::User("alice".into()))),
        None,
    )
    .expect("render");
    assert!(m.orchestrator_service_account.is_none());
    let subject = &m
        .role_binding
        .as_ref()
        .and_then(|b| b.subjects.as_ref())
        .expect("subjects")[0];
    assert_eq!(subject.kind, "User");
    assert_eq!(subject.api_group.as_deref(), Some("rbac.authorization.k8s.io"));
}

#[test]
fn existing_service_account_is_not_generated() {
    let m = render(
        &config(),
        &JobOptions::default().service_account_name("pusher"),
        None,
    )
    .expect("render");
    assert!(m.service_account.is_none());
    assert_eq!(pod(&m).service_account_name.as_deref(), Some("pusher"));
}

#[test]
fn seed_compatible_names() {
    let m = render(&config(), &JobOptions::default().seed_compatible(true), None).expect("render");
    assert_eq!(
        m.config_map.metadata.name.as_deref(),
        Some("my-kaniko-builder-configmap")
    );
    assert!(
        !m.config_map
            .metadata
            .labels
            .as_ref()
            .expect("labels")
            .contains_key(LABEL_INSTANCE)
    );
    assert_eq!(m.namespace_name(), "kaniko");
    let c = builder("registry.local:5000/team/app:v1")
        .namespace("builds")
        .build()
        .expect("valid");
    let err = render(&c, &JobOptions::default().seed_compatible(true), None).expect_err("conflict");
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                option: "seed_compatible",
                ..
            }
        ),
        "{err}"
    );
    let err = render(
        &config(),
        &JobOptions::default().seed_compatible(true).secret_name("x"),
        None,
    )
    .expect_err("conflict");
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                option: "secret_name",
                ..
            }
        ),
        "{err}"
    );
}

fn quantity(cpu: &str) -> ResourceRequirements {
    ResourceRequirements {
        limits: Some(BTreeMap::from([("cpu".to_owned(), Quantity(cpu.to_owned()))])),
        ..ResourceRequirements::default()
    }
}

#[rstest]
#[case::executor_image(JobOptions::default().executor_image("Bad Image"), "executor_image")]
#[case::init_image(JobOptions::default().init_image(""), "init_image")]
#[case::quantity(JobOptions::default().executor_resources(quantity("two")), "executor_resources.limits.cpu")]
#[case::negative(JobOptions::default().init_resources(quantity("-1")), "init_resources.limits.cpu")]
#[case::node_selector(JobOptions::default().node_selector("a b", "c"), "node_selector")]
#[case::pull_secret(JobOptions::default().image_pull_secret("Bad"), "image pull secret")]
#[case::label_value(JobOptions::default().label("team", "a b"), "team")]
#[case::reserved_label(JobOptions::default().label(LABEL_INSTANCE, "x"), "label")]
#[case::reserved_platform_label(JobOptions::default().label(LABEL_PLATFORM, "x"), "label")]
#[case::platform_node_selector(JobOptions::default().platform_node_selector(platform("linux/arm64"), BTreeMap::from([("a b".to_owned(), "c".to_owned())])), "platform_node_selector")]
#[case::output_size_limit(JobOptions::default().output_size_limit("ten"), "output_size_limit")]
#[case::annotation(JobOptions::default().annotation("bad key", "x"), "bad key")]
#[case::deadline(JobOptions::default().active_deadline(Duration::ZERO), "active_deadline")]
#[case::ttl(JobOptions::default().ttl_after_finished(Duration::from_secs(u64::MAX)), "ttl_after_finished")]
#[case::secret_name(JobOptions::default().secret_name("Secret"), "secret")]
#[case::config_map_name(JobOptions::default().config_map_name("a_b"), "configmap")]
#[case::service_account(JobOptions::default().service_account_name("SA"), "service account")]
#[case::orchestrator(JobOptions::default().orchestrator(Some(Orchestrator::ServiceAccount("O".into()))), "orchestrator")]
#[case::orchestrator_ns(JobOptions::default().orchestrator(Some(Orchestrator::ExternalServiceAccount { namespace: "A".into(), name: "o".into() })), "orchestrator namespace")]
#[case::user(JobOptions::default().orchestrator(Some(Orchestrator::User(String::new()))), "orchestrator")]
fn invalid_options_are_named(#[case] options: JobOptions, #[case] culprit: &str) {
    let err = render(&config(), &options, None).expect_err("invalid");
    assert!(err.is_invalid_input());
    assert!(err.to_string().contains(culprit), "{err}");
}

#[test]
fn context_blob_is_set_only_for_uploads() {
    let digest = Digest::sha256(b"context");
    let upload = builder("registry.local:5000/team/app:v1")
        .context(ContextSource::LocalDir(PathBuf::from("ctx")))
        .build()
        .expect("valid");
    let m = render(&upload, &JobOptions::default(), None).expect("render");
    assert_eq!(env_value(init(&m), "KB_CONTEXT_BLOB"), Some(""));
    let m = m.with_context_blob(&digest).expect("upload");
    assert_eq!(
        env_value(init(&m), "KB_CONTEXT_BLOB"),
        Some(digest.to_string().as_str())
    );
    let m = render(&config(), &JobOptions::default(), None).expect("render");
    assert!(m.with_context_blob(&digest).is_err());
}

#[rstest]
#[case(r#"{"decision":"skip","digest":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"}"#, Some(Ok(Decision::Skip { digest: Digest::sha256(b"foo") })))]
#[case(r#"{"decision":"build","reason":"absent"}"#, Some(Ok(Decision::Build { reason: BuildReason::Absent })))]
#[case("{\"decision\":\"build\",\"reason\":\"forced\"}\n", Some(Ok(Decision::Build { reason: BuildReason::Forced })))]
#[case(r#"{"decision":"build","reason":"unverified"}"#, Some(Ok(Decision::Build { reason: BuildReason::Unverified })))]
#[case(r#"{"decision":"error","message":"401"}"#, Some(Err("401".to_owned())))]
#[case(
    "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    None
)]
#[case(r#"{"decision":"skip","digest":"sha256:bad"}"#, None)]
fn decisions_parse(#[case] message: &str, #[case] expected: Option<Result<Decision, String>>) {
    assert_eq!(parse_init_message(message), expected);
}

#[test]
fn yaml_round_trips_to_the_same_objects() {
    let c = builder("registry.local:5000/team/app:v1")
        .force(true)
        .build_arg("QUOTED", "it's \"quoted\": yes")
        .build()
        .expect("valid");
    let m = render(&c, &JobOptions::default(), Some(&docker_config())).expect("render");
    let yaml = m.to_yaml().expect("yaml");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).expect("parse back");
    let expected: Vec<serde_json::Value> = m.objects().iter().map(|o| o.to_json().expect("json")).collect();
    assert_eq!(docs, expected);
    // YAML 1.1 readers (kubectl) must see FORCE_BUILD as the string "Y", not a boolean.
    assert!(
        yaml.contains("FORCE_BUILD: 'Y'") || yaml.contains("FORCE_BUILD: \"Y\""),
        "{yaml}"
    );
}

fn platform(s: &str) -> Platform {
    s.parse().expect("test platform")
}

/// A two-platform request on three registries: the image's (insecure), a skip-TLS one and a
/// secure one, and a second tag of the image's repository.
fn multi_platform() -> BuildConfig {
    builder("registry.local:5000/team/app:v1")
        .destinations([
            ImageRef::parse("registry.local:5000/team/app:latest").expect("ref"),
            ImageRef::parse("other.io/team/app:v1").expect("ref"),
            ImageRef::parse("ghcr.io/acme/app:v1").expect("ref"),
        ])
        .insecure_registry("registry.local:5000")
        .skip_tls_verify_registry("other.io")
        .platforms([platform("linux/amd64"), platform("linux/arm64")])
        .build()
        .expect("valid")
}

fn builder_container(m: &BuildManifests) -> &Container {
    &pod(m).containers[0]
}

fn mounts(c: &Container) -> Vec<(&str, &str, Option<bool>)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
        .collect()
}

#[test]
fn a_multi_platform_request_is_one_job_per_platform() {
    let config = multi_platform();
    let err = render(&config, &JobOptions::default(), None).expect_err("not one Job");
    assert!(err.is_invalid_input());
    assert!(
        matches!(&err, Error::Config(core) if core.culprit() == Some("platforms")),
        "{err:?}"
    );
    assert!(err.to_string().contains("for_platform(p)"), "{err}");

    let rendered = render_platforms(&config, &JobOptions::default(), Some(&docker_config())).expect("render");
    let platforms: Vec<String> = rendered.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    for (p, m) in &rendered {
        let one = config.for_platform(p);
        assert_eq!(m.job_name(), one.job_name());
        assert!(
            m.job_name().contains(&format!("-v1-{}-", p.slug())),
            "{}",
            m.job_name()
        );
        let direct = render(&one, &JobOptions::default(), Some(&docker_config())).expect("render");
        assert_eq!(m.to_yaml().expect("yaml"), direct.to_yaml().expect("yaml"));
    }
    assert_ne!(rendered[0].1.job_name(), rendered[1].1.job_name());

    // A single-platform build is not a multi-platform one.
    let err = render_platforms(&self::config(), &JobOptions::default(), None).expect_err("no platforms");
    assert!(
        matches!(&err, Error::Config(core) if core.culprit() == Some("platforms")),
        "{err:?}"
    );
}

#[test]
fn a_platform_job_builds_an_oci_layout_without_destinations() {
    let c = builder("registry.local:5000/team/app:v1")
        .destination(ImageRef::parse("registry.local:5000/team/app:latest").expect("ref"))
        .build_arg("A", "1")
        .cache(CacheConfig::default())
        .insecure_registry("registry.local:5000")
        .platforms([platform("linux/arm/v7")])
        .build()
        .expect("valid");
    let one = c.for_platform(&platform("linux/arm/v7"));
    assert_eq!(
        kaniko_args(&one),
        [
            "--context=dir:///workspace",
            "--dockerfile=Dockerfile",
            "--custom-platform=linux/arm/v7",
            "--no-push",
            "--image-format=oci",
            "--oci-layout-path=/kaniko/out/layout",
            "--build-arg=A=1",
            "--digest-file=/kaniko/out/digest",
            "--cache=true",
            "--cache-repo=registry.local:5000/team/app/cache",
            "--insecure-registry=registry.local:5000",
        ]
    );
    assert!(!kaniko_args(&one).iter().any(|a| a.starts_with("--destination")));
    // A cache repository given is kept; a single-platform build still has its destinations.
    let with_repo = builder("registry.local:5000/team/app:v1")
        .cache(CacheConfig {
            repo: Some("registry.local:5000/cache".into()),
            ttl: None,
        })
        .build()
        .expect("valid");
    assert!(
        kaniko_args(&with_repo.for_platform(&platform("linux/amd64")))
            .contains(&"--cache-repo=registry.local:5000/cache".to_owned())
    );
    let single = kaniko_args(&with_repo);
    assert!(single.contains(&"--destination=registry.local:5000/team/app:v1".to_owned()));
    assert!(single.contains(&"--digest-file=/dev/termination-log".to_owned()));
    assert!(
        !single
            .iter()
            .any(|a| a.starts_with("--custom-platform") || a == "--no-push")
    );

    // The builder runs kaniko through the platform wrapper.
    let m = render(&one, &JobOptions::default(), None).expect("render");
    let command = builder_container(&m).command.as_ref().expect("command");
    assert_eq!(
        command[..4],
        ["/busybox/sh", "-c", scripts::PLATFORM_BUILDER_WRAPPER, "kaniko"]
    );
    assert_eq!(command[4..], kaniko_args(&one));
}

#[test]
fn a_platform_job_pushes_by_digest_to_each_repository() {
    let one = multi_platform().for_platform(&platform("linux/arm64"));
    let m = render(&one, &JobOptions::default(), Some(&docker_config())).expect("render");
    // Each repository once, the image's first; --insecure only for the insecure and skip-TLS
    // registries.
    assert_eq!(
        env_value(builder_container(&m), ENV_PUSH),
        Some("registry.local:5000/team/app --insecure\nother.io/team/app --insecure\nghcr.io/acme/app")
    );
    let secure = builder("ghcr.io/acme/app:v1")
        .destination(ImageRef::parse("docker.io/acme/app:v1").expect("ref"))
        .insecure_registry("registry.local:5000")
        .build()
        .expect("valid")
        .for_platform(&platform("linux/amd64"));
    let m = render(&secure, &JobOptions::default(), None).expect("render");
    assert_eq!(
        env_value(builder_container(&m), ENV_PUSH),
        Some("ghcr.io/acme/app\ndocker.io/acme/app")
    );
    assert_eq!(
        env_value(builder_container(&m), "DOCKER_CONFIG"),
        Some(DOCKER_CONFIG_DIR)
    );
    // The wrapper's push line.
    assert!(
        scripts::PLATFORM_BUILDER_WRAPPER
            .contains(r#"pushed=$("$crane" push "$@" "$out/layout" "$repo@$digest")"#)
    );
    assert!(scripts::PLATFORM_BUILDER_WRAPPER.starts_with("out=/kaniko/out\ncrane=/kaniko/tools/crane\n"));
    // A single-platform build has none of it.
    let m = render(&config(), &JobOptions::default(), None).expect("render");
    assert_eq!(env_value(builder_container(&m), ENV_PUSH), None);
}

#[test]
fn a_platform_job_runs_on_a_node_of_its_platform() {
    let config = multi_platform();
    let arm64 = platform("linux/arm64");
    let amd64 = platform("linux/amd64");
    let selector = |options: &JobOptions, p: &Platform| {
        let m = render(&config.for_platform(p), options, None).expect("render");
        pod(&m).node_selector.clone().unwrap_or_default()
    };
    let pairs = |items: &[(&str, &str)]| -> BTreeMap<String, String> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    // The default pair, merged over the options' selector (whose own arch it replaces).
    let options = JobOptions::default()
        .node_selector("pool", "builds")
        .node_selector("kubernetes.io/arch", "amd64");
    assert_eq!(
        selector(&options, &arm64),
        pairs(&[
            ("kubernetes.io/arch", "arm64"),
            ("kubernetes.io/os", "linux"),
            ("pool", "builds")
        ])
    );
    // Overridden for one platform; the other keeps the default.
    let options = options.platform_node_selector(arm64.clone(), pairs(&[("example.com/cpu", "graviton")]));
    assert_eq!(
        selector(&options, &arm64),
        pairs(&[("example.com/cpu", "graviton"), ("pool", "builds")])
    );
    assert_eq!(
        selector(&options, &amd64),
        pairs(&[
            ("kubernetes.io/arch", "amd64"),
            ("kubernetes.io/os", "linux"),
            ("pool", "builds")
        ])
    );
    // An empty override: anywhere.
    let anywhere = JobOptions::default().platform_node_selector(arm64.clone(), BTreeMap::new());
    assert!(selector(&anywhere, &arm64).is_empty());
    // The variant is no node label.
    let v7 = builder("registry.local:5000/team/app:v1")
        .platforms([platform("linux/arm/v7")])
        .build()
        .expect("valid");
    let m = render(
        &v7.for_platform(&platform("linux/arm/v7")),
        &JobOptions::default(),
        None,
    )
    .expect("render");
    assert_eq!(
        pod(&m).node_selector.clone().unwrap_or_default(),
        pairs(&[("kubernetes.io/arch", "arm"), ("kubernetes.io/os", "linux")])
    );
    // A single-platform build keeps the options' selector as it is.
    let m = render(&self::config(), &options, None).expect("render");
    assert_eq!(
        pod(&m).node_selector.clone().unwrap_or_default(),
        pairs(&[("kubernetes.io/arch", "amd64"), ("pool", "builds")])
    );
}

#[test]
fn a_platform_job_is_labelled_with_its_platform() {
    let config = builder("registry.local:5000/team/app:v1")
        .platforms([platform("linux/arm/v7")])
        .build()
        .expect("valid");
    let m = render(
        &config.for_platform(&platform("linux/arm/v7")),
        &JobOptions::default(),
        None,
    )
    .expect("render");
    let template = m
        .job
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .expect("meta");
    for meta in [&m.job.metadata, template, &m.config_map.metadata] {
        assert_eq!(
            meta.labels.as_ref().expect("labels")[LABEL_PLATFORM],
            "linux-arm-v7"
        );
        assert_eq!(
            meta.annotations.as_ref().expect("annotations")[ANNOTATION_PLATFORM],
            "linux/arm/v7"
        );
    }
    assert!(
        !m.namespace
            .metadata
            .labels
            .as_ref()
            .expect("labels")
            .contains_key(LABEL_PLATFORM)
    );
    let single = render(&self::config(), &JobOptions::default(), None).expect("render");
    assert!(
        !single
            .job
            .metadata
            .labels
            .as_ref()
            .expect("labels")
            .contains_key(LABEL_PLATFORM)
    );
    assert!(
        !single
            .job
            .metadata
            .annotations
            .as_ref()
            .expect("annotations")
            .contains_key(ANNOTATION_PLATFORM)
    );
}

#[test]
fn a_platform_job_shares_crane_and_an_output_volume() {
    let one = multi_platform().for_platform(&platform("linux/arm64"));
    let m = render(&one, &JobOptions::default(), Some(&docker_config())).expect("render");
    let p = pod(&m);
    let volume = |name: &str| {
        p.volumes
            .iter()
            .flatten()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("volume {name}"))
    };
    assert_eq!(volume("kaniko-tools").empty_dir, Some(Default::default()));
    assert_eq!(volume("kaniko-out").empty_dir, Some(Default::default()));
    assert_eq!(
        mounts(init(&m)),
        [
            ("docker-config", DOCKER_CONFIG_DIR, Some(true)),
            ("kaniko-state", STATE_DIR, Some(false)),
            ("kaniko-tools", TOOLS_DIR, Some(false)),
        ]
    );
    assert_eq!(
        mounts(builder_container(&m)),
        [
            ("docker-config", DOCKER_CONFIG_DIR, Some(true)),
            ("kaniko-state", STATE_DIR, Some(true)),
            ("build-context", CONTEXT_DIR, Some(true)),
            ("kaniko-tools", TOOLS_DIR, Some(true)),
            ("kaniko-out", OUT_DIR, Some(false)),
        ]
    );
    // The layout's volume can be bounded.
    let m = render(&one, &JobOptions::default().output_size_limit("20Gi"), None).expect("render");
    let out = pod(&m)
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "kaniko-out")
        .and_then(|v| v.empty_dir.as_ref())
        .expect("kaniko-out");
    assert_eq!(out.size_limit, Some(Quantity("20Gi".to_owned())));
    // A single-platform build has neither volume.
    let m = render(&config(), &JobOptions::default().output_size_limit("20Gi"), None).expect("render");
    let names: Vec<&str> = pod(&m)
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(names, ["kaniko-state", "build-context"]);
}

#[test]
fn a_platform_jobs_init_copies_crane_and_never_skips() {
    let one = multi_platform().for_platform(&platform("linux/arm64"));
    let m = render(&one, &JobOptions::default(), None).expect("render");
    let command = init(&m).command.as_ref().expect("command");
    assert_eq!(command[..2], ["/busybox/sh", "-c"]);
    assert_eq!(
        command[2],
        format!("{}{}", scripts::PLATFORM_INIT_PRELUDE, scripts::INIT_SCRIPT)
    );
    assert!(scripts::PLATFORM_INIT_PRELUDE.contains(r#"cp "$src" /kaniko/tools/crane"#));
    // Forced, whatever the ConfigMap says: the tag holds the index, not this platform's image.
    let force = init(&m)
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "FORCE_BUILD")
        .expect("FORCE_BUILD");
    assert_eq!((force.value.as_deref(), &force.value_from), (Some("Y"), &None));
    assert_eq!(m.config_map.data.as_ref().expect("data")["FORCE_BUILD"], "N");
    // A single-platform build reads it from the ConfigMap.
    let m = render(&config(), &JobOptions::default(), None).expect("render");
    let force = init(&m)
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "FORCE_BUILD")
        .expect("FORCE_BUILD");
    assert!(force.value.is_none() && force.value_from.is_some());
    assert_eq!(
        init(&m).command.as_ref().expect("command")[2],
        scripts::INIT_SCRIPT
    );
}

#[test]
fn platform_yaml_writes_shared_objects_once() {
    let config = multi_platform();
    let count = |options: &JobOptions| {
        let rendered = render_platforms(&config, options, Some(&docker_config())).expect("render");
        let yaml = platforms_to_yaml(&rendered).expect("yaml");
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).expect("parse back");
        let kinds: Vec<String> = docs
            .iter()
            .map(|d| d["kind"].as_str().expect("kind").to_owned())
            .collect();
        kinds
    };
    // Per-build ConfigMaps: one per platform, with its Job.
    assert_eq!(
        count(&JobOptions::default()),
        [
            "Namespace",
            "ServiceAccount",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Secret",
            "ConfigMap",
            "Job",
            "ConfigMap",
            "Job"
        ]
    );
    // Seed-compatible: the seed's ConfigMap once.
    assert_eq!(
        count(&JobOptions::default().seed_compatible(true)),
        [
            "Namespace",
            "ServiceAccount",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Secret",
            "ConfigMap",
            "Job",
            "Job"
        ]
    );
}

#[test]
fn a_platform_whose_slug_is_no_label_value_is_refused() {
    let long = Platform::new("linux", &"a".repeat(32), Some(&"b".repeat(32))).expect("valid platform");
    let config = builder("registry.local:5000/team/app:v1")
        .platforms([long.clone()])
        .build()
        .expect("valid");
    let err = render(&config.for_platform(&long), &JobOptions::default(), None).expect_err("too long");
    assert!(
        matches!(&err, Error::Config(core) if core.culprit() == Some("platform")),
        "{err:?}"
    );
    // A valid platform whose slug ends in `-`.
    let trailing = platform("linux/arm_");
    let err =
        render(&config.for_platform(&trailing), &JobOptions::default(), None).expect_err("no label value");
    assert!(err.to_string().contains("\"linux-arm-\""), "{err}");
}
