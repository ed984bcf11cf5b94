//! The module ↔ helper messages: one JSON object each way, versioned and
//! length-bounded. Secrets travel base64-encoded so that JSON never needs
//! escapes for them (serde_json's unescape buffer is not zeroized) and so
//! that non-UTF-8 passwords survive intact.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::offline::OfflineVerifier;
use crate::outcome::Outcome;
use crate::username::Username;

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
    pub user: Username,
    password_b64: Zeroizing<String>,
    /// The PAM service: for logging and per-service policy.
    pub service: String,
    /// Compute a new offline verifier when the authority issues a token.
    #[serde(default)]
    pub want_verifier: bool,
    /// The user's offline verifier, to check the password against when no
    /// authority is reachable (sent only where the offline policy allows).
    #[serde(default)]
    pub offline: Option<OfflineVerifier>,
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
    pub fn new(user: &Username, password: &[u8], service: &str) -> Self {
        let mut encoded = Zeroizing::new(String::with_capacity(password.len().div_ceil(3) * 4));
        B64.encode_string(password, &mut encoded);
        HelperRequest {
            v: WIRE_VERSION,
            user: user.clone(),
            password_b64: encoded,
            service: service.to_owned(),
            want_verifier: false,
            offline: None,
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

/// One result, helper → module: the outcome, tagged by serde (the same
/// words as [`Outcome::label`]), and a new offline verifier after an online
/// success when one was asked for.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HelperResult<O> {
    v: u32,
    result: O,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verifier: Option<OfflineVerifier>,
}

/// What the helper answered.
#[derive(Debug)]
pub struct HelperAnswer {
    pub outcome: Outcome,
    pub verifier: Option<OfflineVerifier>,
}

impl From<Outcome> for HelperAnswer {
    fn from(outcome: Outcome) -> Self {
        HelperAnswer {
            outcome,
            verifier: None,
        }
    }
}

/// Encodes an outcome as the helper's result message.
pub fn encode_result(outcome: &Outcome) -> Result<Zeroizing<Vec<u8>>, WireError> {
    encode_answer(outcome, None)
}

/// Encodes an outcome and a new offline verifier.
pub fn encode_answer(
    outcome: &Outcome,
    verifier: Option<&OfflineVerifier>,
) -> Result<Zeroizing<Vec<u8>>, WireError> {
    encode_bounded(
        &HelperResult {
            v: WIRE_VERSION,
            result: outcome,
            verifier: verifier.cloned(),
        },
        MAX_RESULT_BYTES,
    )
}

/// Decodes the helper's result. Anything malformed is an error, which the
/// module treats as `PAM_AUTHINFO_UNAVAIL` — never as success.
pub fn decode_result(bytes: &[u8]) -> Result<Outcome, WireError> {
    decode_answer(bytes).map(|answer| answer.outcome)
}

/// Decodes the helper's result with its offline verifier, if any.
pub fn decode_answer(bytes: &[u8]) -> Result<HelperAnswer, WireError> {
    let result: HelperResult<Outcome> = decode_bounded(bytes, MAX_RESULT_BYTES)?;
    if result.v != WIRE_VERSION {
        return Err(WireError::Version(result.v));
    }
    if result.verifier.is_some() && !matches!(result.result, Outcome::Token { .. }) {
        return Err(WireError::Malformed("a verifier without a token".into()));
    }
    Ok(HelperAnswer {
        outcome: result.result,
        verifier: result.verifier,
    })
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

/// Writes `outcome` (and a new offline verifier) as the result on
/// stdout, the last thing the helper and `authtoken-chkpwd` do; a result
/// that cannot be encoded goes out as `Unavailable`.
pub fn write_answer(
    outcome: &Outcome,
    verifier: Option<&OfflineVerifier>,
) -> std::process::ExitCode {
    use std::io::Write;
    let encoded = match encode_answer(outcome, verifier) {
        Ok(encoded) => encoded,
        Err(e) => match encode_result(&Outcome::unavailable(e.to_string())) {
            Ok(encoded) => encoded,
            Err(_) => return std::process::ExitCode::FAILURE,
        },
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&encoded).and_then(|()| stdout.flush()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_keeps_binary_password() {
        let alice = Username::parse(b"alice").unwrap();
        let request = HelperRequest::new(&alice, b"p\xffss\"\\zebra", "sshd");
        let bytes = request.encode().unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("zebra"),
            "password must not appear in clear: {text}"
        );
        let back = HelperRequest::decode(&bytes).unwrap();
        assert_eq!(back.user, alice);
        assert_eq!(back.service, "sshd");
        assert_eq!(&back.password().unwrap()[..], b"p\xffss\"\\zebra");
    }

    #[test]
    fn results_round_trip() {
        for outcome in [
            Outcome::token(Zeroizing::new("tok\"en".into())),
            Outcome::NoTokenNeeded,
            Outcome::Unmanaged,
            Outcome::Rejected,
            Outcome::unavailable("timeout"),
        ] {
            let bytes = encode_result(&outcome).unwrap();
            let back = decode_result(&bytes).unwrap();
            assert_eq!(back.label(), outcome.label());
            if let (Outcome::Token { token: a, .. }, Outcome::Token { token: b, .. }) =
                (&outcome, &back)
            {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn malformed_results_are_errors() {
        for bad in [
            &b""[..],
            b"{}",
            b"{\"v\":2,\"result\":\"rejected\"}",
            b"{\"v\":1,\"result\":\"token\"}",
            b"{\"v\":1,\"result\":{\"token\":{}}}",
            b"{\"v\":1,\"result\":{\"token\":{\"token\":\"\"}}}",
            b"{\"v\":1,\"result\":{\"token\":{\"token\":\"!!\"}}}",
            b"{\"v\":1,\"result\":{\"token\":{\"token\":\"dA==\",\"extra\":1}}}",
            b"{\"v\":1,\"result\":\"success\"}",
            b"{\"v\":1,\"result\":\"rejected\",\"extra\":1}",
            b"{\"v\":1,\"result\":\"unavailable\"}",
            b"{\"v\":1,\"result\":\"rejected\"} trailing",
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
