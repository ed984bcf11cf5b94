//! `/etc/authtoken/authtoken.toml`: parsing and validation. The file passes
//! [`crate::trust`] first, so a tampered config fails closed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::trust::{self, Rules, TrustError};
use crate::username::Username;

pub use crate::platform::{
    CACHE_DIR as DEFAULT_CACHE_DIR, CHKPWD as DEFAULT_CHKPWD_PATH, CONFIG as DEFAULT_CONFIG_PATH,
    HELPER as DEFAULT_HELPER_PATH,
};
/// Longest `authtoken-chkpwd` waits to space out one user's attempts; a
/// longer wait is refused at once instead (so the module's deadline holds).
pub const CHKPWD_MAX_WAIT_MS: u64 = 4_000;
/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// A challenge scheme the client may answer (config `schemes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Scheme {
    /// SCRAM-SHA-256: the server proves it holds the verifier.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// HTTP Digest with SHA-256: password-equivalent storage, no server proof.
    #[serde(rename = "digest-sha-256")]
    DigestSha256,
    /// HTTP Digest with MD5 (also a challenge naming no algorithm).
    #[serde(rename = "digest-md5")]
    DigestMd5,
}

impl Scheme {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::ScramSha256 => "scram-sha-256",
            Scheme::DigestSha256 => "digest-sha-256",
            Scheme::DigestMd5 => "digest-md5",
        }
    }

    /// Whether answering this scheme proves nothing about the server.
    pub fn is_digest(self) -> bool {
        !matches!(self, Scheme::ScramSha256)
    }
}

/// Fewest SCRAM iterations any client ever answers (RFC 7677 §4).
pub const SCRAM_MIN_ITERATIONS: u32 = 4096;

/// `url = "…"` or `url = ["…", "…"]`, as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
enum RawUrls {
    One(String),
    Many(Vec<String>),
}

impl RawUrls {
    fn into_vec(self) -> Vec<String> {
        match self {
            RawUrls::One(url) => vec![url],
            RawUrls::Many(urls) => urls,
        }
    }
}

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

/// Which token API a `rest` authority speaks (docs/PROTOCOL.md, "The rest
/// backend").
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum RestFlavor {
    /// Seed 002: a JSON `authenticate` method with a `credentials` object,
    /// answering `success` and a `session_token` with its duration.
    #[serde(rename = "json-authenticate")]
    JsonAuthenticate,
    /// Seed 003: MindTouch Deki's `POST users/authenticate` with HTTP Basic
    /// credentials, answering the token as the response text.
    #[serde(rename = "deki")]
    Deki,
}

impl RestFlavor {
    pub fn name(self) -> &'static str {
        match self {
            RestFlavor::JsonAuthenticate => "json-authenticate",
            RestFlavor::Deki => "deki",
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
    #[serde(default = "default_token_duration")]
    pub token_duration: u32,
}

/// Seed 002's default session token duration (3 hours).
pub const DEFAULT_TOKEN_DURATION: u32 = 10_800;
/// Seed 002's longest session token duration (24 hours).
pub const MAX_TOKEN_DURATION: u32 = 86_400;

fn default_token_duration() -> u32 {
    DEFAULT_TOKEN_DURATION
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            flavor: None,
            token_duration: DEFAULT_TOKEN_DURATION,
        }
    }
}

/// Whether SCRAM logins are bound to their TLS connection
/// (SCRAM-SHA-256-PLUS, docs/PROTOCOL.md "Channel binding").
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChannelBindingPolicy {
    /// Bind when the authority offers it; tell it (GS2 `y`) when it did not.
    #[default]
    Prefer,
    /// A challenge without channel binding is `Unavailable`.
    Require,
    /// Never bind (a relay with a trusted certificate can then pass the
    /// login through).
    Off,
}

/// What a zero-length `DigestChallenge` turns into.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmptyChallengePolicy {
    /// `PAM_IGNORE`: let the rest of the stack decide.
    #[default]
    Ignore,
    /// `PAM_SUCCESS` without a token.
    Success,
}

/// The file as written: what serde reads, before [`Config`]'s checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    backend: Backend,
    /// MDM `CheckInURL`, or the device's base URL for `hem`: one, or a list
    /// tried in order (the next only when one cannot be connected to).
    url: RawUrls,
    /// How long to try connecting to one authority before the next.
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: u64,
    /// Deadline for the whole handshake, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    /// PEM bundle the server certificate must chain to (else the system roots).
    ca_file: Option<PathBuf>,
    /// PEM certificate chain of the device's MDM identity (mutual TLS).
    client_cert: Option<PathBuf>,
    /// PEM private key of the device's MDM identity.
    client_key: Option<PathBuf>,
    /// Device id sent as `UDID`; default from the machine id
    /// (`/etc/machine-id` on Linux; see [`crate::platform::host_id`]).
    udid: Option<String>,
    #[serde(default)]
    empty_challenge: EmptyChallengePolicy,
    #[serde(default = "default_helper")]
    helper: PathBuf,
    #[serde(default = "default_cache_dir")]
    cache_dir: PathBuf,
    /// The account the helper becomes before any network I/O.
    #[serde(default = "default_helper_user")]
    helper_user: String,
    /// The setuid-root entry point the module runs when it is not root
    /// (screen lockers): it signs in only the caller's own user.
    #[serde(default = "default_chkpwd")]
    chkpwd: PathBuf,
    /// Allow plain `http://` at all (loopback included). Off: anyone who can
    /// answer on that address could pose as the authority.
    #[serde(default)]
    allow_insecure_http: bool,
    /// The challenge schemes answered; anything else is `Unavailable`
    /// before a second request.
    #[serde(default = "default_schemes")]
    schemes: Vec<Scheme>,
    /// Refuse a SCRAM AuthToken without a valid `ServerSignature`.
    #[serde(default = "default_true")]
    require_server_signature: bool,
    #[serde(default)]
    channel_binding: ChannelBindingPolicy,
    /// Fewest SCRAM iterations answered: a cheap challenge would hand a
    /// fake server a proof it can crack offline.
    #[serde(default = "default_min_scram_iterations")]
    min_scram_iterations: u32,
    /// Highest SCRAM iteration count we will compute (a hostile server could
    /// otherwise pin the CPU).
    #[serde(default = "default_max_scram_iterations")]
    max_scram_iterations: u32,
    /// Per-user `UserID` GUIDs that override the derived UUIDv5.
    #[serde(default)]
    user_ids: BTreeMap<String, String>,
    #[serde(default)]
    hem: HemConfig,
    #[serde(default)]
    rest: RestConfig,
    #[serde(default)]
    offline: OfflineConfig,
    #[serde(default)]
    directory: RawDirectory,
}

/// `[directory]` as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    #[serde(default)]
    enabled: bool,
    url: Option<RawUrls>,
    refresh_minutes: Option<u64>,
    min_uid: Option<u32>,
    max_uid: Option<u32>,
    min_gid: Option<u32>,
    max_gid: Option<u32>,
    home_prefix: Option<String>,
    default_shell: Option<String>,
    #[serde(default)]
    reserved_names: Vec<String>,
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
/// into the NSS cache by `authtoken sync` (README, "Network users").
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
    pub rules: crate::directory::MachineRules,
}

/// The directory URL of an authority URL: its last path segment replaced
/// by `directory` (docs/PROTOCOL.md, "The directory").
pub fn directory_url(url: &Authority) -> Authority {
    let text = url.as_str();
    // A query or fragment belongs to the check-in URL, not the directory's.
    let base = text.split(['?', '#']).next().unwrap_or(text);
    let directory = match base.rfind('/') {
        // "https://host" has no path: its slashes are the scheme's.
        Some(i) if i > base.find("//").map_or(0, |j| j + 1) => format!("{}directory", &base[..=i]),
        _ => format!("{base}/directory"),
    };
    Authority {
        url: directory,
        https: url.https,
    }
}

/// A config that parses but breaks a rule the TOML types cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("url must name at least one authority")]
    NoAuthority,
    #[error("url {0} is not a URL")]
    NotAUrl(String),
    #[error("url {0} has no host")]
    NoHost(String),
    #[error("url {0} must start with https:// or http://")]
    Scheme(String),
    #[error(
        "url {0} is plain http; use https, or set allow_insecure_http = true (tests only: \
         anyone answering on that address could pose as the authority)"
    )]
    PlainHttp(String),
    #[error("connect_timeout_ms must be between 100 and timeout_ms")]
    ConnectTimeout,
    #[error("timeout_ms must be between 100 and 300000")]
    Timeout,
    #[error("client_cert and client_key must be set together")]
    HalfClientIdentity,
    #[error("min_scram_iterations must be at least {SCRAM_MIN_ITERATIONS}")]
    MinIterations,
    #[error("max_scram_iterations must be at least min_scram_iterations")]
    MaxIterations,
    #[error("schemes must name at least one scheme")]
    NoScheme,
    #[error("{0} must be an absolute path")]
    RelativePath(String),
    #[error("helper_user must name an unprivileged account")]
    HelperUser,
    #[error("user_ids.{user} is not a UUID: {value}")]
    UserId { user: String, value: String },
    #[error("hem.scope must not be empty")]
    HemScope,
    #[error("hem.eid must not be empty")]
    HemEid,
    #[error("offline.max_failures must be at least 1")]
    OfflineFailures,
    #[error("directory.url must be set (only the mdm backend has a directory URL to derive)")]
    DirectoryUrl,
    #[error("backend rest needs rest.flavor: \"json-authenticate\" or \"deki\"")]
    RestFlavor,
    #[error(
        "url {0} is plain http: backend rest sends the password itself, so it needs verified \
         https whatever allow_insecure_http says"
    )]
    RestPlainHttp(String),
    #[error("rest.token_duration must be between 1 and {MAX_TOKEN_DURATION} seconds")]
    RestTokenDuration,
    #[error("directory.refresh_minutes must be between 1 and 10080")]
    DirectoryRefresh,
    #[error(
        "directory ids: min_uid/min_gid must be at least 1 and at most max_uid/max_gid, \
         which must be below 4294967295"
    )]
    DirectoryRange,
    #[error(
        "{0} must be an absolute path without '.', '..', empty components, a trailing '/', \
         ':' or control characters"
    )]
    DirectoryPath(&'static str),
}

/// `[offline]`: signing in with a local verifier when every authority is
/// unreachable. Off by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineConfig {
    #[serde(default)]
    pub enabled: bool,
    /// A verifier older than this (since its online login) is not used.
    #[serde(default = "default_offline_max_age_days")]
    pub max_age_days: u64,
    /// The PAM services that may sign in offline (never sshd unless listed).
    #[serde(default = "default_offline_services")]
    pub services: Vec<String>,
    /// The services a caller without root (through `authtoken-chkpwd`) may
    /// sign in offline with. The caller names its service itself, so this
    /// list is separate and short: screen lockers and polkit.
    #[serde(default = "default_offline_unprivileged_services")]
    pub unprivileged_services: Vec<String>,
    /// Offline failures in a row that lock offline login until the next
    /// online success.
    #[serde(default = "default_offline_max_failures")]
    pub max_failures: u32,
    #[serde(default = "default_offline_dir")]
    pub dir: PathBuf,
}

impl Default for OfflineConfig {
    fn default() -> Self {
        OfflineConfig {
            enabled: false,
            max_age_days: default_offline_max_age_days(),
            services: default_offline_services(),
            unprivileged_services: default_offline_unprivileged_services(),
            max_failures: default_offline_max_failures(),
            dir: default_offline_dir(),
        }
    }
}

impl OfflineConfig {
    /// Whether `service` may sign in offline.
    pub fn allows(&self, service: &str) -> bool {
        self.enabled && self.services.iter().any(|s| s == service)
    }

    /// The policy for a caller without root: its own service list.
    pub fn for_unprivileged_caller(&self) -> OfflineConfig {
        OfflineConfig {
            services: self.unprivileged_services.clone(),
            ..self.clone()
        }
    }
}

/// Screen lockers and polkit: what a caller without root runs.
const UNPRIVILEGED_OFFLINE_SERVICES: [&str; 10] = [
    "polkit-1",
    "swaylock",
    "i3lock",
    "xscreensaver",
    "xsecurelock",
    "kde",
    "gnome-screensaver",
    "cinnamon-screensaver",
    "mate-screensaver",
    "hyprlock",
];

fn default_offline_unprivileged_services() -> Vec<String> {
    UNPRIVILEGED_OFFLINE_SERVICES.map(String::from).to_vec()
}

fn default_offline_max_age_days() -> u64 {
    7
}
fn default_offline_max_failures() -> u32 {
    5
}
fn default_offline_dir() -> PathBuf {
    PathBuf::from(crate::platform::OFFLINE_DIR)
}
/// Local consoles, display managers, sudo/su and screen lockers: where a
/// person sits at the machine. Never sshd unless listed.
fn default_offline_services() -> Vec<String> {
    ["login", "gdm-password", "sddm", "lightdm", "sudo", "su"]
        .into_iter()
        .chain(UNPRIVILEGED_OFFLINE_SERVICES)
        .map(String::from)
        .collect()
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
    /// The device identity key (`eid`) expected; another device is refused.
    pub eid: Option<String>,
}

impl Default for HemConfig {
    fn default() -> Self {
        HemConfig {
            scope: default_hem_scope(),
            labels: BTreeMap::new(),
            eid: None,
        }
    }
}

fn default_timeout_ms() -> u64 {
    10_000
}
fn default_helper() -> PathBuf {
    PathBuf::from(DEFAULT_HELPER_PATH)
}
fn default_connect_timeout_ms() -> u64 {
    1500
}
fn default_helper_user() -> String {
    crate::platform::HELPER_USER.to_owned()
}
fn default_chkpwd() -> PathBuf {
    PathBuf::from(DEFAULT_CHKPWD_PATH)
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
fn default_min_scram_iterations() -> u32 {
    100_000
}
fn default_schemes() -> Vec<Scheme> {
    vec![Scheme::ScramSha256]
}
fn default_hem_scope() -> String {
    "master".to_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Untrusted(#[from] TrustError),
    #[error("{}:{}", path.display(), error)]
    Syntax { path: PathBuf, error: ParseError },
    #[error("{}: {error}", path.display())]
    Invalid { path: PathBuf, error: Invalid },
}

/// Why TOML text is not a [`Config`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{0}")]
    Syntax(ParseError),
    #[error("{0}")]
    Invalid(Invalid),
}

impl Config {
    /// Reads and checks the config, refusing a file (or its directory) that
    /// someone other than root could have written.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_source(path, Rules::ROOT).map(|(config, _)| config)
    }

    /// Reads and checks the config under the given file-trust rules (root's
    /// for every caller but tests), with the text it was parsed from (what
    /// the module's settings are checked against, see [`crate::settings`]).
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

    /// Settings that weaken what the client can tell about its peer, for
    /// `check-config`: (refused, text). A refused one lets a peer that is not
    /// the authority sign users in.
    pub fn weaknesses(&self) -> Vec<(bool, String)> {
        let mut out = Vec::new();
        if self.backend == Backend::Rest {
            out.push((
                false,
                "backend rest: the password itself is sent to the authority (over verified \
                 https only), which sees it in clear; mdm's SCRAM and hem never send it"
                    .to_owned(),
            ));
        }
        if self.allow_insecure_http {
            out.push((
                true,
                "allow_insecure_http = true: whoever answers on a plain-http address can pose \
                 as the authority (and with hem or a Digest scheme, sign anyone in)"
                    .to_owned(),
            ));
        }
        if self.min_scram_iterations < default_min_scram_iterations() {
            out.push((
                false,
                format!(
                    "min_scram_iterations = {}: a fake server may ask for a proof that is \
                     cheap to crack offline (default {})",
                    self.min_scram_iterations,
                    default_min_scram_iterations()
                ),
            ));
        }
        if !self.require_server_signature {
            out.push((
                false,
                "require_server_signature = false: a SCRAM peer need not prove it holds the \
                 user's verifier"
                    .to_owned(),
            ));
        }
        if self.channel_binding == ChannelBindingPolicy::Off {
            out.push((
                false,
                "channel_binding = \"off\": a relay whose certificate this machine trusts \
                 (an intercepting proxy, a mis-issued certificate) can pass a login through \
                 and keep the token"
                    .to_owned(),
            ));
        }
        for scheme in self.schemes.iter().filter(|s| s.is_digest()) {
            out.push((
                false,
                format!(
                    "schemes includes {}: the authority stores a password-equivalent hash and \
                     proves nothing about itself",
                    scheme.name()
                ),
            ));
        }
        if self.empty_challenge == EmptyChallengePolicy::Success {
            out.push((
                false,
                "empty_challenge = \"success\": the authority can sign users in without any \
                 password (only over verified https)"
                    .to_owned(),
            ));
        }
        out
    }

    /// How long the module lets the helper run before killing it: the
    /// helper's own network deadline plus a margin, so a slow authority ends
    /// in the helper's clean `Unavailable`, not a kill.
    pub fn kill_deadline(&self) -> std::time::Duration {
        kill_deadline(self.timeout_ms)
    }

    /// The same for `authtoken-chkpwd`, which may first wait out its rate
    /// limit, then runs the helper under `kill_deadline`.
    pub fn chkpwd_deadline(&self) -> std::time::Duration {
        chkpwd_deadline(self.timeout_ms)
    }
}

/// [`Config::kill_deadline`] for a `timeout_ms`. Saturating: the module
/// reads `timeout_ms` from its settings file, which a checked config never
/// makes out of range but a hand edit could.
pub fn kill_deadline(timeout_ms: u64) -> std::time::Duration {
    std::time::Duration::from_millis(
        timeout_ms
            .saturating_add(1_500)
            .saturating_add(timeout_ms / 10),
    )
}

/// [`Config::chkpwd_deadline`] for a `timeout_ms`.
pub fn chkpwd_deadline(timeout_ms: u64) -> std::time::Duration {
    kill_deadline(timeout_ms)
        .saturating_add(std::time::Duration::from_millis(CHKPWD_MAX_WAIT_MS + 1_500))
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
        let defaults = crate::directory::Ranges::DEFAULT;
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
            if crate::directory::clean_absolute_path(&value) {
                Ok(value)
            } else {
                Err(Invalid::DirectoryPath(key))
            }
        };
        let home_prefix = path(
            raw.home_prefix,
            crate::directory::DEFAULT_HOME_PREFIX,
            "directory.home_prefix",
        )?;
        let default_shell = path(
            raw.default_shell,
            crate::directory::DEFAULT_SHELL,
            "directory.default_shell",
        )?;
        Ok(DirectoryConfig {
            enabled: raw.enabled,
            url,
            refresh_minutes,
            rules: crate::directory::MachineRules {
                ranges: crate::directory::Ranges {
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

/// A config file that does not parse: where, which key, what, and a fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub key: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl ParseError {
    fn new(text: &str, error: &toml::de::Error) -> ParseError {
        let offset = error.span().map(|r| r.start).unwrap_or(0).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        let line_text = text[line_start..].lines().next().unwrap_or("");
        let key = line_text
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_owned())
            .filter(|k| !k.is_empty() && !k.starts_with('['));
        let message = error.message().trim().replace('\n', " ");
        let value = line_text
            .split_once('=')
            .map(|(_, v)| v.trim())
            .unwrap_or("");
        let hint = hint_for(&message, key.as_deref(), value);
        ParseError {
            line,
            column,
            key,
            message,
            hint,
        }
    }
}

/// A one-line fix for the common mistakes.
fn hint_for(message: &str, key: Option<&str>, value: &str) -> Option<String> {
    let key = key.unwrap_or("key");
    let bare_word = !value.is_empty()
        && !value.starts_with(['"', '\'', '[', '{'])
        && value.chars().any(|c| c.is_ascii_alphabetic());
    let digits_and_letters = value.chars().next().is_some_and(|c| c.is_ascii_digit());
    if message.starts_with("unknown field") {
        Some(format!(
            "remove {key}, or correct its spelling (see conf/authtoken.toml or authtoken.toml(5))"
        ))
    } else if digits_and_letters && bare_word {
        Some(format!(
            "{key} takes a whole number: digits only, e.g. {key} = {}",
            value
                .chars()
                .filter(|c| c.is_ascii_digit())
                .collect::<String>()
        ))
    } else if bare_word && value != "true" && value != "false" {
        Some(format!(
            "text values need quotes: {key} = \"{}\"",
            value.trim_end_matches(|c: char| c.is_whitespace())
        ))
    } else if message.starts_with("unknown variant") {
        Some(format!(
            "{key} takes one of the values the message lists, in quotes"
        ))
    } else if message.starts_with("missing field") {
        Some("add it: backend and url are required".into())
    } else {
        None
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; fix: {hint}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            crate::directory::Ranges {
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
