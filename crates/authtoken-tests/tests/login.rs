//! Real logins: the real `pam_authtoken.so` in the real libpam, against a
//! real `authtoken-server` on 127.0.0.1 over TLS with a test CA.

mod common;

/// `key=value key="quoted value" …` as pairs; `None` if any word is not one.
fn key_values(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let mut end = None;
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end?;
            (quoted[..end].to_owned(), &quoted[end + 1..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        if !(after.is_empty() || after.starts_with(' ')) {
            return None;
        }
        out.push((key.to_owned(), value));
        rest = after.trim_start();
    }
    Some(out)
}

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;

/// Workspace with alice (SCRAM), bob (unmanaged), carol (no token needed).
fn standard_users() -> Workspace {
    let ws = Workspace::new();
    ws.add_user("alice", Some("correct horse"), &[]);
    ws.add_user("bob", None, &["--policy=unmanaged"]);
    ws.add_user("carol", None, &["--policy=no-token"]);
    ws
}

#[test]
fn right_password_succeeds_and_wrong_is_auth_err() {
    let ws = standard_users();
    let server = Server::start(&ws, &[]);
    let confdir = ws.simple_stack(&ws.config_for(&server.url(), ""));

    let mut pam = Pam::start(&confdir, "authtoken-test", "alice", Some("correct horse"));
    assert_eq!(pam.authenticate(), PAM_SUCCESS);
    assert_eq!(pam.conversation.prompts, vec!["Password: ".to_owned()]);
    assert_eq!(
        pam.acct_mgmt(),
        PAM_SUCCESS,
        "account of a user we issued a token for"
    );
    assert_eq!(pam.setcred(), PAM_SUCCESS);
    drop(pam);
    assert_eq!(login(&confdir, "alice", "correct horsE"), PAM_AUTH_ERR);
    assert_eq!(
        login(&confdir, "alice", ""),
        PAM_AUTH_ERR,
        "empty password refused"
    );
    assert!(server.wait_for("token issued", 1));
    assert!(server.wait_for("rejected: wrong proof", 1));
    // Both steps of one handshake travel on one connection.
    let lines = server.lines();
    // Every request line is one record of key=value fields.
    for line in lines.iter().filter(|l| l.starts_with("request ")) {
        let fields = key_values(&line["request ".len()..])
            .unwrap_or_else(|| panic!("not key=value fields: {line}"));
        for key in [
            "conn",
            "peer",
            "user",
            "step",
            "status",
            "outcome",
            "reason",
            "elapsed_ms",
        ] {
            assert!(
                fields.iter().any(|(k, _)| k == key),
                "{key} missing: {line}"
            );
        }
    }
    let conn = |step: &str| {
        lines
            .iter()
            .find(|l| l.contains(" user=\"alice\" ") && l.contains(step))
            .and_then(|l| {
                l.split_whitespace()
                    .find(|w| w.starts_with("conn="))
                    .map(str::to_owned)
            })
            .unwrap()
    };
    assert_eq!(conn("step=challenge"), conn("step=response"));
}

#[test]
fn unmanaged_user_is_ignored_after_exactly_one_request() {
    let ws = standard_users();
    let server = Server::start(&ws, &[]);
    let confdir = ws.simple_stack(&ws.config_for(&server.url(), ""));
    // Alone in the stack, an IGNORE leaves libpam with no decision: denied.
    assert_ne!(login(&confdir, "bob", "whatever"), PAM_SUCCESS);
    assert_eq!(server.requests_for("bob"), 1);
    assert!(server
        .lines()
        .iter()
        .any(|l| l.contains("user=\"bob\"") && l.contains("status=410")));

    // Seen on its own: only our module, then pam_permit, so an IGNORE from
    // us lets pam_permit decide (success) while an AUTH_ERR would not.
    let confdir = ws.pam_service(
        "authtoken-test",
        &[
            format!(
                "auth [success=done ignore=ignore default=die] {} config={}",
                module_path().display(),
                ws.path("authtoken.toml").display()
            ),
            "auth required pam_permit.so".into(),
        ],
    );
    assert_eq!(
        login(&confdir, "bob", "whatever"),
        PAM_SUCCESS,
        "IGNORE let pam_permit decide"
    );
    assert_eq!(
        server.requests_for("bob"),
        1,
        "the 410 is remembered for this login session"
    );
    assert_eq!(
        login(&confdir, "alice", "wrong"),
        PAM_AUTH_ERR,
        "a real failure is not ignored"
    );
}

#[test]
fn unknown_users_get_a_decoy_by_default_and_410_when_configured() {
    let ws = standard_users();
    let stack = |server: &Server| {
        ws.pam_service(
            "authtoken-test",
            &[
                format!(
                    "auth [ignore=ignore default=die] {} config={}",
                    module_path().display(),
                    ws.config_for(&server.url(), "").display()
                ),
                "auth required pam_permit.so".into(),
            ],
        )
    };
    // Default: a challenge like any user's, and then a rejection, so the
    // name cannot be probed.
    let server = Server::start(&ws, &[]);
    assert_eq!(login(&stack(&server), "zed", "x"), PAM_AUTH_ERR);
    assert_eq!(server.requests_for("zed"), 2);
    // --unknown-users unmanaged: 410, and the module steps aside.
    let server = Server::start(&ws, &["--unknown-users=unmanaged"]);
    assert_eq!(login(&stack(&server), "zed", "x"), PAM_SUCCESS);
    assert_eq!(server.requests_for("zed"), 1);
}

#[test]
fn empty_challenge_follows_policy() {
    let ws = standard_users();
    let server = Server::start(&ws, &[]);
    // Default policy: ignore -> the module steps aside.
    let stack = |config: &std::path::Path| {
        ws.pam_service(
            "authtoken-test",
            &[
                format!(
                    "auth [ignore=ignore default=die] {} config={}",
                    module_path().display(),
                    config.display()
                ),
                "auth required pam_deny.so".into(),
            ],
        )
    };
    let confdir = stack(&ws.config_for(&server.url(), ""));
    assert_eq!(
        login(&confdir, "carol", "anything"),
        PAM_AUTH_ERR,
        "ignored, so pam_deny decides"
    );
    assert_eq!(
        server.requests_for("carol"),
        1,
        "no second request after an empty challenge"
    );

    let confdir = ws.simple_stack(&ws.config_for(&server.url(), "empty_challenge = \"success\""));
    assert_eq!(login(&confdir, "carol", "anything"), PAM_SUCCESS);
    assert_eq!(server.requests_for("carol"), 2);
}

#[test]
fn server_down_is_authinfo_unavail() {
    let ws = standard_users();
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let confdir = ws.simple_stack(&ws.config_for(&format!("https://127.0.0.1:{port}/checkin"), ""));
    assert_eq!(
        login(&confdir, "alice", "correct horse"),
        PAM_AUTHINFO_UNAVAIL
    );
}

#[test]
fn silent_listener_is_authinfo_unavail_within_deadline() {
    let ws = standard_users();
    // Accepts TCP connections (the kernel completes the handshake) and never
    // says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/checkin", listener.local_addr().unwrap());
    let config = ws.config_for(&url, "");
    let body = std::fs::read_to_string(&config)
        .unwrap()
        .replace("timeout_ms = 4000", "timeout_ms = 1500");
    let config = ws.write_config("authtoken.toml", &body);
    let confdir = ws.simple_stack(&config);
    let (code, elapsed) = timed(|| login(&confdir, "alice", "correct horse"));
    assert_eq!(code, PAM_AUTHINFO_UNAVAIL);
    // Deadline 1.5 s; the module's kill deadline is later still. Allow slack
    // for a loaded machine but never a hang.
    assert!(
        elapsed >= Duration::from_millis(1400),
        "returned before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(1500 + 3000),
        "hung past the deadline: {elapsed:?}"
    );
    drop(listener);
}

#[test]
fn wrong_server_signature_is_not_success() {
    let ws = standard_users();
    // A store whose ServerKey does not belong to alice's password: the proof
    // checks out, but the signature cannot be the one the client expects.
    let text = std::fs::read_to_string(ws.users()).unwrap();
    let mut out = String::new();
    let mut in_alice = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_alice = line == "[users.alice]";
        }
        if in_alice && line.starts_with("server_key") {
            out.push_str("server_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_ne!(out, text);
    std::fs::write(ws.users(), out).unwrap();
    let server = Server::start(&ws, &[]);
    let confdir = ws.simple_stack(&ws.config_for(&server.url(), ""));
    assert_eq!(
        login(&confdir, "alice", "correct horse"),
        PAM_AUTHINFO_UNAVAIL
    );
    assert!(
        server.wait_for("token issued", 1),
        "the server did issue a token"
    );
}

#[test]
fn untrusted_server_certificate_is_not_success() {
    let ws = standard_users();
    let server = Server::start(&ws, &[]);
    let other_ca = ws.gen_tls("other-ca");
    let config = ws.config_for(&server.url(), "");
    let body = std::fs::read_to_string(&config).unwrap().replace(
        &ws.path("tls/ca.pem").display().to_string(),
        &other_ca.join("ca.pem").display().to_string(),
    );
    let confdir = ws.simple_stack(&ws.write_config("authtoken.toml", &body));
    assert_eq!(
        login(&confdir, "alice", "correct horse"),
        PAM_AUTHINFO_UNAVAIL
    );
    assert_eq!(
        server.requests_for("alice"),
        0,
        "nothing was sent to an untrusted peer"
    );
}

#[test]
fn mutual_tls_client_identity() {
    let ws = standard_users();
    let ca = ws.path("tls/ca.pem").display().to_string();
    let server = Server::start(&ws, &["--client-ca", &ca]);
    let with_identity = format!(
        "client_cert = \"{}\"\nclient_key = \"{}\"",
        ws.path("tls/client.pem").display(),
        ws.path("tls/client.key").display()
    );
    let confdir = ws.simple_stack(&ws.config_for(&server.url(), &with_identity));
    assert_eq!(login(&confdir, "alice", "correct horse"), PAM_SUCCESS);
    let confdir = ws.simple_stack(&ws.config_for(&server.url(), ""));
    assert_eq!(
        login(&confdir, "alice", "correct horse"),
        PAM_AUTHINFO_UNAVAIL
    );
}

#[test]
fn unsafe_config_fails_closed() {
    let ws = standard_users();
    let server = Server::start(&ws, &[]);
    let config = ws.config_for(&server.url(), "");
    let confdir = ws.simple_stack(&config);
    assert_eq!(login(&confdir, "alice", "correct horse"), PAM_SUCCESS);

    for mode in [0o620, 0o602, 0o666] {
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(
            login(&confdir, "alice", "correct horse"),
            PAM_AUTHINFO_UNAVAIL,
            "mode {mode:o}"
        );
    }
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    nix::unistd::chown(&config, Some(nix::unistd::Uid::from_raw(1000)), None).unwrap();
    assert_eq!(
        login(&confdir, "alice", "correct horse"),
        PAM_AUTHINFO_UNAVAIL,
        "not root-owned"
    );
    nix::unistd::chown(&config, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();

    // A symlink to a good config is refused too (O_NOFOLLOW).
    let link = ws.path("link.toml");
    std::os::unix::fs::symlink(&config, &link).unwrap();
    let confdir_link = ws.simple_stack(&link);
    assert_eq!(
        login(&confdir_link, "alice", "correct horse"),
        PAM_AUTHINFO_UNAVAIL
    );

    // Syntax errors, unknown keys, missing file: fail closed, no prompt.
    let confdir = ws.simple_stack(&config);
    for body in [
        "backend = ",
        "backend = \"mdm\"\nurl = \"https://x/\"\nsurprise = 1\n",
    ] {
        ws.write_config("authtoken.toml", body);
        let mut pam = Pam::start(&confdir, "authtoken-test", "alice", Some("correct horse"));
        assert_eq!(pam.authenticate(), PAM_AUTHINFO_UNAVAIL, "{body}");
        assert!(
            pam.conversation.prompts.is_empty(),
            "no password asked for a broken config"
        );
    }
    std::fs::remove_file(&config).unwrap();
    assert_eq!(
        login(&confdir, "alice", "correct horse"),
        PAM_AUTHINFO_UNAVAIL
    );
    assert_eq!(
        server.requests_for("alice"),
        2,
        "only the first login reached the server"
    );
}

#[test]
fn plain_http_needs_allow_insecure_http_even_on_loopback() {
    let ws = standard_users();
    let server = Server::start_with(&ws.users(), &[]);
    let loopback = format!("http://{}/checkin", server.addr);
    let confdir = ws.simple_stack(&ws.config_for(&loopback, ""));
    assert_eq!(
        login(&confdir, "alice", "correct horse"),
        PAM_AUTHINFO_UNAVAIL,
        "plain http on loopback without the flag"
    );
    assert_eq!(
        server.requests_for("alice"),
        0,
        "refused before any request"
    );

    let confdir = ws.simple_stack(&ws.config_for(&loopback, "allow_insecure_http = true"));
    assert_eq!(
        login(&confdir, "alice", "correct horse"),
        PAM_SUCCESS,
        "plain http on loopback, explicitly allowed"
    );

    let remote = "http://mdm.invalid/checkin";
    let confdir = ws.simple_stack(&ws.config_for(remote, ""));
    assert_eq!(
        login(&confdir, "alice", "correct horse"),
        PAM_AUTHINFO_UNAVAIL
    );
}

#[test]
fn helper_missing_or_unsafe_is_authinfo_unavail() {
    let ws = standard_users();
    let server = Server::start(&ws, &[]);
    let config = ws.config_for(&server.url(), "");
    let body = std::fs::read_to_string(&config).unwrap();
    let missing = body.replace(HELPER, "/nonexistent/authtoken-helper");
    let confdir = ws.simple_stack(&ws.write_config("authtoken.toml", &missing));
    assert_eq!(
        login(&confdir, "alice", "correct horse"),
        PAM_AUTHINFO_UNAVAIL
    );

    // A helper anyone could have replaced is not run.
    let copy = ws.path("helper-copy");
    std::fs::copy(HELPER, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o777)).unwrap();
    let writable = body.replace(HELPER, &copy.display().to_string());
    ws.write_config("authtoken.toml", &writable);
    assert_eq!(
        login(&confdir, "alice", "correct horse"),
        PAM_AUTHINFO_UNAVAIL
    );

    // A helper that crashes, or exits without a word, is not success either.
    for script in [
        "#!/bin/sh\nkill -SEGV $$\n",
        "#!/bin/sh\nexit 0\n",
        "#!/bin/sh\necho '{\"v\":1,\"outcome\":\"token\"}'\n",
    ] {
        std::fs::write(&copy, script).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            login(&confdir, "alice", "correct horse"),
            PAM_AUTHINFO_UNAVAIL,
            "{script}"
        );
    }
    assert_eq!(server.requests_for("alice"), 0);
}

#[test]
fn http_digest_users() {
    let ws = Workspace::new();
    ws.add_user("dave", Some("digest pw"), &["--scheme=digest-sha256"]);
    ws.add_user("erin", Some("md5 pw"), &["--scheme=digest-md5", "--no-qop"]);
    let server = Server::start(&ws, &[]);
    // Digest is off by default (no proof from the server): the default
    // refuses both users before a second request.
    let confdir = ws.simple_stack(&ws.config_for(&server.url(), ""));
    assert_eq!(login(&confdir, "dave", "digest pw"), PAM_AUTHINFO_UNAVAIL);
    assert_eq!(login(&confdir, "erin", "md5 pw"), PAM_AUTHINFO_UNAVAIL);
    assert_eq!(server.requests_for("dave"), 1);
    assert_eq!(server.requests_for("erin"), 1);
    let confdir = ws.simple_stack(&ws.config_for(
        &server.url(),
        "schemes = [\"digest-sha-256\", \"digest-md5\"]",
    ));
    assert_eq!(login(&confdir, "dave", "digest pw"), PAM_SUCCESS);
    assert_eq!(login(&confdir, "dave", "digest PW"), PAM_AUTH_ERR);
    assert_eq!(login(&confdir, "erin", "md5 pw"), PAM_SUCCESS);
    assert_eq!(login(&confdir, "erin", "md5 pW"), PAM_AUTH_ERR);
}

#[test]
fn bad_user_names_make_no_request() {
    let ws = standard_users();
    let server = Server::start(&ws, &[]);
    let confdir = ws.simple_stack(&ws.config_for(&server.url(), ""));
    let long = "a".repeat(257);
    for user in [&b""[..], b"al\x01ice", b"alice\n", long.as_bytes()] {
        let mut pam = Pam::start_raw(&confdir, "authtoken-test", user, Some("correct horse"));
        let code = pam.authenticate();
        assert!(
            code == PAM_USER_UNKNOWN || code == PAM_AUTH_ERR,
            "{user:?}: {code}"
        );
        assert!(pam.conversation.prompts.is_empty());
    }
    assert!(server.lines().iter().all(|l| !l.starts_with("request ")));
}

#[test]
fn first_pass_options_reuse_the_password() {
    let ws = standard_users();
    let server = Server::start(&ws, &[]);
    let config = ws.config_for(&server.url(), "");
    let module = module_path().display().to_string();
    let c = config.display();
    let confdir = ws.pam_service(
        "authtoken-test",
        &[
            format!("auth optional {module} config={c}"),
            format!("auth required {module} use_first_pass config={c}"),
            format!("auth required {module} try_first_pass config={c}"),
        ],
    );
    let mut pam = Pam::start(&confdir, "authtoken-test", "alice", Some("correct horse"));
    assert_eq!(pam.authenticate(), PAM_SUCCESS);
    assert_eq!(
        pam.conversation.prompts.len(),
        1,
        "prompted once, reused twice"
    );
    assert_eq!(server.requests_for("alice"), 6);

    // use_first_pass with nothing before it: no prompt, no request, failure.
    let confdir = ws.pam_service(
        "authtoken-test",
        &[format!("auth required {module} use_first_pass config={c}")],
    );
    let mut pam = Pam::start(&confdir, "authtoken-test", "alice", Some("correct horse"));
    assert_eq!(pam.authenticate(), PAM_AUTH_ERR);
    assert!(pam.conversation.prompts.is_empty());
    assert_eq!(server.requests_for("alice"), 6);
}

#[test]
fn other_entry_points_never_crash() {
    let ws = standard_users();
    let server = Server::start(&ws, &[]);
    let config = ws.config_for(&server.url(), "");
    let module = module_path().display().to_string();
    let c = config.display();
    let confdir = ws.pam_service(
        "authtoken-test",
        &[
            format!("auth [success=done ignore=ignore default=die] {module} config={c}"),
            "auth required pam_permit.so".into(),
            format!("account sufficient {module} config={c}"),
            "account required pam_permit.so".into(),
            format!("password sufficient {module} config={c}"),
            "password required pam_deny.so".into(),
            format!("session optional {module} config={c}"),
            "session required pam_permit.so".into(),
        ],
    );
    let mut pam = Pam::start(&confdir, "authtoken-test", "bob", Some("x"));
    assert_eq!(
        pam.authenticate(),
        PAM_SUCCESS,
        "bob ignored, pam_permit decides"
    );
    assert_eq!(
        pam.setcred(),
        PAM_SUCCESS,
        "ignored by us, pam_permit's success"
    );
    assert_eq!(pam.acct_mgmt(), PAM_SUCCESS, "ignored, pam_permit decides");
    assert_ne!(
        pam.chauthtok(),
        PAM_SUCCESS,
        "password changes are not ours"
    );
    assert_eq!(pam.open_session(), PAM_SUCCESS);
    assert_eq!(pam.close_session(), PAM_SUCCESS);
}

#[test]
fn misbehaving_authority_is_never_success() {
    let ws = standard_users();
    let server = Server::start_with(&ws.users(), &[]);
    let challenge_body = |challenge: &str| {
        format!(
            "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>DigestChallenge</key><string>{challenge}</string></dict></plist>"
        )
    };
    // A valid empty challenge (PAM_IGNORE if read) padded past the 64 KiB cap.
    let huge = format!(
        "<?xml version=\"1.0\"?><!--{}--><plist version=\"1.0\"><dict><key>DigestChallenge</key><string></string></dict></plist>",
        "A".repeat(70 * 1024)
    );
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "oversized body",
            vec![http_reply("200 OK", "", huge.as_bytes())],
        ),
        (
            "not a plist",
            vec![http_reply("200 OK", "", b"<html>hello</html>")],
        ),
        (
            "server error",
            vec![http_reply("500 Internal Server Error", "", b"")],
        ),
        (
            "redirect to a real authority",
            vec![http_reply(
                "307 Temporary Redirect",
                &format!("Location: http://{}/checkin\r\n", server.addr),
                b"",
            )],
        ),
        (
            "unsupported scheme",
            vec![http_reply(
                "200 OK",
                "",
                challenge_body("Basic realm=\"x\"").as_bytes(),
            )],
        ),
        (
            "too few iterations",
            vec![http_reply(
                "200 OK",
                "",
                challenge_body("SCRAM-SHA-256 r=abc,s=c2FsdA==,i=1000").as_bytes(),
            )],
        ),
        (
            "connection closed mid-reply",
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n<?xml".to_vec()],
        ),
    ];
    for (what, replies) in cases {
        let (url, responder) = canned_replies(replies);
        let confdir = ws.simple_stack(&ws.config_for(&url, "allow_insecure_http = true"));
        assert_eq!(
            login(&confdir, "alice", "correct horse"),
            PAM_AUTHINFO_UNAVAIL,
            "{what}"
        );
        responder.join().unwrap();
    }
    assert_eq!(
        server.requests_for("alice"),
        0,
        "the redirect was not followed"
    );
}

#[test]
fn helper_login_refuses_an_empty_password_without_a_request() {
    let ws = standard_users();
    let server = Server::start(&ws, &[]);
    let config = ws.config_for(&server.url(), "");
    let out = std::process::Command::new(CLI)
        .args(["login", "alice", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty password refused"));
    assert_eq!(server.requests_for("alice"), 0);
}

/// The module reads its settings from the file the helper writes beside
/// the config, and an edit to the config still takes effect at the next
/// login: the real module sees the text differ and has the real helper
/// make the settings again.
#[test]
fn config_edits_take_effect_through_the_module_settings() {
    let ws = standard_users();
    let server = Server::start(&ws, &[]);
    let config = ws.config_for(&server.url(), "");
    let settings = config.with_file_name("authtoken.toml.module.json");
    let meta = std::fs::metadata(&settings).expect("written beside the config");
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&meta),
            meta.permissions().mode() & 0o777
        ),
        (0, 0o600),
        "root's, no more readable than the config"
    );
    let confdir = ws.simple_stack(&config);
    assert_eq!(login(&confdir, "alice", "correct horse"), PAM_SUCCESS);

    // Edited by hand, nothing run: a setting the module itself uses.
    let moved = ws.path("cache-moved");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("cache_dir = \"{}\"", ws.path("cache").display()),
        &format!("cache_dir = \"{}\"", moved.display()),
    );
    std::fs::write(&config, &text).unwrap();
    assert!(!moved.exists());
    assert_eq!(login(&confdir, "alice", "correct horse"), PAM_SUCCESS);
    assert!(moved.is_dir(), "the module used the edited cache_dir");
    let written = std::fs::read_to_string(&settings).unwrap();
    assert!(
        written.contains("cache-moved"),
        "the helper rewrote the settings: {written}"
    );

    // An edit the helper refuses fails closed before the password, with
    // the helper's message; fixing it is enough to log in again.
    std::fs::write(&config, format!("{text}surprise = 1\n")).unwrap();
    let mut pam = Pam::start(&confdir, "authtoken-test", "alice", Some("correct horse"));
    assert_eq!(pam.authenticate(), PAM_AUTHINFO_UNAVAIL);
    assert!(pam.conversation.prompts.is_empty());
    drop(pam);
    std::fs::write(&config, &text).unwrap();
    assert_eq!(login(&confdir, "alice", "correct horse"), PAM_SUCCESS);

    // A settings file that is not ours (not our JSON, or one others could
    // have written) is not believed, not even for the helper it names:
    // only the installed helper may make new ones. Without one (a test
    // machine) the login fails closed without a request, and what the
    // packages run repairs it.
    if !std::path::Path::new("/usr/libexec/authtoken/authtoken-helper").exists() {
        let before = server.requests_for("alice");
        std::fs::write(&settings, "not settings").unwrap();
        assert_eq!(
            login(&confdir, "alice", "correct horse"),
            PAM_AUTHINFO_UNAVAIL
        );
        make_module_settings(&config);
        assert_eq!(login(&confdir, "alice", "correct horse"), PAM_SUCCESS);
        std::fs::set_permissions(&settings, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(
            login(&confdir, "alice", "correct horse"),
            PAM_AUTHINFO_UNAVAIL
        );
        assert_eq!(
            server.requests_for("alice"),
            before + 2,
            "only the repaired login's two check-ins"
        );
    }
}
