//! `authtoken-chkpwd`: the setuid-root entry point for callers without root
//! (screen lockers), in the way of pam_unix's `unix_chkpwd`.
//!
//! The PAM module runs it, instead of the helper, when it is not root. It
//! * first resets what a caller can pass through a setuid exec (resource
//!   limits, signal dispositions and mask, umask) and takes root's real
//!   uid, so the caller can no longer signal it;
//! * signs in only the user its real uid belonged to, and refuses any other;
//! * ignores its environment and arguments, and reads the system config's
//!   module settings only, as the module does (it parses no TOML: when the
//!   config changed, the helper makes the settings again, as for a root
//!   module);
//! * takes no offline decision from the caller: the verifier and whether to
//!   make one come from the system's records, and the offline services of a
//!   caller without root are `[offline] unprivileged_services`;
//! * spaces one uid's attempts at least 1 s apart, doubling after each
//!   rejected password (up to 32 s), refusing at once when the wait would
//!   exceed 4 s; each attempt is on record as a rejection before the helper
//!   runs;
//! * answers a user remembered as unmanaged (410) in this login session
//!   without a request, and remembers a new 410;
//! * runs the helper through the module's own spawner (the checked
//!   executable, a deadline on every read, the process group killed at the
//!   deadline) and keeps the token: the caller learns only whether it was
//!   issued, and the session's token file, if it has one, is refreshed.
//!
//! Request on stdin, result on stdout: the module's wire format.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::ExitCode;

use authtoken_core::attempts::{Attempts, AttemptsError};
use authtoken_core::cache::{Cache, CacheError};
use authtoken_core::log::{self, Level};
use authtoken_core::offline::{OfflineError, OfflineStore, OfflineVerifier};
use authtoken_core::outcome::Outcome;
use authtoken_core::platform::{CONFIG as DEFAULT_CONFIG_PATH, HELPER as DEFAULT_HELPER_PATH};
use authtoken_core::session::SessionKey;
use authtoken_core::settings::{self, ModuleSettings, SettingsError, CHKPWD_MAX_WAIT_MS};
use authtoken_core::signin::{Runner, SignIn};
use authtoken_core::trust::Rules;
use authtoken_core::trust::{self, TrustError};
use authtoken_core::wire::{self, HelperAnswer, HelperRequest, WireError, MAX_REQUEST_BYTES};
use authtoken_spawn::HelperError;
use nix::unistd::{Uid, User};
use zeroize::Zeroizing;

const IDENT: &str = log::CHKPWD_IDENT;

fn main() -> ExitCode {
    // Who called, before the ids change.
    let caller = Uid::current();
    let outcome = match authtoken_spawn::setuid::reset_inherited_state() {
        Ok(()) => {
            // A setuid program's environment is its caller's: drop all of it.
            for (name, _) in std::env::vars_os() {
                std::env::remove_var(name);
            }
            check(caller).unwrap_or_else(|refusal| Outcome::unavailable(refusal.to_string()))
        }
        Err(e) => Outcome::unavailable(format!("cannot reset the caller's process state: {e}")),
    };
    let reason = match &outcome {
        Outcome::Unavailable { reason } | Outcome::Unreachable { reason } => {
            format!(" reason={}", log::quote(reason))
        }
        _ => String::new(),
    };
    log::send(
        IDENT,
        Level::Info,
        &format!("uid={caller} outcome={}{reason}", outcome.label()),
    );
    wire::write_answer(&outcome, None)
}

/// Why chkpwd answers `Unavailable` without an outcome from the helper.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("takes no arguments (it reads the system config only)")]
    Arguments,
    #[error("not installed setuid root")]
    NotSetuidRoot,
    #[error("uid {0} has no user name")]
    NoUserName(Uid),
    #[error("the request did not arrive in time")]
    RequestTimeout,
    #[error("request too large")]
    RequestTooLarge,
    #[error("reading request: {}", .0.desc())]
    RequestRead(nix::errno::Errno),
    #[error("request: {0}")]
    Request(#[from] WireError),
    #[error(
        "uid {uid} may only authenticate {}, not {}",
        log::quote(own),
        log::quote(asked)
    )]
    OtherUser {
        uid: Uid,
        own: String,
        asked: String,
    },
    #[error("{0}")]
    Settings(#[from] settings::Failure<HelperError>),
    #[error("{0}")]
    Cache(#[from] CacheError),
    #[error("{0}")]
    Attempts(#[from] AttemptsError),
    #[error("{0}")]
    Helper(#[from] HelperError),
}

fn check(caller: Uid) -> Result<Outcome, Refusal> {
    if std::env::args_os().len() > 1 {
        return Err(Refusal::Arguments);
    }
    if !Uid::effective().is_root() {
        return Err(Refusal::NotSetuidRoot);
    }
    let caller_name = User::from_uid(caller)
        .ok()
        .flatten()
        .map(|u| u.name)
        .ok_or(Refusal::NoUserName(caller))?;

    let buf = read_request()?;
    let mut request = HelperRequest::decode(&buf)?;
    if request.user.as_str() != caller_name {
        return Err(Refusal::OtherUser {
            uid: caller,
            own: caller_name,
            asked: request.user.as_str().to_owned(),
        });
    }
    // The offline fields are root's to fill in, never the caller's.
    request.offline = None;
    request.want_verifier = false;
    let user = request.user.clone();
    let service = request.service.clone();
    let config_path = Path::new(DEFAULT_CONFIG_PATH);
    // The settings root's tools write beside the config, made again by the
    // helper when the config changed (which also keeps them current for
    // the module of a caller without root, who cannot make them).
    let config = settings::load(&Root, config_path, Path::new(DEFAULT_HELPER_PATH))?.values;

    // The caller's login session (the kernel's ids, never its environment).
    let cache = Cache::open(&config.cache_dir, log::CHKPWD_IDENT)?;
    let session = SessionKey::current().ok();
    let mut attempts = Attempts::open(&config.cache_dir, caller.as_raw())?;
    // Offline login for this caller too (unlocking on a train), under the
    // policy for callers without root; the records stay root's.
    let offline = config.offline.for_unprivileged_caller();
    let mut runner = ChkpwdRunner {
        request,
        helper: &config.helper,
        deadline: config.kill_deadline(),
        attempts: &mut attempts,
    };
    let signed_in = SignIn {
        user: &user,
        service: &service,
        offline: &offline,
        session: session.as_ref().map(|key| (&cache, key)),
    }
    .run(&mut runner)?;
    Ok(match signed_in.outcome {
        // The token stays with root (the session's file was refreshed):
        // the caller learns only that one was issued.
        Outcome::Token { .. } => Outcome::Verified,
        other => other,
    })
}

/// How long the caller has to send its request: it can no longer signal
/// this process, so a caller that holds its end open must not hold a root
/// process with it.
const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// The caller's request on stdin, bounded in size and in time.
fn read_request() -> Result<Zeroizing<Vec<u8>>, Refusal> {
    use authtoken_spawn::ReadError;
    let ends_at = std::time::Instant::now() + REQUEST_DEADLINE;
    authtoken_spawn::read_bounded(&std::io::stdin(), MAX_REQUEST_BYTES, ends_at).map_err(
        |e| match e {
            ReadError::Timeout => Refusal::RequestTimeout,
            ReadError::TooLarge => Refusal::RequestTooLarge,
            ReadError::Io(e) => Refusal::RequestRead(e),
        },
    )
}

/// chkpwd's side of the root sign-in flow: the caller's request (its
/// offline fields replaced by root's), the helper through the module's own
/// spawner, each attempt on record before the helper runs.
struct ChkpwdRunner<'a> {
    request: HelperRequest,
    helper: &'a Path,
    deadline: std::time::Duration,
    attempts: &'a mut Attempts,
}

impl Runner for ChkpwdRunner<'_> {
    type Error = Refusal;

    fn request(
        &mut self,
        want_verifier: bool,
        verifier: Option<OfflineVerifier>,
    ) -> Result<Zeroizing<Vec<u8>>, Refusal> {
        self.request.want_verifier = want_verifier;
        self.request.offline = verifier;
        Ok(self.request.encode()?)
    }

    fn admit(&mut self) -> Result<(), Refusal> {
        Ok(self.attempts.begin(CHKPWD_MAX_WAIT_MS)?)
    }

    fn run(&mut self, request: &[u8]) -> Result<HelperAnswer, Refusal> {
        let answer = authtoken_spawn::run_helper(
            self.helper,
            &["authenticate", "--config", DEFAULT_CONFIG_PATH],
            request,
            self.deadline,
        )?;
        self.attempts.finish(&answer.outcome)?;
        Ok(answer)
    }

    fn open_offline(&self, dir: &Path) -> Result<OfflineStore, OfflineError> {
        OfflineStore::open(dir)
    }

    fn log(&self, level: Level, message: &str) {
        log::send(IDENT, level, message);
    }
}

/// Root's view of the settings: chkpwd runs as root, so it has the helper
/// make them when the config changed, exactly as a root module does.
struct Root;

impl settings::Source for Root {
    type HelperError = HelperError;
    fn read_config(&self, config: &Path) -> Result<Zeroizing<Vec<u8>>, TrustError> {
        trust::read(config, Rules::ROOT, settings::MAX_CONFIG_BYTES)
    }
    fn read_settings(&self, config: &Path) -> Result<Option<ModuleSettings>, SettingsError> {
        settings::read(config)
    }
    fn make_settings(
        &self,
        helper: &Path,
        config: &Path,
    ) -> Result<Zeroizing<Vec<u8>>, HelperError> {
        authtoken_spawn::make_module_settings(helper, config)
    }
    fn helper_missing(&self, error: &HelperError) -> bool {
        matches!(error, HelperError::Missing(_))
    }
    fn privileged(&self) -> bool {
        true
    }
    fn warn(&self, message: &str) {
        log::send(IDENT, Level::Warning, message);
    }
}
