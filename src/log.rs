//! Syslog lines (facility `LOG_AUTHPRIV`) under our own ident.
//!
//! Each call opens its own `/dev/log` datagram socket and closes it again:
//! `openlog(3)` would change the host process's ident, and a socket kept in a
//! global would leak into forks of the host.

use syslog::{Facility, Formatter3164};

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
    let Ok(mut logger) = syslog::unix(formatter) else {
        return;
    };
    let _ = match level {
        Level::Error => logger.err(message),
        Level::Warning => logger.warning(message),
        Level::Info => logger.info(message),
        Level::Debug => logger.debug(message),
    };
}

/// Makes a peer- or user-supplied string safe to put inside a log line:
/// control characters are escaped and the length is capped.
pub fn sanitize(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(200) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
