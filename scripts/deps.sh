#!/usr/bin/env bash
# Installs the Debian packages the build, the demo and the tests need.
# Idempotent: does nothing when everything is already there.
set -euo pipefail
packages=(
  libpam0g-dev pamtester bubblewrap libpam-modules libpam-runtime openssl ca-certificates
  # packaging and the real-host tests (tests/system/)
  dpkg-dev rpm sudo openssh-server openssh-client sshpass util-linux curl
  iproute2  # tests/system/first-run.sh brings up loopback in its own network namespace
  python3  # tests/rest.rs: the token API written from the seed pages (tests/peers/rest_peer.py)
  python3-venv  # tests/channel_binding.rs: scramp from PyPI, below
  postgresql  # tests/replicas.rs and scripts/with-postgres.sh: clusters of their own (initdb, pg_ctl)
  nginx-light  # scripts/bench.sh: the yardstick the reference server is measured against
  faketime  # tests/enrollment.rs: a device certificate renewed and expired with the clock moved (libfaketime)
  autoconf automake libtool pkg-config gcc binutils  # tests/system/openpam.sh builds OpenPAM from ../shared/third-party
  systemd  # systemd-analyze and systemd-tmpfiles check the packaged unit and tmpfiles entry
  man-db groff-base  # tests/system/docs.sh renders the man pages
  # scripts/check-platforms.sh: a toolchain with std's sources (type-checks
  # for macOS and FreeBSD) and a C compiler that targets them (ring)
  rustc-web cargo-web rust-web-src clang llvm
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "deps: cargo (Rust toolchain) is required" >&2; exit 1; }
# tests/channel_binding.rs checks SCRAM-SHA-256-PLUS (tls-server-end-point)
# against scramp, an independent SCRAM implementation Debian does not
# package: pinned, from PyPI, into a virtual environment under target/.
scramp="$(cd "$(dirname "$0")/.." && pwd)/target/scramp"
if ! "$scramp/bin/python3" -c 'import scramp' 2>/dev/null; then
  rm -rf "$scramp"
  python3 -m venv "$scramp"
  "$scramp/bin/pip" install --quiet --disable-pip-version-check 'scramp==1.5.0'
fi
