//! Hostile input from the caller of a setuid program (findings 4, 5 and 9
//! of the hostile-input issue): the real setuid `authtoken-chkpwd` and the
//! real setuid util-linux `su`, started by an unprivileged user (`nobody`,
//! through `setpriv`) who sets resource limits and signal dispositions
//! first, in a private mount namespace where `/etc/authtoken` and
//! `/etc/pam.d` are this test's. Every run is bounded by `timeout`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use authtoken_core::offline::{OfflineStore, OfflineVerifier};
use authtoken_core::outcome::Outcome;
use authtoken_core::username::Username;
use authtoken_core::wire::{self, HelperRequest};
use common::*;

/// The caller: an unprivileged account every Debian system has.
const CALLER: &str = "nobody";
const CALLER_ID: u32 = 65534;
const CALLER_PW: &str = "nobody's authority password";
/// The account `su` switches to.
const TARGET: &str = "daemon";
const TARGET_PW: &str = "daemon's authority password";

/// `/etc/authtoken`, the mount point chkpwd's config is bound onto: made
/// empty for the tests that need it when the machine has none, and removed
/// again when the last of them ends.
struct EtcAuthtoken;

static HOLDERS: std::sync::Mutex<(usize, bool)> = std::sync::Mutex::new((0, false));

impl EtcAuthtoken {
    fn hold() -> EtcAuthtoken {
        let mut holders = HOLDERS.lock().unwrap_or_else(|p| p.into_inner());
        if holders.0 == 0 && !Path::new("/etc/authtoken").exists() {
            std::fs::create_dir("/etc/authtoken").unwrap();
            holders.1 = true;
        }
        holders.0 += 1;
        EtcAuthtoken
    }
}

impl Drop for EtcAuthtoken {
    fn drop(&mut self) {
        let mut holders = HOLDERS.lock().unwrap_or_else(|p| p.into_inner());
        holders.0 -= 1;
        if holders.0 == 0 && holders.1 {
            let _ = std::fs::remove_dir("/etc/authtoken");
            holders.1 = false;
        }
    }
}

/// A machine with the test's `/etc/authtoken`, `/etc/pam.d` and a setuid
/// copy of chkpwd, and an authority that knows both accounts.
struct Machine {
    _mount_point: EtcAuthtoken,
    ws: Workspace,
    /// World-traversable: the setuid chkpwd, where the caller can run it.
    libexec: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        let ws = Workspace::new();
        ws.add_user(CALLER, Some(CALLER_PW), &[]);
        ws.add_user(TARGET, Some(TARGET_PW), &[]);
        let libexec = tempfile::tempdir().unwrap();
        std::fs::set_permissions(libexec.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let chkpwd = libexec.path().join("authtoken-chkpwd");
        std::fs::copy(
            concat!(env!("AUTHTOKEN_BIN_DIR"), "/authtoken-chkpwd"),
            &chkpwd,
        )
        .unwrap();
        std::fs::set_permissions(&chkpwd, std::fs::Permissions::from_mode(0o4755)).unwrap();
        for dir in ["etc-authtoken", "pam.d"] {
            std::fs::create_dir(ws.path(dir)).unwrap();
            std::fs::set_permissions(ws.path(dir), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Machine {
            _mount_point: EtcAuthtoken::hold(),
            ws,
            libexec,
        }
    }

    fn chkpwd(&self) -> PathBuf {
        self.libexec.path().join("authtoken-chkpwd")
    }

    fn offline_dir(&self) -> PathBuf {
        self.ws.path("offline")
    }

    /// The system config (what chkpwd reads) for `url`, with `extra`.
    fn system_config(&self, url: &str, extra: &str) -> PathBuf {
        let config = self.ws.config_for(
            url,
            &format!("chkpwd = \"{}\"\n{extra}", self.chkpwd().display()),
        );
        let system = self.ws.path("etc-authtoken/authtoken.toml");
        // Room for a loaded machine: the debug helper's PBKDF2 is slow.
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("timeout_ms = 4000", "timeout_ms = 10000");
        std::fs::write(&system, text).unwrap();
        std::fs::set_permissions(&system, std::fs::Permissions::from_mode(0o644)).unwrap();
        common::make_module_settings(&system);
        system
    }

    /// An `[offline]` table: on, for `su` and `xscreensaver` callers.
    fn offline(&self, max_failures: u32) -> String {
        format!(
            "[offline]\nenabled = true\nmax_failures = {max_failures}\nservices = [\"su\", \"login\"]\nunprivileged_services = [\"xscreensaver\"]\ndir = \"{}\"",
            self.offline_dir().display()
        )
    }

    /// `script` in bash as the caller, in a mount namespace with this
    /// machine's `/etc/authtoken` and `/etc/pam.d`; `stdin` on its input.
    fn as_caller(&self, script: &str, stdin: &[u8]) -> Output {
        use std::io::Write as _;
        let inner = format!(
            "mount --bind '{}' /etc/authtoken && mount --bind '{}' /etc/pam.d && exec setpriv --reuid={CALLER_ID} --regid={CALLER_ID} --clear-groups bash -c \"$0\"",
            self.ws.path("etc-authtoken").display(),
            self.ws.path("pam.d").display(),
        );
        let mut child = in_mount_namespace(60, &inner)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin);
        child.wait_with_output().unwrap()
    }

    /// chkpwd run by the caller on `request`, after `setup` (shell lines).
    fn chkpwd_as_caller(&self, setup: &str, request: &HelperRequest) -> Outcome {
        let out = self.as_caller(
            &format!("{setup}\nexec '{}'", self.chkpwd().display()),
            &request.encode().unwrap(),
        );
        wire::decode_answer(&out.stdout)
            .unwrap_or_else(|e| {
                panic!(
                    "{e}: {} {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .outcome
    }

    /// The caller's record of attempts, as chkpwd keeps it.
    fn attempts(&self) -> serde_json::Value {
        let path = self.ws.path(&format!("cache/chkpwd/{CALLER_ID}"));
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_default())
            .unwrap_or(serde_json::Value::Null)
    }

    /// The offline record's count of failures for `user`.
    fn failures(&self, user: &str) -> u64 {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.offline_dir().join(user)).unwrap()).unwrap();
        record["failures"].as_u64().unwrap()
    }

    /// Temporary files left in the offline store.
    fn temporaries(&self) -> Vec<String> {
        std::fs::read_dir(self.offline_dir())
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.starts_with(".tmp-"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A verifier of `password` for `user`, as an online login leaves it.
    fn keep_verifier(&self, user: &str, password: &str) {
        let store = OfflineStore::open(&self.offline_dir()).unwrap();
        store
            .save(
                &Username::parse(user.as_bytes()).unwrap(),
                verifier_of(password),
            )
            .unwrap();
    }
}

fn verifier_of(password: &str) -> OfflineVerifier {
    authtoken_protocol::offline::new_verifier(password.as_bytes()).unwrap()
}

fn request(password: &str, service: &str) -> HelperRequest {
    HelperRequest::new(
        &Username::parse(CALLER.as_bytes()).unwrap(),
        password.as_bytes(),
        service,
    )
}

/// Whether this process's bounding set has `CAP_SYS_RESOURCE` (some
/// containers drop it; then even root cannot raise a hard limit).
fn can_raise_hard_limits() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap();
    bounding & (1 << 24) != 0
}

/// Finding 4: `ulimit -f 0` with SIGXFSZ ignored does not stop chkpwd
/// from counting rejected passwords, nor empty the record it reads.
#[test]
fn chkpwd_counts_rejections_whatever_limits_the_caller_set() {
    let machine = Machine::new();
    let server = Server::start(&machine.ws, &[]);
    machine.system_config(&server.url(), "");
    // Soft limits, which chkpwd can always lift.
    let limits = "ulimit -S -f 0; ulimit -S -n 16; ulimit -S -t 1; trap '' XFSZ INT TERM; ";
    for _ in 0..2 {
        let outcome = machine.chkpwd_as_caller(limits, &request("wrong", "xscreensaver"));
        assert!(matches!(outcome, Outcome::Rejected), "{outcome:?}");
    }
    assert_eq!(
        machine.attempts()["rejections"],
        2,
        "{}",
        machine.attempts()
    );
    // The right password still works (within the 4 s spacing).
    let outcome = machine.chkpwd_as_caller(limits, &request(CALLER_PW, "xscreensaver"));
    assert!(matches!(outcome, Outcome::Verified), "{outcome:?}");
    assert_eq!(machine.attempts()["rejections"], 0);
    // Hard limits: lifted where root may, else a refusal before anything
    // is tried; never an attempt that goes uncounted.
    let hard = "ulimit -f 0; trap '' XFSZ; ";
    std::thread::sleep(Duration::from_millis(1_100));
    let outcome = machine.chkpwd_as_caller(hard, &request("wrong", "xscreensaver"));
    if can_raise_hard_limits() {
        assert!(matches!(outcome, Outcome::Rejected), "{outcome:?}");
        assert_eq!(machine.attempts()["rejections"], 1);
    } else {
        assert!(
            matches!(&outcome, Outcome::Unavailable { reason } if reason.contains("RLIMIT_FSIZE")),
            "{outcome:?}"
        );
        assert_eq!(machine.attempts()["rejections"], 0, "nothing was tried");
    }
    // A record the caller could have truncated is the longest back-off.
    std::fs::write(machine.ws.path(&format!("cache/chkpwd/{CALLER_ID}")), b"").unwrap();
    match machine.chkpwd_as_caller("", &request(CALLER_PW, "xscreensaver")) {
        Outcome::Unavailable { reason } => assert!(reason.contains("rate limited"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// Finding 4: the caller's `offline` and `want_verifier` are never taken,
/// even when the system's store cannot be opened, and a caller without
/// root gets the offline services of its own list.
#[test]
fn chkpwd_takes_no_offline_decision_from_its_caller() {
    let machine = Machine::new();
    let nowhere = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}/checkin", listener.local_addr().unwrap())
    };
    // The store's path is under a file: it cannot be opened.
    std::fs::write(machine.ws.path("not-a-dir"), b"").unwrap();
    machine.system_config(
        &nowhere,
        &format!(
            "[offline]\nenabled = true\nunprivileged_services = [\"xscreensaver\"]\ndir = \"{}\"",
            machine.ws.path("not-a-dir/offline").display()
        ),
    );
    let mut forged = request("guess", "xscreensaver");
    forged.offline = Some(verifier_of("guess"));
    forged.want_verifier = true;
    let outcome = machine.chkpwd_as_caller("", &forged);
    assert!(
        matches!(outcome, Outcome::Unreachable { .. }),
        "the caller's own verifier was not used: {outcome:?}"
    );

    // A real store with the caller's verifier: used for a screen locker,
    // not for a service the caller merely names.
    machine.system_config(&nowhere, &machine.offline(5));
    machine.keep_verifier(CALLER, CALLER_PW);
    std::fs::remove_file(machine.ws.path(&format!("cache/chkpwd/{CALLER_ID}"))).unwrap();
    let outcome = machine.chkpwd_as_caller("", &request(CALLER_PW, "login"));
    assert!(
        matches!(outcome, Outcome::Unreachable { .. }),
        "{outcome:?}"
    );
    std::thread::sleep(Duration::from_millis(1_100));
    assert!(matches!(
        machine.chkpwd_as_caller("", &request(CALLER_PW, "xscreensaver")),
        Outcome::OfflineVerified
    ));
}

/// Finding 5: a helper that stops (SIGSTOP) is killed at chkpwd's deadline,
/// with its process group; the screen locker gets an answer.
#[test]
fn chkpwd_kills_a_stopped_helper_at_its_deadline() {
    let machine = Machine::new();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/checkin", silent.local_addr().unwrap());
    let config = machine.system_config(&url, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("timeout_ms = 10000", "timeout_ms = 3000");
    std::fs::write(&config, text).unwrap();
    let helper = std::fs::canonicalize(HELPER).unwrap();
    // This test's chkpwd is its own copy: its helper is the child of that
    // one, whatever other tests run beside it.
    let chkpwd = machine.chkpwd();
    let stopper = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            let parents = pids_running(&chkpwd);
            let ours = pids_running(&helper)
                .into_iter()
                .find(|pid| parent_of(*pid).is_some_and(|p| parents.contains(&p)));
            if let Some(pid) = ours {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGSTOP,
                )
                .unwrap();
                return Some(pid);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    });
    let (outcome, took) =
        timed(|| machine.chkpwd_as_caller("", &request(CALLER_PW, "xscreensaver")));
    let stopped = stopper.join().unwrap().expect("the helper ran");
    assert!(
        matches!(&outcome, Outcome::Unavailable { reason } if reason.contains("did not answer")),
        "{outcome:?}"
    );
    assert!(
        took < Duration::from_secs(12),
        "bounded by the kill deadline: {took:?}"
    );
    assert!(
        std::fs::metadata(format!("/proc/{stopped}")).is_err(),
        "the stopped helper is gone"
    );
    drop(silent);
}

/// Processes running `executable` anywhere on the machine.
fn pids_running(executable: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == executable)
        })
        .collect()
}

/// A process's parent, from `/proc/PID/stat`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The `su` stack: the module alone, then permit for the rest.
fn su_stack(machine: &Machine, config: &Path) {
    let stack = format!(
        "auth required {} config={}\naccount required pam_permit.so\nsession required pam_permit.so\n",
        module_path().display(),
        config.display()
    );
    std::fs::write(machine.ws.path("pam.d/su"), stack).unwrap();
}

/// `su TARGET -c true` by the caller with `password`, after `setup`:
/// whether PAM let it through (the target's shell, nologin, then refuses
/// to run anything, so success shows as its message, not as exit 0).
fn su(machine: &Machine, setup: &str, password: &str) -> bool {
    let out = machine.as_caller(
        &format!("{setup}\nsu {TARGET} -c true"),
        format!("{password}\n").as_bytes(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let passed = stdout.contains("not available") || stderr.contains("not available");
    // su records a failed attempt in btmp itself: under `ulimit -f 0`
    // that write, after PAM has refused, is what SIGXFSZ ends.
    let killed_after_refusal =
        std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(libc::SIGXFSZ);
    assert!(
        passed
            || killed_after_refusal
            || stderr.contains("Authentication")
            || stderr.contains("authentication"),
        "su ended otherwise ({}): {stdout} {stderr}",
        out.status
    );
    passed
}

/// Finding 9, through real `su`: with the authority unreachable and
/// `max_failures = 3`, `ulimit -f 0` (SIGXFSZ ignored or not) gets no
/// verifier checked at all and leaves nothing behind, and 40 concurrent
/// attempts are evaluated three at most.
#[test]
fn the_offline_lock_holds_inside_su() {
    let machine = Machine::new();
    let server = Server::start(&machine.ws, &[]);
    let online = machine.ws.config_for(&server.url(), &machine.offline(3));
    su_stack(&machine, &online);
    assert!(
        su(&machine, "", TARGET_PW),
        "online, and a verifier is kept"
    );
    assert_eq!(machine.failures(TARGET), 0);
    let url = server.url();
    drop(server);
    let offline = machine.ws.config_for(&url, &machine.offline(3));
    su_stack(&machine, &offline);

    for setup in ["ulimit -f 0; trap '' XFSZ", "ulimit -f 0"] {
        for _ in 0..8 {
            assert!(!su(&machine, setup, "wrong"), "{setup}");
        }
        assert!(
            !su(&machine, setup, TARGET_PW),
            "{setup}: no verifier is checked when the attempt cannot be counted"
        );
        assert_eq!(machine.failures(TARGET), 0, "{setup}");
        assert!(
            machine.temporaries().is_empty(),
            "{:?}",
            machine.temporaries()
        );
    }
    assert!(
        su(&machine, "", TARGET_PW),
        "offline, with nothing counted against it"
    );

    let refused = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..40)
            .map(|_| scope.spawn(|| !su(&machine, "", "wrong")))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|refused| *refused)
            .count()
    });
    assert_eq!(refused, 40);
    assert_eq!(machine.failures(TARGET), 3, "three evaluated, then locked");
    assert!(!su(&machine, "", TARGET_PW), "locked until an online login");
    assert!(machine.temporaries().is_empty());
}
