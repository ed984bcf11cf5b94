//! Several authorities: the real module in libpam with `url` a list. A
//! server that cannot be connected to costs one connect attempt and the
//! next one serves; once an authority answered, the rest of the handshake
//! stays with it.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const PASSWORD: &str = "failover pw";

fn workspace() -> Workspace {
    let ws = Workspace::new();
    ws.add_user("alice", Some(PASSWORD), &[]);
    ws
}

/// A loopback port with nothing listening on it (connections are refused).
fn refused_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn config_with(ws: &Workspace, urls: &[String], extra: &str) -> std::path::PathBuf {
    let list = urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let path = ws.config_for("https://placeholder.invalid/", extra);
    let body = std::fs::read_to_string(&path).unwrap().replace(
        "url = \"https://placeholder.invalid/\"",
        &format!("url = [{list}]"),
    );
    ws.write_config("authtoken.toml", &body)
}

/// `authtoken login --debug`: (exit code, stdout, stderr).
fn helper_login(config: &std::path::Path) -> (i32, String, String) {
    let out = output_with_input(
        Command::new(CLI)
            .args(["login", "alice", "--debug", "--config"])
            .arg(config),
        format!("{PASSWORD}\n").as_bytes(),
    )
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_refused_first_authority_costs_one_attempt() {
    let ws = workspace();
    let server = Server::start(&ws, &[]);
    let dead = format!("https://{}/checkin", refused_port());
    let config = config_with(&ws, &[dead.clone(), server.url()], "");
    let confdir = ws.simple_stack(&config);
    assert_eq!(login(&confdir, "alice", PASSWORD), PAM_SUCCESS);
    let (code, stdout, stderr) = helper_login(&config);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stderr.matches(&dead).count(),
        1,
        "one attempt at the first: {stderr}"
    );
    assert!(
        stdout.contains(&format!("answered by {}", server.url())),
        "{stdout}"
    );
    assert_eq!(
        server.requests_for("alice"),
        4,
        "two logins, two steps each"
    );
}

#[test]
fn a_silent_first_authority_costs_one_connect_timeout() {
    let ws = workspace();
    let server = Server::start(&ws, &[]);
    // Accepts TCP, never speaks TLS.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("https://{}/checkin", silent.local_addr().unwrap());
    let config = config_with(&ws, &[silent_url, server.url()], "connect_timeout_ms = 500");
    let confdir = ws.simple_stack(&config);
    let (code, took) = timed(|| login(&confdir, "alice", PASSWORD));
    assert_eq!(code, PAM_SUCCESS);
    assert!(
        took < Duration::from_millis(500 + 1000),
        "within connect_timeout_ms + 1 s: {took:?}"
    );
    drop(silent);
}

#[test]
fn an_answer_never_moves_on() {
    let ws = workspace();
    ws.add_user("bob", None, &["--policy=unmanaged"]);
    let first = Server::start(&ws, &[]);
    let second = Server::start(&ws, &[]);
    let config = config_with(&ws, &[first.url(), second.url()], "");
    let confdir = ws.simple_stack(&config);
    // A rejection and a 410 from the first are final.
    assert_eq!(login(&confdir, "alice", "wrong"), PAM_AUTH_ERR);
    assert_ne!(login(&confdir, "bob", "x"), PAM_SUCCESS);
    assert_eq!(
        second
            .lines()
            .iter()
            .filter(|l| l.contains(" step="))
            .count(),
        0
    );
    // So is a 5xx: unavailable, not the next authority.
    let (url, _guard) = canned_replies(vec![http_reply("500 Oops", "", b"")]);
    let config = config_with(&ws, &[url, second.url()], "allow_insecure_http = true");
    let confdir = ws.simple_stack(&config);
    assert_eq!(login(&confdir, "alice", PASSWORD), PAM_AUTHINFO_UNAVAIL);
    assert_eq!(
        second
            .lines()
            .iter()
            .filter(|l| l.contains(" step="))
            .count(),
        0
    );
}

/// The first authority issues the challenge; just before it answers, the
/// authority listed first (unreachable until then) comes up. The second
/// step must still go to the one that issued the challenge.
#[test]
fn the_second_step_goes_to_the_authority_that_challenged() {
    let ws = workspace();
    let late = TcpListener::bind("127.0.0.1:0").unwrap();
    let late_addr = late.local_addr().unwrap();
    drop(late); // refused for now
    let late_requests = Arc::new(AtomicUsize::new(0));
    let challenger = TcpListener::bind("127.0.0.1:0").unwrap();
    let challenger_url = format!("http://{}/checkin", challenger.local_addr().unwrap());
    let seen = late_requests.clone();
    let challenger_requests = Arc::new(AtomicUsize::new(0));
    let counted = challenger_requests.clone();
    let handle = std::thread::spawn(move || {
        let mut late_listener = None;
        let ends = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let mut connections = FakeConnections::new(challenger);
        for step in 0..2 {
            let Some(stream) = connections.next_request(&|| std::time::Instant::now() >= ends)
            else {
                return;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let reply = if step == 0 {
                // The authority listed first comes up now, ready to accept.
                let listener = TcpListener::bind(late_addr).unwrap();
                listener.set_nonblocking(true).unwrap();
                late_listener = Some(listener);
                plist_reply(&[(
                    "DigestChallenge",
                    "SCRAM-SHA-256 r=challenger,s=c2FsdHNhbHQ=,i=4096",
                )])
            } else {
                plist_reply(&[("AuthToken", "from-the-challenger")])
            };
            let _ = stream.write_all(&reply);
        }
        if let Some(listener) = late_listener {
            while listener.accept().is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let config = config_with(
        &ws,
        &[format!("http://{late_addr}/checkin"), challenger_url],
        "allow_insecure_http = true\nrequire_server_signature = false",
    );
    let confdir = ws.simple_stack(&config);
    assert_eq!(login(&confdir, "alice", PASSWORD), PAM_SUCCESS);
    handle.join().unwrap();
    assert_eq!(challenger_requests.load(Ordering::SeqCst), 2, "both steps");
    assert_eq!(
        late_requests.load(Ordering::SeqCst),
        0,
        "none to the late one"
    );
}
