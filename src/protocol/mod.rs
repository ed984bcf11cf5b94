//! Pure protocol logic: no sockets, no files, no clock. The helper and the
//! reference server drive these with their own I/O, and unit tests drive them
//! with fixed inputs.

pub mod hem;
pub mod http_digest;
pub mod mdm;
pub mod scram;

use ring::rand::{SecureRandom, SystemRandom};

/// `n` random bytes from the OS.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, ring::error::Unspecified> {
    let mut buf = vec![0u8; n];
    SystemRandom::new().fill(&mut buf)?;
    Ok(buf)
}

/// Errors in what a peer sent us. The text is safe to log: it never contains
/// a password, digest or token.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("unsupported DigestChallenge")]
    UnsupportedChallenge,
    #[error("{0}")]
    Refused(String),
    #[error("no randomness available")]
    Random,
}
