#!/usr/bin/env bash
# Runs every built fuzzer for a while: fuzz/run.sh BUILD_DIR SECONDS [JOBS]
#
# Each fuzzer's first corpus dir is BUILD_DIR/fuzz-work/<target>, scratch space
# that keeps what it finds between local runs; the committed seeds in
# fuzz/corpus/<target> come second, so libFuzzer only reads them. Crash inputs
# land in BUILD_DIR/fuzz-crashes/. JOBS fuzzers run at once (default: CPUs).
# All run even if one fails; the exit status is 1 if any did.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS [JOBS]}
secs=${2:?usage: fuzz/run.sh BUILD_DIR SECONDS [JOBS]}
jobs=${3:-$(nproc 2>/dev/null || echo 2)}
work=$build/fuzz-work
crashes=$build/fuzz-crashes
mkdir -p "$work" "$crashes"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

targets=()
for bin in "$build"/fuzz/fuzz_*; do
  [[ -f $bin && -x $bin ]] && targets+=("$(basename "$bin")")
done
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "fuzz/run.sh: no fuzzers in $build/fuzz (build the 'fuzzers' target first)" >&2
  exit 1
fi

# One fuzzer: run it, then print a one-line verdict (and the log's tail on failure).
run_one() {
  local t=$1 log=$work/$1.log seeds=()
  mkdir -p "$work/$t"
  [[ -d fuzz/corpus/$t ]] && seeds=("fuzz/corpus/$t")
  if "$build/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$crashes/$t-" "$work/$t" ${seeds[@]+"${seeds[@]}"} >"$log" 2>&1; then
    local runs cov
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1)
    printf 'ok    %-20s %10s runs  %s\n' "$t" "${runs:-?}" "$cov"
  else
    printf 'FAIL  %-20s (log %s)\n' "$t" "$log"
    tail -n 40 "$log" | sed 's/^/      /'
    return 1
  fi
}
export -f run_one
export build secs work crashes

echo "fuzz: ${#targets[@]} fuzzers, ${secs}s each, $jobs at a time"
if printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$1"' _ {}; then
  echo "fuzz: all clean"
else
  echo "fuzz: FAILED (inputs that fail are in $crashes/; rerun one with: $build/fuzz/<target> <input>)"
  exit 1
fi
