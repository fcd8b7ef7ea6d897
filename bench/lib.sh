# Shell helpers the bench scripts share (source it).

# ticks PID...: utime + stime in clock ticks of the given pids (those that still run)
ticks() {
  local t=0 p
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] || continue
    t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat")))
  done
  echo "$t"
}
