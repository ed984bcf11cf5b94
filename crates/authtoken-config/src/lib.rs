//! `/etc/authtoken/authtoken.toml`: the client's config, checked. The file
//! passes [`authtoken_core::trust`] first, so a tampered config fails
//! closed; then [`raw`] is what serde reads, [`Config`] is what every rule
//! let through (only a checked config exists), [`error`] says why a text is
//! not one, and [`weaknesses`] what a valid one trades away.
//!
//! Its own crate, so that what runs setuid (`authtoken-chkpwd`) and what
//! every PAM host loads (the module) carry no TOML parser: they read the
//! module settings the root tools write ([`authtoken_core::settings`]).

pub mod error;
mod raw;
pub mod weaknesses;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use authtoken_core::kinds::{
    ChannelBindingPolicy, EmptyChallengePolicy, RestFlavor, Scheme, DEFAULT_TOKEN_DURATION,
    MAX_TOKEN_DURATION, SCRAM_MIN_ITERATIONS,
};
use authtoken_core::offline::OfflineConfig;
use authtoken_core::settings::{self, ModuleSettings, MAX_CONFIG_BYTES};
use authtoken_core::trust::{self, Rules};
use authtoken_core::username::Username;
use serde::Deserialize;

pub use error::{ConfigError, Invalid, ParseError, TextError};
use raw::{RawConfig, RawDirectory};

/// One authority's URL, parsed once: an `http://` or `https://` URL with a
/// host. Whether it is https is known from here on, never re-parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    url: String,
    https: bool,
}

impl Authority {
    pub fn parse(url: &str) -> Result<Authority, Invalid> {
        let uri: http::Uri = url.parse().map_err(|_| Invalid::NotAUrl(url.to_owned()))?;
        if uri.host().is_none() {
            return Err(Invalid::NoHost(url.to_owned()));
        }
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(Invalid::Scheme(url.to_owned())),
        };
        Ok(Authority {
            url: url.to_owned(),
            https,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    pub fn is_https(&self) -> bool {
        self.https
    }
}

impl std::fmt::Display for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// Which protocol the authority speaks.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Apple MDM `UserAuthenticate` check-in.
    Mdm,
    /// Encedo-HEM-style local token device.
    Hem,
    /// A web application's "authenticate -> session token" API, which
    /// takes the password itself (`[rest]`, seeds 002 and 003).
    Rest,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Mdm => "mdm",
            Backend::Hem => "hem",
            Backend::Rest => "rest",
        }
    }
}

/// `[rest]`: the token API of backend `rest`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    /// Required with backend `rest`.
    pub flavor: Option<RestFlavor>,
    /// The session token's life asked for, in seconds (1 to 86400).
    #[serde(default = "raw::default_token_duration")]
    pub token_duration: u32,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            flavor: None,
            token_duration: DEFAULT_TOKEN_DURATION,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HemConfig {
    /// `scope` claim requested from the device.
    #[serde(default = "raw::default_hem_scope")]
    pub scope: String,
    /// Device label → PAM user name, for devices labelled otherwise.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The device identity key (`eid`) expected; another device is refused.
    pub eid: Option<String>,
}

impl Default for HemConfig {
    fn default() -> Self {
        HemConfig {
            scope: raw::default_hem_scope(),
            labels: BTreeMap::new(),
            eid: None,
        }
    }
}

/// `/etc/authtoken/authtoken.toml`, checked: only a [`Config`] that passed
/// every rule exists. Fields mean what the keys of the same name do
/// (`conf/authtoken.toml`, authtoken.toml(5)).
#[derive(Debug, Clone)]
pub struct Config {
    pub backend: Backend,
    /// Tried in order (the next only when one cannot be connected to).
    pub url: Vec<Authority>,
    pub connect_timeout_ms: u64,
    pub timeout_ms: u64,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub udid: Option<String>,
    pub empty_challenge: EmptyChallengePolicy,
    pub helper: PathBuf,
    pub cache_dir: PathBuf,
    pub helper_user: Username,
    pub chkpwd: PathBuf,
    pub allow_insecure_http: bool,
    pub schemes: Vec<Scheme>,
    pub require_server_signature: bool,
    pub channel_binding: ChannelBindingPolicy,
    pub min_scram_iterations: u32,
    pub max_scram_iterations: u32,
    pub user_ids: BTreeMap<String, uuid::Uuid>,
    pub hem: HemConfig,
    pub rest: RestConfig,
    pub offline: OfflineConfig,
    pub directory: DirectoryConfig,
}

/// `[directory]`: network users, synced from the authority's directory
/// into the NSS cache by `authtoken sync` (docs/guide/network-users.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryConfig {
    pub enabled: bool,
    /// Tried in order, like `url`; by default each authority's URL with
    /// its last path segment replaced by `directory`.
    pub url: Vec<Authority>,
    /// How old the cache may grow before the timer's `sync --if-due`
    /// fetches again.
    pub refresh_minutes: u64,
    /// What the machine decides about every record: the ids it may have
    /// (others are dropped with a log line), where homes live, the shell
    /// of a record whose own is not in `/etc/shells`, reserved names.
    pub rules: authtoken_directory::MachineRules,
}

/// The directory URL of an authority URL: its last path segment replaced
/// by `directory` (docs/PROTOCOL.md, "The directory").
pub fn directory_url(url: &Authority) -> Authority {
    sibling_url(url, "directory")
}

/// An URL next to an authority's check-in URL: its last path segment
/// replaced by `path` (`directory`, `enroll`, `enroll/ca`, `enroll/renew`).
pub fn sibling_url(url: &Authority, path: &str) -> Authority {
    let text = url.as_str();
    // A query or fragment belongs to the check-in URL, not its siblings'.
    let base = text.split(['?', '#']).next().unwrap_or(text);
    let sibling = match base.rfind('/') {
        // "https://host" has no path: its slashes are the scheme's.
        Some(i) if i > base.find("//").map_or(0, |j| j + 1) => format!("{}{path}", &base[..=i]),
        _ => format!("{base}/{path}"),
    };
    Authority {
        url: sibling,
        https: url.https,
    }
}

impl Config {
    /// Reads and checks the config, refusing a file (or its directory) that
    /// someone other than root could have written.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_source(path, Rules::ROOT).map(|(config, _)| config)
    }

    /// Reads and checks the config under the given file-trust rules (root's
    /// for every caller but tests), with the text it was parsed from (what
    /// the module's settings are checked against, see [`authtoken_core::settings`]).
    pub fn load_source(
        path: &Path,
        rules: Rules,
    ) -> Result<(Config, zeroize::Zeroizing<String>), ConfigError> {
        let text = trust::read_text(path, rules, MAX_CONFIG_BYTES)?;
        let config = Config::parse(&text).map_err(|error| match error {
            TextError::Syntax(error) => ConfigError::Syntax {
                path: path.to_owned(),
                error,
            },
            TextError::Invalid(error) => ConfigError::Invalid {
                path: path.to_owned(),
                error,
            },
        })?;
        Ok((config, text))
    }

    /// Parses and checks TOML text; unknown keys are errors, and a syntax
    /// error says where (line and column), which key, and how to fix it
    /// when that is clear.
    pub fn parse(text: &str) -> Result<Config, TextError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| TextError::Syntax(ParseError::new(text, &e)))?;
        Config::try_from(raw).map_err(TextError::Invalid)
    }

    /// The authorities, as one line for messages.
    pub fn url_list(&self) -> String {
        let urls: Vec<&str> = self.url.iter().map(Authority::as_str).collect();
        urls.join(", ")
    }

    /// The empty-challenge policy in force, and why it was lowered: a
    /// zero-length challenge proves nothing, so it may only grant a login
    /// when the peer is the authority's verified TLS identity.
    pub fn empty_challenge_policy(&self) -> (EmptyChallengePolicy, Option<&'static str>) {
        match self.empty_challenge {
            EmptyChallengePolicy::Success if !self.url.iter().all(Authority::is_https) => (
                EmptyChallengePolicy::Ignore,
                Some("empty_challenge = \"success\" applies only over verified https"),
            ),
            policy => (policy, None),
        }
    }

    /// How long the module lets the helper run before killing it: the
    /// helper's own network deadline plus a margin, so a slow authority ends
    /// in the helper's clean `Unavailable`, not a kill.
    pub fn kill_deadline(&self) -> std::time::Duration {
        settings::kill_deadline(self.timeout_ms)
    }

    /// The same for `authtoken-chkpwd`, which may first wait out its rate
    /// limit, then runs the helper under `kill_deadline`.
    pub fn chkpwd_deadline(&self) -> std::time::Duration {
        settings::chkpwd_deadline(self.timeout_ms)
    }

    /// What the module needs of this config, made from `source` (its text):
    /// the settings root tools write beside it (see
    /// [`authtoken_core::settings`]).
    pub fn module_settings(&self, source: &str) -> ModuleSettings {
        let (empty_challenge, lowered) = self.empty_challenge_policy();
        ModuleSettings {
            v: settings::VERSION,
            source: source.to_owned(),
            backend: self.backend.name().to_owned(),
            helper: self.helper.clone(),
            chkpwd: self.chkpwd.clone(),
            cache_dir: self.cache_dir.clone(),
            timeout_ms: self.timeout_ms,
            empty_challenge,
            policy_lowered: lowered.map(str::to_owned),
            offline: self.offline.clone(),
        }
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = Invalid;

    /// The rules the TOML types cannot express.
    fn try_from(raw: RawConfig) -> Result<Config, Invalid> {
        let url = raw
            .url
            .into_vec()
            .iter()
            .map(|url| Authority::parse(url))
            .collect::<Result<Vec<_>, _>>()?;
        if url.is_empty() {
            return Err(Invalid::NoAuthority);
        }
        if let Some(plain) = url.iter().find(|url| !url.is_https()) {
            if raw.backend == Backend::Rest {
                return Err(Invalid::RestPlainHttp(plain.to_string()));
            }
            if !raw.allow_insecure_http {
                return Err(Invalid::PlainHttp(plain.to_string()));
            }
        }
        if raw.backend == Backend::Rest && raw.rest.flavor.is_none() {
            return Err(Invalid::RestFlavor);
        }
        if !(1..=MAX_TOKEN_DURATION).contains(&raw.rest.token_duration) {
            return Err(Invalid::RestTokenDuration);
        }
        if !(100..=raw.timeout_ms).contains(&raw.connect_timeout_ms) {
            return Err(Invalid::ConnectTimeout);
        }
        if !(100..=300_000).contains(&raw.timeout_ms) {
            return Err(Invalid::Timeout);
        }
        if raw.client_cert.is_some() != raw.client_key.is_some() {
            return Err(Invalid::HalfClientIdentity);
        }
        if raw.min_scram_iterations < SCRAM_MIN_ITERATIONS {
            return Err(Invalid::MinIterations);
        }
        if raw.max_scram_iterations < raw.min_scram_iterations {
            return Err(Invalid::MaxIterations);
        }
        if raw.schemes.is_empty() {
            return Err(Invalid::NoScheme);
        }
        let absolute = |path: &Path, name: &str| {
            if path.is_absolute() {
                Ok(())
            } else {
                Err(Invalid::RelativePath(name.to_owned()))
            }
        };
        for path in [&raw.ca_file, &raw.client_cert, &raw.client_key]
            .into_iter()
            .flatten()
        {
            absolute(path, &path.display().to_string())?;
        }
        absolute(&raw.helper, "helper")?;
        absolute(&raw.chkpwd, "chkpwd")?;
        absolute(&raw.cache_dir, "cache_dir")?;
        absolute(&raw.offline.dir, "offline.dir")?;
        let helper_user = Username::parse(raw.helper_user.as_bytes())
            .ok()
            .filter(|user| user.as_str() != "root")
            .ok_or(Invalid::HelperUser)?;
        let user_ids = raw
            .user_ids
            .into_iter()
            .map(|(user, value)| match uuid::Uuid::parse_str(&value) {
                Ok(id) => Ok((user, id)),
                Err(_) => Err(Invalid::UserId { user, value }),
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        if raw.hem.scope.is_empty() {
            return Err(Invalid::HemScope);
        }
        if raw.hem.eid.as_deref() == Some("") {
            return Err(Invalid::HemEid);
        }
        if raw.offline.max_failures == 0 {
            return Err(Invalid::OfflineFailures);
        }
        let directory =
            DirectoryConfig::check(raw.directory, &url, raw.backend, raw.allow_insecure_http)?;
        Ok(Config {
            backend: raw.backend,
            url,
            connect_timeout_ms: raw.connect_timeout_ms,
            timeout_ms: raw.timeout_ms,
            ca_file: raw.ca_file,
            client_cert: raw.client_cert,
            client_key: raw.client_key,
            udid: raw.udid,
            empty_challenge: raw.empty_challenge,
            helper: raw.helper,
            cache_dir: raw.cache_dir,
            helper_user,
            chkpwd: raw.chkpwd,
            allow_insecure_http: raw.allow_insecure_http,
            schemes: raw.schemes,
            require_server_signature: raw.require_server_signature,
            channel_binding: raw.channel_binding,
            min_scram_iterations: raw.min_scram_iterations,
            max_scram_iterations: raw.max_scram_iterations,
            user_ids,
            hem: raw.hem,
            rest: raw.rest,
            offline: raw.offline,
            directory,
        })
    }
}

impl DirectoryConfig {
    fn check(
        raw: RawDirectory,
        authorities: &[Authority],
        backend: Backend,
        allow_insecure_http: bool,
    ) -> Result<DirectoryConfig, Invalid> {
        let url = match raw.url {
            Some(urls) => urls
                .into_vec()
                .iter()
                .map(|url| Authority::parse(url))
                .collect::<Result<Vec<_>, _>>()?,
            None if backend == Backend::Mdm => authorities.iter().map(directory_url).collect(),
            None => Vec::new(),
        };
        if raw.enabled && url.is_empty() {
            return Err(Invalid::DirectoryUrl);
        }
        if let Some(plain) = url.iter().find(|url| !url.is_https()) {
            if !allow_insecure_http {
                return Err(Invalid::PlainHttp(plain.to_string()));
            }
        }
        let refresh_minutes = raw.refresh_minutes.unwrap_or(15);
        if !(1..=10_080).contains(&refresh_minutes) {
            return Err(Invalid::DirectoryRefresh);
        }
        let defaults = authtoken_directory::Ranges::DEFAULT;
        let min_uid = raw.min_uid.unwrap_or(defaults.min_uid);
        let max_uid = raw.max_uid.unwrap_or(defaults.max_uid.max(min_uid));
        let min_gid = raw.min_gid.unwrap_or(min_uid);
        let max_gid = raw.max_gid.unwrap_or(max_uid.max(min_gid));
        // Never 0 (root), never -1 (the "no change" id of chown(2)).
        let ok = |min: u32, max: u32| min >= 1 && min <= max && max < u32::MAX;
        if !ok(min_uid, max_uid) || !ok(min_gid, max_gid) {
            return Err(Invalid::DirectoryRange);
        }
        let path = |value: Option<String>, default: &str, key: &'static str| {
            let value = value.unwrap_or_else(|| default.to_owned());
            if authtoken_directory::clean_absolute_path(&value) {
                Ok(value)
            } else {
                Err(Invalid::DirectoryPath(key))
            }
        };
        let home_prefix = path(
            raw.home_prefix,
            authtoken_directory::DEFAULT_HOME_PREFIX,
            "directory.home_prefix",
        )?;
        let default_shell = path(
            raw.default_shell,
            authtoken_directory::DEFAULT_SHELL,
            "directory.default_shell",
        )?;
        Ok(DirectoryConfig {
            enabled: raw.enabled,
            url,
            refresh_minutes,
            rules: authtoken_directory::MachineRules {
                ranges: authtoken_directory::Ranges {
                    min_uid,
                    max_uid,
                    min_gid,
                    max_gid,
                },
                home_prefix,
                default_shell,
                reserved_names: raw.reserved_names,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authtoken_core::platform::HELPER as DEFAULT_HELPER_PATH;
    use authtoken_core::settings::{chkpwd_deadline, kill_deadline, Answer};
    use authtoken_core::trust::TrustError;

    const TEXT: &str = "backend = \"mdm\"\nurl = \"https://x/\"\nempty_challenge = \"success\"\n";

    #[test]
    fn settings_carry_what_the_module_needs_and_their_source() {
        let config = Config::parse(TEXT).unwrap();
        let settings = config.module_settings(TEXT);
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
        let settings = Config::parse(text).unwrap().module_settings(text);
        assert_eq!(settings.empty_challenge, EmptyChallengePolicy::Ignore);
        assert!(settings.policy_lowered.is_some());
    }

    #[test]
    fn the_directory_url_replaces_the_last_path_segment() {
        let url = |text: &str| directory_url(&Authority::parse(text).unwrap()).to_string();
        assert_eq!(
            url("https://mdm.example:8443/mdm/checkin"),
            "https://mdm.example:8443/mdm/directory"
        );
        assert_eq!(
            url("https://mdm.example/checkin"),
            "https://mdm.example/directory"
        );
        assert_eq!(
            url("https://mdm.example/mdm/"),
            "https://mdm.example/mdm/directory"
        );
        assert_eq!(url("https://mdm.example"), "https://mdm.example/directory");
        assert_eq!(
            url("https://mdm.example/mdm/checkin?x=1#y"),
            "https://mdm.example/mdm/directory"
        );
    }

    #[test]
    fn the_directory_table_has_defaults_and_limits() {
        let with = |extra: &str| {
            Config::parse(&format!(
                "backend = \"mdm\"\nurl = [\"https://a/mdm/checkin\", \"https://b/checkin\"]\n{extra}\n"
            ))
        };
        let c = with("").unwrap().directory;
        assert!(!c.enabled);
        assert_eq!(c.refresh_minutes, 15);
        let urls: Vec<_> = c.url.iter().map(|u| u.to_string()).collect();
        assert_eq!(urls, ["https://a/mdm/directory", "https://b/directory"]);
        assert_eq!(
            c.rules.ranges,
            authtoken_directory::Ranges {
                min_uid: 10_000,
                max_uid: 60_000,
                min_gid: 10_000,
                max_gid: 60_000
            },
            "the documented defaults"
        );
        let c = with("[directory]\nenabled = true\nurl = \"https://dir/x\"\nmin_uid = 70000\n")
            .unwrap()
            .directory;
        assert_eq!(c.url[0].as_str(), "https://dir/x");
        assert_eq!(
            (c.rules.ranges.min_uid, c.rules.ranges.max_uid),
            (70_000, 70_000)
        );
        assert_eq!(
            (c.rules.ranges.min_gid, c.rules.ranges.max_gid),
            (70_000, 70_000)
        );
        let defaults = with("").unwrap().directory.rules;
        assert_eq!(
            (
                defaults.home_prefix.as_str(),
                defaults.default_shell.as_str()
            ),
            ("/home", "/bin/sh")
        );
        assert!(defaults.reserved_names.is_empty());
        let c = with(
            "[directory]\nhome_prefix = \"/srv/homes\"\ndefault_shell = \"/usr/sbin/nologin\"\n\
             reserved_names = [\"payroll\"]",
        )
        .unwrap()
        .directory
        .rules;
        assert_eq!(c.home_prefix, "/srv/homes");
        assert_eq!(c.default_shell, "/usr/sbin/nologin");
        assert_eq!(c.reserved_names, ["payroll"]);
        for (extra, error) in [
            ("[directory]\nmin_uid = 0", Invalid::DirectoryRange),
            ("[directory]\nmin_gid = 0", Invalid::DirectoryRange),
            (
                "[directory]\nmin_uid = 20\nmax_uid = 10",
                Invalid::DirectoryRange,
            ),
            ("[directory]\nmax_uid = 4294967295", Invalid::DirectoryRange),
            (
                "[directory]\nrefresh_minutes = 0",
                Invalid::DirectoryRefresh,
            ),
            (
                "[directory]\nurl = \"http://dir/x\"",
                Invalid::PlainHttp("http://dir/x".into()),
            ),
            (
                "[directory]\nhome_prefix = \"/home/\"",
                Invalid::DirectoryPath("directory.home_prefix"),
            ),
            (
                "[directory]\nhome_prefix = \"/\"",
                Invalid::DirectoryPath("directory.home_prefix"),
            ),
            (
                "[directory]\nhome_prefix = \"/srv/../etc\"",
                Invalid::DirectoryPath("directory.home_prefix"),
            ),
            (
                "[directory]\ndefault_shell = \"sh\"",
                Invalid::DirectoryPath("directory.default_shell"),
            ),
        ] {
            assert_eq!(
                with(extra).unwrap_err(),
                TextError::Invalid(error),
                "{extra}"
            );
        }
        assert!(
            with("[directory]\nlocation = \"x\"").is_err(),
            "unknown keys"
        );
        let hem = |extra: &str| {
            Config::parse(&format!(
                "backend = \"hem\"\nurl = \"https://device/\"\n[directory]\nenabled = true\n{extra}\n"
            ))
        };
        assert_eq!(
            hem("").unwrap_err(),
            TextError::Invalid(Invalid::DirectoryUrl),
            "hem has no directory URL to derive"
        );
        assert!(hem("url = \"https://dir/directory\"").is_ok());
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c =
            Config::parse("backend = \"mdm\"\nurl = \"https://mdm.example/checkin\"\n").unwrap();
        assert_eq!(c.timeout_ms, 10_000);
        assert_eq!(c.empty_challenge, EmptyChallengePolicy::Ignore);
        assert_eq!(c.helper, PathBuf::from(DEFAULT_HELPER_PATH));
        assert!(c.require_server_signature);
        assert_eq!(c.hem.scope, "master");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::parse("backend = \"mdm\"\nurl = \"https://x/\"\nurll = 1\n").unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
        assert!(Config::parse("backend = \"ldap\"\nurl = \"https://x/\"\n").is_err());
    }

    #[test]
    fn plain_http_only_with_the_flag() {
        let parse = |url: &str, insecure: bool| {
            Config::parse(&format!(
                "backend = \"mdm\"\nurl = \"{url}\"\nallow_insecure_http = {insecure}\n"
            ))
        };
        assert!(parse("http://127.0.0.1:8080/checkin", false).is_err());
        assert!(parse("http://[::1]:8080/", false).is_err());
        assert!(parse("http://localhost/", false).is_err());
        assert!(parse("http://mdm.example/checkin", false).is_err());
        assert!(parse("http://127.0.0.1:8080/checkin", true).is_ok());
        assert!(parse("http://mdm.example/checkin", true).is_ok());
        assert!(parse("https://mdm.example/checkin", false).is_ok());
        assert!(parse("ftp://mdm.example/", true).is_err());
    }

    #[test]
    fn trust_defaults_and_limits() {
        let c = Config::parse("backend = \"mdm\"\nurl = \"https://x/\"\n").unwrap();
        assert_eq!(c.schemes, vec![Scheme::ScramSha256]);
        assert_eq!(c.min_scram_iterations, 100_000);
        assert!(c.weaknesses().is_empty());
        let with = |extra: &str| {
            Config::parse(&format!(
                "backend = \"mdm\"\nurl = \"https://x/\"\n{extra}\n"
            ))
        };
        assert_eq!(
            with("min_scram_iterations = 4095").unwrap_err(),
            TextError::Invalid(Invalid::MinIterations)
        );
        assert!(with("min_scram_iterations = 4096").is_ok());
        assert_eq!(
            with("schemes = []").unwrap_err(),
            TextError::Invalid(Invalid::NoScheme)
        );
        assert!(with("schemes = [\"plain\"]").is_err());
        let digest = with("schemes = [\"scram-sha-256\", \"digest-md5\"]").unwrap();
        assert_eq!(digest.weaknesses().len(), 1);
        assert!(!digest.weaknesses()[0].0, "a Digest scheme is a warning");
        let http = with("allow_insecure_http = true").unwrap();
        assert!(
            http.weaknesses()[0].0,
            "plain http is refused by check-config"
        );
        assert_eq!(c.channel_binding, ChannelBindingPolicy::Prefer);
        let unbound = with("channel_binding = \"off\"").unwrap();
        assert_eq!(unbound.weaknesses().len(), 1);
        assert!(!unbound.weaknesses()[0].0, "binding off is a warning");
        assert_eq!(
            with("channel_binding = \"require\"")
                .unwrap()
                .channel_binding,
            ChannelBindingPolicy::Require
        );
        assert!(with("channel_binding = \"tls-unique\"").is_err());
    }

    #[test]
    fn empty_challenge_success_needs_https() {
        let policy = |url: &str| {
            Config::parse(&format!(
                "backend = \"mdm\"\nurl = \"{url}\"\nempty_challenge = \"success\"\nallow_insecure_http = true\n"
            ))
            .unwrap()
            .empty_challenge_policy()
        };
        assert_eq!(policy("https://x/").0, EmptyChallengePolicy::Success);
        let (lowered, why) = policy("http://127.0.0.1/");
        assert_eq!(lowered, EmptyChallengePolicy::Ignore);
        assert!(why.is_some());
    }

    #[test]
    fn parse_errors_say_where_which_key_and_how_to_fix() {
        let base = "backend = \"mdm\"\nurl = \"https://x/\"\n";
        let error = |extra: &str| match Config::parse(&format!("{base}{extra}\n")) {
            Err(TextError::Syntax(error)) => error,
            other => panic!("not a syntax error: {other:?}"),
        };
        let overflow = error("max_scram_iterations = 10_000_000x");
        assert_eq!(
            (overflow.line, overflow.key.as_deref()),
            (3, Some("max_scram_iterations"))
        );
        assert!(
            overflow
                .to_string()
                .contains("max_scram_iterations = 10000000"),
            "{overflow}"
        );
        let bare = error("empty_challenge = ignore");
        assert_eq!(bare.line, 3);
        assert!(
            bare.to_string().contains("empty_challenge = \"ignore\""),
            "{bare}"
        );
        let unknown = error("\nurll = \"x\"");
        assert_eq!((unknown.line, unknown.column), (4, 1));
        assert!(
            unknown.to_string().contains("correct its spelling"),
            "{unknown}"
        );
        let variant = error("backend2 = 1");
        assert!(variant.to_string().starts_with("3:"), "{variant}");
    }

    #[test]
    fn values_arrive_typed() {
        let c = Config::parse(
            "backend = \"mdm\"\nurl = [\"https://a/\", \"http://b:80/\"]\nallow_insecure_http = true\n\
             helper_user = \"authtoken\"\n[user_ids]\nalice = \"5c9e8a3b-1d2f-4e6a-8b7c-9d0e1f2a3b4c\"\n",
        )
        .unwrap();
        assert_eq!(c.url.len(), 2);
        assert!(c.url[0].is_https() && !c.url[1].is_https());
        assert_eq!(c.url[1].as_str(), "http://b:80/");
        assert_eq!(c.helper_user.as_str(), "authtoken");
        assert_eq!(
            c.user_ids["alice"].hyphenated().to_string(),
            "5c9e8a3b-1d2f-4e6a-8b7c-9d0e1f2a3b4c"
        );
        let invalid = |extra: &str| match Config::parse(&format!(
            "backend = \"mdm\"\nurl = \"https://x/\"\n{extra}\n"
        )) {
            Err(TextError::Invalid(why)) => why,
            other => panic!("{extra}: {other:?}"),
        };
        assert_eq!(invalid("helper_user = \"root\""), Invalid::HelperUser);
        assert_eq!(invalid("helper_user = \"\""), Invalid::HelperUser);
        assert_eq!(
            invalid("helper = \"bin/helper\""),
            Invalid::RelativePath("helper".into())
        );
        assert!(matches!(
            invalid("[user_ids]\nbob = \"nope\""),
            Invalid::UserId { .. }
        ));
        assert_eq!(
            Config::parse("backend = \"mdm\"\nurl = \"ftp://x/\"\n").unwrap_err(),
            TextError::Invalid(Invalid::Scheme("ftp://x/".into()))
        );
        assert_eq!(
            Config::parse("backend = \"mdm\"\nurl = []\n").unwrap_err(),
            TextError::Invalid(Invalid::NoAuthority)
        );
    }

    #[test]
    fn a_file_is_loaded_only_under_its_trust_rules() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authtoken.toml");
        std::fs::write(
            &path,
            "backend = \"mdm\"\nurl = \"https://x/\"\nhelper = \"h\"\n",
        )
        .unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let mine = Rules {
            also_owner: (uid != 0).then_some(uid),
            private: false,
        };
        assert!(matches!(
            Config::load_source(&path, mine),
            Err(ConfigError::Invalid {
                error: Invalid::RelativePath(_),
                ..
            })
        ));
        std::fs::write(&path, "backend = \"mdm\"\nurl = \"https://x/\"\n").unwrap();
        assert!(Config::load_source(&path, mine).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(
            Config::load_source(&path, mine),
            Err(ConfigError::Untrusted(TrustError::Writable { .. }))
        ));
    }

    #[test]
    fn deadlines_of_any_timeout_do_not_overflow() {
        assert!(chkpwd_deadline(u64::MAX) >= kill_deadline(u64::MAX));
        assert_eq!(
            kill_deadline(10_000),
            std::time::Duration::from_millis(12_500)
        );
    }

    #[test]
    fn kill_deadline_exceeds_network_deadline() {
        let c =
            Config::parse("backend = \"mdm\"\nurl = \"https://x/\"\ntimeout_ms = 2000\n").unwrap();
        assert!(c.kill_deadline() > std::time::Duration::from_millis(c.timeout_ms));
    }
}
