#!/usr/bin/env bash
# The store benchmark, run by scripts/bench.sh inside scripts/with-postgres.sh
# (a PostgreSQL cluster of its own, on the Unix socket in
# $AUTHTOKEN_TEST_POSTGRES):
#   1. handshakes per second and p99 from the same load generator against
#      the TOML store, PostgreSQL with one replica, and two replicas on one
#      PostgreSQL (clients spread over both), each server --threads 1;
#   2. the store's cost per login: database operations per granted login,
#      from the replica's own metrics;
#   3. the store at scale: N users (100,000; 10,000 with --quick) and N/100,
#      the challenge time for a name it does not know against one it does,
#      add-user time, startup time and RSS, and the time a change takes to
#      be in force (SIGHUP for the file, the version counter for PostgreSQL).
# Usage: bench-store.sh BIN WORK QUICK(0|1) CLIENTS SECONDS PASSWORD
set -euo pipefail
bin=$1 work=$2 quick=$3 clients=$4 seconds=$5 password=$6
socket=${AUTHTOKEN_TEST_POSTGRES:?run under scripts/with-postgres.sh}
url() { echo "postgresql:///$1?host=$socket&user=postgres"; }
say() { echo "bench: store: $*"; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
tls=(--tls-cert "$work/tls/server.pem" --tls-key "$work/tls/server.key")
load_flags=(--threads 1 --per-address-connections 128 --failure-delay-ms 0
  --throttle-after 1000000 --replay-per-account 1000000)

# serve NAME ARGS...: a server in the background; its address (it must
# print one) and pid (in $work/NAME.pid, which bench.sh's cleanup kills).
serve() {
  local name=$1; shift
  "$bin/authtoken-server" serve --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 "$@" \
    </dev/null >/dev/null 2>"$work/$name.log" &
  echo $! >"$work/$name.pid"
  for _ in $(seq 300); do grep -q "listening on" "$work/$name.log" && break; sleep 0.05; done
  grep -o 'listening on [0-9.:]*' "$work/$name.log" | awk '{print $3}'
}
metrics_of() { grep -o 'metrics on http://[0-9.:]*' "$work/$1.log" | sed 's|metrics on http://||'; }
metric_sum() { # metric_sum NAME PREFIX: the sum of the lines that start with PREFIX
  curl -s "http://$(metrics_of "$1")/metrics" | awk -v p="$2" 'index($0, p) == 1 { s += $NF } END { printf "%d", s }'
}
stop() { kill "$(cat "$work/$1.pid")" 2>/dev/null || true; rm -f "$work/$1.pid"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$(cat "$work/$1.pid")/status"; }

db=$(url bench)
# Durable commits, as in production (the test suites' cluster skips fsync).
psql -X -q -d "$(url postgres)" -c "ALTER SYSTEM SET fsync = on" -c "SELECT pg_reload_conf()" >/dev/null
psql -X -q -d "$(url postgres)" -c "CREATE DATABASE bench" -c "CREATE DATABASE scale" -c "CREATE DATABASE small"
"$bin/authtoken-server" migrate "$db" >/dev/null
"$bin/authtoken-server" import-store "$work/users.toml" "$db" >/dev/null

# 1 and 2: throughput, and the store's cost per login.
toml_addr=$(serve store-toml --users "$work/users.toml" "${tls[@]}" "${load_flags[@]}")
one_addr=$(serve store-one --store "$db" "${tls[@]}" "${load_flags[@]}")
two_a=$(serve store-two-a --store "$db" "${tls[@]}" "${load_flags[@]}")
two_b=$(serve store-two-b --store "$db" "${tls[@]}" "${load_flags[@]}")
load() { # load LABEL URLS PIDS: prints the runs, keeps them in $work/LABEL.load
  echo "$password" | "$bin/authtoken-bench" load --url "$2" --ca "$work/tls/ca.pem" --user scram4k \
    --clients "$clients" --seconds "$seconds" --server-pid "$3" | grep -v '^load: the generator\|^load: full' |
    tee "$work/$(echo $1 | tr -d ' ,').load" | sed "s/^load:/bench: store: $1:/"
}
rate_at() { # rate_at LABEL CLIENTS: handshakes/s of that run
  sed -n "s|^load: *$2 clients: [0-9]* handshakes, \([0-9]*\)/s.*|\1|p" "$work/$(echo $1 | tr -d ' ,').load"
}
say "full SCRAM handshakes, same generator, each server --threads 1 (access log on), $seconds s per run"
load "toml file, 1 server     " "https://$toml_addr/checkin" "$(cat "$work/store-toml.pid")"
ops_before=$(metric_sum store-one 'authtoken_store_duration_seconds_count{operation="judge"}')
# The database's own CPU (every postgres process), which comes out of the
# same two CPUs as the replica's and the generator's.
pg_cpu() { local total=0 pid; for pid in $(pgrep -u postgres); do
  total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0) )); done; echo "$total"; }
pg_before=$(pg_cpu)
tokens_before=$(metric_sum store-one 'authtoken_requests_total{step="response",outcome="token"}')
load "postgres, 1 replica     " "https://$one_addr/checkin" "$(cat "$work/store-one.pid")"
pg_ticks=$(( $(pg_cpu) - pg_before ))
load "postgres, 2 replicas    " "https://$two_a/checkin,https://$two_b/checkin" \
  "$(cat "$work/store-two-a.pid"),$(cat "$work/store-two-b.pid")"
tokens=$(( $(metric_sum store-one 'authtoken_requests_total{step="response",outcome="token"}') - tokens_before ))
judges=$(( $(metric_sum store-one 'authtoken_store_duration_seconds_count{operation="judge"}') - ops_before ))
others=$(curl -s "http://$(metrics_of store-one)/metrics" | awk '
  /^authtoken_store_duration_seconds_count/ && !/judge|version|sweep|load|schema/ { s += $NF }
  END { printf "%d", s }')
awk -v t="$tokens" -v j="$judges" -v o="$others" 'BEGIN {
  if (t > 0) printf "bench: store: postgres, per granted login: %.2f statements (authtoken_judge: the budget read, the single-use record written; one round trip, one durable commit), %d other operations (%d logins)\n", j / t, o, t }'
one_logins=$(( $(metric_sum store-one 'authtoken_requests_total{step="response",outcome="token"}') - tokens_before ))
awk -v t="$pg_ticks" -v hz="$(getconf CLK_TCK)" -v n="$one_logins" 'BEGIN {
  if (n > 0) printf "bench: store: postgres, 1 replica: the database'"'"'s own CPU %.1f us per login (%d logins)\n", t / hz * 1e6 / n, n }'
for n in ${clients//,/ }; do
  awk -v n="$n" -v p="$(rate_at "postgres, 1 replica" "$n")" -v t="$(rate_at "toml file, 1 server" "$n")" 'BEGIN {
    if (t > 0) printf "bench: store: %3d clients: postgres 1 replica / toml file = %.2fx (%d/s against %d/s)\n", n, p / t, p, t }'
done
errors=$(metric_sum store-one 'authtoken_store_errors_total')
say "postgres store errors during the runs: $errors"
for name in store-toml store-one store-two-a store-two-b; do stop "$name"; done

# 3: scale.
if [ "$quick" -eq 1 ]; then big=10000 challenge_rounds=200; else big=100000 challenge_rounds=2000; fi
small=$(( big / 100 ))
say "scale: $small and $big users (each with a POSIX account), release build"
printf 'bench: store: %-10s %8s %16s %14s %14s %18s\n' store users add-user_ms start_ms rss_MiB change_in_force_ms
for n in "$small" "$big"; do
  echo "$password" | "$bin/authtoken-bench" store-fixture --users "$n" --out "$work/scale-$n.toml"
  # The TOML file.
  t=$(date +%s%N)
  echo "$password" | "$bin/authtoken-server" add-user "$work/scale-$n.toml" newcomer --iterations 4096 --uid 900000 >/dev/null
  add_ms=$(ms_since "$t")
  t=$(date +%s%N)
  serve scale-toml --users "$work/scale-$n.toml" "${tls[@]}" >/dev/null
  start_ms=$(ms_since "$t")
  rss=$(rss_kib scale-toml)
  # A name the store does not know is challenged (a decoy) as fast as one
  # it knows: nothing in the time tells who exists.
  "$bin/authtoken-bench" challenge-timing --url "https://$(grep -o 'listening on [0-9.:]*' "$work/scale-toml.log" | awk '{print $3}')/checkin" \
    --ca "$work/tls/ca.pem" --users "$n" --rounds "$challenge_rounds" | sed 's/^/bench: store: /'
  echo "$password" | "$bin/authtoken-server" add-user "$work/scale-$n.toml" second --iterations 4096 --uid 900001 >/dev/null
  t=$(date +%s%N)
  kill -HUP "$(cat "$work/scale-toml.pid")"
  for _ in $(seq 600); do grep -q "reloaded" "$work/scale-toml.log" && break; sleep 0.05; done
  change_ms=$(ms_since "$t")
  stop scale-toml
  awk -v n="$n" -v a="$add_ms" -v s="$start_ms" -v r="$rss" -v c="$change_ms" \
    'BEGIN { printf "bench: store: %-10s %8d %16d %14d %14.0f %18d\n", "toml", n, a, s, r / 1024, c }'
  # PostgreSQL.
  if [ "$n" -eq "$big" ]; then sdb=$(url scale); else sdb=$(url small); fi
  "$bin/authtoken-server" migrate "$sdb" >/dev/null
  t=$(date +%s%N)
  "$bin/authtoken-server" import-store "$work/scale-$n.toml" "$sdb" >/dev/null
  import_ms=$(ms_since "$t")
  t=$(date +%s%N)
  echo "$password" | "$bin/authtoken-server" add-user "$sdb" newcomer2 --iterations 4096 --uid 900002 >/dev/null
  add_ms=$(ms_since "$t")
  t=$(date +%s%N)
  serve scale-pg --store "$sdb" "${tls[@]}" >/dev/null
  start_ms=$(ms_since "$t")
  rss=$(rss_kib scale-pg)
  t=$(date +%s%N)
  echo "$password" | "$bin/authtoken-server" add-user "$sdb" third --iterations 4096 --uid 900003 >/dev/null
  for _ in $(seq 600); do grep -q "changed" "$work/scale-pg.log" && break; sleep 0.05; done
  change_ms=$(ms_since "$t")
  stop scale-pg
  awk -v n="$n" -v a="$add_ms" -v s="$start_ms" -v r="$rss" -v c="$change_ms" \
    'BEGIN { printf "bench: store: %-10s %8d %16d %14d %14.0f %18d\n", "postgres", n, a, s, r / 1024, c }'
  say "postgres: import-store of $n users: $import_ms ms"
  rm -f "$work/scale-$n.toml"
done
say "change_in_force: toml = SIGHUP to the reload's log line (after add-user); postgres = add-user to the replica's reload (it polls every second)"
