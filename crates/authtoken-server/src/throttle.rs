//! Throttling of failed proofs, by (source address, user) and by source
//! address.
//!
//! A source may fail [`FREE_PER_USER`] times for one user, and
//! [`FREE_PER_SOURCE`] times across all users, without delay; each failure
//! beyond that blocks that key for twice as long as the last one (1 s, 2 s,
//! 4 s … up to 15 minutes). While a key is blocked, answers are `429` with
//! `Retry-After`, and no proof is evaluated. The counts are kept per source
//! address, so a guesser from one address never locks the real user out
//! from another; a success clears the (source, user) count. A key is
//! forgotten 15 minutes after its last failure.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failures for one user from one source before answers are refused
/// (`--throttle-after`).
pub const FREE_PER_USER: u32 = 3;
/// Failures from one source, for any users, before answers are refused.
pub const FREE_PER_SOURCE: u32 = 10;
/// The first block after the free failures, in milliseconds.
const FIRST_BLOCK_MS: u64 = 1_000;
/// The longest block, and how long a quiet key is remembered.
const LONGEST_BLOCK_MS: u64 = 15 * 60 * 1_000;
/// Most keys tracked; beyond it, stale keys are dropped first.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Pair(IpAddr, String),
    Source(IpAddr),
}

#[derive(Debug, Clone, Copy, Default)]
struct Failures {
    count: u32,
    last_ms: u64,
    blocked_until_ms: u64,
}

pub struct Throttle {
    keys: Mutex<HashMap<Key, Failures>>,
    free_per_user: u32,
    free_per_source: u32,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(FREE_PER_USER)
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
    /// `free_per_user` failures for one user from one source before
    /// refusing (the per-source allowance grows with it).
    pub fn new(free_per_user: u32) -> Throttle {
        Throttle {
            keys: Mutex::new(HashMap::new()),
            free_per_user,
            free_per_source: FREE_PER_SOURCE.max(free_per_user.saturating_mul(3)),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a proof from `source` for `user` may be evaluated at `now_ms`.
    pub fn check(&self, source: IpAddr, user: &str, now_ms: u64) -> Verdict {
        let keys = self.keys();
        let blocked_until = [Key::Pair(source, user.to_owned()), Key::Source(source)]
            .iter()
            .filter_map(|key| keys.get(key))
            .map(|f| f.blocked_until_ms)
            .max()
            .unwrap_or(0);
        if blocked_until > now_ms {
            Verdict::Refuse {
                retry_after_secs: (blocked_until - now_ms).div_ceil(1000),
            }
        } else {
            Verdict::Evaluate
        }
    }

    /// Records a failed proof; returns whether a key is now blocked.
    pub fn failed(&self, source: IpAddr, user: &str, now_ms: u64) -> bool {
        let mut keys = self.keys();
        if keys.len() >= MAX_KEYS {
            keys.retain(|_, f| now_ms.saturating_sub(f.last_ms) < LONGEST_BLOCK_MS);
        }
        let mut blocked = false;
        for (key, free) in [
            (Key::Pair(source, user.to_owned()), self.free_per_user),
            (Key::Source(source), self.free_per_source),
        ] {
            if keys.len() >= MAX_KEYS && !keys.contains_key(&key) {
                continue;
            }
            let entry = keys.entry(key).or_default();
            if now_ms.saturating_sub(entry.last_ms) >= LONGEST_BLOCK_MS {
                *entry = Failures::default();
            }
            entry.count += 1;
            entry.last_ms = now_ms;
            if entry.count > free {
                let doublings = (entry.count - free - 1).min(20);
                let block = (FIRST_BLOCK_MS << doublings).min(LONGEST_BLOCK_MS);
                entry.blocked_until_ms = now_ms + block;
                blocked = true;
            }
        }
        blocked
    }

    /// A good proof: this source's count for this user starts over.
    pub fn succeeded(&self, source: IpAddr, user: &str) {
        self.keys().remove(&Key::Pair(source, user.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn backoff_grows_and_other_sources_are_untouched() {
        let t = Throttle::default();
        for i in 0..FREE_PER_USER {
            assert_eq!(t.check(ip(2), "alice", i as u64), Verdict::Evaluate);
            assert!(!t.failed(ip(2), "alice", i as u64));
        }
        assert!(t.failed(ip(2), "alice", 10), "the fourth failure blocks");
        assert_eq!(
            t.check(ip(2), "alice", 10),
            Verdict::Refuse {
                retry_after_secs: 1
            }
        );
        assert_eq!(
            t.check(ip(3), "alice", 10),
            Verdict::Evaluate,
            "another source"
        );
        assert_eq!(t.check(ip(2), "bob", 10), Verdict::Evaluate, "another user");
        assert_eq!(t.check(ip(2), "alice", 1_010), Verdict::Evaluate);
        t.failed(ip(2), "alice", 1_010);
        assert_eq!(
            t.check(ip(2), "alice", 1_010),
            Verdict::Refuse {
                retry_after_secs: 2
            }
        );
        t.failed(ip(2), "alice", 3_010);
        assert_eq!(
            t.check(ip(2), "alice", 3_010),
            Verdict::Refuse {
                retry_after_secs: 4
            }
        );
        // Success from the source starts its count for the user over.
        t.succeeded(ip(2), "alice");
        assert_eq!(t.check(ip(2), "alice", 3_011), Verdict::Evaluate);
    }

    #[test]
    fn spraying_many_users_from_one_source_is_throttled() {
        let t = Throttle::default();
        for i in 0..FREE_PER_SOURCE {
            t.failed(ip(2), &format!("user{i}"), 0);
        }
        assert_eq!(t.check(ip(2), "fresh", 0), Verdict::Evaluate);
        t.failed(ip(2), "fresh", 0);
        assert!(matches!(
            t.check(ip(2), "another", 0),
            Verdict::Refuse { .. }
        ));
        assert_eq!(t.check(ip(3), "another", 0), Verdict::Evaluate);
    }

    #[test]
    fn quiet_keys_are_forgotten() {
        let t = Throttle::default();
        for _ in 0..10 {
            t.failed(ip(2), "alice", 0);
        }
        let later = LONGEST_BLOCK_MS + 1;
        assert_eq!(t.check(ip(2), "alice", later), Verdict::Evaluate);
        assert!(!t.failed(ip(2), "alice", later), "counting starts over");
    }
}
