#!/usr/bin/env bash
# Security finding 2: a refused PATCH writes nothing into someone's resumable
# upload (tests/integration/media_sec_test.py upload_auth).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
: "${PARLEY_CLI:?PARLEY_CLI must point to the parley binary}"
exec /usr/bin/python3 "$(dirname "$0")/media_sec_test.py" upload_auth
