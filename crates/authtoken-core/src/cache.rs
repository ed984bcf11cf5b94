//! The login-session cache under `cache_dir` (default `/run/authtoken`):
//! the current AuthToken of a (user, login session) and the "unmanaged"
//! (410) mark that spares the rest of the session any further request.
//!
//! Layout: `<cache_dir>/<session key>/<user>.token` (exactly the token) and
//! `<user>.unmanaged` (a small JSON record). Directories are root-owned 0700,
//! files root-owned 0600, written atomically ([`trust::write_private`]) and
//! read through [`trust`], so no symlink is ever followed. Anything with the
//! wrong owner, mode or type, or unparsable, is ignored and logged — never
//! trusted.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::log::{self, Level};
use crate::paths::{self, SessionFile};
use crate::session::{live_audit_session_ids, SessionError, SessionKey};
use crate::trust::{self, Rules, TrustError};
use crate::username::{from_file_name, Username};

/// Beside a token file whose authority said when it expires: the seconds
/// since the epoch, in decimal (the token file itself holds the token only).
/// A hand-off older than this is stale (sshd opens the session within
/// moments of its authentication child finishing).
const HANDOFF_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(120);
const MAX_ENTRY_BYTES: u64 = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    File(#[from] TrustError),
    #[error("{0}")]
    Session(#[from] SessionError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The 410 record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnmanagedRecord {
    v: u32,
    user: String,
    since: u64,
}

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
    Token {
        bytes: u64,
        /// When the authority said the token expires (seconds since the epoch).
        expires: Option<u64>,
    },
    /// A token left for a forked caller's session (sshd), `age` seconds old.
    HandOff {
        age: u64,
    },
    Unmanaged {
        since: u64,
    },
    Untrusted,
}

/// A hand-off file this process left ([`Cache::leave_handoff`]). Dropping
/// it withdraws the file, if it is still the one left (a later sign-in's
/// new hand-off at the same path is another file and stays).
pub struct HandOff {
    path: PathBuf,
    file: (u64, u64),
}

impl Drop for HandOff {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let same = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.file);
        if same {
            let _ = std::fs::remove_file(&self.path);
            if let Some(dir) = self.path.parent() {
                // Only if empty: a session's token file keeps it.
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

pub struct Cache {
    root: PathBuf,
    /// Who owns every directory and file (root:root, except in unit tests
    /// that run unprivileged).
    owner: (u32, u32),
    /// The syslog ident of the program using the cache (the module,
    /// chkpwd or the admin tool), under which it logs what it ignores.
    ident: &'static str,
}

impl Cache {
    /// Opens (creating if needed) root's cache directory and checks it.
    pub fn open(root: &Path, ident: &'static str) -> Result<Cache, CacheError> {
        Cache::open_owned_by(root, (0, 0), ident)
    }

    /// The same for a cache owned by `owner` (uid, gid): what an
    /// unprivileged test of the policy uses.
    pub fn open_owned_by(
        root: &Path,
        owner: (u32, u32),
        ident: &'static str,
    ) -> Result<Cache, CacheError> {
        let cache = Cache {
            root: root.to_owned(),
            owner,
            ident,
        };
        cache.ensure_private_dir(root)?;
        Ok(cache)
    }

    fn rules(&self) -> Rules {
        Rules {
            also_owner: (self.owner.0 != 0).then_some(self.owner.0),
            private: true,
        }
    }

    /// Creates `dir` (0700, ours) if missing, then insists it is a private
    /// directory of ours and not a symlink.
    fn ensure_private_dir(&self, dir: &Path) -> Result<(), CacheError> {
        Ok(trust::ensure_private_dir(dir, self.owner)?)
    }

    fn warn(&self, message: &str) {
        log::send(self.ident, Level::Warning, message);
    }

    fn session_dir(&self, key: &SessionKey) -> PathBuf {
        paths::session_dir(&self.root, key.as_str())
    }

    fn entry_path(&self, key: &SessionKey, user: &Username, kind: SessionFile) -> PathBuf {
        paths::session_file(&self.root, key.as_str(), user, kind)
    }

    /// Whether a trusted private file is at `path`. It is opened (which
    /// checks it and its directories) but not read: the token stays on disk.
    fn exists_trusted(&self, path: &Path) -> bool {
        match trust::open(path, self.rules()) {
            Ok(_) => true,
            Err(TrustError::Missing { .. }) => false,
            Err(e) => {
                self.warn(&format!("ignoring cache entry: {e}"));
                false
            }
        }
    }

    /// Reads a private file, or `None` (logged) if it is absent or untrusted.
    fn read_trusted(&self, path: &Path) -> Option<Zeroizing<Vec<u8>>> {
        match trust::read(path, self.rules(), MAX_ENTRY_BYTES) {
            Ok(bytes) => Some(bytes),
            Err(TrustError::Missing { .. }) => None,
            Err(e) => {
                self.warn(&format!("ignoring cache entry: {e}"));
                None
            }
        }
    }

    /// Whether `user` was answered 410 earlier in this login session.
    pub fn is_unmanaged(&self, key: &SessionKey, user: &Username) -> bool {
        let dir = self.session_dir(key);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) => {
                if let Err(why) = trust::check_private_dir(&dir, &meta, self.owner) {
                    self.warn(&format!("ignoring cache directory: {why}"));
                    return false;
                }
            }
            Err(_) => return false,
        }
        let path = self.entry_path(key, user, SessionFile::Unmanaged);
        let Some(bytes) = self.read_trusted(&path) else {
            return false;
        };
        if records_unmanaged(&bytes, user) {
            true
        } else {
            self.warn(&format!("ignoring corrupt cache entry {}", path.display()));
            false
        }
    }

    /// Remembers a 410 for (`key`, `user`).
    pub fn mark_unmanaged(&self, key: &SessionKey, user: &Username) -> Result<(), CacheError> {
        let since = crate::clock::unix_secs();
        let record = UnmanagedRecord {
            v: 1,
            user: user.as_str().to_owned(),
            since,
        };
        let bytes = serde_json::to_vec(&record).unwrap_or_default();
        self.write_entry(key, user, SessionFile::Unmanaged, &bytes)?;
        Ok(())
    }

    /// Writes the session's token, atomically replacing an older one, and
    /// when it expires (or that it did not say).
    pub fn store_token(
        &self,
        key: &SessionKey,
        user: &Username,
        token: &str,
        expires: Option<u64>,
    ) -> Result<PathBuf, CacheError> {
        match expires {
            Some(at) => {
                self.write_entry(key, user, SessionFile::Expires, at.to_string().as_bytes())?;
            }
            None => {
                let _ = std::fs::remove_file(self.entry_path(key, user, SessionFile::Expires));
            }
        }
        self.write_entry(key, user, SessionFile::Token, token.as_bytes())
    }

    /// Replaces the token only where this session already holds one: a new
    /// handshake (sudo, unlock) killed the old token, but a process that is
    /// not yet inside the login session must not create entries for it.
    pub fn replace_token(
        &self,
        key: &SessionKey,
        user: &Username,
        token: &str,
        expires: Option<u64>,
    ) -> Result<bool, CacheError> {
        let path = self.entry_path(key, user, SessionFile::Token);
        if !self.exists_trusted(&path) {
            return Ok(false);
        }
        self.store_token(key, user, token, expires)?;
        Ok(true)
    }

    /// Leaves the token of a successful `authenticate` for this process
    /// session's `open_session`, which may run in another process (sshd
    /// authenticates in a forked child).
    pub fn leave_handoff(
        &self,
        key: &SessionKey,
        user: &Username,
        token: &str,
        expires: Option<u64>,
    ) -> Result<HandOff, CacheError> {
        use std::os::unix::fs::MetadataExt;
        // The token, then its expiry on a line of its own (a token holds no
        // control characters).
        let mut bytes = Zeroizing::new(token.as_bytes().to_vec());
        if let Some(at) = expires {
            bytes.extend_from_slice(format!("\n{at}").as_bytes());
        }
        let path = self.write_entry(key, user, SessionFile::HandOff, &bytes)?;
        let meta = std::fs::symlink_metadata(&path).map_err(io_error(&path))?;
        Ok(HandOff {
            path,
            file: (meta.dev(), meta.ino()),
        })
    }

    /// The hand-off file for `user` if it is fresh; a stale one is removed.
    fn fresh_handoff(&self, key: &SessionKey, user: &Username) -> Option<PathBuf> {
        let path = self.entry_path(key, user, SessionFile::HandOff);
        fresh_handoff_age(&path).map(|_| path)
    }

    /// Whether a fresh, trusted hand-off for `user` is waiting.
    pub fn has_handoff(&self, key: &SessionKey, user: &Username) -> bool {
        self.fresh_handoff(key, user)
            .is_some_and(|path| self.exists_trusted(&path))
    }

    /// Takes (reads and removes) a fresh, trusted hand-off for `user`:
    /// the token and when it expires. One that has expired is removed and
    /// not handed over.
    pub fn take_handoff(&self, key: &SessionKey, user: &Username) -> Option<HandedOff> {
        let path = self.fresh_handoff(key, user)?;
        let bytes = Zeroizing::new(self.read_trusted(&path)?);
        let _ = std::fs::remove_file(&path);
        let handed = handoff_token(&bytes)?;
        if handed
            .expires
            .is_some_and(|at| at <= crate::clock::unix_secs())
        {
            self.warn(&format!("{}: its token has expired", path.display()));
            return None;
        }
        Some(handed)
    }

    /// Drops a hand-off that is no longer needed.
    pub fn discard_handoff(&self, key: &SessionKey, user: &Username) {
        let _ = std::fs::remove_file(self.entry_path(key, user, SessionFile::HandOff));
        let _ = std::fs::remove_dir(self.session_dir(key));
    }

    /// Path of the session's token file if it holds a trusted token.
    pub fn token_path(&self, key: &SessionKey, user: &Username) -> Option<PathBuf> {
        let path = self.entry_path(key, user, SessionFile::Token);
        self.exists_trusted(&path).then_some(path)
    }

    fn write_entry(
        &self,
        key: &SessionKey,
        user: &Username,
        kind: SessionFile,
        bytes: &[u8],
    ) -> Result<PathBuf, CacheError> {
        self.ensure_private_dir(&self.session_dir(key))?;
        let target = self.entry_path(key, user, kind);
        trust::write_private(&target, bytes, Some(self.owner)).map_err(io_error(&target))?;
        Ok(target)
    }

    /// Removes the directories of login sessions that no longer exist.
    /// `alive` tells whether a login session still exists (`None`: cannot
    /// tell, so it stays); [`SessionKey::alive`] is the system's answer.
    pub fn sweep(&self, alive: &dyn Fn(&SessionKey) -> Option<bool>) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = SessionKey::parse(&name) else {
                continue;
            };
            if alive(&key) == Some(false) {
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
            let alive = key.alive(live.as_deref());
            let Ok(files) = std::fs::read_dir(session.path()) else {
                continue;
            };
            for file in files.flatten() {
                let file_name = file.file_name().to_string_lossy().into_owned();
                let path = file.path();
                if let Some(encoded) = file_name.strip_suffix(SessionFile::HandOff.suffix()) {
                    // Listed while fresh; swept once stale.
                    let Some(age) = fresh_handoff_age(&path) else {
                        continue;
                    };
                    match from_file_name(encoded) {
                        Some(user) => out.push(Entry {
                            session: name.clone(),
                            user,
                            state: EntryState::HandOff { age: age.as_secs() },
                            session_alive: alive,
                        }),
                        None => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                    continue;
                }
                let (encoded, is_token) = if let Some(u) =
                    file_name.strip_suffix(SessionFile::Token.suffix())
                {
                    (u, true)
                } else if let Some(u) = file_name.strip_suffix(SessionFile::Unmanaged.suffix()) {
                    (u, false)
                } else {
                    continue;
                };
                let Some(user) = from_file_name(encoded) else {
                    continue;
                };
                let state = if is_token {
                    // The size, from the open descriptor: the token is not read.
                    match trust::open(&path, self.rules()).and_then(|f| {
                        f.metadata()
                            .map(|m| m.len())
                            .map_err(|_| TrustError::Missing { path: path.clone() })
                    }) {
                        Ok(bytes) => EntryState::Token {
                            bytes,
                            expires: self.expiry(
                                &session
                                    .path()
                                    .join(format!("{encoded}{}", SessionFile::Expires.suffix())),
                            ),
                        },
                        Err(_) => EntryState::Untrusted,
                    }
                } else {
                    match trust::read(&path, self.rules(), MAX_ENTRY_BYTES)
                        .ok()
                        .and_then(|bytes| serde_json::from_slice::<UnmanagedRecord>(&bytes).ok())
                    {
                        Some(r) if r.user == user => EntryState::Unmanaged { since: r.since },
                        _ => EntryState::Untrusted,
                    }
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

impl Cache {
    /// The expiry written beside a token file, if one was.
    fn expiry(&self, path: &Path) -> Option<u64> {
        let bytes = trust::read(path, self.rules(), 32).ok()?;
        std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
    }
}

/// Whether a `.unmanaged` entry's bytes are a record of a 410 for `user`.
pub fn records_unmanaged(bytes: &[u8], user: &Username) -> bool {
    matches!(
        serde_json::from_slice::<UnmanagedRecord>(bytes),
        Ok(record) if record.v == 1 && record.user == user.as_str()
    )
}

/// Removes a token file [`Cache::store_token`] wrote, and its session
/// directory once that is empty; whether the file was there. Takes the
/// path alone: `close_session` removes what its `open_session` made even
/// when the config can no longer be read.
pub fn remove_token_file(path: &Path) -> bool {
    let removed = std::fs::remove_file(path).is_ok();
    if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
        if let Some(user) = name.strip_suffix(SessionFile::Token.suffix()) {
            let _ = std::fs::remove_file(
                path.with_file_name(format!("{user}{}", SessionFile::Expires.suffix())),
            );
        }
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir(dir);
    }
    removed
}

/// The age of the hand-off at `path` while it is fresh; a stale one (or
/// one dated in the future) is removed.
fn fresh_handoff_age(path: &Path) -> Option<std::time::Duration> {
    let age = std::fs::symlink_metadata(path)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .ok();
    match age {
        Some(age) if age <= HANDOFF_MAX_AGE => Some(age),
        _ => {
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

/// What a hand-off holds.
pub struct HandedOff {
    pub token: Zeroizing<String>,
    /// When the authority said the token expires (seconds since the epoch).
    pub expires: Option<u64>,
}

/// A hand-off entry's token (non-empty UTF-8 without control characters)
/// and, on a second line, its expiry.
pub fn handoff_token(bytes: &[u8]) -> Option<HandedOff> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (token, expires) = match text.split_once('\n') {
        Some((token, at)) => (token, Some(at.parse::<u64>().ok()?)),
        None => (text, None),
    };
    if token.is_empty() || token.chars().any(char::is_control) {
        return None;
    }
    Some(HandedOff {
        token: Zeroizing::new(token.to_owned()),
        expires,
    })
}
