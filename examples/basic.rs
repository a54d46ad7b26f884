//! The main job, as far as the project goes today: ask the target registry whether `image:tag`
//! exists and report whether a build would run.
//!
//! ```text
//! cargo run --example basic -- --image registry.local:5000/team/app:v1 --insecure-registry registry.local:5000
//! ```
//!
//! Flags fall back to the original tool's configmap keys: `DOCKER_IMAGENAME`, `DOCKER_IMAGETAG`,
//! `FORCE_BUILD` (`Y` forces). With nothing set it probes the seed's `example:v1.0.0`.
#![allow(clippy::print_stdout, clippy::print_stderr)] // an example prints its result

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kaniko_builder::registry::{DockerConfig, RegistryClient, RegistrySettings};
use kaniko_builder::{ImageRef, Probe};

#[derive(Parser, Debug)]
#[command(about = "Probe the target registry and say whether kaniko-builder would build")]
struct Args {
    /// Image to build, `name[:tag]`. Default: $DOCKER_IMAGENAME:$DOCKER_IMAGETAG, else example:v1.0.0.
    #[arg(long)]
    image: Option<String>,
    /// Build even when the tag exists (the seed's FORCE_BUILD=Y).
    #[arg(long, env = "FORCE_BUILD", value_parser = parse_force, default_value = "N", num_args = 0..=1, default_missing_value = "Y")]
    force: bool,
    /// A docker config.json (or a directory holding one). Default: $DOCKER_CONFIG, ~/.docker.
    #[arg(long)]
    docker_config: Option<PathBuf>,
    /// A registry (host:port) spoken to over plain HTTP. Repeatable.
    #[arg(long)]
    insecure_registry: Vec<String>,
    /// Extra CA certificate (PEM) trusted for every registry.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// `text` for people, `json` for scripts.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    output: String,
}

fn parse_force(v: &str) -> Result<bool, String> {
    match v.trim() {
        "Y" | "y" | "yes" | "true" | "1" => Ok(true),
        "N" | "n" | "no" | "false" | "0" | "" => Ok(false),
        other => Err(format!("FORCE_BUILD must be Y or N, not {other:?}")),
    }
}

fn default_image() -> String {
    let name = std::env::var("DOCKER_IMAGENAME").unwrap_or_else(|_| "example".to_owned());
    let tag = std::env::var("DOCKER_IMAGETAG").unwrap_or_else(|_| "v1.0.0".to_owned());
    format!("{name}:{tag}")
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let json = args.output == "json";
    match run(&args).await {
        Ok((image, probe)) => {
            report(&image, &probe, args.force, json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "outcome": "failed", "reason": e.to_string() })
                );
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<(ImageRef, Probe)> {
    let image: ImageRef = args.image.clone().unwrap_or_else(default_image).parse()?;
    let config = match &args.docker_config {
        Some(path) => DockerConfig::from_path(path)?,
        None => DockerConfig::load_default()?,
    };
    let mut defaults = RegistrySettings::default();
    if let Some(ca) = &args.ca_cert {
        defaults = defaults.ca_pem(std::fs::read_to_string(ca)?);
    }
    let mut builder = RegistryClient::builder()
        .docker_config(config)
        .default_settings(defaults);
    for host in &args.insecure_registry {
        builder = builder.insecure_registry(host);
    }
    let probe = builder.build()?.probe(&image).await?;
    Ok((image, probe))
}

fn report(image: &ImageRef, probe: &Probe, force: bool, json: bool) {
    let (decision, reason) = match (probe, force) {
        (Probe::Exists(_), false) => ("skip", "the tag exists in the registry"),
        (Probe::Exists(_), true) => ("build", "the tag exists, but the build is forced"),
        _ => ("build", "the tag does not exist in the registry"),
    };
    let digest = probe.manifest().map(|m| m.digest.to_string());
    if json {
        let out = serde_json::json!({
            "outcome": "planned", "decision": decision, "image": image.to_string(),
            "digest": digest, "reason": reason,
        });
        println!("{out}");
        return;
    }
    println!("image:    {image}");
    match probe.manifest() {
        Some(m) => println!("registry: exists as {} ({})", m.digest, m.media_type),
        None => println!("registry: absent"),
    }
    println!("decision: {decision} ({reason})");
}
