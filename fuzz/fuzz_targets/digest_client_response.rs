//! Server: an HTTP Digest `DigestResponse`, parsed and checked.
#![no_main]
use authtoken_protocol::http_digest::Algorithm;
use authtoken_server::proto::digest::{parse_client_response, server_verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(response) = parse_client_response(text) {
        for algorithm in [Algorithm::Md5, Algorithm::Sha256] {
            let _ = server_verify(algorithm, &"5".repeat(64), &response);
        }
    }
});
