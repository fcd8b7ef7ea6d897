#!/usr/bin/env bash
# Push notifications against the real parleyd and a local HTTP endpoint
# (tests/integration/push_client.py; Debian's /usr/bin/python3 for
# python3-websockets and python3-cryptography).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
exec /usr/bin/python3 "$(dirname "$0")/push_client.py"
