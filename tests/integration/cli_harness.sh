# Sourced by the CLI tests (test_cli_social.sh, test_cli_groups.sh): starts
# the real parleyd on a free port with a temp data dir and the extra options
# in PARLEYD_ARGS (an array), exports PARLEY_SERVER and PARLEY_PASSWORD for
# the CLI, and defines expect. The log is shown if a check failed.
PARLEYD=${PARLEYD:?PARLEYD must point at parleyd}
CLI=${PARLEY_CLI:?PARLEY_CLI must point at the parley CLI}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parley-cli-XXXXXX")
port=$(python3 "$(dirname "${BASH_SOURCE[0]}")/free_port.py")
log=$tmp/parleyd.log
export PARLEY_SERVER=127.0.0.1:$port PARLEY_PASSWORD=secret-pass
pid=
failed=0
# parleyd dies with the test however it ends (setpriv: the kernel kills it
# when the test's shell goes, also on SIGKILL or a ctest timeout).
die_with_us=()
if command -v setpriv >/dev/null; then die_with_us=(setpriv --pdeathsig KILL); fi
${die_with_us[@]+"${die_with_us[@]}"} "$PARLEYD" --data "$tmp/data" --listen "127.0.0.1:$port" --http off \
  --threads 2 --argon2-mem 8 --argon2-ops 1 ${PARLEYD_ARGS[@]+"${PARLEYD_ARGS[@]}"} 2>>"$log" &
pid=$!
cleanup() {
  kill -9 "$pid" 2>/dev/null || true
  if [[ $failed -ne 0 ]]; then tail -n 30 "$log" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP # through cleanup
# Listening within 30 s (a loaded machine starts it slowly), or the test stops here.
for _ in $(seq 1500); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.02
done
if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "FAIL parleyd did not start listening on $port; log:" >&2
  failed=1
  exit 1
fi

# expect NAME WANT_RC WANT_STDOUT CMD...: runs the CLI and compares exactly.
expect() {
  local name=$1 want_rc=$2 want_out=$3 rc=0 out
  shift 3
  out=$("$@" 2>"$tmp/err") || rc=$?
  if [[ $rc == "$want_rc" && $out == "$want_out" ]]; then
    echo "PASS $name"
  else
    echo "FAIL $name: exit $rc (want $want_rc), stdout <<$out>> (want <<$want_out>>), stderr $(cat "$tmp/err")"
    failed=$((failed + 1))
  fi
}
