//! Dropping root before the network: the helper reads the config, the CA
//! and the client identity as root, then becomes `helper_user` for good
//! (OpenSSH's privilege separation, kanidm's unprivileged daemon), so TLS,
//! HTTP, plist and JSON parsing never run as root.

use authtoken_core::log::{self, Level};
use nix::unistd::{Gid, Uid, User};

/// Who the helper runs as when `helper_user` does not exist.
const FALLBACK_USER: &str = "nobody";

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("no user {0} to run as")]
    NoUser(String),
    #[error("{step}: {errno}")]
    Call {
        step: &'static str,
        errno: nix::errno::Errno,
    },
    #[error("root could be regained after the switch")]
    Regainable,
}

fn call(step: &'static str) -> impl Fn(nix::errno::Errno) -> PrivilegeError {
    move |errno| PrivilegeError::Call { step, errno }
}

/// The account to become: `wanted`, else `nobody` (logged).
fn account(wanted: &str) -> Result<User, PrivilegeError> {
    if let Some(user) = User::from_name(wanted).ok().flatten() {
        return Ok(user);
    }
    log::send(
        log::HELPER_IDENT,
        Level::Warning,
        &format!(
            "helper_user {} does not exist; running as {FALLBACK_USER} (install the package, or create the user)",
            log::sanitize(wanted)
        ),
    );
    User::from_name(FALLBACK_USER)
        .ok()
        .flatten()
        .ok_or_else(|| PrivilegeError::NoUser(wanted.to_owned()))
}

/// Becomes `wanted` for good when running as root: supplementary groups
/// first, then the group ids, then the user ids, checking afterwards that
/// root cannot be regained; then, on Linux, `PR_SET_NO_NEW_PRIVS` in any
/// case, so nothing this process runs can gain privileges again (macOS and
/// FreeBSD have no such switch before FreeBSD 14; the helper runs nothing).
pub fn drop_to(wanted: &str) -> Result<(), PrivilegeError> {
    if Uid::effective().is_root() || Uid::current().is_root() {
        let user = account(wanted)?;
        if user.uid.is_root() {
            return Err(PrivilegeError::Regainable);
        }
        authtoken_core::platform::clear_supplementary_groups().map_err(call("setgroups"))?;
        switch_ids(&user)?;
        if !holds_only(&user)? || can_regain_root() {
            return Err(PrivilegeError::Regainable);
        }
    }
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_no_new_privs().map_err(call("PR_SET_NO_NEW_PRIVS"))?;
    Ok(())
}

/// Sets real, effective and saved ids: `setres[ug]id` where there is one;
/// on macOS `setgid`/`setuid` as root set all three.
fn switch_ids(user: &User) -> Result<(), PrivilegeError> {
    #[cfg(not(target_os = "macos"))]
    {
        nix::unistd::setresgid(user.gid, user.gid, user.gid).map_err(call("setresgid"))?;
        nix::unistd::setresuid(user.uid, user.uid, user.uid).map_err(call("setresuid"))?;
    }
    #[cfg(target_os = "macos")]
    {
        nix::unistd::setgid(user.gid).map_err(call("setgid"))?;
        nix::unistd::setuid(user.uid).map_err(call("setuid"))?;
    }
    Ok(())
}

/// Whether every id the process holds is the account's (macOS cannot read
/// the saved ids; `setuid` as root has set them, and the regain test below
/// covers them).
fn holds_only(user: &User) -> Result<bool, PrivilegeError> {
    #[cfg(not(target_os = "macos"))]
    {
        let uids = nix::unistd::getresuid().map_err(call("getresuid"))?;
        let gids = nix::unistd::getresgid().map_err(call("getresgid"))?;
        Ok([uids.real, uids.effective, uids.saved] == [user.uid; 3]
            && [gids.real, gids.effective, gids.saved] == [user.gid; 3])
    }
    #[cfg(target_os = "macos")]
    {
        Ok(Uid::current() == user.uid
            && Uid::effective() == user.uid
            && Gid::current() == user.gid
            && Gid::effective() == user.gid)
    }
}

fn can_regain_root() -> bool {
    let root = Uid::from_raw(0);
    let wheel = Gid::from_raw(0);
    #[cfg(not(target_os = "macos"))]
    {
        nix::unistd::setresuid(root, root, root).is_ok()
            || nix::unistd::setresgid(wheel, wheel, wheel).is_ok()
    }
    #[cfg(target_os = "macos")]
    {
        nix::unistd::setuid(root).is_ok()
            || nix::unistd::seteuid(root).is_ok()
            || nix::unistd::setgid(wheel).is_ok()
    }
}
