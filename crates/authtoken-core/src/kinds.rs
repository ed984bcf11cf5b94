//! The protocols' vocabulary, which the client's config, the helper, the
//! protocol drivers and the reference server all speak: the schemes, the
//! token-API flavors, the policies, and the protocol bounds. A leaf: it
//! imports nothing of the crate, so the server never needs the client's
//! config to name them.

use serde::{Deserialize, Serialize};

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

/// Fewest SCRAM iterations any client ever answers (RFC 7677 §4).
pub const SCRAM_MIN_ITERATIONS: u32 = 4096;

/// Which token API a `rest` authority speaks (docs/PROTOCOL.md, "The rest
/// backend").
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum RestFlavor {
    /// Seed 002: a JSON `authenticate` method with a `credentials` object,
    /// answering `success` and a `session_token` with its duration.
    #[serde(rename = "json-authenticate")]
    JsonAuthenticate,
    /// Seed 003: MindTouch Deki's `POST users/authenticate` with HTTP Basic
    /// credentials, answering the token as the response text.
    #[serde(rename = "deki")]
    Deki,
}

impl RestFlavor {
    pub fn name(self) -> &'static str {
        match self {
            RestFlavor::JsonAuthenticate => "json-authenticate",
            RestFlavor::Deki => "deki",
        }
    }
}

/// Seed 002's default session token duration (3 hours).
pub const DEFAULT_TOKEN_DURATION: u32 = 10_800;
/// Seed 002's longest session token duration (24 hours).
pub const MAX_TOKEN_DURATION: u32 = 86_400;

/// Whether SCRAM logins are bound to their TLS connection
/// (SCRAM-SHA-256-PLUS, docs/PROTOCOL.md "Channel binding").
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChannelBindingPolicy {
    /// Bind when the authority offers it; tell it (GS2 `y`) when it did not.
    #[default]
    Prefer,
    /// A challenge without channel binding is `Unavailable`.
    Require,
    /// Never bind (a relay with a trusted certificate can then pass the
    /// login through).
    Off,
}

/// What a zero-length `DigestChallenge` turns into.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmptyChallengePolicy {
    /// `PAM_IGNORE`: let the rest of the stack decide.
    #[default]
    Ignore,
    /// `PAM_SUCCESS` without a token.
    Success,
}
