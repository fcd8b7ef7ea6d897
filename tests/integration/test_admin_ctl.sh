#!/usr/bin/env bash
# The admin API: parleyctl (tests/integration/admin_test.py calls).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
exec /usr/bin/python3 "$(dirname "$0")/admin_test.py" ctl
