//! Every rendered document validated against the real Kubernetes JSON schemas with PyPI's
//! `kubernetes-validate` (strict: unknown fields fail), for the oldest Kubernetes it ships (1.25,
//! nearest to the 1.20 test cluster) and the version the dev-dependencies compile against (1.33).
//!
//! Install the tool with `pip install kubernetes-validate`. Without it this test says so loudly and
//! passes, unless `KB_REQUIRE_KUBERNETES_VALIDATE=1` makes a missing tool a failure (for CI).
#![allow(clippy::print_stderr)] // the loud skip is the point

mod common;

use std::process::Command;

const VERSIONS: [&str; 2] = ["1.25.0", "1.33.0"];
const PIP: &str = "pip install kubernetes-validate";

fn tool_available() -> bool {
    Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn rendered_documents_match_the_kubernetes_schemas() {
    if !tool_available() {
        let required = std::env::var_os("KB_REQUIRE_KUBERNETES_VALIDATE").is_some_and(|v| v == "1");
        eprintln!(
            "\n\n!!! SKIPPED schema validation: `kubernetes-validate` is not on PATH. Install it with:\n!!!     {PIP}\n\n"
        );
        assert!(
            !required,
            "kubernetes-validate is required (KB_REQUIRE_KUBERNETES_VALIDATE=1): {PIP}"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for case in common::cases() {
        let path = dir.path().join(format!("{}.yaml", case.name));
        std::fs::write(&path, case.render().to_yaml().expect("yaml")).expect("write");
        files.push(path);
    }
    // The committed fixtures too, so what users copy is what was validated.
    for entry in std::fs::read_dir(common::golden_dir()).expect("golden dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    let mut cmd = Command::new("kubernetes-validate");
    cmd.arg("--strict").arg("--quiet");
    for v in VERSIONS {
        cmd.arg("-k").arg(v);
    }
    let out = cmd.args(&files).output().expect("run kubernetes-validate");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate rejected a document:\n{report}"
    );
    assert!(!report.contains("ERROR"), "{report}");
}
