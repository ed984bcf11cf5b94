//! Backend `hem`: the real module in the real libpam against the reference
//! server's token-device emulation (`--protocol hem`) on 127.0.0.1.

mod common;

use std::path::PathBuf;

use common::*;

const PASSPHRASE: &str = "correct horse battery staple";

/// Enrols a device labelled `label` and starts its emulation over TLS.
fn device(ws: &Workspace, label: &str, extra: &[&str]) -> Server {
    let file = ws.path("device.toml");
    run_ok(
        std::process::Command::new(SERVER)
            .args(["enroll-device", "--label", label])
            .arg(&file),
        Some(&format!("{PASSPHRASE}\n")),
    );
    let tls = ws.path("tls");
    let mut args: Vec<String> = vec![
        "--protocol=hem".into(),
        format!("--device={}", file.display()),
        format!("--tls-cert={}", tls.join("server.pem").display()),
        format!("--tls-key={}", tls.join("server.key").display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start_with(&ws.path("unused-users.toml"), &args)
}

fn hem_config(ws: &Workspace, server: &Server, extra: &str) -> PathBuf {
    ws.hem_config(server.addr, extra)
}

fn posts(server: &Server) -> usize {
    server
        .lines()
        .iter()
        .filter(|l| l.contains(" step=auth "))
        .count()
}

fn ignore_then_deny(ws: &Workspace, config: &std::path::Path) -> PathBuf {
    ws.pam_service(
        "authtoken-test",
        &[
            format!(
                "auth [success=done ignore=ignore default=die] {} config={}",
                module_path().display(),
                config.display()
            ),
            "auth requisite pam_deny.so".into(),
            format!(
                "session optional {} config={}",
                module_path().display(),
                config.display()
            ),
        ],
    )
}

#[test]
fn device_login_success_wrong_passphrase_and_session_token() {
    let ws = Workspace::new();
    let server = device(&ws, "alice", &[]);
    let confdir = ws.simple_stack(&hem_config(&ws, &server, ""));
    assert_eq!(
        login(&confdir, "alice", "correct horse battery stable"),
        PAM_AUTH_ERR
    );

    let confdir = ignore_then_deny(&ws, &ws.path("authtoken.toml"));
    let mut pam = Pam::start(&confdir, "authtoken-test", "alice", Some(PASSPHRASE));
    assert_eq!(pam.authenticate(), PAM_SUCCESS);
    assert_eq!(pam.open_session(), PAM_SUCCESS);
    let token = std::fs::read(pam.getenv("AUTHTOKEN_FILE").unwrap()).unwrap();
    assert_eq!(
        issued_fingerprints(&server, "-"),
        vec![fingerprint(&token)],
        "the device's JWT is the session token"
    );
    // Its exp claim is the session's expiry (the emulation's tokens live 8 h).
    let expires: u64 = pam
        .getenv("AUTHTOKEN_EXPIRES")
        .expect("AUTHTOKEN_EXPIRES from the JWT's exp")
        .parse()
        .unwrap();
    let now = authtoken_core::clock::unix_secs();
    assert!(
        (now + 8 * 3600 - 60..=now + 8 * 3600 + 60).contains(&expires),
        "{expires}"
    );
    assert_eq!(
        String::from_utf8(token).unwrap().split('.').count(),
        3,
        "a JWT"
    );
    // The deliberate device delay is respected by the deadline.
    assert!(server
        .lines()
        .iter()
        .any(|l| l.contains("step=auth status=200")));
}

#[test]
fn device_of_another_user_is_ignored_without_a_post() {
    let ws = Workspace::new();
    let server = device(&ws, "alice", &[]);
    let confdir = ignore_then_deny(&ws, &hem_config(&ws, &server, ""));
    let mut pam = Pam::start(&confdir, "authtoken-test", "bob", Some("whatever"));
    assert_eq!(
        pam.authenticate(),
        PAM_AUTH_ERR,
        "ignored by us, pam_deny decided"
    );
    drop(pam);
    assert_eq!(
        posts(&server),
        0,
        "no POST for a device labelled for someone else"
    );
    let gets = server
        .lines()
        .iter()
        .filter(|l| l.contains(" step=challenge "))
        .count();
    assert_eq!(gets, 1);
    // Remembered for the login session like a 410: no request at all now.
    let mut pam = Pam::start(&confdir, "authtoken-test", "bob", Some("whatever"));
    assert_eq!(pam.authenticate(), PAM_AUTH_ERR);
    assert!(pam.conversation.prompts.is_empty());
    assert_eq!(
        server
            .lines()
            .iter()
            .filter(|l| l.contains(" step=challenge "))
            .count(),
        1
    );
}

#[test]
fn label_map_names_the_devices_user() {
    let ws = Workspace::new();
    let server = device(&ws, "Alice's HEM", &[]);
    let config = hem_config(
        &ws,
        &server,
        "[hem]\nscope = \"keymgmt:gen\"\n[hem.labels]\n\"Alice's HEM\" = \"carol\"\n",
    );
    let confdir = ignore_then_deny(&ws, &config);
    assert_eq!(login(&confdir, "carol", PASSPHRASE), PAM_SUCCESS);
    assert_eq!(
        login(&confdir, "alice", PASSPHRASE),
        PAM_AUTH_ERR,
        "the label is not alice's"
    );
    assert_eq!(posts(&server), 1);
}

/// Hostile input, finding 12: the label map is an allow-list, and a label
/// alone never signs the superuser in.
#[test]
fn a_device_labelled_root_signs_nobody_in_as_root() {
    let ws = Workspace::new();
    let server = device(&ws, "root", &[]);
    let mapped = hem_config(
        &ws,
        &server,
        "[hem]\nscope = \"keymgmt:gen\"\n[hem.labels]\n\"My device\" = \"alice\"\n",
    );
    let confdir = ignore_then_deny(&ws, &mapped);
    assert_eq!(
        login(&confdir, "root", PASSPHRASE),
        PAM_AUTH_ERR,
        "an unmapped label is not root's"
    );
    let unmapped = hem_config(&ws, &server, "[hem]\nscope = \"keymgmt:gen\"\n");
    let confdir = ignore_then_deny(&ws, &unmapped);
    assert_eq!(
        login(&confdir, "root", PASSPHRASE),
        PAM_AUTH_ERR,
        "without a mapping, a label never names uid 0"
    );
    assert_eq!(posts(&server), 0, "nothing was sent for root");
    // The 410-style answers above are remembered for this login session.
    std::fs::remove_dir_all(ws.path("cache")).unwrap();
    let explicit = hem_config(
        &ws,
        &server,
        "[hem]\nscope = \"keymgmt:gen\"\n[hem.labels]\nroot = \"root\"\n",
    );
    let confdir = ignore_then_deny(&ws, &explicit);
    assert_eq!(
        login(&confdir, "root", PASSPHRASE),
        PAM_SUCCESS,
        "the admin's own mapping to root stands"
    );
}

#[test]
fn device_faults_are_authinfo_unavail() {
    for (state, status) in [
        ("clock-not-set", "status=403"),
        ("uninitialised", "status=409"),
    ] {
        let ws = Workspace::new();
        let server = device(&ws, "alice", &[&format!("--device-state={state}")]);
        let confdir = ws.simple_stack(&hem_config(&ws, &server, ""));
        assert_eq!(
            login(&confdir, "alice", PASSPHRASE),
            PAM_AUTHINFO_UNAVAIL,
            "{state}"
        );
        assert!(server.lines().iter().any(|l| l.contains(status)), "{state}");
    }
}

#[test]
fn the_emulation_refuses_a_replayed_jti() {
    use authtoken_protocol::hem;
    let ws = Workspace::new();
    let file = ws.path("device.toml");
    run_ok(
        std::process::Command::new(SERVER)
            .args(["enroll-device", "--label", "alice"])
            .arg(&file),
        Some(&format!("{PASSPHRASE}\n")),
    );
    let server = Server::start_with(
        &ws.path("unused"),
        &[
            "--protocol=hem".into(),
            format!("--device={}", file.display()),
        ],
    );
    let url = format!("http://{}{}", server.addr, hem::TOKEN_PATH);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let challenge: hem::Challenge = serde_json::from_slice(
        &agent
            .get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap(),
    )
    .unwrap();
    let secret = hem::user_secret(PASSPHRASE.as_bytes(), &challenge.eid);
    let now = authtoken_core::clock::unix_secs();
    let auth = hem::client_auth(&secret, &challenge, "master", now).unwrap();
    let body = serde_json::json!({ "auth": auth.as_str() }).to_string();
    let post = || {
        agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post(), 200);
    assert_eq!(post(), 401, "the same jti a second time");
    assert!(server.lines().iter().any(|l| l.contains("replayed jti")));
    // The device delays its answers (>= 500 ms).
    let delays: Vec<u64> = server
        .lines()
        .iter()
        .filter(|l| l.contains(" step=auth "))
        .filter_map(|l| l.split("elapsed_ms=").nth(1)?.trim().parse().ok())
        .collect();
    assert!(
        delays.len() == 2 && delays.iter().all(|&ms| ms >= 500),
        "{delays:?}"
    );
}
