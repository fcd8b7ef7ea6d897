#!/usr/bin/env bash
# Installs Parley's build and test dependencies on Debian/Ubuntu, only when some
# are missing: quiet and quick when everything is already there. Works as root,
# or through sudo; never asks questions (safe with no stdin, e.g. in CI).
#
#   scripts/deps.sh          what building and running parleyd needs
#   scripts/deps.sh --test   and what the tests need (make test, make asan)
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  libuv1-dev libprotobuf-c-dev protobuf-c-compiler libsodium-dev libsqlite3-dev libpq-dev
  libjansson-dev libwslay-dev libhttp-parser-dev libssl-dev zlib1g-dev libvips-dev libcurl4-openssl-dev
  # the cluster bus (--bus nats://...): the NATS C client, with its libuv adapter
  libnats-dev
  # clang for the fuzz and sanitizer builds; its ASan/UBSan/libFuzzer runtimes
  # live in libclang-rt-dev, which clang only recommends.
  clang libclang-rt-dev
  python3
)
# Only for the tests (scripts/deps.sh --test): a third-party WebSocket client,
# python3-cryptography (the push test checks FCM's and APNs' JWT signatures),
# and Debian's Chromium for the browser client's end-to-end tests, driven by
# playwright-core from npm (tests/browser), which downloads no browser.
# nats-server and haproxy: the cluster tests start real ones on loopback.
# The MQTT gateway's third-party clients: paho-mqtt, mosquitto_pub/_sub, and
# MQTT.js from npm (tests/mqtt).
TEST_PKGS=(python3-websockets python3-cryptography chromium libvips-tools nats-server haproxy python3-paho-mqtt
  mosquitto-clients)
# PostgreSQL 15: scripts/cluster.sh's store, its smoke test (tests/integration/test_cluster_sh.sh),
# and the pg tests, which start one on loopback (tests/pg)
TEST_PKGS+=(postgresql)
# systemd-analyze: the install test verifies the unit file
TEST_PKGS+=(systemd)
tests=0
[[ ${1:-} == --test ]] && tests=1 && PKGS+=("${TEST_PKGS[@]}")

missing=()
for p in "${PKGS[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$p")
done
[[ $tests == 1 ]] && ! command -v node >/dev/null 2>&1 && missing+=(nodejs npm)

# playwright-core for tests/browser and mqtt for tests/mqtt, at the
# versions their package-lock.json pin.
npm_deps() {
  [[ $tests == 1 ]] || return 0
  local root sub
  root="$(cd "$(dirname "$0")/.." && pwd)/tests"
  for sub in browser/playwright-core mqtt/mqtt; do
    [[ -d $root/${sub%%/*}/node_modules/${sub#*/} ]] && continue
    echo "deps.sh: npm ci in tests/${sub%%/*}" >&2
    (cd "$root/${sub%%/*}" && npm ci --no-audit --no-fund --loglevel=error)
  done
}

if [[ ${#missing[@]} -eq 0 ]]; then
  npm_deps
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps.sh: missing packages (${missing[*]}) and no apt-get; install them by hand" >&2
  exit 1
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    # Ask for a password only when someone is there to type it.
    if [[ -t 0 ]]; then SUDO=(sudo); else SUDO=(sudo -n); fi
  else
    echo "deps.sh: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "deps.sh: installing ${missing[*]}" >&2
run() { ${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive "$@"; }
run apt-get update -qq
run apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confdef \
  -o Dpkg::Options::=--force-confold "${missing[@]}" </dev/null
npm_deps
