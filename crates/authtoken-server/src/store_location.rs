//! Where the user store lives, for the administrator's commands and for
//! `serve`: a TOML file (the embedded default) or a PostgreSQL database
//! (`postgres://…`) that several replicas share. The commands edit either
//! the same way: load, change in memory with the same checks, write back
//! (the whole file, or the one changed row).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::ServerError;
use crate::pgaccess::{self, Access};
use crate::pgstore::{is_url, shown_url, PgStore};
use crate::store::{Change, EditError, Store};

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
            StoreLocation::File(path) => Ok(Store::load(path)?),
            StoreLocation::Postgres { url, access } => {
                let pg = PgStore::open(url, access)?;
                Ok(runtime()?.block_on(async {
                    pg.check_schema().await?;
                    pg.load().await.map(|(store, _)| store)
                })?)
            }
        }
    }

    /// Loads the store (a missing file is a new, empty one), applies
    /// `edit`, checks the directory can still be published, and writes
    /// back what changed. `edit` says what it changed, and what to call
    /// it in the message.
    pub fn edit(
        &self,
        edit: impl FnOnce(&mut Store) -> Result<(Change, String), EditError>,
    ) -> Result<(), ServerError> {
        match self {
            StoreLocation::File(path) => {
                let (what, _) = Store::edit_file(path, edit)?;
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
