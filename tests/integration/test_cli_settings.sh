#!/usr/bin/env bash
# `parley settings` against the real parleyd: it prints the privacy settings,
# changes those given, and the server applies them: with --group-add nobody
# alice cannot be put in bob's group (NOT_ALLOWED, exit 5, no group made);
# with --group-add contacts she can once bob is in her contacts.
set -euo pipefail
PARLEYD_ARGS=()
# shellcheck source=cli_harness.sh
source "$(dirname "$0")/cli_harness.sh"
A=("$CLI" --user alice)
B=("$CLI" --user bob)
for u in alice bob; do expect "register-$u" 0 "{\"registered\":\"$u\",\"device\":\"default\"}" "$CLI" --user "$u" register; done
expect defaults 0 '{"read_receipts":"on","last_seen":"contacts","group_add":"everyone"}' "${A[@]}" settings
expect group-add-nobody 0 '{"read_receipts":"on","last_seen":"contacts","group_add":"nobody"}' \
  "${A[@]}" settings --group-add nobody
expect create-refused 5 "" "${B[@]}" group create team alice
expect create-refused-says 0 "not allowed" \
  bash -c "$(printf '%q ' "${B[@]}") group create team alice 2>&1 | grep -o 'not allowed'"
expect no-group-made 0 '{"groups":[]}' "${B[@]}" group list
expect group-add-contacts 0 '{"read_receipts":"on","last_seen":"contacts","group_add":"contacts"}' \
  "${A[@]}" settings --group-add contacts
expect create-still-refused 5 "" "${B[@]}" group create team alice
expect contact 0 '{"contacts":["bob"]}' "${A[@]}" contacts add bob
expect create-allowed 0 '[{"user":"alice","role":"member"},{"user":"bob","role":"owner"}]' \
  bash -c "$(printf '%q ' "${B[@]}") group create team alice | sed 's/.*\"members\"://; s/}$//'"
expect several 0 '{"read_receipts":"off","last_seen":"nobody","group_add":"contacts"}' \
  "${A[@]}" settings --read-receipts off --last-seen=nobody
expect read-back 0 '{"read_receipts":"off","last_seen":"nobody","group_add":"contacts"}' "${A[@]}" settings
expect others-own 0 '{"read_receipts":"on","last_seen":"contacts","group_add":"everyone"}' "${B[@]}" settings
expect bad-value 2 "" "${A[@]}" settings --group-add friends
expect bad-toggle 2 "" "${A[@]}" settings --read-receipts maybe
expect stray-arg 2 "" "${A[@]}" settings everyone
expect option-elsewhere 2 "" "${A[@]}" contacts --group-add nobody
expect unchanged-after-bad 0 '{"read_receipts":"off","last_seen":"nobody","group_add":"contacts"}' "${A[@]}" settings
exit $((failed != 0))
