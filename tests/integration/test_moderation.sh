#!/usr/bin/env bash
# The before-send moderation webhook (tests/integration/admin_test.py moderation).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
exec /usr/bin/python3 "$(dirname "$0")/admin_test.py" moderation
