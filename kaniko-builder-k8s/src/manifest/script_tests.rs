//! The per-platform scripts run for real under busybox `sh`, with stand-ins for kaniko and crane
//! in a temporary directory: every absolute path of the contract (`/kaniko/…`, `/ko-app`,
//! `/workspace`, `/dev/termination-log`) is moved under it, and `PATH` holds only busybox's
//! applets, as in the images.
//!
//! The end-to-end run with the real crane and a real build is the stand-in node's
//! (`tests/multiplatform.rs`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Command;

use kaniko_builder_core::{BuildConfig, ImageRef, Platform};

use super::{BuildManifests, ENV_PUSH, JobOptions, kaniko_args, render, scripts};

const DIGEST: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
const FORCED: &str = r#"{"decision":"build","reason":"forced"}"#;

/// busybox as Debian's `busybox-static` (which `scripts/test.sh` installs) or `busybox` has it.
fn busybox() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("busybox is missing: apt-get install busybox-static (scripts/test.sh does)")
}

/// A container's view, under a temporary directory.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Self {
        let root = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for d in [
            "bin",
            "kaniko/state",
            "kaniko/tools",
            "kaniko/out",
            "ko-app",
            "workspace",
        ] {
            std::fs::create_dir_all(root.path(d)).expect("mkdir");
        }
        let status = Command::new(busybox())
            .arg("--install")
            .arg("-s")
            .arg(root.path("bin"))
            .status()
            .expect("busybox --install");
        assert!(status.success());
        root
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `text` with the contract's absolute paths moved under this root.
    fn relocate(&self, text: &str) -> String {
        let root = self.dir.path().display().to_string();
        text.replace("/kaniko", &format!("{root}/kaniko"))
            .replace("/ko-app", &format!("{root}/ko-app"))
            .replace("/workspace", &format!("{root}/workspace"))
            .replace("/dev/termination-log", &format!("{root}/termination-log"))
    }

    /// An executable busybox `sh` script at `rel`.
    fn script(&self, rel: &str, body: &str) {
        let path = self.path(rel);
        let text = format!("#!{} sh\n{}", busybox().display(), self.relocate(body));
        std::fs::write(&path, text).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path(rel)).ok()
    }

    /// Runs `/busybox/sh -c <script> <args…>` with `env` and only busybox on `PATH`: the exit code
    /// and the output, for the assertions' messages.
    fn run(&self, script: &str, args: &[String], env: &[(&str, &str)]) -> (i32, String) {
        let mut cmd = Command::new(busybox());
        cmd.arg("sh")
            .arg("-c")
            .arg(self.relocate(script))
            .args(args.iter().map(|a| self.relocate(a)))
            .env_clear()
            .env("PATH", self.path("bin"))
            .envs(env.iter().copied());
        let out = cmd.output().expect("run busybox sh");
        let log = format!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().expect("exit code"), log)
    }
}

/// kaniko's stand-in: records its arguments, then does what `$FAKE_KANIKO` says (`ok`, `fail`,
/// `no-digest`, `bad-digest`, `no-layout`), honouring `--digest-file` and `--oci-layout-path`.
fn fake_kaniko(root: &Root) {
    root.script(
        "kaniko/executor",
        &format!(
            r#"printf '%s\n' "$@" > /kaniko/executor.args
[ "$FAKE_KANIKO" = fail ] && exit 3
for a in "$@"; do
  case "$a" in
    --digest-file=*) df=${{a#*=}} ;;
    --oci-layout-path=*) layout=${{a#*=}} ;;
  esac
done
[ "$FAKE_KANIKO" = no-layout ] || {{ mkdir -p "$layout" && echo '{{}}' > "$layout/index.json"; }}
case "$FAKE_KANIKO" in
  no-digest) ;;
  bad-digest) printf 'sha256:XYZ' > "$df" ;;
  *) printf '{DIGEST}' > "$df" ;;
esac
exit 0
"#
        ),
    );
}

/// crane's stand-in: only builtins (it runs after the build too). Records each call, prints the
/// pushed reference as crane does, or fails / prints another digest as `$FAKE_CRANE` says.
const FAKE_CRANE: &str = r#"echo "$*" >> /kaniko/crane.calls
for a in "$@"; do last=$a; done
case "$FAKE_CRANE" in
  fail) echo "Error: PUT: 500" >&2; exit 4 ;;
  other) echo "${last%@*}@sha256:0000000000000000000000000000000000000000000000000000000000000000" ;;
  *) echo "$last" ;;
esac
"#;

fn p(s: &str) -> Platform {
    s.parse().expect("platform")
}

/// A platform's Job with an insecure and a secure repository.
fn platform_job() -> (BuildConfig, BuildManifests) {
    let config = BuildConfig::builder(ImageRef::parse("registry.local:5000/team/app:v1").expect("ref"))
        .destination(ImageRef::parse("ghcr.io/acme/app:v1").expect("ref"))
        .insecure_registry("registry.local:5000")
        .platforms([p("linux/amd64"), p("linux/arm64")])
        .build()
        .expect("valid")
        .for_platform(&p("linux/arm64"));
    let m = render(&config, &JobOptions::default(), None).expect("render");
    (config, m)
}

fn push_env(m: &BuildManifests) -> String {
    let builder = &m
        .job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod")
        .containers[0];
    builder
        .env
        .iter()
        .flatten()
        .find(|e| e.name == ENV_PUSH)
        .and_then(|e| e.value.clone())
        .expect("KB_PUSH")
}

/// Runs the rendered wrapper with its rendered arguments after a `decision`.
fn run_wrapper(root: &Root, decision: Option<&str>, kaniko: &str, crane: &str) -> (i32, String) {
    let (config, m) = platform_job();
    if let Some(d) = decision {
        std::fs::write(root.path("kaniko/state/decision"), format!("{d}\n")).expect("decision");
    }
    fake_kaniko(root);
    let mut args = vec![scripts::BUILDER_ARGV0.to_owned()];
    args.extend(kaniko_args(&config));
    root.run(
        scripts::PLATFORM_BUILDER_WRAPPER,
        &args,
        &[
            (ENV_PUSH, &push_env(&m)),
            ("FAKE_KANIKO", kaniko),
            ("FAKE_CRANE", crane),
        ],
    )
}

#[test]
fn the_wrapper_builds_a_layout_then_pushes_it_by_digest_to_each_repository() {
    let root = Root::new();
    root.script("kaniko/tools/crane", FAKE_CRANE);
    let (code, log) = run_wrapper(&root, Some(FORCED), "ok", "ok");
    assert_eq!(code, 0, "{log}");
    assert_eq!(root.read("termination-log").as_deref(), Some(DIGEST));
    let (config, _) = platform_job();
    let args: Vec<String> = kaniko_args(&config).iter().map(|a| root.relocate(a)).collect();
    assert_eq!(
        root.read("kaniko/executor.args").expect("kaniko ran"),
        format!("{}\n", args.join("\n"))
    );
    let layout = root.path("kaniko/out/layout").display().to_string();
    assert_eq!(
        root.read("kaniko/crane.calls").expect("crane ran"),
        format!(
            "push --insecure {layout} registry.local:5000/team/app@{DIGEST}\npush {layout} ghcr.io/acme/app@{DIGEST}\n"
        )
    );
}

/// A way the wrapper must fail: what `kaniko-init` left, what the stand-ins do, and how the
/// termination message starts.
struct Failure {
    name: &'static str,
    decision: Option<&'static str>,
    crane_copied: bool,
    kaniko: &'static str,
    crane: &'static str,
    message: &'static str,
}

#[test]
fn the_wrapper_fails_clearly() {
    let cases = [
        Failure {
            name: "no decision",
            decision: None,
            crane_copied: true,
            kaniko: "ok",
            crane: "ok",
            message: "image-builder: no decision from kaniko-init",
        },
        Failure {
            name: "no crane",
            decision: Some(FORCED),
            crane_copied: false,
            kaniko: "ok",
            crane: "ok",
            message: "image-builder: no crane at",
        },
        Failure {
            name: "kaniko fails",
            decision: Some(FORCED),
            crane_copied: true,
            kaniko: "fail",
            crane: "ok",
            message: "image-builder: kaniko failed with exit code 3",
        },
        Failure {
            name: "no digest",
            decision: Some(FORCED),
            crane_copied: true,
            kaniko: "no-digest",
            crane: "ok",
            message: "image-builder: kaniko wrote no digest",
        },
        Failure {
            name: "bad digest",
            decision: Some(FORCED),
            crane_copied: true,
            kaniko: "bad-digest",
            crane: "ok",
            message: "image-builder: kaniko wrote a malformed digest",
        },
        Failure {
            name: "no layout",
            decision: Some(FORCED),
            crane_copied: true,
            kaniko: "no-layout",
            crane: "ok",
            message: "image-builder: kaniko wrote no OCI layout",
        },
        Failure {
            name: "crane fails",
            decision: Some(FORCED),
            crane_copied: true,
            kaniko: "ok",
            crane: "fail",
            message: "image-builder: crane push to registry.local:5000/team/app@",
        },
    ];
    for Failure {
        name,
        decision,
        crane_copied,
        kaniko,
        crane,
        message,
    } in cases
    {
        let root = Root::new();
        if crane_copied {
            root.script("kaniko/tools/crane", FAKE_CRANE);
        }
        let (code, log) = run_wrapper(&root, decision, kaniko, crane);
        assert_eq!(code, 1, "{name}: {log}");
        let term = root.read("termination-log").unwrap_or_default();
        assert!(term.starts_with(message), "{name}: {term:?}");
        if name == "crane fails" {
            assert!(term.ends_with("failed with exit code 4"), "{name}: {term:?}");
            // The first push failed: the second was never tried.
            assert_eq!(
                root.read("kaniko/crane.calls")
                    .unwrap_or_default()
                    .lines()
                    .count(),
                1
            );
        }
        if matches!(name, "no decision" | "no crane") {
            assert!(root.read("kaniko/executor.args").is_none(), "{name}: kaniko ran");
        }
    }
    // crane printing another digest than kaniko's.
    let root = Root::new();
    root.script("kaniko/tools/crane", FAKE_CRANE);
    let (code, log) = run_wrapper(&root, Some(FORCED), "ok", "other");
    assert_eq!(code, 1, "{log}");
    let term = root.read("termination-log").unwrap_or_default();
    assert!(term.contains("not the digest"), "{term:?}");
}

#[test]
fn the_wrapper_honours_a_skip() {
    let root = Root::new();
    root.script("kaniko/tools/crane", FAKE_CRANE);
    let skip = format!(r#"{{"decision":"skip","digest":"{DIGEST}"}}"#);
    let (code, log) = run_wrapper(&root, Some(&skip), "ok", "ok");
    assert_eq!(code, 0, "{log}");
    assert_eq!(root.read("termination-log"), Some(skip));
    assert!(root.read("kaniko/executor.args").is_none());
}

/// The rendered init script of a platform's Job: crane is copied, and the decision is forced
/// without asking the registry.
#[test]
fn the_platform_init_copies_crane_and_builds_without_asking() {
    let (config, m) = platform_job();
    let init = &m
        .job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.init_containers.as_ref())
        .expect("init")[0];
    let script = init.command.as_ref().expect("command")[2].clone();
    let env: Vec<(String, String)> = init
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    assert!(env.contains(&("FORCE_BUILD".to_owned(), "Y".to_owned())));
    assert!(env.contains(&("KB_DESTINATION".to_owned(), config.image().to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let root = Root::new();
    // crane would fail any registry call: a forced check makes none.
    root.script("ko-app/crane", "echo \"$*\" >> /kaniko/crane.calls\nexit 9\n");
    let (code, log) = root.run(&script, &[], &env);
    assert_eq!(code, 0, "{log}");
    assert_eq!(root.read("termination-log").as_deref(), Some(FORCED));
    assert_eq!(root.read("kaniko/state/decision"), Some(format!("{FORCED}\n")));
    assert!(root.read("kaniko/crane.calls").is_none(), "crane was asked");
    let copied = root.path("kaniko/tools/crane");
    assert_eq!(
        std::fs::read(&copied).expect("copied"),
        std::fs::read(root.path("ko-app/crane")).expect("crane")
    );
    let mode = std::fs::metadata(&copied).expect("metadata").permissions().mode();
    assert_eq!(mode & 0o777, 0o755);

    // No crane to copy: an error decision, not a build.
    let root = Root::new();
    let (code, log) = root.run(&script, &[], &env);
    assert_eq!(code, 1, "{log}");
    let term = root.read("termination-log").unwrap_or_default();
    assert_eq!(
        term,
        r#"{"decision":"error","message":"cannot copy crane to /kaniko/tools/crane"}"#
            .replace("/kaniko", &format!("{}/kaniko", root.dir.path().display()))
    );
    assert!(root.read("kaniko/state/decision").is_none());
}

/// After kaniko ran, the root filesystem holds the built image (possibly of another
/// architecture): the wrapper may run only builtins and the binaries under `/kaniko`. Debian's
/// static busybox runs its applets whatever `PATH` says, so the runs above cannot show it: the
/// words of the script after `PATH=/kaniko:/busybox` are checked against busybox's applets.
#[test]
fn after_the_build_the_wrapper_runs_only_builtins_and_crane() {
    const BUILTINS: [&str; 12] = [
        "echo", "printf", "read", "set", "shift", "test", "[", "exit", "true", "false", "eval", "trap",
    ];
    let out = Command::new(busybox())
        .arg("--list")
        .output()
        .expect("busybox --list");
    let applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|a| !BUILTINS.contains(&a.as_str()))
        .collect();
    assert!(applets.iter().any(|a| a == "cat"), "{applets:?}");
    let script = scripts::PLATFORM_BUILDER_WRAPPER;
    let path_line = "PATH=/kaniko:/busybox\n";
    let after = &script[script.find(path_line).expect("PATH line") + path_line.len()..];
    let words: Vec<&str> = after
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| !w.is_empty())
        .collect();
    let used: Vec<&&str> = words
        .iter()
        .filter(|w| applets.iter().any(|a| a == **w))
        .collect();
    assert!(used.is_empty(), "applets after the build: {used:?}");
}
