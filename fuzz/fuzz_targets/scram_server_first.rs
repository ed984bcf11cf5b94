//! Helper: a SCRAM server-first (`r=…,s=…,i=…`), and a server-final
//! (`v=…`) compared with the expected signature. A challenge that parses
//! reads the same from its own fields.
#![no_main]
use authtoken_protocol::scram::{parse_challenge, server_signature_matches};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(challenge) = parse_challenge(text, 4096..=10_000_000) {
        let again = format!(
            "r={},s={},i={}",
            challenge.snonce, challenge.salt_b64, challenge.iterations_text
        );
        assert_eq!(
            parse_challenge(&again, 4096..=10_000_000).ok(),
            Some(challenge)
        );
    }
    let expected = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    assert_eq!(server_signature_matches(expected, text), text == expected);
});
