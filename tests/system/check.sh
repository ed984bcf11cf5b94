# Sourced by the system tests: the one tally they share.
#   check DESCRIPTION COMMAND...   counts a pass, or names the failure
#   refused COMMAND...             succeeds when COMMAND fails
#   report NAME                    prints the tally; fails if anything failed
#   gone PID                       succeeds when the process has exited
# A test that wants its commands silent redefines run_checked.
passed=0 failed=0
run_checked() { "$@"; }
check() {
  local what=$1; shift
  if run_checked "$@"; then passed=$((passed + 1)); else echo "FAIL: $what" >&2; failed=$((failed + 1)); fi
}
refused() { ! "$@"; }
report() {
  echo "$1: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
gone() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)
  [ -z "$state" ] || [ "$state" = Z ]
}
