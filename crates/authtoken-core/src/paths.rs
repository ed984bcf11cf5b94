//! Where every piece of the client's state lives: this module owns the
//! paths, and each module that reads or writes a file asks it here.
//! docs/ARCHITECTURE.md, "Where the state lives", is the table: owner and
//! mode, writer, reader, format, lifetime, and what removes each.
//!
//! The system's own directories (which differ on macOS and FreeBSD) are
//! [`crate::platform`]'s; everything below is derived from them, or from
//! the config's `cache_dir` and `[offline] dir`.

use std::path::{Path, PathBuf};

use crate::username::{to_file_name, Username};

pub use crate::platform::{CACHE_DIR, CONFIG, NSS_CACHE, OFFLINE_DIR};

/// The module's settings beside the config at `config`:
/// `NAME.module.json` (`/etc/authtoken/authtoken.toml.module.json`).
pub fn module_settings(config: &Path) -> PathBuf {
    let mut name = config.file_name().unwrap_or_default().to_owned();
    name.push(".module.json");
    config.with_file_name(name)
}

/// Where `authtoken join` keeps what it brings, beside the config at
/// `config`: the authority's CA (`ca.pem`), the device certificate
/// (`device.pem`) and its key (`device.key`, root's, 0600).
pub fn joined_files(config: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let dir = config.parent().unwrap_or(Path::new("/"));
    (
        dir.join("ca.pem"),
        dir.join("device.pem"),
        dir.join("device.key"),
    )
}

/// The last sync attempt beside the NSS cache at `cache`
/// (`/var/lib/authtoken/nss/last-sync`).
pub fn last_sync(cache: &Path) -> PathBuf {
    cache.with_file_name("last-sync")
}

/// One login session's directory in the session cache: `cache_dir/KEY`.
pub fn session_dir(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir.join(key)
}

/// The four files a login session may hold for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionFile {
    /// Exactly the token (`AUTHTOKEN_FILE`).
    Token,
    /// When the token expires, if the authority said.
    Expires,
    /// A token handed from a forked sshd child to the session it opens.
    HandOff,
    /// "Not my user" (410) for the rest of the login session.
    Unmanaged,
}

impl SessionFile {
    pub fn suffix(self) -> &'static str {
        match self {
            SessionFile::Token => ".token",
            SessionFile::Expires => ".expires",
            SessionFile::HandOff => ".handoff",
            SessionFile::Unmanaged => ".unmanaged",
        }
    }
}

/// `cache_dir/KEY/USER.SUFFIX`.
pub fn session_file(cache_dir: &Path, key: &str, user: &Username, kind: SessionFile) -> PathBuf {
    session_dir(cache_dir, key).join(format!("{}{}", to_file_name(user.as_str()), kind.suffix()))
}

/// chkpwd's per-uid attempt records: `cache_dir/chkpwd`.
pub fn attempts_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("chkpwd")
}

/// One uid's attempt record: `cache_dir/chkpwd/UID`.
pub fn attempts_record(cache_dir: &Path, uid: u32) -> PathBuf {
    attempts_dir(cache_dir).join(uid.to_string())
}

/// A user's offline verifier: `[offline] dir/USER`.
pub fn offline_record(dir: &Path, user: &str) -> PathBuf {
    dir.join(to_file_name(user))
}

/// The lock beside a user's offline verifier: `[offline] dir/.lock-USER`.
pub fn offline_lock(dir: &Path, user: &str) -> PathBuf {
    dir.join(format!(".lock-{}", to_file_name(user)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_where_the_table_says() {
        let alice = Username::parse(b"alice").unwrap();
        let cache = Path::new("/run/authtoken");
        assert_eq!(
            module_settings(Path::new("/etc/authtoken/authtoken.toml")),
            Path::new("/etc/authtoken/authtoken.toml.module.json")
        );
        assert_eq!(
            last_sync(Path::new("/var/lib/authtoken/nss/directory")),
            Path::new("/var/lib/authtoken/nss/last-sync")
        );
        assert_eq!(
            session_file(cache, "a42", &alice, SessionFile::Token),
            Path::new("/run/authtoken/a42/alice.token")
        );
        assert_eq!(
            session_file(cache, "a42", &alice, SessionFile::HandOff),
            Path::new("/run/authtoken/a42/alice.handoff")
        );
        assert_eq!(
            attempts_record(cache, 1000),
            Path::new("/run/authtoken/chkpwd/1000")
        );
        let offline = Path::new("/var/lib/authtoken/offline");
        assert_eq!(offline_record(offline, "alice"), offline.join("alice"));
        assert_eq!(offline_lock(offline, "alice"), offline.join(".lock-alice"));
    }
}
