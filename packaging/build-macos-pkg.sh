#!/usr/bin/env bash
# build-macos-pkg.sh [--bin-dir DIR] [--out DIR]: lays out the macOS
# package roots of pam-authtoken (module, helper, chkpwd) and
# authtoken-server (daemon, launchd plist), and on a Mac builds
# pam-authtoken.pkg, authtoken-server.pkg and the combined
# pam-authtoken-VERSION.pkg with pkgbuild and productbuild.
#
# DIR holds the release build for macOS (default target/release on a Mac:
# libpam_authtoken.dylib, authtoken-helper, authtoken, authtoken-chkpwd,
# authtoken-server). Elsewhere the script only lays out the trees (CI
# checks them with tests/system/macos-layout.sh) and says so.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="$top/target/release"
out="$top/target/macos-pkg"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--bin-dir DIR] [--out DIR]" >&2; exit 2 ;;
  esac
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -1)

module=""
for name in libpam_authtoken.dylib libpam_authtoken.so; do
  [ -f "$bin_dir/$name" ] && { module="$bin_dir/$name"; break; }
done
[ -n "$module" ] || { echo "build-macos-pkg: no libpam_authtoken in $bin_dir; cargo build --release first" >&2; exit 1; }

rm -rf "$out"
client="$out/root-client" server="$out/root-server"
share="$client/usr/local/share/authtoken"

# The module: macOS's OpenPAM loads third-party modules from
# /usr/local/lib/pam with the major-version suffix .2.
install -d -m 0755 "$client/usr/local/lib/pam"
install -m 0444 "$module" "$client/usr/local/lib/pam/pam_authtoken.so.2"
install -d -m 0755 "$client/usr/local/libexec/authtoken"
install -m 0755 "$bin_dir/authtoken-helper" "$client/usr/local/libexec/authtoken/authtoken-helper"
# setuid root: the entry point for callers without root (screen unlock).
install -m 4755 "$bin_dir/authtoken-chkpwd" "$client/usr/local/libexec/authtoken/authtoken-chkpwd"
install -d -m 0755 "$client/usr/local/sbin"
install -m 0755 "$bin_dir/authtoken" "$client/usr/local/sbin/authtoken"
install -d -m 0755 "$share/pam.d"
# The example config with the macOS account name; postinstall copies it to
# /private/etc/authtoken/authtoken.toml when there is none.
sed 's/^helper_user = "authtoken"$/helper_user = "_authtoken"/' "$top/conf/authtoken.toml" >"$share/authtoken.toml"
chmod 0644 "$share/authtoken.toml"
for f in "$top"/pam.d/macos-*; do
  install -m 0644 "$f" "$share/pam.d/$(basename "$f" | sed 's/^macos-//')"
done
install -m 0644 "$top/README.md" "$top/SECURITY.md" "$top/LICENSE" "$share/"
for page in pam_authtoken.8 authtoken.8 authtoken-helper.8 authtoken.toml.5; do
  section=${page##*.}
  install -d -m 0755 "$client/usr/local/share/man/man$section"
  install -m 0644 "$top/packaging/man/$page" "$client/usr/local/share/man/man$section/$page"
done

install -d -m 0755 "$server/usr/local/sbin" "$server/Library/LaunchDaemons" "$server/usr/local/share/man/man8"
install -m 0755 "$bin_dir/authtoken-server" "$server/usr/local/sbin/authtoken-server"
install -m 0644 "$top/packaging/macos/org.authtoken.server.plist" "$server/Library/LaunchDaemons/org.authtoken.server.plist"
install -m 0644 "$top/packaging/man/authtoken-server.8" "$server/usr/local/share/man/man8/authtoken-server.8"

for part in client server; do
  scripts="$out/scripts-$part"
  install -d -m 0755 "$scripts"
  install -m 0755 "$top/packaging/macos/postinstall-$part" "$scripts/postinstall"
  install -m 0644 "$top/packaging/macos/account.sh" "$scripts/account.sh"
done

if [ "$(uname -s)" != Darwin ] || ! command -v pkgbuild >/dev/null; then
  echo "build-macos-pkg: package roots laid out in $out (pkgbuild runs on macOS only)"
  exit 0
fi
pkgbuild --root "$client" --scripts "$out/scripts-client" --identifier org.authtoken.pam \
  --version "$version" --ownership recommended "$out/pam-authtoken.pkg"
pkgbuild --root "$server" --scripts "$out/scripts-server" --identifier org.authtoken.server \
  --version "$version" --ownership recommended "$out/authtoken-server.pkg"
productbuild --package "$out/pam-authtoken.pkg" --package "$out/authtoken-server.pkg" \
  "$out/pam-authtoken-$version.pkg"
echo "build-macos-pkg: $out/pam-authtoken-$version.pkg"
