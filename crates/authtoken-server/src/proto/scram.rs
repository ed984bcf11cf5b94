//! SCRAM-SHA-256, server side: the verifier a user store keeps, and the
//! check of a client's `DigestResponse` (docs/PROTOCOL.md).

use authtoken_protocol::channel_binding::{cbind_value, BindingType, Gs2, SCHEME_PLUS};
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
    /// The challenge; `plus` offers SCRAM-SHA-256-PLUS (a connection that
    /// can bind a login).
    pub fn challenge(&self, snonce: &str, plus: bool) -> String {
        format!(
            "{} r={snonce},s={},i={}",
            if plus { SCHEME_PLUS } else { SCHEME },
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
    /// The GS2 header the client sent (`n,,` when none was written).
    pub gs2: Gs2,
    /// The `c=` value as sent (part of the AuthMessage).
    pub cbind: String,
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
    // `SCRAM-SHA-256-PLUS p=TYPE,,n=…`, `SCRAM-SHA-256 y,,n=…`, or the
    // plain `SCRAM-SHA-256 n=…` (GS2 header `n,,` implied).
    let (gs2, rest) = if let Some(rest) = text
        .strip_prefix(SCHEME_PLUS)
        .and_then(|r| r.strip_prefix(' '))
    {
        match Gs2::split(rest) {
            Some((gs2 @ Gs2::Bound(_), rest)) => (gs2, rest),
            _ => return Err(bad),
        }
    } else {
        let rest = text
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(bad.clone())?;
        match rest.strip_prefix("y,,") {
            Some(rest) => (Gs2::NotOffered, rest),
            None => (Gs2::NotSupported, rest),
        }
    };
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
    let cbind = c.strip_prefix("c=").ok_or(bad.clone())?;
    // The c= value must carry the same GS2 header (the binding data, if
    // any, is checked against the connection by the verifier).
    let header_matches = match gs2 {
        Gs2::NotSupported | Gs2::NotOffered => cbind == cbind_value(gs2, &[]),
        Gs2::Bound(_) => B64
            .decode(cbind)
            .is_ok_and(|input| input.starts_with(gs2.header().as_bytes())),
    };
    if !header_matches
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
        gs2,
        cbind: cbind.to_owned(),
    })
}

/// What the server knows of the TLS connection a request came on. Plain
/// data (`Copy`), so every request's origin carries it cheaply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionBindings {
    /// RFC 9266 `tls-exporter` (TLS 1.3 only).
    pub exporter: Option<[u8; 32]>,
    /// RFC 5929 `tls-server-end-point` of the certificate it presented.
    pub end_point: Option<EndPoint>,
}

/// A `tls-server-end-point` value: a SHA-256, -384 or -512 hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndPoint {
    hash: [u8; 64],
    len: u8,
}

impl EndPoint {
    /// `None` for anything but a 32-, 48- or 64-byte hash.
    pub fn new(hash: &[u8]) -> Option<EndPoint> {
        if ![32, 48, 64].contains(&hash.len()) {
            return None;
        }
        let mut out = [0u8; 64];
        out[..hash.len()].copy_from_slice(hash);
        Some(EndPoint {
            hash: out,
            len: hash.len() as u8,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.hash[..usize::from(self.len)]
    }
}

impl ConnectionBindings {
    fn data(&self, kind: BindingType) -> Option<&[u8]> {
        match kind {
            BindingType::TlsExporter => self.exporter.as_ref().map(|e| e.as_slice()),
            BindingType::TlsServerEndPoint => self.end_point.as_ref().map(EndPoint::as_bytes),
        }
    }

    /// Whether a login can be bound to this connection, and so
    /// SCRAM-SHA-256-PLUS is offered on it.
    pub fn can_bind(&self) -> bool {
        self.exporter.is_some() || self.end_point.is_some()
    }
}

/// Why a response was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The channel binding is not this connection's, or missing where it
    /// was offered: the proof was never evaluated.
    Binding(&'static str),
    /// The proof was evaluated and is wrong.
    Proof,
}

/// Server check: recovers ClientKey' = p XOR HMAC(StoredKey, AuthMessage) and
/// accepts iff SHA256(ClientKey') == StoredKey, in constant time. Returns the
/// `ServerSignature` to send on success.
pub fn server_verify(verifier: &Verifier, response: &ClientResponse) -> Option<String> {
    server_verify_bound(verifier, response, None).ok()
}

/// [`server_verify`] for a server that knows its connection: `offered` is
/// the bindings of the connection when it offered SCRAM-SHA-256-PLUS
/// (`None`: it offered the plain scheme). A client that says it saw no
/// PLUS (`y`) where it was offered, or whose binding is not this
/// connection's, is refused (a relay or a downgrade); binding data the
/// connection cannot give is refused, never taken as empty.
pub fn server_verify_bound(
    verifier: &Verifier,
    response: &ClientResponse,
    offered: Option<&ConnectionBindings>,
) -> Result<String, Refusal> {
    match (response.gs2, offered) {
        (Gs2::NotOffered, Some(_)) => {
            return Err(Refusal::Binding(
                "GS2 flag y where SCRAM-SHA-256-PLUS was offered (a downgrade)",
            ))
        }
        (Gs2::Bound(kind), Some(bindings)) => {
            let Some(data) = bindings.data(kind) else {
                return Err(Refusal::Binding(
                    "a binding type this connection cannot give",
                ));
            };
            let expected = cbind_value(response.gs2, data);
            if !bool::from(expected.as_bytes().ct_eq(response.cbind.as_bytes())) {
                return Err(Refusal::Binding(
                    "channel binding of another connection (a relay)",
                ));
            }
        }
        (Gs2::Bound(_), None) => {
            return Err(Refusal::Binding(
                "bound where SCRAM-SHA-256-PLUS was not offered",
            ))
        }
        (Gs2::NotSupported | Gs2::NotOffered, _) => {}
    }
    let salt_b64 = B64.encode(&verifier.salt);
    let message = auth_message(
        &response.user,
        &response.cnonce,
        &response.nonce,
        &salt_b64,
        &verifier.iterations.to_string(),
        &response.cbind,
    );
    let mut client_key = Zeroizing::new(hmac_sha256(&verifier.stored_key, message.as_bytes()));
    for (k, p) in client_key.iter_mut().zip(response.proof.iter()) {
        *k ^= p;
    }
    let candidate = digest::digest(&digest::SHA256, &*client_key);
    if !bool::from(candidate.as_ref().ct_eq(&verifier.stored_key)) {
        return Err(Refusal::Proof);
    }
    let signature = hmac_sha256(&verifier.server_key, message.as_bytes());
    Ok(format!("v={}", B64.encode(signature)))
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

    /// The DigestResponse for the RFC 7677 vector with this GS2 header and
    /// binding data, parsed as the server reads it.
    fn bound_response(gs2: Gs2, data: &[u8]) -> (ClientResponse, String) {
        let text = CHALLENGE.strip_prefix("SCRAM-SHA-256 ").unwrap();
        let challenge = parse_challenge(text, 0..=10_000_000).unwrap();
        let keys = derive_keys(PASSWORD, &B64.decode(SALT_B64).unwrap(), ITERATIONS);
        let out =
            authtoken_protocol::scram::client_final_gs2(USER, &keys, &challenge, CNONCE, gs2, data);
        (
            parse_client_response(&out.digest_response).unwrap(),
            out.expected_server_signature,
        )
    }

    #[test]
    fn channel_bindings_are_checked_against_the_connection() {
        let verifier = vector_verifier();
        let exporter: [u8; 32] = std::array::from_fn(|i| i as u8);
        let connection = ConnectionBindings {
            exporter: Some(exporter),
            end_point: None,
        };
        let bound = Gs2::Bound(BindingType::TlsExporter);
        let (response, signature) = bound_response(bound, &exporter);
        assert_eq!(
            server_verify_bound(&verifier, &response, Some(&connection)),
            Ok(signature),
            "bound to this connection"
        );
        let refused_binding = |r: Result<String, Refusal>| matches!(r, Err(Refusal::Binding(_)));
        // Another connection's binding: a relay.
        let (relayed, _) = bound_response(bound, &[7u8; 32]);
        assert!(refused_binding(server_verify_bound(
            &verifier,
            &relayed,
            Some(&connection)
        )));
        // A type the connection cannot give: refused, never taken as empty.
        let (end_point, _) = bound_response(Gs2::Bound(BindingType::TlsServerEndPoint), &[]);
        assert!(refused_binding(server_verify_bound(
            &verifier,
            &end_point,
            Some(&connection)
        )));
        // Bound where PLUS was not offered.
        assert!(refused_binding(server_verify_bound(
            &verifier, &response, None
        )));
        // "y": the client saw a plain challenge: a downgrade where PLUS was offered.
        let (flagged, signature) = bound_response(Gs2::NotOffered, &[]);
        assert!(refused_binding(server_verify_bound(
            &verifier,
            &flagged,
            Some(&connection)
        )));
        assert_eq!(
            server_verify_bound(&verifier, &flagged, None),
            Ok(signature)
        );
        // "n": a client without binding (channel_binding = "off").
        let (plain, signature) = bound_response(Gs2::NotSupported, &[]);
        assert_eq!(
            server_verify_bound(&verifier, &plain, Some(&connection)),
            Ok(signature)
        );
        // The right binding with a wrong password is a wrong proof.
        let (mut wrong, _) = bound_response(bound, &exporter);
        wrong.proof[0] ^= 1;
        assert_eq!(
            server_verify_bound(&verifier, &wrong, Some(&connection)),
            Err(Refusal::Proof)
        );
    }

    #[test]
    fn gs2_vectors_server_side() {
        let verifier = vector_verifier();
        let exporter_connection = ConnectionBindings {
            exporter: Some(BINDING),
            end_point: None,
        };
        let end_point_connection = ConnectionBindings {
            exporter: None,
            end_point: EndPoint::new(&BINDING),
        };
        let check = |response: &str, connection: Option<&ConnectionBindings>| {
            server_verify_bound(
                &verifier,
                &parse_client_response(response).unwrap(),
                connection,
            )
        };
        assert_eq!(
            check(EXPORTER_RESPONSE, Some(&exporter_connection)),
            Ok(EXPORTER_SIGNATURE.to_owned())
        );
        assert_eq!(
            check(END_POINT_RESPONSE, Some(&end_point_connection)),
            Ok(END_POINT_SIGNATURE.to_owned())
        );
        assert_eq!(
            check(FLAG_Y_RESPONSE, None),
            Ok(FLAG_Y_SIGNATURE.to_owned())
        );
        assert!(matches!(
            check(FLAG_Y_RESPONSE, Some(&exporter_connection)),
            Err(Refusal::Binding(_))
        ));
        // Each binding type against a connection that cannot give it.
        assert!(matches!(
            check(EXPORTER_RESPONSE, Some(&end_point_connection)),
            Err(Refusal::Binding(_))
        ));
        assert!(matches!(
            check(END_POINT_RESPONSE, Some(&exporter_connection)),
            Err(Refusal::Binding(_))
        ));
    }

    #[test]
    fn end_points_are_sha2_hashes_only() {
        assert!(EndPoint::new(&[]).is_none(), "never an empty binding");
        assert!(EndPoint::new(&[1; 20]).is_none());
        for len in [32, 48, 64] {
            assert_eq!(
                EndPoint::new(&vec![5; len]).unwrap().as_bytes(),
                vec![5; len]
            );
        }
    }

    #[test]
    fn a_gs2_header_must_match_its_c_value() {
        for bad in [
            "SCRAM-SHA-256 y,,n=user,r=abc,c=biws,r=abcdef,p=AAAA",
            "SCRAM-SHA-256 n=user,r=abc,c=eSws,r=abcdef,p=AAAA",
            "SCRAM-SHA-256-PLUS n=user,r=abc,c=biws,r=abcdef,p=AAAA",
            "SCRAM-SHA-256-PLUS p=tls-exporter,,n=user,r=abc,c=biws,r=abcdef,p=AAAA",
            "SCRAM-SHA-256-PLUS p=tls-unique,,n=user,r=abc,c=biws,r=abcdef,p=AAAA",
        ] {
            assert!(parse_client_response(bad).is_err(), "{bad}");
        }
    }

    fn vector_verifier() -> Verifier {
        let salt = B64.decode(SALT_B64).unwrap();
        Verifier::from_password(PASSWORD, salt, ITERATIONS)
    }

    #[test]
    fn rfc7677_vector_server_side() {
        let verifier = vector_verifier();
        assert_eq!(B64.encode(verifier.stored_key), STORED_KEY);
        assert_eq!(B64.encode(verifier.server_key), SERVER_KEY);
        assert_eq!(verifier.challenge(SNONCE, false), CHALLENGE);
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
