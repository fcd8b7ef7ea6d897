#!/usr/bin/env bash
# The mover (docs/scaling.md 4 and 7, step 5): `parleyd move-buckets` moves
# one bucket from shard 0 to shard 1 of two PostgreSQL shards while clients
# send through two nodes, and nothing acked is lost, nothing arrives twice,
# order holds. The bucket's user M has:
#  - a conversation homed on shard 0 that stays there (with LO, a lower
#    bucket of shard 0) and becomes a conversation across shards;
#  - a conversation homed in its bucket that moves and stays across shards
#    (with HI, a higher bucket of shard 0);
#  - a conversation homed in its bucket, across shards before, that moves to
#    its other side's shard and is one shard's after (with FAR, shard 1);
#  - a group it created (the group's rows move with it), an upload sent to
#    LO, a contact, two devices, messages waiting in both devices' queues.
# While LO and FAR send to M, M sends to FAR and LO sends into the group,
# alternating the two nodes and retrying what the fence refuses, the
# mover runs. Checked after: every send acked once; each device receives
# every message once, each conversation in seq order, the moved ones
# gap-free; M's rows (user, devices, queues, contacts, upload, group,
# conversations) on shard 1 only once the grace is over; the map (epoch 1,
# the bucket on shard 1) on both shards and taken by both nodes; the fence
# refuses a session of an older map (kept up with --keep-fence), and comes
# down when the move is run again without it; a mover started while another
# holds the movers' lock exits 3 and changes nothing; a sign-up of a name of the bucket lands
# on shard 1; a node started after the move routes by the new map; the
# mover run again finds it done; bad usage exits 2. Then a third, new
# database is added as shard 2 (the nodes restarted with it); FAR's bucket
# moves there from shard 1 while M and FAR write to each other and LO
# writes to FAR (copies owed to shard 1 re-addressed to shard 2); user X's
# bucket moves from shard 1 to shard 0, the shard of its conversation with
# LO, while they write to each other (the copies owed to X made by the
# move); every message once and in order; Z's bucket moves to the shard of
# its conversation with LO while Z's device is connected, and a copy the
# move made reaches that device; a node given only the first two shards
# refuses to start.
# The first shard's database is on the ctest pg fixture, the second on a
# PostgreSQL of this test's own (pg_fixture.sh), stopped at exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=checks.sh
. "$here/checks.sh"
shard_env move
fp() { python3 "$here/../integration/free_port.py"; }
PORT=("$(fp)" "$(fp)") HPORT=("$(fp)" "$(fp)")
export PARLEY_PASSWORD=secret-pass
PID=("" "")
failed=0
tag=$$_$RANDOM
db0=p_move0_$tag db1=p_move1_$tag db2=p_move2_$tag
uri1() { echo "postgresql://postgres@127.0.0.1:$pg1port/$1"; }
uri2() { echo "postgresql://postgres@127.0.0.1:$pg2port/$1"; }

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local p j
  for p in "${PID[@]}"; do
    [[ -n $p ]] || continue
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  for j in $(jobs -p); do kill -9 "$j" 2>/dev/null || true; done
  if [[ $failed -ne 0 ]]; then
    for p in "$tmp"/node*.log "$tmp"/mover*.err; do
      [[ -f $p ]] || continue
      echo "--- $(basename "$p") (last 30 lines)" >&2
      tail -n 30 "$p" >&2
    done
  fi
  if [[ -n ${PL_KEEP:-} ]]; then # debugging: the databases and files stay
    echo "kept: $tmp, databases $db0 $db1" >&2
    return 0
  fi
  psql "$(uri1 postgres)" -qXc "DROP DATABASE IF EXISTS $db0 WITH (FORCE)" >/dev/null 2>&1 || true
  psql "$(uri1 postgres)" -qXc "DROP DATABASE IF EXISTS $db2 WITH (FORCE)" >/dev/null 2>&1 || true
  [[ -z $pg2port ]] || psql "$(uri2 postgres)" -qXc "DROP DATABASE IF EXISTS $db1 WITH (FORCE)" >/dev/null 2>&1 || true
  drop_tmp
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
jfield() { python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$1" "$2" 2>/dev/null || true; }

# node I: parleyd number I (0 or 1) on the shards, serving within 60 s
node() {
  local i=$1
  up "node$i" "$tmp/node$i.log" "${PORT[$i]}" "${HPORT[$i]}" "${SHARDS[@]}" --data "$tmp/data$i"
  PID[i]=$served
}
node_stop() {
  local i=$1
  [[ -n ${PID[$i]} ]] || return 0
  kill -TERM "${PID[$i]}" 2>/dev/null || true
  wait "${PID[$i]}" 2>/dev/null || true
  PID[i]=
}
# cli NODE USER ARGS...: the parley client through node NODE
cli() {
  local i=$1 u=$2
  shift 2
  PARLEY_SERVER=127.0.0.1:${PORT[$i]} PARLEY_HTTP=127.0.0.1:${HPORT[$i]} "$PARLEY_CLI" --user "$u" "$@"
}
conv() { if [[ $1 < $2 ]]; then echo "dm:$1:$2"; else echo "dm:$2:$1"; fi; }

# ---- names, by the hash (FNV-1a 64 mod 16384; shard = bucket * 2 / 16384) ----
read -r M BM LO HI FAR NEW X BF BX Y BY Z BZ <<<"$(python3 - <<'EOF'
def bucket(name):
    h = 14695981039346656037
    for b in name.encode():
        h = ((h ^ b) * 1099511628211) % (1 << 64)
    return h % 16384
m = next(f"mv{i}" for i in range(10**6) if 2000 <= bucket(f"mv{i}") <= 6000)
bm = bucket(m)
lo = next(f"lo{i}" for i in range(10**6) if bucket(f"lo{i}") < bm)
hi = next(f"hi{i}" for i in range(10**6) if bm < bucket(f"hi{i}") < 8192)
far = next(f"far{i}" for i in range(10**6) if bucket(f"far{i}") >= 8192)
x = next(f"x{i}" for i in range(10**6) if bucket(f"x{i}") >= 8192 and bucket(f"x{i}") != bucket(far))
y = next(f"y{i}" for i in range(10**6) if bucket(f"y{i}") >= 8192 and bucket(f"y{i}") not in (bucket(far), bucket(x)))
z = next(f"z{i}" for i in range(10**6) if bucket(f"z{i}") >= 8192 and bucket(f"z{i}") not in (bucket(far), bucket(x), bucket(y)))
new = next(f"nw{i}" for i in range(10**7) if bucket(f"nw{i}") == bm)
print(m, bm, lo, hi, far, new, x, bucket(far), bucket(x), y, bucket(y), z, bucket(z))
EOF
)"
echo "moving bucket $BM ($M, later $NEW) from shard 0 to shard 1; $LO and $HI stay on shard 0, $FAR is on shard 1"

# ---- the second PostgreSQL, the databases, two nodes ----------------------
if ! bash "$PL_PG_FIXTURE" start "$tmp/pg2" >"$tmp/pg2.out" 2>&1; then
  fail "pg2" "the second PostgreSQL did not start: $(cat "$tmp/pg2.out")"
  exit 1
fi
pg2port=$(cat "$tmp/pg2/port")
psql "$(uri1 postgres)" -qXv ON_ERROR_STOP=1 -c "CREATE DATABASE $db0" >/dev/null
psql "$(uri2 postgres)" -qXv ON_ERROR_STOP=1 -c "CREATE DATABASE $db1" >/dev/null
SHARD_URI=("$(uri1 "$db0")" "$(uri2 "$db1")")
SHARDS=(--store "${SHARD_URI[0]}" --store-shard "${SHARD_URI[1]}")
node 0
node 1

# ---- before the move ---------------------------------------------------------
for u in "$M" "$LO" "$HI" "$FAR" "$X" "$Y" "$Z"; do run "register-$u" 0 cli 0 "$u" register; done
run "register-$M-other" 0 cli 0 "$M" --device other recv --wait 0
same "before-$M-on-shard0" "$(q 0 "SELECT count(*) FROM users WHERE name = '$M' AND id >> 48 = $BM")" 1
run "contact-$M-$LO" 0 cli 0 "$M" contacts add "$LO"
run "group-create" 0 cli 0 "$M" group create moved "$LO" "$FAR"
G=$(jfield "$tmp/out" group)
same "group-on-shard0" "$(q 0 "SELECT count(*) FROM groups WHERE gid = ${G:-0} AND gid >> 48 = $BM")" 1
python3 -c "import sys; sys.path.insert(0, '$here/../integration'); from testimg import png; open(sys.argv[1], 'wb').write(png(24, 16))" "$tmp/pic.png"
run "image-$M-$LO" 0 cli 0 "$M" send --image "$tmp/pic.png" "$LO" "a picture"
MEDIA=$(python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["media"]["id"])' "$tmp/out" 2>/dev/null || true)
same "image-on-shard0" "$(q 0 "SELECT count(*) FROM media WHERE id = '$MEDIA'")" 1
# waiting in M's queues when the bucket moves
run "pre-$LO" 0 cli 0 "$LO" send "$M" "pre $LO"
run "pre-$HI" 0 cli 0 "$HI" send "$M" "pre $HI"
run "pre-$FAR" 0 cli 1 "$FAR" send "$M" "pre $FAR"
run "pre-$M-$FAR" 0 cli 0 "$M" send "$FAR" "pre $M"
run "pre-group" 0 cli 1 "$LO" send --group "${G:-0}" "pre g"

# ---- the move, while LO and FAR send to M, M to FAR, LO into the group --------
N=15
# sender NAME USER DEVICE TO-ARGS...: N messages "mv NAME i", alternating the
# nodes. A send the client gave up on (its sign-in refused while the
# shards are fenced) is sent again with the same id, as an app does: the
# server stores it once.
sender() {
  local name=$1 u=$2 d=$3 i try ok
  shift 3
  : >"$tmp/sent.$name"
  for ((i = 1; i <= N; i++)); do
    ok=0
    for ((try = 0; try < 50 && !ok; try++)); do
      if cli $(((i + try) % 2)) "$u" --device "$d" send --id "mv-$name-$i" "$@" "mv $name $i" \
        >>"$tmp/sent.$name" 2>>"$tmp/sent.$name.err"; then
        ok=1
      else
        sleep 0.2
      fi
    done
    ((ok)) || echo "FAILED $i" >>"$tmp/sent.$name"
  done
}
sender lo "$LO" default "$M" &
s1=$!
sender far "$FAR" default "$M" &
s2=$!
sender m "$M" default "$FAR" &
s3=$!
sender g "$LO" gsend --group "${G:-0}" &
s4=$!
# the mover starts once every sender has had some acked
for ((i = 0; i < 600; i++)); do
  n=0
  for s in lo far m g; do (($(grep -c '"seq"' "$tmp/sent.$s" 2>/dev/null || true) >= 3)) && n=$((n + 1)); done
  ((n == 4)) && break
  sleep 0.05
done
same "senders-started" "$n" 4
rc=0
"$PARLEYD" move-buckets "$BM" --to 1 "${SHARDS[@]}" --grace 2 --keep-fence >"$tmp/mover.out" 2>"$tmp/mover.err" || rc=$?
same "mover-exit" "$rc" 0
for s in $s1 $s2 $s3 $s4; do wait "$s" || true; done
for s in lo far m g; do
  same "sent-$s-all-acked" "$(grep -c '"seq"' "$tmp/sent.$s")" "$N"
done
same "mover-refusals-seen" "$(grep -c 'refused a write for an older bucket map' "$tmp"/node*.log | awk -F: '{s += $2} END {print (s > 0)}')" 1
# each refusal told once, at info: not again as a failed batch (an error)
same "mover-refusals-no-errors" "$(cat "$tmp"/node*.log | grep -c 'transaction of a batch failed')" 0
# ... and counted (/metrics: the senders' batches the fence refused)
fenced_total() { curl -sf "http://127.0.0.1:${HPORT[$1]}/metrics" | awk '$1 == "parley_store_fenced_total" { n = $2 } END { print n + 0 }'; }
same "mover-refusals-counted" "$(($(fenced_total 0) + $(fenced_total 1) > 0))" 1

# ---- where things are now ---------------------------------------------------
for k in 0 1; do
  same "map-shard$k" "$(q $k "SELECT shard || '|' || was || '|' || epoch FROM bucket_map WHERE bucket = $BM")" "1|0|1"
  same "epoch-shard$k" "$(q $k "SELECT epoch FROM map_epoch")" 1
done
for i in 0 1; do
  same "node$i-took-the-map" "$(grep -c 'bucket map epoch 1 taken' "$tmp/node$i.log" | awk '{print ($1 > 0)}')" 1
done
same "user-on-shard1" "$(q 1 "SELECT count(*) FROM users WHERE name = '$M'")" 1
same "user-gone-from-shard0" "$(q 0 "SELECT count(*) FROM users WHERE name = '$M'")" 0
same "devices-on-shard1" "$(q 1 "SELECT count(*) FROM devices WHERE user_id >> 48 = $BM")" 2
same "devices-gone-from-shard0" "$(q 0 "SELECT count(*) FROM devices WHERE user_id >> 48 = $BM")" 0
same "contact-on-shard1" "$(q 1 "SELECT count(*) FROM contacts WHERE uid >> 48 = $BM")" 1
same "group-on-shard1" "$(q 1 "SELECT count(*) FROM groups WHERE gid = ${G:-0}")|$(q 1 "SELECT count(*) FROM members WHERE gid = ${G:-0}")" "1|3"
same "group-gone-from-shard0" "$(q 0 "SELECT count(*) FROM groups WHERE gid = ${G:-0}")|$(q 0 "SELECT count(*) FROM messages WHERE gid = ${G:-0}")" "0|0"
same "media-on-shard1" "$(q 1 "SELECT count(*) FROM media WHERE id = '$MEDIA'")|$(q 0 "SELECT count(*) FROM media WHERE id = '$MEDIA'")" "1|0"
c_hi=$(conv "$M" "$HI") c_far=$(conv "$M" "$FAR") c_lo=$(conv "$M" "$LO")
same "conv-$HI-moved" "$(q 1 "SELECT count(*) FROM convs WHERE conv = '$c_hi'")|$(q 0 "SELECT count(*) FROM convs WHERE conv = '$c_hi'")" "1|0"
same "conv-$FAR-moved" "$(q 1 "SELECT last_seq FROM convs WHERE conv = '$c_far'")|$(q 0 "SELECT count(*) FROM convs WHERE conv = '$c_far'")" "$((2 + 2 * N))|0"
same "conv-$LO-stays" "$(q 0 "SELECT count(*) FROM convs WHERE conv = '$c_lo'")|$(q 1 "SELECT count(*) FROM convs WHERE conv = '$c_lo'")" "1|0"
same "queues-gone-from-shard0" "$(q 0 "SELECT count(*) FROM queue WHERE device_id >> 48 = $BM")" 0

# ---- what each device receives ------------------------------------------------
# recv_dev NODE USER DEVICE FILE WANT: recv (acking) until FILE has WANT messages, 60 s at most
recv_dev() { recv_until "$4" "$5" '"type":"message"' cli "$1" "$2" --device "$3" recv --wait 1; }
# ledger NAME FILE WANT-TEXTS...: each text once; per conversation, seqs rising
# (GAPFREE=conv: that conversation's seqs also without a hole)
ledger() {
  local name=$1 f=$2
  shift 2
  same "$name" "$(python3 - "$f" "${GAPFREE:-}" "$@" <<'EOF'
import json, sys
f, gapfree, want = sys.argv[1], sys.argv[2], sys.argv[3:]
got, seqs = {}, {}
for line in open(f):
    if not line.strip():
        continue
    d = json.loads(line)
    if d.get("type") != "message":
        continue
    got[d["text"]] = got.get(d["text"], 0) + 1
    seqs.setdefault(d["conv"], []).append(int(d["seq"]))
missing, twice = sorted(set(want) - set(got)), sorted(t for t, k in got.items() if k > 1)
bad = [c for c, s in seqs.items() if s != sorted(s) or len(set(s)) != len(s)]
holes = [c for c, s in seqs.items() if c == gapfree and s != list(range(s[0], s[0] + len(s)))]
print("ok" if not (missing or twice or bad or holes) else f"missing {missing} twice {twice} unordered {bad} holes {holes} {seqs}")
EOF
)" ok
}
texts() { # texts NAME: "mv NAME 1" .. "mv NAME N"
  local i
  for ((i = 1; i <= N; i++)); do echo "mv $1 $i"; done
}
mapfile -t want_m < <(echo "pre $LO"; echo "pre $HI"; echo "pre $FAR"; echo "pre g"; texts lo; texts far; texts g)
recv_dev 1 "$M" default "$tmp/recv.m" "${#want_m[@]}"
ledger "m-gets-each-once-in-order" "$tmp/recv.m" "${want_m[@]}"
# M's other device also gets what M sent to FAR (a copy for the sender's devices)
mapfile -t want_o < <(printf '%s\n' "${want_m[@]}"; echo "pre $M"; texts m)
recv_dev 0 "$M" other "$tmp/recv.o" "${#want_o[@]}"
GAPFREE=$c_far ledger "m-other-gets-each-once-gap-free" "$tmp/recv.o" "${want_o[@]}"
mapfile -t want_far < <(echo "pre $M"; echo "pre g"; texts m; texts g)
recv_dev 0 "$FAR" default "$tmp/recv.far" "${#want_far[@]}"
ledger "far-gets-each-once-in-order" "$tmp/recv.far" "${want_far[@]}"

# ---- after: through the new shard ---------------------------------------------
run "after-$M-$LO" 0 cli 0 "$M" send "$LO" "after to $LO"
run "after-$LO-recv" 0 cli 1 "$LO" recv --wait 2
same "after-$LO-gets-it" "$(grep -c '"text":"after to '"$LO"'"' "$tmp/out")" 1
run "after-group-send" 0 cli 1 "$FAR" send --group "${G:-0}" "after g"
run "after-$M-recv" 0 cli 0 "$M" recv --wait 2
same "after-$M-gets-group" "$(grep -c '"text":"after g"' "$tmp/out")" 1
run "after-group-list" 0 cli 1 "$LO" group list
same "after-group-listed" "$(python3 -c 'import json, sys; print(sum(str(g["group"]) == sys.argv[2] for g in json.load(open(sys.argv[1]))["groups"]))' "$tmp/out" "${G:-0}" 2>&1)" 1
run "after-contacts" 0 cli 1 "$M" contacts
same "after-contacts-kept" "$(grep -c "\"$LO\"" "$tmp/out")" 1
run "after-image-fetch" 0 cli 1 "$LO" fetch "$MEDIA" "$tmp/pic.got"
same "after-image-bytes" "$(cmp -s "$tmp/pic.got" "$tmp/pic.png" && echo same)" same
run "register-$NEW" 0 cli 1 "$NEW" register
same "new-user-on-shard1" "$(q 1 "SELECT count(*) FROM users WHERE name = '$NEW' AND id >> 48 = $BM")|$(q 0 "SELECT count(*) FROM users WHERE name = '$NEW'")" "1|0"

# the fence: a session that routes by an older map may not write on either shard
for k in 0 1; do
  same "fence-refuses-shard$k" "$(q $k "INSERT INTO contacts(uid, contact_uid) VALUES(1, 2)" | grep -c 'buckets moved')" 1
  same "fence-passes-epoch1-shard$k" "$(q $k "SET parley.epoch = 1; INSERT INTO contacts(uid, contact_uid) VALUES(1, 2); DELETE FROM contacts WHERE uid = 1")" ""
done

# a node started after the move reads the map at start
node_stop 1
: >"$tmp/node1.log"
node 1
run "restarted-node-send" 0 cli 1 "$M" send "$HI" "after to $HI"
run "restarted-node-recv" 0 cli 1 "$HI" recv --wait 2
same "restarted-node-delivers" "$(grep -c '"text":"after to '"$HI"'"' "$tmp/out")" 1
same "restarted-node-map-at-start" "$(grep -c 'bucket map epoch 1 taken' "$tmp/node1.log" | awk '{print ($1 > 0)}')" 1

# wait_q SHARD SQL WANT: until shard K's answer to SQL is WANT (30 s at most)
wait_q() {
  local i
  for ((i = 0; i < 600; i++)); do
    [[ $(q "$1" "$2") == "$3" ]] && return 0
    sleep 0.05
  done
}
# hold SHARD SECS SQL...: a psql session on shard K that runs the statements,
# then sleeps SECS (a number no other session sleeps: release finds it by
# it), in the background; release SHARD SECS ends it
hold() {
  local k=$1 secs=$2 args=() a
  shift 2
  for a in "$@"; do args+=(-c "$a"); done
  psql "${SHARD_URI[$k]}" -qX "${args[@]}" -c "SELECT pg_sleep($secs)" >/dev/null 2>&1 &
  HELD[$secs]=$!
}
release() {
  q "$1" "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep($2)%' AND pid <> pg_backend_pid()" >/dev/null
  wait "${HELD[$2]}" 2>/dev/null || true
}
declare -A HELD=()
fenced() { q "$1" "SELECT count(*) FROM pg_trigger WHERE tgname = 'pl_fence'"; }
# one move at a time: while another mover holds the movers' lock on shard 0
# (here a psql session stands in for it), a mover does nothing and exits 3
hold 0 121 "SELECT pg_advisory_lock(8097879414873353590)"
wait_q 0 "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted" 1
run "mover-while-another-runs" 3 "$PARLEYD" move-buckets "$BM" --to 1 "${SHARDS[@]}" --grace 0
same "mover-while-another-says-so" "$(grep -c 'another move is running' "$tmp/err")" 1
same "mover-while-another-changed-nothing" "$(q 0 "SELECT epoch FROM map_epoch")|$(fenced 0)|$(fenced 1)" "1|23|23"
release 0 121

# the mover again: done already; bad usage
run "mover-again" 0 "$PARLEYD" move-buckets "$BM" --to 1 "${SHARDS[@]}" --grace 0
same "mover-again-says-done" "$(grep -c 'already' "$tmp/err")" 1
same "mover-again-map-unchanged" "$(q 0 "SELECT epoch FROM map_epoch")|$(q 1 "SELECT epoch FROM map_epoch")" "1|1"
# (without --keep-fence) the fence comes down: a session of epoch 0 writes again
same "mover-again-fence-down" "$(fenced 0)|$(fenced 1)" "0|0"
same "fence-down-writes" "$(q 0 "INSERT INTO contacts(uid, contact_uid) VALUES(1, 2); DELETE FROM contacts WHERE uid = 1")" ""
run "mover-usage-no-to" 2 "$PARLEYD" move-buckets "$BM" "${SHARDS[@]}"
run "mover-usage-range" 2 "$PARLEYD" move-buckets 16384 --to 1 "${SHARDS[@]}"
run "mover-not-one-shard" 1 "$PARLEYD" move-buckets 8000-8300 --to 0 "${SHARDS[@]}"

# ---- a shard added: a new database at the end, then two more moves ------------
psql "$(uri1 postgres)" -qXv ON_ERROR_STOP=1 -c "CREATE DATABASE $db2" >/dev/null
SHARD_URI+=("$(uri1 "$db2")")
node_stop 0
node_stop 1
SHARDS=(--store "${SHARD_URI[0]}" --store-shard "${SHARD_URI[1]}" --store-shard "${SHARD_URI[2]}")
node 0
node 1
same "added-shard-recorded" "$(q 2 "SELECT shard || '|' || shards FROM shard_info")" "2|2"
same "added-shard-logged" "$(grep -c 'shard 2 added' "$tmp/node0.log" | awk '{print ($1 > 0)}')" 1
same "added-shard-holds-nothing" "$(q 2 "SELECT count(*) FROM users")" 0
run "added-shard-$FAR-still-on-1" 0 cli 0 "$FAR" send "$M" "before the second move"
# move_during NAME BUCKET TO SENDERS...: the bucket moved while the senders
# ("name user device to-args", one word each but the last) send
move_during() {
  local name=$1 b=$2 to=$3 sp=() i k a u d t
  shift 3
  for a in "$@"; do
    read -r k u d t <<<"$a"
    sender "$k" "$u" "$d" "$t" &
    sp+=($!)
  done
  for ((i = 0; i < 600; i++)); do
    (($(grep -c '"seq"' "$tmp/sent.${1%% *}" 2>/dev/null || true) >= 3)) && break
    sleep 0.05
  done
  run "$name" 0 "$PARLEYD" move-buckets "$b" --to "$to" "${SHARDS[@]}" --grace 1 --keep-fence
  cp "$tmp/err" "$tmp/mover.$name.err"
  for i in "${sp[@]}"; do wait "$i" || true; done
  for a in "$@"; do
    k=${a%% *}
    same "sent-$k-all-acked" "$(grep -c '"seq"' "$tmp/sent.$k")" "$N"
  done
}
# FAR's bucket to the new shard: LO's messages to FAR are owed to shard 1 on
# shard 0 when the bucket moves, and go to shard 2 (re-addressed)
move_during mover-to-added-shard "$BF" 2 "m2 $M default $FAR" "far2 $FAR default $M" "lof $LO default $FAR"
for k in 0 1 2; do # (the added shard holds the whole map: the first move's bucket too)
  same "map2-shard$k" "$(q $k "SELECT epoch FROM map_epoch")|$(q $k "SELECT shard FROM bucket_map WHERE bucket = $BF")|$(q $k "SELECT shard FROM bucket_map WHERE bucket = $BM")" "2|2|1"
done
same "far-on-shard2" "$(q 2 "SELECT count(*) FROM users WHERE name = '$FAR'")|$(q 1 "SELECT count(*) FROM users WHERE name = '$FAR'")" "1|0"
same "conv-far-on-shard1" "$(q 1 "SELECT count(*) FROM convs WHERE conv = '$c_far'")" 1
mapfile -t want_far2 < <(texts m2; texts lof)
recv_dev 0 "$FAR" default "$tmp/recv.far2" "${#want_far2[@]}"
ledger "far-gets-m2-and-lof-once-in-order" "$tmp/recv.far2" "${want_far2[@]}"
mapfile -t want_m2 < <(echo "before the second move"; texts far2)
recv_dev 1 "$M" default "$tmp/recv.m2" "${#want_m2[@]}"
ledger "m-gets-far2-once-in-order" "$tmp/recv.m2" "${want_m2[@]}"
mapfile -t want_o2 < <(echo "before the second move"; texts far2; texts m2)
recv_dev 0 "$M" other "$tmp/recv.o2" "${#want_o2[@]}"
ledger "m-other-gets-both-once-in-order" "$tmp/recv.o2" "${want_o2[@]}"
# X's bucket from shard 1 to shard 0, where its conversation with LO lives:
# what shard 0 owes X then is copied in by the move itself, before LO's
# next message goes to X directly
move_during mover-to-the-conversations-shard "$BX" 0 "lox $LO default $X" "xlo $X default $LO"
same "x-on-shard0" "$(q 0 "SELECT count(*) FROM users WHERE name = '$X'")|$(q 1 "SELECT count(*) FROM users WHERE name = '$X'")" "1|0"
mapfile -t want_x < <(texts lox)
recv_dev 1 "$X" default "$tmp/recv.x" "${#want_x[@]}"
ledger "x-gets-lox-once-in-order" "$tmp/recv.x" "${want_x[@]}"
mapfile -t want_lo < <(texts xlo)
recv_dev 0 "$LO" default "$tmp/recv.lo" "${#want_lo[@]}"
ledger "lo-gets-xlo-once-in-order" "$tmp/recv.lo" "${want_lo[@]}"
same "outbox-empty-after" "$(q 0 "SELECT count(*) FROM outbox")|$(q 1 "SELECT count(*) FROM outbox")|$(q 2 "SELECT count(*) FROM outbox")" "0|0|0"
# ---- copies owed when the move happens, made sure of: nodes down ----------------
# pending NAME SHARD TEXT: LO's TEXT to Y committed on shard 0 (LO's, the
# conversation's) and its copy to Y's shard SHARD not made: the copy waits
# on a lock there, then both nodes are killed
pending() {
  local name=$1 k=$2 text=$3 sendpid
  hold "$k" 120 "BEGIN" "LOCK TABLE relay IN ACCESS EXCLUSIVE MODE"
  wait_q "$k" "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'relay'
    AND l.mode = 'AccessExclusiveLock' AND l.granted" 1
  cli 0 "$LO" send --id "$name" "$Y" "$text" >"$tmp/pending.$name" 2>&1 &
  sendpid=$!
  wait_q 0 "SELECT count(*) FROM outbox WHERE client_id = '$name' AND target = $k" 1
  same "$name-owed-to-shard$k" "$(q 0 "SELECT count(*) FROM outbox WHERE client_id = '$name' AND target = $k")" 1
  for i in 0 1; do
    kill -9 "${PID[$i]}" 2>/dev/null || true
    wait "${PID[$i]}" 2>/dev/null || true
    PID[i]=
  done
  kill "$sendpid" 2>/dev/null || true
  wait "$sendpid" 2>/dev/null || true
  # the dead nodes' sessions there first (a copy waiting on the lock would
  # commit once it is gone), then the lock
  local others="datname = current_database() AND pid <> pg_backend_pid() AND query NOT LIKE '%pg_sleep(120)%'"
  q "$k" "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE $others" >/dev/null
  wait_q "$k" "SELECT count(*) FROM pg_stat_activity WHERE $others" 0
  release "$k" 120
  same "$name-not-copied" "$(q "$k" "SELECT count(*) FROM messages WHERE client_id = '$name'")" 0
}
run "y-first" 0 cli 0 "$LO" send "$Y" "to y first"
pending pend-readdressed 1 "owed to y on shard 1"
run "mover-readdresses" 0 "$PARLEYD" move-buckets "$BY" --to 2 "${SHARDS[@]}" --grace 0 --keep-fence
same "mover-readdressed-one" "$(grep -c 'shard 0 fenced at epoch 4; 1 copies owed to shard 1 now owed to shard 2' "$tmp/err")" 1
same "readdressed-row" "$(q 0 "SELECT target FROM outbox WHERE client_id = 'pend-readdressed'")" 2
node 0
node 1
for _ in $(seq 600); do # a node's sweep copies it to shard 2
  [[ $(q 0 "SELECT count(*) FROM outbox WHERE client_id = 'pend-readdressed'") == 0 ]] && break
  sleep 0.05
done
same "readdressed-copied" "$(q 0 "SELECT count(*) FROM outbox WHERE client_id = 'pend-readdressed'")" 0
pending pend-made-by-move 2 "owed to y on shard 2"
same "fence-up-before" "$(fenced 0)|$(fenced 1)|$(fenced 2)" "23|23|23"
run "mover-makes-owed-copy" 0 "$PARLEYD" move-buckets "$BY" --to 0 "${SHARDS[@]}" --grace 0
same "fence-down-after" "$(fenced 0)|$(fenced 1)|$(fenced 2)|$(grep -c 'the fence comes down in' "$tmp/err")" "0|0|0|1"
same "mover-made-one" "$(grep -c 'shard 0: 1 copies owed to its new users made there' "$tmp/err")" 1
same "made-row-gone" "$(q 0 "SELECT count(*) FROM outbox WHERE client_id = 'pend-made-by-move'")" 0
node 0
node 1
mapfile -t want_y < <(echo "to y first"; echo "owed to y on shard 1"; echo "owed to y on shard 2")
recv_dev 1 "$Y" default "$tmp/recv.y" "${#want_y[@]}"
ledger "y-gets-each-once-in-order" "$tmp/recv.y" "${want_y[@]}"
run "y-after" 0 cli 0 "$LO" send "$Y" "to y after"
run "y-after-recv" 0 cli 1 "$Y" recv --wait 2
same "y-after-once" "$(grep -c '"text":"to y after"' "$tmp/out")" 1

# ---- a copy the move makes reaches a device already connected ------------------
# Z (shard 1) moves to shard 0, its conversation with LO's. Z's device is
# connected through node 1 and has read what it had. The move is held in
# its copy (a lock on shard 0's blocks, which the copy writes there, while
# Z's shard is frozen) as LO sends to Z through node 0: that commits on
# shard 0, and its copy to shard 1 waits on the freeze, then the fence
# refuses it, so the move makes it on shard 0. Node 1 did not commit it and
# no bus runs here: Z's device reads it because node 1, taking the map,
# has the devices of the buckets moved read their queues.
run "z-first" 0 cli 0 "$LO" send "$Z" "to z first"
cli 1 "$Z" recv --wait 60 >"$tmp/recv.z" 2>&1 &
zpid=$!
for _ in $(seq 600); do
  grep -q '"text":"to z first"' "$tmp/recv.z" && break
  sleep 0.05
done
same "z-connected" "$(grep -c '"text":"to z first"' "$tmp/recv.z")" 1
hold 0 123 "BEGIN" "LOCK TABLE blocks IN SHARE MODE"
blocks_waiting() {
  q 0 "SELECT count(*) FILTER (WHERE l.granted)::text || '|' || count(*) FILTER (WHERE NOT l.granted)
    FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'blocks' AND l.mode <> 'AccessShareLock'"
}
for _ in $(seq 200); do [[ $(blocks_waiting) == "1|0" ]] && break; sleep 0.05; done
"$PARLEYD" move-buckets "$BZ" --to 0 "${SHARDS[@]}" --grace 0 >"$tmp/mover.z.out" 2>"$tmp/mover.z.err" &
mvpid=$!
for _ in $(seq 600); do [[ $(blocks_waiting) == "1|1" ]] && break; sleep 0.05; done
same "z-move-held-in-its-copy" "$(blocks_waiting)" "1|1"
cli 0 "$LO" send --id z-live "$Z" "made by the move" >"$tmp/send.z" 2>&1 &
sendpid=$!
wait_q 0 "SELECT count(*) FROM outbox WHERE client_id = 'z-live' AND target = 1" 1
same "z-live-owed-to-shard1" "$(q 0 "SELECT count(*) FROM outbox WHERE client_id = 'z-live' AND target = 1")" 1
release 0 123
for _ in $(seq 600); do # 30 s: the node takes the map within a second of its publication
  grep -q '"text":"made by the move"' "$tmp/recv.z" && break
  sleep 0.05
done
same "z-live-reaches-the-connected-device" "$(grep -c '"text":"made by the move"' "$tmp/recv.z")" 1
kill "$zpid" 2>/dev/null || true
wait "$zpid" 2>/dev/null || true
rc=0
wait "$mvpid" || rc=$?
same "mover-z-exit" "$rc" 0
same "mover-z-made-the-copy" "$(grep -c 'shard 0: 1 copies owed to its new users made there' "$tmp/mover.z.err")" 1
wait "$sendpid" 2>/dev/null || true
same "z-live-acked" "$(grep -c '"seq"' "$tmp/send.z")" 1
same "z-on-shard0" "$(q 0 "SELECT count(*) FROM users WHERE name = '$Z'")|$(q 1 "SELECT count(*) FROM users WHERE name = '$Z'")" "1|0"

# a node given fewer shards than the map names does not start
node_stop 1
SHARDS=(--store "${SHARD_URI[0]}" --store-shard "${SHARD_URI[1]}")
rc=0
timeout 60 "$PARLEYD" "${SHARDS[@]}" --data "$tmp/data1" --listen "127.0.0.1:${PORT[1]}" \
  --http "127.0.0.1:${HPORT[1]}" 2>"$tmp/short.err" || rc=$?
same "two-of-three-refused" "$rc|$(grep -c 'restart it with every shard' "$tmp/short.err")" "1|1"

node_stop 0
node_stop 1
if [[ $failed -ne 0 ]]; then
  echo "$failed check(s) failed"
  exit 1
fi
echo "all passed"
