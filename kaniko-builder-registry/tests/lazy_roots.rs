//! The system's trust roots are read only when a TLS connection needs them: not for plain HTTP,
//! not for a registry whose chain ends at its own CA; and when a chain does need them before they
//! were read, the client reads them (off the runtime) and tries again, so the answer is the
//! verdict on the chain, never "not loaded yet". (One test: the roots are read once per process.)

use kaniko_builder_registry::__tls::system_roots_loaded;
use kaniko_builder_registry::{DockerConfig, Probe, RegistryClient, RegistrySettings};
use kaniko_builder_testkit::{RegistryAuth, TestCa, TestRegistry};

fn client(host: &str, settings: RegistrySettings, config: DockerConfig) -> RegistryClient {
    RegistryClient::builder()
        .docker_config(config)
        .registry(host, settings)
        .build()
        .expect("client")
}

#[tokio::test]
async fn system_roots_are_read_only_for_a_chain_that_needs_them() -> anyhow::Result<()> {
    kaniko_builder_testkit::init_tracing();
    let (plain, tls) = tokio::try_join!(
        TestRegistry::start(RegistryAuth::Anonymous),
        TestRegistry::start(RegistryAuth::Token)
    )?;
    let plain_digest = plain.push_image("team/app", "v1", b"plain").await?;
    let tls_digest = tls.push_image("team/app", "v1", b"tls").await?;
    let config = DockerConfig::from_json(&tls.docker_config_json())?;

    let c = client(
        &plain.host(),
        RegistrySettings::default().plain_http(true),
        DockerConfig::anonymous(),
    );
    let probe = c.probe(&format!("{}/team/app:v1", plain.host()).parse()?).await?;
    assert!(
        matches!(&probe, Probe::Exists(m) if m.digest.to_string() == plain_digest),
        "{probe:?}"
    );
    assert!(!system_roots_loaded(), "plain HTTP needs no roots");

    let image = format!("{}/team/app:v1", tls.host()).parse()?;
    let own_ca = RegistrySettings::default().ca_pem(tls.ca_pem().expect("tls"));
    let probe = client(&tls.host(), own_ca, config.clone()).probe(&image).await?;
    assert!(
        matches!(&probe, Probe::Exists(m) if m.digest.to_string() == tls_digest),
        "{probe:?}"
    );
    assert!(
        !system_roots_loaded(),
        "the registry's own CA verified its chain (and the token realm's)"
    );

    // A CA that did not sign the registry's certificate: the system roots are needed, read, and
    // the verdict is theirs (an unknown issuer).
    let other_ca = RegistrySettings::default().ca_pem(TestCa::new().ca_pem());
    let err = client(&tls.host(), other_ca, config)
        .probe(&image)
        .await
        .expect_err("no root trusts the registry's certificate");
    assert!(system_roots_loaded(), "read when the chain needed them");
    assert!(err.is_tls(), "{err:?}");
    let text = format!("{err:?} {err}");
    assert!(!text.contains("not loaded"), "{text}");
    Ok(())
}
