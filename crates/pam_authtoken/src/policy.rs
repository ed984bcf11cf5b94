//! PAM policy: which password, which config, which helper, what each
//! outcome means as a PAM result, and what the session keeps. It talks to
//! libpam only through [`PamApi`] and to the system only through [`Host`],
//! so unit tests drive it as scripts of PAM events without root; no network
//! code at all (that is the helper's job).

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use authtoken_core::cache::{Cache, CacheError};
use authtoken_core::config::{Config, ConfigError};
use authtoken_core::log::{self, Level};
use authtoken_core::offline::{OfflineError, OfflineStore, OfflineVerifier};
use authtoken_core::options::OptionsError;
use authtoken_core::outcome::{outcome_code, Outcome, PamCode};
use authtoken_core::session::{SessionError, SessionKey};
use authtoken_core::signin::{Runner, SignIn};
use authtoken_core::username::{Username, UsernameError};
use authtoken_core::wire::{HelperAnswer, HelperRequest, WireError, MAX_PASSWORD_BYTES};
use zeroize::Zeroizing;

use crate::pam_api::{DataKey, PamApi};
use authtoken_spawn::HelperError;

const PASSWORD_PROMPT: &str = "Password: ";

/// The environment variable naming the session's token file.
pub const TOKEN_FILE_ENV: &str = "AUTHTOKEN_FILE";

/// The AuthToken of a successful handshake, kept for this PAM handle.
/// Zeroized when libpam runs the data cleanup (`Zeroizing` drop).
pub struct KeptToken {
    pub user: Username,
    pub token: Zeroizing<String>,
}

pub const TOKEN_KEY: DataKey<KeptToken> = DataKey::new("pam_authtoken.token");

/// The token file this handle's `open_session` created, which its
/// `close_session` removes. A file that already existed belongs to an
/// enclosing login session (sudo inside it) and is left in place.
pub struct OpenedSession {
    pub user: Username,
    pub path: PathBuf,
}

pub const OPENED_KEY: DataKey<OpenedSession> = DataKey::new("pam_authtoken.session");

/// The user this handle signed in offline (no token, so no token file).
pub struct SignedInOffline {
    pub user: Username,
}

pub const OFFLINE_KEY: DataKey<SignedInOffline> = DataKey::new("pam_authtoken.offline");

/// Exported instead of `AUTHTOKEN_FILE` after an offline login.
pub const OFFLINE_ENV: &str = "AUTHTOKEN_OFFLINE";

/// Everything outside the PAM handle that the policy touches. [`RealHost`]
/// is the system; tests supply their own config, cache root, helper and
/// session.
pub trait Host {
    fn load_config(&self, path: &Path) -> Result<Config, ConfigError>;
    fn run_helper(
        &self,
        helper: &Path,
        args: &[&str],
        request: &[u8],
        deadline: Duration,
    ) -> Result<HelperAnswer, HelperError>;
    /// The login session this process belongs to.
    fn login_session(&self) -> Result<SessionKey, SessionError>;
    /// The process session (shared with a forked authentication child).
    fn process_session(&self) -> Result<SessionKey, SessionError>;
    fn open_cache(&self, dir: &Path) -> Result<Cache, CacheError>;
    fn open_offline(&self, dir: &Path) -> Result<OfflineStore, OfflineError>;
    /// Whether this process is root. A caller without root (a screen
    /// locker) cannot use root's session cache or client key: it runs the
    /// setuid `authtoken-chkpwd` instead of the helper.
    fn privileged(&self) -> bool;
    /// Whether a login session still exists (`None`: cannot tell).
    fn session_alive(&self, key: &SessionKey) -> Option<bool>;
    fn log(&self, level: Level, message: &str);
}

/// The real system: the root-owned config, the helper as a child process,
/// the kernel's session ids, root's cache, syslog.
pub struct RealHost;

impl Host for RealHost {
    fn load_config(&self, path: &Path) -> Result<Config, ConfigError> {
        Config::load(path)
    }
    fn run_helper(
        &self,
        helper: &Path,
        args: &[&str],
        request: &[u8],
        deadline: Duration,
    ) -> Result<HelperAnswer, HelperError> {
        authtoken_spawn::run_helper(helper, args, request, deadline)
    }
    fn login_session(&self) -> Result<SessionKey, SessionError> {
        SessionKey::current()
    }
    fn process_session(&self) -> Result<SessionKey, SessionError> {
        SessionKey::process_session()
    }
    fn open_cache(&self, dir: &Path) -> Result<Cache, CacheError> {
        Cache::open(dir)
    }
    fn open_offline(&self, dir: &Path) -> Result<OfflineStore, OfflineError> {
        OfflineStore::open(dir)
    }
    fn session_alive(&self, key: &SessionKey) -> Option<bool> {
        key.alive(authtoken_core::session::live_audit_session_ids().as_deref())
    }
    fn privileged(&self) -> bool {
        nix::unistd::geteuid().is_root()
    }
    fn log(&self, level: Level, message: &str) {
        log::send(log::MODULE_IDENT, level, message);
    }
}

pub use authtoken_core::options::ModuleOptions;

/// Why `authenticate` ended without an outcome from the authority.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot get the user name ({})", .0.name())]
    NoUser(PamCode),
    #[error("invalid user name: {0}")]
    BadUser(#[from] UsernameError),
    #[error("{0}")]
    Options(#[from] OptionsError),
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    #[error("conversation failed ({})", .0.name())]
    Conversation(PamCode),
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
    /// The single place where failures become PAM results.
    pub fn pam_code(&self) -> PamCode {
        match self {
            AuthError::NoUser(_) | AuthError::BadUser(_) => PamCode::UserUnknown,
            AuthError::Conversation(_) => PamCode::ConvErr,
            AuthError::NoFirstPass | AuthError::EmptyPassword | AuthError::PasswordTooLong => {
                PamCode::AuthErr
            }
            AuthError::Options(_)
            | AuthError::Config(_)
            | AuthError::Request(_)
            | AuthError::Helper(_) => PamCode::AuthinfoUnavail,
        }
    }
}

/// The pam.d options, or the result a hook gives when they are unusable.
fn options_or<H: Host>(host: &H, args: &[&CStr]) -> Result<ModuleOptions, AuthError> {
    let parsed = ModuleOptions::parse(args);
    match &parsed {
        Ok(options) => {
            for unknown in &options.unknown {
                host.log(
                    Level::Warning,
                    &format!("ignoring unknown option {unknown}"),
                );
            }
        }
        Err(e) => host.log(Level::Error, &e.to_string()),
    }
    Ok(parsed?)
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

pub fn authenticate<P: PamApi, H: Host>(pam: &mut P, host: &H, args: &[&CStr]) -> PamCode {
    let started = Instant::now();
    let mut attempt = Attempt {
        user: String::new(),
        service: pam.service(),
        backend: "-",
        cached: false,
        policy_lowered: None,
    };
    let result = options_or(host, args)
        .and_then(|options| authenticate_user(pam, host, &options, &mut attempt));
    let (code, outcome_word, detail) = match &result {
        Ok((outcome, policy, _)) => {
            let detail = match outcome {
                Outcome::Unavailable { reason } | Outcome::Unreachable { reason } => {
                    format!(" reason={}", log::quote(reason))
                }
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
            format!(" reason={}", log::quote(&e.to_string())),
        ),
    };
    let level = match code {
        PamCode::Success | PamCode::Ignore => Level::Info,
        PamCode::AuthErr => Level::Warning,
        _ => Level::Error,
    };
    host.log(
        level,
        &format!(
            "authenticate user={} service={} backend={} outcome={} result={} elapsed_ms={}{}",
            log::quote(&attempt.user),
            log::quote(&attempt.service),
            attempt.backend,
            outcome_word,
            code.name(),
            started.elapsed().as_millis(),
            detail
        ),
    );
    if let Err(AuthError::Config(_)) = &result {
        pam.error_message("pam_authtoken: configuration error, see the system log");
    }
    let kept = match result {
        Ok((Outcome::Token { token }, _, user)) if code == PamCode::Success => {
            pam.set_data(TOKEN_KEY, KeptToken { user, token })
        }
        Ok((Outcome::OfflineVerified, _, user)) if code == PamCode::Success => {
            pam.set_data(OFFLINE_KEY, SignedInOffline { user })
        }
        _ => Ok(()),
    };
    match kept {
        Ok(()) => code,
        Err(_) => PamCode::BufErr,
    }
}

type Authenticated = (
    Outcome,
    authtoken_core::config::EmptyChallengePolicy,
    Username,
);

fn authenticate_user<P: PamApi, H: Host>(
    pam: &mut P,
    host: &H,
    options: &ModuleOptions,
    attempt: &mut Attempt,
) -> Result<Authenticated, AuthError> {
    let raw_user = pam.user().map_err(AuthError::NoUser)?;
    attempt.user = String::from_utf8_lossy(&raw_user).into_owned();
    let user = Username::parse(&raw_user)?;

    let config = host.load_config(&options.config_path)?;
    attempt.backend = config.backend.name();
    let (policy, lowered) = config.empty_challenge_policy();
    attempt.policy_lowered = lowered;
    debug(
        host,
        options,
        &format!("config {} loaded", options.config_path.display()),
    );

    if !host.privileged() {
        return authenticate_unprivileged(pam, host, options, &config, user, policy, attempt);
    }
    let session = session_cache(host, &config);
    let config_arg = options.config_path.to_string_lossy();
    let mut args = vec!["authenticate", "--config", &config_arg];
    if options.debug {
        args.push("--debug");
    }
    let mut runner = ModuleRunner {
        pam,
        host,
        options,
        service: &attempt.service,
        user: &user,
        helper: &config.helper,
        args: &args,
        deadline: config.kill_deadline(),
    };
    let signed_in = SignIn {
        user: &user,
        service: &attempt.service,
        offline: &config.offline,
        session: session.as_ref().map(|(cache, key)| (cache, key)),
    }
    .run(&mut runner)?;
    attempt.cached = signed_in.remembered;
    let outcome = signed_in.outcome;
    // sshd authenticates in a forked child: the token is handed to the
    // session opened in its parent through the process session.
    if let (Some((cache, _)), Outcome::Token { token }) = (&session, &outcome) {
        let handed = host
            .process_session()
            .map_err(CacheError::from)
            .and_then(|process| cache.leave_handoff(&process, &user, token));
        if let Err(e) = handed {
            host.log(Level::Warning, &format!("session cache: {e}"));
        }
    }
    Ok((outcome, policy, user))
}

/// The module's side of the root sign-in flow: the password from PAM, the
/// helper through the host, lines in the module's log.
struct ModuleRunner<'a, P: PamApi, H: Host> {
    pam: &'a mut P,
    host: &'a H,
    options: &'a ModuleOptions,
    service: &'a str,
    user: &'a Username,
    helper: &'a Path,
    args: &'a [&'a str],
    deadline: Duration,
}

impl<P: PamApi, H: Host> Runner for ModuleRunner<'_, P, H> {
    type Error = AuthError;

    fn request(
        &mut self,
        want_verifier: bool,
        verifier: Option<OfflineVerifier>,
    ) -> Result<Zeroizing<Vec<u8>>, AuthError> {
        encoded_request(
            self.pam,
            self.options,
            self.user,
            self.service,
            want_verifier,
            verifier,
        )
    }

    fn run(&mut self, request: &[u8]) -> Result<HelperAnswer, AuthError> {
        debug(
            self.host,
            self.options,
            &format!("running helper {}", self.helper.display()),
        );
        Ok(self
            .host
            .run_helper(self.helper, self.args, request, self.deadline)?)
    }

    fn open_offline(&self, dir: &Path) -> Result<OfflineStore, OfflineError> {
        self.host.open_offline(dir)
    }

    fn log(&self, level: Level, message: &str) {
        self.host.log(level, message);
    }
}

/// The password, as the request the helper reads on stdin.
fn encoded_request<P: PamApi>(
    pam: &mut P,
    options: &ModuleOptions,
    user: &Username,
    service: &str,
    want_verifier: bool,
    verifier: Option<OfflineVerifier>,
) -> Result<Zeroizing<Vec<u8>>, AuthError> {
    let password = obtain_password(pam, options)?;
    let mut request = HelperRequest::new(user, &password, service);
    request.want_verifier = want_verifier;
    request.offline = verifier;
    drop(password);
    Ok(request.encode()?)
}

/// A caller without root: `authtoken-chkpwd` (setuid root) signs in the
/// caller's own user, keeps the session's 410 marks and token itself, and
/// answers `Verified` instead of handing over the token.
fn authenticate_unprivileged<P: PamApi, H: Host>(
    pam: &mut P,
    host: &H,
    options: &ModuleOptions,
    config: &Config,
    user: Username,
    policy: authtoken_core::config::EmptyChallengePolicy,
    attempt: &mut Attempt,
) -> Result<Authenticated, AuthError> {
    // chkpwd applies the offline policy itself, as root.
    let encoded = encoded_request(pam, options, &user, &attempt.service, false, None)?;
    debug(
        host,
        options,
        &format!("not root: running {}", config.chkpwd.display()),
    );
    let answer = host.run_helper(&config.chkpwd, &[], &encoded, config.chkpwd_deadline())?;
    let outcome = match answer.outcome {
        Outcome::Token { .. } => Outcome::unavailable("authtoken-chkpwd handed out a token"),
        outcome => outcome,
    };
    Ok((outcome, policy, user))
}

/// The session cache and this process's login-session key. A cache that
/// cannot be used only costs the shortcuts, so it is logged, not fatal.
fn session_cache<H: Host>(host: &H, config: &Config) -> Option<(Cache, SessionKey)> {
    let opened = host
        .open_cache(&config.cache_dir)
        .and_then(|cache| Ok((cache, host.login_session()?)));
    match opened {
        Ok(pair) => Some(pair),
        Err(e) => {
            host.log(Level::Warning, &format!("session cache unavailable: {e}"));
            None
        }
    }
}

/// The password from an earlier module (`use_first_pass` / `try_first_pass`)
/// or from the conversation; a prompted one is stored as `PAM_AUTHTOK`.
fn obtain_password<P: PamApi>(
    pam: &mut P,
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

fn debug<H: Host>(host: &H, options: &ModuleOptions, message: &str) {
    if options.debug {
        host.log(Level::Debug, message);
    }
}

/// The validated user of this handle, if there is one.
fn current_user<P: PamApi>(pam: &mut P) -> Option<Username> {
    let raw = pam.user().ok()?;
    Username::parse(&raw).ok()
}

/// The token this handle's `authenticate` obtained for `user`, if any.
fn kept_token<P: PamApi>(pam: &P, user: &Username) -> Option<Zeroizing<String>> {
    pam.get_data(TOKEN_KEY)
        .filter(|kept| &kept.user == user)
        .map(|kept| kept.token.clone())
}

/// Whether we issued a token for the current user, in this handle or in a
/// forked authentication child of this process session.
fn authenticated_here<P: PamApi, H: Host>(pam: &mut P, host: &H, args: &[&CStr]) -> bool {
    let Some(user) = current_user(pam) else {
        return false;
    };
    if kept_token(pam, &user).is_some()
        || pam
            .get_data(OFFLINE_KEY)
            .is_some_and(|offline| offline.user == user)
    {
        return true;
    }
    // Authenticated by a forked child of this process (sshd)?
    let Ok(options) = options_or(host, args) else {
        return false;
    };
    let Ok(config) = host.load_config(&options.config_path) else {
        return false;
    };
    let handoff = host
        .open_cache(&config.cache_dir)
        .and_then(|cache| Ok((cache, host.process_session()?)));
    handoff.is_ok_and(|(cache, key)| cache.has_handoff(&key, &user))
}

/// Success for a user we issued a token for, otherwise stay out of the way.
fn ours_or_ignore<P: PamApi, H: Host>(pam: &mut P, host: &H, args: &[&CStr]) -> PamCode {
    if authenticated_here(pam, host, args) {
        PamCode::Success
    } else {
        PamCode::Ignore
    }
}

/// No credentials beyond the token to establish.
pub fn setcred<P: PamApi, H: Host>(pam: &mut P, host: &H, args: &[&CStr]) -> PamCode {
    ours_or_ignore(pam, host, args)
}

/// We hold no account policy of our own: accounts we issued a token for are
/// fine, everyone else is left to the other modules.
pub fn acct_mgmt<P: PamApi, H: Host>(pam: &mut P, host: &H, args: &[&CStr]) -> PamCode {
    ours_or_ignore(pam, host, args)
}

/// Writes the token this handle obtained into the session cache and
/// exports its path as `AUTHTOKEN_FILE`.
pub fn open_session<P: PamApi, H: Host>(pam: &mut P, host: &H, args: &[&CStr]) -> PamCode {
    let Some(user) = current_user(pam) else {
        return PamCode::Ignore;
    };
    if pam
        .get_data(OFFLINE_KEY)
        .is_some_and(|offline| offline.user == user)
    {
        // Signed in offline: no token, so no token file; say so instead.
        return match pam.putenv(&format!("{OFFLINE_ENV}=1")) {
            Ok(()) => PamCode::Success,
            Err(_) => PamCode::SessionErr,
        };
    }
    let kept = kept_token(pam, &user);
    // Without a token of this handle's own, there may be nothing to do at
    // all: failures below are only errors when we hold a token.
    let failed = if kept.is_some() {
        PamCode::SessionErr
    } else {
        PamCode::Ignore
    };
    let Ok(options) = options_or(host, args) else {
        return failed;
    };
    let config = match host.load_config(&options.config_path) {
        Ok(config) => config,
        Err(e) => {
            if kept.is_some() {
                host.log(Level::Error, &format!("open_session: config: {e}"));
            }
            return failed;
        }
    };
    let Some((cache, key)) = session_cache(host, &config) else {
        return failed;
    };
    // The token from this handle's authenticate, or else the one a forked
    // authentication child of this process session left (sshd).
    let process = host.process_session().ok();
    let token = match (kept, &process) {
        (Some(token), Some(process)) => {
            cache.discard_handoff(process, &user);
            token
        }
        (Some(token), None) => token,
        (None, Some(process)) => match cache.take_handoff(process, &user) {
            Some(token) => token,
            None => return PamCode::Ignore,
        },
        (None, None) => return PamCode::Ignore,
    };
    let existed = cache.token_path(&key, &user).is_some();
    let path = match cache.store_token(&key, &user, &token) {
        Ok(path) => path,
        Err(e) => {
            host.log(Level::Error, &format!("open_session: {e}"));
            return PamCode::SessionErr;
        }
    };
    if pam
        .putenv(&format!("{TOKEN_FILE_ENV}={}", path.display()))
        .is_err()
    {
        return PamCode::SessionErr;
    }
    if !existed {
        let opened = OpenedSession {
            user: user.clone(),
            path,
        };
        if pam.set_data(OPENED_KEY, opened).is_err() {
            return PamCode::SessionErr;
        }
    }
    cache.sweep(&|key| host.session_alive(key));
    host.log(
        Level::Info,
        &format!(
            "open_session user={} service={} session={} token cached",
            log::quote(user.as_str()),
            log::quote(&pam.service()),
            key.as_str()
        ),
    );
    PamCode::Success
}

/// Removes the token file this handle's `open_session` created.
pub fn close_session<P: PamApi, H: Host>(pam: &mut P, host: &H, args: &[&CStr]) -> PamCode {
    let Some(user) = current_user(pam) else {
        return PamCode::Ignore;
    };
    let Some(path) = pam
        .get_data(OPENED_KEY)
        .filter(|opened| opened.user == user)
        .map(|opened| opened.path.clone())
    else {
        return PamCode::Ignore;
    };
    let _ = pam.putenv(TOKEN_FILE_ENV);
    let removed = std::fs::remove_file(&path).is_ok();
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir(dir);
    }
    let cache = options_or(host, args)
        .ok()
        .and_then(|options| host.load_config(&options.config_path).ok())
        .and_then(|config| host.open_cache(&config.cache_dir).ok());
    if let Some(cache) = cache {
        cache.sweep(&|key| host.session_alive(key));
    }
    if removed {
        PamCode::Success
    } else {
        PamCode::Ignore
    }
}

/// Passwords are changed at the authority, not through PAM.
pub fn chauthtok<P: PamApi, H: Host>(_pam: &mut P, _host: &H, _args: &[&CStr]) -> PamCode {
    PamCode::Ignore
}
