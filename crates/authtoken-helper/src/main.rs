//! `authtoken-helper`: all network I/O of pam_authtoken, run by the module
//! as a child process (one request on stdin, one result on stdout), and
//! what the timers run (`sync --if-due`). Nothing here is the
//! administrator's: that is `authtoken` (crate authtoken-cli).

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use authtoken_config::Config;
use authtoken_core::log::{self, Level};
use authtoken_core::outcome::Outcome;
use authtoken_core::platform::CONFIG as DEFAULT_CONFIG_PATH;
use authtoken_core::settings;
use authtoken_core::trust::Rules;
use authtoken_core::wire::{HelperRequest, WireError, MAX_REQUEST_BYTES};
use authtoken_helper::{commands, enroll, run_backend, OfflineAsk};
use clap::{Parser, Subcommand};
use zeroize::Zeroizing;

const LOG_IDENT: &str = log::HELPER_IDENT;

#[derive(Parser)]
#[command(
    name = "authtoken-helper",
    version,
    about = "Token-authority client of pam_authtoken: what the module and the timers run (the administrator's commands are `authtoken`)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one handshake for pam_authtoken.so: request on stdin, result on stdout.
    Authenticate {
        /// The configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Log protocol steps (never secrets).
        #[arg(long)]
        debug: bool,
    },
    /// Make the PAM module's settings from the configuration file: print
    /// them on stdout and, as root, write them beside it (NAME.module.json),
    /// where the module reads them without parsing TOML.
    ModuleSettings {
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
        /// Only when the last attempt is `refresh_minutes` old (the timer).
        #[arg(long)]
        if_due: bool,
    },
    /// The network half of `authtoken join`, run by it: the job on stdin,
    /// done as the job's helper_user, the answer on stdout.
    #[command(hide = true)]
    Enroll,
    /// The network half of the device certificate's renewal (run by
    /// `sync`): the request on stdin, posted over mutual TLS as
    /// helper_user, the answer on stdout.
    #[command(hide = true)]
    RenewDevice {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// The network half of `sync`, run by it: fetch the directory as
    /// helper_user and hand it to root on stdout.
    #[command(hide = true)]
    FetchDirectory {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// The serial of the directory held (If-None-Match).
        #[arg(long)]
        serial: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Authenticate { config, debug } => serve_module(&config, debug),
        Command::ModuleSettings { config } => module_settings(&config),
        Command::Sync { config, if_due } => commands::sync(&config, if_due),
        Command::FetchDirectory { config, serial } => fetch_directory(&config, serial.as_deref()),
        Command::Enroll => enroll_child(),
        Command::RenewDevice { config } => renew_child(&config),
    }
}

/// The module's side of the contract. Any failure becomes an `Unavailable`
/// result; the module also treats a crash or silence as unavailable.
fn serve_module(config_path: &Path, debug: bool) -> ExitCode {
    let started = Instant::now();
    // Backstop in case anything below blocks beyond every deadline: SIGALRM's
    // default action ends us, and the module reports the helper as failed.
    let _ = nix::unistd::alarm::set(310);
    let (outcome, user, service, backend, authority, verifier) = match read_request() {
        Err(e) => (
            Outcome::unavailable(e.to_string()),
            String::new(),
            String::new(),
            "-",
            None,
            None,
        ),
        Ok(request) => {
            let user = request.user.to_string();
            let service = request.service.clone();
            match Config::load(config_path) {
                Err(e) => (
                    Outcome::unavailable(e.to_string()),
                    user,
                    service,
                    "-",
                    None,
                    None,
                ),
                Ok(config) => {
                    let _ = nix::unistd::alarm::set((config.timeout_ms / 1000 + 2) as u32);
                    let backend = config.backend.name();
                    let mut step = |line: &str| {
                        if debug {
                            log::send(
                                LOG_IDENT,
                                Level::Debug,
                                &format!("user={} {line}", log::quote(&user)),
                            );
                        }
                    };
                    let (outcome, authority, verifier) = match request.password() {
                        Ok(password) => {
                            let offline = OfflineAsk {
                                want_verifier: request.want_verifier,
                                verifier: request.offline.as_ref(),
                            };
                            let done = run_backend(
                                &config,
                                &request.user,
                                &password,
                                started,
                                offline,
                                &mut step,
                            );
                            (done.outcome, done.authority, done.verifier)
                        }
                        Err(e) => (Outcome::unavailable(e.to_string()), None, None),
                    };
                    (outcome, user, service, backend, authority, verifier)
                }
            }
        }
    };
    let (reason, level) = match &outcome {
        Outcome::Unavailable { reason } | Outcome::Unreachable { reason } => {
            (format!(" reason={}", log::quote(reason)), Level::Error)
        }
        _ => (String::new(), Level::Info),
    };
    let authority = authority
        .map(|url| format!(" authority={}", log::quote(&url)))
        .unwrap_or_default();
    log::send(
        LOG_IDENT,
        level,
        &format!(
            "handshake user={} service={} backend={backend} outcome={}{authority} elapsed_ms={}{reason}",
            log::quote(&user),
            log::quote(&service),
            outcome.label(),
            started.elapsed().as_millis()
        ),
    );
    authtoken_core::wire::write_answer(&outcome, verifier.as_ref())
}

/// Why the module's request could not be read.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("reading request: {0}")]
    Read(#[from] std::io::Error),
    #[error("{0}")]
    Wire(#[from] WireError),
}

fn read_request() -> Result<HelperRequest, RequestError> {
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_REQUEST_BYTES + 1));
    std::io::stdin()
        .lock()
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut buf)?;
    Ok(HelperRequest::decode(&buf)?)
}

/// `module-settings`: what the module runs when the config changed since
/// its settings were written. The answer is JSON on stdout either way.
fn module_settings(config_path: &Path) -> ExitCode {
    let path = authtoken_core::trust::absolute(config_path);
    let answer = match Config::load_source(&path, Rules::ROOT) {
        Ok((config, text)) => {
            let made = config.module_settings(&text);
            commands::write_module_settings(&path, &made);
            settings::Answer::Settings(Box::new(made))
        }
        Err(e) => settings::Answer::Refused(e.to_string()),
    };
    match serde_json::to_string(&answer) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(_) => ExitCode::FAILURE,
    }
}

/// `fetch-directory`: the answer line and the body on stdout, always exit 0
/// once the answer is written (root reads the answer, not the exit code).
/// Prints a child's answer for root on stdout.
fn child_answer(answer: &enroll::ChildAnswer) -> ExitCode {
    match serde_json::to_string(answer) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(_) => ExitCode::FAILURE,
    }
}

/// Reads root's job from stdin (bounded).
fn read_job<T: serde::de::DeserializeOwned>() -> Result<T, String> {
    let mut buf = Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .take(64 * 1024)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&buf).map_err(|e| e.to_string())
}

/// `enroll`: the join's network half.
fn enroll_child() -> ExitCode {
    let answer = match read_job::<enroll::JoinJob>() {
        Ok(job) => match enroll::join_exchange(&job) {
            Ok((ca_pem, answer)) => enroll::ChildAnswer::Issued { ca_pem, answer },
            Err(e) => enroll::ChildAnswer::Failed(e.to_string()),
        },
        Err(e) => enroll::ChildAnswer::Failed(format!("the join job: {e}")),
    };
    child_answer(&answer)
}

/// `renew-device`: the renewal's network half.
fn renew_child(config_path: &Path) -> ExitCode {
    let config = match Config::load(&authtoken_core::trust::absolute(config_path)) {
        Ok(config) => config,
        Err(e) => return child_answer(&enroll::ChildAnswer::Failed(e.to_string())),
    };
    let answer = match read_job::<enroll::EnrollRequest>() {
        Ok(request) => match enroll::renew_exchange(&config, &request) {
            Ok(answer) => enroll::ChildAnswer::Issued {
                ca_pem: String::new(),
                answer,
            },
            Err(e) => enroll::ChildAnswer::Failed(e.to_string()),
        },
        Err(e) => enroll::ChildAnswer::Failed(format!("the renewal request: {e}")),
    };
    child_answer(&answer)
}

fn fetch_directory(config_path: &Path, serial: Option<&str>) -> ExitCode {
    use authtoken_directory::Fetched;
    use std::io::Write;
    let (fetched, body) = match Config::load(&authtoken_core::trust::absolute(config_path)) {
        Ok(config) => authtoken_helper::directory::fetch(&config, serial),
        Err(e) => (
            Fetched::Failed {
                reason: e.to_string(),
            },
            Vec::new(),
        ),
    };
    let mut out = std::io::stdout().lock();
    match out
        .write_all(&fetched.encode(&body))
        .and_then(|()| out.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
