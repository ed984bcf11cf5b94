//! Helper: what the authority answers a joining or renewing machine — the
//! answer (JSON) under a status the first byte picks, the issued chain
//! checked against a pinned CA, this machine's key and UDID; and the same
//! bytes served as the CA itself (fetched over TLS that trusts anything,
//! then accepted only by its fingerprint).
#![no_main]
use authtoken_helper::enroll::{
    answer_of, check_issued, describe, fingerprint, pinned_ca, EnrollError,
};
use libfuzzer_sys::fuzz_target;

/// The pinned CA and this machine's key (fuzz/fixtures/enroll_answer, made
/// with openssl); the corpus's `issued` answer is a leaf it signed for the
/// key and UDID.
const CA_PEM: &str = include_str!("../fixtures/enroll_answer/ca.pem");
const KEY_PEM: &str = include_str!("../fixtures/enroll_answer/device.key");
const UDID: &str = "8C3A5B1E-0D4F-4B7A-9E2C-6F1D3A5B7C9E";

/// The pinned CA's fingerprint, once for the run.
fn ca_pin() -> &'static str {
    static PIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PIN.get_or_init(|| {
        let pem = x509_parser::pem::Pem::iter_from_buffer(CA_PEM.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        fingerprint(&pem.contents)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let status = if first % 2 == 0 { 200 } else { 403 };
    let pin = ca_pin();
    match answer_of("https://mdm.example/enroll", status, body) {
        Ok(answer) => {
            assert_eq!(status, 200, "an answer only from a 200");
            // At the authority's own clock, so the skew check passes and
            // the chain is what is judged.
            if let Ok(identity) = check_issued(&answer, CA_PEM, KEY_PEM, UDID, answer.time) {
                assert!(identity.udid.eq_ignore_ascii_case(UDID));
                assert!(identity.not_before <= answer.time && answer.time <= identity.not_after);
            }
        }
        Err(EnrollError::Refused { message, .. }) => {
            assert_ne!(status, 200);
            assert!(message.chars().count() <= 300 && !message.chars().any(char::is_control));
        }
        Err(_) => {}
    }
    // The bytes as the CA an impostor serves: taken only by the pin, and
    // then that certificate alone, whatever follows it.
    if let Ok(text) = std::str::from_utf8(body) {
        match pinned_ca(text, pin, "fuzz") {
            Ok((der, pem)) => {
                assert_eq!(fingerprint(&der), pin);
                assert_eq!(pem, CA_PEM, "the pinned certificate, alone");
            }
            Err(EnrollError::WrongFingerprint { served, .. }) => assert_ne!(served, pin),
            Err(_) => {}
        }
    }
    // A certificate's own account of itself, from any DER.
    if let Some(identity) = describe(body) {
        if identity.not_before <= identity.not_after {
            let at = identity.renew_at();
            assert!(identity.not_before <= at && at <= identity.not_after);
        }
    }
});
