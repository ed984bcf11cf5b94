//! Helper: an HTTP Digest challenge (the text after `Digest `). One that
//! parses is written back by the server's writer to the same challenge.
#![no_main]
use authtoken_protocol::http_digest::parse_challenge;
use authtoken_server::proto::digest::challenge_header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(challenge) = parse_challenge(text) {
        let header = challenge_header(&challenge);
        let rest = header.strip_prefix("Digest ").expect("the scheme word");
        assert_eq!(
            parse_challenge(rest).as_ref().ok(),
            Some(&challenge),
            "{header}"
        );
    }
});
