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

use crate::config::{self, Config, EmptyChallengePolicy, OfflineConfig};
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
    /// The settings of `config`, parsed from `source`.
    pub fn of(config: &Config, source: &str) -> ModuleSettings {
        let (empty_challenge, lowered) = config.empty_challenge_policy();
        ModuleSettings {
            v: VERSION,
            source: source.to_owned(),
            backend: config.backend.name().to_owned(),
            helper: config.helper.clone(),
            chkpwd: config.chkpwd.clone(),
            cache_dir: config.cache_dir.clone(),
            timeout_ms: config.timeout_ms,
            empty_challenge,
            policy_lowered: lowered.map(str::to_owned),
            offline: config.offline.clone(),
        }
    }

    /// Whether these settings were made from exactly `config_text`.
    pub fn made_from(&self, config_text: &[u8]) -> bool {
        self.v == VERSION && self.source.as_bytes() == config_text
    }

    pub fn kill_deadline(&self) -> Duration {
        config::kill_deadline(self.timeout_ms)
    }

    pub fn chkpwd_deadline(&self) -> Duration {
        config::chkpwd_deadline(self.timeout_ms)
    }
}

/// Where the settings of the config at `config` live: beside it, as
/// `NAME.module.json` (`/etc/authtoken/authtoken.toml.module.json`).
pub fn path_for(config: &Path) -> PathBuf {
    let mut name = config.file_name().unwrap_or_default().to_owned();
    name.push(".module.json");
    config.with_file_name(name)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "backend = \"mdm\"\nurl = \"https://x/\"\nempty_challenge = \"success\"\n";

    #[test]
    fn settings_carry_what_the_module_needs_and_their_source() {
        let config = Config::parse(TEXT).unwrap();
        let settings = ModuleSettings::of(&config, TEXT);
        assert!(settings.made_from(TEXT.as_bytes()));
        assert!(!settings.made_from(b"backend = \"hem\"\n"));
        assert_eq!(settings.backend, "mdm");
        assert_eq!(settings.empty_challenge, EmptyChallengePolicy::Success);
        assert_eq!(settings.kill_deadline(), config.kill_deadline());
        let json = serde_json::to_vec(&Answer::Settings(Box::new(settings.clone()))).unwrap();
        match serde_json::from_slice::<Answer>(&json).unwrap() {
            Answer::Settings(back) => assert_eq!(*back, settings),
            Answer::Refused(why) => panic!("{why}"),
        }
    }

    #[test]
    fn a_lowered_policy_arrives_lowered() {
        let text = "backend = \"mdm\"\nurl = \"http://x/\"\nallow_insecure_http = true\nempty_challenge = \"success\"\n";
        let settings = ModuleSettings::of(&Config::parse(text).unwrap(), text);
        assert_eq!(settings.empty_challenge, EmptyChallengePolicy::Ignore);
        assert!(settings.policy_lowered.is_some());
    }

    #[test]
    fn the_file_sits_beside_the_config() {
        assert_eq!(
            path_for(Path::new("/etc/authtoken/authtoken.toml")),
            Path::new("/etc/authtoken/authtoken.toml.module.json")
        );
    }
}
