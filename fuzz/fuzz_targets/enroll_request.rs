//! Server: what a joining or renewing machine sends — the enrollment
//! request (JSON) with its CSR, signed by a device CA when it parses, and
//! the join token (`ID.SECRET`) it carries.
#![no_main]
use std::sync::OnceLock;

use authtoken_server::enrollment::{parse_request, DeviceCa, JoinSecret};
use libfuzzer_sys::fuzz_target;

/// One device CA for the whole run (making a key per input would be all
/// the run measured).
fn device_ca() -> &'static DeviceCa {
    static CA: OnceLock<DeviceCa> = OnceLock::new();
    CA.get_or_init(|| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let certificate = authtoken_server::enrollment::device_ca_params()
            .self_signed(&key)
            .unwrap();
        DeviceCa::new(&certificate.pem(), &key.serialize_pem(), 90).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = parse_request(data) {
        assert!(authtoken_protocol::enroll::name_ok(&request.name));
        assert!(authtoken_protocol::enroll::udid_ok(&request.udid));
        if let Ok(issued) = device_ca().issue(&request.csr, &request.name, &request.udid, 1_800_000_000) {
            // Only the CSR's key is taken: the leaf is the name and UDID
            // asked, for client authentication, and no CA.
            let pem = issued.answer.certificate.as_bytes();
            let leaf = x509_parser::pem::Pem::iter_from_buffer(pem)
                .next()
                .unwrap()
                .unwrap();
            let cert = leaf.parse_x509().unwrap();
            assert!(!cert.is_ca());
            let sans = cert.subject_alternative_name().unwrap().unwrap().value;
            assert_eq!(sans.general_names.len(), 1);
            assert_eq!(issued.record.name, request.name);
            assert_eq!(issued.record.udid, request.udid.to_ascii_uppercase());
        }
        if let Some(token) = request.token.as_deref() {
            check_token(token);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check_token(text);
    }
});

/// A token that parses is written back to itself (its hex ID in lower
/// case: the ID only finds the record), and its hash is its secret's.
fn check_token(text: &str) {
    if let Some(secret) = JoinSecret::parse(text) {
        let (id, rest) = text.split_once('.').unwrap();
        assert_eq!(
            secret.line().as_str(),
            format!("{}.{rest}", id.to_ascii_lowercase())
        );
        let other_id = JoinSecret::parse(&format!("0123456789abcdef.{rest}")).unwrap();
        assert_eq!(secret.hash(), other_id.hash());
    }
}
