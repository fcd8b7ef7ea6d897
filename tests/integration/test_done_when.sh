#!/usr/bin/env bash
# The core issue's "Done when", exactly as a user runs it: with the server
# running, `parley` registers alice and bob, alice sends bob a message while
# bob is offline, the server is killed with kill -9 and restarted, and
# `parley recv` as bob prints that message exactly once; a second `recv`
# prints nothing. Plus the CLI's error exits.
set -uo pipefail
PARLEYD=${PARLEYD:?PARLEYD must point at parleyd}
CLI=${PARLEY_CLI:?PARLEY_CLI must point at parley}
dir=$(mktemp -d "${TMPDIR:-/tmp}/parley-done-XXXXXX")
port=$(python3 "$(dirname "${BASH_SOURCE[0]}")/free_port.py")
export PARLEY_SERVER=127.0.0.1:$port
pass=0 fail=0 pid=

start() {
  "$PARLEYD" --data "$dir/data" --listen "127.0.0.1:$port" --http off --threads 2 2>>"$dir/server.log" &
  pid=$!
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return 0
    sleep 0.05
  done
  echo "parleyd did not start; log:"; cat "$dir/server.log"; exit 1
}
cleanup() { [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
ok() { echo "PASS $1"; pass=$((pass + 1)); }
ko() { echo "FAIL $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else ko "$name"; fi; }
json() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d$2)" "$1"; }

start
alice=(--user alice --password alice-secret)
bob=(--user bob --password bob-secret)
check "register alice" "$CLI" "${alice[@]}" register
check "register bob" "$CLI" "${bob[@]}" register

out=$("$CLI" "${alice[@]}" send bob "hello bob")
check "send prints the ack" test "$(json "$out" "['conv'], d['seq']")" = "dm:alice:bob 1"

kill -9 "$pid"; wait "$pid" 2>/dev/null; start

lines=$("$CLI" "${bob[@]}" recv)
check "recv after kill -9 prints exactly one line" test "$(printf '%s\n' "$lines" | grep -c .)" = 1
check "it is alice's message" test "$(json "$lines" "['type'], d['from'], d['text'], d['seq']")" = "message alice hello bob 1"
check "it carries both clocks" python3 -c "import json,sys; d=json.loads(sys.argv[1]); assert d['client_ts']>0 and d['server_ts']>0" "$lines"
check "a second recv prints nothing" test -z "$("$CLI" "${bob[@]}" recv)"

a=$("$CLI" "${alice[@]}" send --id retry-1 bob "once")
b=$("$CLI" "${alice[@]}" send --id retry-1 bob "once")
check "re-sending the same --id prints the same seq" test "$(json "$a" "['seq']")" = "$(json "$b" "['seq']")"
check "and bob gets it once" test "$("$CLI" "${bob[@]}" recv | grep -c retry-1)" = 1

err=$("$CLI" "${alice[@]}" register 2>&1); rc=$?
check "duplicate register fails clearly" test $rc -ne 0 -a -n "$(grep -i 'taken' <<<"$err")"
err=$("$CLI" --user alice --password wrong-password send bob x 2>&1); rc=$?
check "wrong password fails clearly" test $rc -ne 0 -a -n "$(grep -i 'password' <<<"$err")"
err=$("$CLI" "${alice[@]}" send carol x 2>&1); rc=$?
check "unknown peer fails clearly" test $rc -ne 0 -a -n "$(grep -i 'unknown peer' <<<"$err")"
kill "$pid"; wait "$pid"; rc=$?; pid=
check "SIGTERM stops the server cleanly" test $rc -eq 0
err=$("$CLI" "${alice[@]}" send bob x 2>&1); rc=$?
check "server down fails clearly" test $rc -ne 0 -a -n "$(grep -i 'cannot reach' <<<"$err")"

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
