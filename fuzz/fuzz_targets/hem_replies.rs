//! Helper: the token device's replies (JSON): the challenge and the token
//! reply, under the status the first byte picks.
#![no_main]
use authtoken_core::outcome::Outcome;
use authtoken_protocol::hem::{parse_challenge, parse_token_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let status = [200, 401, 400, 403, 409, 500, 302][usize::from(pick) % 7];
    let _ = parse_challenge(status, body);
    if let Outcome::Token { token, .. } = parse_token_reply(status, body) {
        assert_eq!(status, 200);
        assert!(!token.is_empty() && !token.chars().any(char::is_control));
    }
});
