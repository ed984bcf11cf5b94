//! The reference server under attack: the real `authtoken-server` on
//! 127.0.0.1, attacked over TLS from other loopback addresses (client
//! sockets bound to 127.0.0.2 before connecting), while real users sign in
//! from elsewhere — through a SCRAM client written here from 127.0.0.3, and
//! through the real module in libpam (from 127.0.0.1). Every loop is bounded
//! in count and in time.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authtoken_protocol::mdm;
use common::client::*;
use common::*;

const ATTACKER: [u8; 4] = [127, 0, 0, 2];
const USER_ELSEWHERE: [u8; 4] = [127, 0, 0, 3];
const PASSWORD: &str = "alice's own";

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

    /// `count` more users, `userN` with the password `userN's`.
    fn users(&self, count: usize) -> Vec<String> {
        let users: Vec<String> = (0..count).map(|i| format!("user{i}")).collect();
        for user in &users {
            self.ws.add_user(user, Some(&format!("{user}'s")), &[]);
        }
        users
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

/// Hostile input, finding 3 (b, c): 100 wrong proofs for alice from 20
/// addresses are evaluated at most 30 to the minute, and alice on her own
/// enrolled device still signs in.
#[test]
fn guessing_is_bounded_per_account_and_a_device_keeps_its_own_budget() {
    let site = Site::new();
    let ca = site.ws.path("tls/ca.pem").display().to_string();
    let server = site.server(&["--client-ca", &ca, "--client-cert-optional"]);
    let started = Instant::now();
    let (mut evaluated, mut throttled) = (0, 0);
    for attempt in 0..100u8 {
        let source = [127, 0, 0, 10 + attempt % 20];
        let mut guesser = site.client(source, &server);
        let first = challenge(&mut guesser, "alice");
        let text = field(&first, "DigestChallenge").unwrap();
        let (reply, _) = respond(&mut guesser, "alice", &format!("guess {attempt}"), &text);
        match reply.status {
            429 => {
                throttled += 1;
                assert!(
                    reply.retry_after.is_some_and(|s| (1..=60).contains(&s)),
                    "Retry-After"
                );
            }
            200 => {
                evaluated += 1;
                assert_eq!(field(&reply, "AuthToken").as_deref(), Some(""));
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "all within the minute"
    );
    let _ = writeln!(
        std::io::stderr(),
        "guessing: {evaluated} proofs evaluated and {throttled} refused with 429 in {:?}",
        started.elapsed()
    );
    assert_eq!(evaluated, 30, "at most 30 a minute for the account");
    assert_eq!(throttled, 70);
    // Anywhere without a device, alice is throttled too: that is the model.
    let mut anonymous = site.client(USER_ELSEWHERE, &server);
    let text = field(&challenge(&mut anonymous, "alice"), "DigestChallenge").unwrap();
    assert_eq!(
        respond(&mut anonymous, "alice", PASSWORD, &text).0.status,
        429
    );
    // With her device certificate: her own budget, untouched.
    let device = tls_config_as(
        &site.ws.path("tls/ca.pem"),
        Some((
            &site.ws.path("tls/client.pem"),
            &site.ws.path("tls/client.key"),
        )),
    );
    let mut own = Client::connect(USER_ELSEWHERE, &server, &device).unwrap();
    assert!(
        scram_login(&mut own, "alice", PASSWORD),
        "alice on her device"
    );
    let with_identity = format!(
        "client_cert = \"{}\"\nclient_key = \"{}\"",
        site.ws.path("tls/client.pem").display(),
        site.ws.path("tls/client.key").display()
    );
    let confdir = site
        .ws
        .simple_stack(&site.ws.config_for(&server.url(), &with_identity));
    assert_eq!(
        login(&confdir, "alice", PASSWORD),
        PAM_SUCCESS,
        "and through the module"
    );
    let proofs = metric(metrics_addr(&server), "authtoken_proofs_evaluated_total");
    assert_eq!(proofs, 32, "the 30 guesses and the two device logins");
    assert!(server
        .lines()
        .iter()
        .any(|l| l.contains("outcome=rejected reason=\"rejected: wrong proof\" budget=spent ")));
}

/// Hostile input, finding 3 (a): junk from one address (garbage responses
/// for made-up names, no nonce, no password) does not lock out the users
/// behind that address.
#[test]
fn junk_from_an_address_never_blocks_a_correct_proof_from_it() {
    let site = Site::new();
    let server = site.server(&[]);
    let mut junk = site.client([127, 0, 0, 1], &server);
    for i in 0..50 {
        let body = mdm::request_body(
            &identity(&format!("made-up-{i}")),
            Some("SCRAM-SHA-256 garbage"),
        )
        .unwrap();
        let reply = junk.put(&body).unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(field(&reply, "AuthToken").as_deref(), Some(""));
    }
    // Junk naming alice herself, with forged nonces: not a guess either.
    for _ in 0..50 {
        let forged = "SCRAM-SHA-256 n=alice,r=abc,c=biws,r=abcAAAAAAAAAAAAAAAAAAAA,p=AAAA";
        let reply = junk
            .put(&mdm::request_body(&identity("alice"), Some(forged)).unwrap())
            .unwrap();
        assert_ne!(reply.status, 429);
    }
    assert_eq!(site.module_login(&server, PASSWORD), PAM_SUCCESS);
    assert_eq!(
        metric(metrics_addr(&server), "authtoken_throttled_total"),
        0
    );
}

/// Hostile input, finding 3 (a): a terminal server where 20 users each
/// mistype once, then type it right: every right one signs in.
#[test]
fn twenty_users_who_each_mistype_once_all_sign_in() {
    let site = Site::new();
    let users = site.users(20);
    let server = site.server(&[]);
    let confdir = site.ws.simple_stack(&site.ws.config_for(&server.url(), ""));
    for user in &users {
        assert_eq!(login(&confdir, user, "typo"), PAM_AUTH_ERR, "{user}");
    }
    for user in &users {
        assert_eq!(
            login(&confdir, user, &format!("{user}'s")),
            PAM_SUCCESS,
            "{user}"
        );
    }
}

/// Hostile input, finding 3 (a): 200 concurrent logins from one client, a
/// quarter of them with wrong passwords, end exactly as they should.
#[test]
fn two_hundred_concurrent_logins_from_one_client_end_rightly() {
    let site = Site::new();
    let users = site.users(50);
    let server = Arc::new(site.server(&[]));
    let tls = site.tls.clone();
    let threads: Vec<_> = (0..10)
        .map(|t| {
            let (server, tls, users) = (server.clone(), tls.clone(), users.clone());
            std::thread::spawn(move || {
                let mut client = Client::connect([127, 0, 0, 1], &server, &tls).unwrap();
                let mut wrong_endings = 0;
                for i in 0..20 {
                    let user = &users[(t * 20 + i) % users.len()];
                    let right = i % 4 != 0;
                    let password = if right {
                        format!("{user}'s")
                    } else {
                        "wrong".into()
                    };
                    if scram_login(&mut client, user, &password) != right {
                        wrong_endings += 1;
                    }
                }
                wrong_endings
            })
        })
        .collect();
    let wrong: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(wrong, 0, "logins that ended wrongly");
}

#[test]
fn unknown_and_known_users_look_the_same() {
    let site = Site::new();
    // Decoys take the shape of the store's users: here, 4096 rounds.
    site.ws.add_user("bob", Some("bob's"), &[]);
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
    // The store it serves from: the file, or its PostgreSQL copy.
    run_ok(
        Command::new(SERVER)
            .arg("add-user")
            .arg(&server.store)
            .args(["carol", "--iterations=4096"]),
        Some("carol's\n"),
    );
    run_ok(
        Command::new(SERVER)
            .arg("remove-user")
            .arg(&server.store)
            .arg("alice"),
        None,
    );
    hup(&server);
    assert!(server.wait_for("reloaded", 1));
    assert!(login_as("carol", "carol's"), "added, then reloaded");
    assert!(!login_as("alice", PASSWORD), "removed, then reloaded");
    // list-users never shows a verifier.
    let listing = run_ok(
        Command::new(SERVER).arg("list-users").arg(&server.store),
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
    server.corrupt_store();
    hup(&server);
    assert!(server.wait_for("reload refused", 1));
    assert!(login_as("carol", "carol's"));
}

#[test]
fn a_throttled_module_falls_through_and_learns_nothing() {
    let site = Site::new();
    let server = site.server(&["--throttle-after=3"]);
    for _ in 0..3 {
        assert_eq!(site.module_login(&server, "wrong"), PAM_AUTH_ERR);
    }
    // Refused with 429: unavailable, so the stack falls through.
    assert_eq!(site.module_login(&server, PASSWORD), PAM_AUTHINFO_UNAVAIL);
    assert!(server.lines().iter().any(|l| l.contains("status=429")));
}

/// A binary plist whose objects each reference the one below `fanout`
/// times, `levels` deep, under `UserShortName`: a few hundred bytes that
/// unfold into fanout^levels values in a parser that follows references.
fn binary_plist_bomb(levels: u8, fanout: u8) -> Vec<u8> {
    let mut objects: Vec<Vec<u8>> = vec![vec![0x51, b'x']];
    for level in 1..=levels {
        let mut array = vec![0xA0 | fanout];
        array.extend(std::iter::repeat_n(level - 1, usize::from(fanout)));
        objects.push(array);
    }
    let mut key = vec![0x5D];
    key.extend_from_slice(b"UserShortName");
    objects.push(key);
    let key_ref = objects.len() as u8 - 1;
    objects.push(vec![0xD1, key_ref, levels]);
    let top = objects.len() as u64 - 1;
    let mut out = b"bplist00".to_vec();
    let mut offsets = Vec::new();
    for object in &objects {
        offsets.push(out.len() as u8);
        out.extend_from_slice(object);
    }
    let table = out.len() as u64;
    out.extend_from_slice(&offsets);
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&[1, 1]);
    out.extend_from_slice(&(objects.len() as u64).to_be_bytes());
    out.extend_from_slice(&top.to_be_bytes());
    out.extend_from_slice(&table.to_be_bytes());
    out
}

/// A field of /proc/PID/status, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Hostile input, finding 1: a 339-byte binary plist that unfolds to 10^8
/// values costs the server nothing, 100 times over, and a real login goes
/// through meanwhile.
#[test]
fn a_plist_bomb_costs_the_server_nothing() {
    let site = Site::new();
    let server = site.server(&[]);
    let bomb = binary_plist_bomb(7, 14);
    assert!(bomb.len() < 400, "{}", bomb.len());
    // The bomb is well-formed: plist's own reader would unfold it.
    assert!(bomb.starts_with(b"bplist00"));
    assert_eq!(site.module_login(&server, PASSWORD), PAM_SUCCESS);
    let idle_kb = status_kb(server.pid(), "VmRSS");
    let started = Instant::now();
    let mut attacker = site.client(ATTACKER, &server);
    for i in 0..100 {
        let reply = attacker.put(&bomb).unwrap();
        assert_eq!(reply.status, 400, "refused as malformed");
        if i == 50 {
            assert_eq!(
                site.module_login(&server, PASSWORD),
                PAM_SUCCESS,
                "meanwhile"
            );
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let peak_kb = status_kb(server.pid(), "VmHWM");
    assert!(
        peak_kb.saturating_sub(idle_kb) < 64 * 1024,
        "peak {peak_kb} kB against {idle_kb} kB idle"
    );
}

/// A body of another media type than the route reads is refused unread
/// (415): the check-in (a plist), enrollment and json-authenticate (JSON).
/// The refused body is well-formed for the route, so only the type says no.
#[test]
fn a_body_of_another_media_type_is_refused_unread() {
    let site = Site::new();
    let checkin = mdm::request_body(&identity("alice"), None).unwrap();
    let json = br#"{"username":"alice","password":"x"}"#;
    // (server arguments, method, path, the wrong media type, body)
    type Case<'a> = (&'a [&'a str], &'a str, &'a str, &'a str, &'a [u8]);
    let cases: [Case; 4] = [
        (&[], "PUT", "/checkin", "text/plain", &checkin),
        (&[], "PUT", "/checkin", "application/json", &checkin),
        (&[], "POST", "/enroll", mdm::CONTENT_TYPE, b"{}"),
        (
            &["--protocol", "json-authenticate"],
            "POST",
            "/",
            "text/plain",
            json,
        ),
    ];
    for (args, method, path, media, body) in cases {
        let server = site.server(args);
        let mut client = site.client(ATTACKER, &server);
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {media}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        let reply = client.exchange(&request).unwrap();
        assert_eq!(reply.status, 415, "{method} {path} as {media}");
        // With the right type the same body is read (and answered otherwise).
        let mut client = site.client(ATTACKER, &server);
        let right = if args.is_empty() && path == "/checkin" {
            mdm::CONTENT_TYPE
        } else {
            "application/json"
        };
        let request = String::from_utf8_lossy(&request).replace(media, right);
        let reply = client.exchange(request.as_bytes()).unwrap();
        assert_ne!(reply.status, 415, "{method} {path} as {right}");
    }
}

/// `count` idle TCP connections to `server`, each from its own loopback
/// address (127.0.N.M), as fast as they are accepted.
fn idle_connections(server: &Server, count: usize) -> Vec<TcpStream> {
    let wanted = count as u64 + 64;
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if soft < wanted {
        nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_NOFILE,
            wanted.min(hard),
            hard,
        )
        .unwrap();
    }
    (0..count)
        .filter_map(|i| {
            connect_from(
                [127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8],
                server.addr,
            )
            .ok()
        })
        .collect()
}

/// Hostile input, finding 2: with 1,024 descriptors, 1,100 idle
/// connections from 1,100 addresses neither end the server nor keep a login
/// out, during the flood (the idlest connections make room) or after it.
#[test]
fn a_descriptor_flood_neither_ends_the_server_nor_keeps_a_login_out() {
    let site = Site::new();
    let server = Server::start_limited(&site.ws, &["--metrics-listen=127.0.0.1:0"], 1024);
    assert!(
        server
            .lines()
            .iter()
            .any(|l| l.contains("at most 960 connections")),
        "{:?}",
        server.lines()
    );
    let flood = idle_connections(&server, 1_100);
    assert!(flood.len() >= 1_000, "{}", flood.len());
    let (code, took) = timed(|| site.module_login(&server, PASSWORD));
    assert_eq!(code, PAM_SUCCESS, "during the flood");
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(flood);
    let (code, took) = timed(|| site.module_login(&server, PASSWORD));
    assert_eq!(code, PAM_SUCCESS, "after the flood");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let evicted = metric(
        metrics_addr(&server),
        "authtoken_connections_refused_total{reason=\"evicted_idle\"}",
    );
    assert!(evicted >= 100, "idle connections made room: {evicted}");
}

/// Hostile input, finding 2: with so few descriptors that `accept` itself
/// fails (EMFILE), the server logs it, backs off and keeps serving.
#[test]
fn accept_failing_for_want_of_descriptors_is_survived() {
    let site = Site::new();
    let server = Server::start_limited(&site.ws, &[], 24);
    let flood = idle_connections(&server, 200);
    std::thread::sleep(Duration::from_millis(500));
    drop(flood);
    let ok = poll_until(Duration::from_secs(5), || {
        scram_login(
            &mut Client::connect(USER_ELSEWHERE, &server, &site.tls).ok()?,
            "alice",
            PASSWORD,
        )
        .then_some(())
    });
    assert!(
        ok.is_some(),
        "the server serves again: {:?}",
        server.lines()
    );
    assert!(
        std::fs::metadata(format!("/proc/{}", server.pid())).is_ok(),
        "still running"
    );
}

/// Hostile input, finding 6: a flood of unauthenticated challenges from one
/// source does not deny a challenge (and a login) to another.
#[test]
fn a_challenge_flood_at_the_device_denies_nobody_else() {
    let ws = Workspace::new();
    let file = ws.path("device.toml");
    run_ok(
        Command::new(SERVER)
            .args(["enroll-device", "--label", "alice"])
            .arg(&file),
        Some("correct horse battery staple\n"),
    );
    let tls = ws.path("tls");
    let server = Server::start_with(
        &ws.path("unused-users.toml"),
        &[
            "--protocol=hem".into(),
            format!("--device={}", file.display()),
            format!("--tls-cert={}", tls.join("server.pem").display()),
            format!("--tls-key={}", tls.join("server.key").display()),
            "--device-delay-ms=0".into(),
        ],
    );
    let client_tls = tls_config(&ws.path("tls/ca.pem"));
    let mut flooder = Client::connect(ATTACKER, &server, &client_tls).unwrap();
    for _ in 0..2_000 {
        assert_eq!(flooder.get("/api/auth/token").unwrap().status, 200);
    }
    let reply = Client::connect(USER_ELSEWHERE, &server, &client_tls)
        .unwrap()
        .get("/api/auth/token")
        .unwrap();
    assert_eq!(reply.status, 200, "another source still gets a challenge");
    let config = ws.hem_config(server.addr, "");
    let confdir = ws.simple_stack(&config);
    assert_eq!(
        login(&confdir, "alice", "correct horse battery staple"),
        PAM_SUCCESS
    );
}
