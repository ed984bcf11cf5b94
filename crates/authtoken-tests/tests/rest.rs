//! Backend `rest` through the real libpam: each flavor (seed 002's JSON
//! `authenticate`, seed 003's Deki `users/authenticate`) against the
//! reference server, and against a peer written from the seed pages alone
//! (`tests/peers/rest_peer.py`), with the odd shapes those pages show and
//! the impostors a password-taking API invites.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const FLAVORS: [&str; 2] = ["json-authenticate", "deki"];

/// A `rest` config for `url`, trusting the workspace CA (or `ca`).
fn rest_config(ws: &Workspace, url: &str, flavor: &str, extra: &str) -> PathBuf {
    ws.write_config(
        "authtoken.toml",
        &format!(
            "backend = \"rest\"\nurl = \"{url}\"\nca_file = \"{}\"\ntimeout_ms = 4000\nhelper = \"{HELPER}\"\nhelper_user = \"nobody\"\ncache_dir = \"{}\"\n{extra}\n[rest]\nflavor = \"{flavor}\"\ntoken_duration = 600\n",
            ws.path("tls/ca.pem").display(),
            ws.path("cache").display(),
        ),
    )
}

/// auth, account and session through the module; sshd's name too.
fn stack(ws: &Workspace, config: &Path) -> PathBuf {
    let module = module_path().display().to_string();
    let c = config.display();
    let lines = [
        format!("auth required {module} config={c}"),
        format!("account required {module} config={c}"),
        format!("session required {module} config={c}"),
    ];
    ws.pam_service("sshd", &lines);
    ws.pam_service("authtoken-test", &lines)
}

fn rest_server(ws: &Workspace, flavor: &str) -> Server {
    ws.add_user("alice", Some("alice pw"), &[]);
    ws.add_user("bob", None, &["--policy", "unmanaged"]);
    Server::start(ws, &["--protocol", flavor])
}

#[test]
fn each_flavor_signs_in_through_libpam_and_keeps_the_session_token() {
    for flavor in FLAVORS {
        let ws = Workspace::new();
        let server = rest_server(&ws, flavor);
        let url = format!("https://{}/@api/deki/users/authenticate", server.addr);
        let confdir = stack(&ws, &rest_config(&ws, &url, flavor, ""));

        let mut pam = Pam::start(&confdir, "authtoken-test", "alice", Some("alice pw"));
        assert_eq!(pam.authenticate(), PAM_SUCCESS, "{flavor}");
        assert_eq!(pam.acct_mgmt(), PAM_SUCCESS, "{flavor}");
        assert_eq!(pam.open_session(), PAM_SUCCESS, "{flavor}");
        let file = PathBuf::from(pam.getenv("AUTHTOKEN_FILE").expect("AUTHTOKEN_FILE"));
        let token = std::fs::read(&file).unwrap();
        assert_eq!(
            issued_fingerprints(&server, "alice"),
            vec![fingerprint(&token)],
            "{flavor}: the session holds the token the authority issued"
        );
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let expires = pam.getenv("AUTHTOKEN_EXPIRES");
        if flavor == "json-authenticate" {
            // Asked for 600 s, said 600 s.
            let at: u64 = expires.expect("AUTHTOKEN_EXPIRES").parse().unwrap();
            assert!(
                (authtoken_core::clock::unix_secs() + 590
                    ..=authtoken_core::clock::unix_secs() + 610)
                    .contains(&at),
                "{at}"
            );
            let status = run_ok(
                Command::new(CLI)
                    .args(["status", "--config"])
                    .arg(ws.path("authtoken.toml")),
                None,
            );
            assert!(status.contains("expires at"), "{status}");
        } else {
            assert_eq!(expires, None, "Deki says no duration");
        }
        assert_eq!(pam.close_session(), PAM_SUCCESS);
        assert!(!file.exists(), "{flavor}: wiped at close");
        assert!(
            std::fs::read_dir(file.parent().unwrap()).map_or(true, |d| d.count() == 0),
            "{flavor}: nothing left beside it"
        );

        assert_eq!(login(&confdir, "alice", "wrong"), PAM_AUTH_ERR, "{flavor}");
        assert_eq!(
            login(&confdir, "carol", "any"),
            PAM_AUTH_ERR,
            "{flavor}: unknown"
        );
        assert_eq!(
            login(&confdir, "bob", "any"),
            PAM_AUTH_ERR,
            "{flavor}: no 410 here"
        );
        drop(server);
        assert_eq!(
            login(&confdir, "alice", "alice pw"),
            PAM_AUTHINFO_UNAVAIL,
            "{flavor}: server down"
        );
    }
}

#[test]
fn a_colon_in_the_user_name_cannot_borrow_another_users_password() {
    // "eve:pass" with the password "word" would be eve's "pass:word" in
    // HTTP Basic: a token for eve while PAM signs in "eve:pass".
    let ws = Workspace::new();
    ws.add_user("eve", Some("pass:word"), &[]);
    let server = Server::start(&ws, &["--protocol", "deki"]);
    let confdir = stack(&ws, &rest_config(&ws, &server.url(), "deki", ""));
    assert_eq!(
        login(&confdir, "eve", "pass:word"),
        PAM_SUCCESS,
        "a colon in a password is fine"
    );
    assert_eq!(login(&confdir, "eve:pass", "word"), PAM_AUTHINFO_UNAVAIL);
    assert_eq!(
        server.requests_for("eve"),
        1,
        "only eve's own login reached the server"
    );
}

#[test]
fn an_expired_token_is_not_handed_to_a_session() {
    let ws = Workspace::new();
    let server = rest_server(&ws, "json-authenticate");
    let config = ws.write_config(
        "authtoken.toml",
        &std::fs::read_to_string(rest_config(&ws, &server.url(), "json-authenticate", ""))
            .unwrap()
            .replace("token_duration = 600", "token_duration = 1"),
    );
    let confdir = stack(&ws, &config);
    // In the handle that signed in.
    let mut pam = Pam::start(&confdir, "authtoken-test", "alice", Some("alice pw"));
    assert_eq!(pam.authenticate(), PAM_SUCCESS);
    std::thread::sleep(Duration::from_millis(2100));
    assert_ne!(
        pam.open_session(),
        PAM_SUCCESS,
        "session required: no token, no success"
    );
    assert_eq!(pam.getenv("AUTHTOKEN_FILE"), None);
    // Through sshd's hand-off from a forked authentication.
    let mut child = Pam::start(&confdir, "sshd", "alice", Some("alice pw"));
    assert_eq!(child.authenticate(), PAM_SUCCESS);
    std::mem::forget(child);
    std::thread::sleep(Duration::from_millis(2100));
    let mut parent = Pam::start(&confdir, "sshd", "alice", None);
    assert_ne!(parent.open_session(), PAM_SUCCESS);
    assert_eq!(parent.getenv("AUTHTOKEN_FILE"), None);
    let left: Vec<_> = std::fs::read_dir(ws.path("cache"))
        .unwrap()
        .flatten()
        .flat_map(|s| std::fs::read_dir(s.path()).unwrap().flatten())
        .collect();
    assert!(
        left.is_empty(),
        "the expired hand-off was removed: {left:?}"
    );
}

/// The seed peer in `mode`, on the workspace's server certificate.
struct Peer {
    child: Child,
    url: String,
}

impl Peer {
    fn start(ws: &Workspace, mode: &str) -> Peer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/rest_peer.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(mode)
            .arg(ws.path("tls/server.pem"))
            .arg(ws.path("tls/server.key"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("peer address");
        Peer {
            child,
            url: format!("https://{addr}/@api/deki/users/authenticate"),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_seed_peer_and_its_odd_shapes() {
    for (mode, flavor, right, wrong) in [
        ("json", "json-authenticate", PAM_SUCCESS, PAM_AUTH_ERR),
        ("deki", "deki", PAM_SUCCESS, PAM_AUTH_ERR),
        // Seed 002's Example 1 answer has a trailing comma: not JSON, so
        // not an answer: unavailable, never a login (docs/PROTOCOL.md).
        (
            "json-comma",
            "json-authenticate",
            PAM_AUTHINFO_UNAVAIL,
            PAM_AUTH_ERR,
        ),
        (
            "json-false",
            "json-authenticate",
            PAM_AUTH_ERR,
            PAM_AUTH_ERR,
        ),
        (
            "json-empty",
            "json-authenticate",
            PAM_AUTHINFO_UNAVAIL,
            PAM_AUTH_ERR,
        ),
        (
            "redirect",
            "json-authenticate",
            PAM_AUTHINFO_UNAVAIL,
            PAM_AUTHINFO_UNAVAIL,
        ),
        (
            "redirect",
            "deki",
            PAM_AUTHINFO_UNAVAIL,
            PAM_AUTHINFO_UNAVAIL,
        ),
        (
            "huge",
            "json-authenticate",
            PAM_AUTHINFO_UNAVAIL,
            PAM_AUTH_ERR,
        ),
    ] {
        let ws = Workspace::new();
        let peer = Peer::start(&ws, mode);
        let confdir = stack(&ws, &rest_config(&ws, &peer.url, flavor, ""));
        assert_eq!(
            login(&confdir, "alice", "alice pw"),
            right,
            "{mode} {flavor}"
        );
        assert_eq!(
            login(&confdir, "alice", "wrong"),
            wrong,
            "{mode} {flavor} wrong"
        );
        if right == PAM_SUCCESS {
            let mut pam = Pam::start(&confdir, "authtoken-test", "alice", Some("alice pw"));
            assert_eq!(pam.authenticate(), PAM_SUCCESS);
            assert_eq!(pam.open_session(), PAM_SUCCESS);
            let token = std::fs::read_to_string(pam.getenv("AUTHTOKEN_FILE").unwrap()).unwrap();
            let expected = if flavor == "deki" {
                "1_633995282975283345_9370c2b345bdf559ad2e996dca5adf37"
            } else {
                "gabbagabba"
            };
            assert_eq!(token, expected);
            assert_eq!(pam.close_session(), PAM_SUCCESS);
        }
    }
}

#[test]
fn impostors_get_nothing() {
    // A server whose certificate does not chain to ca_file.
    let ws = Workspace::new();
    let other = ws.gen_tls("other-tls");
    let peer = Peer::start(&ws, "json");
    let config = rest_config(&ws, &peer.url, "json-authenticate", "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &ws.path("tls/ca.pem").display().to_string(),
        &other.join("ca.pem").display().to_string(),
    );
    let confdir = stack(&ws, &ws.write_config("authtoken.toml", &text));
    assert_eq!(login(&confdir, "alice", "alice pw"), PAM_AUTHINFO_UNAVAIL);

    // Plain http: refused by the config, whatever allow_insecure_http says.
    let http = peer.url.replace("https://", "http://");
    let body = format!(
        "backend = \"rest\"\nurl = \"{http}\"\nallow_insecure_http = true\nhelper = \"{HELPER}\"\nhelper_user = \"nobody\"\ncache_dir = \"{}\"\n[rest]\nflavor = \"json-authenticate\"\n",
        ws.path("cache").display()
    );
    let path = ws.path("insecure.toml");
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(CLI)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("needs verified"), "{said}");
    let module = module_path().display().to_string();
    let confdir = ws.pam_service(
        "insecure",
        &[format!("auth required {module} config={}", path.display())],
    );
    let mut pam = Pam::start(&confdir, "insecure", "alice", Some("alice pw"));
    assert_eq!(pam.authenticate(), PAM_AUTHINFO_UNAVAIL);
}

#[test]
fn check_config_says_the_password_travels() {
    let ws = Workspace::new();
    let config = rest_config(&ws, "https://127.0.0.1:1/authenticate", "deki", "");
    let out = Command::new(CLI)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("the password itself is sent to the authority"),
        "{said}"
    );
}

/// The The stack for `rest` beside local accounts (docs/guide/token-apis.md).
fn readme_rest_stack() -> Vec<String> {
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/guide/token-apis.md"),
    )
    .unwrap();
    let mut blocks = readme
        .split("```pam\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap());
    let block = blocks
        .find(|b| {
            let lines: Vec<&str> = b.lines().collect();
            lines.len() == 2
                && lines[0].contains("pam_unix.so")
                && lines[1].contains("pam_authtoken.so")
        })
        .expect("docs/guide/token-apis.md: the rest stack (pam_unix, then the module)");
    block.lines().map(str::to_owned).collect()
}

#[test]
fn local_accounts_keep_logging_in_beside_rest() {
    let ws = Workspace::new();
    let server = rest_server(&ws, "json-authenticate");
    let config = rest_config(&ws, &server.url(), "json-authenticate", "");
    // As written, with the module's path and our config.
    let lines: Vec<String> = readme_rest_stack()
        .iter()
        .map(|line| {
            line.replace(
                "pam_authtoken.so",
                &format!("{} config={}", module_path().display(), config.display()),
            )
        })
        .collect();
    let confdir = ws.pam_service("authtoken-test", &lines);
    // A local account (in a private /etc/passwd and /etc/shadow) whose
    // password only pam_unix knows.
    let hash = run_ok(
        Command::new("openssl").args(["passwd", "-6", "-salt", "authtokentest", "local pw"]),
        None,
    );
    let passwd = ws.path("passwd");
    let shadow = ws.path("shadow");
    std::fs::write(
        &passwd,
        std::fs::read_to_string("/etc/passwd").unwrap()
            + "localadmin:x:4242:4242:Local Admin:/nonexistent:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        &shadow,
        std::fs::read_to_string("/etc/shadow").unwrap()
            + &format!("localadmin:{}:19000:0:99999:7:::\n", hash.trim()),
    )
    .unwrap();
    std::fs::set_permissions(&shadow, std::fs::Permissions::from_mode(0o640)).unwrap();
    let attempt = |user: &str, password: &str| -> bool {
        let out = Command::new("bwrap")
            .args(["--bind", "/", "/", "--dev", "/dev", "--proc", "/proc"])
            .arg("--bind")
            .arg(&confdir)
            .arg("/etc/pam.d")
            .arg("--bind")
            .arg(&passwd)
            .arg("/etc/passwd")
            .arg("--bind")
            .arg(&shadow)
            .arg("/etc/shadow")
            .args([
                "--die-with-parent",
                "pamtester",
                "authtoken-test",
                user,
                "authenticate",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(format!("{password}\n").as_bytes())?;
                child.wait()
            })
            .expect("bwrap and pamtester");
        out.success()
    };
    let before = server.requests_for("localadmin");
    assert!(
        attempt("localadmin", "local pw"),
        "the local password signs in"
    );
    assert_eq!(
        server.requests_for("localadmin"),
        before,
        "and never travels"
    );
    assert!(
        attempt("alice", "alice pw"),
        "the authority's user signs in"
    );
    assert!(!attempt("alice", "wrong"));
    assert!(!attempt("localadmin", "wrong"));
    drop(server);
    assert!(
        attempt("localadmin", "local pw"),
        "with the authority down too"
    );
}

#[test]
fn the_server_throttles_guesses_and_logs_no_secret() {
    let ws = Workspace::new();
    ws.add_user("alice", Some("alice pw"), &[]);
    let server = Server::start(&ws, &["--protocol", "deki", "--throttle-after", "2"]);
    let confdir = stack(&ws, &rest_config(&ws, &server.url(), "deki", ""));
    assert_eq!(login(&confdir, "alice", "guess 1"), PAM_AUTH_ERR);
    assert_eq!(login(&confdir, "alice", "guess 2"), PAM_AUTH_ERR);
    // The budget is spent: even the right password is not evaluated.
    assert_eq!(login(&confdir, "alice", "alice pw"), PAM_AUTHINFO_UNAVAIL);
    assert!(server.wait_for("status=429 outcome=throttled", 1));
    let log = server.lines().join("\n");
    assert!(log.contains("budget=spent"), "{log}");
    for secret in ["guess 1", "guess 2", "alice pw"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}
