//! The reference server's errors, and the one place it reads and writes its
//! own files (stores, device enrolments, certificates and keys).

use std::path::{Path, PathBuf};

use authtoken_core::trust::{self, Rules, TrustError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Untrusted(#[from] TrustError),
    /// A store or device file that does not parse.
    #[error("{}: {problem}", path.display())]
    Format { path: PathBuf, problem: String },
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0} is not 32 bytes of base64")]
    BadKey(&'static str),
    #[error("no randomness available")]
    Random,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot read the password: {0}")]
    Password(String),
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Network {
        what: String,
        source: std::io::Error,
    },
}

impl ServerError {
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
        move |source| ServerError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Largest store or device file read.
const MAX_STORE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a file of verifiers or keys, trusted the way the client trusts its
/// config: no symlink anywhere on the path, owned by root or by the user the
/// server runs as, not writable by group or others, and private to its owner.
pub fn read_private(path: &Path) -> Result<Zeroizing<String>, ServerError> {
    let euid = nix::unistd::geteuid().as_raw();
    let rules = Rules {
        also_owner: (euid != 0).then_some(euid),
        private: true,
    };
    Ok(trust::read_text(
        &trust::absolute(path),
        rules,
        MAX_STORE_BYTES,
    )?)
}

/// Replaces `path` atomically with `text`, private to the server (0600).
pub fn write_private(path: &Path, text: &str) -> Result<(), ServerError> {
    trust::write_private(path, text.as_bytes(), None).map_err(ServerError::io(path))
}

/// Replaces `path` atomically with `text`, readable by all (0644).
pub fn write_public(path: &Path, text: &str) -> Result<(), ServerError> {
    trust::write_atomic(path, text.as_bytes(), 0o644, None).map_err(ServerError::io(path))
}

/// A 32-byte key from base64.
pub fn key32(text: &str, what: &'static str) -> Result<[u8; 32], ServerError> {
    B64.decode(text)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(ServerError::BadKey(what))
}

/// `n` random bytes from the OS.
pub fn random(n: usize) -> Result<Vec<u8>, ServerError> {
    authtoken_protocol::random_bytes(n).map_err(|_| ServerError::Random)
}
