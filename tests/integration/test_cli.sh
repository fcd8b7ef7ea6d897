#!/usr/bin/env bash
# The parley CLI against the real parleyd: the issue's "Done when" scenario
# exactly as a user types it (register alice and bob, alice sends bob a
# message, kill -9 the server, restart it, bob's `parley recv` prints it once,
# a second recv prints nothing), then the CLI's error exits (documented in
# `parley --help`: 3 server unreachable, 4 authentication refused, 5 message
# refused).
set -euo pipefail
PARLEYD=${PARLEYD:?PARLEYD must point at parleyd}
CLI=${PARLEY_CLI:?PARLEY_CLI must point at the parley CLI}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parley-cli-XXXXXX")
port=$(python3 "$(dirname "${BASH_SOURCE[0]}")/free_port.py")
log=$tmp/parleyd.log
export PARLEY_SERVER=127.0.0.1:$port
pid=
passed=0
failed=0

# parleyd dies with this script however it ends (setpriv: the kernel kills it
# when the script's shell goes, also on SIGKILL or a ctest timeout).
die_with_us=()
if command -v setpriv >/dev/null; then die_with_us=(setpriv --pdeathsig KILL); fi
start_server() {
  ${die_with_us[@]+"${die_with_us[@]}"} "$PARLEYD" --data "$tmp/data" --listen "127.0.0.1:$port" --http off \
    --threads 2 2>>"$log" &
  pid=$!
  for _ in $(seq 1500); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.02
  done
  echo "parleyd did not start listening on $port; log $log:" >&2
  cat "$log" >&2
  exit 1
}
cleanup() {
  if [[ -n $pid ]]; then kill -9 "$pid" 2>/dev/null || true; fi
  if [[ $failed -ne 0 ]]; then
    echo "parleyd log ($log), last lines:" >&2
    tail -n 30 "$log" >&2 || true
    rm -rf "$tmp/data"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP # through cleanup

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

# run NAME CMD...: runs a CLI command; sets $out, $err and $rc (never exits).
run() {
  local name=$1
  shift
  rc=0
  "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || rc=$?
  out=$(cat "$tmp/$name.out")
  err=$(cat "$tmp/$name.err")
}

# pyjson 'python condition on d' JSON: 0 if JSON parses and the condition holds.
pyjson() {
  python3 -c 'import json,sys; d=json.loads(sys.argv[2]); sys.exit(0 if eval("(" + sys.argv[1] + ")") else 1)' "$1" "$2" 2>/dev/null
}

alice=(--user alice --password alice-secret)
bob=(--user bob --password bob-secret)

# 1. The "Done when" scenario.
start_server
register() { # NAME CREDENTIALS...
  local who=$1
  shift
  run "reg_$who" "$CLI" "$@" register
  if [[ $rc -eq 0 && $out == "{\"registered\":\"$who\",\"device\":\"default\"}" && -z $err ]]; then
    pass "register $who"
  else
    fail "register $who" "rc=$rc out='$out' err='$err'"
  fi
}
register alice "${alice[@]}"
register bob "${bob[@]}"

run send "$CLI" "${alice[@]}" send bob "hello bob"
send_out=$out
now_ms=$(python3 -c 'import time; print(int(time.time()*1000))')
if [[ $rc -eq 0 && $(printf '%s\n' "$out" | wc -l) -eq 1 ]] &&
  pyjson "list(d) == ['id','conv','seq','server_ts'] and isinstance(d['id'], str) and d['id'] != ''
          and d['conv'] == 'dm:alice:bob' and d['seq'] == 1 and abs(d['server_ts'] - $now_ms) < 60000" "$out"; then
  pass "send prints {\"id\":...,\"conv\":\"dm:alice:bob\",\"seq\":1,\"server_ts\":...}"
else
  fail "send prints the ack" "rc=$rc out='$out' err='$err'"
fi

kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=
start_server

run recv1 "$CLI" "${bob[@]}" recv
sent_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$send_out" 2>/dev/null || echo "?")
if [[ $rc -eq 0 && $(printf '%s\n' "$out" | grep -c .) -eq 1 ]] &&
  pyjson "d['type'] == 'message' and d['from'] == 'alice' and d['text'] == 'hello bob'
          and d['conv'] == 'dm:alice:bob' and d['seq'] == 1 and d['id'] == '$sent_id'
          and d['client_ts'] > 0 and d['server_ts'] > 0" "$out"; then
  pass "recv after kill -9 and restart prints the message, once"
else
  fail "recv after kill -9 and restart" "rc=$rc out='$out' err='$err'"
fi

run recv2 "$CLI" "${bob[@]}" recv
if [[ $rc -eq 0 && -z $out ]]; then
  pass "a second recv prints nothing"
else
  fail "a second recv prints nothing" "rc=$rc out='$out' err='$err'"
fi

# 2. Retrying with the same --id makes no second copy.
run id1 "$CLI" "${alice[@]}" send --id retry-1 bob "once"
id1=$out
run id2 "$CLI" "${alice[@]}" send --id retry-1 bob "once"
id2=$out
run recv3 "$CLI" "${bob[@]}" recv
if pyjson "d['id'] == 'retry-1' and d['seq'] == 2" "$id1" && pyjson "d['id'] == 'retry-1' and d['seq'] == 2" "$id2" &&
  [[ $(printf '%s\n' "$out" | grep -c .) -eq 1 ]] && pyjson "d['id'] == 'retry-1' and d['text'] == 'once'" "$out"; then
  pass "send --id twice prints the same seq; bob gets one copy"
else
  fail "send --id twice" "first='$id1' second='$id2' recv='$out'"
fi

# 3. Error exits: non-zero, the documented status, one clear line on stderr, nothing on stdout.
expect_fail() { # NAME STATUS PATTERN
  if [[ $rc -eq $2 && -z $out ]] && grep -qi -- "$3" <<<"$err"; then
    pass "$1 (exit $rc: $err)"
  else
    fail "$1" "want exit $2 and '$3' on stderr; got rc=$rc out='$out' err='$err'"
  fi
}
run dup "$CLI" "${alice[@]}" register
expect_fail "duplicate register" 4 "already taken"
run badpw "$CLI" --user alice --password wrong-password send bob "x"
expect_fail "wrong password" 4 "wrong user name or password"
run nopeer "$CLI" "${alice[@]}" send carol "x"
expect_fail "send to an unknown peer" 5 "unknown peer 'carol'"

kill -TERM "$pid"
src=0
wait "$pid" || src=$?
pid=
if [[ $src -eq 0 ]]; then pass "SIGTERM stops parleyd with status 0"; else fail "SIGTERM" "parleyd exited $src"; fi
run down "$CLI" "${alice[@]}" send bob "x"
expect_fail "server not running" 3 "cannot reach"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
