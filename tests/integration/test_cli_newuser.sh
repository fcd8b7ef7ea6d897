#!/usr/bin/env bash
# What a new user ran into (issue 18): --listen with a host name, register's
# silence, a missing local file reported as an unreachable server, and fetch
# writing over the user's own file.
set -uo pipefail
PARLEYD=${PARLEYD:?PARLEYD must point at parleyd}
CLI=${PARLEY_CLI:?PARLEY_CLI must point at the parley CLI}
here=$(dirname "$0")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parley-newuser-XXXXXX")
port=$(python3 "$here/free_port.py")
hport=$(python3 "$here/free_port.py")
pid=
failed=0
cleanup() {
  [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null
  if [[ $failed -ne 0 ]]; then tail -n 30 "$tmp/log" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

# A host name that does not resolve: exit 2 and the reason, at once.
out=$("$PARLEYD" --data "$tmp/x" --listen no-such-host.invalid:7702 2>&1)
rc=$?
[[ $rc == 2 && $out == *"cannot resolve host 'no-such-host.invalid'"* ]] && pass "unresolvable --listen" ||
  fail "unresolvable --listen" "exit $rc: $out"

die_with_us=()
if command -v setpriv >/dev/null; then die_with_us=(setpriv --pdeathsig KILL); fi
${die_with_us[@]+"${die_with_us[@]}"} "$PARLEYD" --data "$tmp/data" --listen "localhost:$port" \
  --http "localhost:$hport" --threads 1 --argon2-mem 8 --argon2-ops 1 --media-files 1 2>"$tmp/log" &
pid=$!
for _ in $(seq 1500); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.02
done
if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  fail "--listen localhost:PORT" "parleyd is not listening on 127.0.0.1:$port"
  exit 1
fi
pass "--listen localhost:PORT"
grep -q "listening on 127.0.0.1:$port" "$tmp/log" && pass "the address is logged" || fail "log" "$(head -3 "$tmp/log")"

A=("$CLI" --server "localhost:$port" --http "localhost:$hport" --user alice --password secret-pass)
B=("$CLI" --server "localhost:$port" --http "localhost:$hport" --user bob --password secret-pass)
out=$("${A[@]}" register 2>&1)
[[ $out == '{"registered":"alice","device":"default"}' ]] && pass "register says so" || fail "register" "$out"
"${B[@]}" register >/dev/null

out=$("${A[@]}" send --image "$tmp/no-such-file.jpg" bob "hi" 2>&1)
rc=$?
[[ $rc == 1 && $out == *"cannot read $tmp/no-such-file.jpg"* ]] && pass "a missing file is exit 1" ||
  fail "missing file" "exit $rc (want 1, not 3 = unreachable): $out"

head -c 3000 /dev/urandom >"$tmp/doc.bin"
ack=$("${A[@]}" send --image "$tmp/doc.bin" bob "a file")
id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["media"]["id"])' "$ack")
echo "my own photo" >"$tmp/photo.jpg"
out=$("${B[@]}" fetch "$id" "$tmp/photo.jpg" 2>&1)
rc=$?
[[ $rc == 1 && $out == *"exists"* && $(cat "$tmp/photo.jpg") == "my own photo" ]] &&
  pass "fetch keeps an existing file" || fail "fetch over a file" "exit $rc: $out; file now $(head -c 40 "$tmp/photo.jpg")"
"${B[@]}" fetch --force "$id" "$tmp/photo.jpg" && cmp -s "$tmp/photo.jpg" "$tmp/doc.bin" &&
  pass "fetch --force overwrites" || fail "fetch --force" "not the uploaded bytes"
"${B[@]}" fetch "$id" "$tmp/new.bin" && cmp -s "$tmp/new.bin" "$tmp/doc.bin" && pass "fetch to a new file" ||
  fail "fetch to a new file" "not the uploaded bytes"
exit $((failed > 0))
