#!/usr/bin/env bash
# hygiene.sh snapshot FILE | check FILE: what the test suite may leave
# behind, before and after. `check` fails if the run left a process it
# started (servers, sshd, pamtester, helpers), a user, a package, a file
# in the system places the tests touch, or a file in the source tree (what
# git sees, outside the ignored build directories).
set -euo pipefail
mode=$1 file=$2

state() {
  echo "## processes"
  pgrep -a -f 'authtoken-server|authtoken-helper|authtoken-chkpwd|authtoken-bench|pamtester|sshd .*-f /tmp/authtoken|nginx .*-p /tmp/authtoken|postgres.* -D /tmp/authtoken' 2>/dev/null |
    grep -v -e pgrep -e hygiene.sh | awk '{$1=""; print}' | sort || true
  echo "## namespaces and mounts"
  ip netns list 2>/dev/null | awk '{print $1}' | sort || true
  grep -E '/tmp/authtoken|fleet' /proc/mounts | awk '{print $2}' | sort || true
  echo "## users"
  getent passwd | cut -d: -f1 | sort
  echo "## packages"
  dpkg-query -W -f='${Package} ${Status}\n' pam-authtoken authtoken-server 2>/dev/null | grep -v not-installed || true
  echo "## the source tree"
  git -C "$(dirname "$0")/.." status --porcelain --untracked-files=all 2>/dev/null || true
  echo "## files"
  for path in /etc/authtoken /etc/authtoken-server /var/lib/authtoken-server /etc/default/authtoken-server /run/authtoken \
    /usr/libexec/authtoken /usr/sbin/authtoken /usr/sbin/authtoken-server /usr/share/pam-configs/authtoken \
    /usr/lib/sysusers.d/authtoken.conf /usr/lib/sysusers.d/authtoken-server.conf \
    /var/lib/authtoken /usr/lib/x86_64-linux-gnu/libnss_authtoken.so.2 /lib/x86_64-linux-gnu/libnss_authtoken.so.2 \
    /lib/x86_64-linux-gnu/security/pam_authtoken.so /usr/lib/x86_64-linux-gnu/security/pam_authtoken.so \
    /lib/systemd/system/authtoken-sync.service /lib/systemd/system/authtoken-sync.timer \
    /etc/systemd/system/authtoken-sync.timer /etc/systemd/system/timers.target.wants/authtoken-sync.timer; do
    [ -e "$path" ] && echo "exists $path"
  done
  for path in /etc/pam.d/common-auth /etc/pam.d/common-account /etc/pam.d/common-session /etc/nsswitch.conf; do
    [ -e "$path" ] && sha256sum "$path"
  done
  true
}

case "$mode" in
snapshot) state >"$file" ;;
check)
  if diff -u "$file" <(state) >&2; then
    echo "hygiene: the test run left the machine as it found it"
  else
    echo "hygiene: FAIL: the test run left the above behind (lines with +), or removed what was there (-)" >&2
    exit 1
  fi
  ;;
*) echo "usage: hygiene.sh snapshot|check FILE" >&2; exit 2 ;;
esac
