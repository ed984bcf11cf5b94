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
/// root cannot be regained; then `PR_SET_NO_NEW_PRIVS` in any case, so
/// nothing this process runs can gain privileges again.
pub fn drop_to(wanted: &str) -> Result<(), PrivilegeError> {
    if Uid::effective().is_root() || Uid::current().is_root() {
        let user = account(wanted)?;
        if user.uid.is_root() {
            return Err(PrivilegeError::Regainable);
        }
        nix::unistd::setgroups(&[]).map_err(call("setgroups"))?;
        nix::unistd::setresgid(user.gid, user.gid, user.gid).map_err(call("setresgid"))?;
        nix::unistd::setresuid(user.uid, user.uid, user.uid).map_err(call("setresuid"))?;
        let uids = nix::unistd::getresuid().map_err(call("getresuid"))?;
        let gids = nix::unistd::getresgid().map_err(call("getresgid"))?;
        let all_uids = [uids.real, uids.effective, uids.saved] == [user.uid; 3];
        let all_gids = [gids.real, gids.effective, gids.saved] == [user.gid; 3];
        let regained = nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .is_ok()
            || nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).is_ok();
        if !all_uids || !all_gids || regained {
            return Err(PrivilegeError::Regainable);
        }
    }
    nix::sys::prctl::set_no_new_privs().map_err(call("PR_SET_NO_NEW_PRIVS"))?;
    Ok(())
}
