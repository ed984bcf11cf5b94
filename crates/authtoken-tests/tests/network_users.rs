//! Network users (issue 23): `authtoken sync` fetches the real server's
//! directory over mutual TLS and writes the NSS cache, and glibc itself
//! (getent, id) answers from it through the real `libnss_authtoken.so.2`.
//!
//! Each step runs in a private mount namespace (`unshare -m`) where the
//! workspace's own `nsswitch.conf` (`passwd: files authtoken`), `passwd`
//! and `group` and a `var-lib` directory are bind-mounted over the
//! machine's, so the host's files are never touched; `LD_LIBRARY_PATH`
//! lets glibc find the module as `libnss_authtoken.so.2`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::machine::{console_login, text, Machine};
use common::*;

const CAROL_PW: &str = "carol token pw";

/// The authority's users: carol (in engineers), dave, a user named like a
/// local account, and one with a uid a local account has.
fn authority(ws: &Workspace) -> Server {
    let users = ws.users();
    let server = || Command::new(concat!(env!("AUTHTOKEN_BIN_DIR"), "/authtoken-server"));
    run_ok(
        server()
            .args(["add-group"])
            .arg(&users)
            .args(["engineers", "--gid", "10100"]),
        None,
    );
    ws.add_user(
        "carol",
        Some(CAROL_PW),
        &[
            "--uid",
            "10001",
            "--gecos",
            "Carol C",
            "--groups",
            "engineers",
        ],
    );
    ws.add_user("dave", Some("dave pw"), &["--uid", "10002"]);
    ws.add_user("games", Some("x"), &["--uid", "10003"]);
    ws.add_user("eve", Some("x"), &["--uid", "10050"]);
    let ca = ws.path("tls/ca.pem").display().to_string();
    Server::start(ws, &["--client-ca", &ca])
}

fn device_identity(ws: &Workspace) -> String {
    format!(
        "client_cert = \"{}\"\nclient_key = \"{}\"\n",
        ws.path("tls/client.pem").display(),
        ws.path("tls/client.key").display()
    )
}

fn directory_config(ws: &Workspace, server: &Server, extra: &str) -> PathBuf {
    ws.config_for(
        &server.url(),
        &format!(
            "{}{extra}\n[directory]\nenabled = true\n",
            device_identity(ws)
        ),
    )
}

#[test]
fn a_user_only_the_authority_knows_is_known_to_glibc_after_a_sync() {
    let ws = Workspace::new();
    let server = authority(&ws);
    let machine = Machine::new(&ws, directory_config(&ws, &server, ""));

    let out = machine.sync(&machine.config);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("2 users"), "carol and dave: {said}");
    assert!(
        said.contains("\"games\": dropped, a local account has that name or uid"),
        "{said}"
    );
    assert!(
        said.contains("\"eve\": dropped, a local account has that name or uid"),
        "{said}"
    );
    assert!(server.wait_for("directory serial=", 1));
    let meta = std::fs::metadata(machine.cache()).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.uid(), meta.mode() & 0o7777),
        (0, 0o644),
        "root's, world-readable"
    );

    let out = machine.run(
        "getent passwd carol; getent passwd 10002; getent group engineers; getent group 10001; \
         id carol; getent passwd games | cut -d: -f3; getent passwd eve || echo eve-absent; \
         getent passwd 10050 | cut -d: -f1; getent passwd | grep -c -e '^carol:' -e '^dave:'; \
         getent group | grep -c '^engineers:'; getent initgroups carol",
    );
    let said = text(&out);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(
        lines[0], "carol:*:10001:10001:Carol C:/home/carol:/bin/bash",
        "{said}"
    );
    assert!(lines[1].starts_with("dave:*:10002:10002:"), "{said}");
    assert_eq!(lines[2], "engineers:*:10100:carol", "{said}");
    assert_eq!(lines[3], "carol:*:10001:", "{said}");
    assert_eq!(
        lines[4], "uid=10001(carol) gid=10001(carol) groups=10001(carol),10100(engineers)",
        "{said}"
    );
    assert_eq!(lines[5], "5", "the local games wins: {said}");
    assert_eq!(lines[6], "eve-absent", "{said}");
    assert_eq!(lines[7], "localdup", "the local uid wins: {said}");
    assert_eq!(lines[8], "2", "enumeration lists each once: {said}");
    assert_eq!(lines[9], "1", "{said}");
    assert!(lines[10].contains("10100"), "{said}");

    // Unchanged: one 304 (the administrator's `authtoken sync` this time,
    // the same sync the timer's helper runs). status shows the cache.
    let out = machine.run("\"$CLI\" sync --config \"$CONFIG\"");
    assert!(text(&out).contains("directory unchanged"), "{}", text(&out));
    assert!(server.wait_for("directory unchanged", 1));
    let out = machine.run("\"$CLI\" status --config \"$CONFIG\"");
    let said = text(&out);
    assert!(
        said.contains("network users: 2 users, 4 groups, serial "),
        "{said}"
    );
    assert!(said.contains("last sync "), "{said}");

    // dave is removed at the authority: gone after the next sync.
    run_ok(
        Command::new(concat!(env!("AUTHTOKEN_BIN_DIR"), "/authtoken-server"))
            .arg("remove-user")
            .arg(&server.store)
            .arg("dave"),
        None,
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert!(server.wait_for("reloaded", 1));
    let out = machine.sync(&machine.config);
    assert!(text(&out).contains("1 users"), "{}", text(&out));
    let out = machine.run(
        "getent passwd dave || echo dave-gone; getent passwd carol >/dev/null && echo carol-kept",
    );
    assert_eq!(text(&out), "dave-gone\ncarol-kept\n");
}

#[test]
fn without_a_cache_nss_answers_at_once_and_the_machine_still_works() {
    let ws = Workspace::new();
    let config = ws.config_for("https://127.0.0.1:1/checkin", "");
    let machine = Machine::new(&ws, config);
    let out = machine.run(
        "getent passwd carol || echo absent; getent passwd root | cut -d: -f1; \
         getent group 10001 || echo absent; id -u root",
    );
    assert_eq!(text(&out), "absent\nroot\nabsent\n0\n");
    // A sync with [directory] off changes nothing and says so.
    let out = machine.sync(&machine.config);
    assert!(out.status.success());
    assert!(
        text(&out).contains("directory sync is off"),
        "{}",
        text(&out)
    );
    assert!(!machine.cache().exists());
}

/// Serves `body` as a directory over plain http (with the flag that
/// allows it), once.
fn canned_directory(body: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    let reply = http_reply(
        "200 OK",
        "Content-Type: application/json\r\nETag: \"x\"\r\n",
        &body,
    );
    let (url, handle) = canned_replies(vec![reply]);
    (url.replace("/checkin", "/directory"), handle)
}

#[test]
fn an_impostor_directory_changes_nothing_in_the_cache() {
    let ws = Workspace::new();
    let server = authority(&ws);
    let machine = Machine::new(&ws, directory_config(&ws, &server, ""));
    assert!(machine.sync(&machine.config).status.success());
    let good = std::fs::read(machine.cache()).unwrap();
    let unchanged = |what: &str, config: &Path| {
        let out = machine.sync(config);
        assert!(!out.status.success(), "{what}: {}", text(&out));
        assert!(
            text(&out).contains("the last good cache stays"),
            "{what}: {}",
            text(&out)
        );
        assert_eq!(std::fs::read(machine.cache()).unwrap(), good, "{what}");
    };
    let variant = |name: &str, body: String| {
        let path = ws.path(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        path
    };
    let base = std::fs::read_to_string(&machine.config).unwrap();

    // Another CA: the server's certificate is not verified.
    ws.gen_tls("other");
    let other_ca = base.replace(
        &ws.path("tls/ca.pem").display().to_string(),
        &ws.path("other/ca.pem").display().to_string(),
    );
    unchanged("unverified TLS", &variant("other-ca.toml", other_ca));

    // No device certificate: 403.
    let anonymous = base
        .lines()
        .filter(|l| !l.starts_with("client_"))
        .collect::<Vec<_>>()
        .join("\n");
    unchanged(
        "no device certificate",
        &variant("anonymous.toml", anonymous),
    );

    // Plain http without allow_insecure_http: the config is refused.
    let http = format!("{base}url = \"http://{}/directory\"\n", server.addr);
    unchanged("plain http", &variant("http.toml", http));

    let served = |name: &str, body: Vec<u8>| {
        let (url, handle) = canned_directory(body);
        let config = format!(
            "{}\nallow_insecure_http = true\n[directory]\nenabled = true\nurl = \"{url}\"\n",
            base.split("[directory]").next().unwrap()
        );
        let path = variant(name, config);
        (path, handle)
    };
    // 100 MB, and 10^6 entries (over the 64 MiB cap as well).
    let (config, handle) = served("huge.toml", vec![b' '; 100 * 1024 * 1024]);
    unchanged("a 100 MB body", &config);
    handle.join().unwrap();
    let entry = r#"{"name":"u","uid":10001,"gid":10001,"gecos":"","home":"/h","shell":"/s"}"#;
    let mut many = String::from(r#"{"serial":"m","groups":[],"users":["#);
    many.push_str(&vec![entry; 1_000_000].join(","));
    many.push_str("]}");
    let (config, handle) = served("many.toml", many.into_bytes());
    unchanged("10^6 entries", &config);
    handle.join().unwrap();
    let (config, handle) = served("garbage.toml", b"<html>not a directory</html>".to_vec());
    unchanged("not JSON", &config);
    handle.join().unwrap();

    // Records no client may accept: uid 0, names with / or :, and a home
    // with a newline. None of them reaches NSS.
    let bad = r#"{"serial":"bad","users":[
        {"name":"toor","uid":0,"gid":10001,"gecos":"","home":"/root","shell":"/bin/sh"},
        {"name":"../etc","uid":10010,"gid":10001,"gecos":"","home":"/h","shell":"/bin/sh"},
        {"name":"a:b","uid":10011,"gid":10001,"gecos":"","home":"/h","shell":"/bin/sh"},
        {"name":"nl","uid":10012,"gid":10001,"gecos":"","home":"/h\nroot::0:0::/:/bin/sh","shell":"/bin/sh"}],
        "groups":[{"name":"g","gid":10001,"members":[]},{"name":"wheel0","gid":0,"members":["toor"]}]}"#;
    let (config, handle) = served("bad.toml", bad.as_bytes().to_vec());
    let out = machine.sync(&config);
    handle.join().unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("0 users, 1 groups, 5 records dropped"),
        "{said}"
    );
    let out = machine.run(
        "getent passwd 0 | cut -d: -f1; getent passwd toor nl a:b ../etc || echo none; \
         getent group 0 | cut -d: -f1; getent group wheel0 || echo no-wheel0",
    );
    assert_eq!(text(&out), "root\nnone\nroot\nno-wheel0\n");
}

#[test]
fn a_cached_network_user_signs_in_online_then_offline_through_pam_unix_account() {
    let ws = Workspace::new();
    let server = authority(&ws);
    let offline = ws.path("offline");
    let config = directory_config(
        &ws,
        &server,
        &format!("[offline]\nenabled = true\ndir = \"{}\"", offline.display()),
    );
    let machine = Machine::new(&ws, config.clone());
    let pam_d = machine.console_stack(&config);
    let login = |password: &str, tag: &str| console_login("carol", password, tag);
    let out = machine.run(&format!(
        "{pam_d}\"$HELPER\" sync --config \"$CONFIG\" >/dev/null 2>&1\n{}{}",
        login(CAROL_PW, "online"),
        login("not carol", "online-wrong"),
    ));
    assert_eq!(text(&out), "online-ok\nonline-wrong-refused\n");
    assert!(offline.join("carol").exists(), "a verifier was kept");
    drop(server);
    let out = machine.run(&format!(
        "{pam_d}{}{}id -un carol",
        login(CAROL_PW, "offline"),
        login("not carol", "offline-wrong"),
    ));
    assert_eq!(
        text(&out),
        "offline-ok\noffline-wrong-refused\ncarol\n",
        "the cache and the verifier outlive the authority"
    );
}

#[test]
fn a_group_larger_than_glibcs_first_buffer_is_answered_whole() {
    // glibc starts with a small buffer and retries on ERANGE: a group of
    // 3,000 members (about 30 KB) takes several rounds.
    let ws = Workspace::new();
    let users: Vec<String> = (0..3000)
        .map(|i| {
            format!(
                r#"{{"name":"member{i:04}","uid":{},"gid":20000,"gecos":"","home":"/home/m{i}","shell":"/bin/sh"}}"#,
                20_001 + i
            )
        })
        .collect();
    let members: Vec<String> = (0..3000).map(|i| format!("\"member{i:04}\"")).collect();
    let body = format!(
        r#"{{"serial":"big","users":[{}],"groups":[{{"name":"big","gid":20000,"members":[{}]}}]}}"#,
        users.join(","),
        members.join(",")
    );
    let (url, handle) = canned_directory(body.into_bytes());
    let config = ws.config_for(
        "https://127.0.0.1:1/checkin",
        &format!("allow_insecure_http = true\n[directory]\nenabled = true\nurl = \"{url}\"\nmax_uid = 30000\n"),
    );
    let machine = Machine::new(&ws, config);
    let out = machine.sync(&machine.config);
    handle.join().unwrap();
    assert!(
        text(&out).contains("3000 users, 1 groups, 0 records dropped"),
        "{}",
        text(&out)
    );
    let out = machine.run(
        "getent group big | cut -d: -f4 | tr ',' '\\n' | wc -l; getent group 20000 | cut -d: -f1; \
         id -Gn member2999; getent passwd | grep -c '^member'",
    );
    assert_eq!(text(&out), "3000\nbig\nbig\n3000\n");
}

/// The machine decides where homes live and which shells log in
/// (issue 35): an authority that serves homes elsewhere gets each user
/// `/home/NAME`, and `pam_mkhomedir` in a real session creates nothing
/// outside `/home`. The namespace puts tmpfs over `/home`, `/srv` and
/// `/etc/systemd/system`, so a regression could not reach the host.
#[test]
fn homes_outside_the_prefix_and_unknown_shells_are_the_machines_call() {
    let ws = Workspace::new();
    let hostile = [
        ("cron", "/etc/systemd/system/cron.service.d"),
        ("rooty", "/root"),
        ("etcy", "/etc"),
        ("dots", "/home/../srv/evil"),
        ("twice", "/home//srv"),
        ("deep", "/home/a/b"),
    ];
    for (i, (name, home)) in hostile.iter().enumerate() {
        let uid = (10_201 + i).to_string();
        ws.add_user(name, Some("pw"), &["--uid", &uid, "--home", home]);
    }
    // One directory below /home is the authority's to choose; a shell not
    // in /etc/shells is not.
    ws.add_user(
        "fine",
        Some("pw"),
        &[
            "--uid",
            "10210",
            "--home",
            "/home/fine.elsewhere",
            "--shell",
            "/tmp/evil-shell",
        ],
    );
    let ca = ws.path("tls/ca.pem").display().to_string();
    let server = Server::start(&ws, &["--client-ca", &ca]);
    let config = directory_config(&ws, &server, "");
    let pam = ws.pam_service(
        "session-test",
        &["session required pam_mkhomedir.so umask=0077".into()],
    );
    let machine = Machine::new(&ws, config);
    let names: Vec<&str> = hostile.iter().map(|(name, _)| *name).collect();
    let out = machine.run(&format!(
        "{system_nss}mount -t tmpfs tmpfs /home\nmount -t tmpfs tmpfs /srv\n\
         if [ -d /etc/systemd/system ]; then mount -t tmpfs tmpfs /etc/systemd/system; fi\n\
         mount --bind {pam} /etc/pam.d\n\
         \"$HELPER\" sync --config \"$CONFIG\" 2>&1 | grep -c '^warning: .*is not one directory below /home'\n\
         for u in {users} fine; do\n\
           getent passwd \"$u\" | cut -d: -f1,6,7\n\
           timeout 60 pamtester session-test \"$u\" open_session close_session >/dev/null 2>&1 || echo \"$u: no session\"\n\
         done\n\
         ls -1 /home | tr '\\n' ' '; echo\n\
         ls -A /srv /etc/systemd/system 2>/dev/null | grep -v ':$' | grep -c . || true\n\
         stat -c '%U' /root /etc\n",
        system_nss = machine.system_nss(),
        pam = pam.display(),
        users = names.join(" "),
    ));
    let said = text(&out);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines[0], hostile.len().to_string(), "a line each: {said}");
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            lines[1 + i],
            format!("{name}:/home/{name}:/bin/bash"),
            "{said}"
        );
    }
    assert_eq!(
        lines[1 + names.len()],
        "fine:/home/fine.elsewhere:/bin/sh",
        "{said}"
    );
    assert_eq!(
        lines[2 + names.len()],
        "cron deep dots etcy fine.elsewhere rooty twice ",
        "pam_mkhomedir made each home below /home: {said}"
    );
    assert_eq!(
        lines[3 + names.len()],
        "0",
        "nothing under /srv or systemd's units: {said}"
    );
    assert_eq!(&lines[4 + names.len()..], ["root", "root"], "{said}");
}

/// Names that mean privilege elsewhere never reach NSS, nor do a dropped
/// user's group memberships, a gecos with control characters or a uid 0
/// in a cache written by hand (issue 35).
#[test]
fn names_that_mean_privilege_never_reach_glibc() {
    let ws = Workspace::new();
    let user = |name: &str, uid: u32, gecos: &str| {
        serde_json::json!({"name": name, "uid": uid, "gid": 10000, "gecos": gecos,
            "home": format!("/home/{name}"), "shell": "/bin/sh"})
    };
    let groups: Vec<_> = ["team", "docker", "lxd", "libvirt", "kvm", "wheel", "sudo", "fleetagent", "payroll", "4242"]
        .iter()
        .enumerate()
        .map(|(i, name)| serde_json::json!({"name": name, "gid": 10_000 + i as u32, "members": ["carol", "dave"]}))
        .collect();
    let body = serde_json::json!({
        "serial": "s1",
        "users": [
            user("carol", 10_101, "Carol \u{1b}[31mC\u{7f}"),
            user("dave", 10_101, ""),
            user("0", 10_102, ""),
            user("1000", 10_103, ""),
            user("fleetagent", 10_104, ""),
            user("payroll", 10_105, ""),
            user("adm", 10_106, ""),
        ],
        "groups": groups,
    });
    let (url, handle) = canned_directory(body.to_string().into_bytes());
    let config = ws.config_for(
        "https://127.0.0.1:1/checkin",
        &format!(
            "allow_insecure_http = true\n[directory]\nenabled = true\nurl = \"{url}\"\n\
             reserved_names = [\"payroll\"]\n"
        ),
    );
    let machine = Machine::new(&ws, config);
    // A package's sysusers.d declares fleetagent (not created yet): the
    // machine's own declarations, and that one.
    let sysusers = ws.path("sysusers.d");
    std::fs::create_dir_all(&sysusers).unwrap();
    for entry in std::fs::read_dir("/usr/lib/sysusers.d").unwrap().flatten() {
        std::fs::copy(entry.path(), sysusers.join(entry.file_name())).unwrap();
    }
    std::fs::write(
        sysusers.join("fleet.conf"),
        "u fleetagent - \"Fleet agent\"\n",
    )
    .unwrap();
    let out = machine.run(&format!(
        "mount --bind {} /usr/lib/sysusers.d || exit 1\n\
         \"$HELPER\" sync --config \"$CONFIG\" 2>&1 | tail -1\n\
         getent passwd | cut -d: -f1,5 | grep -e '^carol:' -e '^dave:' -e '^0:' -e '^1000:' -e '^fleetagent:' -e '^payroll:'\n\
         for g in docker lxd libvirt kvm wheel sudo fleetagent payroll 4242; do getent group $g | grep -q ':1000[0-9]:' && echo \"$g served\"; done\n\
         getent group team | cut -d: -f4\n",
        sysusers.display()
    ));
    handle.join().unwrap();
    let said = text(&out);
    let lines: Vec<&str> = said.lines().collect();
    assert!(lines[0].contains("1 users, 1 groups"), "{said}");
    assert_eq!(lines[1], "carol:", "carol kept, gecos emptied: {said}");
    assert_eq!(
        lines[2], "carol",
        "dave, dropped for carol's uid, is no member: {said}"
    );
    assert_eq!(lines.len(), 3, "{said}");
}

/// The NSS module believes only a root-owned cache nobody else can write,
/// and never answers uid or gid 0 from it, whatever it holds (issue 35).
#[test]
fn the_nss_module_believes_only_a_cache_root_alone_can_write() {
    let ws = Workspace::new();
    let config = ws.config_for("https://127.0.0.1:1/checkin", "");
    let machine = Machine::new(&ws, config);
    let nss = ws.path("var-lib/authtoken/nss");
    std::fs::create_dir_all(&nss).unwrap();
    let directory = authtoken_directory::Directory {
        serial: "hand".into(),
        users: vec![
            authtoken_directory::UserEntry {
                name: "carol".into(),
                uid: 10_001,
                gid: 10_001,
                gecos: String::new(),
                home: "/home/carol".into(),
                shell: "/bin/sh".into(),
            },
            authtoken_directory::UserEntry {
                name: "toor".into(),
                uid: 0,
                gid: 0,
                gecos: String::new(),
                home: "/root".into(),
                shell: "/bin/sh".into(),
            },
        ],
        groups: vec![authtoken_directory::GroupEntry {
            name: "wheel0".into(),
            gid: 0,
            members: vec!["carol".into()],
        }],
    };
    let cache = machine.cache();
    std::fs::write(
        &cache,
        authtoken_directory::nss_cache::render(&directory, 1),
    )
    .unwrap();
    let probe =
        "getent passwd carol >/dev/null && echo carol; getent passwd toor || echo no-toor; \
                 getent group wheel0 || echo no-wheel0; getent passwd | grep -c '^toor:'; \
                 id -G carol 2>/dev/null | tr ' ' '\\n' | grep -cx 0";
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        text(&machine.run(probe)),
        "carol\nno-toor\nno-wheel0\n0\n0\n",
        "root's, 0644: carol only"
    );
    for mode in [0o664, 0o646] {
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = machine.run("getent passwd carol || echo refused");
        assert_eq!(text(&out), "refused\n", "mode {mode:o}");
    }
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o644)).unwrap();
    nix::unistd::chown(&cache, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let out = machine.run("getent passwd carol || echo refused");
    assert_eq!(text(&out), "refused\n", "nobody's file");
}
