//! HTTP Digest (RFC 7616 / RFC 2617) compatibility scheme for MDM servers
//! that send "the standard HTTP digest". Such a server stores a
//! password-equivalent `HA1`, which is why SCRAM is the default.

use md5::{Digest as _, Md5};
use ring::digest;
use zeroize::Zeroizing;

use super::ProtocolError;

pub const SCHEME: &str = "Digest";
/// The nonce count we always send: every nonce is used once.
pub const NONCE_COUNT: &str = "00000001";
/// Method and URI the digest covers in `UserAuthenticate` (docs/PROTOCOL.md).
pub const METHOD: &str = "PUT";
pub const URI: &str = "/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn parse(text: &str) -> Option<Algorithm> {
        if text.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if text.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Lower-case hex of H(data).
    pub fn hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data)),
            Algorithm::Sha256 => hex(digest::digest(&digest::SHA256, data).as_ref()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A parsed `Digest realm=..,nonce=..` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    /// The challenge offered `qop="auth"` (we answer with `qop=auth`).
    pub qop_auth: bool,
    /// Present when the challenge named an algorithm (then echoed back).
    pub algorithm: Option<Algorithm>,
    pub opaque: Option<String>,
}

impl Challenge {
    pub fn hash(&self) -> Algorithm {
        self.algorithm.unwrap_or(Algorithm::Md5)
    }
}

/// Parses the text after `Digest `.
pub fn parse_challenge(text: &str) -> Result<Challenge, ProtocolError> {
    let params = parse_params(text).ok_or(ProtocolError::Malformed("Digest challenge"))?;
    let mut realm = None;
    let mut nonce = None;
    let mut qop = None;
    let mut algorithm = None;
    let mut opaque = None;
    for (key, value) in params {
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "nonce" => nonce = Some(value),
            "qop" => qop = Some(value),
            "algorithm" => {
                algorithm =
                    Some(Algorithm::parse(&value).ok_or(ProtocolError::UnsupportedChallenge)?)
            }
            "opaque" => opaque = Some(value),
            // RFC 7616 extensions we do not use (stale, domain, charset).
            "stale" | "domain" | "charset" => {}
            "userhash" if value.eq_ignore_ascii_case("false") => {}
            _ => return Err(ProtocolError::UnsupportedChallenge),
        }
    }
    let qop_auth = match qop {
        None => false,
        Some(list) if list.split(',').any(|q| q.trim() == "auth") => true,
        Some(_) => return Err(ProtocolError::UnsupportedChallenge),
    };
    let (Some(realm), Some(nonce)) = (realm, nonce) else {
        return Err(ProtocolError::Malformed("Digest challenge"));
    };
    if nonce.is_empty() {
        return Err(ProtocolError::Malformed("Digest challenge"));
    }
    Ok(Challenge {
        realm,
        nonce,
        qop_auth,
        algorithm,
        opaque,
    })
}

/// HA1 = H(user ":" realm ":" password), lower-case hex.
pub fn ha1(algorithm: Algorithm, user: &str, realm: &str, password: &[u8]) -> Zeroizing<String> {
    let mut a1 = Zeroizing::new(Vec::with_capacity(
        user.len() + realm.len() + password.len() + 2,
    ));
    a1.extend_from_slice(user.as_bytes());
    a1.push(b':');
    a1.extend_from_slice(realm.as_bytes());
    a1.push(b':');
    a1.extend_from_slice(password);
    Zeroizing::new(algorithm.hex(&a1))
}

/// The `response` value from HA1 (RFC 7616 §3.4.1): with qop=auth
/// `H(HA1:nonce:nc:cnonce:auth:HA2)`, else `H(HA1:nonce:HA2)`.
pub fn response_from_ha1(
    algorithm: Algorithm,
    ha1: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    qop: Option<(&str, &str)>,
) -> Zeroizing<String> {
    let ha2 = algorithm.hex(format!("{method}:{uri}").as_bytes());
    let data = Zeroizing::new(match qop {
        Some((nc, cnonce)) => format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"),
        None => format!("{ha1}:{nonce}:{ha2}"),
    });
    Zeroizing::new(algorithm.hex(data.as_bytes()))
}

/// The whole `DigestResponse` for `PUT /`, in docs/PROTOCOL.md's field order.
pub fn digest_response(
    user: &str,
    password: &[u8],
    challenge: &Challenge,
    cnonce: &str,
) -> Zeroizing<String> {
    let algorithm = challenge.hash();
    let ha1 = ha1(algorithm, user, &challenge.realm, password);
    let qop = challenge.qop_auth.then_some((NONCE_COUNT, cnonce));
    let response = response_from_ha1(algorithm, &ha1, &challenge.nonce, METHOD, URI, qop);
    let mut out = Zeroizing::new(format!(
        "{SCHEME} username=\"{}\",realm=\"{}\",nonce=\"{}\",uri=\"{URI}\",response=\"{}\"",
        quote(user),
        quote(&challenge.realm),
        quote(&challenge.nonce),
        &*response
    ));
    if challenge.qop_auth {
        out.push_str(&format!(
            ",qop=auth,nc={NONCE_COUNT},cnonce=\"{}\"",
            quote(cnonce)
        ));
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

/// A quoted-string's content, escaped (RFC 7230).
pub fn quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Splits `key=value, key="quoted \"value\"", ...` (RFC 7235 auth-params).
pub fn parse_params(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_') {
            key.push(c);
        }
        if key.is_empty() {
            return None;
        }
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        if chars.next()? != '=' {
            return None;
        }
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',' && !c.is_ascii_whitespace()) {
                value.push(c);
            }
            if value.is_empty() {
                return None;
            }
        }
        out.push((key, value));
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        match chars.next() {
            None => return Some(out),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7616 §3.9.1: Mufasa / "Circle of Life", GET /dir/index.html.
    const REALM: &str = "http-auth@example.org";
    const NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    fn rfc_response(algorithm: Algorithm) -> String {
        let ha1 = ha1(algorithm, "Mufasa", REALM, b"Circle of Life");
        response_from_ha1(
            algorithm,
            &ha1,
            NONCE,
            "GET",
            "/dir/index.html",
            Some(("00000001", CNONCE)),
        )
        .to_string()
    }

    #[test]
    fn rfc7616_md5_vector() {
        assert_eq!(
            rfc_response(Algorithm::Md5),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
    }

    #[test]
    fn rfc7616_sha256_vector() {
        assert_eq!(
            rfc_response(Algorithm::Sha256),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn rfc2617_vector_without_qop_style() {
        // RFC 2069-style (no qop): H(HA1:nonce:HA2), checked by recomputation.
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            b"Circle Of Life",
        );
        assert_eq!(&*ha1, "939e7578ed9e3c518a452acee763bce9");
        let ha2 = Algorithm::Md5.hex(b"GET:/dir/index.html");
        let expected = Algorithm::Md5.hex(format!("{}:abc:{ha2}", &*ha1).as_bytes());
        let got = response_from_ha1(Algorithm::Md5, &ha1, "abc", "GET", "/dir/index.html", None);
        assert_eq!(*got, expected);
    }

    #[test]
    fn parses_challenge_variants() {
        let c = parse_challenge(
            "realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf\", opaque=\"FQhe\"",
        )
        .unwrap();
        assert_eq!(c.realm, REALM);
        assert!(c.qop_auth);
        assert_eq!(c.algorithm, Some(Algorithm::Sha256));
        assert_eq!(c.opaque.as_deref(), Some("FQhe"));
        let plain = parse_challenge("realm=\"r\",nonce=\"n\"").unwrap();
        assert!(!plain.qop_auth);
        assert_eq!(plain.hash(), Algorithm::Md5);
        assert_eq!(
            parse_challenge("realm=\"r\",nonce=\"n\",algorithm=SHA-512-256"),
            Err(ProtocolError::UnsupportedChallenge)
        );
        assert_eq!(
            parse_challenge("realm=\"r\",nonce=\"n\",qop=\"auth-int\""),
            Err(ProtocolError::UnsupportedChallenge)
        );
        assert!(parse_challenge("realm=\"r\"").is_err());
        assert!(parse_challenge("realm=\"r,nonce=\"n\"").is_err());
    }
}
