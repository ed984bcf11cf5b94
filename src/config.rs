//! `/etc/authtoken/authtoken.toml`: parsing, validation and the file-safety
//! checks that make a tampered config fail closed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/authtoken/authtoken.toml";
pub const DEFAULT_HELPER_PATH: &str = "/usr/libexec/authtoken/authtoken-helper";
pub const DEFAULT_CACHE_DIR: &str = "/run/authtoken";
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// Which protocol the authority speaks.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Apple MDM `UserAuthenticate` check-in.
    Mdm,
    /// Encedo-HEM-style local token device.
    Hem,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Mdm => "mdm",
            Backend::Hem => "hem",
        }
    }
}

/// What a zero-length `DigestChallenge` turns into.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmptyChallengePolicy {
    /// `PAM_IGNORE`: let the rest of the stack decide.
    #[default]
    Ignore,
    /// `PAM_SUCCESS` without a token.
    Success,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub backend: Backend,
    /// MDM `CheckInURL`, or the device's base URL for `hem`.
    pub url: String,
    /// Deadline for the whole handshake, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// PEM bundle the server certificate must chain to (else the system roots).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain of the device's MDM identity (mutual TLS).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the device's MDM identity.
    pub client_key: Option<PathBuf>,
    /// Device id sent as `UDID`; default from `/etc/machine-id`.
    pub udid: Option<String>,
    #[serde(default)]
    pub empty_challenge: EmptyChallengePolicy,
    #[serde(default = "default_helper")]
    pub helper: PathBuf,
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// Allow `http://` to a non-loopback host. Off: the password-derived
    /// digest would cross the network in the clear.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Refuse a SCRAM AuthToken without a valid `ServerSignature`.
    #[serde(default = "default_true")]
    pub require_server_signature: bool,
    /// Highest SCRAM iteration count we will compute (a hostile server could
    /// otherwise pin the CPU).
    #[serde(default = "default_max_scram_iterations")]
    pub max_scram_iterations: u32,
    /// Per-user `UserID` GUIDs that override the derived UUIDv5.
    #[serde(default)]
    pub user_ids: BTreeMap<String, String>,
    #[serde(default)]
    pub hem: HemConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HemConfig {
    /// `scope` claim requested from the device.
    #[serde(default = "default_hem_scope")]
    pub scope: String,
    /// Device label → PAM user name, for devices labelled otherwise.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Default for HemConfig {
    fn default() -> Self {
        HemConfig {
            scope: default_hem_scope(),
            labels: BTreeMap::new(),
        }
    }
}

fn default_timeout_ms() -> u64 {
    10_000
}
fn default_helper() -> PathBuf {
    PathBuf::from(DEFAULT_HELPER_PATH)
}
fn default_cache_dir() -> PathBuf {
    PathBuf::from(DEFAULT_CACHE_DIR)
}
fn default_true() -> bool {
    true
}
fn default_max_scram_iterations() -> u32 {
    10_000_000
}
fn default_hem_scope() -> String {
    "master".to_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is unsafe: {why}")]
    Unsafe { path: PathBuf, why: String },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Reads and validates the config, refusing a file (or its directory) that
    /// someone other than root could have written.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_trusted_file(path, MAX_CONFIG_BYTES)?;
        let config = Config::parse(&text).map_err(|message| ConfigError::Syntax {
            path: path.to_owned(),
            message,
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    /// Parses TOML text; unknown keys are errors.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.message().replace('\n', " "))
    }

    /// Semantic checks the TOML types cannot express.
    pub fn validate(&self) -> Result<(), String> {
        let endpoint = Endpoint::parse(&self.url)?;
        if !endpoint.tls && !endpoint.loopback && !self.allow_insecure_http {
            return Err(format!(
                "url {} is plain http to a non-loopback host; use https or set allow_insecure_http = true",
                self.url
            ));
        }
        if !(100..=300_000).contains(&self.timeout_ms) {
            return Err("timeout_ms must be between 100 and 300000".into());
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err("client_cert and client_key must be set together".into());
        }
        if self.max_scram_iterations < crate::protocol::scram::MIN_ITERATIONS {
            return Err(format!(
                "max_scram_iterations must be at least {}",
                crate::protocol::scram::MIN_ITERATIONS
            ));
        }
        if !self.helper.is_absolute() {
            return Err("helper must be an absolute path".into());
        }
        if !self.cache_dir.is_absolute() {
            return Err("cache_dir must be an absolute path".into());
        }
        for (user, guid) in &self.user_ids {
            uuid::Uuid::parse_str(guid)
                .map_err(|_| format!("user_ids.{user} is not a UUID: {guid}"))?;
        }
        if self.hem.scope.is_empty() {
            return Err("hem.scope must not be empty".into());
        }
        Ok(())
    }

    /// How long the module lets the helper run before killing it: the
    /// helper's own network deadline plus a margin, so a slow authority ends
    /// in the helper's clean `Unavailable`, not a kill.
    pub fn kill_deadline(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms + 1_500 + self.timeout_ms / 10)
    }
}

/// The parts of `url` that policy looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub loopback: bool,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: http::Uri = url.parse().map_err(|_| format!("url {url} is not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("url {url} must start with https:// or http://")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("url {url} has no host"))?
            .to_owned();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = bare.eq_ignore_ascii_case("localhost")
            || bare
                .parse::<std::net::IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false);
        Ok(Endpoint {
            tls,
            host,
            loopback,
        })
    }
}

/// Opens `path` without following a final symlink and insists that it is a
/// regular root-owned file that neither group nor others can write, in a
/// directory of the same kind. Returns its contents.
pub fn read_trusted_file(path: &Path, max_bytes: u64) -> Result<String, ConfigError> {
    let unsafe_file = |why: String| ConfigError::Unsafe {
        path: path.to_owned(),
        why,
    };
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| ConfigError::Open {
            path: path.to_owned(),
            source,
        })?;
    let meta = file.metadata().map_err(|source| ConfigError::Open {
        path: path.to_owned(),
        source,
    })?;
    check_root_owned(&meta, "file").map_err(unsafe_file)?;
    if !meta.is_file() {
        return Err(unsafe_file("not a regular file".into()));
    }
    if meta.len() > max_bytes {
        return Err(unsafe_file(format!("larger than {max_bytes} bytes")));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let dir_meta = std::fs::metadata(dir).map_err(|source| ConfigError::Open {
            path: dir.to_owned(),
            source,
        })?;
        check_root_owned(&dir_meta, "directory").map_err(unsafe_file)?;
    }
    let mut text = String::new();
    file.take(max_bytes)
        .read_to_string(&mut text)
        .map_err(|source| ConfigError::Open {
            path: path.to_owned(),
            source,
        })?;
    Ok(text)
}

/// Root-owned and not writable by group or others.
pub fn check_root_owned(meta: &std::fs::Metadata, what: &str) -> Result<(), String> {
    if meta.uid() != 0 {
        return Err(format!("{what} is owned by uid {}, not root", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{what} is group- or world-writable (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c =
            Config::parse("backend = \"mdm\"\nurl = \"https://mdm.example/checkin\"\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.timeout_ms, 10_000);
        assert_eq!(c.empty_challenge, EmptyChallengePolicy::Ignore);
        assert_eq!(c.helper, PathBuf::from(DEFAULT_HELPER_PATH));
        assert!(c.require_server_signature);
        assert_eq!(c.hem.scope, "master");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::parse("backend = \"mdm\"\nurl = \"https://x/\"\nurll = 1\n").unwrap_err();
        assert!(err.contains("urll"), "{err}");
        assert!(Config::parse("backend = \"ldap\"\nurl = \"https://x/\"\n").is_err());
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let parse = |url: &str, insecure: bool| {
            Config::parse(&format!(
                "backend = \"mdm\"\nurl = \"{url}\"\nallow_insecure_http = {insecure}\n"
            ))
            .unwrap()
            .validate()
        };
        assert!(parse("http://127.0.0.1:8080/checkin", false).is_ok());
        assert!(parse("http://[::1]:8080/", false).is_ok());
        assert!(parse("http://localhost/", false).is_ok());
        assert!(parse("http://mdm.example/checkin", false).is_err());
        assert!(parse("http://mdm.example/checkin", true).is_ok());
        assert!(parse("ftp://mdm.example/", true).is_err());
    }

    #[test]
    fn kill_deadline_exceeds_network_deadline() {
        let c =
            Config::parse("backend = \"mdm\"\nurl = \"https://x/\"\ntimeout_ms = 2000\n").unwrap();
        assert!(c.kill_deadline() > std::time::Duration::from_millis(c.timeout_ms));
    }
}
