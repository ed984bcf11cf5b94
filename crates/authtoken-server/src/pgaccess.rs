//! How a replica reaches its PostgreSQL store, and what the database's URL
//! may not decide (issue 35): over TCP, TLS with certificate verification
//! unless the URL says `sslmode=disable` in so many words (libpq's default,
//! `prefer`, goes on in plain text when anyone in the path answers `N`);
//! Unix sockets stay plain. The password never comes from the URL, which
//! every process list shows: it comes from `--store-password-file`,
//! `PGPASSWORD`, or a `PGPASSFILE`/`~/.pgpass` file in libpq's format.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_postgres::config::{Host, SslMode};
use zeroize::Zeroizing;

use crate::files::{read_private, FileError};

/// What reaches the database beside its URL.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The CA that signed the database's certificate (`--store-ca`); the
    /// system roots without it.
    pub ca: Option<PathBuf>,
    /// A file holding the role's password (`--store-password-file`):
    /// root's (or the service account's) alone, as every secret file.
    pub password_file: Option<PathBuf>,
}

/// Why the database cannot be reached the way the URL and the options say.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("store URL: {0}")]
    Url(String),
    #[error(
        "the store URL holds a password, which every process list shows (ps, \
         /proc/PID/cmdline): take it out of the URL and give it in PGPASSWORD, in a PGPASSFILE \
         or ~/.pgpass file (libpq's format, mode 0600), or in --store-password-file FILE \
         (root's, 0600)"
    )]
    PasswordInUrl,
    #[error("store URL: no user= and no name for this uid")]
    NoUser,
    #[error(
        "store URL: Unix sockets and TCP hosts together; TLS covers only the TCP ones: name \
         either kind, or write sslmode=disable"
    )]
    MixedHosts,
    #[error("{}: no password on its first line", .0.display())]
    EmptyPasswordFile(PathBuf),
    #[error("{0}")]
    File(#[from] FileError),
    #[error("TLS to the database: {0}")]
    Tls(String),
}

/// The URL parsed, and refused if it holds a password.
pub fn parse(url: &str) -> Result<tokio_postgres::Config, AccessError> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| AccessError::Url(e.to_string()))?;
    if config.get_password().is_some() {
        return Err(AccessError::PasswordInUrl);
    }
    Ok(config)
}

/// How the connections go: in plain text (every host a Unix socket, or
/// `sslmode=disable` written out) or over verified TLS.
pub enum Transport {
    Plain,
    Tls(Box<rustls::ClientConfig>),
}

/// Completes `config` (user, password, TLS mode) for `access`, and says
/// how to connect.
pub fn complete(
    config: &mut tokio_postgres::Config,
    access: &Access,
) -> Result<Transport, AccessError> {
    if config.get_user().is_none() {
        // libpq's default: the name of the account running the program.
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .ok_or(AccessError::NoUser)?;
        config.user(&me.name);
    }
    if let Some(password) = password(config, access)? {
        config.password(password.as_bytes());
    }
    let hosts = config.get_hosts();
    let unix = hosts.iter().filter(|h| matches!(h, Host::Unix(_))).count();
    let tcp = hosts.len() - unix;
    if tcp == 0 {
        config.ssl_mode(SslMode::Disable);
        return Ok(Transport::Plain);
    }
    if config.get_ssl_mode() == SslMode::Disable {
        return Ok(Transport::Plain);
    }
    if unix > 0 {
        return Err(AccessError::MixedHosts);
    }
    // prefer, allow and require alike: TLS or no connection.
    config.ssl_mode(SslMode::Require);
    Ok(Transport::Tls(Box::new(tls(access.ca.as_deref())?)))
}

/// The role's password, from the first of: `--store-password-file`,
/// `PGPASSWORD`, the passfile (`PGPASSFILE`, else `~/.pgpass`).
fn password(
    config: &tokio_postgres::Config,
    access: &Access,
) -> Result<Option<Zeroizing<String>>, AccessError> {
    if let Some(path) = &access.password_file {
        let text = read_private(path)?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(AccessError::EmptyPasswordFile(path.clone()));
        }
        return Ok(Some(Zeroizing::new(line.to_owned())));
    }
    if let Some(password) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
        return Ok(Some(Zeroizing::new(
            password.to_string_lossy().into_owned(),
        )));
    }
    let passfile = match std::env::var_os("PGPASSFILE") {
        Some(path) => PathBuf::from(path),
        None => match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(".pgpass"),
            None => return Ok(None),
        },
    };
    if !passfile.exists() {
        return Ok(None);
    }
    let text = read_private(&passfile)?;
    Ok(passfile_match(&text, &Wanted::of(config)).map(Zeroizing::new))
}

/// What a passfile line must match.
struct Wanted {
    /// The host, and for a Unix socket also `localhost` (libpq's rule).
    hosts: Vec<String>,
    port: String,
    database: String,
    user: String,
}

impl Wanted {
    fn of(config: &tokio_postgres::Config) -> Wanted {
        let user = config.get_user().unwrap_or_default().to_owned();
        let hosts = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => vec![host.clone()],
            Some(Host::Unix(path)) => vec![path.display().to_string(), "localhost".into()],
            None => vec!["localhost".into()],
        };
        Wanted {
            hosts,
            port: config
                .get_ports()
                .first()
                .copied()
                .unwrap_or(5432)
                .to_string(),
            database: config.get_dbname().unwrap_or(&user).to_owned(),
            user,
        }
    }
}

/// The password of the first passfile line that matches (libpq's format:
/// `host:port:database:user:password`, `*` matching anything, `\:` and
/// `\\` escaped; `#` starts a comment line).
fn passfile_match(text: &str, wanted: &Wanted) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_fields(line);
        let [host, port, database, user, password] = fields.as_slice() else {
            continue;
        };
        let matches = |field: &str, value: &str| field == "*" || field == value;
        if wanted.hosts.iter().any(|h| matches(host, h))
            && matches(port, &wanted.port)
            && matches(database, &wanted.database)
            && matches(user, &wanted.user)
        {
            return Some(password.clone());
        }
    }
    None
}

/// A passfile line's five fields, unescaped (the last takes the rest).
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        let c = match c {
            '\\' => match chars.next() {
                Some(escaped) => escaped,
                None => break,
            },
            ':' if fields.len() < 5 => {
                fields.push(String::new());
                continue;
            }
            c => c,
        };
        if let Some(field) = fields.last_mut() {
            field.push(c);
        }
    }
    fields
}

/// rustls on ring for the database connection: `ca`'s certificates, else
/// the system roots. The server's name is checked against the URL's host.
fn tls(ca: Option<&Path>) -> Result<rustls::ClientConfig, AccessError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(FileError::io(path))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| AccessError::Tls(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| AccessError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| AccessError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> tokio_postgres::Config {
        parse(url).unwrap()
    }

    #[test]
    fn a_password_in_the_url_is_refused_with_the_three_ways() {
        for url in [
            "postgres://authtoken:s3cret@db.example/authtoken",
            "postgresql:///authtoken?host=/run/postgresql&password=s3cret",
        ] {
            let Err(error) = parse(url) else {
                panic!("{url} accepted");
            };
            let why = error.to_string();
            for way in [
                "PGPASSWORD",
                "PGPASSFILE",
                "~/.pgpass",
                "--store-password-file",
            ] {
                assert!(why.contains(way), "{why}");
            }
            assert!(!why.contains("s3cret"));
        }
        assert!(parse("postgres://authtoken@db.example/authtoken").is_ok());
    }

    #[test]
    fn tcp_means_verified_tls_unless_disable_is_written_out() {
        let access = Access::default();
        for url in [
            "postgres://a@db.example/x",
            "postgres://a@db.example/x?sslmode=prefer",
            "postgres://a@db.example/x?sslmode=require",
        ] {
            let mut c = config(url);
            assert!(
                matches!(complete(&mut c, &access), Ok(Transport::Tls(_))),
                "{url}"
            );
            assert_eq!(c.get_ssl_mode(), SslMode::Require, "{url}");
        }
        let mut plain = config("postgres://a@db.example/x?sslmode=disable");
        assert!(matches!(
            complete(&mut plain, &access),
            Ok(Transport::Plain)
        ));
        let mut socket = config("postgresql:///x?host=/run/postgresql&user=a");
        assert!(matches!(
            complete(&mut socket, &access),
            Ok(Transport::Plain)
        ));
        let mut mixed = config("host=/run/postgresql,db.example user=a dbname=x");
        assert_eq!(mixed.get_hosts().len(), 2);
        assert!(complete(&mut mixed, &access).is_err());
    }

    #[test]
    fn the_passfile_is_read_as_libpq_reads_it() {
        let wanted = Wanted::of(&config("postgres://authtoken@db.example:5433/store"));
        let text = "# comment\n\
                    other:5433:store:authtoken:no\n\
                    db.example:5432:store:authtoken:wrong-port\n\
                    db.example:5433:*:authtoken:pa\\:ss\\\\word:tail\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            passfile_match(text, &wanted).as_deref(),
            Some("pa:ss\\word:tail")
        );
        assert_eq!(
            passfile_match("*:*:*:*:fallback\n", &wanted).as_deref(),
            Some("fallback")
        );
        let socket = Wanted::of(&config("postgresql:///store?host=/run/pg&user=authtoken"));
        assert_eq!(
            passfile_match("localhost:5432:store:authtoken:sock\n", &socket).as_deref(),
            Some("sock")
        );
        assert_eq!(passfile_match("db.example:*:*:*:x\n", &socket), None);
    }
}
