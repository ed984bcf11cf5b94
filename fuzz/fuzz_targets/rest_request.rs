//! Server: a `rest` client's request: the json-authenticate body, and
//! Deki's `Authorization: Basic` header.
#![no_main]
use authtoken_server::proto::rest::{parse_basic, parse_json_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = parse_json_request(data) {
        assert!((1..=86_400).contains(&request.duration));
    }
    if let Some((user, _password)) = parse_basic(data) {
        assert!(!user.contains(':'));
    }
});
