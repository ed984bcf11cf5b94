//! Apple MDM `UserAuthenticate` check-in: the two plist messages, their
//! replies, and the handshake between them. Transport-agnostic: the helper
//! supplies an HTTPS [`Transport`], tests can supply anything.

use std::io::Cursor;

use plist::{Dictionary, Value};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{check_token, http_digest, scram, ProtocolError, Scheme};
use authtoken_core::outcome::Outcome;

pub const CONTENT_TYPE: &str = "application/x-apple-aspen-mdm-checkin";
pub const MESSAGE_TYPE: &str = "UserAuthenticate";

/// Namespace of the derived `UserID` GUIDs: UUIDv5(URL namespace,
/// "urn:pam-authtoken:UserID"), fixed so the same user on the same device
/// always gets the same GUID.
pub fn user_id_namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:pam-authtoken:UserID")
}

/// `UserID` for `user` on device `udid`: UUIDv5 over `UDID ":" username`,
/// upper-case like Apple's GUIDs.
pub fn derive_user_id(udid: &str, user: &str) -> String {
    let name = format!("{udid}:{user}");
    Uuid::new_v5(&user_id_namespace(), name.as_bytes())
        .hyphenated()
        .to_string()
        .to_uppercase()
}

/// The machine id as an upper-case UUID: Linux's `/etc/machine-id` (32 hex
/// digits), or the hyphenated UUID of FreeBSD's `/etc/hostid` and macOS's
/// hardware UUID.
pub fn udid_from_host_id(text: &str) -> Result<String, ProtocolError> {
    let id = text.trim();
    let hex_digits = id.bytes().filter(u8::is_ascii_hexdigit).count();
    let simple = id.len() == 32 && hex_digits == 32;
    let hyphenated = id.len() == 36 && hex_digits == 32;
    if !simple && !hyphenated {
        return Err(ProtocolError::Malformed("machine-id"));
    }
    let uuid = Uuid::parse_str(id).map_err(|_| ProtocolError::Malformed("machine-id"))?;
    Ok(uuid.hyphenated().to_string().to_uppercase())
}

/// Who is authenticating, as sent in both requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    pub udid: String,
    pub user_id: String,
    pub short_name: String,
    pub long_name: String,
}

/// The plist body of a `UserAuthenticate` request (the second one carries
/// `DigestResponse`).
pub fn request_body(
    id: &UserIdentity,
    digest_response: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>, ProtocolError> {
    let mut entries = vec![
        ("MessageType", MESSAGE_TYPE),
        ("UDID", id.udid.as_str()),
        ("UserID", id.user_id.as_str()),
        ("UserShortName", id.short_name.as_str()),
        ("UserLongName", id.long_name.as_str()),
    ];
    if let Some(response) = digest_response {
        entries.push(("DigestResponse", response));
    }
    string_dict(&entries)
}

/// An XML plist of a dictionary of strings: every message of the
/// exchange, both ways, is one. Written straight into one zeroizing buffer
/// of the exact size (it may carry a digest or a token, so no copy is left
/// in a dictionary or a grown buffer), byte for byte as the `plist` crate
/// writes it; a string XML cannot carry (a control character other than
/// tab, newline and carriage return) is refused.
pub fn string_dict(entries: &[(&str, &str)]) -> Result<Zeroizing<Vec<u8>>, ProtocolError> {
    const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n";
    const TAIL: &str = "</dict>\n</plist>";
    const KEY: (&str, &str) = ("\t<key>", "</key>\n");
    const STRING: (&str, &str) = ("\t<string>", "</string>\n");
    let mut size = HEAD.len() + TAIL.len();
    for (key, value) in entries {
        size += KEY.0.len() + KEY.1.len() + STRING.0.len() + STRING.1.len();
        size += escaped_len(key)? + escaped_len(value)?;
    }
    let mut body = Zeroizing::new(Vec::with_capacity(size));
    body.extend_from_slice(HEAD.as_bytes());
    for (key, value) in entries {
        for (open, text, close) in [(KEY.0, key, KEY.1), (STRING.0, value, STRING.1)] {
            body.extend_from_slice(open.as_bytes());
            escape_into(&mut body, text);
            body.extend_from_slice(close.as_bytes());
        }
    }
    body.extend_from_slice(TAIL.as_bytes());
    debug_assert_eq!(body.len(), size, "the buffer never grew");
    Ok(body)
}

/// What `text` takes once escaped for XML character data; an error for a
/// character XML 1.0 cannot carry.
fn escaped_len(text: &str) -> Result<usize, ProtocolError> {
    text.chars().try_fold(0, |len, c| match c {
        // A carriage return as a reference: a reader turns a literal one
        // into a newline.
        '&' | '\r' => Ok(len + 5),
        '<' | '>' => Ok(len + 4),
        '\t' | '\n' => Ok(len + 1),
        c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => Err(
            ProtocolError::Malformed("plist: a character XML cannot carry"),
        ),
        c => Ok(len + c.len_utf8()),
    })
}

fn escape_into(out: &mut Vec<u8>, text: &str) {
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape: &[u8] = match byte {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\r' => b"&#13;",
            _ => continue,
        };
        out.extend_from_slice(&text.as_bytes()[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&text.as_bytes()[start..]);
}

/// How deep values may nest inside the top-level dictionary. Every message
/// of the exchange is a flat dictionary of strings; a little nesting is
/// skipped over (a peer may add keys we do not read), more is refused.
const MAX_NESTING: usize = 4;

/// The string entries of an XML plist whose top level is a dictionary.
///
/// Binary plists are refused: no peer of the exchange sends one (Apple's
/// clients send XML check-ins, MDM servers answer XML), and their shared
/// object references let a few hundred bytes unfold into 10^8 values.
/// XML has no references, so the work here is linear in the body: one
/// streamed pass, no tree built, values other than strings skipped.
pub fn parse_dict(body: &[u8], what: &'static str) -> Result<Dictionary, ProtocolError> {
    use plist::stream::{Event, XmlReader};
    let malformed = || ProtocolError::Malformed(what);
    if body.starts_with(b"bplist") {
        return Err(malformed());
    }
    let mut events = XmlReader::new(Cursor::new(body));
    let mut next = || match events.next() {
        Some(Ok(event)) => Ok(Some(event)),
        Some(Err(_)) => Err(malformed()),
        None => Ok(None),
    };
    if !matches!(next()?, Some(Event::StartDictionary(_))) {
        return Err(malformed());
    }
    let mut dict = Dictionary::new();
    loop {
        let key = match next()?.ok_or_else(malformed)? {
            Event::EndCollection => break,
            Event::String(key) => key.into_owned(),
            _ => return Err(malformed()),
        };
        match next()?.ok_or_else(malformed)? {
            Event::String(value) => {
                dict.insert(key, Value::String(value.into_owned()));
            }
            Event::StartArray(_) | Event::StartDictionary(_) => {
                let mut depth = 1;
                while depth > 0 {
                    match next()?.ok_or_else(malformed)? {
                        Event::StartArray(_) | Event::StartDictionary(_) => depth += 1,
                        Event::EndCollection => depth -= 1,
                        _ => {}
                    }
                    if depth > MAX_NESTING {
                        return Err(malformed());
                    }
                }
            }
            Event::EndCollection => return Err(malformed()),
            _ => {}
        }
    }
    if next()?.is_some() {
        return Err(malformed());
    }
    Ok(dict)
}

pub use crate::transport::{Reply, Request, Transport, TransportFailure};

/// `PUT`s a check-in message to the `CheckInURL`.
fn put(transport: &mut dyn Transport, body: &[u8]) -> Result<Reply, TransportFailure> {
    transport.send(&Request::new("PUT", "").with_body(CONTENT_TYPE, body))
}

/// Client-side trust knobs from the config.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The schemes we answer; any other challenge ends the handshake.
    pub schemes: Vec<Scheme>,
    pub require_server_signature: bool,
    pub min_scram_iterations: u32,
    pub max_scram_iterations: u32,
    /// SCRAM-SHA-256-PLUS: bind, require or never bind.
    pub channel_binding: authtoken_core::kinds::ChannelBindingPolicy,
}

/// A parsed challenge we can answer.
pub enum Parsed {
    /// `plus`: the authority offered SCRAM-SHA-256-PLUS.
    Scram {
        challenge: scram::Challenge,
        plus: bool,
    },
    HttpDigest(http_digest::Challenge),
}

impl Parsed {
    fn scheme(&self) -> Scheme {
        match self {
            Parsed::Scram { .. } => Scheme::ScramSha256,
            Parsed::HttpDigest(c) => match c.hash() {
                http_digest::Algorithm::Sha256 => Scheme::DigestSha256,
                http_digest::Algorithm::Md5 => Scheme::DigestMd5,
            },
        }
    }
}

/// Parses the challenge and refuses a scheme the config does not list, so
/// a peer cannot downgrade us to one that proves nothing about it.
fn parse_scheme(challenge: &str, settings: &ClientSettings) -> Result<Parsed, ProtocolError> {
    let (word, rest) = challenge
        .split_once(' ')
        .ok_or(ProtocolError::UnsupportedChallenge)?;
    let parsed = if word == scram::SCHEME || word == crate::channel_binding::SCHEME_PLUS {
        Parsed::Scram {
            challenge: scram::parse_challenge(
                rest,
                settings.min_scram_iterations..=settings.max_scram_iterations,
            )?,
            plus: word == crate::channel_binding::SCHEME_PLUS,
        }
    } else if word.eq_ignore_ascii_case(http_digest::SCHEME) {
        Parsed::HttpDigest(http_digest::parse_challenge(rest)?)
    } else {
        return Err(ProtocolError::UnsupportedChallenge);
    };
    let scheme = parsed.scheme();
    if !settings.schemes.contains(&scheme) {
        return Err(ProtocolError::Refused(format!(
            "scheme {} not allowed (see schemes in the config)",
            scheme.name()
        )));
    }
    Ok(parsed)
}

/// The GS2 header for a SCRAM challenge (docs/PROTOCOL.md "Channel binding"): bound
/// when PLUS is offered and the connection gives a binding; `y` when the
/// client could bind but was offered the plain scheme; `n` otherwise.
/// `require` makes anything unbound unavailable; so does `prefer` when PLUS
/// was offered and this connection cannot bind (a relay's).
fn choose_gs2(
    plus: bool,
    policy: authtoken_core::kinds::ChannelBindingPolicy,
    bindings: Option<&crate::channel_binding::Bindings>,
) -> Result<(crate::channel_binding::Gs2, Vec<u8>), &'static str> {
    use crate::channel_binding::Gs2;
    use authtoken_core::kinds::ChannelBindingPolicy as Policy;
    let best = bindings.and_then(|b| b.best());
    match (policy, plus, best) {
        (Policy::Off, _, _) => Ok((Gs2::NotSupported, Vec::new())),
        (_, true, Some((kind, data))) => Ok((Gs2::Bound(kind), data.to_vec())),
        (Policy::Require, true, None) => {
            Err("no channel binding for this connection (channel_binding = \"require\")")
        }
        (Policy::Require, false, _) => {
            Err("the authority offered no channel binding (channel_binding = \"require\")")
        }
        // The authority could bind on its end of the connection; this end
        // cannot: the two are not one connection.
        (Policy::Prefer, true, None) => Err(
            "the authority offered channel binding but this connection gives none: a relay may \
             stand between (only channel_binding = \"off\" signs in this way)",
        ),
        (Policy::Prefer, false, Some(_)) => Ok((Gs2::NotOffered, Vec::new())),
        (Policy::Prefer, false, None) => Ok((Gs2::NotSupported, Vec::new())),
    }
}

/// Runs the two-step handshake. `cnonce` supplies the client nonce, `step`
/// receives debug lines (never secrets).
pub fn user_authenticate(
    transport: &mut dyn Transport,
    id: &UserIdentity,
    password: &[u8],
    settings: &ClientSettings,
    cnonce: &mut dyn FnMut() -> Result<String, ProtocolError>,
    step: &mut dyn FnMut(&str),
) -> Outcome {
    match handshake(transport, id, password, settings, cnonce, step) {
        Ok(outcome) => outcome,
        Err(e) => Outcome::unavailable(e.to_string()),
    }
}

fn handshake(
    transport: &mut dyn Transport,
    id: &UserIdentity,
    password: &[u8],
    settings: &ClientSettings,
    cnonce: &mut dyn FnMut() -> Result<String, ProtocolError>,
    step: &mut dyn FnMut(&str),
) -> Result<Outcome, ProtocolError> {
    let first = match put(transport, &request_body(id, None)?) {
        Ok(reply) => reply,
        Err(TransportFailure::Unreachable(reason)) => return Ok(Outcome::Unreachable { reason }),
        Err(TransportFailure::Failed(reason)) => return Err(ProtocolError::Refused(reason)),
    };
    step(&format!(
        "first UserAuthenticate answered HTTP {}",
        first.status
    ));
    match first.status {
        410 => return Ok(Outcome::Unmanaged),
        200 => {}
        status => {
            return Ok(Outcome::unavailable(format!(
                "HTTP {status} to UserAuthenticate"
            )))
        }
    }
    let Some(scheme) = read_challenge(&first.body, settings)? else {
        return Ok(Outcome::NoTokenNeeded);
    };
    let nonce = cnonce()?;
    let bindings = transport.channel_bindings();
    let (digest_response, expected_signature) = match &scheme {
        Parsed::Scram { challenge: c, plus } => {
            step(&format!(
                "SCRAM-SHA-256{} challenge, {} iterations",
                if *plus { "-PLUS" } else { "" },
                c.iterations
            ));
            let (gs2, data) = match choose_gs2(*plus, settings.channel_binding, bindings.as_ref()) {
                Ok(choice) => choice,
                Err(why) => return Ok(Outcome::unavailable(why)),
            };
            step(&match gs2 {
                crate::channel_binding::Gs2::Bound(kind) => {
                    format!("bound to this connection ({})", kind.name())
                }
                crate::channel_binding::Gs2::NotOffered => {
                    "not bound: no channel binding offered (GS2 flag y)".to_owned()
                }
                crate::channel_binding::Gs2::NotSupported => {
                    "not bound (no binding for this connection, or channel_binding = \"off\")"
                        .to_owned()
                }
            });
            let keys = scram::derive_keys(password, &c.salt, c.iterations);
            let out = scram::client_final_gs2(&id.short_name, &keys, c, &nonce, gs2, &data);
            (out.digest_response, Some(out.expected_server_signature))
        }
        Parsed::HttpDigest(c) => {
            step(&format!(
                "HTTP Digest challenge, {}{}",
                c.hash().name(),
                if c.qop_auth { " qop=auth" } else { "" }
            ));
            (
                http_digest::digest_response(&id.short_name, password, c, &nonce),
                None,
            )
        }
    };
    let second =
        put(transport, &request_body(id, Some(&digest_response))?).map_err(
            |failure| match failure {
                TransportFailure::Unreachable(reason) | TransportFailure::Failed(reason) => {
                    ProtocolError::Refused(reason)
                }
            },
        )?;
    step(&format!("DigestResponse answered HTTP {}", second.status));
    // Both steps on one connection: a login bound to the first must not
    // have gone out on another.
    if bindings.is_some() && transport.channel_bindings() != bindings {
        return Ok(Outcome::unavailable(
            "the connection changed between the two steps",
        ));
    }
    match second.status {
        // Apple's article: a rejected digest may get 410.
        410 => return Ok(Outcome::Rejected),
        200 => {}
        status => {
            return Ok(Outcome::unavailable(format!(
                "HTTP {status} to DigestResponse"
            )))
        }
    }
    read_token_reply(&second.body, expected_signature.as_deref(), settings)
}

/// The first reply's body: the challenge to answer, or `None` for an empty
/// `DigestChallenge` (no token needed).
pub fn read_challenge(
    body: &[u8],
    settings: &ClientSettings,
) -> Result<Option<Parsed>, ProtocolError> {
    let reply = parse_dict(body, "challenge reply")?;
    let challenge = reply
        .get("DigestChallenge")
        .and_then(Value::as_string)
        .ok_or(ProtocolError::Malformed(
            "challenge reply: no DigestChallenge",
        ))?;
    if challenge.is_empty() {
        return Ok(None);
    }
    parse_scheme(challenge, settings).map(Some)
}

/// The second reply's body, for a response whose server signature should
/// be `expected_signature` (SCRAM).
pub fn read_token_reply(
    body: &[u8],
    expected_signature: Option<&str>,
    settings: &ClientSettings,
) -> Result<Outcome, ProtocolError> {
    let reply = parse_dict(body, "token reply")?;
    // An empty AuthToken is the authority's "wrong password"; no AuthToken
    // at all is not an answer.
    let token = match reply.get("AuthToken") {
        None => return Err(ProtocolError::Malformed("token reply: no AuthToken")),
        Some(value) => value
            .as_string()
            .ok_or(ProtocolError::Malformed("token reply: AuthToken"))?,
    };
    if token.is_empty() {
        return Ok(Outcome::Rejected);
    }
    check_token(token)?;
    let token = Zeroizing::new(token.to_owned());
    if let Some(expected) = expected_signature {
        let received = reply.get("ServerSignature").and_then(Value::as_string);
        let valid = received.is_some_and(|r| scram::server_signature_matches(expected, r));
        if !valid && settings.require_server_signature {
            let what = if received.is_some() {
                "wrong"
            } else {
                "missing"
            };
            return Ok(Outcome::unavailable(format!(
                "{what} ServerSignature: the peer does not hold this user's verifier"
            )));
        }
    }
    Ok(Outcome::token(token))
}

#[cfg(test)]
mod writer_tests {
    use super::*;

    /// The `plist` crate's own writing of the same dictionary.
    fn by_the_crate(entries: &[(&str, &str)]) -> Vec<u8> {
        let dict: Dictionary = entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let mut out = Vec::new();
        Value::Dictionary(dict).to_writer_xml(&mut out).unwrap();
        out
    }

    #[test]
    fn the_hand_written_plist_is_the_crates_byte_for_byte() {
        // (An empty dictionary, which no message is, the crate writes as
        // `<dict/>`; ours is `<dict>\n</dict>`, the same to a reader.)
        assert!(parse_dict(&string_dict(&[]).unwrap(), "test")
            .unwrap()
            .is_empty());
        let cases: [&[(&str, &str)]; 3] = [
            &[("AuthToken", "")],
            &[
                (
                    "DigestChallenge",
                    "SCRAM-SHA-256 r=abc,s=QSXCR+Q6sek8bf92,i=4096",
                ),
                ("ServerSignature", "v=6rri"),
            ],
            &[
                ("A<&>", "x <&> y\t\n\r é 漢 🔑"),
                ("UserShortName", "alice"),
                ("Empty", ""),
            ],
        ];
        for entries in cases {
            let ours = string_dict(entries).unwrap();
            assert_eq!(*ours, by_the_crate(entries), "{entries:?}");
            let back = parse_dict(&ours, "test").unwrap();
            for (k, v) in entries {
                assert_eq!(back.get(k).and_then(Value::as_string), Some(*v));
            }
        }
        assert!(string_dict(&[("A", "bell\u{7}")]).is_err());
        assert!(string_dict(&[("A", "\u{FFFE}")]).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn only_flat_xml_dictionaries_are_read() {
        let good = string_dict(&[("MessageType", "UserAuthenticate"), ("A", "b")]).unwrap();
        let dict = parse_dict(&good, "t").unwrap();
        assert_eq!(dict.get("A").and_then(Value::as_string), Some("b"));
        // Binary plists: refused at the magic, whatever follows.
        let mut binary = Vec::new();
        Value::Dictionary(parse_dict(&good, "t").unwrap())
            .to_writer_binary(&mut binary)
            .unwrap();
        assert!(parse_dict(&binary, "t").is_err());
        // Values other than strings are skipped; shallow nesting too.
        let mixed = br#"<?xml version="1.0"?><plist version="1.0"><dict>
            <key>n</key><integer>3</integer>
            <key>x</key><array><dict><key>y</key><string>z</string></dict></array>
            <key>s</key><string>t</string></dict></plist>"#;
        let dict = parse_dict(mixed, "t").unwrap();
        assert_eq!(dict.len(), 1);
        assert_eq!(dict.get("s").and_then(Value::as_string), Some("t"));
        // Deep nesting is refused, not recursed into.
        let deep = format!(
            r#"<?xml version="1.0"?><plist version="1.0"><dict><key>k</key>{}{}</dict></plist>"#,
            "<array>".repeat(10_000),
            "</array>".repeat(10_000)
        );
        assert!(parse_dict(deep.as_bytes(), "t").is_err());
        // Not a dictionary at the top, or trailing junk.
        assert!(parse_dict(br#"<plist version="1.0"><string>x</string></plist>"#, "t").is_err());
        assert!(parse_dict(b"", "t").is_err());
        assert!(parse_dict(b"<plist><dict><key>a</key>", "t").is_err());
    }

    /// Replays scripted replies and records what was sent.
    struct Script {
        replies: VecDeque<Result<Reply, TransportFailure>>,
        sent: Vec<Dictionary>,
    }

    /// A string field of a sent message.
    fn field<'a>(sent: &'a Dictionary, key: &str) -> Option<&'a str> {
        sent.get(key).and_then(Value::as_string)
    }

    impl Script {
        fn new(replies: Vec<Result<Reply, TransportFailure>>) -> Self {
            Script {
                replies: replies.into(),
                sent: Vec::new(),
            }
        }
    }

    impl Transport for Script {
        fn send(&mut self, request: &Request<'_>) -> Result<Reply, TransportFailure> {
            assert_eq!(
                (request.method, request.path, request.content_type),
                ("PUT", "", Some(CONTENT_TYPE))
            );
            assert_eq!(request.authorization, None);
            let body = request.body.expect("a check-in has a body");
            self.sent
                .push(parse_dict(body, "request").expect("client sent a valid plist"));
            self.replies.pop_front().expect("no more scripted replies")
        }
    }

    fn ok(entries: &[(&str, &str)]) -> Result<Reply, TransportFailure> {
        Ok(Reply {
            status: 200,
            body: string_dict(entries).unwrap().to_vec(),
        })
    }

    fn status(code: u16) -> Result<Reply, TransportFailure> {
        Ok(Reply {
            status: code,
            body: Vec::new(),
        })
    }

    fn identity() -> UserIdentity {
        UserIdentity {
            udid: "UDID-1".into(),
            user_id: derive_user_id("UDID-1", "user"),
            short_name: "user".into(),
            long_name: "A User".into(),
        }
    }

    fn settings() -> ClientSettings {
        ClientSettings {
            schemes: vec![Scheme::ScramSha256],
            require_server_signature: true,
            min_scram_iterations: 4096,
            max_scram_iterations: 10_000_000,
            channel_binding: Default::default(),
        }
    }
    use crate::scram::vector::{CHALLENGE, CNONCE, RESPONSE, SIGNATURE};

    fn run(script: &mut Script, password: &[u8], settings: &ClientSettings) -> Outcome {
        user_authenticate(
            script,
            &identity(),
            password,
            settings,
            &mut || Ok(CNONCE.into()),
            &mut |_| {},
        )
    }

    #[test]
    fn scram_success_sends_vector_response() {
        let mut script = Script::new(vec![
            ok(&[("DigestChallenge", CHALLENGE)]),
            ok(&[("AuthToken", "tok"), ("ServerSignature", SIGNATURE)]),
        ]);
        match run(&mut script, b"pencil", &settings()) {
            Outcome::Token { token, .. } => assert_eq!(&*token, "tok"),
            other => panic!("{other:?}"),
        }
        assert_eq!(script.sent.len(), 2);
        let first = &script.sent[0];
        let id = identity();
        for (key, value) in [
            ("MessageType", "UserAuthenticate"),
            ("UDID", &id.udid),
            ("UserID", &id.user_id),
            ("UserShortName", &id.short_name),
            ("UserLongName", &id.long_name),
        ] {
            assert_eq!(field(first, key), Some(value), "{key}");
        }
        assert_eq!(first.len(), 5, "nothing else in the first message");
        assert_eq!(field(&script.sent[1], "DigestResponse"), Some(RESPONSE));
    }

    #[test]
    fn server_signature_is_enforced() {
        for second in [
            ok(&[("AuthToken", "tok")]),
            ok(&[("AuthToken", "tok"), ("ServerSignature", "v=AAAA")]),
        ] {
            let mut script = Script::new(vec![ok(&[("DigestChallenge", CHALLENGE)]), second]);
            assert!(matches!(
                run(&mut script, b"pencil", &settings()),
                Outcome::Unavailable { .. }
            ));
        }
        let lax = ClientSettings {
            require_server_signature: false,
            ..settings()
        };
        let mut script = Script::new(vec![
            ok(&[("DigestChallenge", CHALLENGE)]),
            ok(&[("AuthToken", "tok")]),
        ]);
        assert!(matches!(
            run(&mut script, b"pencil", &lax),
            Outcome::Token { .. }
        ));
    }

    #[test]
    fn reply_mapping() {
        let cases: Vec<(Vec<Result<Reply, TransportFailure>>, &str)> = vec![
            (vec![status(410)], "unmanaged"),
            (vec![ok(&[("DigestChallenge", "")])], "no_token_needed"),
            (vec![status(500)], "unavailable"),
            (vec![status(403)], "unavailable"),
            (
                vec![Err(TransportFailure::Unreachable(
                    "connection refused".into(),
                ))],
                "unreachable",
            ),
            (
                vec![Err(TransportFailure::Failed("timeout".into()))],
                "unavailable",
            ),
            (
                vec![
                    ok(&[("DigestChallenge", CHALLENGE)]),
                    Err(TransportFailure::Unreachable("gone".into())),
                ],
                "unavailable",
            ),
            (vec![ok(&[("Other", "x")])], "unavailable"),
            (
                vec![Ok(Reply {
                    status: 200,
                    body: b"<html>".to_vec(),
                })],
                "unavailable",
            ),
            (
                vec![ok(&[("DigestChallenge", "Basic realm=\"x\"")])],
                "unavailable",
            ),
            (vec![ok(&[("DigestChallenge", " ")])], "unavailable"),
            (
                vec![
                    ok(&[("DigestChallenge", CHALLENGE)]),
                    ok(&[("AuthToken", "")]),
                ],
                "rejected",
            ),
            (
                vec![ok(&[("DigestChallenge", CHALLENGE)]), ok(&[])],
                "unavailable",
            ),
            (
                vec![
                    ok(&[("DigestChallenge", CHALLENGE)]),
                    ok(&[("AuthToken", &"t".repeat(16 * 1024 + 1))]),
                ],
                "unavailable",
            ),
            (
                vec![
                    ok(&[("DigestChallenge", CHALLENGE)]),
                    ok(&[("AuthToken", "to\nken"), ("ServerSignature", SIGNATURE)]),
                ],
                "unavailable",
            ),
            (
                vec![ok(&[(
                    "DigestChallenge",
                    "Digest realm=\"mdm\",nonce=\"n1\",qop=\"auth\",algorithm=SHA-256",
                )])],
                "unavailable",
            ),
            (
                vec![ok(&[(
                    "DigestChallenge",
                    "Digest realm=\"mdm\",nonce=\"n1\"",
                )])],
                "unavailable",
            ),
            (
                vec![ok(&[("DigestChallenge", CHALLENGE)]), status(410)],
                "rejected",
            ),
            (
                vec![ok(&[("DigestChallenge", CHALLENGE)]), status(502)],
                "unavailable",
            ),
        ];
        for (replies, expected) in cases {
            let count = replies.len();
            let mut script = Script::new(replies);
            let outcome = run(&mut script, b"pencil", &settings());
            assert_eq!(outcome.label(), expected, "{outcome:?}");
            assert_eq!(
                script.sent.len(),
                count,
                "no request beyond the scripted ones"
            );
        }
    }

    #[test]
    fn the_gs2_header_follows_the_policy_the_offer_and_the_connection() {
        use crate::channel_binding::{BindingType, Bindings, Gs2};
        use authtoken_core::kinds::ChannelBindingPolicy as Policy;
        let tls13 = Bindings {
            exporter: Some(vec![1; 32]),
            end_point: Some(vec![2; 32]),
        };
        let ed25519 = Bindings {
            exporter: None,
            end_point: None,
        };
        let end_point_only = Bindings {
            exporter: None,
            end_point: Some(vec![2; 32]),
        };
        let gs2 = |plus, policy, b: Option<&Bindings>| choose_gs2(plus, policy, b).map(|(g, _)| g);
        assert_eq!(
            gs2(true, Policy::Prefer, Some(&tls13)),
            Ok(Gs2::Bound(BindingType::TlsExporter))
        );
        assert_eq!(
            gs2(true, Policy::Require, Some(&end_point_only)),
            Ok(Gs2::Bound(BindingType::TlsServerEndPoint))
        );
        assert!(
            gs2(true, Policy::Require, Some(&ed25519)).is_err(),
            "never an empty binding"
        );
        assert!(
            gs2(true, Policy::Prefer, Some(&ed25519))
                .unwrap_err()
                .contains("a relay may stand between"),
            "PLUS offered, no binding here: not one connection"
        );
        assert!(gs2(true, Policy::Prefer, None).is_err());
        assert_eq!(
            gs2(true, Policy::Off, Some(&ed25519)),
            Ok(Gs2::NotSupported)
        );
        assert_eq!(
            gs2(false, Policy::Prefer, Some(&tls13)),
            Ok(Gs2::NotOffered),
            "y: downgrade evidence"
        );
        assert!(gs2(false, Policy::Require, Some(&tls13)).is_err());
        assert_eq!(
            gs2(false, Policy::Prefer, None),
            Ok(Gs2::NotSupported),
            "plain http"
        );
        assert_eq!(gs2(true, Policy::Off, Some(&tls13)), Ok(Gs2::NotSupported));
        assert_eq!(
            choose_gs2(true, Policy::Prefer, Some(&tls13)).unwrap().1,
            vec![1; 32]
        );
    }

    #[test]
    fn http_digest_challenge_is_answered_when_allowed() {
        let settings = ClientSettings {
            schemes: vec![Scheme::DigestSha256],
            ..settings()
        };
        let mut script = Script::new(vec![
            ok(&[(
                "DigestChallenge",
                "Digest realm=\"mdm\",nonce=\"n1\",qop=\"auth\",algorithm=SHA-256",
            )]),
            ok(&[("AuthToken", "tok")]),
        ]);
        assert!(matches!(
            run(&mut script, b"pw", &settings),
            Outcome::Token { .. }
        ));
        let challenge = http_digest::parse_challenge(
            "realm=\"mdm\",nonce=\"n1\",qop=\"auth\",algorithm=SHA-256",
        )
        .unwrap();
        let expected =
            http_digest::digest_response("user", b"pw", &challenge, "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(field(&script.sent[1], "DigestResponse"), Some(&**expected));
    }

    #[test]
    fn identifiers() {
        for id in [
            "0123456789abcdef0123456789abcdef\n",
            "01234567-89ab-cdef-0123-456789abcdef\n",
        ] {
            assert_eq!(
                udid_from_host_id(id).unwrap(),
                "01234567-89AB-CDEF-0123-456789ABCDEF"
            );
        }
        for bad in [
            "xyz",
            "0123456789abcdef0123456789abcdeg",
            "{01234567-89ab-cdef-0123-456789abcdef}",
        ] {
            assert!(udid_from_host_id(bad).is_err(), "{bad}");
        }
        let a = derive_user_id("U", "alice");
        assert_eq!(a, derive_user_id("U", "alice"));
        assert_ne!(a, derive_user_id("U", "bob"));
        assert_ne!(a, derive_user_id("V", "alice"));
        assert_eq!(Uuid::parse_str(&a).unwrap().get_version_num(), 5);
        assert_eq!(a, a.to_uppercase());
    }
}
