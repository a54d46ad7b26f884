//! The shell scripts of the two containers. They are part of the contract described in the
//! [module docs](super): change them only together with that description.

/// The `kaniko-init` script, run as `/busybox/sh -c INIT_SCRIPT`.
///
/// Reads `KB_DESTINATION`, `FORCE_BUILD`, `KB_INSECURE`, `KB_CONTEXT_KIND`, `KB_CONTEXT_BLOB`
/// (and `DOCKER_CONFIG` through crane). Writes the decision to `/kaniko/state/decision` and
/// `/dev/termination-log`; exits 0 for `build` and `skip`, 1 when it cannot tell.
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
  if printf '%s' "$err" | grep -Eq 'MANIFEST_UNKNOWN|NAME_UNKNOWN|(^|[^0-9])404([^0-9]|$)'; then
    decision='{"decision":"build","reason":"absent"}'
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
