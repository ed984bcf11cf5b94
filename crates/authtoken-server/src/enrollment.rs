//! Enrollment (docs/PROTOCOL.md, "Enrollment"): a machine joins with a
//! single-use join token and a CSR for a key it made itself; the authority
//! signs a device certificate with its device-issuing CA (an intermediate
//! whose key the server may read; the root CA's key stays root's) and
//! keeps a record of every certificate it issued, so one can be revoked.
//!
//! This module holds the pieces and their rules, with no I/O of its own:
//! the token's secret and what is stored of it (a hash), the request and
//! answer bodies, and the device CA that turns a verified CSR into a
//! certificate bound to the machine's UDID.

use std::collections::BTreeMap;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::files::{hex, random, sha256_hex, FileError};
pub use authtoken_protocol::enroll::{
    name_ok, udid_ok, EnrollAnswer, EnrollRequest, UDID_URI_PREFIX,
};

/// The device-issuing CA's name (its issuer is rebuilt from it and the key).
pub const DEVICE_CA_NAME: &str = "authtoken-server device CA";
/// How long a device certificate is valid unless `serve --device-days`
/// says otherwise: renewed after two thirds of it.
pub const DEVICE_DAYS: u32 = 90;
/// Largest enrollment request read.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// The join token's `ID`: 16 hex digits.
const ID_BYTES: usize = 8;
/// The join token's secret: 32 random bytes, base64url.
const SECRET_BYTES: usize = 32;

/// A join token as the administrator pastes it: `ID.SECRET`. The ID finds
/// the stored record; only a hash of the secret is stored.
pub struct JoinSecret {
    pub id: String,
    secret: Zeroizing<String>,
}

impl JoinSecret {
    pub fn generate() -> Result<JoinSecret, FileError> {
        use base64::Engine as _;
        let id = hex(&random(ID_BYTES)?);
        let secret = Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random(SECRET_BYTES)?),
        );
        Ok(JoinSecret { id, secret })
    }

    /// `ID.SECRET`, or `None` when the text is not one.
    pub fn parse(text: &str) -> Option<JoinSecret> {
        let (id, secret) = text.split_once('.')?;
        let id_ok = id.len() == ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let secret_ok = secret.len() == 43
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (id_ok && secret_ok).then(|| JoinSecret {
            id: id.to_ascii_lowercase(),
            secret: Zeroizing::new(secret.to_owned()),
        })
    }

    /// What the administrator pastes.
    pub fn line(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{}.{}", self.id, self.secret.as_str()))
    }

    /// What is stored of it.
    pub fn hash(&self) -> String {
        sha256_hex(self.secret.as_bytes())
    }
}

/// A join token as stored (TOML `[join_tokens.ID]`, or a row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinToken {
    /// The SHA-256 of the secret, in hex.
    pub hash: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub uses_left: u32,
    /// Only a machine of this name may use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub created_at: u64,
}

/// Why a join token is not taken. The client learns only that it was
/// refused, never which part was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("no such join token")]
    Unknown,
    #[error("join token secret does not match")]
    Mismatch,
    #[error("join token expired")]
    Expired,
    #[error("join token used up")]
    Used,
    #[error("join token is for another machine name")]
    OtherName,
}

impl JoinToken {
    /// Whether `secret` may be used now by a machine called `name`.
    pub fn admits(&self, secret: &JoinSecret, name: &str, now: u64) -> Result<(), TokenRefusal> {
        if !bool::from(self.hash.as_bytes().ct_eq(secret.hash().as_bytes())) {
            return Err(TokenRefusal::Mismatch);
        }
        if now >= self.expires_at {
            return Err(TokenRefusal::Expired);
        }
        if self.uses_left == 0 {
            return Err(TokenRefusal::Used);
        }
        if self.name.as_deref().is_some_and(|wanted| wanted != name) {
            return Err(TokenRefusal::OtherName);
        }
        Ok(())
    }
}

/// Takes one use of the token `secret` names from `tokens`: the rules of
/// [`JoinToken::admits`], and the use counted (a used-up token stays
/// listed until it expires).
pub fn take_token(
    tokens: &mut BTreeMap<String, JoinToken>,
    secret: &JoinSecret,
    name: &str,
    now: u64,
) -> Result<(), TokenRefusal> {
    let token = tokens.get_mut(&secret.id).ok_or(TokenRefusal::Unknown)?;
    token.admits(secret, name, now)?;
    token.uses_left -= 1;
    Ok(())
}

/// One certificate the device CA issued (TOML `[devices.SERIAL]`, or a row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRecord {
    /// The machine's name (from its join).
    pub name: String,
    /// The machine's UDID: its check-ins must carry this one.
    pub udid: String,
    /// The SHA-256 of the certificate (DER), in hex: how a connection's
    /// client certificate is found.
    pub fingerprint: String,
    pub issued_at: u64,
    pub not_after: u64,
    #[serde(default)]
    pub revoked: bool,
}

/// Why an enrollment request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    #[error("malformed enrollment request: {0}")]
    Malformed(String),
    #[error("join token refused")]
    Token(TokenRefusal),
    #[error("the CSR is not a valid signed request: {0}")]
    Csr(String),
    #[error("only ECDSA P-256 device keys are taken")]
    KeyType,
    #[error("signing the device certificate: {0}")]
    Signing(String),
}

/// Reads an enrollment request body: bounded, strict JSON, its fields
/// checked (the CSR itself is checked when it is signed).
pub fn parse_request(body: &[u8]) -> Result<EnrollRequest, EnrollError> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(EnrollError::Malformed("larger than 16 KiB".into()));
    }
    let request: EnrollRequest =
        serde_json::from_slice(body).map_err(|e| EnrollError::Malformed(e.to_string()))?;
    if request.v != 1 {
        return Err(EnrollError::Malformed(format!("version {}", request.v)));
    }
    if !name_ok(&request.name) {
        return Err(EnrollError::Malformed("name".into()));
    }
    if !udid_ok(&request.udid) {
        return Err(EnrollError::Malformed("udid".into()));
    }
    Ok(request)
}

/// The device-issuing CA: the intermediate's issuer (its key in memory)
/// and its certificate, which goes with every device certificate.
pub struct DeviceCa {
    issuer: Issuer<'static, KeyPair>,
    certificate_pem: String,
    days: u32,
}

/// The device CA's parameters: a CA that may sign leaves only.
pub fn device_ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, DEVICE_CA_NAME);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// The issued certificate, and its record.
pub struct Issued {
    pub answer: EnrollAnswer,
    pub serial: String,
    pub record: DeviceRecord,
}

impl DeviceCa {
    /// From the device CA's certificate and key (PEM).
    pub fn new(certificate_pem: &str, key_pem: &str, days: u32) -> Result<DeviceCa, String> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| e.to_string())?;
        Ok(DeviceCa {
            issuer: Issuer::new(device_ca_params(), key),
            certificate_pem: certificate_pem.to_owned(),
            days,
        })
    }

    /// Signs a device certificate for the key of `csr_pem` (whose
    /// signature must check out), named `name` and bound to `udid`, valid
    /// from a day ago (clock skew) for the CA's days. Nothing the CSR asks
    /// for beyond its key is taken: no names, no usages, no CA bit.
    pub fn issue(
        &self,
        csr_pem: &str,
        name: &str,
        udid: &str,
        now: u64,
    ) -> Result<Issued, EnrollError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| EnrollError::Csr(e.to_string()))?;
        if csr.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(EnrollError::KeyType);
        }
        let mut serial = random(16).map_err(|e| EnrollError::Signing(e.to_string()))?;
        // A positive INTEGER whose first byte is neither a sign pad nor
        // dropped by DER: so the serial reads the same in the record, in
        // `authtoken status` and in `openssl x509` (126 random bits).
        serial[0] = (serial[0] & 0x3f) | 0x40;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        let uri = format!("{UDID_URI_PREFIX}{}", udid.to_ascii_uppercase());
        params.subject_alt_names = vec![SanType::URI(
            uri.try_into()
                .map_err(|e: rcgen::Error| EnrollError::Signing(e.to_string()))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.is_ca = IsCa::ExplicitNoCa;
        params.serial_number = Some(serial.clone().into());
        let start = time::OffsetDateTime::from_unix_timestamp(now as i64)
            .map_err(|e| EnrollError::Signing(e.to_string()))?;
        params.not_before = start - time::Duration::days(1);
        let not_after = start + time::Duration::days(i64::from(self.days));
        params.not_after = not_after;
        csr.params = params;
        let certificate = csr
            .signed_by(&self.issuer)
            .map_err(|e| EnrollError::Signing(e.to_string()))?;
        let serial = hex(&serial);
        let not_after = not_after.unix_timestamp() as u64;
        let record = DeviceRecord {
            name: name.to_owned(),
            udid: udid.to_ascii_uppercase(),
            fingerprint: sha256_hex(certificate.der()),
            issued_at: now,
            not_after,
            revoked: false,
        };
        Ok(Issued {
            answer: EnrollAnswer {
                v: 1,
                certificate: format!("{}{}", certificate.pem(), self.certificate_pem),
                serial: serial.clone(),
                not_after,
                time: now,
            },
            serial,
            record,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device_ca() -> (DeviceCa, rcgen::Certificate) {
        let root_key = KeyPair::generate().unwrap();
        let mut root = CertificateParams::default();
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.distinguished_name.push(DnType::CommonName, "root");
        let root_cert = root.self_signed(&root_key).unwrap();
        let root = Issuer::new(root, root_key);
        let key = KeyPair::generate().unwrap();
        let cert = device_ca_params().signed_by(&key, &root).unwrap();
        (
            DeviceCa::new(&cert.pem(), &key.serialize_pem(), DEVICE_DAYS).unwrap(),
            root_cert,
        )
    }

    fn csr_for(key: &KeyPair, asks: impl FnOnce(&mut CertificateParams)) -> String {
        let mut params = CertificateParams::default();
        asks(&mut params);
        params.serialize_request(key).unwrap().pem().unwrap()
    }

    const UDID: &str = "01234567-89ab-cdef-0123-456789abcdef";

    #[test]
    fn a_join_secret_round_trips_and_only_its_hash_is_kept() {
        let secret = JoinSecret::generate().unwrap();
        let line = secret.line();
        let parsed = JoinSecret::parse(&line).unwrap();
        assert_eq!(parsed.id, secret.id);
        assert_eq!(parsed.hash(), secret.hash());
        assert!(!secret.hash().contains(line.split('.').nth(1).unwrap()));
        for bad in [
            "",
            "abc",
            "0123456789abcdef.",
            "0123456789abcdeg.".repeat(2).as_str(),
            &format!("{}.x", secret.id),
        ] {
            assert!(JoinSecret::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_token_admits_once_before_it_expires_and_for_its_name_only() {
        let secret = JoinSecret::generate().unwrap();
        let mut tokens = BTreeMap::from([(
            secret.id.clone(),
            JoinToken {
                hash: secret.hash(),
                expires_at: 1_000,
                uses_left: 1,
                name: Some("laptop7".into()),
                created_at: 0,
            },
        )]);
        assert_eq!(
            take_token(&mut tokens, &secret, "laptop8", 10),
            Err(TokenRefusal::OtherName)
        );
        assert_eq!(
            take_token(&mut tokens, &secret, "laptop7", 1_000),
            Err(TokenRefusal::Expired)
        );
        assert_eq!(take_token(&mut tokens, &secret, "laptop7", 10), Ok(()));
        assert_eq!(
            take_token(&mut tokens, &secret, "laptop7", 11),
            Err(TokenRefusal::Used)
        );
        let other = JoinSecret::parse(&format!("{}.{}", secret.id, "A".repeat(43))).unwrap();
        assert_eq!(
            take_token(&mut tokens, &other, "laptop7", 11),
            Err(TokenRefusal::Mismatch)
        );
        let unknown = JoinSecret::generate().unwrap();
        assert_eq!(
            take_token(&mut tokens, &unknown, "x", 1),
            Err(TokenRefusal::Unknown)
        );
    }

    #[test]
    fn the_device_ca_signs_the_key_and_nothing_else_the_csr_asks() {
        let (ca, _root) = device_ca();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        // A CSR asking to be a CA for another name: only its key is taken.
        let csr = csr_for(&key, |p| {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.subject_alt_names = vec![SanType::DnsName("authority.example".try_into().unwrap())];
        });
        let issued = ca.issue(&csr, "laptop7", UDID, 1_800_000_000).unwrap();
        assert_eq!(issued.record.udid, UDID.to_ascii_uppercase());
        assert_eq!(issued.answer.not_after, 1_800_000_000 + 90 * 86_400);
        let pem = issued.answer.certificate;
        let leaf = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        use rustls::pki_types::pem::PemObject as _;
        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
        assert!(!parsed.is_ca());
        assert_eq!(
            parsed.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        let sans = parsed.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(sans.general_names.len(), 1);
        assert!(format!("{:?}", sans.general_names[0]).contains("urn:authtoken:udid:01234567-89AB"));
        assert_eq!(sha256_hex(&leaf), issued.record.fingerprint);
        // The serial reads the same in the record as in the certificate
        // (no sign pad), whatever random bytes it drew.
        for _ in 0..64 {
            let issued = ca.issue(&csr, "laptop7", UDID, 1_800_000_000).unwrap();
            let leaf = rustls::pki_types::CertificateDer::from_pem_slice(
                issued.answer.certificate.as_bytes(),
            )
            .unwrap();
            let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
            assert_eq!(
                parsed.raw_serial_as_string().replace(':', ""),
                issued.serial
            );
            assert_eq!(issued.serial.len(), 32);
        }
    }

    #[test]
    fn a_csr_with_a_bad_signature_or_another_key_type_is_refused() {
        let (ca, _) = device_ca();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = csr_for(&key, |_| {});
        // One byte of the signature changed.
        use rustls::pki_types::pem::PemObject as _;
        let mut der =
            rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec();
        let last = der.len() - 2;
        der[last] ^= 1;
        let tampered = pem_of("CERTIFICATE REQUEST", &der);
        assert!(matches!(
            ca.issue(&tampered, "x", UDID, 1),
            Err(EnrollError::Csr(_))
        ));
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert_eq!(
            ca.issue(&csr_for(&p384, |_| {}), "x", UDID, 1).err(),
            Some(EnrollError::KeyType)
        );
        assert!(matches!(
            ca.issue("not a csr", "x", UDID, 1),
            Err(EnrollError::Csr(_))
        ));
    }

    fn pem_of(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn requests_are_strict() {
        let good = format!(r#"{{"v":1,"token":"t","csr":"c","udid":"{UDID}","name":"laptop7"}}"#);
        assert!(parse_request(good.as_bytes()).is_ok());
        for bad in [
            good.replace("\"v\":1", "\"v\":2"),
            good.replace("laptop7", "laptop 7"),
            good.replace("laptop7", "-x"),
            good.replace(UDID, "not-a-udid"),
            good.replace("}", ",\"extra\":1}"),
            "[]".into(),
        ] {
            assert!(parse_request(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_request(&vec![b' '; MAX_REQUEST_BYTES + 1]).is_err());
    }
}
