//! A SCRAM client written here, step by step over one keep-alive HTTPS
//! connection from a chosen loopback source address: what the server
//! suites use to attack the server and to split a login over replicas.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use authtoken_protocol::mdm::{self, UserIdentity};
use authtoken_protocol::scram;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::{poll_until, Server, UDID};

/// A keep-alive HTTPS connection from a chosen loopback source address.
pub(crate) struct Client {
    pub(crate) stream: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
}

/// One HTTP reply.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u64>,
    pub(crate) body: Vec<u8>,
}

pub(crate) fn tls_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    tls_config_as(ca, None)
}

/// A client TLS config, presenting `identity` (certificate and key PEM
/// files: an enrolled device) when given.
pub(crate) fn tls_config_as(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    })
}

/// A TCP connection to `server` from `source`.
pub(crate) fn connect_from(source: [u8; 4], server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(IpAddr::from(source), 0).into())?;
    socket.connect_timeout(&server.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    Ok(stream)
}

impl Client {
    pub(crate) fn connect(
        source: [u8; 4],
        server: &Server,
        tls: &Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Client> {
        let tcp = connect_from(source, server.addr)?;
        let name = ServerName::IpAddress(server.addr.ip().into());
        let conn =
            rustls::ClientConnection::new(tls.clone(), name).map_err(std::io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        // Finish the handshake now, so a refused connection shows here.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Client {
            stream: BufReader::new(stream),
        })
    }

    pub(crate) fn put(&mut self, body: &[u8]) -> std::io::Result<Reply> {
        let head = format!(
            "PUT /checkin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
            mdm::CONTENT_TYPE,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        self.exchange(&request)
    }

    pub(crate) fn get(&mut self, path: &str) -> std::io::Result<Reply> {
        self.exchange(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
    }

    /// Sends one whole request and reads its reply.
    pub(crate) fn exchange(&mut self, request: &[u8]) -> std::io::Result<Reply> {
        let out = self.stream.get_mut();
        out.write_all(request)?;
        out.flush()?;
        let mut status_line = String::new();
        if self.stream.read_line(&mut status_line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(std::io::ErrorKind::InvalidData)?;
        let (mut length, mut retry_after) = (0usize, None);
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if let Some(v) = lower.strip_prefix("retry-after:") {
                retry_after = v.trim().parse().ok();
            }
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body)?;
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }
}

pub(crate) fn identity(user: &str) -> UserIdentity {
    UserIdentity {
        udid: UDID.into(),
        user_id: mdm::derive_user_id(UDID, user),
        short_name: user.into(),
        long_name: user.into(),
    }
}

pub(crate) fn field(reply: &Reply, key: &str) -> Option<String> {
    let dict = mdm::parse_dict(&reply.body, "reply").ok()?;
    dict.get(key)?.as_string().map(str::to_owned)
}

/// The first step: the DigestChallenge text.
pub(crate) fn challenge(client: &mut Client, user: &str) -> Reply {
    client
        .put(&mdm::request_body(&identity(user), None).unwrap())
        .unwrap()
}

/// The second step for `challenge_text`, with `password`.
pub(crate) fn respond(
    client: &mut Client,
    user: &str,
    password: &str,
    challenge_text: &str,
) -> (Reply, String) {
    // Over TLS the server offers SCRAM-SHA-256-PLUS; this client cannot
    // bind (plain ureq) and answers as such a client does, GS2 `n`.
    let fields = challenge_text
        .strip_prefix("SCRAM-SHA-256-PLUS ")
        .or_else(|| challenge_text.strip_prefix("SCRAM-SHA-256 "))
        .unwrap();
    let parsed = scram::parse_challenge(fields, 4096..=10_000_000).unwrap();
    let out = scram::client_final(
        user,
        password.as_bytes(),
        &parsed,
        &scram::new_cnonce().unwrap(),
    );
    let response = out.digest_response.to_string();
    let reply = client
        .put(&mdm::request_body(&identity(user), Some(&response)).unwrap())
        .unwrap();
    (reply, response)
}

/// A whole SCRAM login; true when a token came back.
pub(crate) fn scram_login(client: &mut Client, user: &str, password: &str) -> bool {
    let first = challenge(client, user);
    assert_eq!(first.status, 200);
    let text = field(&first, "DigestChallenge").unwrap();
    let (reply, _) = respond(client, user, password, &text);
    reply.status == 200 && field(&reply, "AuthToken").is_some_and(|t| !t.is_empty())
}

/// `GET PATH` on a server's `--metrics-listen`: the status and the reply.
pub(crate) fn metrics_listener_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The value of the metric lines that start with `line_start`, summed
/// (one line when it names every label), from `--metrics-listen`.
pub(crate) fn metric(addr: SocketAddr, line_start: &str) -> u64 {
    let (_, text) = metrics_listener_get(addr, "/metrics");
    // The sum over every series the prefix matches (one, given all labels).
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The metrics address a server printed.
pub(crate) fn metrics_addr(server: &Server) -> SocketAddr {
    poll_until(Duration::from_secs(10), || {
        server.lines().iter().find_map(|l| {
            l.split("metrics on http://")
                .nth(1)?
                .trim_end_matches("/metrics")
                .parse()
                .ok()
        })
    })
    .expect("the server printed its metrics address")
}
