//! The module ↔ helper messages: one JSON object each way, versioned and
//! length-bounded. Secrets travel base64-encoded so that JSON never needs
//! escapes for them (serde_json's unescape buffer is not zeroized) and so
//! that non-UTF-8 passwords survive intact.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::outcome::Outcome;

pub const WIRE_VERSION: u32 = 1;
/// Upper bound of a request on the helper's stdin.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Upper bound of a result on the helper's stdout (a 64 KiB token, base64'd).
pub const MAX_RESULT_BYTES: usize = 128 * 1024;
/// Longest password we forward.
pub const MAX_PASSWORD_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("unsupported message version {0}")]
    Version(u32),
}

/// One authentication request, module → helper.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelperRequest {
    pub v: u32,
    pub user: String,
    password_b64: Zeroizing<String>,
    /// PAM service, tty and remote host: for logging and future policy.
    pub service: String,
    pub tty: String,
    pub rhost: String,
}

impl std::fmt::Debug for HelperRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperRequest")
            .field("user", &self.user)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl HelperRequest {
    pub fn new(user: &str, password: &[u8], service: &str, tty: &str, rhost: &str) -> Self {
        let mut encoded = Zeroizing::new(String::with_capacity(password.len().div_ceil(3) * 4));
        B64.encode_string(password, &mut encoded);
        HelperRequest {
            v: WIRE_VERSION,
            user: user.to_owned(),
            password_b64: encoded,
            service: service.to_owned(),
            tty: tty.to_owned(),
            rhost: rhost.to_owned(),
        }
    }

    /// The password bytes, decoded into a zeroizing buffer.
    pub fn password(&self) -> Result<Zeroizing<Vec<u8>>, WireError> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.password_b64.len()));
        B64.decode_vec(self.password_b64.as_bytes(), &mut out)
            .map_err(|_| WireError::Malformed("password is not base64".into()))?;
        if out.len() > MAX_PASSWORD_BYTES {
            return Err(WireError::TooLarge(MAX_PASSWORD_BYTES));
        }
        Ok(out)
    }

    /// Serialises into a buffer allocated once at its final capacity, so no
    /// reallocation leaves an unzeroized copy of the password behind.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, WireError> {
        encode_bounded(self, MAX_REQUEST_BYTES)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let request: HelperRequest = decode_bounded(bytes, MAX_REQUEST_BYTES)?;
        if request.v != WIRE_VERSION {
            return Err(WireError::Version(request.v));
        }
        Ok(request)
    }
}

/// One result, helper → module.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HelperResult {
    v: u32,
    outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_b64: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Encodes an outcome as the helper's result message.
pub fn encode_result(outcome: &Outcome) -> Result<Zeroizing<Vec<u8>>, WireError> {
    let mut result = HelperResult {
        v: WIRE_VERSION,
        outcome: outcome.label().to_owned(),
        token_b64: None,
        reason: None,
    };
    match outcome {
        Outcome::Token(token) => {
            let mut encoded = Zeroizing::new(String::with_capacity(token.len().div_ceil(3) * 4));
            B64.encode_string(token.as_bytes(), &mut encoded);
            result.token_b64 = Some(encoded);
        }
        Outcome::Unavailable(reason) => result.reason = Some(reason.clone()),
        Outcome::NoTokenNeeded | Outcome::Unmanaged | Outcome::Rejected => {}
    }
    encode_bounded(&result, MAX_RESULT_BYTES)
}

/// Decodes the helper's result. Anything malformed is an error, which the
/// module treats as `PAM_AUTHINFO_UNAVAIL` — never as success.
pub fn decode_result(bytes: &[u8]) -> Result<Outcome, WireError> {
    let result: HelperResult = decode_bounded(bytes, MAX_RESULT_BYTES)?;
    if result.v != WIRE_VERSION {
        return Err(WireError::Version(result.v));
    }
    let malformed = |why: &str| Err(WireError::Malformed(why.to_owned()));
    match (result.outcome.as_str(), &result.token_b64, &result.reason) {
        ("token", Some(token_b64), None) => {
            let mut raw = Zeroizing::new(Vec::with_capacity(token_b64.len()));
            B64.decode_vec(token_b64.as_bytes(), &mut raw)
                .map_err(|_| WireError::Malformed("token is not base64".into()))?;
            let token = match std::str::from_utf8(&raw) {
                Ok(text) if !text.is_empty() => Zeroizing::new(text.to_owned()),
                Ok(_) => return malformed("empty token"),
                Err(_) => return malformed("token is not UTF-8"),
            };
            Ok(Outcome::Token(token))
        }
        ("no_token_needed", None, None) => Ok(Outcome::NoTokenNeeded),
        ("unmanaged", None, None) => Ok(Outcome::Unmanaged),
        ("rejected", None, None) => Ok(Outcome::Rejected),
        ("unavailable", None, Some(reason)) => Ok(Outcome::Unavailable(reason.clone())),
        _ => malformed("unknown outcome or wrong fields for it"),
    }
}

fn encode_bounded<T: Serialize>(value: &T, max: usize) -> Result<Zeroizing<Vec<u8>>, WireError> {
    let mut buf = Zeroizing::new(Vec::with_capacity(max + 1));
    serde_json::to_writer(&mut *buf, value).map_err(|e| WireError::Malformed(e.to_string()))?;
    buf.push(b'\n');
    if buf.len() > max {
        return Err(WireError::TooLarge(max));
    }
    Ok(buf)
}

fn decode_bounded<T: for<'de> Deserialize<'de>>(bytes: &[u8], max: usize) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge(max));
    }
    let line = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    serde_json::from_slice(line).map_err(|e| WireError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_keeps_binary_password() {
        let request = HelperRequest::new("alice", b"p\xffss\"\\zebra", "sshd", "ssh", "192.0.2.1");
        let bytes = request.encode().unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("zebra"),
            "password must not appear in clear: {text}"
        );
        let back = HelperRequest::decode(&bytes).unwrap();
        assert_eq!(back.user, "alice");
        assert_eq!(back.service, "sshd");
        assert_eq!(&back.password().unwrap()[..], b"p\xffss\"\\zebra");
    }

    #[test]
    fn results_round_trip() {
        for outcome in [
            Outcome::Token(Zeroizing::new("tok\"en".into())),
            Outcome::NoTokenNeeded,
            Outcome::Unmanaged,
            Outcome::Rejected,
            Outcome::unavailable("timeout"),
        ] {
            let bytes = encode_result(&outcome).unwrap();
            let back = decode_result(&bytes).unwrap();
            assert_eq!(back.label(), outcome.label());
            if let (Outcome::Token(a), Outcome::Token(b)) = (&outcome, &back) {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn malformed_results_are_errors() {
        for bad in [
            &b""[..],
            b"{}",
            b"{\"v\":2,\"outcome\":\"rejected\"}",
            b"{\"v\":1,\"outcome\":\"token\"}",
            b"{\"v\":1,\"outcome\":\"token\",\"token_b64\":\"\"}",
            b"{\"v\":1,\"outcome\":\"token\",\"token_b64\":\"!!\"}",
            b"{\"v\":1,\"outcome\":\"success\"}",
            b"{\"v\":1,\"outcome\":\"rejected\",\"extra\":1}",
            b"{\"v\":1,\"outcome\":\"rejected\"} trailing",
        ] {
            assert!(
                decode_result(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = vec![b' '; MAX_RESULT_BYTES + 1];
        assert_eq!(
            decode_result(&huge).unwrap_err(),
            WireError::TooLarge(MAX_RESULT_BYTES)
        );
    }
}
