#!/usr/bin/env bash
# stage.sh ROOT SECURITY_DIR UNIT_DIR: installs the release build into ROOT
# at the distribution's paths. Shared by build-deb.sh and build-rpm.sh.
set -euo pipefail
root=$1 security_dir=$2 unit_dir=$3
top=$(cd "$(dirname "$0")/.." && pwd)
install -d -m 0755 "$root"
rel="$top/target/release"
doc="$root/usr/share/doc/pam-authtoken"

install -D -m 0644 "$rel/libpam_authtoken.so" "$root$security_dir/pam_authtoken.so"
install -D -m 0755 "$rel/authtoken-helper" "$root/usr/libexec/authtoken/authtoken-helper"
install -D -m 0755 "$rel/authtoken-server" "$root/usr/sbin/authtoken-server"
install -D -m 0644 "$top/conf/authtoken.toml" "$root/etc/authtoken/authtoken.toml"
install -D -m 0644 "$top/packaging/tmpfiles.d/authtoken.conf" "$root/usr/lib/tmpfiles.d/authtoken.conf"
install -D -m 0644 "$top/packaging/systemd/authtoken-server.service" "$root$unit_dir/authtoken-server.service"
for page in pam_authtoken.8 authtoken-helper.8 authtoken-server.8 authtoken.toml.5; do
  section=${page##*.}
  mkdir -p "$root/usr/share/man/man$section"
  gzip -9n -c "$top/packaging/man/$page" >"$root/usr/share/man/man$section/$page.gz"
done
install -D -m 0644 "$top/README.md" "$doc/README.md"
install -D -m 0644 "$top/LICENSE" "$doc/LICENSE"
install -d -m 0755 "$doc/examples/pam.d"
install -m 0644 "$top"/pam.d/* "$doc/examples/pam.d/"
chmod 0755 "$root/etc/authtoken"
