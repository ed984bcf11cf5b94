//! Several authority replicas on one PostgreSQL store (issue 27,
//! docs/guide/replicas.md,
//! "Several authority replicas"): a real PostgreSQL from Debian's package,
//! started by these tests with `initdb` and `pg_ctl` as the `postgres`
//! account in a temporary directory (a Unix socket, or TLS on a loopback
//! port), and real `authtoken-server` replicas serving from it. A login
//! split over two replicas, a response accepted once across them, guesses
//! counted together, the database stopped mid-run (503, no grant,
//! recovery), schema migrations from empty and from the previous version,
//! a TOML store imported, the administrator's commands against the
//! database, and TLS to it. Each cluster is stopped and removed at the end.
//!
//! postgres-rerun: no (every server here names its own database, so
//! scripts/test.sh's rerun of the server suites on PostgreSQL skips it).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use authtoken_protocol::mdm;
use common::client::*;
use common::*;

const PASSWORD: &str = "alice's own";
const ELSEWHERE: [u8; 4] = [127, 0, 0, 3];

/// `authtoken-server ARGS…`, which must succeed; its standard output.
fn server_command(args: &[&str], stdin: Option<&str>) -> String {
    run_ok(Command::new(SERVER).args(args), stdin)
}

/// A workspace with alice, and a migrated database holding its store.
struct Site {
    ws: Workspace,
    pg: Postgres,
    url: String,
}

impl Site {
    fn new() -> Site {
        let ws = Workspace::new();
        ws.add_user("alice", Some(PASSWORD), &[]);
        let pg = Postgres::start();
        let url = pg.database("authtoken");
        server_command(&["migrate", &url], None);
        let users = ws.users().display().to_string();
        server_command(&["import-store", &users, &url], None);
        Site { ws, pg, url }
    }

    /// A replica serving the database, with metrics (and `extra`).
    fn replica(&self, extra: &[&str]) -> Server {
        let tls = self.ws.path("tls");
        let mut args: Vec<String> = vec![
            "--store".into(),
            self.url.clone(),
            format!("--tls-cert={}", tls.join("server.pem").display()),
            format!("--tls-key={}", tls.join("server.key").display()),
            "--metrics-listen=127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        Server::start_with(&self.ws.users(), &args)
    }

    fn client(&self, server: &Server) -> Client {
        Client::connect(ELSEWHERE, server, &tls_config(&self.ws.path("tls/ca.pem"))).unwrap()
    }

    /// A real login through the module in libpam.
    fn module_login(&self, server: &Server, user: &str, password: &str) -> i32 {
        let confdir = self.ws.simple_stack(&self.ws.config_for(&server.url(), ""));
        login(&confdir, user, password)
    }
}

/// `GET /ready` on a replica's metrics listener: its status.
fn ready(server: &Server) -> u16 {
    metrics_listener_get(metrics_addr(server), "/ready").0
}

/// Waits (bounded) until `/ready` says `status`.
fn until_ready_is(server: &Server, status: u16) -> bool {
    poll_until(Duration::from_secs(15), || {
        (ready(server) == status).then_some(())
    })
    .is_some()
}

#[test]
fn a_login_spans_replicas_a_response_counts_once_and_guesses_count_together() {
    let site = Site::new();
    let a = site.replica(&["--throttle-after=4"]);
    let b = site.replica(&["--throttle-after=4"]);

    // Step 1 on A, step 2 on B: the nonce key comes from the shared secret.
    let first = challenge(&mut site.client(&a), "alice");
    let text = field(&first, "DigestChallenge").unwrap();
    let (accepted, response) = respond(&mut site.client(&b), "alice", PASSWORD, &text);
    assert!(field(&accepted, "AuthToken").is_some_and(|t| !t.is_empty()));
    // The same response again, to either replica: refused.
    for replica in [&a, &b] {
        let replayed = site
            .client(replica)
            .put(&mdm::request_body(&identity("alice"), Some(&response)).unwrap())
            .unwrap();
        assert_eq!(field(&replayed, "AuthToken").as_deref(), Some(""));
    }
    assert!(a.wait_for("replayed response", 1) && b.wait_for("replayed response", 1));

    // Four wrong guesses, two on each replica: the budget (4) is spent on
    // both, and the right password is not evaluated either.
    for replica in [&a, &b, &a, &b] {
        assert!(!scram_login(&mut site.client(replica), "alice", "wrong"));
    }
    for replica in [&a, &b] {
        let mut client = site.client(replica);
        let text = field(&challenge(&mut client, "alice"), "DigestChallenge").unwrap();
        let (reply, _) = respond(&mut client, "alice", PASSWORD, &text);
        assert_eq!(reply.status, 429, "guesses on A and B count together");
        assert!(reply.retry_after.is_some());
    }
}

/// A response costs one statement (issue 38): the proof is evaluated, then
/// one function reads the budget and either counts the failure or claims
/// the single-use record; the challenge costs none.
#[test]
fn a_login_costs_one_statement_per_step() {
    let site = Site::new();
    let a = site.replica(&[]);
    let count = |operation: &str| {
        metric(
            metrics_addr(&a),
            &format!("authtoken_store_duration_seconds_count{{operation=\"{operation}\"}}"),
        )
    };
    let counts = || (count("judge"), count("reserve"), count("release"));
    let before = counts();
    assert!(scram_login(&mut site.client(&a), "alice", PASSWORD));
    assert_eq!(
        counts(),
        (before.0 + 1, before.1, before.2),
        "a granted login: one statement, the budget read and the single-use record written"
    );
    assert!(!scram_login(&mut site.client(&a), "alice", "wrong"));
    assert_eq!(
        counts(),
        (before.0 + 2, before.1, before.2),
        "a wrong one: one statement, the failure counted"
    );
    // Junk (a malformed response, a forged nonce) never reaches the database.
    for junk in [
        "SCRAM-SHA-256 garbage",
        "SCRAM-SHA-256 n=alice,r=abc,c=biws,r=abcAAAAAAAAAAAAAAAAAAAA,p=AAAA",
    ] {
        let reply = site
            .client(&a)
            .put(&mdm::request_body(&identity("alice"), Some(junk)).unwrap())
            .unwrap();
        assert_eq!(field(&reply, "AuthToken").as_deref(), Some(""));
    }
    assert_eq!(
        counts(),
        (before.0 + 2, before.1, before.2),
        "junk: no database operation"
    );
    assert_eq!(count("load"), 1, "users read once, at start");
}

#[test]
fn the_database_away_means_503_no_grant_and_recovery() {
    let site = Site::new();
    let a = site.replica(&[]);
    assert_eq!(site.module_login(&a, "alice", PASSWORD), PAM_SUCCESS);
    assert_eq!(ready(&a), 200);

    // A challenge taken while the database is up, answered after it went.
    let mut client = site.client(&a);
    let text = field(&challenge(&mut client, "alice"), "DigestChallenge").unwrap();
    site.pg.ctl_stop();
    let (reply, _) = respond(&mut client, "alice", PASSWORD, &text);
    assert_eq!(reply.status, 503, "no single-use record, no token");
    assert!(field(&reply, "AuthToken").is_none());
    assert!(until_ready_is(&a, 503), "/ready says the store is away");
    assert!(
        a.wait_for("answering 503 until it is back", 1),
        "noticed by itself"
    );
    assert_eq!(
        site.module_login(&a, "alice", PASSWORD),
        PAM_AUTHINFO_UNAVAIL
    );
    // With offline login on, a 503 at the first step is an authority that
    // cannot serve: the machine signs alice in against the verifier its
    // last online login left (and still refuses a wrong password).
    let offline = site.ws.path("offline");
    let with_offline = site.ws.config_for(
        &a.url(),
        &format!(
            "[offline]\nenabled = true\nservices = [\"authtoken-test\"]\ndir = \"{}\"",
            offline.display()
        ),
    );
    site.pg.ctl_start();
    assert!(until_ready_is(&a, 200));
    let stack = site.ws.simple_stack(&with_offline);
    assert_eq!(login(&stack, "alice", PASSWORD), PAM_SUCCESS, "online");
    site.pg.ctl_stop();
    assert!(until_ready_is(&a, 503));
    assert_eq!(login(&stack, "alice", PASSWORD), PAM_SUCCESS, "offline");
    assert_ne!(login(&stack, "alice", "wrong"), PAM_SUCCESS);
    let tokens_while_away = a
        .lines()
        .iter()
        .filter(|l| l.contains("outcome=token"))
        .count();
    assert_eq!(tokens_while_away, 2, "only the online logins");
    assert!(a
        .lines()
        .iter()
        .any(|l| l.contains("outcome=store_unavailable")));
    assert!(
        metric(metrics_addr(&a), "authtoken_store_errors_total{") >= 1,
        "store errors counted"
    );

    // Back by itself once the database is.
    site.pg.ctl_start();
    assert!(until_ready_is(&a, 200), "recovers without a restart");
    assert_eq!(site.module_login(&a, "alice", PASSWORD), PAM_SUCCESS);
    assert!(a.wait_for("reachable again", 1), "{:?}", a.lines());
}

#[test]
fn migrations_run_from_empty_and_from_the_previous_version() {
    let site = Site::new();
    let said = server_command(&["migrate", &site.url], None);
    assert!(said.contains("schema version 5, nothing to do"), "{said}");

    let old = site.pg.database("old");
    let said = server_command(&["migrate", &old, "--to=2"], None);
    assert!(said.contains("schema version 0 -> 2"), "{said}");
    // Version 2 data, written as a version-2 server would have: alice's
    // row and the secret, copied from the current database, and a
    // failure counted the old way (no slot id).
    let record = psql(
        &site.url,
        "SELECT record::text FROM authtoken_users WHERE name = 'alice'",
    );
    let secret = psql(
        &site.url,
        "SELECT encode(value, 'hex') FROM authtoken_settings WHERE name = 'secret'",
    );
    psql(
        &old,
        &format!(
            "INSERT INTO authtoken_users VALUES ('alice', '{}'); \
             UPDATE authtoken_settings SET value = decode('{}', 'hex') WHERE name = 'secret'; \
             INSERT INTO authtoken_failures VALUES ('a:alice', 1)",
            record.trim(),
            secret.trim()
        ),
    );
    // This build serves, and imports into, version 3 only.
    let refused = Command::new(SERVER)
        .args(["serve", "--listen=127.0.0.1:0", "--store", &old])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("run `authtoken-server migrate`"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let users = site.ws.users().display().to_string();
    let import = Command::new(SERVER)
        .args(["import-store", &users, &old])
        .output()
        .unwrap();
    assert!(!import.status.success());

    let said = server_command(&["migrate", &old], None);
    assert!(said.contains("schema version 2 -> 5"), "{said}");
    assert_eq!(
        psql(
            &old,
            "SELECT count(*) FROM authtoken_failures WHERE id IS NOT NULL"
        )
        .trim(),
        "1",
        "the old failure got its slot id"
    );
    let listing = server_command(&["list-users", &old], None);
    assert!(listing.contains("alice"), "{listing}");
    let tls = site.ws.path("tls");
    let replica = Server::start_with(
        &site.ws.users(),
        &[
            "--store".into(),
            old.clone(),
            format!("--tls-cert={}", tls.join("server.pem").display()),
            format!("--tls-key={}", tls.join("server.key").display()),
        ],
    );
    assert!(scram_login(&mut site.client(&replica), "alice", PASSWORD));
}

#[test]
fn the_administrators_commands_work_on_the_database_and_replicas_follow() {
    let site = Site::new();
    let a = site.replica(&[]);
    let b = site.replica(&[]);
    let listing = server_command(&["list-users", &site.url], None);
    assert!(
        listing.contains("alice") && !listing.contains("stored_key"),
        "{listing}"
    );

    server_command(&["add-group", &site.url, "staff"], None);
    server_command(
        &[
            "add-user",
            &site.url,
            "carol",
            "--iterations=4096",
            "--groups=staff",
        ],
        Some("carol's\n"),
    );
    // Added on the database: both replicas take it up by themselves.
    for replica in [&a, &b] {
        let signed_in = poll_until(Duration::from_secs(10), || {
            scram_login(&mut site.client(replica), "carol", "carol's").then_some(())
        });
        assert!(signed_in.is_some(), "carol on every replica");
    }
    server_command(&["remove-user", &site.url, "carol"], None);
    let gone = poll_until(Duration::from_secs(10), || {
        (!scram_login(&mut site.client(&b), "carol", "carol's")).then_some(())
    });
    assert!(gone.is_some(), "removed everywhere");
    let listing = server_command(&["list-users", &site.url], None);
    assert!(
        !listing.contains("carol") && listing.contains("group \"staff\""),
        "{listing}"
    );
    // The directory check holds on the database too: a uid taken twice.
    let clash = Command::new(SERVER)
        .args([
            "add-user",
            &site.url,
            "dave",
            "--iterations=4096",
            "--uid=10000",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"dave's\n")?;
            child.wait()
        })
        .unwrap();
    assert!(!clash.success(), "uid 10000 is alice's");
}

#[test]
fn tls_to_the_database() {
    let ws = Workspace::new();
    ws.add_user("alice", Some(PASSWORD), &[]);
    let tls = ws.path("tls");
    let pg = Postgres::start_with(Some((&tls.join("server.pem"), &tls.join("server.key"))));
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=require",
        pg.port.unwrap()
    );
    let ca = tls.join("ca.pem").display().to_string();
    let with_ca = |ca: &str, args: &[&str]| {
        Command::new(SERVER)
            .args(args)
            .arg(format!("--store-ca={ca}"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // A CA that did not sign the database's certificate: refused.
    ws.gen_tls("other");
    let other = ws.path("other/ca.pem").display().to_string();
    let refused = with_ca(&other, &["migrate", &url]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("TLS handshake"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(with_ca(&ca, &["migrate", &url]).status.success());
    let users = ws.users().display().to_string();
    assert!(with_ca(&ca, &["import-store", &users, &url])
        .status
        .success());
    let replica = Server::start_with(
        &ws.users(),
        &[
            "--store".into(),
            url.clone(),
            format!("--store-ca={ca}"),
            format!("--tls-cert={}", tls.join("server.pem").display()),
            format!("--tls-key={}", tls.join("server.key").display()),
        ],
    );
    let client_tls = tls_config(Path::new(&ca));
    let mut client = Client::connect(ELSEWHERE, &replica, &client_tls).unwrap();
    assert!(scram_login(&mut client, "alice", PASSWORD));
    // Plain text is not what it asked for: the server log names TLS.
    let ssl_in_use = psql(
        &pg.url("postgres"),
        "SELECT count(*) FROM pg_stat_ssl WHERE ssl",
    );
    assert!(
        ssl_in_use.trim().parse::<u32>().unwrap_or(0) >= 1,
        "{ssl_in_use}"
    );
}

/// A man in the middle of the database connection: it answers `N` to the
/// client's SSLRequest (no TLS here), then passes everything through to
/// the cluster's Unix socket, so a client that goes on in plain text gets a
/// working session it should never have had.
struct RefusesTls {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RefusesTls {
    fn start(socket: std::path::PathBuf) -> RefusesTls {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let ends = std::time::Instant::now() + Duration::from_secs(60);
            while !stopped.load(Ordering::SeqCst) && std::time::Instant::now() < ends {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let socket = socket.clone();
                std::thread::spawn(move || RefusesTls::relay(client, &socket));
            }
        });
        RefusesTls {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn relay(mut client: std::net::TcpStream, socket: &Path) -> Option<()> {
        use std::io::{Read, Write};
        client.set_nonblocking(false).ok()?;
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let mut first = [0u8; 8];
        client.read_exact(&mut first).ok()?;
        let mut server = std::os::unix::net::UnixStream::connect(socket).ok()?;
        // SSLRequest: length 8, code 80877103.
        if first == [0, 0, 0, 8, 4, 210, 22, 47] {
            client.write_all(b"N").ok()?;
        } else {
            server.write_all(&first).ok()?;
        }
        let (mut c2, mut s2) = (client.try_clone().ok()?, server.try_clone().ok()?);
        let up = std::thread::spawn(move || std::io::copy(&mut c2, &mut s2));
        let _ = std::io::copy(&mut server, &mut client);
        let _ = client.shutdown(std::net::Shutdown::Both);
        let _ = up.join();
        Some(())
    }
}

impl Drop for RefusesTls {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Issue 35: a URL without sslmode used to mean libpq's `prefer`, which
/// goes on in plain text when the answer to the SSLRequest is `N`. Over
/// TCP it now means verified TLS: the replica refuses to start and says
/// why; only `sslmode=disable`, written out, talks plain text.
#[test]
fn a_path_that_refuses_tls_gets_no_plain_text_session() {
    let site = Site::new();
    let socket = Path::new(&site.pg.socket_dir()).join(".s.PGSQL.5432");
    let proxy = RefusesTls::start(socket);
    let url = format!("postgresql://postgres@{}/authtoken", proxy.addr);
    // Bounded: a replica that took the plain session would serve on.
    let refused = Command::new("timeout")
        .args([
            "20",
            SERVER,
            "serve",
            "--listen=127.0.0.1:0",
            "--store",
            &url,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("refused TLS") && said.contains("sslmode=disable"),
        "{said}"
    );
    for mode in ["prefer", "allow", "require"] {
        let out = Command::new(SERVER)
            .args(["list-users", &format!("{url}?sslmode={mode}")])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "sslmode={mode}");
    }
    // The path works in plain text, for whoever asks for it in so many words.
    let listing = server_command(&["list-users", &format!("{url}?sslmode=disable")], None);
    assert!(listing.contains("alice"), "{listing}");
}

/// Whether `pid`'s command line holds `secret`.
fn cmdline_shows(pid: u32, secret: &str) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(secret)
}

/// Issue 35: the database password never reaches a command line. A URL
/// that holds one is refused at once (before the password prompt that
/// would keep it in /proc/PID/cmdline); PGPASSWORD, a PGPASSFILE and
/// --store-password-file each work, and no process of ours shows it.
#[test]
fn the_database_password_never_shows_in_a_command_line() {
    const DB_PASSWORD: &str = "db-Pa55-in-no-argv";
    let ws = Workspace::new();
    ws.add_user("alice", Some(PASSWORD), &[]);
    let tls = ws.path("tls");
    let pg = Postgres::start_with(Some((&tls.join("server.pem"), &tls.join("server.key"))));
    let admin = pg.url("postgres");
    psql(
        &admin,
        &format!("CREATE ROLE authtoken LOGIN PASSWORD '{DB_PASSWORD}'"),
    );
    psql(&admin, "CREATE DATABASE authtoken OWNER authtoken");
    // Over TCP, the role must give its password.
    let hba = pg.data_dir().join("pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    psql(&admin, "SELECT pg_reload_conf()");
    let url = format!(
        "postgresql://authtoken@127.0.0.1:{}/authtoken",
        pg.port.unwrap()
    );
    let ca = format!("--store-ca={}", tls.join("ca.pem").display());
    let server = |args: &[&str]| {
        let mut command = Command::new(SERVER);
        command
            .args(args)
            .arg(&ca)
            .env_remove("PGPASSWORD")
            .env_remove("PGPASSFILE")
            .env("HOME", ws.path("home"));
        command
    };

    // In the URL: refused before anything else, naming the three ways.
    let with_password = url.replace("authtoken@", &format!("authtoken:{DB_PASSWORD}@"));
    let out = server(&["add-user", &with_password, "bob"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for way in ["PGPASSWORD", "PGPASSFILE", "--store-password-file"] {
        assert!(said.contains(way), "{said}");
    }
    assert!(!said.contains(DB_PASSWORD), "{said}");
    // No password at all: the database refuses.
    let out = server(&["migrate", &url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the role needs its password");

    // PGPASSWORD: add-user at its prompt shows no password.
    assert!(server(&["migrate", &url])
        .env("PGPASSWORD", DB_PASSWORD)
        .stdin(Stdio::null())
        .status()
        .unwrap()
        .success());
    let mut add = server(&["add-user", &url, "bob", "--iterations=4096"])
        .env("PGPASSWORD", DB_PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(!cmdline_shows(add.id(), DB_PASSWORD));
    {
        use std::io::Write;
        add.stdin.take().unwrap().write_all(b"bob's\n").unwrap();
    }
    assert!(
        add.wait().unwrap().success(),
        "the password from PGPASSWORD"
    );

    // A passfile in libpq's format (0600), and a password file (root's, 0600).
    let home = ws.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let passfile = home.join(".pgpass");
    std::fs::write(
        &passfile,
        format!(
            "127.0.0.1:{}:authtoken:authtoken:{DB_PASSWORD}\n",
            pg.port.unwrap()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let listing = server(&["list-users", &url]).output().unwrap();
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    assert!(String::from_utf8_lossy(&listing.stdout).contains("bob"));
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        !server(&["list-users", &url])
            .output()
            .unwrap()
            .status
            .success(),
        "a passfile others can read"
    );
    std::fs::remove_file(&passfile).unwrap();

    let password_file = ws.path("db-password");
    std::fs::write(&password_file, format!("{DB_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file_arg = format!("--store-password-file={}", password_file.display());
    let replica = Server::start_with(
        &ws.users(),
        &[
            "--store".into(),
            url.clone(),
            ca.clone(),
            file_arg.clone(),
            format!("--tls-cert={}", tls.join("server.pem").display()),
            format!("--tls-key={}", tls.join("server.key").display()),
        ],
    );
    assert!(!cmdline_shows(replica.pid(), DB_PASSWORD));
    let client_tls = tls_config(&tls.join("ca.pem"));
    let mut client = Client::connect(ELSEWHERE, &replica, &client_tls).unwrap();
    assert!(
        scram_login(&mut client, "bob", "bob's"),
        "a replica on the password file"
    );
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = server(&["list-users", &url, &file_arg]).output().unwrap();
    assert!(!out.status.success(), "a password file others can read");
}

/// A wrong proof for `user` answering `text`, ready to send.
fn wrong_response(user: &str, text: &str) -> Vec<u8> {
    use authtoken_protocol::scram;
    let fields = text
        .strip_prefix("SCRAM-SHA-256-PLUS ")
        .or_else(|| text.strip_prefix("SCRAM-SHA-256 "))
        .unwrap();
    let parsed = scram::parse_challenge(fields, 4096..=10_000_000).unwrap();
    let out = scram::client_final(
        user,
        b"not the password",
        &parsed,
        &scram::new_cnonce().unwrap(),
    );
    mdm::request_body(&identity(user), Some(out.digest_response.as_ref()))
        .unwrap()
        .to_vec()
}

/// 64 wrong proofs for one account at once, over `servers` in turn, each
/// from its own address: how many answers were rejections (proofs
/// evaluated) and how many 429.
fn concurrent_wrong_proofs(servers: &[&Server], ca: &Path, user: &str) -> (usize, usize) {
    let tls = tls_config(ca);
    // The responses first (a nonce is good on any connection), then the
    // connections, so none sits idle past the keep-alive limit meanwhile.
    let bodies: Vec<Vec<u8>> = (0..64u8)
        .map(|i| {
            let server = servers[i as usize % servers.len()];
            let mut client = Client::connect([127, 0, 2, i + 1], server, &tls).unwrap();
            let text = field(&challenge(&mut client, user), "DigestChallenge").unwrap();
            wrong_response(user, &text)
        })
        .collect();
    let ready: Vec<_> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let server = servers[i % servers.len()];
            let client = Client::connect([127, 0, 2, i as u8 + 1], server, &tls).unwrap();
            (client, body)
        })
        .collect();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(ready.len()));
    let threads: Vec<_> = ready
        .into_iter()
        .map(|(mut client, body)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                client.put(&body).map(|reply| reply.status).unwrap_or(0)
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let rejected = statuses.iter().filter(|s| **s == 200).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(rejected + throttled, 64, "{statuses:?}");
    (rejected, throttled)
}

/// Issue 35: a guessing budget was read, the proof evaluated, then the
/// failure written, so every proof in flight passed the check. The budget
/// is now read and the failure counted in one step under the budget's lock
/// (issue 38: one statement per response): of 64 wrong proofs at once,
/// split over two replicas (and on one server of the file store), no more
/// than the budget get a verdict; the rest are 429 whatever they hold.
#[test]
fn concurrent_wrong_proofs_evaluate_no_more_than_the_budget() {
    let site = Site::new();
    server_command(
        &["add-user", &site.url, "carol", "--iterations=4096"],
        Some("carol's\n"),
    );
    let flags = ["--throttle-after=4"];
    let a = site.replica(&flags);
    let b = site.replica(&flags);
    let evaluated_before = metric(metrics_addr(&a), "authtoken_proofs_evaluated_total")
        + metric(metrics_addr(&b), "authtoken_proofs_evaluated_total");
    let ca = site.ws.path("tls/ca.pem");
    let (rejected, throttled) = concurrent_wrong_proofs(&[&a, &b], &ca, "carol");
    let evaluated = metric(metrics_addr(&a), "authtoken_proofs_evaluated_total")
        + metric(metrics_addr(&b), "authtoken_proofs_evaluated_total")
        - evaluated_before;
    assert!(
        rejected <= 4 && evaluated <= 4,
        "postgres: {rejected} rejected, {evaluated} evaluated, {throttled} throttled"
    );

    // The file store, one server: the same.
    let ws = Workspace::new();
    ws.add_user("carol", Some("carol's"), &[]);
    let mut args = vec!["--metrics-listen=127.0.0.1:0"];
    args.extend(flags);
    let one = Server::start(&ws, &args);
    let (rejected, _) = concurrent_wrong_proofs(&[&one], &ws.path("tls/ca.pem"), "carol");
    let evaluated = metric(metrics_addr(&one), "authtoken_proofs_evaluated_total");
    assert!(
        rejected <= 4 && evaluated <= 4,
        "file: {rejected} rejected, {evaluated} evaluated"
    );
}

/// Issue 35: two add-user runs at once both picked the lowest free uid,
/// after which no replica could load the store again. 20 at once now take
/// turns (one transaction each, under the edit lock): 20 users, 20 uids,
/// and the replicas follow; the uid index refuses a duplicate written
/// past the tool.
#[test]
fn concurrent_add_users_get_distinct_uids() {
    let site = Site::new();
    let a = site.replica(&[]);
    let runs: Vec<_> = (0..20)
        .map(|i| {
            let mut child = Command::new(SERVER)
                .args([
                    "add-user",
                    &site.url,
                    &format!("user{i:02}"),
                    "--iterations=4096",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(b"pw\n").unwrap();
            }
            child
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let uids = psql(
        &site.url,
        "SELECT count(DISTINCT record->>'uid'), count(*) FROM authtoken_users",
    );
    assert_eq!(uids.trim(), "21|21", "alice and 20 more, each its own uid");
    assert!(
        poll_until(Duration::from_secs(15), || {
            a.lines()
                .iter()
                .any(|l| l.contains("changed: 21 users"))
                .then_some(())
        })
        .is_some(),
        "the replica loads the store: {:?}",
        a.lines()
    );
    // Past the tool, the database itself refuses a second uid 10000.
    let clash = Command::new("psql")
        .args(["-X", "-q", "-d", &site.url, "-c"])
        .arg("INSERT INTO authtoken_users SELECT 'eve', record FROM authtoken_users WHERE name = 'alice'")
        .output()
        .unwrap();
    assert!(!clash.status.success());
    assert!(String::from_utf8_lossy(&clash.stderr).contains("authtoken_users_uid"));
}

/// Issue 35: each replica swept single-use records by its own clock, so a
/// replica whose clock runs behind (and still takes the nonce for
/// unexpired) accepted a response replayed after a faster one swept the
/// claim. A claim is now kept a whole nonce lifetime past its expiry.
#[test]
fn a_claim_outlives_its_nonce_by_a_whole_lifetime() {
    use authtoken_server::nonce::NONCE_LIFETIME_SECS;
    use authtoken_server::pgaccess::Access;
    use authtoken_server::pgstore::PgStore;
    use authtoken_server::throttle::Judged;
    let site = Site::new();
    let pg = PgStore::open(&site.url, &Access::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let expiry = 1_900_000_000u64;
    let granted = |judged: Judged| judged == Judged::Granted;
    runtime.block_on(async {
        let claim = || async {
            let now_ms = (expiry - 30) * 1000;
            granted(
                pg.judge(
                    "a:alice",
                    now_ms,
                    1000,
                    Some("nonce-1"),
                    "alice",
                    expiry,
                    None,
                )
                .await
                .unwrap(),
            )
        };
        assert!(claim().await, "the first claim");
        // A faster replica sweeps just after the expiry by its clock, and
        // again most of a lifetime later: the claim must still be there
        // for a replica up to that far behind.
        for late in [1, NONCE_LIFETIME_SECS - 1] {
            pg.sweep((expiry + late) * 1000).await.unwrap();
            assert!(!claim().await, "still claimed {late} s past its expiry");
        }
        pg.sweep((expiry + NONCE_LIFETIME_SECS) * 1000)
            .await
            .unwrap();
        assert!(claim().await, "swept a whole lifetime past its expiry");
    });
}
