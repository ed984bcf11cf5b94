//! The module's settings: the few things the PAM module needs from the
//! config (where the helper and chkpwd are, the cache directory, the
//! deadlines, the offline policy, the empty-challenge policy), which root
//! tools write as a small JSON file beside the config, so that the module
//! in every PAM host parses no TOML (docs/ARCHITECTURE.md, "Module
//! settings").
//!
//! The file names the config text it was made from, in full: the module
//! uses it only while the config still says exactly that. When the config
//! has changed, a root module asks the helper to make the settings again
//! (`authtoken-helper module-settings`), which rewrites the file;
//! `check-config` as root, chkpwd and the packages' configure step write it
//! too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kinds::EmptyChallengePolicy;
use crate::offline::OfflineConfig;
use zeroize::Zeroizing;

use crate::trust::{self, Rules, TrustError};

/// The settings format's version.
pub const VERSION: u32 = 1;
/// Largest settings file (or helper answer) read: the config text and a
/// little more, JSON-escaped.
pub const MAX_SETTINGS_BYTES: usize = 512 * 1024;
/// How long the module waits for the helper to make the settings.
pub const COMPILE_DEADLINE: Duration = Duration::from_secs(10);

/// What the module needs of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleSettings {
    pub v: u32,
    /// The config text these settings were made from.
    pub source: String,
    /// `mdm` or `hem`, for the log line.
    pub backend: String,
    pub helper: PathBuf,
    pub chkpwd: PathBuf,
    pub cache_dir: PathBuf,
    pub timeout_ms: u64,
    /// The policy in force: `success` only over verified https.
    pub empty_challenge: EmptyChallengePolicy,
    /// Why a configured `success` was lowered, if it was.
    pub policy_lowered: Option<String>,
    pub offline: OfflineConfig,
}

impl ModuleSettings {
    /// Whether these settings were made from exactly `config_text`.
    pub fn made_from(&self, config_text: &[u8]) -> bool {
        self.v == VERSION && self.source.as_bytes() == config_text
    }

    pub fn kill_deadline(&self) -> Duration {
        kill_deadline(self.timeout_ms)
    }

    pub fn chkpwd_deadline(&self) -> Duration {
        chkpwd_deadline(self.timeout_ms)
    }
}

/// Where the settings of the config at `config` live (see
/// [`crate::paths::module_settings`]).
pub use crate::paths::module_settings as path_for;

/// What `authtoken-helper module-settings` answers on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Answer {
    Settings(Box<ModuleSettings>),
    /// The config is unusable; the message says where and why.
    Refused(String),
}

/// Why the settings file (or an answer) is not usable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    Untrusted(#[from] TrustError),
    #[error("{}: not module settings of this version", .0.display())]
    Malformed(PathBuf),
}

/// Reads the settings file beside `config`, if there is a trusted one.
pub fn read(config: &Path) -> Result<Option<ModuleSettings>, SettingsError> {
    let path = path_for(config);
    match trust::read(&path, Rules::ROOT, MAX_SETTINGS_BYTES as u64) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| SettingsError::Malformed(path)),
        Err(TrustError::Missing { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `settings` beside `config` (root's, never more readable than the
/// config itself), unless the file there already holds exactly these
/// settings.
pub fn write(config: &Path, settings: &ModuleSettings) -> std::io::Result<()> {
    if let Ok(Some(current)) = read(config) {
        if &current == settings {
            return Ok(());
        }
    }
    let bytes = serde_json::to_vec(settings).map_err(std::io::Error::other)?;
    let mode = config_mode(config);
    trust::write_atomic(&path_for(config), &bytes, mode & 0o644, Some((0, 0)))
}

/// The mode bits of the config at `config`.
fn config_mode(config: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(config)
        .map(|meta| meta.permissions().mode() & 0o7777)
        .unwrap_or(0o600)
}

/// Why there are no settings to work with; `E` is how running the helper
/// fails.
#[derive(Debug, thiserror::Error)]
pub enum Failure<E: std::error::Error + 'static> {
    #[error("{0}")]
    Untrusted(#[from] TrustError),
    #[error("making the module's settings: {0}")]
    Helper(#[source] E),
    /// The config is unusable, in the helper's words (file, line, fix).
    #[error("{0}")]
    Refused(String),
    #[error("the helper's module-settings answer is malformed")]
    Malformed,
    #[error(
        "no module settings beside {}: a root login, or `authtoken check-config` as root, writes them",
        .0.display()
    )]
    Missing(PathBuf),
}

/// The settings in force, and whether they were made from the config as
/// it is now.
#[derive(Debug, Clone)]
pub struct InForce {
    pub values: ModuleSettings,
    /// False: a caller without root, after the config changed, has only
    /// the last settings written.
    pub current: bool,
}

/// What the settings flow needs from the system (the module's host, or
/// chkpwd's).
pub trait Source {
    type HelperError: std::error::Error + 'static;
    /// The config's bytes, under root's file-trust rules.
    fn read_config(&self, config: &Path) -> Result<Zeroizing<Vec<u8>>, TrustError>;
    /// The settings file beside the config, if any.
    fn read_settings(&self, config: &Path) -> Result<Option<ModuleSettings>, SettingsError>;
    /// Runs `HELPER module-settings --config CONFIG`: its answer.
    fn make_settings(
        &self,
        helper: &Path,
        config: &Path,
    ) -> Result<Zeroizing<Vec<u8>>, Self::HelperError>;
    /// Whether running `helper` failed because it is not there.
    fn helper_missing(&self, error: &Self::HelperError) -> bool;
    /// Whether this process is root (only root may have the helper make them).
    fn privileged(&self) -> bool;
    fn warn(&self, message: &str);
}

/// The settings for the config at `config`: the file beside it when it was
/// made from the config as it reads now; otherwise, as root, made again by
/// the helper (the one the old settings name, else the installed one
/// `installed`), which also rewrites the file; otherwise the last ones.
/// Neither the module nor chkpwd ever parses the TOML itself.
pub fn load<S: Source>(
    source: &S,
    config: &Path,
    installed: &Path,
) -> Result<InForce, Failure<S::HelperError>> {
    let text = source.read_config(config)?;
    let stored = source.read_settings(config);
    if let Ok(Some(values)) = &stored {
        if values.made_from(&text) {
            return Ok(InForce {
                values: values.clone(),
                current: true,
            });
        }
    }
    let stored = stored
        .inspect_err(|e| source.warn(&format!("module settings ignored: {e}")))
        .ok()
        .flatten();
    if !source.privileged() {
        return match stored {
            Some(values) => Ok(InForce {
                values,
                current: false,
            }),
            None => Err(Failure::Missing(path_for(config))),
        };
    }
    let helper = stored
        .as_ref()
        .map_or(installed, |old| old.helper.as_path());
    let answer = match source.make_settings(helper, config) {
        // The old settings name a helper that is gone (moved by an
        // upgrade): the installed one makes them.
        Err(e) if helper != installed && source.helper_missing(&e) => source
            .make_settings(installed, config)
            .map_err(Failure::Helper)?,
        answer => answer.map_err(Failure::Helper)?,
    };
    match serde_json::from_slice::<Answer>(&answer) {
        Ok(Answer::Settings(values)) => Ok(InForce {
            values: *values,
            current: true,
        }),
        Ok(Answer::Refused(why)) => Err(Failure::Refused(why)),
        Err(_) => Err(Failure::Malformed),
    }
}

/// Longest `authtoken-chkpwd` waits to space out one user's attempts; a
/// longer wait is refused at once instead (so the module's deadline holds).
pub const CHKPWD_MAX_WAIT_MS: u64 = 4_000;
/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// How long the module lets the helper run before killing it: the
/// helper's own network deadline (`timeout_ms`) plus a margin, so a slow
/// authority ends in the helper's clean `Unavailable`, not a kill.
/// Saturating: the module reads `timeout_ms` from its settings file, which
/// a checked config never makes out of range but a hand edit could.
pub fn kill_deadline(timeout_ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(
        timeout_ms
            .saturating_add(1_500)
            .saturating_add(timeout_ms / 10),
    )
}

/// The same for `authtoken-chkpwd`, which may first wait out its rate
/// limit, then runs the helper under [`kill_deadline`].
pub fn chkpwd_deadline(timeout_ms: u64) -> std::time::Duration {
    kill_deadline(timeout_ms)
        .saturating_add(std::time::Duration::from_millis(CHKPWD_MAX_WAIT_MS + 1_500))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_sits_beside_the_config() {
        assert_eq!(
            path_for(Path::new("/etc/authtoken/authtoken.toml")),
            Path::new("/etc/authtoken/authtoken.toml.module.json")
        );
    }
}
