#!/usr/bin/env bash
# PostgreSQL schema 8 -> 9 in place (pg_schema.c): a device's queue length
# moved from devices.queued into next_qid less dequeued.n. A database left at
# version 8 with queued messages upgrades on start, and the queue limit
# (--max-queue) then counts exactly what the device still has.
#
# The version 8 state is made from a version 9 database by undoing
# migration 9 in SQL (this build has no older binary): the counter put back
# into devices.queued, the dequeued table and its version row dropped.
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
: "${PARLEY_CLI:?PARLEY_CLI must point to the parley binary}"
: "${PL_PG_DIR:?PL_PG_DIR: the pg fixture directory}"
here=$(cd "$(dirname "$0")" && pwd)
conn=$(cat "$PL_PG_DIR/conninfo")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parley-qup-XXXXXX")
db=p_qup_$$_$RANDOM
port=$(python3 "$here/../integration/free_port.py")
export PARLEY_SERVER=127.0.0.1:$port PARLEY_PASSWORD=secret-pass
pid=
failed=0
sql() { psql "$conn dbname=$db" -qAtv ON_ERROR_STOP=1 -c "$1"; }
psql "$conn dbname=postgres" -qc "CREATE DATABASE $db" >/dev/null

die_with_us=()
if command -v setpriv >/dev/null; then die_with_us=(setpriv --pdeathsig KILL); fi
start() {
  ${die_with_us[@]+"${die_with_us[@]}"} "$PARLEYD" --store "$conn dbname=$db" --data "$tmp/data" \
    --listen "127.0.0.1:$port" --http off --threads 2 --argon2-mem 8 --argon2-ops 1 --max-queue 3 --max-queue-share 100 \
    2>>"$tmp/parleyd.log" &
  pid=$!
  for _ in $(seq 1500); do # listening within 30 s
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  echo "FAIL parleyd did not start listening on $port"
  failed=1
  exit 1
}
stop() {
  kill "$pid"
  wait "$pid" || true
  pid=
}
cleanup() {
  [[ -z $pid ]] || kill -9 "$pid" 2>/dev/null || true
  if [[ $failed -ne 0 ]]; then tail -n 30 "$tmp/parleyd.log" >&2; fi
  rm -rf "$tmp"
  psql "$conn dbname=postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

# check NAME WANT_RC CMD...: the command's exit status
check() {
  local name=$1 want=$2 rc=0
  shift 2
  "$@" >"$tmp/out" 2>&1 || rc=$?
  if [[ $rc == "$want" ]]; then
    echo "PASS $name"
  else
    echo "FAIL $name: exit $rc (want $want): $(cat "$tmp/out")"
    failed=$((failed + 1))
  fi
}
A=("$PARLEY_CLI" --user alice)
B=("$PARLEY_CLI" --user bob)

start
check register-alice 0 "${A[@]}" register
check register-bob 0 "${B[@]}" register
check send-1 0 "${A[@]}" send bob one
check send-2 0 "${A[@]}" send bob two
check bob-reads-two 0 "${B[@]}" recv --wait 3 # and acks them: next_qid 2, 2 dequeued
check send-3 0 "${A[@]}" send bob three
check send-4 0 "${A[@]}" send bob four # bob's queue: 2 of 3
stop

# back to version 8: the length in devices.queued, as that version kept it
# (and what later migrations made undone: 10, shard_info; 11, outbox and relay;
# 13, the members' names; 14, the bucket map and the fence's function)
latest=$(sql "SELECT max(version) FROM schema_version")
sql "UPDATE devices d SET queued = d.next_qid - COALESCE((SELECT n FROM dequeued WHERE device_id = d.id), 0);
     DROP TABLE dequeued; DROP TABLE IF EXISTS shard_info; DROP TABLE IF EXISTS outbox; DROP TABLE IF EXISTS relay;
     ALTER TABLE members DROP COLUMN IF EXISTS name;
     DROP TABLE IF EXISTS map_epoch; DROP TABLE IF EXISTS bucket_map; DROP FUNCTION IF EXISTS pl_fence();
     DELETE FROM schema_version WHERE version >= 9;"
want="2 4"
got=$(sql "SELECT d.queued || ' ' || d.next_qid FROM devices d JOIN users u ON u.id = d.user_id WHERE u.name = 'bob'")
if [[ $got == "$want" ]]; then echo "PASS version-8-state"; else
  echo "FAIL version-8-state: bob's queued, next_qid: $got (want $want)"
  failed=$((failed + 1))
fi

start # migrates to 9 (and on)
got=$(sql "SELECT max(version) FROM schema_version")
if [[ $got == "$latest" && $latest -ge 9 ]]; then echo "PASS migrated-to-9"; else
  echo "FAIL migrated-to-9: schema version $got (want $latest)"
  failed=$((failed + 1))
fi
# 2 queued: one more fits the limit of 3, the next is refused (5: refused by the server)
check send-5-fits 0 "${A[@]}" send bob five
check send-6-queue-full 5 "${A[@]}" send bob six
grep -q "queue full" "$tmp/out" || {
  echo "FAIL send-6-queue-full said: $(cat "$tmp/out")"
  failed=$((failed + 1))
}
check bob-reads-three 0 "${B[@]}" recv --wait 3 # three, four, five: acked, the queue empty
check send-6-after-ack 0 "${A[@]}" send bob six
stop
[[ $failed -eq 0 ]] && echo "all passed"
exit "$failed"
