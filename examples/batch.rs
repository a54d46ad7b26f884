//! Rebuild a fleet of images at once, as after a base-image change: one `BuildSet`, probes
//! batched, identical targets built once, a bounded number of Jobs at a time.
//!
//! ```text
//! cargo run --example batch -- --context ./app --insecure-registry registry.local:5000 \
//!     registry.local:5000/team/a:v2 registry.local:5000/team/b:v2 registry.local:5000/team/a:v2
//! ```
//!
//! Each image is built from the same context; one line per image on stdout, in input order.
#![allow(clippy::print_stdout, clippy::print_stderr)] // an example prints its result

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kaniko_builder::{BuildConfig, BuildOutcome, BuildSet, ContextSource, ImageRef};

#[derive(Parser, Debug)]
#[command(about = "Build many images with one BuildSet")]
struct Args {
    /// Images to build, `[registry/]name:tag`.
    #[arg(required = true)]
    images: Vec<String>,
    /// Local directory sent as every build's context.
    #[arg(long)]
    context: PathBuf,
    /// Dockerfile, relative to the context.
    #[arg(long, default_value = "Dockerfile")]
    dockerfile: String,
    /// Namespace of the builds.
    #[arg(long, default_value = "kaniko")]
    namespace: String,
    /// A registry (host:port) spoken to over plain HTTP. Repeatable.
    #[arg(long)]
    insecure_registry: Vec<String>,
    /// Jobs at a time.
    #[arg(long, default_value_t = kaniko_builder::DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Cancel the others at the first failure.
    #[arg(long)]
    fail_fast: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut configs = Vec::new();
    for image in &args.images {
        let mut b = BuildConfig::builder(image.parse::<ImageRef>()?)
            .context(ContextSource::LocalDir(args.context.clone()))
            .dockerfile(args.dockerfile.clone())
            .namespace(args.namespace.clone());
        for host in &args.insecure_registry {
            b = b.insecure_registry(host.clone());
        }
        configs.push(b.build()?);
    }
    let results = BuildSet::new(configs)
        .concurrency(args.concurrency)
        .fail_fast(args.fail_fast)
        .run()
        .await?;
    let mut failed = false;
    for (image, result) in args.images.iter().zip(results) {
        match result {
            Ok(BuildOutcome::Skipped { digest, .. }) => println!("{image}\tskipped\t{digest}"),
            Ok(outcome) => println!("{image}\tbuilt\t{}", outcome.digest()),
            Err(e) => {
                failed = true;
                println!("{image}\tfailed\t{}", e.kind());
                eprintln!("{e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
