# Sourced by the system tests: the one tally they share.
#   check DESCRIPTION COMMAND...   counts a pass, or names the failure
#   refused COMMAND...             succeeds when COMMAND fails
#   report NAME                    prints the tally; fails if anything failed
#   gone PID                       succeeds when the process has exited
#   stop PID...                    ends the processes and waits until they have
#                                  (TERM, then KILL after 10 s): what a cleanup
#                                  removes next (their account, their files)
#                                  is no longer in use
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
stop() {
  local pid _
  [ $# -gt 0 ] || return 0
  kill "$@" 2>/dev/null || true
  for pid in "$@"; do
    for _ in $(seq 100); do gone "$pid" && break; sleep 0.1; done
    gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
  done
  # Reap what is ours, so nothing is left a zombie either.
  wait "$@" 2>/dev/null || true
}
