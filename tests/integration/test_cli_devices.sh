#!/usr/bin/env bash
# `parley devices` and `parley devices revoke NAME` against the real
# parleyd (finding 11): alice on two devices lists them, revokes the other,
# and the list then shows only this device.
set -euo pipefail
PARLEYD_ARGS=()
# shellcheck source=cli_harness.sh
source "$(dirname "$0")/cli_harness.sh"
A=("$CLI" --user alice)
names='import json,sys; print(" ".join(x["name"] + ":" + str(x["current"]).lower() for x in json.load(sys.stdin)["devices"]))'
# devices [ARGS] from the phone, printed as "name:current ..."
phone_devices() { "${A[@]}" --device phone devices "$@" | python3 -c "$names"; }
expect register 0 '{"registered":"alice","device":"phone"}' "${A[@]}" --device phone register
expect login-laptop 0 "" "${A[@]}" --device laptop recv
expect list 0 "phone:true laptop:false" phone_devices
expect revoke 0 "phone:true" phone_devices revoke laptop
expect revoke-unknown 1 "" "${A[@]}" --device phone devices revoke toaster
expect usage 2 "" "${A[@]}" devices forget laptop
exit $((failed != 0))
