//! The host's SIGCHLD disposition is its own: the module reaps its helper
//! when SIGCHLD is default, leaves no zombie, and still works when the host
//! ignores SIGCHLD (the kernel then reaps the helper itself).
//!
//! One test in its own binary, because signal dispositions are per process.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::*;

fn zombie_children() -> Vec<i32> {
    children()
        .into_iter()
        .filter(|(_, state, _)| *state == 'Z')
        .map(|(pid, ..)| pid)
        .collect()
}

#[test]
fn works_with_default_and_ignored_sigchld_and_leaves_no_zombie() {
    let ws = Workspace::new();
    ws.add_user("alice", Some("pw one"), &[]);
    let server = Server::start(&ws, &[]);
    let confdir = ws.simple_stack(&ws.config_for(&server.url(), ""));
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_config = std::fs::read_to_string(ws.path("authtoken.toml"))
        .unwrap()
        .replace(
            &server.url(),
            &format!("https://{}/checkin", silent.local_addr().unwrap()),
        )
        .replace("timeout_ms = 4000", "timeout_ms = 1000");
    ws.write_config("silent.toml", &silent_config);
    let silent_dir = ws.path("silent-pam.d");
    std::fs::create_dir_all(&silent_dir).unwrap();
    std::fs::write(
        silent_dir.join("authtoken-test"),
        format!(
            "auth required {} config={}\n",
            module_path().display(),
            ws.path("silent.toml").display()
        ),
    )
    .unwrap();

    let run = || {
        assert_eq!(login(&confdir, "alice", "pw one"), PAM_SUCCESS);
        assert_eq!(login(&confdir, "alice", "pw two"), PAM_AUTH_ERR);
        let (code, elapsed) = timed(|| login(&silent_dir, "alice", "pw one"));
        assert_eq!(code, PAM_AUTHINFO_UNAVAIL);
        assert!(elapsed < Duration::from_millis(1000 + 3000), "{elapsed:?}");
    };

    run();
    assert_eq!(
        zombie_children(),
        Vec::<i32>::new(),
        "no helper left unreaped"
    );
    assert_eq!(
        disposition(),
        libc::SIG_DFL,
        "the module left the default disposition as it found it"
    );

    // SAFETY: this binary runs this one test; the old disposition is restored below.
    let old = unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    run();
    // What the module left, read before anything is restored.
    assert_eq!(
        disposition(),
        libc::SIG_IGN,
        "the module left the host's SIG_IGN in place"
    );
    // SAFETY: restores the disposition saved above.
    unsafe { libc::signal(libc::SIGCHLD, old) };
    assert_eq!(zombie_children(), Vec::<i32>::new());
}

/// The process's SIGCHLD disposition, read without changing it.
fn disposition() -> libc::sighandler_t {
    // SAFETY: a zeroed sigaction is a valid out-parameter; a null new
    // action only queries the current one.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        assert_eq!(
            libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut current),
            0
        );
        current.sa_sigaction
    }
}
