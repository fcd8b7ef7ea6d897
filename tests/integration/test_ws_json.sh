#!/usr/bin/env bash
# The JSON binding through a third-party client (python3-websockets, Debian's
# package, so Debian's /usr/bin/python3: the first python3 on PATH may not be it).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
exec /usr/bin/python3 "$(dirname "$0")/ws_json_client.py"
