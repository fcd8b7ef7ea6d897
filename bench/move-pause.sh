#!/usr/bin/env bash
# How long a move stops writes (docs/scaling.md 4), for docs/benchmarks.md:
# one user's bucket moved from shard 0 to shard 1 of two PostgreSQL servers,
# the user holding Q queued messages (Q = 1, then the sizes given). The
# messages are made in SQL from one real one (a message row and a queue row
# each, as a send makes them), so that large queues take seconds, not
# hours; the mover copies rows, whatever made them.
#
#   bench/move-pause.sh [Q...]   (default 1000 10000 100000)
#
# Per size, from the mover's log: the freeze (the old shard's writes wait:
# from the mover's start to "copied"), the refusals (every shard refuses
# the writes of nodes on the old map: from "copied" to the publication),
# and the whole move but the grace.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$repo/bench/lib.sh"
sizes=("$@")
((${#sizes[@]})) || sizes=(1000 10000 100000)
parleyd=${PARLEYD:-$(pick parleyd)}
cli=${PARLEY_CLI:-$(pick parley)}
dir=$(mktemp -d /tmp/parley-move-pause.XXXXXX)
chmod 711 "$dir"
pid=
cleanup() {
  [[ -z $pid ]] || kill -9 "$pid" 2>/dev/null || true
  pg_two stop "$dir"
  rm -rf "$dir"
}
trap cleanup EXIT
pg_two start "$dir"
uri() { pg_uri "$dir" "$@"; }
psql "$(uri A postgres)" -qXc "CREATE DATABASE mp" >/dev/null
psql "$(uri B postgres)" -qXc "CREATE DATABASE mp" >/dev/null
store=(--store "$(uri A mp)" --store-shard "$(uri B mp)")
port=$(python3 "$repo/tests/integration/free_port.py")
hport=$(python3 "$repo/tests/integration/free_port.py")
"$parleyd" "${store[@]}" --data "$dir/data" --listen "127.0.0.1:$port" --http "127.0.0.1:$hport" \
  --log-level warn --argon2-mem 8 --argon2-ops 1 --login-rate 0 --register-rate 0 2>>"$dir/parleyd.log" &
pid=$!
for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
export PARLEY_SERVER=127.0.0.1:$port PARLEY_PASSWORD=bench-pass
# names of shard 0 (bucket < 8192), one per size, and a sender
read -r -a names <<<"$(python3 - "$((${#sizes[@]} + 1))" <<'EOF'
import sys
def bucket(name):
    h = 14695981039346656037
    for b in name.encode():
        h = ((h ^ b) * 1099511628211) % (1 << 64)
    return h % 16384
n, out, seen = int(sys.argv[1]), [], set()
for i in range(10**6):
    b = bucket(f"mp{i}")
    if b < 8192 and b not in seen:
        seen.add(b)
        out.append(f"mp{i}:{b}")
    if len(out) == n:
        break
print(" ".join(out))
EOF
)"
# (the bench's own writes pass the fence of earlier moves, as the mover's do)
q() { psql "$(uri A mp)" -qAtX -v ON_ERROR_STOP=1 -c "SET parley.epoch = '999999999'" -c "$1"; }
ms() { python3 -c 'import sys, datetime as d; t = [d.datetime.fromisoformat(x.rstrip("Z")) for x in sys.argv[1:]]; print(round((t[1] - t[0]).total_seconds() * 1000))' "$@"; }
# the first write of a node after a move is refused once (it then reads the map): again
again() { local i; for ((i = 0; i < 20; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done; "$@"; }
sender=${names[0]%%:*}
again "$cli" --user "$sender" register
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs"
echo
echo "| queued messages | freeze (writes wait) | refusals (old map) | whole move but the grace |"
echo "|---:|---:|---:|---:|"
i=1
for size in "${sizes[@]}"; do
  u=${names[$i]%%:*} b=${names[$i]##*:}
  i=$((i + 1))
  again "$cli" --user "$u" register
  again "$cli" --user "$sender" send --id "first-$size" "$u" "the first of $size"
  if ((size > 1)); then # size - 1 more, each its message row and queue row
    q "WITH s AS (SELECT m.*, q.device_id FROM messages m JOIN queue q ON q.mid = m.mid
         JOIN devices d ON d.id = q.device_id JOIN users x ON x.id = d.user_id WHERE x.name = '$u'),
       m AS (INSERT INTO messages(conv, seq, sender_uid, from_name, from_device, client_id, body, client_ts,
         server_ts, expires, refs, kind) SELECT s.conv, s.seq + g, s.sender_uid, s.from_name, s.from_device,
         s.client_id || g, s.body, s.client_ts, s.server_ts, s.expires, 1, 0 FROM s, generate_series(1, $size - 1) g
         RETURNING mid),
       n AS (SELECT mid, row_number() OVER (ORDER BY mid) + 1 AS qid FROM m)
       INSERT INTO queue(device_id, qid, mid) SELECT (SELECT device_id FROM s), qid, mid FROM n" >/dev/null
    q "UPDATE devices SET next_qid = $size WHERE user_id = (SELECT id FROM users WHERE name = '$u')" >/dev/null
  fi
  "$parleyd" move-buckets "$b" --to 1 "${store[@]}" --grace 0 2>"$dir/mover.$size.log" >/dev/null
  t0=$(awk '/move: buckets .* shard 0 to shard 1/ {print $1; exit}' "$dir/mover.$size.log")
  t1=$(awk '/move: copied to shard/ {print $1; exit}' "$dir/mover.$size.log")
  t2=$(awk '/are on shard 1 from map epoch/ {print $1; exit}' "$dir/mover.$size.log")
  echo "| $size | $(ms "$t0" "$t1") ms | $(ms "$t1" "$t2") ms | $(ms "$t0" "$t2") ms |"
done
kill -TERM "$pid"
wait "$pid" || true
pid=
