//! A host program embedding kaniko-builder with the `aws-lc-rs` provider feature (see
//! `Cargo.toml`). With `KUBECONFIG` pointing at a cluster:
//!
//! ```text
//! host-aws-lc IMAGE CA_PEM_FILE DOCKER_CONFIG_DIR
//! ```
//!
//! probes IMAGE over TLS and asks the API server for its version through `k8s::client`, first
//! with no process-wide rustls provider installed (the library must not install one), then after
//! the program's own `rustls::ClientConfig::builder()` (which installs rustls' default, and
//! panics if the library compiled a second provider in). Prints one `key=value` line a step;
//! exits non-zero on any failure.
#![allow(clippy::print_stdout)]

use kaniko_builder::registry::{DockerConfig, Probe, RegistryClient, RegistrySettings};
use rustls::crypto::CryptoProvider;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: host-aws-lc IMAGE CA_PEM_FILE DOCKER_CONFIG_DIR";
    let (image, ca, docker) = match (args.next(), args.next(), args.next()) {
        (Some(i), Some(c), Some(d)) => (i, c, d),
        _ => return Err(usage.into()),
    };
    let ca = std::fs::read_to_string(ca)?;

    // 1. The library alone: it picks its provider from its features and installs none.
    println!(
        "process_provider_before={}",
        CryptoProvider::get_default().is_some()
    );
    library_calls("library", &image, &ca, &docker).await?;
    println!(
        "process_provider_after_library={}",
        CryptoProvider::get_default().is_some()
    );
    if CryptoProvider::get_default().is_some() {
        return Err("the library installed a process-wide crypto provider".into());
    }

    // 2. The program's own rustls use, as any host would have it.
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    println!(
        "host_client_config=ok cipher_suites={}",
        config.crypto_provider().cipher_suites.len()
    );

    // 3. The library again, now that the program has a process default (which it then uses).
    library_calls("after_host", &image, &ca, &docker).await?;
    println!("done=ok");
    Ok(())
}

async fn library_calls(step: &str, image: &str, ca: &str, docker: &str) -> Result<()> {
    let client = RegistryClient::builder()
        .docker_config(DockerConfig::from_path(docker)?)
        .default_settings(RegistrySettings::default().ca_pem(ca))
        .build()?;
    match client.probe(&image.parse()?).await? {
        Probe::Exists(m) => println!("{step}_probe=exists digest={}", m.digest),
        other => return Err(format!("{step}: expected the tag to exist, got {other:?}").into()),
    }
    let kube = kaniko_builder::k8s::client::infer().await?;
    let version = kube.apiserver_version().await?;
    println!("{step}_apiserver=ok version={}.{}", version.major, version.minor);
    Ok(())
}
