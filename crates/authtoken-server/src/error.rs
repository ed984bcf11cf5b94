//! The errors a command of the reference server ends in, typed by cause:
//! each wraps the error of the layer it came from (files, the store, the
//! database, TLS, the network), so the message names the cause and no
//! layer below needs to know this one.

use std::path::{Path, PathBuf};

use crate::directory::DirectoryError;
use crate::files::FileError;
use crate::pgaccess::AccessError;
use crate::pgstore::DatabaseError;
use crate::store::{EditError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    File(#[from] FileError),
    /// A store or device file that does not parse.
    #[error("{}: {problem}", path.display())]
    Format { path: PathBuf, problem: String },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Edit(#[from] EditError),
    #[error("{0}")]
    Directory(#[from] DirectoryError),
    #[error("{0}")]
    Database(#[from] DatabaseError),
    #[error("{0}")]
    DatabaseAccess(#[from] AccessError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot read the password: {0}")]
    Password(String),
    /// Options that do not go together, or a value out of its range.
    #[error("{0}")]
    Config(String),
    #[error("{what}: {source}")]
    Network {
        what: String,
        source: std::io::Error,
    },
}

impl ServerError {
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
        move |source| ServerError::File(FileError::io(path)(source))
    }
}
