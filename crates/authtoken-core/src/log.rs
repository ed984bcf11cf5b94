//! Syslog lines (facility `LOG_AUTHPRIV`) under our own ident.
//!
//! Each call opens its own `/dev/log` datagram socket and closes it again:
//! `openlog(3)` would change the host process's ident, and a socket kept in a
//! global would leak into forks of the host. The socket is non-blocking: a
//! stalled syslog daemon drops our line instead of hanging a login.

use std::io::Write;
use std::os::unix::net::UnixDatagram;

const SYSLOG_SOCKET: &str = "/dev/log";
/// journald's own syslog socket: there when journald runs, even where the
/// `/dev/log` link is missing (some containers).
const JOURNAL_SYSLOG_SOCKET: &str = "/run/systemd/journal/dev-log";
/// `LOG_AUTHPRIV` (10) shifted into the facility bits of the priority.
const FACILITY_AUTHPRIV: u8 = 10 << 3;
/// Longest line sent: what every syslog daemon takes in one datagram.
const MAX_LINE_BYTES: usize = 2048;

/// Syslog ident of the PAM module.
pub const MODULE_IDENT: &str = "pam_authtoken";
/// Syslog ident of `authtoken-helper`.
pub const HELPER_IDENT: &str = "authtoken-helper";
/// Syslog ident of the setuid `authtoken-chkpwd`.
pub const CHKPWD_IDENT: &str = "authtoken-chkpwd";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
    Debug,
}

impl Level {
    /// The syslog severity (`LOG_ERR` … `LOG_DEBUG`).
    fn severity(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warning => 4,
            Level::Info => 6,
            Level::Debug => 7,
        }
    }
}

/// One RFC 3164 line without a timestamp: `<PRI>ident[pid]: message`. The
/// receiving daemon stamps it (RFC 3164 §4.3.2; journald and rsyslog do).
/// Writing the local time ourselves would read `TZ` and the zone files in
/// somebody else's process, and the `time` crate `syslog` brings was a
/// tenth of the module.
fn format_line(ident: &str, pid: u32, level: Level, message: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(message.len().min(MAX_LINE_BYTES) + 32);
    let priority = FACILITY_AUTHPRIV | level.severity();
    let _ = write!(line, "<{priority}>{ident}[{pid}]: {message}");
    if line.len() > MAX_LINE_BYTES {
        let mut end = MAX_LINE_BYTES;
        // Cut on a character boundary of the message.
        while end > 0 && (line[end] & 0xC0) == 0x80 {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

/// Sends one line to syslog. Failures to log are ignored: logging must never
/// change an authentication result.
pub fn send(ident: &str, level: Level, message: &str) {
    let line = format_line(ident, std::process::id(), level, message);
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    if socket.set_nonblocking(true).is_err() {
        return;
    }
    if socket.send_to(&line, SYSLOG_SOCKET).is_ok()
        || socket.send_to(&line, JOURNAL_SYSLOG_SOCKET).is_ok()
    {
        return;
    }
    // No syslog at all (a container without one): the helper, chkpwd and
    // the admin tools say it on their standard error, which a caller or
    // the container's log collects. The module never writes to its host's
    // standard error (it may be sshd's protocol stream): its lines are lost.
    if ident != MODULE_IDENT {
        use std::io::Write;
        let _ = std::io::stderr().write_all(&stderr_line(&line));
    }
}

/// A syslog datagram as a line for standard error: without the `<PRI>`.
fn stderr_line(datagram: &[u8]) -> Vec<u8> {
    let text = match datagram.iter().position(|b| *b == b'>') {
        Some(end) if datagram.first() == Some(&b'<') => &datagram[end + 1..],
        _ => datagram,
    };
    let mut out = text.to_vec();
    out.push(b'\n');
    out
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
    use super::{format_line, quote, stderr_line, Level};

    #[test]
    fn a_line_for_stderr_drops_the_priority() {
        let line = format_line("authtoken-helper", 7, Level::Warning, "x=1");
        let text = String::from_utf8(stderr_line(&line)).unwrap();
        assert!(text.starts_with("authtoken-helper[7]: "), "{text}");
        assert!(text.ends_with("x=1\n"), "{text}");
    }

    #[test]
    fn lines_carry_facility_severity_ident_and_pid() {
        assert_eq!(
            format_line("pam_authtoken", 42, Level::Info, "authenticate user=\"a\""),
            b"<86>pam_authtoken[42]: authenticate user=\"a\""
        );
        assert!(format_line("x", 1, Level::Error, "m").starts_with(b"<83>"));
        assert!(format_line("x", 1, Level::Debug, "m").starts_with(b"<87>"));
        let long = format_line("x", 1, Level::Warning, &"é".repeat(2000));
        assert!(long.len() <= 2048);
        assert!(
            std::str::from_utf8(&long).is_ok(),
            "cut on a character boundary"
        );
    }

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
