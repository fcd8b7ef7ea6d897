#!/usr/bin/env bash
# Security finding 5: uploads are processed on media's own workers, so
# password hashing on libuv's pool cannot starve them
# (tests/integration/media_sec_test.py workers).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
: "${PARLEY_CLI:?PARLEY_CLI must point to the parley binary}"
exec /usr/bin/python3 "$(dirname "$0")/media_sec_test.py" workers
