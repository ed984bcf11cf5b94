#!/usr/bin/env bash
# Fuzzes every parser of outside input (fuzz/, docs/FUZZING.md) with
# libFuzzer through cargo-fuzz, without a sanitizer (this machine's stable
# toolchain has no ASan), under a memory limit.
#
#   scripts/fuzz.sh --smoke        every target for 20 s (what test.sh runs)
#   scripts/fuzz.sh [SECONDS]      a long run: every target until it has
#                                  made FUZZ_RUNS executions (default 10
#                                  million) or SECONDS have passed (default
#                                  1800), two at a time, adding what it
#                                  finds to fuzz/corpus/
#   scripts/fuzz.sh --regress      replays fuzz/corpus and fuzz/regressions
#                                  only
#   FUZZ_TARGETS="a b" ...         only these targets
#
# A crash, a panic, an input that runs past the time limit or needs more
# than the memory limit fails the run; its input is kept under
# fuzz/artifacts/TARGET/ (re-run it with `cargo fuzz run TARGET FILE`).
# Prints the executions per target.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

mode=long seconds=1800
case "${1:-}" in
  --smoke) mode=smoke seconds=20 ;;
  --regress) mode=regress seconds=0 ;;
  '') ;;
  *[!0-9]*) echo "usage: $0 [--smoke | --regress | SECONDS]" >&2; exit 2 ;;
  *) seconds=$1 ;;
esac

if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --version 0.13.2 --locked >/dev/null
fi
# One build of every target (release, debug assertions on).
cargo fuzz build --sanitizer none >/dev/null
bin=target/x86_64-unknown-linux-gnu/release
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}

# libFuzzer's limits: 512 MB resident, no single allocation over 256 MB,
# 10 s for one input, inputs up to 64 KiB (the largest body either side reads).
limits=(-rss_limit_mb=512 -malloc_limit_mb=256 -timeout=10 -max_len=65536)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() {
  local target=$1 log="$work/$1.log" seeds=()
  mkdir -p "$work/$target" "artifacts/$target"
  for dir in "corpus/$target" "regressions/$target"; do
    [ -d "$dir" ] && seeds+=("$dir")
  done
  local args=("${limits[@]}" -artifact_prefix="artifacts/$target/")
  if [ "$mode" = regress ]; then
    # Every committed input, once.
    "$bin/$target" "${args[@]}" -runs=0 "${seeds[@]}" >"$log" 2>&1
  elif [ "$mode" = smoke ]; then
    # New inputs go to a scratch directory; the committed corpus is read only.
    "$bin/$target" "${args[@]}" -max_total_time="$seconds" "$work/$target" "${seeds[@]}" >"$log" 2>&1
  else
    "$bin/$target" "${args[@]}" -runs="${FUZZ_RUNS:-10000000}" -max_total_time="$seconds" \
      "corpus/$target" "${seeds[@]:1}" >"$log" 2>&1
  fi
}

report() {
  local target=$1 status=$2 log="$work/$1.log"
  local runs
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 executions in \2 s/p' "$log" | tail -1)
  [ -n "$runs" ] || runs=$(grep -o 'INITED.*' "$log" | head -1)
  if [ "$status" -eq 0 ]; then
    echo "fuzz: $target: ok, $runs"
  else
    echo "fuzz: $target: FAILED (exit $status), $runs" >&2
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 >&2
  fi
}

failed=0
if [ "$mode" = long ]; then
  # Two at a time (this machine has two cores), the next one starting as
  # soon as either ends.
  declare -A running=()
  reap_one() {
    local pid status=0
    wait -n -p pid "${!running[@]}" || status=$?
    report "${running[$pid]}" "$status"
    [ "$status" -eq 0 ] || failed=$((failed + 1))
    unset "running[$pid]"
  }
  for target in $targets; do
    while [ "${#running[@]}" -ge 2 ]; do reap_one; done
    run "$target" &
    running[$!]=$target
  done
  while [ "${#running[@]}" -gt 0 ]; do reap_one; done
else
  for target in $targets; do
    status=0
    run "$target" || status=$?
    report "$target" "$status"
    [ "$status" -eq 0 ] || failed=$((failed + 1))
  done
fi
count=$(wc -w <<<"$targets")
echo "fuzz: $((count - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
