#!/usr/bin/env bash
# The main job on the embedded default: build everything, start the reference
# authtoken-server on loopback (TLS with a fresh private CA) with a demo user
# store, and perform real logins through libpam with pamtester — a success, a
# wrong password and an unmanaged user — printing what happened; then a
# machine that joins the authority with one command (`authtoken join`) and
# carol, who exists only at the authority, signing in with her home made;
# then a local token device.
#
# Run as root on Debian: sudo scripts/demo.sh
# Nothing outside a temporary directory is touched: the demo's pam.d service
# is bind-mounted over /etc/pam.d in a private mount namespace (bwrap), and
# the joined machine's /var/lib, /home, nsswitch.conf and NSS library are
# the demo's own in another (unshare -m).
set -euo pipefail
cd "$(dirname "$0")/.."
# stop (and gone): end the demo's servers and wait for them.
. tests/system/check.sh
[ "$(id -u)" -eq 0 ] || { echo "run as root: sudo $0" >&2; exit 1; }

scripts/deps.sh
echo "== building (the first build takes a few minutes)"
cargo build --workspace
bin="$PWD/target/debug"
module="$bin/libpam_authtoken.so"

work=$(mktemp -d /tmp/authtoken-demo.XXXXXX)
pids=()
cleanup() {
  stop "${pids[@]}"
  rm -rf "$work"
}
trap cleanup EXIT

# start_server LOG ARGS...: runs authtoken-server serve on a free loopback
# port over TLS and sets $listening to the address it listens on.
start_server() {
  local log=$1; shift
  "$bin/authtoken-server" serve --listen 127.0.0.1:0 \
    --tls-cert "$work/tls/server.pem" --tls-key "$work/tls/server.key" "$@" </dev/null >/dev/null 2>"$log" &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q "listening on" "$log" 2>/dev/null && break
    sleep 0.1
  done
  listening=$(grep -o 'listening on [0-9.:]*' "$log" | awk '{print $3}')
  [ -n "$listening" ] || { cat "$log"; exit 1; }
}

echo "== a private CA and server certificate for 127.0.0.1"
"$bin/authtoken-server" gen-tls "$work/tls" --host 127.0.0.1 --host localhost | sed 's/^/   /'

echo "== the user store (verifiers only; SCRAM-SHA-256 with 600000 iterations)"
echo "correct horse battery staple" | "$bin/authtoken-server" add-user "$work/users.toml" alice >/dev/null
"$bin/authtoken-server" add-user "$work/users.toml" bob --policy unmanaged --no-account >/dev/null
echo "carol's own pw" | "$bin/authtoken-server" add-user "$work/users.toml" carol --gecos 'Carol C' >/dev/null
grep -c stored_key "$work/users.toml" >/dev/null &&
  echo "   alice: managed (SCRAM verifier), bob: unmanaged (410), carol: managed, with a POSIX account the directory publishes"

echo "== starting authtoken-server on 127.0.0.1"
start_server "$work/server.log" --users "$work/users.toml"
addr=$listening
echo "   listening on https://$addr"

cat >"$work/authtoken.toml" <<CONF
backend = "mdm"
url = "https://$addr/checkin"
ca_file = "$work/tls/ca.pem"
timeout_ms = 10000
helper = "$bin/authtoken-helper"
helper_user = "nobody"
cache_dir = "$work/cache"
CONF
chmod 600 "$work/authtoken.toml"
# What the packages' configure step does: the module's settings beside the
# config (the module reads those and parses no TOML).
"$bin/authtoken-helper" module-settings --config "$work/authtoken.toml" >/dev/null

mkdir -p "$work/pam.d"
cat >"$work/pam.d/authtoken-demo" <<PAM
# Our module decides for the users it manages; for anyone else it steps
# aside (PAM_IGNORE) and the rest of the stack decides — here pam_deny.
auth [success=done ignore=ignore default=die] $module config=$work/authtoken.toml
auth requisite pam_echo.so pam_authtoken stepped aside (PAM_IGNORE): not managed by this authority
auth required pam_deny.so
PAM

echo
echo "== the PAM stack of every login below: pam_authtoken decides for the users"
echo "   it manages; for anyone else it steps aside and the rest of the stack,"
echo "   here only pam_deny, refuses (a real system has pam_unix there)"

login() {
  local user=$1 password=$2 label=$3 service=${4:-authtoken-demo}
  echo
  echo "== login: $label"
  set +e
  # pamtester prints its prompt without a newline (the password comes from
  # a pipe): put what follows it on a line of its own.
  echo "$password" | bwrap --bind / / --dev /dev --proc /proc --bind "$work/pam.d" /etc/pam.d \
    --die-with-parent stdbuf -o0 pamtester "$service" "$user" authenticate 2>&1 |
    sed -e 's/Password: /Password: (typed)\n/' | sed 's/^/   /'
  local rc=${PIPESTATUS[1]}
  set -e
  echo "   -> pamtester exit status $rc ($([ "$rc" -eq 0 ] && echo signed in || echo refused))"
}

login alice "correct horse battery staple" "alice, right password"
login alice "correct horse battery stable" "alice, wrong password"
login bob "anything" "bob, a user the authority does not manage"

echo
echo "== what the authority saw (one line per request; no secrets)"
grep '^request' "$work/server.log" | sed 's/^/   /'

echo
echo "== a machine joins the authority with one command, and carol, who exists only there, signs in"
start_server "$work/enroll.log" --users "$work/users.toml" --client-ca "$work/tls/ca.pem" --enroll-dir "$work/tls"
enroll=$listening
echo "   the authority, now enrolling machines (--enroll-dir), at https://$enroll; its administrator runs"
echo "   authtoken-server join-token USERS --url https://$enroll/checkin --name demo-laptop, which prints:"
line=$("$bin/authtoken-server" join-token "$work/users.toml" --url "https://$enroll/checkin" --ca "$work/tls/ca.pem" --name demo-laptop |
  grep '^authtoken join ')
echo "   $line"
machine=$work/machine
mkdir -m 0755 "$machine" "$work/var-lib" "$work/nss-upper" "$work/nss-work"
cat >"$machine/authtoken.toml" <<CONF
# The machine's config as the package leaves it, but for the demo's helper.
backend = "mdm"
url = "https://mdm.example.com/mdm/checkin"
timeout_ms = 10000
helper = "$bin/authtoken-helper"
helper_user = "nobody"
cache_dir = "$work/cache"
CONF
"$bin/authtoken-helper" module-settings --config "$machine/authtoken.toml" >/dev/null
sed -E 's/^(passwd|group):.*/& authtoken/' /etc/nsswitch.conf >"$work/nsswitch.conf"
cp "$bin/libnss_authtoken.so" "$work/nss-upper/libnss_authtoken.so.2"
cat >"$work/pam.d/authtoken-machine" <<PAM
auth required $module config=$machine/authtoken.toml
account required pam_unix.so
session required pam_mkhomedir.so umask=0077
PAM
cat >"$work/machine.sh" <<SCRIPT
set -eo pipefail
# The machine's own /var/lib (the NSS cache), /home, nsswitch.conf (with
# authtoken) and pam.d, and the NSS module where glibc looks for it.
mount --bind "$work/var-lib" /var/lib
mount -t tmpfs -o mode=0755 tmpfs /home
mount --bind "$work/nsswitch.conf" /etc/nsswitch.conf
mount --bind "$work/pam.d" /etc/pam.d
files=\$(ldconfig -p | awk '/libnss_files.so.2/ {print \$NF; exit}')
libdir=\$(dirname "\$(readlink -f "\$files")")
mount -t overlay overlay -o "lowerdir=\$libdir,upperdir=$work/nss-upper,workdir=$work/nss-work" "\$libdir"
echo "== on the machine, as root: the line, with --network-users"
$bin/$line --name demo-laptop --network-users --config "$machine/authtoken.toml" 2>&1 | sed 's/^/   /'
echo "== what the machine now knows of carol (she is in no local file)"
echo "   \$(getent passwd carol)"
echo "== login: carol, through auth, account and session (pam_mkhomedir makes her home)"
echo "carol's own pw" | stdbuf -o0 pamtester authtoken-machine carol authenticate acct_mgmt open_session 2>&1 |
  sed -e 's/Password: /Password: (typed)\n/' | sed 's/^/   /'
echo "   her home: \$(stat -c '%n, owner %U, mode %a' /home/carol)"
SCRIPT
unshare -m --propagation private bash "$work/machine.sh"
echo
echo "== what the enrolling authority saw"
grep '^request' "$work/enroll.log" | sed 's/^/   /'
"$bin/authtoken-server" list-devices "$work/users.toml" | sed 's/^/   /'

echo
echo "== a local token device (the Encedo-HEM-style API, emulated by authtoken-server --protocol hem)"
echo "hunter2 on a stick" | "$bin/authtoken-server" enroll-device "$work/device.toml" --label alice
start_server "$work/device.log" --protocol hem --device "$work/device.toml"
device=$listening
echo "   device labelled 'alice' at https://$device"
cat >"$work/device.toml.conf" <<CONF
backend = "hem"
url = "https://$device"
ca_file = "$work/tls/ca.pem"
timeout_ms = 10000
helper = "$bin/authtoken-helper"
helper_user = "nobody"
cache_dir = "$work/cache"
CONF
chmod 600 "$work/device.toml.conf"
"$bin/authtoken-helper" module-settings --config "$work/device.toml.conf" >/dev/null
sed "s#config=$work/authtoken.toml#config=$work/device.toml.conf#" "$work/pam.d/authtoken-demo" >"$work/pam.d/authtoken-device"
login alice "hunter2 on a stick" "alice with her token device (600000-round KDF, X25519, HS256 JWT)" authtoken-device
echo
echo "== what the device saw"
grep '^request' "$work/device.log" | sed 's/^/   /'
