#!/usr/bin/env bash
# Encryption at rest: key rotation while serving (tests/integration/seal_test.py).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
exec /usr/bin/python3 "$(dirname "$0")/seal_test.py" rotate
