#!/usr/bin/env bash
# Builds the two Debian packages and prints their paths as the last two
# lines: pam-authtoken (the module and its helper: every client) and
# authtoken-server (the reference authority: the machine that serves).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dpkg-deb >/dev/null || ! command -v gcc >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev gcc >/dev/null
fi
cargo build --release --locked --workspace >&2

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
multiarch=$(gcc -print-multiarch)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p target/packages

# control NAME DEPENDS SUMMARY DESCRIPTION ROOT
control() {
  local size
  size=$(du -sk --exclude=DEBIAN "$5" | cut -f1)
  mkdir -p "$5/DEBIAN"
  cat >"$5/DEBIAN/control" <<CONTROL
Package: $1
Version: $version
Architecture: $arch
Maintainer: pam_authtoken maintainers <root@localhost>
Installed-Size: $size
Depends: $2
Section: admin
Priority: optional
Homepage: https://github.com/pam-authtoken/pam-authtoken
Description: $3
$4
CONTROL
}

client="$work/client"
# The module goes where this release's own PAM modules are (bookworm:
# /lib/MULTIARCH/security, owned by libpam-modules; later releases: /usr/lib),
# so merged-/usr aliasing never puts one directory under two packages.
security=$(dpkg-query -L libpam-modules 2>/dev/null | sed -n 's|/pam_unix\.so$||p' | head -1)
security=${security:-/usr/lib/$multiarch/security}
packaging/stage.sh client "$client" "$security" /lib/systemd/system
install -D -m 0644 packaging/debian/pam-configs/authtoken "$client/usr/share/pam-configs/authtoken"
install -D -m 0644 packaging/debian/pam-configs/authtoken-strict "$client/usr/share/pam-configs/authtoken-strict"
cp LICENSE "$client/usr/share/doc/pam-authtoken/copyright"
mkdir -p "$client/DEBIAN"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$client/DEBIAN/"
echo /etc/authtoken/authtoken.toml >"$client/DEBIAN/conffiles"
control pam-authtoken "libc6, libpam0g, libpam-runtime (>= 1.0.1-6), passwd" \
  "PAM module signing users in against a token authority" \
" pam_authtoken authenticates users at login (console, display manager, sudo,
 su, sshd, screen unlock) with a challenge/digest handshake against an MDM
 server (Apple UserAuthenticate, SCRAM-SHA-256) or a local token device, and
 keeps the returned AuthToken for the login session. Includes
 authtoken-helper, which does all network I/O in a child process.
 .
 The pam-auth-update profile is off until enabled with
 \"pam-auth-update --enable authtoken\"." "$client"

server="$work/server"
packaging/stage.sh server "$server" /lib/systemd/system
cp LICENSE "$server/usr/share/doc/authtoken-server/copyright"
mkdir -p "$server/DEBIAN"
install -m 0755 packaging/debian/server-postinst "$server/DEBIAN/postinst"
install -m 0755 packaging/debian/server-prerm "$server/DEBIAN/prerm"
install -m 0755 packaging/debian/server-postrm "$server/DEBIAN/postrm"
control authtoken-server "libc6, passwd" \
  "Reference token authority for pam_authtoken" \
" authtoken-server answers Apple MDM UserAuthenticate check-ins with
 SCRAM-SHA-256 (or HTTP Digest for compatibility) over a store of verifiers,
 and can emulate an Encedo-HEM-style token device: the embedded default for
 a first run, demos, tests and small sites. Install it on the machine that
 serves logins, not on every client." "$server"

for part in client:pam-authtoken server:authtoken-server; do
  out="target/packages/${part#*:}_${version}_${arch}.deb"
  dpkg-deb --root-owner-group -Zxz --build "$work/${part%%:*}" "$out" >&2
  echo "$PWD/$out"
done
