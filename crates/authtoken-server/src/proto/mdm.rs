//! MDM `UserAuthenticate`, server side: reading a check-in and writing a
//! reply.

use authtoken_protocol::mdm::{parse_dict, string_dict, UserIdentity};
use authtoken_protocol::ProtocolError;
use plist::Value;

/// A check-in request as the server reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckinRequest {
    pub message_type: String,
    pub identity: UserIdentity,
    pub digest_response: Option<String>,
}

/// Parses a `UserAuthenticate` body (an XML plist; see [`parse_dict`]).
pub fn parse_request(body: &[u8]) -> Result<CheckinRequest, ProtocolError> {
    let dict = parse_dict(body, "request plist")?;
    let text = |key: &str| dict.get(key).and_then(Value::as_string).map(str::to_owned);
    let message_type = text("MessageType").ok_or(ProtocolError::Malformed("MessageType"))?;
    let short_name = text("UserShortName").ok_or(ProtocolError::Malformed("UserShortName"))?;
    Ok(CheckinRequest {
        message_type,
        identity: UserIdentity {
            udid: text("UDID").unwrap_or_default(),
            user_id: text("UserID").unwrap_or_default(),
            long_name: text("UserLongName").unwrap_or_else(|| short_name.clone()),
            short_name,
        },
        digest_response: text("DigestResponse"),
    })
}

/// The plist body of a reply dictionary of string values.
pub fn reply_body(entries: &[(&str, &str)]) -> Vec<u8> {
    // The answer's strings are the server's own (printable): writing them
    // cannot fail. Taken out of the zeroizing buffer, not copied: the body
    // goes to the connection as it is.
    string_dict(entries)
        .map(|mut body| std::mem::take(&mut *body))
        .unwrap_or_default()
}
