#!/usr/bin/env bash
# The whole test suite: formatting, lints, the module-tree check, unit
# tests (root-only ones included), the integration tests that load the
# real pam_authtoken.so into the real libpam against a real authtoken-server
# on 127.0.0.1 (and again on a PostgreSQL store), the documentation
# checks, and the system tests that build the packages, install the .debs
# and log in through real sudo, sshd and an unprivileged
# screen-locker-style caller; plus a type-check for macOS and FreeBSD and
# a check of the macOS package layout.
# Run as root on a throwaway machine (CI, a VM): the system tests install
# and purge the packages and add and delete local users. It ends by
# checking that it left no process, user, package or system file behind.
#
#   scripts/test.sh          everything (what CI runs)
#   scripts/test.sh quick    formatting, lints, the module tree and every
#                            test that needs neither root nor the system
#                            (unit tests of every crate): a few minutes, as
#                            any user, for everyday work
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = quick ]; then
  cargo fmt --all -- --check
  scripts/check-module-tree.py
  cargo clippy --workspace --all-targets --locked -- -D warnings
  # Unit tests only: the integration tests (authtoken-tests) need root and
  # the real libpam; tests marked "needs root" stay ignored here.
  exec cargo test --workspace --lib --bins --exclude authtoken-tests --locked
fi
scripts/deps.sh
before=$(mktemp)
trap 'rm -f "$before"' EXIT
scripts/hygiene.sh snapshot "$before"
cargo fmt --all -- --check
# Each crate's modules form a tree (no import cycles).
scripts/check-module-tree.py
cargo clippy --workspace --all-targets --locked -- -D warnings
# The integration tests load the cdylib into libpam and run the helper and
# server binaries: all come from a normal workspace build.
cargo build --locked --workspace
# Root-only unit tests (#[ignore = "needs root"]) run here, as root.
cargo test --workspace --all-targets --locked -- --include-ignored
# Every integration suite that starts an authtoken-server runs again on the
# PostgreSQL store: each server then serves from a database copy of its
# TOML store (a cluster of its own, stopped and removed at the end). A
# suite whose servers all name their own database says so with
# "postgres-rerun: no" (replicas.rs).
mapfile -t server_suites < <(grep -l 'Server::start' crates/authtoken-tests/tests/*.rs |
  xargs grep -L 'postgres-rerun: no' | xargs -n1 basename | sed 's/\.rs$//' | sort)
scripts/with-postgres.sh cargo test --locked -p authtoken-tests \
  $(printf -- '--test %s ' "${server_suites[@]}")
# macOS and FreeBSD: type-checked for real (docs/guide/macos.md, docs/guide/freebsd.md).
scripts/check-platforms.sh
tests/system/docs.sh
tests/system/packages.sh
tests/system/first-run.sh
tests/system/macos-layout.sh
# OpenPAM (macOS, FreeBSD) for real: built from ../shared/third-party, the
# module built for it and loaded by it (docs/guide/macos.md, docs/guide/freebsd.md).
tests/system/openpam.sh
# Every fuzz target for 20 s, from the committed corpus and regression
# inputs (docs/FUZZING.md); any crash, panic or memory blow-up fails.
scripts/fuzz.sh --smoke
# A few runs of every benchmark, so it cannot rot (nothing about time is
# asserted; every login in it must end as it should).
scripts/bench.sh --quick
# A fleet of 8 machines on two replicas for 60 s with every fault on its
# schedule: fails on any wrong outcome or lost state (docs/BENCHMARKS.md,
# "Fleet").
scripts/fleet.sh --quick
tests/system/hosts.sh
scripts/hygiene.sh check "$before"
