//! Throttling of password guessing, per account.
//!
//! The unit that is guessed at is an account, so that is what is counted:
//! at most [`GUESSES_PER_MINUTE`] wrong proofs are evaluated for one
//! account in any 60 seconds from all sources without a device identity
//! taken together; past that, answers for that account are `429` with
//! `Retry-After` until the oldest of those failures is a minute old, and no
//! proof is evaluated. A client that presents its enrolled device
//! certificate (mutual TLS) has a budget of its own for each account (the
//! "device cookie" of OWASP's lockout guidance), so guessing from
//! elsewhere never locks a user out on their own machine.
//!
//! What is *not* counted: requests that never reach a proof (malformed
//! responses, forged, foreign or expired nonces, replays), which cost the
//! sender nothing to make and the server one HMAC to refuse, and anything
//! aimed at other accounts. So junk and other users' typos from one address
//! (a terminal server, a NAT) never block a correct proof for a real
//! account from it. Unknown names are counted exactly like real ones, so
//! the throttle does not tell them apart.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Wrong proofs evaluated for one account per minute, from all sources
/// without a device identity together (`--throttle-after`).
pub const GUESSES_PER_MINUTE: u32 = 30;
/// The window the counts cover.
pub const WINDOW_MS: u64 = 60_000;
/// Most accounts tracked at once; beyond it, the accounts whose window has
/// emptied are dropped first, then the ones quiet the longest. An evicted
/// count only ever belongs to a name flooded with at least this many
/// others in one minute; its guesses are still bounded by the failure delay.
const MAX_KEYS: usize = 100_000;

/// Whose budget a proof is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// Every source without a device identity, together.
    Account(String),
    /// One enrolled device (the SHA-256 of its certificate) for one account.
    Device([u8; 32], String),
}

impl Key {
    fn new(user: &str, device: Option<[u8; 32]>) -> Key {
        match device {
            Some(id) => Key::Device(id, user.to_owned()),
            None => Key::Account(user.to_owned()),
        }
    }
}

/// The budget's name in a shared store: `a:USER`, or `d:DEVICE:USER` with
/// the device certificate's SHA-256 in hex.
pub fn budget_name(user: &str, device: Option<[u8; 32]>) -> String {
    match device {
        Some(id) => {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            format!("d:{hex}:{user}")
        }
        None => format!("a:{user}"),
    }
}

pub struct Throttle {
    /// The failure times within the window, oldest first, per key.
    keys: Mutex<HashMap<Key, VecDeque<u64>>>,
    per_minute: u32,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(GUESSES_PER_MINUTE)
    }
}

/// The throttle's decision before a proof is evaluated.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Evaluate,
    /// Refuse; the client may retry after this many seconds.
    Refuse {
        retry_after_secs: u64,
    },
}

impl Throttle {
    /// At most `per_minute` wrong proofs evaluated per account per minute
    /// (per budget); at least one.
    pub fn new(per_minute: u32) -> Throttle {
        Throttle {
            keys: Mutex::new(HashMap::new()),
            per_minute: per_minute.max(1),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<Key, VecDeque<u64>>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a proof for `user`, from a client with `device` identity or
    /// none, may be evaluated at `now_ms`.
    pub fn check(&self, user: &str, device: Option<[u8; 32]>, now_ms: u64) -> Verdict {
        let mut keys = self.keys();
        let Some(times) = keys.get_mut(&Key::new(user, device)) else {
            return Verdict::Evaluate;
        };
        expire(times, now_ms);
        match times.front() {
            Some(&oldest) if times.len() >= self.per_minute as usize => Verdict::Refuse {
                retry_after_secs: (oldest + WINDOW_MS)
                    .saturating_sub(now_ms)
                    .div_ceil(1000)
                    .max(1),
            },
            _ => Verdict::Evaluate,
        }
    }

    /// Records a wrong proof; returns whether the budget is now spent.
    pub fn failed(&self, user: &str, device: Option<[u8; 32]>, now_ms: u64) -> bool {
        let mut keys = self.keys();
        let key = Key::new(user, device);
        if keys.len() >= MAX_KEYS && !keys.contains_key(&key) {
            make_room(&mut keys, now_ms);
        }
        let times = keys.entry(key).or_default();
        expire(times, now_ms);
        times.push_back(now_ms);
        while times.len() > self.per_minute as usize {
            times.pop_front();
        }
        times.len() >= self.per_minute as usize
    }

    /// A good proof from a device: its own count for the account starts
    /// over (the shared count does not, or a guesser who knows one
    /// password could reset another's).
    pub fn succeeded(&self, user: &str, device: Option<[u8; 32]>) {
        if device.is_some() {
            self.keys().remove(&Key::new(user, device));
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.keys().len()
    }
}

fn expire(times: &mut VecDeque<u64>, now_ms: u64) {
    while times
        .front()
        .is_some_and(|&t| now_ms.saturating_sub(t) >= WINDOW_MS)
    {
        times.pop_front();
    }
}

/// Drops keys whose window is empty; if none is, the quietest tenth.
fn make_room(keys: &mut HashMap<Key, VecDeque<u64>>, now_ms: u64) {
    keys.retain(|_, times| {
        expire(times, now_ms);
        !times.is_empty()
    });
    if keys.len() >= MAX_KEYS {
        let mut last: Vec<u64> = keys.values().filter_map(|t| t.back().copied()).collect();
        let cut = last.len() / 10;
        let (_, &mut threshold, _) = last.select_nth_unstable(cut);
        keys.retain(|_, times| times.back().is_some_and(|&t| t > threshold));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICE: Option<[u8; 32]> = Some([7; 32]);

    #[test]
    fn an_account_gets_thirty_wrong_proofs_a_minute_from_everywhere() {
        let t = Throttle::default();
        for i in 0..GUESSES_PER_MINUTE as u64 {
            assert_eq!(t.check("alice", None, i * 100), Verdict::Evaluate);
            t.failed("alice", None, i * 100);
        }
        assert_eq!(
            t.check("alice", None, 3_000),
            Verdict::Refuse {
                retry_after_secs: 57
            }
        );
        assert_eq!(
            t.check("bob", None, 3_000),
            Verdict::Evaluate,
            "another account"
        );
        assert_eq!(
            t.check("alice", DEVICE, 3_000),
            Verdict::Evaluate,
            "her own device has its own budget"
        );
        // A minute after the first failure, one more may be tried.
        assert_eq!(t.check("alice", None, 60_000), Verdict::Evaluate);
        t.failed("alice", None, 60_000);
        assert!(matches!(
            t.check("alice", None, 60_001),
            Verdict::Refuse { .. }
        ));
    }

    #[test]
    fn a_device_budget_is_per_device_and_starts_over_on_success() {
        let t = Throttle::new(3);
        for _ in 0..3 {
            t.failed("alice", DEVICE, 0);
        }
        assert!(matches!(
            t.check("alice", DEVICE, 1),
            Verdict::Refuse { .. }
        ));
        assert_eq!(t.check("alice", Some([8; 32]), 1), Verdict::Evaluate);
        assert_eq!(t.check("alice", None, 1), Verdict::Evaluate);
        t.succeeded("alice", DEVICE);
        assert_eq!(t.check("alice", DEVICE, 2), Verdict::Evaluate);
    }

    #[test]
    fn the_shared_count_is_not_reset_by_a_success() {
        let t = Throttle::new(3);
        for _ in 0..3 {
            t.failed("alice", None, 0);
        }
        t.succeeded("alice", None);
        assert!(matches!(t.check("alice", None, 1), Verdict::Refuse { .. }));
    }

    #[test]
    fn a_flood_of_names_keeps_the_table_bounded() {
        let t = Throttle::new(2);
        t.failed("alice", None, 0);
        t.failed("alice", None, 0);
        for i in 0..(MAX_KEYS as u64 + 10) {
            t.failed(&format!("junk{i}"), None, 1 + i / 1000);
        }
        assert!(t.tracked() <= MAX_KEYS);
    }
}
