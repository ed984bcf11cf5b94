//! Channel bindings for SCRAM-SHA-256-PLUS (docs/PROTOCOL.md "Channel binding"):
//! the GS2 header (RFC 5802 §7), the `c=` value, and the two binding types,
//! `tls-exporter` (RFC 9266) and `tls-server-end-point` (RFC 5929). Pure
//! functions: the helper and the server take the exporter value and the
//! certificate from their own TLS connections.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::digest;

/// The scheme word of a challenge that offers channel binding.
pub const SCHEME_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// RFC 9266: the exporter's label; its context is empty, its length 32.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
pub const EXPORTER_LEN: usize = 32;

/// The binding types this implementation speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingType {
    TlsExporter,
    TlsServerEndPoint,
}

impl BindingType {
    pub fn name(self) -> &'static str {
        match self {
            BindingType::TlsExporter => "tls-exporter",
            BindingType::TlsServerEndPoint => "tls-server-end-point",
        }
    }

    pub fn parse(name: &str) -> Option<BindingType> {
        match name {
            "tls-exporter" => Some(BindingType::TlsExporter),
            "tls-server-end-point" => Some(BindingType::TlsServerEndPoint),
            _ => None,
        }
    }
}

/// The client's GS2 channel-binding flag (RFC 5802 §7, `gs2-cbind-flag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gs2 {
    /// `n`: the client does not support channel binding.
    NotSupported,
    /// `y`: the client supports it but thinks the server does not (it got
    /// a plain challenge). A server that offered PLUS must refuse this.
    NotOffered,
    /// `p=TYPE`: bound to this connection.
    Bound(BindingType),
}

impl Gs2 {
    /// The GS2 header: the flag, then an empty authzid: `n,,`, `y,,`,
    /// `p=tls-exporter,,`.
    pub fn header(self) -> String {
        match self {
            Gs2::NotSupported => "n,,".to_owned(),
            Gs2::NotOffered => "y,,".to_owned(),
            Gs2::Bound(kind) => format!("p={},,", kind.name()),
        }
    }

    /// A GS2 header at the start of `text`, and the rest; `None` for one
    /// this implementation does not accept (an authzid, another type).
    pub fn split(text: &str) -> Option<(Gs2, &str)> {
        let (flag, rest) = text.split_once(',')?;
        let rest = rest.strip_prefix(',')?;
        let gs2 = match flag {
            "n" => Gs2::NotSupported,
            "y" => Gs2::NotOffered,
            other => Gs2::Bound(BindingType::parse(other.strip_prefix("p=")?)?),
        };
        Some((gs2, rest))
    }
}

/// The `c=` value: base64 of the GS2 header and, when bound, the binding
/// data (RFC 5802 §7 `cbind-input`). Unbound, it is `biws` (`n,,`) or
/// `eSws` (`y,,`).
pub fn cbind_value(gs2: Gs2, data: &[u8]) -> String {
    let mut input = gs2.header().into_bytes();
    if matches!(gs2, Gs2::Bound(_)) {
        input.extend_from_slice(data);
    }
    B64.encode(input)
}

/// What a client's TLS connection can bind a login to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bindings {
    /// RFC 9266 `tls-exporter` (TLS 1.3 only).
    pub exporter: Option<Vec<u8>>,
    /// RFC 5929 `tls-server-end-point` of the server's certificate, when
    /// its signature algorithm names a hash.
    pub end_point: Option<Vec<u8>>,
}

impl Bindings {
    /// The binding to use, `tls-exporter` first.
    pub fn best(&self) -> Option<(BindingType, &[u8])> {
        self.exporter
            .as_deref()
            .map(|data| (BindingType::TlsExporter, data))
            .or_else(|| {
                self.end_point
                    .as_deref()
                    .map(|data| (BindingType::TlsServerEndPoint, data))
            })
    }
}

/// RFC 5929 §4.1: the hash of the server's end-entity certificate with
/// the hash of its signature algorithm, SHA-256 for MD5 and SHA-1. `None`
/// when the algorithm names no single hash (Ed25519, Ed448, RSASSA-PSS,
/// anything unknown): then there is no `tls-server-end-point` binding for
/// that connection, never an empty or guessed one.
pub fn server_end_point(certificate_der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer as _;
    let (_, certificate) =
        x509_parser::certificate::X509Certificate::from_der(certificate_der).ok()?;
    let oid = certificate.signature_algorithm.algorithm.to_id_string();
    let algorithm = match oid.as_str() {
        // md5WithRSAEncryption, sha1WithRSAEncryption, ecdsa-with-SHA1: SHA-256.
        "1.2.840.113549.1.1.4" | "1.2.840.113549.1.1.5" | "1.2.840.10045.4.1" => &digest::SHA256,
        // sha256WithRSAEncryption, ecdsa-with-SHA256
        "1.2.840.113549.1.1.11" | "1.2.840.10045.4.3.2" => &digest::SHA256,
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => &digest::SHA384,
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => &digest::SHA512,
        _ => return None,
    };
    Some(digest::digest(algorithm, certificate_der).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gs2_headers_and_cbind_values() {
        assert_eq!(cbind_value(Gs2::NotSupported, b"ignored"), "biws");
        assert_eq!(cbind_value(Gs2::NotOffered, b"ignored"), "eSws");
        let bound = cbind_value(Gs2::Bound(BindingType::TlsExporter), &[0u8; 32]);
        assert_eq!(
            B64.decode(&bound).unwrap(),
            [b"p=tls-exporter,,".as_slice(), &[0u8; 32]].concat()
        );
        for gs2 in [
            Gs2::NotSupported,
            Gs2::NotOffered,
            Gs2::Bound(BindingType::TlsExporter),
            Gs2::Bound(BindingType::TlsServerEndPoint),
        ] {
            let text = format!("{}n=user,r=x", gs2.header());
            assert_eq!(Gs2::split(&text), Some((gs2, "n=user,r=x")));
        }
        assert_eq!(Gs2::split("n,a=admin,n=user"), None, "no authzid");
        assert_eq!(Gs2::split("p=tls-unique,,n=user"), None);
        assert_eq!(Gs2::split("n=user,r=x"), None);
    }

    /// A certificate for 127.0.0.1 signed by a fresh CA with `algorithm`.
    fn certificate_signed_with(algorithm: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let ca_key = rcgen::KeyPair::generate_for(algorithm).unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn the_end_point_hash_follows_the_certificate_signature() {
        for (algorithm, hash) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, &digest::SHA256),
            (&rcgen::PKCS_ECDSA_P384_SHA384, &digest::SHA384),
        ] {
            let der = certificate_signed_with(algorithm);
            assert_eq!(
                server_end_point(&der).unwrap(),
                digest::digest(hash, &der).as_ref()
            );
        }
        // RFC 5929 names no hash for Ed25519: no binding, never an empty one.
        assert_eq!(
            server_end_point(&certificate_signed_with(&rcgen::PKCS_ED25519)),
            None
        );
        assert_eq!(server_end_point(b"not a certificate"), None);
    }

    #[test]
    fn exporter_first_then_end_point_never_nothing() {
        let both = Bindings {
            exporter: Some(vec![1; 32]),
            end_point: Some(vec![2; 32]),
        };
        assert_eq!(
            both.best(),
            Some((BindingType::TlsExporter, &[1u8; 32][..]))
        );
        let end_point = Bindings {
            exporter: None,
            end_point: Some(vec![2; 48]),
        };
        assert_eq!(
            end_point.best(),
            Some((BindingType::TlsServerEndPoint, &[2u8; 48][..]))
        );
        assert_eq!(Bindings::default().best(), None);
    }
}
