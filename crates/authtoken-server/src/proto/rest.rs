//! The server halves of the `rest` flavors (docs/PROTOCOL.md, "The rest
//! backend"): reading a json-authenticate request or Deki's HTTP Basic
//! credentials, and writing the answers the seeds document.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use zeroize::Zeroizing;

use authtoken_core::kinds::{DEFAULT_TOKEN_DURATION, MAX_TOKEN_DURATION};

/// A json-authenticate request: who, the password, and the duration asked
/// for (bounded to 1..=86400; the seed's default when not asked).
pub struct JsonRequest {
    pub user: String,
    pub password: Zeroizing<String>,
    /// `generate_session_token`: without it, the seed answers no token.
    pub wants_token: bool,
    pub duration: u32,
}

#[derive(Deserialize)]
struct RawRequest {
    credentials: RawCredentials,
    generate_session_token: Option<bool>,
    session_token_duration: Option<serde_json::Value>,
}

/// The seed's syntax block puts `generate_session_token` and
/// `session_token_duration` inside the credentials object, its examples
/// beside it: both are accepted (beside wins).
#[derive(Deserialize)]
struct RawCredentials {
    user: String,
    password: Zeroizing<String>,
    generate_session_token: Option<bool>,
    session_token_duration: Option<serde_json::Value>,
}

/// Parses a json-authenticate request body. Unknown fields (the seed's
/// `fetch_extra_info`, `token`) are ignored: this server never lets a
/// client choose its token.
pub fn parse_json_request(body: &[u8]) -> Result<JsonRequest, &'static str> {
    let raw: RawRequest =
        serde_json::from_slice(body).map_err(|_| "not a JSON authenticate request")?;
    let wants_token = raw
        .generate_session_token
        .or(raw.credentials.generate_session_token)
        .unwrap_or(false);
    let duration = match raw
        .session_token_duration
        .as_ref()
        .or(raw.credentials.session_token_duration.as_ref())
    {
        None => DEFAULT_TOKEN_DURATION,
        Some(value) => {
            duration(value).ok_or("session_token_duration is not a number of seconds")?
        }
    };
    Ok(JsonRequest {
        user: raw.credentials.user,
        password: raw.credentials.password,
        wants_token,
        duration,
    })
}

/// A duration asked for, bounded to 1..=86400.
fn duration(value: &serde_json::Value) -> Option<u32> {
    let seconds = authtoken_protocol::rest::json_authenticate::duration_value(value)?;
    Some(seconds.clamp(1, u64::from(MAX_TOKEN_DURATION)) as u32)
}

/// The success answer: the token and its duration.
pub fn json_success(token: &str, duration: Option<u32>) -> Vec<u8> {
    let mut answer = serde_json::json!({ "success": true });
    if let Some(duration) = duration {
        answer["session_token"] = token.into();
        answer["session_token_duration"] = duration.into();
    }
    answer.to_string().into_bytes()
}

/// The failure answer (`error`, `error_number`).
pub fn json_failure(error: &str, number: u32) -> Vec<u8> {
    serde_json::json!({ "success": false, "error": error, "error_number": number })
        .to_string()
        .into_bytes()
}

/// The user and password of an `Authorization: Basic …` header (RFC 7617):
/// `None` for anything else.
pub fn parse_basic(header: &[u8]) -> Option<(String, Zeroizing<Vec<u8>>)> {
    let text = std::str::from_utf8(header).ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Zeroizing::new(B64.decode(encoded.trim()).ok()?);
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_owned();
    Some((user, Zeroizing::new(decoded[colon + 1..].to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_requests_parse_with_the_fields_beside_or_inside() {
        // Seed 002, Example 2 (fields beside the credentials).
        let request = parse_json_request(
            br#"{"credentials": {"user": "domain_admin@example.com", "password": "pencil75"},
                "fetch_extra_info": true, "generate_session_token": true, "token": "gabbagabba"}"#,
        )
        .unwrap();
        assert_eq!(request.user, "domain_admin@example.com");
        assert_eq!(request.password.as_str(), "pencil75");
        assert!(request.wants_token);
        assert_eq!(request.duration, DEFAULT_TOKEN_DURATION);
        // The syntax block: inside, the duration as a string.
        let request = parse_json_request(
            br#"{"credentials": {"user": "a", "password": "p", "generate_session_token": true,
                "session_token_duration": "600"}}"#,
        )
        .unwrap();
        assert!(request.wants_token);
        assert_eq!(request.duration, 600);
        let bounded = parse_json_request(
            br#"{"credentials": {"user": "a", "password": "p"}, "session_token_duration": 999999}"#,
        )
        .unwrap();
        assert_eq!(bounded.duration, MAX_TOKEN_DURATION);
        assert!(!bounded.wants_token);
        for junk in [&b"{}"[..], b"[]", b"{\"credentials\":{\"user\":\"a\"}}", b"{\"credentials\":{\"user\":\"a\",\"password\":\"p\"},\"session_token_duration\":\"x\"}"] {
            assert!(parse_json_request(junk).is_err());
        }
    }

    #[test]
    fn basic_credentials() {
        let (user, password) = parse_basic(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap();
        assert_eq!(
            (user.as_str(), &password[..]),
            ("Aladdin", &b"open sesame"[..])
        );
        let (user, password) = parse_basic(b"basic YTpwOnE=").unwrap();
        assert_eq!((user.as_str(), &password[..]), ("a", &b"p:q"[..]));
        assert!(parse_basic(b"Bearer x").is_none());
        assert!(parse_basic(b"Basic !!!").is_none());
        assert!(parse_basic(b"Basic YWJj").is_none(), "no colon");
    }
}
