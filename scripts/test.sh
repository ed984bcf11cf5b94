#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, the integration
# tests that load the real pam_authtoken.so into the real libpam against a
# real authtoken-server on 127.0.0.1, and the system tests that build the
# packages, install the .deb and log in through real sudo and sshd.
# Run as root on a throwaway machine (CI, a VM): the system tests install
# and purge the package and add and delete a local user.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# cargo test links the library as an rlib; the cdylib the tests load into
# libpam comes from a normal build.
cargo build --locked --lib --bins
cargo test --all-targets --locked
tests/system/packages.sh
tests/system/hosts.sh
