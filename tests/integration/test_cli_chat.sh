#!/usr/bin/env bash
# `parley chat` against the real parleyd, its input a pipe the test writes
# to: incoming messages as "sender: text", the peer's presence, typing and
# receipts as JSON lines, /help (not sent), an unknown command (not sent),
# "//" sending a leading slash, and /quit ending it with exit 0 once what was
# typed before it has been stored; /react, /reply, /edit and /delete sent as
# message actions (seen by the peer's recv) and the peer's actions shown as sentences.
set -euo pipefail
PARLEYD_ARGS=(--presence-grace 0)
# shellcheck source=cli_harness.sh
source "$(dirname "$0")/cli_harness.sh"
A=("$CLI" --user alice)
B=("$CLI" --user bob)
expect register-alice 0 '{"registered":"alice","device":"default"}' "${A[@]}" register
expect register-bob 0 '{"registered":"bob","device":"default"}' "${B[@]}" register
expect alice-adds-bob 0 '{"contacts":["bob"]}' "${A[@]}" contacts add bob

# until FILE TEXT: waits (up to 20 s) for TEXT to appear in FILE.
until_in() {
  for _ in $(seq 1000); do
    if grep -qF -- "$2" "$1"; then return 0; fi
    if ! kill -0 "$chat" 2>/dev/null; then break; fi
    sleep 0.02
  done
  echo "FAIL waiting for <<$2>> in $1: $(cat "$1")"
  failed=$((failed + 1))
  return 1
}

mkfifo "$tmp/in"
"${B[@]}" chat alice <"$tmp/in" >"$tmp/out" 2>"$tmp/chat-err" &
chat=$!
exec 4>"$tmp/in" # the chat's standard input, open until /quit
trap 'kill "$chat" 2>/dev/null || true; cleanup' EXIT

# The chat follows alice: her state now (offline since she registered), then events.
until_in "$tmp/out" '{"type":"presence","user":"alice","online":false,"last_seen":' && echo "PASS chat-presence-state"
expect alice-sends 0 '"seq":1' bash -c "$(printf '%q ' "${A[@]}") send bob 'hi bob' | grep -o '\"seq\":1'"
until_in "$tmp/out" "alice: hi bob" && echo "PASS chat-shows-message"
# alice's send was a connection of hers: she came online (and went again)
until_in "$tmp/out" '{"type":"presence","user":"alice","online":true,' && echo "PASS chat-presence-event"

printf '/help\n' >&4
until_in "$tmp/chat-err" "/quit   leave" && echo "PASS chat-help"
printf '/frobnicate\n//slash at the start\nhello alice\n' >&4
until_in "$tmp/chat-err" "unknown command /frobnicate (not sent)" && echo "PASS chat-unknown-command"
expect alice-recv 0 '"/slash at the start"
"hello alice"' bash -c "$(printf '%q ' "${A[@]}") recv --wait 3 | grep -o '\"text\":\"[^\"]*\"' | cut -d: -f2"
until_in "$tmp/out" '{"type":"receipt","status":"delivered","conv":"dm:alice:bob","by":"alice","seq":3}' &&
  echo "PASS chat-shows-receipt"

expect alice-types 0 '{"ok":true}' "${A[@]}" typing bob
until_in "$tmp/out" '{"type":"typing","user":"alice","conv":"dm:alice:bob","typing":true}' && echo "PASS chat-shows-typing"

# Message actions (protocol.md 11.9): bob's chat reacts to and replies to alice's last
# message, edits and deletes his own; alice's recv sees each as what it is.
printf '/react \xf0\x9f\x91\x8d\n/reply hey you\n/edit hello alice!\n/delete #2\n/edit\n' >&4
until_in "$tmp/chat-err" "/edit needs a text (not sent)" && echo "PASS chat-act-needs-text"
expect alice-sees-acts 0 '"text":"👍","act":{"kind":"reaction","target":1}
"text":"hey you","act":{"reply_to":1}
"text":"hello alice!","act":{"kind":"edit","target":3}
"text":"","act":{"kind":"delete","target":2}' bash -c "$(printf '%q ' "${A[@]}") recv --wait 3 | grep -o '\"text\":\"[^\"]*\",\"act\":{[^}]*}'"
# ... and alice's actions read as sentences in bob's chat
printf '/react #3 +1\n/reply #3 nice\n/quit\n' | "${A[@]}" chat bob >/dev/null 2>&1
until_in "$tmp/out" "* alice reacted +1 to #3" && echo "PASS chat-shows-reaction"
until_in "$tmp/out" "alice (reply to #3): nice" && echo "PASS chat-shows-reply"

printf 'last words\n/quit\nnot sent after quit\n' >&4
rc=0
for _ in $(seq 1000); do kill -0 "$chat" 2>/dev/null || break; sleep 0.02; done
kill "$chat" 2>/dev/null && echo "FAIL chat still running 20 s after /quit" && failed=$((failed + 1))
wait "$chat" || rc=$?
exec 4>&-
expect chat-quit-exit 0 "0" echo "$rc"
expect after-quit 0 '"last words"' bash -c "$(printf '%q ' "${A[@]}") recv --wait 3 | grep -o '\"text\":\"[^\"]*\"' | cut -d: -f2"
exit $((failed ? 1 : 0))
