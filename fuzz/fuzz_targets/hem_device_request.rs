//! Server (token device emulation): a `POST /api/auth/token` body and the
//! `auth` JWT in it, checked against fixed keys.
#![no_main]
use authtoken_server::device::parse_auth_request;
use authtoken_server::proto::hem::{device_check, AuthCheck};
use libfuzzer_sys::fuzz_target;
use x25519_dalek::StaticSecret;

fuzz_target!(|data: &[u8]| {
    let Some(auth) = parse_auth_request(data) else {
        return;
    };
    let secret = StaticSecret::from([7u8; 32]);
    let check = device_check(
        &auth,
        &secret,
        "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        &[9u8; 32],
    );
    assert!(
        !matches!(check, AuthCheck::Valid(_)),
        "no random auth is signed by the user's key"
    );
});
