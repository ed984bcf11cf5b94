//! Offline login: a local verifier per user, written after every online
//! success, used only when every authority is unreachable.
//!
//! `<dir>/<user>` (default `/var/lib/authtoken/offline`): root-owned 0600,
//! written atomically, read through [`trust`] like the session cache. It
//! holds PBKDF2-HMAC-SHA256 of the password (a fresh salt, 600,000 rounds)
//! with the time of the online login it came from, and the count of offline
//! failures since. The helper computes and checks verifiers (the module has
//! no crypto); this module keeps the records.
//!
//! The failure count holds against a caller who controls the process it
//! runs in (`su`'s caller can kill it at any moment, set `RLIMIT_FSIZE` to
//! 0, ignore `SIGXFSZ`): [`prepare`] takes an exclusive lock on the user's
//! record and counts the attempt as a failure *before* the verifier leaves
//! for the helper, and sends no verifier at all when that count cannot be
//! written. [`settle`] then clears the count on success or gives back an
//! attempt that never reached the verifier. Concurrent attempts queue on
//! the lock, so none can read a count another has not yet written.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use serde::{Deserialize, Serialize};

use crate::trust::{self, Rules, TrustError};
use crate::username::Username;

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

use crate::clock::unix_secs as now;

impl OfflineStore {
    /// Root's store in `dir` (created 0700 if missing).
    pub fn open(dir: &Path) -> Result<OfflineStore, OfflineError> {
        OfflineStore::open_owned_by(dir, (0, 0))
    }

    /// A store owned by `owner`: what unprivileged policy tests use.
    pub fn open_owned_by(dir: &Path, owner: (u32, u32)) -> Result<OfflineStore, OfflineError> {
        trust::ensure_private_dir(dir, owner)?;
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
        crate::paths::offline_record(&self.dir, user)
    }

    /// The user's record, if there is a trusted one.
    pub fn load(&self, user: &Username) -> Result<Option<OfflineRecord>, OfflineError> {
        let path = self.path(user.as_str());
        let bytes = match trust::read(&path, self.rules(), MAX_RECORD_BYTES) {
            Ok(bytes) => bytes,
            Err(TrustError::Missing { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        parse_record(&bytes, user)
            .map(Some)
            .ok_or(OfflineError::Corrupt(path))
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

    /// Sets the user's count of failures in a row.
    fn set_failures(&self, user: &Username, failures: u32) -> Result<(), OfflineError> {
        match self.load(user)? {
            Some(mut record) if record.failures != failures => {
                record.failures = failures;
                self.write(&record)
            }
            _ => Ok(()),
        }
    }

    /// An exclusive lock on `user`'s record, held until dropped: a file
    /// beside the records (root's, 0600, never followed).
    fn lock(&self, user: &Username) -> Result<Flock<File>, OfflineError> {
        let path = crate::paths::offline_lock(&self.dir, user.as_str());
        let io = |source| OfflineError::Io {
            path: path.clone(),
            source,
        };
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io)?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io(e.into()))
    }

    /// Removes temporary files a killed writer left behind (a write cut
    /// short by `SIGXFSZ` or `SIGKILL`): any older than a minute.
    fn sweep_temporaries(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let stale = entry.file_name().to_string_lossy().starts_with(".tmp-")
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() >= 60);
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
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

/// Whether a record may be used, by the one rule that both a login and
/// `authtoken status` apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usability {
    Usable,
    /// Locked after this many failures in a row, until an online login.
    Locked(u32),
    /// This many days old, at or past `max_age_days`.
    TooOld(u64),
}

impl Usability {
    /// For a record `age_secs` old with `failures` in a row, under `config`.
    pub fn of(config: &OfflineConfig, age_secs: u64, failures: u32) -> Usability {
        let days = age_secs / 86_400;
        if failures >= config.max_failures {
            Usability::Locked(failures)
        } else if days >= config.max_age_days {
            Usability::TooOld(days)
        } else {
            Usability::Usable
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Usability::Usable => "usable",
            Usability::Locked(_) => "locked",
            Usability::TooOld(_) => "too old",
        }
    }
}

/// A record's bytes, if they are a version-1 record for `user`.
pub fn parse_record(bytes: &[u8], user: &Username) -> Option<OfflineRecord> {
    serde_json::from_slice::<OfflineRecord>(bytes)
        .ok()
        .filter(|record| record.v == 1 && record.user == user.as_str())
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
    /// The attempt counted in advance, and the lock on the record: what
    /// [`settle`] needs to finish the count.
    pub counted: Option<Counted>,
}

/// An offline attempt counted as a failure before the verifier was sent;
/// the user's record stays locked until it is settled (or dropped).
#[derive(Debug)]
pub struct Counted {
    _lock: Flock<File>,
    /// The count before this attempt.
    previous: u32,
}

/// Before a handshake: what the policy allows for `user` on `service`. A
/// verifier is only sent once this attempt is on record as a failure.
pub fn prepare(
    config: &OfflineConfig,
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
    store.sweep_temporaries();
    let lock = match store.lock(user) {
        Ok(lock) => lock,
        Err(e) => {
            ask.withheld = Some(format!(
                "offline login refused: cannot lock the record: {e}"
            ));
            return ask;
        }
    };
    match store.load(user) {
        Ok(Some(record)) => match Usability::of(
            config,
            now().saturating_sub(record.verified_at),
            record.failures,
        ) {
            Usability::Locked(failures) => {
                ask.withheld = Some(format!(
                    "offline login locked after {failures} failures until an online login"
                ));
            }
            Usability::TooOld(days) => {
                ask.withheld = Some(format!(
                    "offline verifier is {days} days old (max_age_days = {})",
                    config.max_age_days
                ));
            }
            Usability::Usable => {
                let previous = record.failures;
                // The record just read, written back one failure on: no
                // second read under the lock.
                let counted = OfflineRecord {
                    failures: previous + 1,
                    ..record
                };
                match store.write(&counted) {
                    Ok(()) => {
                        ask.verifier = Some(counted.verifier);
                        ask.counted = Some(Counted {
                            _lock: lock,
                            previous,
                        });
                    }
                    Err(e) => {
                        ask.withheld = Some(format!(
                            "offline login refused: the attempt could not be counted: {e}"
                        ))
                    }
                }
            }
        },
        Ok(None) => {}
        Err(e) => ask.withheld = Some(format!("offline verifier not used: {e}")),
    }
    ask
}

/// After a handshake: keeps the store in step with what happened. An
/// online token stores the new verifier; a 410 forgets the user; an offline
/// failure stays counted; an offline success clears the count. An online
/// rejection, or an authority that answered badly, gives back the attempt
/// counted in advance (its verifier was never checked).
pub fn settle(
    store: &OfflineStore,
    user: &Username,
    outcome: &crate::outcome::Outcome,
    verifier: Option<OfflineVerifier>,
    counted: Option<Counted>,
) -> Result<(), OfflineError> {
    use crate::outcome::Outcome;
    match (outcome, counted) {
        (Outcome::Token { .. }, counted) => match (verifier, counted) {
            (Some(verifier), _) => store.save(user, verifier),
            (None, Some(counted)) => store.set_failures(user, counted.previous),
            (None, None) => Ok(()),
        },
        (Outcome::Unmanaged, _) => store.forget(user).map(drop),
        (Outcome::OfflineRejected, _) => Ok(()),
        (Outcome::OfflineVerified, _) => store.set_failures(user, 0),
        (_, Some(counted)) => store.set_failures(user, counted.previous),
        (_, None) => Ok(()),
    }
}

/// `[offline]`: signing in with a local verifier when every authority is
/// unreachable. Off by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineConfig {
    #[serde(default)]
    pub enabled: bool,
    /// A verifier older than this (since its online login) is not used.
    #[serde(default = "default_offline_max_age_days")]
    pub max_age_days: u64,
    /// The PAM services that may sign in offline (never sshd unless listed).
    #[serde(default = "default_offline_services")]
    pub services: Vec<String>,
    /// The services a caller without root (through `authtoken-chkpwd`) may
    /// sign in offline with. The caller names its service itself, so this
    /// list is separate and short: screen lockers and polkit.
    #[serde(default = "default_offline_unprivileged_services")]
    pub unprivileged_services: Vec<String>,
    /// Offline failures in a row that lock offline login until the next
    /// online success.
    #[serde(default = "default_offline_max_failures")]
    pub max_failures: u32,
    #[serde(default = "default_offline_dir")]
    pub dir: PathBuf,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig {
            enabled: false,
            max_age_days: default_offline_max_age_days(),
            services: default_offline_services(),
            unprivileged_services: default_offline_unprivileged_services(),
            max_failures: default_offline_max_failures(),
            dir: default_offline_dir(),
        }
    }
}

impl OfflineConfig {
    /// Whether `service` may sign in offline.
    pub fn allows(&self, service: &str) -> bool {
        self.enabled && self.services.iter().any(|s| s == service)
    }

    /// The policy for a caller without root: its own service list.
    pub fn for_unprivileged_caller(&self) -> OfflineConfig {
        OfflineConfig {
            services: self.unprivileged_services.clone(),
            ..self.clone()
        }
    }
}

/// Screen lockers and polkit: what a caller without root runs.
const UNPRIVILEGED_OFFLINE_SERVICES: [&str; 10] = [
    "polkit-1",
    "swaylock",
    "i3lock",
    "xscreensaver",
    "xsecurelock",
    "kde",
    "gnome-screensaver",
    "cinnamon-screensaver",
    "mate-screensaver",
    "hyprlock",
];

fn default_offline_unprivileged_services() -> Vec<String> {
    UNPRIVILEGED_OFFLINE_SERVICES.map(String::from).to_vec()
}

fn default_offline_max_age_days() -> u64 {
    7
}
fn default_offline_max_failures() -> u32 {
    5
}
fn default_offline_dir() -> PathBuf {
    PathBuf::from(crate::platform::OFFLINE_DIR)
}
/// Local consoles, display managers, sudo/su and screen lockers: where a
/// person sits at the machine. Never sshd unless listed.
fn default_offline_services() -> Vec<String> {
    ["login", "gdm-password", "sddm", "lightdm", "sudo", "su"]
        .into_iter()
        .chain(UNPRIVILEGED_OFFLINE_SERVICES)
        .map(String::from)
        .collect()
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
        store.set_failures(&alice, 2).unwrap();
        assert_eq!(store.load(&alice).unwrap().unwrap().failures, 2);
        store.set_failures(&alice, 0).unwrap();
        assert_eq!(store.load(&alice).unwrap().unwrap().failures, 0);
        assert_eq!(store.list().len(), 1);
        assert!(store.forget(&alice).unwrap());
        assert!(!store.forget(&alice).unwrap());
    }

    fn config() -> OfflineConfig {
        OfflineConfig {
            enabled: true,
            services: vec!["login".into()],
            max_failures: 3,
            ..Default::default()
        }
    }

    fn store_with_alice(dir: &Path) -> (OfflineStore, Username) {
        let owner = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let store = OfflineStore::open_owned_by(&dir.join("offline"), owner).unwrap();
        let alice = Username::parse(b"alice").unwrap();
        let verifier = OfflineVerifier {
            salt: "c2FsdA==".into(),
            iterations: 4096,
            hash: "aGFzaA==".into(),
        };
        store.save(&alice, verifier).unwrap();
        (store, alice)
    }

    #[test]
    fn an_attempt_is_counted_before_its_verifier_is_sent() {
        use crate::outcome::Outcome;
        let dir = tempfile::tempdir().unwrap();
        let (store, alice) = store_with_alice(dir.path());
        let ask = prepare(&config(), &store, &alice, "login");
        assert!(ask.verifier.is_some());
        assert_eq!(
            store.load(&alice).unwrap().unwrap().failures,
            1,
            "counted at once"
        );
        // Killed here, the count stands. Settled as a wrong password, too.
        settle(&store, &alice, &Outcome::OfflineRejected, None, ask.counted).unwrap();
        assert_eq!(store.load(&alice).unwrap().unwrap().failures, 1);
        // An attempt that never reached the verifier is given back.
        let ask = prepare(&config(), &store, &alice, "login");
        settle(&store, &alice, &Outcome::Rejected, None, ask.counted).unwrap();
        assert_eq!(store.load(&alice).unwrap().unwrap().failures, 1);
        // A success clears it.
        let ask = prepare(&config(), &store, &alice, "login");
        settle(&store, &alice, &Outcome::OfflineVerified, None, ask.counted).unwrap();
        assert_eq!(store.load(&alice).unwrap().unwrap().failures, 0);
        // Three unsettled attempts (killed callers) lock it.
        for _ in 0..3 {
            let ask = prepare(&config(), &store, &alice, "login");
            assert!(ask.verifier.is_some());
        }
        let ask = prepare(&config(), &store, &alice, "login");
        assert!(ask.verifier.is_none() && ask.withheld.unwrap().contains("locked"));
    }

    #[test]
    fn attempts_queue_on_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (store, alice) = store_with_alice(dir.path());
        let first = prepare(&config(), &store, &alice, "login");
        let path = dir.path().join("offline");
        let waiter = std::thread::spawn(move || {
            let owner = (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            );
            let store = OfflineStore::open_owned_by(&path, owner).unwrap();
            let alice = Username::parse(b"alice").unwrap();
            prepare(&config(), &store, &alice, "login")
                .verifier
                .is_some()
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !waiter.is_finished(),
            "the second attempt waits for the first"
        );
        drop(first);
        assert!(waiter.join().unwrap());
        assert_eq!(store.load(&alice).unwrap().unwrap().failures, 2);
    }
}
