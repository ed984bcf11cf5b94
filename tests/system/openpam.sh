#!/usr/bin/env bash
# The module under OpenPAM, the PAM library of macOS and FreeBSD, for real:
# OpenPAM built from ../shared/third-party (unchanged source), the module
# built for it (feature openpam: OpenPAM's table, linked with OpenPAM's
# libpam.so.2, never Linux-PAM's), loaded by OpenPAM from OpenPAM policy
# files, against a real authtoken-server on 127.0.0.1:
# * the module's own answers (tests/openpam/harness.c calls its pam_sm_*
#   on a handle from OpenPAM's pam_start): 0, PAM_AUTH_ERR 9,
#   PAM_AUTHINFO_UNAVAIL 12, PAM_IGNORE 25, and PAM_SILENT (0x80000000)
#   keeping it quiet;
# * OpenPAM's chains: the next module deciding after a 410, no second
#   request in that login session, use_first_pass/try_first_pass through
#   OpenPAM's pam_get_authtok, setcred, acct_mgmt, open_session
#   (AUTHTOKEN_FILE through pam_putenv) and close_session;
# * the shipped macOS stacks (pam.d/macos-*) and the FreeBSD
#   stack run as written, OpenPAM's pam_deny standing in for the system's
#   own password check (pam_opendirectory, pam_unix) and pam_permit for
#   the system modules Linux lacks; and the macOS stacks, unchanged,
#   parsed by OpenPAM's policy parser (openpam_dump_policy), naming only
#   modules macOS has.
# Everything OpenPAM reads lives on a tmpfs at /mnt in a private mount
# namespace (OpenPAM refuses modules and policies under a world-writable
# directory such as /tmp, as it would on a Mac), with our policies over
# /etc/pam.d there; nothing outside target/openpam is left behind.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
repo=$PWD
archive=${OPENPAM_ARCHIVE:-$repo/../shared/third-party/openpam-20190224.tar.gz}
build=$repo/target/openpam
prefix=$build/prefix

if [ "${1:-}" != --inside ]; then
  [ -f "$archive" ] || { echo "openpam: $archive missing" >&2; exit 1; }
  # OpenPAM, once per archive: configure, make, install into the prefix.
  stamp=$(sha256sum "$archive" | cut -c1-16)
  if [ "$(cat "$prefix/.built-from" 2>/dev/null || true)" != "$stamp" ]; then
    rm -rf "$build/src" "$prefix"
    mkdir -p "$build/src"
    tar xzf "$archive" -C "$build/src" --strip-components=1
    if ! (cd "$build/src" && ./autogen.sh && ./configure --prefix="$prefix" --with-pamtest --without-doc &&
      make -j2 && make install &&
      ./libtool --mode=install install -m 0755 bin/openpam_dump_policy/openpam_dump_policy "$prefix/bin/") \
      >"$build/build.log" 2>&1; then
      tail -40 "$build/build.log" >&2
      exit 1
    fi
    echo "$stamp" >"$prefix/.built-from"
  fi
  export OPENPAM_PREFIX=$prefix
  # The module for OpenPAM, in a target directory of its own; its unit
  # tests again on OpenPAM's numbers, and its table against OpenPAM's header.
  CARGO_TARGET_DIR=$build/cargo cargo test --locked -q -p pam_authtoken --features openpam --lib
  CARGO_TARGET_DIR=$build/cargo cargo build --locked -q -p pam_authtoken --features openpam
  # The helper and the server as every other test uses them.
  cargo build --locked -q --workspace
  cc -Wall -Wextra -Werror -I"$prefix/include" -o "$build/harness" tests/openpam/harness.c \
    -L"$prefix/lib" -Wl,-rpath,"$prefix/lib" -lpam -ldl
  exec unshare --mount --propagation private "$0" --inside
fi

. tests/system/check.sh
bin=$repo/target/debug
built_module=$build/cargo/debug/libpam_authtoken.so
harness=$build/harness
server_pid=
trap '[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true' EXIT

needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
check "the module links OpenPAM's libpam.so.2" grep -qx 'libpam.so.2' <<<"$(needed "$built_module")"
check "and not Linux-PAM's libpam.so.0" refused grep -q 'libpam.so.0' <<<"$(needed "$built_module")"
check "the harness is an OpenPAM application" grep -qx 'libpam.so.2' <<<"$(needed "$harness")"

# /mnt: root's, 0755 all the way up, as OpenPAM wants a module's path.
mount -t tmpfs -o mode=0755 tmpfs /mnt
lib=/mnt/lib
mkdir -p "$lib" /mnt/pam.d
install -m 0755 "$built_module" "$lib/pam_authtoken.so"
for m in pam_permit pam_deny; do install -m 0755 "$prefix/lib/$m.so.2" "$lib/$m.so"; done
module=$lib/pam_authtoken.so permit=$lib/pam_permit.so deny=$lib/pam_deny.so

# The authority: alice is managed, bob is not (410).
"$bin/authtoken-server" gen-tls /mnt/tls >/dev/null
echo 'alice pw' | "$bin/authtoken-server" add-user /mnt/users.toml alice --iterations 4096 >/dev/null
"$bin/authtoken-server" add-user /mnt/users.toml bob --policy unmanaged </dev/null >/dev/null
"$bin/authtoken-server" serve --listen 127.0.0.1:0 --users /mnt/users.toml --failure-delay-ms 50 \
  --tls-cert /mnt/tls/server.pem --tls-key /mnt/tls/server.key </dev/null >/dev/null 2>/mnt/server.log &
server_pid=$!
for _ in $(seq 100); do grep -q "listening on" /mnt/server.log && break; sleep 0.1; done
addr=$(grep -o 'listening on [0-9.:]*' /mnt/server.log | awk '{print $3}')
[ -n "$addr" ] || { cat /mnt/server.log; exit 1; }

# write_config FILE URL
write_config() {
  cat >"$1" <<CONF
backend = "mdm"
url = "$2"
ca_file = "/mnt/tls/ca.pem"
timeout_ms = 8000
connect_timeout_ms = 1000
udid = "01234567-89AB-CDEF-0123-456789ABCDEF"
helper = "$bin/authtoken-helper"
helper_user = "nobody"
cache_dir = "/mnt/cache"
min_scram_iterations = 4096
CONF
  chmod 0600 "$1"
  "$bin/authtoken-helper" module-settings --config "$1" >/dev/null
}
conf=/mnt/authtoken.toml
write_config "$conf" "https://$addr/mdm/checkin"
# Nothing listens on port 1: unreachable.
write_config /mnt/down.toml "https://127.0.0.1:1/mdm/checkin"

# policy NAME LINE...: an OpenPAM policy file in /etc/pam.d (ours).
policy() {
  local name=$1; shift
  printf '%s\n' "$@" >"/mnt/pam.d/$name"
  chmod 0644 "/mnt/pam.d/$name"
}
mount --bind /mnt/pam.d /etc/pam.d
# Where a policy has no chain, OpenPAM falls back to "other": refuse.
policy other "auth required $deny" "account required $deny" "session required $deny" "password required $deny"

# run_session SCRIPT: SCRIPT in a new login session (process session) of
# its own, as a terminal login gives one, so the session cache applies.
run_session() { timeout 120 setsid --wait bash -c "$1"; }
# Inputs go in as here-strings: a pipe from echo would die of SIGPIPE
# (and fail the test under pipefail) whenever a harness run answers
# without reading them.
# answers OUTPUT STEP: the number STEP answered.
answer() { sed -n "s/^$2=//p" <<<"$1" | head -1; }
requests_for() { grep -c "user=\"$1\" step=challenge" /mnt/server.log || true; }

# --- The module's own numbers on OpenPAM's handle. --------------------
policy direct "auth required $module config=$conf"
out=$(run_session "'$harness' direct alice auth setcred acct open env close env -- '$module' config=$conf" <<<'alice pw')
check "direct: right password -> PAM_SUCCESS 0" test "$(answer "$out" auth)" = 0
check "direct: setcred for the user it signed in -> 0" test "$(answer "$out" setcred)" = 0
check "direct: acct_mgmt -> 0" test "$(answer "$out" acct)" = 0
check "direct: open_session -> 0" test "$(answer "$out" open)" = 0
check "direct: AUTHTOKEN_FILE through OpenPAM's pam_putenv" grep -Eq '^env: AUTHTOKEN_FILE=/mnt/cache/[^ ]+/alice[.]token$' <<<"$out"
check "direct: the token file exists while the session is open" grep -qx 'token-file: present' <<<"$out"
# OpenPAM cannot remove a variable: the module leaves it empty.
check "direct: close_session -> 0, and AUTHTOKEN_FILE is emptied" bash -c \
  "test \"\$(sed -n 's/^close=//p' <<<\"\$1\")\" = 0 && test \"\$(grep -c '^env: AUTHTOKEN_FILE=\$' <<<\"\$1\")\" = 1" _ "$out"
check "direct: the token file is gone after close_session" test -z "$(find /mnt/cache -name 'alice.token')"
check "direct: asked once, with the module's prompt" test "$(grep -c '^prompt: ' <<<"$out")" = 1

out=$(run_session "'$harness' direct alice auth setcred acct -- '$module' config=$conf" <<<'not it')
check "direct: wrong password -> PAM_AUTH_ERR 9" test "$(answer "$out" auth)" = 9
check "direct: setcred and acct_mgmt step aside (PAM_IGNORE 25)" test "$(answer "$out" setcred)$(answer "$out" acct)" = 2525

before=$(requests_for bob)
out=$(run_session "echo any | '$harness' direct bob auth -- '$module' config=$conf; echo any | '$harness' direct bob auth -- '$module' config=$conf")
check "direct: unmanaged (410) -> PAM_IGNORE 25, twice in one login session" test "$(grep -c '^auth=25$' <<<"$out")" = 2
check "direct: one request for bob in that login session" test "$(($(requests_for bob) - before))" = 1
check "direct: and the second time no password was asked" test "$(grep -c '^prompt: ' <<<"$out")" = 1

out=$(run_session "'$harness' direct alice auth -- '$module' config=/mnt/down.toml" <<<'alice pw')
check "direct: unreachable authority -> PAM_AUTHINFO_UNAVAIL 12" test "$(answer "$out" auth)" = 12

# The other codes the module gives: a user name it refuses (13), a
# conversation that cannot answer (6), a session it cannot keep the token
# of (19), a password change (25: done at the authority).
out=$("$harness" direct '' auth -- "$module" config=$conf </dev/null)
check "direct: an empty user name -> PAM_USER_UNKNOWN 13" test "$(answer "$out" auth)" = 13
out=$("$harness" direct alice auth -- "$module" config=$conf </dev/null)
check "direct: no answer to the prompt -> PAM_CONV_ERR 6" test "$(answer "$out" auth)" = 6
write_config /mnt/nocache.toml "https://$addr/mdm/checkin"
sed -i 's#^cache_dir = .*#cache_dir = "/mnt/authtoken.toml/cache"#' /mnt/nocache.toml
"$bin/authtoken-helper" module-settings --config /mnt/nocache.toml >/dev/null
out=$("$harness" direct alice auth open chauthtok -- "$module" config=/mnt/nocache.toml <<<'alice pw')
check "direct: a token but no usable session cache -> auth 0, open_session PAM_SESSION_ERR 19" \
  test "$(answer "$out" auth)/$(answer "$out" open)" = 0/19
check "direct: chauthtok -> PAM_IGNORE 25" test "$(answer "$out" chauthtok)" = 25

# A config that does not exist: the module says so to the user, except
# under PAM_SILENT (OpenPAM's 0x80000000; Linux-PAM's 0x8000 would not do).
out=$("$harness" direct alice auth -- "$module" config=/mnt/missing.toml <<<'alice pw')
check "direct: broken config -> 12 and a message to the user" bash -c \
  "grep -qx 'auth=12' <<<\"\$1\" && grep -q '^error: pam_authtoken: configuration error' <<<\"\$1\"" _ "$out"
out=$("$harness" -s direct alice auth -- "$module" config=/mnt/missing.toml <<<'alice pw')
check "direct: PAM_SILENT -> 12 and not a word" bash -c \
  "grep -qx 'auth=12' <<<\"\$1\" && ! grep -q '^error: ' <<<\"\$1\"" _ "$out"

# --- Through OpenPAM's chains. -----------------------------------------
policy single "auth required $module config=$conf" \
  "account required $module config=$conf" \
  "session required $module config=$conf"
out=$(run_session "'$harness' single alice auth setcred acct open env close" <<<'alice pw')
check "chain: auth, setcred, acct_mgmt, open_session, close_session all 0" \
  test "$(answer "$out" auth)$(answer "$out" setcred)$(answer "$out" acct)$(answer "$out" open)$(answer "$out" close)" = 00000
check "chain: the session's AUTHTOKEN_FILE exists while it is open" bash -c \
  "grep -Eq '^env: AUTHTOKEN_FILE=/mnt/cache/' <<<\"\$1\" && grep -qx 'token-file: present' <<<\"\$1\"" _ "$out"
out=$("$harness" single alice auth <<<'not it')
check "chain: wrong password -> 9" test "$(answer "$out" auth)" = 9

policy then-deny "auth sufficient $module config=$conf" "auth required $deny"
policy then-permit "auth sufficient $module config=$conf" "auth required $permit"
out=$(echo any | "$harness" then-deny bob auth)
check "chain: 410, then pam_deny decides -> 9" test "$(answer "$out" auth)" = 9
out=$(echo any | "$harness" then-permit bob auth)
check "chain: 410, then pam_permit decides -> 0" test "$(answer "$out" auth)" = 0
out=$("$harness" then-deny alice auth <<<'alice pw')
check "chain: sufficient and a token -> 0 (pam_deny never asked)" test "$(answer "$out" auth)" = 0

policy use-first "auth required $module config=$conf use_first_pass"
policy try-first "auth required $module config=$conf try_first_pass"
before=$(requests_for alice)
out=$("$harness" use-first alice auth </dev/null)
check "use_first_pass without an earlier password -> 9, nothing asked" bash -c \
  "grep -qx 'auth=9' <<<\"\$1\" && ! grep -q '^prompt: ' <<<\"\$1\"" _ "$out"
check "and no request" test "$(requests_for alice)" = "$before"
out=$("$harness" -a 'alice pw' use-first alice auth </dev/null)
check "use_first_pass takes PAM_AUTHTOK (pam_get_authtok) -> 0, nothing asked" bash -c \
  "grep -qx 'auth=0' <<<\"\$1\" && ! grep -q '^prompt: ' <<<\"\$1\"" _ "$out"
out=$("$harness" -a 'not it' try-first alice auth </dev/null)
check "try_first_pass takes a wrong PAM_AUTHTOK -> 9, nothing asked" bash -c \
  "grep -qx 'auth=9' <<<\"\$1\" && ! grep -q '^prompt: ' <<<\"\$1\"" _ "$out"
out=$("$harness" try-first alice auth <<<'alice pw')
check "try_first_pass without one asks once -> 0" bash -c \
  "grep -qx 'auth=0' <<<\"\$1\" && test \"\$(grep -c '^prompt: ' <<<\"\$1\")\" = 1" _ "$out"
policy prompt "auth required $module config=$conf authtok_prompt=Token:"
out=$("$harness" prompt alice auth <<<'alice pw')
check "OpenPAM's authtok_prompt option sets the prompt" grep -qx 'prompt: Token:' <<<"$out"
policy silent-broken "auth required $module config=/mnt/missing.toml"
out=$("$harness" -s silent-broken alice auth <<<'alice pw')
check "chain: PAM_SILENT keeps the module quiet" bash -c \
  "grep -qx 'auth=12' <<<\"\$1\" && ! grep -q '^error: ' <<<\"\$1\"" _ "$out"

# sshd's way: pam_authenticate in a child that exits without pam_end,
# then, in its parent (same login session), pam_open_session and only
# then pam_setcred; the module is the stack's only auth module, so a
# setcred that stepped aside would fail the login (OpenPAM: 4).
policy sshd "auth required $module config=$conf" "account required $permit" \
  "session required $module config=$conf"
out=$(run_session "echo 'alice pw' | '$harness' -x sshd alice auth; '$harness' sshd alice open setcred env close </dev/null")
check "sshd's order, minimal stack: auth 0 in the child" test "$(answer "$out" auth)" = 0
check "sshd's order: open_session takes the child's token -> 0" test "$(answer "$out" open)" = 0
check "sshd's order: setcred after it -> 0" test "$(answer "$out" setcred)" = 0
check "sshd's order: the session has AUTHTOKEN_FILE" grep -Eq '^env: AUTHTOKEN_FILE=/mnt/cache/[^ ]+/alice[.]token$' <<<"$out"
check "sshd's order: no hand-off is left" test -z "$(find /mnt/cache -name '*.handoff')"

# --- The shipped macOS stacks and the FreeBSD stack (docs/guide/freebsd.md). ------------
# stand_in FILE LOCAL: FILE as written, with our module and config at the
# module's path and, for modules Linux lacks, OpenPAM's: the system's own
# password check in auth (pam_opendirectory, pam_unix) is LOCAL (pam_deny:
# the user has no local password or gave a wrong one; pam_permit: the
# local password was right); other auth modules (Kerberos, smart card,
# NTLM, …) have nothing to sign in with here (pam_deny); the rest
# (account, session, password) let the user through (pam_permit), except
# a pam_deny as written.
stand_in() {
  local local_check=$2
  sed -E -e '/^[[:space:]]*(#|$)/d' \
    -e "s#^([a-z]+[[:space:]]+[a-z]+[[:space:]]+)/usr/local/lib/pam/pam_authtoken\\.so\\.2#\\1$module config=$conf#" \
    -e "s#^([a-z]+[[:space:]]+[a-z]+[[:space:]]+)/usr/local/lib/pam_authtoken\\.so#\\1$module config=$conf#" \
    -e "s#^([a-z]+[[:space:]]+[a-z]+[[:space:]]+)pam_(permit|deny)\\.so#\\1$lib/pam_\\2.so#" \
    -e "s#^(auth[[:space:]]+[a-z]+[[:space:]]+)pam_(opendirectory|unix)\\.so#\\1$local_check#" \
    -e "s#^(auth[[:space:]]+[a-z]+[[:space:]]+)pam_[a-z0-9_]+\\.so#\\1$deny#" \
    -e "s#^([a-z]+[[:space:]]+[a-z]+[[:space:]]+)pam_[a-z0-9_]+\\.so#\\1$permit#" "$1"
}
# macOS's own /etc/pam.d/sudo (14, 15), which includes the sudo_local we ship.
cat >/mnt/macos-stock-sudo <<'STOCK'
auth       include        sudo_local
auth       sufficient     pam_smartcard.so
auth       required       pam_opendirectory.so
account    required       pam_permit.so
password   required       pam_deny.so
session    required       pam_permit.so
STOCK
stand_in pam.d/macos-sudo unused >/mnt/pam.d/sudo_local
chmod 0644 /mnt/pam.d/sudo_local
# FreeBSD's "system" (pam_unix for the password) for docs/guide/freebsd.md's stack.
freebsd=$(awk '/^Enable for sudo in `\/usr\/local\/etc\/pam.d\/sudo`/ { seen = 1 }
  seen && /^```conf$/ { inside = 1; next } inside && /^```$/ { exit } inside { print }' docs/guide/freebsd.md)
check "docs/guide/freebsd.md: the FreeBSD stack is there" grep -q 'pam_authtoken.so' <<<"$freebsd"
printf '%s\n' "$freebsd" >/mnt/freebsd-sudo
for local_check in deny permit; do
  policy "system-$local_check" "auth required $(eval echo "\$$local_check")" "account required $permit"
done
# name:file — macos-sudo is the stock sudo with our sudo_local in it.
stacks=(macos-sudo:/mnt/macos-stock-sudo macos-sshd:pam.d/macos-sshd macos-login:pam.d/macos-login
  macos-screensaver:pam.d/macos-screensaver macos-authorization:pam.d/macos-authorization
  freebsd-sudo:/mnt/freebsd-sudo)
for entry in "${stacks[@]}"; do
  name=${entry%%:*} stack=${entry#*:}
  for local_check in deny permit; do
    stand_in "$stack" "$(eval echo "\$$local_check")" |
      sed -E 's#^([a-z]+[[:space:]]+include[[:space:]]+)system$#\1system-'"$local_check"'#' >"/mnt/pam.d/$name-$local_check"
    chmod 0644 "/mnt/pam.d/$name-$local_check"
  done
  out=$(run_session "'$harness' $name-deny alice auth acct open env close" <<<'alice pw')
  check "$name: the authority's password -> 0" test "$(answer "$out" auth)" = 0
  check "$name: acct_mgmt -> 0" test "$(answer "$out" acct)" = 0
  if grep -Eq '^session[[:space:]].*pam_authtoken' "$stack"; then
    check "$name: the session gets AUTHTOKEN_FILE" grep -Eq '^env: AUTHTOKEN_FILE=/mnt/cache/' <<<"$out"
  fi
  out=$("$harness" "$name-deny" alice auth < <(printf 'not it\nnot it\n'))
  check "$name: a wrong password, no local one -> 9" test "$(answer "$out" auth)" = 9
  out=$("$harness" "$name-permit" alice auth < <(printf 'not it\nnot it\n'))
  check "$name: the authority refuses, the local password decides -> 0" test "$(answer "$out" auth)" = 0
  out=$("$harness" "$name-deny" bob auth < <(printf 'any\nany\n'))
  check "$name: unmanaged (410), the local check refuses -> 9" test "$(answer "$out" auth)" = 9
  out=$("$harness" "$name-permit" bob auth < <(printf 'any\nany\n'))
  check "$name: unmanaged (410), the local check decides -> 0" test "$(answer "$out" auth)" = 0
done

# The macOS stacks as written, parsed by OpenPAM's policy parser, which
# also loads every module it names: here each name is a copy of
# pam_permit at the path macOS has it (/usr/lib/pam on a Mac; OpenPAM's
# built-in search path here), in this namespace only.
mount -t tmpfs -o mode=0755 tmpfs /usr/local/lib
mkdir -p /usr/local/lib/pam
install -m 0755 "$built_module" /usr/local/lib/pam/pam_authtoken.so.2
# OpenPAM fills a facility the file leaves out from "other": make that
# one recognisable, so only the file's own lines are counted.
install -m 0755 "$prefix/lib/pam_deny.so.2" "$lib/other_fallback.so"
policy other "auth required $lib/other_fallback.so" "account required $lib/other_fallback.so" \
  "session required $lib/other_fallback.so" "password required $lib/other_fallback.so"
# What macOS 14 and 15 have in /usr/lib/pam.
macos_modules="pam_aks pam_deny pam_group pam_krb5 pam_launchd pam_localauthentication pam_mount
  pam_nologin pam_ntlm pam_opendirectory pam_permit pam_rootok pam_sacl pam_self pam_smartcard
  pam_tid pam_uwtmp"
for stack in pam.d/macos-*; do
  name=$(basename "$stack")
  for m in $(sed -E -n 's/^[a-z]+[[:space:]]+[a-z]+[[:space:]]+(pam_[a-z0-9_]+)\.so.*/\1/p' "$stack" | sort -u); do
    check "$name: $m is a module macOS has" grep -qw "$m" <<<"$macos_modules"
    [ -e "/usr/local/lib/$m.so.2" ] || install -m 0755 "$prefix/lib/pam_permit.so.2" "/usr/local/lib/$m.so.2"
  done
  install -m 0644 "$stack" "/mnt/pam.d/$name"
  dump=$(cd /mnt && "$prefix/bin/openpam_dump_policy" "$name" 2>&1)
  lines=$(grep -Ecv '^[[:space:]]*(#|$)' "$stack")
  parsed=$(awk '/^static pam_chain_t .* = \{$/ { getline; if ($0 !~ /other_fallback_pam_module/) n++ } END { print n + 0 }' <<<"$dump")
  check "$name: OpenPAM parses all $lines lines" test "$parsed" = "$lines"
  check "$name: with the module's path as written" grep -q 'pam_authtoken_pam_module' <<<"$dump"
done

report openpam
