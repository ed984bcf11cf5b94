//! Secrets stay secret and the module is a good guest: the password is
//! never in the helper's argv or environment, descriptors do not leak into
//! it, and no log line carries a password.

mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const PASSWORD: &str = "Tr0ub4dor&3-zebra";

#[test]
fn password_not_in_helper_argv_environment_or_descriptors() {
    let ws = Workspace::new();
    // A descriptor the host forgot to mark close-on-exec must not reach the helper.
    let leak_path = ws.path("host-secret-file");
    std::fs::write(&leak_path, "host data").unwrap();
    let c_path = std::ffi::CString::new(leak_path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: plain open(2) of a path we own, without O_CLOEXEC on purpose.
    let leaky_fd = unsafe { libc::open(c_path.as_ptr(), libc::O_RDONLY) };
    assert!(leaky_fd >= 0);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/checkin", listener.local_addr().unwrap());
    let config = ws.config_for(&url, "");
    let confdir = ws.simple_stack(&config);
    let login_thread = std::thread::spawn(move || login(&confdir, "alice", PASSWORD));

    // The helper connected to this listener (not another test's helper).
    let port = listener.local_addr().unwrap().port();
    let until = Instant::now() + Duration::from_secs(3);
    let mut seen = None;
    while seen.is_none() && Instant::now() < until {
        seen = helper_connected_to(port);
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = seen.expect("the helper ran while the authority was silent");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let cmdline_text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline_text.starts_with("authtoken-helper authenticate --config"),
        "{cmdline_text}"
    );
    assert!(!cmdline_text.contains(PASSWORD));
    assert!(
        environ.is_empty(),
        "helper environment is empty: {:?}",
        String::from_utf8_lossy(&environ)
    );
    let mut open_files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            open_files.push(target);
        }
    }
    assert!(
        !open_files.iter().any(|f| f == &leak_path),
        "host fd leaked: {open_files:?}"
    );

    assert_eq!(login_thread.join().unwrap(), PAM_AUTHINFO_UNAVAIL);
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(leaky_fd) };
    drop(listener);
}

/// Reads syslog datagrams on a thread, as a syslog daemon would (senders
/// such as glibc's syslog(3) block once the socket's queue is full), until
/// `stop` is set and `quiet` passes without a datagram.
fn collect(
    socket: UnixDatagram,
    stop: Arc<AtomicBool>,
    quiet: Duration,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        socket.set_read_timeout(Some(quiet)).unwrap();
        let mut lines = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => lines.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(_) if stop.load(Ordering::SeqCst) => return lines,
                Err(_) => {}
            }
        }
    })
}

#[test]
fn nothing_logged_contains_a_password() {
    let ws = Workspace::new();
    ws.add_user("alice", Some(PASSWORD), &[]);
    ws.add_user("dave", Some(PASSWORD), &["--scheme=digest-md5"]);
    ws.add_user("bob", None, &["--policy=unmanaged"]);
    let server = Server::start(&ws, &[]);
    let confdir = ws.simple_stack(&ws.config_for(
        &server.url(),
        "schemes = [\"scram-sha-256\", \"digest-md5\"]",
    ));
    let socket_path: &Path = &ws.path("log.sock");
    let stop = Arc::new(AtomicBool::new(false));
    let socket = UnixDatagram::bind(socket_path).unwrap();
    // Like the real /dev/log: the helper writes to it after dropping root.
    std::fs::set_permissions(socket_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let collector = collect(socket, stop.clone(), Duration::from_millis(300));

    let wrong = format!("{PASSWORD}-wrong");
    let cases = [
        ("alice", PASSWORD, 0),
        ("alice", wrong.as_str(), 1),
        ("dave", PASSWORD, 0),
        ("bob", PASSWORD, 1),
    ];
    for (user, password, expected) in cases {
        let (code, output) = pamtester(&confdir, Some(socket_path), user, password);
        assert_eq!(code, expected, "{user}: {output}");
        assert!(!output.contains(PASSWORD), "pamtester output: {output}");
    }
    stop.store(true, Ordering::SeqCst);
    let lines = collector.join().unwrap();
    let text = lines.join("\n");
    for expected in [
        "pam_authtoken[",
        "authtoken-helper[",
        "user=\"alice\" service=\"authtoken-test\" backend=mdm outcome=token",
        "user=\"alice\" service=\"authtoken-test\" backend=mdm outcome=rejected",
        "user=\"bob\" service=\"authtoken-test\" backend=mdm outcome=unmanaged",
        "SCRAM-SHA-256-PLUS challenge",
    ] {
        assert!(
            text.contains(expected),
            "missing {expected:?} in log:\n{text}"
        );
    }
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("<") && !l.contains(PASSWORD)),
        "{text}"
    );
    // authpriv (10) * 8 + severity: every line is in the authpriv facility.
    assert!(lines.iter().all(|l| {
        let pri: u32 = l[1..l.find('>').unwrap()].parse().unwrap();
        pri / 8 == 10
    }));
    // Neither the digest (SCRAM proof, Digest response) nor a token is logged.
    for secret_marker in [",p=", "response=\"", "AuthToken", "SCRAM-SHA-256 n="] {
        assert!(
            !text.contains(secret_marker),
            "{secret_marker} in log:\n{text}"
        );
    }
    let server_log = server.lines().join("\n");
    assert!(!server_log.contains(PASSWORD));
}

/// The `key=value` pairs of a log line, values in double quotes read with
/// their escapes (as a careful parser would).
fn fields(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].rsplit(' ').next().unwrap_or("").to_owned();
        let after = &rest[eq + 1..];
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            value.push(next);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        out.push((key, value));
        rest = tail;
    }
    out
}

/// Hostile input, finding 10: a user name written to look like more
/// fields (sshd passes the client's name to PAM even for unknown users)
/// stays one quoted value in the module's, the helper's and the server's
/// lines, and no line reads as a success.
#[test]
fn a_user_name_cannot_forge_log_fields() {
    let ws = Workspace::new();
    ws.add_user("alice", Some(PASSWORD), &[]);
    let server = Server::start(&ws, &[]);
    let confdir = ws.simple_stack(&ws.config_for(&server.url(), ""));
    let socket_path: &Path = &ws.path("log.sock");
    let stop = Arc::new(AtomicBool::new(false));
    let socket = UnixDatagram::bind(socket_path).unwrap();
    std::fs::set_permissions(socket_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let collector = collect(socket, stop.clone(), Duration::from_millis(300));
    let forged = "bob outcome=token result=PAM_SUCCESS \"x\u{202e}\u{2028}y";
    let (code, output) = pamtester(&confdir, Some(socket_path), forged, "guess");
    assert_ne!(code, 0, "{output}");
    stop.store(true, Ordering::SeqCst);
    let lines = collector.join().unwrap();
    let server_lines: Vec<String> = server
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("request "))
        .collect();
    let mut seen = 0;
    for line in lines.iter().chain(&server_lines) {
        if !line.contains("outcome=") {
            continue;
        }
        seen += 1;
        assert!(
            !line.contains('\u{202e}') && !line.contains('\u{2028}'),
            "raw format characters: {line}"
        );
        let fields = fields(line);
        let first = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_ne!(first("outcome").as_deref(), Some("token"), "{line}");
        assert_ne!(first("result").as_deref(), Some("PAM_SUCCESS"), "{line}");
        assert!(
            first("user")
                .is_some_and(|u| u.starts_with("bob outcome=token") && u.contains("u{202e}")),
            "{line}"
        );
    }
    assert!(
        seen >= 3,
        "the module, the helper and the server logged: {lines:?} {server_lines:?}"
    );
}

/// One field of `/proc/PID/status`.
fn status_field(pid: i32, name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_owned())
        })
}

/// The inodes of the sockets connected to 127.0.0.1:`port` (the client
/// side of each connection to a listener of ours).
fn connections_to(port: u16) -> Vec<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(2) == Some(&remote.as_str()))
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// The helper (a child of this test process) connected to our listener
/// on `port`: other tests of this binary run their own helpers meanwhile,
/// as root until they drop, or for the module's settings.
fn helper_connected_to(port: u16) -> Option<i32> {
    let helper = std::fs::canonicalize(HELPER).ok()?;
    let sockets = connections_to(port);
    children()
        .into_iter()
        .filter(|(_, _, exe)| exe.as_deref() == Some(helper.as_path()))
        .map(|(pid, _, _)| pid)
        .find(|pid| sockets.iter().any(|inode| holds_socket(*pid, *inode)))
}

/// Whether process `pid` has the socket `inode` open.
fn holds_socket(pid: i32, inode: u64) -> bool {
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| target.as_os_str() == wanted.as_str())
            })
        })
        .unwrap_or(false)
}

#[test]
fn helper_is_unprivileged_before_it_opens_a_socket() {
    let ws = Workspace::new();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    // An authority that accepts the connection and holds its reply.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/checkin", listener.local_addr().unwrap());
    {
        let helper_user = "nobody";
        let config = ws.config_for(&url, &format!("helper_user = \"{helper_user}\""));
        let confdir = ws.simple_stack(&config);
        let login_thread = std::thread::spawn(move || login(&confdir, "alice", PASSWORD));
        // The moment the helper's connection arrives, it must already be
        // the unprivileged user: root was dropped before the socket.
        listener.set_nonblocking(false).unwrap();
        let (held, _) = listener.accept().unwrap();
        let pid = helper_connected_to(listener.local_addr().unwrap().port())
            .expect("the helper is waiting for the authority");
        let ids = |field: &str| -> Vec<u32> {
            status_field(pid, field)
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        };
        assert_eq!(ids("Uid"), vec![nobody.uid.as_raw(); 4], "{helper_user}");
        assert_eq!(ids("Gid"), vec![nobody.gid.as_raw(); 4], "{helper_user}");
        assert!(ids("Groups").is_empty(), "no supplementary groups");
        assert_eq!(status_field(pid, "NoNewPrivs").as_deref(), Some("1"));
        for caps in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
            assert_eq!(
                status_field(pid, caps).as_deref(),
                Some("0000000000000000"),
                "{caps}"
            );
        }
        drop(held);
        assert_eq!(login_thread.join().unwrap(), PAM_AUTHINFO_UNAVAIL);
    }
}

/// Hostile input, finding 7: a missing `helper_user` is no reason to run as
/// the shared `nobody` (whose other processes could signal or stop the
/// helper): the login fails closed before any connection.
#[test]
fn a_missing_helper_user_fails_closed_without_a_connection() {
    let ws = Workspace::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/checkin", listener.local_addr().unwrap());
    let config = ws.config_for(&url, "helper_user = \"no-such-account\"");
    let confdir = ws.simple_stack(&config);
    assert_eq!(login(&confdir, "alice", PASSWORD), PAM_AUTHINFO_UNAVAIL);
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the helper never connected to the authority"
    );
    let out = std::process::Command::new(CLI)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("helper_user \"no-such-account\" does not exist") && text.contains("useradd"),
        "{text}"
    );
}
