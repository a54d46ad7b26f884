//! The few commands the stand-in kubelet runs for `exec`, itself: `tar -x` from stdin and
//! `touch`, with `/workspace` mapped to the pod's workspace directory.

use std::path::{Component, Path, PathBuf};

use super::unpack::{self, Compression};

/// Where the pod's workspace directory is mounted in every container.
const WORKSPACE: &str = "/workspace";
/// Exit code of a command the stand-in cannot run (a shell's "cannot execute").
const CANNOT_RUN: i32 = 126;
/// GNU tar's exit code for a fatal error.
const TAR_FATAL: i32 = 2;
/// touch's exit code for a file it could not touch.
const TOUCH_FAILED: i32 = 1;

/// Why a command did not succeed: its exit code and what it printed on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    pub(super) exit_code: i32,
    pub(super) message: String,
}

/// A command the stand-in can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Command {
    /// `tar -x -f - -C DIR`: unpack stdin into DIR (a container path).
    Untar {
        dir: String,
        compression: Compression,
        verbose: bool,
        preserve_mtime: bool,
    },
    /// `touch PATH...` (container paths).
    Touch(Vec<String>),
}

impl Command {
    /// Recognizes `argv`, or explains why the stand-in cannot run it.
    pub(super) fn parse(argv: &[String]) -> Result<Command, Failure> {
        let cannot = |why: &str| Failure {
            exit_code: CANNOT_RUN,
            message: format!("stand-in kubelet cannot run {argv:?}: {why}"),
        };
        let supported = "it runs only `tar -x[z]f - -C /workspace[/DIR]` and `touch /workspace/PATH...`";
        match argv.split_first() {
            Some((cmd, args)) if cmd == "tar" || cmd == "/bin/tar" => {
                parse_tar(args).map_err(|why| cannot(&why))
            }
            Some((cmd, paths)) if cmd == "touch" || cmd == "/bin/touch" => {
                if paths.is_empty() {
                    return Err(cannot("touch needs a path"));
                }
                for path in paths {
                    if path.starts_with('-') {
                        return Err(cannot(&format!("touch option {path} is not supported")));
                    }
                    map_path(Path::new("/"), path).map_err(|why| cannot(&why))?;
                }
                Ok(Command::Touch(paths.to_vec()))
            }
            _ => Err(cannot(supported)),
        }
    }

    /// Whether the command reads stdin (its status is then sent once stdin was closed).
    pub(super) fn reads_stdin(&self) -> bool {
        matches!(self, Command::Untar { .. })
    }

    /// Runs the command against `workspace`; `stdin` is the client's stdin, `stdout` gets
    /// what the command prints (tar's verbose list).
    pub(super) async fn run(
        self,
        workspace: &Path,
        stdin: impl std::io::Read + Send + 'static,
        mut stdout: impl FnMut(&str) + Send + 'static,
    ) -> Result<(), Failure> {
        match self {
            Command::Untar {
                dir,
                compression,
                verbose,
                preserve_mtime,
            } => {
                let fail = |message: String| Failure {
                    exit_code: TAR_FATAL,
                    message: format!("tar: {message}"),
                };
                let target = map_path(workspace, &dir).map_err(fail)?;
                if !target.is_dir() {
                    return Err(fail(format!("{dir}: Cannot open: No such file or directory")));
                }
                let options = unpack::Options {
                    compression,
                    preserve_mtime,
                };
                let unpacked = tokio::task::spawn_blocking(move || {
                    unpack::unpack(stdin, &target, options, &mut |name| {
                        if verbose {
                            stdout(&format!("{name}\n"));
                        }
                    })
                })
                .await
                .map_err(|e| fail(format!("unpacking panicked: {e}")))?;
                unpacked.map_err(fail)
            }
            Command::Touch(paths) => {
                for path in paths {
                    let host = map_path(workspace, &path).map_err(|m| Failure {
                        exit_code: TOUCH_FAILED,
                        message: format!("touch: {m}"),
                    })?;
                    touch(&host).map_err(|e| Failure {
                        exit_code: TOUCH_FAILED,
                        message: format!("touch: cannot touch '{path}': {e}"),
                    })?;
                }
                Ok(())
            }
        }
    }
}

/// Creates `path` or updates its modification time.
fn touch(path: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.set_modified(std::time::SystemTime::now())
}

/// The host path of container path `path`, which must be `/workspace` or below it, without
/// `..`.
fn map_path(workspace: &Path, path: &str) -> Result<PathBuf, String> {
    let rest = path
        .strip_prefix(WORKSPACE)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .ok_or_else(|| format!("only {WORKSPACE} is mapped into the container, not {path}"))?;
    let mut host = workspace.to_owned();
    for part in Path::new(rest).components() {
        match part {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => host.push(name),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("{path}: `..` is not supported"));
            }
        }
    }
    Ok(host)
}

/// `tar` arguments: bundled letters (`-xzf`, or `xzf` first), separate ones (`-x -f -`),
/// attached values (`-C/workspace`, `-f-`) and the long forms.
fn parse_tar(args: &[String]) -> Result<Command, String> {
    let mut extract = false;
    let mut file = None;
    let mut dir = None;
    let mut compression = Compression::Detect;
    let mut verbose = false;
    let mut preserve_mtime = true;
    let mut rest = args.iter().enumerate();
    while let Some((index, arg)) = rest.next() {
        if let Some(long) = arg.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let mut value_or_next = || {
                value
                    .clone()
                    .or_else(|| rest.next().map(|(_, v)| v.clone()))
                    .ok_or_else(|| format!("tar option --{name} needs a value"))
            };
            match name {
                "extract" | "get" => extract = true,
                "file" => file = Some(value_or_next()?),
                "directory" => dir = Some(value_or_next()?),
                "gzip" | "gunzip" | "ungzip" => compression = Compression::Gzip,
                "verbose" => verbose = true,
                "touch" => preserve_mtime = false,
                "no-same-owner" | "no-same-permissions" => {}
                _ => return Err(format!("tar option --{name} is not supported")),
            }
            continue;
        }
        // Old style: the first argument may omit the dash.
        let letters = match arg.strip_prefix('-') {
            Some(l) if !l.is_empty() => l,
            _ if index == 0 && !arg.is_empty() => arg.as_str(),
            _ => {
                return Err(format!(
                    "tar operand {arg:?} is not supported (only whole archives are unpacked)"
                ));
            }
        };
        let dashed = arg.starts_with('-');
        for (at, letter) in letters.char_indices() {
            match letter {
                'x' => extract = true,
                'z' => compression = Compression::Gzip,
                'v' => verbose = true,
                'm' => preserve_mtime = false,
                'o' => {}
                'f' | 'C' => {
                    let attached = &letters[at + letter.len_utf8()..];
                    let value = if dashed && !attached.is_empty() {
                        attached.to_owned()
                    } else {
                        rest.next()
                            .map(|(_, v)| v.clone())
                            .ok_or_else(|| format!("tar option -{letter} needs a value"))?
                    };
                    if letter == 'f' {
                        file = Some(value);
                    } else {
                        dir = Some(value);
                    }
                    if dashed && !attached.is_empty() {
                        break;
                    }
                }
                other => return Err(format!("tar option -{other} is not supported")),
            }
        }
    }
    if !extract {
        return Err("only tar -x (extract) is supported".to_owned());
    }
    if file.as_deref() != Some("-") {
        return Err("tar must read the archive from stdin (-f -)".to_owned());
    }
    let dir = dir.ok_or("tar needs -C /workspace[/DIR] (the container's working directory is unknown)")?;
    map_path(Path::new("/"), &dir)?;
    Ok(Command::Untar {
        dir,
        compression,
        verbose,
        preserve_mtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    fn untar(dir: &str, compression: Compression) -> Command {
        Command::Untar {
            dir: dir.to_owned(),
            compression,
            verbose: false,
            preserve_mtime: true,
        }
    }

    #[test]
    fn parses_the_supported_forms() {
        let cases = [
            (
                "tar -xf - -C /workspace",
                untar("/workspace", Compression::Detect),
            ),
            ("tar -xzf - -C /workspace", untar("/workspace", Compression::Gzip)),
            (
                "tar xzf - -C /workspace/ctx",
                untar("/workspace/ctx", Compression::Gzip),
            ),
            (
                "tar -x -f - -C/workspace",
                untar("/workspace", Compression::Detect),
            ),
            ("tar -C /workspace -zxf-", untar("/workspace", Compression::Gzip)),
            (
                "tar --extract --file=- --directory /workspace --gzip --no-same-owner",
                untar("/workspace", Compression::Gzip),
            ),
            (
                "touch /workspace/.kb-upload-complete",
                Command::Touch(vec!["/workspace/.kb-upload-complete".to_owned()]),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(Command::parse(&argv(line)), Ok(want), "{line}");
        }
        assert_eq!(
            Command::parse(&argv("tar -xvmf - -C /workspace")),
            Ok(Command::Untar {
                dir: "/workspace".to_owned(),
                compression: Compression::Detect,
                verbose: true,
                preserve_mtime: false,
            })
        );
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        for line in [
            "sh -c true",
            "tar -cf - -C /workspace",
            "tar -xf archive.tar -C /workspace",
            "tar -xf -",
            "tar -xf - -C /tmp",
            "tar -xf - -C /workspace/../etc",
            "tar -xf - -C /workspacex",
            "tar -xjf - -C /workspace",
            "tar -xf - -C /workspace file",
            "touch /etc/passwd",
            "touch -d now /workspace/x",
            "touch",
        ] {
            let failure = Command::parse(&argv(line)).expect_err(line);
            assert_eq!(failure.exit_code, CANNOT_RUN, "{line}");
            assert!(
                failure.message.starts_with("stand-in kubelet cannot run"),
                "{line}: {failure:?}"
            );
        }
    }

    #[test]
    fn maps_workspace_paths() {
        let ws = Path::new("/node/pods/p/workspace");
        assert_eq!(map_path(ws, "/workspace"), Ok(ws.to_owned()));
        assert_eq!(map_path(ws, "/workspace/a/./b/"), Ok(ws.join("a/b")));
        assert!(map_path(ws, "/workspace/../x").is_err());
        assert!(map_path(ws, "relative").is_err());
    }
}
