//! `pam_sm_authenticate`: the password, the config, the root sign-in flow
//! of core (or `authtoken-chkpwd` for a caller without root), and one log
//! line per attempt.

use std::ffi::CStr;
use std::path::Path;
use std::time::{Duration, Instant};

use authtoken_core::cache::{CacheError, HandOff};
use authtoken_core::kinds::EmptyChallengePolicy;
use authtoken_core::log::{self, Level};
use authtoken_core::offline::{OfflineError, OfflineStore, OfflineVerifier};
use authtoken_core::outcome::{outcome_code, Outcome, PamCode};
use authtoken_core::settings::ModuleSettings;
use authtoken_core::signin::{Runner, SignIn};
use authtoken_core::username::Username;
use authtoken_core::wire::{HelperAnswer, HelperRequest, MAX_PASSWORD_BYTES};
use zeroize::Zeroizing;

use super::data::{KeptToken, SignedInOffline, OFFLINE_KEY, TOKEN_KEY};
use super::{debug, load_settings, options_or, session_cache, AuthError, Host, ModuleOptions};
use crate::pam_api::{PamApi, PasswordError};

const PASSWORD_PROMPT: &str = "Password: ";

/// What one `authenticate` call did, for its log line.
struct Attempt {
    user: String,
    service: String,
    backend: String,
    /// Answered from the session cache, without a request.
    cached: bool,
    /// Why `empty_challenge = "success"` was not in force.
    policy_lowered: Option<String>,
    /// The hand-off this sign-in left for a forked caller's session
    /// (sshd); withdrawn when this handle ends without a session taking it.
    handoff: Option<HandOff>,
}

pub fn authenticate<P: PamApi, H: Host>(pam: &mut P, host: &H, args: &[&CStr]) -> PamCode {
    let started = Instant::now();
    let mut attempt = Attempt {
        user: String::new(),
        service: pam.service(),
        backend: "-".to_owned(),
        cached: false,
        handoff: None,
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
                Outcome::NoTokenNeeded => match &attempt.policy_lowered {
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
        Ok((Outcome::Token { token, expires }, _, user)) if code == PamCode::Success => pam
            .set_data(
                TOKEN_KEY,
                KeptToken {
                    user,
                    token,
                    expires,
                    handoff: attempt.handoff.take(),
                },
            ),
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

type Authenticated = (Outcome, EmptyChallengePolicy, Username);

/// Services known to call `pam_authenticate` in a forked child and open
/// the session in its parent (OpenSSH's privilege separation). Others say
/// so with the `handoff` option.
const FORKED_AUTH_SERVICES: &[&str] = &["sshd"];

fn authenticate_user<P: PamApi, H: Host>(
    pam: &mut P,
    host: &H,
    options: &ModuleOptions,
    attempt: &mut Attempt,
) -> Result<Authenticated, AuthError> {
    let raw_user = pam.user().map_err(AuthError::NoUser)?;
    attempt.user = String::from_utf8_lossy(&raw_user).into_owned();
    let user = Username::parse(&raw_user)?;

    let settings = load_settings(host, &options.config_path)?;
    let config = &settings.values;
    attempt.backend = config.backend.clone();
    let policy = settings.empty_challenge();
    attempt.policy_lowered = if settings.current {
        config.policy_lowered.clone()
    } else {
        Some("the config changed since its module settings were written".to_owned())
    };
    debug(
        host,
        options,
        &format!("config {} loaded", options.config_path.display()),
    );

    if !host.privileged() {
        return authenticate_unprivileged(pam, host, options, config, user, policy, attempt);
    }
    let session = session_cache(host, config);
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
    // sshd authenticates in a forked child that never ends its handle: the
    // token is handed to the session opened in its parent through the
    // process session. Nobody else gets a hand-off: a handle that ends
    // withdraws its own, but sudo -v exits without pam_end.
    let hands_off = options.handoff || FORKED_AUTH_SERVICES.contains(&attempt.service.as_str());
    if let (true, Some((cache, _)), Outcome::Token { token, expires }) =
        (hands_off, &session, &outcome)
    {
        let handed = host
            .process_session()
            .map_err(CacheError::from)
            .and_then(|process| cache.leave_handoff(&process, &user, token, *expires));
        match handed {
            Ok(handoff) => attempt.handoff = Some(handoff),
            Err(e) => host.log(Level::Warning, &format!("session cache: {e}")),
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
    config: &ModuleSettings,
    user: Username,
    policy: EmptyChallengePolicy,
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

/// The password from an earlier module (`use_first_pass` / `try_first_pass`)
/// or from the conversation (the PAM library's way: [`PamApi::password`]).
fn obtain_password<P: PamApi>(
    pam: &mut P,
    options: &ModuleOptions,
) -> Result<Zeroizing<Vec<u8>>, AuthError> {
    let password = pam
        .password(options, PASSWORD_PROMPT)
        .map_err(|e| match e {
            PasswordError::NoFirstPass => AuthError::NoFirstPass,
            PasswordError::Conversation(code) => AuthError::Conversation(code),
        })?;
    check_password(password)
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
