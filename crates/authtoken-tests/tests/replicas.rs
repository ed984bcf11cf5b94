//! Several authority replicas on one PostgreSQL store (issue 27, README
//! "Several authority replicas"): a real PostgreSQL from Debian's package,
//! started by these tests with `initdb` and `pg_ctl` as the `postgres`
//! account in a temporary directory (a Unix socket, or TLS on a loopback
//! port), and real `authtoken-server` replicas serving from it. A login
//! split over two replicas, a response accepted once across them, guesses
//! counted together, the database stopped mid-run (503, no grant,
//! recovery), schema migrations from empty and from the previous version,
//! a TOML store imported, the administrator's commands against the
//! database, and TLS to it. Each cluster is stopped and removed at the end.

mod common;

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

#[test]
fn a_login_costs_one_read_and_one_write() {
    let site = Site::new();
    let a = site.replica(&[]);
    let count = |operation: &str| {
        metric(
            metrics_addr(&a),
            &format!("authtoken_store_duration_seconds_count{{operation=\"{operation}\"}}"),
        )
    };
    let before = (
        count("throttle_check"),
        count("claim"),
        count("throttle_failed"),
    );
    assert!(scram_login(&mut site.client(&a), "alice", PASSWORD));
    assert_eq!(
        (
            count("throttle_check"),
            count("claim"),
            count("throttle_failed")
        ),
        (before.0 + 1, before.1 + 1, before.2),
        "a granted login: the budget read before the proof, the single-use record written"
    );
    assert!(!scram_login(&mut site.client(&a), "alice", "wrong"));
    assert_eq!(
        (
            count("throttle_check"),
            count("claim"),
            count("throttle_failed")
        ),
        (before.0 + 2, before.1 + 1, before.2 + 1),
        "a wrong one: the budget read, the failure written"
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
        (
            count("throttle_check"),
            count("claim"),
            count("throttle_failed")
        ),
        (before.0 + 2, before.1 + 1, before.2 + 1),
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
    let tokens_while_away = a
        .lines()
        .iter()
        .filter(|l| l.contains("outcome=token"))
        .count();
    assert_eq!(tokens_while_away, 1, "only the login before it went");
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
    assert!(said.contains("schema version 2, nothing to do"), "{said}");

    let old = site.pg.database("old");
    let said = server_command(&["migrate", &old, "--to=1"], None);
    assert!(said.contains("schema version 0 -> 1"), "{said}");
    // Version 1 data, written as a version-1 server would have: alice's
    // row and the secret, copied from the current database.
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
             UPDATE authtoken_settings SET value = decode('{}', 'hex') WHERE name = 'secret'",
            record.trim(),
            secret.trim()
        ),
    );
    // This build serves, and imports into, version 2 only.
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
    assert!(said.contains("schema version 1 -> 2"), "{said}");
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
