#!/usr/bin/env bash
# Images and files end to end (issue 7): tests/integration/media_test.py.
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
: "${PARLEY_CLI:?PARLEY_CLI must point to the parley binary}"
exec /usr/bin/python3 "$(dirname "$0")/media_test.py"
