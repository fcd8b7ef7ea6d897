#!/usr/bin/env bash
# Media across two nodes on one PostgreSQL (issue 15): tests/integration/media_cluster_test.py.
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
: "${PARLEY_CLI:?PARLEY_CLI must point to the parley binary}"
: "${PL_PG_DIR:?PL_PG_DIR: the pg fixture directory}"
exec /usr/bin/python3 "$(dirname "$0")/../integration/media_cluster_test.py"
