//! The server's own files and secrets: stores, device enrolments,
//! certificates and keys are read and written only here, under the same
//! trust rules as the client's config, and every random byte comes from
//! here.

use std::path::{Path, PathBuf};

use authtoken_core::trust::{self, Rules, TrustError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use zeroize::Zeroizing;

/// Why a file or a secret is not there to use.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Untrusted(#[from] TrustError),
    #[error("{0} is not 32 bytes of base64")]
    BadKey(&'static str),
    #[error("no randomness available")]
    Random,
}

impl FileError {
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
        move |source| FileError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Largest store or device file read: a TOML store of 100,000 users is
/// about 35 MB.
const MAX_STORE_BYTES: u64 = 256 * 1024 * 1024;

/// The account the packaged unit runs the server as.
pub const SERVICE_ACCOUNT: &str = "authtoken-server";

/// Reads a file of verifiers or keys, trusted the way the client trusts its
/// config: no symlink anywhere on the path, not writable by group or others,
/// private to its owner, and owned by root or by the user the server runs
/// as (for root, that is the service account, whose files an
/// administrator's `add-user` edits).
pub fn read_private(path: &Path) -> Result<Zeroizing<String>, FileError> {
    let euid = nix::unistd::geteuid().as_raw();
    let also_owner = if euid == 0 {
        nix::unistd::User::from_name(SERVICE_ACCOUNT)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    } else {
        Some(euid)
    };
    let rules = Rules {
        also_owner,
        private: true,
    };
    Ok(trust::read_text(
        &trust::absolute(path),
        rules,
        MAX_STORE_BYTES,
    )?)
}

/// Whom a file written at `path` belongs to: the owner of the file it
/// replaces, else of its directory. So an administrator's `add-user` (as
/// root) keeps a store that the service user owns readable by the service
/// (`User=authtoken-server`), and new files in its directory are its own.
fn inherited_owner(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return None; // only root may give files away
    }
    let meta = std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .or_else(|| std::fs::metadata(path.parent()?).ok())?;
    Some((meta.uid(), meta.gid()))
}

/// Replaces `path` atomically with `text`, private to its owner (0600).
pub fn write_private(path: &Path, text: &str) -> Result<(), FileError> {
    trust::write_private(path, text.as_bytes(), inherited_owner(path)).map_err(FileError::io(path))
}

/// Replaces `path` atomically with `text`, readable by all (0644).
pub fn write_public(path: &Path, text: &str) -> Result<(), FileError> {
    trust::write_atomic(path, text.as_bytes(), 0o644, inherited_owner(path))
        .map_err(FileError::io(path))
}

/// An exclusive lock beside `path` (`PATH.lock`, private, owned as the
/// file it guards would be), held until dropped: every writer of a store
/// file takes it, so an administrator's edit and a server taking a join
/// token take turns instead of one overwriting the other.
pub fn lock_beside(path: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, FileError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    let lock = path.with_file_name(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&lock)
        .map_err(FileError::io(&lock))?;
    // The directory may be the service account's: a lock it replaced with
    // a hard link to another file must not be given away by root's fchown.
    let meta = file.metadata().map_err(FileError::io(&lock))?;
    if !meta.is_file() || std::os::unix::fs::MetadataExt::nlink(&meta) != 1 {
        return Err(FileError::io(&lock)(std::io::Error::other(
            "not a lock file of its own (a link or a special file)",
        )));
    }
    if let Some((uid, gid)) = inherited_owner(path) {
        let _ = nix::unistd::fchown(
            &file,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        );
    }
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| FileError::io(&lock)(e.into()))
}

/// A 32-byte key from base64.
pub fn key32(text: &str, what: &'static str) -> Result<[u8; 32], FileError> {
    B64.decode(text)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(FileError::BadKey(what))
}

/// `n` random bytes from the OS.
pub fn random(n: usize) -> Result<Vec<u8>, FileError> {
    authtoken_protocol::random_bytes(n).map_err(|_| FileError::Random)
}

/// Lower-case hex of `bytes`: tokens, serials, fingerprints and budget
/// names all spell bytes this way.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_that_is_a_link_to_another_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("users.toml");
        let other = dir.path().join("someone-elses");
        std::fs::write(&other, "precious").unwrap();
        std::fs::hard_link(&other, dir.path().join("users.toml.lock")).unwrap();
        assert!(lock_beside(&store).is_err());
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "precious");
        std::fs::remove_file(dir.path().join("users.toml.lock")).unwrap();
        let held = lock_beside(&store).unwrap();
        drop(held);
        assert!(lock_beside(&store).is_ok(), "its own lock, again");
    }
}
