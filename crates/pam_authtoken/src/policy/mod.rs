//! PAM policy: which password, which config, which helper, what each
//! outcome means as a PAM result, and what the session keeps. It talks to
//! libpam only through [`PamApi`] and to the system only through [`Host`],
//! so unit tests drive it as scripts of PAM events without root; no network
//! code at all (that is the helper's job).
//!
//! [`host`] is the seam to the system, [`auth`] the `authenticate` hook,
//! [`session`] the hooks after it, [`data`] what a handle keeps between
//! them.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use authtoken_core::cache::Cache;
use authtoken_core::config::DEFAULT_HELPER_PATH;
use authtoken_core::log::Level;
use authtoken_core::options::OptionsError;
use authtoken_core::outcome::PamCode;
use authtoken_core::session::SessionKey;
use authtoken_core::settings::{self, ModuleSettings};
use authtoken_core::trust::TrustError;
use authtoken_core::username::{Username, UsernameError};
use authtoken_core::wire::{WireError, MAX_PASSWORD_BYTES};
use authtoken_spawn::HelperError;

use crate::pam_api::PamApi;

mod auth;
#[allow(unsafe_code)]
mod data;
mod host;
mod session;

pub use auth::authenticate;
pub use data::{KeptToken, OpenedSession, SignedInOffline, OFFLINE_KEY, OPENED_KEY, TOKEN_KEY};
pub use host::{Host, RealHost};
pub use session::{
    acct_mgmt, chauthtok, close_session, open_session, setcred, EXPIRES_ENV, OFFLINE_ENV,
    TOKEN_FILE_ENV,
};

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
    Config(#[from] ConfigFailure),
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

/// The session cache and this process's login-session key. A cache that
/// cannot be used only costs the shortcuts, so it is logged, not fatal.
fn session_cache<H: Host>(host: &H, settings: &ModuleSettings) -> Option<(Cache, SessionKey)> {
    let opened = host
        .open_cache(&settings.cache_dir)
        .and_then(|cache| Ok((cache, host.login_session()?)));
    match opened {
        Ok(pair) => Some(pair),
        Err(e) => {
            host.log(Level::Warning, &format!("session cache unavailable: {e}"));
            None
        }
    }
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

/// Why the module has no settings to work with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFailure {
    #[error("{0}")]
    Untrusted(#[from] TrustError),
    #[error("making the module's settings: {0}")]
    Helper(#[from] HelperError),
    /// The config is unusable, in the helper's words (file, line, fix).
    #[error("{0}")]
    Refused(String),
    #[error("the helper's module-settings answer is malformed")]
    Malformed,
    #[error(
        "no module settings beside {}: a root login, or `authtoken-helper check-config` as root, writes them",
        .0.display()
    )]
    Missing(PathBuf),
}

/// The settings in force, and whether they were made from the config as
/// it is now.
pub(crate) struct Settings {
    pub(crate) values: ModuleSettings,
    /// False: a caller without root, after the config changed, has only
    /// the last settings written (chkpwd reads the config itself).
    pub(crate) current: bool,
}

impl Settings {
    /// The empty-challenge policy: never `success` on settings that may be
    /// out of date.
    pub(crate) fn empty_challenge(&self) -> authtoken_core::config::EmptyChallengePolicy {
        if self.current {
            self.values.empty_challenge
        } else {
            authtoken_core::config::EmptyChallengePolicy::Ignore
        }
    }
}

/// The module's settings for the config at `config`: the file beside it
/// when it was made from the config as it reads now; otherwise, as root,
/// made again by the helper (the one the old settings name, else the
/// installed one), which also rewrites the file; otherwise the last ones.
/// The module never parses the TOML itself (docs/ARCHITECTURE.md).
fn load_settings<H: Host>(host: &H, config: &Path) -> Result<Settings, ConfigFailure> {
    let text = host.read_config(config)?;
    let stored = host.read_settings(config);
    if let Ok(Some(values)) = &stored {
        if values.made_from(&text) {
            return Ok(Settings {
                values: values.clone(),
                current: true,
            });
        }
    }
    let stored = stored
        .inspect_err(|e| host.log(Level::Warning, &format!("module settings ignored: {e}")))
        .ok()
        .flatten();
    if !host.privileged() {
        return match stored {
            Some(values) => Ok(Settings {
                values,
                current: false,
            }),
            None => Err(ConfigFailure::Missing(settings::path_for(config))),
        };
    }
    let installed = Path::new(DEFAULT_HELPER_PATH);
    let helper = stored
        .as_ref()
        .map_or(installed, |old| old.helper.as_path());
    let answer = match host.make_settings(helper, config) {
        // The old settings name a helper that is gone (moved by an
        // upgrade): the installed one makes them.
        Err(HelperError::Missing(_)) if helper != installed => {
            host.make_settings(installed, config)?
        }
        answer => answer?,
    };
    match serde_json::from_slice::<settings::Answer>(&answer) {
        Ok(settings::Answer::Settings(values)) => Ok(Settings {
            values: *values,
            current: true,
        }),
        Ok(settings::Answer::Refused(why)) => Err(ConfigFailure::Refused(why)),
        Err(_) => Err(ConfigFailure::Malformed),
    }
}
