//! Stateless challenges and single-use responses.
//!
//! A server nonce carries its own expiry and an HMAC, keyed by the store's
//! secret, over the user it was issued to, that expiry and random bytes:
//! issuing a challenge stores nothing, so no number of challenge requests
//! can fill anything up. Any server process holding the same store (the
//! same secret) can check a nonce another one issued.
//!
//! A response is accepted once: after its proof checked out, the nonce is
//! claimed in a replay record (in memory, or a directory several processes
//! share) until it expires; a second claim fails. Only accepted responses
//! are recorded, so wrong guesses, which the throttle limits, cost nothing
//! here, and the record holds at most the logins of one nonce lifetime.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use ring::hmac;
use subtle::ConstantTimeEq;

use crate::files::{random, FileError};

/// How long an issued challenge may be answered, in seconds.
pub const NONCE_LIFETIME_SECS: u64 = 60;
const RANDOM_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
const NONCE_BYTES: usize = 8 + RANDOM_BYTES + TAG_BYTES;
/// Most accepted nonces remembered at once (in memory).
const MAX_REMEMBERED: usize = 100_000;
/// Unexpired accepted responses one account may hold in the in-memory
/// record by default (1,000 logins a minute, `--replay-per-account`): an
/// account that goes past it — one whose password a flooder knows — has its
/// own logins refused, and every other account goes on.
pub const MAX_REMEMBERED_PER_USER: usize = 1_000;

/// Issues and checks nonces with a key derived from the store's secret.
pub struct NonceKey(hmac::Key);

impl NonceKey {
    pub fn new(store_secret: &[u8]) -> NonceKey {
        // A key of its own: the same secret also salts decoy users.
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, store_secret),
            b"authtoken-server nonce key v1",
        );
        NonceKey(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    fn tag(&self, user: &str, expiry: u64, random: &[u8]) -> [u8; TAG_BYTES] {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(&(user.len() as u64).to_be_bytes());
        context.update(user.as_bytes());
        context.update(&expiry.to_be_bytes());
        context.update(random);
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&context.sign().as_ref()[..TAG_BYTES]);
        tag
    }

    /// A nonce for `user`, valid until `now + NONCE_LIFETIME_SECS`: base64url,
    /// so it is a valid SCRAM nonce and a Digest quoted string.
    pub fn issue(&self, user: &str, now: u64) -> Result<String, FileError> {
        let expiry = now + NONCE_LIFETIME_SECS;
        let random = random(RANDOM_BYTES)?;
        let mut bytes = Vec::with_capacity(NONCE_BYTES);
        bytes.extend_from_slice(&expiry.to_be_bytes());
        bytes.extend_from_slice(&random);
        bytes.extend_from_slice(&self.tag(user, expiry, &random));
        Ok(B64URL.encode(bytes))
    }

    /// The nonce's expiry if we issued it, to `user`, and it has not expired.
    pub fn check(&self, nonce: &str, user: &str, now: u64) -> Option<u64> {
        let bytes = B64URL.decode(nonce).ok()?;
        if bytes.len() != NONCE_BYTES {
            return None;
        }
        let (expiry, rest) = bytes.split_at(8);
        let (random, tag) = rest.split_at(RANDOM_BYTES);
        let expiry = u64::from_be_bytes(expiry.try_into().ok()?);
        let expected = self.tag(user, expiry, random);
        if !bool::from(expected.ct_eq(tag)) {
            return None;
        }
        (now < expiry && expiry <= now + NONCE_LIFETIME_SECS).then_some(expiry)
    }
}

/// Where accepted nonces are remembered.
pub enum ReplayRecord {
    /// This process only.
    Memory(Mutex<Remembered>),
    /// A directory several server processes share: one file per accepted
    /// nonce, created with `O_EXCL`, so exactly one process wins a claim.
    Directory(PathBuf),
}

/// The outcome of claiming a nonce.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    First,
    Replayed,
    /// The shared directory cannot be written: refuse the login.
    Unavailable,
    /// The in-memory record holds all it may for this account (or in all):
    /// this login is refused, others go on.
    Full,
}

/// Accepted nonces (with their expiry and account) and how many each
/// account holds.
pub struct Remembered {
    nonces: HashMap<String, (u64, String)>,
    per_user: HashMap<String, usize>,
    per_user_limit: usize,
}

impl Remembered {
    fn sweep(&mut self, now: u64) {
        let per_user = &mut self.per_user;
        self.nonces.retain(|_, (until, user)| {
            let keep = *until > now;
            if !keep {
                if let Some(count) = per_user.get_mut(user.as_str()) {
                    *count -= 1;
                }
            }
            keep
        });
        per_user.retain(|_, count| *count > 0);
    }

    fn claim(&mut self, user: &str, nonce: &str, expiry: u64, now: u64) -> Claim {
        if self.nonces.contains_key(nonce) {
            return Claim::Replayed;
        }
        let held = |r: &Remembered| r.per_user.get(user).copied().unwrap_or(0);
        if self.nonces.len() >= MAX_REMEMBERED || held(self) >= self.per_user_limit {
            self.sweep(now);
            if self.nonces.len() >= MAX_REMEMBERED || held(self) >= self.per_user_limit {
                return Claim::Full;
            }
        }
        self.nonces
            .insert(nonce.to_owned(), (expiry, user.to_owned()));
        *self.per_user.entry(user.to_owned()).or_insert(0) += 1;
        Claim::First
    }
}

impl ReplayRecord {
    pub fn memory() -> ReplayRecord {
        ReplayRecord::memory_per_account(MAX_REMEMBERED_PER_USER)
    }

    /// In memory, at most `per_account` unexpired entries for one account.
    pub fn memory_per_account(per_account: usize) -> ReplayRecord {
        ReplayRecord::Memory(Mutex::new(Remembered {
            nonces: HashMap::new(),
            per_user: HashMap::new(),
            per_user_limit: per_account.max(1),
        }))
    }

    /// Claims `nonce` (which expires at `expiry`) for its one use.
    pub fn claim(&self, user: &str, nonce: &str, expiry: u64, now: u64) -> Claim {
        match self {
            ReplayRecord::Memory(seen) => seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .claim(user, nonce, expiry, now),
            ReplayRecord::Directory(dir) => {
                sweep_directory(dir, now);
                // The name is derived from the nonce, which is base64url.
                let path = dir.join(format!("{expiry}-{nonce}"));
                match std::fs::File::options()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                {
                    Ok(_) => Claim::First,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Claim::Replayed,
                    Err(_) => Claim::Unavailable,
                }
            }
        }
    }
}

/// Removes the records of nonces that have expired (they can no longer be
/// presented, so they need not be remembered).
fn sweep_directory(dir: &std::path::Path, now: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let expired = name
            .to_str()
            .and_then(|n| n.split_once('-'))
            .and_then(|(expiry, _)| expiry.parse::<u64>().ok())
            .is_some_and(|expiry| expiry <= now);
        if expired {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_bound_to_user_key_and_time() {
        let key = NonceKey::new(b"secret");
        let nonce = key.issue("alice", 1000).unwrap();
        assert!(nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(key.check(&nonce, "alice", 1000), Some(1060));
        assert_eq!(key.check(&nonce, "alice", 1059), Some(1060));
        assert_eq!(key.check(&nonce, "alice", 1060), None, "expired");
        assert_eq!(key.check(&nonce, "bob", 1000), None, "another user");
        assert_eq!(NonceKey::new(b"other").check(&nonce, "alice", 1000), None);
        let mut forged = B64URL.decode(&nonce).unwrap();
        forged[7] ^= 1; // a later expiry
        assert_eq!(key.check(&B64URL.encode(forged), "alice", 1000), None);
        assert_eq!(key.check("not a nonce", "alice", 1000), None);
        // Same key from the same secret: another process checks it too.
        assert_eq!(
            NonceKey::new(b"secret").check(&nonce, "alice", 1000),
            Some(1060)
        );
    }

    #[test]
    fn one_account_filling_the_record_refuses_only_its_own_logins() {
        let memory = ReplayRecord::memory();
        for i in 0..MAX_REMEMBERED_PER_USER {
            assert_eq!(
                memory.claim("flooder", &format!("f{i}"), 1060, 1000),
                Claim::First
            );
        }
        assert_eq!(memory.claim("flooder", "one more", 1060, 1000), Claim::Full);
        assert_eq!(memory.claim("alice", "a1", 1060, 1000), Claim::First);
        assert_eq!(memory.claim("flooder", "f0", 1060, 1000), Claim::Replayed);
        // Once the flooder's records expire, it may sign in again.
        assert_eq!(memory.claim("flooder", "later", 1200, 1061), Claim::First);
    }

    #[test]
    fn each_nonce_is_claimed_once() {
        let memory = ReplayRecord::memory();
        assert_eq!(memory.claim("alice", "n1", 1060, 1000), Claim::First);
        assert_eq!(memory.claim("alice", "n1", 1060, 1001), Claim::Replayed);
        assert_eq!(memory.claim("alice", "n2", 1060, 1001), Claim::First);

        let dir = tempfile::tempdir().unwrap();
        let a = ReplayRecord::Directory(dir.path().to_owned());
        let b = ReplayRecord::Directory(dir.path().to_owned());
        assert_eq!(a.claim("alice", "n1", 1060, 1000), Claim::First);
        assert_eq!(
            b.claim("alice", "n1", 1060, 1001),
            Claim::Replayed,
            "shared"
        );
        assert_eq!(b.claim("alice", "old", 900, 899), Claim::First);
        assert_eq!(a.claim("alice", "n3", 1060, 1001), Claim::First);
        assert!(
            !dir.path().join("900-old").exists(),
            "expired records are swept"
        );
    }
}
