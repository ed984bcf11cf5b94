//! SCRAM-SHA-256, server side: the verifier a user store keeps, and the
//! check of a client's `DigestResponse` (docs/PROTOCOL.md).

use authtoken_protocol::scram::{auth_message, derive_keys, hmac_sha256, is_nonce_char, SCHEME};
use authtoken_protocol::ProtocolError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::digest;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// What the server keeps per user instead of a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl Verifier {
    pub fn from_password(password: &[u8], salt: Vec<u8>, iterations: u32) -> Verifier {
        let keys = derive_keys(password, &salt, iterations);
        Verifier {
            salt,
            iterations,
            stored_key: keys.stored_key,
            server_key: *keys.server_key,
        }
    }

    /// The challenge text the server sends for this verifier and `snonce`.
    pub fn challenge(&self, snonce: &str) -> String {
        format!(
            "{SCHEME} r={snonce},s={},i={}",
            B64.encode(&self.salt),
            self.iterations
        )
    }
}

/// A client's `DigestResponse`, taken apart by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    pub user: String,
    pub cnonce: String,
    pub nonce: String,
    pub proof: [u8; 32],
}

impl ClientResponse {
    /// `snonce` this response claims to answer (`nonce` minus the `cnonce` prefix).
    pub fn snonce(&self) -> &str {
        &self.nonce[self.cnonce.len()..]
    }
}

/// Parses `SCRAM-SHA-256 n=..,r=..,c=biws,r=..,p=..`.
pub fn parse_client_response(text: &str) -> Result<ClientResponse, ProtocolError> {
    let bad = ProtocolError::Malformed("SCRAM DigestResponse");
    let rest = text
        .strip_prefix(SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(bad.clone())?;
    let fields: Vec<&str> = rest.split(',').collect();
    let [n, r1, c, r2, p] = fields.as_slice() else {
        return Err(bad);
    };
    let user = n
        .strip_prefix("n=")
        .and_then(decode_saslname)
        .ok_or(bad.clone())?;
    let cnonce = r1.strip_prefix("r=").ok_or(bad.clone())?;
    let nonce = r2.strip_prefix("r=").ok_or(bad.clone())?;
    if *c != "c=biws"
        || cnonce.is_empty()
        || !cnonce.bytes().all(is_nonce_char)
        || !nonce.starts_with(cnonce)
        || nonce.len() == cnonce.len()
        || !nonce.bytes().all(is_nonce_char)
    {
        return Err(bad);
    }
    let proof_vec = p
        .strip_prefix("p=")
        .and_then(|b| B64.decode(b).ok())
        .ok_or(bad.clone())?;
    let proof: [u8; 32] = proof_vec.try_into().map_err(|_| bad)?;
    Ok(ClientResponse {
        user,
        cnonce: cnonce.to_owned(),
        nonce: nonce.to_owned(),
        proof,
    })
}

/// Server check: recovers ClientKey' = p XOR HMAC(StoredKey, AuthMessage) and
/// accepts iff SHA256(ClientKey') == StoredKey, in constant time. Returns the
/// `ServerSignature` to send on success.
pub fn server_verify(verifier: &Verifier, response: &ClientResponse) -> Option<String> {
    let salt_b64 = B64.encode(&verifier.salt);
    let message = auth_message(
        &response.user,
        &response.cnonce,
        &response.nonce,
        &salt_b64,
        &verifier.iterations.to_string(),
    );
    let mut client_key = Zeroizing::new(hmac_sha256(&verifier.stored_key, message.as_bytes()));
    for (k, p) in client_key.iter_mut().zip(response.proof.iter()) {
        *k ^= p;
    }
    let candidate = digest::digest(&digest::SHA256, &*client_key);
    if !bool::from(candidate.as_ref().ct_eq(&verifier.stored_key)) {
        return None;
    }
    let signature = hmac_sha256(&verifier.server_key, message.as_bytes());
    Some(format!("v={}", B64.encode(signature)))
}

/// Inverse of [`saslname`]; `None` for a stray '='.
fn decode_saslname(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('=') {
        out.push_str(&rest[..pos]);
        let escape = rest.get(pos..pos + 3)?;
        match escape {
            "=3D" => out.push('='),
            "=2C" => out.push(','),
            _ => return None,
        }
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use authtoken_protocol::scram::vector::*;
    use authtoken_protocol::scram::{client_final, parse_challenge};

    fn vector_verifier() -> Verifier {
        let salt = B64.decode(SALT_B64).unwrap();
        Verifier::from_password(PASSWORD, salt, ITERATIONS)
    }

    #[test]
    fn rfc7677_vector_server_side() {
        let verifier = vector_verifier();
        assert_eq!(B64.encode(verifier.stored_key), STORED_KEY);
        assert_eq!(B64.encode(verifier.server_key), SERVER_KEY);
        assert_eq!(verifier.challenge(SNONCE), CHALLENGE);
        let response = parse_client_response(RESPONSE).unwrap();
        assert_eq!(response.user, "user");
        assert_eq!(response.snonce(), SNONCE);
        assert_eq!(
            server_verify(&verifier, &response).as_deref(),
            Some(SIGNATURE)
        );
    }

    #[test]
    fn wrong_password_fails_server_check() {
        let text = CHALLENGE.strip_prefix("SCRAM-SHA-256 ").unwrap();
        let challenge = parse_challenge(text, 0..=10_000_000).unwrap();
        let out = client_final("user", b"pencil2", &challenge, CNONCE);
        let response = parse_client_response(&out.digest_response).unwrap();
        assert_eq!(server_verify(&vector_verifier(), &response), None);
    }

    #[test]
    fn saslname_decodes() {
        assert_eq!(decode_saslname("a=3Db=2Cc").as_deref(), Some("a=b,c"));
        assert_eq!(decode_saslname("a=4"), None);
    }
}
