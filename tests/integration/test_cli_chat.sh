#!/usr/bin/env bash
# `parley chat` against the real parleyd, its input a pipe the test writes
# to: incoming messages as "sender: text", the peer's presence, typing and
# receipts as JSON lines, /help (not sent), an unknown command (not sent),
# "//" sending a leading slash, and /quit ending it with exit 0 once what was
# typed before it has been stored; /react, /reply, /edit and /delete sent as
# message actions (seen by the peer's recv) and the peer's actions shown as sentences;
# /forward sending a message of the chat (text or a file) on to a third user and to a
# group, marked forwarded.
set -euo pipefail
hport=$(python3 "$(dirname "$0")/free_port.py")
PARLEYD_ARGS=(--presence-grace 0 --http "127.0.0.1:$hport" --media-files 1)
export PARLEY_HTTP=127.0.0.1:$hport # send --image, fetch
# shellcheck source=cli_harness.sh
source "$(dirname "$0")/cli_harness.sh"
A=("$CLI" --user alice)
B=("$CLI" --user bob)
C=("$CLI" --user carol)
expect register-alice 0 '{"registered":"alice","device":"default"}' "${A[@]}" register
expect register-bob 0 '{"registered":"bob","device":"default"}' "${B[@]}" register
expect alice-adds-bob 0 '{"contacts":["bob"]}' "${A[@]}" contacts add bob

# until FILE TEXT [PID]: waits (up to 20 s) for TEXT to appear in FILE, written by
# the chat PID (default: bob's).
until_in() {
  for _ in $(seq 1000); do
    if grep -qF -- "$2" "$1"; then return 0; fi
    if ! kill -0 "${3:-$chat}" 2>/dev/null; then break; fi
    sleep 0.02
  done
  if grep -qF -- "$2" "$1"; then return 0; fi # written just before the chat ended
  echo "FAIL waiting for <<$2>> in $1: $(cat "$1")"
  failed=$((failed + 1))
  return 1
}

# say FD PID FORMAT ARGS...: types into a chat's input (fd FD, the chat PID). A chat
# that ended early is a failure told as such, with how it ended and what it said;
# written to at once, the script would die of SIGPIPE (no reader) and say nothing.
# The text goes in one write(): bash's printf writes its stdout a line at a time, so
# in "/quit\nmore\n" the chat could quit between two lines and the last write fail
# with EPIPE (a false "ended early", seen under load). dd copies the text (under
# PIPE_BUF, so atomic) in one write.
# shellcheck disable=SC2059 # the format is the caller's, as printf's
say() {
  local fd=$1 who=$2 rc=0
  shift 2
  printf "$@" >"$tmp/say"
  if kill -0 "$who" 2>/dev/null &&
    (trap '' PIPE && dd if="$tmp/say" bs=4096 count=1 status=none >&"$fd") 2>/dev/null; then return 0; fi
  wait "$who" || rc=$?
  echo "FAIL the chat (pid $who) ended early, exit $rc, before it was sent: $(printf "$@" | head -c 200)"
  echo "  its stderr: $(cat "$tmp/chat-err" "$tmp/chat3-err" 2>/dev/null | tail -n 5)"
  failed=$((failed + 1))
  exit 1
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

say 4 "$chat" '/help\n'
until_in "$tmp/chat-err" "/quit   leave" && echo "PASS chat-help"
say 4 "$chat" '/frobnicate\n//slash at the start\nhello alice\n'
until_in "$tmp/chat-err" "unknown command /frobnicate (not sent)" && echo "PASS chat-unknown-command"
expect alice-recv 0 '"/slash at the start"
"hello alice"' bash -c "$(printf '%q ' "${A[@]}") recv --wait 3 | grep -o '\"text\":\"[^\"]*\"' | cut -d: -f2"
until_in "$tmp/out" '{"type":"receipt","status":"delivered","conv":"dm:alice:bob","by":"alice","seq":3}' &&
  echo "PASS chat-shows-receipt"

expect alice-types 0 '{"ok":true}' "${A[@]}" typing bob
until_in "$tmp/out" '{"type":"typing","user":"alice","conv":"dm:alice:bob","typing":true}' && echo "PASS chat-shows-typing"

# Message actions (protocol.md 11.9): bob's chat reacts to and replies to alice's last
# message, edits and deletes his own; alice's recv sees each as what it is.
say 4 "$chat" '/react \xf0\x9f\x91\x8d\n/reply hey you\n/edit hello alice!\n/delete #2\n/edit\n'
until_in "$tmp/chat-err" "/edit needs a text (not sent)" && echo "PASS chat-act-needs-text"
expect alice-sees-acts 0 '"text":"👍","act":{"kind":"reaction","target":1}
"text":"hey you","act":{"reply_to":1}
"text":"hello alice!","act":{"kind":"edit","target":3}
"text":"","act":{"kind":"delete","target":2}' bash -c "$(printf '%q ' "${A[@]}") recv --wait 3 | grep -o '\"text\":\"[^\"]*\",\"act\":{[^}]*}'"
# ... and alice's actions read as sentences in bob's chat
printf '/react #3 +1\n/reply #3 nice\n/quit\n' | "${A[@]}" chat bob >/dev/null 2>&1
until_in "$tmp/out" "* alice reacted +1 to #3" && echo "PASS chat-shows-reaction"
until_in "$tmp/out" "alice (reply to #3): nice" && echo "PASS chat-shows-reply"

# Forwards (protocol.md 11.9): bob's chat sends on alice's #1, his own #3 as he edited it
# and, by default, alice's last message; carol's chat shows each marked, with the exact
# text. A deleted (#2) or unknown message, or no recipient, says so and sends nothing.
expect register-carol 0 '{"registered":"carol","device":"default"}' "${C[@]}" register
mkfifo "$tmp/in3"
"${C[@]}" chat bob <"$tmp/in3" >"$tmp/out3" 2>"$tmp/chat3-err" &
chat3=$!
exec 5>"$tmp/in3"
trap 'kill "$chat" "$chat3" 2>/dev/null || true; cleanup' EXIT
until_in "$tmp/out3" '{"type":"presence","user":"bob",' "$chat3" && echo "PASS chat-carol-follows"
say 4 "$chat" '/forward #2 carol\n/forward #99999 carol\n/forward #1\n'
until_in "$tmp/chat-err" "/forward: message #2 is not one of the last 256 messages of this chat (not sent)" &&
  until_in "$tmp/chat-err" "/forward: message #99999 is not one of the last 256" &&
  until_in "$tmp/chat-err" "/forward needs whom to send it to" && echo "PASS chat-forward-refused"
say 4 "$chat" '/forward #1 carol\n/forward #3 carol\n/forward carol\n'
until_in "$tmp/out3" "bob (forwarded): nice" "$chat3"
expect carol-sees-forwards 0 'bob (forwarded): hi bob
bob (forwarded): hello alice!
bob (forwarded): nice' grep -F 'bob (' "$tmp/out3"
# carol forwards to nobody and to no group of hers (refused: her chat goes on, and ends
# with exit 5), then bob's last one back to him: his chat shows it marked.
# A reaction the server refuses (a space in it) is told as the command's: not as
# an unknown peer, and the chat goes on.
say 5 "$chat3" '/forward #1 nosuchuser\n/forward #1 --group 999999\n/react #1 two words\n/forward bob\n/quit\n'
until_in "$tmp/chat3-err" "unknown peer 'nosuchuser'" "$chat3" &&
  until_in "$tmp/chat3-err" "no such group, or you are not a member" "$chat3" && echo "PASS chat-forward-refusals"
until_in "$tmp/chat3-err" "parley: /react refused by the server: " "$chat3" && echo "PASS chat-act-refused"
until_in "$tmp/out" "carol (forwarded): nice" && echo "PASS chat-shows-forward"
rc=0
wait "$chat3" || rc=$?
exec 5>&-
expect carol-chat-exit 0 "5" echo "$rc"
# ... and to a group: alice's recv shows it in the group, marked, with the exact text.
group=$("${B[@]}" --device setup group create fwd alice | grep -o '"group":"[^"]*"' | cut -d'"' -f4)
say 4 "$chat" '/forward #3 --group %s\n' "$group"
expect alice-sees-group-forward 0 '"group":"'"$group"'"
"text":"hello alice!","act":{"forwarded":true}' bash -c "$(printf '%q ' "${A[@]}") recv --wait 3 |
  grep '\"forwarded\"' | grep -o '\"group\":\"[^\"]*\"\|\"text\":\"[^\"]*\",\"act\":{[^}]*}'"
# ... with its attachment: alice sends bob a file, bob's chat forwards it to carol by
# default, and carol gets the same stored file, marked, with its caption.
head -c 3000 /dev/urandom >"$tmp/doc.bin"
media=$("${A[@]}" send --image "$tmp/doc.bin" bob "a file" | grep -o '"media":{"id":"[^"]*"' | cut -d'"' -f6)
until_in "$tmp/out" "alice: a file" && say 4 "$chat" '/forward carol\n'
expect carol-gets-forwarded-file 0 '"text":"a file"
"media":{"id":"'"$media"'"
"act":{"forwarded":true}' bash -c "$(printf '%q ' "${C[@]}") recv --wait 3 | grep '\"forwarded\"' |
  grep -o '\"text\":\"[^\"]*\"\|\"media\":{\"id\":\"[^\"]*\"\|\"act\":{[^}]*}'"
expect carol-fetches-forwarded-file 0 "" bash -c "$(printf '%q ' "${C[@]}") fetch $media $tmp/fwd.bin && cmp $tmp/doc.bin $tmp/fwd.bin"

say 4 "$chat" 'last words\n/quit\nnot sent after quit\n'
rc=0
for _ in $(seq 1000); do kill -0 "$chat" 2>/dev/null || break; sleep 0.02; done
kill "$chat" 2>/dev/null && echo "FAIL chat still running 20 s after /quit" && failed=$((failed + 1))
wait "$chat" || rc=$?
exec 4>&-
expect chat-quit-exit 0 "0" echo "$rc"
expect after-quit 0 '"last words"' bash -c "$(printf '%q ' "${A[@]}") recv --wait 3 | grep -o '\"text\":\"[^\"]*\"' | cut -d: -f2"
exit $((failed ? 1 : 0))
