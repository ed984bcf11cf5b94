//! HTTP Digest, server side: the challenge as sent, and the check of a
//! client's response against a stored, password-equivalent `HA1`.

use authtoken_protocol::http_digest::{
    parse_params, quote, response_from_ha1, Algorithm, Challenge, METHOD, SCHEME,
};
use authtoken_protocol::ProtocolError;
use subtle::ConstantTimeEq;

/// The challenge as a server writes it.
pub fn challenge_header(challenge: &Challenge) -> String {
    let mut out = format!(
        "{SCHEME} realm=\"{}\",nonce=\"{}\"",
        quote(&challenge.realm),
        quote(&challenge.nonce)
    );
    if challenge.qop_auth {
        out.push_str(",qop=\"auth\"");
    }
    if let Some(algorithm) = challenge.algorithm {
        out.push_str(",algorithm=");
        out.push_str(algorithm.name());
    }
    if let Some(opaque) = &challenge.opaque {
        out.push_str(&format!(",opaque=\"{}\"", quote(opaque)));
    }
    out
}

/// A client's `DigestResponse` as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub qop: Option<(String, String)>,
    pub algorithm: Option<Algorithm>,
    pub opaque: Option<String>,
}

pub fn parse_client_response(text: &str) -> Result<ClientResponse, ProtocolError> {
    let bad = ProtocolError::Malformed("Digest DigestResponse");
    let rest = text
        .strip_prefix(SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(bad.clone())?;
    let mut fields = std::collections::BTreeMap::new();
    for (key, value) in parse_params(rest).ok_or(bad.clone())? {
        if fields.insert(key.to_ascii_lowercase(), value).is_some() {
            return Err(bad);
        }
    }
    let mut take = |key: &str| fields.remove(key);
    let (Some(username), Some(realm), Some(nonce), Some(uri), Some(response)) = (
        take("username"),
        take("realm"),
        take("nonce"),
        take("uri"),
        take("response"),
    ) else {
        return Err(bad);
    };
    let qop = match (take("qop"), take("nc"), take("cnonce")) {
        (None, None, None) => None,
        (Some(q), Some(nc), Some(cnonce)) if q == "auth" => Some((nc, cnonce)),
        _ => return Err(bad),
    };
    let algorithm = match take("algorithm") {
        None => None,
        Some(name) => Some(Algorithm::parse(&name).ok_or(bad.clone())?),
    };
    let opaque = take("opaque");
    if !fields.is_empty() {
        return Err(bad);
    }
    Ok(ClientResponse {
        username,
        realm,
        nonce,
        uri,
        response,
        qop,
        algorithm,
        opaque,
    })
}

/// Server check of a response against the stored HA1, in constant time.
pub fn server_verify(algorithm: Algorithm, ha1: &str, response: &ClientResponse) -> bool {
    let qop = response
        .qop
        .as_ref()
        .map(|(nc, cnonce)| (nc.as_str(), cnonce.as_str()));
    let expected = response_from_ha1(algorithm, ha1, &response.nonce, METHOD, &response.uri, qop);
    let given = response.response.to_ascii_lowercase();
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use authtoken_protocol::http_digest::{digest_response, ha1, parse_challenge};

    #[test]
    fn response_format_and_server_check() {
        for (qop, algorithm) in [
            (true, Some(Algorithm::Sha256)),
            (true, None),
            (false, Some(Algorithm::Md5)),
            (false, None),
        ] {
            let challenge = Challenge {
                realm: "mdm".into(),
                nonce: "abc".into(),
                qop_auth: qop,
                algorithm,
                opaque: Some("op".into()),
            };
            let text = digest_response("alice", b"secret", &challenge, "cn");
            assert!(text.starts_with(
                "Digest username=\"alice\",realm=\"mdm\",nonce=\"abc\",uri=\"/\",response=\""
            ));
            assert_eq!(text.contains(",qop=auth,nc=00000001,cnonce=\"cn\""), qop);
            assert_eq!(text.contains(",algorithm="), algorithm.is_some());
            assert!(text.ends_with(",opaque=\"op\""));
            let parsed = parse_client_response(&text).unwrap();
            let good = ha1(challenge.hash(), "alice", "mdm", b"secret");
            let wrong = ha1(challenge.hash(), "alice", "mdm", b"Secret");
            assert!(server_verify(challenge.hash(), &good, &parsed));
            assert!(!server_verify(challenge.hash(), &wrong, &parsed));
        }
    }

    #[test]
    fn quoting_survives_round_trip() {
        let challenge = Challenge {
            realm: "we \"quote\" \\ things".into(),
            nonce: "n".into(),
            qop_auth: true,
            algorithm: None,
            opaque: None,
        };
        let parsed = parse_challenge(
            challenge_header(&challenge)
                .strip_prefix("Digest ")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(parsed, challenge);
    }

    #[test]
    fn header_of_a_plain_challenge() {
        let plain = parse_challenge("realm=\"r\",nonce=\"n\"").unwrap();
        assert_eq!(challenge_header(&plain), "Digest realm=\"r\",nonce=\"n\"");
    }
}
