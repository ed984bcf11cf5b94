//! `--protocol hem`: an emulated Encedo-HEM-style token device for tests,
//! demos and sites without the hardware. It holds an identity key (`eid`), a
//! per-boot session key (`spk`) and token-signing key, the enrolled user's
//! public key and label, and single-use, expiring `jti`s.
//!
//! Challenges are stateless: a `jti` carries its expiry and a tag under a
//! per-boot key, so issuing one stores nothing and a flood of
//! unauthenticated `GET`s from one source cannot use up challenges for
//! another. Only a `jti` redeemed by a correctly signed `auth` is
//! remembered (until it expires), so replays are refused.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use authtoken_protocol::hem;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::authority::Answer;
use crate::error::ServerError;
use crate::event::Event;
use crate::files::{key32, random, read_private, write_private, FileError};
use crate::proto::hem::{device_check, device_token, AuthCheck};

/// How long a challenge may be answered.
pub const CHALLENGE_LIFETIME_SECS: u64 = 60;
/// Lifetime of the access token the device issues.
pub const TOKEN_LIFETIME_SECS: u64 = 8 * 3600;
/// Redeemed `jti`s remembered at once: each needs an `auth` signed with
/// the enrolled user's key, so only the device's own user can fill it.
const MAX_REDEEMED: usize = 100_000;
const JTI_RANDOM_BYTES: usize = 12;
const JTI_TAG_BYTES: usize = 16;

/// Failure states a real device reports, for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceState {
    Ready,
    /// Answers 403: the RTC clock is not set.
    ClockNotSet,
    /// Answers 409: not initialised.
    Uninitialised,
}

/// The enrolment file: the device identity and the user's public key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceFile {
    identity_secret: String,
    label: String,
    user_key: String,
}

pub struct Device {
    eid: String,
    label: String,
    user_key: [u8; 32],
    session_secret: StaticSecret,
    spk: String,
    token_key: Vec<u8>,
    state: DeviceState,
    delay: Duration,
    jti_key: ring::hmac::Key,
    redeemed: Mutex<HashMap<String, u64>>,
}

fn random32() -> Result<[u8; 32], FileError> {
    random(32)?.try_into().map_err(|_| FileError::Random)
}

/// Creates the enrolment file: a fresh identity, `label`, and the public key
/// derived from `passphrase` with the device's `eid` as salt.
/// The `auth` JWT of a `POST /api/auth/token` body (`{"auth": "…"}`).
pub fn parse_auth_request(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Request {
        auth: String,
    }
    serde_json::from_slice::<Request>(body).ok().map(|r| r.auth)
}

pub fn enroll(file: &Path, label: &str, passphrase: &[u8]) -> Result<(), ServerError> {
    let identity = StaticSecret::from(random32()?);
    let eid = B64.encode(PublicKey::from(&identity).as_bytes());
    let user_key = hem::public_key_b64(&hem::user_secret(passphrase, &eid));
    let text = toml::to_string(&DeviceFile {
        identity_secret: B64.encode(identity.to_bytes()),
        label: label.to_owned(),
        user_key,
    })
    .map_err(|e| ServerError::Format {
        path: file.to_owned(),
        problem: e.to_string(),
    })?;
    Ok(write_private(
        file,
        &format!("# authtoken-server emulated token device\n{text}"),
    )?)
}

impl Device {
    pub fn load(file: &Path, state: DeviceState, delay: Duration) -> Result<Device, ServerError> {
        let text = read_private(file)?;
        Device::from_toml(&text, state, delay).map_err(|problem| ServerError::Format {
            path: file.to_owned(),
            problem,
        })
    }

    /// A device from the text of its file (with a fresh per-boot session).
    pub fn from_toml(text: &str, state: DeviceState, delay: Duration) -> Result<Device, String> {
        let parsed: DeviceFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        Device::from_file(parsed, state, delay).map_err(|e| e.to_string())
    }

    fn from_file(
        parsed: DeviceFile,
        state: DeviceState,
        delay: Duration,
    ) -> Result<Device, ServerError> {
        let identity = StaticSecret::from(key32(&parsed.identity_secret, "identity_secret")?);
        let session_secret = StaticSecret::from(random32()?);
        Ok(Device {
            eid: B64.encode(PublicKey::from(&identity).as_bytes()),
            label: parsed.label,
            user_key: key32(&parsed.user_key, "user_key")?,
            spk: B64.encode(PublicKey::from(&session_secret).as_bytes()),
            session_secret,
            token_key: random32()?.to_vec(),
            state,
            delay,
            jti_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &random32()?),
            redeemed: Mutex::new(HashMap::new()),
        })
    }

    fn refused(&self) -> Option<Answer> {
        match self.state {
            DeviceState::Ready => None,
            DeviceState::ClockNotSet => Some(Answer::status(403, Event::Failed, "clock not set")),
            DeviceState::Uninitialised => {
                Some(Answer::status(409, Event::Failed, "not initialised"))
            }
        }
    }

    /// `GET /api/auth/token`.
    pub fn challenge(&self, now: u64) -> Answer {
        if let Some(answer) = self.refused() {
            return answer;
        }
        let exp = now + CHALLENGE_LIFETIME_SECS;
        let Ok(random) = random(JTI_RANDOM_BYTES) else {
            return Answer::status(500, Event::Failed, "no randomness");
        };
        let mut jti = exp.to_be_bytes().to_vec();
        jti.extend_from_slice(&random);
        let tag = ring::hmac::sign(&self.jti_key, &jti);
        jti.extend_from_slice(&tag.as_ref()[..JTI_TAG_BYTES]);
        let jti = B64URL.encode(jti);
        let challenge = hem::Challenge {
            exp,
            spk: self.spk.clone(),
            jti,
            lbl: self.label.clone(),
            eid: self.eid.clone(),
        };
        Answer::json(
            serde_json::to_vec(&challenge).unwrap_or_default(),
            Event::Challenge,
            "challenge issued",
        )
    }

    /// `POST /api/auth/token`. Every answer is delayed, as the device does.
    /// The expiry a `jti` of ours carries; `None` for one we did not issue.
    fn jti_expiry(&self, jti: &str) -> Option<u64> {
        let bytes = B64URL.decode(jti).ok()?;
        if bytes.len() != 8 + JTI_RANDOM_BYTES + JTI_TAG_BYTES {
            return None;
        }
        let (signed, tag) = bytes.split_at(8 + JTI_RANDOM_BYTES);
        let expected = ring::hmac::sign(&self.jti_key, signed);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            &expected.as_ref()[..JTI_TAG_BYTES],
            tag,
        )) {
            return None;
        }
        Some(u64::from_be_bytes(signed[..8].try_into().ok()?))
    }

    pub fn authenticate(&self, body: &[u8], now: u64) -> Answer {
        let answer = self.check(body, now);
        Answer {
            delay: self.delay,
            ..answer
        }
    }

    fn check(&self, body: &[u8], now: u64) -> Answer {
        if let Some(answer) = self.refused() {
            return answer;
        }
        let Some(auth) = parse_auth_request(body) else {
            return Answer::status(400, Event::Malformed, "malformed request");
        };
        let payload = match device_check(&auth, &self.session_secret, &self.spk, &self.user_key) {
            AuthCheck::Valid(payload) => payload,
            AuthCheck::Malformed => return Answer::status(400, Event::Malformed, "malformed auth"),
            AuthCheck::Unauthenticated => {
                return Answer::status(
                    401,
                    Event::Rejected,
                    "rejected: signature, issuer or audience",
                )
            }
        };
        let Some(exp) = self.jti_expiry(&payload.jti) else {
            return Answer::status(401, Event::Rejected, "rejected: jti not issued here");
        };
        if exp < now {
            return Answer::status(401, Event::Rejected, "rejected: challenge expired");
        }
        {
            let mut redeemed = self.redeemed.lock().unwrap_or_else(|p| p.into_inner());
            if redeemed.contains_key(&payload.jti) {
                return Answer::status(401, Event::Rejected, "rejected: replayed jti");
            }
            if redeemed.len() >= MAX_REDEEMED {
                redeemed.retain(|_, e| *e >= now);
                if redeemed.len() >= MAX_REDEEMED {
                    return Answer::status(503, Event::Failed, "too many redeemed challenges");
                }
            }
            redeemed.insert(payload.jti.clone(), exp);
        }
        if payload.exp < now {
            return Answer::status(401, Event::Rejected, "rejected: auth expired");
        }
        let Ok(jti) = random(24) else {
            return Answer::status(500, Event::Failed, "no randomness");
        };
        let token = device_token(
            &self.token_key,
            &payload.scope,
            now,
            now + TOKEN_LIFETIME_SECS,
            &B64URL.encode(jti),
        );
        let fingerprint = crate::authority::token_fingerprint(&token);
        Answer {
            token_sha256: Some(fingerprint),
            ..Answer::json(
                serde_json::json!({ "token": token })
                    .to_string()
                    .into_bytes(),
                Event::Token,
                "token issued",
            )
        }
    }
}
