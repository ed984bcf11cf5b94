#!/usr/bin/env bash
# The README's "First run" as an administrator pastes it: every ```sh
# block of that section, in order, unchanged, on this (throwaway, CI)
# machine playing both the authority and the client. The test only does
# what the README's prose asks of the administrator between blocks (type
# alice's password, copy the client package to the client, paste the join
# line the authority printed) and
# gives the blocks what a real machine has:
# * a network namespace of its own (unshare -n: loopback only, so port
#   8443 is free and nothing listens beyond this test), where
#   mdm.example.com is 127.0.0.1 (a private /etc/hosts, bind-mounted) and
#   /etc/machine-id is set if the machine has none;
# * the "without systemd" command line (from docs/guide/reference-server.md, "The reference
#   server") where block 2 says `systemctl enable --now`: systemd, if it
#   runs at all, does not live in this network namespace. packages.sh
#   checks the unit itself.
# apt answers its own prompts with yes (APT::Get::Assume-Yes).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
if [ "${1:-}" != --inside ]; then
  exec unshare --mount --net --propagation private "$0" --inside
fi
repo=$PWD
. tests/system/check.sh

for pkg in pam-authtoken authtoken-server; do
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -qx "install ok installed"; then
    echo "first-run: $pkg is installed; not touching it" >&2
    exit 1
  fi
done
for path in /etc/authtoken-server /var/lib/authtoken-server /etc/authtoken /etc/default/authtoken-server; do
  [ ! -e "$path" ] || { echo "first-run: $path exists; not touching it" >&2; exit 1; }
done
id alice >/dev/null 2>&1 && { echo "first-run: a user alice exists; not touching it" >&2; exit 1; }

work=$(mktemp -d /tmp/authtoken-first-run.XXXXXX)
common_auth_before=$work/common-auth.before
nsswitch_before=$work/nsswitch.before
cp /etc/pam.d/common-auth "$common_auth_before"
cp /etc/nsswitch.conf "$nsswitch_before"
new_users=()
for account in authtoken authtoken-server; do
  getent passwd "$account" >/dev/null || new_users+=("$account")
done
server_pid=
cleanup() {
  [ -z "$server_pid" ] || stop "$server_pid"
  dpkg --purge pam-authtoken authtoken-server >/dev/null 2>&1 || true
  userdel -r alice >/dev/null 2>&1 || true
  rm -rf /etc/authtoken-server /var/lib/authtoken-server /etc/authtoken /etc/default/authtoken-server
  for account in "${new_users[@]}"; do userdel "$account" >/dev/null 2>&1 || true; done
  cmp -s "$nsswitch_before" /etc/nsswitch.conf || cat "$nsswitch_before" >/etc/nsswitch.conf
  rm -rf "$work"
}
trap cleanup EXIT

# The README's blocks: those of "First run", and the server command line
# for a machine without systemd (docs/guide/reference-server.md).
awk -v dir="$work" '
  /^## / { section = $0 }
  section ~ /^## First run/ && /^```sh$/ { n++; file = dir "/block" n ".sh"; next }
  file != "" && /^```$/ { close(file); file = ""; next }
  file != "" { print > file }
' README.md
awk '
  /^Without systemd/ { seen = 1 }
  seen && /^```sh$/ { inside = 1; next }
  inside && /^```$/ { exit }
  inside { print }
' docs/guide/reference-server.md >"$work/without-systemd.sh"
check "README: the first run has five blocks (build, authority, client, enable, undo)" \
  test "$(find "$work" -name 'block*.sh' | wc -l)" = 5
check "README: the server without systemd is one exec" grep -q '^exec setpriv ' "$work/without-systemd.sh"
check "README: block 2 starts the server with systemctl" grep -q '^systemctl enable --now authtoken-server' "$work/block2.sh"
check "README: block 3 joins with the line's placeholders" \
  grep -q -- '--token ID.SECRET --ca-fingerprint sha256:HEX' "$work/block3.sh"
check "README: alice has no local account (no useradd)" refused grep -q useradd "$work"/block*.sh

# What a real machine has.
ip link set lo up
cat /etc/hosts >"$work/hosts"
echo "127.0.0.1 mdm.example.com" >>"$work/hosts"
mount --bind "$work/hosts" /etc/hosts
if [ ! -s /etc/machine-id ]; then
  systemd-id128 new >"$work/machine-id"
  mount --bind "$work/machine-id" /etc/machine-id
fi
echo 'APT::Get::Assume-Yes "true";' >"$work/apt.conf"
export APT_CONFIG=$work/apt.conf DEBIAN_FRONTEND=noninteractive

password='alice first-run Pa55'
echo "$password" >"$work/password"
# run_block N DIR: block N as pasted into a root shell in DIR, alice's
# password on standard input for whatever asks for it; stops at the
# first command that fails, and shows what the block printed then.
run_block() {
  local out=$work/block$1.out
  if (cd "$2" && bash -e "$work/block$1.sh") <"$work/password" >"$out" 2>&1; then
    return 0
  fi
  sed 's/^/    | /' "$out" >&2
  return 1
}

check "1. build" run_block 1 "$repo"

# 2. The authority, its last line (systemctl) replaced as said above.
grep -v '^systemctl ' "$work/block2.sh" >"$work/block2.tmp"
mv "$work/block2.tmp" "$work/block2.sh"
check "2. the authority: install, CA, alice, ownership, options, join token" run_block 2 "$repo"
check "2. gen-tls said what ca.pem is for" grep -q 'ca.pem (the CA: clients pin it through authtoken join' "$work/block2.out"
check "2. join-token printed the line for the client" grep -q '^authtoken join https://mdm.example.com:8443/mdm/checkin --token ' "$work/block2.out"
setsid bash "$work/without-systemd.sh" </dev/null >/dev/null 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && break; sleep 0.1; done
check "2. the server listens on 0.0.0.0:8443, as the options say" grep -q 'listening on 0.0.0.0:8443' "$work/server.log"
check "2. as its own account" test "$(ps -o user= -p "$server_pid")" = authtoken-server

# 3. The client, in a directory holding the package the README says to
# copy; the administrator pastes the join line block 2 printed (its token
# and fingerprint in place of the placeholders).
client=$work/client
mkdir "$client"
cp "$repo"/target/packages/pam-authtoken_*_amd64.deb "$client/"
read -r token fingerprint < <(sed -n 's/^authtoken join .* --token \([^ ]*\) --ca-fingerprint \([^ ]*\).*/\1 \2/p' "$work/block2.out")
sed -i "s|--token ID.SECRET --ca-fingerprint sha256:HEX|--token $token --ca-fingerprint $fingerprint|" "$work/block3.sh"
check "3. the client: install, join, check-config, alice from the authority, authtoken login" run_block 3 "$client"
check "3. the join wrote the device identity" grep -q '^joined https://mdm.example.com:8443/mdm/checkin as ' "$work/block3.out"
check "3. the device key is the machine's own, root's 0600" test "$(stat -c '%U %a' /etc/authtoken/device.key)" = "root 600"
check "3. alice is known to the machine through the authority" grep -q '^alice:\*:10000:10000::/home/alice:' "$work/block3.out"
check "3. authtoken login printed a token from the authority" grep -q '^alice: token (' "$work/block3.out"
check "3. the authority recorded the machine" bash -c "authtoken-server list-devices /var/lib/authtoken-server/users.toml | grep -q ' valid\$'"

# 4. Enable and verify.
check "4. enable, and alice signs in through the login stack" run_block 4 "$repo"
check "4. pamtester said so" grep -q 'successfully authenticated' "$work/block4.out"
check "4. a wrong password is refused (the stack works both ways)" refused bash -c \
  "echo 'not her password' | timeout 60 pamtester login alice authenticate >/dev/null 2>&1"
check "4. the authority saw alice's logins" grep -q 'user="alice"' "$work/server.log"

# 5. Undo.
check "5. undo" run_block 5 "$repo"
check "5. purging the server stopped it" gone "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=
check "5. common-auth is as it was" cmp "$common_auth_before" /etc/pam.d/common-auth
check "5. nsswitch.conf is as it was" cmp "$nsswitch_before" /etc/nsswitch.conf
check "5. alice is gone" refused getent passwd alice
check "5. nothing of either package is left" bash -c \
  '! dpkg-query -W -f="\${Status}\n" pam-authtoken authtoken-server 2>/dev/null | grep -qx "install ok installed"'
check "5. /etc/authtoken, /etc/authtoken-server, /var/lib/authtoken-server and /etc/default/authtoken-server are gone" \
  test ! -e /etc/authtoken -a ! -e /etc/authtoken-server -a ! -e /var/lib/authtoken-server -a ! -e /etc/default/authtoken-server

report first-run
