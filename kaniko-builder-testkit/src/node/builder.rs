//! The kaniko executor's stand-in: its arguments translated into `buildah bud` + `buildah push`
//! (called by [`super::executor`] when the real `image-builder` wrapper runs `/kaniko/executor`).
//!
//! - pushed (`--destination`, once per destination): `buildah bud --format=docker …`, then
//!   `buildah push --digestfile=… <image> docker://<destination>`; with `--image-format=oci`
//!   both get `--format=oci`;
//! - written as an OCI layout (`--oci-layout-path=P`, which needs `--image-format=oci`: buildah
//!   writes OCI manifests only there): `buildah push --format=oci --digestfile=… <image>
//!   oci:<P on the node>`, after removing a previous `index.json` there (kaniko writes the
//!   layout afresh, with this one image in its index);
//! - `--custom-platform=os/arch[/variant]` → `buildah bud --platform=…` (without it kaniko
//!   builds for its own machine: the node's platform, passed when it is not this machine's);
//! - `--no-push`: no `docker://` push; `--digest-file=F` gets the digest of the manifest all
//!   the same (of the layout's, else of the first push, else of a push to a scratch `dir:`),
//!   at the termination message path or a file on a volume.

use std::path::{Path, PathBuf};

use kaniko_builder_core::{ImageRef, Platform};
use kaniko_builder_k8s::manifest::DOCKER_CONFIG_DIR;
use tokio::process::Command;

use super::container::Ctx;
use super::options::host_platform;
use super::runtime::run_logged;

/// kaniko's `--image-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ImageFormat {
    /// Docker schema 2 manifests.
    Docker,
    /// OCI manifests.
    Oci,
}

/// What the stand-in understood of a kaniko command line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct KanikoPlan {
    /// The in-container context directory (`dir://` stripped).
    pub(super) context: String,
    pub(super) dockerfile: Option<String>,
    pub(super) destinations: Vec<String>,
    pub(super) build_args: Vec<String>,
    pub(super) target: Option<String>,
    pub(super) labels: Vec<String>,
    pub(super) digest_file: Option<String>,
    /// `--insecure-registry` and `--skip-tls-verify-registry` hosts.
    pub(super) insecure: Vec<String>,
    /// `--custom-platform` (or its deprecated spelling `--customPlatform`).
    pub(super) platform: Option<Platform>,
    pub(super) no_push: bool,
    /// `--oci-layout-path`, in the container.
    pub(super) oci_layout: Option<String>,
    /// `--image-format`; unset, kaniko keeps the base image's format.
    pub(super) image_format: Option<ImageFormat>,
}

/// kaniko's flags that do not change the image the stand-in builds.
const IGNORED: [&str; 4] = ["snapshot-mode", "reproducible", "push-retry", "verbosity"];

/// The message of a container that gets a flag the stand-in cannot honour.
pub(super) fn untranslatable(flag: &str) -> String {
    format!("stand-in node cannot translate kaniko flag {flag}")
}

/// Translates the executor's arguments (`--flag=value` or bare `--flag`, one per element);
/// `Err` names the first argument that cannot be translated (with why, where the flag alone
/// does not say).
pub(super) fn translate(args: &[String]) -> Result<KanikoPlan, String> {
    let mut plan = KanikoPlan {
        context: "/workspace".to_owned(),
        ..KanikoPlan::default()
    };
    let mut layout_arg = None;
    for arg in args {
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(arg.clone());
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (flag, None),
        };
        let value = || value.clone().ok_or_else(|| arg.clone());
        match name {
            "context" => {
                plan.context = value()?
                    .strip_prefix("dir://")
                    .ok_or_else(|| arg.clone())?
                    .to_owned();
            }
            "dockerfile" => plan.dockerfile = Some(value()?),
            "destination" => plan.destinations.push(value()?),
            "build-arg" => plan.build_args.push(value()?),
            "target" => plan.target = Some(value()?),
            "label" => plan.labels.push(value()?),
            "digest-file" => plan.digest_file = Some(value()?),
            "insecure-registry" | "skip-tls-verify-registry" => plan.insecure.push(value()?),
            "custom-platform" | "customPlatform" => {
                plan.platform = Some(value()?.parse().map_err(|_| arg.clone())?);
            }
            // A bool flag: bare, or `=true`/`=false` as cobra takes them.
            "no-push" => {
                plan.no_push = match flag.split_once('=').map(|(_, v)| v) {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(_) => return Err(arg.clone()),
                };
            }
            "oci-layout-path" => {
                plan.oci_layout = Some(value()?);
                layout_arg = Some(arg);
            }
            "image-format" => {
                plan.image_format = Some(match value()?.as_str() {
                    "docker" => ImageFormat::Docker,
                    "oci" => ImageFormat::Oci,
                    _ => return Err(arg.clone()),
                });
            }
            n if n.starts_with("cache") || IGNORED.contains(&n) => {}
            _ => return Err(arg.clone()),
        }
    }
    if plan.destinations.is_empty() && !plan.no_push {
        return Err("(none: --destination is required without --no-push)".to_owned());
    }
    if let Some(arg) = layout_arg
        && plan.image_format != Some(ImageFormat::Oci)
    {
        return Err(format!(
            "{arg} without --image-format=oci (buildah writes only OCI manifests to an OCI layout)"
        ));
    }
    Ok(plan)
}

/// Why a build stopped early.
#[derive(Debug)]
enum Stop {
    /// buildah failed with this exit code (its output is in the log).
    Code(i32),
    /// The stand-in cannot run the build: the container's message.
    Message(String),
}

impl From<String> for Stop {
    fn from(message: String) -> Self {
        Self::Message(message)
    }
}

/// Runs the build the executor was asked for (`args`: its arguments); returns its exit code.
/// A build the stand-in cannot translate fails with exit code 1 and a message saying why.
pub(super) async fn run(ctx: &Ctx<'_>, args: &[String]) -> i32 {
    match build(ctx, args).await {
        Ok(()) => 0,
        Err(Stop::Code(code)) => code,
        Err(Stop::Message(message)) => {
            ctx.log.line(&message).await;
            write_message(ctx, &message).await;
            1
        }
    }
}

async fn write_message(ctx: &Ctx<'_>, message: &str) {
    if let Err(e) = tokio::fs::write(ctx.termination_log, message).await {
        tracing::warn!(error = %e, "write termination log");
    }
}

/// Where `--digest-file` goes.
#[derive(Debug)]
enum DigestFile {
    /// The container's termination message path.
    TerminationLog,
    /// A file on one of the container's volumes (its local path).
    Volume(PathBuf),
}

impl DigestFile {
    fn of(ctx: &Ctx<'_>, file: &str) -> Result<Self, String> {
        if file == ctx.termination_message_path() {
            return Ok(Self::TerminationLog);
        }
        ctx.resolve(file).map(Self::Volume).ok_or_else(|| {
            format!(
                "{}: not the termination message path nor on a volume",
                untranslatable(&format!("--digest-file={file}"))
            )
        })
    }

    /// Writes `digest` (no newline, as kaniko), making the parent directories as kaniko does.
    async fn write(&self, ctx: &Ctx<'_>, digest: &str) -> Result<(), String> {
        match self {
            Self::TerminationLog => write_message(ctx, digest).await,
            Self::Volume(path) => {
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(|e| format!("create {}: {e}", parent.display()))?;
                }
                tokio::fs::write(path, digest)
                    .await
                    .map_err(|e| format!("write the digest file {}: {e}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// The local directory of `--oci-layout-path`, ready for `buildah push … oci:<dir>`: made, and
/// without a previous `index.json`.
async fn layout_dir(ctx: &Ctx<'_>, path: &str) -> Result<PathBuf, String> {
    let flag = || untranslatable(&format!("--oci-layout-path={path}"));
    let dir = ctx
        .resolve(path)
        .ok_or_else(|| format!("{}: not on a volume", flag()))?;
    if dir.to_string_lossy().contains(':') {
        // buildah's `oci:` reference would read it as `oci:path:tag`.
        return Err(format!(
            "{}: the node's path {} holds a ':'",
            flag(),
            dir.display()
        ));
    }
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    match tokio::fs::remove_file(dir.join("index.json")).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("remove the previous {}/index.json: {e}", dir.display()));
        }
        _ => {}
    }
    Ok(dir)
}

/// Translates and runs the build.
async fn build(ctx: &Ctx<'_>, args: &[String]) -> Result<(), Stop> {
    let plan = translate(args).map_err(|flag| untranslatable(&flag))?;
    let digest_file = plan
        .digest_file
        .as_deref()
        .map(|file| DigestFile::of(ctx, file))
        .transpose()?;
    let context = ctx.resolve(&plan.context).ok_or_else(|| {
        format!(
            "stand-in node cannot find the build context {}: not on a volume",
            plan.context
        )
    })?;
    let dockerfile = match plan.dockerfile.as_deref() {
        None => context.join("Dockerfile"),
        Some(f) if f.starts_with('/') => ctx
            .resolve(f)
            .ok_or_else(|| format!("stand-in node cannot find the Dockerfile {f}: not on a volume"))?,
        Some(f) => context.join(f),
    };
    let destinations = plan
        .destinations
        .iter()
        .map(|d| ImageRef::parse(d).map_err(|e| format!("invalid --destination={d}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    // Without --custom-platform kaniko builds for the machine it runs on: the node's platform.
    let node_platform = &ctx.shared.options.platform;
    let platform = plan
        .platform
        .as_ref()
        .or_else(|| (*node_platform != host_platform()).then_some(node_platform));
    let oci = plan.image_format == Some(ImageFormat::Oci);

    let buildah = &ctx.shared.buildah;
    let docker_dir = ctx.env("DOCKER_CONFIG").unwrap_or(DOCKER_CONFIG_DIR);
    let authfile = match ctx.resolve(&format!("{docker_dir}/config.json")) {
        Some(path) if path.is_file() => path,
        // Never the host's own credentials: an empty auth file.
        _ => {
            let empty = ctx.scratch.join("auth.json");
            tokio::fs::write(&empty, r#"{"auths":{}}"#)
                .await
                .map_err(|e| format!("write {}: {e}", empty.display()))?;
            empty
        }
    };
    let insecure =
        |host: &str| plan.insecure.iter().any(|h| h == host) || ctx.shared.options.is_insecure(host);
    let any_insecure = !plan.insecure.is_empty() || !ctx.shared.options.insecure_registries.is_empty();

    let iidfile = ctx.scratch.join("iid");
    let mut bud = buildah.command("bud");
    bud.arg(if oci { "--format=oci" } else { "--format=docker" })
        .arg("--layers=false")
        .arg(format!("--authfile={}", authfile.display()))
        .arg(format!("--iidfile={}", iidfile.display()))
        .arg(format!("--file={}", dockerfile.display()));
    if let Some(platform) = platform {
        bud.arg(format!("--platform={platform}"));
    }
    bud.args(buildah.tls_arg(any_insecure));
    for arg in &plan.build_args {
        bud.arg(format!("--build-arg={arg}"));
    }
    if let Some(target) = &plan.target {
        bud.arg(format!("--target={target}"));
    }
    for label in &plan.labels {
        bud.arg(format!("--label={label}"));
    }
    bud.arg(&context);
    tracing::info!(
        pod = ?ctx.pod.metadata.name,
        context = %context.display(),
        platform = platform.map(tracing::field::display),
        "buildah bud"
    );
    let code = run_logged(bud, ctx.log, &ctx.shared.procs)
        .await
        .map_err(|e| format!("{e:#}"))?;
    if code != 0 {
        return Err(Stop::Code(code));
    }
    let image_id = tokio::fs::read_to_string(&iidfile)
        .await
        .map_err(|e| format!("read {}: {e}", iidfile.display()))?;
    let image_id = image_id.trim();
    let format = oci.then(|| "--format=oci".to_owned());

    let mut digest = None;
    if let Some(path) = &plan.oci_layout {
        let dir = layout_dir(ctx, path).await?;
        tracing::info!(layout = %dir.display(), "buildah push to an OCI layout");
        let target = format!("oci:{}", dir.display());
        digest = Some(push(ctx, image_id, &target, format.as_slice(), "layout").await?);
    }
    if !plan.no_push {
        for (i, destination) in destinations.iter().enumerate() {
            let options: Vec<String> = [
                Some(format!("--authfile={}", authfile.display())),
                buildah.tls_arg(insecure(destination.registry())),
                format.clone(),
            ]
            .into_iter()
            .flatten()
            .collect();
            tracing::info!(%destination, "buildah push");
            let target = format!("docker://{destination}");
            let pushed = push(ctx, image_id, &target, &options, &i.to_string()).await?;
            digest.get_or_insert(pushed);
        }
    }
    if let Some(file) = digest_file {
        let digest = match digest {
            Some(digest) => digest,
            // --no-push and no layout: the digest of the manifest a push would write, from a
            // push to a scratch `dir:` (which keeps Docker manifests as they are; `oci:` would
            // convert them).
            None => {
                let target = format!("dir:{}", ctx.scratch.join("digest-dir").display());
                push(ctx, image_id, &target, format.as_slice(), "scratch").await?
            }
        };
        file.write(ctx, &digest).await?;
    }
    Ok(())
}

/// `buildah push [options] --digestfile=… <image> <target>`; returns the digest it pushed.
/// `name` names the digest file in the container's scratch dir.
async fn push(
    ctx: &Ctx<'_>,
    image_id: &str,
    target: &str,
    options: &[String],
    name: &str,
) -> Result<String, Stop> {
    let digest_file = ctx.scratch.join(format!("digest-{name}"));
    let mut push = ctx.shared.buildah.command("push");
    push.args(options)
        .arg(format!("--digestfile={}", digest_file.display()))
        .arg(image_id)
        .arg(target);
    let code = run_logged(push, ctx.log, &ctx.shared.procs)
        .await
        .map_err(|e| format!("{e:#}"))?;
    if code != 0 {
        return Err(Stop::Code(code));
    }
    let digest = tokio::fs::read_to_string(&digest_file)
        .await
        .map_err(|e| format!("read {}: {e}", digest_file.display()))?;
    Ok(digest.trim().to_owned())
}

/// buildah with the node's storage, policy and registry CAs.
#[derive(Debug, Clone)]
pub(super) struct Buildah {
    root: PathBuf,
    runroot: PathBuf,
    policy: PathBuf,
    cert_dir: Option<PathBuf>,
    tmp: PathBuf,
}

impl Buildah {
    /// Lays out buildah's directories under `dir` (the root may be elsewhere) and writes the
    /// signature policy and the CA bundle.
    pub(super) fn prepare(dir: &Path, root: Option<&Path>, cas: &[String]) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let base = dir.join("buildah");
        let root = root.map_or_else(|| base.join("root"), Path::to_owned);
        let runroot = base.join("runroot");
        let tmp = base.join("tmp");
        for d in [&root, &runroot, &tmp] {
            std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
        }
        let policy = base.join("policy.json");
        std::fs::write(&policy, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#)
            .context("write signature policy")?;
        let cert_dir = if cas.is_empty() {
            None
        } else {
            let d = base.join("certs");
            std::fs::create_dir_all(&d).context("create cert dir")?;
            std::fs::write(d.join("ca.crt"), cas.join("\n")).context("write ca.crt")?;
            Some(d)
        };
        Ok(Self {
            root,
            runroot,
            policy,
            cert_dir,
            tmp,
        })
    }

    /// `buildah --root … --runroot … --storage-driver vfs SUBCOMMAND --signature-policy …`, with
    /// chroot isolation.
    pub(super) fn command(&self, subcommand: &str) -> Command {
        let mut command = Command::new("buildah");
        command
            .env("BUILDAH_ISOLATION", "chroot")
            .env("TMPDIR", &self.tmp)
            .arg(format!("--root={}", self.root.display()))
            .arg(format!("--runroot={}", self.runroot.display()))
            .arg("--storage-driver=vfs")
            .arg(subcommand)
            .arg(format!("--signature-policy={}", self.policy.display()));
        command
    }

    /// `--tls-verify=false` for insecure registries, else `--cert-dir` with the node's CAs.
    pub(super) fn tls_arg(&self, insecure: bool) -> Option<String> {
        if insecure {
            Some("--tls-verify=false".to_owned())
        } else {
            self.cert_dir
                .as_ref()
                .map(|dir| format!("--cert-dir={}", dir.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_rendered_flags_translate() {
        let plan = translate(&args(&[
            "--context=dir:///workspace",
            "--dockerfile=docker/Dockerfile",
            "--destination=r:5000/a:v1",
            "--destination=r:5000/a:latest",
            "--build-arg=A=1",
            "--target=final",
            "--label=k=v",
            "--digest-file=/dev/termination-log",
            "--cache=true",
            "--cache-repo=r:5000/cache",
            "--cache-ttl=6h",
            "--insecure-registry=r:5000",
            "--skip-tls-verify-registry=s:5000",
            "--snapshot-mode=redo",
            "--reproducible",
            "--push-retry=3",
            "--verbosity=debug",
        ]))
        .expect("translatable");
        assert_eq!(
            plan,
            KanikoPlan {
                context: "/workspace".to_owned(),
                dockerfile: Some("docker/Dockerfile".to_owned()),
                destinations: args(&["r:5000/a:v1", "r:5000/a:latest"]),
                build_args: args(&["A=1"]),
                target: Some("final".to_owned()),
                labels: args(&["k=v"]),
                digest_file: Some("/dev/termination-log".to_owned()),
                insecure: args(&["r:5000", "s:5000"]),
                ..KanikoPlan::default()
            }
        );
    }

    #[test]
    fn the_per_platform_flags_translate() {
        let plan = translate(&args(&[
            "--context=dir:///workspace",
            "--custom-platform=linux/arm/v7",
            "--image-format=oci",
            "--no-push",
            "--oci-layout-path=/kaniko/out/layout",
            "--digest-file=/kaniko/out/digest",
        ]))
        .expect("translatable");
        assert_eq!(
            plan,
            KanikoPlan {
                context: "/workspace".to_owned(),
                digest_file: Some("/kaniko/out/digest".to_owned()),
                platform: Some("linux/arm/v7".parse().expect("platform")),
                no_push: true,
                oci_layout: Some("/kaniko/out/layout".to_owned()),
                image_format: Some(ImageFormat::Oci),
                ..KanikoPlan::default()
            }
        );
        let cases = [
            (vec!["--no-push=true"], true, None, None),
            (
                vec!["--destination=r/a:v", "--no-push=false", "--image-format=docker"],
                false,
                Some(ImageFormat::Docker),
                None,
            ),
            (
                vec!["--no-push", "--customPlatform=linux/s390x"],
                true,
                None,
                Some("linux/s390x"),
            ),
            (
                vec![
                    "--destination=r/a:v",
                    "--custom-platform=linux/arm64",
                    "--image-format=oci",
                ],
                false,
                Some(ImageFormat::Oci),
                Some("linux/arm64"),
            ),
        ];
        for (input, no_push, format, platform) in cases {
            let plan = translate(&args(&input)).expect("translatable");
            assert_eq!(plan.no_push, no_push, "{input:?}");
            assert_eq!(plan.image_format, format, "{input:?}");
            assert_eq!(
                plan.platform.map(|p| p.to_string()).as_deref(),
                platform,
                "{input:?}"
            );
        }
    }

    #[test]
    fn anything_else_is_refused_by_name() {
        let cases = [
            (
                vec!["--context=git://github.com/a/b", "--destination=r/a:v"],
                "--context=git://github.com/a/b",
            ),
            (
                vec!["--destination=r/a:v", "--registry-mirror=mirror.gcr.io"],
                "--registry-mirror=mirror.gcr.io",
            ),
            (
                vec!["--destination=r/a:v", "--tar-path=/out.tar"],
                "--tar-path=/out.tar",
            ),
            (vec!["--destination=r/a:v", "positional"], "positional"),
            (vec!["--destination"], "--destination"),
            (vec!["--no-push=maybe"], "--no-push=maybe"),
            (
                vec!["--no-push", "--custom-platform=linux"],
                "--custom-platform=linux",
            ),
            (
                vec!["--no-push", "--custom-platform=Linux/AMD64"],
                "--custom-platform=Linux/AMD64",
            ),
            (vec!["--no-push", "--custom-platform"], "--custom-platform"),
            (vec!["--no-push", "--image-format=v2s1"], "--image-format=v2s1"),
            (vec![], "(none: --destination is required without --no-push)"),
            (
                vec!["--no-push=false", "--image-format=oci"],
                "(none: --destination is required without --no-push)",
            ),
            (
                vec!["--no-push", "--oci-layout-path=/out"],
                "--oci-layout-path=/out without --image-format=oci (buildah writes only OCI \
                 manifests to an OCI layout)",
            ),
            (
                vec!["--no-push", "--image-format=docker", "--oci-layout-path=/out"],
                "--oci-layout-path=/out without --image-format=oci (buildah writes only OCI \
                 manifests to an OCI layout)",
            ),
        ];
        for (input, flag) in cases {
            assert_eq!(translate(&args(&input)), Err(flag.to_owned()), "{input:?}");
        }
        assert_eq!(
            untranslatable("--tar-path=/out.tar"),
            "stand-in node cannot translate kaniko flag --tar-path=/out.tar"
        );
    }
}
