//! PAM user names we are willing to send to an authority or use as a cache
//! key: a [`Username`] can only be made by [`Username::parse`].

use serde::{Deserialize, Serialize};

/// Longest user name accepted (over 256 bytes is refused, see docs/ARCHITECTURE.md).
pub const MAX_USERNAME_BYTES: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsernameError {
    #[error("empty user name")]
    Empty,
    #[error("user name longer than {MAX_USERNAME_BYTES} bytes")]
    TooLong,
    #[error("user name is not UTF-8")]
    NotUtf8,
    #[error("user name contains control characters")]
    ControlCharacter,
}

/// A validated user name: non-empty UTF-8, at most 256 bytes, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    /// Checks a name as PAM (or an administrator) handed it to us, before
    /// any request is made.
    pub fn parse(raw: &[u8]) -> Result<Username, UsernameError> {
        if raw.is_empty() {
            return Err(UsernameError::Empty);
        }
        if raw.len() > MAX_USERNAME_BYTES {
            return Err(UsernameError::TooLong);
        }
        let name = std::str::from_utf8(raw).map_err(|_| UsernameError::NotUtf8)?;
        if name.chars().any(char::is_control) {
            return Err(UsernameError::ControlCharacter);
        }
        Ok(Username(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = UsernameError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Username::parse(text.as_bytes())
    }
}

impl From<Username> for String {
    fn from(user: Username) -> String {
        user.0
    }
}

impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Username {
    type Err = UsernameError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Username::parse(text.as_bytes())
    }
}

/// A user name as a file name (the session cache, offline verifiers):
/// `[A-Za-z0-9_-]` kept, every other byte `%XX`, so no name is a path, a
/// dot file or `..`.
pub fn to_file_name(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for b in user.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The user name a [`to_file_name`] file name stands for.
pub fn from_file_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<String, UsernameError> {
        Username::parse(raw).map(String::from)
    }

    #[test]
    fn accepts_ordinary_names() {
        assert_eq!(parse(b"alice"), Ok("alice".into()));
        assert_eq!(
            parse("jos\u{e9}.k@corp".as_bytes()),
            Ok("jos\u{e9}.k@corp".into())
        );
        assert_eq!(parse(&[b'a'; 256]).map(|s| s.len()), Ok(256));
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(parse(b""), Err(UsernameError::Empty));
        assert_eq!(parse(&[b'a'; 257]), Err(UsernameError::TooLong));
        assert_eq!(parse(b"al\nice"), Err(UsernameError::ControlCharacter));
        assert_eq!(parse(b"al\x7fice"), Err(UsernameError::ControlCharacter));
        assert_eq!(parse(b"\xff\xfe"), Err(UsernameError::NotUtf8));
        assert!(serde_json::from_str::<Username>("\"a\\nb\"").is_err());
    }

    #[test]
    fn user_names_encode_safely() {
        for user in ["alice", "jos\u{e9}", "a/b", "..", ".hidden", "x%y", "a b"] {
            let encoded = to_file_name(user);
            assert!(
                !encoded.contains('/') && !encoded.starts_with('.'),
                "{encoded}"
            );
            assert_eq!(from_file_name(&encoded).as_deref(), Some(user));
        }
    }
}
