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
use std::path::Path;

use authtoken_core::cache::Cache;
use authtoken_core::log::Level;
use authtoken_core::options::OptionsError;
use authtoken_core::outcome::PamCode;
use authtoken_core::platform::HELPER as DEFAULT_HELPER_PATH;
use authtoken_core::session::SessionKey;
use authtoken_core::settings::{self, ModuleSettings, SettingsError};
use authtoken_core::trust::TrustError;
use authtoken_core::username::{Username, UsernameError};
use authtoken_core::wire::{WireError, MAX_PASSWORD_BYTES};
use authtoken_spawn::HelperError;
use zeroize::Zeroizing;

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
pub type ConfigFailure = settings::Failure<HelperError>;

/// The settings in force, and whether they were made from the config as
/// it is now.
pub(crate) struct Settings {
    pub(crate) values: ModuleSettings,
    /// False: a caller without root, after the config changed, has only
    /// the last settings written (chkpwd keeps them current).
    pub(crate) current: bool,
}

impl Settings {
    /// The empty-challenge policy: never `success` on settings that may be
    /// out of date.
    pub(crate) fn empty_challenge(&self) -> authtoken_core::kinds::EmptyChallengePolicy {
        if self.current {
            self.values.empty_challenge
        } else {
            authtoken_core::kinds::EmptyChallengePolicy::Ignore
        }
    }
}

/// The module's settings for the config at `config` (see
/// [`settings::load`]): the module never parses the TOML itself
/// (docs/ARCHITECTURE.md).
fn load_settings<H: Host>(host: &H, config: &Path) -> Result<Settings, ConfigFailure> {
    let in_force = settings::load(&HostSource(host), config, Path::new(DEFAULT_HELPER_PATH))?;
    Ok(Settings {
        values: in_force.values,
        current: in_force.current,
    })
}

/// The host as the settings flow sees it.
struct HostSource<'a, H: Host>(&'a H);

impl<H: Host> settings::Source for HostSource<'_, H> {
    type HelperError = HelperError;
    fn read_config(&self, config: &Path) -> Result<Zeroizing<Vec<u8>>, TrustError> {
        self.0.read_config(config)
    }
    fn read_settings(&self, config: &Path) -> Result<Option<ModuleSettings>, SettingsError> {
        self.0.read_settings(config)
    }
    fn make_settings(
        &self,
        helper: &Path,
        config: &Path,
    ) -> Result<Zeroizing<Vec<u8>>, HelperError> {
        self.0.make_settings(helper, config)
    }
    fn helper_missing(&self, error: &HelperError) -> bool {
        matches!(error, HelperError::Missing(_))
    }
    fn privileged(&self) -> bool {
        self.0.privileged()
    }
    fn warn(&self, message: &str) {
        self.0.log(Level::Warning, message);
    }
}
