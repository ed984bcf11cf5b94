//! `authtoken-server`: a real token authority speaking MDM `UserAuthenticate`
//! with SCRAM-SHA-256 (or HTTP Digest for compatibility) over a store of
//! verifiers. The embedded default for a first run, demos, tests and small
//! sites.

#![forbid(unsafe_code)]

use authtoken_server::directory::{self, Account};
use authtoken_server::server::{ServeOptions, Server};
use authtoken_server::{device, enrollment, error, store, tls};

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use authtoken_core::secret::first_line;
use authtoken_protocol::http_digest::Algorithm;
use authtoken_protocol::scram::{DEFAULT_SERVER_ITERATIONS, MIN_ITERATIONS};
use clap::{Parser, Subcommand, ValueEnum};
use zeroize::Zeroizing;

use authtoken_server::pgaccess::Access;
use authtoken_server::store::{Change, EditError};
use authtoken_server::store_location::{self, StoreLocation};
use error::ServerError;
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
    Serve(Box<ServeOptions>),
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
    /// Make a join token for one machine: prints the line to run on it,
    /// `authtoken join URL --token SECRET --ca-fingerprint sha256:HEX`.
    /// Only a hash of the secret is kept in STORE.
    JoinToken {
        /// The user store: a TOML file, or a postgres:// URL.
        store: String,
        /// The authority's check-in URL, as the machine will reach it.
        #[arg(long, env = "AUTHTOKEN_SERVER_URL")]
        url: String,
        /// The root CA the machine pins (its SHA-256 goes in the line).
        #[arg(long, default_value = "/etc/authtoken-server/tls/ca.pem")]
        ca: PathBuf,
        /// How long the token may be used: a number and s, m, h or d.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        expires: u64,
        /// How many machines may join with it.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        uses: u32,
        /// Only a machine of this name may use it.
        #[arg(long)]
        name: Option<String>,
    },
    /// List the device certificates the device CA issued, and the join
    /// tokens not yet used up.
    ListDevices {
        /// The user store: a TOML file, or a postgres:// URL.
        store: String,
    },
    /// Revoke a device: every certificate of machine NAME, or the one
    /// with SERIAL. It gets no directory, no budget of its own and, under
    /// serve --require-device, no login; it cannot renew.
    RevokeDevice {
        /// The user store: a TOML file, or a postgres:// URL.
        store: String,
        /// A machine name, or a certificate serial (hex).
        device: String,
    },
    /// Make the device-issuing CA (device-ca.pem, device-ca.key) in DIR
    /// from the root CA there, for a site whose gen-tls predates it.
    GenDeviceCa {
        /// The directory gen-tls wrote (it holds ca.pem and ca.key).
        dir: PathBuf,
        /// Replace an existing device CA.
        #[arg(long)]
        force: bool,
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
        Command::Serve(options) => Server::build(*options, &access).and_then(Server::run),
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
        Command::JoinToken {
            store,
            url,
            ca,
            expires,
            uses,
            name,
        } => location(store)
            .and_then(|location| join_token(&location, &url, &ca, expires, uses, name.as_deref())),
        Command::ListDevices { store } => location(store)
            .and_then(|location| location.load())
            .map(|store| list_devices(&store)),
        Command::RevokeDevice { store, device } => {
            location(store).and_then(|location| revoke_device(&location, &device))
        }
        Command::GenDeviceCa { dir, force } => {
            tls::generate_device_ca(&dir, force).map(|written| report_written(&written))
        }
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
        "ca.pem" => "the CA: clients pin it through authtoken join, or copy it as their ca_file",
        "ca.key" => "the CA's key: stays root's, only issue-cert reads it",
        "server.pem" => "--tls-cert",
        "server.key" => "--tls-key: the server's account must read it",
        "client.pem" | "client.key" => {
            "a device identity made here, for a site without enrollment: authtoken join makes each machine its own"
        }
        "device-ca.pem" => {
            "the device-issuing CA: serve --enroll-dir signs joining machines with it"
        }
        "device-ca.key" => {
            "the device CA's key: the server's account must read it (serve --enroll-dir)"
        }
        _ => return None,
    })
}

/// `30m`, `1h`, `2d`, `3600s` or `3600`: seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text}: not a duration"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("{text}: a number and s, m, h or d")),
    };
    match number.checked_mul(scale) {
        Some(secs) if secs > 0 && secs <= 366 * 86_400 => Ok(secs),
        _ => Err(format!("{text}: between 1 s and a year")),
    }
}

fn join_token(
    location: &StoreLocation,
    url: &str,
    ca: &std::path::Path,
    expires: u64,
    uses: u32,
    name: Option<&str>,
) -> Result<(), ServerError> {
    if let Some(name) = name.filter(|name| !enrollment::name_ok(name)) {
        return Err(ServerError::Config(format!(
            "--name {name}: not a machine name"
        )));
    }
    let fingerprint = tls::fingerprint(ca)?;
    let secret = enrollment::JoinSecret::generate()?;
    let now = authtoken_core::clock::unix_secs();
    let token = enrollment::JoinToken {
        hash: secret.hash(),
        expires_at: now + expires,
        uses_left: uses,
        name: name.map(str::to_owned),
        created_at: now,
    };
    let id = secret.id.clone();
    location.edit(|store| {
        store.join_tokens.insert(id.clone(), token);
        Ok((
            Change::JoinToken(id.clone()),
            format!("join token {id} (expires in {expires} s, {uses} use(s))"),
        ))
    })?;
    println!("On the machine, as root:");
    println!(
        "authtoken join {url} --token {} --ca-fingerprint sha256:{fingerprint}",
        secret.line().as_str()
    );
    println!("(with --network-users, this authority's users become known to the machine too)");
    Ok(())
}

fn list_devices(store: &Store) {
    use authtoken_protocol::enroll::utc_text;
    let now = authtoken_core::clock::unix_secs();
    println!(
        "{:<34} {:<24} {:<38} {:<22} STATE",
        "SERIAL", "NAME", "UDID", "NOT AFTER"
    );
    for (serial, device) in &store.devices {
        let state = if device.revoked {
            "revoked"
        } else if device.not_after <= now {
            "expired"
        } else {
            "valid"
        };
        println!(
            "{serial:<34} {:<24} {:<38} {:<22} {state}",
            authtoken_core::log::quote(&device.name),
            device.udid,
            utc_text(device.not_after)
        );
    }
    for (id, token) in &store.join_tokens {
        if token.uses_left > 0 && token.expires_at > now {
            println!(
                "join token {id}: {} use(s) left, expires {}{}",
                token.uses_left,
                utc_text(token.expires_at),
                token
                    .name
                    .as_deref()
                    .map(|n| format!(", for {}", authtoken_core::log::quote(n)))
                    .unwrap_or_default()
            );
        }
    }
}

fn revoke_device(location: &StoreLocation, device: &str) -> Result<(), ServerError> {
    let wanted = device.to_owned();
    location.edit(|store| {
        let serials: Vec<String> = store
            .devices
            .iter()
            .filter(|(serial, record)| {
                (**serial == wanted || record.name == wanted) && !record.revoked
            })
            .map(|(serial, _)| serial.clone())
            .collect();
        let Some(first) = serials.first().cloned() else {
            return Err(EditError::NoSuchDevice(wanted.clone()));
        };
        for serial in &serials {
            if let Some(record) = store.devices.get_mut(serial) {
                record.revoked = true;
            }
        }
        Ok((
            Change::Devices(serials.clone()),
            format!(
                "revocation of {} certificate(s) of {} (first {first})",
                serials.len(),
                authtoken_core::log::quote(&wanted)
            ),
        ))
    })
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
        .map_err(|e| ServerError::Config(format!("group name: {e}")))?;
    if only_digits(name) {
        return Err(ServerError::Config(format!(
            "group {name}: a name made only of digits (every client drops it)"
        )));
    }
    location.edit(|store| {
        let gid = match gid {
            Some(gid) => gid,
            None => store.next_uid(directory::DEFAULT_FIRST_ID, directory::DEFAULT_LAST_ID)?,
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
            return Err(EditError::NoSuchUser(user.to_owned()));
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
    ) -> Result<Option<Account>, EditError> {
        if self.no_account {
            return Ok(None);
        }
        if only_digits(user) {
            return Err(EditError::Refused(format!(
                "{user}: a name made only of digits gets no account (every client drops it, \
                 as useradd refuses it); use --no-account, or another name"
            )));
        }
        let mut account = match old {
            Some(old) => old,
            None => {
                let uid = match self.uid {
                    Some(uid) => uid,
                    None => store.next_uid(self.uid_min, self.uid_max)?,
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
        .map_err(|e| ServerError::Config(e.to_string()))?;
    if iterations < MIN_ITERATIONS {
        return Err(ServerError::Config(format!(
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
