# checks.sh: the set-up and check helpers the shard tests share (sourced
# by shards.sh and move.sh). Each check prints "PASS NAME" or "FAIL NAME: why" and counts
# failures in $failed; run keeps a command's output in $tmp/out and
# $tmp/err; q asks shard K's database ($SHARD_URI[K]).
# shellcheck shell=bash disable=SC2154,SC2034 # $tmp, $failed, SHARD_URI, the ports: the sourcing test's

# shard_env NAME: checks the environment ctest gives (the binaries, the pg
# fixture), makes $tmp (parley-NAME-*, which the postgres user reaches: the
# test's own PostgreSQL goes in $tmp/pg2) and sets $pg1port (the ctest
# fixture's port; $pg2port is the test's to set)
shard_env() {
  : "${PARLEYD:?PARLEYD must point to the parleyd binary}"
  : "${PARLEY_CLI:?PARLEY_CLI must point to the parley binary}"
  : "${PL_PG_DIR:?PL_PG_DIR: the pg fixture directory}"
  : "${PL_PG_FIXTURE:?PL_PG_FIXTURE: tests/pg/pg_fixture.sh}"
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/parley-$1-XXXXXX")
  chmod 711 "$tmp"
  pg1port=$(cat "$PL_PG_DIR/port")
  pg2port=
}

pass() { echo "PASS $1"; }
fail() {
  echo "FAIL $1: $2"
  failed=$((failed + 1))
}
# same NAME GOT WANT
same() { if [[ $2 == "$3" ]]; then pass "$1"; else fail "$1" "got <<$2>>, want <<$3>>"; fi; }
# run NAME WANT_RC CMD...: PASS when the exit status is WANT_RC; stdout in $tmp/out, stderr in $tmp/err
run() {
  local name=$1 want=$2 rc=0
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  if [[ $rc == "$want" ]]; then
    pass "$name"
  else
    fail "$name" "exit $rc (want $want): stdout <<$(head -c 2000 "$tmp/out")>> stderr <<$(head -c 2000 "$tmp/err")>>"
  fi
}
# q SHARD SQL: one psql answer on shard K (fields joined by |); an error's text otherwise
q() { psql "${SHARD_URI[$1]}" -qAtX -v ON_ERROR_STOP=1 -c "$2" 2>&1 || true; }
# drop_tmp: the test's own PostgreSQL ($tmp/pg2) stopped and $tmp removed;
# the fixture deletes its files in the background, so $tmp goes once they
# are gone (5 s at most)
drop_tmp() {
  local i
  bash "$PL_PG_FIXTURE" stop "$tmp/pg2" >/dev/null 2>&1 || true
  for ((i = 0; i < 50; i++)); do
    rm -rf "$tmp" 2>/dev/null || true
    [[ -e $tmp ]] || break
    sleep 0.1
  done
}
