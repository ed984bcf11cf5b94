//! The file as written: what serde reads, before [`crate::Config`]'s
//! checks, with the defaults of every key left out.

use std::collections::BTreeMap;
use std::path::PathBuf;

use authtoken_core::kinds::{
    ChannelBindingPolicy, EmptyChallengePolicy, Scheme, DEFAULT_TOKEN_DURATION,
};
use authtoken_core::offline::OfflineConfig;
use authtoken_core::platform;
use serde::Deserialize;

use crate::{Backend, HemConfig, RestConfig};

/// `url = "…"` or `url = ["…", "…"]`, as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub(crate) enum RawUrls {
    One(String),
    Many(Vec<String>),
}

impl RawUrls {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            RawUrls::One(url) => vec![url],
            RawUrls::Many(urls) => urls,
        }
    }
}

/// The file as written: what serde reads, before [`Config`]'s checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) backend: Backend,
    /// MDM `CheckInURL`, or the device's base URL for `hem`: one, or a list
    /// tried in order (the next only when one cannot be connected to).
    pub(crate) url: RawUrls,
    /// How long to try connecting to one authority before the next.
    #[serde(default = "default_connect_timeout_ms")]
    pub(crate) connect_timeout_ms: u64,
    /// Deadline for the whole handshake, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub(crate) timeout_ms: u64,
    /// PEM bundle the server certificate must chain to (else the system roots).
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM certificate chain of the device's MDM identity (mutual TLS).
    pub(crate) client_cert: Option<PathBuf>,
    /// PEM private key of the device's MDM identity.
    pub(crate) client_key: Option<PathBuf>,
    /// Device id sent as `UDID`; default from the machine id
    /// (`/etc/machine-id` on Linux; see [`crate::platform::host_id`]).
    pub(crate) udid: Option<String>,
    #[serde(default)]
    pub(crate) empty_challenge: EmptyChallengePolicy,
    #[serde(default = "default_helper")]
    pub(crate) helper: PathBuf,
    #[serde(default = "default_cache_dir")]
    pub(crate) cache_dir: PathBuf,
    /// The account the helper becomes before any network I/O.
    #[serde(default = "default_helper_user")]
    pub(crate) helper_user: String,
    /// The setuid-root entry point the module runs when it is not root
    /// (screen lockers): it signs in only the caller's own user.
    #[serde(default = "default_chkpwd")]
    pub(crate) chkpwd: PathBuf,
    /// Allow plain `http://` at all (loopback included). Off: anyone who can
    /// answer on that address could pose as the authority.
    #[serde(default)]
    pub(crate) allow_insecure_http: bool,
    /// The challenge schemes answered; anything else is `Unavailable`
    /// before a second request.
    #[serde(default = "default_schemes")]
    pub(crate) schemes: Vec<Scheme>,
    /// Refuse a SCRAM AuthToken without a valid `ServerSignature`.
    #[serde(default = "default_true")]
    pub(crate) require_server_signature: bool,
    #[serde(default)]
    pub(crate) channel_binding: ChannelBindingPolicy,
    /// Fewest SCRAM iterations answered: a cheap challenge would hand a
    /// fake server a proof it can crack offline.
    #[serde(default = "default_min_scram_iterations")]
    pub(crate) min_scram_iterations: u32,
    /// Highest SCRAM iteration count we will compute (a hostile server could
    /// otherwise pin the CPU).
    #[serde(default = "default_max_scram_iterations")]
    pub(crate) max_scram_iterations: u32,
    /// Per-user `UserID` GUIDs that override the derived UUIDv5.
    #[serde(default)]
    pub(crate) user_ids: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) hem: HemConfig,
    #[serde(default)]
    pub(crate) rest: RestConfig,
    #[serde(default)]
    pub(crate) offline: OfflineConfig,
    #[serde(default)]
    pub(crate) directory: RawDirectory,
}

/// `[directory]` as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDirectory {
    #[serde(default)]
    pub(crate) enabled: bool,
    pub(crate) url: Option<RawUrls>,
    pub(crate) refresh_minutes: Option<u64>,
    pub(crate) min_uid: Option<u32>,
    pub(crate) max_uid: Option<u32>,
    pub(crate) min_gid: Option<u32>,
    pub(crate) max_gid: Option<u32>,
    pub(crate) home_prefix: Option<String>,
    pub(crate) default_shell: Option<String>,
    #[serde(default)]
    pub(crate) reserved_names: Vec<String>,
}

pub(crate) fn default_timeout_ms() -> u64 {
    10_000
}
pub(crate) fn default_helper() -> PathBuf {
    PathBuf::from(platform::HELPER)
}
pub(crate) fn default_connect_timeout_ms() -> u64 {
    1500
}
pub(crate) fn default_helper_user() -> String {
    platform::HELPER_USER.to_owned()
}
pub(crate) fn default_chkpwd() -> PathBuf {
    PathBuf::from(platform::CHKPWD)
}
pub(crate) fn default_cache_dir() -> PathBuf {
    PathBuf::from(platform::CACHE_DIR)
}
pub(crate) fn default_true() -> bool {
    true
}
pub(crate) fn default_max_scram_iterations() -> u32 {
    10_000_000
}
pub(crate) fn default_min_scram_iterations() -> u32 {
    100_000
}
pub(crate) fn default_schemes() -> Vec<Scheme> {
    vec![Scheme::ScramSha256]
}
pub(crate) fn default_hem_scope() -> String {
    "master".to_owned()
}

pub(crate) fn default_token_duration() -> u32 {
    DEFAULT_TOKEN_DURATION
}
