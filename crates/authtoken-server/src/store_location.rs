//! Where the user store lives, for the administrator's commands and for
//! `serve`: a TOML file (the embedded default) or a PostgreSQL database
//! (`postgres://…`) that several replicas share. The commands edit either
//! the same way: load, change in memory with the same checks, write back
//! (the whole file, or the one changed row).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::ServerError;
use crate::http::Service;
use crate::pgaccess::{self, Access};
use crate::pgstore::{is_url, shown_url, PgStore};
use crate::store::{Change, Store};

/// A store named on the command line.
pub enum StoreLocation {
    File(PathBuf),
    Postgres { url: String, access: Access },
}

/// The store `serve` reads from.
pub enum StoreSource {
    File(PathBuf),
    Postgres(Arc<PgStore>),
}

impl StoreSource {
    pub fn shown(&self) -> String {
        match self {
            StoreSource::File(path) => path.display().to_string(),
            StoreSource::Postgres(pg) => pg.shown.clone(),
        }
    }
}

/// A runtime for one command's database work (its connections live and
/// die with it).
fn runtime() -> Result<tokio::runtime::Runtime, ServerError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ServerError::Network {
            what: "starting the runtime".into(),
            source,
        })
}

impl StoreLocation {
    /// A `postgres://` URL (refused at once if it holds a password, before
    /// any prompt keeps it in the process list), or else a file path.
    pub fn parse(text: String, access: &Access) -> Result<StoreLocation, ServerError> {
        if is_url(&text) {
            pgaccess::parse(&text)?;
            Ok(StoreLocation::Postgres {
                url: text,
                access: access.clone(),
            })
        } else {
            Ok(StoreLocation::File(PathBuf::from(text)))
        }
    }

    /// For messages: the path, or the URL without its password.
    pub fn shown(&self) -> String {
        match self {
            StoreLocation::File(path) => path.display().to_string(),
            StoreLocation::Postgres { url, .. } => shown_url(url),
        }
    }

    pub fn load(&self) -> Result<Store, ServerError> {
        match self {
            StoreLocation::File(path) => Store::load(path),
            StoreLocation::Postgres { url, access } => {
                let pg = PgStore::open(url, access)?;
                runtime()?.block_on(async {
                    pg.check_schema().await?;
                    pg.load().await.map(|(store, _)| store)
                })
            }
        }
    }

    /// Loads the store (a missing file is a new, empty one), applies
    /// `edit`, checks the directory can still be published, and writes
    /// back what changed. `edit` says what it changed, and what to call
    /// it in the message.
    pub fn edit(
        &self,
        edit: impl FnOnce(&mut Store) -> Result<(Change, String), ServerError>,
    ) -> Result<(), ServerError> {
        match self {
            StoreLocation::File(path) => {
                let (mut store, text) = if path.exists() {
                    let (store, text) = Store::load_with_text(path)?;
                    (store, Some(text))
                } else {
                    (Store::new()?, None)
                };
                let before = store.users.len();
                let (change, what) = edit(&mut store)?;
                check_directory(&store)?;
                match (&change, text) {
                    // A new user: the file as it was, and its table after.
                    (Change::User(name), Some(text)) if store.users.len() == before + 1 => {
                        match store.users.get(name) {
                            Some(user) => Store::save_appending(path, &text, name, user)?,
                            None => store.save(path)?,
                        }
                    }
                    _ => store.save(path)?,
                }
                println!(
                    "wrote {what} to {}; send SIGHUP to a running server (systemctl reload authtoken-server)",
                    path.display()
                );
            }
            StoreLocation::Postgres { url, access } => {
                let pg = PgStore::open(url, access)?;
                let what = runtime()?.block_on(async {
                    pg.check_schema().await?;
                    pg.edit(edit).await
                })?;
                println!(
                    "wrote {what} to {}; every replica serving it takes it up within a second",
                    pg.shown
                );
            }
        }
        Ok(())
    }
}

fn check_directory(store: &Store) -> Result<(), ServerError> {
    store
        .directory()
        .map(|_| ())
        .map_err(|e| ServerError::Usage(e.to_string()))
}

/// `authtoken-server migrate URL [--to N]`.
pub fn migrate(url: &str, access: &Access, to: Option<u32>) -> Result<(), ServerError> {
    let pg = PgStore::open(url, access)?;
    let (before, after) = runtime()?.block_on(pg.migrate(to))?;
    if before == after {
        println!("{}: schema version {after}, nothing to do", pg.shown);
    } else {
        println!("{}: schema version {before} -> {after}", pg.shown);
    }
    Ok(())
}

/// `authtoken-server import-store FILE URL`.
pub fn import(file: &Path, url: &str, access: &Access) -> Result<(), ServerError> {
    let store = Store::load(file)?;
    let pg = PgStore::open(url, access)?;
    runtime()?.block_on(async {
        pg.check_schema().await?;
        pg.import(&store).await
    })?;
    println!(
        "imported {} users and {} groups from {} into {}",
        store.users.len(),
        store.groups.len(),
        file.display(),
        pg.shown
    );
    Ok(())
}

/// How often a replica looks at the store's version counter (and so how
/// soon it notices the database is away, or back).
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How often expired single-use records and old failures are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// A replica's watch on its PostgreSQL store: reloads the users when the
/// version counter moves (an add-user on any machine), sweeps expired
/// records, and says when the database goes away and comes back.
pub async fn follow(service: Arc<Service>, pg: Arc<PgStore>, mut version: i64) {
    let (Service::Mdm(authority) | Service::Rest { authority, .. }) = &*service else {
        return;
    };
    let mut was_up = true;
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let now = match pg.version().await {
            Ok(now) => now,
            Err(down) => {
                if was_up {
                    eprintln!("authtoken-server: {down}: answering 503 until it is back");
                }
                was_up = false;
                continue;
            }
        };
        if !was_up {
            eprintln!("authtoken-server: store {} reachable again", pg.shown);
            was_up = true;
        }
        if now != version {
            match pg.load().await {
                Ok((store, loaded_at)) => {
                    let count = store.users.len();
                    authority.replace_store(store);
                    version = loaded_at;
                    eprintln!(
                        "authtoken-server: store {} changed: {count} users",
                        pg.shown
                    );
                }
                Err(e) => eprintln!(
                    "authtoken-server: store changed but does not load, keeping the one in force: {e}"
                ),
            }
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = tokio::time::Instant::now();
            let _ = pg.sweep(authtoken_core::clock::unix_millis()).await;
        }
    }
}
