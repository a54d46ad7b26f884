//! A container run as a runtime would: in its own root ([`super::rootfs`]) made from its image
//! ([`super::image`]), with the Pod's volumes, env and security context, running the container's
//! own `command`/`args`. The kaniko executor inside is the one stand-in ([`super::executor`]).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use kaniko_builder_k8s::manifest::{BUILDER_CONTAINER, INIT_CONTAINER, TERMINATION_LOG};

use super::Shared;
use super::image::ImageKind;
use super::rootfs::ContainerRoot;
use super::runtime::{Log, run_logged};
use super::status::Exit;
use super::volumes::Volumes;

/// The kubelet's cap on a termination message.
const MAX_MESSAGE: usize = 4096;

/// Everything a container run needs.
#[derive(Debug)]
pub(super) struct Ctx<'a> {
    pub(super) shared: &'a Shared,
    pub(super) pod: &'a Pod,
    pub(super) container: &'a Container,
    pub(super) env: &'a [(String, String)],
    pub(super) volumes: &'a Volumes,
    pub(super) log: &'a Log,
    /// The local file behind the container's termination message path.
    pub(super) termination_log: &'a Path,
    /// A private scratch directory of this container in the Pod's directory.
    pub(super) scratch: &'a Path,
}

impl Ctx<'_> {
    /// The value of environment variable `name` (the last definition wins).
    pub(super) fn env(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The local path of an in-container path that is on a volume.
    pub(super) fn resolve(&self, path: &str) -> Option<PathBuf> {
        self.volumes.resolve(self.container, path)
    }

    /// The container's termination message path (default `/dev/termination-log`).
    pub(super) fn termination_message_path(&self) -> &str {
        self.container
            .termination_message_path
            .as_deref()
            .unwrap_or(TERMINATION_LOG)
    }
}

/// Runs the container to its end and returns how it ended (the message is what it wrote to its
/// termination message path).
pub(super) async fn run(ctx: &Ctx<'_>) -> Exit {
    let Some(kind) = ImageKind::of(ctx.container) else {
        return cannot_run(
            ctx,
            format!(
                "stand-in node runs only crane's and kaniko's debug images (the {INIT_CONTAINER} and \
                 {BUILDER_CONTAINER} containers of a kaniko build), not {}",
                ctx.container.image.as_deref().unwrap_or_default()
            ),
        )
        .await;
    };
    if kind == ImageKind::KanikoDebug
        && let Err(e) = super::executor::prepare(ctx.scratch).await
    {
        return cannot_run(ctx, format!("stand-in node cannot set up the executor: {e:#}")).await;
    }
    let root = match ContainerRoot::prepare(ctx, kind, &ctx.shared.images).await {
        Ok(root) => root,
        Err(message) => return cannot_run(ctx, message).await,
    };
    let command = root.command(ctx.container);
    let code = match kind {
        ImageKind::CraneDebug => run_logged(command, ctx.log, &ctx.shared.procs).await,
        ImageKind::KanikoDebug => super::executor::run(ctx, command).await,
    };
    match code {
        Ok(code) => Exit::code(code, read_message(ctx.termination_log).await),
        Err(e) => cannot_run(ctx, format!("stand-in node cannot start the container: {e:#}")).await,
    }
}

/// A container the runtime could not start: exit code 128, reason `ContainerCannotRun`.
async fn cannot_run(ctx: &Ctx<'_>, message: String) -> Exit {
    ctx.log.line(&message).await;
    Exit {
        code: 128,
        reason: "ContainerCannotRun".to_owned(),
        message: Some(message),
    }
}

/// The termination message: at most 4096 bytes of the file, as the kubelet reads it.
async fn read_message(path: &Path) -> Option<String> {
    let bytes = tokio::fs::read(path).await.ok()?;
    let cut = &bytes[..bytes.len().min(MAX_MESSAGE)];
    Some(String::from_utf8_lossy(cut).into_owned())
}
