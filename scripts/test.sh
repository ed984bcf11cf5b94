#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and the integration
# tests that load the real pam_authtoken.so into the real libpam against a
# real authtoken-server on 127.0.0.1. Run as root (the module insists on a
# root-owned config, and the tests use bwrap mount namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
