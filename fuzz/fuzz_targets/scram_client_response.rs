//! Server: a SCRAM `DigestResponse`, parsed and checked against a verifier.
#![no_main]
use std::sync::OnceLock;

use authtoken_server::proto::scram::{parse_client_response, server_verify, Verifier};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| Verifier::from_password(b"pencil", b"salt".to_vec(), 4096))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(response) = parse_client_response(text) {
        assert!(response.nonce.starts_with(&response.cnonce));
        assert!(
            server_verify(verifier(), &response).is_none(),
            "no proof of a random input is right"
        );
    }
});
