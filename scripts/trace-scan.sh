#!/usr/bin/env bash
# Scans the per-process trace files a `KB_TRACE_DIR=DIR RUST_LOG=trace cargo test` run wrote for
# every secret in the processes' ledgers (see kaniko-builder-testkit/src/scan/). Fails naming
# the file and the secret's label, or when DIR does not hold the suite's TRACE output.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:?usage: scripts/trace-scan.sh TRACE_DIR}"
exec cargo run -q -p kaniko-builder-testkit --bin kb-trace-scan --locked -- "$dir"
