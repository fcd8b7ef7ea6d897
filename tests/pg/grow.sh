#!/usr/bin/env bash
# Growing a store of one PostgreSQL database (docs/scaling.md 4, "Growing a
# store of one database"; operations.md 16.2): a cluster that began on one
# database takes a second one and moves a user there, and nothing its users
# had is lost or changes its id.
#  1. One database, one node (--store only): the store records that its ids
#     carry their bucket; a user's id, its devices' ids, its group's id and
#     its upload's id begin with its name's bucket, as a sharded store's do.
#  2. B (who will move) has a group with A, an upload sent to A, a token
#     kept by a second device, and messages waiting in both devices'
#     queues (from A, 1:1 and in the group).
#  3. A new database is added as shard 1 (the node restarted with
#     --store-shard), and `parleyd move-buckets` moves B's bucket to it.
#  4. After: B's rows on shard 1 only; B's kept token resumes (and sends to
#     A, now across shards); each of B's devices gets every waiting message
#     once and in order; A gets B's message, fetches B's upload and sends
#     into the group, which B gets; a new user of B's bucket signs up on
#     shard 1; ids are unchanged.
#  5. A database whose users were made before ids carried a bucket (schema
#     14, made by undoing migration 15 in SQL) upgrades to "cannot grow":
#     it goes on as one database (new users' ids bucket 0, as its old ones),
#     and a node given it with a second database refuses to start, saying
#     why, and records nothing in the second.
# Both databases are on the ctest pg fixture's PostgreSQL (one server is
# enough here: pg_test_move moves buckets between two).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=checks.sh
. "$here/checks.sh"
shard_env grow
fp() { python3 "$here/../integration/free_port.py"; }
PY=/usr/bin/python3 # Debian's, with python3-websockets
PORT=$(fp) HPORT=$(fp)
export PARLEY_PASSWORD=secret-pass
PID=
failed=0
tag=$$_$RANDOM
db0=p_grow0_$tag db1=p_grow1_$tag db2=p_grow2_$tag db3=p_grow3_$tag
uri() { echo "postgresql://postgres@127.0.0.1:$pg1port/$1"; }

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local d
  if [[ -n $PID ]]; then
    kill -9 "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  if [[ $failed -ne 0 && -f $tmp/node.log ]]; then
    echo "--- node.log (last 30 lines)" >&2
    tail -n 30 "$tmp/node.log" >&2
  fi
  if [[ -n ${PL_KEEP:-} ]]; then
    echo "kept: $tmp, databases $db0 $db1 $db2 $db3" >&2
    return 0
  fi
  for d in "$db0" "$db1" "$db2" "$db3"; do
    psql "$(uri postgres)" -qXc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true
  done
  drop_tmp
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

# node NAME STORE-ARGS...: parleyd on the given databases, serving within 60 s
node() {
  local name=$1
  shift
  up "$name" "$tmp/node.log" "$PORT" "$HPORT" "$@" --data "$tmp/data"
  PID=$served
}
node_stop() {
  [[ -n $PID ]] || return 0
  kill -TERM "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=
}
cli() {
  local u=$1
  shift
  PARLEY_SERVER=127.0.0.1:$PORT PARLEY_HTTP=127.0.0.1:$HPORT "$PARLEY_CLI" --user "$u" "$@"
}
jfield() { python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$1" "$2" 2>/dev/null || true; }
# got FILE: the texts of the messages in a recv's output, in the order received, one per line
got() { python3 -c 'import json, sys; [print(d["text"]) for d in map(json.loads, filter(str.strip, open(sys.argv[1]))) if d.get("type") == "message"]' "$1"; }
# recv_all USER DEVICE FILE WANT: recv (acking) until FILE has WANT messages, 60 s at most
recv_all() { recv_until "$3" "$4" '"type":"message"' cli "$1" --device "$2" recv --wait 1; }

# names by the hash (FNV-1a 64 mod 16384): A and B in two buckets, NEW in B's
read -r A BA B BB NEW <<<"$(python3 - <<'EOF'
def bucket(name):
    h = 14695981039346656037
    for b in name.encode():
        h = ((h ^ b) * 1099511628211) % (1 << 64)
    return h % 16384
a = next(f"ga{i}" for i in range(10**6) if 100 <= bucket(f"ga{i}") < 8000)
b = next(f"gb{i}" for i in range(10**6) if bucket(f"gb{i}") >= 8000)
new = next(f"gn{i}" for i in range(10**7) if bucket(f"gn{i}") == bucket(b))
print(a, bucket(a), b, bucket(b), new)
EOF
)"
echo "$A (bucket $BA) stays on shard 0; $B (bucket $BB) moves to the added shard 1"

python3 -c "import sys; sys.path.insert(0, '$here/../integration'); from testimg import png; open(sys.argv[1], 'wb').write(png(24, 16))" "$tmp/pic.png"

# ---- 1. one database ------------------------------------------------------------
for d in "$db0" "$db1"; do psql "$(uri postgres)" -qXv ON_ERROR_STOP=1 -c "CREATE DATABASE $d" >/dev/null; done
SHARD_URI=("$(uri "$db0")" "$(uri "$db1")")
node one-db --store "${SHARD_URI[0]}"
same "one-db-bucketed" "$(q 0 "SELECT shard || '|' || shards || '|' || bucketed FROM shard_info")" "0|1|true"
run "register-$A" 0 cli "$A" register
run "register-$B" 0 cli "$B" register
run "login-$B-phone" 0 "$PY" "$here/ws_client.py" login "$HPORT" "$B" "$PARLEY_PASSWORD" phone "$tmp/b.token"
PHONE_ID=$(jfield "$tmp/out" device_id)
UID_A=$(q 0 "SELECT id FROM users WHERE name = '$A'")
UID_B=$(q 0 "SELECT id FROM users WHERE name = '$B'")
same "ids-carry-bucket-users" "$((UID_A >> 48))|$((UID_B >> 48))" "$BA|$BB"
same "ids-carry-bucket-devices" "$(q 0 "SELECT count(*) FILTER (WHERE id >> 48 = user_id >> 48) || '|' || count(*) FROM devices")" "3|3"
same "ids-carry-bucket-phone" "$((PHONE_ID >> 48))" "$BB"

# ---- 2. what B has ------------------------------------------------------------------
run "group-create" 0 cli "$B" group create grown "$A"
G=$(jfield "$tmp/out" group)
same "ids-carry-bucket-group" "$((${G:-0} >> 48))" "$BB"
run "image-$B-$A" 0 cli "$B" send --image "$tmp/pic.png" "$A" "a picture"
MEDIA=$(python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["media"]["id"])' "$tmp/out" 2>/dev/null || true)
same "ids-carry-bucket-media" "${MEDIA:0:4}" "$(printf %04x "$BB")"
run "contact-$B-$A" 0 cli "$B" contacts add "$A"
want=()
for i in 1 2 3; do
  run "pre-$i" 0 cli "$A" send "$B" "pre $i"
  want+=("pre $i")
done
run "pre-group" 0 cli "$A" send --group "${G:-0}" "pre g"
want+=("pre g")

# ---- 3. a second database, and B's bucket moved to it ------------------------------
node_stop
node two-dbs --store "${SHARD_URI[0]}" --store-shard "${SHARD_URI[1]}"
same "shard1-added" "$(grep -c 'shard 1 added (the store began with 1)' "$tmp/node.log")" 1
same "shard1-recorded" "$(q 1 "SELECT shard || '|' || shards || '|' || bucketed FROM shard_info")" "1|1|true"
run "move-$B" 0 "$PARLEYD" move-buckets "$BB" --to 1 --store "${SHARD_URI[0]}" --store-shard "${SHARD_URI[1]}" --grace 1
same "map" "$(q 0 "SELECT shard || '|' || was FROM bucket_map WHERE bucket = $BB")|$(q 1 "SELECT shard FROM bucket_map WHERE bucket = $BB")" "1|0|1"

# ---- 4. after ---------------------------------------------------------------------------
same "moved-rows" "$(q 1 "SELECT (SELECT count(*) FROM users WHERE id = $UID_B) || ' ' || (SELECT count(*) FROM devices WHERE user_id = $UID_B) || ' ' || (SELECT count(*) FROM groups WHERE gid = ${G:-0}) || ' ' || (SELECT count(*) FROM media WHERE id = '$MEDIA') || ' ' || (SELECT count(*) FROM contacts WHERE uid = $UID_B)")" "1 2 1 1 1"
same "moved-rows-gone" "$(q 0 "SELECT (SELECT count(*) FROM users WHERE id = $UID_B) + (SELECT count(*) FROM devices WHERE user_id = $UID_B) + (SELECT count(*) FROM groups WHERE gid = ${G:-0}) + (SELECT count(*) FROM media WHERE id = '$MEDIA') + (SELECT count(*) FROM queue WHERE device_id >> 48 = $BB)")" 0
same "$A-stays" "$(q 0 "SELECT count(*) FROM users WHERE id = $UID_A")|$(q 1 "SELECT count(*) FROM users WHERE id = $UID_A")" "1|0"
# the phone's token, made when the store had one database, finds B's new shard
run "resume-$B-phone" 0 "$PY" "$here/ws_client.py" resume "$HPORT" "$tmp/b.token" "$A" "after from $B"
same "resume-same-device" "$(jfield "$tmp/out" device_id)" "$PHONE_ID"
# each device: what waited, and its other device's send (once each), A's in order
recv_all "$B" default "$tmp/recv.b" $((${#want[@]} + 1))
same "$B-default-gets-each-once" "$(got "$tmp/recv.b" | sort | paste -sd,)" "$(printf '%s\n' "${want[@]}" "after from $B" | sort | paste -sd,)"
same "$B-default-in-order" "$(got "$tmp/recv.b" | grep '^pre [0-9]' | paste -sd,)" "pre 1,pre 2,pre 3"
recv_all "$B" phone "$tmp/recv.p" $((${#want[@]} + 1))
same "$B-phone-gets-each-once" "$(got "$tmp/recv.p" | sort | paste -sd,)" "$(printf '%s\n' "${want[@]}" "a picture" | sort | paste -sd,)"
same "$B-phone-in-order" "$(got "$tmp/recv.p" | grep -v '^pre g$' | paste -sd,)" "a picture,pre 1,pre 2,pre 3"
recv_all "$A" default "$tmp/recv.a" 2
same "$A-gets-$B-across" "$(got "$tmp/recv.a" | grep -c "after from $B")" 1
run "image-fetch" 0 cli "$A" fetch "$MEDIA" "$tmp/pic.got"
same "image-bytes" "$(cmp -s "$tmp/pic.got" "$tmp/pic.png" && echo same)" same
run "group-send-after" 0 cli "$A" send --group "${G:-0}" "after g"
recv_all "$B" default "$tmp/recv.b2" 1
same "group-after" "$(got "$tmp/recv.b2" | paste -sd,)" "after g"
same "ids-unchanged" "$(q 1 "SELECT id FROM users WHERE name = '$B'")|$(q 1 "SELECT count(*) FROM devices WHERE id = $PHONE_ID")" "$UID_B|1"
run "register-$NEW" 0 cli "$NEW" register
same "new-in-bucket-on-shard1" "$(q 1 "SELECT count(*) FROM users WHERE name = '$NEW' AND id >> 48 = $BB")|$(q 0 "SELECT count(*) FROM users WHERE name = '$NEW'")" "1|0"
node_stop

# ---- 5. a store whose users were made before ids carried a bucket ------------------------
for d in "$db2" "$db3"; do psql "$(uri postgres)" -qXv ON_ERROR_STOP=1 -c "CREATE DATABASE $d" >/dev/null; done
SHARD_URI=("$(uri "$db2")" "$(uri "$db3")")
node legacy --store "${SHARD_URI[0]}"
run "legacy-register" 0 cli "$A" register
node_stop
# back to schema 14, its user's id without a bucket, as such a store's were
same "legacy-made" "$(q 0 "BEGIN; ALTER TABLE devices DROP CONSTRAINT devices_user_id_fkey;
  UPDATE devices SET user_id = user_id & 281474976710655, id = id & 281474976710655;
  UPDATE users SET id = id & 281474976710655;
  ALTER TABLE devices ADD FOREIGN KEY (user_id) REFERENCES users(id);
  ALTER TABLE shard_info DROP COLUMN bucketed; DELETE FROM schema_version WHERE version = 15; COMMIT;
  SELECT count(*) FROM users WHERE id >> 48 = 0")" 1
: >"$tmp/node.log"
node legacy-upgraded --store "${SHARD_URI[0]}"
same "legacy-cannot-grow" "$(q 0 "SELECT bucketed FROM shard_info")" f
run "legacy-register-more" 0 cli "$B" register
run "legacy-old-user-sends" 0 cli "$A" send "$B" "still one database"
same "legacy-ids-as-before" "$(q 0 "SELECT count(*) FROM users WHERE id >> 48 = 0")" 2
node_stop
: >"$tmp/node.log"
rc=0
"$PARLEYD" --store "${SHARD_URI[0]}" --store-shard "${SHARD_URI[1]}" --data "$tmp/data" \
  --listen "127.0.0.1:$PORT" --http "127.0.0.1:$HPORT" >"$tmp/out" 2>"$tmp/legacy.err" </dev/null || rc=$?
same "legacy-refuses-a-shard" "$((rc != 0))|$(grep -c 'made before ids carried their bucket' "$tmp/legacy.err")" "1|1"
same "legacy-second-untouched" "$(q 1 "SELECT count(*) FROM pg_tables WHERE tablename = 'shard_info'")" 0
node legacy-still-one --store "${SHARD_URI[0]}"
run "legacy-still-serves" 0 cli "$B" recv --wait 2
same "legacy-still-delivers" "$(got "$tmp/out" | grep -c 'still one database')" 1

if [[ $failed -ne 0 ]]; then
  echo "$failed check(s) failed"
  exit 1
fi
echo "all passed"
