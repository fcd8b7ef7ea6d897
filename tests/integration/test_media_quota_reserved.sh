#!/usr/bin/env bash
# Security finding 8: unfinished resumable uploads count against the quota
# (tests/integration/media_sec_test.py quota_reserved).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
: "${PARLEY_CLI:?PARLEY_CLI must point to the parley binary}"
exec /usr/bin/python3 "$(dirname "$0")/media_sec_test.py" quota_reserved
