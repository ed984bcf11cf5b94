//! The local token device (Encedo HEM API `/api/auth/token`): the challenge,
//! the X25519/HS256 `auth` JWT the client answers with, and the device's
//! check of it — exactly as docs/PROTOCOL.md's "Backend `hem`" section writes it.

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use ring::hmac;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::ProtocolError;
use crate::transport::{Request, Transport, TransportFailure};
use authtoken_core::outcome::Outcome;

pub const TOKEN_PATH: &str = "/api/auth/token";
/// PBKDF2 rounds that turn the passphrase into the user's X25519 secret.
pub const KDF_ITERATIONS: u32 = 600_000;
/// Lifetime of the `auth` JWT the client signs.
pub const AUTH_LIFETIME_SECS: u64 = 3600;

/// `GET /api/auth/token` → 200.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub exp: u64,
    pub spk: String,
    pub jti: String,
    pub lbl: String,
    pub eid: String,
}

/// The JWT header of the client's `auth`, in this key order.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthHeader {
    pub ecdh: String,
    pub alg: String,
    pub typ: String,
}

/// The JWT payload of the client's `auth`, in this key order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthPayload {
    pub jti: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub iss: String,
    pub scope: String,
}

/// The user's X25519 secret: PBKDF2-HMAC-SHA256(passphrase, salt = the
/// `eid` string as received, 600000, 32), clamped by x25519.
pub fn user_secret(passphrase: &[u8], eid: &str) -> StaticSecret {
    let mut seed = Zeroizing::new([0u8; 32]);
    crate::kdf::pbkdf2_hmac_sha256(passphrase, eid.as_bytes(), KDF_ITERATIONS, &mut *seed);
    StaticSecret::from(*seed)
}

/// `iss`: base64 (with padding) of the public key of `secret`.
pub fn public_key_b64(secret: &StaticSecret) -> String {
    B64.encode(PublicKey::from(secret).as_bytes())
}

/// An X25519 public key from base64.
pub fn decode_key(text: &str, what: &'static str) -> Result<PublicKey, ProtocolError> {
    let bytes: [u8; 32] = B64
        .decode(text)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(ProtocolError::Malformed(what))?;
    Ok(PublicKey::from(bytes))
}

/// An HS256 signature, b64url without padding.
pub fn sign(key: &[u8], signing_input: &str) -> String {
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        signing_input.as_bytes(),
    );
    B64URL.encode(tag.as_ref())
}

/// A JWT part: compact JSON, b64url without padding.
pub fn json_b64url<T: Serialize>(value: &T) -> String {
    B64URL.encode(serde_json::to_vec(value).unwrap_or_default())
}

/// Builds the `auth` string for `challenge` at time `now` (seconds).
pub fn client_auth(
    secret: &StaticSecret,
    challenge: &Challenge,
    scope: &str,
    now: u64,
) -> Result<Zeroizing<String>, ProtocolError> {
    let session_key = decode_key(&challenge.spk, "spk")?;
    let shared = Zeroizing::new(secret.diffie_hellman(&session_key).to_bytes());
    let header = AuthHeader {
        ecdh: "x25519".into(),
        alg: "HS256".into(),
        typ: "JWT".into(),
    };
    let payload = AuthPayload {
        jti: challenge.jti.clone(),
        aud: challenge.spk.clone(),
        exp: now + AUTH_LIFETIME_SECS,
        iat: now,
        iss: public_key_b64(secret),
        scope: scope.to_owned(),
    };
    let signing_input = format!("{}.{}", json_b64url(&header), json_b64url(&payload));
    let signature = sign(&*shared, &signing_input);
    Ok(Zeroizing::new(format!("{signing_input}.{signature}")))
}

/// What the client does with the device's replies (the I/O is the helper's).
pub fn parse_challenge(status: u16, body: &[u8]) -> Result<Challenge, Outcome> {
    match status {
        200 => serde_json::from_slice::<Challenge>(body)
            .map_err(|_| Outcome::unavailable("malformed challenge from the device")),
        403 => Err(Outcome::unavailable("device clock not set (403)")),
        409 => Err(Outcome::unavailable("device not initialised (409)")),
        other => Err(Outcome::unavailable(format!(
            "HTTP {other} to the challenge"
        ))),
    }
}

/// The user the device's label names. With a non-empty `[hem.labels]` map
/// the map is an allow-list: a label it does not name belongs to nobody
/// here (`None`), so a device labelled `root` cannot sign root in when the
/// admin mapped only `"My device" = "alice"`.
pub fn label_user<'a>(
    label: &'a str,
    labels: &'a std::collections::BTreeMap<String, String>,
) -> Option<&'a str> {
    if labels.is_empty() {
        Some(label)
    } else {
        labels.get(label).map(String::as_str)
    }
}

#[derive(Deserialize)]
struct TokenReply {
    token: String,
}

pub fn parse_token_reply(status: u16, body: &[u8]) -> Outcome {
    match status {
        200 => match serde_json::from_slice::<TokenReply>(body) {
            Ok(reply) if !reply.token.is_empty() => match super::check_token(&reply.token) {
                Ok(()) => {
                    let expires = jwt_expiry(&reply.token);
                    Outcome::token_until(Zeroizing::new(reply.token), expires)
                }
                Err(e) => Outcome::unavailable(e.to_string()),
            },
            _ => Outcome::unavailable("malformed token reply from the device"),
        },
        401 => Outcome::Rejected,
        other => Outcome::unavailable(format!("HTTP {other} to the authentication")),
    }
}

/// The `exp` claim of the device's JWT, if it is a JWT with one. Unverified
/// (the client cannot check the device's signature on its own token): it
/// only ever shortens how long the session keeps the token.
pub fn jwt_expiry(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    claims.get("exp")?.as_u64()
}

/// What the client holds to about the device, from `[hem]` in the config.
#[derive(Debug, Clone)]
pub struct DeviceSettings<'a> {
    /// The device identity key expected (`hem.eid`); another is refused.
    pub eid: Option<&'a str>,
    /// Device label -> user (`[hem.labels]`), an allow-list when not empty.
    pub labels: &'a std::collections::BTreeMap<String, String>,
    /// The `scope` claim requested.
    pub scope: &'a str,
}

/// The whole `hem` handshake through `transport`: the challenge, the
/// checks of who the device is and whom it belongs to, the `auth` JWT, the
/// reply. `now` is the clock (seconds since the epoch) and `is_superuser`
/// tells a uid-0 account (the helper looks it up in the passwd database):
/// both come from the caller, so this stays free of I/O.
pub fn user_authenticate(
    transport: &mut dyn Transport,
    device: &DeviceSettings<'_>,
    user: &str,
    password: &[u8],
    now: u64,
    is_superuser: &dyn Fn(&str) -> bool,
    step: &mut dyn FnMut(&str),
) -> Outcome {
    let reply = match transport.send(&Request::new("GET", TOKEN_PATH)) {
        Ok(reply) => reply,
        Err(TransportFailure::Unreachable(reason)) => return Outcome::Unreachable { reason },
        Err(TransportFailure::Failed(reason)) => return Outcome::unavailable(reason),
    };
    step(&format!("challenge answered HTTP {}", reply.status));
    let challenge = match parse_challenge(reply.status, &reply.body) {
        Ok(challenge) => challenge,
        Err(outcome) => return outcome,
    };
    // A pinned device identity: any other device is not our authority.
    if device.eid.is_some_and(|pinned| challenge.eid != pinned) {
        return Outcome::unavailable("device eid differs from hem.eid: not the configured device");
    }
    // The 410-style opt-out: the device belongs to another user.
    if label_user(&challenge.lbl, device.labels) != Some(user) {
        step("device label names another user: not managed");
        return Outcome::Unmanaged;
    }
    // A label is the device's word, not the admin's: it names the
    // superuser only through a mapping the admin wrote.
    if device.labels.is_empty() && is_superuser(user) {
        step("device label names a uid-0 account without a [hem.labels] mapping: not managed");
        return Outcome::Unmanaged;
    }
    step(&format!("key derivation ({KDF_ITERATIONS} PBKDF2 rounds)"));
    let secret = user_secret(password, &challenge.eid);
    step("key derivation done");
    let auth = match client_auth(&secret, &challenge, device.scope, now) {
        Ok(auth) => auth,
        Err(e) => return Outcome::unavailable(e.to_string()),
    };
    let body = Zeroizing::new(serde_json::json!({ "auth": auth.as_str() }).to_string());
    let reply = match transport
        .send(&Request::new("POST", TOKEN_PATH).with_body("application/json", body.as_bytes()))
    {
        Ok(reply) => reply,
        Err(TransportFailure::Unreachable(reason) | TransportFailure::Failed(reason)) => {
            return Outcome::unavailable(reason)
        }
    };
    step(&format!("authentication answered HTTP {}", reply.status));
    parse_token_reply(reply.status, &reply.body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_label_map_is_an_allow_list() {
        let mut labels = std::collections::BTreeMap::new();
        assert_eq!(
            label_user("alice", &labels),
            Some("alice"),
            "no map: the label"
        );
        labels.insert("My device".to_owned(), "alice".to_owned());
        assert_eq!(label_user("My device", &labels), Some("alice"));
        assert_eq!(
            label_user("root", &labels),
            None,
            "unmapped labels name nobody"
        );
        assert_eq!(label_user("alice", &labels), None);
    }

    use super::*;
    use crate::transport::Reply;
    use std::collections::BTreeMap;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // docs/PROTOCOL.md's vector.
    const EID: &str = "d4ad81b06b1d493ab2b6f9b1a3e2c7f0";
    const SPK: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    const AUTH: &str = "eyJlY2RoIjoieDI1NTE5IiwiYWxnIjoiSFMyNTYiLCJ0eXAiOiJKV1QifQ.eyJqdGkiOiIwMTIzNDU2Nzg5YWJjZGVmIiwiYXVkIjoiQVFFQkFRRUJBUUVCQVFFQkFRRUJBUUVCQVFFQkFRRUJBUUVCQVFFQkFRRT0iLCJleHAiOjE3MDAwMDM2MDAsImlhdCI6MTcwMDAwMDAwMCwiaXNzIjoiQ2RMcTUzZVg3ODBGZVpSNC9oT2VlNXJUdGNsN2FqSmRZd1Z3Y2pMNWN4WT0iLCJzY29wZSI6ImtleW1nbXQ6Z2VuIn0.oPm7pWzqB9VImg5OpTllCqbQAO-xkdgoRfdzyLj09qE";

    fn vector_challenge() -> Challenge {
        Challenge {
            exp: 1_700_000_060,
            spk: SPK.into(),
            jti: "0123456789abcdef".into(),
            lbl: "alice".into(),
            eid: EID.into(),
        }
    }

    #[test]
    fn protocol_vector() {
        let mut seed = [0u8; 32];
        crate::kdf::pbkdf2_hmac_sha256(
            b"correct horse battery staple",
            EID.as_bytes(),
            KDF_ITERATIONS,
            &mut seed,
        );
        assert_eq!(
            hex(&seed),
            "6a0bac730fe27e1fa8b55c49790e3d94436ecee976a9efdeeeb326e7e5b36d29"
        );
        let secret = user_secret(b"correct horse battery staple", EID);
        assert_eq!(
            public_key_b64(&secret),
            "CdLq53eX780FeZR4/hOee5rTtcl7ajJdYwVwcjL5cxY="
        );
        let shared = secret.diffie_hellman(&PublicKey::from([1u8; 32]));
        assert_eq!(
            hex(shared.as_bytes()),
            "ef921919b80e68924fc0f454e11c4409b7a2cce484387a9c1d8a6bf5d151f740"
        );
        let auth = client_auth(&secret, &vector_challenge(), "keymgmt:gen", 1_700_000_000).unwrap();
        assert_eq!(&*auth, AUTH);
    }

    #[test]
    fn reply_mapping() {
        assert!(matches!(
            parse_challenge(403, b""),
            Err(Outcome::Unavailable { .. })
        ));
        assert!(matches!(
            parse_challenge(409, b""),
            Err(Outcome::Unavailable { .. })
        ));
        assert!(matches!(
            parse_challenge(200, b"{}"),
            Err(Outcome::Unavailable { .. })
        ));
        assert!(matches!(parse_token_reply(401, b""), Outcome::Rejected));
        for status in [400, 403, 409, 500, 503] {
            assert!(
                matches!(parse_token_reply(status, b""), Outcome::Unavailable { .. }),
                "{status}"
            );
        }
        assert!(matches!(
            parse_token_reply(200, b"{\"token\":\"\"}"),
            Outcome::Unavailable { .. }
        ));
        assert!(matches!(
            parse_token_reply(200, b"{\"token\":\"a\\u0007b\"}"),
            Outcome::Unavailable { .. }
        ));
        assert!(matches!(
            parse_token_reply(200, b"{\"token\":\"t\"}"),
            Outcome::Token { .. }
        ));
    }
    #[test]
    fn a_device_jwts_exp_is_the_tokens_expiry() {
        let jwt = |claims: &str| format!("e30.{}.sig", B64URL.encode(claims));
        assert_eq!(
            jwt_expiry(&jwt(r#"{"exp":1700003600,"sub":"x"}"#)),
            Some(1_700_003_600)
        );
        assert_eq!(jwt_expiry(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(jwt_expiry(&jwt(r#"{"exp":"soon"}"#)), None);
        assert_eq!(jwt_expiry("opaque-token"), None);
        assert_eq!(jwt_expiry("a.b.c.d"), None);
        match parse_token_reply(
            200,
            format!(r#"{{"token":"{}"}}"#, jwt(r#"{"exp":5}"#)).as_bytes(),
        ) {
            Outcome::Token { expires, .. } => assert_eq!(expires, Some(5)),
            other => panic!("{other:?}"),
        }
    }

    /// Replays scripted replies to the driver and records its requests.
    struct Device {
        replies: std::collections::VecDeque<Result<Reply, TransportFailure>>,
        sent: Vec<(String, String, Option<Vec<u8>>)>,
    }

    impl Transport for Device {
        fn send(&mut self, request: &Request<'_>) -> Result<Reply, TransportFailure> {
            self.sent.push((
                request.method.into(),
                request.path.into(),
                request.body.map(<[u8]>::to_vec),
            ));
            self.replies.pop_front().expect("a scripted reply")
        }
    }

    fn device(replies: Vec<Result<Reply, TransportFailure>>) -> Device {
        Device {
            replies: replies.into(),
            sent: Vec::new(),
        }
    }

    fn challenge_reply() -> Result<Reply, TransportFailure> {
        Ok(Reply {
            status: 200,
            body: serde_json::to_vec(&vector_challenge()).unwrap(),
        })
    }

    fn run(device: &mut Device, user: &str, settings: &DeviceSettings<'_>, root: bool) -> Outcome {
        user_authenticate(
            device,
            settings,
            user,
            b"correct horse battery staple",
            1_700_000_000,
            &|_| root,
            &mut |_| {},
        )
    }

    #[test]
    fn driver_answers_the_vector_and_keeps_the_token() {
        let labels = BTreeMap::new();
        let settings = DeviceSettings {
            eid: Some(EID),
            labels: &labels,
            scope: "keymgmt:gen",
        };
        let token = Ok(Reply {
            status: 200,
            body: b"{\"token\":\"device-jwt\"}".to_vec(),
        });
        let mut device = device(vec![challenge_reply(), token]);
        let outcome = run(&mut device, "alice", &settings, false);
        assert!(
            matches!(outcome, Outcome::Token { ref token, .. } if token.as_str() == "device-jwt")
        );
        assert_eq!(device.sent.len(), 2);
        assert_eq!(
            (device.sent[0].0.as_str(), device.sent[0].1.as_str()),
            ("GET", TOKEN_PATH)
        );
        let body: serde_json::Value =
            serde_json::from_slice(device.sent[1].2.as_deref().unwrap()).unwrap();
        assert_eq!(
            body["auth"], AUTH,
            "the POST carries the PROTOCOL.md vector"
        );
    }

    #[test]
    fn driver_steps_aside_or_refuses_before_deriving_a_key() {
        let none = BTreeMap::new();
        let open = DeviceSettings {
            eid: None,
            labels: &none,
            scope: "master",
        };
        // The device is labelled for alice.
        let mut other = device(vec![challenge_reply()]);
        assert!(matches!(
            run(&mut other, "bob", &open, false),
            Outcome::Unmanaged
        ));
        assert_eq!(other.sent.len(), 1, "no proof is sent for another user");
        // A uid-0 alias named by the label alone.
        let mut root = device(vec![challenge_reply()]);
        assert!(matches!(
            run(&mut root, "alice", &open, true),
            Outcome::Unmanaged
        ));
        assert_eq!(root.sent.len(), 1);
        // Another device than the pinned one.
        let pinned = DeviceSettings {
            eid: Some("another-device"),
            ..open.clone()
        };
        let mut impostor = device(vec![challenge_reply()]);
        assert!(matches!(
            run(&mut impostor, "alice", &pinned, false),
            Outcome::Unavailable { .. }
        ));
        assert_eq!(impostor.sent.len(), 1);
        // Unreachable stays unreachable (offline login may follow).
        let mut down = device(vec![Err(TransportFailure::Unreachable("refused".into()))]);
        assert!(matches!(
            run(&mut down, "alice", &open, false),
            Outcome::Unreachable { .. }
        ));
    }
}
