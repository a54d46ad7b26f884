//! The library passes its rustls provider explicitly: it works whether or not the host program
//! installed a process-wide provider, and it never installs one behind the host's back.
//! (This binary starts no test harness that would install one first.)

use kaniko_builder_registry::{DockerConfig, RegistryClient, RegistrySettings};
use rustls::crypto::CryptoProvider;

fn build() -> RegistryClient {
    RegistryClient::builder()
        .docker_config(DockerConfig::anonymous())
        .registry(
            "tls.example:5000",
            RegistrySettings::default().skip_tls_verify(true),
        )
        .build()
        .expect("client builds")
}

#[test]
fn works_without_and_with_a_process_provider() {
    assert!(
        CryptoProvider::get_default().is_none(),
        "nothing installed a provider yet"
    );
    let _client = build();
    assert!(
        CryptoProvider::get_default().is_none(),
        "the library must not install a process provider"
    );

    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("host installs its provider");
    let _client = build();
    let installed = CryptoProvider::get_default().expect("installed");
    let used = kaniko_builder_registry::__tls::crypto_provider().expect("a provider");
    assert!(
        std::sync::Arc::ptr_eq(installed, &used),
        "the program's process default is the one used"
    );
}
