#!/usr/bin/env bash
# Fuzzes the parsers that read untrusted input (image references, docker config.json,
# WWW-Authenticate challenges, .dockerignore) with cargo-fuzz, each for SECONDS (default 10).
#   scripts/fuzz.sh        # the short pass scripts/test.sh runs (~10 s a target)
#   scripts/fuzz.sh 600    # a longer run: 10 min a target
# The seed corpus in fuzz/corpus/<target>/ is read, never written: new inputs go to a temporary
# directory. A crash stops the script and leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-10}"
TARGETS=(image_ref docker_config www_authenticate dockerignore)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# libFuzzer needs nightly flags (-Z sanitizer); on a stable toolchain they are unlocked this way.
export RUSTC_BOOTSTRAP=1

cargo fuzz build -O
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${TARGETS[@]}"; do
  mkdir -p "$work/$t"
  printf '\n==> fuzz %s for %ss\n' "$t" "$SECONDS_PER_TARGET" >&2
  status=0
  cargo fuzz run -O "$t" "$work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$work/$t.log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done )|panicked|deadly signal|Test unit written|SUMMARY' "$work/$t.log" >&2 || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$work/$t.log" >&2
    exit "$status"
  fi
done
