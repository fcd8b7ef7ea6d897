#!/usr/bin/env bash
# Runs every parley-bench scenario at the target scales and prints one table.
#
#   bench/run-all.sh [extra parley-bench options...]
#
# Environment:
#   BUILD=build                    where parley-bench and parleyd are
#   PARLEY_BENCH_STATE=DIR         state dir (template data dir with the users + their
#                                  token cache), default $BUILD/bench-state; every run
#                                  starts parleyd on a fresh copy (see bench/README.md)
#   PARLEY_BENCH_OUT=DIR           where each run's JSON goes (default $STATE/results)
#   QUICK=1                        small scales: a smoke test of the whole set (~1 min)
#   ONLY="idle storm"              run only the runs whose names contain these words
#
# Exit status: 0 if every run completed with nothing lost or duplicated.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$here/build}
BENCH=${PARLEY_BENCH:-$BUILD/parley-bench}
STATE=${PARLEY_BENCH_STATE:-$BUILD/bench-state}
OUT=${PARLEY_BENCH_OUT:-$STATE/results}
QUICK=${QUICK:-0}
ONLY=${ONLY:-}

if [[ ! -x $BENCH ]]; then
  echo "run-all: $BENCH not found; build first (make build)" >&2
  exit 1
fi
mkdir -p "$STATE" "$OUT"

# name | scenario and options (target scale) | the same at QUICK scale
RUNS=(
  "idle-19k|idle --conns 19000 --duration 30|idle --conns 500 --duration 3"
  "pairs-max-fsync|pairs --conns 100 --duration 20|pairs --conns 20 --duration 3"
  "pairs-max-process|pairs --conns 100 --duration 20 --parleyd-args --durability=process|pairs --conns 20 --duration 3 --parleyd-args --durability=process"
  "pairs-20k-rate|pairs --conns 1000 --rate 20000 --duration 30|pairs --conns 100 --rate 2000 --duration 3"
  "drain-100k|drain --messages 100000|drain --messages 5000"
  "storm-10k|storm --conns 10000|storm --conns 300"
  "group-10k-fanout|group --conns 10000 --messages 60 --rate 3|group --conns 300 --messages 20 --rate 5"
  "group-10k-max|group --conns 10000 --messages 500 --rate 0|group --conns 300 --messages 100 --rate 0"
  "group-100k-members|group --members 100000 --conns 1000 --messages 50 --rate 10|group --members 3000 --conns 100 --messages 10 --rate 10"
)

# Reads "key":value out of our flat JSON line.
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$2"; }

failed=0
for run in "${RUNS[@]}"; do
  IFS='|' read -r name full quick <<<"$run"
  if [[ -n $ONLY ]]; then
    hit=0
    for w in $ONLY; do [[ $name == *"$w"* ]] && hit=1; done
    [[ $hit == 1 ]] || continue
  fi
  args=$full
  [[ $QUICK == 1 ]] && args=$quick
  echo "== $name: parley-bench $args $*" >&2
  # shellcheck disable=SC2086 # args are words on purpose
  "$BENCH" $args --state "$STATE" --json "$@" >"$OUT/$name.json"
  rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "== $name: exit status $rc" >&2
    failed=1
  fi
done

printf '\n%-18s %10s %9s %9s %9s %6s %6s %9s %10s  %s\n' run 'deliv/s' 'p50 us' 'p99 us' \
  'p99.9 us' lost dup 'cpu us/m' 'rss B/conn' 'other'
for run in "${RUNS[@]}"; do
  name=${run%%|*}
  f=$OUT/$name.json
  [[ -s $f ]] || continue
  other=""
  case $name in
    storm*) other="all resumed in $(field resume_all_s "$f") s, resume p99 $(field resume_p99_ms "$f") ms" ;;
    drain*) other="$(field queued "$f") msgs drained in $(field drain_s "$f") s" ;;
    idle*) other="$(field conns "$f") conns, connected in $(field connect_s "$f") s" ;;
    pairs*) other="sent $(field sent_per_s "$f")/s, server CPU $(field server_cpu_s "$f") s" ;;
    group*) other="$(field online "$f")/$(field members "$f") online, last delivery p50 $(field last_delivery_p50_us "$f") p99 $(field last_delivery_p99_us "$f") us, group RSS $(field group_rss_bytes "$f") B" ;;
  esac
  grep -q 'run FAILED' "$f" && other="FAILED; $other"
  printf '%-18s %10s %9s %9s %9s %6s %6s %9s %10s  %s\n' "$name" "$(field delivered_per_s "$f")" \
    "$(field lat_p50_us "$f")" "$(field lat_p99_us "$f")" "$(field lat_p999_us "$f")" "$(field lost "$f")" \
    "$(field duplicated "$f")" "$(field server_cpu_us_per_msg "$f")" "$(field server_rss_per_conn_bytes "$f")" \
    "$other"
done
echo "(JSON of each run: $OUT)"
exit $failed
