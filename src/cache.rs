//! The login-session cache under `cache_dir` (default `/run/authtoken`):
//! the current AuthToken of a (user, login session) and the "unmanaged"
//! (410) mark that spares the rest of the session any further request.
//!
//! Layout: `<cache_dir>/<session key>/<user>.token` (exactly the token) and
//! `<user>.unmanaged` (a small JSON record). Directories are root-owned 0700,
//! files root-owned 0600, written to a temporary name and renamed into
//! place, and opened with `O_NOFOLLOW`. Anything with the wrong owner, mode
//! or type, or unparsable, is ignored and logged — never trusted.

use std::fs::{DirBuilder, File};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::log::{self, Level};

const TOKEN_SUFFIX: &str = ".token";
const HANDOFF_SUFFIX: &str = ".handoff";
/// A hand-off older than this is stale (sshd opens the session within
/// moments of its authentication child finishing).
const HANDOFF_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(120);
const UNMANAGED_SUFFIX: &str = ".unmanaged";
const MAX_ENTRY_BYTES: u64 = 128 * 1024;
const AUDIT_UNSET: u32 = u32::MAX;
const LOGIND_SESSIONS: &str = "/run/systemd/sessions";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not trusted: {why}")]
    Untrusted { path: PathBuf, why: String },
    #[error("cannot tell which login session this is")]
    NoSession,
    /// The session leader cannot be seen: `getsid` answers 0 (the session
    /// began outside this pid namespace, as in a container entered without
    /// a new session), or the leader has exited. Without its start time a
    /// key could be inherited through pid reuse, so the cache is not used.
    #[error("the process session's leader is not visible (outside this pid namespace, or exited)")]
    LeaderNotVisible,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
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
    pub fn current() -> Result<SessionKey, CacheError> {
        if let Some(id) = audit_session_id() {
            return Ok(SessionKey(format!("audit-{id}")));
        }
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        if let Some(id) = logind_session_of(&cgroup) {
            return Ok(SessionKey(format!("logind-{id}")));
        }
        SessionKey::process_session()
    }

    /// The process session alone (leader pid plus start time). It stays the
    /// same when `pam_loginuid` starts an audit session, and it is shared by
    /// a host's forked authentication child (sshd) and its parent.
    pub fn process_session() -> Result<SessionKey, CacheError> {
        let leader = nix::unistd::getsid(None)
            .map_err(|_| CacheError::NoSession)?
            .as_raw();
        let start = leader_start_time(leader).ok_or(CacheError::LeaderNotVisible)?;
        Ok(SessionKey(format!("sid-{leader}-{start}")))
    }

    fn parse(name: &str) -> Option<SessionKey> {
        let valid =
            name.starts_with("audit-") || name.starts_with("logind-") || name.starts_with("sid-");
        (valid && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .then(|| SessionKey(name.to_owned()))
    }

    /// Whether the session still exists; `None` when that cannot be known.
    fn alive(&self, live_audit_ids: &[u32]) -> Option<bool> {
        if let Some(id) = self.0.strip_prefix("audit-") {
            let id: u32 = id.parse().ok()?;
            return Some(live_audit_ids.contains(&id));
        }
        if let Some(id) = self.0.strip_prefix("logind-") {
            let sessions = Path::new(LOGIND_SESSIONS);
            return sessions.is_dir().then(|| sessions.join(id).exists());
        }
        let rest = self.0.strip_prefix("sid-")?;
        let (pid, start) = rest.split_once('-')?;
        let pid: i32 = pid.parse().ok()?;
        Some(leader_start_time(pid).map(|s| s.to_string()).as_deref() == Some(start))
    }
}

/// The logind session id in `/proc/self/cgroup` text: a scope exactly at
/// `/user.slice/user-UID.slice/session-ID.scope`, where only logind (root)
/// can create it. A user's own delegated subtree (`user@UID.service/…`) may
/// hold a directory of the same name, and is not taken.
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

fn audit_session_id() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/self/sessionid").ok()?;
    let id: u32 = text.trim().parse().ok()?;
    (id != AUDIT_UNSET).then_some(id)
}

/// The start time (field 22 of `/proc/PID/stat`, clock ticks since boot) of
/// `pid` if it is alive and leads its own session. The session check also
/// refuses a `/proc` mounted from another pid namespace, where `pid` would
/// name some unrelated process.
fn leader_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.rsplit_once(')')?.1;
    // after_comm starts at field 3 (state): session (field 6) is index 3,
    // start time (field 22) index 19.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let session: i32 = fields.get(3)?.parse().ok()?;
    (session == pid).then_some(())?;
    fields.get(19)?.parse().ok()
}

fn live_audit_session_ids() -> Vec<u32> {
    let mut ids = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(entry.path().join("sessionid")) {
                if let Ok(id) = text.trim().parse::<u32>() {
                    if id != AUDIT_UNSET && !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
    }
    ids
}

/// A user name as a file name: `[A-Za-z0-9_-]` kept, everything else `%XX`.
fn encode_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for b in user.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode_user(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The 410 record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnmanagedRecord {
    v: u32,
    user: String,
    since: u64,
}

/// Root-owned, not a symlink, of the expected kind, and private to root.
fn check_private(meta: &std::fs::Metadata, dir: bool) -> Result<(), String> {
    let kind_ok = if dir { meta.is_dir() } else { meta.is_file() };
    if !kind_ok {
        return Err(if meta.file_type().is_symlink() {
            "is a symlink".into()
        } else {
            format!(
                "is not a {}",
                if dir { "directory" } else { "regular file" }
            )
        });
    }
    if meta.uid() != 0 || meta.gid() != 0 {
        return Err(format!(
            "is owned by {}:{}, not root",
            meta.uid(),
            meta.gid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!("has mode {:o}, not private", meta.mode() & 0o7777));
    }
    Ok(())
}

static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// One cached (session, user) entry, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub session: String,
    pub user: String,
    pub state: EntryState,
    pub session_alive: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    Token { bytes: u64 },
    Unmanaged { since: u64 },
    Untrusted,
}

pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Opens (creating if needed) the cache directory and checks it.
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        ensure_private_dir(root)?;
        Ok(Cache {
            root: root.to_owned(),
        })
    }

    fn session_dir(&self, key: &SessionKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn entry_path(&self, key: &SessionKey, user: &str, suffix: &str) -> PathBuf {
        self.session_dir(key)
            .join(format!("{}{suffix}", encode_user(user)))
    }

    /// Whether a trusted private file is at `path`, by `lstat` alone (the
    /// token is not read into memory just to see that it is there).
    fn exists_trusted(&self, path: &Path) -> bool {
        match std::fs::symlink_metadata(path) {
            Ok(meta) => match check_private(&meta, false) {
                Ok(()) => true,
                Err(why) => {
                    warn(&format!("ignoring cache entry {}: {why}", path.display()));
                    false
                }
            },
            Err(_) => false,
        }
    }

    /// Reads a private file, or `None` (logged) if it is absent or untrusted.
    fn read_trusted(&self, path: &Path) -> Option<Zeroizing<Vec<u8>>> {
        match read_private_file(path) {
            Ok(bytes) => Some(bytes),
            Err(CacheError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                None
            }
            Err(e) => {
                warn(&format!("ignoring cache entry: {e}"));
                None
            }
        }
    }

    /// Whether `user` was answered 410 earlier in this login session.
    pub fn is_unmanaged(&self, key: &SessionKey, user: &str) -> bool {
        let dir = self.session_dir(key);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) => {
                if let Err(why) = check_private(&meta, true) {
                    warn(&format!(
                        "ignoring cache directory {}: {why}",
                        dir.display()
                    ));
                    return false;
                }
            }
            Err(_) => return false,
        }
        let path = self.entry_path(key, user, UNMANAGED_SUFFIX);
        let Some(bytes) = self.read_trusted(&path) else {
            return false;
        };
        match serde_json::from_slice::<UnmanagedRecord>(&bytes) {
            Ok(record) if record.v == 1 && record.user == user => true,
            _ => {
                warn(&format!("ignoring corrupt cache entry {}", path.display()));
                false
            }
        }
    }

    /// Remembers a 410 for (`key`, `user`).
    pub fn mark_unmanaged(&self, key: &SessionKey, user: &str) -> Result<(), CacheError> {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let record = UnmanagedRecord {
            v: 1,
            user: user.to_owned(),
            since,
        };
        let bytes = serde_json::to_vec(&record).unwrap_or_default();
        self.write_entry(key, user, UNMANAGED_SUFFIX, &bytes)?;
        Ok(())
    }

    /// Writes the session's token, atomically replacing an older one.
    pub fn store_token(
        &self,
        key: &SessionKey,
        user: &str,
        token: &str,
    ) -> Result<PathBuf, CacheError> {
        self.write_entry(key, user, TOKEN_SUFFIX, token.as_bytes())
    }

    /// Replaces the token only where this session already holds one: a new
    /// handshake (sudo, unlock) killed the old token, but a process that is
    /// not yet inside the login session must not create entries for it.
    pub fn replace_token(
        &self,
        key: &SessionKey,
        user: &str,
        token: &str,
    ) -> Result<bool, CacheError> {
        let path = self.entry_path(key, user, TOKEN_SUFFIX);
        if !self.exists_trusted(&path) {
            return Ok(false);
        }
        self.store_token(key, user, token)?;
        Ok(true)
    }

    /// Leaves the token of a successful `authenticate` for this process
    /// session's `open_session`, which may run in another process (sshd
    /// authenticates in a forked child).
    pub fn leave_handoff(
        &self,
        key: &SessionKey,
        user: &str,
        token: &str,
    ) -> Result<(), CacheError> {
        self.write_entry(key, user, HANDOFF_SUFFIX, token.as_bytes())?;
        Ok(())
    }

    /// The hand-off file for `user` if it is fresh; a stale one is removed.
    fn fresh_handoff(&self, key: &SessionKey, user: &str) -> Option<PathBuf> {
        let path = self.entry_path(key, user, HANDOFF_SUFFIX);
        let age = std::fs::symlink_metadata(&path)
            .ok()?
            .modified()
            .ok()?
            .elapsed()
            .ok();
        if age.is_some_and(|age| age <= HANDOFF_MAX_AGE) {
            Some(path)
        } else {
            let _ = std::fs::remove_file(&path);
            None
        }
    }

    /// Whether a fresh, trusted hand-off for `user` is waiting.
    pub fn has_handoff(&self, key: &SessionKey, user: &str) -> bool {
        self.fresh_handoff(key, user)
            .is_some_and(|path| self.exists_trusted(&path))
    }

    /// Takes (reads and removes) a fresh, trusted hand-off for `user`.
    pub fn take_handoff(&self, key: &SessionKey, user: &str) -> Option<Zeroizing<String>> {
        let path = self.fresh_handoff(key, user)?;
        let bytes = self.read_trusted(&path)?;
        let _ = std::fs::remove_file(&path);
        let token = std::str::from_utf8(&bytes).ok().filter(|t| !t.is_empty())?;
        Some(Zeroizing::new(token.to_owned()))
    }

    /// Drops a hand-off that is no longer needed.
    pub fn discard_handoff(&self, key: &SessionKey, user: &str) {
        let _ = std::fs::remove_file(self.entry_path(key, user, HANDOFF_SUFFIX));
        let _ = std::fs::remove_dir(self.session_dir(key));
    }

    /// Path of the session's token file if it holds a trusted token.
    pub fn token_path(&self, key: &SessionKey, user: &str) -> Option<PathBuf> {
        let path = self.entry_path(key, user, TOKEN_SUFFIX);
        self.exists_trusted(&path).then_some(path)
    }

    /// Forgets (`key`, `user`): token and mark. Removes the session
    /// directory when it is left empty.
    pub fn remove_user(&self, key: &SessionKey, user: &str) -> bool {
        let mut removed = false;
        for suffix in [TOKEN_SUFFIX, UNMANAGED_SUFFIX] {
            removed |= std::fs::remove_file(self.entry_path(key, user, suffix)).is_ok();
        }
        let _ = std::fs::remove_dir(self.session_dir(key));
        removed
    }

    fn write_entry(
        &self,
        key: &SessionKey,
        user: &str,
        suffix: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, CacheError> {
        let dir = self.session_dir(key);
        ensure_private_dir(&dir)?;
        let target = self.entry_path(key, user, suffix);
        let temp = dir.join(format!(
            ".tmp-{}-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed),
            encode_user(user)
        ));
        let write = || -> std::io::Result<()> {
            let mut file = File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&temp)?;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            std::os::unix::fs::fchown(&file, Some(0), Some(0))?;
            file.write_all(bytes)?;
            std::fs::rename(&temp, &target)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            io_error(&target)(e)
        })?;
        Ok(target)
    }

    /// Removes the directories of login sessions that no longer exist.
    pub fn sweep(&self) {
        let live = live_audit_session_ids();
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = SessionKey::parse(&name) else {
                continue;
            };
            if key.alive(&live) == Some(false) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Every cached entry, without tokens.
    pub fn list(&self) -> Vec<Entry> {
        let live = live_audit_session_ids();
        let mut out = Vec::new();
        let Ok(sessions) = std::fs::read_dir(&self.root) else {
            return out;
        };
        for session in sessions.flatten() {
            let name = session.file_name().to_string_lossy().into_owned();
            let Some(key) = SessionKey::parse(&name) else {
                continue;
            };
            let alive = key.alive(&live);
            let Ok(files) = std::fs::read_dir(session.path()) else {
                continue;
            };
            for file in files.flatten() {
                let file_name = file.file_name().to_string_lossy().into_owned();
                let (encoded, is_token) = if let Some(u) = file_name.strip_suffix(TOKEN_SUFFIX) {
                    (u, true)
                } else if let Some(u) = file_name.strip_suffix(UNMANAGED_SUFFIX) {
                    (u, false)
                } else {
                    continue;
                };
                let Some(user) = decode_user(encoded) else {
                    continue;
                };
                let state = match (read_private_file(&file.path()), is_token) {
                    (Ok(bytes), true) => EntryState::Token {
                        bytes: bytes.len() as u64,
                    },
                    (Ok(bytes), false) => match serde_json::from_slice::<UnmanagedRecord>(&bytes) {
                        Ok(r) if r.user == user => EntryState::Unmanaged { since: r.since },
                        _ => EntryState::Untrusted,
                    },
                    (Err(_), _) => EntryState::Untrusted,
                };
                out.push(Entry {
                    session: name.clone(),
                    user,
                    state,
                    session_alive: alive,
                });
            }
        }
        out.sort_by(|a, b| (&a.session, &a.user).cmp(&(&b.session, &b.user)));
        out
    }
}

fn warn(message: &str) {
    log::send(crate::module::LOG_IDENT, Level::Warning, message);
}

/// Creates `dir` (0700 root) if missing, then insists it is a private,
/// root-owned directory and not a symlink.
fn ensure_private_dir(dir: &Path) -> Result<(), CacheError> {
    match DirBuilder::new().mode(0o700).create(dir) {
        // A setuid host (sudo) runs with the caller's gid, which the new
        // directory would inherit: make it root's.
        Ok(()) => std::os::unix::fs::chown(dir, Some(0), Some(0)).map_err(io_error(dir))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(dir)(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io_error(dir))?;
    check_private(&meta, true).map_err(|why| CacheError::Untrusted {
        path: dir.to_owned(),
        why,
    })
}

/// Opens with `O_NOFOLLOW`, checks ownership, mode and size on the open
/// descriptor, and reads.
fn read_private_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, CacheError> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                CacheError::Untrusted {
                    path: path.to_owned(),
                    why: "is a symlink".into(),
                }
            } else {
                io_error(path)(e)
            }
        })?;
    let meta = file.metadata().map_err(io_error(path))?;
    check_private(&meta, false).map_err(|why| CacheError::Untrusted {
        path: path.to_owned(),
        why,
    })?;
    if meta.len() > MAX_ENTRY_BYTES {
        return Err(CacheError::Untrusted {
            path: path.to_owned(),
            why: "is too large".into(),
        });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.take(MAX_ENTRY_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_encode_safely() {
        for user in ["alice", "jos\u{e9}", "a/b", "..", ".hidden", "x%y", "a b"] {
            let encoded = encode_user(user);
            assert!(
                !encoded.contains('/') && !encoded.starts_with('.'),
                "{encoded}"
            );
            assert_eq!(decode_user(&encoded).as_deref(), Some(user));
        }
    }

    #[test]
    fn session_key_of_this_process() {
        let sid = nix::unistd::getsid(None).unwrap().as_raw();
        let leader_visible = sid != 0 && std::path::Path::new(&format!("/proc/{sid}")).exists();
        match SessionKey::current() {
            Ok(key) => {
                assert!(SessionKey::parse(key.as_str()).is_some(), "{key:?}");
                assert_eq!(key.alive(&live_audit_session_ids()), Some(true));
            }
            // Only a session begun outside this pid namespace, with no audit
            // or logind id either, has no key.
            Err(CacheError::LeaderNotVisible) => {
                assert!(!leader_visible);
                assert!(audit_session_id().is_none());
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
                .alive(&[]),
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
