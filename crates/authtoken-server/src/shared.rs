//! What an authority's replicas must share: the single-use records of
//! accepted responses and the guessing budgets. One process keeps them
//! itself (in memory, or single-use records in a directory that processes
//! on one machine share); replicas on PostgreSQL keep them in the
//! database, so a response accepted by one is refused by every other and
//! guesses spread over them are counted once.

use std::sync::Arc;

use crate::nonce::{Claim, ReplayRecord};
use crate::pgstore::{PgStore, StoreDown};
use crate::throttle::{budget_name, Slot, Throttle, Verdict};

pub enum Shared {
    Local {
        replay: ReplayRecord,
        throttle: Throttle,
    },
    Postgres {
        store: Arc<PgStore>,
        /// Wrong proofs evaluated per budget per minute.
        per_minute: u32,
    },
}

impl Shared {
    /// This process's own: `replay`, and a budget of `per_minute` wrong
    /// proofs per account (at least one).
    pub fn local(replay: ReplayRecord, per_minute: u32) -> Shared {
        Shared::Local {
            replay,
            throttle: Throttle::new(per_minute),
        }
    }

    /// Kept in a PostgreSQL store, with the same budget.
    pub fn postgres(store: Arc<PgStore>, per_minute: u32) -> Shared {
        Shared::Postgres {
            store,
            per_minute: per_minute.max(1),
        }
    }

    /// Whether the shared state can be reached (a database that failed its
    /// last operation cannot, until one succeeds again).
    pub fn available(&self) -> bool {
        match self {
            Shared::Local { .. } => true,
            Shared::Postgres { store, .. } => store.is_healthy(),
        }
    }

    /// Reserves a slot of the guessing budget for a proof for `user` from
    /// `device`, before it is evaluated: the check and the count in one
    /// step (so proofs in flight at once cannot all pass), on every
    /// replica at once when the store is shared.
    pub async fn reserve(
        &self,
        user: &str,
        device: Option<[u8; 32]>,
        now_ms: u64,
    ) -> Result<Verdict, StoreDown> {
        match self {
            Shared::Local { throttle, .. } => Ok(throttle.reserve(user, device, now_ms)),
            Shared::Postgres { store, per_minute } => {
                store
                    .reserve(&budget_name(user, device), now_ms, *per_minute)
                    .await
            }
        }
    }

    /// A slot whose proof was never evaluated after all (a binding
    /// refused): given back, it says nothing about the password.
    pub async fn release(&self, user: &str, device: Option<[u8; 32]>, slot: Slot) {
        match self {
            Shared::Local { throttle, .. } => throttle.release(user, device, slot, false),
            // A release that fails leaves the slot to age out of the window
            // on its own: nothing is granted by it.
            Shared::Postgres { store, .. } => {
                let _ = store.release(slot, None).await;
            }
        }
    }

    /// A right password (the `rest` protocols, which have no nonce): its
    /// slot back, and a device's own budget starts over (the shared one
    /// does not, or a guesser who knows one password could reset another's).
    pub async fn right(&self, user: &str, device: Option<[u8; 32]>, slot: Slot) {
        match self {
            Shared::Local { throttle, .. } => throttle.release(user, device, slot, true),
            Shared::Postgres { store, .. } => {
                let reset = device.map(|_| budget_name(user, device));
                let _ = store.release(slot, reset.as_deref()).await;
            }
        }
    }

    /// A right proof: claims its nonce (a response is accepted once, by
    /// any process sharing the record) and is [`Shared::right`], in one
    /// statement when the store is shared.
    pub async fn claim(
        &self,
        user: &str,
        device: Option<[u8; 32]>,
        slot: Slot,
        nonce: &str,
        expiry: u64,
        now_secs: u64,
    ) -> Claim {
        match self {
            Shared::Local { replay, throttle } => {
                throttle.release(user, device, slot, true);
                replay.claim(user, nonce, expiry, now_secs)
            }
            Shared::Postgres { store, .. } => {
                let reset = device.map(|_| budget_name(user, device));
                match store
                    .claim(user, nonce, expiry, slot, reset.as_deref())
                    .await
                {
                    Ok(true) => Claim::First,
                    Ok(false) => Claim::Replayed,
                    Err(_) => Claim::Unavailable,
                }
            }
        }
    }
}
