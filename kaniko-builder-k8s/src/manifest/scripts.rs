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
