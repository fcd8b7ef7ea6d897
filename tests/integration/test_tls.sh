#!/usr/bin/env bash
# TLS on the native and HTTPS listeners, with real TLS clients: openssl
# s_client, Python's ssl speaking the native protocol, python3-websockets over
# wss:// (Debian's package, so Debian's /usr/bin/python3).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
exec /usr/bin/python3 "$(dirname "$0")/tls_client.py"
