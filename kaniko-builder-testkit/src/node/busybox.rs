//! A busybox base image for Dockerfiles with `RUN`, built with buildah from `busybox-static`.

use std::path::Path;

use anyhow::{Context as _, bail};
use tokio::process::Command;

use crate::TestRegistry;

/// Where Debian's `busybox-static` installs the static binary.
const BUSYBOX: &str = "/bin/busybox";

/// Builds a scratch image holding the static `/bin/busybox` with `busybox --install -s /bin`
/// (so `/bin/sh` and every applet exist), pushes it to `registry` as `repo:tag` and returns
/// the pushed manifest digest (`sha256:…`). Uses buildah (chroot isolation, vfs storage in a
/// temp dir that is removed afterwards) and the registry's credentials and CA.
///
/// # Errors
/// `/bin/busybox` missing (install `busybox-static`), buildah failing, the push failing.
pub async fn push_busybox_base(registry: &TestRegistry, repo: &str, tag: &str) -> anyhow::Result<String> {
    let dir = tempfile::Builder::new()
        .prefix("kb-busybox-")
        .tempdir()
        .context("create temp dir")?;
    let buildah = super::builder::Buildah::prepare(dir.path(), None, &[])?;
    let image = format!("{}/{repo}:{tag}", registry.host());
    bud_busybox(&buildah, dir.path(), &image).await?;

    let digest_file = dir.path().join("digest");
    let mut push = buildah.command("push");
    push.arg(format!("--digestfile={}", digest_file.display()));
    match registry.ca_dir() {
        Some(ca_dir) => push.arg(format!("--cert-dir={}", ca_dir.display())),
        None => push.arg("--tls-verify=false"),
    };
    // The credentials go in a file, never on a command line.
    let authfile = dir.path().join("auth.json");
    std::fs::write(&authfile, registry.docker_config_json()).context("write auth file")?;
    push.arg(format!("--authfile={}", authfile.display()));
    push.arg(&image).arg(format!("docker://{image}"));
    run(push, "buildah push (busybox base)").await?;
    let digest = std::fs::read_to_string(&digest_file).context("read the pushed digest")?;
    Ok(digest.trim().to_owned())
}

/// Builds the same busybox image into the buildah storage at `root` (a node's
/// [`NodeOptions::buildah_root`](super::NodeOptions::buildah_root)) as `name`, e.g.
/// `docker.io/library/busybox:1.36`: a base image the node then has without pulling it, as a
/// kubelet has a pre-pulled image. Nothing is pushed.
///
/// # Errors
/// `/bin/busybox` missing (install `busybox-static`), buildah failing.
pub(crate) async fn preload_busybox(root: &Path, name: &str) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("kb-busybox-")
        .tempdir()
        .context("create temp dir")?;
    let buildah = super::builder::Buildah::prepare(dir.path(), Some(root), &[])?;
    bud_busybox(&buildah, dir.path(), name).await
}

/// `buildah bud` of the busybox image as `tag`, with its context under `dir`.
async fn bud_busybox(buildah: &super::builder::Buildah, dir: &Path, tag: &str) -> anyhow::Result<()> {
    let busybox = Path::new(BUSYBOX);
    if !busybox.is_file() {
        bail!("{BUSYBOX} is missing: install busybox-static");
    }
    let context = dir.join("context");
    std::fs::create_dir_all(&context)?;
    std::fs::copy(busybox, context.join("busybox")).context("copy busybox")?;
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )?;
    let mut bud = buildah.command("bud");
    bud.arg("--format=docker")
        .arg("--layers=false")
        .arg(format!("--tag={tag}"))
        .arg(&context);
    run(bud, "buildah bud (busybox base)").await
}

async fn run(mut command: Command, what: &str) -> anyhow::Result<()> {
    let out = command.output().await.with_context(|| format!("run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
