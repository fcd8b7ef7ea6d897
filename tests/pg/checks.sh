# checks.sh: the set-up and check helpers the shard tests share (sourced
# by shards.sh and move.sh). Each check prints "PASS NAME" or "FAIL NAME: why" and counts
# failures in $failed; run keeps a command's output in $tmp/out and
# $tmp/err; q asks shard K's database ($SHARD_URI[K]).
# shellcheck shell=bash disable=SC2154,SC2034 # $tmp, $failed, SHARD_URI, $served, the ports: the sourcing test's

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
# serve LOG PORT HPORT ARGS...: parleyd on ARGS (the stores, --data, ...)
# with the tests' settings, listening on 127.0.0.1:PORT and :HPORT, its
# stderr appended to LOG; waits until both listen (60 s at most). $served:
# its pid (set also when it fails: the caller's to stop). 1: it exited or
# did not listen in time.
serve() {
  local log=$1 p=$2 hp=$3 i die=()
  shift 3
  if command -v setpriv >/dev/null; then die=(setpriv --pdeathsig KILL); fi
  ${die[@]+"${die[@]}"} "$PARLEYD" "$@" --listen "127.0.0.1:$p" --http "127.0.0.1:$hp" --threads 2 \
    --argon2-mem 8 --argon2-ops 1 --login-rate 0 --register-rate 0 --argon2-per-address 64 \
    --sweep-interval 1 2>>"$log" &
  served=$!
  for ((i = 0; i < 3000; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$hp") 2>/dev/null; then
      return 0
    fi
    kill -0 "$served" 2>/dev/null || return 1
    sleep 0.02
  done
  return 1
}
# up NAME LOG PORT HPORT ARGS...: serve, then "PASS NAME-serves"; or the
# FAIL, the process stopped, and the test ends here
up() {
  local name=$1 rc=0
  shift
  serve "$@" || rc=$?
  if ((rc == 0)); then
    pass "$name-serves"
    return 0
  fi
  kill -9 "$served" 2>/dev/null || true
  fail "$name-serves" "parleyd did not listen on $2 and $3 within 60 s"
  exit 1
}
# recv_until FILE WANT PATTERN CMD...: runs CMD (a recv, which acks what it
# prints) again and again, its output appended to FILE (emptied first),
# until FILE has WANT lines matching PATTERN, 60 s at most (out of time,
# the check after it fails and the test goes on)
recv_until() {
  local f=$1 want=$2 pat=$3 deadline=$((SECONDS + 60))
  shift 3
  : >"$f"
  while ((SECONDS < deadline)); do
    "$@" >>"$f" 2>/dev/null || true
    (($(grep -c -- "$pat" "$f") >= want)) && break
  done
  return 0
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
