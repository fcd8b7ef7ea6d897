#!/usr/bin/env bash
# The admin API: every call and its answer (tests/integration/admin_test.py calls).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
exec /usr/bin/python3 "$(dirname "$0")/admin_test.py" calls
