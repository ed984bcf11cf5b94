//! SCRAM-SHA-256 (RFC 5802, RFC 7677) laid into the two `UserAuthenticate`
//! messages, exactly as docs/PROTOCOL.md writes it. The password never travels and
//! the server keeps only a verifier.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::{digest, hmac};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::ProtocolError;

/// The scheme word that starts a SCRAM `DigestChallenge` / `DigestResponse`.
pub const SCHEME: &str = "SCRAM-SHA-256";
/// Fewest iterations a client accepts (RFC 7677 §4).
pub use authtoken_core::kinds::SCRAM_MIN_ITERATIONS as MIN_ITERATIONS;
/// Iterations `authtoken-server add-user` uses unless told otherwise.
pub const DEFAULT_SERVER_ITERATIONS: u32 = 600_000;

/// `r=<snonce>,s=<salt>,i=<iterations>` as received, kept verbatim because
/// it is part of the AuthMessage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub snonce: String,
    pub salt_b64: String,
    pub iterations_text: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

/// Parses the text after `SCRAM-SHA-256 `, refusing an iteration count
/// outside `allowed` (never below [`MIN_ITERATIONS`]).
pub fn parse_challenge(
    text: &str,
    allowed: std::ops::RangeInclusive<u32>,
) -> Result<Challenge, ProtocolError> {
    let min_iterations = (*allowed.start()).max(MIN_ITERATIONS);
    let max_iterations = *allowed.end();
    let mut parts = text.split(',');
    let (Some(r), Some(s), Some(i), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProtocolError::Malformed("SCRAM challenge"));
    };
    let (Some(snonce), Some(salt_b64), Some(iterations_text)) = (
        r.strip_prefix("r="),
        s.strip_prefix("s="),
        i.strip_prefix("i="),
    ) else {
        return Err(ProtocolError::Malformed("SCRAM challenge"));
    };
    if snonce.is_empty() || !snonce.bytes().all(is_nonce_char) {
        return Err(ProtocolError::Malformed("SCRAM server nonce"));
    }
    let salt = B64
        .decode(salt_b64)
        .map_err(|_| ProtocolError::Malformed("SCRAM salt"))?;
    if salt.is_empty() {
        return Err(ProtocolError::Malformed("SCRAM salt"));
    }
    if iterations_text.is_empty() || !iterations_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProtocolError::Malformed("SCRAM iteration count"));
    }
    let iterations: u32 = iterations_text
        .parse()
        .map_err(|_| ProtocolError::Malformed("SCRAM iteration count"))?;
    if iterations < min_iterations {
        return Err(ProtocolError::Refused(format!(
            "SCRAM iteration count {iterations} is below min_scram_iterations {min_iterations}"
        )));
    }
    if iterations > max_iterations {
        return Err(ProtocolError::Refused(format!(
            "SCRAM iteration count {iterations} exceeds the configured ceiling {max_iterations}"
        )));
    }
    Ok(Challenge {
        snonce: snonce.to_owned(),
        salt_b64: salt_b64.to_owned(),
        iterations_text: iterations_text.to_owned(),
        salt,
        iterations,
    })
}

/// RFC 5802 `printable` minus ','.
pub fn is_nonce_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

/// The keys derived from a password; the server stores `stored_key` and
/// `server_key`, the client derives all three per login.
pub struct Keys {
    pub client_key: Zeroizing<[u8; 32]>,
    pub stored_key: [u8; 32],
    pub server_key: Zeroizing<[u8; 32]>,
}

/// SaltedPassword and the keys derived from it.
pub fn derive_keys(password: &[u8], salt: &[u8], iterations: u32) -> Keys {
    let prepared = prepare_password(password);
    let mut salted = Zeroizing::new([0u8; 32]);
    crate::kdf::pbkdf2_hmac_sha256(&prepared, salt, iterations.max(1), &mut *salted);
    let salted_key = hmac::Key::new(hmac::HMAC_SHA256, &*salted);
    let mut client_key = Zeroizing::new([0u8; 32]);
    client_key.copy_from_slice(hmac::sign(&salted_key, b"Client Key").as_ref());
    let mut server_key = Zeroizing::new([0u8; 32]);
    server_key.copy_from_slice(hmac::sign(&salted_key, b"Server Key").as_ref());
    let mut stored_key = [0u8; 32];
    stored_key.copy_from_slice(digest::digest(&digest::SHA256, &*client_key).as_ref());
    Keys {
        client_key,
        stored_key,
        server_key,
    }
}

/// SASLprep(password) as UTF-8; the raw bytes if it is not UTF-8 or SASLprep
/// refuses it (docs/PROTOCOL.md).
fn prepare_password(password: &[u8]) -> Zeroizing<Vec<u8>> {
    let prepared = std::str::from_utf8(password)
        .ok()
        .and_then(|text| stringprep::saslprep(text).ok());
    match prepared {
        Some(Cow::Owned(mut owned)) => {
            let bytes = Zeroizing::new(owned.as_bytes().to_vec());
            owned.zeroize();
            bytes
        }
        Some(Cow::Borrowed(text)) => Zeroizing::new(text.as_bytes().to_vec()),
        None => Zeroizing::new(password.to_vec()),
    }
}

/// RFC 5802 `saslname`: '=' → "=3D", ',' → "=2C".
pub fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// The RFC 5802 AuthMessage (both sides compute it): `cbind` is the `c=`
/// value (`biws` for the plain scheme; see `channel_binding` for the
/// others).
pub fn auth_message(
    user: &str,
    cnonce: &str,
    challenge_nonce: &str,
    salt_b64: &str,
    iterations: &str,
    cbind: &str,
) -> String {
    format!(
        "n={},r={cnonce},r={challenge_nonce},s={salt_b64},i={iterations},c={cbind},r={challenge_nonce}",
        saslname(user)
    )
}

/// HMAC-SHA256 as a 32-byte array.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref());
    out
}

/// The client's half: what to send, and the server signature to expect.
pub struct ClientFinal {
    pub digest_response: Zeroizing<String>,
    pub expected_server_signature: String,
}

/// Computes the `DigestResponse` for `challenge` with our nonce `cnonce`.
pub fn client_final(
    user: &str,
    password: &[u8],
    challenge: &Challenge,
    cnonce: &str,
) -> ClientFinal {
    let keys = derive_keys(password, &challenge.salt, challenge.iterations);
    client_final_with_keys(user, &keys, challenge, cnonce)
}

/// [`client_final`] with the keys already derived for this challenge's
/// salt and iteration count (the load generator derives them once).
pub fn client_final_with_keys(
    user: &str,
    keys: &Keys,
    challenge: &Challenge,
    cnonce: &str,
) -> ClientFinal {
    client_final_gs2(
        user,
        keys,
        challenge,
        cnonce,
        crate::channel_binding::Gs2::NotSupported,
        &[],
    )
}

/// The client's half of a login with a GS2 header of its own: `gs2` and,
/// when bound, the connection's binding `data`. With `Gs2::NotSupported`
/// (GS2 `n`, no header written) this is the plain SCRAM-SHA-256 response.
pub fn client_final_gs2(
    user: &str,
    keys: &Keys,
    challenge: &Challenge,
    cnonce: &str,
    gs2: crate::channel_binding::Gs2,
    data: &[u8],
) -> ClientFinal {
    use crate::channel_binding::{cbind_value, Gs2, SCHEME_PLUS};
    let cbind = cbind_value(gs2, data);
    let nonce = format!("{cnonce}{}", challenge.snonce);
    let message = auth_message(
        user,
        cnonce,
        &nonce,
        &challenge.salt_b64,
        &challenge.iterations_text,
        &cbind,
    );
    let mut proof = Zeroizing::new(hmac_sha256(&keys.stored_key, message.as_bytes()));
    for (p, k) in proof.iter_mut().zip(keys.client_key.iter()) {
        *p ^= k;
    }
    let (scheme, header) = match gs2 {
        Gs2::NotSupported => (SCHEME, String::new()),
        Gs2::NotOffered => (SCHEME, gs2.header()),
        Gs2::Bound(_) => (SCHEME_PLUS, gs2.header()),
    };
    let digest_response = Zeroizing::new(format!(
        "{scheme} {header}n={},r={cnonce},c={cbind},r={nonce},p={}",
        saslname(user),
        B64.encode(*proof)
    ));
    let signature = hmac_sha256(&*keys.server_key, message.as_bytes());
    ClientFinal {
        digest_response,
        expected_server_signature: format!("v={}", B64.encode(signature)),
    }
}

/// A fresh client nonce: base64 of 24 random bytes (never contains ',').
pub fn new_cnonce() -> Result<String, ProtocolError> {
    let bytes = super::random_bytes(24).map_err(|_| ProtocolError::Random)?;
    Ok(B64.encode(bytes))
}

/// Constant-time comparison of the server's `ServerSignature` with ours.
pub fn server_signature_matches(expected: &str, received: &str) -> bool {
    expected.len() == received.len() && bool::from(expected.as_bytes().ct_eq(received.as_bytes()))
}

/// docs/PROTOCOL.md's SCRAM vector (RFC 7677 §3), in one place for the
/// client's, the driver's and the server's tests. Not for use outside tests.
#[doc(hidden)]
pub mod vector {
    pub const USER: &str = "user";
    pub const PASSWORD: &[u8] = b"pencil";
    pub const SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    pub const ITERATIONS: u32 = 4096;
    pub const SNONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    pub const CNONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    pub const CHALLENGE: &str =
        "SCRAM-SHA-256 r=%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    pub const RESPONSE: &str = "SCRAM-SHA-256 n=user,r=rOprNGfwEbeRWgbNEkqO,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    pub const SIGNATURE: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    pub const STORED_KEY: &str = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=";
    pub const SERVER_KEY: &str = "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
    /// SCRAM-SHA-256-PLUS and the `y` flag (docs/PROTOCOL.md): the inputs
    /// above and this binding value, computed with Python's scramp
    /// (tests/peers/scram_vectors.py; tests/channel_binding.rs checks
    /// these against it).
    pub const BINDING: [u8; 32] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        25, 26, 27, 28, 29, 30, 31,
    ];
    pub const EXPORTER_RESPONSE: &str = "SCRAM-SHA-256-PLUS p=tls-exporter,,n=user,r=rOprNGfwEbeRWgbNEkqO,c=cD10bHMtZXhwb3J0ZXIsLAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=QC6CS20quADQRb3mT99YUH+n3VJxUvzuK0K0E1Vrs2M=";
    pub const EXPORTER_SIGNATURE: &str = "v=2GiAgapEppLVlUXbxUDksL3VgYHzuqiK5tR4mhJGgvs=";
    pub const END_POINT_RESPONSE: &str = "SCRAM-SHA-256-PLUS p=tls-server-end-point,,n=user,r=rOprNGfwEbeRWgbNEkqO,c=cD10bHMtc2VydmVyLWVuZC1wb2ludCwsAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=nY1Wus9a+gM2DrbQ1msXFgyhW6KM5ktOxWiU+/P/EGY=";
    pub const END_POINT_SIGNATURE: &str = "v=RwppMGddhz/J0lFYaRReBjXcQeNUFP5Qc76Lo5Exrig=";
    pub const FLAG_Y_RESPONSE: &str = "SCRAM-SHA-256 y,,n=user,r=rOprNGfwEbeRWgbNEkqO,c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=FoqiHTtQEDE8lz1CdaEe3tK4mS+iMDTl77SPyDS53DY=";
    pub const FLAG_Y_SIGNATURE: &str = "v=dI4KpiQJwBr1+V+K6U1dA6l6I4I9DUNXWND4pcpRU3U=";
}

#[cfg(test)]
mod tests {
    use super::vector::*;
    use super::*;

    #[test]
    fn rfc7677_vector_client_side() {
        let text = CHALLENGE.strip_prefix("SCRAM-SHA-256 ").unwrap();
        let challenge = parse_challenge(text, 0..=10_000_000).unwrap();
        let out = client_final(USER, PASSWORD, &challenge, CNONCE);
        assert_eq!(&*out.digest_response, RESPONSE);
        assert_eq!(out.expected_server_signature, SIGNATURE);
        assert!(server_signature_matches(
            &out.expected_server_signature,
            SIGNATURE
        ));
        assert!(!server_signature_matches(
            &out.expected_server_signature,
            "v=AAAA"
        ));
    }

    #[test]
    fn iteration_bounds() {
        assert!(matches!(
            parse_challenge(
                "r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                100_000..=10_000_000
            ),
            Err(ProtocolError::Refused(_))
        ));
        assert!(parse_challenge(
            "r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=100000",
            100_000..=10_000_000
        )
        .is_ok());
        assert!(matches!(
            parse_challenge("r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095", 0..=10_000_000),
            Err(ProtocolError::Refused(_))
        ));
        assert!(matches!(
            parse_challenge("r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=20000", 0..=10_000),
            Err(ProtocolError::Refused(_))
        ));
        for bad in [
            "r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==",
            "s=W22ZaJ0SNY7soEsUEjb6gQ==,r=abc,i=4096",
            "r=,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "r=abc,s=***,i=4096",
            "r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-4096",
            "r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,m=x",
        ] {
            assert!(parse_challenge(bad, 0..=10_000_000).is_err(), "{bad}");
        }
    }

    #[test]
    fn gs2_vectors_client_side() {
        use crate::channel_binding::{BindingType, Gs2};
        let text = CHALLENGE.strip_prefix("SCRAM-SHA-256 ").unwrap();
        let challenge = parse_challenge(text, 0..=10_000_000).unwrap();
        let salt = B64.decode(SALT_B64).unwrap();
        let keys = derive_keys(PASSWORD, &salt, ITERATIONS);
        for (gs2, response, signature) in [
            (Gs2::NotSupported, RESPONSE, SIGNATURE),
            (
                Gs2::Bound(BindingType::TlsExporter),
                EXPORTER_RESPONSE,
                EXPORTER_SIGNATURE,
            ),
            (
                Gs2::Bound(BindingType::TlsServerEndPoint),
                END_POINT_RESPONSE,
                END_POINT_SIGNATURE,
            ),
            (Gs2::NotOffered, FLAG_Y_RESPONSE, FLAG_Y_SIGNATURE),
        ] {
            let out = client_final_gs2(USER, &keys, &challenge, CNONCE, gs2, &BINDING);
            assert_eq!(&*out.digest_response, response, "{gs2:?}");
            assert_eq!(out.expected_server_signature, signature, "{gs2:?}");
        }
        // Another binding value, another proof and signature.
        let other = client_final_gs2(
            USER,
            &keys,
            &challenge,
            CNONCE,
            Gs2::Bound(BindingType::TlsExporter),
            &[1u8; 32],
        );
        assert_ne!(other.expected_server_signature, EXPORTER_SIGNATURE);
    }

    #[test]
    fn saslname_escapes() {
        assert_eq!(saslname("a=b,c"), "a=3Db=2Cc");
    }

    #[test]
    fn vector_keys() {
        let salt = B64.decode(SALT_B64).unwrap();
        let keys = derive_keys(PASSWORD, &salt, ITERATIONS);
        assert_eq!(B64.encode(keys.stored_key), STORED_KEY);
        assert_eq!(B64.encode(*keys.server_key), SERVER_KEY);
    }

    #[test]
    fn saslprep_normalises_password() {
        // U+00AD (soft hyphen) is mapped to nothing by SASLprep.
        let a = derive_keys("pen\u{ad}cil".as_bytes(), b"salt", 4096);
        let b = derive_keys(b"pencil", b"salt", 4096);
        assert_eq!(a.stored_key, b.stored_key);
        // Not UTF-8: the raw bytes are used, and still differ from others.
        let c = derive_keys(b"pencil\xff", b"salt", 4096);
        assert_ne!(c.stored_key, b.stored_key);
    }
}
