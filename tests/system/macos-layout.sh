#!/usr/bin/env bash
# Checks the macOS package trees that packaging/build-macos-pkg.sh lays out
# (on Linux it cannot run pkgbuild): every file at the path and mode macOS
# expects, every pam.d example naming a module the package installs and
# using only OpenPAM syntax, the launchd plist well-formed and pointing at
# the installed daemon, and the install scripts parseable. The binaries in
# the tree are this machine's build standing in for the macOS build: what
# is checked is the layout, not the code (check-platforms.sh compiles that).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
packaging/build-macos-pkg.sh --bin-dir target/release --out "$out" >/dev/null
client="$out/root-client" server="$out/root-server"
. tests/system/check.sh
mode_is() { [ "$(stat -c %a "$1")" = "$2" ]; }

check "module at /usr/local/lib/pam/pam_authtoken.so.2, 0444" mode_is "$client/usr/local/lib/pam/pam_authtoken.so.2" 444
check "helper 0755" mode_is "$client/usr/local/libexec/authtoken/authtoken-helper" 755
check "chkpwd setuid 4755" mode_is "$client/usr/local/libexec/authtoken/authtoken-chkpwd" 4755
check "the administrator's command, a program of its own, 0755" mode_is "$client/usr/local/sbin/authtoken" 755
check "and not the helper" test ! -L "$client/usr/local/sbin/authtoken"
check "example config names the macOS helper account" \
  grep -qx 'helper_user = "_authtoken"' "$client/usr/local/share/authtoken/authtoken.toml"
for page in man8/pam_authtoken.8 man8/authtoken.8 man8/authtoken-helper.8 man5/authtoken.toml.5; do
  check "man page $page" test -f "$client/usr/local/share/man/$page"
done
check "server man page" test -f "$server/usr/local/share/man/man8/authtoken-server.8"
check "server binary 0755" mode_is "$server/usr/local/sbin/authtoken-server" 755

for name in sudo screensaver sshd authorization login; do
  file="$client/usr/local/share/authtoken/pam.d/$name"
  check "pam.d/$name shipped" test -f "$file"
  modules=$(awk '!/^#/ && NF >= 3 && $3 ~ /authtoken/ {print $3}' "$file")
  check "pam.d/$name uses the module" test -n "$modules"
  for module in $modules; do
    check "pam.d/$name: $module is installed" test -f "$client$module"
  done
  # OpenPAM: no [value=action] controls, no @include, no Linux modules.
  check "pam.d/$name is OpenPAM syntax" bash -c '! grep -Eq "^[^#]*(\[|@include|pam_unix|pam_deny\.so.*\[)" "$1"' _ "$file"
done

plist="$server/Library/LaunchDaemons/org.authtoken.server.plist"
check "launchd plist 0644" mode_is "$plist" 644
check "launchd plist is valid and runs the installed daemon" python3 - "$plist" "$server" <<'PY'
import os, plistlib, sys
with open(sys.argv[1], "rb") as f:
    job = plistlib.load(f)
args = job["ProgramArguments"]
assert job["Label"] == "org.authtoken.server", job["Label"]
assert os.path.isfile(sys.argv[2] + args[0]), args[0]
assert args[1] == "serve", args
assert job["UserName"] == "_authtoken-server" and job["GroupName"] == "_authtoken-server"
users = args[args.index("--users") + 1]
# Started only once the store exists; every path is the real /private one.
assert job["KeepAlive"]["PathState"] == {users: True}, job["KeepAlive"]
assert "RunAtLoad" not in job
for path in args:
    assert not path.startswith(("/etc/", "/var/", "/tmp/")), path
PY
for part in client server; do
  check "postinstall ($part) parses" sh -n "$out/scripts-$part/postinstall"
  check "account.sh ($part) parses" sh -n "$out/scripts-$part/account.sh"
done
check "client postinstall copies a file the package ships" \
  test -f "$client/usr/local/share/authtoken/authtoken.toml"

report macos-layout
