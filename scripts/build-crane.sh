#!/usr/bin/env bash
# Builds `crane` (go-containerregistry's CLI, the tool the kaniko-init container calls) v0.20.1 from
# Debian's archive and caches it in $KB_CACHE/crane-v0.20.1/crane. A second run is instant.
# Source: trixie's orig tarball (checked by its sha256). Go dependencies: bookworm's golang-*-dev
# packages, downloaded and unpacked into a private directory, never installed. Nothing is written to
# the repository and the system's apt configuration is left untouched.
#
#   scripts/build-crane.sh               build when missing, report on stdout
#   scripts/build-crane.sh --print-path  same, but stdout carries only the binary's path (last line);
#                                        everything else goes to stderr
set -euo pipefail

print_path=0
case "${1:-}" in
  --print-path) print_path=1 ;;
  "") ;;
  *) echo "usage: $0 [--print-path]" >&2; exit 2 ;;
esac
if [ "$print_path" = 1 ]; then exec 3>&1 1>&2; fi

VERSION=0.20.1
ORIG=go-containerregistry_${VERSION}+ds1.orig.tar.xz
ORIG_SHA256=cf7aafa9cf344b2ce631c7ee857e9025692fec5e4c4b95246fb64d045082ea59
CACHE=${KB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kaniko-builder}
OUT_DIR=$CACHE/crane-v$VERSION
OUT=$OUT_DIR/crane
MODULE=github.com/google/go-containerregistry
# Go packages cmd/crane imports (directly or not) that the source tarball does not carry.
DEPS=(
  golang-github-docker-docker-dev                     # also holds docker/cli's config package
  golang-github-docker-distribution-dev
  golang-github-docker-docker-credential-helpers-dev
  golang-github-docker-go-connections-dev
  golang-github-docker-go-units-dev
  golang-github-containerd-stargz-snapshotter-dev
  golang-github-klauspost-compress-dev
  golang-github-cespare-xxhash-dev
  golang-github-opencontainers-go-digest-dev
  golang-github-opencontainers-image-spec-dev
  golang-github-vbatts-tar-split-dev
  golang-github-mitchellh-go-homedir-dev
  golang-github-spf13-cobra-dev
  golang-github-spf13-pflag-dev
  golang-github-google-go-cmp-dev
  golang-github-gogo-protobuf-dev
  golang-github-pkg-errors-dev
  golang-github-sirupsen-logrus-dev
  golang-golang-x-sync-dev
  golang-golang-x-sys-dev
)

done_msg() {
  echo "$1 $OUT_DIR"
  if [ "$print_path" = 1 ]; then echo "$OUT" >&3; fi
}

if [ -x "$OUT" ]; then done_msg "crane cached in"; exit 0; fi

# Build tools only; the -dev packages above are not installed.
need=()
for p in golang-go xz-utils; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

WORK=$CACHE/crane-src
rm -rf "$WORK"
mkdir -p "$WORK/dl" "$WORK/debs" "$WORK/deps" "$OUT_DIR"
cd "$WORK"

uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$uri" ] || uri=http://deb.debian.org/debian

# As root, apt hands downloads to the unprivileged `_apt` user, which cannot write under $HOME: let
# these two downloads run as root instead of warning about it.
sandbox=()
if [ "$(id -u)" = 0 ]; then sandbox=(-o APT::Sandbox::User=root); fi

echo "fetching $ORIG"
/usr/lib/apt/apt-helper "${sandbox[@]}" download-file \
  "$uri/pool/main/g/go-containerregistry/$ORIG" "dl/$ORIG" "SHA256:$ORIG_SHA256"

echo "fetching ${#DEPS[@]} Go dependency packages (unpacked here, not installed)"
if ! (cd debs && apt-get "${sandbox[@]}" download "${DEPS[@]}"); then
  # Usually a missing or stale package list.
  apt-get update -q
  (cd debs && apt-get "${sandbox[@]}" download "${DEPS[@]}")
fi
for deb in debs/*.deb; do dpkg -x "$deb" deps; done

tar -xJf "dl/$ORIG"
src=$(find . -maxdepth 1 -type d -name 'go-containerregistry*' | head -n1)
[ -n "$src" ] || { echo "no source directory in $ORIG" >&2; exit 1; }

# GOPATH mode: the tree is the first GOPATH entry, the unpacked gocode the second.
mkdir -p "gopath/src/$(dirname "$MODULE")"
ln -sfn "$WORK/$src" "gopath/src/$MODULE"
export GOPATH=$WORK/gopath:$WORK/deps/usr/share/gocode GOCACHE=$WORK/gocache \
  GO111MODULE=off GOPROXY=off CGO_ENABLED=0 GOFLAGS=
echo "building cmd/crane with $(go version)"
cd "gopath/src/$MODULE"
go build -trimpath -o "$OUT.tmp" \
  -ldflags "-s -w -X $MODULE/cmd/crane/cmd.Version=v$VERSION -X $MODULE/pkg/v1/remote/transport.Version=v$VERSION" \
  ./cmd/crane
got=$("$OUT.tmp" version)
[ "$got" = "v$VERSION" ] || { echo "built crane says '$got', expected v$VERSION" >&2; exit 1; }
mv "$OUT.tmp" "$OUT"

# Only the binary is reused.
cd / && rm -rf "$WORK"
done_msg "crane built into"
