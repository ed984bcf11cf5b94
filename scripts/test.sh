#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, the integration
# tests that load the real pam_authtoken.so into the real libpam against a
# real authtoken-server on 127.0.0.1, the documentation checks, and the
# system tests that build the packages, install the .debs and log in
# through real sudo, sshd and an unprivileged screen-locker-style caller;
# plus a type-check for macOS and FreeBSD and a check of the macOS
# package layout.
# Run as root on a throwaway machine (CI, a VM): the system tests install
# and purge the packages and add and delete local users. It ends by
# checking that it left no process, user, package or system file behind.
set -euo pipefail
cd "$(dirname "$0")/.."
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
cargo test --workspace --all-targets --locked
# The same server suites again on the PostgreSQL store: every
# authtoken-server they start serves from a database copy of its TOML store
# (a cluster of its own, stopped and removed at the end).
scripts/with-postgres.sh cargo test --locked -p authtoken-tests \
  --test server_attacks --test login --test rest --test network_users --test channel_binding \
  --test failover --test offline --test session --test host
# macOS and FreeBSD: type-checked for real (README: macOS, FreeBSD).
scripts/check-platforms.sh
tests/system/docs.sh
tests/system/packages.sh
tests/system/first-run.sh
tests/system/macos-layout.sh
# OpenPAM (macOS, FreeBSD) for real: built from ../shared/third-party, the
# module built for it and loaded by it (README: macOS, FreeBSD).
tests/system/openpam.sh
# Every fuzz target for 20 s, from the committed corpus and regression
# inputs (docs/FUZZING.md); any crash, panic or memory blow-up fails.
scripts/fuzz.sh --smoke
# A few runs of every benchmark, so it cannot rot (nothing about time is
# asserted; every login in it must end as it should).
scripts/bench.sh --quick
tests/system/hosts.sh
scripts/hygiene.sh check "$before"
