//! Enrollment on the client (docs/PROTOCOL.md, "Enrollment"): a machine
//! joins with a token and renews over mutual TLS. The work is split the
//! way `sync` splits it:
//!
//! * root makes the key (P-256, which never leaves the machine) and its
//!   CSR, and afterwards checks and writes what came back
//!   ([`make_key`], [`check_issued`], [`write_identity`]);
//! * an unprivileged child (`authtoken-helper enroll` or `renew-device`,
//!   run as `helper_user`) does the network: it fetches the CA, accepts it
//!   only if it matches the pinned fingerprint, and posts the CSR over TLS
//!   verified against it ([`join_exchange`], [`renew_exchange`]).
//!
//! Root trusts nothing the child says without checking it again: the CA
//! must match the pin, the certificate must chain to it, carry this
//! machine's key and UDID, and be valid now.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authtoken_config::{sibling_url, Authority, Config};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use authtoken_protocol::enroll::{EnrollAnswer, EnrollRequest, UDID_URI_PREFIX};

use crate::privilege;
use crate::transport::{first_answering, tls_trusting, Http, TransportError};

/// How far the machine's clock may be from the authority's.
pub const CLOCK_TOLERANCE_SECS: u64 = 300;
/// How long an enrollment exchange may take.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read (a certificate chain, a CA).
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// Why a join or a renewal did not happen. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("{url}: answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error(
        "the authority's CA has fingerprint sha256:{served}, not the sha256:{pinned} you gave: \
         this is not the authority the join line names (or the line was mistyped)"
    )]
    WrongFingerprint { pinned: String, served: String },
    #[error("the authority served no CA certificate at {0}")]
    NoCa(String),
    #[error(
        "this machine's clock is {0} s away from the authority's: set the clock (timedatectl, \
         chrony) and join again"
    )]
    ClockSkew(u64),
    #[error("the issued certificate {0}")]
    BadCertificate(String),
    #[error("the authority's answer is not an enrollment answer: {0}")]
    Malformed(String),
    #[error("making the device key: {0}")]
    Key(String),
    #[error("cannot drop privileges: {0}")]
    Privilege(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What root hands the join child on its stdin.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinJob {
    /// The check-in URL of the join line.
    pub url: String,
    /// The pinned SHA-256 of the CA, hex.
    pub fingerprint: String,
    pub helper_user: String,
    /// Root's clock (Unix seconds) when it made the job: the machine's
    /// time, which the authority's `Date` is held against.
    pub now: u64,
    pub request: EnrollRequest,
}

/// What a child answers on stdout: the CA it accepted (PEM) and the
/// authority's answer, or why there is none.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum ChildAnswer {
    Issued {
        ca_pem: String,
        answer: EnrollAnswer,
    },
    Failed(String),
}

/// A fresh device key (P-256) and a CSR for it naming `name`. The key
/// stays in this process until root writes it (0600).
pub fn make_key(name: &str) -> Result<(Zeroizing<String>, String), EnrollError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    Ok((Zeroizing::new(key.serialize_pem()), csr))
}

/// The SHA-256 of a certificate (DER), in hex.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A pin as written on the join line: `sha256:HEX` (64 hex digits).
pub fn parse_pin(text: &str) -> Option<String> {
    let hex = text.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// The first certificate of a PEM text.
fn first_certificate(pem: &str) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok()
}

/// The CA a join keeps out of what `source` served: its first
/// certificate, when that is the pinned one, alone (DER, and as PEM).
/// Anything served after it came over a connection that trusted anything,
/// so whoever was on the path may have put it there, and the machine would
/// trust it for every login.
pub fn pinned_ca(
    served_pem: &str,
    pin: &str,
    source: &str,
) -> Result<(CertificateDer<'static>, String), EnrollError> {
    let ca = first_certificate(served_pem).ok_or_else(|| EnrollError::NoCa(source.to_owned()))?;
    let served = fingerprint(&ca);
    if served != pin {
        return Err(EnrollError::WrongFingerprint {
            pinned: pin.to_owned(),
            served,
        });
    }
    let pem = pem::encode_config(
        &pem::Pem::new("CERTIFICATE", ca.as_ref()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    Ok((ca, pem))
}

/// A TLS configuration that accepts any server certificate: only for
/// fetching the CA, which is then accepted or not by its fingerprint. The
/// handshake's signatures are still checked.
fn tls_accepting_any() -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::TlsSetup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// See [`tls_accepting_any`].
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The message of a refusal (`{"error": "…"}`), or the status line.
fn refusal_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Refusal {
        error: String,
    }
    serde_json::from_slice::<Refusal>(body)
        .map(|r| {
            r.error
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect()
        })
        .unwrap_or_else(|_| "no reason given".into())
}

/// An enrollment answer out of a `200`, or why not (the authority's
/// bytes: fuzz/fuzz_targets/enroll_answer.rs).
pub fn answer_of(url: &str, status: u16, body: &[u8]) -> Result<EnrollAnswer, EnrollError> {
    if status != 200 {
        return Err(EnrollError::Refused {
            url: url.to_owned(),
            status,
            message: refusal_message(body),
        });
    }
    serde_json::from_slice(body).map_err(|e| EnrollError::Malformed(e.to_string()))
}

/// The join child: as `job.helper_user` before the first byte goes out,
/// fetches the CA (accepted only by its fingerprint), then posts the
/// request over TLS verified against it (and the URL's host name).
pub fn join_exchange(job: &JoinJob) -> Result<(String, EnrollAnswer), EnrollError> {
    privilege::drop_to(&job.helper_user).map_err(|e| EnrollError::Privilege(e.to_string()))?;
    let checkin = Authority::parse(&job.url)
        .map_err(|e| EnrollError::Malformed(format!("{}: {e}", job.url)))?;
    let deadline = Instant::now() + EXCHANGE_TIMEOUT;
    let ca_url = sibling_url(&checkin, "enroll/ca");
    let unverified = Http::with_tls(tls_accepting_any()?, 5_000, deadline)?;
    let reply = unverified.get(ca_url.as_str(), None, MAX_ANSWER_BYTES)?;
    if reply.status != 200 {
        return Err(EnrollError::Refused {
            url: ca_url.to_string(),
            status: reply.status,
            message: "no CA served here (is enrollment on: serve --enroll-dir?)".into(),
        });
    }
    let (ca, ca_pem) = pinned_ca(
        &String::from_utf8_lossy(&reply.body),
        &job.fingerprint,
        ca_url.as_str(),
    )?;
    // A clock far off is said before the token is spent: the certificate
    // would not be valid here, and the same line should work once the
    // clock is set. (Without a `Date`, root's check of the answer says it.)
    if let Some(theirs) = reply.date {
        let skew = job.now.abs_diff(theirs);
        if skew > CLOCK_TOLERANCE_SECS {
            return Err(EnrollError::ClockSkew(skew));
        }
    }
    let verified = Http::with_tls(tls_trusting(vec![ca])?, 5_000, deadline)?;
    let url = sibling_url(&checkin, "enroll");
    let body =
        serde_json::to_vec(&job.request).map_err(|e| EnrollError::Malformed(e.to_string()))?;
    let reply = verified.request(
        "POST",
        url.as_str(),
        None,
        Some("application/json"),
        Some(&body),
    )?;
    Ok((ca_pem, answer_of(url.as_str(), reply.status, &reply.body)?))
}

/// The renewal child: reads the config's trust and client identity as
/// root, drops to `helper_user`, and posts the request to the first
/// authority that can be connected to, over mutual TLS with the current
/// certificate.
pub fn renew_exchange(
    config: &Config,
    request: &EnrollRequest,
) -> Result<EnrollAnswer, EnrollError> {
    let http = Http::new(config, Instant::now() + EXCHANGE_TIMEOUT)?;
    privilege::drop_to(config.helper_user.as_str())
        .map_err(|e| EnrollError::Privilege(e.to_string()))?;
    let body = serde_json::to_vec(request).map_err(|e| EnrollError::Malformed(e.to_string()))?;
    let urls: Vec<Authority> = config
        .url
        .iter()
        .map(|url| sibling_url(url, "enroll/renew"))
        .collect();
    let failover = first_answering(&urls, |url| {
        http.request(
            "POST",
            url.as_str(),
            None,
            Some("application/json"),
            Some(&body),
        )
    });
    let Some((i, reply)) = failover.answer else {
        return Err(EnrollError::Transport(TransportError::Connect(
            crate::transport::failover_unreachable(&failover.passed_over),
        )));
    };
    let reply = reply?;
    answer_of(urls[i].as_str(), reply.status, &reply.body)
}

/// A device certificate that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub udid: String,
    pub serial: String,
    pub not_before: u64,
    pub not_after: u64,
}

impl Identity {
    /// When it should be renewed: after two thirds of its life.
    pub fn renew_at(&self) -> u64 {
        self.not_before + (self.not_after.saturating_sub(self.not_before)) * 2 / 3
    }
}

/// What a device certificate (DER) says of itself: its name (CN), the
/// UDID of its URI SAN (`None` when it has none: not one the authority's
/// device CA issued) and its validity.
pub fn describe(der: &[u8]) -> Option<Identity> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_owned();
    let udid = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|san| {
            san.value.general_names.iter().find_map(|name| match name {
                GeneralName::URI(uri) => uri.strip_prefix(UDID_URI_PREFIX).map(str::to_owned),
                _ => None,
            })
        })
        .unwrap_or_default();
    Some(Identity {
        name,
        udid,
        serial: cert.raw_serial_as_string().replace(':', ""),
        not_before: cert.validity().not_before.timestamp().max(0) as u64,
        not_after: cert.validity().not_after.timestamp().max(0) as u64,
    })
}

/// Root's check of an issued certificate: the chain leads to `ca_pem`
/// (the CA a join pinned, [`pinned_ca`], or the one kept since) for
/// client authentication, the leaf carries `key_pem`'s public key and
/// `udid`, and it is valid at `now`, whose distance from the authority's
/// clock is within [`CLOCK_TOLERANCE_SECS`].
pub fn check_issued(
    answer: &EnrollAnswer,
    ca_pem: &str,
    key_pem: &str,
    udid: &str,
    now: u64,
) -> Result<Identity, EnrollError> {
    let bad = |why: &str| EnrollError::BadCertificate(why.to_owned());
    let skew = now.abs_diff(answer.time);
    if skew > CLOCK_TOLERANCE_SECS {
        return Err(EnrollError::ClockSkew(skew));
    }
    let ca = first_certificate(ca_pem).ok_or_else(|| bad("has no CA to chain to"))?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(answer.certificate.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|_| bad("is not PEM"))?;
    let (leaf, intermediates) = chain.split_first().ok_or_else(|| bad("is empty"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(|e| bad(&format!("CA: {e}")))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| bad(&e.to_string()))?;
    verifier
        .verify_client_cert(
            leaf,
            intermediates,
            UnixTime::since_unix_epoch(Duration::from_secs(now)),
        )
        .map_err(|e| bad(&format!("does not chain to the authority's CA: {e}")))?;
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| EnrollError::Key(e.to_string()))?;
    use x509_parser::prelude::FromDer as _;
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(leaf)
        .map_err(|_| bad("does not parse"))?;
    if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(bad("is for another key than this machine's"));
    }
    let identity = describe(leaf).ok_or_else(|| bad("does not parse"))?;
    if !identity.udid.eq_ignore_ascii_case(udid) {
        return Err(bad(&format!(
            "is for UDID {}, not this machine's {udid}",
            identity.udid
        )));
    }
    Ok(identity)
}

/// Writes a device identity: the chain (0644) and the key (0600), both
/// root's, each atomically. The key goes first and the chain second, each
/// by way of a `.new` file; [`recover_identity`] finishes a write a crash
/// cut between the two, so the pair is never left mismatched.
pub fn write_identity(
    cert: &Path,
    key: &Path,
    chain_pem: &str,
    key_pem: &str,
) -> Result<(), EnrollError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| EnrollError::Io { path, source }
    };
    let cert_new = with_suffix(cert, ".new");
    authtoken_core::trust::write_atomic(&cert_new, chain_pem.as_bytes(), 0o644, Some((0, 0)))
        .map_err(io(&cert_new))?;
    authtoken_core::trust::write_private(key, key_pem.as_bytes(), Some((0, 0))).map_err(io(key))?;
    std::fs::rename(&cert_new, cert).map_err(io(cert))?;
    Ok(())
}

/// After a crash between the two renames of [`write_identity`]: when the
/// certificate waiting beside `cert` (`.new`) is the one for the key at
/// `key`, it is put in place. Root only; does nothing otherwise.
pub fn recover_identity(cert: &Path, key: &Path) {
    let cert_new = with_suffix(cert, ".new");
    let (Ok(pending), Ok(key_pem)) = (
        std::fs::read_to_string(&cert_new),
        std::fs::read_to_string(key),
    ) else {
        return;
    };
    let Some(leaf) = first_certificate(&pending) else {
        return;
    };
    let Ok(pair) = rcgen::KeyPair::from_pem(&key_pem) else {
        return;
    };
    use x509_parser::prelude::FromDer as _;
    let matches = x509_parser::certificate::X509Certificate::from_der(&leaf).is_ok_and(|(_, c)| {
        c.public_key().subject_public_key.data.as_ref() == pair.public_key_raw()
    });
    if matches {
        let _ = std::fs::rename(&cert_new, cert);
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// What a renewal attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The config names no device identity.
    NoIdentity,
    /// The certificate is not one the authority's device CA issued (a
    /// site's own PKI, `issue-cert`): nothing to renew here.
    NotEnrolled,
    /// Not yet: renewal is due at this time.
    NotDue { at: u64 },
    /// Past its end: only a new join token brings the machine back.
    Expired { at: u64 },
    /// Renewed: the new certificate.
    Renewed(Identity),
}

/// Largest child answer read.
const MAX_CHILD_ANSWER_BYTES: usize = 128 * 1024;

/// The sync timer's renewal: when the device certificate the config names
/// was issued by the authority's device CA and two thirds of its life
/// are over, a new key is made here, the helper (as `helper_user`) asks
/// for its certificate over mutual TLS with the current one, and the new
/// pair replaces the old ([`write_identity`]). Root only.
pub fn renew_if_due(config_path: &Path, config: &Config, now: u64) -> Result<Renewal, EnrollError> {
    let (Some(cert_path), Some(key_path)) = (&config.client_cert, &config.client_key) else {
        return Ok(Renewal::NoIdentity);
    };
    recover_identity(cert_path, key_path);
    let pem = std::fs::read_to_string(cert_path).map_err(|source| EnrollError::Io {
        path: cert_path.clone(),
        source,
    })?;
    let identity = first_certificate(&pem)
        .and_then(|der| describe(&der))
        .ok_or_else(|| {
            EnrollError::BadCertificate(format!("{} does not parse", cert_path.display()))
        })?;
    if identity.udid.is_empty() {
        return Ok(Renewal::NotEnrolled);
    }
    if now >= identity.not_after {
        return Ok(Renewal::Expired {
            at: identity.not_after,
        });
    }
    if now < identity.renew_at() {
        return Ok(Renewal::NotDue {
            at: identity.renew_at(),
        });
    }
    let (key_pem, csr) = make_key(&identity.name)?;
    let request = EnrollRequest {
        v: 1,
        token: None,
        csr,
        udid: identity.udid.clone(),
        name: identity.name.clone(),
    };
    let stdin = serde_json::to_vec(&request).map_err(|e| EnrollError::Malformed(e.to_string()))?;
    let config_arg = config_path.to_string_lossy();
    let output = authtoken_spawn::run_for_output(
        &config.helper,
        authtoken_core::trust::Rules::ROOT,
        &["renew-device", "--config", &config_arg],
        &stdin,
        MAX_CHILD_ANSWER_BYTES,
        EXCHANGE_TIMEOUT + Duration::from_secs(10),
    )
    .map_err(|e| EnrollError::Malformed(format!("the helper: {e}")))?;
    let answer = match serde_json::from_slice::<ChildAnswer>(&output) {
        Ok(ChildAnswer::Issued { answer, .. }) => answer,
        Ok(ChildAnswer::Failed(why)) => {
            return Err(EnrollError::Refused {
                url: "renewal".into(),
                status: 0,
                message: why,
            })
        }
        Err(e) => return Err(EnrollError::Malformed(e.to_string())),
    };
    let ca_path = config
        .ca_file
        .as_ref()
        .ok_or_else(|| EnrollError::BadCertificate("cannot be checked: no ca_file".into()))?;
    let ca_pem = std::fs::read_to_string(ca_path).map_err(|source| EnrollError::Io {
        path: ca_path.clone(),
        source,
    })?;
    let renewed = check_issued(&answer, &ca_pem, &key_pem, &identity.udid, now)?;
    write_identity(cert_path, key_path, &answer.certificate, &key_pem)?;
    Ok(Renewal::Renewed(renewed))
}
