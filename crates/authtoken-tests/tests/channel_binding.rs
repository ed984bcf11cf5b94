//! SCRAM-SHA-256-PLUS through the real libpam against the real server
//! (issue 26, docs/PROTOCOL.md "Channel binding"): a TLS-terminating relay
//! whose certificate the client trusts passes every byte through and still
//! gets no login unless the client turned binding off; a proxy that
//! rewrites the PLUS offer to the plain scheme is caught by the GS2 `y`
//! flag; a connection that drops between the two steps fails the login.
//! The `tls-server-end-point` path is also checked against an independent
//! SCRAM implementation, Python's `scramp` (tests/peers/scramp_client.py).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const RIGHT: &str = "correct horse";
/// How long a relay thread lives, at most.
const RELAY_LIFETIME: Duration = Duration::from_secs(30);

/// What the relay does besides passing bytes through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Relaying {
    /// Forward as is.
    Plain,
    /// Rewrite the authority's `SCRAM-SHA-256-PLUS` offer to the plain
    /// scheme (a downgrade).
    Downgrade,
}

/// A TLS-terminating relay on 127.0.0.1: its own certificate towards the
/// client, a second TLS connection to the real server, HTTP/1.1 messages
/// passed through one at a time.
struct Relay {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn server_tls(
    cert: &Path,
    key: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ServerConfig> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    )
}

fn client_tls(
    ca: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

impl Relay {
    /// Presents `cert`/`key` to the client over `versions`, and reaches
    /// `upstream` over the same versions, trusting `upstream_ca`.
    fn start(
        cert: &Path,
        key: &Path,
        upstream: SocketAddr,
        upstream_ca: &Path,
        versions: &'static [&'static rustls::SupportedProtocolVersion],
        relaying: Relaying,
    ) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let inward = server_tls(cert, key, versions);
        let outward = client_tls(upstream_ca, versions);
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (connections.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let ends = Instant::now() + RELAY_LIFETIME;
            while !stopped.load(Ordering::SeqCst) && Instant::now() < ends {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = relay_one(client, &inward, &outward, upstream, relaying);
            }
        });
        Relay {
            addr,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("https://{}/checkin", self.addr)
    }

    /// Stops the relay and returns how many connections it took.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.connections.load(Ordering::SeqCst)
    }
}

/// One client connection: each request to the server, each answer back.
fn relay_one(
    client: TcpStream,
    inward: &Arc<rustls::ServerConfig>,
    outward: &Arc<rustls::ClientConfig>,
    upstream: SocketAddr,
    relaying: Relaying,
) -> Option<()> {
    client.set_nonblocking(false).ok()?;
    client.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut client =
        rustls::StreamOwned::new(rustls::ServerConnection::new(inward.clone()).ok()?, client);
    let server = TcpStream::connect(upstream).ok()?;
    server.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let name = ServerName::try_from("127.0.0.1").ok()?;
    let mut server = rustls::StreamOwned::new(
        rustls::ClientConnection::new(outward.clone(), name).ok()?,
        server,
    );
    for _ in 0..8 {
        let request = read_message(&mut client)?;
        server.write_all(&request).ok()?;
        let mut answer = read_message(&mut server)?;
        if relaying == Relaying::Downgrade {
            answer = downgrade(&answer);
        }
        client.write_all(&answer).ok()?;
    }
    None
}

/// One HTTP/1.1 message (head, and a body of its `Content-Length`).
fn read_message(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        head.extend_from_slice(line.as_bytes());
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    // Nothing of a second message was read ahead: the peer waits for
    // the answer before it sends again.
    head.extend_from_slice(&body);
    Some(head)
}

/// The answer with a PLUS offer rewritten to the plain scheme, its
/// `Content-Length` fixed.
fn downgrade(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return message.to_vec();
    };
    let body = body.replace("SCRAM-SHA-256-PLUS ", "SCRAM-SHA-256 ");
    let head: Vec<String> = head
        .lines()
        .map(|line| {
            if line.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {}", body.len())
            } else {
                line.to_owned()
            }
        })
        .collect();
    format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes()
}

/// A workspace with alice, the real server, and a second CA for the relay.
struct Site {
    ws: Workspace,
    server: Server,
    /// Both CAs: what a client that trusts the relay's certificate holds.
    both_cas: PathBuf,
}

impl Site {
    fn new() -> Site {
        let ws = Workspace::new();
        ws.add_user("alice", Some(RIGHT), &[]);
        let server = Server::start(&ws, &[]);
        ws.gen_tls("relay");
        let both_cas = ws.path("both-cas.pem");
        let joined = [
            std::fs::read_to_string(ws.path("tls/ca.pem")).unwrap(),
            std::fs::read_to_string(ws.path("relay/ca.pem")).unwrap(),
        ]
        .concat();
        std::fs::write(&both_cas, joined).unwrap();
        Site {
            ws,
            server,
            both_cas,
        }
    }

    /// A stack for `url`, trusting both CAs, with `channel_binding = mode`.
    fn stack(&self, url: &str, mode: &str) -> PathBuf {
        let config = self
            .ws
            .config_for(url, &format!("channel_binding = \"{mode}\""));
        let body = std::fs::read_to_string(&config).unwrap().replace(
            &self.ws.path("tls/ca.pem").display().to_string(),
            &self.both_cas.display().to_string(),
        );
        self.ws
            .simple_stack(&self.ws.write_config("authtoken.toml", &body))
    }

    fn relay(
        &self,
        cert: &str,
        versions: &'static [&'static rustls::SupportedProtocolVersion],
        relaying: Relaying,
    ) -> Relay {
        Relay::start(
            &self.ws.path(&format!("{cert}.pem")),
            &self.ws.path(&format!("{cert}.key")),
            self.server.addr,
            &self.ws.path("tls/ca.pem"),
            versions,
            relaying,
        )
    }

    /// Server log lines with `needle`.
    fn logged(&self, needle: &str) -> usize {
        self.server
            .lines()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }
}

const MODES: [&str; 3] = ["prefer", "require", "off"];

#[test]
fn direct_logins_succeed_in_every_mode() {
    let site = Site::new();
    for mode in MODES {
        let confdir = site.stack(&site.server.url(), mode);
        assert_eq!(login(&confdir, "alice", RIGHT), PAM_SUCCESS, "{mode}");
        assert_eq!(login(&confdir, "alice", "wrong"), PAM_AUTH_ERR, "{mode}");
    }
    assert_eq!(site.logged("outcome=token"), 3);
    assert_eq!(site.logged("(a relay)"), 0);
}

/// The attack: a relay with a certificate the client trusts passes the
/// right password's exchange through. Bound, the server sees a binding of
/// another connection and refuses; unbound (`off`), the relay's operator
/// walks away with alice's token.
#[test]
fn a_relay_with_a_trusted_certificate_gets_no_login_unless_binding_is_off() {
    let site = Site::new();
    for (versions, kind) in [(TLS13, "tls-exporter"), (TLS12, "tls-server-end-point")] {
        for mode in MODES {
            let relay = site.relay("relay/server", versions, Relaying::Plain);
            let confdir = site.stack(&relay.url(), mode);
            let refused_before = site.logged("(a relay)");
            let code = login(&confdir, "alice", RIGHT);
            assert_eq!(relay.finish(), 1, "{kind} {mode}: one connection");
            if mode == "off" {
                assert_eq!(code, PAM_SUCCESS, "{kind}: the attack works unbound");
            } else {
                assert!(
                    code == PAM_AUTH_ERR || code == PAM_AUTHINFO_UNAVAIL,
                    "{kind} {mode}: {code}"
                );
                assert_eq!(
                    site.logged("(a relay)"),
                    refused_before + 1,
                    "{kind} {mode}: refused for the binding"
                );
            }
        }
    }
    assert_eq!(
        site.logged("outcome=token"),
        2,
        "only the two unbound logins"
    );
    assert_eq!(
        site.logged("budget=spent"),
        0,
        "a refused binding is not a guess"
    );
}

/// A CA signing with Ed25519 and a leaf for 127.0.0.1 under it: RFC 5929
/// names no hash for that signature, so a TLS 1.2 connection presenting
/// the leaf has no binding at all (no exporter, no end-point). Writes
/// `NAME/ca.pem`, `NAME/server.pem` and `NAME/server.key`.
fn unbindable_certificate(ws: &Workspace, name: &str) -> PathBuf {
    let dir = ws.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("server.key"), leaf_key.serialize_pem()).unwrap();
    dir
}

/// Issue 35: a relay whose own connection to the client can bind to
/// nothing (TLS 1.2, a leaf signed with Ed25519) leaves the client no
/// binding to send, so before the fix it sent `n` and the authority took
/// it. But the authority offered PLUS: it could bind on its connection, so
/// a client that cannot is not on that connection. Under `prefer` (the
/// default) and `require` that is unavailable before the response goes
/// out; only `off` signs in.
#[test]
fn a_relay_that_cannot_bind_gets_no_login_unless_binding_is_off() {
    let site = Site::new();
    let unbindable = unbindable_certificate(&site.ws, "ed25519");
    let trusted = std::fs::read_to_string(&site.both_cas).unwrap()
        + &std::fs::read_to_string(unbindable.join("ca.pem")).unwrap();
    std::fs::write(&site.both_cas, trusted).unwrap();
    for mode in MODES {
        let relay = site.relay("ed25519/server", TLS12, Relaying::Plain);
        let confdir = site.stack(&relay.url(), mode);
        let requests_before = site.server.requests_for("alice");
        let code = login(&confdir, "alice", RIGHT);
        assert_eq!(relay.finish(), 1, "{mode}: one connection");
        let requests = site.server.requests_for("alice") - requests_before;
        if mode == "off" {
            assert_eq!(code, PAM_SUCCESS, "the attack works unbound");
            assert_eq!(requests, 2);
        } else {
            assert_eq!(code, PAM_AUTHINFO_UNAVAIL, "{mode}");
            assert_eq!(requests, 1, "{mode}: no DigestResponse went out");
        }
    }
    // The reason, as the administrator reads it.
    let relay = site.relay("ed25519/server", TLS12, Relaying::Plain);
    let confdir = site.stack(&relay.url(), "prefer");
    let config = confdir.parent().unwrap().join("authtoken.toml");
    let out = output_with_input(
        std::process::Command::new(CLI)
            .args(["login", "alice", "--config"])
            .arg(&config),
        format!("{RIGHT}\n").as_bytes(),
    )
    .unwrap();
    relay.finish();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("a relay may stand between"), "{said}");
    assert_eq!(
        site.logged("outcome=token"),
        1,
        "only the login with binding off"
    );
}

/// `tls-server-end-point` binds to the certificate, not the connection: a
/// TLS 1.2 terminator holding the server's own key and certificate (a load
/// balancer) passes, and the two sides agree on the hash; with TLS 1.3 the
/// exporter is the connection's own and the same terminator is refused.
#[test]
fn end_point_binding_follows_the_certificate_and_the_exporter_the_connection() {
    let site = Site::new();
    let terminator = site.relay("tls/server", TLS12, Relaying::Plain);
    let confdir = site.stack(&terminator.url(), "require");
    assert_eq!(login(&confdir, "alice", RIGHT), PAM_SUCCESS);
    assert_eq!(terminator.finish(), 1);
    let terminator = site.relay("tls/server", TLS13, Relaying::Plain);
    let confdir = site.stack(&terminator.url(), "require");
    assert_eq!(login(&confdir, "alice", RIGHT), PAM_AUTH_ERR);
    assert_eq!(terminator.finish(), 1);
    assert_eq!(site.logged("(a relay)"), 1);
}

/// A proxy that rewrites the PLUS offer to the plain scheme: the client
/// (`prefer`) answers with the GS2 flag `y`, which the server refuses;
/// under `require` the client refuses the plain challenge itself.
#[test]
fn a_downgraded_offer_is_refused() {
    let site = Site::new();
    let relay = site.relay("relay/server", TLS13, Relaying::Downgrade);
    let confdir = site.stack(&relay.url(), "prefer");
    assert_eq!(login(&confdir, "alice", RIGHT), PAM_AUTH_ERR);
    assert_eq!(relay.finish(), 1);
    assert_eq!(
        site.logged("where SCRAM-SHA-256-PLUS was offered (a downgrade)"),
        1
    );

    let relay = site.relay("relay/server", TLS13, Relaying::Downgrade);
    let confdir = site.stack(&relay.url(), "require");
    assert_eq!(login(&confdir, "alice", RIGHT), PAM_AUTHINFO_UNAVAIL);
    assert_eq!(relay.finish(), 1);
    assert_eq!(
        site.server.requests_for("alice"),
        3,
        "no DigestResponse sent"
    );
    assert_eq!(site.logged("outcome=token"), 0);
}

/// Both steps on one connection: an authority (here a fake on plain http)
/// that closes the connection after the challenge gets no second request
/// on another; the login is unavailable.
#[test]
fn a_connection_dropped_between_the_steps_fails_the_login() {
    let ws = Workspace::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/checkin", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let accepted = std::thread::spawn(move || {
        let ends = Instant::now() + Duration::from_secs(15);
        // The challenge, and the connection closed after it.
        let first = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(_) if Instant::now() >= ends => return 0,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        first.set_nonblocking(false).unwrap();
        if let Some(mut stream) = read_http_request(first) {
            let _ = stream.write_all(&plist_reply(&[(
                "DigestChallenge",
                "SCRAM-SHA-256 r=snonce,s=c2FsdHNhbHQ=,i=4096",
            )]));
        }
        // Then 2 s in which a second connection would be taken.
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if listener.accept().is_ok() {
                return 2;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        1
    });
    let confdir = ws.simple_stack(&ws.config_for(&url, "allow_insecure_http = true"));
    assert_eq!(login(&confdir, "alice", RIGHT), PAM_AUTHINFO_UNAVAIL);
    // The listener would have taken a second connection in those 2 s.
    assert_eq!(accepted.join().unwrap(), 1, "no second connection");
}

/// Python's `scramp` (an independent SCRAM implementation) as the client,
/// binding to `tls-server-end-point` of the real server over TLS 1.2 and
/// 1.3: the server accepts its proof and `scramp` accepts the server's
/// signature; a wrong password and a binding of another certificate are
/// refused.
#[test]
fn scramp_binds_to_the_server_end_point() {
    let python = scramp_python().expect("scramp is installed by scripts/deps.sh");
    let site = Site::new();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/peers/scramp_client.py"
    );
    let run = |version: &str, password: &str, cert: &Path| {
        let mut command = std::process::Command::new(&python);
        command
            .arg(script)
            .arg(site.server.addr.to_string())
            .arg(site.ws.path("tls/ca.pem"))
            .arg(version)
            .arg("alice")
            .arg(cert)
            .arg(UDID);
        let out = output_with_input(&mut command, password.as_bytes()).unwrap();
        (
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let own = site.ws.path("tls/server.pem");
    let other = site.ws.path("relay/server.pem");
    for version in ["1.2", "1.3"] {
        let (said, errors) = run(version, RIGHT, &own);
        assert_eq!(
            said, "token, server signature verified by scramp",
            "{version}: {errors}"
        );
        let (said, errors) = run(version, "wrong", &own);
        assert_eq!(said, "rejected", "{version}: {errors}");
        let (said, errors) = run(version, RIGHT, &other);
        assert_eq!(said, "rejected", "{version}: {errors}");
    }
    assert_eq!(site.logged("outcome=token"), 2);
    assert_eq!(site.logged("(a relay)"), 2);
}

/// The PLUS and `y` vectors of docs/PROTOCOL.md, as the protocol crate's
/// unit tests hold them, are what scramp computes from the same inputs.
#[test]
fn the_vectors_are_scramps() {
    use authtoken_protocol::scram::vector::*;
    let python = scramp_python().expect("scramp is installed by scripts/deps.sh");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/peers/scram_vectors.py"
    );
    let out = std::process::Command::new(python)
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = [
        ("p=tls-exporter,,", EXPORTER_RESPONSE, EXPORTER_SIGNATURE),
        (
            "p=tls-server-end-point,,",
            END_POINT_RESPONSE,
            END_POINT_SIGNATURE,
        ),
        ("y,,", FLAG_Y_RESPONSE, FLAG_Y_SIGNATURE),
    ]
    .map(|(header, response, signature)| format!("{header} {response} {signature}"));
    let computed: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(computed, expected);
}

/// The Python with `scramp`, as scripts/deps.sh installs it.
fn scramp_python() -> Option<PathBuf> {
    let python = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/scramp/bin/python3"
    ))
    .to_path_buf();
    python.exists().then_some(python)
}
