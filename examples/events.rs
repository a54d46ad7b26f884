//! Consume a build's event stream: every step and the live log, as an embedder would show it.
//!
//! ```text
//! cargo run --example events -- --image registry.local:5000/team/app:v1 --context ./app \
//!     --insecure-registry registry.local:5000
//! ```
//!
//! Prints one line per event on stdout (the log lines indented), then the outcome.
#![allow(clippy::print_stdout, clippy::print_stderr)] // an example prints its result

use std::path::PathBuf;

use clap::Parser;
use futures::StreamExt as _;
use kaniko_builder::{Build, BuildConfig, BuildEvent, ContextSource, ImageRef};

#[derive(Parser, Debug)]
#[command(about = "Run one build and print its events as they come")]
struct Args {
    /// Image to build, `[registry/]name:tag`.
    #[arg(long)]
    image: String,
    /// Local directory sent as the build context.
    #[arg(long)]
    context: PathBuf,
    /// Dockerfile, relative to the context.
    #[arg(long, default_value = "Dockerfile")]
    dockerfile: String,
    /// A registry (host:port) spoken to over plain HTTP. Repeatable.
    #[arg(long)]
    insecure_registry: Vec<String>,
    /// Build even when the tag exists.
    #[arg(long)]
    force: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut b = BuildConfig::builder(args.image.parse::<ImageRef>()?)
        .context(ContextSource::LocalDir(args.context))
        .dockerfile(args.dockerfile)
        .force(args.force);
    for host in &args.insecure_registry {
        b = b.insecure_registry(host.clone());
    }
    let mut build = Build::new(b.build()?);
    let mut events = build.events();
    let run = tokio::spawn(build.run());
    while let Some(event) = events.next().await {
        match event {
            BuildEvent::Log { container, line } => println!("    {container}: {line}"),
            BuildEvent::Probed { exists, digest } => println!("probed: exists={exists} {digest:?}"),
            BuildEvent::Pushed { digest } => println!("pushed {digest}"),
            BuildEvent::Verified { digest } => println!("verified {digest}"),
            other => println!("{}", serde_json::to_string(&other)?),
        }
    }
    let outcome = run.await??;
    println!("outcome: {outcome:?}");
    Ok(())
}
