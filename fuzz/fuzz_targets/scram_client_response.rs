//! Server: a SCRAM `DigestResponse` (plain, `y`, or SCRAM-SHA-256-PLUS with
//! a GS2 header), parsed and checked against a verifier, on a connection
//! offering no binding and on one with both binding types.
#![no_main]
use std::sync::OnceLock;

use authtoken_protocol::channel_binding::Gs2;
use authtoken_server::proto::scram::{
    parse_client_response, server_verify_bound, ConnectionBindings, EndPoint, Verifier,
};
use base64::Engine as _;
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
        if let Gs2::Bound(_) = response.gs2 {
            let input = base64::engine::general_purpose::STANDARD
                .decode(&response.cbind)
                .expect("a bound c= is base64");
            assert!(input.starts_with(response.gs2.header().as_bytes()));
        }
        let connection = ConnectionBindings {
            exporter: Some([0; 32]),
            end_point: EndPoint::new(&[1; 32]),
        };
        for offered in [None, Some(&connection)] {
            assert!(
                server_verify_bound(verifier(), &response, offered).is_err(),
                "no proof of a random input is right"
            );
        }
    }
});
