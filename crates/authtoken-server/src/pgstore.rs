//! The PostgreSQL store (`--store postgres://…`), for several authority
//! replicas on one database. It holds what the TOML store holds (the
//! secret, users with their verifiers, the directory's groups) and what
//! replicas must share: the single-use records of accepted responses (a
//! primary key is the replay guard) and the failures each guessing budget
//! has spent. Each replica serves from a copy of the users loaded at start
//! and reloaded when the store's version counter moves, so a login reads
//! the database at most once (the guessing budget, before a proof is
//! evaluated) and writes once (its single-use record, or the failure).
//!
//! Every operation is bounded by [`OPERATION_TIMEOUT`]; a database that is
//! away turns into [`StoreDown`], which the authority answers with `503`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use crate::enrollment::{DeviceRecord, JoinToken};
use crate::files::{random, FileError};
use crate::nonce::NONCE_LIFETIME_SECS;
use crate::pgaccess::{self, Access, AccessError, Transport};
use crate::store::{Change, EditError, Store, StoreError};
use crate::throttle::{Judged, Slot, Verdict, WINDOW_MS};

/// The migrations, in order; the schema's version is how many are applied.
pub const MIGRATIONS: [(&str, &str); 5] = [
    ("users", include_str!("../migrations/0001_users.sql")),
    ("replicas", include_str!("../migrations/0002_replicas.sql")),
    (
        "what the database may not decide",
        include_str!("../migrations/0003_what_the_database_may_not_decide.sql"),
    ),
    (
        "enrollment",
        include_str!("../migrations/0004_enrollment.sql"),
    ),
    (
        "one statement per response",
        include_str!("../migrations/0005_one_statement_per_response.sql"),
    ),
];

/// The schema version this build serves from.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The longest any one database operation may take before the request it
/// serves is answered `503`.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections each replica keeps to the database, at most.
const POOL_SIZE: usize = 16;

/// The database could not be reached or did not answer in time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store unavailable: {0}")]
pub struct StoreDown(pub String);

/// Why an administrator's operation on the database (open, migrate,
/// import, an edit) did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// PostgreSQL (or the way to it) refused: what was being done, and its
    /// message with every cause.
    #[error("{what}: {detail}")]
    Failed { what: String, detail: String },
    #[error("{0}")]
    Down(#[from] StoreDown),
    #[error("{0}")]
    Access(#[from] AccessError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Edit(#[from] EditError),
    #[error("{0}")]
    File(#[from] FileError),
    #[error("{shown}: schema version {found}, this authtoken-server needs {SCHEMA_VERSION}: run `authtoken-server migrate`")]
    OldSchema { shown: String, found: u32 },
    #[error(
        "{shown}: schema version {found} is newer than this authtoken-server's ({SCHEMA_VERSION})"
    )]
    NewerSchema { shown: String, found: u32 },
    #[error("this authtoken-server knows schema versions up to {SCHEMA_VERSION}")]
    UnknownVersion,
    #[error("that uid is already another user's (the store's uid index refused it)")]
    UidTaken,
}

pub struct PgStore {
    pool: Pool,
    /// The URL without its password, for messages.
    pub shown: String,
    /// Whether the last operation reached the database.
    healthy: AtomicBool,
    observer: Option<Arc<dyn StoreObserver>>,
}

/// Where a store reports each operation it ran: its name, how long it
/// took, whether it reached the database (a replica's metrics).
pub trait StoreObserver: Send + Sync {
    fn operation(&self, operation: &'static str, seconds: f64, ok: bool);
}

/// Whether `text` names a PostgreSQL store rather than a TOML file.
pub fn is_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

impl PgStore {
    /// A pool for `url` (libpq's URL form), reached as `access` says
    /// (see [`crate::pgaccess`]: TLS over TCP, the password never from
    /// the URL). Nothing is connected yet.
    pub fn open(url: &str, access: &Access) -> Result<PgStore, DatabaseError> {
        let mut config = pgaccess::parse(url)?;
        let transport = pgaccess::complete(&mut config, access)?;
        config.connect_timeout(OPERATION_TIMEOUT);
        config.application_name("authtoken-server");
        let shown = shown_url(url);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match transport {
            Transport::Plain => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
            Transport::Tls(tls) => Manager::from_config(
                config,
                tokio_postgres_rustls::MakeRustlsConnect::new(*tls),
                manager_config,
            ),
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(OPERATION_TIMEOUT))
            .create_timeout(Some(OPERATION_TIMEOUT))
            .recycle_timeout(Some(OPERATION_TIMEOUT))
            .build()
            .map_err(|e| DatabaseError::Failed {
                what: "store pool".into(),
                detail: e.to_string(),
            })?;
        Ok(PgStore {
            pool,
            shown,
            healthy: AtomicBool::new(true),
            observer: None,
        })
    }

    /// Reports this store's operations, errors and latency to `observer`
    /// (a replica's metrics).
    pub fn observed_by(mut self, observer: Arc<dyn StoreObserver>) -> PgStore {
        self.observer = Some(observer);
        self
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Runs `work` on a pooled connection within [`OPERATION_TIMEOUT`],
    /// recording its health, latency and errors under `operation`.
    async fn run<T, F, Fut>(&self, operation: &'static str, work: F) -> Result<T, StoreDown>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let started = Instant::now();
        let result = tokio::time::timeout(OPERATION_TIMEOUT, async {
            let client = self.pool.get().await.map_err(|e| pool_error_text(&e))?;
            work(client).await.map_err(|e| error_text(&e))
        })
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()));
        self.healthy.store(result.is_ok(), Ordering::Relaxed);
        if let Some(observer) = &self.observer {
            observer.operation(operation, started.elapsed().as_secs_f64(), result.is_ok());
        }
        result.map_err(StoreDown)
    }

    /// A connection for the administrator's long operations (migrate,
    /// import), which take their own time rather than [`OPERATION_TIMEOUT`].
    async fn admin_connection(&self) -> Result<deadpool_postgres::Object, DatabaseError> {
        self.pool.get().await.map_err(|e| DatabaseError::Failed {
            what: self.shown.clone(),
            detail: pool_error_text(&e),
        })
    }

    /// The schema version applied (0 for an empty database).
    pub async fn schema_version(&self) -> Result<u32, StoreDown> {
        self.run("schema", |client| async move {
            let exists: bool = client
                .query_one("SELECT to_regclass('authtoken_schema') IS NOT NULL", &[])
                .await?
                .get(0);
            if !exists {
                return Ok(0);
            }
            let version: Option<i32> = client
                .query_one("SELECT max(version) FROM authtoken_schema", &[])
                .await?
                .get(0);
            Ok(version.unwrap_or(0) as u32)
        })
        .await
    }

    /// Applies the migrations past the schema's version, up to `to` (all by
    /// default), each in a transaction of its own under an advisory lock
    /// (two replicas migrating at once take turns); creates the secret.
    /// Returns the versions before and after.
    pub async fn migrate(&self, to: Option<u32>) -> Result<(u32, u32), DatabaseError> {
        let target = to.unwrap_or(SCHEMA_VERSION);
        if target > SCHEMA_VERSION {
            return Err(DatabaseError::UnknownVersion);
        }
        let secret = random(32)?;
        let mut client = self.admin_connection().await?;
        let before = {
            let tx = client.transaction().await.map_err(fail)?;
            tx.batch_execute(
                "SELECT pg_advisory_xact_lock(7212946);
                 CREATE TABLE IF NOT EXISTS authtoken_schema (
                     version integer PRIMARY KEY,
                     name text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await
            .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            let version: Option<i32> = client
                .query_one("SELECT max(version) FROM authtoken_schema", &[])
                .await
                .map_err(fail)?
                .get(0);
            version.unwrap_or(0) as u32
        };
        if before > SCHEMA_VERSION {
            return Err(DatabaseError::NewerSchema {
                shown: self.shown.clone(),
                found: before,
            });
        }
        let mut now = before;
        for (index, (name, sql)) in MIGRATIONS.iter().enumerate() {
            let version = index as u32 + 1;
            if version > target {
                break;
            }
            let tx = client.transaction().await.map_err(fail)?;
            tx.batch_execute("SELECT pg_advisory_xact_lock(7212946)")
                .await
                .map_err(fail)?;
            let done: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM authtoken_schema WHERE version = $1)",
                    &[&(version as i32)],
                )
                .await
                .map_err(fail)?
                .get(0);
            if !done {
                tx.batch_execute(sql).await.map_err(fail)?;
                tx.execute(
                    "INSERT INTO authtoken_schema (version, name) VALUES ($1, $2)",
                    &[&(version as i32), name],
                )
                .await
                .map_err(fail)?;
            }
            tx.commit().await.map_err(fail)?;
            now = now.max(version);
        }
        client
            .execute(
                "INSERT INTO authtoken_settings (name, value) VALUES ('secret', $1)
                 ON CONFLICT (name) DO NOTHING",
                &[&secret],
            )
            .await
            .map_err(fail)?;
        Ok((before, now))
    }

    /// Refuses a database whose schema is not this build's.
    pub async fn check_schema(&self) -> Result<(), DatabaseError> {
        let shown = self.shown.clone();
        match self.schema_version().await? {
            version if version == SCHEMA_VERSION => Ok(()),
            found if found < SCHEMA_VERSION => Err(DatabaseError::OldSchema { shown, found }),
            found => Err(DatabaseError::NewerSchema { shown, found }),
        }
    }

    /// The store's version counter (moves on every change of users or
    /// groups).
    pub async fn version(&self) -> Result<i64, StoreDown> {
        self.run("version", |client| async move {
            Ok(client
                .query_one("SELECT version FROM authtoken_store_version", &[])
                .await?
                .get(0))
        })
        .await
    }

    /// The whole store, and the version it was read at (one transaction).
    pub async fn load(&self) -> Result<(Store, i64), DatabaseError> {
        let rows = self
            .run("load", |mut client| async move {
                let tx = client
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                let rows = read_rows(&tx).await?;
                tx.commit().await?;
                Ok(rows)
            })
            .await?;
        Ok(rows.into_store()?)
    }

    /// One administrator's edit (add-user, remove-user, add-group), in one
    /// transaction under the store's edit lock: read the store, apply
    /// `edit`, check the directory can still be published, write what
    /// changed, commit. So two edits at once take turns (the second sees
    /// the first's uid), and what every replica loads next still loads;
    /// the uid's unique index stands behind it. Returns what `edit` says.
    pub async fn edit<T>(
        &self,
        edit: impl FnOnce(&mut Store) -> Result<(Change, T), EditError>,
    ) -> Result<T, DatabaseError> {
        let mut client = self.admin_connection().await?;
        let tx = client.transaction().await.map_err(fail)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&EDIT_LOCK])
            .await
            .map_err(fail)?;
        let mut store = read_rows(&tx).await.map_err(fail)?.into_store()?.0;
        let (change, said) = edit(&mut store)?;
        store.directory().map_err(EditError::from)?;
        match &change {
            Change::User(name) => {
                let user = store
                    .users
                    .get(name)
                    .ok_or_else(|| EditError::NoSuchUser(name.clone()))?;
                tx.execute(
                    "INSERT INTO authtoken_users (name, record) VALUES ($1, $2::text::jsonb)
                     ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record",
                    &[name, &Store::user_to_json(user)],
                )
                .await
                .map_err(fail)?;
            }
            Change::RemovedUser(name) => {
                tx.execute("DELETE FROM authtoken_users WHERE name = $1", &[name])
                    .await
                    .map_err(fail)?;
            }
            Change::Devices(serials) => {
                for serial in serials {
                    let record = store
                        .devices
                        .get(serial)
                        .ok_or_else(|| EditError::NoSuchDevice(serial.clone()))?;
                    put_device(&tx, serial, record).await.map_err(fail)?;
                }
            }
            Change::JoinToken(id) => {
                let token = store
                    .join_tokens
                    .get(id)
                    .ok_or_else(|| EditError::NoSuchDevice(id.clone()))?;
                put_join_token(&tx, id, token).await.map_err(fail)?;
            }
            Change::Group(name) => {
                let gid = *store
                    .groups
                    .get(name)
                    .ok_or_else(|| EditError::NoSuchUser(name.clone()))?
                    as i32;
                tx.execute(
                    "INSERT INTO authtoken_groups (name, gid) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET gid = EXCLUDED.gid",
                    &[name, &gid],
                )
                .await
                .map_err(fail)?;
            }
        }
        tx.commit().await.map_err(fail)?;
        Ok(said)
    }

    /// Replaces the store's content with `store` in one transaction (its
    /// secret too, so tokens' nonces keep working across the move).
    pub async fn import(&self, store: &Store) -> Result<(), DatabaseError> {
        let names: Vec<&str> = store.users.keys().map(String::as_str).collect();
        let records: Vec<String> = store.users.values().map(Store::user_to_json).collect();
        let group_names: Vec<&str> = store.groups.keys().map(String::as_str).collect();
        let gids: Vec<i32> = store.groups.values().map(|gid| *gid as i32).collect();
        let mut client = self.admin_connection().await?;
        let tx = client.transaction().await.map_err(fail)?;
        tx.batch_execute(
            "TRUNCATE authtoken_users, authtoken_groups, authtoken_devices, authtoken_join_tokens",
        )
        .await
        .map_err(fail)?;
        tx.execute(
            "INSERT INTO authtoken_settings (name, value) VALUES ('secret', $1)
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&store.secret],
        )
        .await
        .map_err(fail)?;
        // In slices, so one statement's parameters stay a few MB.
        const SLICE: usize = 10_000;
        for (names, records) in names.chunks(SLICE).zip(records.chunks(SLICE)) {
            tx.execute(
                "INSERT INTO authtoken_users (name, record)
                 SELECT name, record::jsonb FROM unnest($1::text[], $2::text[]) AS u(name, record)",
                &[&names, &records],
            )
            .await
            .map_err(fail)?;
        }
        tx.execute(
            "INSERT INTO authtoken_groups (name, gid) SELECT * FROM unnest($1::text[], $2::int[])",
            &[&group_names, &gids],
        )
        .await
        .map_err(fail)?;
        for (serial, record) in &store.devices {
            put_device(&tx, serial, record).await.map_err(fail)?;
        }
        for (id, token) in &store.join_tokens {
            put_join_token(&tx, id, token).await.map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }

    /// Reserves a slot of `budget` before a proof is evaluated (one
    /// statement: the check and the count under the budget's lock, see
    /// `authtoken_reserve`).
    pub async fn reserve(
        &self,
        budget: &str,
        now_ms: u64,
        per_minute: u32,
    ) -> Result<Verdict, StoreDown> {
        let now = now_ms as i64;
        let window = WINDOW_MS as i64;
        let limit = per_minute as i32;
        let (slot, last, retry_ms): (Option<i64>, bool, i64) = self
            .run("reserve", |client| async move {
                let row = client
                    .query_one(
                        "SELECT slot, last, retry_after_ms FROM authtoken_reserve($1, $2, $3, $4)",
                        &[&budget, &now, &window, &limit],
                    )
                    .await?;
                Ok((row.get(0), row.get(1), row.get(2)))
            })
            .await?;
        Ok(match slot {
            Some(id) => Verdict::Evaluate(Slot { id, last }),
            None => Verdict::Refuse {
                retry_after_secs: (retry_ms.max(0) as u64).div_ceil(1000).max(1),
            },
        })
    }

    /// An evaluated proof's verdict in one statement (one round trip, one
    /// commit): the budget read, then the failure counted (`nonce` `None`)
    /// or the single-use record claimed and a device's budget emptied
    /// (`reset`) — or nothing recorded when the budget is spent.
    #[allow(clippy::too_many_arguments)]
    pub async fn judge(
        &self,
        budget: &str,
        now_ms: u64,
        per_minute: u32,
        nonce: Option<&str>,
        account: &str,
        expiry: u64,
        reset: Option<&str>,
    ) -> Result<Judged, StoreDown> {
        let (now, window, limit, expiry) = (
            now_ms as i64,
            WINDOW_MS as i64,
            per_minute as i32,
            expiry as i64,
        );
        let (verdict, last, retry_ms): (String, bool, i64) = self
            .run("judge", |client| async move {
                let statement = client
                    .prepare_cached(
                        "SELECT verdict, last, retry_after_ms \
                         FROM authtoken_judge($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .await?;
                let row = client
                    .query_one(
                        &statement,
                        &[
                            &budget, &now, &window, &limit, &nonce, &account, &expiry, &reset,
                        ],
                    )
                    .await?;
                Ok((row.get(0), row.get(1), row.get(2)))
            })
            .await?;
        Ok(match verdict.as_str() {
            "granted" => Judged::Granted,
            "replayed" => Judged::Replayed,
            "wrong" => Judged::Wrong { last },
            "spent" => Judged::Spent {
                retry_after_secs: (retry_ms.max(0) as u64).div_ceil(1000).max(1),
            },
            other => return Err(StoreDown(format!("judge: unknown verdict {other:?}"))),
        })
    }

    /// Gives a slot back (a proof never evaluated, or a right password);
    /// `reset` also empties a whole budget (a device's, after a right
    /// proof from it).
    pub async fn release(&self, slot: Slot, reset: Option<&str>) -> Result<(), StoreDown> {
        self.run("release", |client| async move {
            client
                .execute(
                    "DELETE FROM authtoken_failures WHERE id = $1 OR budget = $2",
                    &[&slot.id, &reset],
                )
                .await
                .map(|_| ())
        })
        .await
    }

    /// A join: takes one use of the token `id` (whose secret hashes to
    /// `hash`, unexpired at `now`, for `name` if it names one) and records
    /// the device certificate issued for it, in one statement: a token is
    /// used once across every replica. `Ok(false)`: the token was refused.
    pub async fn enroll(
        &self,
        id: &str,
        hash: &str,
        name: &str,
        now: u64,
        serial: &str,
        record: &DeviceRecord,
    ) -> Result<bool, StoreDown> {
        let now = now as i64;
        let json = device_json(record);
        self.run("enroll", |client| async move {
            Ok(client
                .execute(
                    "WITH used AS (
                         UPDATE authtoken_join_tokens SET uses_left = uses_left - 1
                         WHERE id = $1 AND hash = $2 AND uses_left > 0 AND expires_at > $3
                           AND (name IS NULL OR name = $4)
                         RETURNING id)
                     INSERT INTO authtoken_devices (serial, record)
                     SELECT $5, $6::text::jsonb FROM used",
                    &[&id, &hash, &now, &name, &serial, &json],
                )
                .await?
                == 1)
        })
        .await
    }

    /// A renewal: records the new certificate only while the one it
    /// replaces (by `fingerprint`) is on record and not revoked, in one
    /// statement. `Ok(false)`: it is not (revoked meanwhile).
    pub async fn renew(
        &self,
        fingerprint: &str,
        serial: &str,
        record: &DeviceRecord,
    ) -> Result<bool, StoreDown> {
        let json = device_json(record);
        self.run("renew", |client| async move {
            Ok(client
                .execute(
                    "INSERT INTO authtoken_devices (serial, record)
                     SELECT $1, $2::text::jsonb WHERE EXISTS (
                         SELECT 1 FROM authtoken_devices
                         WHERE record->>'fingerprint' = $3
                           AND NOT coalesce((record->>'revoked')::boolean, false))",
                    &[&serial, &json, &fingerprint],
                )
                .await?
                == 1)
        })
        .await
    }

    /// Deletes single-use records a lifetime past their expiry and
    /// failures out of the window. A claim is kept until its nonce's
    /// expiry plus a whole nonce lifetime: a replica whose clock runs
    /// behind still takes the nonce for unexpired, and must still find the
    /// claim that a faster replica made and this one (or it) sweeps.
    pub async fn sweep(&self, now_ms: u64) -> Result<(), StoreDown> {
        let now_secs = (now_ms / 1000).saturating_sub(NONCE_LIFETIME_SECS) as i64;
        let since = now_ms.saturating_sub(WINDOW_MS) as i64;
        self.run("sweep", |client| async move {
            client
                .execute(
                    "DELETE FROM authtoken_replay WHERE expires_at <= $1",
                    &[&now_secs],
                )
                .await?;
            client
                .execute(
                    "DELETE FROM authtoken_failures WHERE at_ms <= $1",
                    &[&since],
                )
                .await?;
            // A join token a day past its expiry is of no use to anyone.
            client
                .execute(
                    "DELETE FROM authtoken_join_tokens WHERE expires_at <= $1",
                    &[&(now_secs - 86_400)],
                )
                .await
                .map(|_| ())
        })
        .await
    }
}

/// A device record as its row's JSON.
fn device_json(record: &DeviceRecord) -> String {
    serde_json::to_string(record).unwrap_or_default()
}

/// Writes a device's row (a renewal or revocation replaces it).
async fn put_device(
    tx: &impl deadpool_postgres::GenericClient,
    serial: &str,
    record: &DeviceRecord,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO authtoken_devices (serial, record) VALUES ($1, $2::text::jsonb)
         ON CONFLICT (serial) DO UPDATE SET record = EXCLUDED.record",
        &[&serial, &device_json(record)],
    )
    .await
    .map(drop)
}

/// Writes a new join token's row.
async fn put_join_token(
    tx: &impl deadpool_postgres::GenericClient,
    id: &str,
    token: &JoinToken,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO authtoken_join_tokens (id, hash, expires_at, uses_left, name, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &id,
            &token.hash,
            &(token.expires_at as i64),
            &(token.uses_left as i32),
            &token.name,
            &(token.created_at as i64),
        ],
    )
    .await
    .map(drop)
}

/// The advisory lock administrators' edits take turns on.
const EDIT_LOCK: i64 = 7_212_947;

/// A store as its tables hold it.
struct Rows {
    version: i64,
    secret: Option<Vec<u8>>,
    users: Vec<(String, String)>,
    groups: Vec<(String, i32)>,
    devices: Vec<(String, String)>,
    join_tokens: Vec<JoinTokenRow>,
}

/// `authtoken_join_tokens`, as read.
type JoinTokenRow = (String, String, i64, i32, Option<String>, i64);

/// Reads every table of the store (in the caller's transaction).
async fn read_rows(
    client: &impl deadpool_postgres::GenericClient,
) -> Result<Rows, tokio_postgres::Error> {
    let version: i64 = client
        .query_one("SELECT version FROM authtoken_store_version", &[])
        .await?
        .get(0);
    let secret: Option<Vec<u8>> = client
        .query_opt(
            "SELECT value FROM authtoken_settings WHERE name = 'secret'",
            &[],
        )
        .await?
        .map(|row| row.get(0));
    let users = pairs(client, "SELECT name, record::text FROM authtoken_users").await?;
    let groups = pairs(client, "SELECT name, gid FROM authtoken_groups").await?;
    let devices = pairs(client, "SELECT serial, record::text FROM authtoken_devices").await?;
    let join_tokens = client
        .query(
            "SELECT id, hash, expires_at, uses_left, name, created_at FROM authtoken_join_tokens",
            &[],
        )
        .await?
        .iter()
        .map(|row| {
            (
                row.get(0),
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
            )
        })
        .collect();
    Ok(Rows {
        version,
        secret,
        users,
        groups,
        devices,
        join_tokens,
    })
}

/// The two columns of every row `sql` selects.
async fn pairs<A, B>(
    client: &impl deadpool_postgres::GenericClient,
    sql: &str,
) -> Result<Vec<(A, B)>, tokio_postgres::Error>
where
    A: tokio_postgres::types::FromSqlOwned,
    B: tokio_postgres::types::FromSqlOwned,
{
    Ok(client
        .query(sql, &[])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

impl Rows {
    /// The store the rows hold, checked as a file's is, and its version.
    fn into_store(self) -> Result<(Store, i64), StoreError> {
        let mut users = BTreeMap::new();
        for (name, json) in self.users {
            let user = Store::user_from_json(&name, &json)?;
            users.insert(name, user);
        }
        let groups = self
            .groups
            .into_iter()
            .map(|(name, gid)| (name, gid as u32))
            .collect();
        let mut store = Store::assemble(self.secret.unwrap_or_default(), users, groups)?;
        for (serial, json) in self.devices {
            let record = serde_json::from_str(&json).map_err(|e| StoreError::User {
                user: format!("device {serial}"),
                problem: e.to_string(),
            })?;
            store.devices.insert(serial, record);
        }
        for (id, hash, expires_at, uses_left, name, created_at) in self.join_tokens {
            store.join_tokens.insert(
                id,
                JoinToken {
                    hash,
                    expires_at: expires_at.max(0) as u64,
                    uses_left: uses_left.max(0) as u32,
                    name,
                    created_at: created_at.max(0) as u64,
                },
            );
        }
        Ok((store, self.version))
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority
        .rsplit_once('@')
        .and_then(|(credentials, host)| Some((credentials.split_once(':')?.0, host)))
    {
        Some((user, host)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
    .replace_password_parameter()
}

trait HidePassword {
    fn replace_password_parameter(self) -> String;
}

impl HidePassword for String {
    /// `password=…` in the query part, hidden too.
    fn replace_password_parameter(self) -> String {
        let Some((head, query)) = self.split_once('?') else {
            return self;
        };
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***".to_owned(),
                _ => pair.to_owned(),
            })
            .collect();
        format!("{head}?{}", query.join("&"))
    }
}

/// A failed administrator's operation, with PostgreSQL's message (and
/// what the uid's unique index means, said plainly).
fn fail(error: tokio_postgres::Error) -> DatabaseError {
    if error
        .as_db_error()
        .is_some_and(|db| db.constraint() == Some("authtoken_users_uid"))
    {
        return DatabaseError::UidTaken;
    }
    DatabaseError::Failed {
        what: "the store".into(),
        detail: error_text(&error),
    }
}

/// A database error with PostgreSQL's own message when there is one, else
/// the error and its causes.
fn error_text(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let text = with_causes(error);
    if text.contains("server does not support TLS") {
        format!(
            "{text}: the database (or something in the path) refused TLS, and plain text \
             would show every verifier; only sslmode=disable in the store URL allows it"
        )
    } else {
        text
    }
}

/// An error and each of its sources, `: `-separated.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}

/// A pool's error: the database's own, when that is what it is.
fn pool_error_text(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(e) => error_text(e),
        other => with_causes(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            shown_url("postgres://authtoken:s3cret@db.example:5432/authtoken?sslmode=require"),
            "postgres://authtoken:***@db.example:5432/authtoken?sslmode=require"
        );
        assert_eq!(
            shown_url("postgresql:///authtoken?host=/run/postgresql&password=s3cret&user=a"),
            "postgresql:///authtoken?host=/run/postgresql&password=***&user=a"
        );
        for plain in [
            "postgres://db.example/authtoken",
            "postgres://authtoken@db.example/authtoken",
        ] {
            assert_eq!(shown_url(plain), plain);
        }
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        assert_eq!(SCHEMA_VERSION, 5);
        assert!(MIGRATIONS[0].1.contains("CREATE TABLE authtoken_users"));
        assert!(MIGRATIONS[1].1.contains("CREATE TABLE authtoken_replay"));
        assert!(is_url("postgres://x/y") && is_url("postgresql:///y"));
        assert!(!is_url("/etc/authtoken-server/users.toml"));
    }
}
