//! Offline login: a local verifier per user, written after every online
//! success, used only when every authority is unreachable.
//!
//! `<dir>/<user>` (default `/var/lib/authtoken/offline`): root-owned 0600,
//! written atomically, read through [`trust`] like the session cache. It
//! holds PBKDF2-HMAC-SHA256 of the password (a fresh salt, 600,000 rounds)
//! with the time of the online login it came from, and the count of offline
//! failures since. The helper computes and checks verifiers (the module has
//! no crypto); this module keeps the records.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::trust::{self, Rules, TrustError};
use crate::username::{to_file_name, Username};

/// Rounds of a new verifier.
pub const VERIFIER_ITERATIONS: u32 = 600_000;
const MAX_RECORD_BYTES: u64 = 4096;

/// A password verifier: `hash = PBKDF2-HMAC-SHA256(password, salt, iterations, 32)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineVerifier {
    /// base64
    pub salt: String,
    pub iterations: u32,
    /// base64
    pub hash: String,
}

/// What is stored per user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineRecord {
    pub v: u32,
    pub user: String,
    pub verifier: OfflineVerifier,
    /// When the online login it came from happened (seconds since the epoch).
    pub verified_at: u64,
    /// Offline failures in a row since.
    pub failures: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Untrusted(#[from] TrustError),
    #[error("{}: not a record for this user", .0.display())]
    Corrupt(PathBuf),
}

/// The records of one directory.
pub struct OfflineStore {
    dir: PathBuf,
    owner: (u32, u32),
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl OfflineStore {
    /// Root's store in `dir` (created 0700 if missing).
    pub fn open(dir: &Path) -> Result<OfflineStore, OfflineError> {
        OfflineStore::open_owned_by(dir, (0, 0))
    }

    /// A store owned by `owner`: what unprivileged policy tests use.
    pub fn open_owned_by(dir: &Path, owner: (u32, u32)) -> Result<OfflineStore, OfflineError> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(dir)
        {
            Ok(()) => {}
            Err(source) => {
                return Err(OfflineError::Io {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
        Ok(OfflineStore {
            dir: dir.to_owned(),
            owner,
        })
    }

    fn rules(&self) -> Rules {
        Rules {
            also_owner: (self.owner.0 != 0).then_some(self.owner.0),
            private: true,
        }
    }

    fn path(&self, user: &str) -> PathBuf {
        self.dir.join(to_file_name(user))
    }

    /// The user's record, if there is a trusted one.
    pub fn load(&self, user: &Username) -> Result<Option<OfflineRecord>, OfflineError> {
        let path = self.path(user.as_str());
        let bytes = match trust::read(&path, self.rules(), MAX_RECORD_BYTES) {
            Ok(bytes) => bytes,
            Err(TrustError::Missing { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match serde_json::from_slice::<OfflineRecord>(&bytes) {
            Ok(record) if record.v == 1 && record.user == user.as_str() => Ok(Some(record)),
            _ => Err(OfflineError::Corrupt(path)),
        }
    }

    fn write(&self, record: &OfflineRecord) -> Result<(), OfflineError> {
        let path = self.path(&record.user);
        let bytes = serde_json::to_vec(record).unwrap_or_default();
        trust::write_private(&path, &bytes, Some(self.owner))
            .map_err(|source| OfflineError::Io { path, source })
    }

    /// After an online success: the new verifier, no failures.
    pub fn save(&self, user: &Username, verifier: OfflineVerifier) -> Result<(), OfflineError> {
        self.write(&OfflineRecord {
            v: 1,
            user: user.as_str().to_owned(),
            verifier,
            verified_at: now(),
            failures: 0,
        })
    }

    /// An offline failure; returns the count in a row.
    pub fn failed(&self, user: &Username) -> Result<u32, OfflineError> {
        let Some(mut record) = self.load(user)? else {
            return Ok(0);
        };
        record.failures += 1;
        self.write(&record)?;
        Ok(record.failures)
    }

    /// An offline success: the count of failures in a row starts over.
    pub fn succeeded(&self, user: &Username) -> Result<(), OfflineError> {
        match self.load(user)? {
            Some(mut record) if record.failures > 0 => {
                record.failures = 0;
                self.write(&record)
            }
            _ => Ok(()),
        }
    }

    /// Removes the user's record (a 410, or `authtoken forget`).
    pub fn forget(&self, user: &Username) -> Result<bool, OfflineError> {
        let path = self.path(user.as_str());
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(OfflineError::Io { path, source }),
        }
    }

    /// Every record: (user, age in seconds, failures). Untrusted files are
    /// listed with `None`.
    pub fn list(&self) -> Vec<(String, Option<(u64, u32)>)> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let record = trust::read(&entry.path(), self.rules(), MAX_RECORD_BYTES)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<OfflineRecord>(&bytes).ok());
            out.push(match record {
                Some(r) => (
                    r.user,
                    Some((now().saturating_sub(r.verified_at), r.failures)),
                ),
                None => (name, None),
            });
        }
        out.sort();
        out
    }
}

/// What a handshake should carry for offline login.
#[derive(Debug, Default)]
pub struct Ask {
    /// Have the helper compute a new verifier after an online success.
    pub want_verifier: bool,
    /// The verifier to check if no authority is reachable.
    pub verifier: Option<OfflineVerifier>,
    /// Why no verifier is sent although there is a record (for the log).
    pub withheld: Option<String>,
}

/// Before a handshake: what the policy allows for `user` on `service`.
pub fn prepare(
    config: &crate::config::OfflineConfig,
    store: &OfflineStore,
    user: &Username,
    service: &str,
) -> Ask {
    if !config.enabled {
        return Ask::default();
    }
    let mut ask = Ask {
        want_verifier: true,
        ..Ask::default()
    };
    if !config.allows(service) {
        return ask;
    }
    match store.load(user) {
        Ok(Some(record)) => {
            let age_days = now().saturating_sub(record.verified_at) / 86_400;
            if record.failures >= config.max_failures {
                ask.withheld = Some(format!(
                    "offline login locked after {} failures until an online login",
                    record.failures
                ));
            } else if age_days >= config.max_age_days {
                ask.withheld = Some(format!(
                    "offline verifier is {age_days} days old (max_age_days = {})",
                    config.max_age_days
                ));
            } else {
                ask.verifier = Some(record.verifier);
            }
        }
        Ok(None) => {}
        Err(e) => ask.withheld = Some(format!("offline verifier not used: {e}")),
    }
    ask
}

/// After a handshake: keeps the store in step with what happened. An
/// online token stores the new verifier; a 410 forgets the user; an offline
/// failure counts; an offline success clears the count. An online
/// rejection, or an authority that answered badly, changes nothing.
pub fn settle(
    store: &OfflineStore,
    user: &Username,
    outcome: &crate::outcome::Outcome,
    verifier: Option<OfflineVerifier>,
) -> Result<(), OfflineError> {
    use crate::outcome::Outcome;
    match outcome {
        Outcome::Token { .. } => match verifier {
            Some(verifier) => store.save(user, verifier),
            None => Ok(()),
        },
        Outcome::Unmanaged => store.forget(user).map(drop),
        Outcome::OfflineRejected => store.failed(user).map(drop),
        Outcome::OfflineVerified => store.succeeded(user),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_count_failures() {
        let dir = tempfile::tempdir().unwrap();
        let owner = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let store = OfflineStore::open_owned_by(&dir.path().join("offline"), owner).unwrap();
        let alice = Username::parse(b"alice").unwrap();
        assert_eq!(store.load(&alice).unwrap(), None);
        let verifier = OfflineVerifier {
            salt: "c2FsdA==".into(),
            iterations: 4096,
            hash: "aGFzaA==".into(),
        };
        store.save(&alice, verifier.clone()).unwrap();
        let record = store.load(&alice).unwrap().unwrap();
        assert_eq!((record.verifier, record.failures), (verifier, 0));
        assert_eq!(store.failed(&alice).unwrap(), 1);
        assert_eq!(store.failed(&alice).unwrap(), 2);
        store.succeeded(&alice).unwrap();
        assert_eq!(store.load(&alice).unwrap().unwrap().failures, 0);
        assert_eq!(store.list().len(), 1);
        assert!(store.forget(&alice).unwrap());
        assert!(!store.forget(&alice).unwrap());
    }
}
