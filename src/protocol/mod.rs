//! Pure protocol logic: no sockets, no files, no clock. The helper and the
//! reference server drive these with their own I/O, and unit tests drive them
//! with fixed inputs.

pub mod hem;
pub mod http_digest;
pub mod mdm;
pub mod scram;

use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

/// A challenge scheme the client may answer (config `schemes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Scheme {
    /// SCRAM-SHA-256: the server proves it holds the verifier.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// HTTP Digest with SHA-256: password-equivalent storage, no server proof.
    #[serde(rename = "digest-sha-256")]
    DigestSha256,
    /// HTTP Digest with MD5 (also a challenge naming no algorithm).
    #[serde(rename = "digest-md5")]
    DigestMd5,
}

impl Scheme {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::ScramSha256 => "scram-sha-256",
            Scheme::DigestSha256 => "digest-sha-256",
            Scheme::DigestMd5 => "digest-md5",
        }
    }

    /// Whether answering this scheme proves nothing about the server.
    pub fn is_digest(self) -> bool {
        !matches!(self, Scheme::ScramSha256)
    }
}

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
