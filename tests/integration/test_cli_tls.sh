#!/usr/bin/env bash
# The CLI (libparley) over TLS: `--server tls://HOST:PORT` verifies the
# server's certificate against --ca (or the system's CAs) and its name, and
# says why when it refuses: a CA it does not trust (exit 3), a certificate
# that does not name the host it dialled (exit 3). The CA and the server's
# certificate (for DNS:localhost only) are made at test time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pki=$(mktemp -d "${TMPDIR:-/tmp}/parley-cli-tls-XXXXXX")
/usr/bin/python3 - "$here" "$pki" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
from tlsca import make_ca, make_leaf
make_ca(sys.argv[2])
make_leaf(sys.argv[2], "srv", sans="DNS:localhost")
EOF
tls_port=$(python3 "$here/free_port.py")
PARLEYD_ARGS=(--listen-tls "127.0.0.1:$tls_port" --tls-cert "$pki/srv.chain.pem" --tls-key "$pki/srv.key")
# shellcheck source=cli_harness.sh
source "$here/cli_harness.sh"
trap 'cleanup; rm -rf "$pki"' EXIT
for _ in $(seq 1500); do # the TLS listener opens with the plain one; be sure
  if (exec 3<>"/dev/tcp/127.0.0.1/$tls_port") 2>/dev/null; then break; fi
  sleep 0.02
done
unset PARLEY_SERVER
T=(--server "tls://localhost:$tls_port" --ca "$pki/root.pem")
expect register-alice 0 '{"registered":"alice","device":"default"}' "$CLI" "${T[@]}" --user alice register
expect register-bob 0 '{"registered":"bob","device":"default"}' "$CLI" "${T[@]}" --user bob register
expect send 0 '"seq":1' bash -c "$(printf '%q ' "$CLI" "${T[@]}") --user alice send bob 'hi over tls' | grep -o '\"seq\":1'"
expect recv 0 '"text":"hi over tls"' \
  bash -c "$(printf '%q ' "$CLI" "${T[@]}") --user bob recv | grep -o '\"text\":\"hi over tls\"'"
expect env-ca 0 '"seq":2' bash -c "PARLEY_CA=$(printf '%q' "$pki/root.pem") $(printf '%q ' "$CLI") \
  --server tls://localhost:$tls_port --user alice send bob again | grep -o '\"seq\":2'"
# Without --ca the system's CAs do not know the test CA.
expect untrusted 3 "" "$CLI" --server "tls://localhost:$tls_port" --user alice send bob nope
expect untrusted-says 0 "certificate is not trusted" bash -c \
  "$(printf '%q ' "$CLI") --server tls://localhost:$tls_port --user alice send bob nope 2>&1 | grep -o 'certificate is not trusted'"
# The certificate names localhost, not the address dialled.
expect wrong-name 3 "" "$CLI" --server "tls://127.0.0.1:$tls_port" --ca "$pki/root.pem" --user alice send bob nope
expect wrong-name-says 0 "does not name this host" bash -c \
  "$(printf '%q ' "$CLI") --server tls://127.0.0.1:$tls_port --ca $(printf '%q' "$pki/root.pem") --user alice send bob nope 2>&1 | grep -o 'does not name this host'"
expect ca-without-tls 2 "" "$CLI" --server "127.0.0.1:$port" --ca "$pki/root.pem" --user alice send bob nope
expect missing-ca-file 3 "" "$CLI" --server "tls://localhost:$tls_port" --ca "$pki/nope.pem" --user alice send bob nope
# Nothing refused was sent.
expect nothing-refused-arrived 0 '"text":"again"' \
  bash -c "$(printf '%q ' "$CLI" "${T[@]}") --user bob recv | grep -o '\"text\":\"[a-z ]*\"' | tail -n 1"
exit $((failed != 0))
