//! The shell scripts of the two containers. They are part of the contract described in the
//! [module docs](super): change them only together with that description.

/// The `kaniko-init` script, run as `/busybox/sh -c INIT_SCRIPT`.
///
/// Reads `KB_DESTINATION`, `FORCE_BUILD`, `KB_INSECURE`, `KB_CALLER_PROBE`, `KB_CONTEXT_KIND`,
/// `KB_CONTEXT_BLOB` (and `DOCKER_CONFIG` through crane). Writes the decision to
/// `/kaniko/state/decision` and `/dev/termination-log`; exits 0 for `build` and `skip`, 1 when it
/// cannot tell.
///
/// Only crane's final error decides "absent". `crane digest` tries HEAD first and, when that
/// fails, prints a warning with the HEAD's error (`HEAD request failed, falling back on GET: …
/// 404 …`) before trying GET; only the GET's error, the last `Error: ` line, says what happened.
/// Absent is exactly a 404: the error codes `MANIFEST_UNKNOWN` or `NAME_UNKNOWN`, or a bodiless
/// `unexpected status code 404`. Anything else (401, 403, 429, 5xx, network, TLS) is an error,
/// except an authentication failure the executor may not share (see [`INIT_SCRIPT`]'s
/// `unverified`): crane sees only the Secret's `config.json`, while kaniko also has its bundled
/// credential helpers and workload identity. When crane is refused (`UNAUTHORIZED`, `DENIED`,
/// 401, 403, or a credential helper it does not have) and either the caller's probe already
/// found the tag absent (`KB_CALLER_PROBE=absent`) or the Secret holds no entry for the
/// destination registry, the decision is `build` with reason `unverified` and the executor's
/// credentials decide; with an entry and no caller probe it is an error (wrong credentials).
pub const INIT_SCRIPT: &str = r#"set -u
PATH="$PATH:/ko-app:/busybox"
state=/kaniko/state/decision
term=/dev/termination-log
fail() {
  echo "kaniko-init: $1" >&2
  msg=$(printf '%s' "$1" | tr '\r\n\t' '   ' | sed 's/["\\]//g' | cut -c1-1024)
  printf '{"decision":"error","message":"%s"}' "$msg" > "$term"
  exit 1
}
# Whether the Secret's config.json names the destination registry (auths or credHelpers key).
has_entry() {
  cfg="${DOCKER_CONFIG:-/kaniko/.docker}/config.json"
  [ -f "$cfg" ] || return 1
  host=${KB_DESTINATION%%/*}
  case "$host" in docker.io|index.docker.io|registry-1.docker.io) host=index.docker.io ;; esac
  grep -qF -e "\"$host\"" -e "\"$host/" -e "//$host\"" -e "//$host/" "$cfg"
}
force=$(printf '%s' "${FORCE_BUILD:-}" | tr -d ' \t\r\n')
case "$force" in
  Y|y|yes|true|1) forced=yes ;;
  N|n|no|false|0|'') forced=no ;;
  *) fail "FORCE_BUILD=$force is not one of Y y yes true 1 N n no false 0 or empty" ;;
esac
insecure=
if [ "${KB_INSECURE:-}" = true ]; then insecure=--insecure; fi
if [ "$forced" = yes ]; then
  decision='{"decision":"build","reason":"forced"}'
elif out=$(crane digest $insecure "$KB_DESTINATION" 2>/kaniko/state/crane.err); then
  if printf '%s' "$out" | grep -Eq '^sha256:[0-9a-f]{64}$'; then
    decision="{\"decision\":\"skip\",\"digest\":\"$out\"}"
  else
    fail "crane digest $KB_DESTINATION printed no digest: $out"
  fi
else
  err=$(cat /kaniko/state/crane.err)
  printf '%s\n' "$err" >&2
  # The HEAD's warning comes first; the last "Error: " line is the GET's answer.
  final=$(grep '^Error: ' /kaniko/state/crane.err | tail -n 1)
  if printf '%s' "$final" | grep -Eq '^Error: GET [^ ]+: ((MANIFEST_UNKNOWN|NAME_UNKNOWN): |unexpected status code 404 Not Found)'; then
    decision='{"decision":"build","reason":"absent"}'
  elif printf '%s' "$final" | grep -Eq ': (UNAUTHORIZED|DENIED): |unexpected status code 40[13] |error getting credentials'; then
    if [ "${KB_CALLER_PROBE:-}" = absent ] || ! has_entry; then
      echo "kaniko-init: crane was refused ($final); the caller's probe or the executor's own credentials decide: building" >&2
      decision='{"decision":"build","reason":"unverified"}'
    else
      fail "cannot tell whether $KB_DESTINATION exists, not building: $err"
    fi
  else
    fail "cannot tell whether $KB_DESTINATION exists, not building: $err"
  fi
fi
printf '%s\n' "$decision" > "$state" || fail "cannot write $state"
case "$decision" in
  *'"build"'*)
    if [ "${KB_CONTEXT_KIND:-}" = upload ]; then
      if [ -n "${KB_CONTEXT_BLOB:-}" ]; then
        repo=${KB_DESTINATION%:*}
        crane blob $insecure "$repo@$KB_CONTEXT_BLOB" > /kaniko/state/context.tar.gz \
          || fail "cannot fetch the context blob $repo@$KB_CONTEXT_BLOB"
        tar -xzf /kaniko/state/context.tar.gz -C /workspace \
          || fail "cannot unpack the context blob $KB_CONTEXT_BLOB"
        rm -f /kaniko/state/context.tar.gz
      else
        echo "kaniko-init: waiting for the context upload to finish (/workspace/.kb-upload-complete)" >&2
        while [ ! -e /workspace/.kb-upload-complete ]; do sleep 1; done
        rm -f /workspace/.kb-upload-complete
      fi
    fi
    ;;
esac
printf '%s' "$decision" > "$term"
echo "kaniko-init: $decision"
exit 0
"#;

/// The `image-builder` wrapper, run as `/busybox/sh -c BUILDER_WRAPPER kaniko <kaniko args…>`, so
/// `"$@"` holds the kaniko arguments.
pub const BUILDER_WRAPPER: &str = r#"decision=$(cat /kaniko/state/decision 2>/dev/null)
case "$decision" in
  *'"decision":"skip"'*)
    printf '%s' "$decision" > /dev/termination-log
    echo "image-builder: the image exists, not building: $decision"
    exit 0
    ;;
  *'"decision":"build"'*)
    exec /kaniko/executor "$@"
    ;;
  *)
    echo "image-builder: no decision from kaniko-init in /kaniko/state/decision" >&2
    exit 1
    ;;
esac
"#;

/// `$0` of the wrapper: the first argument after the script.
pub const BUILDER_ARGV0: &str = "kaniko";

/// What `kaniko-init` runs before [`INIT_SCRIPT`] in the Job of one platform of a multi-platform
/// build, as `/busybox/sh -c "$PLATFORM_INIT_PRELUDE$INIT_SCRIPT"`: it copies crane into the
/// `kaniko-tools` emptyDir (`/kaniko/tools/crane`), where [`PLATFORM_BUILDER_WRAPPER`] runs it
/// to push the image by digest (the kaniko image has no crane, and crane is a static binary).
/// A failed copy is an error decision (`{"decision":"error",…}`, exit 1), like any other.
pub const PLATFORM_INIT_PRELUDE: &str = r#"PATH="$PATH:/ko-app:/busybox"
if ! src=$(command -v crane) || ! cp "$src" /kaniko/tools/crane || ! chmod 0755 /kaniko/tools/crane; then
  echo "kaniko-init: cannot copy crane to /kaniko/tools/crane" >&2
  printf '{"decision":"error","message":"cannot copy crane to /kaniko/tools/crane"}' > /dev/termination-log
  exit 1
fi
"#;

/// The `image-builder` wrapper of one platform of a multi-platform build, run as
/// `/busybox/sh -c PLATFORM_BUILDER_WRAPPER kaniko <kaniko args…>`.
///
/// kaniko cannot push by digest (its destinations are tags), so it gets no `--destination`: it
/// writes the image as an OCI layout (`--no-push --image-format=oci
/// --oci-layout-path=/kaniko/out/layout --digest-file=/kaniko/out/digest`). Then the crane that
/// `kaniko-init` copied pushes that layout by digest only, no tag, once per line of `KB_PUSH`
/// (`<registry>/<repository>` and crane's flags, i.e. `--insecure` for a registry without TLS
/// or TLS verification): `/kaniko/tools/crane push [--insecure] /kaniko/out/layout
/// "<registry>/<repository>@$digest"`, with the Secret's `config.json` through `DOCKER_CONFIG`.
/// Last, the digest goes to `/dev/termination-log`, as kaniko's `--digest-file` writes it for a
/// single-platform build.
///
/// The decision is honoured as in [`BUILDER_WRAPPER`] (a `skip` is copied to the termination
/// message, exit 0; a platform's Job is rendered forced, so it never skips). Any failure — no
/// decision, no crane, kaniko's exit code, no or a malformed digest file, no layout, a crane push
/// — exits 1 with `image-builder: <what failed>` on stderr and in the termination message.
///
/// After kaniko ran, the root filesystem holds the built image's files, possibly of another
/// architecture: from there on the script uses only shell builtins and the two binaries under
/// `/kaniko`, which kaniko never touches, with `PATH=/kaniko:/busybox` (kaniko's credential
/// helpers for crane).
pub const PLATFORM_BUILDER_WRAPPER: &str = r#"out=/kaniko/out
crane=/kaniko/tools/crane
fail() {
  echo "image-builder: $1" >&2
  printf 'image-builder: %s' "$1" > /dev/termination-log
  exit 1
}
decision=$(cat /kaniko/state/decision 2>/dev/null)
case "$decision" in
  *'"decision":"skip"'*)
    printf '%s' "$decision" > /dev/termination-log
    echo "image-builder: the image exists, not building: $decision"
    exit 0
    ;;
  *'"decision":"build"'*) ;;
  *) fail "no decision from kaniko-init in /kaniko/state/decision" ;;
esac
[ -x "$crane" ] || fail "no crane at $crane (kaniko-init copies it there)"
[ -n "${KB_PUSH:-}" ] || fail "KB_PUSH names no repository to push to"
rm -rf "$out/layout" "$out/digest"
/kaniko/executor "$@" || fail "kaniko failed with exit code $?"
# The root filesystem is now the built image's: builtins and /kaniko only.
PATH=/kaniko:/busybox
[ -f "$out/digest" ] || fail "kaniko wrote no digest to $out/digest"
digest=
read -r digest < "$out/digest"
hex=${digest#sha256:}
case "$digest" in
  sha256:*) ;;
  *) fail "kaniko wrote no sha256 digest to $out/digest: $digest" ;;
esac
case "$hex" in
  *[!0-9a-f]*) fail "kaniko wrote a malformed digest to $out/digest: $digest" ;;
esac
[ "${#hex}" -eq 64 ] || fail "kaniko wrote a malformed digest to $out/digest: $digest"
[ -f "$out/layout/index.json" ] || fail "kaniko wrote no OCI layout to $out/layout"
set -f
IFS='
'
for line in $KB_PUSH; do
  IFS=' '
  set -- $line
  repo=$1
  shift
  echo "image-builder: $crane push $* $out/layout $repo@$digest"
  pushed=$("$crane" push "$@" "$out/layout" "$repo@$digest") \
    || fail "crane push to $repo@$digest failed with exit code $?"
  case "$pushed" in
    *"@$digest") echo "image-builder: pushed $pushed" ;;
    *) fail "crane push to $repo@$digest printed $pushed, not the digest" ;;
  esac
done
printf '%s' "$digest" > /dev/termination-log
exit 0
"#;
