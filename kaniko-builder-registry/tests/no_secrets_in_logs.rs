//! Secrets never reach `tracing` output (at TRACE, including reqwest, hyper, h2 and rustls
//! logs), `Debug` or error messages, across every credential kind and against real registries.

use base64::Engine as _;
use kaniko_builder_registry::{DockerConfig, ImageRef, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::{RegistryAuth, TestRegistry};

fn client(reg: &TestRegistry, json: &str) -> RegistryClient {
    RegistryClient::builder()
        .docker_config(DockerConfig::from_json(json).expect("config"))
        .registry(
            reg.host(),
            RegistrySettings::default().ca_pem(reg.ca_pem().expect("tls registry has a CA")),
        )
        .build()
        .expect("client")
}

fn auth_json(reg: &TestRegistry, entry: &str) -> String {
    format!(r#"{{"auths":{{"{}":{{{entry}}}}}}}"#, reg.host())
}

#[tokio::test]
async fn no_secret_in_trace_logs_debug_or_errors() {
    let captured = kaniko_builder_testkit::capture_trace_logs();

    let wrong_password = "wr0ng-Pa55-4a1b";
    kaniko_builder_testkit::ledger::register("no_secrets_in_logs.rs wrong password", wrong_password);
    let mut shown = String::new();
    let basic = TestRegistry::start(RegistryAuth::Basic)
        .await
        .expect("basic registry");
    let token = TestRegistry::start(RegistryAuth::Token)
        .await
        .expect("token registry");
    for reg in [&basic, &token] {
        reg.push_image("app", "v1", b"x").await.expect("push");
        let image: ImageRef = format!("{}/app:v1", reg.host()).parse().expect("ref");
        let entries = [
            format!(
                r#""auth":"{}""#,
                base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    TestRegistry::USERNAME,
                    TestRegistry::PASSWORD
                ))
            ),
            format!(
                r#""username":"{}","password":"{}""#,
                TestRegistry::USERNAME,
                TestRegistry::PASSWORD
            ),
            format!(
                r#""username":"{}","password":"{wrong_password}""#,
                TestRegistry::USERNAME
            ),
            format!(r#""identitytoken":"{}""#, TestRegistry::REFRESH_TOKEN),
        ];
        for entry in entries {
            let c = client(reg, &auth_json(reg, &entry));
            let result = c.probe(&image).await;
            shown.push_str(&format!("{c:?}\n{result:?}\n"));
            if let Err(e) = &result {
                shown.push_str(&format!("{e}\n"));
            }
            let creds = c.credentials_for(&image).await.expect("credentials");
            shown.push_str(&format!("{creds:?} {creds:#?}\n"));
            shown.push_str(&format!("{:?}\n", c.docker_config()));
        }
    }
    let logs = String::from_utf8(captured.bytes()).expect("utf8 logs");
    // The capture must really contain the HTTP stack's trace output, or this test proves nothing.
    assert!(
        logs.contains("TRACE") && logs.contains("hyper"),
        "trace output was not captured"
    );
    assert!(shown.contains("<redacted>"), "{shown}");

    // Every secret the testkit made or knows: passwords, their base64 forms, the issued
    // tokens' signatures, the issuer's signing key, TLS keys.
    let secrets = kaniko_builder_testkit::ledger::secrets();
    assert!(
        secrets
            .iter()
            .any(|s| s.label.starts_with("token issuer: issued token")),
        "the issued tokens are in the ledger"
    );
    for (what, text) in [("tracing output", &logs), ("Debug/Display", &shown)] {
        for secret in &secrets {
            assert!(!text.contains(&secret.value), "{what} contains {}", secret.label);
        }
        // Issued tokens are JWTs: base64 of `{"` starts every one of them.
        assert!(!text.contains("eyJ"), "{what} contains a JWT");
    }
}
