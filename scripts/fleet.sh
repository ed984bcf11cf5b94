#!/usr/bin/env bash
# A fleet on one machine (docs/BENCHMARKS.md, "Fleet"): PostgreSQL, two
# authtoken-server replicas and N client machines in network and mount
# namespaces of their own, every machine joined with `authtoken join`,
# a workload of real logins (pamtester, su, sudo -v) whose outcomes are
# known in advance, and faults on a schedule: replica A killed and back,
# the database stopped for 20 s, a quarter of the machines cut off from
# both replicas, a user added and another removed, a device revoked.
#
#   scripts/fleet.sh [--machines N] [--seconds S] [--quick] [--inject unshared-replica]
#
# --quick is 8 machines for 60 s (scripts/test.sh runs it). Writes
# target/fleet/report.json and prints a table; exits 1 on any wrong
# outcome (a grant that should be a refusal, or the reverse away from a
# fault's edges) or lost state (a single-use record accepted twice, a
# guessing budget exceeded, a removed user still served after a sync).
# Run as root; it leaves no namespace, mount, process or file behind.
# FLEET_KEEP=1 keeps the work directory (logs, configs) to look at.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "fleet: run as root" >&2; exit 1; }
scripts/deps.sh
cargo build --quiet --release --locked --workspace
exec python3 scripts/fleet.py "$@"
