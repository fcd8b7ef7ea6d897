#!/usr/bin/env bash
# The admin API: sends are acked while an online backup runs (tests/integration/admin_test.py).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
exec /usr/bin/python3 "$(dirname "$0")/admin_test.py" backup_live
