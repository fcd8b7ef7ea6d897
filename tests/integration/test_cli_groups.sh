#!/usr/bin/env bash
# The group commands of the parley CLI against the real parleyd (issue 5):
# group create prints the group, send --group prints the same JSON ack as
# 1:1, recv prints group messages with "group" and the membership events,
# members / add / remove / leave / list, and the refusals (exit 5).
set -euo pipefail
# shellcheck source=cli_harness.sh
source "$(dirname "$0")/cli_harness.sh"
A=("$CLI" --user alice)
A=("$CLI" --user alice)
B=("$CLI" --user bob)
C=("$CLI" --user carol)
for u in alice bob carol; do expect "register-$u" 0 "{\"registered\":\"$u\",\"device\":\"default\"}" "$CLI" --user "$u" register; done
# the group's id is the server's: 1 on SQLite, its creator's bucket in the high bits on PostgreSQL
rc=0
created=$("${A[@]}" group create team bob) || rc=$?
G=$(sed -n 's/^{"group":"\([0-9]*\)".*/\1/p' <<<"$created")
expect create 0 '{"group":"'"$G"'","name":"team","description":"","role":"owner","member_count":2,"last_seq":1,"members":[{"user":"alice","role":"owner"},{"user":"bob","role":"member"}]}' \
  bash -c 'printf "%s\n" "$1"; exit "$2"' - "$created" "$rc"
expect send-group 0 '{"id":"g1","conv":"g:'"$G"'","seq":2' \
  bash -c "$(printf '%q ' "${A[@]}") send --id g1 --group $G hello | cut -d, -f1-3"
expect send-group-again 0 '{"id":"g1","conv":"g:'"$G"'","seq":2' \
  bash -c "$(printf '%q ' "${A[@]}") send --id g1 --group $G hello | cut -d, -f1-3"
expect bob-recv 0 '{"type":"group_event","group":"'"$G"'","conv":"g:'"$G"'","seq":1,"event":"created","actor":"alice","user":"","name":"team","role":"none"}
{"type":"message","group":"'"$G"'","from":"alice","conv":"g:'"$G"'","seq":2,"id":"g1","text":"hello"}' \
  bash -c "$(printf '%q ' "${B[@]}") recv | sed -e 's/,\"server_ts\":[0-9]*//' -e 's/,\"client_ts\":[0-9]*//'"
expect bob-recv-once 0 "" "${B[@]}" recv
expect receipts 0 '{"group":"'"$G"'","seq":2,"members":1,"delivered":1,"read":0,"delivered_by":["bob"],"read_by":[]}' \
  "${A[@]}" group receipts "$G" 2
expect group-read 0 '{"ok":true}' "${B[@]}" group read "$G" 2
expect receipts-read 0 '{"group":"'"$G"'","seq":2,"members":1,"delivered":1,"read":1,"delivered_by":["bob"],"read_by":["bob"]}' \
  "${A[@]}" group receipts "$G" 2
expect group-typing 0 '{"ok":true}' "${B[@]}" group typing "$G"
expect receipts-stranger 5 "" "${C[@]}" group receipts "$G" 2
expect stranger-send 5 "" "${C[@]}" send --group "$G" "let me in"
expect member-may-not-add 5 "" "${B[@]}" group add "$G" carol
expect add 0 '"member_count":3' bash -c "$(printf '%q ' "${A[@]}") group add $G carol | grep -o '\"member_count\":3'"
expect members 0 '[{"user":"alice","role":"owner"},{"user":"bob","role":"member"},{"user":"carol","role":"member"}]' \
  bash -c "$(printf '%q ' "${C[@]}") group members $G | sed 's/.*\"members\"://; s/}$//'"
expect list 0 '{"groups":[{"group":"'"$G"'","name":"team","description":"","role":"member","member_count":3,"last_seq":3}]}' \
  "${C[@]}" group list
expect remove 0 '"member_count":2' bash -c "$(printf '%q ' "${A[@]}") group remove $G carol | grep -o '\"member_count\":2'"
expect removed-send 5 "" "${C[@]}" send --group "$G" "still here?"
expect leave 0 '{"group":"'"$G"'","name":"team","description":"","role":"none","member_count":1,"last_seq":5}' \
  "${B[@]}" group leave "$G"
expect list-after-leave 0 '{"groups":[]}' "${B[@]}" group list
expect usage 2 "" "${A[@]}" group frobnicate 1
expect usage-group-option 2 "" "${A[@]}" recv --group 1
exit $((failed ? 1 : 0))
