//! Offline login through the real module in libpam: a verifier kept after
//! every online success, used only when no authority can be reached, only
//! for the services the policy lists, locked after repeated failures, too
//! old after max_age_days, and forgotten on a 410.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const PASSWORD: &str = "offline pw";
/// A service the default offline policy allows, and one it never does.
const CONSOLE: &str = "login";
const REMOTE: &str = "sshd";

struct Laptop {
    ws: Workspace,
}

impl Laptop {
    fn new() -> Laptop {
        let ws = Workspace::new();
        ws.add_user("alice", Some(PASSWORD), &[]);
        Laptop { ws }
    }

    /// A laptop whose alice signed in once online, so she has a verifier;
    /// its authority, still up, and the stacks that reach it.
    fn signed_in_once() -> (Laptop, Server, PathBuf) {
        let laptop = Laptop::new();
        let server = Server::start(&laptop.ws, &[]);
        let online = laptop.stacks(&laptop.config(&server.url()));
        assert_eq!(laptop.login(&online, CONSOLE, PASSWORD), PAM_SUCCESS);
        (laptop, server, online)
    }

    fn offline_dir(&self) -> PathBuf {
        self.ws.path("offline")
    }

    fn verifier(&self) -> PathBuf {
        self.offline_dir().join("alice")
    }

    /// The config for `url` with offline login on (default services).
    fn config(&self, url: &str) -> PathBuf {
        self.config_with(url, "")
    }

    /// The same, with `top` among the top-level settings.
    fn config_with(&self, url: &str, top: &str) -> PathBuf {
        self.ws.config_for(
            url,
            &format!(
                "{top}\n[offline]\nenabled = true\nmax_failures = 5\nmax_age_days = 7\ndir = \"{}\"",
                self.offline_dir().display()
            ),
        )
    }

    /// Stacks for a scripted authority on plain http at `url`.
    fn fake_authority_stacks(&self, url: &str) -> PathBuf {
        self.stacks(&self.config_with(url, "allow_insecure_http = true"))
    }

    /// Stacks for the console and the remote service.
    fn stacks(&self, config: &Path) -> PathBuf {
        let line = format!(
            "auth required {} config={}",
            module_path().display(),
            config.display()
        );
        self.ws.pam_service(CONSOLE, std::slice::from_ref(&line));
        self.ws.pam_service(
            REMOTE,
            &[
                line,
                format!(
                    "session required {} config={}",
                    module_path().display(),
                    config.display()
                ),
            ],
        )
    }

    fn login(&self, confdir: &Path, service: &str, password: &str) -> i32 {
        Pam::start(confdir, service, "alice", Some(password)).authenticate()
    }

    /// The failures count in the verifier record.
    fn failures(&self) -> u64 {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.verifier()).unwrap()).unwrap();
        record["failures"].as_u64().unwrap()
    }
}

/// An address where no authority answers (connections are refused).
fn nowhere() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("https://{}/checkin", listener.local_addr().unwrap())
}

#[test]
fn online_login_keeps_a_verifier_that_works_offline_where_allowed() {
    let (laptop, server, confdir) = Laptop::signed_in_once();
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(laptop.verifier()).expect("online login created the verifier");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
    let text = std::fs::read_to_string(laptop.verifier()).unwrap();
    assert!(!text.contains(PASSWORD));
    // An online rejection leaves it alone.
    assert_eq!(laptop.login(&confdir, CONSOLE, "wrong"), PAM_AUTH_ERR);
    assert_eq!(std::fs::read_to_string(laptop.verifier()).unwrap(), text);

    // The authority goes away (on a train).
    drop(server);
    let confdir = laptop.stacks(&laptop.config(&nowhere()));
    let mut pam = Pam::start(&confdir, REMOTE, "alice", Some(PASSWORD));
    assert_eq!(
        pam.authenticate(),
        PAM_AUTHINFO_UNAVAIL,
        "sshd is never offline unless listed"
    );
    let mut pam = Pam::start(&confdir, CONSOLE, "alice", Some(PASSWORD));
    assert_eq!(
        pam.authenticate(),
        PAM_SUCCESS,
        "the console signs in offline"
    );
    assert_eq!(laptop.login(&confdir, CONSOLE, "wrong"), PAM_AUTH_ERR);
    assert_eq!(laptop.failures(), 1);
    assert_eq!(laptop.login(&confdir, CONSOLE, PASSWORD), PAM_SUCCESS);
    assert_eq!(laptop.failures(), 0, "a success clears the count");
}

#[test]
fn an_offline_session_says_so_instead_of_a_token_file() {
    let (laptop, server, _) = Laptop::signed_in_once();
    drop(server);
    let config = laptop.config(&nowhere());
    let module = module_path().display().to_string();
    let c = config.display();
    let confdir = laptop.ws.pam_service(
        CONSOLE,
        &[
            format!("auth required {module} config={c}"),
            format!("session required {module} config={c}"),
        ],
    );
    let mut pam = Pam::start(&confdir, CONSOLE, "alice", Some(PASSWORD));
    assert_eq!(pam.authenticate(), PAM_SUCCESS);
    assert_eq!(pam.open_session(), PAM_SUCCESS);
    assert_eq!(pam.getenv("AUTHTOKEN_OFFLINE").as_deref(), Some("1"));
    assert_eq!(pam.getenv("AUTHTOKEN_FILE"), None);
}

#[test]
fn repeated_offline_failures_lock_until_an_online_login() {
    let (laptop, server, _) = Laptop::signed_in_once();
    let offline = laptop.stacks(&laptop.config(&nowhere()));
    for attempt in 1..=5 {
        assert_eq!(
            laptop.login(&offline, CONSOLE, "guess"),
            PAM_AUTH_ERR,
            "{attempt}"
        );
    }
    // The sixth: locked, so the right password no longer works offline.
    assert_eq!(
        laptop.login(&offline, CONSOLE, "guess"),
        PAM_AUTHINFO_UNAVAIL
    );
    assert_eq!(
        laptop.login(&offline, CONSOLE, PASSWORD),
        PAM_AUTHINFO_UNAVAIL
    );
    // An online login unlocks it.
    let online = laptop.stacks(&laptop.config(&server.url()));
    assert_eq!(laptop.login(&online, CONSOLE, PASSWORD), PAM_SUCCESS);
    let offline = laptop.stacks(&laptop.config(&nowhere()));
    assert_eq!(laptop.login(&offline, CONSOLE, PASSWORD), PAM_SUCCESS);
}

#[test]
fn an_old_verifier_is_not_used() {
    let (laptop, _server, _) = Laptop::signed_in_once();
    // Set its online login 8 days back.
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(laptop.verifier()).unwrap()).unwrap();
    let at = record["verified_at"].as_u64().unwrap();
    record["verified_at"] = serde_json::json!(at - 8 * 86_400);
    std::fs::write(laptop.verifier(), record.to_string()).unwrap();
    let offline = laptop.stacks(&laptop.config(&nowhere()));
    assert_eq!(
        laptop.login(&offline, CONSOLE, PASSWORD),
        PAM_AUTHINFO_UNAVAIL
    );
}

#[test]
fn a_410_forgets_the_verifier() {
    let (laptop, server, _) = Laptop::signed_in_once();
    assert!(laptop.verifier().exists());
    drop(server);
    laptop.ws.add_user("alice", None, &["--policy=unmanaged"]);
    let server = Server::start(&laptop.ws, &[]);
    let online = laptop.stacks(&laptop.config(&server.url()));
    assert_ne!(laptop.login(&online, CONSOLE, PASSWORD), PAM_SUCCESS);
    assert!(
        !laptop.verifier().exists(),
        "the authority no longer manages alice"
    );
}

#[test]
fn an_authority_that_answers_badly_never_opens_the_offline_path() {
    let (laptop, _server, _) = Laptop::signed_in_once();
    // A 500, and an impostor whose ServerSignature is wrong: both answered,
    // so neither is "unreachable".
    let (url, responder) = canned_replies(vec![
        http_reply("500 Internal Server Error", "", b""),
        plist_reply(&[(
            "DigestChallenge",
            "SCRAM-SHA-256 r=imp,s=c2FsdHNhbHQ=,i=4096",
        )]),
        plist_reply(&[("AuthToken", "forged"), ("ServerSignature", "v=AAAA")]),
    ]);
    let confdir = laptop.fake_authority_stacks(&url);
    assert_eq!(
        laptop.login(&confdir, CONSOLE, PASSWORD),
        PAM_AUTHINFO_UNAVAIL,
        "5xx"
    );
    assert_eq!(
        laptop.login(&confdir, CONSOLE, PASSWORD),
        PAM_AUTHINFO_UNAVAIL,
        "impostor"
    );
    responder.join().unwrap();
    assert_eq!(laptop.failures(), 0, "the offline path was never taken");
}

#[test]
fn an_authority_that_cannot_serve_now_leaves_the_login_to_offline() {
    let (laptop, _server, _) = Laptop::signed_in_once();
    // 503 (its database is away) and 429 (the account's budget is spent) to
    // the first request: unavailable, so the login falls through to offline
    // (../shared/PROTOCOL.md), where the right password works and a wrong
    // one counts as an offline failure. To the proof, a 429 is final: the
    // proof went to that authority, so offline is not tried.
    let (url, responder) = canned_replies(vec![
        http_reply("503 Service Unavailable", "Retry-After: 5\r\n", b""),
        http_reply("429 Too Many Requests", "Retry-After: 60\r\n", b""),
        http_reply("503 Service Unavailable", "", b""),
        plist_reply(&[(
            "DigestChallenge",
            "SCRAM-SHA-256 r=busy,s=c2FsdHNhbHQ=,i=100000",
        )]),
        http_reply("429 Too Many Requests", "Retry-After: 60\r\n", b""),
    ]);
    let confdir = laptop.fake_authority_stacks(&url);
    for step in ["503 to the challenge", "429 to the challenge"] {
        assert_eq!(
            laptop.login(&confdir, CONSOLE, PASSWORD),
            PAM_SUCCESS,
            "{step}"
        );
    }
    assert_eq!(laptop.failures(), 0);
    assert_eq!(
        laptop.login(&confdir, CONSOLE, "not the password"),
        PAM_AUTH_ERR,
        "a wrong password offline"
    );
    assert_eq!(laptop.failures(), 1, "counted toward the offline lockout");
    assert_eq!(
        laptop.login(&confdir, CONSOLE, PASSWORD),
        PAM_AUTHINFO_UNAVAIL,
        "429 to the proof"
    );
    assert_eq!(laptop.failures(), 1, "offline was not tried");
    responder.join().unwrap();
}
