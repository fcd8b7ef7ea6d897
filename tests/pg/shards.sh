#!/usr/bin/env bash
# Sharding, steps 1 and 2 (docs/scaling.md 7: routing; 1:1 messages across
# shards): two PostgreSQL instances as two shards, parleyd --store A
# --store-shard B.
#
# A user's home bucket is FNV-1a 64 of its name mod 16384, its shard
# bucket * K / 16384; ids carry the bucket (id >> 48). Checked here:
#  1. users on both shards register (names picked by the hash, below);
#  2. users and devices rows are on the home shard only, their ids >> 48
#     the bucket;
#  3. same-shard chat on both shards: send, the queue row on the home shard,
#     recv exactly once, delivered receipts, groups (gid >> 48: the creator's
#     bucket);
#  4. across shards, a plain message in either direction: committed on the
#     conversation's shard (shard 0: the pair's lower bucket; its counter
#     and dedup record there only), copied to the other user's shard (the
#     relay guard there at its seq, the outbox empty after), received once,
#     its delivered receipt back to the sender; read receipts both ways and
#     UnreadGet's marks on both shards; a contact added across (on its
#     owner's shard, listed by name), presence and typing across, a block
#     across refusing a send (nothing stored) until unblocked; a group of
#     a shard 1 user with shard 0 members and a shard 1 user in a shard 0
#     group (step 4, "xgroup" below);
#  5. a second device, settings, contacts, a push token and an upload of a
#     shard 1 user land on shard 1 only (and the upload downloads);
#  6. Resume with a saved token (JSON WebSocket) on both shards, its
#     token_hash on the home shard only;
#  7. the shards swapped, one shard less, a shard given twice: parleyd refuses to
#     start (non-zero exit, an error line naming the shard); the right order
#     again serves what was queued before, and the saved token still works;
#  7b. a second node on the same shards: sent through one, read through the other;
#  7c. an invite made through the admin API lives on shard 0; a shard 1 name
#     signs up with it (its use taken there), a second one cannot;
#  8. a database used by a single-node parleyd (with a user) becomes shard
#     0 of a store given a second database (its user served: tests/pg/grow.sh
#     has the rest), and refuses to be shard 1 of another;
#  9. across shards through two nodes at once: four users each send N
#     messages to their partner on the other shard, alternating nodes; each
#     recipient gets each exactly once in seq order, and a second device of
#     a shard 1 sender (copied its own messages too) sees its conversation
#     gap-free; then a node is killed between T1 and T2 (T2 held by a lock
#     on shard 1's relay table until T1's outbox row shows on shard 0): the
#     other node's sweep copies the message, the recipient gets it once,
#     the sender's retry with the same id gets the same seq, and the outbox
#     is empty; a group of both shards written through both nodes at once,
#     then its history trimmed once every member device has it;
# 10. the queue limits of a shard 1 recipient of shard 0 senders;
# 11. shard 1's PostgreSQL stopped: shard 0's users go on (1:1, a shard 0
#     group), a send into a shard 1 group is retried by the client until the
#     shard is back, then stored once and received once; a device that
#     connected while shard 1 was away and stays connected gets what waited
#     there once it is back, with no new message to hint it.
# The first shard's database is on the ctest pg fixture, the second on a
# PostgreSQL of this test's own (pg_fixture.sh), stopped at exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=checks.sh
. "$here/checks.sh"
shard_env shards
port=$(python3 "$here/../integration/free_port.py")
hport=$(python3 "$here/../integration/free_port.py")
deadport=$(python3 "$here/../integration/free_port.py") # the push webhook: nobody listens
export PARLEY_SERVER=127.0.0.1:$port PARLEY_HTTP=127.0.0.1:$hport PARLEY_PASSWORD=secret-pass
PY=/usr/bin/python3 # Debian's, with python3-websockets
pid=
pid2= # a second node (7b)
log=
failed=0
tag=$$_$RANDOM
db0=p_shard0_$tag db1=p_shard1_$tag # the two shards
dbs=p_single_$tag                   # used single-node first
dbf1=p_fresh1_$tag dbf2=p_fresh2_$tag
dbs_pg1=("$db0" "$dbs")
dbs_pg2=("$db1" "$dbf1" "$dbf2")
uri1() { echo "postgresql://postgres@127.0.0.1:$pg1port/$1"; }
uri2() { echo "postgresql://postgres@127.0.0.1:$pg2port/$1"; }

die_with_us=()
if command -v setpriv >/dev/null; then die_with_us=(setpriv --pdeathsig KILL); fi

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local p
  for p in "$pid" "$pid2"; do
    [[ -n $p ]] || continue
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [[ $failed -ne 0 ]]; then
    local f
    for f in "$tmp"/parleyd.*.log; do # (node2's too)
      [[ -f $f ]] || continue
      echo "--- $(basename "$f") (last 30 lines)" >&2
      tail -n 30 "$f" >&2
    done
  fi
  local d
  for d in "${dbs_pg1[@]}"; do
    psql "$(uri1 postgres)" -qXc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true
  done
  if [[ -n $pg2port ]]; then
    for d in "${dbs_pg2[@]}"; do
      psql "$(uri2 postgres)" -qXc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true
    done
  fi
  drop_tmp
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
# jfield FILE KEY...: a field of the first JSON line of FILE ("" if there is none)
jfield() {
  python3 - "$@" <<'EOF' 2>/dev/null || true
import json, sys
try:
    d = json.loads(open(sys.argv[1]).readline())
    for k in sys.argv[2:]:
        d = d[k]
    print(d)
except Exception:
    print("")
EOF
}
# count_msgs FILE TEXT: the messages in recv's output FILE with that text
count_msgs() {
  python3 - "$1" "$2" <<'EOF' 2>&1 || true
import json, sys
n = 0
for line in open(sys.argv[1]):
    if line.strip():
        d = json.loads(line)
        n += d.get("type") == "message" and d.get("text") == sys.argv[2]
print(n)
EOF
}
# has_receipt FILE BY SEQ [STATUS]: 1 if recv's output FILE has BY's receipt
# (delivered, or STATUS) for SEQ
has_receipt() {
  python3 - "$1" "$2" "$3" "${4:-delivered}" <<'EOF' 2>&1 || true
import json, sys
hit = 0
for line in open(sys.argv[1]):
    if line.strip():
        d = json.loads(line)
        hit |= (d.get("type") == "receipt" and d.get("status") == sys.argv[4]
                and d.get("by") == sys.argv[2] and str(d.get("seq")) == sys.argv[3])
print(int(hit))
EOF
}
# until_q NAME SHARD SQL WANT: SQL's answer on SHARD becomes WANT within 30 s
until_q() {
  local i got
  for ((i = 0; i < 600; i++)); do
    got=$(q "$2" "$3")
    if [[ $got == "$4" ]]; then
      pass "$1"
      return 0
    fi
    sleep 0.05
  done
  fail "$1" "got <<$got>>, want <<$4>> within 30 s"
}
# in SQL: the rows whose body holds TEXT
body_has() { echo "position(convert_to('$1', 'UTF8') in body) > 0"; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
nlog=0
# launch STORE-ARGS...: parleyd in the background on the test's ports, its log in $log
launch() {
  nlog=$((nlog + 1))
  log=$tmp/parleyd.$nlog.log
  ${die_with_us[@]+"${die_with_us[@]}"} "$PARLEYD" "$@" --data "$tmp/data" --listen "127.0.0.1:$port" \
    --http "127.0.0.1:$hport" --threads 2 --argon2-mem 8 --argon2-ops 1 --login-rate 0 --register-rate 0 \
    --argon2-per-address 16 --push-webhook "http://127.0.0.1:$deadport/push" 2>>"$log" &
  pid=$!
}
# start STORE-ARGS...: parleyd serving (both listeners) within 60 s, or the test ends here
start() {
  launch "$@"
  for _ in $(seq 3000); do
    if listening "$port" && listening "$hport"; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  fail "start" "parleyd ($*) did not start listening on $port and $hport"
  exit 1
}
# stop: SIGTERM, gone within 30 s
stop() {
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    fail "stop" "parleyd still running 30 s after SIGTERM"
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  pid=
}
# refused NAME STORE-ARGS...: parleyd exits non-zero within 30 s without
# serving, and its log has an error line that names the shard
refused() {
  local name=$1 rc=0 served=0 i
  shift
  launch "$@"
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    if ((served == 0)) && listening "$port"; then
      served=1
      i=270 # serving: 3 s more to see it exit
    fi
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    if ((served)); then
      fail "$name" "parleyd ($*) started and serves"
    else
      fail "$name" "parleyd ($*) still running after 30 s"
    fi
    stop
    return 0
  fi
  wait "$pid" || rc=$?
  pid=
  if ((served)); then
    fail "$name" "parleyd ($*) accepted connections before it exited ($rc)"
  elif [[ $rc == 0 ]]; then
    fail "$name" "parleyd ($*) exited 0"
  elif awk 'tolower($0) ~ /shard/ && $0 !~ /unknown option/ &&
             ($0 ~ /^[0-9][0-9-]*T[0-9:.]+Z +error / || $0 ~ /^parleyd: /) { f = 1 } END { exit !f }' "$log"; then
    pass "$name"
  else
    fail "$name" "exit $rc, but no error line naming the shard in the log: $(tail -n 5 "$log")"
  fi
}

# ---- names: two users homed on each shard (K = 2), by the hash ------------
read -r -a picked <<<"$(python3 - <<'EOF'
def bucket(name):
    h = 14695981039346656037
    for b in name.encode():
        h = ((h ^ b) * 1099511628211) % (1 << 64)
    return h % 16384
def shard(name):
    return bucket(name) * 2 // 16384
out = []
for prefix, want, n in (("amy", 0, 2), ("ben", 1, 2), ("ghost", 0, 1), ("ivy", 1, 2), ("quin", 0, 2), ("quin", 1, 1)):
    names = [f"{prefix}{i}" for i in range(1000) if shard(f"{prefix}{i}") == want][:n]
    out += [f"{x} {bucket(x)}" for x in names]
print(" ".join(out))
EOF
)"
A0=${picked[0]} A1=${picked[2]} B0=${picked[4]} B1=${picked[6]} GHOST=${picked[8]}
I0=${picked[10]} I1=${picked[12]} # sign up with an invite in 7c
Q0=${picked[14]} R0=${picked[16]} Q1=${picked[18]} # the queue limits across shards in 10
declare -A BUCKET=([$A0]=${picked[1]} [$A1]=${picked[3]} [$B0]=${picked[5]} [$B1]=${picked[7]})
declare -A HOMESH
USERS=("$A0" "$A1" "$B0" "$B1")
for u in "${USERS[@]}"; do HOMESH[$u]=$((BUCKET[$u] * 2 / 16384)); done
echo "users: $A0 (bucket ${BUCKET[$A0]}), $A1 (${BUCKET[$A1]}) on shard 0; $B0 (${BUCKET[$B0]}), $B1 (${BUCKET[$B1]}) on shard 1; $GHOST never registers"
if [[ ${HOMESH[$A0]}${HOMESH[$A1]}${HOMESH[$B0]}${HOMESH[$B1]} != 0011 ]]; then
  fail "names" "the names' shards are ${HOMESH[*]}"
  exit 1
fi
cli() { # cli USER [--device D] ARGS...
  local u=$1
  shift
  "$PARLEY_CLI" --user "$u" "$@"
}

# ---- the second PostgreSQL, the databases ---------------------------------
if ! bash "$PL_PG_FIXTURE" start "$tmp/pg2" >"$tmp/pg2.out" 2>&1; then
  fail "pg2" "the second PostgreSQL did not start: $(cat "$tmp/pg2.out")"
  exit 1
fi
pg2port=$(cat "$tmp/pg2/port")
for d in "${dbs_pg1[@]}"; do psql "$(uri1 postgres)" -qXv ON_ERROR_STOP=1 -c "CREATE DATABASE $d" >/dev/null; done
for d in "${dbs_pg2[@]}"; do psql "$(uri2 postgres)" -qXv ON_ERROR_STOP=1 -c "CREATE DATABASE $d" >/dev/null; done
SHARD_URI=("$(uri1 "$db0")" "$(uri2 "$db1")")
RIGHT=(--store "${SHARD_URI[0]}" --store-shard "${SHARD_URI[1]}")

# a small PNG for the upload
python3 -c "import sys; sys.path.insert(0, '$here/../integration'); from testimg import png; open(sys.argv[1], 'wb').write(png(24, 16))" "$tmp/pic.png"
# token_hash: BLAKE2b-256 of the token (protocol.md 7.2), as hex
token_hash() { python3 -c 'import hashlib, sys; print(hashlib.blake2b(open(sys.argv[1]).read().strip().encode(), digest_size=32).hexdigest())' "$1"; }

# recv_once NAME USER TEXT: USER's recv shows TEXT exactly once, and a second recv not again
recv_once() {
  local name=$1 u=$2 text=$3 deadline=$((SECONDS + 30)) rc=0
  # until it comes (30 s at most): right after a shard's outage a fetch may
  # leave that shard's groups for later (pg_ghist.c), and the next one,
  # this connection's or the next's, reads them
  : >"$tmp/recv.$name"
  while ((SECONDS < deadline)); do
    cli "$u" recv --wait 2 >>"$tmp/recv.$name" 2>"$tmp/err" || rc=$?
    ((rc == 0 && $(count_msgs "$tmp/recv.$name" "$text") == 0)) || break
  done
  same "$name-recv" "$rc" 0
  same "$name-arrives-once" "$(count_msgs "$tmp/recv.$name" "$text")" 1
  run "$name-recv-again" 0 cli "$u" recv --wait 0.5
  same "$name-not-again" "$(count_msgs "$tmp/out" "$text")" 0
}
# receipt_to NAME USER BY SEQ [STATUS]: USER's recv shows BY's delivered (or
# STATUS) receipt of SEQ within 20 s
receipt_to() {
  local name=$1 u=$2 by=$3 seq=$4 status=${5:-delivered} deadline=$((SECONDS + 20))
  : >"$tmp/receipts"
  while ((SECONDS < deadline)); do
    cli "$u" recv --wait 1 >>"$tmp/receipts" 2>/dev/null || true
    if [[ $(has_receipt "$tmp/receipts" "$by" "$seq" "$status") == 1 ]]; then
      pass "$name"
      return 0
    fi
  done
  fail "$name" "no $status receipt by $by for seq $seq in 20 s: $(head -c 2000 "$tmp/receipts")"
}

# ==== 1. register users of both shards ======================================
start "${RIGHT[@]}"
for u in "${USERS[@]}"; do
  run "register-$u" 0 cli "$u" register
  same "register-$u-says" "$(cat "$tmp/out")" "{\"registered\":\"$u\",\"device\":\"default\"}"
done

# ==== 2. users and devices on their home shard only ==========================
same "shard0-users" "$(q 0 "SELECT string_agg(name, ',' ORDER BY name) FROM users")" "$A0,$A1"
same "shard1-users" "$(q 1 "SELECT string_agg(name, ',' ORDER BY name) FROM users")" "$B0,$B1"
declare -A UID_OF
for u in "${USERS[@]}"; do
  h=${HOMESH[$u]} o=$((1 - HOMESH[$u])) b=${BUCKET[$u]}
  UID_OF[$u]=$(q "$h" "SELECT id FROM users WHERE name = '$u'")
  [[ ${UID_OF[$u]} =~ ^[0-9]+$ ]] || UID_OF[$u]=0
  same "user-$u-id-bucket" "$(q "$h" "SELECT count(*) || ' ' || min(id >> 48) FROM users WHERE name = '$u'")" "1 $b"
  same "user-$u-not-on-shard$o" "$(q "$o" "SELECT count(*) FROM users WHERE name = '$u' OR id >> 48 = $b")" 0
  same "devices-$u-on-shard$h" \
    "$(q "$h" "SELECT count(*) || ' ' || count(*) FILTER (WHERE id >> 48 = $b) || ' ' || count(token_hash) FROM devices WHERE user_id = ${UID_OF[$u]}")" "1 1 1"
  same "devices-$u-not-on-shard$o" "$(q "$o" "SELECT count(*) FROM devices WHERE user_id = ${UID_OF[$u]} OR id >> 48 = $b")" 0
done

# ==== 3. same-shard chat on both shards ======================================
# dm X Y SHARD: X sends Y a text; stored and queued on SHARD only; Y gets it once; X the receipt
dm() {
  local x=$1 y=$2 s=$3 text seq
  text="hello $y from $x $RANDOM$RANDOM"
  run "send-$x-$y" 0 cli "$x" send "$y" "$text"
  seq=$(jfield "$tmp/out" seq)
  same "send-$x-$y-stored-on-shard$s" \
    "$(q "$s" "SELECT count(*) FROM queue WHERE device_id IN (SELECT id FROM devices WHERE user_id = ${UID_OF[$y]}) AND mid IN (SELECT mid FROM messages WHERE $(body_has "$text"))")" 1
  same "send-$x-$y-not-on-shard$((1 - s))" "$(q $((1 - s)) "SELECT count(*) FROM messages WHERE $(body_has "$text")")" 0
  recv_once "dm-$x-$y" "$y" "$text"
  receipt_to "receipt-$y-to-$x" "$x" "$y" "${seq:-0}"
}
dm "$A0" "$A1" 0
dm "$B0" "$B1" 1
dm "$B1" "$B0" 1
# groups: the gid carries the creator's bucket, the group lives on its shard
declare -A GID
group_on() {
  local x=$1 y=$2 s=$3 gid text b=${BUCKET[$1]}
  run "group-create-$x" 0 cli "$x" group create "team-$x" "$y"
  gid=$(jfield "$tmp/out" group)
  [[ $gid =~ ^[0-9]+$ ]] || gid=0
  GID[$x]=$gid
  same "group-$x-gid-bucket" "$((gid >> 48))" "$b"
  same "group-$x-on-shard$s" "$(q "$s" "SELECT count(*) || ' ' || (SELECT count(*) FROM members WHERE gid = $gid) FROM groups WHERE gid = $gid")" "1 2"
  same "group-$x-not-on-shard$((1 - s))" "$(q $((1 - s)) "SELECT count(*) FROM groups WHERE gid = $gid OR gid >> 48 = $b")" 0
  text="group text from $x $RANDOM$RANDOM"
  run "group-send-$x" 0 cli "$x" send --group "$gid" "$text"
  recv_once "group-$x-$y" "$y" "$text"
}
group_on "$A0" "$A1" 0
group_on "$B0" "$B1" 1

# ==== 4. across shards: plain messages cross; the rest not yet ==============
conv() { if [[ $1 < $2 ]]; then echo "dm:$1:$2"; else echo "dm:$2:$1"; fi; }
# xdm X Y: X sends Y a text across the shards
xdm() {
  local x=$1 y=$2 text seq c ys=${HOMESH[$2]}
  text="across from $x to $y $RANDOM$RANDOM"
  c=$(conv "$x" "$y")
  run "xsend-$x-$y" 0 cli "$x" send "$y" "$text"
  seq=$(jfield "$tmp/out" seq)
  [[ $seq =~ ^[0-9]+$ ]] || seq=0
  same "xsend-$x-$y-conv" "$(jfield "$tmp/out" conv)" "$c"
  same "xsend-$x-$y-counter-on-shard0" "$(q 0 "SELECT last_seq FROM convs WHERE conv = '$c'")" "$seq"
  same "xsend-$x-$y-dedup-on-shard0" "$(q 0 "SELECT count(*) FROM dedup WHERE conv = '$c' AND seq = $seq")" 1
  same "xsend-$x-$y-not-on-shard1" \
    "$(q 1 "SELECT (SELECT count(*) FROM convs WHERE conv = '$c') + (SELECT count(*) FROM dedup WHERE conv = '$c')")" 0
  same "xsend-$x-$y-queued-on-shard$ys" \
    "$(q "$ys" "SELECT count(*) > 0 AND count(*) = (SELECT count(*) FROM devices WHERE user_id = ${UID_OF[$y]} AND token_hash IS NOT NULL) FROM queue WHERE device_id IN (SELECT id FROM devices WHERE user_id = ${UID_OF[$y]}) AND mid IN (SELECT mid FROM messages WHERE conv = '$c' AND seq = $seq AND $(body_has "$text"))")" t
  same "xsend-$x-$y-relayed" "$(q 1 "SELECT upto FROM relay WHERE stream = '$c'")" "$seq"
  same "xsend-$x-$y-outbox-empty" "$(q 0 "SELECT count(*) FROM outbox")" 0
  recv_once "xdm-$x-$y" "$y" "$text"
  XSEQ=$seq
  # the delivered receipt (made on the recipient's shard by its ack) reaches the sender
  receipt_to "xreceipt-$y-to-$x" "$x" "$y" "$seq"
}
xdm "$A0" "$B0" # T1 here, T2 to the recipient's shard
xdm "$B0" "$A0" # T1 on the recipient's shard; the sender's own shard gets the copy's guard
xdm "$B1" "$A1"
xdm "$A1" "$B1"
# read receipts both ways, and what UnreadGet says of the conversation on
# each side: (last seq, own read mark, the peer's delivered and read marks)
# x_read X Y: Y read X's last message (XSEQ): the read receipt reaches X,
# and X's UnreadGet has every mark at XSEQ
x_read() {
  local x=$1 y=$2
  run "xread-$y-marks" 0 cli "$y" read "$x" "$XSEQ"
  same "xread-$y-says" "$(cat "$tmp/out")" '{"ok":true}'
  receipt_to "xreceipt-read-$y-to-$x" "$x" "$y" "$XSEQ" read
  run "xunread-$x" 0 "$PY" "$here/ws_client.py" unread "$hport" "$x" "$PARLEY_PASSWORD" "$(conv "$x" "$y")"
  same "xunread-$x-marks" "$(cat "$tmp/out")" "$XSEQ $XSEQ $XSEQ $XSEQ"
}
x_read "$A1" "$B1" # the conversation's shard (0) reads marks copied in from shard 1
xdm "$B1" "$A1"
x_read "$B1" "$A1" # shard 1: its last seq is the last copied in
# contacts, presence, typing and blocks across shards: each a row of its owner's, here
run "xcontacts-add-$A0-$B1" 0 cli "$A0" contacts add "$B1"
same "xcontacts-$A0-lists-$B1" "$(cat "$tmp/out")" "{\"contacts\":[\"$B1\"]}"
same "xcontacts-$A0-on-shard0" "$(q 0 "SELECT count(*) FROM contacts WHERE uid = ${UID_OF[$A0]} AND contact_uid = ${UID_OF[$B1]}")" 1
same "xcontacts-$A0-not-on-shard1" "$(q 1 "SELECT count(*) FROM contacts WHERE uid = ${UID_OF[$A0]}")" 0
run "xpresence-$B1-of-$A0" 0 cli "$B1" presence "$A0"
same "xpresence-$B1-of-$A0-user" "$(jfield "$tmp/out" user)" "$A0"
run "xtyping-$A0-to-$B0" 0 cli "$A0" typing "$B0"
run "xblock-$B0-blocks-$A0" 0 cli "$B0" block "$A0"
same "xblock-on-shard1" "$(q 1 "SELECT count(*) FROM blocks WHERE uid = ${UID_OF[$B0]} AND blocked_uid = ${UID_OF[$A0]}")" 1
btext="while blocked $RANDOM$RANDOM"
run "xblock-$A0-refused" 5 cli "$A0" send "$B0" "$btext"
same "xblock-$A0-refused-says" "$(grep -c "does not accept your messages" "$tmp/err")" 1
same "xblock-nothing-stored" "$(q 0 "SELECT count(*) FROM messages WHERE $(body_has "$btext")")$(q 1 "SELECT count(*) FROM messages WHERE $(body_has "$btext")")" 00
run "xblock-$B0-unblocks-$A0" 0 cli "$B0" unblock "$A0"
xdm "$A0" "$B0"
# message actions across: a delete for everyone takes the copy out of the
# other shard's queue before it was fetched; an edit and a reaction arrive
dtext="to be deleted $RANDOM$RANDOM"
run "xact-send-$A0-$B0" 0 cli "$A0" send "$B0" "$dtext"
dseq=$(jfield "$tmp/out" seq)
same "xact-copy-queued-on-shard1" "$(q 1 "SELECT count(*) FROM messages WHERE $(body_has "$dtext")")" 1
run "xact-delete-$A0" 0 "$PY" "$here/ws_client.py" act "$hport" "$A0" "$PARLEY_PASSWORD" "$B0" ACT_DELETE "${dseq:-0}" ""
same "xact-copy-gone-on-shard1" "$(q 1 "SELECT count(*) FROM messages WHERE $(body_has "$dtext")")" 0
run "xact-$B0-recv" 0 cli "$B0" recv --wait 1
same "xact-deleted-not-shown" "$(count_msgs "$tmp/out" "$dtext")" 0
same "xact-delete-arrives" "$(python3 -c '
import json, sys
print(sum(1 for d in map(json.loads, filter(str.strip, open(sys.argv[1])))
          if d.get("type") == "message" and (d.get("act") or {}).get("kind") == "delete"
          and int((d.get("act") or {}).get("target", 0)) == int(sys.argv[2])))' "$tmp/out" "${dseq:-0}" 2>&1)" 1
# (the actions' senders sign in as device "act": B0's devices are counted later)
etext="edited $RANDOM$RANDOM"
run "xact-send2-$B1-$A1" 0 cli "$B1" send "$A1" "original $RANDOM"
eseq=$(jfield "$tmp/out" seq)
run "xact-edit-$B1" 0 "$PY" "$here/ws_client.py" act "$hport" "$B1" "$PARLEY_PASSWORD" "$A1" ACT_EDIT "${eseq:-0}" "$etext"
run "xact-react-$A1" 0 "$PY" "$here/ws_client.py" act "$hport" "$A1" "$PARLEY_PASSWORD" "$B1" ACT_REACTION "${eseq:-0}" "+1"
run "xact-$A1-recv" 0 cli "$A1" recv --wait 1
same "xact-edit-arrives-at-$A1" "$(count_msgs "$tmp/out" "$etext")" 1
run "xact-$B1-recv" 0 cli "$B1" recv --wait 1
same "xact-edit-copied-to-$B1-other-devices" "$(count_msgs "$tmp/out" "$etext")" 1
same "xact-reaction-arrives-at-$B1" "$(count_msgs "$tmp/out" "+1")" 1
same "xact-outbox-empty" "$(q 0 "SELECT count(*) FROM outbox")$(q 1 "SELECT count(*) FROM outbox")" 00
copies=$(curl -s "http://127.0.0.1:$hport/metrics" | awk '$1 == "parley_store_relay_copies_total" { print $2 }')
same "xcopies-on-metrics" "$((${copies:-0} >= 10))" 1
# ---- groups across shards (step 4): a group lives on its creator's shard
# with its members of any shard (their names beside their ids), their
# cursors and watermarks and its history; a member's fetch reads the
# memberships of every shard and each group's part on the group's shard
# group: GX made by B0 (shard 1) with A0 and A1 (shard 0)
run "xgroup-create-$B0" 0 cli "$B0" group create "cross" "$A1" "$A0"
XG=$(jfield "$tmp/out" group)
[[ $XG =~ ^[0-9]+$ ]] || XG=0
same "xgroup-gid-bucket" "$((XG >> 48))" "${BUCKET[$B0]}"
same "xgroup-on-shard1-only" "$(q 1 "SELECT count(*) FROM groups WHERE gid = $XG") $(q 0 "SELECT count(*) FROM groups WHERE gid = $XG")" "1 0"
same "xgroup-members-on-shard1" "$(q 1 "SELECT string_agg(name, ',' ORDER BY name) FROM members WHERE gid = $XG AND role > 0")" \
  "$(printf '%s\n' "$A0" "$A1" "$B0" | sort | paste -sd,)"
same "xgroup-member-ids-from-their-shards" "$(q 1 "SELECT count(*) FROM members WHERE gid = $XG AND uid >> 48 IN (${BUCKET[$A0]}, ${BUCKET[$A1]})")" 2
# a message into it by a member of the other shard, through the group's shard
xtext="cross group text $RANDOM$RANDOM"
run "xgroup-send-$A1" 0 cli "$A1" send --group "$XG" "$xtext"
xseq=$(jfield "$tmp/out" seq)
same "xgroup-entry-on-shard1-only" "$(q 1 "SELECT count(*) FROM messages WHERE gid = $XG AND $(body_has "$xtext")") $(q 0 "SELECT count(*) FROM messages WHERE $(body_has "$xtext")")" "1 0"
recv_once "xgroup-$A0" "$A0" "$xtext"
recv_once "xgroup-$B0" "$B0" "$xtext"
# the ack of a shard 0 device moved its cursor and its watermark on shard 1
a0devs=$(q 0 "SELECT string_agg(id::text, ',') FROM devices WHERE user_id = (SELECT id FROM users WHERE name = '$A0')")
same "xgroup-$A0-cursor-on-shard1" "$(q 1 "SELECT count(*) FROM gcursor WHERE gid = $XG AND device_id IN (${a0devs:-0}) AND seq >= ${xseq:-1}")" 1
same "xgroup-cursors-not-on-shard0" "$(q 0 "SELECT count(*) FROM gcursor WHERE gid = $XG")" 0
run "xgroup-receipts-$A1" 0 cli "$A1" group receipts "$XG" "${xseq:-1}"
same "xgroup-receipts-delivered" "$(jfield "$tmp/out" delivered)" 2
# the groups of a shard 0 user on both shards, by id
run "xgroup-list-$A0" 0 cli "$A0" group list
same "xgroup-list-$A0" "$(python3 -c 'import json, sys; print(" ".join(str(g["group"]) for g in json.load(open(sys.argv[1]))["groups"]))' "$tmp/out" 2>&1)" "${GID[$A0]} $XG"
# a new device of a shard 0 member starts at the group's end on shard 1:
# what came before is not sent to it
run "xgroup-$A0-second-device" 0 cli "$A0" --device second recv --wait 1
same "xgroup-$A0-second-device-no-history" "$(count_msgs "$tmp/out" "$xtext")" 0
same "xgroup-$A0-second-cursor-on-shard1" "$(q 1 "SELECT count(*) FROM gcursor WHERE gid = $XG AND seq >= ${xseq:-1} AND device_id = (SELECT max(device_id) FROM gcursor WHERE gid = $XG AND device_id >> 48 = ${BUCKET[$A0]})")" 1
# read across: the watermark on shard 1, the read sync to the other device
# (through the outbox to shard 0), UnreadGet through shard 0
run "xgroup-read-$A0" 0 cli "$A0" group read "$XG" "${xseq:-1}"
run "xgroup-read-sync-$A0-second" 0 cli "$A0" --device second recv --wait 2
same "xgroup-read-sync-$A0-second" "$(python3 -c '
import json, sys
print(sum(1 for l in open(sys.argv[1]) if l.strip() and (lambda d: d.get("type") == "read_sync" and d.get("conv") == sys.argv[2] and d.get("seq") == int(sys.argv[3]))(json.loads(l))))' "$tmp/out" "g:$XG" "${xseq:-1}" 2>&1)" 1
until_q "xgroup-read-on-shard1" 1 "SELECT read_seq FROM greads WHERE gid = $XG AND uid = (SELECT uid FROM members WHERE gid = $XG AND name = '$A0')" "${xseq:-1}"
run "xgroup-unread-$A0" 0 "$PY" "$here/ws_client.py" unread "$hport" "$A0" "$PARLEY_PASSWORD" "g:$XG"
same "xgroup-unread-$A0" "$(cut -d' ' -f1-2 "$tmp/out")" "${xseq:-1} ${xseq:-1}"
same "xgroup-no-reads-mirror" "$(q 0 "SELECT count(*) FROM reads WHERE conv LIKE 'g:%'")" 0
# a shard 1 user added to A0's shard 0 group sends there; removed, it may not
run "xgroup-add-$B1" 0 cli "$A0" group add "${GID[$A0]}" "$B1"
same "xgroup-$B1-member-on-shard0" "$(q 0 "SELECT name FROM members WHERE gid = ${GID[$A0]} AND role > 0 AND uid >> 48 = ${BUCKET[$B1]}")" "$B1"
ytext="into a shard 0 group from shard 1 $RANDOM$RANDOM"
run "xgroup-send-$B1" 0 cli "$B1" send --group "${GID[$A0]}" "$ytext"
recv_once "xgroup-$A1-from-$B1" "$A1" "$ytext"
recv_once "xgroup-$A0-from-$B1" "$A0" "$ytext"
run "xgroup-members-${GID[$A0]}" 0 cli "$B1" group members "${GID[$A0]}"
same "xgroup-members-listed" "$(python3 -c 'import json, sys; print(",".join(m["user"] for m in json.load(open(sys.argv[1]))["members"]))' "$tmp/out" 2>&1)" \
  "$(printf '%s\n' "$A0" "$A1" "$B1" | LC_ALL=C sort | paste -sd,)"
run "xgroup-remove-$B1" 0 cli "$A0" group remove "${GID[$A0]}" "$B1"
run "xgroup-send-removed-$B1" 5 cli "$B1" send --group "${GID[$A0]}" "after removal"
same "xgroup-removed-stored-nothing" "$(q 0 "SELECT count(*) FROM messages WHERE $(body_has "after removal")")$(q 1 "SELECT count(*) FROM messages WHERE $(body_has "after removal")")" 00
# a name that does not exist is still an unknown peer
run "xgroup-add-ghost" 5 cli "$A0" group add "${GID[$A0]}" "$GHOST"
same "xgroup-add-ghost-unknown-peer" "$(grep -c "unknown peer" "$tmp/err")" 1
for s in 0 1; do
  same "groups-on-shard$s" "$(q $s "SELECT count(*) FROM groups")" $((s + 1))
done

# ==== 5. a shard 1 user's state on shard 1 only ==============================
b=${BUCKET[$B0]}
run "second-device-$B0" 0 cli "$B0" --device other devices
same "second-device-$B0-ids" "$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))["devices"]
print(",".join(sorted(x["name"] for x in d)), all(x["id"] >> 48 == int(sys.argv[2]) for x in d))' "$tmp/out" "$b" 2>&1)" "default,other True"
same "devices-$B0-on-shard1" \
  "$(q 1 "SELECT string_agg(name, ',' ORDER BY name) || ' ' || bool_and(id >> 48 = $b) || ' ' || count(token_hash) FROM devices WHERE user_id = ${UID_OF[$B0]}")" "default,other true 2"
same "devices-$B0-not-on-shard0" "$(q 0 "SELECT count(*) FROM devices WHERE user_id = ${UID_OF[$B0]} OR id >> 48 = $b")" 0

run "settings-$B0" 0 cli "$B0" settings --read-receipts off --last-seen nobody
same "settings-$B0-says" "$(jfield "$tmp/out" read_receipts) $(jfield "$tmp/out" last_seen)" "off nobody"
same "settings-$B0-on-shard1" "$(q 1 "SELECT string_agg(name || '=' || read_receipts, ',' ORDER BY name) FROM users")" "$B0=0,$B1=1"
same "settings-not-on-shard0" "$(q 0 "SELECT count(*) FROM users WHERE read_receipts <> 1 OR id = ${UID_OF[$B0]}")" 0

run "contacts-add-$B0-$B1" 0 cli "$B0" contacts add "$B1"
same "contacts-$B0-says" "$(cat "$tmp/out")" "{\"contacts\":[\"$B1\"]}"
run "contacts-add-$A0-$A1" 0 cli "$A0" contacts add "$A1"
same "contacts-on-shard1" "$(q 1 "SELECT string_agg(uid || '>' || contact_uid, ',') FROM contacts")" "${UID_OF[$B0]}>${UID_OF[$B1]}"
same "contacts-on-shard0" "$(q 0 "SELECT string_agg(uid || '>' || contact_uid, ',' ORDER BY contact_uid) FROM contacts")" \
  "${UID_OF[$A0]}>${UID_OF[$A1]},${UID_OF[$A0]}>${UID_OF[$B1]}" # (the second from 4)

ptok=push-token-$RANDOM$RANDOM
run "push-register-$B0" 0 cli "$B0" push register webhook "$ptok"
same "push-token-$B0-on-shard1" \
  "$(q 1 "SELECT count(*) FROM push_tokens WHERE token = '$ptok' AND user_id = ${UID_OF[$B0]} AND user_name = '$B0' AND device_id >> 48 = $b")" 1
same "push-token-$B0-not-on-shard0" "$(q 0 "SELECT count(*) FROM push_tokens")" 0

caption="a picture $RANDOM$RANDOM"
run "send-image-$B0-$B1" 0 cli "$B0" send --image "$tmp/pic.png" "$B1" "$caption"
mid=$(jfield "$tmp/out" media id)
[[ $mid =~ ^[0-9a-zA-Z_-]+$ ]] || mid=none
same "media-$B0-on-shard1" "$(q 1 "SELECT count(*) FROM media WHERE id = '$mid' AND owner = ${UID_OF[$B0]}")" 1
same "media-not-on-shard0" "$(q 0 "SELECT count(*) FROM media")" 0
# the id, and the keys of its bytes and thumbnail, begin with the owner's bucket;
# the bytes are on the owner's shard (beside the row that decides when they go)
hexb=$(printf '%04x' "${BUCKET[$B0]}")
same "media-id-carries-bucket" "${mid:0:4}" "$hexb"
same "blobs-$B0-on-shard1" "$(q 1 "SELECT count(*) FROM media m JOIN blobs b ON b.key IN (m.blob, m.thumb)
  WHERE m.id = '$mid' AND b.key LIKE '$hexb%'")" 2
same "blobs-not-on-shard0" "$(q 0 "SELECT count(*) FROM blobs")" 0
recv_once "image-$B0-$B1" "$B1" "$caption"
same "image-$B0-$B1-media-id" "$(grep -c "\"media\":{\"id\":\"$mid\"" "$tmp/recv.image-$B0-$B1" || true)" 1
run "fetch-image-$B1" 0 cli "$B1" fetch "$mid" "$tmp/fetched.png"
same "fetched-is-png" "$(head -c 8 "$tmp/fetched.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" 89504e470d0a1a0a

# attachments across shards: the upload, its grants and its bytes stay on
# the uploader's shard; the message is copied with its attachment; whoever
# may see the upload fetches it through the node's own shard, wherever it lives
png_magic() { head -c 8 "$1" 2>/dev/null | od -An -tx1 | tr -d ' \n'; }
xcap="across $RANDOM$RANDOM"
xconv=$(conv "$A1" "$B0")
run "ximage-send-$B0-$A1" 0 cli "$B0" send --image "$tmp/pic.png" "$A1" "$xcap"
xmid=$(jfield "$tmp/out" media id)
[[ $xmid =~ ^[0-9a-f]+$ ]] || xmid=none
same "ximage-upload-on-shard1-only" "$(q 1 "SELECT count(*) FROM media WHERE id = '$xmid'") $(q 0 "SELECT count(*) FROM media")" "1 0"
same "ximage-grant-on-shard1-only" \
  "$(q 1 "SELECT string_agg(conv, ',') FROM media_grants WHERE media = '$xmid'") $(q 0 "SELECT count(*) FROM media_grants")" "$xconv 0"
same "ximage-committed-on-shard0" "$(q 0 "SELECT count(*) FROM messages WHERE media_id = '$xmid' AND conv = '$xconv' AND media IS NOT NULL")" 1
recv_once "ximage-$B0-$A1" "$A1" "$xcap"
same "ximage-$A1-sees-media-id" "$(grep -c "\"media\":{\"id\":\"$xmid\"" "$tmp/recv.ximage-$B0-$A1" || true)" 1
run "ximage-fetch-$A1" 0 cli "$A1" fetch "$xmid" "$tmp/x1.png"
same "ximage-fetched-by-$A1-is-png" "$(png_magic "$tmp/x1.png")" 89504e470d0a1a0a
run "ximage-thumb-$A1" 0 cli "$A1" fetch --thumb "$xmid" "$tmp/x1t.jpg"
# the sender's other device gets T2's copy, attachment and all
run "ximage-$B0-other-recv" 0 cli "$B0" --device other recv --wait 2
same "ximage-$B0-other-gets-copy-with-media" "$(grep "$xcap" "$tmp/out" | grep -c "\"media\":{\"id\":\"$xmid\"" || true)" 1
# no grant, no fetch: on the upload's shard or off it
run "ximage-fetch-$B1-refused" 5 cli "$B1" fetch "$xmid" "$tmp/xb1.png"
same "ximage-fetch-$B1-refused-403" "$(grep -c 403 "$tmp/err")" 1
run "ximage-fetch-$A0-refused" 5 cli "$A0" fetch "$xmid" "$tmp/xa0.png"
same "ximage-fetch-$A0-refused-403" "$(grep -c 403 "$tmp/err")" 1
# a forward: A1 (shard 0) may attach it, and its grant goes to shard 1
# before the send commits; B1, who may not see it, cannot attach it
run "ximage-fwd-$B1-refused" 5 "$PY" "$here/ws_client.py" fwd "$hport" "$B1" "$PARLEY_PASSWORD" "$A0" "$xmid" "no"
same "ximage-fwd-$B1-refused-says" "$(jfield "$tmp/out" error)" ERR_UNKNOWN_MEDIA
fconv=$(conv "$A0" "$A1")
run "ximage-fwd-$A1-$A0" 0 "$PY" "$here/ws_client.py" fwd "$hport" "$A1" "$PARLEY_PASSWORD" "$A0" "$xmid" "fwd $xcap"
same "ximage-fwd-grants-on-shard1" \
  "$(q 1 "SELECT string_agg(conv, ',' ORDER BY conv COLLATE \"C\") FROM media_grants WHERE media = '$xmid'") $(q 0 "SELECT count(*) FROM media_grants")" \
  "$(printf '%s\n' "$xconv" "$fconv" | LC_ALL=C sort | paste -sd,) 0"
run "ximage-fwd-$A0-recv" 0 cli "$A0" recv --wait 2
same "ximage-fwd-$A0-sees-media-id" "$(grep "fwd $xcap" "$tmp/out" | grep -c "\"media\":{\"id\":\"$xmid\"" || true)" 1
run "ximage-fetch-$A0-after-fwd" 0 cli "$A0" fetch "$xmid" "$tmp/xa0.png"
same "ximage-fetched-by-$A0-is-png" "$(png_magic "$tmp/xa0.png")" 89504e470d0a1a0a
# a forward into A1's shard 0 group with A0: its grant (g:N) goes to shard 1,
# and a member's download is allowed by the role read on the group's shard
gconv="g:${GID[$A0]}"
run "ximage-fwd-$A1-group" 0 "$PY" "$here/ws_client.py" fwd "$hport" "$A1" "$PARLEY_PASSWORD" "group:${GID[$A0]}" "$xmid" "gfwd $xcap"
same "ximage-fwd-group-grant-on-shard1" "$(q 1 "SELECT count(*) FROM media_grants WHERE media = '$xmid' AND conv = '$gconv'") $(q 0 "SELECT count(*) FROM media_grants")" "1 0"
run "ximage-fwd-group-$A0-recv" 0 cli "$A0" recv --wait 2
same "ximage-fwd-group-$A0-sees-media-id" "$(grep "gfwd $xcap" "$tmp/out" | grep -c "\"media\":{\"id\":\"$xmid\"" || true)" 1
q 1 "DELETE FROM media_grants WHERE media = '$xmid' AND conv = '$fconv'" >/dev/null # only the group's grant lets A0 in now
run "ximage-fetch-$A0-as-group-member" 0 cli "$A0" fetch "$xmid" "$tmp/xa0g.png"
same "ximage-fetched-by-$A0-as-member-is-png" "$(png_magic "$tmp/xa0g.png")" 89504e470d0a1a0a
# the other way: shard 0's upload to a shard 1 user, committed on shard 0
ycap="across back $RANDOM$RANDOM"
run "ximage-send-$A0-$B1" 0 cli "$A0" send --image "$tmp/pic.png" "$B1" "$ycap"
ymid=$(jfield "$tmp/out" media id)
[[ $ymid =~ ^[0-9a-f]+$ ]] || ymid=none
same "ximage2-upload-and-grant-on-shard0" \
  "$(q 0 "SELECT count(*) FROM media_grants WHERE media = '$ymid' AND conv = '$(conv "$A0" "$B1")'") $(q 1 "SELECT count(*) FROM media WHERE id = '$ymid'")" "1 0"
same "ximage2-copy-on-shard1" "$(q 1 "SELECT count(*) FROM messages WHERE media_id = '$ymid' AND media IS NOT NULL")" 1
recv_once "ximage2-$A0-$B1" "$B1" "$ycap"
run "ximage2-fetch-$B1" 0 cli "$B1" fetch "$ymid" "$tmp/y1.png"
same "ximage2-fetched-by-$B1-is-png" "$(png_magic "$tmp/y1.png")" 89504e470d0a1a0a
same "ximage-outbox-empty" "$(q 0 "SELECT count(*) FROM outbox")$(q 1 "SELECT count(*) FROM outbox")" 00

# ==== 6. Resume with a saved token, on both shards ===========================
# ws_resume_ok NAME USER TO: USER's saved token resumes; the session sends TO a text TO receives once
ws_resume_ok() {
  local name=$1 u=$2 to=$3 text
  text="resumed $u to $to $RANDOM$RANDOM"
  run "$name" 0 "$PY" "$here/ws_client.py" resume "$hport" "$tmp/token.$u" "$to" "$text"
  same "$name-as" "$(jfield "$tmp/out" user) $(jfield "$tmp/out" device) $(jfield "$tmp/out" device_id)" "$u ws ${DEVID[$u]}"
  recv_once "$name-$to" "$to" "$text"
}
declare -A DEVID
for u in "$B1" "$A1"; do
  h=${HOMESH[$u]}
  run "ws-login-$u" 0 "$PY" "$here/ws_client.py" login "$hport" "$u" "$PARLEY_PASSWORD" ws "$tmp/token.$u"
  DEVID[$u]=$(jfield "$tmp/out" device_id)
  [[ ${DEVID[$u]} =~ ^[0-9]+$ ]] || DEVID[$u]=0
  same "ws-device-$u-bucket" "$((DEVID[$u] >> 48))" "${BUCKET[$u]}"
  th=$(token_hash "$tmp/token.$u" 2>/dev/null || echo 00)
  same "token-$u-on-shard$h" "$(q "$h" "SELECT count(*) FROM devices WHERE token_hash = decode('$th', 'hex') AND id = ${DEVID[$u]} AND user_id = ${UID_OF[$u]}")" 1
  same "token-$u-not-on-shard$((1 - h))" "$(q $((1 - h)) "SELECT count(*) FROM devices WHERE token_hash = decode('$th', 'hex') OR id = ${DEVID[$u]}")" 0
done
ws_resume_ok "resume-$B1" "$B1" "$B0"
ws_resume_ok "resume-$A1" "$A1" "$A0"

# ==== 7. the shards in another order or number: refused; the right order serves
queued="queued before the restart $RANDOM$RANDOM"
run "send-$A1-$A0-before-restart" 0 cli "$A1" send "$A0" "$queued"
stop
refused "refuse-swapped-shards" --store "${SHARD_URI[1]}" --store-shard "${SHARD_URI[0]}"
refused "refuse-one-shard-of-two" --store "${SHARD_URI[0]}"
# a shard may be added at the end (a new database: tests/pg/move.sh), but not
# one that is already another shard
refused "refuse-shard1-again-as-shard2" "${RIGHT[@]}" --store-shard "${SHARD_URI[1]}"
# a config file's list is replaced by the command line's (the command line wins):
# with the two lists added together shard 0 would be shard 2 too, and refused
printf 'store-shard = %s\n' "${SHARD_URI[0]}" >"$tmp/shards.conf"
start --config "$tmp/shards.conf" "${RIGHT[@]}"
pass "restart-right-order"
same "shard0-users-after" "$(q 0 "SELECT string_agg(name, ',' ORDER BY name) FROM users")" "$A0,$A1"
same "shard1-users-after" "$(q 1 "SELECT string_agg(name, ',' ORDER BY name) FROM users")" "$B0,$B1"
recv_once "after-restart-$A0" "$A0" "$queued"
after="after the restart $RANDOM$RANDOM"
run "send-$A0-$A1-after-restart" 0 cli "$A0" send "$A1" "$after"
recv_once "after-restart-$A1" "$A1" "$after"
ws_resume_ok "resume-after-restart-$B1" "$B1" "$B0"

# ==== 7b. a second node on the same two shards ==================================
# Every node links its own store per shard: a message sent through one node is
# read through the other, on both shards (no bus: the reader's fresh connection
# fetches it from the store, as after a reconnect).
port2=$(python3 "$here/../integration/free_port.py")
hport2=$(python3 "$here/../integration/free_port.py")
# start_node2 NAME: a second node on the same shards, serving within 60 s
start_node2() {
  ${die_with_us[@]+"${die_with_us[@]}"} "$PARLEYD" "${RIGHT[@]}" --data "$tmp/data2" --listen "127.0.0.1:$port2" \
    --http "127.0.0.1:$hport2" --threads 2 --argon2-mem 8 --argon2-ops 1 --login-rate 0 --register-rate 0 \
    --argon2-per-address 16 2>>"$tmp/parleyd.node2.log" &
  pid2=$!
  for _ in $(seq 3000); do
    if listening "$port2"; then break; fi
    kill -0 "$pid2" 2>/dev/null || break
    sleep 0.02
  done
  if listening "$port2"; then pass "$1"; else fail "$1" "the second node did not listen on $port2"; fi
}
start_node2 node2-serves
via2="through node 2 $RANDOM$RANDOM"
run "node2-send-$A1-$A0" 0 env PARLEY_SERVER="127.0.0.1:$port2" "$PARLEY_CLI" --user "$A1" send "$A0" "$via2"
recv_once "node1-reads-$A0" "$A0" "$via2"
via1="through node 1 $RANDOM$RANDOM"
run "node1-send-$B0-$B1" 0 cli "$B0" send "$B1" "$via1"
run "node2-recv-$B1" 0 env PARLEY_SERVER="127.0.0.1:$port2" "$PARLEY_CLI" --user "$B1" recv --wait 2
same "node2-reads-$B1-once" "$(count_msgs "$tmp/out" "$via1")" 1
kill -TERM "$pid2" 2>/dev/null || true
wait "$pid2" 2>/dev/null || true
pid2=
stop

# ==== 7c. sign-up by invitation: the invites on shard 0, used from shard 1 =====
# A code made through the admin API lives on shard 0 only; a shard 1 name
# signing up with it takes its one use there, and a second name cannot.
start "${RIGHT[@]}" --registration invite
atok=$("$PARLEYD" admin-token create shards --data "$tmp/data" 2>/dev/null | tail -n 1)
curl -s -X POST -H "Authorization: Bearer $atok" -H 'Content-Type: application/json' \
  -d '{"uses": 1}' "http://127.0.0.1:$hport/admin/invites" >"$tmp/invite.json" || true
code=$(jfield "$tmp/invite.json" code)
same "invite-made" "$([[ -n $code && $code != null ]] && echo yes)" yes
same "invite-on-shard0" "$(q 0 "SELECT count(*) FROM invites WHERE code = '$code'")" 1
same "invite-not-on-shard1" "$(q 1 "SELECT count(*) FROM invites")" 0
run "invite-signup-$I0" 0 cli "$I0" register --invite "$code"
same "invite-$I0-on-shard1" "$(q 1 "SELECT count(*) FROM users WHERE name = '$I0'")" 1
same "invite-used-on-shard0" "$(q 0 "SELECT uses_left FROM invites WHERE code = '$code'")" 0
run "invite-used-up-$I1" 4 cli "$I1" register --invite "$code"
same "invite-$I1-not-made" "$(q 1 "SELECT count(*) FROM users WHERE name = '$I1'")" 0
# the operator's view of a shard 0 user lists its groups of both shards
curl -s -H "Authorization: Bearer $atok" "http://127.0.0.1:$hport/admin/users/$A0" >"$tmp/auser.json" || true
same "xview-$A0-groups-of-both-shards" "$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(" ".join(str(g["id"]) for g in d["groups"]) if "groups" in d else d)' "$tmp/auser.json" 2>&1)" "${GID[$A0]} $XG"
# the operator deletes the shard 1 user I0, a member of A0's shard 0 group:
# it leaves that group first (as by its own Leave: the members see it go)
run "xdelete-$I0-added" 0 cli "$A0" group add "${GID[$A0]}" "$I0"
same "xdelete-$I0-member-on-shard0" "$(q 0 "SELECT count(*) FROM members WHERE gid = ${GID[$A0]} AND name = '$I0' AND role > 0")" 1
same "xdelete-$I0" "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $atok" "http://127.0.0.1:$hport/admin/users/$I0")" 200
same "xdelete-$I0-gone-from-shard1" "$(q 1 "SELECT count(*) FROM users WHERE name = '$I0'")" 0
same "xdelete-$I0-not-a-member-on-shard0" "$(q 0 "SELECT count(*) FROM members WHERE gid = ${GID[$A0]} AND name = '$I0' AND role > 0")" 0
run "xdelete-members-listed" 0 cli "$A1" group members "${GID[$A0]}"
same "xdelete-members-listed-without-$I0" "$(grep -c "\"$I0\"" "$tmp/out")" 0
run "xdelete-$A1-sees-it-go" 0 cli "$A1" recv --wait 1
same "xdelete-$A1-sees-it-go" "$(python3 -c '
import json, sys
print(sum(1 for l in open(sys.argv[1]) if l.strip() and (lambda d: d.get("type") == "group_event" and d.get("user") == sys.argv[2])(json.loads(l))))' "$tmp/out" "$I0" 2>&1)" 2
stop

# ==== 9. across shards through two nodes at once; a node killed between T1 and T2
start "${RIGHT[@]}" --sweep-interval 1
start_node2 x-node2-serves
N=12
declare -A PARTNER=([$A0]=$B0 [$B0]=$A0 [$A1]=$B1 [$B1]=$A1)
# each user sends N messages to its partner, one after another, alternating the nodes
for u in "${USERS[@]}"; do
  (
    for ((i = 1; i <= N; i++)); do
      srv=127.0.0.1:$port
      ((i % 2)) || srv=127.0.0.1:$port2
      PARLEY_SERVER=$srv "$PARLEY_CLI" --user "$u" send "${PARTNER[$u]}" "x9 $u $i" >>"$tmp/x9.sent.$u" 2>&1 || echo "FAILED $i" >>"$tmp/x9.sent.$u"
    done
  ) &
done
wait_senders() { local j; for j in $(jobs -p); do [[ $j == "$pid" || $j == "$pid2" ]] || wait "$j" || true; done; }
wait_senders
for u in "${USERS[@]}"; do
  if [[ $(grep -c '"seq"' "$tmp/x9.sent.$u") == "$N" ]]; then pass "x9-sent-$u"; else fail "x9-sent-$u" "$(cat "$tmp/x9.sent.$u")"; fi
done
# recv_all USER DEVICE FILE WANT: recv (acking) until FILE has WANT x9 messages, 60 s at most
recv_all() { recv_until "$3" "$4" '"text":"x9 ' cli "$1" --device "$2" recv --wait 1; }
# x9_check NAME FILE CONV SENDERS...: each SENDER's N texts exactly once, seqs rising in arrival order
x9_check() {
  local name=$1 f=$2 c=$3
  shift 3
  same "$name" "$(python3 - "$f" "$c" "$N" "$@" <<'EOF2' 2>&1
import json, sys
f, conv, n, senders = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
got, seqs = {}, []
for line in open(f):
    if not line.strip():
        continue
    d = json.loads(line)
    if d.get("type") != "message" or not d.get("text", "").startswith("x9 "):
        continue
    if d["conv"] != conv:
        print("wrong conv", d["conv"]); sys.exit()
    got[d["text"]] = got.get(d["text"], 0) + 1
    seqs.append(int(d["seq"]))
want = {f"x9 {s} {i}" for s in senders for i in range(1, n + 1)}
missing, twice, extra = want - set(got), [t for t, k in got.items() if k > 1], set(got) - want
if missing or twice or extra:
    print("missing", sorted(missing), "twice", twice, "extra", sorted(extra))
elif seqs != sorted(seqs) or len(set(seqs)) != len(seqs):
    print("out of order", seqs)
else:
    print("ok")
EOF2
)" ok
}
for u in "${USERS[@]}"; do
  p=${PARTNER[$u]}
  recv_all "$u" default "$tmp/x9.recv.$u" "$N"
  x9_check "x9-$u-gets-$p-once-in-order" "$tmp/x9.recv.$u" "$(conv "$u" "$p")" "$p"
done
# B0's second device: both sides of its conversation with A0, every seq once, gap-free
recv_all "$B0" other "$tmp/x9.recv.other" $((2 * N))
x9_check "x9-$B0-other-device-both-sides" "$tmp/x9.recv.other" "$(conv "$A0" "$B0")" "$A0" "$B0"
same "x9-$B0-other-device-gap-free" "$(python3 -c '
import json, sys
s = [int(d["seq"]) for d in map(json.loads, filter(str.strip, open(sys.argv[1]))) if d.get("type") == "message" and d["text"].startswith("x9 ")]
print("ok" if s and s == list(range(s[0], s[0] + len(s))) else s)' "$tmp/x9.recv.other" 2>&1)" ok
same "x9-outbox-empty" "$(q 0 "SELECT count(*) FROM outbox")" 0
# the group of both shards (XG, on shard 1: B0 with A0 and A1 of shard 0),
# its three members sending at once through both nodes: each member's
# device gets every entry once, in seq order, the group's seqs gap-free
GSENDERS=("$B0" "$A0" "$A1")
for u in "${GSENDERS[@]}"; do
  (
    for ((i = 1; i <= N; i++)); do
      srv=127.0.0.1:$port
      ((i % 2)) || srv=127.0.0.1:$port2
      PARLEY_SERVER=$srv "$PARLEY_CLI" --user "$u" send --group "$XG" "x9 g-$u $i" >>"$tmp/x9g.sent.$u" 2>&1 || echo "FAILED $i" >>"$tmp/x9g.sent.$u"
    done
  ) &
done
wait_senders
for u in "${GSENDERS[@]}"; do
  if [[ $(grep -c '"seq"' "$tmp/x9g.sent.$u") == "$N" ]]; then pass "x9g-sent-$u"; else fail "x9g-sent-$u" "$(cat "$tmp/x9g.sent.$u")"; fi
done
for u in "${GSENDERS[@]}"; do
  recv_all "$u" default "$tmp/x9g.recv.$u" $((3 * N))
  x9_check "x9g-$u-gets-all-once-in-order" "$tmp/x9g.recv.$u" "g:$XG" "g-$B0" "g-$A0" "g-$A1"
done
same "x9g-seqs-gap-free-on-shard1" "$(q 1 "SELECT count(*) = max(seq) - min(seq) + 1 AND count(*) = $((3 * N)) FROM messages WHERE gid = $XG AND position(convert_to('x9 g-', 'UTF8') in body) > 0")" t
same "x9g-none-on-shard0" "$(q 0 "SELECT count(*) FROM messages WHERE gid = $XG")" 0
# XG's history goes once every member device has it (pg_gtrim.c), its
# members' devices read on their shards: all but A0's "second" device (its
# cursor at xseq, where it started) take what they are owed; the sweep then
# deletes up to xseq and keeps the rest for "second"; once that one has
# them, the history is empty
for u in "${GSENDERS[@]}"; do
  for d in $(q "${HOMESH[$u]}" "SELECT d.name FROM devices d JOIN users u ON u.id = d.user_id WHERE u.name = '$u' AND d.token_hash IS NOT NULL AND d.name NOT IN ('default', 'second')"); do
    run "x9g-$u-$d-recv" 0 cli "$u" --device "$d" recv --wait 1
  done
done
until_q "x9g-trimmed-up-to-the-second-device" 1 "SELECT count(*) FROM messages WHERE gid = $XG AND seq <= ${xseq:-1}" 0
same "x9g-kept-for-the-second-device" "$(q 1 "SELECT count(*) FROM messages WHERE gid = $XG AND seq > ${xseq:-1}")" $((3 * N))
# (its queue holds x9's 1:1 messages too: only the group's entries are counted)
: >"$tmp/x9g.recv.second"
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  cli "$A0" --device second recv --wait 1 >>"$tmp/x9g.recv.second" 2>/dev/null || true
  (($(grep -c "\"conv\":\"g:$XG\".*\"text\":\"x9 g-" "$tmp/x9g.recv.second") >= 3 * N)) && break
done
grep "\"conv\":\"g:$XG\"" "$tmp/x9g.recv.second" >"$tmp/x9g.recv.second.g" || true
x9_check "x9g-second-device-gets-all-once" "$tmp/x9g.recv.second.g" "g:$XG" "g-$B0" "g-$A0" "g-$A1"
until_q "x9g-history-gone" 1 "SELECT count(*) FROM messages WHERE gid = $XG" 0

# node 1 killed between T1 and T2: T2 waits on a lock of shard 1's relay table
psql "${SHARD_URI[1]}" -qX -c "BEGIN" -c "LOCK TABLE relay IN ACCESS EXCLUSIVE MODE" -c "SELECT pg_sleep(120)" >/dev/null 2>&1 &
lockpid=$!
for _ in $(seq 200); do
  [[ $(q 1 "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'relay' AND l.mode = 'AccessExclusiveLock' AND l.granted") == 1 ]] && break
  sleep 0.05
done
ktext="killed between T1 and T2 $RANDOM$RANDOM"
kid=kill-$RANDOM$RANDOM
"$PARLEY_CLI" --user "$A0" send --id "$kid" "$B0" "$ktext" >"$tmp/k.out" 2>&1 &
ksend=$!
until_q "kill-t1-committed-t2-held" 0 "SELECT count(*) FROM outbox WHERE $(body_has "$ktext")" 1
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=
wait "$ksend" 2>/dev/null || true
same "kill-copy-not-made-yet" "$(q 1 "SELECT count(*) FROM messages WHERE $(body_has "$ktext")")" 0
# metric_until NAME HPORT METRIC VALUE: the node's /metrics shows it within 20 s
# (the store's counts are taken one scrape behind)
metric_until() {
  local v='' deadline=$((SECONDS + 20))
  while ((SECONDS < deadline)); do
    v=$(curl -s "http://127.0.0.1:$2/metrics" | awk -v m="$3" '$1 == m { print $2 }')
    [[ $v == "$4" ]] && break
    sleep 0.2
  done
  same "$1" "$v" "$4"
}
metric_until "kill-outbox-owed-on-metrics" "$hport2" parley_store_outbox 1
kill "$lockpid" 2>/dev/null || true
q 1 "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()" >/dev/null
wait "$lockpid" 2>/dev/null || true
# node 2's sweep copies it: B0 gets it once, on both devices
: >"$tmp/k.recv"
deadline=$((SECONDS + 30))
while ((SECONDS < deadline)); do
  env PARLEY_SERVER="127.0.0.1:$port2" "$PARLEY_CLI" --user "$B0" recv --wait 1 >>"$tmp/k.recv" 2>/dev/null || true
  [[ $(count_msgs "$tmp/k.recv" "$ktext") -ge 1 ]] && break
done
same "kill-swept-arrives-once" "$(count_msgs "$tmp/k.recv" "$ktext")" 1
run "kill-other-device" 0 env PARLEY_SERVER="127.0.0.1:$port2" "$PARLEY_CLI" --user "$B0" --device other recv --wait 1
same "kill-swept-other-device-once" "$(count_msgs "$tmp/out" "$ktext")" 1
kseq=$(q 0 "SELECT seq FROM dedup WHERE client_id = '$kid'")
run "kill-retry-same-id" 0 env PARLEY_SERVER="127.0.0.1:$port2" "$PARLEY_CLI" --user "$A0" send --id "$kid" "$B0" "$ktext"
same "kill-retry-same-seq" "$(jfield "$tmp/out" seq)" "$kseq"
run "kill-retry-not-again" 0 env PARLEY_SERVER="127.0.0.1:$port2" "$PARLEY_CLI" --user "$B0" recv --wait 1
same "kill-retry-not-shown-again" "$(count_msgs "$tmp/out" "$ktext")" 0
same "kill-outbox-empty" "$(q 0 "SELECT count(*) FROM outbox")" 0
metric_until "kill-outbox-none-on-metrics" "$hport2" parley_store_outbox 0
same "kill-swept-by-node2" "$(($(grep -c 'the sweep copied' "$tmp/parleyd.node2.log") >= 1))" 1
swept=$(curl -s "http://127.0.0.1:$hport2/metrics" | awk '$1 == "parley_store_relay_swept_total" { print $2 }')
same "kill-swept-on-node2-metrics" "$((${swept:-0} >= 1))" 1

# node 2 killed after T2 committed, before the outbox row went: the copy is
# made again by node 1's sweep, and the relay guard makes it add nothing.
# T2 waits on the relay table's lock on shard 1 until a SHARE lock on the
# outbox on shard 0 (which lets the copier read its rows FOR UPDATE but not
# delete them) is held.
start "${RIGHT[@]}"
psql "${SHARD_URI[1]}" -qX -c "BEGIN" -c "LOCK TABLE relay IN ACCESS EXCLUSIVE MODE" -c "SELECT pg_sleep(120)" >/dev/null 2>&1 &
lockpid=$!
# held NAME SHARD TABLE MODE: the lock is granted within 10 s
held() {
  local i
  for ((i = 0; i < 200; i++)); do
    [[ $(q "$2" "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = '$3' AND l.mode = '$4' AND l.granted") == 1 ]] && return 0
    sleep 0.05
  done
  fail "$1" "no $4 on $3 (shard $2) within 10 s"
}
held "kill2-relay-locked" 1 relay AccessExclusiveLock
k2text="killed after T2 $RANDOM$RANDOM"
k2id=kill2-$RANDOM$RANDOM
env PARLEY_SERVER="127.0.0.1:$port2" "$PARLEY_CLI" --user "$A0" send --id "$k2id" "$B0" "$k2text" >"$tmp/k2.out" 2>&1 &
ksend=$!
until_q "kill2-t1-committed" 0 "SELECT count(*) FROM outbox WHERE $(body_has "$k2text")" 1
psql "${SHARD_URI[0]}" -qX -c "BEGIN" -c "LOCK TABLE outbox IN SHARE MODE" -c "SELECT pg_sleep(120)" >/dev/null 2>&1 &
sharepid=$!
held "kill2-outbox-share-locked" 0 outbox ShareLock
kill "$lockpid" 2>/dev/null || true
q 1 "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()" >/dev/null
wait "$lockpid" 2>/dev/null || true
# the copy committed on shard 1 (by the first try, or node 2's sweep after a timeout)
until_q "kill2-t2-committed" 1 "SELECT count(*) FROM messages WHERE $(body_has "$k2text")" 1
same "kill2-outbox-row-stays" "$(q 0 "SELECT count(*) FROM outbox WHERE $(body_has "$k2text")")" 1
# node 2's delete waits on the SHARE lock; killed, its backend goes (the
# server checks the client every second while a statement runs) before the
# lock does, so that the delete (and the COMMIT piped behind it) never runs
delpid=$(q 0 "SELECT pid FROM pg_stat_activity WHERE query LIKE 'DELETE FROM outbox%' AND wait_event_type = 'Lock' LIMIT 1")
kill -9 "$pid2" 2>/dev/null || true
wait "$pid2" 2>/dev/null || true
pid2=
same "kill2-delete-waits" "$([[ $delpid =~ ^[0-9]+$ ]] && echo yes)" yes
until_q "kill2-delete-never-ran" 0 "SELECT count(*) FROM pg_stat_activity WHERE pid = ${delpid:-0}" 0
wait "$ksend" 2>/dev/null || true
kill "$sharepid" 2>/dev/null || true
q 0 "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()" >/dev/null
wait "$sharepid" 2>/dev/null || true
# node 1's sweep copies it again (the guard: nothing added) and deletes the row
until_q "kill2-outbox-emptied-by-node1" 0 "SELECT count(*) FROM outbox" 0
same "kill2-swept-by-node1" "$(($(grep -c 'the sweep copied' "$log") >= 1))" 1
same "kill2-one-copy-on-shard1" \
  "$(q 1 "SELECT count(*) || ' ' || sum(refs) || ' ' || (SELECT count(*) FROM queue WHERE mid IN (SELECT mid FROM messages WHERE $(body_has "$k2text"))) FROM messages WHERE $(body_has "$k2text")")" "1 2 2"
run "kill2-recv" 0 cli "$B0" recv --wait 1
same "kill2-arrives-once" "$(count_msgs "$tmp/out" "$k2text")" 1
run "kill2-other-device" 0 cli "$B0" --device other recv --wait 1
same "kill2-other-device-once" "$(count_msgs "$tmp/out" "$k2text")" 1
stop
kill -TERM "$pid2" 2>/dev/null || true
wait "$pid2" 2>/dev/null || true
pid2=

# ==== 10. the queue limits across shards =====================================
# Q0 and R0 (shard 0) send to Q1 (shard 1): their conversations are on shard
# 0, and what --max-queue 3 and a sender's share of it (67%: 2) count is
# Q1's queue on shard 1, on the batch's path (a plain send) and on the
# per-request path (a reaction) alike
start "${RIGHT[@]}" --max-queue 3 --max-queue-share 67
for u in "$Q0" "$R0" "$Q1"; do run "qlimit-register-$u" 0 cli "$u" register; done
q1queue() { q 1 "SELECT count(*) FROM queue WHERE device_id IN (SELECT id FROM devices WHERE user_id = (SELECT id FROM users WHERE name = '$Q1'))"; }
for i in 1 2; do run "qlimit-$Q0-send-$i" 0 cli "$Q0" send "$Q1" "q $i"; done
qseq=$(jfield "$tmp/out" seq)
# Q0 holds its share: refused
run "qlimit-share-send-refused" 5 cli "$Q0" send "$Q1" "q 3"
same "qlimit-share-send-refused-says" "$(grep -c "queue full" "$tmp/err")" 1
run "qlimit-share-reaction-refused" 1 "$PY" "$here/ws_client.py" act "$hport" "$Q0" "$PARLEY_PASSWORD" "$Q1" ACT_REACTION "${qseq:-0}" "+1"
same "qlimit-share-reaction-refused-says" "$(grep -c ERR_QUEUE_FULL "$tmp/err")" 1
run "qlimit-$R0-send-1" 0 cli "$R0" send "$Q1" "r 1"
rseq=$(jfield "$tmp/out" seq)
# the queue is full (R0 is within its share): refused
run "qlimit-full-send-refused" 5 cli "$R0" send "$Q1" "r 2"
same "qlimit-full-send-refused-says" "$(grep -c "queue full" "$tmp/err")" 1
run "qlimit-full-reaction-refused" 1 "$PY" "$here/ws_client.py" act "$hport" "$R0" "$PARLEY_PASSWORD" "$Q1" ACT_REACTION "${rseq:-0}" "+1"
same "qlimit-full-reaction-refused-says" "$(grep -c ERR_QUEUE_FULL "$tmp/err")" 1
same "qlimit-nothing-more-queued" "$(q1queue)" 3
run "qlimit-recv" 0 cli "$Q1" recv --wait 1
same "qlimit-the-three-arrive" \
  "$(count_msgs "$tmp/out" "q 1")$(count_msgs "$tmp/out" "q 2")$(count_msgs "$tmp/out" "r 1")$(count_msgs "$tmp/out" "q 3")$(count_msgs "$tmp/out" "r 2")" 11100
run "qlimit-reaction-after-recv" 0 "$PY" "$here/ws_client.py" act "$hport" "$R0" "$PARLEY_PASSWORD" "$Q1" ACT_REACTION "${rseq:-0}" "+1"
stop

# ==== 11. shard 1 away, and back ==============================================
# While shard 1's PostgreSQL is down, what needs only shard 0 goes on: a 1:1
# message between two shard 0 users and a message in A0's shard 0 group, and
# their fetches (which leave the shard 1 group XG for later). A send into XG
# gets a retryable error (ERR_INTERNAL), which the client retries; once the
# shard is back, it is stored once and each member gets it once.
start "${RIGHT[@]}"
pg2ctl() { # stop|start: shard 1's PostgreSQL, on its port
  local bin=${PG_BIN:-/usr/lib/postgresql/15/bin} as=()
  [[ $(id -u) != 0 ]] || as=(runuser -u postgres --)
  if [[ $1 == stop ]]; then
    "${as[@]}" "$bin/pg_ctl" -D "$tmp/pg2/cluster" -m fast -w -t 30 stop >/dev/null
  else
    "${as[@]}" "$bin/pg_ctl" -D "$tmp/pg2/cluster" -l "$tmp/pg2/server.log" -w -t 60 \
      -o "-p $pg2port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$tmp/pg2 -c max_connections=300 -c fsync=off -c full_page_writes=off" \
      start >/dev/null
  fi
}
internal_errors() { curl -s "http://127.0.0.1:$hport/metrics" | awk '$1 == "parley_errors_total{code=\"ERR_INTERNAL\"}" { print $2 + 0 }'; }
pg2ctl stop
atext="while shard 1 is away $RANDOM$RANDOM"
run "away-send-$A0-$A1" 0 cli "$A0" send "$A1" "$atext"
agtext="in a shard 0 group while shard 1 is away $RANDOM$RANDOM"
run "away-group-send-$A0" 0 cli "$A0" send --group "${GID[$A0]}" "$agtext"
run "away-recv-$A1" 0 cli "$A1" recv --wait 1
same "away-recv-$A1-both" "$(count_msgs "$tmp/out" "$atext")$(count_msgs "$tmp/out" "$agtext")" 11
e0=$(internal_errors)
xtext2="into the shard 1 group across the gap $RANDOM$RANDOM"
"$PARLEY_CLI" --user "$A1" send --group "$XG" "$xtext2" >"$tmp/gap.out" 2>&1 &
gsend=$!
deadline=$((SECONDS + 20))
while ((SECONDS < deadline)) && (($(internal_errors) <= ${e0:-0})); do sleep 0.2; done
same "away-xgroup-send-retryable" "$(($(internal_errors) > ${e0:-0}))" 1
same "away-xgroup-not-stored-yet" "$(q 0 "SELECT count(*) FROM messages WHERE $(body_has "$xtext2")")" 0
pg2ctl start
grc=0
wait "$gsend" || grc=$?
same "away-xgroup-send-acked-once-back" "$grc $([[ -n $(jfield "$tmp/gap.out" seq) ]] && echo acked)" "0 acked"
same "away-xgroup-stored-once" "$(q 1 "SELECT count(*) FROM messages WHERE gid = $XG AND $(body_has "$xtext2")")" 1
recv_once "away-xgroup-$A0" "$A0" "$xtext2"
recv_once "away-xgroup-$B0" "$B0" "$xtext2"
stop

# ---- 11b. a connection whose first fetch found shard 1 away gets what waited
# there once it is back, with no new message to hint it: a group message
# committed on shard 1 for A0's device while it was offline; shard 1 stops;
# the device connects (its fetch leaves XG for later) and stays connected,
# pinging; shard 1 starts. The idle check at its next ping (heartbeat 1 s
# here) fetches again and the message comes on that connection, once.
start "${RIGHT[@]}" --heartbeat-bot 1
xtext3="waiting on shard 1 for a connected device $RANDOM$RANDOM"
run "stranded-send" 0 cli "$A1" send --group "$XG" "$xtext3"
pg2ctl stop
: >"$tmp/stay.out"
"$PY" "$here/ws_client.py" stay "$hport" "$A0" "$PARLEY_PASSWORD" default "$xtext3" "$tmp/stay.out" 2>"$tmp/stay.err" &
stay=$!
for ((i = 0; i < 300; i++)); do
  grep -q '^ready$' "$tmp/stay.out" && break
  kill -0 "$stay" 2>/dev/null || break
  sleep 0.1
done
same "stranded-connected" "$(grep -c '^ready$' "$tmp/stay.out")" 1
pg2ctl start
src=0
wait "$stay" || src=$?
same "stranded-arrives-on-the-same-connection-once" "$src $(grep -cxF "$xtext3" "$tmp/stay.out")" "0 1"
stop

# ==== 8. a single-node database grows; it is not another store's shard 1 ====
start --store "$(uri1 "$dbs")"
run "single-node-register" 0 cli "$A0" register
stop
start --store "$(uri1 "$dbs")" --store-shard "$(uri2 "$dbf1")"
run "single-node-db-grows" 0 cli "$A0" recv --wait 0
stop
refused "refuse-single-node-db-as-shard1" --store "$(uri2 "$dbf2")" --store-shard "$(uri1 "$dbs")"

if [[ $failed -eq 0 ]]; then echo "all passed"; else echo "$failed failed"; fi
exit $((failed ? 1 : 0))
