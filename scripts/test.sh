#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what the tests need (once), builds the
# Kubernetes binaries into the cache when missing, then runs fmt, clippy, the tests and the docs.
# Every service the tests use (registry, token issuer, etcd, API server...) is started by the
# tests themselves on 127.0.0.1 and stopped when they end.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

# A one-shot run gains nothing from incremental caches, which double the disk the build needs.
export CARGO_INCREMENTAL=0
avail_mb=$(df -Pm . | awk 'NR==2 {print $4}')
log "disk: ${avail_mb} MB free here (a cold run needs about 4 GB, plus about 3 GB while the Kubernetes binaries are built once)"

# Debian packages the tests run: the CNCF registry, htpasswd, skopeo/buildah/umoci for images,
# busybox for RUN steps, etcd for the control plane, tinyproxy as a forward proxy.
PKGS=(docker-registry apache2-utils skopeo buildah umoci busybox-static etcd-server openssl tinyproxy)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

log "kubernetes control-plane binaries"
scripts/build-k8s.sh
log "crane (go-containerregistry) for the init container"
# Only the path goes to stdout; the build's own output goes to stderr.
KB_CRANE=$(scripts/build-crane.sh --print-path)
export KB_CRANE

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  log "installing kubernetes-validate (Kubernetes JSON schemas)"
  python3 -m pip install -q --root-user-action=ignore kubernetes-validate==1.37.0
fi
# The schema test may not skip here: the tool was just made sure of.
export KB_REQUIRE_KUBERNETES_VALIDATE=1

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
log "cargo test"
# tests/basic_example.rs runs the compiled example as a process; `cargo test` alone does not
# build the plain example binaries, and a stale one would be tested.
cargo build --workspace --examples --locked
# The host program on rustls' defaults + the aws-lc-rs feature (its own workspace; tests/host_aws_lc.rs runs it).
cargo build --locked --manifest-path tests/host-aws-lc/Cargo.toml --target-dir "${CARGO_TARGET_DIR:-target}"
# Benchmarks are not tests: they run with `cargo bench`.
# The tests run at RUST_LOG=trace with every test binary's whole trace in its own file under
# KB_TRACE_DIR (the console keeps only errors), then kb-trace-scan looks in those files for every
# secret the test processes registered (scripts/trace-scan.sh).
trace_dir="$(realpath -m "${CARGO_TARGET_DIR:-target}")/kb-trace"
rm -rf "$trace_dir"
KB_TRACE_DIR="$trace_dir" RUST_LOG=trace cargo test --workspace --lib --bins --tests --examples --locked
log "secrets scan of the tests' TRACE logs"
scripts/trace-scan.sh "$trace_dir"
cargo test --workspace --doc --locked
log "short fuzz pass (10 s a target; scripts/fuzz.sh 600 for a long run)"
scripts/fuzz.sh 10
log "cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
log "all checks passed"
