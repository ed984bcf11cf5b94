//! The one outcome model both backends share (PROTOCOL.md, first table).

use zeroize::Zeroizing;

/// What a handshake with the token authority ended in.
///
/// `Token` is the only variant that can ever become `PAM_SUCCESS` on its own.
#[derive(Debug)]
pub enum Outcome {
    /// The authority accepted the digest and issued a non-empty AuthToken.
    Token(Zeroizing<String>),
    /// A zero-length `DigestChallenge`: the authority needs no token for this user.
    NoTokenNeeded,
    /// `410` (or a device label of another user): not this authority's user.
    Unmanaged,
    /// Wrong password: an empty AuthToken, a `410` on the digest, or a device `401`.
    Rejected,
    /// Anything else: network, TLS, timeout, 5xx, malformed or oversized reply,
    /// unsupported challenge, bad server signature. The reason is safe to log.
    Unavailable(String),
}

impl Outcome {
    /// A short word for log lines; never includes the token.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Token(_) => "token",
            Outcome::NoTokenNeeded => "no_token_needed",
            Outcome::Unmanaged => "unmanaged",
            Outcome::Rejected => "rejected",
            Outcome::Unavailable(_) => "unavailable",
        }
    }

    pub fn unavailable(reason: impl Into<String>) -> Self {
        Outcome::Unavailable(reason.into())
    }
}
