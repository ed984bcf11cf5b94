#![forbid(unsafe_code)]
//! The client side of the protocols: message formats, the SCRAM, Digest
//! and HEM computations, and one blocking driver per backend. It opens no
//! socket or file and reads no clock: each driver sends through a
//! [`transport::Transport`] it is given (the helper's HTTPS, or a test's
//! scripted replies) and takes the time and randomness as arguments. The
//! reference server builds its halves (in its own crate) on the shared
//! pieces here.

pub mod channel_binding;
pub mod enroll;
pub mod hem;
pub mod http_digest;
pub mod kdf;
pub mod mdm;
pub mod offline;
pub mod rest;
pub mod scram;
pub mod transport;

pub use authtoken_core::kinds::Scheme;
use ring::rand::{SecureRandom, SystemRandom};

/// Longest AuthToken accepted from an authority.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// An AuthToken must be short and printable: it is written to a file and
/// handed to session programs, so control characters have no place in it.
pub fn check_token(token: &str) -> Result<(), ProtocolError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(ProtocolError::Malformed("AuthToken (longer than 16 KiB)"));
    }
    if token.chars().any(char::is_control) {
        return Err(ProtocolError::Malformed("AuthToken (control characters)"));
    }
    Ok(())
}

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
