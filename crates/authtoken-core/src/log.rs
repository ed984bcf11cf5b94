//! Syslog lines (facility `LOG_AUTHPRIV`) under our own ident.
//!
//! Each call opens its own `/dev/log` datagram socket and closes it again:
//! `openlog(3)` would change the host process's ident, and a socket kept in a
//! global would leak into forks of the host. The socket is non-blocking: a
//! stalled syslog daemon drops our line instead of hanging a login.

use std::os::unix::net::UnixDatagram;

use syslog::{Facility, Formatter3164, LogFormat, Severity};

const SYSLOG_SOCKET: &str = "/dev/log";

/// Syslog ident of the PAM module.
pub const MODULE_IDENT: &str = "pam_authtoken";
/// Syslog ident of `authtoken-helper`.
pub const HELPER_IDENT: &str = "authtoken-helper";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
    Debug,
}

/// Sends one line to syslog. Failures to log are ignored: logging must never
/// change an authentication result.
pub fn send(ident: &str, level: Level, message: &str) {
    let formatter = Formatter3164 {
        facility: Facility::LOG_AUTHPRIV,
        hostname: None,
        process: ident.to_owned(),
        pid: std::process::id(),
    };
    let severity = match level {
        Level::Error => Severity::LOG_ERR,
        Level::Warning => Severity::LOG_WARNING,
        Level::Info => Severity::LOG_INFO,
        Level::Debug => Severity::LOG_DEBUG,
    };
    let mut line = Vec::with_capacity(message.len() + 64);
    if formatter.format(&mut line, severity, message).is_err() {
        return;
    }
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    if socket.set_nonblocking(true).is_err() {
        return;
    }
    let _ = socket.send_to(&line, SYSLOG_SOCKET);
}

/// Makes a peer- or user-supplied string one safe value of a `key=value`
/// log line: in double quotes, with `"` and `\\` escaped, and every
/// character a reader could be fooled by written as `\u{..}`: control
/// characters, and every non-ASCII character that is not a letter or digit
/// (this takes in the Unicode format characters, U+202E among them, and the
/// line and paragraph separators). A user name such as `bob outcome=token`
/// stays inside its quotes. Capped at 200 characters.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(200) + 2);
    out.push('"');
    for c in text.chars().take(200) {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if !c.is_ascii() && c.is_alphanumeric() => out.push(c),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    if text.chars().nth(200).is_some() {
        out.push_str("...");
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn values_stay_inside_their_quotes() {
        assert_eq!(quote("alice"), "\"alice\"");
        assert_eq!(quote("bob\" outcome=token"), "\"bob\\\" outcome=token\"");
        assert_eq!(quote("a\\b"), "\"a\\\\b\"");
        assert_eq!(quote("x\ny"), "\"x\\u{a}y\"");
        assert_eq!(quote("evil\u{202e}txt"), "\"evil\\u{202e}txt\"");
        assert_eq!(quote("a\u{2028}b\u{2029}c"), "\"a\\u{2028}b\\u{2029}c\"");
        assert_eq!(quote("zero\u{200b}width"), "\"zero\\u{200b}width\"");
        assert_eq!(quote("José"), "\"José\"");
        assert_eq!(quote(&"x".repeat(300)).len(), 200 + 5);
    }
}
