//! Render the Kubernetes objects of one build as YAML for `kubectl apply -f -` (GitOps).
//!
//! ```text
//! cargo run --example render -- --image registry.local:5000/team/app:v1 \
//!     --docker-config ~/.docker --context pvc:sources --dockerfile docker/Dockerfile
//! cargo run --example render -- --image example:v1.0.0 --seed-compatible | kubectl apply -f -
//! ```
//!
//! Credentials from `--docker-config` go into the Secret only (base64, as Kubernetes requires).
//! Without `--image`, the original tool's keys are read from the environment: `DOCKER_IMAGENAME`,
//! `DOCKER_IMAGETAG`, `DOCKER_FILENAME`, `FORCE_BUILD`.
#![allow(clippy::print_stdout)] // an example's output is its point

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Parser;
use kaniko_builder::core::ImageRef;
use kaniko_builder::core::config::{BuildConfig, ContextSource};
use kaniko_builder::k8s::manifest::{self, JobOptions};
use kaniko_builder::registry::DockerConfig;

#[derive(Parser, Debug)]
#[command(about = "Print the Kubernetes manifests of a kaniko build as multi-document YAML")]
struct Args {
    /// Image to build and push, `name[:tag]`. Default: the seed's keys from the environment.
    #[arg(long)]
    image: Option<String>,
    /// A docker config.json, or a directory holding one, whose credentials go into the Secret.
    #[arg(long)]
    docker_config: Option<PathBuf>,
    /// The build context: `hostpath:/dir`, `pvc:NAME[/SUBDIR]`, `dir:LOCAL_DIR` (uploaded later),
    /// `git:URL[#REF]` or `url:s3://…|gs://…|https://…tar.gz`.
    #[arg(long, default_value = "hostpath:/workspace")]
    context: String,
    /// The Dockerfile, relative to the context.
    #[arg(long)]
    dockerfile: Option<String>,
    /// Build even when the image exists.
    #[arg(long)]
    force: bool,
    /// The namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Reproduce the original tool's object names.
    #[arg(long)]
    seed_compatible: bool,
}

fn parse_context(s: &str) -> anyhow::Result<ContextSource> {
    let Some((kind, rest)) = s.split_once(':') else {
        bail!("--context {s:?}: expected KIND:VALUE with KIND one of hostpath, pvc, dir, git, url");
    };
    Ok(match kind {
        "hostpath" => ContextSource::HostPath(PathBuf::from(rest)),
        "pvc" => match rest.split_once('/') {
            Some((claim, sub)) => ContextSource::Pvc {
                claim: claim.to_owned(),
                sub_path: Some(sub.to_owned()),
            },
            None => ContextSource::Pvc {
                claim: rest.to_owned(),
                sub_path: None,
            },
        },
        "dir" => ContextSource::LocalDir(PathBuf::from(rest)),
        "git" => {
            let (url, reference) = match rest.split_once('#') {
                Some((u, r)) => (u, Some(r.to_owned())),
                None => (rest, None),
            };
            ContextSource::Git {
                url: url.to_owned(),
                reference,
                sub_path: None,
            }
        }
        "url" => ContextSource::Url(rest.to_owned()),
        other => bail!("--context kind {other:?} is not one of hostpath, pvc, dir, git, url"),
    })
}

/// The bytes of `config.json`, validated by the registry crate's parser (which never prints them).
fn read_docker_config(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = if path.is_dir() {
        path.join("config.json")
    } else {
        path.to_owned()
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    DockerConfig::from_json(&text).with_context(|| format!("parsing {}", file.display()))?;
    Ok(text.into_bytes())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let mut builder = match &args.image {
        Some(image) => BuildConfig::builder(ImageRef::parse(image)?),
        None => kaniko_builder::k8s::seed::from_env(None)?.into_builder(),
    };
    builder = builder.context(parse_context(&args.context)?);
    if let Some(dockerfile) = &args.dockerfile {
        builder = builder.dockerfile(dockerfile.clone());
    }
    if args.force {
        builder = builder.force(true);
    }
    if let Some(namespace) = &args.namespace {
        builder = builder.namespace(namespace.clone());
    }
    let config = builder.build()?;

    let docker_config = args
        .docker_config
        .as_deref()
        .map(read_docker_config)
        .transpose()?;
    let options = JobOptions::default().seed_compatible(args.seed_compatible);
    // A multi-platform build (DOCKER_PLATFORMS) is one Job per platform.
    if config.platforms().is_empty() {
        print!(
            "{}",
            manifest::render(&config, &options, docker_config.as_deref())?.to_yaml()?
        );
    } else {
        let jobs = manifest::render_platforms(&config, &options, docker_config.as_deref())?;
        print!("{}", manifest::platforms_to_yaml(&jobs)?);
    }
    Ok(())
}
