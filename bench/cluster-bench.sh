#!/usr/bin/env bash
# parley-bench against the local cluster (scripts/cluster.sh: PostgreSQL,
# three nats-servers, three parleyd nodes, haproxy), for docs/benchmarks.md
# (issue 15): the same load through haproxy to three nodes and straight to
# one node, both on the same PostgreSQL, one table.
#
#   bench/cluster-bench.sh [PAIRS [SECONDS [RATE]]]    (defaults 100, 10, 0 = max speed)
#
# Per round: delivered msg/s and latency (parley-bench's own figures), then
# from /proc and PostgreSQL around the measured run: the nodes' CPU summed
# (µs per delivered message), PostgreSQL's CPU (every process of its
# cluster), its WAL bytes per message (pg_stat_wal) and the nodes' store
# round trips per message (their /metrics). The cluster lives in a temp dir
# and is torn down at the end; only what this script started is stopped.
# Environment: PARLEYD, PARLEY_BENCH (binaries; default build-rel/ then
# build/), PARLEY_CLUSTER_PORT (default 37000), PARLEY_CLUSTER_KEEP=1 (keep
# the cluster's dir: its logs and data).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
pairs=${1:-100}
secs=${2:-10}
rate=${3:-0}
export PARLEYD=${PARLEYD:-$(pick parleyd)}
bench=${PARLEY_BENCH:-$(pick parley-bench)}
export PARLEY_CLUSTER_PORT=${PARLEY_CLUSTER_PORT:-37000}
# as parley-bench starts its own parleyd: no per-address limits (all clients
# come from loopback), room for the set-up's password hashing
export PARLEY_NODE_ARGS="--log-level warn --max-queue 10000000 --max-conns-per-ip 0 --send-rate 0
  --login-rate 0 --register-rate 0 --argon2-per-address 1024 --argon2-queue 100000"
export PARLEY_CLUSTER_DIR=$(mktemp -d /tmp/parley-cluster-bench.XXXXXX)
base=$PARLEY_CLUSTER_PORT
dir=$PARLEY_CLUSTER_DIR
# PARLEY_CLUSTER_KEEP=1 stops the cluster but keeps its dir (logs, data)
trap '"$repo/scripts/cluster.sh" down >/dev/null 2>&1 || true; [[ -n ${PARLEY_CLUSTER_KEEP:-} ]] || rm -rf "$dir"' EXIT

"$repo/scripts/cluster.sh" up >/dev/null
pgbin=$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1)
psql_q() { "$pgbin/psql" -h 127.0.0.1 -p $((base + 5)) -U parley -d postgres -Atc "$1"; }

node_pids() { cat "$dir"/node{1,2,3}.pid; }
pg_pids() { # the postmaster and its children
  local pm
  pm=$(head -n 1 "$dir/pg/data/postmaster.pid")
  echo "$pm"
  ps -o pid= --ppid "$pm"
}
metric_sum() { # a counter summed over the nodes
  local s=0 n v
  for n in 1 2 3; do
    v=$(curl -sf "http://127.0.0.1:$((base + 40 + n))/metrics" | awk -v m="$1" '$1 == m { print $2 }')
    s=$(awk -v a="$s" -v b="${v:-0}" 'BEGIN { printf "%.0f", a + b }')
  done
  echo "$s"
}
hz=$(getconf CLK_TCK)

round() { # name server
  local name=$1 server=$2 out n0 p0 w0 r0 n1 p1 w1 r1 delivered
  out=$(mktemp)
  # users and tokens are made by a short run first (--state keeps them), so
  # the measured run's counters hold little but its traffic
  "$bench" --server "$server" --state "$dir/bench-state" pairs --conns "$pairs" --duration 1 >/dev/null 2>&1 || true
  n0=$(ticks $(node_pids)); p0=$(ticks $(pg_pids)); w0=$(psql_q "select wal_bytes from pg_stat_wal")
  r0=$(metric_sum parley_store_round_trips_total)
  local args=(--server "$server" --state "$dir/bench-state" pairs --conns "$pairs" --duration "$secs" --json)
  [[ $rate == 0 ]] || args+=(--rate "$rate")
  "$bench" "${args[@]}" >"$out" 2>"$out.err" || { cat "$out.err" >&2; return 1; }
  n1=$(ticks $(node_pids)); p1=$(ticks $(pg_pids)); w1=$(psql_q "select wal_bytes from pg_stat_wal")
  r1=$(metric_sum parley_store_round_trips_total)
  python3 - "$name" "$out" "$((n1 - n0))" "$((p1 - p0))" "$((w1 - w0))" "$((r1 - r0))" "$hz" <<'EOF'
import json, sys
name, path, nt, pt, wal, rt, hz = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:8])
j = json.loads(open(path).read().strip().splitlines()[-1])
n = j.get('delivered_total') or 1
# the counters span the bench's whole run (connecting, the measured phase,
# the drain): per message over everything delivered in it
print(f"| {name} | {j['delivered_per_s']:,.0f} | {j['lat_p50_us'] / 1000:.1f} ms | {j['lat_p99_us'] / 1000:.1f} ms"
      f" | {j.get('lost')} / {j.get('duplicated_shown')} ({j.get('redelivered')}, {j.get('disconnects')}) | {nt / hz * 1e6 / n:.1f} | {pt / hz * 1e6 / n:.1f}"
      f" | {wal / n:,.0f} | {rt / n:.3f} |")
EOF
  rm -f "$out" "$out.err"
}

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $pairs pairs, ${secs}s, rate ${rate/#0/max}"
echo
echo "| path | delivered msg/s | p50 | p99 | lost / shown twice (redelivered, disconnects) | nodes' CPU µs/msg | PostgreSQL CPU µs/msg | WAL B/msg | store round trips/msg |"
echo "|---|---|---|---|---|---|---|---|---|"
round "1 node (node1 direct)" "127.0.0.1:$((base + 31))"
# the users exist and their tokens work on every node: the second round
# uses the first one's (a new sign-up of an existing name would fail, and
# the failures would be throttled)
cp "$dir/bench-state/tokens-127.0.0.1-$((base + 31))" "$dir/bench-state/tokens-127.0.0.1-$((base + 1))"
round "3 nodes (haproxy, leastconn)" "127.0.0.1:$((base + 1))"
