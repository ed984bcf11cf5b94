#!/usr/bin/env bash
# Builds the Debian package and prints its path as the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dpkg-deb >/dev/null || ! command -v gcc >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev gcc >/dev/null
fi
cargo build --release --locked --workspace >&2

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
multiarch=$(gcc -print-multiarch)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

packaging/stage.sh "$root" "/usr/lib/$multiarch/security" /lib/systemd/system
install -D -m 0644 packaging/debian/pam-configs/authtoken "$root/usr/share/pam-configs/authtoken"
cp LICENSE "$root/usr/share/doc/pam-authtoken/copyright"

mkdir -p "$root/DEBIAN"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
echo /etc/authtoken/authtoken.toml >"$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: pam-authtoken
Version: $version
Architecture: $arch
Maintainer: pam_authtoken maintainers <root@localhost>
Installed-Size: $size
Depends: libc6, libpam0g, libpam-runtime (>= 1.0.1-6)
Section: admin
Priority: optional
Homepage: https://github.com/pam-authtoken/pam-authtoken
Description: PAM module signing users in against a token authority
 pam_authtoken authenticates users at login (console, display manager, sudo,
 su, sshd, screen unlock) with a challenge/digest handshake against an MDM
 server (Apple UserAuthenticate, SCRAM-SHA-256) or a local token device, and
 keeps the returned AuthToken for the login session. Includes
 authtoken-helper and the reference authority authtoken-server.
 .
 The pam-auth-update profile is off until enabled with
 "pam-auth-update --enable authtoken".
CONTROL

mkdir -p target/packages
out="target/packages/pam-authtoken_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >&2
echo "$PWD/$out"
