//! `authtoken-server`: a real token authority speaking MDM `UserAuthenticate`
//! with SCRAM-SHA-256 (or HTTP Digest for compatibility) over a store of
//! verifiers. The embedded default for a first run, demos, tests and small
//! sites.

#![forbid(unsafe_code)]

use authtoken_server::directory::{self, Account};
use authtoken_server::{authority, device, error, http, metrics, nonce, store, throttle, tls};

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use authtoken_core::kinds::RestFlavor;
use authtoken_core::secret::first_line;
use authtoken_protocol::http_digest::Algorithm;
use authtoken_protocol::scram::{DEFAULT_SERVER_ITERATIONS, MIN_ITERATIONS};
use clap::{Parser, Subcommand, ValueEnum};
use zeroize::Zeroizing;

use authority::{Authority, Settings, UnknownUsers};
use authtoken_server::pgaccess::Access;
use authtoken_server::pgstore::PgStore;
use authtoken_server::shared::Shared;
use authtoken_server::store::Change;
use authtoken_server::store_location::{self, StoreLocation, StoreSource};
use device::{Device, DeviceState};
use error::ServerError;
use metrics::Metrics;
use nonce::ReplayRecord;
use store::{Policy, Store, User};

#[derive(Parser)]
#[command(
    name = "authtoken-server",
    version,
    about = "Reference token authority for pam_authtoken"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// With a postgres:// store: the CA that signs the database's
    /// certificate (TLS is required over TCP), instead of the system roots.
    #[arg(long, global = true, env = "AUTHTOKEN_STORE_CA")]
    store_ca: Option<PathBuf>,
    /// With a postgres:// store: a file holding the role's password on
    /// its first line (root's, 0600). Else PGPASSWORD, else PGPASSFILE or
    /// ~/.pgpass; never in the URL, which every process list shows.
    #[arg(long, global = true, env = "AUTHTOKEN_STORE_PASSWORD_FILE")]
    store_password_file: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// Apple MDM UserAuthenticate check-ins.
    Mdm,
    /// An Encedo-HEM-style token device (/api/auth/token).
    Hem,
    /// Seed 002's JSON `authenticate` method (backend rest), over the
    /// --users store: POST a credentials object, get a session token.
    #[value(name = "json-authenticate")]
    JsonAuthenticate,
    /// Seed 003's MindTouch Deki `POST users/authenticate` (backend rest),
    /// over the --users store: HTTP Basic in, the token as text out.
    Deki,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scheme {
    /// SCRAM-SHA-256: the server keeps a verifier only (default).
    Scram,
    /// HTTP Digest with MD5 (password-equivalent HA1; compatibility only).
    DigestMd5,
    /// HTTP Digest with SHA-256 (password-equivalent HA1; compatibility only).
    DigestSha256,
}

#[derive(Subcommand)]
enum Command {
    /// Serve MDM UserAuthenticate check-ins (--protocol mdm), or an emulated
    /// token device's /api/auth/token (--protocol hem).
    Serve(ServeOptions),
    /// Add or replace USER in STORE; the password is read from stdin
    /// (first line) or prompted for, and only its verifier is kept.
    AddUser {
        /// The user store: a TOML file (created if missing), or a
        /// postgres:// URL.
        store: String,
        /// The user's name, as PAM knows it.
        user: String,
        /// What the authority answers for this user.
        #[arg(long, value_enum, default_value = "managed")]
        policy: Policy,
        /// How a managed user proves the password.
        #[arg(long, value_enum, default_value = "scram")]
        scheme: Scheme,
        /// SCRAM iteration count.
        #[arg(long, default_value_t = DEFAULT_SERVER_ITERATIONS)]
        iterations: u32,
        /// HTTP Digest realm.
        #[arg(long, default_value = "authtoken")]
        realm: String,
        /// HTTP Digest without qop (RFC 2069 style).
        #[arg(long)]
        no_qop: bool,
        #[command(flatten)]
        account: AccountArgs,
    },
    /// Add or replace the group NAME of the directory in STORE.
    AddGroup {
        /// The user store: a TOML file (created if missing), or a
        /// postgres:// URL.
        store: String,
        /// The group's name.
        name: String,
        /// Its gid (default: the lowest free id from 10000).
        #[arg(long)]
        gid: Option<u32>,
    },
    /// Create the enrolment FILE of an emulated token device labelled LABEL;
    /// the user's passphrase is read from stdin (first line) or prompted for.
    EnrollDevice {
        /// The enrolment file to write.
        file: PathBuf,
        /// The device's user label (the PAM user name it belongs to).
        #[arg(long)]
        label: String,
    },
    /// Create a small CA (ca.pem, and ca.key kept for issue-cert), a server
    /// certificate for the names clients use (server.pem/.key) and a device
    /// identity (client.pem/.key) in DIR.
    GenTls {
        /// Where to write the CA and certificates.
        dir: PathBuf,
        /// A name clients use to reach the server (repeat for several;
        /// default: this machine's name, localhost and 127.0.0.1).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Replace a CA that is already there.
        #[arg(long)]
        force: bool,
    },
    /// Issue another certificate under the CA that gen-tls made in DIR.
    IssueCert {
        /// The directory gen-tls wrote (with ca.key).
        dir: PathBuf,
        /// Server certificate, or device (client) identity.
        #[arg(long, value_enum)]
        role: tls::Role,
        /// Names (server) or the common name (client).
        #[arg(long = "name")]
        names: Vec<String>,
        /// Base name of the files written (NAME.pem, NAME.key).
        #[arg(long = "out")]
        out: String,
    },
    /// List the users in STORE (never their verifiers).
    ListUsers {
        /// The user store: a TOML file, or a postgres:// URL.
        store: String,
    },
    /// Remove USER from STORE.
    RemoveUser {
        /// The user store: a TOML file, or a postgres:// URL.
        store: String,
        /// The user to remove.
        user: String,
    },
    /// Create or upgrade the PostgreSQL store's schema (the versioned
    /// migrations shipped with this build), and its secret.
    Migrate {
        /// postgres://… (libpq URL form; sslmode=require for TLS).
        url: String,
        /// Stop at this schema version (default: the newest).
        #[arg(long)]
        to: Option<u32>,
    },
    /// Copy a TOML store into a PostgreSQL store, replacing its users,
    /// groups and secret (a site moving to replicas).
    ImportStore {
        /// The TOML store.
        file: PathBuf,
        /// postgres://… (migrated first with `migrate`).
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let access = Access {
        ca: cli.store_ca.clone(),
        password_file: cli.store_password_file.clone(),
    };
    let location = |text: String| StoreLocation::parse(text, &access);
    let result = match cli.command {
        Command::Serve(options) => serve(options, &access),
        Command::EnrollDevice { file, label } => {
            read_password(&label).and_then(|passphrase| device::enroll(&file, &label, &passphrase))
        }
        Command::AddUser {
            store,
            user,
            policy,
            scheme,
            iterations,
            realm,
            no_qop,
            account,
        } => location(store).and_then(|location| {
            add_user(
                &location, &user, policy, scheme, iterations, &realm, !no_qop, &account,
            )
        }),
        Command::AddGroup { store, name, gid } => {
            location(store).and_then(|location| add_group(&location, &name, gid))
        }
        Command::GenTls { dir, hosts, force } => {
            let hosts = if hosts.is_empty() {
                tls::default_hosts()
            } else {
                hosts
            };
            tls::generate(&dir, &hosts, force).map(|written| {
                println!("certificate names: {}", hosts.join(", "));
                report_written(&written);
            })
        }
        Command::IssueCert {
            dir,
            role,
            names,
            out,
        } => tls::issue(&dir, role, &names, &out).map(|written| report_written(&written)),
        Command::ListUsers { store } => location(store)
            .and_then(|location| location.load())
            .map(|store| list_users(&store)),
        Command::RemoveUser { store, user } => {
            location(store).and_then(|location| remove_user(&location, &user))
        }
        Command::Migrate { url, to } => store_location::migrate(&url, &access, to),
        Command::ImportStore { file, url } => store_location::import(&file, &url, &access),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authtoken-server: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `HOST:PORT`, with a host name or an IP address.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|e| format!("{text}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text}: no address"))
}

/// `serve`'s options.
#[derive(clap::Args)]
struct ServeOptions {
    /// Address to listen on, HOST:PORT (a name or an IP address); port 0
    /// picks a free one (printed on start).
    #[arg(long, default_value = "127.0.0.1:8443", value_parser = parse_listen)]
    listen: SocketAddr,
    /// What to serve: MDM check-ins, or an emulated token device.
    #[arg(long, value_enum, default_value = "mdm")]
    protocol: Protocol,
    /// The user store written by add-user: a TOML file (protocols mdm,
    /// json-authenticate, deki).
    #[arg(long, conflicts_with = "store")]
    users: Option<PathBuf>,
    /// Or a PostgreSQL store that several replicas share, postgres://…
    /// (libpq URL form; sslmode=require for TLS; a password is better in
    /// PGPASSWORD, or none with peer authentication over the Unix socket).
    #[arg(long, env = "AUTHTOKEN_STORE")]
    store: Option<String>,
    /// The enrolment file written by enroll-device (protocol hem).
    #[arg(long, required_if_eq("protocol", "hem"))]
    device: Option<PathBuf>,
    /// Emulate a device fault: 403 (clock not set) or 409 (not initialised).
    #[arg(long, value_enum, default_value = "ready")]
    device_state: DeviceState,
    /// The device's deliberate delay before answering an authentication.
    #[arg(long, default_value_t = 500)]
    device_delay_ms: u64,
    /// PEM certificate chain; without it the server speaks plain HTTP (loopback only).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates issued by this CA (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// With --client-ca: also serve clients that present no certificate.
    /// A client that presents an enrolled device certificate gets a
    /// guessing budget of its own per account; the others share one.
    #[arg(long, requires = "client_ca")]
    client_cert_optional: bool,
    /// Users not in the store: a decoy challenge that cannot succeed (so
    /// names cannot be probed), or 410.
    #[arg(long, value_enum, default_value = "decoy")]
    unknown_users: UnknownUsers,
    /// SCRAM iterations of decoy challenges (match your users').
    #[arg(long, default_value_t = DEFAULT_SERVER_ITERATIONS)]
    decoy_iterations: u32,
    /// Remember accepted responses in this directory, shared by every
    /// server process serving the same store (default: in memory).
    #[arg(long)]
    replay_dir: Option<PathBuf>,
    /// Accepted responses one account may hold in the in-memory replay
    /// record (each for its nonce's 60 s); past it, that account's logins
    /// are refused (503) and every other account goes on.
    #[arg(long, default_value_t = nonce::MAX_REMEMBERED_PER_USER)]
    replay_per_account: usize,
    /// Wrong proofs evaluated for one account per minute, from all clients
    /// without an enrolled device certificate together (and again from
    /// each enrolled device), before answers for it are 429 with
    /// Retry-After.
    #[arg(long, default_value_t = throttle::GUESSES_PER_MINUTE)]
    throttle_after: u32,
    /// Worker threads answering requests (default: one per CPU). Fewer
    /// leave CPUs to other work on a shared machine, and cost fewer
    /// cross-thread wake-ups per request.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: Option<u64>,
    /// Connections admitted from one client address (raise it behind a
    /// NAT or a load balancer that connects from few addresses).
    #[arg(long, default_value_t = http::PER_SOURCE as u64, value_parser = clap::value_parser!(u64).range(1..=http::MAX_CONNECTIONS as u64))]
    per_address_connections: u64,
    /// Serve Prometheus metrics on http://ADDR/metrics (HOST:PORT).
    #[arg(long, value_parser = parse_listen)]
    metrics_listen: Option<SocketAddr>,
    /// Delay before answering a rejected digest.
    #[arg(long, default_value_t = 1000)]
    failure_delay_ms: u64,
    /// Allow plain HTTP on a non-loopback address (clients must set
    /// allow_insecure_http too: tests only).
    #[arg(long)]
    allow_insecure_http: bool,
}

fn report_written(paths: &[PathBuf]) {
    for path in paths {
        match what_it_is_for(path) {
            Some(purpose) => println!("wrote {} ({purpose})", path.display()),
            None => println!("wrote {}", path.display()),
        }
    }
}

/// What each file `gen-tls` writes is for, so a first run knows which to
/// copy where and which never leave root.
fn what_it_is_for(path: &std::path::Path) -> Option<&'static str> {
    Some(match path.file_name()?.to_str()? {
        "ca.pem" => "the CA: copy to every client, its ca_file",
        "ca.key" => "the CA's key: stays root's, only issue-cert reads it",
        "server.pem" => "--tls-cert",
        "server.key" => "--tls-key: the server's account must read it",
        "client.pem" | "client.key" => {
            "a device identity: needed only with serve --client-ca (network users)"
        }
        _ => return None,
    })
}

fn serve(options: ServeOptions, access: &Access) -> Result<(), ServerError> {
    let threads = options.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n as usize,
    );
    let metrics = Arc::new(Metrics::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|source| ServerError::Network {
            what: "starting the runtime".into(),
            source,
        })?;
    let source = match (&options.users, &options.store) {
        (Some(path), _) => Some(StoreSource::File(path.clone())),
        (None, Some(url)) => Some(StoreSource::Postgres(Arc::new(
            PgStore::open(url, access)?.with_metrics(metrics.clone()),
        ))),
        (None, None) => None,
    };
    let mut followed = None;
    let (service, description) =
        match (options.protocol, &source, &options.device) {
            (Protocol::Mdm | Protocol::JsonAuthenticate | Protocol::Deki, Some(source), _) => {
                let (store, shared) = match source {
                    StoreSource::File(path) => {
                        let replay = match &options.replay_dir {
                            Some(dir) => {
                                std::fs::create_dir_all(dir).map_err(ServerError::io(dir))?;
                                ReplayRecord::Directory(dir.clone())
                            }
                            None => ReplayRecord::memory_per_account(options.replay_per_account),
                        };
                        (
                            Store::load(path)?,
                            Shared::local(replay, options.throttle_after),
                        )
                    }
                    StoreSource::Postgres(pg) => {
                        let (store, version) = runtime.block_on(async {
                            pg.check_schema().await?;
                            pg.load().await
                        })?;
                        followed = Some((pg.clone(), version));
                        (store, Shared::postgres(pg.clone(), options.throttle_after))
                    }
                };
                let users_count = store.users.len();
                let shown = source.shown();
                let description =
                    |name: &str| format!("protocol {name}, {users_count} users from {shown}");
                let authority = Authority::new(
                    store,
                    Settings {
                        unknown: options.unknown_users,
                        failure_delay: Duration::from_millis(options.failure_delay_ms),
                        decoy_iterations: options.decoy_iterations,
                        shared,
                    },
                );
                let (service, name) = match options.protocol {
                    Protocol::JsonAuthenticate | Protocol::Deki => {
                        let flavor = if options.protocol == Protocol::Deki {
                            RestFlavor::Deki
                        } else {
                            RestFlavor::JsonAuthenticate
                        };
                        let service = http::Service::Rest {
                            authority,
                            flavor,
                            derivations: tokio::sync::Semaphore::new(threads),
                        };
                        (service, flavor.name())
                    }
                    _ => (http::Service::Mdm(authority), "mdm"),
                };
                (service, description(name))
            }
            (Protocol::Hem, _, Some(file)) => {
                let device = Device::load(
                    file,
                    options.device_state,
                    Duration::from_millis(options.device_delay_ms),
                )?;
                (http::Service::Hem(device), "protocol hem".to_owned())
            }
            _ => return Err(ServerError::Usage(
                "--users or --store (mdm, json-authenticate, deki), or --device (hem), is required"
                    .into(),
            )),
        };
    let service = Arc::new(service);
    let tls = options.tls_cert.clone().zip(options.tls_key.clone());
    if tls.is_none() && !options.listen.ip().is_loopback() && !options.allow_insecure_http {
        return Err(ServerError::Usage(
            "plain HTTP is only served on loopback; give --tls-cert/--tls-key".into(),
        ));
    }
    let acceptor = match &tls {
        Some((cert, key)) => {
            let server_tls = tls::server_config(
                cert,
                key,
                options.client_ca.as_deref(),
                options.client_cert_optional,
            )?;
            Some(http::Tls {
                acceptor: tokio_rustls::TlsAcceptor::from(server_tls.config),
                end_point: server_tls.end_point,
            })
        }
        None => None,
    };
    let limits = http::Limits::from_descriptor_limit(options.per_address_connections as usize);
    let network = |what: String| move |source| ServerError::Network { what, source };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(network(options.listen.to_string()))?;
        let local = listener
            .local_addr()
            .map_err(network("listening socket".into()))?;
        if let Some(addr) = options.metrics_listen {
            let metrics_listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(network(addr.to_string()))?;
            let bound = metrics_listener
                .local_addr()
                .map_err(network("metrics socket".into()))?;
            eprintln!("authtoken-server: metrics on http://{bound}/metrics");
            tokio::spawn(http::serve_metrics(
                metrics_listener,
                metrics.clone(),
                service.clone(),
            ));
        }
        eprintln!(
            "authtoken-server: listening on {local} ({}, {description}; at most {} connections, {} per source)",
            if acceptor.is_some() { "https" } else { "http" },
            limits.max_connections,
            limits.per_source,
        );
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(network("SIGHUP handler".into()))?;
        if let Some((pg, version)) = followed {
            tokio::spawn(store_location::follow(service.clone(), pg, version));
        }
        let reloads = {
            let service = service.clone();
            async move {
                while hangups.recv().await.is_some() {
                    reload(&service, source.as_ref()).await;
                }
            }
        };
        tokio::select! {
            result = http::serve(listener, acceptor, service, metrics, limits) => result.map_err(network("serving".into())),
            _ = reloads => Ok(()),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

/// `SIGHUP`: reads the store again and puts it in force whole; a store that
/// does not load leaves the one in force, and says why.
async fn reload(service: &http::Service, source: Option<&StoreSource>) {
    let (http::Service::Mdm(authority) | http::Service::Rest { authority, .. }, Some(source)) =
        (service, source)
    else {
        eprintln!("authtoken-server: SIGHUP: nothing to reload (no user store)");
        return;
    };
    let loaded = match source {
        StoreSource::File(path) => Store::load(path),
        StoreSource::Postgres(pg) => pg.load().await.map(|(store, _)| store),
    };
    match loaded {
        Ok(store) => {
            let count = store.users.len();
            authority.replace_store(store);
            eprintln!(
                "authtoken-server: reloaded {}: {count} users",
                source.shown()
            );
        }
        Err(e) => eprintln!("authtoken-server: reload refused, keeping the store in force: {e}"),
    }
}

fn list_users(store: &Store) {
    println!(
        "{:<24} {:<10} {:<16} {:<10} {:<6} {:<6} {:<20} {:<14} GROUPS",
        "USER", "POLICY", "SCHEME", "ITERATIONS", "UID", "GID", "HOME", "SHELL"
    );
    for (name, user) in &store.users {
        let (scheme, iterations) = match &user.credential {
            None => ("-".to_owned(), "-".to_owned()),
            Some(store::Credential::Scram(v)) => {
                ("scram-sha-256".to_owned(), v.iterations.to_string())
            }
            Some(store::Credential::Digest { algorithm, .. }) => (
                format!("digest-{}", algorithm.name().to_ascii_lowercase()),
                "-".to_owned(),
            ),
        };
        let (uid, gid, home, shell, groups) = match &user.account {
            Some(a) => (
                a.uid.to_string(),
                a.gid.to_string(),
                a.home.clone(),
                a.shell.clone(),
                a.groups.join(","),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<24} {:<10} {:<16} {iterations:<10} {uid:<6} {gid:<6} {home:<20} {shell:<14} {groups}",
            authtoken_core::log::quote(name),
            user.policy.name(),
            scheme
        );
    }
    for (name, gid) in &store.groups {
        println!("group {} gid {gid}", authtoken_core::log::quote(name));
    }
}

/// A name `chown 0` would read as an id: clients never serve it.
fn only_digits(name: &str) -> bool {
    name.bytes().all(|b| b.is_ascii_digit())
}

fn add_group(location: &StoreLocation, name: &str, gid: Option<u32>) -> Result<(), ServerError> {
    authtoken_core::username::Username::parse(name.as_bytes())
        .map_err(|e| ServerError::Usage(format!("group name: {e}")))?;
    if only_digits(name) {
        return Err(ServerError::Usage(format!(
            "group {name}: a name made only of digits (every client drops it)"
        )));
    }
    location.edit(|store| {
        let gid = match gid {
            Some(gid) => gid,
            None => store
                .next_uid(directory::DEFAULT_FIRST_ID, directory::DEFAULT_LAST_ID)
                .map_err(|e| ServerError::Usage(e.to_string()))?,
        };
        store.groups.insert(name.to_owned(), gid);
        Ok((
            Change::Group(name.to_owned()),
            format!("group {name} (gid {gid})"),
        ))
    })
}

fn remove_user(location: &StoreLocation, user: &str) -> Result<(), ServerError> {
    location.edit(|store| {
        if store.users.remove(user).is_none() {
            return Err(ServerError::Usage(format!(
                "{user} is not in {}",
                location.shown()
            )));
        }
        Ok((
            Change::RemovedUser(user.to_owned()),
            format!("removal of {user}"),
        ))
    })
}

/// Reads the password: the first line of stdin, or a prompt on a terminal.
fn read_password(user: &str) -> Result<Zeroizing<Vec<u8>>, ServerError> {
    let password = if std::io::stdin().is_terminal() {
        let text = Zeroizing::new(
            rpassword::prompt_password(format!("Password for {user}: "))
                .map_err(|e| ServerError::Password(e.to_string()))?,
        );
        Zeroizing::new(text.as_bytes().to_vec())
    } else {
        first_line(std::io::stdin().lock(), 8191)
            .map_err(|e| ServerError::Password(e.to_string()))?
    };
    if password.is_empty() {
        return Err(ServerError::Password("empty password".into()));
    }
    Ok(password)
}

/// The POSIX account `add-user` gives a user, published in the directory
/// that enrolled devices fetch.
#[derive(clap::Args)]
struct AccountArgs {
    /// The user's uid (default: kept, or the lowest free id in
    /// --uid-min..=--uid-max).
    #[arg(long)]
    uid: Option<u32>,
    /// The primary gid (default: kept, or the uid: a group of the user's name).
    #[arg(long)]
    gid: Option<u32>,
    /// The GECOS field (the full name).
    #[arg(long)]
    gecos: Option<String>,
    /// The home directory (default: kept, or /home/USER).
    #[arg(long)]
    home: Option<String>,
    /// The login shell (default: kept, or /bin/bash).
    #[arg(long)]
    shell: Option<String>,
    /// Supplementary groups, comma-separated (made with add-group).
    #[arg(long, value_delimiter = ',')]
    groups: Option<Vec<String>>,
    /// The range new uids come from.
    #[arg(long, default_value_t = directory::DEFAULT_FIRST_ID)]
    uid_min: u32,
    #[arg(long, default_value_t = directory::DEFAULT_LAST_ID)]
    uid_max: u32,
    /// Publish no account for this user (it must exist on the clients).
    #[arg(long, conflicts_with_all = ["uid", "gid", "gecos", "home", "shell", "groups"])]
    no_account: bool,
}

impl AccountArgs {
    /// The account `user` gets: its old one (if any) with what was given
    /// changed, else the defaults with a fresh uid.
    fn apply(
        &self,
        store: &Store,
        user: &str,
        old: Option<Account>,
    ) -> Result<Option<Account>, ServerError> {
        if self.no_account {
            return Ok(None);
        }
        if only_digits(user) {
            return Err(ServerError::Usage(format!(
                "{user}: a name made only of digits gets no account (every client drops it, \
                 as useradd refuses it); use --no-account, or another name"
            )));
        }
        let mut account = match old {
            Some(old) => old,
            None => {
                let uid = match self.uid {
                    Some(uid) => uid,
                    None => store
                        .next_uid(self.uid_min, self.uid_max)
                        .map_err(|e| ServerError::Usage(e.to_string()))?,
                };
                Account::default_for(user, uid)
            }
        };
        if let Some(uid) = self.uid {
            account.uid = uid;
        }
        if let Some(gid) = self.gid {
            account.gid = gid;
        }
        if let Some(gecos) = &self.gecos {
            account.gecos = gecos.clone();
        }
        if let Some(home) = &self.home {
            account.home = home.clone();
        }
        if let Some(shell) = &self.shell {
            account.shell = shell.clone();
        }
        if let Some(groups) = &self.groups {
            account.groups = groups.iter().filter(|g| !g.is_empty()).cloned().collect();
        }
        Ok(Some(account))
    }
}

#[allow(clippy::too_many_arguments)]
fn add_user(
    location: &StoreLocation,
    user: &str,
    policy: Policy,
    scheme: Scheme,
    iterations: u32,
    realm: &str,
    qop: bool,
    account_args: &AccountArgs,
) -> Result<(), ServerError> {
    authtoken_core::username::Username::parse(user.as_bytes())
        .map_err(|e| ServerError::Usage(e.to_string()))?;
    if iterations < MIN_ITERATIONS {
        return Err(ServerError::Usage(format!(
            "--iterations must be at least {MIN_ITERATIONS}"
        )));
    }
    let credential = match policy {
        Policy::Managed => {
            let password = read_password(user)?;
            Some(match scheme {
                Scheme::Scram => Store::scram_credential(&password, iterations)?,
                Scheme::DigestMd5 => {
                    Store::digest_credential(user, &password, realm, Algorithm::Md5, qop)
                }
                Scheme::DigestSha256 => {
                    Store::digest_credential(user, &password, realm, Algorithm::Sha256, qop)
                }
            })
        }
        Policy::NoToken | Policy::Unmanaged => None,
    };
    location.edit(|store| {
        // A user added again (a new password, another policy) keeps the
        // POSIX account the directory publishes, changed only where told.
        let old = store.users.get(user).and_then(|old| old.account.clone());
        let account = account_args.apply(store, user, old)?;
        store.users.insert(
            user.to_owned(),
            User {
                policy,
                credential,
                account,
            },
        );
        Ok((Change::User(user.to_owned()), user.to_owned()))
    })
}
