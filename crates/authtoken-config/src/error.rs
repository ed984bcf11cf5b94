//! Why a config is not one: a file that cannot be trusted or read, text
//! that is not TOML of this shape ([`ParseError`], with where, which key and
//! a fix), or a value that breaks a rule ([`Invalid`]).

use std::path::PathBuf;

use authtoken_core::kinds::{MAX_TOKEN_DURATION, SCRAM_MIN_ITERATIONS};
use authtoken_core::trust::TrustError;

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
    pub(crate) fn new(text: &str, error: &toml::de::Error) -> ParseError {
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
