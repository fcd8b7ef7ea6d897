#!/usr/bin/env bash
# The MQTT gateway with third-party clients (tests/integration/mqtt_test.py:
# Debian's python3-paho-mqtt, 3.1.1 and 5.0, over TCP and WebSocket, and raw
# sockets for the malformed packets; TLS on --mqtt-tls), and mosquitto_pub /
# mosquitto_sub.
# Every parleyd started is killed by PID when the test ends, however it ends.
set -euo pipefail
PARLEYD=${PARLEYD:?PARLEYD must point at parleyd}
CLI=${PARLEY_CLI:?PARLEY_CLI must point at the parley CLI}
# Debian's python3 (where python3-paho-mqtt is), not another one first in PATH
PY=/usr/bin/python3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parley-mqtt-XXXXXX")
failed=0
cleanup() {
  if [[ -f $tmp/pids ]]; then
    while read -r p; do kill -9 "$p" 2>/dev/null || true; done <"$tmp/pids"
  fi
  if [[ $failed -ne 0 ]]; then tail -n 40 "$tmp/parleyd.log" >&2 || true; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
TMP=$tmp PARLEYD=$PARLEYD PARLEY_CLI=$CLI "$PY" "$(dirname "$0")/mqtt_test.py" || failed=$?
exit "$failed"
