#!/usr/bin/env bash
# Installs Parley's build and test dependencies on Debian/Ubuntu, only when some
# are missing: quiet and quick when everything is already there. Works as root,
# or through sudo; never asks questions (safe with no stdin, e.g. in CI).
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  libuv1-dev libprotobuf-c-dev protobuf-c-compiler libsodium-dev libsqlite3-dev
  libjansson-dev libwslay-dev libhttp-parser-dev libssl-dev
  # clang for the fuzz and sanitizer builds; its ASan/UBSan/libFuzzer runtimes
  # live in libclang-rt-dev, which clang only recommends.
  clang libclang-rt-dev
  python3 python3-websockets
)

missing=()
for p in "${PKGS[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

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
