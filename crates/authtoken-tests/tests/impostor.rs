//! Impostor authorities: the real `pam_authtoken.so` in the real libpam,
//! talking to peers on 127.0.0.1 that are *not* the configured authority —
//! fake servers written here, and the real `authtoken-server` behind a
//! certificate the client does not trust — plus configurations that would
//! let such a peer in (plain http, untrusted key material, a swappable
//! helper). Every login types a wrong password; none may end in
//! PAM_SUCCESS, and each ends within the handshake deadline plus 1 s.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

/// The handshake deadline every case runs under.
const TIMEOUT_MS: u64 = 2000;
/// The password alice really has at the (real) authority.
const RIGHT: &str = "correct horse";
/// What every impostor case types.
const WRONG: &str = "not the password";
/// How long any fake server thread lives, at most.
const FAKE_LIFETIME: Duration = Duration::from_secs(15);

/// What a fake authority does with one request.
enum Act {
    /// Answer with these bytes and close.
    Reply(Vec<u8>),
    /// Accept, read the request, and say nothing until told to stop.
    Silent,
    /// Promise a body, then send one byte every 200 ms.
    Drip,
}

/// A fake authority on 127.0.0.1: serves its script one request at a
/// time, on the connection the client holds open, counts the requests it
/// saw, and stops by itself.
struct Fake {
    addr: String,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    fn start(script: Vec<Act>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let ends = Instant::now() + FAKE_LIFETIME;
            let done = || stopped.load(Ordering::SeqCst) || Instant::now() >= ends;
            let mut connections = FakeConnections::new(listener);
            for act in script {
                let Some(stream) = connections.next_request(&done) else {
                    return;
                };
                seen.fetch_add(1, Ordering::SeqCst);
                match act {
                    Act::Reply(bytes) => {
                        let _ = stream.write_all(&bytes);
                    }
                    Act::Silent => {
                        while !done() {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    Act::Drip => {
                        let _ =
                            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n");
                        while !done() && stream.write_all(b"<").is_ok() {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            }
        });
        Fake {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the fake and returns how many requests reached it.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.requests.load(Ordering::SeqCst)
    }
}

fn http(status: &str, headers: &str, body: &[u8]) -> Act {
    Act::Reply(http_reply(status, headers, body))
}

/// A 200 carrying a plist dict of strings.
fn plist(entries: &[(&str, &str)]) -> Act {
    http(
        "200 OK",
        "",
        &authtoken_protocol::mdm::string_dict(entries).unwrap(),
    )
}

/// A 200 carrying JSON.
fn json(value: serde_json::Value) -> Act {
    http("200 OK", "", value.to_string().as_bytes())
}

/// The forged "you are in" a fake sends after any digest.
fn forged_token() -> Act {
    plist(&[("AuthToken", "forged-token")])
}

/// A HEM challenge from a device that is not the configured one.
fn fake_hem_challenge() -> Act {
    json(serde_json::json!({
        "exp": 4_000_000_000u64,
        "spk": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        "jti": "0123456789abcdef",
        "lbl": "alice",
        "eid": "an-impostor-device",
    }))
}

/// One case's result.
struct Tried {
    name: &'static str,
    code: i32,
    elapsed: Duration,
    requests: Option<usize>,
}

struct Bench {
    ws: Workspace,
    tried: Vec<Tried>,
}

impl Bench {
    fn new() -> Bench {
        let ws = Workspace::new();
        ws.add_user("alice", Some(RIGHT), &[]);
        Bench {
            ws,
            tried: Vec::new(),
        }
    }

    /// A config for `url` under the short deadline, `extra` appended (an
    /// `extra` naming min_scram_iterations replaces the fixture's 4096).
    fn config(&self, url: &str, extra: &str) -> PathBuf {
        let path = self.ws.config_for(url, extra);
        let mut body = std::fs::read_to_string(&path)
            .unwrap()
            .replace("timeout_ms = 4000", &format!("timeout_ms = {TIMEOUT_MS}"));
        if extra.contains("min_scram_iterations") {
            body = body.replacen("min_scram_iterations = 4096\n", "", 1);
        }
        self.ws.write_config("authtoken.toml", &body)
    }

    fn hem_config(&self, url: &str, extra: &str) -> PathBuf {
        let path = self.config(url, extra);
        let body = std::fs::read_to_string(&path)
            .unwrap()
            .replace("backend = \"mdm\"", "backend = \"hem\"");
        self.ws.write_config("authtoken.toml", &body)
    }

    /// Logs alice in with the wrong password through `config`.
    fn attempt(&mut self, name: &'static str, config: &Path, fake: Option<Fake>) {
        let confdir = self.ws.simple_stack(config);
        let (code, elapsed) = timed(|| login(&confdir, "alice", WRONG));
        let requests = fake.map(Fake::finish);
        self.tried.push(Tried {
            name,
            code,
            elapsed,
            requests,
        });
    }

    fn fake_case(&mut self, name: &'static str, script: Vec<Act>, path: &str, extra: &str) {
        let fake = Fake::start(script);
        let config = self.config(&fake.url(path), extra);
        self.attempt(name, &config, Some(fake));
    }

    fn requests(&self, name: &str) -> Option<usize> {
        self.tried.iter().find(|t| t.name == name)?.requests
    }
}

/// `authtoken check-config` on `config`: (exit code, stderr).
fn check_config(config: &Path) -> (i32, String) {
    let out = Command::new(CLI)
        .args(["check-config", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_refused_by_check_config(config: &Path, hint: &str) {
    let (code, stderr) = check_config(config);
    assert_ne!(code, 0, "check-config accepted {}", config.display());
    assert!(
        stderr.contains(hint),
        "check-config should say {hint:?}: {stderr}"
    );
}

#[test]
fn no_impostor_signs_anyone_in() {
    let mut bench = Bench::new();
    let insecure = "allow_insecure_http = true";

    // --- Digest, in every shape, under the default schemes (SCRAM only).
    for (name, challenge) in [
        (
            "digest sha-256 with qop",
            "Digest realm=\"x\",nonce=\"n1\",qop=\"auth\",algorithm=SHA-256",
        ),
        (
            "digest sha-256 without qop",
            "Digest realm=\"x\",nonce=\"n1\",algorithm=SHA-256",
        ),
        (
            "digest md5 with qop",
            "Digest realm=\"x\",nonce=\"n1\",qop=\"auth\",algorithm=MD5",
        ),
        ("digest md5 without qop", "Digest realm=\"x\",nonce=\"n1\""),
    ] {
        bench.fake_case(
            name,
            vec![plist(&[("DigestChallenge", challenge)]), forged_token()],
            "/checkin",
            insecure,
        );
        assert_eq!(bench.requests(name), Some(1), "{name}: no second request");
    }

    // --- SCRAM that proves nothing.
    bench.fake_case(
        "scram with 4096 rounds (default floor 100000)",
        vec![
            plist(&[(
                "DigestChallenge",
                "SCRAM-SHA-256 r=fake,s=c2FsdHNhbHQ=,i=4096",
            )]),
            forged_token(),
        ],
        "/checkin",
        // The bench's config lowers the floor for the real test users; this
        // case restores the default.
        &format!("{insecure}\nmin_scram_iterations = 100000"),
    );
    assert_eq!(
        bench.requests("scram with 4096 rounds (default floor 100000)"),
        Some(1)
    );
    let scram = "SCRAM-SHA-256 r=fake,s=c2FsdHNhbHQ=,i=100000";
    bench.fake_case(
        "scram without ServerSignature",
        vec![plist(&[("DigestChallenge", scram)]), forged_token()],
        "/checkin",
        insecure,
    );
    bench.fake_case(
        "scram with a wrong ServerSignature",
        vec![
            plist(&[("DigestChallenge", scram)]),
            plist(&[
                ("AuthToken", "forged-token"),
                (
                    "ServerSignature",
                    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
                ),
            ]),
        ],
        "/checkin",
        insecure,
    );

    // --- An empty challenge proves nothing: never success over plain http.
    for (name, policy) in [
        ("empty challenge over http, policy ignore", "ignore"),
        ("empty challenge over http, policy success", "success"),
    ] {
        bench.fake_case(
            name,
            vec![plist(&[("DigestChallenge", "")])],
            "/checkin",
            &format!("{insecure}\nempty_challenge = \"{policy}\""),
        );
    }

    // --- The real authority software, but behind a certificate from
    // another CA: an impostor that even knows the typed password.
    bench.ws.gen_tls("impostor");
    let impostor_users = bench.ws.path("impostor-users.toml");
    run_ok(
        Command::new(SERVER)
            .arg("add-user")
            .arg(&impostor_users)
            .args(["alice", "--iterations=100000"]),
        Some(&format!("{WRONG}\n")),
    );
    run_ok(
        Command::new(SERVER)
            .arg("add-user")
            .arg(&impostor_users)
            .args(["carol", "--policy=no-token"]),
        None,
    );
    let impostor_tls = bench.ws.path("impostor");
    let impostor = Server::start_with(
        &impostor_users,
        &[
            "--tls-cert".into(),
            impostor_tls.join("server.pem").display().to_string(),
            "--tls-key".into(),
            impostor_tls.join("server.key").display().to_string(),
        ],
    );
    for (name, policy) in [
        (
            "empty challenge over https (untrusted), policy ignore",
            "ignore",
        ),
        (
            "empty challenge over https (untrusted), policy success",
            "success",
        ),
    ] {
        let config = bench.config(&impostor.url(), &format!("empty_challenge = \"{policy}\""));
        bench.attempt(name, &config, None);
    }
    let config = bench.config(&impostor.url(), "");
    bench.attempt(
        "scram over https from an untrusted server that knows the typed password",
        &config,
        None,
    );
    assert!(
        impostor.lines().iter().all(|l| !l.contains(" step=")),
        "no request got past TLS to the impostor: {:?}",
        impostor.lines()
    );

    // --- A fake token device.
    let fake = Fake::start(vec![
        fake_hem_challenge(),
        json(serde_json::json!({"token": "forged"})),
    ]);
    let config = bench.hem_config(&fake.url(""), "");
    bench.attempt("fake hem device over http", &config, Some(fake));
    assert_eq!(bench.requests("fake hem device over http"), Some(0));
    let fake = Fake::start(vec![
        fake_hem_challenge(),
        json(serde_json::json!({"token": "forged"})),
    ]);
    let config = bench.hem_config(
        &fake.url(""),
        &format!("{insecure}\n[hem]\neid = \"the-real-device-eid\""),
    );
    bench.attempt("fake hem device with a wrong eid", &config, Some(fake));
    assert_eq!(
        bench.requests("fake hem device with a wrong eid"),
        Some(1),
        "refused after the challenge, before any proof"
    );

    // --- Plain http on loopback without the flag: not even a request.
    let fake = Fake::start(vec![plist(&[("DigestChallenge", "")]), forged_token()]);
    let config = bench.config(&fake.url("/checkin"), "empty_challenge = \"success\"");
    assert_refused_by_check_config(&config, "allow_insecure_http");
    bench.attempt(
        "plain http on loopback without allow_insecure_http",
        &config,
        Some(fake),
    );
    assert_eq!(
        bench.requests("plain http on loopback without allow_insecure_http"),
        Some(0)
    );

    // --- Key material someone else could have written, in front of the
    // real, trusted authority (which would accept nothing anyway: the
    // password is wrong; what matters is that no request is made).
    let real = Server::start(&bench.ws, &[]);
    let ca_copy = bench.ws.path("ca-world-writable.pem");
    std::fs::copy(bench.ws.path("tls/ca.pem"), &ca_copy).unwrap();
    std::fs::set_permissions(&ca_copy, std::fs::Permissions::from_mode(0o666)).unwrap();
    let config = bench.config(&real.url(), "");
    let body = std::fs::read_to_string(&config).unwrap().replace(
        &bench.ws.path("tls/ca.pem").display().to_string(),
        &ca_copy.display().to_string(),
    );
    let config = bench.ws.write_config("authtoken.toml", &body);
    assert_refused_by_check_config(&config, "chmod go-w");
    bench.attempt("world-writable ca_file", &config, None);

    let key_copy = bench.ws.path("client-world-writable.key");
    std::fs::copy(bench.ws.path("tls/client.key"), &key_copy).unwrap();
    std::fs::set_permissions(&key_copy, std::fs::Permissions::from_mode(0o666)).unwrap();
    let identity = format!(
        "client_cert = \"{}\"\nclient_key = \"{}\"",
        bench.ws.path("tls/client.pem").display(),
        key_copy.display()
    );
    let config = bench.config(&real.url(), &identity);
    assert_refused_by_check_config(&config, "chmod go-w");
    bench.attempt("world-writable client_key", &config, None);
    std::fs::set_permissions(&key_copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_refused_by_check_config(&config, "chmod 600");
    bench.attempt("world-readable client_key", &config, None);

    // --- A helper someone else could swap.
    let link = bench.ws.path("helper-link");
    std::os::unix::fs::symlink(HELPER, &link).unwrap();
    let config = bench.config(&real.url(), "");
    let body = std::fs::read_to_string(&config)
        .unwrap()
        .replace(HELPER, &link.display().to_string());
    let config = bench.ws.write_config("authtoken.toml", &body);
    assert_refused_by_check_config(&config, "symlinks are refused");
    bench.attempt("helper reached through a symlink", &config, None);

    let open_dir = bench.ws.path("open-dir");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::copy(HELPER, open_dir.join("authtoken-helper")).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let body = std::fs::read_to_string(&config).unwrap().replace(
        &link.display().to_string(),
        &open_dir.join("authtoken-helper").display().to_string(),
    );
    let config = bench.ws.write_config("authtoken.toml", &body);
    assert_refused_by_check_config(&config, "chmod go-w");
    bench.attempt("helper in a directory others can write", &config, None);
    assert_eq!(real.requests_for("alice"), 0, "untrusted files: no request");

    // --- The old fault cases, against the wrong password.
    let huge = format!(
        "<?xml version=\"1.0\"?><!--{}--><plist version=\"1.0\"><dict><key>DigestChallenge</key><string></string></dict></plist>",
        "A".repeat(70 * 1024)
    );
    let mut invalid_utf8 =
        b"<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>DigestChallenge</key><string>SCRAM-SHA-256 r=\xff\xfe,s=c2FsdA==,i=100000</string></dict></plist>".to_vec();
    invalid_utf8.extend_from_slice(b"\n");
    let faults: Vec<(&'static str, Act)> = vec![
        ("silent", Act::Silent),
        ("dripping", Act::Drip),
        ("5xx", http("503 Service Unavailable", "", b"")),
        (
            "redirect",
            http(
                "307 Temporary Redirect",
                &format!("Location: {}\r\n", real.url()),
                b"",
            ),
        ),
        ("oversized", http("200 OK", "", huge.as_bytes())),
        ("malformed", http("200 OK", "", b"<html>not a plist</html>")),
        ("invalid UTF-8", http("200 OK", "", &invalid_utf8)),
    ];
    for (name, act) in faults {
        bench.fake_case(name, vec![act], "/checkin", insecure);
    }
    assert_eq!(
        real.requests_for("alice"),
        0,
        "the redirect was not followed"
    );

    // --- The verdict.
    let limit = Duration::from_millis(TIMEOUT_MS + 1000);
    let successes: Vec<&str> = bench
        .tried
        .iter()
        .filter(|t| t.code == PAM_SUCCESS)
        .map(|t| t.name)
        .collect();
    let slow: Vec<String> = bench
        .tried
        .iter()
        .filter(|t| t.elapsed > limit)
        .map(|t| format!("{} ({:?})", t.name, t.elapsed))
        .collect();
    let mut report = String::new();
    for t in &bench.tried {
        report += &format!(
            "  {:<75} code {:>2} in {:>5} ms{}\n",
            t.name,
            t.code,
            t.elapsed.as_millis(),
            t.requests
                .map(|n| format!(", {n} request(s)"))
                .unwrap_or_default()
        );
    }
    // Outside the test harness's capture, so the tally shows in every run.
    let _ = writeln!(
        std::io::stderr(),
        "impostor: {} cases, {} PAM_SUCCESS, {} over {} ms\n{report}",
        bench.tried.len(),
        successes.len(),
        slow.len(),
        limit.as_millis()
    );
    assert!(successes.is_empty(), "impostors got in: {successes:?}");
    assert!(slow.is_empty(), "past the deadline plus 1 s: {slow:?}");
    assert!(bench.tried.len() >= 27, "every case ran");
}

/// The same settings, in front of the real authority with the right
/// password, are what make the refusals above meaningful: each knob is the
/// only difference between a refused login and a working one.
#[test]
fn the_trusted_authority_still_signs_in() {
    let bench = Bench::new();
    let real = Server::start(&bench.ws, &[]);
    let config = bench.config(&real.url(), "");
    let (code, stderr) = check_config(&config);
    assert_eq!(code, 0, "{stderr}");
    let confdir = bench.ws.simple_stack(&config);
    assert_eq!(login(&confdir, "alice", RIGHT), PAM_SUCCESS);
    assert_eq!(login(&confdir, "alice", WRONG), PAM_AUTH_ERR);
}

/// What an administrator reads from `check-config` for the usual mistakes.
#[test]
fn check_config_says_where_and_how_to_fix() {
    let bench = Bench::new();
    let good = std::fs::read_to_string(bench.config("https://127.0.0.1:1/checkin", "")).unwrap();
    let lines = good.lines().count();
    let cases = [
        (
            "max_scram_iterations = 10_000_000x",
            format!("{}:", lines + 1),
            "max_scram_iterations = 10000000",
        ),
        (
            "empty_challenge = ignore",
            format!("{}:", lines + 1),
            "empty_challenge = \"ignore\"",
        ),
        (
            "urll = \"x\"",
            format!("{}:1:", lines + 1),
            "correct its spelling",
        ),
    ];
    for (extra, place, hint) in cases {
        let config = bench
            .ws
            .write_config("authtoken.toml", &format!("{good}{extra}\n"));
        let (code, stderr) = check_config(&config);
        assert_ne!(code, 0, "{extra}");
        assert!(
            stderr.contains(&format!("authtoken.toml:{place}")),
            "{extra}: {stderr}"
        );
        assert!(stderr.contains(hint), "{extra}: {stderr}");
    }
    let missing_helper = good.replace(HELPER, "/nonexistent/authtoken-helper");
    let config = bench.ws.write_config("authtoken.toml", &missing_helper);
    assert_refused_by_check_config(&config, "install the pam-authtoken package, or set helper");
    let link = bench.ws.path("linked.toml");
    std::os::unix::fs::symlink(bench.ws.write_config("authtoken.toml", &good), &link).unwrap();
    assert_refused_by_check_config(&link, "symlinks are refused");
    let config = bench.ws.write_config("authtoken.toml", &good);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_refused_by_check_config(&config, "fix: chmod go-w");
}
