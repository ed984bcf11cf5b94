//! Dropping root before the network: the helper reads the config, the CA
//! and the client identity as root, then becomes `helper_user` for good
//! (OpenSSH's privilege separation, kanidm's unprivileged daemon), so TLS,
//! HTTP, plist and JSON parsing never run as root.

use authtoken_core::log::{self, Level};
use nix::unistd::{Gid, Uid, User};

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("helper_user {0} does not exist: {HOW_TO_CREATE}")]
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

/// How an administrator makes the helper's account (what the packages do).
pub const HOW_TO_CREATE: &str = "create it (useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin authtoken), install the package, or name an existing unprivileged account in helper_user";

/// The account to become. There is no fallback to a shared account such as
/// `nobody`: every other `nobody` process could then signal, stop or trace
/// the helper mid-login. A missing account fails the login closed, as sshd
/// refuses to start without its privilege-separation user.
pub fn account(wanted: &str) -> Result<User, PrivilegeError> {
    match User::from_name(wanted).ok().flatten() {
        Some(user) => Ok(user),
        None => {
            log::send(
                log::HELPER_IDENT,
                Level::Error,
                &format!(
                    "helper_user {} does not exist: {HOW_TO_CREATE}",
                    log::quote(wanted)
                ),
            );
            Err(PrivilegeError::NoUser(log::quote(wanted)))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_helper_user_says_how_to_create_it() {
        let error = account("no-such-account-authtoken-test").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("no-such-account-authtoken-test"), "{text}");
        assert!(text.contains("useradd"), "{text}");
    }

    #[test]
    #[ignore = "needs root"]
    fn a_uid_0_account_is_refused_before_any_id_changes() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "run as root (scripts/test.sh runs ignored tests as root)"
        );
        assert!(matches!(drop_to("root"), Err(PrivilegeError::Regainable)));
        assert!(Uid::effective().is_root(), "nothing was switched");
    }
}
