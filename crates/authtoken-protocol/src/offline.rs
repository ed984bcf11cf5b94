//! Offline verifiers: PBKDF2-HMAC-SHA256 of the password, computed after an
//! online success and checked when no authority is reachable.

use authtoken_core::offline::{OfflineVerifier, VERIFIER_ITERATIONS};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{random_bytes, ProtocolError};

/// Rounds accepted when checking a stored verifier (a tampered record must
/// not make the check free or endless).
const CHECKED_ITERATIONS: std::ops::RangeInclusive<u32> = 100_000..=10_000_000;

fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    let mut hash = Zeroizing::new([0u8; 32]);
    crate::kdf::pbkdf2_hmac_sha256(password, salt, iterations, &mut *hash);
    hash
}

/// A new verifier for `password`, with a fresh salt.
pub fn new_verifier(password: &[u8]) -> Result<OfflineVerifier, ProtocolError> {
    let salt = random_bytes(16).map_err(|_| ProtocolError::Random)?;
    let hash = derive(password, &salt, VERIFIER_ITERATIONS);
    Ok(OfflineVerifier {
        salt: B64.encode(&salt),
        iterations: VERIFIER_ITERATIONS,
        hash: B64.encode(hash.as_slice()),
    })
}

/// Whether `password` matches `verifier`, in constant time.
pub fn matches(password: &[u8], verifier: &OfflineVerifier) -> Result<bool, ProtocolError> {
    let malformed = ProtocolError::Malformed("offline verifier");
    if !CHECKED_ITERATIONS.contains(&verifier.iterations) {
        return Err(malformed);
    }
    let salt = B64.decode(&verifier.salt).map_err(|_| malformed.clone())?;
    let expected = B64.decode(&verifier.hash).map_err(|_| malformed.clone())?;
    if expected.len() != 32 || salt.is_empty() {
        return Err(malformed);
    }
    let hash = derive(password, &salt, verifier.iterations);
    Ok(bool::from(hash.as_slice().ct_eq(&expected)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_matches_its_password_only() {
        let verifier = new_verifier(b"on the train").unwrap();
        assert_eq!(verifier.iterations, VERIFIER_ITERATIONS);
        assert!(matches(b"on the train", &verifier).unwrap());
        assert!(!matches(b"on the plane", &verifier).unwrap());
        let other = new_verifier(b"on the train").unwrap();
        assert_ne!(verifier.salt, other.salt, "a fresh salt each time");
        let cheap = OfflineVerifier {
            iterations: 1,
            ..verifier
        };
        assert!(matches(b"on the train", &cheap).is_err(), "tampered rounds");
    }
}
