//! TLS for the reference server: loading its identity, optional client-CA
//! for mutual TLS, and `gen-tls` to make a small private CA for a site or a
//! test.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use authtoken_protocol::channel_binding::server_end_point;

use crate::error::ServerError;
use crate::files::{read_private, write_private, write_public};
use crate::proto::scram::EndPoint;

/// The server's TLS: its rustls config, and the RFC 5929
/// `tls-server-end-point` of the certificate it presents (`None` when the
/// certificate's signature algorithm names no hash, e.g. Ed25519: then
/// only TLS 1.3's exporter can bind a login).
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub end_point: Option<EndPoint>,
}

pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    client_cert_optional: bool,
) -> Result<ServerTls, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(cert, e))?;
    let end_point = chain
        .first()
        .and_then(|leaf| server_end_point(leaf.as_ref()))
        .and_then(|hash| EndPoint::new(&hash));
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| pem_error(path, e))? {
                roots
                    .add(cert.map_err(|e| pem_error(path, e))?)
                    .map_err(|e| ServerError::Tls(format!("{}: {e}", path.display())))?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if client_cert_optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| ServerError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        end_point,
    })
}

fn pem_error(path: &Path, error: rustls::pki_types::pem::Error) -> ServerError {
    ServerError::Tls(format!("{}: {error}", path.display()))
}

/// The CA's name; `issue-cert` rebuilds the issuer from it and the kept key.
const CA_NAME: &str = "authtoken-server CA";
/// How long the CA is valid.
const CA_DAYS: i64 = 3650;
/// How long server and client certificates are valid (what browsers and
/// Apple platforms accept for a leaf).
pub const LEAF_DAYS: i64 = 825;

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// A server certificate for the names given.
    Server,
    /// A device (client) identity for mutual TLS.
    Client,
}

fn tls_error(e: rcgen::Error) -> ServerError {
    ServerError::Tls(e.to_string())
}

/// `not_before` a day ago (clock skew), `not_after` `days` from now.
fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// The CA kept in `dir` (made by [`generate`]): its name and key.
fn load_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>, ServerError> {
    let key_path = dir.join("ca.key");
    let pem = read_private(&key_path)?;
    let key = KeyPair::from_pem(&pem).map_err(tls_error)?;
    Ok(Issuer::new(ca_params(), key))
}

/// Issues a certificate of `role` for `names` under the CA in `dir`, and
/// writes `<name>.pem` and `<name>.key` there. Returns the files written.
pub fn issue(
    dir: &Path,
    role: Role,
    names: &[String],
    file_name: &str,
) -> Result<Vec<PathBuf>, ServerError> {
    let ca = load_ca(dir)?;
    issue_with(&ca, dir, role, names, file_name)
}

fn issue_with(
    ca: &Issuer<'_, KeyPair>,
    dir: &Path,
    role: Role,
    names: &[String],
    file_name: &str,
) -> Result<Vec<PathBuf>, ServerError> {
    let (mut params, common_name, usage) = match role {
        Role::Server => (
            CertificateParams::new(names.to_vec()).map_err(tls_error)?,
            names
                .first()
                .cloned()
                .unwrap_or_else(|| "authtoken-server".into()),
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        Role::Client => (
            CertificateParams::default(),
            names
                .first()
                .cloned()
                .unwrap_or_else(|| "authtoken device".into()),
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    };
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    validity(&mut params, LEAF_DAYS);
    let key = KeyPair::generate().map_err(tls_error)?;
    let cert = params.signed_by(&key, ca).map_err(tls_error)?;
    let pem = dir.join(format!("{file_name}.pem"));
    let key_path = dir.join(format!("{file_name}.key"));
    write_public(&pem, &cert.pem())?;
    write_private(&key_path, &key.serialize_pem())?;
    Ok(vec![pem, key_path])
}

/// Writes a new CA (`ca.pem`, and `ca.key` kept 0600 for `issue-cert`), a
/// server certificate for `hosts` (`server.pem`/`server.key`), a device
/// identity (`client.pem`/`client.key`) and the device-issuing CA for
/// enrollment (`device-ca.pem`/`device-ca.key`) into `dir`. An existing CA is only
/// replaced with `force`: every certificate it issued would stop working.
pub fn generate(dir: &Path, hosts: &[String], force: bool) -> Result<Vec<PathBuf>, ServerError> {
    let ca_pem = dir.join("ca.pem");
    if !force && (ca_pem.exists() || dir.join("ca.key").exists()) {
        return Err(ServerError::Config(format!(
            "{} already holds a CA; use issue-cert to add certificates, or --force to replace \
             it (clients trusting the old CA will refuse this server)",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(ServerError::io(dir))?;
    let mut params = ca_params();
    validity(&mut params, CA_DAYS);
    let ca_key = KeyPair::generate().map_err(tls_error)?;
    let ca_cert = params.self_signed(&ca_key).map_err(tls_error)?;
    let ca_key_path = dir.join("ca.key");
    write_private(&ca_key_path, &ca_key.serialize_pem())?;
    write_public(&ca_pem, &ca_cert.pem())?;
    let ca = Issuer::new(ca_params(), ca_key);
    let mut written = vec![ca_pem, ca_key_path];
    written.extend(issue_with(&ca, dir, Role::Server, hosts, "server")?);
    written.extend(issue_with(&ca, dir, Role::Client, &[], "client")?);
    written.extend(generate_device_ca(dir, true)?);
    Ok(written)
}

/// Makes the device-issuing CA in `dir` from the root CA there
/// (`device-ca.pem`, and `device-ca.key`, private to the owner of the
/// directory: the server's account, which signs device certificates with
/// it). The root's key is read here, by root, and nowhere near the
/// network. An existing device CA is only replaced with `force`.
pub fn generate_device_ca(dir: &Path, force: bool) -> Result<Vec<PathBuf>, ServerError> {
    let pem = dir.join("device-ca.pem");
    let key_path = dir.join("device-ca.key");
    if !force && (pem.exists() || key_path.exists()) {
        return Err(ServerError::Config(format!(
            "{} already holds a device CA; --force replaces it (devices it issued keep working \
             until they expire, under the same root)",
            dir.display()
        )));
    }
    let root = load_ca(dir)?;
    let mut params = crate::enrollment::device_ca_params();
    validity(&mut params, CA_DAYS);
    let key = KeyPair::generate().map_err(tls_error)?;
    let cert = params.signed_by(&key, &root).map_err(tls_error)?;
    write_private(&key_path, &key.serialize_pem())?;
    write_public(&pem, &cert.pem())?;
    Ok(vec![pem, key_path])
}

/// What `serve --enroll-dir DIR` signs with: the device CA of `dir`, and
/// the root CA's certificate that joining machines pin.
pub fn enroll_from(dir: &Path, days: u32) -> Result<crate::authority::Enroll, ServerError> {
    let root_path = dir.join("ca.pem");
    let root_pem = std::fs::read_to_string(&root_path).map_err(ServerError::io(&root_path))?;
    let cert_path = dir.join("device-ca.pem");
    let certificate = std::fs::read_to_string(&cert_path).map_err(ServerError::io(&cert_path))?;
    let key = read_private(&dir.join("device-ca.key"))?;
    let device_ca = crate::enrollment::DeviceCa::new(&certificate, &key, days)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", dir.display())))?;
    Ok(crate::authority::Enroll {
        device_ca,
        root_pem,
    })
}

/// The SHA-256 of the first certificate in the PEM file at `path`: the
/// fingerprint `authtoken join --ca-fingerprint` pins.
pub fn fingerprint(path: &Path) -> Result<String, ServerError> {
    let cert = CertificateDer::from_pem_file(path).map_err(|e| pem_error(path, e))?;
    Ok(crate::files::sha256_hex(cert.as_ref()))
}

/// The names a server certificate gets when none are given: this machine's
/// name as well as the loopback names, since the server usually listens on
/// more than loopback.
pub fn default_hosts() -> Vec<String> {
    let mut hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() && name != "localhost" {
            hosts.insert(0, name.to_owned());
        }
    }
    hosts
}
