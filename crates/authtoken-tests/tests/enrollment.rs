//! Enrollment (issue 37, docs/PROTOCOL.md "Enrollment"): `authtoken join`
//! against a real `authtoken-server`, then the first sync and a network
//! user's login through libpam; every refused join leaves the machine's
//! config byte for byte as it was; renewal with the clock moved forward
//! (libfaketime, in the server's and the client's processes only);
//! revocation; and two replicas on one PostgreSQL store.
//!
//! The client side runs as a machine in a mount namespace
//! ([`common::machine`]), so its NSS cache and accounts are its own.
//!
//! postgres-rerun: no (the TOML tests restart their server with its clock
//! moved, which a rerun's database copy would reset, and the PostgreSQL
//! test names its own database).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::machine::{console_login, text, Machine};
use common::*;

const CAROL_PW: &str = "carol token pw";
const NAME: &str = "laptop7";

/// The authority's one network user: carol, in engineers.
fn add_carol(ws: &Workspace, store: &str) {
    run_ok(
        Command::new(SERVER)
            .arg("add-group")
            .arg(store)
            .args(["engineers", "--gid", "10100"]),
        None,
    );
    run_ok(
        Command::new(SERVER).arg("add-user").arg(store).args([
            "carol",
            "--iterations=4096",
            "--uid",
            "10001",
            "--gecos",
            "Carol C",
            "--groups",
            "engineers",
        ]),
        Some(&format!("{CAROL_PW}\n")),
    );
    let _ = ws;
}

/// What makes a server an enrolling authority: it trusts the devices its
/// device CA (an intermediate under tls/ca.pem) issues, and signs with it.
fn enrolling(ws: &Workspace) -> Vec<String> {
    vec![
        "--client-ca".into(),
        ws.path("tls/ca.pem").display().to_string(),
        "--enroll-dir".into(),
        ws.path("tls").display().to_string(),
    ]
}

fn args<'a>(owned: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    owned
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect()
}

/// The line `authtoken-server join-token` prints for the administrator to
/// paste on the machine.
#[derive(Clone)]
struct JoinLine {
    url: String,
    token: String,
    fingerprint: String,
}

impl JoinLine {
    /// `join-token STORE --url URL --ca tls/ca.pem EXTRA`, its clock moved
    /// by `env`.
    fn make(
        ws: &Workspace,
        store: &str,
        url: &str,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> JoinLine {
        let out = run_ok(
            Command::new(SERVER)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .arg("join-token")
                .arg(store)
                .args(["--url", url, "--ca"])
                .arg(ws.path("tls/ca.pem"))
                .args(extra),
            None,
        );
        let line = out
            .lines()
            .find(|l| l.starts_with("authtoken join "))
            .unwrap_or_else(|| panic!("no join line in {out:?}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |flag: &str| {
            let at = words.iter().position(|w| *w == flag).unwrap();
            words[at + 1].to_owned()
        };
        JoinLine {
            url: words[2].to_owned(),
            token: after("--token"),
            fingerprint: after("--ca-fingerprint"),
        }
    }

    /// The command the machine runs, with `extra` arguments.
    fn command(&self, extra: &str) -> String {
        format!(
            "\"$CLI\" join {} --token {} --ca-fingerprint {} --name {NAME} --config \"$CONFIG\" {extra}",
            self.url, self.token, self.fingerprint
        )
    }
}

/// The machine's config before it joins, as an administrator leaves the
/// package's: comments, a placeholder URL, settings of its own, and
/// network users not yet on.
fn fresh_config(ws: &Workspace) -> PathBuf {
    fresh_config_in(ws, "etc")
}

/// The same, in `dir` of the workspace (another machine's /etc/authtoken).
fn fresh_config_in(ws: &Workspace, dir: &str) -> PathBuf {
    let etc = ws.path(dir);
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::set_permissions(&etc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = etc.join("authtoken.toml");
    std::fs::write(
        &path,
        format!(
            "# this machine, as its administrator left it\nbackend = \"mdm\"\n\n\
             # the authority: authtoken join sets it\nurl = \"https://authority.invalid/checkin\"\n\
             timeout_ms = 8000 # slow links\nhelper = \"{HELPER}\"\nhelper_user = \"nobody\"\n\
             cache_dir = \"{}\"\nmin_scram_iterations = 4096\n\n[directory]\n# later\nenabled = false\n",
            ws.path("cache").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    make_module_settings(&path);
    path
}

/// Every file of the machine's /etc/authtoken and /var/lib, with its
/// content: what a refused join must leave as it was.
fn machine_files(ws: &Workspace) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, into: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, into);
            } else {
                into.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(&ws.path("etc"), &mut files);
    walk(&ws.path("var-lib"), &mut files);
    files
}

fn server_out(args: &[&str]) -> String {
    run_ok(Command::new(SERVER).args(args), None)
}

/// The sync timer's run on `machine`, its clock moved by `offset`.
fn sync_with_clock(machine: &Machine, offset: &str) -> Output {
    machine.run(&format!(
        "{}\"$HELPER\" sync --config \"$CONFIG\"",
        moved_clock(offset)
    ))
}

/// `export` lines for a script: the clock moved by `offset`.
fn moved_clock(offset: &str) -> String {
    faketime_env(offset)
        .iter()
        .map(|(k, v)| format!("export {k}='{v}'\n"))
        .collect()
}

/// A restarted server listens on another port: the machine's config
/// follows it (as it would a DNS name).
fn point_at(config: &Path, from: &Server, to: &Server) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, text.replace(&from.url(), &to.url())).unwrap();
}

fn assert_ok(out: &Output) -> String {
    let said = text(out);
    assert!(out.status.success(), "{said}");
    said
}

#[test]
fn a_machine_joins_with_one_command_and_its_network_user_signs_in() {
    let ws = Workspace::new();
    add_carol(&ws, &ws.users().display().to_string());
    let server = Server::start(&ws, &args(&enrolling(&ws), &[]));
    let config = fresh_config(&ws);
    let machine = Machine::new(&ws, config.clone());
    let line = JoinLine::make(&ws, &server.store, &server.url(), &["--name", NAME], &[]);

    // Before the join, a machine without a certificate may connect (to
    // join) but gets no login: --client-ca still requires one.
    let anonymous = ws.simple_stack(&ws.config_for(&server.url(), ""));
    let mut pam = Pam::start(&anonymous, "authtoken-test", "carol", Some(CAROL_PW));
    assert_ne!(pam.authenticate(), PAM_SUCCESS);
    assert!(server.wait_for("no client certificate (--client-ca)", 1));

    let said = assert_ok(&machine.run(&line.command("--network-users")));
    assert!(
        said.contains(&format!("joined {} as \"{NAME}\"", server.url())),
        "{said}"
    );
    assert!(said.contains("1 users"), "the first sync ran: {said}");

    // The config: the join's settings in, everything else as it was.
    let after = std::fs::read_to_string(&config).unwrap();
    let etc = ws.path("etc");
    for kept in [
        "# this machine, as its administrator left it\nbackend = \"mdm\"\n",
        "# the authority: authtoken join sets it\n",
        "timeout_ms = 8000 # slow links\n",
        "[directory]\n# later\nenabled = true\n",
    ] {
        assert!(after.contains(kept), "{kept:?} in {after}");
    }
    for set in [
        format!("url = \"{}\"", server.url()),
        format!("ca_file = \"{}\"", etc.join("ca.pem").display()),
        format!("client_cert = \"{}\"", etc.join("device.pem").display()),
        format!("client_key = \"{}\"", etc.join("device.key").display()),
        "udid = \"".to_owned(),
    ] {
        assert!(after.contains(&set), "{set} in {after}");
    }
    let key = std::fs::metadata(etc.join("device.key")).unwrap();
    assert_eq!((key.mode() & 0o7777, key.uid()), (0o600, 0));
    assert_eq!(
        std::fs::read(etc.join("ca.pem")).unwrap(),
        std::fs::read(ws.path("tls/ca.pem")).unwrap(),
        "the pinned root, not the device CA"
    );
    // The key was made here: the authority holds no private key of it.
    let key_pem = std::fs::read_to_string(etc.join("device.key")).unwrap();
    let store = std::fs::read_to_string(ws.users()).unwrap();
    assert!(!store.contains("PRIVATE KEY"), "{store}");
    assert!(!server
        .lines()
        .iter()
        .any(|l| l.contains(key_pem.lines().nth(1).unwrap())));

    let listed = server_out(&["list-devices", &server.store]);
    let row = listed
        .lines()
        .find(|l| l.contains(NAME))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(row.ends_with("valid"), "{listed}");
    assert!(
        !listed.contains("join token "),
        "the single use is spent: {listed}"
    );

    // The machine knows carol; status and check-config show the identity.
    let out = machine.run(
        "getent passwd carol; \"$CLI\" status --config \"$CONFIG\"; \
         \"$CLI\" check-config --config \"$CONFIG\" && echo config-ok",
    );
    let said = text(&out);
    assert!(
        said.starts_with("carol:*:10001:10001:Carol C:/home/carol:"),
        "{said}"
    );
    assert!(
        said.contains(&format!("device identity: \"{NAME}\" UDID ")),
        "{said}"
    );
    assert!(said.contains(" days), renewal due at 20"), "{said}");
    assert!(said.contains("config-ok"), "{said}");

    // carol signs in through libpam: over mutual TLS with the new identity,
    // which this server requires of logins.
    let out = machine.run(&format!(
        "{}{}{}",
        machine.console_stack(&config),
        console_login("carol", CAROL_PW, "right"),
        console_login("carol", "not carol", "wrong")
    ));
    assert_eq!(text(&out), "right-ok\nwrong-refused\n");

    // The same line again: refused, and nothing on the machine changes.
    let before = machine_files(&ws);
    let out = machine.run(&line.command("--network-users"));
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("join token refused"), "{said}");
    assert!(said.contains("nothing was changed"), "{said}");
    assert_eq!(machine_files(&ws), before);
}

/// The join fetches the CA over a connection that trusts anything and
/// accepts it by the pinned fingerprint of its first certificate. Whatever
/// comes after that certificate (a bundle, or a CA someone on the path
/// appended) is not kept: the machine would trust it for every login.
#[test]
fn a_join_keeps_the_pinned_ca_alone() {
    let ws = Workspace::new();
    add_carol(&ws, &ws.users().display().to_string());
    let root = std::fs::read_to_string(ws.path("tls/ca.pem")).unwrap();
    let other = std::fs::read_to_string(ws.gen_tls("other").join("ca.pem")).unwrap();
    std::fs::write(ws.path("tls/ca.pem"), format!("{root}{other}")).unwrap();
    let server = Server::start(&ws, &args(&enrolling(&ws), &[]));
    let config = fresh_config(&ws);
    let machine = Machine::new(&ws, config.clone());
    let line = JoinLine::make(&ws, &server.store, &server.url(), &[], &[]);
    assert_ok(&machine.run(&line.command("--network-users")));
    assert_eq!(
        std::fs::read_to_string(ws.path("etc/ca.pem")).unwrap(),
        root,
        "the pinned certificate and nothing after it"
    );
    let out = machine.run(&format!(
        "{}{}",
        machine.console_stack(&config),
        console_login("carol", CAROL_PW, "joined")
    ));
    assert_eq!(text(&out), "joined-ok\n");
}

#[test]
fn a_refused_join_leaves_the_machine_byte_for_byte_as_it_was() {
    let ws = Workspace::new();
    add_carol(&ws, &ws.users().display().to_string());
    let server = Server::start(&ws, &args(&enrolling(&ws), &[]));
    let config = fresh_config(&ws);
    let machine = Machine::new(&ws, config);
    let store = server.store.clone();
    let url = server.url();
    let line = |extra: &[&str]| JoinLine::make(&ws, &store, &url, extra, &[]);

    // An impostor: it serves the real root (so the pin matches) but its TLS
    // certificate is from a CA of its own, and it signs with its own
    // device CA.
    let impostor_tls = ws.gen_tls("impostor");
    std::fs::copy(ws.path("tls/ca.pem"), impostor_tls.join("ca.pem")).unwrap();
    let impostor = Server::start_with(
        &ws.users(),
        &[
            format!("--tls-cert={}", impostor_tls.join("server.pem").display()),
            format!("--tls-key={}", impostor_tls.join("server.key").display()),
            format!("--enroll-dir={}", impostor_tls.display()),
        ],
    );

    let wrong_pin = JoinLine {
        fingerprint: format!("sha256:{}", "ab".repeat(32)),
        ..line(&[])
    };
    let used = line(&[]);
    let elsewhere = fresh_config_in(&ws, "elsewhere");
    assert_ok(&machine.run_with(&elsewhere, &used.command("")));
    // Made two hours ago, for one hour: expired an hour ago.
    let expired = JoinLine::make(
        &ws,
        &store,
        &url,
        &["--expires", "1h"],
        &faketime_env("-2h"),
    );
    let other_name = line(&["--name", "other-machine"]);
    let far_off = line(&[]);
    let to_impostor = JoinLine {
        url: impostor.url(),
        ..line(&[])
    };
    let plain = JoinLine {
        url: url.replace("https://", "http://"),
        ..line(&[])
    };
    let cases: [(&str, &JoinLine, &str, &str); 7] = [
        (
            "wrong fingerprint",
            &wrong_pin,
            "",
            "this is not the authority the join line names",
        ),
        ("used token", &used, "", "join token refused"),
        ("expired token", &expired, "", "join token refused"),
        (
            "token for another name",
            &other_name,
            "",
            "join token refused",
        ),
        (
            "clock a day ahead",
            &far_off,
            &moved_clock("+1d"),
            "s away from the authority's",
        ),
        ("impostor", &to_impostor, "", "certificate"),
        ("plain http", &plain, "", "over https only"),
    ];
    for (case, join, setup, expected) in cases {
        let before = machine_files(&ws);
        let out = machine.run(&format!("{setup}{}", join.command("--network-users")));
        let said = text(&out);
        assert!(!out.status.success(), "{case}: {said}");
        assert!(said.contains(expected), "{case}: {expected:?} in {said}");
        assert!(said.contains("nothing was changed"), "{case}: {said}");
        assert_eq!(machine_files(&ws), before, "{case}");
        for file in ["ca.pem", "device.pem", "device.key"] {
            assert!(!ws.path("etc").join(file).exists(), "{case}: {file}");
        }
    }
    // The clock case took no token: the same line joins once the clock is
    // right (a refused machine tries again without a new token).
    let out = machine.run(&far_off.command(""));
    assert!(
        out.status.success(),
        "{}\n{:#?}",
        text(&out),
        server.lines()
    );
    // The impostor issued nothing on the authority's behalf.
    assert!(!impostor
        .lines()
        .iter()
        .any(|l| l.contains("enroll: device")));
}

#[test]
fn the_certificate_renews_with_the_clock_moved_and_an_expired_one_is_said() {
    let ws = Workspace::new();
    add_carol(&ws, &ws.users().display().to_string());
    let enroll = enrolling(&ws);
    let server = Server::start(&ws, &args(&enroll, &[]));
    let config = fresh_config(&ws);
    let machine = Machine::new(&ws, config.clone());
    let line = JoinLine::make(&ws, &server.store, &server.url(), &[], &[]);
    assert_ok(&machine.run(&line.command("--network-users")));
    let cert = ws.path("etc/device.pem");
    let key = ws.path("etc/device.key");
    let (first_cert, first_key) = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());

    // Not due yet: the sync says when.
    let said = assert_ok(&machine.sync(&config));
    assert!(said.contains("renewal due 20"), "{said}");
    // 75 days on, not renewed: status warns weeks ahead.
    let out = machine.run(&format!(
        "{}\"$CLI\" status --config \"$CONFIG\"",
        moved_clock("+75d")
    ));
    let said = text(&out);
    // 14 or 15 days, as the second turns.
    assert!(said.contains("days and has not been renewed"), "{said}");

    // 61 days on, at both ends: the sync renews over mutual TLS, then
    // syncs the directory with the new certificate.
    let moved = Server::start_moved(&ws, "+61d", &args(&enroll, &[]));
    point_at(&config, &server, &moved);
    drop(server);
    let server = moved;
    let out = sync_with_clock(&machine, "+61d");
    let said = assert_ok(&out);
    assert!(
        said.contains(&format!("device certificate renewed: \"{NAME}\"")),
        "{said}"
    );
    // The directory, fetched with the new certificate, had not changed.
    assert!(said.contains("directory unchanged (serial"), "{said}");
    let (second_cert, second_key) = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
    assert_ne!(second_cert, first_cert);
    assert_ne!(second_key, first_key, "a new key, made here");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o600, 0));
    let leftovers: Vec<_> = std::fs::read_dir(ws.path("etc"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".new") || n.contains(".old") || n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(server.wait_for("renew: device", 1));
    let listed = server_out(&["list-devices", &server.store]);
    assert_eq!(
        listed.lines().filter(|l| l.contains(NAME)).count(),
        2,
        "{listed}"
    );
    // A second sync the same day: nothing to renew.
    let out = sync_with_clock(&machine, "+61d");
    let said = assert_ok(&out);
    assert!(!said.contains("renewed"), "{said}");

    // 200 days on, the renewed certificate has ended: status, check-config
    // and sync say a new join token is needed.
    let out = machine.run(&format!(
        "{}\"$CLI\" status --config \"$CONFIG\"; \"$CLI\" check-config --config \"$CONFIG\" || echo check-failed; \
         \"$HELPER\" sync --config \"$CONFIG\" || echo sync-failed",
        moved_clock("+200d")
    ));
    let said = text(&out);
    assert!(said.contains("the device certificate expired"), "{said}");
    assert!(said.contains("needs a new join token"), "{said}");
    assert!(said.contains("check-failed"), "{said}");
    assert!(said.contains("sync-failed"), "{said}");
    assert_eq!(std::fs::read(&cert).unwrap(), second_cert, "kept as it was");
}

#[test]
fn a_revoked_device_gets_no_directory_no_renewal_and_no_login() {
    let ws = Workspace::new();
    add_carol(&ws, &ws.users().display().to_string());
    let server = Server::start(&ws, &args(&enrolling(&ws), &["--require-device"]));
    let config = fresh_config(&ws);
    let machine = Machine::new(&ws, config.clone());
    let line = JoinLine::make(&ws, &server.store, &server.url(), &[], &[]);
    assert_ok(&machine.run(&line.command("--network-users")));
    let pam = machine.console_stack(&config);
    let out = machine.run(&format!(
        "{pam}{}",
        console_login("carol", CAROL_PW, "joined")
    ));
    assert_eq!(text(&out), "joined-ok\n");

    // A check-in naming another machine's UDID: refused, as an MDM server
    // refuses one that does not match the enrollment.
    let joined = std::fs::read_to_string(&config).unwrap();
    let udid_line = joined.lines().find(|l| l.starts_with("udid = ")).unwrap();
    let other = ws.path("etc/other-udid.toml");
    std::fs::write(
        &other,
        joined.replace(udid_line, "udid = \"FFFFFFFF-89AB-CDEF-0123-456789ABCDEF\""),
    )
    .unwrap();
    make_module_settings(&other);
    let out = machine.run(&format!(
        "{}{}",
        machine.console_stack(&other),
        console_login("carol", CAROL_PW, "other-udid")
    ));
    assert_eq!(text(&out), "other-udid-refused\n");
    assert!(server.wait_for("UDID differs", 1));

    // Revoked by name; the server reloads its store.
    let said = server_out(&["revoke-device", &server.store, NAME]);
    assert!(said.contains("revocation of 1 certificate"), "{said}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert!(server.wait_for("reloaded", 1));
    let cache_before = std::fs::read(machine.cache()).unwrap();
    let out = machine.run(&format!(
        "{pam}{}\"$HELPER\" sync --config \"$CONFIG\" || echo sync-refused",
        console_login("carol", CAROL_PW, "revoked")
    ));
    let said = text(&out);
    assert!(said.starts_with("revoked-refused\n"), "{said}");
    assert!(said.contains("403"), "{said}");
    assert!(said.contains("sync-refused"), "{said}");
    assert!(server.wait_for("login refused: device revoked", 1));
    assert!(server.wait_for("directory: device revoked", 1));
    assert_eq!(
        std::fs::read(machine.cache()).unwrap(),
        cache_before,
        "the last good cache stays"
    );
    let listed = server_out(&["list-devices", &server.store]);
    assert!(
        listed
            .lines()
            .any(|l| l.contains(NAME) && l.ends_with("revoked")),
        "{listed}"
    );

    // Nor is it renewed: 61 days on, at both ends.
    let moved = Server::start_moved(&ws, "+61d", &args(&enrolling(&ws), &[]));
    point_at(&config, &server, &moved);
    drop(server);
    let server = moved;
    let out = sync_with_clock(&machine, "+61d");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("renewal failed"), "{said}");
    assert!(server.wait_for("renew: device revoked", 1));
}

#[test]
fn two_replicas_count_a_token_once_and_both_see_a_revocation() {
    let ws = Workspace::new();
    let pg = Postgres::start();
    let url = pg.database("authtoken");
    server_out(&["migrate", &url]);
    add_carol(&ws, &url);
    let replica = |extra: &[&str]| {
        let tls = ws.path("tls");
        let mut owned = vec![
            "--store".to_owned(),
            url.clone(),
            format!("--tls-cert={}", tls.join("server.pem").display()),
            format!("--tls-key={}", tls.join("server.key").display()),
        ];
        owned.extend(enrolling(&ws));
        owned.extend(extra.iter().map(|a| a.to_string()));
        Server::start_with(&ws.users(), &owned)
    };
    let a = replica(&["--require-device"]);
    let b = replica(&["--require-device"]);

    // One token of one use, tried on both replicas at once: one join.
    let line = JoinLine::make(&ws, &url, &a.url(), &[], &[]);
    let on_b = JoinLine {
        url: b.url(),
        ..line.clone()
    };
    let first = Machine::new(&ws, fresh_config(&ws));
    // Each join's output in the workspace (the script's directory is the
    // source tree).
    let (said_a, said_b) = (ws.path("join-a.out"), ws.path("join-b.out"));
    let out = first.run(&format!(
        "{} > {a} 2>&1 & {} > {b} 2>&1; wait; cat {a} {b}",
        line.command("--network-users"),
        on_b.command("--network-users"),
        a = said_a.display(),
        b = said_b.display(),
    ));
    let said = text(&out);
    assert_eq!(said.matches("joined https://").count(), 1, "{said}");
    assert_eq!(said.matches("join token refused").count(), 1, "{said}");
    let listed = server_out(&["list-devices", &url]);
    assert_eq!(
        listed.lines().filter(|l| l.contains(NAME)).count(),
        1,
        "{listed}"
    );

    // The machine signs in on either replica, and syncs from either
    // (whichever the join went to, its config names it).
    let joined = std::fs::read_to_string(ws.path("etc/authtoken.toml")).unwrap();
    let on = |replica: &Server, name: &str| {
        let path = ws.path(&format!("etc/{name}.toml"));
        let text = joined
            .replace(&a.url(), &replica.url())
            .replace(&b.url(), &replica.url());
        std::fs::write(&path, text).unwrap();
        make_module_settings(&path);
        path
    };
    let (via_a, via_b) = (on(&a, "via-a"), on(&b, "via-b"));
    for (replica, path) in [(&a, &via_a), (&b, &via_b)] {
        let out = first.run(&format!(
            "{}{}\"$HELPER\" sync --config {} >/dev/null && echo synced",
            first.console_stack(path),
            console_login("carol", CAROL_PW, "login"),
            path.display()
        ));
        assert_eq!(text(&out), "login-ok\nsynced\n", "{}", replica.url());
    }

    // Revoked through the database: both replicas refuse within seconds.
    server_out(&["revoke-device", &url, NAME]);
    for (replica, path) in [(&a, &via_a), (&b, &via_b)] {
        let refused = poll_until(Duration::from_secs(10), || {
            let out = first.run(&format!(
                "\"$HELPER\" sync --config {} >/dev/null 2>&1 || echo refused",
                path.display()
            ));
            (text(&out) == "refused\n").then_some(())
        });
        assert!(
            refused.is_some(),
            "{} still serves the directory",
            replica.url()
        );
        let out = first.run(&format!(
            "{}{}",
            first.console_stack(path),
            console_login("carol", CAROL_PW, "revoked")
        ));
        assert_eq!(text(&out), "revoked-refused\n", "{}", replica.url());
        assert!(replica.wait_for("login refused: device revoked", 1));
    }
}
