//! The token device's side of the HEM exchange (for `authtoken-server
//! --protocol hem`): checking a client's `auth` JWT and issuing the device's
//! own token.

use authtoken_protocol::hem::{decode_key, json_b64url, sign, AuthHeader, AuthPayload};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::Serialize;
use subtle::ConstantTimeEq;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

/// The device's view of an `auth` it received.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthCheck {
    /// Signature, issuer and audience verified; the caller still has to
    /// redeem `jti` (single use, unexpired).
    Valid(AuthPayload),
    Malformed,
    Unauthenticated,
}

/// Device side: checks an `auth` against the session secret (`spk`'s
/// private half), the enrolled `user_key` and the current `spk`.
pub fn device_check(
    auth: &str,
    session_secret: &StaticSecret,
    spk: &str,
    user_key: &[u8; 32],
) -> AuthCheck {
    let parts: Vec<&str> = auth.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts.as_slice() else {
        return AuthCheck::Malformed;
    };
    let decode = |part: &str| B64URL.decode(part).ok();
    let header: Option<AuthHeader> =
        decode(header_b64).and_then(|h| serde_json::from_slice(&h).ok());
    let payload: Option<AuthPayload> =
        decode(payload_b64).and_then(|p| serde_json::from_slice(&p).ok());
    let (Some(header), Some(payload)) = (header, payload) else {
        return AuthCheck::Malformed;
    };
    if header.ecdh != "x25519" || header.alg != "HS256" || header.typ != "JWT" {
        return AuthCheck::Malformed;
    }
    let Ok(issuer) = decode_key(&payload.iss, "iss") else {
        return AuthCheck::Malformed;
    };
    if !bool::from(issuer.as_bytes().ct_eq(user_key)) {
        return AuthCheck::Unauthenticated;
    }
    if payload.aud != spk {
        return AuthCheck::Unauthenticated;
    }
    let shared = Zeroizing::new(session_secret.diffie_hellman(&issuer).to_bytes());
    let expected = sign(&*shared, &format!("{header_b64}.{payload_b64}"));
    if expected.len() != signature_b64.len()
        || !bool::from(expected.as_bytes().ct_eq(signature_b64.as_bytes()))
    {
        return AuthCheck::Unauthenticated;
    }
    AuthCheck::Valid(payload)
}

/// The device's access token: HS256 JWT `{scope, sub, iat, exp, jti}`.
pub fn device_token(signing_key: &[u8], scope: &str, iat: u64, exp: u64, jti: &str) -> String {
    #[derive(Serialize)]
    struct Claims<'a> {
        scope: &'a str,
        sub: &'a str,
        iat: u64,
        exp: u64,
        jti: &'a str,
    }
    let header = serde_json::json!({"typ": "JWT", "alg": "HS256"});
    let claims = Claims {
        scope,
        sub: "U",
        iat,
        exp,
        jti,
    };
    let signing_input = format!("{}.{}", json_b64url(&header), json_b64url(&claims));
    format!("{signing_input}.{}", sign(signing_key, &signing_input))
}

#[cfg(test)]
mod tests {
    use super::*;
    use authtoken_protocol::hem::{client_auth, user_secret, Challenge};
    use base64::engine::general_purpose::STANDARD as B64;
    use x25519_dalek::PublicKey;

    const EID: &str = "d4ad81b06b1d493ab2b6f9b1a3e2c7f0";

    fn vector_challenge() -> Challenge {
        Challenge {
            exp: 1_700_000_060,
            spk: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=".into(),
            jti: "0123456789abcdef".into(),
            lbl: "alice".into(),
            eid: EID.into(),
        }
    }

    #[test]
    fn device_accepts_only_the_enrolled_user() {
        let session = StaticSecret::from([7u8; 32]);
        let spk = B64.encode(PublicKey::from(&session).as_bytes());
        let challenge = Challenge {
            spk: spk.clone(),
            ..vector_challenge()
        };
        let user = user_secret(b"pass", EID);
        let user_key = *PublicKey::from(&user).as_bytes();
        let auth = client_auth(&user, &challenge, "master", 1).unwrap();
        assert!(
            matches!(device_check(&auth, &session, &spk, &user_key), AuthCheck::Valid(p) if p.jti == challenge.jti)
        );
        let impostor = user_secret(b"wrong", EID);
        let forged = client_auth(&impostor, &challenge, "master", 1).unwrap();
        assert_eq!(
            device_check(&forged, &session, &spk, &user_key),
            AuthCheck::Unauthenticated
        );
        let other_session = B64.encode([9u8; 32]);
        assert_eq!(
            device_check(&auth, &session, &other_session, &user_key),
            AuthCheck::Unauthenticated
        );
        let mut tampered = auth.to_string();
        tampered.pop();
        tampered.push(if auth.ends_with('A') { 'B' } else { 'A' });
        assert!(!matches!(
            device_check(&tampered, &session, &spk, &user_key),
            AuthCheck::Valid(_)
        ));
        assert_eq!(
            device_check("a.b", &session, &spk, &user_key),
            AuthCheck::Malformed
        );
    }
}
