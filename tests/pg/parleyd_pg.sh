#!/usr/bin/env bash
# parleyd on the test PostgreSQL (pg_fixture.sh): the integration tests run
# it as PARLEYD in the "pg" label. One database per --data directory, so a
# test that restarts its server finds its data again and tests running at
# once never share users. Execs parleyd, keeping the PID the test kills.
set -euo pipefail
: "${PL_PG_DIR:?PL_PG_DIR: the pg_fixture.sh directory}"
: "${PARLEYD_REAL:?PARLEYD_REAL: the parleyd binary}"
# parleyd's subcommands (admin-token) keep their files in --data: no store
[[ ${1:-} == admin-token ]] && exec "$PARLEYD_REAL" "$@"
conn=$(cat "$PL_PG_DIR/conninfo")
data=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
  --data) data=${args[i + 1]:-} ;;
  --data=*) data=${args[i]#--data=} ;;
  esac
done
db=p_$(printf '%s' "${data:-default}" | md5sum | cut -c1-20)
if [[ -z $(psql "$conn dbname=postgres" -qAtc "SELECT 1 FROM pg_database WHERE datname = '$db'") ]]; then
  psql "$conn dbname=postgres" -qc "CREATE DATABASE $db" >/dev/null 2>&1 ||
    [[ -n $(psql "$conn dbname=postgres" -qAtc "SELECT 1 FROM pg_database WHERE datname = '$db'") ]]
fi
exec "$PARLEYD_REAL" --store "$conn dbname=$db" "$@"
