#!/usr/bin/env bash
# stage.sh PART ROOT DIR: installs one package's share of the release build
# into ROOT at the distribution's paths. Shared by build-deb.sh and
# build-rpm.sh.
#   stage.sh client ROOT SECURITY_DIR UNIT_DIR  the PAM and NSS modules, the
#                                      helper, `authtoken`, config, sync timer, man pages
#   stage.sh server ROOT UNIT_DIR      the reference authority and its unit
# The client package never carries the server, so clients do not ship a
# token authority they do not run.
set -euo pipefail
part=$1 root=$2 dir=$3 units=${4:-}
top=$(cd "$(dirname "$0")/.." && pwd)
rel="$top/target/release"
install -d -m 0755 "$root"

man_page() {
  local page=$1 section=${1##*.}
  mkdir -p "$root/usr/share/man/man$section"
  gzip -9n -c "$top/packaging/man/$page" >"$root/usr/share/man/man$section/$page.gz"
}

case "$part" in
client)
  doc="$root/usr/share/doc/pam-authtoken"
  install -D -m 0644 "$rel/libpam_authtoken.so" "$root$dir/pam_authtoken.so"
  # The NSS module beside the PAM modules' directory: glibc's library path.
  install -D -m 0644 "$rel/libnss_authtoken.so" "$root$(dirname "$dir")/libnss_authtoken.so.2"
  install -D -m 0755 "$top/packaging/nsswitch-setup" "$root/usr/libexec/authtoken/nsswitch-setup"
  for unit in authtoken-sync.service authtoken-sync.timer; do
    install -D -m 0644 "$top/packaging/systemd/$unit" "$root$units/$unit"
  done
  install -D -m 0755 "$rel/authtoken-helper" "$root/usr/libexec/authtoken/authtoken-helper"
  # setuid root: the entry point for callers without root (screen lockers).
  install -D -m 4755 "$rel/authtoken-chkpwd" "$root/usr/libexec/authtoken/authtoken-chkpwd"
  # The administrator's command on root's PATH: authtoken check-config, login, status.
  install -D -m 0755 "$rel/authtoken" "$root/usr/sbin/authtoken"
  install -D -m 0644 "$top/packaging/sysusers.d/authtoken.conf" "$root/usr/lib/sysusers.d/authtoken.conf"
  install -D -m 0644 "$top/conf/authtoken.toml" "$root/etc/authtoken/authtoken.toml"
  install -D -m 0644 "$top/packaging/tmpfiles.d/authtoken.conf" "$root/usr/lib/tmpfiles.d/authtoken.conf"
  for page in pam_authtoken.8 authtoken.8 authtoken-helper.8 authtoken.toml.5; do man_page "$page"; done
  install -D -m 0644 "$top/README.md" "$doc/README.md"
  install -D -m 0644 "$top/SECURITY.md" "$doc/SECURITY.md"
  # The administrator's guide, where the README's links find it.
  install -d -m 0755 "$doc/docs/guide"
  install -m 0644 "$top"/docs/guide/*.md "$doc/docs/guide/"
  install -D -m 0644 "$top/LICENSE" "$doc/LICENSE"
  install -d -m 0755 "$doc/examples/pam.d"
  install -m 0644 "$top"/pam.d/* "$doc/examples/pam.d/"
  chmod 0755 "$root/etc/authtoken"
  ;;
server)
  doc="$root/usr/share/doc/authtoken-server"
  install -D -m 0755 "$rel/authtoken-server" "$root/usr/sbin/authtoken-server"
  install -D -m 0644 "$top/packaging/systemd/authtoken-server.service" "$root$dir/authtoken-server.service"
  install -D -m 0644 "$top/packaging/sysusers.d/authtoken-server.conf" "$root/usr/lib/sysusers.d/authtoken-server.conf"
  man_page authtoken-server.8
  install -D -m 0644 "$top/README.md" "$doc/README.md"
  install -D -m 0644 "$top/LICENSE" "$doc/LICENSE"
  ;;
*)
  echo "stage.sh: unknown part $part" >&2
  exit 2
  ;;
esac
