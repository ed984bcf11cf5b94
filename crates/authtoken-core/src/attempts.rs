//! One uid's password attempts through the setuid `authtoken-chkpwd`: when
//! the last one began and how many in a row were rejected, kept root-only
//! under the cache directory and locked for the whole attempt, so one
//! uid's attempts run one at a time.
//!
//! The caller can kill chkpwd at any moment (until it takes root's real
//! uid) and may have tried to make writes fail, so an attempt is recorded
//! as a rejection *before* the helper runs and given back afterwards when
//! it was not one; a record that cannot be written refuses the attempt;
//! and a record that exists but cannot be read counts as the longest
//! back-off, never as "no history".

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;
use crate::trust::{self, Rules};

/// Spacing after an attempt: this, doubled per consecutive rejection.
pub const BASE_SPACING_MS: u64 = 1_000;
/// Most doublings of the spacing (32 s).
pub const MAX_DOUBLINGS: u32 = 5;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    last_ms: u64,
    rejections: u32,
}

/// The locked record of one uid, for one attempt.
pub struct Attempts {
    file: Flock<File>,
    record: Record,
    /// The rejections before this attempt, once it has been counted.
    previous: Option<u32>,
}

use crate::clock::unix_millis as now_ms;

/// Why an attempt cannot go ahead or cannot be kept on record.
#[derive(Debug, thiserror::Error)]
pub enum AttemptsError {
    #[error("{0}")]
    Untrusted(#[from] trust::TrustError),
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("locking the rate-limit record: {0}")]
    Lock(nix::errno::Errno),
    #[error("rate limited after {rejections} rejected passwords; retry in {retry_secs} s")]
    RateLimited { rejections: u32, retry_secs: u64 },
    #[error("rate-limit record: {0}")]
    Save(std::io::Error),
}

impl Attempts {
    /// Opens and locks `uid`'s record under `cache_dir/chkpwd` (the cache
    /// directory must already pass the cache's checks).
    pub fn open(cache_dir: &Path, uid: u32) -> Result<Attempts, AttemptsError> {
        Attempts::open_owned_by(cache_dir, uid, (0, 0))
    }

    /// The same with the records owned by `owner` (uid, gid): what the
    /// tests of the rate limit use without root.
    pub fn open_owned_by(
        cache_dir: &Path,
        uid: u32,
        owner: (u32, u32),
    ) -> Result<Attempts, AttemptsError> {
        trust::ensure_private_dir(&crate::paths::attempts_dir(cache_dir), owner)?;
        let path = crate::paths::attempts_record(cache_dir, uid);
        let rules = Rules {
            also_owner: (owner.0 != 0).then_some(owner.0),
            private: true,
        };
        let (file, created) = match trust::open_read_write(&path, rules) {
            Ok(file) => (file, false),
            Err(trust::TrustError::Missing { .. }) => (
                File::options()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&path)
                    .map_err(|source| AttemptsError::Io {
                        path: path.clone(),
                        source,
                    })?,
                true,
            ),
            Err(e) => return Err(e.into()),
        };
        let mut file =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| AttemptsError::Lock(e))?;
        let mut text = String::new();
        let read = (&mut *file).take(4096).read_to_string(&mut text);
        let record = match (
            created,
            read.ok().and(serde_json::from_str::<Record>(&text).ok()),
        ) {
            (_, Some(record)) => record,
            (true, None) if text.is_empty() => Record::default(),
            // Truncated, unreadable or not ours: the longest back-off.
            _ => Record {
                last_ms: now_ms(),
                rejections: MAX_DOUBLINGS,
            },
        };
        Ok(Attempts {
            file,
            record,
            previous: None,
        })
    }

    /// Waits until this uid's next attempt is due (refusing when that is
    /// more than `max_wait_ms` off), then records the attempt as begun and
    /// as a rejection, before anything else happens.
    pub fn begin(&mut self, max_wait_ms: u64) -> Result<(), AttemptsError> {
        let spacing = BASE_SPACING_MS << self.record.rejections.min(MAX_DOUBLINGS);
        let due = self.record.last_ms.saturating_add(spacing);
        let now = now_ms();
        if due > now {
            let wait = due - now;
            if wait > max_wait_ms {
                return Err(AttemptsError::RateLimited {
                    rejections: self.record.rejections,
                    retry_secs: wait.div_ceil(1000),
                });
            }
            std::thread::sleep(Duration::from_millis(wait));
        }
        self.previous = Some(self.record.rejections);
        self.record.last_ms = now_ms();
        self.record.rejections = self.record.rejections.saturating_add(1);
        self.save()
    }

    /// Settles the attempt: a rejected password stays counted, a token
    /// starts the count over, anything else gives the attempt back.
    pub fn finish(&mut self, outcome: &Outcome) -> Result<(), AttemptsError> {
        match outcome {
            Outcome::Rejected | Outcome::OfflineRejected => return Ok(()),
            Outcome::Token { .. } | Outcome::OfflineVerified => self.record.rejections = 0,
            _ => {
                if let Some(previous) = self.previous {
                    self.record.rejections = previous;
                }
            }
        }
        self.save()
    }

    fn save(&mut self) -> Result<(), AttemptsError> {
        let text = serde_json::to_string(&self.record)
            .map_err(|e| AttemptsError::Save(std::io::Error::other(e)))?;
        let file: &mut File = &mut self.file;
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .and_then(|()| file.write_all(text.as_bytes()))
            .map_err(AttemptsError::Save)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        dir
    }

    /// The records owned by whoever runs the tests (root or not).
    fn open(dir: &Path) -> Attempts {
        let owner = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        Attempts::open_owned_by(dir, 1000, owner).unwrap()
    }

    fn stored(dir: &Path) -> Record {
        serde_json::from_str(&std::fs::read_to_string(dir.join("chkpwd/1000")).unwrap()).unwrap()
    }

    #[test]
    fn an_attempt_is_a_rejection_until_it_is_settled() {
        let dir = cache();
        let mut attempts = open(dir.path());
        attempts.begin(0).unwrap();
        assert_eq!(
            stored(dir.path()).rejections,
            1,
            "counted before the helper runs"
        );
        attempts.finish(&Outcome::unavailable("x")).unwrap();
        assert_eq!(stored(dir.path()).rejections, 0, "given back");
        drop(attempts);
        // Killed mid-attempt: the count stands.
        let mut attempts = open(dir.path());
        attempts.record.last_ms = 0;
        attempts.begin(0).unwrap();
        drop(attempts);
        assert_eq!(stored(dir.path()).rejections, 1);
    }

    #[test]
    fn rejections_double_the_spacing_and_a_token_starts_over() {
        let dir = cache();
        let mut attempts = open(dir.path());
        attempts.begin(0).unwrap();
        attempts.finish(&Outcome::Rejected).unwrap();
        // The next attempt is due BASE_SPACING_MS << 1 after this one:
        // with no wait allowed it is refused, and refusing counts nothing.
        assert!(matches!(
            attempts.begin(0),
            Err(AttemptsError::RateLimited { rejections: 1, .. })
        ));
        assert_eq!(stored(dir.path()).rejections, 1);
        attempts.record.last_ms = 0;
        attempts.begin(0).unwrap();
        attempts
            .finish(&Outcome::token(zeroize::Zeroizing::new("t".into())))
            .unwrap();
        assert_eq!(stored(dir.path()).rejections, 0, "a token starts over");
    }

    #[test]
    fn a_record_others_could_write_is_refused() {
        let dir = cache();
        drop(open(dir.path()));
        let record = dir.path().join("chkpwd/1000");
        std::fs::set_permissions(&record, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
        let owner = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        assert!(matches!(
            Attempts::open_owned_by(dir.path(), 1000, owner),
            Err(AttemptsError::Untrusted(_))
        ));
    }

    #[test]
    fn a_truncated_record_is_the_longest_back_off() {
        let dir = cache();
        drop(open(dir.path()));
        std::fs::write(dir.path().join("chkpwd/1000"), b"").unwrap();
        let mut attempts = open(dir.path());
        assert_eq!(attempts.record.rejections, MAX_DOUBLINGS);
        assert!(matches!(
            attempts.begin(4_000),
            Err(AttemptsError::RateLimited { .. })
        ));
    }
}
