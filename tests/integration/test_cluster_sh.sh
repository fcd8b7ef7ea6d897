#!/usr/bin/env bash
# scripts/cluster.sh up, status, down: PostgreSQL, three nats-servers, three
# parleyd nodes and haproxy come up on loopback; every node is on the bus and
# hears the other two; a client registers through haproxy; down stops
# everything it started. A message sent through one node and received on
# another needs the nodes to share a store (--store postgresql://): that part
# is skipped while parleyd has no PostgreSQL backend. Exits 77 (skipped)
# without nats-server, haproxy or PostgreSQL (scripts/deps.sh --test).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
: "${PARLEY_CLI:?PARLEY_CLI must point to the parley CLI}"
here=$(cd "$(dirname "$0")" && pwd)
script=$here/../../scripts/cluster.sh
export PATH=$PATH:/usr/sbin

for p in nats-server haproxy; do
  command -v $p >/dev/null || { echo "skipped: $p is not installed"; exit 77; }
done
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || { echo "skipped: PostgreSQL is not installed"; exit 77; }

# 45 ports from base, all free (below the ephemeral range, as testlib picks)
free_base() {
  python3 - <<'PY'
import random, socket
for _ in range(200):
    base = random.randint(20000, 31900)
    ok = True
    for port in range(base, base + 45):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            ok = False
        finally:
            s.close()
        if not ok:
            break
    if ok:
        print(base)
        break
else:
    raise SystemExit("no 45 free ports in a row")
PY
}

export PARLEY_CLUSTER_DIR
PARLEY_CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/parley-cluster-test-XXXXXX")
export PARLEY_CLUSTER_PORT
PARLEY_CLUSTER_PORT=$(free_base)
# A failing test never leaves the cluster running: down kills by pid file.
trap 'bash "$script" down >/dev/null 2>&1 || true; rm -rf "$PARLEY_CLUSTER_DIR"' EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in "$PARLEY_CLUSTER_DIR"/node*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done
  exit 1
}

bash "$script" up >"$PARLEY_CLUSTER_DIR/up.out" || fail "cluster.sh up failed"
grep -q "haproxy      native 127.0.0.1:$((PARLEY_CLUSTER_PORT + 1))" "$PARLEY_CLUSTER_DIR/up.out" ||
  fail "up did not print haproxy's address"

# Each node on the bus, hearing the other two (within a deadline: ALIVE is every 2 s).
deadline=$((SECONDS + 20))
until st=$(bash "$script" status) && [[ $(grep -c "bus connected 1, nodes alive 2" <<<"$st") == 3 ]]; do
  ((SECONDS < deadline)) || fail "status never showed three nodes on the bus: $st"
  sleep 0.2
done

lb=127.0.0.1:$((PARLEY_CLUSTER_PORT + 1))
"$PARLEY_CLI" --server "$lb" --user alice --password secret-pass register >/dev/null ||
  fail "register through haproxy"

if "$PARLEYD" --help 2>&1 | grep 'postgresql://' >/dev/null; then # not -q: see cluster.sh
  # one shared store: register bob through node 2, send through node 1, receive on node 3
  n1=127.0.0.1:$((PARLEY_CLUSTER_PORT + 31))
  n2=127.0.0.1:$((PARLEY_CLUSTER_PORT + 32))
  n3=127.0.0.1:$((PARLEY_CLUSTER_PORT + 33))
  "$PARLEY_CLI" --server "$n2" --user bob --password secret-pass register >/dev/null || fail "register bob on node 2"
  "$PARLEY_CLI" --server "$n1" --user alice --password secret-pass send bob "across the cluster" >/dev/null ||
    fail "send through node 1"
  got=$("$PARLEY_CLI" --server "$n3" --user bob --password secret-pass recv --wait 5)
  grep -q '"text":"across the cluster"' <<<"$got" || fail "node 3 did not deliver the message: $got"
else
  echo "note: the cross-node message is skipped: parleyd has no PostgreSQL backend yet"
fi

pids=$(cat "$PARLEY_CLUSTER_DIR"/*.pid)
bash "$script" down >/dev/null 2>&1 || fail "cluster.sh down failed"
for p in $pids; do
  ! kill -0 "$p" 2>/dev/null || fail "pid $p still runs after down"
done
bash "$script" status >/dev/null && fail "status says up after down"
echo "ok"
