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
