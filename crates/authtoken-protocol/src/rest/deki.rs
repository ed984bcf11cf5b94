//! Seed 003's MindTouch Deki `POST users/authenticate`: HTTP Basic
//! credentials in, the token as the response text out (`200`), `401` when
//! the login failed. The API has no way to ask for a duration and says
//! none, so a Deki token has no expiry here.

use authtoken_core::outcome::Outcome;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::transport::{Request, Transport};

/// The `Authorization` header: `Basic base64(user ":" password)`
/// (RFC 7617). The password may hold a colon; the user name may not (the
/// server splits at the first one), which [`user_authenticate`] checks.
pub fn authorization(user: &str, password: &[u8]) -> Zeroizing<String> {
    let mut pair = Zeroizing::new(Vec::with_capacity(user.len() + 1 + password.len()));
    pair.extend_from_slice(user.as_bytes());
    pair.push(b':');
    pair.extend_from_slice(password);
    let mut header = Zeroizing::new(String::from("Basic "));
    B64.encode_string(&*pair, &mut header);
    header
}

/// Maps an answer to an outcome (docs/PROTOCOL.md's table for this flavor).
pub fn parse_answer(status: u16, body: &[u8]) -> Outcome {
    match status {
        200 => {}
        401 => return Outcome::Rejected,
        other => return super::unexpected_status(other),
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Outcome::unavailable("the token is not UTF-8 text");
    };
    // The response text, as the seed shows it (a line end allowed).
    let token = text.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r' || c == '\n');
    if token.is_empty() {
        return Outcome::unavailable("200 without a token");
    }
    if let Err(e) = crate::check_token(token) {
        return Outcome::unavailable(e.to_string());
    }
    Outcome::token(Zeroizing::new(token.to_owned()))
}

pub fn user_authenticate(
    transport: &mut dyn Transport,
    user: &str,
    password: &[u8],
    step: &mut dyn FnMut(&str),
) -> Outcome {
    // "alice:pw" typed as a user name would reach the server as user
    // alice with a password that starts "pw:": a token for another user
    // than the one PAM signs in. RFC 7617 forbids the colon; so do we.
    if user.contains(':') {
        return Outcome::unavailable(
            "a user name with a colon cannot be sent as HTTP Basic credentials",
        );
    }
    let authorization = authorization(user, password);
    // As the seed's curl sample: an empty text/plain body.
    let reply = match transport.send(
        &Request::new("POST", "")
            .with_body("text/plain", b"")
            .authorized(&authorization),
    ) {
        Ok(reply) => reply,
        Err(failure) => return super::failed(failure),
    };
    step(&format!(
        "users/authenticate answered HTTP {}",
        reply.status
    ));
    parse_answer(reply.status, &reply.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_rfc_7617s() {
        // RFC 7617, section 2.
        assert_eq!(
            authorization("Aladdin", b"open sesame").as_str(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(authorization("a", b"p:q").as_str(), "Basic YTpwOnE=");
    }

    /// Fails every request: nothing may be sent.
    struct NoNetwork;

    impl Transport for NoNetwork {
        fn send(
            &mut self,
            _request: &Request<'_>,
        ) -> Result<crate::transport::Reply, crate::transport::TransportFailure> {
            panic!("no request may be made")
        }
    }

    #[test]
    fn a_user_name_with_a_colon_is_never_sent() {
        let outcome = user_authenticate(&mut NoNetwork, "alice:pw", b"x", &mut |_| {});
        assert!(
            matches!(outcome, Outcome::Unavailable { .. }),
            "{outcome:?}"
        );
    }

    #[test]
    fn the_response_text_is_the_token() {
        // Seed 003's sample response.
        match parse_answer(
            200,
            b"1_633995282975283345_9370c2b345bdf559ad2e996dca5adf37",
        ) {
            Outcome::Token { token, expires } => {
                assert_eq!(
                    token.as_str(),
                    "1_633995282975283345_9370c2b345bdf559ad2e996dca5adf37"
                );
                assert_eq!(expires, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_answer(200, b"tok\r\n"),
            Outcome::Token { .. }
        ));
    }

    #[test]
    fn every_other_answer_is_a_no_or_unavailable() {
        assert!(matches!(
            parse_answer(401, b"Login failed"),
            Outcome::Rejected
        ));
        for (status, body) in [
            (200, &b""[..]),
            (200, b" \r\n"),
            (200, b"a\x07b"),
            (200, b"\xff\xfe"),
            (400, b"tok"),
            (409, b"tok"),
            (301, b"tok"),
            (500, b"tok"),
        ] {
            assert!(
                matches!(parse_answer(status, body), Outcome::Unavailable { .. }),
                "{status}"
            );
        }
        assert!(matches!(
            parse_answer(200, "x".repeat(20_000).as_bytes()),
            Outcome::Unavailable { .. }
        ));
    }
}
