//! `kb-trace-scan DIR`: the whole-suite secrets scan of `scripts/test.sh`. Exits non-zero when
//! a trace file holds a ledger secret (naming the file and the secret's label, never its value)
//! or when DIR does not hold the suite's TRACE output.
#![allow(clippy::print_stdout)] // the report is the tool's output

use std::process::ExitCode;

use kaniko_builder_testkit::scan::{SUITE, SUITE_LEDGER, scan_dir};

fn main() -> anyhow::Result<ExitCode> {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: kb-trace-scan TRACE_DIR"))?;
    let report = scan_dir(&dir, SUITE, SUITE_LEDGER)?;
    println!(
        "kb-trace-scan: {} trace files, {:.1} MB, {} secrets looked for",
        report.files,
        report.bytes as f64 / 1e6,
        report.secrets
    );
    for (file, label) in &report.leaks {
        println!("LEAK: {} contains {label}", file.display());
    }
    for what in &report.missing {
        println!("INCOMPLETE: {what}");
    }
    Ok(if report.is_clean() {
        println!("kb-trace-scan: no secret in any trace file");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
