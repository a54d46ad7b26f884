//! One call builds every platform in parallel and pushes one image index.
//!
//! ```text
//! cargo run --example multiplatform -- --image registry.local:5000/team/app:v1 --context ./app \
//!     --platform linux/amd64,linux/arm64 --insecure-registry registry.local:5000
//! ```
//!
//! Each platform is built by its own Job on a node of that platform (`kubernetes.io/os` and
//! `kubernetes.io/arch` node selector) with kaniko's `--custom-platform`, pushed by digest; then
//! the index goes under the tag. Prints each platform's steps as they come, then each platform's
//! digest and the index's (or each platform's result when one failed: no index is pushed then).
#![allow(clippy::print_stdout, clippy::print_stderr)] // an example prints its result

use std::path::PathBuf;

use clap::Parser;
use futures::StreamExt as _;
use kaniko_builder::{
    Build, BuildConfig, BuildEvent, BuildOutcome, ContextSource, Error, FailureReason, ImageRef,
};

#[derive(Parser, Debug)]
#[command(about = "Build an image for several platforms and push one index under its tag")]
struct Args {
    /// Image to build, `[registry/]name:tag`.
    #[arg(long)]
    image: String,
    /// Local directory sent as the build context.
    #[arg(long)]
    context: PathBuf,
    /// Platforms, comma-separated.
    #[arg(long, default_value = "linux/amd64,linux/arm64")]
    platform: String,
    /// A registry (host:port) spoken to over plain HTTP. Repeatable.
    #[arg(long)]
    insecure_registry: Vec<String>,
    /// Build even when the tag holds every platform.
    #[arg(long)]
    force: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let platforms = kaniko_builder::core::config::seed::parse_platforms(&args.platform)?;
    let mut b = BuildConfig::builder(args.image.parse::<ImageRef>()?)
        .context(ContextSource::LocalDir(args.context))
        .platforms(platforms)
        .force(args.force);
    for host in &args.insecure_registry {
        b = b.insecure_registry(host.clone());
    }
    let mut build = Build::new(b.build()?);
    let mut events = build.events();
    let run = tokio::spawn(build.run());
    while let Some(event) = events.next().await {
        match event {
            BuildEvent::Platform { platform, step } if !step.is_log() => {
                println!("{platform}: {}", serde_json::to_string(&step)?);
            }
            BuildEvent::IndexPushed { digest, platforms } => println!("index {digest} for {platforms:?}"),
            _ => {}
        }
    }
    match run.await? {
        Ok(BuildOutcome::Built {
            digest, platforms, ..
        }) => {
            for image in platforms {
                println!("{}: {}", image.platform, image.digest);
            }
            println!("built index {digest}");
        }
        Ok(other) => println!("skipped: the tag holds {}", other.digest()),
        Err(Error::Build(failure)) => {
            if let FailureReason::Platforms { results } = failure.reason() {
                for r in results {
                    println!("{}: {:?} {:?}", r.platform, r.digest, r.failure);
                }
            }
            anyhow::bail!("{failure}");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
