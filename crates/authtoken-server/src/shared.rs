//! What an authority's replicas must share: the single-use records of
//! accepted responses and the guessing budgets. One process keeps them
//! itself (in memory, or single-use records in a directory that processes
//! on one machine share); replicas on PostgreSQL keep them in the
//! database, so a response accepted by one is refused by every other and
//! guesses spread over them are counted once. The device registry's
//! writes (a join token taken and the certificate recorded, a renewal)
//! go through here too: under the store file's lock for a file store, in
//! one statement for PostgreSQL.

use std::path::PathBuf;
use std::sync::Arc;

use crate::enrollment::{take_token, DeviceRecord, JoinSecret};
use crate::nonce::{Claim, ReplayRecord};
use crate::pgstore::{PgStore, StoreDown};
use crate::store::{Change, EditError, Store};
use crate::throttle::{budget_name, Judged, Slot, Throttle, Verdict};

#[allow(
    clippy::large_enum_variant,
    reason = "one per server, built once and never moved on a request's path"
)]
pub enum Shared {
    Local {
        replay: ReplayRecord,
        throttle: Throttle,
        /// The TOML store the authority serves from, which the device
        /// registry's writes edit (none: no enrollment).
        store_file: Option<PathBuf>,
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
            store_file: None,
        }
    }

    /// The same, enrolling machines into the store file at `path`.
    pub fn with_store_file(self, path: PathBuf) -> Shared {
        match self {
            Shared::Local {
                replay, throttle, ..
            } => Shared::Local {
                replay,
                throttle,
                store_file: Some(path),
            },
            postgres => postgres,
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

    /// An evaluated proof of a check-in (`nonce`: its response, when the
    /// proof was right) judged in one step: the budget read, then the
    /// failure counted or the response's single-use record claimed (and a
    /// device's own budget started over). With the budget spent nothing is
    /// recorded and the proof's result is not used. One statement on
    /// PostgreSQL.
    pub async fn judge(
        &self,
        user: &str,
        device: Option<[u8; 32]>,
        now_ms: u64,
        nonce: Option<(&str, u64)>,
    ) -> Result<Judged, StoreDown> {
        match self {
            Shared::Local {
                replay, throttle, ..
            } => {
                let slot = match throttle.reserve(user, device, now_ms) {
                    Verdict::Refuse { retry_after_secs } => {
                        return Ok(Judged::Spent { retry_after_secs })
                    }
                    Verdict::Evaluate(slot) => slot,
                };
                let Some((nonce, expiry)) = nonce else {
                    return Ok(Judged::Wrong { last: slot.last });
                };
                throttle.release(user, device, slot, true);
                match replay.claim(user, nonce, expiry, now_ms / 1000) {
                    Claim::First => Ok(Judged::Granted),
                    Claim::Replayed => Ok(Judged::Replayed),
                    Claim::Full => Ok(Judged::Full),
                    Claim::Unavailable => Err(StoreDown("replay record unavailable".into())),
                }
            }
            Shared::Postgres { store, per_minute } => {
                let reset = device.map(|_| budget_name(user, device));
                store
                    .judge(
                        &budget_name(user, device),
                        now_ms,
                        *per_minute,
                        nonce.map(|(nonce, _)| nonce),
                        user,
                        nonce.map_or(0, |(_, expiry)| expiry),
                        reset.as_deref(),
                    )
                    .await
            }
        }
    }

    /// A join: takes one use of the token `secret` names (for a machine
    /// called `name`, at `now`) and records the certificate issued for it,
    /// as one step. A file store answers with the store as written, which
    /// the authority puts in force; PostgreSQL's replicas reload by
    /// themselves.
    pub async fn enroll(
        &self,
        secret: &JoinSecret,
        name: &str,
        now: u64,
        serial: &str,
        record: &DeviceRecord,
    ) -> Result<Recorded, RegistryError> {
        match self {
            Shared::Local { store_file, .. } => {
                let path = store_file.as_ref().ok_or(RegistryError::NoStore)?;
                let edited = Store::edit_file(path, |store| {
                    take_token(&mut store.join_tokens, secret, name, now)
                        .map_err(|refusal| EditError::Refused(refusal.to_string()))?;
                    store.devices.insert(serial.to_owned(), record.clone());
                    Ok((Change::Devices(vec![serial.to_owned()]), ()))
                });
                match edited {
                    Ok(((), store)) => Ok(Recorded::Store(Box::new(store))),
                    Err(EditError::Refused(why)) => Err(RegistryError::Token(why)),
                    Err(e) => Err(RegistryError::Store(e.to_string())),
                }
            }
            Shared::Postgres { store, .. } => {
                match store
                    .enroll(&secret.id, &secret.hash(), name, now, serial, record)
                    .await
                {
                    Ok(true) => Ok(Recorded::Elsewhere),
                    Ok(false) => Err(RegistryError::Token(
                        "unknown, wrong, expired, used up or for another name".into(),
                    )),
                    Err(down) => Err(RegistryError::Down(down)),
                }
            }
        }
    }

    /// A renewal: records `record` while the certificate it replaces (by
    /// `fingerprint`) is on record and not revoked.
    pub async fn renew(
        &self,
        fingerprint: &str,
        serial: &str,
        record: &DeviceRecord,
    ) -> Result<Recorded, RegistryError> {
        match self {
            Shared::Local { store_file, .. } => {
                let path = store_file.as_ref().ok_or(RegistryError::NoStore)?;
                let edited = Store::edit_file(path, |store| {
                    let current = store
                        .devices
                        .values()
                        .any(|d| d.fingerprint == fingerprint && !d.revoked);
                    if !current {
                        return Err(EditError::Refused("revoked".into()));
                    }
                    store.devices.insert(serial.to_owned(), record.clone());
                    Ok((Change::Devices(vec![serial.to_owned()]), ()))
                });
                match edited {
                    Ok(((), store)) => Ok(Recorded::Store(Box::new(store))),
                    Err(EditError::Refused(_)) => Err(RegistryError::Revoked),
                    Err(e) => Err(RegistryError::Store(e.to_string())),
                }
            }
            Shared::Postgres { store, .. } => {
                match store.renew(fingerprint, serial, record).await {
                    Ok(true) => Ok(Recorded::Elsewhere),
                    Ok(false) => Err(RegistryError::Revoked),
                    Err(down) => Err(RegistryError::Down(down)),
                }
            }
        }
    }
}

/// Where a registry write landed.
pub enum Recorded {
    /// In the store file: the store as written, to put in force.
    Store(Box<Store>),
    /// In the database, which every replica follows.
    Elsewhere,
}

/// Why a registry write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("this authority keeps no store to enroll into")]
    NoStore,
    /// The token was unknown, wrong, expired, used up or for another
    /// name (why, for the log): the client is told no more than that.
    #[error("join token refused: {0}")]
    Token(String),
    #[error("device certificate revoked or not on record")]
    Revoked,
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Down(StoreDown),
}
