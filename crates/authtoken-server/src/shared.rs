//! What an authority's replicas must share: the single-use records of
//! accepted responses and the guessing budgets. One process keeps them
//! itself (in memory, or single-use records in a directory that processes
//! on one machine share); replicas on PostgreSQL keep them in the
//! database, so a response accepted by one is refused by every other and
//! guesses spread over them are counted once.

use std::sync::Arc;

use crate::nonce::{Claim, ReplayRecord};
use crate::pgstore::{PgStore, StoreDown};
use crate::throttle::{budget_name, Throttle, Verdict};

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

    /// Whether a proof for `user` from `device` may be evaluated.
    pub async fn check(
        &self,
        user: &str,
        device: Option<[u8; 32]>,
        now_ms: u64,
    ) -> Result<Verdict, StoreDown> {
        match self {
            Shared::Local { throttle, .. } => Ok(throttle.check(user, device, now_ms)),
            Shared::Postgres { store, per_minute } => {
                store
                    .throttle_check(&budget_name(user, device), now_ms, *per_minute)
                    .await
            }
        }
    }

    /// Records a wrong proof; whether the budget is now spent.
    pub async fn failed(
        &self,
        user: &str,
        device: Option<[u8; 32]>,
        now_ms: u64,
    ) -> Result<bool, StoreDown> {
        match self {
            Shared::Local { throttle, .. } => Ok(throttle.failed(user, device, now_ms)),
            Shared::Postgres { store, per_minute } => {
                store
                    .throttle_failed(&budget_name(user, device), now_ms, *per_minute)
                    .await
            }
        }
    }

    /// A good proof: a device's own budget starts over (the shared one
    /// does not, or a guesser who knows one password could reset another's).
    pub async fn succeeded(&self, user: &str, device: Option<[u8; 32]>) {
        match self {
            Shared::Local { throttle, .. } => throttle.succeeded(user, device),
            Shared::Postgres { store, .. } => {
                if device.is_some() {
                    // A reset that fails leaves the device's count to age
                    // out on its own: nothing is granted by it.
                    let _ = store.throttle_reset(&budget_name(user, device)).await;
                }
            }
        }
    }

    /// Claims an accepted response's nonce.
    pub async fn claim(&self, user: &str, nonce: &str, expiry: u64, now_secs: u64) -> Claim {
        match self {
            Shared::Local { replay, .. } => replay.claim(user, nonce, expiry, now_secs),
            Shared::Postgres { store, .. } => match store.claim(user, nonce, expiry).await {
                Ok(true) => Claim::First,
                Ok(false) => Claim::Replayed,
                Err(_) => Claim::Unavailable,
            },
        }
    }
}
