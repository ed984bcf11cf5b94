//! PAM user names we are willing to send to an authority.

/// Longest user name accepted (DESIGN.md: over 256 bytes is refused).
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

/// Checks a name as PAM handed it to us, before any request is made.
pub fn validate(raw: &[u8]) -> Result<&str, UsernameError> {
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
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        assert_eq!(validate(b"alice"), Ok("alice"));
        assert_eq!(
            validate("jos\u{e9}.k@corp".as_bytes()),
            Ok("jos\u{e9}.k@corp")
        );
        assert_eq!(validate(&[b'a'; 256]).map(str::len), Ok(256));
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(validate(b""), Err(UsernameError::Empty));
        assert_eq!(validate(&[b'a'; 257]), Err(UsernameError::TooLong));
        assert_eq!(validate(b"al\nice"), Err(UsernameError::ControlCharacter));
        assert_eq!(validate(b"al\x7fice"), Err(UsernameError::ControlCharacter));
        assert_eq!(validate(b"\xff\xfe"), Err(UsernameError::NotUtf8));
    }
}
