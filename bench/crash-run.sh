#!/usr/bin/env bash
# parley-bench pairs against a parleyd that is killed with -9 and restarted
# (same data dir, same port) while the senders send: the bench reconnects,
# resends what was unanswered with the same ids, and its report says how
# many resends there were, how many the server's dedup answered as
# duplicates, and that nothing was lost or shown twice.
#
#   bench/crash-run.sh [extra parley-bench options...]
#
# Environment: BUILD=build, KILLS=5 (kills), EVERY=2 (seconds between kills),
# CONNS=20 (pairs), DURATION=15 (seconds of the measured phase).
# Exit status: the bench's (0: nothing lost or duplicated).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$here/build}
KILLS=${KILLS:-5} EVERY=${EVERY:-2} CONNS=${CONNS:-20} DURATION=${DURATION:-15}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/parley-crash-XXXXXX")
port=$(python3 "$here/tests/integration/free_port.py")
pid=
start() {
  # disowned: bash would report every kill -9 as "Killed"
  "$BUILD/parleyd" --data "$tmp/data" --listen "127.0.0.1:$port" --http off --log-level warn \
    --argon2-ops 1 --argon2-mem 8 --send-rate 0 --max-queue 10000000 --max-conns-per-ip 0 --login-rate 0 \
    --register-rate 0 --argon2-per-address 1024 --argon2-queue 100000 2>>"$tmp/parleyd.log" &
  pid=$!
  disown "$pid"
  for _ in $(seq 500); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
    sleep 0.01
  done
  echo "crash-run: parleyd did not start" >&2
  exit 1
}
cleanup() {
  [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
  [[ -n ${bench:-} ]] && kill "$bench" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
start
"$BUILD/parley-bench" --server "127.0.0.1:$port" --state "$tmp/state" pairs --conns "$CONNS" \
  --duration "$DURATION" "$@" &
bench=$!
sleep 3 # users made, the measured phase under way
for i in $(seq "$KILLS"); do
  sleep "$EVERY"
  kill -0 "$bench" 2>/dev/null || break # the bench is done
  kill -9 "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
  echo "crash-run: kill -9 number $i" >&2
  start
done
rc=0
wait "$bench" || rc=$?
bench=
exit $rc
