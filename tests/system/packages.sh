#!/usr/bin/env bash
# Builds the .debs and .rpms (the client package pam-authtoken and the
# server package authtoken-server), checks their listings, then installs
# both .debs on this (throwaway, CI) machine: pam-auth-update --enable puts
# the module into common-auth before pam_unix, and dpkg -r / --purge take
# everything out and leave common-auth exactly as it was.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }

mapfile -t debs < <(packaging/build-deb.sh | tail -2)
mapfile -t rpms < <(packaging/build-rpm.sh | tail -2)
deb=${debs[0]} server_deb=${debs[1]}
rpm=${rpms[0]} server_rpm=${rpms[1]}
. tests/system/check.sh
# Where this release keeps its PAM modules (and glibc its NSS modules).
security=$(dpkg-query -L libpam-modules | sed -n 's|/pam_unix\.so$||p' | head -1)
libdir=$(dirname "$security")
run_checked() { "$@" >/dev/null 2>&1; }
contains() { grep -qxF -- "$2" <<<"$1"; }

common=(
  /usr/sbin/authtoken
  /usr/libexec/authtoken/authtoken-helper
  /usr/libexec/authtoken/authtoken-chkpwd
  /usr/lib/sysusers.d/authtoken.conf
  /etc/authtoken/authtoken.toml
  /usr/lib/tmpfiles.d/authtoken.conf
  /usr/share/man/man8/pam_authtoken.8.gz
  /usr/share/man/man8/authtoken-helper.8.gz
  /usr/share/man/man8/authtoken.8.gz
  /usr/share/man/man5/authtoken.toml.5.gz
  /usr/share/doc/pam-authtoken/README.md
  /usr/share/doc/pam-authtoken/SECURITY.md
  /usr/share/doc/pam-authtoken/LICENSE
  /usr/share/doc/pam-authtoken/docs/guide/network-users.md
)
server_files=(
  /usr/sbin/authtoken-server
  /usr/lib/sysusers.d/authtoken-server.conf
  /usr/share/man/man8/authtoken-server.8.gz
)
listing() { dpkg-deb -c "$1" | awk '{print $6}' | sed 's|^\./|/|'; }
deb_list=$(listing "$deb")
server_deb_list=$(listing "$server_deb")
for path in "${common[@]}" "$security/pam_authtoken.so" \
  "$libdir/libnss_authtoken.so.2" /lib/systemd/system/authtoken-sync.service \
  /lib/systemd/system/authtoken-sync.timer \
  /usr/share/pam-configs/authtoken /usr/share/pam-configs/authtoken-strict /usr/share/doc/pam-authtoken/copyright; do
  check "deb contains $path" contains "$deb_list" "$path"
done
for path in "${server_files[@]}" /lib/systemd/system/authtoken-server.service \
  /usr/share/doc/authtoken-server/copyright; do
  check "server deb contains $path" contains "$server_deb_list" "$path"
  check "client deb lacks $path" refused contains "$deb_list" "$path"
done
check "deb: authtoken-chkpwd is setuid root" grep -q '^-rwsr-xr-x root/root .* ./usr/libexec/authtoken/authtoken-chkpwd$' <<<"$(dpkg-deb -c "$deb")"
check "deb: postinst honours dpkg-statoverride for authtoken-chkpwd" grep -q 'dpkg-statoverride --list' <<<"$(dpkg-deb -I "$deb" postinst)"
check "deb: config is 0644 root" grep -q '^-rw-r--r-- root/root .* ./etc/authtoken/authtoken.toml$' <<<"$(dpkg-deb -c "$deb")"
check "deb: config is a conffile" grep -qx /etc/authtoken/authtoken.toml <<<"$(dpkg-deb -I "$deb" conffiles)"
check "deb: postinst runs pam-auth-update --package" grep -q 'pam-auth-update --package' <<<"$(dpkg-deb -I "$deb" postinst)"
check "deb: prerm removes both profiles" grep -q 'pam-auth-update --package --remove authtoken authtoken-strict' <<<"$(dpkg-deb -I "$deb" prerm)"

rpm_list=$(rpm -qlp "$rpm" 2>/dev/null)
server_rpm_list=$(rpm -qlp "$server_rpm" 2>/dev/null)
for path in "${common[@]}" /usr/lib64/security/pam_authtoken.so /usr/lib64/libnss_authtoken.so.2 \
  /usr/lib/systemd/system/authtoken-sync.service /usr/lib/systemd/system/authtoken-sync.timer; do
  check "rpm contains $path" contains "$rpm_list" "$path"
done
for path in "${server_files[@]}" /usr/lib/systemd/system/authtoken-server.service; do
  check "server rpm contains $path" contains "$server_rpm_list" "$path"
  check "client rpm lacks $path" refused contains "$rpm_list" "$path"
done
check "rpm: config is %config(noreplace)" grep -qx 'cn /etc/authtoken/authtoken.toml' <<<"$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" 2>/dev/null)"
check "rpm: erasing removes the offline verifiers" grep -q 'rm -rf /var/lib/authtoken' <<<"$(rpm -qp --scripts "$rpm" 2>/dev/null)"
check "rpm: install adds authtoken to nsswitch.conf (without authselect)" grep -q 'nsswitch-setup add' <<<"$(rpm -qp --scripts "$rpm" 2>/dev/null)"
check "rpm: erase takes it off" grep -q 'nsswitch-setup remove' <<<"$(rpm -qp --scripts "$rpm" 2>/dev/null)"
check "rpm: authtoken-chkpwd is setuid root" grep -qx -- '-rwsr-xr-x root root /usr/libexec/authtoken/authtoken-chkpwd' <<<"$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm" 2>/dev/null)"
check "rpm: config is 0644 root" grep -qx -- '-rw-r--r-- root root /etc/authtoken/authtoken.toml' <<<"$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm" 2>/dev/null)"

before=$(mktemp)
cp /etc/pam.d/common-auth "$before"
nsswitch_before=$(mktemp)
cp /etc/nsswitch.conf "$nsswitch_before"
server_pid= created_server_etc= created_server_state=
# The packages create system accounts and keep them on purge (Debian
# policy); the test removes the ones it caused.
new_users=()
for account in authtoken authtoken-server; do
  getent passwd "$account" >/dev/null || new_users+=("$account")
done
pkgwork=
cleanup() {
  [ -z "$server_pid" ] || stop "$server_pid"
  if [ -n "$pkgwork" ]; then
    [ -s "$pkgwork/sshd.pid" ] && stop "$(cat "$pkgwork/sshd.pid")"
    rm -rf "$pkgwork"
  fi
  [ -z "$created_server_etc" ] || rm -rf /etc/authtoken-server
  [ -z "$created_server_state" ] || rm -rf /var/lib/authtoken-server
  rm -f /etc/authtoken/ca.pem /etc/authtoken/device.pem /etc/authtoken/device.key /etc/default/authtoken-server
  dpkg --purge pam-authtoken authtoken-server >/dev/null 2>&1 || true
  for account in "${new_users[@]}"; do userdel "$account" >/dev/null 2>&1 || true; done
  # A failed run may leave our edit: the copy from before is the truth.
  cmp -s "$nsswitch_before" /etc/nsswitch.conf || cat "$nsswitch_before" >/etc/nsswitch.conf
  rm -f "$before" "$nsswitch_before"
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
install_log=$(mktemp)
check "dpkg -i (client and server)" bash -c "dpkg -i '$deb' '$server_deb' >'$install_log' 2>&1"
check "the client package says what to do next" grep -q "pam-auth-update --enable authtoken" "$install_log"
check "the server package says what to do next" grep -q "authtoken-server gen-tls" "$install_log"
rm -f "$install_log"
check "helper installed" test -x /usr/libexec/authtoken/authtoken-helper
check "module installed beside the release's own (pam_unix.so)" test -f "$security/pam_authtoken.so"
check "authtoken-chkpwd installed setuid root" test "$(stat -c '%a %U %G' /usr/libexec/authtoken/authtoken-chkpwd)" = "4755 root root"
check "helper account authtoken exists, without a shell" test "$(getent passwd authtoken | cut -d: -f7)" = /usr/sbin/nologin
check "server account authtoken-server exists" getent passwd authtoken-server
check "profile off until enabled" cmp "$before" /etc/pam.d/common-auth
# after_systemd DB: authtoken follows systemd on the DB: line (after files
# when the line has no systemd), so systemd's own names are never shadowed.
after_systemd() {
  local line before
  line=$(grep -E "^$1:" /etc/nsswitch.conf)
  before=files
  grep -Eq '[[:space:]]systemd([[:space:]]|$)' <<<"$line" && before=systemd
  grep -Eq "[[:space:]]$before[[:space:]]+authtoken([[:space:]]|\$)" <<<"$line"
}
check "nsswitch.conf: passwd gains authtoken after systemd (or files)" after_systemd passwd
check "nsswitch.conf: group gains authtoken after systemd (or files)" after_systemd group
# setup_line LINE: what nsswitch-setup add makes of a passwd: line.
setup_line() {
  local f
  f=$(mktemp)
  printf '%s\nhosts: files dns\n' "$1" >"$f"
  /usr/libexec/authtoken/nsswitch-setup add "$f"
  head -1 "$f"
  rm -f "$f"
}
check "nsswitch-setup: an earlier authtoken is moved after systemd" \
  test "$(setup_line 'passwd: files authtoken systemd')" = "passwd: files systemd authtoken"
check "nsswitch-setup: after files without systemd, spacing kept" \
  test "$(setup_line 'passwd:     files')" = "passwd:     files authtoken"
check "nsswitch-setup: an action stays with its source" \
  test "$(setup_line 'passwd: files systemd [NOTFOUND=return] ldap')" = "passwd: files systemd [NOTFOUND=return] authtoken ldap"
check "nsswitch.conf: nothing else changed" bash -c "diff <(sed -E '/^(passwd|group):/s/ authtoken//' /etc/nsswitch.conf) '$nsswitch_before'"
check "the sync timer is enabled" test -L /etc/systemd/system/timers.target.wants/authtoken-sync.timer
check "NSS module installed beside libnss_files" test -f "$libdir/libnss_authtoken.so.2" -a -e "$libdir/libnss_files.so.2"
check "with no cache, local lookups still work" test "$(getent passwd root | cut -d: -f3)" = 0
check "cache dir created 0700" test "$(stat -c %a /run/authtoken)" = 700
check "installed config is root-owned 0644" test "$(stat -c '%U %a' /etc/authtoken/authtoken.toml)" = "root 644"
check "pam-auth-update --enable authtoken" pam-auth-update --enable authtoken
check "module line in common-auth" grep -Eq '^auth[[:space:]]+\[success=[0-9]+ default=ignore\][[:space:]]+pam_authtoken.so' /etc/pam.d/common-auth
check "module before pam_unix" bash -c "grep -n 'pam_authtoken.so\|pam_unix.so' /etc/pam.d/common-auth | head -1 | grep -q pam_authtoken"
check "session line in common-session" grep -q 'pam_authtoken.so' /etc/pam.d/common-session
# Real logins through the installed common-auth, with the authority
# unreachable (the example config's host does not resolve here): a local
# account's own password still signs it in, and a wrong one does not.
local_user=authtoken-pkgtest
id "$local_user" >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin "$local_user"
echo "$local_user:local-Pa55" | chpasswd
# A real login of the local account through the installed common-auth.
common_auth_login() { echo "$1" | timeout 60 pamtester common-auth "$local_user" authenticate; }
check "local account signs in with the module enabled" common_auth_login local-Pa55
check "wrong local password refused" refused common_auth_login wrong

# The installed package end to end, the way the README sets it up: the
# reference authority from the package, with a CA and a user store under
# /etc/authtoken-server, started by the systemd unit's own command line
# (CI runs no systemd), and the installed config pointed at it. The local
# account's authority password differs from its local one, so a login
# with it can only be the module's doing.
unit=/lib/systemd/system/authtoken-server.service
check "systemd unit verifies" systemd-analyze verify --man=no "$unit"
# Every unit the packages ship is confined: systemd's own exposure score,
# at most 2.0 (0 is fully confined, 10 not at all).
# Every unit that runs a process (a .timer only starts the .service).
for shipped in $(dpkg -L pam-authtoken authtoken-server | grep -E '\.(service|socket)$'); do
  check "$(basename "$shipped"): exposure $(systemd-analyze security --offline=true "$shipped" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p') <= 2.0" \
    systemd-analyze security --offline=true --threshold=20 "$shipped"
done
check "the unit sets LimitNOFILE" grep -q '^LimitNOFILE=' "$unit"
tmp_root=$(mktemp -d)
check "tmpfiles entry applies" systemd-tmpfiles --create --root="$tmp_root" /usr/lib/tmpfiles.d/authtoken.conf
check "tmpfiles entry creates /run/authtoken 0700 root" \
  test "$(stat -c '%a %U %G' "$tmp_root/run/authtoken" 2>/dev/null)" = "700 root root"
rm -rf "$tmp_root"
server_etc=/etc/authtoken-server
[ ! -e "$server_etc" ] || { echo "packages: $server_etc exists; not touching it" >&2; exit 1; }
created_server_etc=yes
# The store where the server may write it (join tokens used, devices
# enrolled): its account's state directory, as the README sets it up.
server_state=/var/lib/authtoken-server
[ ! -e "$server_state" ] || { echo "packages: $server_state exists; not touching it" >&2; exit 1; }
created_server_state=yes
server_store=$server_state/users.toml
check "gen-tls" authtoken-server gen-tls "$server_etc/tls"
check "gen-tls made the device-issuing CA under the root" \
  openssl verify -CAfile "$server_etc/tls/ca.pem" "$server_etc/tls/device-ca.pem"
check "the state directory, the server account's" \
  install -d -m 0700 -o authtoken-server -g authtoken-server "$server_state"
check "add-user (managed)" bash -c "echo authority-Pa55 | authtoken-server add-user $server_store $local_user"
check "add-user (unmanaged)" authtoken-server add-user "$server_store" authtoken-unmanaged --policy unmanaged </dev/null
# A network user: known only to the authority, never to this machine.
check "add-group (directory)" authtoken-server add-group "$server_store" engineers --gid 10100
check "add-user carol with a POSIX account" bash -c \
  "echo carol-Pa55 | authtoken-server add-user $server_store carol --uid 10501 --gecos 'Carol C' --groups engineers"
check "unit's start condition holds" bash -c "for path in \$(sed -n 's/^ConditionPathExists=|\\{0,1\\}//p' '$unit'); do test -e \"\$path\" && exit 0; done; exit 1"
unit_user=$(sed -n 's/^User=//p' "$unit")
unit_group=$(sed -n 's/^Group=//p' "$unit")
check "unit runs as its own account" test "$unit_user" = authtoken-server
# As the README says: the service account owns the store, its key and the
# device CA's key, no more.
chown "$unit_user:$unit_group" "$server_store" "$server_etc/tls/server.key" "$server_etc/tls/device-ca.key"
check "the CA key stays root's, 0600" test "$(stat -c '%U %a' "$server_etc/tls/ca.key")" = "root 600"
unit_opts=$(sed -n 's/^Environment="AUTHTOKEN_SERVER_OPTS=\(.*\)"$/\1/p' "$unit")
unit_exec=$(sed -n 's/^ExecStart=//p' "$unit")
read -ra server_cmd <<<"${unit_exec//\$AUTHTOKEN_SERVER_OPTS/$unit_opts}"
# The store where the server may write, and enrollment with the directory
# to enrolled devices: what an administrator puts in
# /etc/default/authtoken-server (README, "First run").
server_cmd=("${server_cmd[@]/\/etc\/authtoken-server\/users.toml/$server_store}")
server_cmd+=(--client-ca "$server_etc/tls/ca.pem" --enroll-dir "$server_etc/tls" --client-cert-optional)
server_log=$(mktemp)
setpriv --reuid="$unit_user" --regid="$unit_group" --clear-groups --no-new-privs \
  "${server_cmd[@]}" </dev/null >/dev/null 2>"$server_log" &
server_pid=$!
listen=$(grep -o -- '--listen [0-9.:]*' <<<"$unit_opts" | awk '{print $2}')
for _ in $(seq 100); do grep -q "listening on" "$server_log" && break; sleep 0.1; done
check "server started by the unit's ExecStart listens on $listen" grep -q "listening on $listen" "$server_log"
check "add-user as root keeps the store the service account's" bash -c \
  "echo other-Pa55 | authtoken-server add-user $server_store authtoken-other && test \"\$(stat -c %U $server_store)\" = $unit_user"
check "reload (SIGHUP) as the unit does it" kill -HUP "$server_pid"
check "the server reloaded the store it can still read" bash -c "sleep 0.5; grep -q 'reloaded' '$server_log'"
# As the README says: the machine joins with the line join-token prints
# (its key made here; the CA pinned by its fingerprint).
[ -s /etc/machine-id ] || sed -i 's|^#udid = |udid = |' /etc/authtoken/authtoken.toml
join_line=$(authtoken-server join-token "$server_store" --url "https://$listen/mdm/checkin" --ca "$server_etc/tls/ca.pem" | grep '^authtoken join ')
read -ra join_cmd <<<"$join_line"
check "authtoken join (with network users)" bash -c \
  "PATH=/usr/sbin:/usr/bin:/sbin:/bin ${join_cmd[*]} --network-users --name pkgtest >/dev/null"
check "the join kept the key here, root's 0600" test "$(stat -c '%U %a' /etc/authtoken/device.key)" = "root 600"
check "the authority recorded the device" bash -c "authtoken-server list-devices '$server_store' | grep -q 'pkgtest.* valid$'"
check "deb: authtoken(8) is the command's own page" bash -c \
  "dpkg-deb -c '$deb' | grep -q ' ./usr/share/man/man8/authtoken.8.gz$' && zcat /usr/share/man/man8/authtoken.8.gz | grep -q '^.B authtoken join'"
check "authtoken --help names itself authtoken" bash -c 'PATH=/usr/sbin:/usr/bin:/sbin:/bin authtoken --help | grep -q "^Usage: authtoken <COMMAND>"'
check "authtoken is on root's PATH" test "$(PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v authtoken)" = /usr/sbin/authtoken
check "authtoken check-config OK" bash -c 'PATH=/usr/sbin:/usr/bin:/sbin:/bin authtoken check-config | grep -q ": OK"'
check "module settings beside the config, root's, as readable as the config" \
  test "$(stat -c '%U %a' /etc/authtoken/authtoken.toml.module.json)" = "root 644"
# authtoken login's exit code: 0 token, 1 rejected, 2 unmanaged.
helper_login_exits() {
  local code=0
  echo "$2" | timeout 60 authtoken login "$1" || code=$?
  [ "$code" -eq "$3" ]
}
check "helper login: authority password (exit 0)" helper_login_exits "$local_user" authority-Pa55 0
check "helper login: wrong password is rejected (exit 1)" helper_login_exits "$local_user" wrong 1
check "helper login: unmanaged user steps aside (exit 2)" helper_login_exits authtoken-unmanaged any 2
check "common-auth: authority password signs in" common_auth_login authority-Pa55
check "common-auth: local password still signs in (falls through to pam_unix)" common_auth_login local-Pa55
check "common-auth: a password neither knows is refused" refused common_auth_login neither

# Network users. carol is in no local file; the join gave this machine its
# device identity and turned [directory] on.
check "carol is no local account" refused grep -q '^carol:' /etc/passwd
check "authtoken check-config OK with [directory] enabled" bash -c 'PATH=/usr/sbin:/usr/bin:/sbin:/bin authtoken check-config | grep -q ": OK"'
sync_unit=/lib/systemd/system/authtoken-sync.service
check "sync unit verifies" systemd-analyze verify --man=no "$sync_unit" /lib/systemd/system/authtoken-sync.timer
read -ra sync_cmd <<<"$(sed -n 's/^ExecStart=//p' "$sync_unit")"
check "the sync unit's ExecStart fetches the directory" "${sync_cmd[@]}"
check "the NSS cache is root's and world-readable" \
  test "$(stat -c '%U %a' /var/lib/authtoken/nss/directory) $(stat -c %a /var/lib/authtoken/nss /var/lib/authtoken | tr '\n' ' ')" = "root 644 755 755 "
check "the authority served the directory" grep -q 'directory serial=' "$server_log"
check "getent passwd carol (through nsswitch.conf and libnss_authtoken)" \
  test "$(getent passwd carol)" = "carol:*:10501:10501:Carol C:/home/carol:/bin/bash"
check "id carol" test "$(id carol)" = "uid=10501(carol) gid=10501(carol) groups=10501(carol),10100(engineers)"
check "getent group engineers" test "$(getent group engineers)" = "engineers:*:10100:carol"
check "the timer's next run fetches nothing (not due)" bash -c \
  "before=\$(grep -c 'directory' '$server_log'); ${sync_cmd[*]} && test \"\$(grep -c directory '$server_log')\" = \"\$before\""
check "authtoken status shows the cache" bash -c \
  "PATH=/usr/sbin:/usr/bin:/sbin:/bin authtoken status | grep -Eq 'network users: [1-9][0-9]* users, [1-9][0-9]* groups, serial '"

# carol signs in through sshd (the shipped pam.d/sshd, with the profile
# enabled in common-*) and su, in a mount namespace with a private /home
# so her new home is the namespace's only.
pkgwork=$(mktemp -d /tmp/authtoken-pkg.XXXXXX)
port=
for candidate in $(shuf -i 20000-60999 -n 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null || { port=$candidate; break; }
done
ssh-keygen -q -t ed25519 -N '' -f "$pkgwork/hostkey"
cat >"$pkgwork/sshd_config" <<SSHD
ListenAddress 127.0.0.1
Port $port
HostKey $pkgwork/hostkey
PidFile $pkgwork/sshd.pid
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
PubkeyAuthentication no
PermitRootLogin no
AllowUsers carol
StrictModes no
SSHD
mkdir -p /run/sshd && chmod 0755 /run/sshd
cat >"$pkgwork/in-ns.sh" <<NS
set -e
mount -t tmpfs -o mode=0755 tmpfs /home
mount --bind /usr/share/doc/pam-authtoken/examples/pam.d/sshd /etc/pam.d/sshd
/usr/sbin/sshd -D -e -f "$pkgwork/sshd_config" </dev/null >"$pkgwork/sshd.log" 2>&1 &
for _ in \$(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
show='in-as=\$(id -un) home=\$(pwd) owner=\$(stat -c %U:%a .) file=\$AUTHTOKEN_FILE'
timeout 60 sshpass -p carol-Pa55 ssh -F /dev/null -p $port -o StrictHostKeyChecking=no \
  -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o PreferredAuthentications=keyboard-interactive \
  -o PubkeyAuthentication=no -o NumberOfPasswordPrompts=1 carol@127.0.0.1 "echo ssh \$show" || echo ssh-failed
# su in a process session of its own, as a terminal login gives it: the
# module keys the token file to it (under CI's PID namespace the runner's
# session leader is not visible).
echo carol-Pa55 | timeout 60 setsid --wait setpriv --reuid=$local_user --regid=$local_user --init-groups \
  su carol -s /bin/sh -c "cd; echo su \$show" 2>/dev/null || echo su-failed
echo wrong | timeout 60 setsid --wait setpriv --reuid=$local_user --regid=$local_user --init-groups \
  su carol -s /bin/sh -c "echo su-wrong-admitted" 2>/dev/null || echo su-refused
kill "\$(cat "$pkgwork/sshd.pid")"
NS
out=$(unshare -m --propagation private bash "$pkgwork/in-ns.sh" 2>&1) || true
ssh_line=$(grep '^ssh in-as=' <<<"$out" || true)
su_line=$(grep '^su in-as=' <<<"$out" || true)
check "ssh: carol signs in with the authority's password" grep -q '^ssh in-as=carol ' <<<"$ssh_line"
check "ssh: her home was created on first login, hers, 0700" grep -q ' home=/home/carol owner=carol:700 ' <<<"$ssh_line"
check "ssh: the session has AUTHTOKEN_FILE" grep -Eq ' file=/run/authtoken/[^ ]+/carol[.]token$' <<<"$ssh_line"
check "su: carol signs in with the authority's password" grep -q '^su in-as=carol home=/home/carol owner=carol:700 ' <<<"$su_line"
check "su: the session has AUTHTOKEN_FILE" grep -Eq ' file=/run/authtoken/[^ ]+/carol[.]token$' <<<"$su_line"
check "su: a wrong password is refused" grep -qx 'su-refused' <<<"$out"
if [ "$failed" -ne 0 ]; then echo "$out"; cat "$pkgwork/sshd.log" 2>/dev/null || true; fi
rm -rf "$pkgwork"

# The strict profile: the authority's rejection is final; a 410 and an
# unreachable authority still fall through to pam_unix.
check "pam-auth-update: strict replaces the default profile" bash -c \
  'pam-auth-update --disable authtoken && pam-auth-update --enable authtoken-strict'
check "strict: auth_err=die on the module line" \
  grep -Eq '^auth[[:space:]]+\[success=[0-9]+ auth_err=die default=ignore\][[:space:]]+pam_authtoken.so' /etc/pam.d/common-auth
check "strict: the authority's password signs in" common_auth_login authority-Pa55
check "strict: after the authority's rejection the local password is refused" refused common_auth_login local-Pa55
check "strict: unmanaged at the authority (410)" bash -c \
  "authtoken-server add-user $server_store $local_user --policy unmanaged </dev/null && kill -HUP $server_pid && sleep 0.5"
check "strict: a 410 user signs in with the local password" common_auth_login local-Pa55
kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
check "strict: with the authority unreachable the local password signs in" common_auth_login local-Pa55
# A server left running, started without systemd as the README shows
# (its /etc/default form sourced by a shell): removing the package must
# stop it.
defaults=$(mktemp)
echo "AUTHTOKEN_SERVER_OPTS=\"${unit_opts//\/etc\/authtoken-server\/users.toml/$server_store}\"" >"$defaults"
( . "$defaults"; ulimit -n 65536 2>/dev/null || ulimit -n hard; umask 0077
  exec setpriv --reuid=authtoken-server --regid=authtoken-server --clear-groups \
    --no-new-privs --inh-caps=-all --bounding-set=-all \
    /usr/sbin/authtoken-server serve $AUTHTOKEN_SERVER_OPTS ) </dev/null >/dev/null 2>"$server_log" &
server_pid=$!
for _ in $(seq 300); do grep -q "listening on" "$server_log" && break; sleep 0.1; done
# Only now: the background shell sources it, and may not have yet.
rm -f "$defaults"
check "a server runs before dpkg -r" grep -q "listening on" "$server_log" ||
  sed 's/^/server log: /' "$server_log"
rm -f "$server_log"

userdel "$local_user" >/dev/null 2>&1 || true
check "dpkg -r" dpkg -r pam-authtoken authtoken-server
check "the running server was stopped by the package's removal" gone "$server_pid"
wait "$server_pid" 2>/dev/null || true
check "deb: the server package stops its unit on remove" grep -q 'deb-systemd-invoke stop authtoken-server.service' <<<"$(dpkg-deb -I "$server_deb" prerm)"
check "deb: and purges its enablement" grep -q 'deb-systemd-helper purge authtoken-server.service' <<<"$(dpkg-deb -I "$server_deb" postrm)"
check "rpm: erasing the server stops and disables its unit" grep -q 'disable --now authtoken-server.service' <<<"$(rpm -qp --scripts "$server_rpm" 2>/dev/null)"
check "nsswitch.conf restored exactly" cmp "$nsswitch_before" /etc/nsswitch.conf
check "carol is unknown again" refused getent passwd carol
check "common-auth restored exactly" cmp "$before" /etc/pam.d/common-auth
check "no module line left" bash -c "! grep -rq pam_authtoken /etc/pam.d"
check "conffile kept after remove" test -f /etc/authtoken/authtoken.toml
check "the CA and device identity the README puts there are kept after remove" \
  test -f /etc/authtoken/ca.pem -a -f /etc/authtoken/device.pem -a -f /etc/authtoken/device.key
# As the README's server set-up leaves it.
[ -e /etc/default/authtoken-server ] && { echo "packages: /etc/default/authtoken-server exists; not touching it" >&2; exit 1; }
echo 'AUTHTOKEN_SERVER_OPTS="--listen 127.0.0.1:8443"' >/etc/default/authtoken-server
# What an offline login leaves: a verifier of a real password.
install -d -m 0700 /var/lib/authtoken/offline
echo verifier >/var/lib/authtoken/offline/someone
check "offline verifiers kept after remove" test -f /var/lib/authtoken/offline/someone
check "dpkg --purge" dpkg --purge pam-authtoken authtoken-server
check "offline verifiers and the NSS cache gone after purge" test ! -e /var/lib/authtoken
check "the sync timer is no longer enabled or masked" bash -c '! ls /etc/systemd/system/*/authtoken-sync.timer /etc/systemd/system/authtoken-sync.timer 2>/dev/null' 
check "server binary gone after purge" test ! -e /usr/sbin/authtoken-server
check "conffile gone after purge" test ! -e /etc/authtoken/authtoken.toml
check "/etc/authtoken gone after purge (ca.pem and the device identity with it)" test ! -e /etc/authtoken
check "/etc/default/authtoken-server gone after purge" test ! -e /etc/default/authtoken-server
check "the server's store and CA are kept after purge (README says why)" \
  test -f "$server_store" -a -f /etc/authtoken-server/tls/ca.pem
check "module settings gone after purge" test ! -e /etc/authtoken/authtoken.toml.module.json
check "profile gone after purge" test ! -e /usr/share/pam-configs/authtoken
check "accounts kept after purge (uids are not reused)" getent passwd authtoken

report packages
