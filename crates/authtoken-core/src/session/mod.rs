//! Which login session a process belongs to: the key that scopes the
//! session cache (remembered `410`s, the session's token file).
//!
//! Never taken from the environment: under sudo or su the invoking user
//! writes it. In order: the kernel audit session id (Linux's
//! `/proc/self/sessionid`; on macOS and FreeBSD the BSM audit session of
//! `getaudit_addr`), the logind session scope that holds the process (Linux
//! only: a cgroup only root can create), the process session leader with
//! its start time (so pid reuse cannot inherit a session).

#[cfg_attr(target_os = "linux", path = "linux.rs")]
#[cfg_attr(any(target_os = "macos", target_os = "freebsd"), path = "bsm.rs")]
#[allow(unsafe_code)]
mod os;

#[cfg(target_os = "linux")]
const LOGIND_SESSIONS: &str = "/run/systemd/sessions";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("cannot tell which login session this is")]
    NoSession,
    /// The session leader cannot be seen: `getsid` answers 0 (the session
    /// began outside this pid namespace, as in a container entered without
    /// a new session), or the leader has exited. Without its start time a
    /// key could be inherited through pid reuse, so the cache is not used.
    #[error("the process session's leader is not visible (outside this pid namespace, or exited)")]
    LeaderNotVisible,
}

/// Which login session a process belongs to, as a directory name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey(String);

impl SessionKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The kernel audit session id when set; else the logind session whose
    /// scope holds this process (`/proc/self/cgroup`); else the session
    /// leader's pid plus its start time, so a recycled pid cannot inherit
    /// another session's state. Never the environment: under sudo or su the
    /// invoking user writes it.
    pub fn current() -> Result<SessionKey, SessionError> {
        if let Some(id) = os::audit_session_id() {
            return Ok(SessionKey(format!("audit-{id}")));
        }
        if let Some(id) = os::logind_session() {
            return Ok(SessionKey(format!("logind-{id}")));
        }
        SessionKey::process_session()
    }

    /// The process session alone (leader pid plus start time). It stays the
    /// same when `pam_loginuid` starts an audit session, and it is shared by
    /// a host's forked authentication child (sshd) and its parent.
    pub fn process_session() -> Result<SessionKey, SessionError> {
        let leader = nix::unistd::getsid(None)
            .map_err(|_| SessionError::NoSession)?
            .as_raw();
        let start = os::leader_start_time(leader).ok_or(SessionError::LeaderNotVisible)?;
        Ok(SessionKey(format!("sid-{leader}-{start}")))
    }

    /// A key read back from a cache directory name.
    pub fn parse(name: &str) -> Option<SessionKey> {
        let valid =
            name.starts_with("audit-") || name.starts_with("logind-") || name.starts_with("sid-");
        (valid && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .then(|| SessionKey(name.to_owned()))
    }

    /// Whether the session still exists; `None` when that cannot be known.
    /// `live_audit_ids` is [`live_audit_session_ids`], `None` where the
    /// system cannot list them (macOS, FreeBSD).
    pub fn alive(&self, live_audit_ids: Option<&[u32]>) -> Option<bool> {
        if let Some(id) = self.0.strip_prefix("audit-") {
            let id: u32 = id.parse().ok()?;
            return live_audit_ids.map(|ids| ids.contains(&id));
        }
        if let Some(id) = self.0.strip_prefix("logind-") {
            return logind_session_alive(id);
        }
        let rest = self.0.strip_prefix("sid-")?;
        let (pid, start) = rest.split_once('-')?;
        let pid: i32 = pid.parse().ok()?;
        Some(os::leader_start_time(pid).map(|s| s.to_string()).as_deref() == Some(start))
    }
}

#[cfg(target_os = "linux")]
fn logind_session_alive(id: &str) -> Option<bool> {
    let sessions = std::path::Path::new(LOGIND_SESSIONS);
    sessions.is_dir().then(|| sessions.join(id).exists())
}

/// Only Linux has logind sessions; a `logind-` key read back elsewhere
/// cannot be judged.
#[cfg(not(target_os = "linux"))]
fn logind_session_alive(_id: &str) -> Option<bool> {
    None
}

/// The logind session id in `/proc/self/cgroup` text: a scope exactly at
/// `/user.slice/user-UID.slice/session-ID.scope`, where only logind (root)
/// can create it. A user's own delegated subtree (`user@UID.service/…`) may
/// hold a directory of the same name, and is not taken.
#[cfg(any(target_os = "linux", test))]
fn logind_session_of(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        let mut parts = path.strip_prefix('/')?.split('/');
        let (Some("user.slice"), Some(user), Some(scope), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let uid = user.strip_prefix("user-")?.strip_suffix(".slice")?;
        let id = scope.strip_prefix("session-")?.strip_suffix(".scope")?;
        let valid_id =
            !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric());
        (valid_id && !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_digit()))
            .then(|| id.to_owned())
    })
}

/// Every audit session id some process still holds, or `None` where the
/// system offers no such list (macOS, FreeBSD: those entries then live
/// until `close_session` or reboot).
pub fn live_audit_session_ids() -> Option<Vec<u32>> {
    os::live_audit_session_ids()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_key_of_this_process() {
        let sid = nix::unistd::getsid(None).unwrap().as_raw();
        let leader_visible = sid != 0 && os::leader_start_time(sid).is_some();
        match SessionKey::current() {
            Ok(key) => {
                assert!(SessionKey::parse(key.as_str()).is_some(), "{key:?}");
                let live = live_audit_session_ids();
                let alive = key.alive(live.as_deref());
                assert!(alive != Some(false), "{key:?} {alive:?}");
                if cfg!(target_os = "linux") {
                    assert_eq!(alive, Some(true), "{key:?}");
                }
            }
            // Only a session begun outside this pid namespace, with no audit
            // or logind id either, has no key.
            Err(SessionError::LeaderNotVisible) => {
                assert!(!leader_visible);
                assert!(os::audit_session_id().is_none());
            }
            Err(e) => panic!("{e}"),
        }
        assert_eq!(
            SessionKey::process_session().is_ok(),
            leader_visible,
            "the process session is known exactly when its leader is visible"
        );
        assert_eq!(
            SessionKey::parse("sid-1-999999999999999")
                .unwrap()
                .alive(Some(&[])),
            Some(false)
        );
        assert!(SessionKey::parse("../etc").is_none());
    }

    #[test]
    fn logind_session_only_from_a_scope_logind_made() {
        let of = |text: &str| logind_session_of(text);
        assert_eq!(
            of("0::/user.slice/user-1000.slice/session-3.scope\n").as_deref(),
            Some("3")
        );
        assert_eq!(
            of("1:name=systemd:/user.slice/user-0.slice/session-c42.scope").as_deref(),
            Some("c42")
        );
        for refused in [
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/session-3.scope",
            "0::/system.slice/session-3.scope",
            "0::/user.slice/user-1000.slice/session-.scope",
            "0::/user.slice/user-1000.slice/session-../x.scope",
            "0::/user.slice/user-x.slice/session-3.scope",
            "0::/",
            "",
        ] {
            assert_eq!(of(refused), None, "{refused}");
        }
    }
}
