#!/usr/bin/env bash
# Security finding 12: /metrics behind --metrics-token
# (tests/integration/media_sec_test.py metrics_token).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
exec /usr/bin/python3 "$(dirname "$0")/media_sec_test.py" metrics_token
