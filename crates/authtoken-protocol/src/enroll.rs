//! The enrollment bodies (docs/PROTOCOL.md, "Enrollment"), as both ends
//! read and write them: the machine's request (a join with a token, or a
//! renewal authorised by the current certificate) and the authority's
//! answer, and the rules for the names and UDIDs they carry.

use serde::{Deserialize, Serialize};

/// How a device certificate names the machine it was issued for: a URI
/// SAN `urn:authtoken:udid:UDID`.
pub const UDID_URI_PREFIX: &str = "urn:authtoken:udid:";
/// Largest machine name taken (a host name).
pub const MAX_NAME_BYTES: usize = 253;

/// `POST …/enroll` and `POST …/enroll/renew`: one JSON object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub v: u32,
    /// `ID.SECRET` (a join; absent for a renewal, which the current
    /// certificate authorises).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A PKCS#10 request, PEM.
    pub csr: String,
    pub udid: String,
    pub name: String,
}

/// What the authority answers a join or a renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollAnswer {
    pub v: u32,
    /// The device certificate, then the device CA's: PEM.
    pub certificate: String,
    pub serial: String,
    pub not_after: u64,
    /// The authority's clock (Unix seconds): a client whose own is far off
    /// says so.
    pub time: u64,
}

/// A machine name: a host name's characters, at most 253 bytes, not
/// starting with `-` or `.`.
pub fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !name.starts_with(['-', '.'])
}

/// A UDID: a UUID, as MDM writes it (any case, with hyphens).
pub fn udid_ok(udid: &str) -> bool {
    udid.len() == 36
        && udid.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A Unix time as administrators read it: `2026-12-06 08:15 UTC`.
pub fn utc_text(secs: u64) -> String {
    let Ok(when) = i64::try_from(secs)
        .map_err(|_| ())
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| ()))
    else {
        return format!("{secs} s after 1970");
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        when.year(),
        u8::from(when.month()),
        when.day(),
        when.hour(),
        when.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_udids() {
        assert!(name_ok("laptop-7.example.com"));
        for bad in ["", "-x", ".x", "a b", "a/b", &"a".repeat(254)] {
            assert!(!name_ok(bad), "{bad:?}");
        }
        assert!(udid_ok("01234567-89ab-CDEF-0123-456789ABCDEF"));
        assert!(!udid_ok("01234567-89ab-CDEF-0123-456789ABCDEG"));
        assert!(!udid_ok("0123456789ab-CDEF-0123-456789ABCDEF-"));
    }

    #[test]
    fn dates_read_as_calendars_do() {
        assert_eq!(utc_text(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_text(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_text(1_796_544_392), "2026-12-06 08:06 UTC");
        assert_eq!(utc_text(4_107_542_399), "2100-02-28 23:59 UTC");
    }
}
