//! HTTP(S) for the helper: rustls on ring (our own connector, `tls.rs`),
//! the configured trust anchors and client identity, no redirects, no
//! proxies, capped reply bodies, and every request bounded by the one
//! handshake deadline. One agent per handshake, and both steps on one
//! connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use authtoken_config::{Authority, Config};
use authtoken_core::trust::{self, Rules, TrustError};
use authtoken_protocol::transport::{Reply, Request, Transport, TransportFailure};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use ureq::tls::{Certificate, RootCerts};
use ureq::unversioned::transport::{Connector as _, TcpConnector};

use crate::tls::{BindingTls, Connections, Gate};

/// Largest reply body we read (docs/PROTOCOL.md: 64 KiB is ample).
pub const MAX_REPLY_BYTES: u64 = 64 * 1024;

/// Why a request, or setting up for one, failed. The text is safe to log.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Could not connect: refused, name not found, connect timeout, TLS
    /// handshake. The next authority may be tried.
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timeout")]
    Timeout,
    #[error("reply larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Http(String),
    #[error("bad request: {0}")]
    Request(String),
    #[error("{what} {source}")]
    File {
        what: &'static str,
        source: TrustError,
    },
    #[error("{what} {} holds no certificate", path.display())]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("client_key {} holds no private key", .0.display())]
    NoPrivateKey(PathBuf),
    #[error("no system root certificates found; set ca_file")]
    NoRoots,
    #[error("TLS setup: {0}")]
    TlsSetup(String),
}

impl From<ureq::Error> for TransportError {
    fn from(error: ureq::Error) -> Self {
        use std::io::ErrorKind;
        use ureq::Timeout;
        match error {
            ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(Timeout::Connect | Timeout::Resolve)
            | ureq::Error::Tls(_)
            | ureq::Error::Rustls(_) => TransportError::Connect(error.to_string()),
            ureq::Error::Io(ref e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionRefused
                        | ErrorKind::HostUnreachable
                        | ErrorKind::NetworkUnreachable
                        | ErrorKind::AddrNotAvailable
                ) =>
            {
                TransportError::Connect(error.to_string())
            }
            ureq::Error::Timeout(_) => TransportError::Timeout,
            ureq::Error::BodyExceedsLimit(limit) => TransportError::TooLarge(limit),
            other => TransportError::Http(other.to_string()),
        }
    }
}

/// Size of ureq's input and output buffers (and the longest reply head).
const IO_BUFFER_BYTES: usize = 16 * 1024;

/// ureq's resolver, except that an IP address in the URL is used as it
/// is. With a timeout set, the default resolver runs every lookup on a new
/// thread so it can give up on a slow DNS server, even for `127.0.0.1`;
/// that cost a thread start per request. A name still goes to it.
#[derive(Debug)]
struct LiteralAddresses(ureq::unversioned::resolver::DefaultResolver);

impl ureq::unversioned::resolver::Resolver for LiteralAddresses {
    fn resolve(
        &self,
        uri: &http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        if let Some(address) = literal_address(uri) {
            let mut addresses = self.empty();
            addresses.push(address);
            return Ok(addresses);
        }
        self.0.resolve(uri, config, timeout)
    }
}

/// The socket address of a URL whose host is an IP address.
fn literal_address(uri: &http::Uri) -> Option<std::net::SocketAddr> {
    let authority = uri.authority()?;
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: std::net::IpAddr = host.parse().ok()?;
    let port = match (authority.port_u16(), uri.scheme_str()) {
        (Some(port), _) => port,
        (None, Some("https")) => 443,
        (None, Some("http")) => 80,
        (None, _) => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

pub struct Http {
    agent: ureq::Agent,
    deadline: Instant,
    connections: Arc<Connections>,
}

impl Http {
    /// The plain-http rule was applied when the config was validated.
    pub fn new(config: &Config, deadline: Instant) -> Result<Http, TransportError> {
        Http::with_tls(
            client_tls_config(config)?,
            config.connect_timeout_ms,
            deadline,
        )
    }

    /// Over `tls` rather than the config's trust (enrollment: the pinned
    /// CA before there is a config to name it).
    pub fn with_tls(
        tls: Arc<rustls::ClientConfig>,
        connect_timeout_ms: u64,
        deadline: Instant,
    ) -> Result<Http, TransportError> {
        let connections = Arc::new(Connections::default());
        let tls = BindingTls {
            config: tls,
            connections: connections.clone(),
        };
        let config = ureq::Agent::config_builder()
            .proxy(None)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .http_status_as_error(false)
            .max_idle_connections_per_host(1)
            .timeout_connect(Some(std::time::Duration::from_millis(connect_timeout_ms)))
            .user_agent(concat!("authtoken-helper/", env!("CARGO_PKG_VERSION")))
            // Our exchanges are a few KiB: 128 KiB buffers (the default)
            // were two fresh allocations zeroed on every login.
            .input_buffer_size(IO_BUFFER_BYTES)
            .output_buffer_size(IO_BUFFER_BYTES)
            .max_response_header_size(IO_BUFFER_BYTES)
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            Gate(connections.clone())
                .chain(TcpConnector::default())
                .chain(tls),
            LiteralAddresses(ureq::unversioned::resolver::DefaultResolver::default()),
        );
        Ok(Http {
            agent,
            deadline,
            connections,
        })
    }

    /// What the connection the last request went on can bind a login to.
    pub fn channel_bindings(&self) -> Option<authtoken_protocol::channel_binding::Bindings> {
        self.connections.newest()
    }

    /// Every later request reuses the open connection or fails.
    pub fn hold_connection(&self) {
        self.connections.hold();
    }

    fn time_left(&self) -> Result<std::time::Duration, TransportError> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(TransportError::Timeout)
    }

    /// One request; `body` of `None` sends no body (GET).
    pub fn request(
        &self,
        method: &str,
        url: &str,
        authorization: Option<&str>,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Reply, TransportError> {
        let headers: Vec<(&str, &str)> = [
            content_type.map(|kind| ("Content-Type", kind)),
            authorization.map(|value| ("Authorization", value)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let reply = self.exchange(method, url, &headers, body, MAX_REPLY_BYTES)?;
        Ok(Reply {
            status: reply.status,
            body: reply.body,
        })
    }

    /// A `GET` whose reply may be up to `limit` bytes, with one optional
    /// request header (`If-None-Match`); the reply's `ETag` comes back.
    pub fn get(
        &self,
        url: &str,
        header: Option<(&str, &str)>,
        limit: u64,
    ) -> Result<FullReply, TransportError> {
        let headers: Vec<(&str, &str)> = header.into_iter().collect();
        self.exchange("GET", url, &headers, None, limit)
    }

    fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        limit: u64,
    ) -> Result<FullReply, TransportError> {
        let left = self.time_left()?;
        let mut request = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(body.unwrap_or_default())
            .map_err(|e| TransportError::Request(e.to_string()))?;
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(left))
            .build();
        let mut response = self.agent.run(request)?;
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("ETag")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let date = response
            .headers()
            .get("Date")
            .and_then(|value| value.to_str().ok())
            .and_then(|text| httpdate::parse_http_date(text).ok())
            .and_then(|when| when.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|since| since.as_secs());
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()?;
        Ok(FullReply {
            status,
            etag,
            date,
            body,
        })
    }
}

/// A reply with the headers callers read.
pub struct FullReply {
    pub status: u16,
    pub etag: Option<String>,
    /// The server's clock (`Date`), in Unix seconds.
    pub date: Option<u64>,
    pub body: Vec<u8>,
}

/// Largest PEM file read (a CA bundle of a few hundred certificates).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The certificates of a trusted PEM file (`what` names the config key).
fn read_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let pem = trust::read(path, Rules::ROOT, MAX_PEM_BYTES)
        .map_err(|source| TransportError::File { what, source })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TransportError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The certificates to trust: those of a trusted `ca_file`, else the
/// system's.
fn trusted_certificates(
    ca_file: Option<&Path>,
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    match ca_file {
        Some(path) => read_certificates(path, "ca_file"),
        None => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                return Err(TransportError::NoRoots);
            }
            Ok(found.certs)
        }
    }
}

/// The same roots for a plain ureq agent (what `authtoken-bench load`
/// trusts).
pub fn load_roots(ca_file: Option<&Path>) -> Result<RootCerts, TransportError> {
    let certs: Vec<Certificate<'static>> = trusted_certificates(ca_file)?
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    Ok(RootCerts::new_with_certs(&certs))
}

/// rustls on ring, TLS 1.2 and 1.3, trusting `roots` only, without a
/// client identity.
pub fn tls_trusting(
    roots: Vec<CertificateDer<'static>>,
) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let mut store = rustls::RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(roots);
    if added == 0 {
        return Err(TransportError::NoRoots);
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::TlsSetup(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth(),
    ))
}

/// rustls on ring, TLS 1.2 and 1.3, the configured roots and, when set,
/// the client identity.
fn client_tls_config(config: &Config) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let setup = |e: rustls::Error| TransportError::TlsSetup(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) =
        roots.add_parsable_certificates(trusted_certificates(config.ca_file.as_deref())?);
    if added == 0 {
        return Err(TransportError::NoRoots);
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(setup)?
    .with_root_certificates(roots);
    let tls = match (&config.client_cert, &config.client_key) {
        (Some(cert_path), Some(key_path)) => {
            let chain = read_certificates(cert_path, "client_cert")?;
            let key_pem =
                trust::read(key_path, Rules::ROOT_PRIVATE, MAX_PEM_BYTES).map_err(|source| {
                    TransportError::File {
                        what: "client_key",
                        source,
                    }
                })?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|_| TransportError::NoPrivateKey(key_path.clone()))?;
            builder.with_client_auth_cert(chain, key).map_err(setup)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(tls))
}

/// The configured authorities, tried in order: a connect-phase failure
/// moves on to the next one; an answer of any kind, or any later failure,
/// stays with the authority that gave it, and every later request of the
/// handshake goes to that one.
pub struct Authorities<'a> {
    http: &'a Http,
    urls: &'a [Authority],
    chosen: Option<usize>,
    /// The authorities passed over, and why (for debug lines).
    pub passed_over: Vec<String>,
}

impl<'a> Authorities<'a> {
    pub fn new(http: &'a Http, urls: &'a [Authority]) -> Self {
        Authorities {
            http,
            urls,
            chosen: None,
            passed_over: Vec::new(),
        }
    }

    /// The authority that answered, once one has.
    pub fn answered_by(&self) -> Option<&str> {
        self.chosen.map(|i| self.urls[i].as_str())
    }
}

/// Debug lines about the authorities passed over, and the one that answered.
pub fn report(authorities: &Authorities<'_>, step: &mut dyn FnMut(&str)) {
    for line in &authorities.passed_over {
        step(&format!("authority unreachable, tried the next: {line}"));
    }
    if let Some(url) = authorities.answered_by() {
        step(&format!("authority {url} answered"));
    }
}

impl Transport for Authorities<'_> {
    fn send(&mut self, request: &Request<'_>) -> Result<Reply, TransportFailure> {
        self.send_to_authority(request)
    }

    fn channel_bindings(&self) -> Option<authtoken_protocol::channel_binding::Bindings> {
        self.http.channel_bindings()
    }
}

impl Authorities<'_> {
    /// One request to `url` (plus `suffix`) of the chosen authority, or of
    /// the first that can be connected to.
    fn send_to_authority(&mut self, request: &Request<'_>) -> Result<Reply, TransportFailure> {
        let Request {
            method,
            path: suffix,
            content_type,
            authorization,
            body,
        } = *request;
        let target = |base: &str| match suffix {
            "" => base.to_owned(),
            _ => format!("{}{suffix}", base.trim_end_matches('/')),
        };
        if let Some(i) = self.chosen {
            return self
                .http
                .request(
                    method,
                    &target(self.urls[i].as_str()),
                    authorization,
                    content_type,
                    body,
                )
                .map_err(|e| TransportFailure::Failed(e.to_string()));
        }
        let failover = first_answering(self.urls, |base| {
            self.http.request(
                method,
                &target(base.as_str()),
                authorization,
                content_type,
                body,
            )
        });
        self.passed_over = failover.passed_over;
        match failover.answer {
            Some((i, result)) => {
                self.chosen = Some(i);
                // The rest of the handshake goes on this connection.
                self.http.hold_connection();
                result.map_err(|e| TransportFailure::Failed(e.to_string()))
            }
            None => Err(TransportFailure::Unreachable(failover_unreachable(
                &self.passed_over,
            ))),
        }
    }
}

/// `503` (a replica whose database is away) and `429` (the account's
/// guessing budget at the authority is spent): the authority is there but
/// says it cannot serve this now. Both, to the first request, are
/// unavailable, and the client falls through to the next authority or, for
/// a login, to offline login (the invariant in ../shared/PROTOCOL.md), which
/// has its own lockout. To a later step of a login they are final like any
/// answer there: the proof has gone to that authority.
fn cannot_serve_now(status: u16) -> bool {
    matches!(status, 429 | 503)
}

/// A reply's HTTP status, for the failover rule.
pub trait Answered {
    fn status(&self) -> u16;
}

impl Answered for Reply {
    fn status(&self) -> u16 {
        self.status
    }
}

impl Answered for FullReply {
    fn status(&self) -> u16 {
        self.status
    }
}

/// What trying the authorities in order came to.
pub struct Failover<T> {
    /// The authorities passed over (could not be connected to, or said
    /// they cannot serve now), and why.
    pub passed_over: Vec<String>,
    /// The first that answered (its index in the list) and its answer.
    pub answer: Option<(usize, Result<T, TransportError>)>,
}

/// The failover rule (docs/PROTOCOL.md): `attempt` on each authority in
/// order; a connect-phase failure, or a reply that says the authority
/// cannot serve now, moves on to the next; anything else is that
/// authority's answer. Logins, the directory fetch and the renewal use it.
pub fn first_answering<T: Answered>(
    urls: &[Authority],
    mut attempt: impl FnMut(&Authority) -> Result<T, TransportError>,
) -> Failover<T> {
    let mut passed_over = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        match attempt(url) {
            Err(TransportError::Connect(why)) => passed_over.push(format!("{url}: {why}")),
            Ok(reply) if cannot_serve_now(reply.status()) => {
                passed_over.push(format!("{url}: answered {}", reply.status()))
            }
            result => {
                return Failover {
                    passed_over,
                    answer: Some((i, result)),
                }
            }
        }
    }
    Failover {
        passed_over,
        answer: None,
    }
}

/// The reason when no authority could be connected to.
pub fn failover_unreachable(passed_over: &[String]) -> String {
    format!("no authority reachable ({})", passed_over.join("; "))
}

#[cfg(test)]
mod tests {
    use super::{first_answering, literal_address, Authority, Reply, TransportError};

    /// The failover rule by itself: what each authority in turn "says".
    fn fail_over(says: &[Result<u16, &str>]) -> (Vec<String>, Option<(usize, u16)>) {
        let urls: Vec<Authority> = (0..says.len())
            .map(|i| Authority::parse(&format!("https://a{i}.example/checkin")).unwrap())
            .collect();
        let mut turn = says.iter();
        let failover = first_answering(&urls, |_| match turn.next().unwrap() {
            Ok(status) => Ok(Reply {
                status: *status,
                body: Vec::new(),
            }),
            Err(why) => Err(TransportError::Connect((*why).to_owned())),
        });
        let answer = failover
            .answer
            .map(|(i, reply)| (i, reply.map_or(0, |r| r.status)));
        (failover.passed_over, answer)
    }

    #[test]
    fn an_authority_that_cannot_serve_now_is_passed_over_like_an_unreachable_one() {
        let (passed, answer) = fail_over(&[Err("refused"), Ok(503), Ok(429), Ok(200)]);
        assert_eq!(answer, Some((3, 200)));
        assert_eq!(
            passed,
            [
                "https://a0.example/checkin: refused",
                "https://a1.example/checkin: answered 503",
                "https://a2.example/checkin: answered 429",
            ]
        );
        // Every other answer is final, however bad.
        for status in [500, 502, 410, 401, 404] {
            assert_eq!(fail_over(&[Ok(status), Ok(200)]).1, Some((0, status)));
        }
        let (passed, answer) = fail_over(&[Ok(503), Ok(429)]);
        assert_eq!((passed.len(), answer), (2, None), "none left: unreachable");
    }

    #[test]
    fn ip_literals_resolve_without_a_lookup_and_names_do_not() {
        let at = |url: &str| literal_address(&url.parse().unwrap()).map(|a| a.to_string());
        assert_eq!(
            at("https://127.0.0.1:8443/checkin").as_deref(),
            Some("127.0.0.1:8443")
        );
        assert_eq!(
            at("https://127.0.0.1/checkin").as_deref(),
            Some("127.0.0.1:443")
        );
        assert_eq!(at("http://[::1]:80/").as_deref(), Some("[::1]:80"));
        assert_eq!(at("https://[fe80::1]/").as_deref(), Some("[fe80::1]:443"));
        assert_eq!(at("https://mdm.example.com/checkin"), None);
        assert_eq!(at("https://127.0.0.1.example.com/"), None);
    }
}
