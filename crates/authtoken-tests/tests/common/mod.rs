//! Shared fixtures for the integration tests: a real `authtoken-server` on
//! 127.0.0.1 with a private test CA, and the real `pam_authtoken.so` loaded
//! by the real libpam through `pam_start_confdir`.

#![allow(dead_code)]

use std::ffi::{CStr, CString};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub(crate) mod client;
pub(crate) mod machine;

/// The workspace's binaries, as `cargo build --workspace` left them.
pub(crate) const HELPER: &str = concat!(env!("AUTHTOKEN_BIN_DIR"), "/authtoken-helper");
/// The administrator's command (`/usr/sbin/authtoken`).
pub(crate) const CLI: &str = concat!(env!("AUTHTOKEN_BIN_DIR"), "/authtoken");
pub(crate) const SERVER: &str = concat!(env!("AUTHTOKEN_BIN_DIR"), "/authtoken-server");
pub(crate) const UDID: &str = "01234567-89AB-CDEF-0123-456789ABCDEF";

/// The cdylib cargo built next to the binaries.
pub(crate) fn module_path() -> PathBuf {
    let path = Path::new(HELPER).with_file_name("libpam_authtoken.so");
    for built in [path.as_path(), Path::new(HELPER), Path::new(SERVER)] {
        assert!(
            built.exists(),
            "{} was not built: run `cargo build --workspace` first (scripts/test.sh does)",
            built.display()
        );
    }
    path
}

pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests load a PAM module whose config must be root-owned: run them as root"
    );
}

/// Makes sure this test process's session leader is visible, as it is in
/// every real login (sshd, login and display managers start a session per
/// login). A runner entered into a container without a new session (some CI
/// sandboxes), or whose session leader has exited, has no session key, and
/// the module rightly keeps no session cache there; this process then
/// starts its own session, once (`Once` keeps concurrent tests from racing).
pub(crate) fn require_visible_session() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if authtoken_core::session::SessionKey::process_session().is_err() {
            nix::unistd::setsid().expect(
                "the test process cannot start its own session (it leads a process group): \
                 run the tests with `cargo test` or under `setsid -w`",
            );
        }
    });
}

/// A private directory with a test CA, server and client certificates.
pub(crate) struct Workspace {
    pub dir: TempDir,
}

impl Workspace {
    pub(crate) fn new() -> Workspace {
        require_root();
        require_visible_session();
        let dir = tempfile::Builder::new()
            .prefix("authtoken-test")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let ws = Workspace { dir };
        ws.gen_tls("tls");
        ws
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A fresh CA and certificates under `name/`.
    pub(crate) fn gen_tls(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        run_ok(Command::new(SERVER).arg("gen-tls").arg(&dir), None);
        dir
    }

    pub(crate) fn users(&self) -> PathBuf {
        self.path("users.toml")
    }

    /// `authtoken-server add-user` with the password on stdin.
    pub(crate) fn add_user(&self, user: &str, password: Option<&str>, extra: &[&str]) {
        let mut cmd = Command::new(SERVER);
        cmd.arg("add-user").arg(self.users()).arg(user).args(extra);
        if password.is_some() && !extra.iter().any(|a| a.starts_with("--iterations")) {
            cmd.arg("--iterations=4096");
        }
        run_ok(&mut cmd, password.map(|p| format!("{p}\n")).as_deref());
    }

    /// Writes a root-owned 0600 config file and returns its path.
    pub(crate) fn write_config(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        make_module_settings(&path);
        path
    }

    /// A config for `url` trusting the test CA, with `extra` lines appended.
    /// Test users are enrolled with 4096 SCRAM rounds (fast), so the
    /// config lowers `min_scram_iterations` to match; plain-http URLs get
    /// `allow_insecure_http = true` from the caller.
    pub(crate) fn config_for(&self, url: &str, extra: &str) -> PathBuf {
        let body = format!(
            "backend = \"mdm\"\nurl = \"{url}\"\nca_file = \"{}\"\ntimeout_ms = 4000\nudid = \"{UDID}\"\nhelper = \"{HELPER}\"\n{}cache_dir = \"{}\"\nmin_scram_iterations = 4096\n{extra}\n",
            self.path("tls/ca.pem").display(),
            // Tests run where the packages' `authtoken` account may not
            // exist; they name the shared account explicitly.
            if extra.contains("helper_user") { "" } else { "helper_user = \"nobody\"\n" },
            self.path("cache").display(),
        );
        self.write_config("authtoken.toml", &body)
    }

    /// A `hem` config for the device emulation at `addr`, with `extra`.
    pub(crate) fn hem_config(&self, addr: SocketAddr, extra: &str) -> PathBuf {
        self.write_config(
            "authtoken.toml",
            &format!(
                "backend = \"hem\"\nurl = \"https://{addr}\"\nca_file = \"{}\"\ntimeout_ms = 8000\nhelper = \"{HELPER}\"\nhelper_user = \"nobody\"\ncache_dir = \"{}\"\n{extra}\n",
                self.path("tls/ca.pem").display(),
                self.path("cache").display()
            ),
        )
    }

    /// A pam.d directory with `service` holding `lines`.
    pub(crate) fn pam_service(&self, service: &str, lines: &[String]) -> PathBuf {
        let dir = self.path("pam.d");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(service), lines.join("\n") + "\n").unwrap();
        dir
    }

    /// The usual one-line stack: `auth required pam_authtoken.so config=… debug`.
    pub(crate) fn simple_stack(&self, config: &Path) -> PathBuf {
        self.pam_service(
            "authtoken-test",
            &[
                format!(
                    "auth required {} config={} debug",
                    module_path().display(),
                    config.display()
                ),
                format!(
                    "account required {} config={}",
                    module_path().display(),
                    config.display()
                ),
            ],
        )
    }
}

/// Runs `cmd` with `input` on its stdin (then closed) and its stdout and
/// stderr captured.
pub(crate) fn output_with_input(
    cmd: &mut Command,
    input: &[u8],
) -> std::io::Result<std::process::Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("piped").write_all(input)?;
    child.wait_with_output()
}

pub(crate) fn run_ok(cmd: &mut Command, stdin: Option<&str>) -> String {
    let out = output_with_input(cmd, stdin.unwrap_or("").as_bytes()).unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running `authtoken-server serve`, killed on drop. Its request log
/// goes to a file: the server writes each line before it answers, so
/// everything a finished login caused is already in the file when read.
pub(crate) struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: tempfile::NamedTempFile,
    /// What it serves from: the TOML file, or (in a run under
    /// scripts/with-postgres.sh) a PostgreSQL copy of it.
    pub store: String,
}

impl Server {
    /// Serves `users` over TLS with the workspace's certificates.
    pub(crate) fn start(ws: &Workspace, extra: &[&str]) -> Server {
        Server::spawn(&ws.users(), &Server::tls_args(ws, extra), None, &[])
    }

    /// Like [`Server::start`], with the server's wall clock moved by
    /// `offset` (`+61d`) through libfaketime, in its process only.
    pub(crate) fn start_moved(ws: &Workspace, offset: &str, extra: &[&str]) -> Server {
        Server::spawn(
            &ws.users(),
            &Server::tls_args(ws, extra),
            None,
            &faketime_env(offset),
        )
    }

    fn tls_args(ws: &Workspace, extra: &[&str]) -> Vec<String> {
        let tls = ws.path("tls");
        let mut args: Vec<String> = vec![
            "--tls-cert".into(),
            tls.join("server.pem").display().to_string(),
            "--tls-key".into(),
            tls.join("server.key").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    pub(crate) fn start_with(users: &Path, args: &[String]) -> Server {
        Server::spawn(users, args, None, &[])
    }

    /// Like [`Server::start`], with soft and hard `RLIMIT_NOFILE` both
    /// `nofile` (what a unit without `LimitNOFILE` may get).
    pub(crate) fn start_limited(ws: &Workspace, extra: &[&str], nofile: u64) -> Server {
        Server::spawn(&ws.users(), &Server::tls_args(ws, extra), Some(nofile), &[])
    }

    fn spawn(users: &Path, args: &[String], nofile: Option<u64>, env: &[(&str, String)]) -> Server {
        use std::os::unix::process::CommandExt as _;
        let log = tempfile::NamedTempFile::new().unwrap();
        let hem = args.iter().any(|a| a == "--protocol=hem" || a == "hem");
        let explicit = args
            .iter()
            .position(|a| a == "--store")
            .and_then(|i| args.get(i + 1))
            .cloned();
        let (store, args): (String, Vec<String>) = match postgres_suite() {
            // A test that names its own PostgreSQL store (replicas.rs).
            _ if explicit.is_some() => (explicit.clone().unwrap_or_default(), args.to_vec()),
            // The same suite, once per store: the TOML store copied into a
            // database of its own (one per store file, so replicas of one
            // workspace share it), single-use records there too.
            Some(socket_dir) if !hem => (
                suite_database(&socket_dir, users),
                args.iter()
                    .filter(|a| !a.starts_with("--replay-dir"))
                    .cloned()
                    .collect(),
            ),
            _ => (users.display().to_string(), args.to_vec()),
        };
        let store_args: Vec<String> = if explicit.is_some() {
            Vec::new()
        } else if is_postgres(&store) {
            vec!["--store".into(), store.clone()]
        } else {
            vec!["--users".into(), store.clone()]
        };
        let mut command = Command::new(SERVER);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        if let Some(limit) = nofile {
            // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_NOFILE,
                        limit,
                        limit,
                    )
                    .map_err(std::io::Error::from)
                });
            }
        }
        let child = command
            .arg("serve")
            .arg("--listen=127.0.0.1:0")
            .args(&store_args)
            .arg("--failure-delay-ms=100")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            log,
            store,
        };
        let found = poll_until(Duration::from_secs(20), || {
            server.lines().iter().find_map(|line| {
                let rest = line.split("listening on ").nth(1)?;
                rest.split_whitespace().next()?.parse().ok()
            })
        });
        server.addr = found.unwrap_or_else(|| panic!("server did not start: {:?}", server.lines()));
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("https://{}/checkin", self.addr)
    }

    /// Makes the store it serves from unloadable: junk in the file, or a
    /// user row no store accepts.
    pub(crate) fn corrupt_store(&self) {
        if is_postgres(&self.store) {
            psql(
                &self.store,
                "UPDATE authtoken_users SET record = '{\"policy\": \"bogus\"}'",
            );
        } else {
            std::fs::write(&self.store, "this is not a store").unwrap();
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.log.path())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Requests that reached the server for `user`.
    pub(crate) fn requests_for(&self, user: &str) -> usize {
        let needle = format!(" user=\"{user}\" ");
        self.lines()
            .iter()
            .filter(|l| l.starts_with("request ") && l.contains(&needle))
            .count()
    }

    /// Waits (bounded) until the log has `n` lines containing `needle`.
    pub(crate) fn wait_for(&self, needle: &str, n: usize) -> bool {
        poll_until(Duration::from_secs(10), || {
            (self.lines().iter().filter(|l| l.contains(needle)).count() >= n).then_some(())
        })
        .is_some()
    }
}

// ---- PostgreSQL ----------------------------------------------------------

fn is_postgres(store: &str) -> bool {
    store.starts_with("postgres")
}

/// The socket directory of the cluster scripts/with-postgres.sh started,
/// when the suite runs on the PostgreSQL store.
pub(crate) fn postgres_suite() -> Option<String> {
    std::env::var("AUTHTOKEN_TEST_POSTGRES")
        .ok()
        .filter(|dir| !dir.is_empty())
}

/// The database for the TOML store `users` in the cluster at `socket_dir`:
/// created and migrated the first time, its content replaced by the file's.
fn suite_database(socket_dir: &str, users: &Path) -> String {
    let name = format!(
        "t{}",
        &fingerprint(users.display().to_string().as_bytes())[..12]
    );
    let url = postgres_url(socket_dir, &name);
    let admin = postgres_url(socket_dir, "postgres");
    // "already exists" when a second replica of the workspace starts.
    let _ = Command::new("psql")
        .args([
            "-q",
            "-X",
            "-d",
            &admin,
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    run_ok(Command::new(SERVER).arg("migrate").arg(&url), None);
    run_ok(
        Command::new(SERVER)
            .arg("import-store")
            .arg(users)
            .arg(&url),
        None,
    );
    url
}

/// A libpq URL for database `name` over the Unix socket in `socket_dir`.
pub(crate) fn postgres_url(socket_dir: &str, name: &str) -> String {
    format!("postgresql:///{name}?host={socket_dir}&user=postgres")
}

/// Runs `sql` with psql on the database at `url`; its output.
pub(crate) fn psql(url: &str, sql: &str) -> String {
    run_ok(
        Command::new("psql").args([
            "-q",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ]),
        None,
    )
}

/// A PostgreSQL cluster of its own in a temporary directory, on a Unix
/// socket there (and, if asked, a loopback port), run as the `postgres`
/// account with `initdb` and `pg_ctl`: stopped and removed on drop.
pub(crate) struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    /// The loopback port, when it listens on one.
    pub port: Option<u16>,
}

impl Postgres {
    pub(crate) fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// With `tls`: also on a loopback port, with TLS from this certificate
    /// and key.
    pub(crate) fn start_with(tls: Option<(&Path, &Path)>) -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (scripts/deps.sh)")
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .expect("an initdb");
        let dir = tempfile::Builder::new()
            .prefix("authtoken-pg")
            .tempdir()
            .unwrap();
        let owner = nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("a postgres account");
        nix::unistd::chown(dir.path(), Some(owner.uid), Some(owner.gid)).unwrap();
        let mut pg = Postgres {
            dir,
            bin,
            port: None,
        };
        run_ok(
            pg.as_postgres("initdb")
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(pg.dir.path().join("data")),
            None,
        );
        let port = tls.map(|(cert, key)| {
            for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
                let target = pg.dir.path().join("data").join(to);
                std::fs::copy(from, &target).unwrap();
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
                nix::unistd::chown(&target, Some(owner.uid), Some(owner.gid)).unwrap();
            }
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        pg.port = port;
        pg.ctl_start();
        pg
    }

    fn as_postgres(&self, program: &str) -> Command {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program));
        command
    }

    /// Starts (again) the cluster, waiting until it answers.
    pub(crate) fn ctl_start(&self) {
        let socket = self.dir.path().display().to_string();
        let options = match self.port {
            Some(port) => format!("-k {socket} -c listen_addresses=127.0.0.1 -p {port} -c ssl=on"),
            None => format!("-k {socket} -c listen_addresses=''"),
        };
        run_ok(
            self.as_postgres("pg_ctl")
                .args(["-w", "-t", "30", "-o", &options, "-l"])
                .arg(self.dir.path().join("log"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .arg("start"),
            None,
        );
    }

    /// Stops the cluster (fast: connections are closed at once).
    pub(crate) fn ctl_stop(&self) {
        let _ = self
            .as_postgres("pg_ctl")
            .args(["-w", "-t", "30", "-m", "fast", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// The cluster's data directory (its `pg_hba.conf`).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) fn socket_dir(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// The URL of database `name` over the socket.
    pub(crate) fn url(&self, name: &str) -> String {
        let url = postgres_url(&self.socket_dir(), name);
        match self.port {
            Some(port) => format!("{url}&port={port}"),
            None => url,
        }
    }

    /// A new, empty database; its URL over the socket.
    pub(crate) fn database(&self, name: &str) -> String {
        psql(&self.url("postgres"), &format!("CREATE DATABASE {name}"));
        self.url(name)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.ctl_stop();
    }
}

/// Polls `probe` every 20 ms until it answers, for at most `limit`.
pub(crate) fn poll_until<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + limit;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- libpam, driven directly -------------------------------------------

pub(crate) const PAM_SUCCESS: i32 = 0;
pub(crate) const PAM_SERVICE_ERR: i32 = 3;
pub(crate) const PAM_PERM_DENIED: i32 = 6;
pub(crate) const PAM_AUTH_ERR: i32 = 7;
pub(crate) const PAM_AUTHINFO_UNAVAIL: i32 = 9;
pub(crate) const PAM_USER_UNKNOWN: i32 = 10;
pub(crate) const PAM_IGNORE: i32 = 25;

const PAM_PROMPT_ECHO_OFF: i32 = 1;
const PAM_PROMPT_ECHO_ON: i32 = 2;

#[repr(C)]
struct PamMessage {
    msg_style: libc::c_int,
    msg: *const libc::c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut libc::c_char,
    resp_retcode: libc::c_int,
}

#[repr(C)]
struct PamConv {
    conv: extern "C" fn(
        libc::c_int,
        *mut *const PamMessage,
        *mut *mut PamResponse,
        *mut libc::c_void,
    ) -> libc::c_int,
    appdata_ptr: *mut libc::c_void,
}

#[link(name = "pam")]
extern "C" {
    fn pam_start_confdir(
        service: *const libc::c_char,
        user: *const libc::c_char,
        conv: *const PamConv,
        confdir: *const libc::c_char,
        pamh: *mut *mut libc::c_void,
    ) -> libc::c_int;
    fn pam_authenticate(pamh: *mut libc::c_void, flags: libc::c_int) -> libc::c_int;
    fn pam_acct_mgmt(pamh: *mut libc::c_void, flags: libc::c_int) -> libc::c_int;
    fn pam_setcred(pamh: *mut libc::c_void, flags: libc::c_int) -> libc::c_int;
    fn pam_open_session(pamh: *mut libc::c_void, flags: libc::c_int) -> libc::c_int;
    fn pam_close_session(pamh: *mut libc::c_void, flags: libc::c_int) -> libc::c_int;
    fn pam_chauthtok(pamh: *mut libc::c_void, flags: libc::c_int) -> libc::c_int;
    fn pam_getenv(pamh: *mut libc::c_void, name: *const libc::c_char) -> *const libc::c_char;
    fn pam_end(pamh: *mut libc::c_void, status: libc::c_int) -> libc::c_int;
}

/// What the conversation saw and answers with.
pub(crate) struct Conversation {
    password: Option<CString>,
    pub prompts: Vec<String>,
    pub messages: Vec<String>,
}

extern "C" fn converse(
    num_msg: libc::c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: libpam passes the appdata we registered (a live Conversation)
    // and `num_msg` valid message pointers (Linux-PAM layout: array of pointers).
    unsafe {
        let state = &mut *(appdata as *mut Conversation);
        let n = num_msg as usize;
        let replies = libc::calloc(n, std::mem::size_of::<PamResponse>()) as *mut PamResponse;
        for i in 0..n {
            let m = &**msg.add(i);
            let text = CStr::from_ptr(m.msg).to_string_lossy().into_owned();
            if m.msg_style == PAM_PROMPT_ECHO_OFF || m.msg_style == PAM_PROMPT_ECHO_ON {
                state.prompts.push(text);
                match &state.password {
                    Some(p) => (*replies.add(i)).resp = libc::strdup(p.as_ptr()),
                    None => {
                        libc::free(replies as *mut libc::c_void);
                        return 19; // PAM_CONV_ERR
                    }
                }
            } else {
                state.messages.push(text);
            }
        }
        *resp = replies;
    }
    PAM_SUCCESS
}

/// One PAM transaction (`pam_start_confdir` … `pam_end`).
pub(crate) struct Pam {
    handle: *mut libc::c_void,
    conv: Box<PamConv>,
    pub conversation: Box<Conversation>,
}

impl Pam {
    pub(crate) fn start(confdir: &Path, service: &str, user: &str, password: Option<&str>) -> Pam {
        Pam::start_raw(confdir, service, user.as_bytes(), password)
    }

    pub(crate) fn start_raw(
        confdir: &Path,
        service: &str,
        user: &[u8],
        password: Option<&str>,
    ) -> Pam {
        let mut conversation = Box::new(Conversation {
            password: password.map(|p| CString::new(p).unwrap()),
            prompts: Vec::new(),
            messages: Vec::new(),
        });
        let conv = Box::new(PamConv {
            conv: converse,
            appdata_ptr: &mut *conversation as *mut Conversation as *mut libc::c_void,
        });
        let service = CString::new(service).unwrap();
        let user = CString::new(user).unwrap();
        let confdir = CString::new(confdir.as_os_str().as_encoded_bytes()).unwrap();
        let mut handle = std::ptr::null_mut();
        // SAFETY: all pointers are valid C strings / our boxed conv, which
        // outlive the handle (stored in the returned Pam).
        let rc = unsafe {
            pam_start_confdir(
                service.as_ptr(),
                user.as_ptr(),
                &*conv,
                confdir.as_ptr(),
                &mut handle,
            )
        };
        assert_eq!(rc, PAM_SUCCESS, "pam_start_confdir failed");
        Pam {
            handle,
            conv,
            conversation,
        }
    }

    pub(crate) fn authenticate(&mut self) -> i32 {
        // SAFETY: live handle from pam_start_confdir.
        unsafe { pam_authenticate(self.handle, 0) }
    }

    pub(crate) fn acct_mgmt(&mut self) -> i32 {
        // SAFETY: live handle.
        unsafe { pam_acct_mgmt(self.handle, 0) }
    }

    pub(crate) fn setcred(&mut self) -> i32 {
        // SAFETY: live handle; PAM_ESTABLISH_CRED.
        unsafe { pam_setcred(self.handle, 0x2) }
    }

    pub(crate) fn open_session(&mut self) -> i32 {
        // SAFETY: live handle.
        unsafe { pam_open_session(self.handle, 0) }
    }

    pub(crate) fn close_session(&mut self) -> i32 {
        // SAFETY: live handle.
        unsafe { pam_close_session(self.handle, 0) }
    }

    pub(crate) fn chauthtok(&mut self) -> i32 {
        // SAFETY: live handle.
        unsafe { pam_chauthtok(self.handle, 0) }
    }

    pub(crate) fn getenv(&self, name: &str) -> Option<String> {
        let name = CString::new(name).unwrap();
        // SAFETY: live handle; result copied at once.
        let ptr = unsafe { pam_getenv(self.handle, name.as_ptr()) };
        (!ptr.is_null()).then(|| {
            // SAFETY: non-null results are NUL-terminated strings owned by
            // libpam.
            unsafe { CStr::from_ptr(ptr) }
                .to_string_lossy()
                .into_owned()
        })
    }
}

impl Drop for Pam {
    fn drop(&mut self) {
        // SAFETY: live handle, ended once.
        unsafe { pam_end(self.handle, PAM_SUCCESS) };
        let _ = &self.conv;
    }
}

/// Authenticates once and returns the PAM code.
pub(crate) fn login(confdir: &Path, user: &str, password: &str) -> i32 {
    Pam::start(confdir, "authtoken-test", user, Some(password)).authenticate()
}

/// Runs `f` and returns its result with the time it took.
pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

// ---- pamtester under bwrap ---------------------------------------------

/// Runs `pamtester SERVICE USER authenticate` in a private mount namespace
/// where `confdir` is `/etc/pam.d` and `log_socket` (if any) is `/dev/log`.
/// The password is pamtester's stdin. Returns (exit code, output).
pub(crate) fn pamtester(
    confdir: &Path,
    log_socket: Option<&Path>,
    user: &str,
    password: &str,
) -> (i32, String) {
    pamtester_with(confdir, log_socket, user, password, SessionOf::Inherited)
}

/// Makes `cmd`'s child start a new process session (`setsid`).
pub(crate) fn in_new_session(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Which process session pamtester runs in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionOf {
    /// This test process's session.
    Inherited,
    /// A new process session (`setsid`): a new login session as far as the
    /// session cache can tell.
    New,
    /// This process's session, seen from a new pid namespace where its
    /// leader is not visible (`getsid` = 0), as in a container entered
    /// without a new session.
    HiddenLeader,
}

/// [`pamtester`] in the given process session.
pub(crate) fn pamtester_with(
    confdir: &Path,
    log_socket: Option<&Path>,
    user: &str,
    password: &str,
    session: SessionOf,
) -> (i32, String) {
    let mut cmd = Command::new("bwrap");
    if session == SessionOf::HiddenLeader {
        cmd.arg("--unshare-pid");
    }
    if session == SessionOf::New {
        in_new_session(&mut cmd);
    }
    cmd.args(["--bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]);
    cmd.arg("--bind").arg(confdir).arg("/etc/pam.d");
    if let Some(socket) = log_socket {
        cmd.arg("--bind").arg(socket).arg("/dev/log");
    }
    cmd.args([
        "--die-with-parent",
        "pamtester",
        "-v",
        "authtoken-test",
        user,
        "authenticate",
    ]);
    let out = output_with_input(&mut cmd, format!("{password}\n").as_bytes())
        .expect("running bwrap and pamtester (.ci/run installs them)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Children of this process: (pid, state letter, exe path if readable).
pub(crate) fn children() -> Vec<(i32, char, Option<PathBuf>)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ..." — comm may contain spaces, so split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == me {
            out.push((
                pid,
                state,
                std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
            ));
        }
    }
    out
}

/// Fingerprints (as the server logs them) of the tokens issued to `user`.
pub(crate) fn issued_fingerprints(server: &Server, user: &str) -> Vec<String> {
    let needle = format!(" user=\"{user}\" ");
    server
        .lines()
        .iter()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| l.split(" token_sha256=").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}

/// The server's fingerprint of a token: hex of the first 8 bytes of SHA-256.
pub(crate) fn fingerprint(token: &[u8]) -> String {
    let hash = ring::digest::digest(&ring::digest::SHA256, token);
    hash.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---- fake authorities -----------------------------------------------------

/// Reads one HTTP request (head and body) from `stream`, with a read
/// timeout; `None` if the peer went away first.
pub(crate) fn read_http_request(stream: std::net::TcpStream) -> Option<std::net::TcpStream> {
    use std::io::{BufRead, BufReader, Read};
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    Some(reader.into_inner())
}

/// An HTTP/1.1 reply; the connection stays open for the next step (both
/// steps of a login go on one connection).
pub(crate) fn http_reply(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A 200 carrying a plist dictionary of strings.
pub(crate) fn plist_reply(entries: &[(&str, &str)]) -> Vec<u8> {
    http_reply(
        "200 OK",
        "",
        &authtoken_protocol::mdm::string_dict(entries).expect("a plist"),
    )
}

/// A fake authority's side of its connections: the next request is read
/// on the connection the client holds open, or on a new one once the
/// client closed that (a later login).
pub(crate) struct FakeConnections {
    listener: std::net::TcpListener,
    open: Option<std::net::TcpStream>,
}

impl FakeConnections {
    /// Takes `listener` over (made non-blocking).
    pub(crate) fn new(listener: std::net::TcpListener) -> FakeConnections {
        listener.set_nonblocking(true).unwrap();
        FakeConnections {
            listener,
            open: None,
        }
    }

    /// The connection the next request was read on, once it was read;
    /// `None` when `done()` says to stop waiting first.
    pub(crate) fn next_request(
        &mut self,
        done: &dyn Fn() -> bool,
    ) -> Option<&mut std::net::TcpStream> {
        if let Some(stream) = self.open.take() {
            if let Some(stream) = read_http_request(stream) {
                return Some(self.open.insert(stream));
            }
        }
        let stream = loop {
            match self.listener.accept() {
                Ok((stream, _)) => break stream,
                Err(_) if done() => return None,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        stream.set_nonblocking(false).ok()?;
        let stream = read_http_request(stream)?;
        Some(self.open.insert(stream))
    }
}

/// Serves each reply to one request in turn, then stops: a scripted
/// authority on loopback, plain http, that keeps a connection open as a
/// real one does (and gives up after 15 s).
pub(crate) fn canned_replies(replies: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<()>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/checkin", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let ends = Instant::now() + Duration::from_secs(15);
        let mut connections = FakeConnections::new(listener);
        for reply in replies {
            let Some(stream) = connections.next_request(&|| Instant::now() >= ends) else {
                return;
            };
            let _ = stream.write_all(&reply);
        }
    });
    (url, handle)
}

/// `bash -c SCRIPT` in a private mount namespace of its own (what it
/// bind-mounts stays in it), killed after `seconds`; further arguments
/// become `$0`, `$1`….
/// The environment that moves a process's wall clock by `offset` (`+61d`,
/// `-2h`) through libfaketime (the `faketime` package): only `time`,
/// `gettimeofday` and the realtime clock move; the monotonic clock, which
/// deadlines and timers use, does not. Children inherit it.
pub(crate) fn faketime_env(offset: &str) -> Vec<(&'static str, String)> {
    let library = glob_one("/usr/lib", "faketime/libfaketimeMT.so.1").unwrap_or_else(|| {
        panic!("libfaketime is not installed: scripts/deps.sh installs the faketime package")
    });
    vec![
        ("LD_PRELOAD", library.display().to_string()),
        ("FAKETIME", offset.to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ("FAKETIME_DONT_RESET", "1".to_owned()),
    ]
}

/// `base/*/tail` (a multiarch library directory), the first that exists.
fn glob_one(base: &str, tail: &str) -> Option<PathBuf> {
    let direct = Path::new(base).join(tail);
    if direct.exists() {
        return Some(direct);
    }
    std::fs::read_dir(base)
        .ok()?
        .flatten()
        .map(|entry| entry.path().join(tail))
        .find(|path| path.exists())
}

pub(crate) fn in_mount_namespace(seconds: u32, script: &str) -> Command {
    let mut command = Command::new("timeout");
    command
        .arg(seconds.to_string())
        .args(["unshare", "-m", "--propagation", "private", "bash", "-c"])
        .arg(script);
    command
}

/// What the packages' configure step does (and `check-config` as root):
/// the module's settings beside the config, which the module reads instead
/// of parsing TOML. The module makes them again itself once the config
/// changes, with the helper the old ones name; only the first config of a
/// machine (here, of a workspace) needs this. A config the helper refuses
/// gets none.
pub(crate) fn make_module_settings(config: &Path) {
    let _ = Command::new(HELPER)
        .args(["module-settings", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
