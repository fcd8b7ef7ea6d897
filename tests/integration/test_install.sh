#!/usr/bin/env bash
# make install's files (cmake --install of this build into a DESTDIR), and the
# systemd unit checked by systemd-analyze verify (no warning allowed: an
# unknown or misspelt key is only a warning to systemd).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
build=$(dirname "$PARLEYD")
dest=$(mktemp -d "${TMPDIR:-/tmp}/parley-install-XXXXXX")
trap 'rm -rf "$dest"' EXIT
failed=0
fail() { echo "FAIL $*"; failed=1; }

DESTDIR=$dest cmake --install "$build" >/dev/null
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
want=(
  "etc/parley/parleyd.conf"
  "${prefix#/}/bin/parley"
  "${prefix#/}/bin/parleyctl"
  "${prefix#/}/bin/parleyd"
  "${prefix#/}/lib/systemd/system/parleyd.service"
  "${prefix#/}/lib/sysusers.d/parleyd.conf"
  "${prefix#/}/share/doc/parley/README.md"
  "${prefix#/}/share/doc/parley/admin.md"
  "${prefix#/}/share/doc/parley/operations.md"
  "${prefix#/}/share/doc/parley/protocol.md"
  "${prefix#/}/share/parley/grafana/parley.json"
  "${prefix#/}/share/parley/logrotate-parleyd"
)
got=$(cd "$dest" && find . -type f | sed 's#^\./##' | sort)
expected=$(printf '%s\n' "${want[@]}" | sort)
[[ $got == "$expected" ]] && echo "PASS installed files" || fail "installed files:"$'\n'"$got"$'\n'"want:"$'\n'"$expected"
for b in parleyd parleyctl parley; do
  [[ -x $dest$prefix/bin/$b ]] || fail "$b not executable"
done
"$dest$prefix/bin/parleyd" --version | grep -q '^parleyd [0-9]' && echo "PASS parleyd --version" || fail "--version"
unit=$dest$prefix/lib/systemd/system/parleyd.service
for key in '^\[Unit\]' '^\[Install\]' '^User=parley' '^ProtectSystem=strict' '^NoNewPrivileges=yes' \
  '^ReadWritePaths=/var/lib/parley' '^LimitNOFILE=' "^ExecStart=$prefix/bin/parleyd --config /etc/parley/parleyd.conf"; do
  grep -q "$key" "$unit" || fail "unit lacks $key"
done
grep -q '^u parley ' "$dest$prefix/lib/sysusers.d/parleyd.conf" || fail "sysusers: no user parley"
# the sample config is one parleyd takes
"$dest$prefix/bin/parleyd" --config "$dest/etc/parley/parleyd.conf" --data "$dest/x" --help >/dev/null ||
  fail "the sample config does not parse"
if command -v systemd-analyze >/dev/null; then
  mkdir "$dest/check"
  sed "s#$prefix/bin/#$dest$prefix/bin/#" "$unit" >"$dest/check/parleyd.service"
  out=$(systemd-analyze verify "$dest/check/parleyd.service" 2>&1) && [[ -z $out ]] &&
    echo "PASS systemd-analyze verify" || fail "systemd-analyze verify: $out"
else
  fail "systemd-analyze is not installed (scripts/deps.sh --test installs systemd)"
fi
exit $failed
