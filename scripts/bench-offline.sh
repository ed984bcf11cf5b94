#!/usr/bin/env bash
# The time of an offline login (pam_authtoken against its local verifier,
# the authority unreachable) against pam_unix checking a local password,
# measured in the same run, alternating, with pamtester under bwrap. Prints
# min/median/max of each and the ratio of the medians (absolute times drift
# on shared machines; the ratio is what to compare).
# Run as root: it adds a local user for the run and removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
runs=${1:-15}
scripts/deps.sh
cargo build --quiet --release --locked --workspace
bin="$PWD/target/release"
user=authtoken-bench
password='bench Pa55 offline'
work=$(mktemp -d /tmp/authtoken-bench.XXXXXX)
server_pid=
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  userdel "$user" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
id "$user" >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin "$user"
echo "$user:$password" | chpasswd

"$bin/authtoken-server" gen-tls "$work/tls" --host 127.0.0.1 >/dev/null
echo "$password" | "$bin/authtoken-server" add-user "$work/users.toml" "$user" >/dev/null
"$bin/authtoken-server" serve --listen 127.0.0.1:0 --users "$work/users.toml" \
  --tls-cert "$work/tls/server.pem" --tls-key "$work/tls/server.key" </dev/null >/dev/null 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && break; sleep 0.1; done
addr=$(grep -o 'listening on [0-9.:]*' "$work/server.log" | awk '{print $3}')

config() {
  cat >"$work/authtoken.toml" <<CONF
backend = "mdm"
url = "$1"
ca_file = "$work/tls/ca.pem"
helper = "$bin/authtoken-helper"
cache_dir = "$work/cache"
[offline]
enabled = true
dir = "$work/offline"
CONF
  chmod 0600 "$work/authtoken.toml"
}
mkdir -p "$work/pam.d"
echo "auth required $bin/libpam_authtoken.so config=$work/authtoken.toml" >"$work/pam.d/login"
echo "auth required pam_unix.so" >"$work/pam.d/unix"
pam() {
  echo "$password" | bwrap --bind / / --dev /dev --proc /proc --bind "$work/pam.d" /etc/pam.d \
    --die-with-parent pamtester "$1" "$user" authenticate >/dev/null 2>&1
}
config "https://$addr/checkin"
pam login || { echo "bench: the online login failed" >&2; exit 1; }
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
config "https://$addr/checkin"   # now refused: offline
pam login || { echo "bench: the offline login failed" >&2; exit 1; }

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
offline=() unix=()
for _ in $(seq "$runs"); do
  t=$(date +%s%N); pam login; offline+=("$(ms "$t")")
  t=$(date +%s%N); pam unix; unix+=("$(ms "$t")")
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%d %d %d", a[1], a[int((NR+1)/2)], a[NR]}'; }
read -r omin omed omax <<<"$(stats "${offline[@]}")"
read -r umin umed umax <<<"$(stats "${unix[@]}")"
echo "bench: $runs runs each, alternating, pamtester under bwrap, release build"
echo "bench: offline login (PBKDF2 600000 rounds): min/median/max $omin/$omed/$omax ms"
echo "bench: pam_unix (local password):             min/median/max $umin/$umed/$umax ms"
awk -v o="$omed" -v u="$umed" 'BEGIN { printf "bench: offline / pam_unix = %.2f (medians)\n", (u > 0 ? o / u : 0) }'
