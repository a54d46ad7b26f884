//! The kaniko executor's stand-in: its arguments translated into `buildah bud` + `buildah push`
//! (called by [`super::executor`] when the real `image-builder` wrapper runs `/kaniko/executor`).

use std::path::{Path, PathBuf};

use kaniko_builder_core::ImageRef;
use kaniko_builder_k8s::manifest::DOCKER_CONFIG_DIR;
use tokio::process::Command;

use super::container::Ctx;
use super::runtime::run_logged;

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
}

/// kaniko's flags that do not change the image the stand-in builds.
const IGNORED: [&str; 4] = ["snapshot-mode", "reproducible", "push-retry", "verbosity"];

/// The message of a container that gets a flag the stand-in cannot honour.
pub(super) fn untranslatable(flag: &str) -> String {
    format!("stand-in node cannot translate kaniko flag {flag}")
}

/// Translates the executor's arguments (`--flag=value` or bare `--flag`, one per element);
/// `Err` names the first argument that cannot be translated.
pub(super) fn translate(args: &[String]) -> Result<KanikoPlan, String> {
    let mut plan = KanikoPlan {
        context: "/workspace".to_owned(),
        ..KanikoPlan::default()
    };
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
            n if n.starts_with("cache") || IGNORED.contains(&n) => {}
            _ => return Err(arg.clone()),
        }
    }
    if plan.destinations.is_empty() {
        return Err("(none: --destination is required)".to_owned());
    }
    Ok(plan)
}

/// Runs the build the executor was asked for (`args`: its arguments); returns its exit code.
/// A build the stand-in cannot translate fails with exit code 1 and a message saying why.
pub(super) async fn run(ctx: &Ctx<'_>, args: &[String]) -> i32 {
    match build(ctx, args).await {
        Ok(code) => code,
        Err(message) => {
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

/// Translates and runs the build; `Err` is a message for a build the stand-in cannot run.
async fn build(ctx: &Ctx<'_>, args: &[String]) -> Result<i32, String> {
    let plan = translate(args).map_err(|flag| untranslatable(&flag))?;
    if let Some(file) = &plan.digest_file
        && file != ctx.termination_message_path()
    {
        return Err(untranslatable(&format!("--digest-file={file}")));
    }
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
    bud.arg("--format=docker")
        .arg("--layers=false")
        .arg(format!("--authfile={}", authfile.display()))
        .arg(format!("--iidfile={}", iidfile.display()))
        .arg(format!("--file={}", dockerfile.display()));
    buildah.tls(&mut bud, any_insecure);
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
    tracing::info!(pod = ?ctx.pod.metadata.name, context = %context.display(), "buildah bud");
    let code = run_logged(bud, ctx.log, &ctx.shared.procs)
        .await
        .map_err(|e| format!("{e:#}"))?;
    if code != 0 {
        return Ok(code);
    }
    let image_id = tokio::fs::read_to_string(&iidfile)
        .await
        .map_err(|e| format!("read {}: {e}", iidfile.display()))?;

    let mut pushed = None;
    for (i, destination) in destinations.iter().enumerate() {
        let digest_file = ctx.scratch.join(format!("digest-{i}"));
        let mut push = buildah.command("push");
        push.arg(format!("--authfile={}", authfile.display()))
            .arg(format!("--digestfile={}", digest_file.display()));
        buildah.tls(&mut push, insecure(destination.registry()));
        push.arg(image_id.trim()).arg(format!("docker://{destination}"));
        tracing::info!(%destination, "buildah push");
        let code = run_logged(push, ctx.log, &ctx.shared.procs)
            .await
            .map_err(|e| format!("{e:#}"))?;
        if code != 0 {
            return Ok(code);
        }
        if pushed.is_none() {
            pushed = Some(
                tokio::fs::read_to_string(&digest_file)
                    .await
                    .map_err(|e| format!("read {}: {e}", digest_file.display()))?,
            );
        }
    }
    if plan.digest_file.is_some()
        && let Some(digest) = pushed
    {
        write_message(ctx, digest.trim()).await;
    }
    Ok(0)
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
    pub(super) fn tls(&self, command: &mut Command, insecure: bool) {
        if insecure {
            command.arg("--tls-verify=false");
        } else if let Some(dir) = &self.cert_dir {
            command.arg(format!("--cert-dir={}", dir.display()));
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
            }
        );
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
            (vec!["--destination=r/a:v", "--no-push"], "--no-push"),
            (vec!["--destination=r/a:v", "positional"], "positional"),
            (vec!["--destination"], "--destination"),
        ];
        for (input, flag) in cases {
            assert_eq!(translate(&args(&input)), Err(flag.to_owned()), "{input:?}");
        }
        assert_eq!(
            untranslatable("--no-push"),
            "stand-in node cannot translate kaniko flag --no-push"
        );
    }
}
