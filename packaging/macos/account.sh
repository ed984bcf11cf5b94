# service_account NAME COMMENT (macOS): creates a hidden, locked service
# account and its group with dscl unless it exists, at the first id from
# 300 up that no user and no group holds (below 500: not shown at login).
# Sourced by the postinstall scripts, which run as root.
service_account() {
    name=$1 comment=$2
    dscl . -read "/Users/$name" >/dev/null 2>&1 && return 0
    id=300
    while dscl . -search /Users UniqueID "$id" | grep -q . ||
        dscl . -search /Groups PrimaryGroupID "$id" | grep -q .; do
        id=$((id + 1))
        [ "$id" -lt 500 ] || { echo "no free service id below 500 for $name" >&2; return 1; }
    done
    dscl . -read "/Groups/$name" >/dev/null 2>&1 || {
        dscl . -create "/Groups/$name"
        dscl . -create "/Groups/$name" PrimaryGroupID "$id"
        dscl . -create "/Groups/$name" Password '*'
    }
    gid=$(dscl . -read "/Groups/$name" PrimaryGroupID | awk '{print $2}')
    dscl . -create "/Users/$name"
    dscl . -create "/Users/$name" UniqueID "$id"
    dscl . -create "/Users/$name" PrimaryGroupID "$gid"
    dscl . -create "/Users/$name" UserShell /usr/bin/false
    dscl . -create "/Users/$name" NFSHomeDirectory /var/empty
    dscl . -create "/Users/$name" RealName "$comment"
    dscl . -create "/Users/$name" Password '*'
    dscl . -create "/Users/$name" IsHidden 1
}
