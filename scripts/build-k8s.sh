#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kube-scheduler (v1.20.2) from Debian's
# `kubernetes` source package and caches them in $KB_CACHE/k8s-v1.20.2/bin. A second run is instant.
# Why from source: no reachable package registry ships these binaries (see README, "Testing").
set -euo pipefail

VERSION=1.20.2
CACHE=${KB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kaniko-builder}
OUT=$CACHE/k8s-v$VERSION/bin
BINS=(kube-apiserver kube-controller-manager kube-scheduler)

have_all() { for b in "${BINS[@]}"; do [ -x "$OUT/$b" ] || return 1; done; }
if have_all; then echo "k8s binaries cached in $OUT"; exit 0; fi

need=()
for p in golang-go golang-github-modern-go-reflect2-dev rsync jq dpkg-dev make; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

WORK=$CACHE/k8s-src
mkdir -p "$WORK" "$OUT"
cd "$WORK"

if [ ! -d "$WORK/tree" ]; then
  # A private sources list so the system's apt configuration is left untouched.
  uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=http://deb.debian.org/debian
  mkdir -p apt/lists/partial
  echo "deb-src [trusted=yes] $uri bookworm main" > apt/sources.list
  apt_opts=(-o "Dir::Etc::SourceList=$WORK/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$WORK/apt/lists")
  apt-get "${apt_opts[@]}" update -q
  rm -rf dl && mkdir dl && (cd dl && apt-get "${apt_opts[@]}" source --download-only kubernetes)
  dsc=$(ls dl/kubernetes_*.dsc | head -n1)
  rm -rf tree.tmp && dpkg-source --no-check -x "$dsc" tree.tmp
  # The vendored reflect2 v1.0.1 crashes under Go >= 1.18 ("fatal error: fault"): use Debian's.
  rm -rf tree.tmp/vendor/github.com/modern-go/reflect2
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 tree.tmp/vendor/github.com/modern-go/reflect2
  rm -f tree.tmp/vendor/github.com/modern-go/reflect2/go.mod
  mv tree.tmp tree
  rm -rf dl
fi

# GOPATH mode: module mode does not build this tree.
export GOPATH=$WORK/gopath GOCACHE=$WORK/gocache GO111MODULE=off GOPROXY=off CGO_ENABLED=0 GOFLAGS=
mkdir -p "$GOPATH/src/k8s.io"
ln -sfn "$WORK/tree" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" \
  KUBE_GIT_VERSION=v$VERSION GOLDFLAGS="-s -w"
for b in "${BINS[@]}"; do
  install -m 0755 "$(find _output -type f -name "$b" -path '*bin*' | head -n1)" "$OUT/$b"
done
have_all
# Only the binaries are reused; the source tree and Go's cache are GBs of disk.
cd / && rm -rf "$WORK"
echo "k8s binaries built into $OUT"
