use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use rstest::rstest;

use super::seed::{self, parse_force_build};
use super::*;
use crate::error::Error;

fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).expect("test image parses")
}

fn base() -> BuildConfigBuilder {
    BuildConfig::builder(image("registry.local:5000/team/app:v1"))
}

#[test]
fn defaults_are_the_seeds() {
    let c = base().build().expect("valid");
    assert_eq!(c.context(), &ContextSource::HostPath(PathBuf::from("/workspace")));
    assert_eq!(c.dockerfile(), "Dockerfile");
    assert_eq!(c.namespace(), "kaniko");
    assert!(!c.force());
    assert!(c.cache().is_none());
    assert_eq!(c.destinations().count(), 1);
    assert!(!c.destination_is_insecure());
}

#[test]
fn destinations_are_deduplicated_in_order() {
    let c = base()
        .destination(image("registry.local:5000/team/app:latest"))
        .destination(image("registry.local:5000/team/app:v1"))
        .destinations([
            image("other.io/app:v1"),
            image("registry.local:5000/team/app:latest"),
        ])
        .build()
        .expect("valid");
    let all: Vec<String> = c.destinations().map(ToString::to_string).collect();
    assert_eq!(
        all,
        [
            "registry.local:5000/team/app:v1",
            "registry.local:5000/team/app:latest",
            "other.io/app:v1"
        ]
    );
}

#[rstest]
#[case::digest_image(
    BuildConfig::builder(image(&format!("h.io/app@sha256:{}", "a".repeat(64)))),
    "image"
)]
#[case::digest_destination(base().destination(image(&format!("h.io/app:v1@sha256:{}", "a".repeat(64)))), "destinations")]
#[case::absolute_dockerfile(base().dockerfile("/etc/Dockerfile"), "dockerfile")]
#[case::climbing_dockerfile(base().dockerfile("../Dockerfile"), "dockerfile")]
#[case::empty_dockerfile(base().dockerfile(""), "dockerfile")]
#[case::namespace(base().namespace("Kaniko"), "namespace")]
#[case::long_namespace(base().namespace("a".repeat(64)), "namespace")]
#[case::relative_host_path(base().context(ContextSource::HostPath("workspace".into())), "context")]
#[case::climbing_host_path(base().context(ContextSource::HostPath("/a/../etc".into())), "context")]
#[case::claim(base().context(ContextSource::Pvc { claim: "Bad_Claim".into(), sub_path: None }), "context")]
#[case::claim_sub_path(base().context(ContextSource::Pvc { claim: "c".into(), sub_path: Some("../x".into()) }), "context")]
#[case::empty_local_dir(base().context(ContextSource::LocalDir(PathBuf::new())), "context")]
#[case::git_ssh(base().context(ContextSource::Git { url: "ssh://git@h/r.git".into(), reference: None, sub_path: None }), "context")]
#[case::git_credentials(base().context(ContextSource::Git { url: "https://u:p@h/r.git".into(), reference: None, sub_path: None }), "context")]
#[case::git_hash(base().context(ContextSource::Git { url: "https://h/r.git#main".into(), reference: None, sub_path: None }), "context")]
#[case::git_reference(base().context(ContextSource::Git { url: "https://h/r.git".into(), reference: Some("a b".into()), sub_path: None }), "context")]
#[case::git_short_reference(base().context(ContextSource::Git { url: "https://h/r.git".into(), reference: Some("main".into()), sub_path: None }), "context")]
#[case::url_scheme(base().context(ContextSource::Url("ftp://h/c.tar.gz".into())), "context")]
#[case::url_no_scheme(base().context(ContextSource::Url("h/c.tar.gz".into())), "context")]
#[case::url_http(base().context(ContextSource::Url("http://h/c.tar.gz".into())), "context")]
#[case::build_arg_name(base().build_arg("A-B", "1"), "build_arg")]
#[case::build_arg_empty(base().build_arg("", "1"), "build_arg")]
#[case::build_arg_nul(base().build_arg("A", "x\0y"), "build_arg")]
#[case::target(base().target("1st"), "target")]
#[case::label_key(base().label("a=b", "c"), "label")]
#[case::cache_repo_tag(base().cache(CacheConfig { repo: Some("h.io/cache:v1".into()), ttl: None }), "cache")]
#[case::cache_repo_bad(base().cache(CacheConfig { repo: Some("H.io/Cache".into()), ttl: None }), "cache")]
#[case::cache_ttl(base().cache(CacheConfig { repo: None, ttl: Some(Duration::ZERO) }), "cache")]
#[case::insecure_scheme(base().insecure_registry("http://h.io"), "insecure_registry")]
#[case::insecure_path(base().insecure_registry("h.io/x"), "insecure_registry")]
#[case::skip_tls_port(base().skip_tls_verify_registry("h.io:99999"), "skip_tls_verify_registry")]
#[case::mirror(base().registry_mirror("bad host"), "registry_mirror")]
fn invalid_fields_are_named(#[case] builder: BuildConfigBuilder, #[case] field: &str) {
    match builder.build() {
        Err(e @ Error::InvalidConfig { .. }) => {
            assert_eq!(e.culprit(), Some(field), "{e}");
            assert!(e.to_string().contains(field), "{e}");
        }
        other => panic!("expected InvalidConfig for {field}, got {other:?}"),
    }
}

#[rstest]
#[case(ContextSource::HostPath("/srv/ctx".into()), "hostpath")]
#[case(ContextSource::Pvc { claim: "sources".into(), sub_path: Some("app/x".into()) }, "pvc")]
#[case(ContextSource::LocalDir("./ctx".into()), "upload")]
#[case(ContextSource::Git { url: "https://git.example/r.git".into(), reference: Some("refs/heads/main".into()), sub_path: Some("app".into()) }, "git")]
#[case(ContextSource::Url("s3://bucket/ctx.tar.gz".into()), "url")]
#[case(ContextSource::Url("gs://bucket/ctx.tar.gz".into()), "url")]
#[case(ContextSource::Url("https://h.example/ctx.tar.gz".into()), "url")]
fn valid_contexts(#[case] context: ContextSource, #[case] kind: &str) {
    let c = base().context(context).build().expect("valid");
    assert_eq!(c.context().kind(), kind);
}

#[test]
fn everything_valid_builds() {
    let c = base()
        .build_arg("VERSION", "1.2.3 with spaces=and equals")
        .target("final-stage")
        .label("org.opencontainers.image.source", "https://example.invalid/x")
        .cache(CacheConfig {
            repo: Some("registry.local:5000/team/cache".into()),
            ttl: Some(Duration::from_secs(6 * 3600)),
        })
        .insecure_registry("registry.local:5000")
        .insecure_registry("registry.local:5000")
        .skip_tls_verify_registry("other.io")
        .registry_mirror("mirror.gcr.io")
        .registry_mirror("mirror.local:5000/hub")
        .snapshot_mode(SnapshotMode::Redo)
        .reproducible(true)
        .push_retry(3)
        .verbosity(Verbosity::Debug)
        .build()
        .expect("valid");
    assert_eq!(c.insecure_registries(), ["registry.local:5000"]);
    assert!(c.destination_is_insecure());
    assert_eq!(c.clone().into_builder().build().expect("round trip"), c);
}

#[test]
fn job_name_is_deterministic_and_tracks_the_build() {
    let a = base().build().expect("valid");
    let name = a.job_name();
    assert_eq!(name, base().build().expect("valid").job_name());
    assert!(name.starts_with("kb-team-app-v1-"), "{name}");
    assert_eq!(name.len(), "kb-team-app-v1-".len() + names::JOB_NAME_HASH_LEN);
    // What is built changes the name...
    for other in [
        base().dockerfile("other.dockerfile"),
        base().build_arg("A", "1"),
        base().target("t"),
        base().label("k", "v"),
        base().destination(image("h.io/x:y")),
        base().context(ContextSource::Pvc {
            claim: "c".into(),
            sub_path: None,
        }),
        base().reproducible(true),
        BuildConfig::builder(image("registry.local:5000/team/app:v2")),
    ] {
        let other = other.build().expect("valid");
        assert_ne!(other.job_name(), name, "{other:?}");
    }
    // ...how it is run does not.
    for same in [
        base().force(true),
        base().namespace("builds"),
        base().verbosity(Verbosity::Trace),
        base().push_retry(5),
        base().cache(CacheConfig::default()),
        base().insecure_registry("registry.local:5000"),
    ] {
        assert_eq!(same.build().expect("valid").job_name(), name);
    }
}

#[test]
fn config_serialises() {
    let c = base().build_arg("A", "1").build().expect("valid");
    let json = serde_json::to_value(&c).expect("serialise");
    assert_eq!(json["image"], "registry.local:5000/team/app:v1");
    assert_eq!(json["context"]["kind"], "hostpath");
    assert_eq!(json["context"]["source"], "/workspace");
    assert_eq!(json["build_args"]["A"], "1");
}

// ---- seed keys ----

fn lookup(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[rstest]
#[case("Y", true)]
#[case("y", true)]
#[case("yes", true)]
#[case("true", true)]
#[case("1", true)]
#[case(" Y ", true)]
#[case("N", false)]
#[case("n", false)]
#[case("no", false)]
#[case("false", false)]
#[case("0", false)]
#[case("", false)]
fn force_build_values(#[case] value: &str, #[case] force: bool) {
    assert_eq!(parse_force_build(value).expect("valid"), force);
    let data = lookup(&[
        ("DOCKER_IMAGENAME", "example"),
        ("DOCKER_IMAGETAG", "v1.0.0"),
        ("FORCE_BUILD", value),
    ]);
    assert_eq!(SeedConfig::from_data(&data, None).expect("valid").force, force);
}

#[rstest]
#[case("YES")]
#[case("maybe")]
#[case("2")]
#[case("on")]
fn force_build_rejects(#[case] value: &str) {
    let err = parse_force_build(value).expect_err("invalid");
    assert_eq!(err.culprit(), Some("FORCE_BUILD"));
    assert!(err.to_string().contains("FORCE_BUILD"), "{err}");
}

#[rstest]
#[case::seed_example(&[("DOCKER_FILENAME", "example.dockerfile"), ("DOCKER_IMAGENAME", "example"), ("DOCKER_IMAGETAG", "v1.0.0"), ("FORCE_BUILD", "Y")], None, "docker.io/library/example:v1.0.0", "example.dockerfile", true)]
#[case::no_filename(&[("DOCKER_IMAGENAME", "team/app"), ("DOCKER_IMAGETAG", "1")], None, "docker.io/team/app:1", "Dockerfile", false)]
#[case::empty_filename(&[("DOCKER_FILENAME", ""), ("DOCKER_IMAGENAME", "app"), ("DOCKER_IMAGETAG", "1")], None, "docker.io/library/app:1", "Dockerfile", false)]
#[case::registry(&[("DOCKER_IMAGENAME", "team/app"), ("DOCKER_IMAGETAG", "v2")], Some("registry.local:5000"), "registry.local:5000/team/app:v2", "Dockerfile", false)]
#[case::host_in_name(&[("DOCKER_IMAGENAME", "localhost:5000/app"), ("DOCKER_IMAGETAG", "v2")], None, "localhost:5000/app:v2", "Dockerfile", false)]
#[case::nested_dockerfile(&[("DOCKER_FILENAME", "build/app.dockerfile"), ("DOCKER_IMAGENAME", "app"), ("DOCKER_IMAGETAG", "x")], None, "docker.io/library/app:x", "build/app.dockerfile", false)]
fn seed_values_read(
    #[case] pairs: &[(&str, &str)],
    #[case] registry: Option<&str>,
    #[case] image: &str,
    #[case] dockerfile: &str,
    #[case] force: bool,
) {
    let seed = SeedConfig::from_data(&lookup(pairs), registry).expect("valid");
    assert_eq!(seed.image.to_string(), image);
    assert_eq!(seed.dockerfile, dockerfile);
    assert_eq!(seed.force, force);
    let config = seed.into_builder().build().expect("valid config");
    assert_eq!(config.dockerfile(), dockerfile);
}

#[rstest]
#[case::name_missing(&[("DOCKER_IMAGETAG", "v1")], None, "DOCKER_IMAGENAME")]
#[case::name_empty(&[("DOCKER_IMAGENAME", " "), ("DOCKER_IMAGETAG", "v1")], None, "DOCKER_IMAGENAME")]
#[case::name_upper(&[("DOCKER_IMAGENAME", "Example"), ("DOCKER_IMAGETAG", "v1")], None, "DOCKER_IMAGENAME")]
#[case::name_with_tag(&[("DOCKER_IMAGENAME", "example:v1"), ("DOCKER_IMAGETAG", "v1")], None, "DOCKER_IMAGENAME")]
#[case::name_with_digest(&[("DOCKER_IMAGENAME", "example@sha256:abc"), ("DOCKER_IMAGETAG", "v1")], None, "DOCKER_IMAGENAME")]
#[case::name_and_registry(&[("DOCKER_IMAGENAME", "h.io/example"), ("DOCKER_IMAGETAG", "v1")], Some("r.io"), "DOCKER_IMAGENAME")]
#[case::bad_registry(&[("DOCKER_IMAGENAME", "example"), ("DOCKER_IMAGETAG", "v1")], Some("-r.io"), "DOCKER_IMAGENAME")]
#[case::tag_missing(&[("DOCKER_IMAGENAME", "example")], None, "DOCKER_IMAGETAG")]
#[case::tag_empty(&[("DOCKER_IMAGENAME", "example"), ("DOCKER_IMAGETAG", "")], None, "DOCKER_IMAGETAG")]
#[case::tag_invalid(&[("DOCKER_IMAGENAME", "example"), ("DOCKER_IMAGETAG", "-v1")], None, "DOCKER_IMAGETAG")]
#[case::tag_plus(&[("DOCKER_IMAGENAME", "example"), ("DOCKER_IMAGETAG", "v1+b")], None, "DOCKER_IMAGETAG")]
#[case::tag_long(&[("DOCKER_IMAGENAME", "example"), ("DOCKER_IMAGETAG", &"a".repeat(129))], None, "DOCKER_IMAGETAG")]
#[case::filename_absolute(&[("DOCKER_FILENAME", "/Dockerfile"), ("DOCKER_IMAGENAME", "example"), ("DOCKER_IMAGETAG", "v1")], None, "DOCKER_FILENAME")]
#[case::filename_climbs(&[("DOCKER_FILENAME", "../Dockerfile"), ("DOCKER_IMAGENAME", "example"), ("DOCKER_IMAGETAG", "v1")], None, "DOCKER_FILENAME")]
#[case::force_bad(&[("DOCKER_IMAGENAME", "example"), ("DOCKER_IMAGETAG", "v1"), ("FORCE_BUILD", "si")], None, "FORCE_BUILD")]
fn seed_errors_name_the_key(
    #[case] pairs: &[(&str, &str)],
    #[case] registry: Option<&str>,
    #[case] key: &str,
) {
    let err = SeedConfig::from_data(&lookup(pairs), registry).expect_err("invalid");
    assert!(matches!(err, Error::InvalidSeedValue { .. }), "{err:?}");
    assert_eq!(err.culprit(), Some(key), "{err}");
    assert!(err.to_string().starts_with(&format!("invalid {key}: ")), "{err}");
}

#[test]
fn seed_data_round_trips() {
    let c = base()
        .dockerfile("d/Dockerfile")
        .force(true)
        .build()
        .expect("valid");
    let data = SeedConfig::data_for(&c);
    assert_eq!(data[seed::FORCE_BUILD], "Y");
    assert_eq!(data[seed::KB_DESTINATION], "registry.local:5000/team/app:v1");
    let back = SeedConfig::from_data(&data, None).expect("valid");
    assert_eq!(&back.image, c.image());
    assert_eq!(back.dockerfile, "d/Dockerfile");
    assert!(back.force);
}

proptest! {
    #[test]
    fn job_names_are_always_valid(
        host in "[a-z][a-z0-9]{0,8}\\.[a-z]{2,4}(:[1-9][0-9]{1,3})?",
        path in prop::collection::vec("[a-z0-9]{1,30}([._-][a-z0-9]{1,30})?", 1..6),
        tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
    ) {
        let image = ImageRef::parse(&format!("{host}/{}:{tag}", path.join("/")))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let c = BuildConfig::builder(image).build().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let name = c.job_name();
        prop_assert!(names::is_dns1123_label(&name), "{}", name);
        prop_assert!(name.len() <= 63);
        prop_assert!(names::is_label_value(&c.image_hash().hex()[..40]));
    }
}

#[test]
fn a_local_directory_build_is_named_after_its_files_once_hashed() {
    let local = |path: &str| {
        base()
            .context(ContextSource::LocalDir(PathBuf::from(path)))
            .build()
            .expect("valid")
    };
    let (files_a, files_b) = (Digest::sha256(b"files a"), Digest::sha256(b"files b"));
    // Before hashing, the path names it (what `render` shows for a config never run).
    assert_ne!(local("/src/one").job_name(), local("/src/two").job_name());
    // Once hashed, the files do: the same path with other files is another build...
    let one_a = local("/src/one").with_context_digest(files_a.clone());
    let one_b = local("/src/one").with_context_digest(files_b);
    assert_ne!(one_a.build_hash(), one_b.build_hash());
    assert_ne!(one_a.job_name(), one_b.job_name());
    assert_ne!(one_a.job_name(), local("/src/one").job_name());
    // ...and the same files elsewhere are the same build.
    let two_a = local("/src/two").with_context_digest(files_a.clone());
    assert_eq!(one_a.job_name(), two_a.job_name());
    assert_eq!(one_a.context_digest(), Some(&files_a));
    // Other contexts ignore it.
    let pvc = || {
        base().context(ContextSource::Pvc {
            claim: "c".into(),
            sub_path: None,
        })
    };
    let pinned = pvc().build().expect("valid").with_context_digest(files_a);
    assert_eq!(pinned.job_name(), pvc().build().expect("valid").job_name());
}
