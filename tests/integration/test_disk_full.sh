#!/usr/bin/env bash
# Disk full, for real (issue 14): parleyd's data dir on a small tmpfs, filled
# with messages until Sends are refused; then acks, a login, /healthz (503,
# then 200 once space is freed), Sends again, and nothing acked lost
# (disk_full_client.py). Needs root to mount: skipped (exit 77) otherwise.
# Every exit path unmounts (trap).
set -euo pipefail
: "${PARLEYD:?PARLEYD must point to the parleyd binary}"
mnt=$(mktemp -d "${TMPDIR:-/tmp}/parley-diskfull-XXXXXX")
mounted=0
cleanup() {
  local rc=$?
  # The client stops its parleyd on every path of its own; if it was cut
  # short, the pid it left says which one still holds files on the mount.
  if [[ -s $mnt.pid ]]; then kill -9 "$(cat "$mnt.pid")" 2>/dev/null || true; fi
  if [[ $mounted == 1 ]]; then
    for _ in 1 2 3 4 5 6 7 8 9 10; do umount "$mnt" 2>/dev/null && break; sleep 0.2; done
  fi
  rm -f "$mnt.pid"
  rmdir "$mnt" 2>/dev/null || true
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if ! mount -t tmpfs -o size=28m,mode=0700 tmpfs "$mnt" 2>/dev/null; then
  echo "SKIP test_disk_full: cannot mount a tmpfs for the data dir (needs root or CAP_SYS_ADMIN)"
  exit 77
fi
mounted=1
/usr/bin/python3 "$(dirname "$0")/disk_full_client.py" "$mnt"
