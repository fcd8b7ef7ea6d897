#!/usr/bin/env bash
# The conversation-state commands of the parley CLI against the real parleyd:
# contacts, read receipts reaching an offline sender through `recv` exactly
# once, `presence` with last seen for a contact and nothing for others,
# block (the blocked sender's send exits 5), unblock, typing, and the
# filter's refusal (exit 5).
set -euo pipefail
words=$(mktemp "${TMPDIR:-/tmp}/parley-words-XXXXXX")
printf 'forbidden\n' >"$words"
PARLEYD_ARGS=(--filter-words "$words")
# shellcheck source=cli_harness.sh
source "$(dirname "$0")/cli_harness.sh"
A=("$CLI" --user alice)
B=("$CLI" --user bob)
expect register-alice 0 '{"registered":"alice","device":"default"}' "${A[@]}" register
expect register-bob 0 '{"registered":"bob","device":"default"}' "${B[@]}" register
expect contacts-empty 0 '{"contacts":[]}' "${B[@]}" contacts
expect contacts-add 0 '{"contacts":["alice"]}' "${B[@]}" contacts add alice
expect send 0 '{"id":"m1","conv":"dm:alice:bob","seq":1' \
  bash -c "$(printf '%q ' "${A[@]}") send --id m1 bob hello | cut -d, -f1-3"
expect bob-recv 0 '"hello"' bash -c "$(printf '%q ' "${B[@]}") recv | sed 's/.*\"text\":\(\"[^\"]*\"\).*/\1/'"
expect bob-read 0 '{"ok":true}' "${B[@]}" read alice 1
expect alice-receipts 0 '{"type":"receipt","status":"delivered","conv":"dm:alice:bob","by":"bob","seq":1}
{"type":"receipt","status":"read","conv":"dm:alice:bob","by":"bob","seq":1}' "${A[@]}" recv
expect alice-receipts-once 0 "" "${A[@]}" recv
expect presence-contact 0 "true" \
  bash -c "$(printf '%q ' "${A[@]}") presence bob | python3 -c 'import json,sys; d=json.load(sys.stdin); print(str(d[\"user\"]==\"bob\" and d[\"online\"] is False and d[\"last_seen\"] > 0).lower())'"
expect presence-stranger 0 '{"user":"alice","online":false,"last_seen":null}' "${B[@]}" presence alice
expect typing 0 '{"ok":true}' "${A[@]}" typing bob
expect filtered 5 "" "${A[@]}" send bob "a forbidden word"
expect block 0 '{"ok":true}' "${B[@]}" block alice
expect blocked-send 5 "" "${A[@]}" send bob "hello?"
expect unblock 0 '{"ok":true}' "${B[@]}" unblock alice
expect send-again 0 '"seq":2' bash -c "$(printf '%q ' "${A[@]}") send bob again | grep -o '\"seq\":2'"
expect unknown-peer 5 "" "${A[@]}" presence nobody
expect usage 2 "" "${A[@]}" contacts frobnicate x
rm -f "$words"
exit $((failed ? 1 : 0))
