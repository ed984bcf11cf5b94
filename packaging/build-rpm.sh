#!/usr/bin/env bash
# Builds the two RPM packages (with rpmbuild, which Debian packages as
# "rpm") and prints their paths as the last two lines: pam-authtoken and
# its subpackage authtoken-server.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v rpmbuild >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rpm >/dev/null
fi
cargo build --release --locked --workspace >&2

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage="$work/stage"
packaging/stage.sh client "$stage" /usr/lib64/security /usr/lib/systemd/system
packaging/stage.sh server "$stage" /usr/lib/systemd/system

rpmbuild -bb --quiet \
  --define "_topdir $work/rpmbuild" \
  --define "_stage $stage" \
  --define "pkg_version $version" \
  --define "_build_id_links none" \
  --target x86_64-linux \
  packaging/rpm/pam-authtoken.spec >&2

mkdir -p target/packages
for name in pam-authtoken authtoken-server; do
  out="target/packages/${name}-${version}-1.x86_64.rpm"
  cp "$work/rpmbuild/RPMS/x86_64/${name}-${version}-1.x86_64.rpm" "$out"
  echo "$PWD/$out"
done
