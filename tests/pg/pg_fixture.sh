#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for the tests: pg_fixture.sh start|stop|pause|resume DIR.
#
# start: initdb in DIR/cluster (owned by the postgres user: the tests run as
# root and PostgreSQL refuses to), a server on 127.0.0.1 on a free port with
# trust authentication, its address in DIR/conninfo ("host=... port=...
# user=postgres") and DIR/uri (postgresql://...). stop: stops it and removes
# DIR. pause: stops it at once, as a crash would (the failover test);
# resume: starts it again on the same port.
# ctest runs start as the "pg" fixture's setup and stop as its cleanup, so
# the server goes even when tests fail.
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?DIR}
bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

stop() {
  if [[ -f $dir/cluster/postmaster.pid ]]; then
    # immediate: the data is thrown away, so no shutdown checkpoint to wait for
    as_pg "$bin/pg_ctl" -D "$dir/cluster" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
  # The cluster holds a database per test server (gigabytes after a whole
  # run): deleting it took over two minutes on a loaded machine and timed the
  # cleanup out. The name goes at once (a rename); the files go in the
  # background, detached from ctest.
  if [[ -d $dir ]]; then
    local gone
    gone=$(mktemp -u "$dir.gone.XXXXXX")
    mv "$dir" "$gone"
    setsid rm -rf "$gone" </dev/null >/dev/null 2>&1 &
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_start() { # port
  as_pg "$bin/pg_ctl" -D "$dir/cluster" -l "$dir/server.log" -w -t 60 \
    -o "-p $1 -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c max_connections=300 -c fsync=off -c full_page_writes=off" \
    start >/dev/null
}

start() {
  [[ -x $bin/initdb ]] || { echo "pg_fixture: no PostgreSQL 15 in $bin (scripts/deps.sh --test)" >&2; exit 1; }
  stop
  mkdir -p "$dir/cluster"
  [[ $(id -u) == 0 ]] && chown -R postgres: "$dir"
  chmod 700 "$dir/cluster"
  as_pg "$bin/initdb" -D "$dir/cluster" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  local port tries=0
  while :; do
    port=$(free_port)
    # fsync=off: what the tests kill is parleyd or this server, never the
    # machine, and a commit reaches the kernel before PostgreSQL answers it,
    # so "acked means stored" is still tested; without the fsyncs many
    # tests on a loaded two-core machine run in their timeouts.
    if pg_start "$port"; then
      break
    fi
    tries=$((tries + 1))
    ((tries < 5)) || { cat "$dir/server.log" >&2; exit 1; }
  done
  echo "host=127.0.0.1 port=$port user=postgres" >"$dir/conninfo"
  echo "postgresql://postgres@127.0.0.1:$port/postgres" >"$dir/uri"
  echo "$port" >"$dir/port"
  chmod 755 "$dir"
  echo "pg_fixture: PostgreSQL on 127.0.0.1:$port ($dir)"
}

case $cmd in
start) start ;;
stop) stop ;;
pause) as_pg "$bin/pg_ctl" -D "$dir/cluster" -m immediate -w -t 30 stop >/dev/null ;;
resume) pg_start "$(cat "$dir/port")" ;;
*) echo "usage: pg_fixture.sh start|stop|pause|resume DIR" >&2; exit 2 ;;
esac
