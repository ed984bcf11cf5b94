//! The one outcome model both backends share (docs/PROTOCOL.md, first
//! table), and the one place where outcomes become PAM results.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::kinds::EmptyChallengePolicy;

/// What a handshake with the token authority ended in.
///
/// `Token` is the only variant that can ever become `PAM_SUCCESS` on its own.
///
/// On the module-helper wire it is externally tagged (`"rejected"`,
/// `{"token":{"token":"…"}}`): serde then reads the token straight into its
/// zeroizing buffer, where an internally tagged enum would first copy it
/// into a plain one.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    /// The authority accepted the digest and issued a non-empty AuthToken.
    Token {
        #[serde(with = "token_b64")]
        token: Zeroizing<String>,
        /// When the authority says the token stops working (seconds since
        /// the epoch): a `rest` session token's duration, a device JWT's
        /// `exp`. `None`: it did not say.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<u64>,
    },
    /// The authority issued a non-empty AuthToken, which the setuid
    /// `authtoken-chkpwd` kept (it refreshes the session's token file
    /// itself): what an unprivileged caller gets instead of the token.
    Verified,
    /// A zero-length `DigestChallenge`: the authority needs no token for this user.
    NoTokenNeeded,
    /// `410` (or a device label of another user): not this authority's user.
    Unmanaged,
    /// Wrong password: an empty AuthToken, a `410` on the digest, or a device `401`.
    Rejected,
    /// Anything else: network, TLS, timeout, 5xx, malformed or oversized reply,
    /// unsupported challenge, bad server signature. The reason is safe to log.
    Unavailable { reason: String },
    /// Every authority unreachable, and the password matched the user's
    /// offline verifier (only under the `[offline]` policy).
    OfflineVerified,
    /// Every authority unreachable, and the password did not match the
    /// offline verifier.
    OfflineRejected,
    /// No authority could be reached at all: every one failed to connect
    /// (refused, name not found, connect timeout, TLS handshake). Only this
    /// may open the offline path; an authority that answered never does.
    Unreachable { reason: String },
}

impl Outcome {
    pub fn token(token: Zeroizing<String>) -> Self {
        Outcome::Token {
            token,
            expires: None,
        }
    }

    /// A token the authority said lives until `expires` (seconds since
    /// the epoch).
    pub fn token_until(token: Zeroizing<String>, expires: Option<u64>) -> Self {
        Outcome::Token { token, expires }
    }

    pub fn unavailable(reason: impl Into<String>) -> Self {
        Outcome::Unavailable {
            reason: reason.into(),
        }
    }

    /// A short word for log lines; never includes the token.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Token { .. } => "token",
            Outcome::Verified => "verified",
            Outcome::NoTokenNeeded => "no_token_needed",
            Outcome::Unmanaged => "unmanaged",
            Outcome::Rejected => "rejected",
            Outcome::Unavailable { .. } => "unavailable",
            Outcome::Unreachable { .. } => "unreachable",
            Outcome::OfflineVerified => "offline",
            Outcome::OfflineRejected => "offline_rejected",
        }
    }
}

/// The PAM results this product gives, by meaning. Each platform's FFI
/// turns them into its own numbers (Linux-PAM and OpenPAM differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PamCode {
    Success,
    AuthErr,
    Ignore,
    AuthinfoUnavail,
    UserUnknown,
    ConvErr,
    BufErr,
    SessionErr,
    CredErr,
    PermDenied,
    ServiceErr,
    SystemErr,
}

impl PamCode {
    /// The name administrators know from the PAM documentation.
    pub fn name(self) -> &'static str {
        match self {
            PamCode::Success => "PAM_SUCCESS",
            PamCode::AuthErr => "PAM_AUTH_ERR",
            PamCode::Ignore => "PAM_IGNORE",
            PamCode::AuthinfoUnavail => "PAM_AUTHINFO_UNAVAIL",
            PamCode::UserUnknown => "PAM_USER_UNKNOWN",
            PamCode::ConvErr => "PAM_CONV_ERR",
            PamCode::BufErr => "PAM_BUF_ERR",
            PamCode::SessionErr => "PAM_SESSION_ERR",
            PamCode::CredErr => "PAM_CRED_ERR",
            PamCode::PermDenied => "PAM_PERM_DENIED",
            PamCode::ServiceErr => "PAM_SERVICE_ERR",
            PamCode::SystemErr => "PAM_SYSTEM_ERR",
        }
    }
}

/// The single place where authority outcomes become PAM results; the module
/// and `authtoken login` both use it.
pub fn outcome_code(outcome: &Outcome, policy: EmptyChallengePolicy) -> PamCode {
    match outcome {
        Outcome::Token { token, .. } if !token.is_empty() => PamCode::Success,
        Outcome::Token { .. } => PamCode::AuthinfoUnavail,
        Outcome::Verified | Outcome::OfflineVerified => PamCode::Success,
        Outcome::OfflineRejected => PamCode::AuthErr,
        Outcome::NoTokenNeeded => match policy {
            EmptyChallengePolicy::Success => PamCode::Success,
            EmptyChallengePolicy::Ignore => PamCode::Ignore,
        },
        Outcome::Unmanaged => PamCode::Ignore,
        Outcome::Rejected => PamCode::AuthErr,
        Outcome::Unavailable { .. } | Outcome::Unreachable { .. } => PamCode::AuthinfoUnavail,
    }
}

/// Tokens travel base64-encoded so that JSON never needs escapes for them
/// (serde_json's unescape buffer is not zeroized), in zeroizing buffers.
mod token_b64 {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    pub(super) fn serialize<S: Serializer>(
        token: &Zeroizing<String>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut encoded = Zeroizing::new(String::with_capacity(token.len().div_ceil(3) * 4));
        B64.encode_string(token.as_bytes(), &mut encoded);
        s.serialize_str(&encoded)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Zeroizing<String>, D::Error> {
        use serde::de::Error;
        let encoded = Zeroizing::<String>::deserialize(d)?;
        let mut raw = Zeroizing::new(Vec::with_capacity(encoded.len()));
        B64.decode_vec(encoded.as_bytes(), &mut raw)
            .map_err(|_| D::Error::custom("token is not base64"))?;
        let text = std::str::from_utf8(&raw).map_err(|_| D::Error::custom("token is not UTF-8"))?;
        if text.is_empty() {
            return Err(D::Error::custom("empty token"));
        }
        Ok(Zeroizing::new(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_nonempty_token_or_explicit_policy_succeeds() {
        use EmptyChallengePolicy::*;
        let token = Outcome::token(Zeroizing::new("t".into()));
        assert_eq!(outcome_code(&token, Ignore), PamCode::Success);
        assert_ne!(
            outcome_code(&Outcome::token(Zeroizing::new(String::new())), Success),
            PamCode::Success
        );
        assert_eq!(
            outcome_code(&Outcome::NoTokenNeeded, Ignore),
            PamCode::Ignore
        );
        assert_eq!(
            outcome_code(&Outcome::NoTokenNeeded, Success),
            PamCode::Success
        );
        assert_eq!(outcome_code(&Outcome::Unmanaged, Success), PamCode::Ignore);
        assert_eq!(outcome_code(&Outcome::Rejected, Success), PamCode::AuthErr);
        assert_eq!(
            outcome_code(&Outcome::unavailable("x"), Success),
            PamCode::AuthinfoUnavail
        );
    }
}
