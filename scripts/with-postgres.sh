#!/usr/bin/env bash
# Runs COMMAND... with a PostgreSQL cluster of its own for the server test
# suites (AUTHTOKEN_TEST_POSTGRES names its socket directory: every
# authtoken-server the tests start then serves from a PostgreSQL copy of
# its TOML store). The cluster lives in a temporary directory, run as the
# `postgres` account with initdb and pg_ctl on a Unix socket only (no
# systemd, no port), and is stopped and removed at the end.
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=$(mktemp -d /tmp/authtoken-pgsuite.XXXXXX)
cleanup() {
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
chown postgres: "$dir"
runuser -u postgres -- "$bin/initdb" -A trust -U postgres -D "$dir/data" >/dev/null
# Enough connections for every replica of a parallel test run.
runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-k $dir -c listen_addresses='' -c max_connections=400 -c fsync=off" start >/dev/null
AUTHTOKEN_TEST_POSTGRES="$dir" "$@"
