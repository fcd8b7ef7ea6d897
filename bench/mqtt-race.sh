#!/usr/bin/env bash
# The MQTT race (issue 17): parleyd --mqtt against Debian's mosquitto
# (non-durable default) and nats-server's MQTT listener (JetStream file
# store), one load generator (parley-bench mqtt-pairs) driving each the same
# way: N publisher->subscriber pairs at QoS 1, 100-byte payloads, at full
# speed and at fixed offered rates. Prints one markdown table; the raw JSON
# of every run stays in $OUT.
#
#   bench/mqtt-race.sh [BUILD_DIR]          (default build-rel: a Release build)
#   PAIRS="50 200" RATES="max 5000 20000" DURATION=10 bench/mqtt-race.sh
#   PARLEYD_B=/path/to/other/parleyd bench/mqtt-race.sh   adds that build as
#                                           a fourth contender (A/B in one run)
#   ONLY="parleyd parleyd-B" REPEAT=3 ...   only those contenders, each round
#                                           REPEAT times in alternation
#
# Every broker runs on loopback on a free port, with the same open-file
# limit, and is stopped at the end (trap): the script kills only the pids it
# started. parleyd is started by parley-bench itself for each run (a fresh
# temp data dir, default durability: fsync group commit); its users log in
# with cached tokens, so their password hash cost is never measured.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build-rel}
BENCH=$BUILD/parley-bench
PAIRS=${PAIRS:-"50 200"}
RATES=${RATES:-"max 5000 20000"}
DURATION=${DURATION:-10}
SIZE=${SIZE:-100}
NOFILE=${NOFILE:-$(ulimit -Hn)}
OUT=${OUT:-$(mktemp -d /tmp/mqtt-race.XXXXXX)}
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/mqtt-race-run.XXXXXX)
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$BENCH" ] || { echo "mqtt-race: no $BENCH (cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel -j2)" >&2; exit 1; }
if ! command -v mosquitto >/dev/null || ! command -v nats-server >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto nats-server >/dev/null
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
ulimit -n "$NOFILE"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until something accepts on 127.0.0.1:$1 (at most 15 s).
wait_port() {
  for _ in $(seq 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "mqtt-race: nothing listens on port $1" >&2
  return 1
}

start_mosquitto() {
  MOSQ_PORT=$(free_port)
  cat >"$TMP/mosquitto.conf" <<EOF
listener $MOSQ_PORT 127.0.0.1
allow_anonymous true
persistence false
EOF
  "$MOSQUITTO" -c "$TMP/mosquitto.conf" >"$TMP/mosquitto.log" 2>&1 &
  MOSQ_PID=$!
  PIDS+=("$MOSQ_PID")
  wait_port "$MOSQ_PORT"
}

start_nats() {
  NATS_PORT=$(free_port)
  NATS_MQTT_PORT=$(free_port)
  mkdir -p "$TMP/nats-js"
  cat >"$TMP/nats.conf" <<EOF
server_name: mqtt_race
listen: 127.0.0.1:$NATS_PORT
jetstream {
  store_dir: "$TMP/nats-js"
}
mqtt {
  host: 127.0.0.1
  port: $NATS_MQTT_PORT
}
EOF
  "$NATS" -c "$TMP/nats.conf" >"$TMP/nats.log" 2>&1 &
  NATS_PID=$!
  PIDS+=("$NATS_PID")
  wait_port "$NATS_MQTT_PORT"
}

# run NAME PAIRS RATE: one round against one contender; its JSON in $OUT.
run() {
  local name=$1 pairs=$2 rate=$3 f="$OUT/$1-$2-$3.json"
  local args=(mqtt-pairs --conns "$pairs" --duration "$DURATION" --size "$SIZE" --json --quiet)
  [ "$rate" = max ] || args+=(--rate "$rate")
  case $name in
  mosquitto) args+=(--broker plain --mqtt "127.0.0.1:$MOSQ_PORT" --server-pid "$MOSQ_PID") ;;
  nats-server) args+=(--broker plain --mqtt-persist --mqtt "127.0.0.1:$NATS_MQTT_PORT" --server-pid "$NATS_PID") ;;
  parleyd) args+=(--mqtt-persist) ;;
  parleyd-B) args+=(--mqtt-persist) ;;
  esac
  echo "mqtt-race: $name, $pairs pairs, rate $rate" >&2
  if [ "$name" = parleyd-B ]; then
    PARLEYD=$PARLEYD_B "$BENCH" "${args[@]}" >"$f" || true
  else
    "$BENCH" "${args[@]}" >"$f" || true
  fi
}

CONTENDERS="mosquitto nats-server parleyd"
[ -n "${PARLEYD_B:-}" ] && CONTENDERS="$CONTENDERS parleyd-B"
CONTENDERS=${ONLY:-$CONTENDERS}
REPEAT=${REPEAT:-1}
case " $CONTENDERS " in *" mosquitto "*) start_mosquitto ;; esac
case " $CONTENDERS " in *" nats-server "*) start_nats ;; esac
for pairs in $PAIRS; do
  for rate in $RATES; do
    for k in $(seq "$REPEAT"); do
      for name in $CONTENDERS; do
        run "$name" "$pairs" "$rate"
        [ "$REPEAT" = 1 ] || mv "$OUT/$name-$pairs-$rate.json" "$OUT/$name#$k-$pairs-$rate.json"
      done
    done
  done
done
if [ "$REPEAT" != 1 ]; then
  NAMES=""
  for name in $CONTENDERS; do for k in $(seq "$REPEAT"); do NAMES="$NAMES $name#$k"; done; done
  CONTENDERS=$NAMES
fi

python3 - "$OUT" "$PAIRS" "$RATES" "$CONTENDERS" <<'EOF'
import json, sys
out, pairs, rates, names = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()
def fmt(v, d=0):
    return "-" if v is None else f"{v:,.{d}f}"
print("| pairs | offered msg/s | broker | delivered msg/s | broker CPU µs/msg | msgs per CPU-s | p50 µs | p99 µs | p99.9 µs | lost | dup | notes |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for p in pairs:
    for r in rates:
        for n in names:
            try:
                j = json.load(open(f"{out}/{n}-{p}-{r}.json"))
            except Exception as e:
                print(f"| {p} | {r} | {n} | run failed | | | | | | | | |")
                continue
            cpu = j.get("server_cpu_us_per_msg")
            per_s = 1e6 / cpu if cpu else None
            notes = "; ".join(x for x in j.get("notes", []) if "MQTT 3.1.1" not in x)
            if j.get("refused"):
                notes = (notes + "; " if notes else "") + f"{j['refused']} not sent (65k in flight)"
            print(f"| {p} | {r} | {n} | {fmt(j.get('delivered_per_s'))} | {fmt(cpu, 1)} | {fmt(per_s)} | "
                  f"{fmt(j.get('lat_p50_us'))} | {fmt(j.get('lat_p99_us'))} | {fmt(j.get('lat_p999_us'))} | "
                  f"{j.get('lost')} | {j.get('duplicated')} | {notes} |")
EOF
echo "mqtt-race: raw JSON in $OUT" >&2
