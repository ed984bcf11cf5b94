//! `authtoken`: the administrator's command of pam_authtoken (`check-config`,
//! `login`, `status`, `forget`, `sync`), a program of its own beside the
//! helper the module runs, as Kanidm keeps its CLI apart from its daemons.
//! It links the helper's library for the handshake and the sync, and adds
//! what only a person at a terminal needs (the password prompt).

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use authtoken_config::{Backend, Config};
use authtoken_core::log;
use authtoken_core::outcome::{outcome_code, Outcome};
use authtoken_core::platform::CONFIG as DEFAULT_CONFIG_PATH;
use authtoken_core::secret::first_line;
use authtoken_core::trust::Rules;
use authtoken_core::username::Username;
use authtoken_core::wire;
use authtoken_helper::{commands, mdm, run_backend, transport, OfflineAsk};
use clap::{Parser, Subcommand};

mod join;
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(
    name = "authtoken",
    version,
    about = "pam_authtoken's administrator's commands"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Join the authority: fetch its CA (accepted only if it matches the
    /// fingerprint), make this machine's device key here (it never
    /// leaves), have the authority sign its certificate with the join
    /// token, and write ca_file, client_cert, client_key, url and udid
    /// into the config (keeping everything else it holds). Root only.
    Join {
        /// The authority's check-in URL, as the join line gives it.
        url: String,
        /// The join token (ID.SECRET) from `authtoken-server join-token`.
        #[arg(long)]
        token: String,
        /// The authority's CA fingerprint: sha256:HEX.
        #[arg(long)]
        ca_fingerprint: String,
        /// This machine's name at the authority (default: its host name).
        #[arg(long)]
        name: Option<String>,
        /// Also turn network users on ([directory] enabled = true): the
        /// authority's users become known to this machine after the sync.
        #[arg(long)]
        network_users: bool,
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Check the configuration file and the files it names (as root, also
    /// write the module's settings beside it).
    CheckConfig {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Run one interactive handshake for USER and print the outcome.
    Login {
        /// The user to sign in (the password is prompted for, or read from
        /// standard input).
        user: Username,
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Print protocol steps (never secrets).
        #[arg(long)]
        debug: bool,
    },
    /// List the login sessions in the cache (never the tokens), the offline
    /// verifiers and the network users' cache.
    Status {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Remove USER's offline verifier (offline login then needs an online
    /// login first).
    Forget {
        /// The user.
        user: Username,
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Fetch the authority's directory of network users and write the NSS
    /// cache (root; `[directory]` in the config).
    Sync {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Only when the last attempt is `refresh_minutes` old.
        #[arg(long)]
        if_due: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Join {
            url,
            token,
            ca_fingerprint,
            name,
            network_users,
            config,
        } => match join::join(
            &join::JoinArgs {
                url: &url,
                token: &token,
                ca_fingerprint: &ca_fingerprint,
                name: name.as_deref(),
                network_users,
            },
            &config,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!("nothing was changed: {} is as it was", config.display());
                ExitCode::FAILURE
            }
        },
        Command::CheckConfig { config } => check_config(&config),
        Command::Login {
            user,
            config,
            debug,
        } => login(&user, &config, debug),
        Command::Status { config } => status(&config),
        Command::Forget { user, config } => forget(&user, &config),
        Command::Sync { config, if_due } => commands::sync(&config, if_due),
    }
}

/// The config for an admin command, or `None` after printing why not.
fn load_config(config_path: &Path) -> Option<Config> {
    Config::load(&authtoken_core::trust::absolute(config_path))
        .map_err(|e| eprintln!("error: {e}"))
        .ok()
}

/// Checks the config and every file it names. Exit 0 only when nothing is
/// wrong and no setting lets a peer that is not the authority sign users
/// in; weaker but safe choices are printed as warnings.
fn check_config(config_path: &Path) -> ExitCode {
    let path = authtoken_core::trust::absolute(config_path);
    let config = match Config::load_source(&path, Rules::ROOT) {
        Ok((config, text)) => {
            if let Some(written) =
                commands::write_module_settings(&path, &config.module_settings(&text))
            {
                println!("module settings: {}", written.display());
            }
            config
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut problems = Vec::new();
    if let Err(e) = transport::Http::new(&config, Instant::now()) {
        problems.push(e.to_string());
    }
    if config.backend == Backend::Mdm {
        let root = Username::parse(b"root").map_err(|e| e.to_string());
        if let Err(e) =
            root.and_then(|root| mdm::identity(&config, &root).map_err(|e| e.to_string()))
        {
            problems.push(e);
        }
    }
    if nix::unistd::User::from_name(config.helper_user.as_str())
        .ok()
        .flatten()
        .is_none()
    {
        problems.push(format!(
            "helper_user {} does not exist: {}",
            log::quote(config.helper_user.as_str()),
            authtoken_helper::privilege::HOW_TO_CREATE
        ));
    }
    match authtoken_core::trust::open_executable(&config.helper) {
        Ok(_) => {}
        Err(e @ authtoken_core::trust::TrustError::Missing { .. }) => problems.push(format!(
            "helper {e}: install the pam-authtoken package, or set helper to where authtoken-helper is"
        )),
        Err(e) => problems.push(format!("helper {e}")),
    }
    for (refused, text) in config.weaknesses() {
        if refused {
            problems.push(format!("insecure: {text}"));
        } else {
            eprintln!("warning: {text}");
        }
    }
    match identity_text(&config) {
        Some(Ok((line, warning))) => {
            println!("{line}");
            match warning {
                Some(Warning::Expired(text)) => problems.push(text),
                Some(Warning::Soon(text)) => eprintln!("warning: {text}"),
                None => {}
            }
        }
        Some(Err(problem)) => problems.push(problem),
        None => {}
    }
    if problems.is_empty() {
        println!(
            "{}: OK (backend {}, url {}, timeout {} ms)",
            config_path.display(),
            config.backend.name(),
            config.url_list(),
            config.timeout_ms
        );
        ExitCode::SUCCESS
    } else {
        for problem in problems {
            eprintln!("error: {problem}");
        }
        ExitCode::FAILURE
    }
}

/// Reads a password from the terminal, or one line of stdin when it is not one.
fn read_password() -> std::io::Result<Zeroizing<Vec<u8>>> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let text = Zeroizing::new(rpassword::prompt_password("Password: ")?);
        Ok(Zeroizing::new(text.as_bytes().to_vec()))
    } else {
        first_line(std::io::stdin().lock(), wire::MAX_PASSWORD_BYTES + 2)
    }
}

fn login(user: &Username, config_path: &Path, debug: bool) -> ExitCode {
    let Some(config) = load_config(config_path) else {
        return ExitCode::FAILURE;
    };
    let password = match read_password() {
        Ok(password) if password.is_empty() => {
            eprintln!(
                "error: empty password refused (the module refuses it too, without a request)"
            );
            return ExitCode::FAILURE;
        }
        Ok(password) => password,
        Err(e) => {
            eprintln!("error: cannot read password: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let mut step = |line: &str| {
        if debug {
            eprintln!("debug: {line}");
        }
    };
    let done = run_backend(
        &config,
        user,
        &password,
        started,
        OfflineAsk::default(),
        &mut step,
    );
    let outcome = done.outcome;
    if let Some(url) = &done.authority {
        println!("{user}: answered by {url}");
    }
    let elapsed = started.elapsed().as_millis();
    let (policy, lowered) = config.empty_challenge_policy();
    let code = outcome_code(&outcome, policy);
    let detail = match (&outcome, lowered) {
        (Outcome::Token { token, expires }, _) => match expires {
            None => format!(" ({} bytes, not shown)", token.len()),
            Some(at) => format!(" ({} bytes, not shown, {})", token.len(), expiry_text(*at)),
        },
        (Outcome::Unavailable { reason } | Outcome::Unreachable { reason }, _) => {
            format!(" ({reason})")
        }
        (Outcome::NoTokenNeeded, Some(why)) => format!(" ({why})"),
        _ => String::new(),
    };
    println!(
        "{user}: {}{detail}: {} [{elapsed} ms]",
        outcome.label(),
        code.name()
    );
    ExitCode::from(login_exit_code(&outcome))
}

/// What is wrong with a device certificate, short of not reading.
enum Warning {
    /// Past its end: logins over mutual TLS and the directory fail.
    Expired(String),
    /// Near its end and not renewed.
    Soon(String),
}

/// How many days before its end a device certificate that is not being
/// renewed is worth a warning.
const IDENTITY_WARNING_DAYS: u64 = 21;

/// The device identity the config names, as `status` and `check-config`
/// say it: one line, and a warning when it expired, needs renewing and is
/// not (the timer's renewal failing), or is near its end; an error when it
/// cannot be read. `None` without a client identity.
fn identity_text(config: &Config) -> Option<Result<(String, Option<Warning>), String>> {
    use authtoken_helper::enroll;
    use authtoken_protocol::enroll::utc_text;
    let cert = config.client_cert.as_ref()?;
    let pem = match authtoken_core::trust::read(cert, Rules::ROOT, 1024 * 1024) {
        Ok(pem) => pem,
        Err(e) => return Some(Err(format!("client_cert {e}"))),
    };
    let der = rustls_pemfile_first(&pem)?;
    let Some(identity) = enroll::describe(&der) else {
        return Some(Err(format!(
            "client_cert {}: not a certificate",
            cert.display()
        )));
    };
    let now = authtoken_core::clock::unix_secs();
    let days_left = identity.not_after.saturating_sub(now) / 86_400;
    let line = if identity.udid.is_empty() {
        format!(
            "device identity: {} (a certificate of the site's own PKI), valid until {} ({days_left} days)",
            log::quote(&identity.name),
            utc_text(identity.not_after)
        )
    } else {
        format!(
            "device identity: {} UDID {} serial {}, valid until {} ({days_left} days), renewal due at {}",
            log::quote(&identity.name),
            identity.udid,
            identity.serial,
            utc_text(identity.not_after),
            utc_text(identity.renew_at())
        )
    };
    let warning = if now >= identity.not_after {
        Some(Warning::Expired(format!(
            "the device certificate expired at {}: the machine needs a new join token \
             (authtoken-server join-token at the authority, then authtoken join here)",
            utc_text(identity.not_after)
        )))
    } else if days_left < IDENTITY_WARNING_DAYS {
        Some(Warning::Soon(format!(
            "the device certificate ends in {days_left} days{}",
            if identity.udid.is_empty() {
                ": issue the machine a new one"
            } else {
                " and has not been renewed (see `authtoken sync`): once it ends the machine \
                 needs a new join token"
            }
        )))
    } else {
        None
    };
    Some(Ok((line, warning)))
}

/// The first certificate of a PEM text, DER.
fn rustls_pemfile_first(pem: &[u8]) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .next()?
        .ok()
        .map(|der| der.as_ref().to_vec())
}

/// When a token expires, as `status` and `login` say it: the time, and
/// how far off it is.
fn expiry_text(at: u64) -> String {
    let now = authtoken_core::clock::unix_secs();
    if at <= now {
        format!("expired at {at}, {} s ago", now - at)
    } else {
        format!("expires at {at}, in {} s", at - now)
    }
}

/// `login`'s exit status, one per outcome (documented in authtoken-helper(8)).
fn login_exit_code(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Token { .. } | Outcome::Verified | Outcome::OfflineVerified => 0,
        Outcome::OfflineRejected => 1,
        Outcome::Rejected => 1,
        Outcome::Unmanaged => 2,
        Outcome::NoTokenNeeded => 3,
        Outcome::Unavailable { .. } | Outcome::Unreachable { .. } => 4,
    }
}

/// The offline verifiers: who has one, how old, how many failures (never
/// the verifier).
fn offline_status(config: &Config) {
    use authtoken_core::offline::{self, OfflineStore};
    if !config.offline.enabled {
        println!("offline login: off");
        return;
    }
    let Ok(store) = OfflineStore::open(&config.offline.dir) else {
        println!(
            "offline login: on, {} unreadable",
            config.offline.dir.display()
        );
        return;
    };
    let records = store.list();
    println!(
        "offline login: on ({} verifiers in {}; max_age_days {}, max_failures {})",
        records.len(),
        config.offline.dir.display(),
        config.offline.max_age_days,
        config.offline.max_failures
    );
    if !records.is_empty() {
        println!("{:<20} {:<12} {:<9} STATE", "USER", "AGE", "FAILURES");
    }
    for (user, state) in records {
        let line = match state {
            Some((age, failures)) => {
                let days = age / 86_400;
                let state = offline::Usability::of(&config.offline, age, failures).label();
                format!(
                    "{:<12} {failures:<9} {state}",
                    format!("{days}d {}h", age % 86_400 / 3600)
                )
            }
            None => format!("{:<12} {:<9} untrusted (ignored)", "-", "-"),
        };
        println!("{:<20} {line}", log::quote(&user));
    }
}

/// The NSS cache: what it holds and how old it is, and the last attempt.
fn directory_status(config: &Config) {
    use authtoken_helper::sync::LastAttempt;
    if !config.directory.enabled {
        println!("network users: off");
        return;
    }
    let cache = Path::new(authtoken_core::platform::NSS_CACHE);
    let now = authtoken_core::clock::unix_secs();
    let ago = |at: u64| match now.saturating_sub(at) {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7_200 => format!("{} min ago", s / 60),
        s => format!("{} h ago", s / 3600),
    };
    match authtoken_directory::nss_cache::Reader::open(cache) {
        Some(reader) => println!(
            "network users: {} users, {} groups, serial {}, fetched {} ({})",
            reader.users,
            reader.groups,
            reader.serial,
            ago(reader.synced),
            cache.display()
        ),
        None => println!("network users: on, no cache yet ({})", cache.display()),
    }
    match LastAttempt::read(cache) {
        Some(LastAttempt {
            at,
            failure: Some(why),
        }) => println!("last sync failed {}: {why}", ago(at)),
        Some(LastAttempt { at, failure: None }) => println!(
            "last sync {} (every {} min)",
            ago(at),
            config.directory.refresh_minutes
        ),
        None => println!("no sync yet: run authtoken sync"),
    }
}

fn forget(user: &Username, config_path: &Path) -> ExitCode {
    use authtoken_core::offline::OfflineStore;
    let Some(config) = load_config(config_path) else {
        return ExitCode::FAILURE;
    };
    match OfflineStore::open(&config.offline.dir).and_then(|store| store.forget(user)) {
        Ok(true) => {
            println!("removed the offline verifier of {user}");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("{user} has no offline verifier");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn status(config_path: &Path) -> ExitCode {
    use authtoken_core::cache::{Cache, EntryState};
    let Some(config) = load_config(config_path) else {
        return ExitCode::FAILURE;
    };
    let cache = match Cache::open(&config.cache_dir, log::HELPER_IDENT) {
        Ok(cache) => cache,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match identity_text(&config) {
        Some(Ok((line, warning))) => {
            println!("{line}");
            if let Some(Warning::Expired(text) | Warning::Soon(text)) = warning {
                println!("  {text}");
            }
        }
        Some(Err(problem)) => println!("device identity: {problem}"),
        None => {}
    }
    offline_status(&config);
    directory_status(&config);
    let entries = cache.list();
    if entries.is_empty() {
        println!("no cached sessions in {}", config.cache_dir.display());
        return ExitCode::SUCCESS;
    }
    println!("{:<32} {:<20} {:<8} STATE", "SESSION", "USER", "ALIVE");
    for entry in entries {
        let alive = match entry.session_alive {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        };
        let state = match entry.state {
            EntryState::Token { bytes, expires } => match expires {
                None => format!("token ({bytes} bytes)"),
                Some(at) => format!("token ({bytes} bytes, {})", expiry_text(at)),
            },
            EntryState::HandOff { age } => {
                format!("hand-off for a forked session, {age} s old (swept at 120 s)")
            }
            EntryState::Unmanaged { since } => format!("unmanaged (410) since {since}"),
            EntryState::Untrusted => "untrusted entry (ignored)".to_owned(),
        };
        println!(
            "{:<32} {:<20} {alive:<8} {state}",
            entry.session,
            log::quote(&entry.user)
        );
    }
    ExitCode::SUCCESS
}
