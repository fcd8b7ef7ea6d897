# shellcheck shell=bash
# Shell helpers the bench scripts share (source it).

# ticks PID...: utime + stime in clock ticks of the given pids (those that still run)
ticks() {
  local t=0 p
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] || continue
    t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat")))
  done
  echo "$t"
}

lib_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# pick NAME: the path of the built binary NAME, the Release build's first
# (benches measure it; `make bench` builds it), exits if neither is built
pick() {
  local b
  for b in "$lib_repo/build-rel/$1" "$lib_repo/build/$1"; do
    [[ -x $b ]] && { echo "$b"; return; }
  done
  echo "$1: not built" >&2
  exit 1
}

# pg_two start|stop DIR: two throw-away PostgreSQL servers, DIR/pgA and
# DIR/pgB (tests/pg/pg_fixture.sh); stop never fails, for EXIT traps
pg_two() {
  local s
  for s in A B; do
    if [[ $1 == start ]]; then
      bash "$lib_repo/tests/pg/pg_fixture.sh" start "$2/pg$s" >/dev/null
    else
      bash "$lib_repo/tests/pg/pg_fixture.sh" stop "$2/pg$s" >/dev/null 2>&1 || true
    fi
  done
}

# pg_uri DIR A|B DB: a connection string for database DB of that server
pg_uri() { echo "postgresql://postgres@127.0.0.1:$(cat "$1/pg$2/port")/$3"; }
