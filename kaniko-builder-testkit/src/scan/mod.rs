//! The whole-suite secrets scan: every trace file of a `KB_TRACE_DIR` against every secret any
//! test process put in the [ledger](crate::ledger), with checks that the directory really holds
//! the suite's TRACE output (a scan of nothing would pass).

use std::collections::{BTreeSet, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::ledger::{MIN_SECRET_LEN, Secret, TEST_LITERALS, parse_ledger};

mod needles;
pub use needles::Needles;

/// What one test binary's trace file must show: that it exists, is not tiny, and holds lines
/// at TRACE from the given targets.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// File name prefix: the test binary's name and `-` (cargo appends a hash).
    pub binary: &'static str,
    /// Smallest plausible size of its trace, bytes.
    pub min_bytes: u64,
    /// Strings its trace must contain (at least [`MIN_SECRET_LEN`] bytes each).
    pub markers: &'static [&'static str],
}

/// A TRACE line in `fmt`'s format: the UTC timestamp's `Z`, then the level.
const TRACE_LINE: &str = "Z TRACE ";

/// The suite's test binaries whose traces must be there, with the HTTP and TLS stacks at TRACE
/// where they talk to real servers. The sizes are a third to a fifth of what a run writes
/// (0.66 to 2.8 MB each, measured).
pub const SUITE: &[Expect] = &[
    Expect {
        binary: "hostile_credentials-",
        min_bytes: 256 << 10,
        markers: &[
            TRACE_LINE,
            "kaniko_builder_k8s::",
            "kube_client::",
            "hyper_util::",
            "rustls::",
        ],
    },
    Expect {
        binary: "no_secrets_in_logs-",
        min_bytes: 256 << 10,
        markers: &[
            TRACE_LINE,
            "kaniko_builder_registry::",
            "hyper_util::",
            "rustls::",
        ],
    },
    Expect {
        binary: "probe_registry-",
        min_bytes: 256 << 10,
        markers: &[TRACE_LINE, "kaniko_builder_registry::", "rustls::"],
    },
    Expect {
        binary: "runner_node-",
        min_bytes: 512 << 10,
        markers: &[TRACE_LINE, "kaniko_builder_k8s::", "kube_client::"],
    },
    Expect {
        binary: "facade-",
        min_bytes: 512 << 10,
        markers: &[TRACE_LINE, "kaniko_builder_k8s::", "kube_client::"],
    },
    Expect {
        binary: "node-",
        min_bytes: 512 << 10,
        markers: &[TRACE_LINE, "kaniko_builder_testkit::node"],
    },
];

/// Ledger labels (prefixes) some test process must have registered: proof that the servers'
/// registrations reached the ledger files.
pub const SUITE_LEDGER: &[&str] = &[
    "TestRegistry docker config",
    "token issuer: issued token",
    "token issuer signing key",
    "TestCluster admin token",
];

/// What a scan found.
#[derive(Debug, Default)]
pub struct Report {
    /// Trace files scanned.
    pub files: usize,
    /// Their total size, bytes.
    pub bytes: u64,
    /// Distinct secrets looked for.
    pub secrets: usize,
    /// `(file, secret label)` for every secret found in a file.
    pub leaks: Vec<(PathBuf, String)>,
    /// Requirements that failed: the directory does not show a full TRACE run.
    pub missing: Vec<String>,
}

impl Report {
    /// No leak and nothing missing.
    pub fn is_clean(&self) -> bool {
        self.leaks.is_empty() && self.missing.is_empty()
    }
}

/// Scans every `*.log` in `dir` for every secret in its `*.ledger` files and
/// [`TEST_LITERALS`]; checks `expect` and `ledger_labels` (see [`SUITE`], [`SUITE_LEDGER`]).
///
/// # Errors
/// The directory or a file cannot be read, a ledger file is malformed.
pub fn scan_dir(dir: &Path, expect: &[Expect], ledger_labels: &[&str]) -> anyhow::Result<Report> {
    let mut logs = Vec::new();
    // Servers' logs (registry, control plane): scanned for leaks, no expectations on them.
    let mut server_logs = Vec::new();
    let mut secrets: Vec<Secret> = TEST_LITERALS
        .iter()
        .map(|(label, value)| Secret {
            label: (*label).to_owned(),
            value: (*value).to_owned(),
        })
        .collect();
    let mut ledgers = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("log") => logs.push(path),
            Some("srvlog") => server_logs.push(path),
            Some("ledger") => {
                ledgers += 1;
                let text = std::fs::read_to_string(&path)?;
                secrets.extend(parse_ledger(&text).with_context(|| format!("{}", path.display()))?);
            }
            _ => {}
        }
    }
    logs.sort();
    let mut report = Report::default();
    if logs.is_empty() || ledgers == 0 {
        report.missing.push(format!(
            "{}: {} trace files, {ledgers} ledgers: was the suite run with KB_TRACE_DIR set?",
            dir.display(),
            logs.len()
        ));
    }
    for label in ledger_labels {
        if !secrets.iter().any(|s| s.label.starts_with(label)) {
            report.missing.push(format!("no ledger entry labelled {label:?}"));
        }
    }
    let mut seen = BTreeSet::new();
    secrets.retain(|s| s.value.len() >= MIN_SECRET_LEN && seen.insert(s.value.clone()));
    report.secrets = secrets.len();
    let needles = Needles::new(secrets.iter().map(|s| s.value.as_bytes()));
    let mut seen_markers: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for path in &logs {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = std::fs::metadata(path)?.len();
        report.files += 1;
        report.bytes += size;
        let found = needles.find_in_file(path)?;
        for i in found {
            report.leaks.push((path.clone(), secrets[i].label.clone()));
        }
        for e in expect.iter().filter(|e| name.starts_with(e.binary)) {
            if size < e.min_bytes {
                report
                    .missing
                    .push(format!("{name}: {size} bytes, expected at least {}", e.min_bytes));
            }
            let markers = Needles::new(e.markers.iter().map(|m| m.as_bytes()));
            let have = markers.find_in_file(path)?;
            seen_markers
                .entry(e.binary)
                .or_default()
                .extend(have.into_iter().map(|i| e.markers[i]));
        }
    }
    server_logs.sort();
    for path in &server_logs {
        report.files += 1;
        report.bytes += std::fs::metadata(path)?.len();
        for i in needles.find_in_file(path)? {
            report.leaks.push((path.clone(), secrets[i].label.clone()));
        }
    }
    for e in expect {
        let have = seen_markers.get(e.binary);
        let absent: Vec<&str> = e
            .markers
            .iter()
            .filter(|m| !have.is_some_and(|h| h.contains(*m)))
            .copied()
            .collect();
        if have.is_none() {
            report
                .missing
                .push(format!("no trace file of test binary {}*", e.binary));
        } else if !absent.is_empty() {
            report
                .missing
                .push(format!("the trace of {}* lacks {absent:?}", e.binary));
        }
    }
    Ok(report)
}

/// Every file under `root` (recursively, symlinks not followed, `skip` and what is under it
/// left out), and its gunzipped form when it is gzip: `(files scanned, (file, label) per
/// secret found)`.
///
/// # Errors
/// A directory or file cannot be read.
pub fn leaks_in_tree(
    root: &Path,
    skip: &[PathBuf],
    secrets: &[Secret],
) -> anyhow::Result<(usize, Vec<(PathBuf, String)>)> {
    let needles = Needles::new(secrets.iter().map(|s| s.value.as_bytes()));
    let mut leaks = Vec::new();
    let mut files = 0;
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if skip.iter().any(|s| path.starts_with(s)) {
                continue;
            }
            if kind.is_dir() {
                dirs.push(path);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            files += 1;
            let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
            let mut found = BTreeSet::new();
            needles.find_in(&bytes, &mut found);
            let mut plain = Vec::new();
            if bytes.starts_with(&[0x1f, 0x8b])
                && flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_end(&mut plain)
                    .is_ok()
            {
                needles.find_in(&plain, &mut found);
            }
            leaks.extend(
                found
                    .into_iter()
                    .map(|i| (path.clone(), secrets[i].label.clone())),
            );
        }
    }
    Ok((files, leaks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::hex;

    fn write(dir: &Path, name: &str, text: &[u8]) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    const EXPECT: &[Expect] = &[Expect {
        binary: "leaky-",
        min_bytes: 100,
        markers: &[TRACE_LINE, "hyper_util::"],
    }];

    fn trace(extra: &str) -> Vec<u8> {
        let mut t = String::new();
        for i in 0..20 {
            t.push_str(&format!(
                "2025-01-01T00:00:00.{i:06}Z TRACE hyper_util::client: line {i}\n"
            ));
        }
        t.push_str(extra);
        t.into_bytes()
    }

    #[test]
    fn a_planted_secret_is_reported_by_file_and_label_never_by_value() {
        let dir = tempfile::tempdir().expect("dir");
        write(
            dir.path(),
            "leaky-1-42.ledger",
            format!("planted token\t{}\n", hex(b"planted-0xBEEF-9")).as_bytes(),
        );
        write(
            dir.path(),
            "leaky-1-42.log",
            &trace("a request with planted-0xBEEF-9 in it\n"),
        );
        write(
            dir.path(),
            "clean-2-43.log",
            &trace(&format!("{}\n", crate::TestRegistry::USERNAME)),
        );
        let report = scan_dir(dir.path(), EXPECT, &["planted"]).expect("scan");
        assert!(report.missing.is_empty(), "{:?}", report.missing);
        assert_eq!(report.files, 2);
        assert_eq!(
            report.leaks,
            [(dir.path().join("leaky-1-42.log"), "planted token".to_owned())]
        );
        assert!(!format!("{report:?}").contains("planted-0xBEEF-9"));
        // The test-file literals are always looked for.
        write(
            dir.path(),
            "clean-2-43.log",
            &trace(crate::TestRegistry::PASSWORD),
        );
        let report = scan_dir(dir.path(), EXPECT, &[]).expect("scan");
        assert_eq!(report.leaks.len(), 2, "{:?}", report.leaks);
    }

    #[test]
    fn server_logs_are_scanned_without_expectations() {
        let dir = tempfile::tempdir().expect("dir");
        write(
            dir.path(),
            "leaky-1-42.ledger",
            format!("planted token\t{}\n", hex(b"planted-0xBEEF-9")).as_bytes(),
        );
        write(dir.path(), "leaky-1-42.log", &trace(""));
        // Short, and named like the test binary: no size or marker check applies to it.
        write(
            dir.path(),
            "leaky-1-42-registry-5000.srvlog",
            b"GET /v2/?token=planted-0xBEEF-9\n",
        );
        let report = scan_dir(dir.path(), EXPECT, &[]).expect("scan");
        assert!(report.missing.is_empty(), "{:?}", report.missing);
        assert_eq!(report.files, 2);
        assert_eq!(
            report.leaks,
            [(
                dir.path().join("leaky-1-42-registry-5000.srvlog"),
                "planted token".to_owned()
            )]
        );
    }

    #[test]
    fn an_empty_small_or_partial_trace_dir_fails() {
        let dir = tempfile::tempdir().expect("dir");
        let report = scan_dir(dir.path(), EXPECT, &["planted"]).expect("scan");
        assert!(!report.is_clean());
        assert_eq!(report.missing.len(), 3, "{:?}", report.missing);
        write(dir.path(), "x-1.ledger", b"");
        write(
            dir.path(),
            "leaky-1-42.log",
            b"2025Z DEBUG hyper_util::client: short\n",
        );
        let report = scan_dir(dir.path(), EXPECT, &[]).expect("scan");
        assert_eq!(report.missing.len(), 2, "{:?}", report.missing);
        assert!(report.missing[0].contains("bytes"), "{:?}", report.missing);
        assert!(report.missing[1].contains("Z TRACE"), "{:?}", report.missing);
    }

    #[test]
    fn trees_are_scanned_gunzipped_and_with_exceptions() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().expect("dir");
        let secret = Secret {
            label: "tree secret".to_owned(),
            value: "tree-secret-5521".to_owned(),
        };
        std::fs::create_dir_all(dir.path().join("a/b")).expect("dirs");
        std::fs::create_dir_all(dir.path().join("skipped")).expect("dirs");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"inside tree-secret-5521 gz").expect("gzip");
        write(
            &dir.path().join("a/b"),
            "layer.tar.gz",
            &gz.finish().expect("gzip"),
        );
        write(&dir.path().join("skipped"), "config.json", b"tree-secret-5521");
        write(dir.path(), "clean.txt", b"nothing");
        let (files, leaks) = leaks_in_tree(
            dir.path(),
            &[dir.path().join("skipped")],
            std::slice::from_ref(&secret),
        )
        .expect("scan");
        assert_eq!(files, 2);
        assert_eq!(
            leaks,
            [(dir.path().join("a/b/layer.tar.gz"), "tree secret".to_owned())]
        );
    }
}
