# system_user NAME COMMENT: creates a locked system account (no home, no
# shell) unless it exists; shared by the deb and rpm maintainer scripts.
system_user() {
    getent passwd "$1" >/dev/null 2>&1 && return 0
    if command -v systemd-sysusers >/dev/null 2>&1 && [ -f "/usr/lib/sysusers.d/$1.conf" ]; then
        systemd-sysusers "/usr/lib/sysusers.d/$1.conf" && return 0
    fi
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --comment "$2" "$1"
}
