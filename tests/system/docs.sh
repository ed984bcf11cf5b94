#!/usr/bin/env bash
# The man pages cannot drift from the programs: every option that a
# command's --help lists appears in its man page, and every page renders
# without a warning from man/groff.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --quiet --locked --workspace
bin="$PWD/target/debug"
man_dir="$PWD/packaging/man"
. tests/system/check.sh

# options PROGRAM [SUBCOMMAND]: the long options --help lists.
options() {
  "$@" --help | grep -oE -- '(^|[[:space:]])--[a-z][a-z0-9-]*' | tr -d ' \t' | sort -u |
    grep -vxE -- '--(help|version)'
}
# in_page PAGE OPTION: the option, as roff writes it (\-\-name).
in_page() { grep -qF -- "$(sed 's/-/\\-/g' <<<"$2")" "$man_dir/$1"; }

for sub in authenticate module-settings sync; do
  for option in $(options "$bin/authtoken-helper" "$sub"); do
    check "authtoken-helper $sub $option is in authtoken-helper.8" in_page authtoken-helper.8 "$option"
  done
  check "authtoken-helper.8 has $sub" grep -q "^\.B authtoken-helper $sub" "$man_dir/authtoken-helper.8"
done
for sub in join check-config login status forget sync; do
  for option in $(options "$bin/authtoken" "$sub"); do
    check "authtoken $sub $option is in authtoken.8" in_page authtoken.8 "$option"
  done
  check "authtoken.8 has $sub" grep -q "^\.B authtoken $sub" "$man_dir/authtoken.8"
done
# Each program has the subcommands its page says, and no other.
check "authtoken-helper has no administrator's commands" \
  bash -c "! '$bin/authtoken-helper' login root --help >/dev/null 2>&1"
for sub in serve add-user add-group enroll-device gen-tls gen-device-ca issue-cert join-token list-devices revoke-device list-users remove-user; do
  for option in $(options "$bin/authtoken-server" "$sub"); do
    check "authtoken-server $sub $option is in authtoken-server.8" in_page authtoken-server.8 "$option"
  done
  check "authtoken-server.8 has $sub" grep -q "^\.B authtoken-server $sub" "$man_dir/authtoken-server.8"
done
# The README is the front door: a few hundred lines, and every relative
# link in it and in the guide (docs/guide/) leads to a file that exists.
check "README.md is a few hundred lines at most ($(wc -l <README.md))" test "$(wc -l <README.md)" -le 300
for page in README.md docs/*.md docs/guide/*.md SECURITY.md; do
  dir=$(dirname "$page")
  for link in $(grep -oE '\]\([^)#:]+(#[^)]*)?\)' "$page" | sed -E 's/^\]\(//; s/\)$//; s/#.*//' | sort -u); do
    check "$page links to $link, which exists" test -e "$dir/$link"
  done
done
for page in "$man_dir"/*.[58]; do
  warnings=$(MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null || true)
  check "$(basename "$page") renders without warnings${warnings:+: $warnings}" test -z "$warnings"
  # roff that runs an option into its argument: "--configPATH".
  check "$(basename "$page") synopsis keeps options and arguments apart" \
    bash -c "! MANWIDTH=200 man -l '$page' 2>/dev/null | grep -qE -- '--[a-z-]+[A-Z]{2,}'"
done
report docs
