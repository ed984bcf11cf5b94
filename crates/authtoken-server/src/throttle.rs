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
/// What an evaluated proof came to, in one step of the shared state: the
/// budget checked, then the failure counted or the single-use record
/// claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// Right, and its response accepted for the first time anywhere.
    Granted,
    /// Right, but its response was accepted before.
    Replayed,
    /// Wrong, and counted; `last`: it spent the budget.
    Wrong { last: bool },
    /// The budget was spent already: the proof's result is not used.
    Spent { retry_after_secs: u64 },
    /// The in-memory single-use record holds all it may for the account.
    Full,
}

pub fn budget_name(user: &str, device: Option<[u8; 32]>) -> String {
    match device {
        Some(id) => {
            format!("d:{}:{user}", crate::files::hex(&id))
        }
        None => format!("a:{user}"),
    }
}

/// One reserved slot of a guessing budget: taken before a proof is
/// evaluated, so that requests in flight at once cannot all pass a check
/// that none of them has yet counted against. It stays as the wrong
/// proof's failure unless released (a right proof, or one that was never
/// evaluated after all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Which reservation (unique per store).
    pub id: i64,
    /// This slot is the budget's last: a wrong proof in it spends the
    /// budget (the next ones are answered 429).
    pub last: bool,
}

/// The throttle's decision before a proof is evaluated.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Evaluate it, in this slot.
    Evaluate(Slot),
    /// Refuse; the client may retry after this many seconds.
    Refuse { retry_after_secs: u64 },
}

/// When a spent budget may be used again: a minute after the oldest of
/// its newest `per_minute` entries.
pub fn retry_after_secs(oldest_ms: u64, now_ms: u64) -> u64 {
    (oldest_ms + WINDOW_MS)
        .saturating_sub(now_ms)
        .div_ceil(1000)
        .max(1)
}

pub struct Throttle {
    state: Mutex<State>,
    per_minute: u32,
}

/// Each budget's reservations within the window, oldest first (time and
/// slot id), and the last slot id handed out.
#[derive(Default)]
struct State {
    keys: HashMap<Key, VecDeque<(u64, i64)>>,
    last_id: i64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(GUESSES_PER_MINUTE)
    }
}

impl Throttle {
    /// At most `per_minute` wrong proofs evaluated per account per minute
    /// (per budget); at least one.
    pub fn new(per_minute: u32) -> Throttle {
        Throttle {
            state: Mutex::new(State::default()),
            per_minute: per_minute.max(1),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves a slot for a proof for `user`, from a client with `device`
    /// identity or none, at `now_ms`: the check and the count in one step.
    pub fn reserve(&self, user: &str, device: Option<[u8; 32]>, now_ms: u64) -> Verdict {
        let mut state = self.state();
        let key = Key::new(user, device);
        if state.keys.len() >= MAX_KEYS && !state.keys.contains_key(&key) {
            make_room(&mut state.keys, now_ms);
        }
        state.last_id += 1;
        let id = state.last_id;
        let per_minute = self.per_minute as usize;
        let times = state.keys.entry(key).or_default();
        expire(times, now_ms);
        match times.front() {
            Some(&(oldest, _)) if times.len() >= per_minute => Verdict::Refuse {
                retry_after_secs: retry_after_secs(oldest, now_ms),
            },
            _ => {
                times.push_back((now_ms, id));
                Verdict::Evaluate(Slot {
                    id,
                    last: times.len() >= per_minute,
                })
            }
        }
    }

    /// Gives a slot back: the proof in it was right (`right`), or never
    /// evaluated. A right proof from a device also starts the device's own
    /// budget over (the shared one does not, or a guesser who knows one
    /// password could reset another's).
    pub fn release(&self, user: &str, device: Option<[u8; 32]>, slot: Slot, right: bool) {
        let mut state = self.state();
        let key = Key::new(user, device);
        if right && device.is_some() {
            state.keys.remove(&key);
        } else if let Some(times) = state.keys.get_mut(&key) {
            times.retain(|(_, id)| *id != slot.id);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.state().keys.len()
    }
}

fn expire(times: &mut VecDeque<(u64, i64)>, now_ms: u64) {
    while times
        .front()
        .is_some_and(|&(t, _)| now_ms.saturating_sub(t) >= WINDOW_MS)
    {
        times.pop_front();
    }
}

/// Drops keys whose window is empty; if none is, the quietest tenth.
fn make_room(keys: &mut HashMap<Key, VecDeque<(u64, i64)>>, now_ms: u64) {
    keys.retain(|_, times| {
        expire(times, now_ms);
        !times.is_empty()
    });
    if keys.len() >= MAX_KEYS {
        let mut last: Vec<u64> = keys
            .values()
            .filter_map(|t| t.back().map(|(at, _)| *at))
            .collect();
        let cut = last.len() / 10;
        let (_, &mut threshold, _) = last.select_nth_unstable(cut);
        keys.retain(|_, times| times.back().is_some_and(|&(t, _)| t > threshold));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICE: Option<[u8; 32]> = Some([7; 32]);

    fn slot(verdict: Verdict) -> Slot {
        match verdict {
            Verdict::Evaluate(slot) => slot,
            refused => panic!("refused: {refused:?}"),
        }
    }

    fn refused(verdict: Verdict) -> bool {
        matches!(verdict, Verdict::Refuse { .. })
    }

    #[test]
    fn an_account_gets_thirty_wrong_proofs_a_minute_from_everywhere() {
        let t = Throttle::default();
        for i in 0..GUESSES_PER_MINUTE as u64 {
            let s = slot(t.reserve("alice", None, i * 100));
            assert_eq!(s.last, i + 1 == GUESSES_PER_MINUTE as u64);
        }
        assert_eq!(
            t.reserve("alice", None, 3_000),
            Verdict::Refuse {
                retry_after_secs: 57
            }
        );
        slot(t.reserve("bob", None, 3_000));
        // Her own device has its own budget.
        slot(t.reserve("alice", DEVICE, 3_000));
        // A minute after the first failure, one more may be tried.
        slot(t.reserve("alice", None, 60_000));
        assert!(refused(t.reserve("alice", None, 60_001)));
    }

    #[test]
    fn slots_in_flight_count_before_any_proof_is_evaluated() {
        // Reservations not answered yet still count: the fourth of four
        // at once is refused.
        let t = Throttle::new(3);
        let held: Vec<Slot> = (0..3).map(|_| slot(t.reserve("alice", None, 0))).collect();
        assert!(refused(t.reserve("alice", None, 0)));
        // A right proof gives its slot back; the wrong ones keep theirs.
        t.release("alice", None, held[0], true);
        slot(t.reserve("alice", None, 1));
        assert!(refused(t.reserve("alice", None, 1)));
    }

    #[test]
    fn a_device_budget_is_per_device_and_starts_over_on_success() {
        let t = Throttle::new(3);
        let held: Vec<Slot> = (0..3)
            .map(|_| slot(t.reserve("alice", DEVICE, 0)))
            .collect();
        assert!(refused(t.reserve("alice", DEVICE, 1)));
        slot(t.reserve("alice", Some([8; 32]), 1));
        slot(t.reserve("alice", None, 1));
        t.release("alice", DEVICE, held[2], true);
        assert!(!slot(t.reserve("alice", DEVICE, 2)).last, "all of it again");
    }

    #[test]
    fn the_shared_count_is_not_reset_by_a_success() {
        let t = Throttle::new(3);
        let first = slot(t.reserve("alice", None, 0));
        slot(t.reserve("alice", None, 0));
        slot(t.reserve("alice", None, 0));
        // A right proof gives back its own slot only.
        t.release("alice", None, first, true);
        slot(t.reserve("alice", None, 1));
        assert!(refused(t.reserve("alice", None, 1)));
    }

    #[test]
    fn a_flood_of_names_keeps_the_table_bounded() {
        let t = Throttle::new(2);
        t.reserve("alice", None, 0);
        t.reserve("alice", None, 0);
        for i in 0..(MAX_KEYS as u64 + 10) {
            t.reserve(&format!("junk{i}"), None, 1 + i / 1000);
        }
        assert!(t.tracked() <= MAX_KEYS);
    }
}
