#!/usr/bin/env bash
# One shard against two (docs/scaling.md 5, "Cost per message"), for
# docs/benchmarks.md: the same parley-bench pairs load on one parleyd whose
# store is one PostgreSQL database, then two on two PostgreSQL servers
# (--store A --store-shard B). The bench's users have --names mixed (names
# that differ in every byte), so with two shards a pair's users share a
# shard about half the time (their names' buckets); the other half of the
# messages take the outbox: committed on the conversation's shard, copied
# to the other.
#
#   bench/shards-ab.sh [PAIRS [SECONDS [RATE [ROUNDS]]]]  (defaults 50, 10, 0 = max speed, 2)
#   PARLEYD_OLD=path/to/old/parleyd bench/shards-ab.sh ...  the old build against this one
#                                   (an A/B of a change), on two shards both times, or on
#                                   one with SHARDS=1
#   FENCE=1 bench/shards-ab.sh ...  two shards, without and with the mover's fence up (an
#                                   empty bucket moved before the measured run, so that
#                                   every table has the fence's trigger: docs/scaling.md 4)
#
# Rounds alternate (1 shard, 2 shards, 1, 2, ...), each on fresh databases.
# Per round: delivered msg/s and latency (parley-bench's), parleyd's CPU
# and both PostgreSQL servers' CPU (every process of each cluster) per
# delivered message, the store's round trips per message (parleyd's
# /metrics: every shard's connection and link), the messages copied across
# (the outbox rows the run wrote, per delivered message). Two throw-away PostgreSQL servers
# (tests/pg/pg_fixture.sh) are stopped at the end.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
pairs=${1:-50}
secs=${2:-10}
rate=${3:-0}
rounds=${4:-2}
parleyd=${PARLEYD:-$(pick parleyd)}
old=${PARLEYD_OLD:-}
k_ab=${SHARDS:-2}
bench=${PARLEY_BENCH:-$(pick parley-bench)}
dir=$(mktemp -d /tmp/parley-shards-ab.XXXXXX)
chmod 711 "$dir"
pid=
cleanup() {
  [[ -z $pid ]] || kill -9 "$pid" 2>/dev/null || true
  pg_two stop "$dir"
  rm -rf "$dir"
}
trap cleanup EXIT
pg_two start "$dir"
uri() { pg_uri "$dir" "$@"; }
port=$(python3 "$repo/tests/integration/free_port.py")
hport=$(python3 "$repo/tests/integration/free_port.py")

pg_pids() { # both postmasters and their children
  local s pm
  for s in A B; do
    pm=$(head -n 1 "$dir/pg$s/cluster/postmaster.pid")
    echo "$pm"
    ps -o pid= --ppid "$pm"
  done
}
metric() { curl -sf "http://127.0.0.1:$hport/metrics" | awk -v m="$1" '$1 == m { printf "%.0f", $2 }'; }
outbox_rows() { # rows the outbox ever took (inserts counted by PostgreSQL), both databases
  local n=0 s v
  for s in A B; do
    v=$(psql "$(uri "$s" "$1")" -Atc "SELECT COALESCE((SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'outbox'), 0)" 2>/dev/null || echo 0)
    n=$((n + ${v:-0}))
  done
  echo "$n"
}
hz=$(getconf CLK_TCK)

serve() { # n STORE-ARGS...: parleyd ($bin) on fresh data dir n, serving
  local n=$1
  shift
  "$bin" "$@" --data "$dir/data$n" --listen "127.0.0.1:$port" --http "127.0.0.1:$hport" \
    --log-level warn --max-queue 10000000 --max-conns-per-ip 0 --send-rate 0 --login-rate 0 --register-rate 0 \
    --argon2-per-address 1024 --argon2-queue 100000 2>>"$dir/parleyd.$n.log" &
  pid=$!
  for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$hport") 2>/dev/null && break; sleep 0.05; done
}
unserve() {
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
}

round() { # name shards(1|2) n [parleyd [fence]]
  local name=$1 k=$2 n=$3 db=ab_$3 out p0 q0 r0 p1 q1 r1 x bin=${4:-$parleyd} fence=${5:-}
  out=$(mktemp)
  psql "$(uri A postgres)" -qXc "CREATE DATABASE $db" >/dev/null
  psql "$(uri B postgres)" -qXc "CREATE DATABASE $db" >/dev/null
  local store=(--store "$(uri A "$db")")
  [[ $k == 1 ]] || store+=(--store-shard "$(uri B "$db")")
  serve "$n" "${store[@]}"
  # users and tokens first (--state keeps them): the measured run's counters
  # hold its traffic; parleyd then restarts, so that its sessions' table
  # counts reach PostgreSQL's statistics (a session reports them as it ends)
  "$bench" --server "127.0.0.1:$port" --state "$dir/state$n" --names mixed pairs --conns "$pairs" --duration 1 >/dev/null 2>&1 || true
  unserve
  x=$(outbox_rows "$db")
  if [[ -n $fence ]]; then # bucket 8191 (shard 0's last) to shard 1: the fence on both
    "$bin" move-buckets 8191 --to 1 "${store[@]}" --grace 0 --keep-fence 2>>"$dir/mover.$n.log" >/dev/null
  fi
  serve "$n" "${store[@]}"
  p0=$(ticks "$pid"); q0=$(ticks $(pg_pids)); r0=$(metric parley_store_round_trips_total)
  local args=(--server "127.0.0.1:$port" --server-pid "$pid" --state "$dir/state$n" --names mixed pairs --conns "$pairs"
    --duration "$secs" --json)
  [[ $rate == 0 ]] || args+=(--rate "$rate")
  "$bench" "${args[@]}" >"$out" 2>"$out.err" || { cat "$out.err" >&2; return 1; }
  p1=$(ticks "$pid"); q1=$(ticks $(pg_pids)); r1=$(metric parley_store_round_trips_total)
  unserve
  x=$(($(outbox_rows "$db") - x))
  python3 - "$name" "$out" "$((p1 - p0))" "$((q1 - q0))" "$((r1 - r0))" "$x" "$hz" <<'EOF'
import json, sys
name, path, pt, qt, rt, x, hz = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:8])
j = json.loads(open(path).read().strip().splitlines()[-1])
n = j.get('delivered_total') or 1
print(f"| {name} | {j['delivered_per_s']:,.0f} | {j['lat_p50_us'] / 1000:.1f} ms | {j['lat_p99_us'] / 1000:.1f} ms"
      f" | {j.get('lost')} / {j.get('duplicated_shown')} | {x / n:.0%} | {pt / hz * 1e6 / n:.1f} | {qt / hz * 1e6 / n:.1f}"
      f" | {rt / n:.3f} |")
EOF
  rm -f "$out" "$out.err"
}

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $pairs pairs, ${secs}s, rate ${rate/#0/max}"
echo
echo "| store | delivered msg/s | p50 | p99 | lost / shown twice | copied across | parleyd CPU µs/msg | PostgreSQL CPU µs/msg (both) | store round trips/msg |"
echo "|---|---:|---:|---:|---|---:|---:|---:|---:|"
for ((i = 1; i <= rounds; i++)); do
  if [[ -n ${FENCE:-} ]]; then
    round "2 shards" 2 "$((2 * i - 1))"
    round "2 shards, fenced" 2 "$((2 * i))" "$parleyd" fence
  elif [[ -n $old ]]; then
    round "$k_ab shard(s), old" "$k_ab" "$((2 * i - 1))" "$old"
    round "$k_ab shard(s), new" "$k_ab" "$((2 * i))"
  else
    round "1 shard" 1 "$((2 * i - 1))"
    round "2 shards" 2 "$((2 * i))"
  fi
done
