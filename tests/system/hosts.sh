#!/usr/bin/env bash
# The real setuid programs: sudo -S run by an ordinary local user, and sshd
# on a loopback port (UsePAM, keyboard-interactive), each with a pam.d stack
# that includes the module, against authtoken-server on 127.0.0.1 over TLS;
# and a screen-locker-style caller without root (pamtester run as the user),
# which the module serves through the setuid authtoken-chkpwd.
# The stacks have Debian's common-auth shape (module, then pam_unix with
# try_first_pass); the user's local password is random and never used, so
# only the token authority can let them in.
#
# Our pam.d and sudoers.d are bind-mounted over /etc/pam.d and
# /etc/sudoers.d inside a private mount namespace (unshare -m), so the
# host's files are never touched. (bwrap would set no_new_privs, which stops
# setuid sudo.)
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }

cargo build --quiet --locked --workspace
bin="$PWD/target/debug"
module="$bin/libpam_authtoken.so"
user=authtoken-hosttest
token_pw='token Pa55 for sudo+ssh'
wrong_pw='not the token password'

work=$(mktemp -d /tmp/authtoken-hosts.XXXXXX)
chmod 0700 "$work"
pids=()
made_etc_authtoken=
cleanup() {
  stop "${pids[@]}"
  # sshd runs under the namespace's shell: stop it by its own pid file.
  [ -s "$work/sshd.pid" ] && stop "$(cat "$work/sshd.pid")"
  userdel "$user" >/dev/null 2>&1 || true
  [ -z "$made_etc_authtoken" ] || rmdir /etc/authtoken 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

. tests/system/check.sh

# An ordinary local user whose local password nobody knows.
id "$user" >/dev/null 2>&1 || useradd -M -s /bin/sh "$user"
echo "$user:$(head -c 24 /dev/urandom | base64)" | chpasswd

"$bin/authtoken-server" gen-tls "$work/tls"
echo "$token_pw" | "$bin/authtoken-server" add-user "$work/users.toml" "$user" --iterations 4096
"$bin/authtoken-server" serve --listen 127.0.0.1:0 --users "$work/users.toml" --failure-delay-ms 100 \
  --tls-cert "$work/tls/server.pem" --tls-key "$work/tls/server.key" </dev/null >/dev/null 2>"$work/server.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && break; sleep 0.1; done
addr=$(grep -o 'listening on [0-9.:]*' "$work/server.log" | awk '{print $3}')
[ -n "$addr" ] || { cat "$work/server.log"; exit 1; }

cat >"$work/authtoken.toml" <<CONF
backend = "mdm"
url = "https://$addr/checkin"
ca_file = "$work/tls/ca.pem"
timeout_ms = 8000
udid = "01234567-89AB-CDEF-0123-456789ABCDEF"
helper = "$bin/authtoken-helper"
helper_user = "nobody"
cache_dir = "$work/cache"
# The test user is enrolled with 4096 rounds (fast); the default floor is 100000.
min_scram_iterations = 4096
CONF
chmod 0600 "$work/authtoken.toml"
# The module's settings beside the config, as the packages make them.
"$bin/authtoken-helper" module-settings --config "$work/authtoken.toml" >/dev/null

mkdir -p "$work/pam.d" "$work/sudoers.d"
cp -a /etc/pam.d/. "$work/pam.d/"
for service in sudo sshd; do
  cat >"$work/pam.d/$service" <<PAM
auth     [success=2 default=ignore]     $module config=$work/authtoken.toml
auth     [success=1 default=ignore]     pam_unix.so nullok try_first_pass
auth     requisite                      pam_deny.so
auth     required                       pam_permit.so
account  required                       pam_permit.so
session  optional                       $module config=$work/authtoken.toml
session  required                       pam_permit.so
PAM
done
echo "$user ALL=(root) ALL" >"$work/sudoers.d/authtoken-hosttest"
chmod 0440 "$work/sudoers.d/authtoken-hosttest"

# chkpwd reads the system config only: inside the namespace, /etc/authtoken
# is ours. (The mount point must exist; if the host has none, an empty one
# is made for the run and removed after it.)
if [ ! -d /etc/authtoken ]; then mkdir /etc/authtoken; made_etc_authtoken=yes; fi
mkdir -p "$work/etc-authtoken" "$work/libexec"
chmod 0711 "$work"   # the ordinary user may pass through, not list
chmod 0755 "$work/etc-authtoken" "$work/libexec"
install -m 4755 -o root -g root "$bin/authtoken-chkpwd" "$work/libexec/authtoken-chkpwd"
sed '/^cache_dir/d' "$work/authtoken.toml" >"$work/etc-authtoken/authtoken.toml"
cat >>"$work/etc-authtoken/authtoken.toml" <<CONF
cache_dir = "$work/cache"
chkpwd = "$work/libexec/authtoken-chkpwd"
CONF
chmod 0644 "$work/etc-authtoken/authtoken.toml"
"$bin/authtoken-helper" module-settings --config "$work/etc-authtoken/authtoken.toml" >/dev/null
cat >"$work/pam.d/unlock" <<PAM
auth     required                       $module config=/etc/authtoken/authtoken.toml
account  required                       pam_permit.so
PAM

in_namespace() {
  unshare -m --propagation private bash -c \
    "mount --bind '$work/pam.d' /etc/pam.d && mount --bind '$work/sudoers.d' /etc/sudoers.d && mount --bind '$work/etc-authtoken' /etc/authtoken && $1"
}

# sudo: setuid root, started by the ordinary user (setpriv drops to it
# without no_new_privs).
sudo_as_user() {
  local password=$1
  printf '%s\n' "$password" | in_namespace \
    "exec timeout 60 setpriv --reuid=$user --regid=$user --init-groups sudo -S -k -p '' -u root id -u"
}
check "sudo is setuid root" test -u "$(command -v sudo)"
out=$(sudo_as_user "$token_pw" 2>"$work/sudo.err") || true
check "sudo with the authority's password runs the command as root" test "$out" = "0"
out=$(sudo_as_user "$wrong_pw" 2>>"$work/sudo.err") && status=0 || status=$?
check "sudo with another password is refused" test "$status" -ne 0 -a "$out" != "0"
# sudo -v signs in, opens no session and exits without pam_end: no live
# token may stay behind. In a process session of its own, as a terminal
# gives it (under CI's PID namespace the runner's session leader is not
# visible, and without a session the module leaves nothing anyway).
sudo_validate() {
  printf '%s\n' "$token_pw" | in_namespace \
    "exec setsid --wait timeout 60 setpriv --reuid=$user --regid=$user --init-groups sudo -S -k -p '' -v"
}
check "sudo -v with the authority's password" sudo_validate
check "sudo -v leaves no hand-off (no live token) in the cache" \
  test -z "$(find "$work/cache" -name '*.handoff' 2>/dev/null)"
check "the cache sudo created (with the caller's gid) is root:root" \
  test "$(stat -c %u:%g "$work/cache")" = 0:0
check "the authority saw the three sudo logins" test "$(grep -c "user=\"$user\" step=challenge" "$work/server.log")" -eq 3

# A screen locker: pam_authenticate in a process of the ordinary user, for
# the user itself (no root anywhere in it but the setuid chkpwd).
unlock_as_user() {
  local who=$1 password=$2
  printf '%s\n' "$password" | in_namespace \
    "exec timeout 60 setpriv --reuid=$user --regid=$user --init-groups pamtester unlock $who authenticate" >/dev/null 2>&1
}
check "authtoken-chkpwd is setuid root" test "$(stat -c '%a %U' "$work/libexec/authtoken-chkpwd")" = "4755 root"
check "a caller without root signs its own user in" unlock_as_user "$user" "$token_pw"
check "a caller without root: a wrong password is refused" refused unlock_as_user "$user" "$wrong_pw"
check "a caller without root cannot ask about another user" refused unlock_as_user root "$token_pw"
check "no request was made for the other user" test "$(grep -c 'user="root" ' "$work/server.log")" -eq 0
start=$(date +%s%N)
burst_ok=0
for _ in $(seq 10); do unlock_as_user "$user" "$token_pw" && burst_ok=$((burst_ok + 1)); done
burst_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "hosts: 10 unlocks in a row took $burst_ms ms ($burst_ok signed in)"
check "10 unlocks in a row are spaced at least 1 s apart (>= 9 s)" test "$burst_ms" -ge 9000
check "and each of them signed in" test "$burst_ok" -eq 10

# sshd on a free loopback port.
challenges_before_ssh=$(grep -c "user=\"$user\" step=challenge" "$work/server.log")
port=
for candidate in $(shuf -i 20000-60999 -n 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null || { port=$candidate; break; }
done
[ -n "$port" ] || { echo "no free port" >&2; exit 1; }
ssh-keygen -q -t ed25519 -N '' -f "$work/hostkey"
cat >"$work/sshd_config" <<SSHD
ListenAddress 127.0.0.1
Port $port
HostKey $work/hostkey
PidFile $work/sshd.pid
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
PubkeyAuthentication no
PermitRootLogin no
AllowUsers $user
StrictModes no
SSHD
mkdir -p /run/sshd && chmod 0755 /run/sshd
in_namespace "exec /usr/sbin/sshd -D -e -f '$work/sshd_config'" </dev/null >"$work/sshd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

ssh_login() {
  timeout 60 sshpass -p "$1" ssh -F /dev/null -p "$port" \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    -o PreferredAuthentications=keyboard-interactive -o PubkeyAuthentication=no \
    -o NumberOfPasswordPrompts=1 -o ConnectTimeout=20 \
    "$user@127.0.0.1" 'echo signed-in-as-$(id -un) file=$AUTHTOKEN_FILE'
}
out=$(ssh_login "$token_pw" 2>"$work/ssh.err") || true
check "ssh keyboard-interactive with the authority's password is admitted" \
  grep -q "^signed-in-as-$user " <<<"$out"
# sshd authenticates in a forked child; the token still reaches the session.
check "the ssh session has AUTHTOKEN_FILE from the session cache" \
  grep -Eq " file=$work/cache/[^ ]+/$user[.]token$" <<<"$out"
out=$(ssh_login "$wrong_pw" 2>>"$work/ssh.err") && status=0 || status=$?
check "ssh with another password is refused" test "$status" -ne 0 -a -z "$out"
check "the authority saw both ssh logins" \
  test "$(grep -c "user=\"$user\" step=challenge" "$work/server.log")" -eq $((challenges_before_ssh + 2))

# The module as sshd's only auth module: with privilege separation the
# password is checked in a forked child and pam_setcred runs in the
# parent, where only the child's hand-off says who signed in. The stack
# has nothing after the module to hide a setcred that stepped aside
# (both PAM libraries refuse a chain where every module ignored setcred).
cat >"$work/pam.d/sshd" <<PAM
auth     required                       $module config=$work/authtoken.toml
account  required                       pam_permit.so
session  optional                       $module config=$work/authtoken.toml
session  required                       pam_permit.so
PAM
out=$(ssh_login "$token_pw" 2>>"$work/ssh.err") || true
check "ssh with the module as the only auth module: admitted (setcred in sshd's parent)" \
  grep -q "^signed-in-as-$user " <<<"$out"
check "and the session has AUTHTOKEN_FILE" grep -Eq " file=$work/cache/[^ ]+/$user[.]token$" <<<"$out"
out=$(ssh_login "$wrong_pw" 2>>"$work/ssh.err") && status=0 || status=$?
check "the module as the only auth module: another password is refused" test "$status" -ne 0 -a -z "$out"

if [ "$failed" -ne 0 ]; then
  for f in server.log sudo.err sshd.log ssh.err; do echo "--- $f"; cat "$work/$f" 2>/dev/null || true; done
fi
report hosts
