//! Golden fixtures: each main configuration rendered whole, compared with the YAML under
//! `tests/golden/`. `UPDATE_GOLDEN=1 cargo test -p kaniko-builder-k8s --test golden` rewrites them.
#![allow(clippy::print_stderr)] // a failing comparison explains itself

mod common;

use std::fmt::Write as _;

/// A line diff (longest common subsequence), `-` for the fixture, `+` for the rendering, with
/// three lines of context around each change.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', i + 1, a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i + 1, a[i]));
            i += 1;
        } else {
            ops.push(('+', j + 1, b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.0 != ' ')
        .map(|(k, _)| k)
        .collect();
    let mut out = String::new();
    let mut last = None;
    for (k, (tag, line, text)) in ops.iter().enumerate() {
        if !changed.iter().any(|&c| c.abs_diff(k) <= 3) {
            continue;
        }
        if last.is_some_and(|l| l + 1 != k) {
            out.push_str("   ...\n");
        }
        let _ = writeln!(out, "{tag}{line:>5} {text}");
        last = Some(k);
    }
    out
}

#[test]
fn renders_match_the_golden_fixtures() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for case in common::cases() {
        let yaml = case.render().to_yaml().expect("yaml");
        let path = common::golden_dir().join(format!("{}.yaml", case.name));
        if update {
            std::fs::create_dir_all(common::golden_dir()).expect("golden dir");
            std::fs::write(&path, &yaml).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1 to create it", path.display()));
        if expected != yaml {
            eprintln!(
                "golden mismatch for {} (- fixture, + rendering):\n{}",
                path.display(),
                diff(&expected, &yaml)
            );
            failures.push(case.name);
        }
    }
    assert!(
        failures.is_empty(),
        "renderings differ from their fixtures: {failures:?}; if intended, rerun with UPDATE_GOLDEN=1 and review the diff"
    );
}

#[test]
fn fixtures_parse_back_to_the_rendered_objects() {
    for case in common::cases() {
        let m = case.render();
        let path = common::golden_dir().join(format!("{}.yaml", case.name));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // the comparison test reports missing fixtures
        };
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("fixture parses");
        let objects: Vec<serde_json::Value> =
            m.objects().iter().map(|o| o.to_json().expect("json")).collect();
        assert_eq!(docs, objects, "{}", case.name);
    }
}

#[test]
fn the_diff_is_readable() {
    let d = diff("a\nb\nc\n", "a\nB\nc\n");
    assert_eq!(d, "     1 a\n-    2 b\n+    2 B\n     3 c\n");
}
