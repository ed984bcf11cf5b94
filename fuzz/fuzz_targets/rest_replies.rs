//! Helper: a `rest` authority's answer (json-authenticate's JSON, Deki's
//! text) under the status the first byte picks, for both flavors.
#![no_main]
use authtoken_core::outcome::Outcome;
use authtoken_protocol::rest::{deki, json_authenticate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let status = [200, 401, 400, 409, 500, 302, 429][usize::from(pick) % 7];
    let now = 1_700_000_000;
    for outcome in [json_authenticate::parse_answer(status, body, now), deki::parse_answer(status, body)] {
        if let Outcome::Token { token, expires } = outcome {
            assert_eq!(status, 200);
            assert!(!token.is_empty() && !token.chars().any(char::is_control));
            assert!(token.len() <= authtoken_protocol::MAX_TOKEN_BYTES);
            // A duration said is 1 to 86400 s from now.
            assert!(expires.is_none_or(|at| at > now && at <= now + 86_400));
        }
    }
});
