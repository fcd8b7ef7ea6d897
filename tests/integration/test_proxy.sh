#!/usr/bin/env bash
# The PROXY protocol v2 (haproxy's send-proxy-v2) on every listener: the
# client's address from the header is the one the limits count and the log
# shows; a connection without the header is cut.
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
exec /usr/bin/python3 "$(dirname "$0")/proxy_client.py"
