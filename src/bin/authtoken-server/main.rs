//! `authtoken-server`: a real token authority speaking MDM `UserAuthenticate`
//! with SCRAM-SHA-256 (or HTTP Digest for compatibility) over a store of
//! verifiers. The embedded default for a first run, demos, tests and small
//! sites.

mod authority;
mod http;
mod store;
mod tls;

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use pam_authtoken::protocol::http_digest::Algorithm;
use pam_authtoken::protocol::scram::{DEFAULT_SERVER_ITERATIONS, MIN_ITERATIONS};
use zeroize::Zeroizing;

use authority::{Authority, UnknownUsers};
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
    /// Serve UserAuthenticate check-ins.
    Serve {
        /// Address to listen on; port 0 picks a free one (printed on start).
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// The user store written by add-user.
        #[arg(long)]
        users: PathBuf,
        /// PEM certificate chain; without it the server speaks plain HTTP (loopback only).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Require client certificates issued by this CA (mutual TLS).
        #[arg(long, requires = "tls_cert")]
        client_ca: Option<PathBuf>,
        /// Users not in the store: 410, or a decoy challenge that cannot succeed.
        #[arg(long, value_enum, default_value = "unmanaged")]
        unknown_users: UnknownUsers,
        /// Delay before answering a rejected digest.
        #[arg(long, default_value_t = 1000)]
        failure_delay_ms: u64,
        /// Allow plain HTTP on a non-loopback address.
        #[arg(long)]
        allow_insecure_http: bool,
    },
    /// Add or replace USER in the store FILE; the password is read from stdin
    /// (first line) or prompted for, and only its verifier is kept.
    AddUser {
        file: PathBuf,
        user: String,
        #[arg(long, value_enum, default_value = "managed")]
        policy: Policy,
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
    },
    /// Create a small CA, a server certificate for HOSTs and a device client
    /// certificate in DIR.
    GenTls {
        dir: PathBuf,
        #[arg(long = "host", default_values_t = vec!["127.0.0.1".to_owned(), "localhost".to_owned()])]
        hosts: Vec<String>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve {
            listen,
            users,
            tls_cert,
            tls_key,
            client_ca,
            unknown_users,
            failure_delay_ms,
            allow_insecure_http,
        } => serve(ServeOptions {
            listen,
            users,
            tls: tls_cert.zip(tls_key),
            client_ca,
            unknown_users,
            failure_delay: Duration::from_millis(failure_delay_ms),
            allow_insecure_http,
        }),
        Command::AddUser {
            file,
            user,
            policy,
            scheme,
            iterations,
            realm,
            no_qop,
        } => add_user(&file, &user, policy, scheme, iterations, &realm, !no_qop),
        Command::GenTls { dir, hosts } => tls::generate(&dir, &hosts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authtoken-server: error: {e}");
            ExitCode::FAILURE
        }
    }
}

struct ServeOptions {
    listen: SocketAddr,
    users: PathBuf,
    tls: Option<(PathBuf, PathBuf)>,
    client_ca: Option<PathBuf>,
    unknown_users: UnknownUsers,
    failure_delay: Duration,
    allow_insecure_http: bool,
}

fn serve(options: ServeOptions) -> Result<(), String> {
    let store = Store::load(&options.users)?;
    if options.tls.is_none() && !options.listen.ip().is_loopback() && !options.allow_insecure_http {
        return Err("plain HTTP is only served on loopback; give --tls-cert/--tls-key".into());
    }
    let acceptor = match &options.tls {
        Some((cert, key)) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(
            cert,
            key,
            options.client_ca.as_deref(),
        )?)),
        None => None,
    };
    let user_count = store.users.len();
    let authority = Arc::new(Authority::new(
        store,
        options.unknown_users,
        options.failure_delay,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| format!("{}: {e}", options.listen))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!(
            "authtoken-server: listening on {local} ({}, protocol mdm, {user_count} users)",
            if acceptor.is_some() { "https" } else { "http" }
        );
        tokio::select! {
            result = http::serve(listener, acceptor, authority) => result.map_err(|e| e.to_string()),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

/// Reads the password: the first line of stdin, or a prompt on a terminal.
fn read_password(user: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    if std::io::stdin().is_terminal() {
        let text = Zeroizing::new(
            rpassword::prompt_password(format!("Password for {user}: "))
                .map_err(|e| e.to_string())?,
        );
        return Ok(Zeroizing::new(text.as_bytes().to_vec()));
    }
    let mut input = Zeroizing::new(Vec::with_capacity(8192));
    std::io::stdin()
        .lock()
        .take(8191)
        .read_to_end(&mut input)
        .map_err(|e| e.to_string())?;
    let end = input
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(input.len());
    input.truncate(end);
    if input.last() == Some(&b'\r') {
        input.pop();
    }
    if input.is_empty() {
        return Err("empty password".into());
    }
    Ok(input)
}

fn add_user(
    file: &Path,
    user: &str,
    policy: Policy,
    scheme: Scheme,
    iterations: u32,
    realm: &str,
    qop: bool,
) -> Result<(), String> {
    pam_authtoken::username::validate(user.as_bytes()).map_err(|e| e.to_string())?;
    if iterations < MIN_ITERATIONS {
        return Err(format!("--iterations must be at least {MIN_ITERATIONS}"));
    }
    let mut store = if file.exists() {
        Store::load(file)?
    } else {
        Store::new()?
    };
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
    store
        .users
        .insert(user.to_owned(), User { policy, credential });
    store.save(file)
}
