//! Seed 002's JSON `authenticate` method: `credentials` (`user`,
//! `password`) with `generate_session_token` and `session_token_duration`
//! beside it, as the seed's examples send them; the answer's `success`
//! decides, and on success `session_token` and `session_token_duration`.

use authtoken_core::outcome::Outcome;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::transport::{self, Transport};

pub const CONTENT_TYPE: &str = "application/json";

/// What the client sends, borrowing the password: serialized straight
/// into a zeroizing buffer, never copied elsewhere.
#[derive(Serialize)]
struct Request<'a> {
    credentials: Credentials<'a>,
    generate_session_token: bool,
    session_token_duration: u32,
}

#[derive(Serialize)]
struct Credentials<'a> {
    user: &'a str,
    password: &'a str,
}

/// The request body. The password is a JSON string: it must be UTF-8.
pub fn request_body(
    user: &str,
    password: &[u8],
    token_duration: u32,
) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let password = std::str::from_utf8(password)
        .map_err(|_| "the password is not UTF-8, and json-authenticate sends JSON strings")?;
    let request = Request {
        credentials: Credentials { user, password },
        generate_session_token: true,
        session_token_duration: token_duration,
    };
    let mut body = Zeroizing::new(Vec::with_capacity(128 + password.len() * 2));
    serde_json::to_writer(&mut *body, &request).map_err(|_| "cannot encode the request")?;
    Ok(body)
}

/// The answer as the seed documents it; other fields (`extra_info`,
/// `audit`, …) are ignored.
#[derive(Deserialize)]
struct Answer {
    success: bool,
    session_token: Option<Zeroizing<String>>,
    session_token_duration: Option<serde_json::Value>,
}

/// Maps an answer to an outcome (docs/PROTOCOL.md's table for this
/// flavor). A body that is not strict JSON (the seed's Example 1 has a
/// trailing comma) is malformed: unavailable, never a login.
pub fn parse_answer(status: u16, body: &[u8], now: u64) -> Outcome {
    match status {
        200 => {}
        401 => return Outcome::Rejected,
        other => return super::unexpected_status(other),
    }
    let answer: Answer = match serde_json::from_slice(body) {
        Ok(answer) => answer,
        Err(_) => {
            return Outcome::unavailable(
                "malformed authenticate answer (not JSON of the documented shape)",
            )
        }
    };
    if !answer.success {
        // Whatever else it carries, a token included, "success": false is
        // a no. (`error` is the server's free text: never logged.)
        return Outcome::Rejected;
    }
    let token = match answer.session_token {
        Some(token) if !token.is_empty() => token,
        _ => return Outcome::unavailable("success without a session_token"),
    };
    if let Err(e) = crate::check_token(&token) {
        return Outcome::unavailable(e.to_string());
    }
    let duration = match answer.session_token_duration.as_ref().map(duration_seconds) {
        None => None,
        Some(Some(seconds)) => Some(seconds),
        Some(None) => {
            return Outcome::unavailable(
                "session_token_duration is not a number of seconds between 1 and 86400",
            )
        }
    };
    Outcome::token_until(token, duration.map(|seconds| now.saturating_add(seconds)))
}

/// A `session_token_duration` as either side reads it: a number (the
/// answers' shape) or a non-empty string of digits (the seed's syntax
/// block writes "seconds"); a string too long for a `u64` reads as
/// `u64::MAX`. Each side bounds it its own way.
pub fn duration_value(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(s.parse().unwrap_or(u64::MAX))
        }
        _ => None,
    }
}

/// A documented duration in an answer: 1 to 86400 seconds.
fn duration_seconds(value: &serde_json::Value) -> Option<u64> {
    duration_value(value).filter(|seconds| {
        (1..=u64::from(authtoken_core::kinds::MAX_TOKEN_DURATION)).contains(seconds)
    })
}

pub fn user_authenticate(
    transport: &mut dyn Transport,
    user: &str,
    password: &[u8],
    token_duration: u32,
    now: u64,
    step: &mut dyn FnMut(&str),
) -> Outcome {
    let body = match request_body(user, password, token_duration) {
        Ok(body) => body,
        Err(why) => return Outcome::unavailable(why),
    };
    let reply =
        match transport.send(&transport::Request::new("POST", "").with_body(CONTENT_TYPE, &body)) {
            Ok(reply) => reply,
            Err(failure) => return super::failed(failure),
        };
    step(&format!("authenticate answered HTTP {}", reply.status));
    parse_answer(reply.status, &reply.body, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> Outcome {
        parse_answer(status, body.as_bytes(), 1_000)
    }

    #[test]
    fn the_request_is_the_seeds_shape() {
        let body = request_body("alice", b"pencil75", 600).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "credentials": {"user": "alice", "password": "pencil75"},
                "generate_session_token": true,
                "session_token_duration": 600
            })
        );
        assert!(request_body("alice", b"\xff", 600).is_err());
    }

    #[test]
    fn success_with_a_token_signs_in_until_its_duration() {
        // Seed 002, Example 2's answer.
        let answer = r#"{ "success": true, "extra_info": {"roles": {"domain": ["example.com"]}, "macsettings": null},
            "session_token": "gabbagabba", "session_token_duration": 10800, "audit": "flesh36_4f183f46b" }"#;
        match parse(200, answer) {
            Outcome::Token { token, expires } => {
                assert_eq!(token.as_str(), "gabbagabba");
                assert_eq!(expires, Some(11_800));
            }
            other => panic!("{other:?}"),
        }
        // No duration said: no expiry.
        assert!(matches!(
            parse(200, r#"{"success":true,"session_token":"t"}"#),
            Outcome::Token { expires: None, .. }
        ));
        assert!(matches!(
            parse(
                200,
                r#"{"success":true,"session_token":"t","session_token_duration":"60"}"#
            ),
            Outcome::Token {
                expires: Some(1_060),
                ..
            }
        ));
    }

    #[test]
    fn every_other_answer_is_a_no_or_unavailable() {
        assert!(matches!(
            parse(200, r#"{"success":false,"error":"bad","error_number":12}"#),
            Outcome::Rejected
        ));
        // A token beside "success": false does not sign anyone in.
        assert!(matches!(
            parse(200, r#"{"success":false,"session_token":"t"}"#),
            Outcome::Rejected
        ));
        assert!(matches!(parse(401, ""), Outcome::Rejected));
        for (status, body) in [
            (200, r#"{"success":true}"#),
            (200, r#"{"success":true,"session_token":""}"#),
            (200, r#"{"success":true,"session_token":"a\u0007b"}"#),
            (200, r#"{"success":true,"session_token":"t","session_token_duration":0}"#),
            (200, r#"{"success":true,"session_token":"t","session_token_duration":86401}"#),
            (200, r#"{"success":true,"session_token":"t","session_token_duration":"soon"}"#),
            (200, r#"{"success":"yes","session_token":"t"}"#),
            (200, r#"{"session_token":"t"}"#),
            // Seed 002, Example 1's answer: a trailing comma, not JSON.
            (200, "{\n \"success\": true,\n \"session_token\": \"69da1a00117f157537ce785230414ddd\",\n \"session_token_duration\": 10800,\n}"),
            (200, "not json"),
            (302, ""),
            (500, r#"{"success":true,"session_token":"t"}"#),
        ] {
            let outcome = parse(status, body);
            assert!(matches!(outcome, Outcome::Unavailable { .. }), "{status} {body}: {outcome:?}");
        }
        let huge = format!(
            r#"{{"success":true,"session_token":"{}"}}"#,
            "x".repeat(20_000)
        );
        assert!(matches!(parse(200, &huge), Outcome::Unavailable { .. }));
    }
}
