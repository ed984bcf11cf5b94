//! The login-session cache, through the real module in the real libpam:
//! `AUTHTOKEN_FILE`, the remembered 410, cache safety, concurrency, status.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;

fn workspace() -> Workspace {
    let ws = Workspace::new();
    ws.add_user("alice", Some("alice pw"), &[]);
    ws.add_user("carol", Some("carol pw"), &[]);
    ws.add_user("bob", None, &["--policy=unmanaged"]);
    ws
}

/// auth + session with our module, and a `pam_exec` observer after it that
/// records what a process inside the session sees.
fn session_stack(ws: &Workspace, config: &Path) -> (PathBuf, PathBuf) {
    let out = ws.path("observed.txt");
    let script = ws.path("observe.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ echo \"type=$PAM_TYPE file=$AUTHTOKEN_FILE\"; if [ -n \"$AUTHTOKEN_FILE\" ] && [ -f \"$AUTHTOKEN_FILE\" ]; then echo \"mode=$(stat -c %a \"$AUTHTOKEN_FILE\") uid=$(stat -c %u \"$AUTHTOKEN_FILE\") sha=$(sha256sum < \"$AUTHTOKEN_FILE\" | cut -c1-16)\"; else echo absent; fi; }} >> {}\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let module = module_path().display().to_string();
    let c = config.display();
    let stack = [
        format!("auth [success=done ignore=ignore default=die] {module} config={c}"),
        "auth required pam_permit.so".into(),
        // Our answer decides on success; an IGNORE falls to pam_deny.
        format!("account [success=done ignore=ignore default=die] {module} config={c}"),
        "account required pam_deny.so".into(),
        format!("session optional {module} config={c}"),
        format!("session optional pam_exec.so {}", script.display()),
    ];
    // The same stack as sshd's, the one service whose authentication
    // leaves a hand-off by default.
    ws.pam_service("sshd", &stack);
    let confdir = ws.pam_service("authtoken-test", &stack);
    (confdir, out)
}

/// The one session directory in the cache.
fn session_dir(ws: &Workspace) -> PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(ws.path("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

#[test]
fn open_session_exports_the_token_file_and_close_session_removes_it() {
    let ws = workspace();
    let server = Server::start(&ws, &[]);
    let config = ws.config_for(&server.url(), "");
    assert!(!ws.path("cache").exists(), "cache_dir does not exist yet");
    let (confdir, observed) = session_stack(&ws, &config);

    let mut pam = Pam::start(&confdir, "authtoken-test", "alice", Some("alice pw"));
    assert_eq!(pam.authenticate(), PAM_SUCCESS);
    assert_eq!(pam.acct_mgmt(), PAM_SUCCESS, "a user we issued a token for");
    assert_eq!(pam.open_session(), PAM_SUCCESS);
    let path = PathBuf::from(
        pam.getenv("AUTHTOKEN_FILE")
            .expect("AUTHTOKEN_FILE exported"),
    );
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    let dir_meta = std::fs::metadata(path.parent().unwrap()).unwrap();
    assert_eq!(dir_meta.mode() & 0o7777, 0o700);
    assert_eq!(
        std::fs::metadata(ws.path("cache")).unwrap().mode() & 0o7777,
        0o700
    );
    let token = std::fs::read(&path).unwrap();
    assert_eq!(
        issued_fingerprints(&server, "alice"),
        vec![fingerprint(&token)],
        "exactly the issued token"
    );

    // What a process inside the session (pam_exec after the module) saw.
    let seen = std::fs::read_to_string(&observed).unwrap();
    assert!(
        seen.contains(&format!("type=open_session file={}", path.display())),
        "{seen}"
    );
    assert!(
        seen.contains(&format!("mode=600 uid=0 sha={}", fingerprint(&token))),
        "{seen}"
    );

    assert_eq!(pam.close_session(), PAM_SUCCESS);
    assert!(!path.exists(), "close_session removed the token file");
    assert_eq!(pam.getenv("AUTHTOKEN_FILE"), None);
    let seen = std::fs::read_to_string(&observed).unwrap();
    assert!(seen.contains("type=close_session file=\nabsent"), "{seen}");
}

#[test]
fn a_new_handshake_in_the_session_replaces_the_token() {
    let ws = workspace();
    let server = Server::start(&ws, &[]);
    let (confdir, _) = session_stack(&ws, &ws.config_for(&server.url(), ""));

    let mut login_session = Pam::start(&confdir, "authtoken-test", "alice", Some("alice pw"));
    assert_eq!(login_session.authenticate(), PAM_SUCCESS);
    assert_eq!(login_session.open_session(), PAM_SUCCESS);
    let path = PathBuf::from(login_session.getenv("AUTHTOKEN_FILE").unwrap());

    // sudo / screen unlock in the same login session: a new handshake.
    let mut unlock = Pam::start(&confdir, "authtoken-test", "alice", Some("alice pw"));
    assert_eq!(unlock.authenticate(), PAM_SUCCESS);
    let issued = issued_fingerprints(&server, "alice");
    assert_eq!(issued.len(), 2);
    assert_ne!(issued[0], issued[1]);
    assert_eq!(
        fingerprint(&std::fs::read(&path).unwrap()),
        issued[1],
        "replaced by the new token"
    );
    // Its own session open/close leaves the login session's file in place.
    assert_eq!(unlock.open_session(), PAM_SUCCESS);
    assert_eq!(unlock.close_session(), PAM_SUCCESS);
    assert!(path.exists());
    drop(unlock);
    // A wrong password in between changes nothing.
    assert_eq!(login(&confdir, "alice", "nope"), PAM_AUTH_ERR);
    assert_eq!(fingerprint(&std::fs::read(&path).unwrap()), issued[1]);
    assert_eq!(login_session.close_session(), PAM_SUCCESS);
    assert!(!path.exists());
}

#[test]
fn unmanaged_is_remembered_for_the_login_session_only() {
    let ws = workspace();
    let server = Server::start(&ws, &[]);
    let (confdir, _) = session_stack(&ws, &ws.config_for(&server.url(), ""));
    for round in 0..3 {
        let mut pam = Pam::start(&confdir, "authtoken-test", "bob", Some("bob pw"));
        assert_eq!(
            pam.authenticate(),
            PAM_SUCCESS,
            "ignored, pam_permit decides"
        );
        assert_eq!(
            pam.acct_mgmt(),
            PAM_AUTH_ERR,
            "our module ignored bob; pam_deny (AUTH_ERR) decided"
        );
        if round > 0 {
            assert!(
                pam.conversation.prompts.is_empty(),
                "nothing asked once known unmanaged"
            );
        }
    }
    assert_eq!(
        server.requests_for("bob"),
        1,
        "three logins in one session, one request"
    );
    let mark = session_dir(&ws).join("bob.unmanaged");
    assert_eq!(std::fs::metadata(&mark).unwrap().mode() & 0o7777, 0o600);

    // A new login session (setsid) asks again, and then remembers too.
    let (code, out) = pamtester_with(&confdir, None, "bob", "bob pw", SessionOf::New);
    assert_eq!(code, 0, "{out}");
    assert_eq!(server.requests_for("bob"), 2);
    // And the old session still remembers.
    assert_eq!(login(&confdir, "bob", "bob pw"), PAM_SUCCESS);
    assert_eq!(server.requests_for("bob"), 2);
}

#[test]
fn untrusted_cache_entries_are_ignored() {
    let ws = workspace();
    let server = Server::start(&ws, &[]);
    let (confdir, _) = session_stack(&ws, &ws.config_for(&server.url(), ""));
    // bob's 410 creates this session's directory and a genuine mark.
    assert_eq!(login(&confdir, "bob", "x"), PAM_SUCCESS);
    let dir = session_dir(&ws);
    let genuine = std::fs::read_to_string(dir.join("bob.unmanaged")).unwrap();
    let for_alice = genuine.replace("\"bob\"", "\"alice\"");
    assert_ne!(genuine, for_alice);
    let mark = dir.join("alice.unmanaged");
    let elsewhere = ws.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();

    let plant = |content: &str, mode: u32, uid: u32| {
        let _ = std::fs::remove_file(&mark);
        std::fs::write(&mark, content).unwrap();
        std::fs::set_permissions(&mark, std::fs::Permissions::from_mode(mode)).unwrap();
        nix::unistd::chown(&mark, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
    };
    let mut expected_requests = 0;
    let mut alice_logs_in = |what: &str| {
        expected_requests += 2;
        assert_eq!(login(&confdir, "alice", "alice pw"), PAM_SUCCESS, "{what}");
        assert_eq!(
            server.requests_for("alice"),
            expected_requests,
            "{what}: the mark was not trusted"
        );
    };

    plant(&for_alice, 0o600, 1000);
    alice_logs_in("wrong owner");
    plant(&for_alice, 0o644, 0);
    alice_logs_in("wrong mode");
    plant("\u{0}garbage{{{", 0o600, 0);
    alice_logs_in("garbage");
    plant(&genuine, 0o600, 0);
    alice_logs_in("a record for another user");
    let target = elsewhere.join("alice.unmanaged");
    std::fs::write(&target, &for_alice).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(&mark).unwrap();
    std::os::unix::fs::symlink(&target, &mark).unwrap();
    alice_logs_in("symlink");

    // Control: the same record, planted the trusted way, is honoured — so
    // the refusals above were about trust, not content.
    std::fs::remove_file(&mark).unwrap();
    plant(&for_alice, 0o600, 0);
    assert_eq!(login(&confdir, "alice", "alice pw"), PAM_SUCCESS);
    assert_eq!(
        server.requests_for("alice"),
        expected_requests,
        "a trusted mark means no request"
    );
    std::fs::remove_file(&mark).unwrap();

    // A symlink where the token file goes is replaced, never written through.
    let decoy = elsewhere.join("decoy");
    std::fs::write(&decoy, "orig").unwrap();
    std::os::unix::fs::symlink(&decoy, dir.join("alice.token")).unwrap();
    let mut pam = Pam::start(&confdir, "authtoken-test", "alice", Some("alice pw"));
    assert_eq!(pam.authenticate(), PAM_SUCCESS);
    assert_eq!(pam.open_session(), PAM_SUCCESS);
    assert_eq!(std::fs::read_to_string(&decoy).unwrap(), "orig");
    assert!(std::fs::symlink_metadata(dir.join("alice.token"))
        .unwrap()
        .is_file());
    drop(pam);

    // A session directory that is a symlink to a directory of valid marks.
    let fake = ws.path("fake-session");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o700)).unwrap();
    let fake_mark = fake.join("alice.unmanaged");
    std::fs::write(&fake_mark, &for_alice).unwrap();
    std::fs::set_permissions(&fake_mark, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&dir, ws.path("moved-session")).unwrap();
    std::os::unix::fs::symlink(&fake, &dir).unwrap();
    let before = server.requests_for("alice");
    assert_eq!(login(&confdir, "alice", "alice pw"), PAM_SUCCESS);
    assert_eq!(
        server.requests_for("alice"),
        before + 2,
        "symlinked session directory ignored"
    );
}

#[test]
fn stale_sessions_are_swept() {
    let ws = workspace();
    let server = Server::start(&ws, &[]);
    let (confdir, _) = session_stack(&ws, &ws.config_for(&server.url(), ""));
    // A session whose leader is gone (a pid that exited) and one whose pid
    // was recycled (pid 1, wrong start time).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let cache = ws.path("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    for stale in [format!("sid-{dead_pid}-1"), "sid-1-999999999999".to_owned()] {
        let dir = cache.join(stale);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(dir.join("alice.token"), "old").unwrap();
    }
    let mut pam = Pam::start(&confdir, "authtoken-test", "alice", Some("alice pw"));
    assert_eq!(pam.authenticate(), PAM_SUCCESS);
    assert_eq!(pam.open_session(), PAM_SUCCESS);
    let left: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "only the live session remains: {left:?}");
}

#[test]
fn concurrent_logins_keep_the_cache_consistent() {
    let ws = workspace();
    // Ten wrong passwords for alice, all from 127.0.0.1: not a guesser.
    // Fifty logins at once from one address: more than the default cap on
    // connections per address (32), which is not what this test is about.
    let server = Server::start(
        &ws,
        &["--throttle-after=1000", "--per-address-connections=64"],
    );
    let (confdir, _) = session_stack(&ws, &ws.config_for(&server.url(), ""));
    let cases: Vec<(&str, &str, i32)> = (0..50)
        .map(|i| match i % 5 {
            0 | 1 => ("alice", "alice pw", PAM_SUCCESS),
            2 => ("carol", "carol pw", PAM_SUCCESS),
            3 => ("alice", "wrong", PAM_AUTH_ERR),
            _ => ("bob", "bob pw", PAM_SUCCESS),
        })
        .collect();
    let handles: Vec<_> = cases
        .iter()
        .map(|&(user, password, expected)| {
            let confdir = confdir.clone();
            std::thread::spawn(move || {
                let mut pam = Pam::start(&confdir, "authtoken-test", user, Some(password));
                let code = pam.authenticate();
                assert_eq!(code, expected, "{user} with {password}");
                if code == PAM_SUCCESS && user != "bob" {
                    assert_eq!(pam.open_session(), PAM_SUCCESS);
                    let path = pam.getenv("AUTHTOKEN_FILE").unwrap();
                    assert!(path.ends_with(&format!("/{user}.token")), "{path}");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let dir = session_dir(&ws);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["alice.token", "bob.unmanaged", "carol.token"],
        "no temporary files left"
    );
    for user in ["alice", "carol"] {
        let path = dir.join(format!("{user}.token"));
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o600, 0));
        let fp = fingerprint(&std::fs::read(&path).unwrap());
        assert!(
            issued_fingerprints(&server, user).contains(&fp),
            "{user}'s file holds a token issued to {user}"
        );
    }
    assert!(server.requests_for("bob") >= 1 && server.requests_for("bob") <= 10);
}

#[test]
fn status_lists_sessions_without_tokens() {
    let ws = workspace();
    let server = Server::start(&ws, &[]);
    let config = ws.config_for(&server.url(), "");
    let (confdir, _) = session_stack(&ws, &config);
    let mut pam = Pam::start(&confdir, "authtoken-test", "alice", Some("alice pw"));
    assert_eq!(pam.authenticate(), PAM_SUCCESS);
    assert_eq!(pam.open_session(), PAM_SUCCESS);
    assert_eq!(login(&confdir, "bob", "x"), PAM_SUCCESS);
    let token = std::fs::read_to_string(pam.getenv("AUTHTOKEN_FILE").unwrap()).unwrap();
    let out = run_ok(
        std::process::Command::new(CLI)
            .args(["status", "--config"])
            .arg(&config),
        None,
    );
    assert!(
        out.contains("alice") && out.contains(&format!("token ({} bytes)", token.len())),
        "{out}"
    );
    assert!(
        out.contains("bob") && out.contains("unmanaged (410)"),
        "{out}"
    );
    assert!(out.contains(" yes "), "the session is alive: {out}");
    assert!(!out.contains(token.trim()), "{out}");
}

/// What sshd's forked authentication child does: authenticate in a handle
/// of this process session and end without `pam_end` (the child exits),
/// so the hand-off it left stays for the session opened elsewhere. A
/// handle that is ended withdraws it.
fn authenticate_as_sshds_child(confdir: &Path, user: &str, password: &str) {
    let mut child = Pam::start(confdir, "sshd", user, Some(password));
    assert_eq!(child.authenticate(), PAM_SUCCESS);
    std::mem::forget(child);
}

/// Every file in the session cache.
fn cached_files(ws: &Workspace) -> Vec<PathBuf> {
    std::fs::read_dir(ws.path("cache"))
        .unwrap()
        .flatten()
        .flat_map(|session| std::fs::read_dir(session.path()).unwrap().flatten())
        .map(|file| file.path())
        .collect()
}

#[test]
fn a_handle_that_ends_withdraws_its_hand_off() {
    let ws = workspace();
    let server = Server::start(&ws, &[]);
    let (confdir, _) = session_stack(&ws, &ws.config_for(&server.url(), ""));
    let mut sshd = Pam::start(&confdir, "sshd", "alice", Some("alice pw"));
    assert_eq!(sshd.authenticate(), PAM_SUCCESS);
    assert_eq!(cached_files(&ws).len(), 1, "sshd's login leaves a hand-off");
    drop(sshd);
    let left = cached_files(&ws);
    assert!(
        left.is_empty(),
        "the handle ended: no live token left behind: {left:?}"
    );
    let mut pam = Pam::start(&confdir, "authtoken-test", "alice", None);
    assert_eq!(
        pam.open_session(),
        PAM_SUCCESS,
        "pam_exec decides; ours ignored"
    );
    assert_eq!(pam.getenv("AUTHTOKEN_FILE"), None);
}

#[test]
fn only_sshd_leaves_a_hand_off() {
    // sudo -v signs in and exits without pam_end: its handle's data is
    // never cleaned up, so it must not have left a live token.
    let ws = workspace();
    let server = Server::start(&ws, &[]);
    let (confdir, _) = session_stack(&ws, &ws.config_for(&server.url(), ""));
    let mut sudo = Pam::start(&confdir, "authtoken-test", "alice", Some("alice pw"));
    assert_eq!(sudo.authenticate(), PAM_SUCCESS);
    std::mem::forget(sudo);
    let left = cached_files(&ws);
    assert!(left.is_empty(), "{left:?}");
    let mut pam = Pam::start(&confdir, "authtoken-test", "alice", None);
    assert_eq!(
        pam.setcred(),
        PAM_SUCCESS,
        "pam_permit decides; ours ignored"
    );
    assert_eq!(pam.open_session(), PAM_SUCCESS);
    assert_eq!(pam.getenv("AUTHTOKEN_FILE"), None);
}

#[test]
fn open_session_takes_the_token_authenticated_by_another_process_of_the_session() {
    // sshd authenticates in a forked child and opens the session in its
    // parent: the token must cross that process boundary, within one
    // process session only.
    let ws = workspace();
    let server = Server::start(&ws, &[]);
    let (confdir, _) = session_stack(&ws, &ws.config_for(&server.url(), ""));

    authenticate_as_sshds_child(&confdir, "alice", "alice pw");
    let mut pam = Pam::start(&confdir, "authtoken-test", "alice", None);
    assert_eq!(
        pam.setcred(),
        PAM_SUCCESS,
        "authenticated by the other process"
    );
    assert_eq!(pam.open_session(), PAM_SUCCESS);
    let path = PathBuf::from(pam.getenv("AUTHTOKEN_FILE").expect("exported"));
    assert_eq!(
        issued_fingerprints(&server, "alice"),
        vec![fingerprint(&std::fs::read(&path).unwrap())]
    );
    // Taken once: another session opening finds nothing to take.
    let mut again = Pam::start(&confdir, "authtoken-test", "carol", None);
    assert_eq!(
        again.open_session(),
        PAM_SUCCESS,
        "pam_exec decides; ours ignored"
    );
    assert_eq!(again.getenv("AUTHTOKEN_FILE"), None);
    let mut alice_again = Pam::start(&confdir, "authtoken-test", "alice", None);
    assert_eq!(alice_again.open_session(), PAM_SUCCESS);
    assert_eq!(
        alice_again.getenv("AUTHTOKEN_FILE"),
        None,
        "the hand-off was consumed"
    );
    assert_eq!(pam.close_session(), PAM_SUCCESS);
    assert!(!path.exists());

    // Authenticated in another process session: nothing crosses over.
    let (code, out) = pamtester_with(&confdir, None, "carol", "carol pw", SessionOf::New);
    assert_eq!(code, 0, "{out}");
    let mut carol = Pam::start(&confdir, "authtoken-test", "carol", None);
    assert_eq!(carol.open_session(), PAM_SUCCESS);
    assert_eq!(carol.getenv("AUTHTOKEN_FILE"), None);
}

#[test]
fn a_stale_hand_off_is_not_taken() {
    let ws = workspace();
    let server = Server::start(&ws, &[]);
    let (confdir, _) = session_stack(&ws, &ws.config_for(&server.url(), ""));
    authenticate_as_sshds_child(&confdir, "alice", "alice pw");
    let handoff = session_dir(&ws).join("alice.handoff");
    let ten_minutes_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
    std::fs::File::options()
        .write(true)
        .open(&handoff)
        .unwrap()
        .set_modified(ten_minutes_ago)
        .unwrap();
    let mut pam = Pam::start(&confdir, "authtoken-test", "alice", None);
    assert_eq!(
        pam.open_session(),
        PAM_SUCCESS,
        "pam_exec decides; ours ignored"
    );
    assert_eq!(pam.getenv("AUTHTOKEN_FILE"), None);
    assert!(!handoff.exists(), "the stale hand-off was removed");
}

/// `pamtester authenticate` in a new process session whose leader (a shell)
/// has exited before pamtester starts. Returns (exit code, output).
fn pamtester_after_the_leader_exits(
    ws: &Workspace,
    confdir: &Path,
    user: &str,
    password: &str,
) -> (i32, String) {
    let password_file = ws.path("password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let (out, rc) = (ws.path("orphan.out"), ws.path("orphan.rc"));
    let _ = std::fs::remove_file(&rc);
    // The leader's pid is gone once the test has reaped it; only then does
    // the orphan run pamtester.
    let script = format!(
        "leader=$$; (while kill -0 $leader 2>/dev/null; do sleep 0.05; done; \
         bwrap --bind / / --dev /dev --proc /proc --bind '{conf}' /etc/pam.d \
         pamtester -v authtoken-test '{user}' authenticate <'{pw}' >'{out}' 2>&1; \
         echo $? >'{rc}.tmp'; mv '{rc}.tmp' '{rc}') </dev/null >/dev/null 2>&1 &",
        conf = confdir.display(),
        pw = password_file.display(),
        out = out.display(),
        rc = rc.display(),
    );
    let mut leader = std::process::Command::new("sh");
    leader.arg("-c").arg(script);
    in_new_session(&mut leader);
    assert!(leader.status().unwrap().success());
    let code = poll_until(std::time::Duration::from_secs(30), || {
        std::fs::read_to_string(&rc).ok()
    })
    .expect("the orphaned pamtester finished");
    let code: i32 = code.trim().parse().unwrap();
    (code, std::fs::read_to_string(&out).unwrap_or_default())
}

/// Runs pamtester for (user, password); answers (exit code, output).
type PamtesterRun<'a> = dyn Fn(&str, &str) -> (i32, String) + 'a;

#[test]
fn without_a_visible_session_leader_logins_work_and_nothing_is_cached() {
    // A shell entered into a container without a new session (getsid is 0)
    // or one whose session leader has exited: nothing identifies the login
    // session, so the module must neither share state under a made-up key
    // nor fail the login.
    let ws = workspace();
    let server = Server::start(&ws, &[]);
    let (confdir, _) = session_stack(&ws, &ws.config_for(&server.url(), ""));
    let hidden = |user: &str, password: &str| {
        pamtester_with(&confdir, None, user, password, SessionOf::HiddenLeader)
    };
    let orphaned = |user: &str, password: &str| {
        pamtester_after_the_leader_exits(&ws, &confdir, user, password)
    };
    let shapes: [(&str, &PamtesterRun); 2] =
        [("hidden leader", &hidden), ("leader exited", &orphaned)];
    for (round, (shape, run)) in shapes.iter().enumerate() {
        let (code, out) = run("alice", "alice pw");
        assert_eq!(code, 0, "{shape}: {out}");
        let (code, out) = run("alice", "wrong");
        assert_ne!(code, 0, "{shape}: {out}");
        for _ in 0..2 {
            let (code, out) = run("bob", "bob pw");
            assert_eq!(code, 0, "{shape}: ignored, pam_permit decides: {out}");
        }
        assert_eq!(
            server.requests_for("bob"),
            2 * (round + 1),
            "{shape}: no session to remember the 410 in"
        );
        let sessions = std::fs::read_dir(ws.path("cache"))
            .map(|dir| dir.count())
            .unwrap_or(0);
        assert_eq!(
            sessions, 0,
            "{shape}: no session directory under a made-up key"
        );
    }
}
