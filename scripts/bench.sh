#!/usr/bin/env bash
# The project's benchmarks, each figure a ratio against a yardstick measured
# in the same run (absolute times drift on shared machines):
#   1. logins through pamtester under bwrap, alternating case by case:
#      the module (SCRAM at 4096 and 600000 rounds, Digest, HEM, a 410
#      remembered for the session) against pam_permit, pam_unix and
#      pam_exec running two curl PUTs, and the module's added time against
#      the exchange floor (one curl doing both PUTs on one TLS connection);
#      and an offline login (the authority down, the local verifier) against
#      pam_unix;
#   2. the KDF against the machine's SHA-256 bound (authtoken-bench kdf);
#   3. the reference server's throughput with full SCRAM handshakes from
#      1, 10 and 100 keep-alive TLS clients (authtoken-bench load), and its
#      CPU per handshake against nginx (one worker, the same certificate,
#      TLS 1.3, keep-alive, access log on) answering the same two PUTs with
#      the authority's own fixed replies, driven by the same generator,
#      alternating;
#   4. the stripped module's size and the helper's peak RSS;
#   5. getpwnam through glibc for network users: libnss_authtoken against
#      libnss_files on the same N users (N = 1,000 and 100,000), each in a
#      mount namespace whose nsswitch.conf names only that source;
#   6. the user store: the TOML file against PostgreSQL with one and two
#      replicas (throughput, database operations per login), and 100,000
#      users in each (scripts/bench-store.sh).
# docs/BENCHMARKS.md holds one full run. --quick does a few runs of each,
# so the script cannot rot (scripts/test.sh runs it); it asserts nothing
# about time, only that every login ends as it must.
# Run as root: it adds a local user for pam_unix and removes it.
# BENCH_KEEP=1 keeps the work directory (configs, server logs) to look at.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root" >&2; exit 1; }
quick=0
[ "${1:-}" = --quick ] && quick=1
if [ $quick -eq 1 ]; then
  runs=3 kdf_runs=2 load_seconds=1 load_clients=1,10 nss_runs=2 nss_rounds=1
else
  runs=20 kdf_runs=7 load_seconds=5 load_clients=1,10,100 nss_runs=7 nss_rounds=5
fi
# Every pamtester run in one process session whose leader is visible, so
# the session cache (the remembered 410) works as in a login.
if [ "${AUTHTOKEN_BENCH_SESSION:-}" != 1 ]; then
  AUTHTOKEN_BENCH_SESSION=1 exec setsid --wait "$0" "$@"
fi

scripts/deps.sh
cargo build --quiet --release --locked --workspace
bin="$PWD/target/release"
local_user=authtoken-bench
password='bench Pa55 word'
work=$(mktemp -d /tmp/authtoken-bench.XXXXXX)
# Servers are started inside $(...), a subshell: their pids go to files.
cleanup() {
  local pidfile pid
  for pidfile in "$work"/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  userdel "$local_user" >/dev/null 2>&1 || true
  [ -n "${BENCH_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
id "$local_user" >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin "$local_user"
echo "$local_user:$password" | chpasswd

# start NAME ARGS...: runs the server in the background, prints its address.
start() {
  local name=$1; shift
  "$bin/authtoken-server" serve --listen 127.0.0.1:0 "$@" </dev/null >/dev/null 2>"$work/$name.log" &
  echo $! >"$work/$name.pid"
  for _ in $(seq 100); do grep -q "listening on" "$work/$name.log" && break; sleep 0.1; done
  grep -o 'listening on [0-9.:]*' "$work/$name.log" | awk '{print $3}'
}
"$bin/authtoken-server" gen-tls "$work/tls" --host 127.0.0.1 >/dev/null
add() { echo "$password" | "$bin/authtoken-server" add-user "$work/users.toml" "$@" >/dev/null; }
add scram4k --iterations 4096
add scram600k --iterations 600000
add digest --scheme digest-sha256
add gone --policy unmanaged
tls=(--tls-cert "$work/tls/server.pem" --tls-key "$work/tls/server.key")
# Rejections answer at once and are never throttled here: the pam_exec and
# floor yardsticks send a made-up DigestResponse (as user "yardstick").
# One worker thread: the load generator needs the other CPU of a small
# machine (on a dedicated server, leave --threads at one per CPU).
add yardstick --iterations 4096
mdm_addr=$(start mdm --users "$work/users.toml" "${tls[@]}" --per-address-connections 128 \
  --failure-delay-ms 0 --throttle-after 1000000 --replay-per-account 1000000 --threads 1)
echo "$password" | "$bin/authtoken-server" enroll-device --label bench "$work/device.toml" >/dev/null
hem_addr=$(start hem --protocol hem --device "$work/device.toml" --device-delay-ms 0 "${tls[@]}")
# The authority of the offline case: up for one online login, then stopped.
down_addr=$(start down --users "$work/users.toml" "${tls[@]}")

config() { # config NAME BACKEND URL [EXTRA]
  cat >"$work/$1.toml" <<CONF
backend = "$2"
url = "$3"
ca_file = "$work/tls/ca.pem"
helper = "$bin/authtoken-helper"
helper_user = "nobody"
cache_dir = "$work/cache"
${4:-}
CONF
  chmod 0600 "$work/$1.toml"
  # The module's settings beside it, as the packages make them.
  "$bin/authtoken-helper" module-settings --config "$work/$1.toml" >/dev/null
}
# 4096 rounds is below the client's default floor (100000), lowered here
# for the comparison only.
config scram mdm "https://$mdm_addr/checkin" 'min_scram_iterations = 4096'
config digest mdm "https://$mdm_addr/checkin" 'schemes = ["digest-sha-256"]'
config hem hem "https://$hem_addr"
# "login": a service the offline policy lists by default.
config login mdm "https://$down_addr/checkin" "[offline]
enabled = true
dir = \"$work/offline\""

# pam_exec's script: two curl PUTs, what an administrator writes instead of
# a module (a check-in and a reply to it; the yardstick is their cost).
body() { # body USER [DIGESTRESPONSE]
  printf '<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict>'
  printf '<key>MessageType</key><string>UserAuthenticate</string>'
  printf '<key>UDID</key><string>8C3A5B1E-0D4F-4B7A-9E2C-6F1D3A5B7C9E</string>'
  printf '<key>UserID</key><string>5C9E8A3B-1D2F-4E6A-8B7C-9D0E1F2A3B4C</string>'
  printf '<key>UserShortName</key><string>%s</string><key>UserLongName</key><string>%s</string>' "$1" "$1"
  [ -z "${2:-}" ] || printf '<key>DigestResponse</key><string>%s</string>' "$2"
  printf '</dict></plist>\n'
}
body yardstick >"$work/first.plist"
body yardstick 'SCRAM-SHA-256 n=yardstick,r=x,c=biws,r=x,p=AAAA' >"$work/second.plist"
curl_put=(curl -s -o /dev/null --cacert "$work/tls/ca.pem" -X PUT -H 'Content-Type: application/x-apple-aspen-mdm-checkin')
{
  echo '#!/bin/sh'
  for step in first second; do
    printf '%q ' "${curl_put[@]}" --data-binary "@$work/$step.plist" "https://$mdm_addr/checkin"
    echo '|| exit 1'
  done
} >"$work/exec-curl.sh"
chmod 0755 "$work/exec-curl.sh"

mkdir -p "$work/pam.d"
module="$bin/libpam_authtoken.so"
echo "auth required pam_permit.so" >"$work/pam.d/permit"
echo "auth required pam_unix.so" >"$work/pam.d/unix"
echo "auth required pam_exec.so quiet $work/exec-curl.sh" >"$work/pam.d/exec"
for name in scram digest hem login; do
  echo "auth required $module config=$work/$name.toml" >"$work/pam.d/$name"
done
# A remembered 410 is PAM_IGNORE: pam_permit after it makes the stack succeed.
printf 'auth [default=ignore success=done] %s config=%s\nauth required pam_permit.so\n' \
  "$module" "$work/scram.toml" >"$work/pam.d/gone"

pam() { # pam SERVICE USER
  echo "$password" | bwrap --bind / / --dev /dev --proc /proc --bind "$work/pam.d" /etc/pam.d \
    --die-with-parent pamtester "$1" "$2" authenticate >/dev/null 2>&1
}
floor() { # one curl, both PUTs, one TLS connection (curl reuses it across --next)
  "${curl_put[@]}" --data-binary @"$work/first.plist" "https://$mdm_addr/checkin" --next \
    "${curl_put[@]:1}" --data-binary @"$work/second.plist" "https://$mdm_addr/checkin"
}
gone_requests() { grep -c '^request .* user="gone" ' "$work/mdm.log" || true; }

# name|command: every case must succeed on every run.
cases=(
  "pam_permit|pam permit $local_user"
  "pam_unix|pam unix $local_user"
  "pam_exec + 2 curl PUTs|pam exec $local_user"
  "exchange floor (1 curl, 2 PUTs)|floor"
  "module SCRAM 4096 rounds|pam scram scram4k"
  "module SCRAM 600000 rounds|pam scram scram600k"
  "module HTTP Digest SHA-256|pam digest digest"
  "module HEM device|pam hem bench"
  "module 410 remembered|pam gone gone"
  "module offline (600000-round verifier)|pam login scram600k"
)
# An online login leaves the offline verifier; then the authority goes away.
pam login scram600k || { echo "bench: the online login before the offline case failed" >&2; exit 1; }
kill "$(cat "$work/down.pid")" && rm "$work/down.pid"
for _ in $(seq 50); do ! (exec 3<>"/dev/tcp/${down_addr%:*}/${down_addr#*:}") 2>/dev/null && break; sleep 0.1; done
# The first 410 is asked for and remembered for this session.
pam gone gone || { echo "bench: the 410 login failed" >&2; exit 1; }
for c in "${cases[@]}"; do
  eval "${c#*|}" || { echo "bench: ${c%%|*} failed before timing" >&2; exit 1; }
done
before_remembered=$(gone_requests)
declare -A times
for _ in $(seq "$runs"); do
  for c in "${cases[@]}"; do
    name=${c%%|*}
    t=$(date +%s%N)
    eval "${c#*|}" || { echo "bench: $name failed" >&2; exit 1; }
    times[$name]+="$(( ($(date +%s%N) - t) / 1000 )) "
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {printf "%.1f %.1f %.1f", a[1]/1000, a[int((NR+1)/2)]/1000, a[NR]/1000}'; }
read -r _ permit _ <<<"$(median <<<"${times[pam_permit]}")"
read -r _ floor_ms _ <<<"$(median <<<"${times[exchange floor (1 curl, 2 PUTs)]}")"
echo "bench: logins, $runs runs of each case alternating, pamtester under bwrap, release build, servers on 127.0.0.1"
printf 'bench: %-40s %22s %16s %18s\n' case "min/median/max ms" "x pam_permit" "added over permit"
for c in "${cases[@]}"; do
  name=${c%%|*}
  read -r lo med hi <<<"$(median <<<"${times[$name]}")"
  awk -v n="$name" -v lo="$lo" -v m="$med" -v hi="$hi" -v p="$permit" \
    'BEGIN { printf "bench: %-40s %22s %15.2fx %15.1f ms\n", n, lo "/" m "/" hi, m / p, m - p }'
done
read -r _ scram4k_ms _ <<<"$(median <<<"${times[module SCRAM 4096 rounds]}")"
# The floor is curl alone (not under pamtester): the module's added time
# (over pam_permit, which is pamtester's own cost) is set against curl's
# whole run.
awk -v m="$scram4k_ms" -v f="$floor_ms" -v p="$permit" 'BEGIN {
  printf "bench: module SCRAM 4096 added time (over pam_permit) / exchange floor (curl'"'"'s whole run) = %.2f (%.1f ms against %.1f ms)\n", (m - p) / f, m - p, f }'
read -r _ offline_ms _ <<<"$(median <<<"${times[module offline (600000-round verifier)]}")"
read -r _ unix_ms _ <<<"$(median <<<"${times[pam_unix]}")"
awk -v o="$offline_ms" -v u="$unix_ms" 'BEGIN { printf "bench: module offline login / pam_unix = %.2f (medians)\n", o / u }'
# The server's access log: the remembered 410 asked nothing.
echo "bench: check-ins for the remembered 410 user during the timed runs: $(( $(gone_requests) - before_remembered )) (0 when the session cache works)"

"$bin/authtoken-bench" kdf --runs "$kdf_runs" | sed 's/^/bench: /'
# The KDF against OpenSSL's SHA-256 on as many blocks (1,200,000: the
# 600,000-round KDF's two compressions a round), bulk-hashing 64 KiB
# buffers (SHA-NI where the CPU has it), alternating run by run.
kdf_ms=() openssl_ms=()
for _ in $(seq "$kdf_runs"); do
  kdf_ms+=("$("$bin/authtoken-bench" kdf --runs 1 |
    sed -n 's|^kdf: PBKDF2 (protocol::kdf.*min/median/max [0-9.]*/\([0-9.]*\)/.*|\1|p')")
  rate=$(openssl speed -seconds 1 -bytes 65536 -evp sha256 2>/dev/null | awk '/^sha256/ { sub(/k$/, "", $2); print $2 }')
  openssl_ms+=("$(awk -v r="$rate" 'BEGIN { printf "%.2f", 1200000 * 64 / (r * 1000) * 1000 }')")
done
mid() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
awk -v k="$(mid "${kdf_ms[@]}")" -v o="$(mid "${openssl_ms[@]}")" -v v="$(openssl version | cut -d' ' -f1-2)" 'BEGIN {
  printf "bench: kdf: PBKDF2 600000 rounds %.1f ms / %s SHA-256 of 1200000 blocks %.1f ms = %.2fx (medians of alternating runs)\n", k, v, o, k / o }'

# The yardstick: nginx answering the authority's two replies (taken from a
# real handshake) at /first and /second.
echo "$password" | "$bin/authtoken-bench" load --url "https://$mdm_addr/checkin" --ca "$work/tls/ca.pem" \
  --user scram4k --clients 1 --seconds 0.1 --save-replies "$work/replies" >/dev/null
mkdir -p "$work/nginx"
nginx_port=
for candidate in $(shuf -i 20000-60999 -n 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null || { nginx_port=$candidate; break; }
done
literal() { # an nginx string literal of FILE's content
  if grep -q "[\$'\\]" "$1"; then echo "bench: $1 holds a character nginx would read" >&2; exit 1; fi
  printf "'%s'" "$(cat "$1")"
}
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log $work/nginx/access.log;
  client_body_temp_path $work/nginx/body;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  default_type application/xml;
  server {
    listen 127.0.0.1:$nginx_port ssl;
    ssl_certificate $work/tls/server.pem;
    ssl_certificate_key $work/tls/server.key;
    ssl_protocols TLSv1.3;
    location = /first { return 200 $(literal "$work/replies/challenge.plist"); }
    location = /second { return 200 $(literal "$work/replies/token.plist"); }
  }
}
NGINX
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log"
for _ in $(seq 50); do [ -s "$work/nginx/nginx.pid" ] && break; sleep 0.1; done
cp "$work/nginx/nginx.pid" "$work/nginx-master.pid"
nginx_master=$(cat "$work/nginx/nginx.pid")
nginx_worker=$(pgrep -P "$nginx_master" | head -1)
[ -n "$nginx_worker" ] || { echo "bench: nginx did not start" >&2; cat "$work/nginx/error.log" >&2; exit 1; }
echo "bench: load: authtoken-server serve --threads 1 --per-address-connections 128 (access log on);"
echo "bench: load: yardstick nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), 1 worker, same certificate, TLS 1.3, keep-alive, access log on"
echo "$password" | "$bin/authtoken-bench" load --url "https://$mdm_addr/checkin" --ca "$work/tls/ca.pem" \
  --user scram4k --clients "$load_clients" --seconds "$load_seconds" --server-pid "$(cat "$work/mdm.pid")" \
  --yardstick-url "https://127.0.0.1:$nginx_port" --yardstick-pid "$nginx_master,$nginx_worker" |
  sed 's/^/bench: /'
kill "$nginx_master"
for _ in $(seq 50); do kill -0 "$nginx_master" 2>/dev/null || break; sleep 0.1; done
rm -f "$work/nginx-master.pid"

# The store: TOML against PostgreSQL (one replica, two), cost per login,
# and 100,000 users (scripts/bench-store.sh, on a PostgreSQL of its own).
scripts/with-postgres.sh scripts/bench-store.sh "$bin" "$work" "$quick" "$load_clients" "$load_seconds" "$password"

strip -o "$work/pam_authtoken.stripped.so" "$module"
size=$(stat -c %s "$work/pam_authtoken.stripped.so")
echo "bench: stripped pam_authtoken.so: $size bytes ($(( size / 1024 )) KiB; target 600 KiB)"
request=$(printf '{"v":1,"user":"scram600k","password_b64":"%s","service":"bench"}' "$(printf %s "$password" | base64 -w0)")
printf '%s\n' "$request" | "$bin/authtoken-bench" rss -- "$bin/authtoken-helper" authenticate --config "$work/scram.toml" |
  sed 's/^/bench: helper (one SCRAM 600000 login): /'

# getpwnam for network users: the same N users in /etc/passwd (files) and
# in the NSS cache (authtoken), 200 names spread over the list, the two
# sources alternating run by run.
mkdir -p "$work/nsslib"
cp "$bin/libnss_authtoken.so" "$work/nsslib/libnss_authtoken.so.2"
echo "bench: getpwnam through glibc, ns per lookup (median of $nss_runs runs, each the median of $nss_rounds rounds over 200 names)"
printf 'bench: %-12s %14s %14s %18s\n' users files authtoken "authtoken / files"
for n in 1000 100000; do
  d="$work/nss-$n"
  mkdir -p "$d/var-lib/authtoken/nss"
  "$bin/authtoken-bench" nss-fixture --users "$n" --dir "$d"
  mv "$d/directory" "$d/var-lib/authtoken/nss/directory"
  echo "passwd: files" >"$d/files.conf"
  echo "passwd: authtoken" >"$d/authtoken.conf"
  lookup() { # lookup SOURCE: one run, ns per lookup
    unshare -m --propagation private bash -c "mount --bind '$d/$1.conf' /etc/nsswitch.conf &&
      mount --bind '$d/passwd' /etc/passwd && mount --bind '$d/var-lib' /var/lib &&
      LD_LIBRARY_PATH='$work/nsslib' exec '$bin/authtoken-bench' getpwnam --names '$d/names' --rounds $nss_rounds"
  }
  files_ns=() ours_ns=()
  for _ in $(seq "$nss_runs"); do
    files_ns+=("$(lookup files)") || { echo "bench: files lookups failed" >&2; exit 1; }
    ours_ns+=("$(lookup authtoken)") || { echo "bench: authtoken lookups failed" >&2; exit 1; }
  done
  f=$(printf '%s\n' "${files_ns[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  o=$(printf '%s\n' "${ours_ns[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  awk -v n="$n" -v f="$f" -v o="$o" 'BEGIN { printf "bench: %-12s %14d %14d %17.3fx\n", n, f, o, o / f }'
done
