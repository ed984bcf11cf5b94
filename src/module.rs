//! PAM policy: which password, which config, which helper, and what each
//! outcome means as a PAM code. No libpam calls except through [`Pam`], no
//! network code at all (that is the helper's job).

use std::ffi::CStr;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::time::Instant;

use pam::constants::PamResultCode;
use zeroize::Zeroizing;

use crate::cache::{Cache, SessionKey};
use crate::config::{Config, ConfigError, EmptyChallengePolicy, DEFAULT_CONFIG_PATH};
use crate::ffi::Pam;
use crate::log::{self, Level};
use crate::outcome::Outcome;
use crate::spawn::{run_helper, HelperError};
use crate::username::{self, UsernameError};
use crate::wire::{HelperRequest, WireError, MAX_PASSWORD_BYTES};

pub const LOG_IDENT: &str = "pam_authtoken";
const PASSWORD_PROMPT: &str = "Password: ";

/// A `pam_set_data` key bound to the one type stored under it.
pub struct DataKey<T> {
    pub name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for DataKey<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for DataKey<T> {}

impl<T> DataKey<T> {
    const fn new(name: &'static str) -> Self {
        DataKey {
            name,
            _type: PhantomData,
        }
    }
}

/// The AuthToken of a successful handshake, kept for this PAM handle.
/// Zeroized when libpam runs the data cleanup (`Zeroizing` drop).
pub struct KeptToken {
    pub user: String,
    pub token: Zeroizing<String>,
}

pub const TOKEN_KEY: DataKey<KeptToken> = DataKey::new("pam_authtoken.token");

/// The token file this handle's `open_session` created, which its
/// `close_session` removes. A file that already existed belongs to an
/// enclosing login session (sudo inside it) and is left in place.
pub struct OpenedSession {
    pub user: String,
    pub path: PathBuf,
}

pub const OPENED_KEY: DataKey<OpenedSession> = DataKey::new("pam_authtoken.session");

/// The environment variable naming the session's token file.
pub const TOKEN_FILE_ENV: &str = "AUTHTOKEN_FILE";

/// Options from the pam.d line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleOptions {
    pub debug: bool,
    pub use_first_pass: bool,
    pub try_first_pass: bool,
    pub config_path: PathBuf,
}

impl ModuleOptions {
    /// Unknown options are logged and ignored, as pam_unix does.
    pub fn parse(args: &[&CStr]) -> ModuleOptions {
        let mut options = ModuleOptions {
            debug: false,
            use_first_pass: false,
            try_first_pass: false,
            config_path: PathBuf::from(DEFAULT_CONFIG_PATH),
        };
        for arg in args {
            let arg = arg.to_string_lossy();
            match arg.as_ref() {
                "debug" => options.debug = true,
                "use_first_pass" => options.use_first_pass = true,
                "try_first_pass" => options.try_first_pass = true,
                other => match other.strip_prefix("config=") {
                    Some(path) => options.config_path = PathBuf::from(path),
                    None => log::send(
                        LOG_IDENT,
                        Level::Warning,
                        &format!("ignoring unknown option {}", log::sanitize(other)),
                    ),
                },
            }
        }
        options
    }
}

/// Why `authenticate` ended without an outcome from the authority.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot get the user name (PAM code {0:?})")]
    NoUser(PamResultCode),
    #[error("invalid user name: {0}")]
    BadUser(#[from] UsernameError),
    #[error("config=PATH must be absolute")]
    RelativeConfigPath,
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    #[error("conversation failed (PAM code {0:?})")]
    Conversation(PamResultCode),
    #[error("use_first_pass given but no earlier module set a password")]
    NoFirstPass,
    #[error("empty password refused")]
    EmptyPassword,
    #[error("password longer than {MAX_PASSWORD_BYTES} bytes refused")]
    PasswordTooLong,
    #[error("request: {0}")]
    Request(#[from] WireError),
    #[error("{0}")]
    Helper(#[from] HelperError),
}

impl AuthError {
    /// The single place where failures become PAM codes.
    pub fn pam_code(&self) -> PamResultCode {
        match self {
            AuthError::NoUser(_) | AuthError::BadUser(_) => PamResultCode::PAM_USER_UNKNOWN,
            AuthError::Conversation(_) => PamResultCode::PAM_CONV_ERR,
            AuthError::NoFirstPass | AuthError::EmptyPassword | AuthError::PasswordTooLong => {
                PamResultCode::PAM_AUTH_ERR
            }
            AuthError::RelativeConfigPath
            | AuthError::Config(_)
            | AuthError::Request(_)
            | AuthError::Helper(_) => PamResultCode::PAM_AUTHINFO_UNAVAIL,
        }
    }
}

/// The single place where authority outcomes become PAM codes.
pub fn outcome_code(outcome: &Outcome, policy: EmptyChallengePolicy) -> PamResultCode {
    match outcome {
        Outcome::Token(token) if !token.is_empty() => PamResultCode::PAM_SUCCESS,
        Outcome::Token(_) => PamResultCode::PAM_AUTHINFO_UNAVAIL,
        Outcome::NoTokenNeeded => match policy {
            EmptyChallengePolicy::Success => PamResultCode::PAM_SUCCESS,
            EmptyChallengePolicy::Ignore => PamResultCode::PAM_IGNORE,
        },
        Outcome::Unmanaged => PamResultCode::PAM_IGNORE,
        Outcome::Rejected => PamResultCode::PAM_AUTH_ERR,
        Outcome::Unavailable(_) => PamResultCode::PAM_AUTHINFO_UNAVAIL,
    }
}

/// What one `authenticate` call did, for its log line.
struct Attempt {
    user: String,
    service: String,
    backend: &'static str,
    /// Answered from the session cache, without a request.
    cached: bool,
    /// Why `empty_challenge = "success"` was not in force.
    policy_lowered: Option<&'static str>,
}

pub fn authenticate(pam: &mut Pam, args: &[&CStr]) -> PamResultCode {
    let started = Instant::now();
    let options = ModuleOptions::parse(args);
    let mut attempt = Attempt {
        user: String::new(),
        service: pam.service(),
        backend: "-",
        cached: false,
        policy_lowered: None,
    };
    let result = authenticate_user(pam, &options, &mut attempt);
    let (code, outcome_word, detail) = match &result {
        Ok((outcome, policy)) => {
            let detail = match outcome {
                Outcome::Unavailable(reason) => format!(" reason=\"{}\"", log::sanitize(reason)),
                Outcome::NoTokenNeeded => match attempt.policy_lowered {
                    Some(why) => format!(" reason=\"{why}; treated as ignore\""),
                    None => String::new(),
                },
                _ if attempt.cached => " cached=yes".to_owned(),
                _ => String::new(),
            };
            (outcome_code(outcome, *policy), outcome.label(), detail)
        }
        Err(e) => (
            e.pam_code(),
            "error",
            format!(" reason=\"{}\"", log::sanitize(&e.to_string())),
        ),
    };
    let level = match code {
        PamResultCode::PAM_SUCCESS | PamResultCode::PAM_IGNORE => Level::Info,
        PamResultCode::PAM_AUTH_ERR => Level::Warning,
        _ => Level::Error,
    };
    log::send(
        LOG_IDENT,
        level,
        &format!(
            "authenticate user={} service={} backend={} outcome={} result={:?} elapsed_ms={}{}",
            log::sanitize(&attempt.user),
            log::sanitize(&attempt.service),
            attempt.backend,
            outcome_word,
            code,
            started.elapsed().as_millis(),
            detail
        ),
    );
    if code == PamResultCode::PAM_AUTHINFO_UNAVAIL {
        if let Err(AuthError::Config(_)) = &result {
            pam.error_message("pam_authtoken: configuration error, see the system log");
        }
    }
    if let Ok((Outcome::Token(token), _)) = result {
        if code == PamResultCode::PAM_SUCCESS {
            let kept = KeptToken {
                user: attempt.user,
                token,
            };
            if pam.set_typed_data(TOKEN_KEY, kept).is_err() {
                return PamResultCode::PAM_BUF_ERR;
            }
        }
    }
    code
}

fn authenticate_user(
    pam: &mut Pam,
    options: &ModuleOptions,
    attempt: &mut Attempt,
) -> Result<(Outcome, EmptyChallengePolicy), AuthError> {
    let raw_user = pam.user().map_err(AuthError::NoUser)?;
    attempt.user = String::from_utf8_lossy(&raw_user).into_owned();
    let user = username::validate(&raw_user)?.to_owned();

    if !options.config_path.is_absolute() {
        return Err(AuthError::RelativeConfigPath);
    }
    let config = Config::load(&options.config_path)?;
    attempt.backend = config.backend.name();
    let (policy, lowered) = config.empty_challenge_policy();
    attempt.policy_lowered = lowered;
    debug(
        options,
        &format!("config {} loaded", options.config_path.display()),
    );

    let session = session_cache(&config);
    if let Some((cache, key)) = &session {
        if cache.is_unmanaged(key, &user) {
            attempt.cached = true;
            return Ok((Outcome::Unmanaged, policy));
        }
    }

    let password = obtain_password(pam, options)?;
    let request = HelperRequest::new(&user, &password, &attempt.service, &pam.tty(), &pam.rhost());
    drop(password);
    let encoded = request.encode()?;
    drop(request);

    let config_arg = options.config_path.to_string_lossy();
    let mut args = vec!["authenticate", "--config", &config_arg];
    if options.debug {
        args.push("--debug");
    }
    debug(
        options,
        &format!("running helper {}", config.helper.display()),
    );
    let outcome = run_helper(&config.helper, &args, &encoded, config.kill_deadline())?;
    if let Some((cache, key)) = &session {
        let stored = match &outcome {
            Outcome::Unmanaged => cache.mark_unmanaged(key, &user),
            Outcome::Token(token) => cache
                .replace_token(key, &user, token)
                .and_then(|_| cache.leave_handoff(&SessionKey::process_session()?, &user, token)),
            _ => Ok(()),
        };
        if let Err(e) = stored {
            log::send(LOG_IDENT, Level::Warning, &format!("session cache: {e}"));
        }
    }
    Ok((outcome, policy))
}

/// The session cache and this process's login-session key. A cache that
/// cannot be used only costs the shortcuts, so it is logged, not fatal.
fn session_cache(config: &Config) -> Option<(Cache, SessionKey)> {
    let opened =
        Cache::open(&config.cache_dir).and_then(|cache| Ok((cache, SessionKey::current()?)));
    match opened {
        Ok(pair) => Some(pair),
        Err(e) => {
            log::send(
                LOG_IDENT,
                Level::Warning,
                &format!("session cache unavailable: {e}"),
            );
            None
        }
    }
}

/// The password from an earlier module (`use_first_pass` / `try_first_pass`)
/// or from the conversation; a prompted one is stored as `PAM_AUTHTOK`.
fn obtain_password(
    pam: &mut Pam,
    options: &ModuleOptions,
) -> Result<Zeroizing<Vec<u8>>, AuthError> {
    if options.use_first_pass || options.try_first_pass {
        if let Some(password) = pam.authtok() {
            return check_password(password);
        }
        if options.use_first_pass {
            return Err(AuthError::NoFirstPass);
        }
    }
    let password = pam
        .prompt_secret(PASSWORD_PROMPT)
        .map_err(AuthError::Conversation)?;
    let password = check_password(password)?;
    // Failing to share the password with later modules is not fatal.
    let _ = pam.set_authtok(&password);
    Ok(password)
}

fn check_password(password: Zeroizing<Vec<u8>>) -> Result<Zeroizing<Vec<u8>>, AuthError> {
    if password.is_empty() {
        return Err(AuthError::EmptyPassword);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::PasswordTooLong);
    }
    Ok(password)
}

fn debug(options: &ModuleOptions, message: &str) {
    if options.debug {
        log::send(LOG_IDENT, Level::Debug, message);
    }
}

/// The token this handle's `authenticate` obtained for `raw_user`, if any.
fn kept_token(pam: &Pam, raw_user: &[u8]) -> Option<Zeroizing<String>> {
    pam.get_data(TOKEN_KEY)
        .filter(|kept| kept.user.as_bytes() == raw_user)
        .map(|kept| kept.token.clone())
}

/// Whether we issued a token for the current user, in this handle or in a
/// forked authentication child of this process session.
fn authenticated_here(pam: &mut Pam, args: &[&CStr]) -> bool {
    let Ok(raw_user) = pam.user() else {
        return false;
    };
    if kept_token(pam, &raw_user).is_some() {
        return true;
    }
    // Authenticated by a forked child of this process (sshd)?
    let user = String::from_utf8_lossy(&raw_user);
    let options = ModuleOptions::parse(args);
    let Ok(config) = Config::load(&options.config_path) else {
        return false;
    };
    let handoff = Cache::open(&config.cache_dir)
        .and_then(|cache| Ok((cache, SessionKey::process_session()?)));
    handoff.is_ok_and(|(cache, key)| cache.has_handoff(&key, &user))
}

/// Success for a user we issued a token for, otherwise stay out of the way.
fn ours_or_ignore(pam: &mut Pam, args: &[&CStr]) -> PamResultCode {
    if authenticated_here(pam, args) {
        PamResultCode::PAM_SUCCESS
    } else {
        PamResultCode::PAM_IGNORE
    }
}

/// No credentials beyond the token to establish.
pub fn setcred(pam: &mut Pam, args: &[&CStr]) -> PamResultCode {
    ours_or_ignore(pam, args)
}

/// We hold no account policy of our own: accounts we issued a token for are
/// fine, everyone else is left to the other modules.
pub fn acct_mgmt(pam: &mut Pam, args: &[&CStr]) -> PamResultCode {
    ours_or_ignore(pam, args)
}

/// Writes the token this handle obtained into the session cache and
/// exports its path as `AUTHTOKEN_FILE`.
pub fn open_session(pam: &mut Pam, args: &[&CStr]) -> PamResultCode {
    let options = ModuleOptions::parse(args);
    let Ok(raw_user) = pam.user() else {
        return PamResultCode::PAM_IGNORE;
    };
    let kept = kept_token(pam, &raw_user);
    let user = String::from_utf8_lossy(&raw_user).into_owned();
    // Without a token of this handle's own, there may be nothing to do at
    // all: failures below are only errors when we hold a token.
    let failed = if kept.is_some() {
        PamResultCode::PAM_SESSION_ERR
    } else {
        PamResultCode::PAM_IGNORE
    };
    let config = match Config::load(&options.config_path) {
        Ok(config) => config,
        Err(e) => {
            if kept.is_some() {
                log::send(
                    LOG_IDENT,
                    Level::Error,
                    &format!("open_session: config: {e}"),
                );
            }
            return failed;
        }
    };
    let Some((cache, key)) = session_cache(&config) else {
        return failed;
    };
    // The token from this handle's authenticate, or else the one a forked
    // authentication child of this process session left (sshd).
    let process = SessionKey::process_session().ok();
    let token = match (kept, &process) {
        (Some(token), Some(process)) => {
            cache.discard_handoff(process, &user);
            token
        }
        (Some(token), None) => token,
        (None, Some(process)) => match cache.take_handoff(process, &user) {
            Some(token) => token,
            None => return PamResultCode::PAM_IGNORE,
        },
        (None, None) => return PamResultCode::PAM_IGNORE,
    };
    let existed = cache.token_path(&key, &user).is_some();
    let path = match cache.store_token(&key, &user, &token) {
        Ok(path) => path,
        Err(e) => {
            log::send(LOG_IDENT, Level::Error, &format!("open_session: {e}"));
            return PamResultCode::PAM_SESSION_ERR;
        }
    };
    if pam
        .putenv(&format!("{TOKEN_FILE_ENV}={}", path.display()))
        .is_err()
    {
        return PamResultCode::PAM_SESSION_ERR;
    }
    if !existed {
        let opened = OpenedSession {
            user: user.clone(),
            path,
        };
        if pam.set_typed_data(OPENED_KEY, opened).is_err() {
            return PamResultCode::PAM_SESSION_ERR;
        }
    }
    cache.sweep();
    log::send(
        LOG_IDENT,
        Level::Info,
        &format!(
            "open_session user={} service={} session={} token cached",
            log::sanitize(&user),
            log::sanitize(&pam.service()),
            key.as_str()
        ),
    );
    PamResultCode::PAM_SUCCESS
}

/// Removes the token file this handle's `open_session` created.
pub fn close_session(pam: &mut Pam, args: &[&CStr]) -> PamResultCode {
    let options = ModuleOptions::parse(args);
    let Ok(raw_user) = pam.user() else {
        return PamResultCode::PAM_IGNORE;
    };
    let Some(path) = pam
        .get_data(OPENED_KEY)
        .filter(|opened| opened.user.as_bytes() == raw_user.as_slice())
        .map(|opened| opened.path.clone())
    else {
        return PamResultCode::PAM_IGNORE;
    };
    let _ = pam.putenv(TOKEN_FILE_ENV);
    let removed = std::fs::remove_file(&path).is_ok();
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir(dir);
    }
    if let Ok(config) = Config::load(&options.config_path) {
        if let Ok(cache) = Cache::open(&config.cache_dir) {
            cache.sweep();
        }
    }
    if removed {
        PamResultCode::PAM_SUCCESS
    } else {
        PamResultCode::PAM_IGNORE
    }
}

/// Passwords are changed at the authority, not through PAM.
pub fn chauthtok(_pam: &mut Pam, _args: &[&CStr]) -> PamResultCode {
    PamResultCode::PAM_IGNORE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let args = [c"debug", c"try_first_pass", c"config=/etc/x.toml", c"bogus"];
        let options = ModuleOptions::parse(&args);
        assert!(options.debug && options.try_first_pass && !options.use_first_pass);
        assert_eq!(options.config_path, PathBuf::from("/etc/x.toml"));
    }

    #[test]
    fn only_a_nonempty_token_or_explicit_policy_succeeds() {
        use EmptyChallengePolicy::*;
        let ok = PamResultCode::PAM_SUCCESS;
        let token = Outcome::Token(Zeroizing::new("t".into()));
        assert_eq!(outcome_code(&token, Ignore), ok);
        assert_ne!(
            outcome_code(&Outcome::Token(Zeroizing::new(String::new())), Success),
            ok
        );
        assert_eq!(
            outcome_code(&Outcome::NoTokenNeeded, Ignore),
            PamResultCode::PAM_IGNORE
        );
        assert_eq!(outcome_code(&Outcome::NoTokenNeeded, Success), ok);
        assert_eq!(
            outcome_code(&Outcome::Unmanaged, Success),
            PamResultCode::PAM_IGNORE
        );
        assert_eq!(
            outcome_code(&Outcome::Rejected, Success),
            PamResultCode::PAM_AUTH_ERR
        );
        assert_eq!(
            outcome_code(&Outcome::unavailable("x"), Success),
            PamResultCode::PAM_AUTHINFO_UNAVAIL
        );
    }
}
