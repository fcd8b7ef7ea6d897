#!/usr/bin/env bash
# A Parley cluster on one machine, on loopback: PostgreSQL, three nats-servers
# joined by cluster routes, three parleyd nodes on that bus, and haproxy in
# front (docs/operations.md, "Running a cluster").
#
#   scripts/cluster.sh up       start what is not running; print the addresses
#   scripts/cluster.sh status   what runs, each node's health and bus state
#   scripts/cluster.sh down     stop everything it started, keep the data
#   scripts/cluster.sh clean    down, then remove the data
#
# Environment: PARLEY_CLUSTER_DIR (state, logs, data; default
# ${TMPDIR:-/tmp}/parley-cluster), PARLEY_CLUSTER_PORT (first of the ports it
# uses, default 27000: haproxy +1 native, +2 web; PostgreSQL +5; NATS +10..12,
# routes +20..22; node N native +30+N, web +40+N), PARLEYD (the binary; default
# build/parleyd, built if missing), PARLEY_NODE_ARGS (more parleyd options for
# every node, e.g. bench/cluster-bench.sh lifts the rate limits), PARLEY_PG_OPTS
# (postgres options at its start; default "-c deadlock_timeout=100ms", see
# docs/operations.md; set it empty for PostgreSQL's own 1 s). Installs nats-server, haproxy and
# PostgreSQL if missing (apt-get, as scripts/deps.sh does).
#
# The nodes share one store when parleyd has the PostgreSQL backend (its
# --help mentions postgresql://): they are then started with --store
# postgresql://... Until then each node keeps its own SQLite store, and a
# message sent through one node reaches only the users of that node's store.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${PARLEY_CLUSTER_DIR:-${TMPDIR:-/tmp}/parley-cluster}
base=${PARLEY_CLUSTER_PORT:-27000}
parleyd=${PARLEYD:-$repo/build/parleyd}
pgport=$((base + 5))
lb_native=$((base + 1))
lb_web=$((base + 2))

say() { printf 'cluster: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo -n "$@"; fi; }

# nats-server, haproxy and PostgreSQL from the distribution, if missing.
install_missing() {
  local missing=()
  command -v nats-server >/dev/null 2>&1 || [[ -x /usr/sbin/nats-server ]] || missing+=(nats-server)
  command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
  [[ ${#missing[@]} == 0 ]] && return 0
  say "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
    { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
}

export PATH=$PATH:/usr/sbin
pgbin() { compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1; }

# PostgreSQL refuses to run as root: as root its programs run as "postgres".
pg_run() {
  if [[ $(id -u) == 0 ]]; then
    setpriv --reuid=postgres --regid=postgres --init-groups "$@"
  else
    "$@"
  fi
}

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

pg_up() {
  local data=$dir/pg/data bin
  bin=$(pgbin)
  mkdir -p "$dir/pg"
  if [[ $(id -u) == 0 ]]; then # postgres must reach its dir through ours
    chmod o+x "$dir"
    chown postgres: "$dir/pg"
  fi
  chmod 700 "$dir/pg"
  if [[ ! -d $data ]]; then
    pg_run "$bin/initdb" -D "$data" -U parley --auth=trust -E UTF8 >"$dir/pg/initdb.log" 2>&1 ||
      die "initdb failed: see $dir/pg/initdb.log"
  fi
  if ! pg_run "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    pg_run "$bin/pg_ctl" -D "$data" -l "$dir/pg/postgres.log" -w -t 30 \
      -o "-p $pgport -k $dir/pg -c listen_addresses=127.0.0.1 ${PARLEY_PG_OPTS--c deadlock_timeout=100ms}" start >/dev/null ||
      die "PostgreSQL did not start: see $dir/pg/postgres.log"
  fi
}

nats_up() {
  local i routes
  for i in 0 1 2; do
    alive "$dir/nats$i.pid" && continue
    routes=""
    for k in 0 1 2; do
      [[ $k == "$i" ]] || routes+="${routes:+,}nats://127.0.0.1:$((base + 20 + k))"
    done
    nats-server -a 127.0.0.1 -p $((base + 10 + i)) --cluster_name parley \
      --cluster "nats://127.0.0.1:$((base + 20 + i))" --routes "$routes" \
      -P "$dir/nats$i.pid" -l "$dir/nats$i.log" </dev/null >/dev/null 2>&1 &
    for _ in $(seq 100); do alive "$dir/nats$i.pid" && break; sleep 0.05; done
  done
}

store_args() {
  # grep reads all of it: with -q it would stop early and, under pipefail,
  # parleyd's SIGPIPE would read as "no PostgreSQL backend"
  if "$parleyd" --help 2>&1 | grep 'postgresql://' >/dev/null; then
    echo "--store postgresql://parley@127.0.0.1:$pgport/postgres"
  fi
}

nodes_up() {
  local n bus store
  bus="nats://127.0.0.1:$((base + 10)),nats://127.0.0.1:$((base + 11)),nats://127.0.0.1:$((base + 12))"
  store=$(store_args)
  [[ -n $store ]] || say "parleyd has no PostgreSQL backend yet: each node keeps its own SQLite store (they cannot share one)"
  for n in 1 2 3; do
    alive "$dir/node$n.pid" && continue
    mkdir -p "$dir/node$n"
    # shellcheck disable=SC2086 # store is zero or two words, PARLEY_NODE_ARGS any
    "$parleyd" --data "$dir/node$n" --listen 127.0.0.1:$((base + 30 + n)) --http 127.0.0.1:$((base + 40 + n)) \
      --bus "$bus" --node "node$n" $store ${PARLEY_NODE_ARGS:-} </dev/null >>"$dir/node$n.log" 2>&1 &
    echo $! >"$dir/node$n.pid"
  done
  for n in 1 2 3; do
    for _ in $(seq 200); do
      curl -sf "http://127.0.0.1:$((base + 40 + n))/healthz" >/dev/null 2>&1 && break
      alive "$dir/node$n.pid" || die "node$n exited: see $dir/node$n.log"
      sleep 0.05
    done
  done
}

# TCP mode for the native protocol (and for the web port: WebSocket and
# long-poll pass through whole); a node is taken out when /healthz fails.
haproxy_up() {
  local n
  {
    printf 'global\n  maxconn 4000\n\ndefaults\n  mode tcp\n  timeout connect 5s\n'
    printf '  timeout client 1h\n  timeout server 1h\n  option redispatch\n\n'
    printf 'frontend native\n  bind 127.0.0.1:%d\n  default_backend native_nodes\n\n' "$lb_native"
    printf 'backend native_nodes\n  balance leastconn\n  option httpchk GET /healthz\n'
    for n in 1 2 3; do
      printf '  server node%d 127.0.0.1:%d check port %d inter 1s fall 2 rise 1\n' "$n" $((base + 30 + n)) $((base + 40 + n))
    done
    printf '\nfrontend web\n  bind 127.0.0.1:%d\n  default_backend web_nodes\n\n' "$lb_web"
    printf 'backend web_nodes\n  balance leastconn\n  option httpchk GET /healthz\n'
    for n in 1 2 3; do
      printf '  server node%d 127.0.0.1:%d check inter 1s fall 2 rise 1\n' "$n" $((base + 40 + n))
    done
  } >"$dir/haproxy.cfg"
  alive "$dir/haproxy.pid" && return 0
  haproxy -c -q -f "$dir/haproxy.cfg" || die "haproxy rejects $dir/haproxy.cfg"
  haproxy -D -f "$dir/haproxy.cfg" -p "$dir/haproxy.pid" || die "haproxy did not start"
}

print_addresses() {
  cat <<EOT
PostgreSQL   postgresql://parley@127.0.0.1:$pgport/postgres
NATS         nats://127.0.0.1:$((base + 10)) nats://127.0.0.1:$((base + 11)) nats://127.0.0.1:$((base + 12))
node1        native 127.0.0.1:$((base + 31))  web http://127.0.0.1:$((base + 41))/
node2        native 127.0.0.1:$((base + 32))  web http://127.0.0.1:$((base + 42))/
node3        native 127.0.0.1:$((base + 33))  web http://127.0.0.1:$((base + 43))/
haproxy      native 127.0.0.1:$lb_native  web http://127.0.0.1:$lb_web/
logs, data   $dir
EOT
}

cmd_up() {
  install_missing
  if [[ ! -x $parleyd ]]; then
    say "building parleyd"
    (cd "$repo" && cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null && cmake --build build -j2 >/dev/null)
  fi
  mkdir -p "$dir"
  pg_up
  nats_up
  nodes_up
  haproxy_up
  print_addresses
}

metric() { curl -sf "http://127.0.0.1:$1/metrics" 2>/dev/null | awk -v m="$2" '$1 == m { print $2 }'; }

cmd_status() {
  local n rc=0 port
  if pg_run "$(pgbin)/pg_ctl" -D "$dir/pg/data" status >/dev/null 2>&1; then
    echo "PostgreSQL   up    127.0.0.1:$pgport"
  else
    echo "PostgreSQL   down" && rc=1
  fi
  for i in 0 1 2; do
    if alive "$dir/nats$i.pid"; then echo "nats$i        up    127.0.0.1:$((base + 10 + i))"; else echo "nats$i        down" && rc=1; fi
  done
  for n in 1 2 3; do
    port=$((base + 40 + n))
    if alive "$dir/node$n.pid" && curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
      echo "node$n        up    127.0.0.1:$((base + 30 + n))  bus connected $(metric "$port" parley_bus_connected), nodes alive $(metric "$port" parley_bus_nodes_alive)"
    else
      echo "node$n        down" && rc=1
    fi
  done
  if alive "$dir/haproxy.pid"; then echo "haproxy      up    127.0.0.1:$lb_native"; else echo "haproxy      down" && rc=1; fi
  return $rc
}

stop_pid() { # kills only what this script started (its pid files)
  local f=$1
  alive "$f" || { rm -f "$f"; return 0; }
  local pid
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

cmd_down() {
  [[ -d $dir ]] || return 0
  stop_pid "$dir/haproxy.pid"
  for n in 1 2 3; do stop_pid "$dir/node$n.pid"; done
  for i in 0 1 2; do stop_pid "$dir/nats$i.pid"; done
  if [[ -d $dir/pg/data ]]; then
    pg_run "$(pgbin)/pg_ctl" -D "$dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  say "stopped (data kept in $dir)"
}

case ${1:-} in
up) cmd_up ;;
status) cmd_status ;;
down) cmd_down ;;
clean) cmd_down && rm -rf "$dir" ;;
*) die "usage: scripts/cluster.sh up|status|down|clean" ;;
esac
