//! Everything outside the PAM handle that the policy touches, as a trait,
//! so unit tests run the policy without root, a helper or a syslog.

use std::path::Path;
use std::time::Duration;

use authtoken_core::cache::{Cache, CacheError};
use authtoken_core::log::{self, Level};
use authtoken_core::offline::{OfflineError, OfflineStore};
use authtoken_core::session::{SessionError, SessionKey};
use authtoken_core::settings::MAX_CONFIG_BYTES;
use authtoken_core::settings::{self, ModuleSettings, SettingsError};
use authtoken_core::trust::{self, Rules, TrustError};
use authtoken_core::wire::HelperAnswer;
use authtoken_spawn::HelperError;
use zeroize::Zeroizing;

/// Everything outside the PAM handle that the policy touches. [`RealHost`]
/// is the system; tests supply their own config, cache root, helper and
/// session.
pub trait Host {
    /// The config file's text, under root's file-trust rules.
    fn read_config(&self, path: &Path) -> Result<Zeroizing<Vec<u8>>, TrustError>;
    /// The module's settings beside the config at `config`, if any.
    fn read_settings(&self, config: &Path) -> Result<Option<ModuleSettings>, SettingsError>;
    /// Runs `helper module-settings --config CONFIG`: its answer on stdout.
    fn make_settings(
        &self,
        helper: &Path,
        config: &Path,
    ) -> Result<Zeroizing<Vec<u8>>, HelperError>;
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
    /// Removes a token file `open_session` wrote (and its session
    /// directory once empty); whether the file was there.
    fn remove_token_file(&self, path: &Path) -> bool;
    /// Whether a login session still exists (`None`: cannot tell).
    fn session_alive(&self, key: &SessionKey) -> Option<bool>;
    fn log(&self, level: Level, message: &str);
}

/// The real system: the root-owned config, the helper as a child process,
/// the kernel's session ids, root's cache, syslog.
pub struct RealHost;

impl Host for RealHost {
    fn read_config(&self, path: &Path) -> Result<Zeroizing<Vec<u8>>, TrustError> {
        trust::read(path, Rules::ROOT, MAX_CONFIG_BYTES)
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
        Cache::open(dir, log::MODULE_IDENT)
    }
    fn open_offline(&self, dir: &Path) -> Result<OfflineStore, OfflineError> {
        OfflineStore::open(dir)
    }
    fn remove_token_file(&self, path: &Path) -> bool {
        authtoken_core::cache::remove_token_file(path)
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
