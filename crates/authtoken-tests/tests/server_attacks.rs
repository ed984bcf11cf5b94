//! The reference server under attack: the real `authtoken-server` on
//! 127.0.0.1, attacked over TLS from other loopback addresses (client
//! sockets bound to 127.0.0.2 before connecting), while real users sign in
//! from elsewhere — through a SCRAM client written here from 127.0.0.3, and
//! through the real module in libpam (from 127.0.0.1). Every loop is bounded
//! in count and in time.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authtoken_protocol::mdm::{self, UserIdentity};
use authtoken_protocol::scram;
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const ATTACKER: [u8; 4] = [127, 0, 0, 2];
const USER_ELSEWHERE: [u8; 4] = [127, 0, 0, 3];
const PASSWORD: &str = "alice's own";

/// A keep-alive HTTPS connection from a chosen loopback source address.
struct Client {
    stream: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
}

/// One HTTP reply.
struct Reply {
    status: u16,
    retry_after: Option<u64>,
    body: Vec<u8>,
}

fn tls_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// A TCP connection to `server` from `source`.
fn connect_from(source: [u8; 4], server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(IpAddr::from(source), 0).into())?;
    socket.connect_timeout(&server.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    Ok(stream)
}

impl Client {
    fn connect(
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

    fn put(&mut self, body: &[u8]) -> std::io::Result<Reply> {
        let head = format!(
            "PUT /checkin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
            mdm::CONTENT_TYPE,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        let out = self.stream.get_mut();
        out.write_all(&request)?;
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

fn identity(user: &str) -> UserIdentity {
    UserIdentity {
        udid: UDID.into(),
        user_id: mdm::derive_user_id(UDID, user),
        short_name: user.into(),
        long_name: user.into(),
    }
}

fn field(reply: &Reply, key: &str) -> Option<String> {
    let dict = mdm::parse_dict(&reply.body, "reply").ok()?;
    dict.get(key)?.as_string().map(str::to_owned)
}

/// The first step: the DigestChallenge text.
fn challenge(client: &mut Client, user: &str) -> Reply {
    client
        .put(&mdm::request_body(&identity(user), None).unwrap())
        .unwrap()
}

/// The second step for `challenge_text`, with `password`.
fn respond(
    client: &mut Client,
    user: &str,
    password: &str,
    challenge_text: &str,
) -> (Reply, String) {
    let parsed = scram::parse_challenge(
        challenge_text.strip_prefix("SCRAM-SHA-256 ").unwrap(),
        4096..=10_000_000,
    )
    .unwrap();
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
fn scram_login(client: &mut Client, user: &str, password: &str) -> bool {
    let first = challenge(client, user);
    assert_eq!(first.status, 200);
    let text = field(&first, "DigestChallenge").unwrap();
    let (reply, _) = respond(client, user, password, &text);
    reply.status == 200 && field(&reply, "AuthToken").is_some_and(|t| !t.is_empty())
}

/// The value of one metric line, from `--metrics-listen`.
fn metric(addr: SocketAddr, line_start: &str) -> u64 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

/// The metrics address a server printed.
fn metrics_addr(server: &Server) -> SocketAddr {
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

struct Site {
    ws: Workspace,
    tls: Arc<rustls::ClientConfig>,
}

impl Site {
    fn new() -> Site {
        let ws = Workspace::new();
        ws.add_user("alice", Some(PASSWORD), &[]);
        let tls = tls_config(&ws.path("tls/ca.pem"));
        Site { ws, tls }
    }

    fn server(&self, extra: &[&str]) -> Server {
        let mut args = vec!["--metrics-listen=127.0.0.1:0"];
        args.extend_from_slice(extra);
        Server::start(&self.ws, &args)
    }

    fn client(&self, source: [u8; 4], server: &Server) -> Client {
        Client::connect(source, server, &self.tls).unwrap()
    }

    /// A real login through the module in libpam.
    fn module_login(&self, server: &Server, password: &str) -> i32 {
        let confdir = self.ws.simple_stack(&self.ws.config_for(&server.url(), ""));
        login(&confdir, "alice", password)
    }
}

#[test]
fn nonce_flood_leaves_nothing_to_fill() {
    let site = Site::new();
    let server = site.server(&[]);
    let started = Instant::now();
    let mut sent = 0;
    for _ in 0..4 {
        let mut attacker = site.client(ATTACKER, &server);
        for _ in 0..5_000 {
            assert_eq!(challenge(&mut attacker, "alice").status, 200);
            sent += 1;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "bounded");
    }
    assert_eq!(sent, 20_000);
    let (ok, took) =
        timed(|| scram_login(&mut site.client(USER_ELSEWHERE, &server), "alice", PASSWORD));
    assert!(ok, "a login right after the flood succeeds");
    assert!(took < Duration::from_secs(2), "at once: {took:?}");
    assert_eq!(site.module_login(&server, PASSWORD), PAM_SUCCESS);
    let challenges = metric(
        metrics_addr(&server),
        "authtoken_requests_total{step=\"challenge\",outcome=\"challenge\"}",
    );
    assert!(
        challenges >= 20_002,
        "metrics counted the flood: {challenges}"
    );
}

#[test]
fn slow_connections_cannot_crowd_out_a_login() {
    let site = Site::new();
    let server = site.server(&[]);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..600 {
        match Client::connect(ATTACKER, &server, &site.tls) {
            Ok(mut slow) => {
                // Headers, then one byte of a promised 1000-byte body.
                let out = slow.stream.get_mut();
                let sent = out
                    .write_all(
                        format!(
                            "PUT /checkin HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Length: 1000\r\n\r\n<",
                            mdm::CONTENT_TYPE
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| out.flush());
                if sent.is_ok() {
                    held.push(slow);
                } else {
                    refused += 1;
                }
            }
            Err(_) => refused += 1,
        }
    }
    assert!(
        held.len() <= 32,
        "at most the per-source cap is held: {}",
        held.len()
    );
    assert!(refused >= 560, "{refused}");
    let (ok, took) =
        timed(|| scram_login(&mut site.client(USER_ELSEWHERE, &server), "alice", PASSWORD));
    assert!(ok && took < Duration::from_secs(2), "{ok} {took:?}");
    let (code, took) = timed(|| site.module_login(&server, PASSWORD));
    assert_eq!(code, PAM_SUCCESS);
    assert!(took < Duration::from_secs(2), "{took:?}");
    let refused_metric = metric(
        metrics_addr(&server),
        "authtoken_connections_refused_total{reason=\"per_source\"}",
    );
    assert!(refused_metric >= 560, "{refused_metric}");
    drop(held);
}

#[test]
fn guessing_is_throttled_without_locking_the_user_out() {
    let site = Site::new();
    let server = site.server(&[]);
    let started = Instant::now();
    let mut evaluated = 0;
    let mut throttled = 0;
    let mut user_signed_in_during_attack = false;
    let mut guesser = site.client(ATTACKER, &server);
    for attempt in 0..3_000 {
        if started.elapsed() >= Duration::from_secs(60) {
            break;
        }
        let first = challenge(&mut guesser, "alice");
        let text = field(&first, "DigestChallenge").unwrap();
        let (reply, _) = respond(&mut guesser, "alice", &format!("guess {attempt}"), &text);
        match reply.status {
            429 => {
                throttled += 1;
                assert!(reply.retry_after.is_some_and(|s| s >= 1), "Retry-After");
            }
            200 => {
                evaluated += 1;
                assert_eq!(field(&reply, "AuthToken").as_deref(), Some(""));
            }
            other => panic!("unexpected {other}"),
        }
        if !user_signed_in_during_attack && started.elapsed() >= Duration::from_secs(20) {
            // The real user, from another address, in the middle of it.
            assert!(scram_login(
                &mut site.client(USER_ELSEWHERE, &server),
                "alice",
                PASSWORD
            ));
            assert_eq!(site.module_login(&server, PASSWORD), PAM_SUCCESS);
            user_signed_in_during_attack = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = writeln!(
        std::io::stderr(),
        "guessing: {evaluated} proofs evaluated and {throttled} refused with 429 in {:?}",
        started.elapsed()
    );
    assert!(user_signed_in_during_attack);
    assert!(
        evaluated <= 30,
        "proofs evaluated for the guesser: {evaluated}"
    );
    assert!(throttled > 100, "the guesser was refused: {throttled}");
    let proofs = metric(metrics_addr(&server), "authtoken_proofs_evaluated_total");
    assert_eq!(
        proofs,
        evaluated + 2,
        "the guesser's and the two real logins"
    );
    assert!(server
        .lines()
        .iter()
        .any(|l| l.contains("throttling this source")));
}

#[test]
fn a_throttled_module_falls_through_and_learns_nothing() {
    let site = Site::new();
    let server = site.server(&[]);
    for _ in 0..4 {
        assert_eq!(site.module_login(&server, "wrong"), PAM_AUTH_ERR);
    }
    // Refused with 429: unavailable, so the stack falls through.
    assert_eq!(site.module_login(&server, PASSWORD), PAM_AUTHINFO_UNAVAIL);
    assert!(server.lines().iter().any(|l| l.contains("status=429")));
}

#[test]
fn unknown_and_known_users_look_the_same() {
    let site = Site::new();
    // A user enrolled with add-user's defaults, like the decoys.
    site.ws
        .add_user("bob", Some("bob's"), &["--iterations=600000"]);
    let server = site.server(&[]);
    let mut prober = site.client(ATTACKER, &server);
    let shape = |reply: &Reply| {
        let text = field(reply, "DigestChallenge").unwrap_or_default();
        let parts: Vec<(String, usize)> = text
            .split(',')
            .map(|p| match p.split_once('=') {
                Some((k, v)) if k.ends_with('i') => (format!("{k}={v}"), 0),
                Some((k, v)) => (k.to_owned(), v.len()),
                None => (p.to_owned(), 0),
            })
            .collect();
        (reply.status, parts)
    };
    let known = challenge(&mut prober, "bob");
    let unknown = challenge(&mut prober, "nobody-here");
    assert_eq!(known.status, 200);
    assert_eq!(shape(&known), shape(&unknown));
    // The second step answers the same way too.
    let (known_reply, _) = respond(
        &mut prober,
        "bob",
        "guess",
        &field(&known, "DigestChallenge").unwrap(),
    );
    let (unknown_reply, _) = respond(
        &mut prober,
        "nobody-here",
        "guess",
        &field(&unknown, "DigestChallenge").unwrap(),
    );
    assert_eq!(known_reply.status, unknown_reply.status);
    assert_eq!(
        field(&known_reply, "AuthToken"),
        field(&unknown_reply, "AuthToken")
    );
}

#[test]
fn responses_are_accepted_once_across_replicas() {
    let site = Site::new();
    let replay_dir = site.ws.path("replay");
    let replay = format!("--replay-dir={}", replay_dir.display());
    let a = site.server(&[&replay]);
    let b = site.server(&[&replay]);
    // One login, one step on each replica: the challenge needs no state.
    let first = challenge(&mut site.client(USER_ELSEWHERE, &a), "alice");
    let text = field(&first, "DigestChallenge").unwrap();
    let (accepted, response) = respond(
        &mut site.client(USER_ELSEWHERE, &b),
        "alice",
        PASSWORD,
        &text,
    );
    assert!(field(&accepted, "AuthToken").is_some_and(|t| !t.is_empty()));
    // The same DigestResponse again, to either replica: refused.
    for replica in [&b, &a] {
        let replayed = site
            .client(ATTACKER, replica)
            .put(&mdm::request_body(&identity("alice"), Some(&response)).unwrap())
            .unwrap();
        assert_eq!(field(&replayed, "AuthToken").as_deref(), Some(""));
    }
    assert!(a.lines().iter().any(|l| l.contains("replayed response")));
}

#[test]
fn sighup_reloads_the_store_and_keeps_it_when_the_new_one_is_bad() {
    let site = Site::new();
    let server = site.server(&[]);
    let hup = |server: &Server| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(server.pid() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
    };
    let login_as = |user: &str, password: &str| {
        scram_login(&mut site.client(USER_ELSEWHERE, &server), user, password)
    };
    assert!(!login_as("carol", "carol's"), "not there yet");
    site.ws.add_user("carol", Some("carol's"), &[]);
    run_ok(
        Command::new(SERVER)
            .arg("remove-user")
            .arg(site.ws.users())
            .arg("alice"),
        None,
    );
    hup(&server);
    assert!(server.wait_for("reloaded", 1));
    assert!(login_as("carol", "carol's"), "added, then reloaded");
    assert!(!login_as("alice", PASSWORD), "removed, then reloaded");
    // list-users never shows a verifier.
    let listing = run_ok(
        Command::new(SERVER).arg("list-users").arg(site.ws.users()),
        None,
    );
    assert!(
        listing.contains("carol") && listing.contains("scram-sha-256"),
        "{listing}"
    );
    assert!(!listing.contains("alice"), "{listing}");
    assert!(
        !listing.contains("stored_key") && !listing.contains('='),
        "{listing}"
    );
    // A corrupt store is refused; the one in force keeps serving.
    std::fs::write(site.ws.users(), "this is not a store").unwrap();
    hup(&server);
    assert!(server.wait_for("reload refused", 1));
    assert!(login_as("carol", "carol's"));
}
