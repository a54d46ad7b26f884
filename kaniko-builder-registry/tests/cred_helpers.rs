//! The `docker-credential-<name>` protocol against real helper programs (small shell scripts),
//! and the docker CLI's precedence between `credHelpers`, `credsStore` and `auths`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use kaniko_builder_registry::{Credentials, DockerConfig, Error};

/// Writes `docker-credential-<name>` scripts into a fresh directory.
fn helpers(scripts: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, body) in scripts {
        let path = dir.path().join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write helper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

fn search_path(dir: &Path) -> String {
    // The helpers use `cat` and `printf`, so keep the system directories after ours.
    format!("{}:/usr/bin:/bin", dir.display())
}

const ECHO_URL: &str =
    r#"read url; printf '{"ServerURL":"%s","Username":"%s","Secret":"helper-secret"}' "$url" "$url""#;

#[tokio::test]
async fn helper_gets_the_server_url_and_its_answer_is_used() {
    let dir = helpers(&[("echo", ECHO_URL)]);
    let cfg = DockerConfig::from_json(r#"{"credsStore":"echo"}"#)
        .expect("parse")
        .helper_path(search_path(dir.path()));
    // Docker Hub is asked for under the CLI's key; others by host[:port].
    assert_eq!(
        cfg.resolve("docker.io").await.expect("hub"),
        Credentials::basic("https://index.docker.io/v1/", "helper-secret")
    );
    assert_eq!(
        cfg.resolve("reg.example:5000").await.expect("host"),
        Credentials::basic("reg.example:5000", "helper-secret")
    );
}

#[tokio::test]
async fn token_username_means_identity_token() {
    let dir = helpers(&[(
        "tok",
        r#"cat >/dev/null; printf '{"Username":"<token>","Secret":"refresh-123"}'"#,
    )]);
    let cfg = DockerConfig::from_json(r#"{"credHelpers":{"reg.example":"tok"}}"#)
        .expect("parse")
        .helper_path(search_path(dir.path()));
    assert_eq!(
        cfg.resolve("reg.example").await.expect("token"),
        Credentials::IdentityToken {
            token: "refresh-123".into()
        }
    );
}

#[tokio::test]
async fn not_found_in_keychain_is_anonymous() {
    let dir = helpers(&[(
        "empty",
        "cat >/dev/null; echo 'credentials not found in native keychain'; exit 1",
    )]);
    let cfg = DockerConfig::from_json(r#"{"credsStore":"empty","auths":{"reg.example":{}}}"#)
        .expect("parse")
        .helper_path(search_path(dir.path()));
    assert_eq!(
        cfg.resolve("reg.example").await.expect("anonymous"),
        Credentials::Anonymous
    );
}

#[tokio::test]
async fn precedence_is_cred_helpers_then_store_then_auths() {
    let dir = helpers(&[
        (
            "specific",
            r#"cat >/dev/null; printf '{"Username":"from-specific","Secret":"s1"}'"#,
        ),
        (
            "store",
            r#"cat >/dev/null; printf '{"Username":"from-store","Secret":"s2"}'"#,
        ),
    ]);
    let json = r#"{
        "auths": {"a.example": {"username": "from-auths", "password": "s3"},
                  "b.example": {"username": "from-auths", "password": "s3"}},
        "credHelpers": {"a.example": "specific"},
        "credsStore": "store"
    }"#;
    let cfg = DockerConfig::from_json(json)
        .expect("parse")
        .helper_path(search_path(dir.path()));
    assert_eq!(
        cfg.resolve("a.example").await.expect("a"),
        Credentials::basic("from-specific", "s1")
    );
    assert_eq!(
        cfg.resolve("b.example").await.expect("b"),
        Credentials::basic("from-store", "s2")
    );
    // Without a store, auths answers.
    let no_store = r#"{"auths": {"b.example": {"username": "from-auths", "password": "s3"}}, "credHelpers": {"a.example": "specific"}}"#;
    let cfg = DockerConfig::from_json(no_store)
        .expect("parse")
        .helper_path(search_path(dir.path()));
    assert_eq!(
        cfg.resolve("b.example").await.expect("b"),
        Credentials::basic("from-auths", "s3")
    );
}

#[tokio::test]
async fn missing_helper_is_named() {
    let dir = helpers(&[]);
    let cfg = DockerConfig::from_json(r#"{"credHelpers":{"reg.example":"nosuchhelper"}}"#)
        .expect("parse")
        .helper_path(search_path(dir.path()));
    match cfg.resolve("reg.example").await {
        Err(e @ Error::CredentialHelperMissing { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("docker-credential-nosuchhelper") && msg.contains("reg.example"),
                "{msg}"
            );
            assert!(e.is_config());
        }
        other => panic!("expected CredentialHelperMissing, got {other:?}"),
    }
}

#[tokio::test]
async fn failing_helper_reports_its_message() {
    let dir = helpers(&[("broken", "cat >/dev/null; echo 'keychain is locked' >&2; exit 3")]);
    let cfg = DockerConfig::from_json(r#"{"credsStore":"broken"}"#)
        .expect("parse")
        .helper_path(search_path(dir.path()));
    match cfg.resolve("reg.example").await {
        Err(Error::CredentialHelperFailed {
            helper,
            registry,
            message,
        }) => {
            assert_eq!((helper.as_str(), registry.as_str()), ("broken", "reg.example"));
            assert!(
                message.contains("keychain is locked") && message.contains('3'),
                "{message}"
            );
        }
        other => panic!("expected CredentialHelperFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_output_is_an_error_that_does_not_echo_it() {
    let dir = helpers(&[(
        "garbage",
        "cat >/dev/null; echo 'user=admin password=leaked-secret-77'",
    )]);
    let cfg = DockerConfig::from_json(r#"{"credsStore":"garbage"}"#)
        .expect("parse")
        .helper_path(search_path(dir.path()));
    let err = cfg.resolve("reg.example").await.expect_err("garbage");
    assert!(matches!(err, Error::CredentialHelperOutput { .. }), "{err:?}");
    assert!(
        !err.to_string().contains("leaked-secret-77") && !format!("{err:?}").contains("leaked-secret-77")
    );
}

#[tokio::test]
async fn helper_names_that_are_paths_are_refused() {
    let cfg = DockerConfig::from_json(r#"{"credsStore":"../../tmp/evil"}"#).expect("parse");
    match cfg.resolve("reg.example").await {
        Err(Error::CredentialHelperFailed { message, .. }) => {
            assert!(message.contains("plain name"), "{message}");
        }
        other => panic!("expected refusal, got {other:?}"),
    }
}
