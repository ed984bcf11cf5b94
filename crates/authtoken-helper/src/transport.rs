//! HTTP(S) for the helper: rustls on ring, the configured trust anchors and
//! client identity, no redirects, no proxies, capped reply bodies, and every
//! request bounded by the one handshake deadline. One agent per handshake so
//! both steps reuse one connection.

use std::path::Path;
use std::time::Instant;

use authtoken_core::config::Config;
use authtoken_core::trust::{self, Rules};
use authtoken_protocol::mdm::{CheckinTransport, Reply};
use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig, TlsProvider};

/// Largest reply body we read (PROTOCOL.md: 64 KiB is ample).
pub const MAX_REPLY_BYTES: u64 = 64 * 1024;

pub struct Http {
    agent: ureq::Agent,
    deadline: Instant,
}

impl Http {
    /// The plain-http rule was applied when the config was validated.
    pub fn new(config: &Config, deadline: Instant) -> Result<Http, String> {
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(load_roots(config.ca_file.as_deref())?)
            .client_cert(load_client_cert(config)?)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(None)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .http_status_as_error(false)
            .max_idle_connections_per_host(1)
            .user_agent(concat!("authtoken-helper/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Http { agent, deadline })
    }

    fn time_left(&self) -> Result<std::time::Duration, String> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| "timeout".to_owned())
    }

    /// One request; `body` of `None` sends no body (GET).
    pub fn request(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Reply, String> {
        let left = self.time_left()?;
        let request = http::Request::builder().method(method).uri(url);
        let request = match content_type {
            Some(kind) => request.header("Content-Type", kind),
            None => request,
        };
        let request = request
            .body(body.unwrap_or_default())
            .map_err(|e| format!("bad request: {e}"))?;
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(left))
            .build();
        let mut response = self.agent.run(request).map_err(describe)?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .read_to_vec()
            .map_err(describe)?;
        Ok(Reply { status, body })
    }
}

/// Transport errors as log-safe text.
fn describe(error: ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => "timeout".into(),
        ureq::Error::BodyExceedsLimit(_) => format!("reply larger than {MAX_REPLY_BYTES} bytes"),
        other => other.to_string(),
    }
}

/// Largest PEM file read (a CA bundle of a few hundred certificates).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The certificates of a trusted PEM file (`what` names the config key).
fn read_certificates(path: &Path, what: &str) -> Result<Vec<Certificate<'static>>, String> {
    let pem = trust::read(path, Rules::ROOT, MAX_PEM_BYTES).map_err(|e| format!("{what} {e}"))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("{what} {} holds no certificate", path.display()));
    }
    Ok(certs)
}

fn load_roots(ca_file: Option<&Path>) -> Result<RootCerts, String> {
    let certs = match ca_file {
        Some(path) => read_certificates(path, "ca_file")?,
        None => {
            let found = rustls_native_certs::load_native_certs();
            let certs: Vec<_> = found
                .certs
                .iter()
                .map(|der| Certificate::from_der(der.as_ref()).to_owned())
                .collect();
            if certs.is_empty() {
                return Err("no system root certificates found; set ca_file".into());
            }
            certs
        }
    };
    Ok(RootCerts::new_with_certs(&certs))
}

fn load_client_cert(config: &Config) -> Result<Option<ClientCert>, String> {
    let (Some(cert_path), Some(key_path)) = (&config.client_cert, &config.client_key) else {
        return Ok(None);
    };
    let chain = read_certificates(cert_path, "client_cert")?;
    let key_pem = trust::read(key_path, Rules::ROOT_PRIVATE, MAX_PEM_BYTES)
        .map_err(|e| format!("client_key {e}"))?;
    let key = ureq::tls::parse_pem(&key_pem)
        .find_map(|item| match item {
            Ok(PemItem::PrivateKey(key)) => Some(key),
            _ => None,
        })
        .ok_or_else(|| format!("client_key {} holds no private key", key_path.display()))?;
    Ok(Some(ClientCert::new_with_certs(&chain, key)))
}

/// The MDM check-in endpoint over [`Http`].
pub struct CheckinEndpoint<'a> {
    pub http: &'a Http,
    pub url: &'a str,
}

impl CheckinTransport for CheckinEndpoint<'_> {
    fn put(&mut self, body: &[u8]) -> Result<Reply, String> {
        self.http.request(
            "PUT",
            self.url,
            Some(authtoken_protocol::mdm::CONTENT_TYPE),
            Some(body),
        )
    }
}
