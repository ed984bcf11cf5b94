//! The token authority's decisions for `UserAuthenticate`: which challenge
//! to issue, whether a digest is right, which token to hand out, and when
//! to stop listening to a guesser. Challenges are stateless
//! ([`crate::nonce`]); responses are accepted once; failed proofs are
//! throttled ([`crate::throttle`]). Its only I/O is the state replicas
//! share ([`crate::shared`]: in memory, or a PostgreSQL store), reached only
//! by a response that got as far as its proof.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use authtoken_protocol::http_digest;
use authtoken_protocol::mdm::MESSAGE_TYPE;
use authtoken_protocol::scram;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::{digest, hmac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::enrollment::DeviceRecord;
use crate::event::Event;
use crate::files::random;
use crate::nonce::NonceKey;
use crate::pgstore::StoreDown;
use crate::proto::digest as digest_server;
use crate::proto::mdm::{reply_body, CheckinRequest};
use crate::proto::scram::{self as scram_server, Refusal, Verifier};
use crate::shared::Shared;
use crate::store::{Credential, Policy, Store};
use crate::throttle::{Judged, Verdict};

/// What to do with users the store does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnknownUsers {
    /// A SCRAM challenge with a fake but stable salt, so user names cannot
    /// be probed; the digest is then always rejected (the default).
    Decoy,
    /// `410 Gone`, as NanoMDM and MicroMDM do: names can be probed.
    Unmanaged,
}

/// The store in force, the nonce key derived from its secret and the
/// shapes decoys take; replaced whole on reload.
pub(crate) struct Loaded {
    pub(crate) store: Store,
    nonce_key: NonceKey,
    decoys: DecoyShapes,
    /// The device certificates on record, by fingerprint (SHA-256 of the
    /// DER, in hex): serial and record.
    devices: HashMap<String, (String, DeviceRecord)>,
}

/// What a connection's client certificate is, as far as the device
/// registry tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceStanding {
    /// No client certificate.
    None,
    /// A certificate the TLS layer verified that the device CA did not
    /// issue (a site's own PKI, `issue-cert`): enrolled, not on record.
    Unrecorded,
    /// A certificate on record: its serial and record.
    Recorded {
        serial: String,
        record: DeviceRecord,
    },
    /// A certificate on record that was revoked: no device at all.
    Revoked,
}

impl Loaded {
    /// What `origin`'s client certificate is.
    pub(crate) fn standing(&self, origin: &Origin) -> DeviceStanding {
        let Some(fingerprint) = origin.device else {
            return DeviceStanding::None;
        };
        match self.devices.get(&crate::files::hex(&fingerprint)) {
            None => DeviceStanding::Unrecorded,
            Some((_, record)) if record.revoked => DeviceStanding::Revoked,
            Some((serial, record)) => DeviceStanding::Recorded {
                serial: serial.clone(),
                record: record.clone(),
            },
        }
    }
}

/// What a decoy credential looks like from outside: its scheme and
/// iterations, or realm, algorithm and qop.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    Scram {
        iterations: u32,
    },
    Digest {
        realm: String,
        algorithm: http_digest::Algorithm,
        qop: bool,
    },
}

/// The shapes of the managed users' credentials, each with how many users
/// have it (a running total), computed once when a store is loaded: so a
/// name the store does not know costs one HMAC and a binary search, not a
/// walk over every user (at 100,000 users that walk was a timing oracle
/// for who exists, and a CPU amplifier).
#[derive(Debug, Default)]
struct DecoyShapes {
    /// Distinct shapes, each with the count of users up to and including it.
    shapes: Vec<(Shape, u64)>,
}

impl DecoyShapes {
    fn of(store: &Store) -> DecoyShapes {
        let mut counts: std::collections::BTreeMap<Shape, u64> = Default::default();
        let managed = store
            .users
            .values()
            .filter(|u| u.policy == Policy::Managed)
            .filter_map(|u| u.credential.as_ref());
        for credential in managed {
            let shape = match credential {
                Credential::Scram(v) => Shape::Scram {
                    iterations: v.iterations,
                },
                Credential::Digest {
                    realm,
                    algorithm,
                    qop,
                    ..
                } => Shape::Digest {
                    realm: realm.clone(),
                    algorithm: *algorithm,
                    qop: *qop,
                },
            };
            *counts.entry(shape).or_default() += 1;
        }
        let mut total = 0;
        let shapes = counts
            .into_iter()
            .map(|(shape, count)| {
                total += count;
                (shape, total)
            })
            .collect();
        DecoyShapes { shapes }
    }

    /// The shape for `pick`, as often as the store's users have it.
    fn pick(&self, pick: u64) -> Option<&Shape> {
        let total = self.shapes.last()?.1;
        let at = pick % total;
        let index = self.shapes.partition_point(|(_, upto)| *upto <= at);
        self.shapes.get(index).map(|(shape, _)| shape)
    }
}

/// How the authority is set up.
pub struct Settings {
    pub unknown: UnknownUsers,
    pub failure_delay: Duration,
    /// Iterations of decoy challenges while the store holds no managed
    /// user to take a decoy's shape from.
    pub decoy_iterations: u32,
    /// Where accepted responses are remembered and wrong proofs counted:
    /// in this process, or in a PostgreSQL store its replicas share.
    pub shared: Shared,
    /// The device-issuing CA and the root CA's certificate (PEM), when
    /// this authority enrolls machines (`serve --enroll-dir`).
    pub enroll: Option<Enroll>,
    /// What a login must come with.
    pub require: DeviceRule,
}

/// What a login must come with, beyond the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRule {
    /// Nothing: a device certificate only earns a budget of its own.
    Nothing,
    /// A client certificate the TLS layer verified: `--client-ca` without
    /// `--client-cert-optional` on an authority that enrolls machines,
    /// whose TLS layer must let certificate-less machines in to join.
    Certificate,
    /// A current device: recorded or the site's own, not revoked
    /// (`serve --require-device`).
    CurrentDevice,
}

/// What enrollment needs: the device-issuing CA, and the root CA's
/// certificate a joining machine pins.
pub struct Enroll {
    pub device_ca: crate::enrollment::DeviceCa,
    pub root_pem: String,
}

pub struct Authority {
    loaded: RwLock<Arc<Loaded>>,
    pub(crate) settings: Settings,
}

/// The reply to one request.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: Option<&'static str>,
    /// Wait this long before answering (after a failed digest).
    pub delay: Duration,
    /// `Retry-After` seconds (with 429).
    pub retry_after: Option<u64>,
    /// What happened, for the request log: never a password, digest or token.
    pub note: String,
    pub event: Event,
    /// Whether a proof was checked (throttled attempts are not).
    pub proof_evaluated: bool,
    /// `ETag` (the directory's serial).
    pub etag: Option<String>,
    /// This wrong proof used up the account's guessing budget: the next
    /// ones are answered 429 (and counted as throttled) until it refills.
    pub budget_spent: bool,
    /// The issued token's fingerprint (`token_sha256` in the log): which
    /// token a session holds, without the token.
    pub token_sha256: Option<String>,
    /// `Set-Cookie` (Deki's `authtoken` cookie).
    pub set_cookie: Option<String>,
}

impl Answer {
    pub fn status(status: u16, event: Event, note: impl Into<String>) -> Answer {
        Answer {
            status,
            body: Vec::new(),
            content_type: None,
            delay: Duration::ZERO,
            retry_after: None,
            note: note.into(),
            event,
            proof_evaluated: false,
            etag: None,
            budget_spent: false,
            token_sha256: None,
            set_cookie: None,
        }
    }

    fn plist(entries: &[(&str, &str)], event: Event, note: impl Into<String>) -> Answer {
        Answer {
            body: reply_body(entries),
            content_type: Some("application/xml"),
            ..Answer::status(200, event, note)
        }
    }

    pub fn json(body: Vec<u8>, event: Event, note: impl Into<String>) -> Answer {
        Answer {
            body,
            content_type: Some("application/json"),
            ..Answer::status(200, event, note)
        }
    }
}

/// A short, non-reversible fingerprint of a token for logs and tests.
pub fn token_fingerprint(token: &str) -> String {
    let hash = digest::digest(&digest::SHA256, token.as_bytes());
    crate::files::hex(&hash.as_ref()[..8])
}

/// Where and when a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// The SHA-256 of the client certificate the TLS layer verified
    /// against `--client-ca`: an enrolled device, with a guessing budget of
    /// its own.
    pub device: Option<[u8; 32]>,
    /// Wall-clock milliseconds since the epoch (nonces carry wall-clock
    /// expiries, so that other server processes can check them).
    pub now_ms: u64,
    /// What a SCRAM login can be bound to on this connection: `None` over
    /// plain HTTP, or TLS that gives no binding. With bindings, SCRAM is
    /// offered as SCRAM-SHA-256-PLUS and every response is checked
    /// against them.
    pub channel: Option<scram_server::ConnectionBindings>,
}

impl Origin {
    fn now_secs(&self) -> u64 {
        self.now_ms / 1000
    }
}

impl Authority {
    pub fn new(store: Store, settings: Settings) -> Authority {
        Authority {
            loaded: RwLock::new(Arc::new(Loaded::from(store))),
            settings,
        }
    }

    /// Whether the shared state (a PostgreSQL store) can be reached: what
    /// the readiness endpoint reports.
    pub fn ready(&self) -> bool {
        self.settings.shared.available()
    }

    /// The answer while the store is away: `503`, so clients apply their
    /// failover and offline rules.
    fn store_down(why: &StoreDown) -> Answer {
        Answer {
            retry_after: Some(1),
            ..Answer::status(503, Event::StoreDown, why.to_string())
        }
    }

    /// Puts a new store in force, atomically: requests already running
    /// finish with the old one.
    pub fn replace_store(&self, store: Store) {
        let loaded = Arc::new(Loaded::from(store));
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = loaded;
    }

    pub(crate) fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `GET …/directory`: the directory of the store in force, to an
    /// enrolled device only (a client certificate rustls verified against
    /// `--client-ca`); anyone else learns nothing, not even whether there
    /// is a directory. `if_none_match` is the client's `If-None-Match`:
    /// the serial it holds gets `304`.
    pub fn directory(&self, origin: Origin, if_none_match: Option<&str>) -> Answer {
        let loaded = self.current();
        match loaded.standing(&origin) {
            DeviceStanding::None => {
                return Answer::status(403, Event::Refused, "directory: no enrolled device")
            }
            DeviceStanding::Revoked => {
                return Answer::status(403, Event::Refused, "directory: device revoked")
            }
            DeviceStanding::Unrecorded | DeviceStanding::Recorded { .. } => {}
        }
        let directory = match loaded.store.directory() {
            Ok(directory) => directory,
            // A store that loaded has a publishable directory; a failure
            // here is a bug, answered as one.
            Err(e) => return Answer::status(500, Event::Failed, format!("directory: {e}")),
        };
        let etag = format!("\"{}\"", directory.serial);
        if if_none_match.is_some_and(|held| held.split(',').any(|tag| tag.trim() == etag)) {
            return Answer {
                etag: Some(etag),
                ..Answer::status(304, Event::Directory, "directory unchanged")
            };
        }
        let body = serde_json::to_vec(&directory).unwrap_or_default();
        let note = format!(
            "directory serial={} users={} groups={}",
            directory.serial,
            directory.users.len(),
            directory.groups.len()
        );
        Answer {
            etag: Some(etag),
            ..Answer::json(body, Event::Directory, note)
        }
    }

    pub async fn handle(&self, request: &CheckinRequest, origin: Origin) -> Answer {
        if request.message_type != MESSAGE_TYPE {
            return Answer::status(
                400,
                Event::Malformed,
                format!("unsupported MessageType {}", request.message_type),
            );
        }
        if !self.settings.shared.available() {
            // Neither step can end in a login now: say so at the first, so
            // the client fails over (or goes offline) at once.
            return Authority::store_down(&StoreDown("the last operation failed".into()));
        }
        let loaded = self.current();
        let origin = match self.admit_device(&loaded, origin, Some(&request.identity.udid)) {
            Ok(origin) => origin,
            Err(why) => return Answer::status(403, Event::Refused, why),
        };
        let user = request.identity.short_name.as_str();
        match &request.digest_response {
            None => self.challenge(&loaded, user, origin),
            Some(response) => self.verify(&loaded, user, response, origin).await,
        }
    }

    /// The origin a login is judged with, after the device registry: a
    /// revoked certificate is no device at all (no device budget), a
    /// recorded one must come with the UDID it was issued for (as MDM
    /// servers check the enrollment), and under `--require-device` a login
    /// without a current device is refused.
    fn admit_device(
        &self,
        loaded: &Loaded,
        origin: Origin,
        udid: Option<&str>,
    ) -> Result<Origin, &'static str> {
        let standing = loaded.standing(&origin);
        if let (DeviceStanding::Recorded { record, .. }, Some(udid)) = (&standing, udid) {
            if !record.udid.eq_ignore_ascii_case(udid) {
                return Err("UDID differs from the one the device certificate was issued for");
            }
        }
        let device_ok = matches!(
            standing,
            DeviceStanding::Recorded { .. } | DeviceStanding::Unrecorded
        );
        match self.settings.require {
            DeviceRule::CurrentDevice if standing == DeviceStanding::Revoked => {
                return Err("login refused: device revoked (--require-device)")
            }
            DeviceRule::CurrentDevice if !device_ok => {
                return Err("login refused: no enrolled device (--require-device)")
            }
            DeviceRule::Certificate if standing == DeviceStanding::None => {
                return Err("login refused: no client certificate (--client-ca)")
            }
            _ => {}
        }
        Ok(Origin {
            device: if device_ok { origin.device } else { None },
            ..origin
        })
    }

    fn challenge(&self, loaded: &Loaded, user: &str, origin: Origin) -> Answer {
        let decoy;
        let credential = match loaded.store.users.get(user) {
            None if self.settings.unknown == UnknownUsers::Unmanaged => {
                return Answer::status(410, Event::Unmanaged, "unknown user: 410")
            }
            None => {
                decoy = self.decoy(loaded, user);
                Some(&decoy)
            }
            Some(entry) => match entry.policy {
                Policy::Unmanaged => {
                    return Answer::status(410, Event::Unmanaged, "unmanaged: 410")
                }
                Policy::NoToken => {
                    return Answer::plist(
                        &[("DigestChallenge", "")],
                        Event::NoToken,
                        "no token needed",
                    )
                }
                Policy::Managed => entry.credential.as_ref(),
            },
        };
        match credential {
            Some(Credential::Scram(verifier)) => {
                let plus = origin.channel.is_some_and(|c| c.can_bind());
                self.issue(loaded, user, origin, |nonce| {
                    verifier.challenge(nonce, plus)
                })
            }
            Some(Credential::Digest {
                realm,
                algorithm,
                qop,
                ..
            }) => self.issue(loaded, user, origin, |nonce| {
                digest_server::challenge_header(&http_digest::Challenge {
                    realm: realm.clone(),
                    nonce: nonce.to_owned(),
                    qop_auth: *qop,
                    algorithm: Some(*algorithm),
                    opaque: None,
                })
            }),
            None => Answer::status(500, Event::Failed, "managed user without credential"),
        }
    }

    /// Answers with a challenge around a fresh stateless nonce.
    fn issue(
        &self,
        loaded: &Loaded,
        user: &str,
        origin: Origin,
        challenge: impl FnOnce(&str) -> String,
    ) -> Answer {
        match loaded.nonce_key.issue(user, origin.now_secs()) {
            Ok(nonce) => Answer::plist(
                &[("DigestChallenge", &challenge(&nonce))],
                Event::Challenge,
                "challenge",
            ),
            Err(e) => Answer::status(500, Event::Failed, e.to_string()),
        }
    }

    /// A credential for a user the store does not know, that no password
    /// matches. Its shape (scheme, iterations, realm) is that of a managed
    /// user picked by a keyed hash of the name, so decoys follow the
    /// store's own distribution and the same name always gets the same
    /// one: neither the scheme nor the iteration count tells a decoy from
    /// a real account.
    fn decoy(&self, loaded: &Loaded, user: &str) -> Credential {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &loaded.store.secret);
        let tag = hmac::sign(&key, user.as_bytes());
        let tag = tag.as_ref();
        let pick = u64::from_be_bytes(tag[16..24].try_into().unwrap_or_default());
        match loaded.decoys.pick(pick) {
            Some(Shape::Digest {
                realm,
                algorithm,
                qop,
            }) => Credential::Digest {
                realm: realm.clone(),
                algorithm: *algorithm,
                qop: *qop,
                // Keyed by the server secret: nobody can answer for it.
                ha1: crate::files::hex(tag),
            },
            shape => Credential::Scram(Verifier {
                salt: tag[..16].to_vec(),
                iterations: match shape {
                    Some(Shape::Scram { iterations }) => *iterations,
                    _ => self.settings.decoy_iterations,
                },
                stored_key: [0; 32],
                server_key: [0; 32],
            }),
        }
    }

    /// A response that never reached a proof (malformed, a nonce not
    /// issued for this user or expired, a replay): refused after the
    /// failure delay, and not counted against the account, since it says
    /// nothing about the password and costs the sender nothing to make.
    fn refuse_junk(&self, why: &str) -> Answer {
        Answer {
            delay: self.settings.failure_delay,
            ..Answer::plist(
                &[("AuthToken", "")],
                Event::Rejected,
                format!("rejected: {why}"),
            )
        }
    }

    async fn verify(&self, loaded: &Loaded, user: &str, response: &str, origin: Origin) -> Answer {
        let decoy;
        let credential = match loaded.store.users.get(user) {
            Some(entry) if entry.policy == Policy::Unmanaged => {
                return Answer::status(410, Event::Unmanaged, "unmanaged: 410")
            }
            Some(entry) if entry.policy == Policy::Managed => entry.credential.as_ref(),
            Some(_) => None,
            None => {
                decoy = self.decoy(loaded, user);
                Some(&decoy)
            }
        };
        match credential {
            Some(Credential::Scram(verifier)) => {
                self.verify_scram(loaded, user, verifier, response, origin)
                    .await
            }
            Some(Credential::Digest {
                realm,
                algorithm,
                ha1,
                ..
            }) => {
                self.verify_digest(loaded, user, realm, *algorithm, ha1, response, origin)
                    .await
            }
            // A user who needs no token was never challenged.
            None => self.refuse_junk("no challenge was issued for this user"),
        }
    }

    async fn verify_scram(
        &self,
        loaded: &Loaded,
        user: &str,
        verifier: &Verifier,
        response: &str,
        origin: Origin,
    ) -> Answer {
        let Ok(parsed) = scram_server::parse_client_response(response) else {
            return self.refuse_junk("malformed SCRAM response");
        };
        let Some(expiry) = loaded
            .nonce_key
            .check(parsed.snonce(), user, origin.now_secs())
        else {
            return self.refuse_junk("foreign, forged or expired nonce");
        };
        if parsed.user != user {
            return self.refuse_junk("n= names another user");
        }
        let offered = origin.channel.filter(|c| c.can_bind());
        match scram_server::server_verify_bound(verifier, &parsed, offered.as_ref()) {
            Ok(signature) => {
                let extra = [("ServerSignature", signature.as_str())];
                self.judge(user, origin, parsed.snonce(), expiry, Ok(&extra))
                    .await
            }
            // Says nothing about the password (the proof was not
            // evaluated), so it is not counted against the account.
            Err(Refusal::Binding(why)) => self.refuse_junk(why),
            Err(Refusal::Proof) => {
                self.judge(user, origin, parsed.snonce(), expiry, Err("wrong proof"))
                    .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn verify_digest(
        &self,
        loaded: &Loaded,
        user: &str,
        realm: &str,
        algorithm: http_digest::Algorithm,
        ha1: &str,
        response: &str,
        origin: Origin,
    ) -> Answer {
        let Ok(parsed) = digest_server::parse_client_response(response) else {
            return self.refuse_junk("malformed Digest response");
        };
        let Some(expiry) = loaded
            .nonce_key
            .check(&parsed.nonce, user, origin.now_secs())
        else {
            return self.refuse_junk("foreign, forged or expired nonce");
        };
        if parsed.username != user
            || parsed.realm != realm
            || parsed.uri != http_digest::URI
            || parsed.algorithm.is_some_and(|a| a != algorithm)
        {
            return self.refuse_junk("response for another user, realm or URI");
        }
        let verdict = if digest_server::server_verify(algorithm, ha1, &parsed) {
            Ok(&[][..])
        } else {
            Err("wrong response")
        };
        self.judge(user, origin, &parsed.nonce, expiry, verdict)
            .await
    }

    /// An evaluated proof of a check-in, judged in one step of the shared
    /// state (one statement on PostgreSQL): `Ok(extra)` a right proof (a
    /// token, with `extra` in the answer, once its response is claimed
    /// for the first time by any process sharing the record), `Err(why)`
    /// a wrong one (counted against the account's budget, its device's if
    /// it came from one). With the budget spent the proof's result is not
    /// used: `429`, right or wrong alike.
    async fn judge(
        &self,
        user: &str,
        origin: Origin,
        nonce: &str,
        expiry: u64,
        proof: Result<&[(&str, &str)], &str>,
    ) -> Answer {
        let judged = self
            .settings
            .shared
            .judge(
                user,
                origin.device,
                origin.now_ms,
                proof.is_ok().then_some((nonce, expiry)),
            )
            .await;
        let extra = match (judged, proof) {
            (Err(down), _) => return Authority::store_down(&down),
            (Ok(Judged::Spent { retry_after_secs }), _) => {
                return Authority::throttled(retry_after_secs)
            }
            (Ok(Judged::Wrong { last }), Err(why)) => {
                return Answer {
                    delay: self.settings.failure_delay,
                    proof_evaluated: true,
                    budget_spent: last,
                    ..Answer::plist(
                        &[("AuthToken", "")],
                        Event::Rejected,
                        format!("rejected: {why}"),
                    )
                }
            }
            (Ok(Judged::Replayed), _) => return self.refuse_junk("replayed response"),
            (Ok(Judged::Full), _) => {
                return Answer::status(
                    503,
                    Event::ReplayFull,
                    "replay record full for this account: login refused",
                )
            }
            (Ok(Judged::Granted), Ok(extra)) => extra,
            // A verdict for the other kind of proof: never a token.
            (Ok(Judged::Granted | Judged::Wrong { .. }), _) => {
                return Answer::status(500, Event::Failed, "judge: mismatched verdict")
            }
        };
        let Ok(bytes) = random(32) else {
            return Answer::status(500, Event::Failed, "no randomness");
        };
        let token = Zeroizing::new(B64.encode(bytes));
        let mut entries = vec![("AuthToken", token.as_str())];
        entries.extend_from_slice(extra);
        Answer {
            proof_evaluated: true,
            token_sha256: Some(token_fingerprint(&token)),
            ..Answer::plist(&entries, Event::Token, "token issued")
        }
    }

    /// The account's guessing budget is spent: `429` with `Retry-After`.
    fn throttled(retry_after_secs: u64) -> Answer {
        Answer {
            retry_after: Some(retry_after_secs),
            ..Answer::status(
                429,
                Event::Throttled,
                format!("throttled: retry after {retry_after_secs} s"),
            )
        }
    }
}

/// What a clear password (the `rest` protocols) came to.
pub enum PasswordCheck {
    /// Right: a fresh token, and its fingerprint for the log.
    Token {
        token: Zeroizing<String>,
        fingerprint: String,
    },
    /// Wrong, or a user who may not sign in this way (unknown, unmanaged,
    /// no token needed: these APIs have no 410). `budget_spent`: this one
    /// used up the account's guessing budget.
    Rejected {
        budget_spent: bool,
    },
    /// The account's guessing budget is spent: try again later.
    Throttled {
        retry_after_secs: u64,
    },
    /// The shared store is away: `503`.
    Unavailable,
    /// No login from this connection (`--require-device`): `403`.
    Refused(&'static str),
    Failed(&'static str),
}

impl Authority {
    /// Checks a clear password against the user's credential: a SCRAM
    /// verifier derives `StoredKey` from it (PBKDF2 at the verifier's
    /// iterations) and compares in constant time; a Digest credential its
    /// HA1. An unknown user costs the same as a known one (a decoy of the
    /// store's own shape). Throttled like a wrong proof. It derives keys
    /// without yielding: the caller runs it off the async threads.
    pub async fn check_password(
        &self,
        user: &str,
        password: &[u8],
        origin: Origin,
    ) -> PasswordCheck {
        let origin = match self.admit_device(&self.current(), origin, None) {
            Ok(origin) => origin,
            Err(why) => return PasswordCheck::Refused(why),
        };
        let slot = match self
            .settings
            .shared
            .reserve(user, origin.device, origin.now_ms)
            .await
        {
            Ok(Verdict::Evaluate(slot)) => slot,
            Ok(Verdict::Refuse { retry_after_secs }) => {
                return PasswordCheck::Throttled { retry_after_secs }
            }
            Err(_) => return PasswordCheck::Unavailable,
        };
        let loaded = self.current();
        let decoy;
        let (credential, may_sign_in) = match loaded.store.users.get(user) {
            Some(entry) if entry.policy == Policy::Managed => (entry.credential.as_ref(), true),
            // Unknown, unmanaged or needing no token: the same work, then no.
            _ => {
                decoy = self.decoy(&loaded, user);
                (Some(&decoy), false)
            }
        };
        let right = match credential {
            Some(Credential::Scram(verifier)) => {
                let keys = scram::derive_keys(password, &verifier.salt, verifier.iterations);
                bool::from(keys.stored_key.ct_eq(&verifier.stored_key))
            }
            Some(Credential::Digest {
                realm,
                algorithm,
                ha1,
                ..
            }) => {
                let candidate = http_digest::ha1(*algorithm, user, realm, password);
                bool::from(candidate.as_bytes().ct_eq(ha1.as_bytes()))
            }
            None => return PasswordCheck::Failed("managed user without credential"),
        };
        if !(right && may_sign_in) {
            return PasswordCheck::Rejected {
                budget_spent: slot.last,
            };
        }
        self.settings.shared.right(user, origin.device, slot).await;
        let Ok(bytes) = random(16) else {
            return PasswordCheck::Failed("no randomness");
        };
        // Seed 002's tokens are 32 hex digits.
        let token: Zeroizing<String> = Zeroizing::new(crate::files::hex(&bytes));
        PasswordCheck::Token {
            fingerprint: token_fingerprint(&token),
            token,
        }
    }

    /// The delay before answering a wrong password.
    pub fn failure_delay(&self) -> Duration {
        self.settings.failure_delay
    }
}

impl From<Store> for Loaded {
    fn from(store: Store) -> Loaded {
        Loaded {
            nonce_key: NonceKey::new(&store.secret),
            decoys: DecoyShapes::of(&store),
            devices: store
                .devices
                .iter()
                .map(|(serial, record)| {
                    (record.fingerprint.clone(), (serial.clone(), record.clone()))
                })
                .collect(),
            store,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nonce::ReplayRecord;

    /// The authority's async steps, run to completion (nothing in them
    /// waits on anything but the shared store, here in memory).
    fn now<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    impl Authority {
        fn handle_now(&self, request: &CheckinRequest, origin: Origin) -> Answer {
            now(self.handle(request, origin))
        }

        fn check_password_now(&self, user: &str, password: &[u8], origin: Origin) -> PasswordCheck {
            now(self.check_password(user, password, origin))
        }
    }
    use crate::store::User;
    use authtoken_protocol::mdm::UserIdentity;
    use authtoken_protocol::scram;

    fn authority(unknown: UnknownUsers) -> Authority {
        authority_with(unknown, &[], DeviceRule::Nothing)
    }

    /// With these device records, and `--require-device` or not.
    fn authority_with(
        unknown: UnknownUsers,
        devices: &[(&str, DeviceRecord)],
        require: DeviceRule,
    ) -> Authority {
        let mut store = Store::new().unwrap();
        for (serial, record) in devices {
            store.devices.insert((*serial).to_owned(), record.clone());
        }
        store.users.insert(
            "alice".into(),
            User {
                policy: Policy::Managed,
                credential: Some(Store::scram_credential(b"pw", 4096).unwrap()),
                account: Some(crate::directory::Account::default_for("alice", 10_000)),
            },
        );
        store.users.insert(
            "bob".into(),
            User {
                policy: Policy::Unmanaged,
                credential: None,
                account: None,
            },
        );
        Authority::new(
            store,
            Settings {
                unknown,
                failure_delay: Duration::from_millis(1),
                decoy_iterations: 600_000,
                shared: Shared::local(ReplayRecord::memory(), crate::throttle::GUESSES_PER_MINUTE),
                enroll: None,
                require,
            },
        )
    }

    const T0: u64 = 1_700_000_000_000;

    fn at(now_ms: u64) -> Origin {
        Origin {
            device: None,
            now_ms,
            channel: None,
        }
    }

    fn request(user: &str, digest_response: Option<String>) -> CheckinRequest {
        CheckinRequest {
            message_type: MESSAGE_TYPE.into(),
            identity: UserIdentity {
                udid: "U".into(),
                user_id: "I".into(),
                short_name: user.into(),
                long_name: user.into(),
            },
            digest_response,
        }
    }

    fn dict(answer: &Answer) -> plist::Dictionary {
        plist::Value::from_reader(std::io::Cursor::new(&answer.body))
            .unwrap()
            .into_dictionary()
            .unwrap()
    }

    fn challenge_for(a: &Authority, user: &str, now: Origin) -> scram::Challenge {
        let answer = a.handle_now(&request(user, None), now);
        assert_eq!(answer.status, 200);
        let text = dict(&answer)["DigestChallenge"]
            .as_string()
            .unwrap()
            .to_owned();
        scram::parse_challenge(text.strip_prefix("SCRAM-SHA-256 ").unwrap(), 0..=10_000_000)
            .unwrap()
    }

    fn respond(user: &str, pw: &[u8], c: &scram::Challenge) -> String {
        scram::client_final(user, pw, c, "cnonce")
            .digest_response
            .to_string()
    }

    #[test]
    fn nonce_is_single_use_user_bound_and_expires() {
        let a = authority(UnknownUsers::Unmanaged);
        let now = at(T0);
        let c = challenge_for(&a, "alice", now);
        let good = respond("alice", b"pw", &c);
        let answer = a.handle_now(&request("alice", Some(good.clone())), now);
        assert!(!dict(&answer)["AuthToken"].as_string().unwrap().is_empty());
        // Replay of the same response: the nonce is spent.
        let replay = a.handle_now(&request("alice", Some(good)), now);
        assert_eq!(dict(&replay)["AuthToken"].as_string(), Some(""));
        assert!(replay.delay > Duration::ZERO);
        // Expired.
        let c = challenge_for(&a, "alice", now);
        let late = a.handle_now(
            &request("alice", Some(respond("alice", b"pw", &c))),
            at(T0 + crate::nonce::NONCE_LIFETIME_SECS * 1000),
        );
        assert_eq!(dict(&late)["AuthToken"].as_string(), Some(""));
    }

    #[test]
    fn a_reloaded_store_is_in_force_for_the_next_request() {
        let a = authority(UnknownUsers::Decoy);
        let mut store = Store::new().unwrap();
        store.users.insert(
            "carol".into(),
            User {
                policy: Policy::Managed,
                credential: Some(Store::scram_credential(b"pw3", 4096).unwrap()),
                account: None,
            },
        );
        a.replace_store(store);
        let c = challenge_for(&a, "carol", at(T0));
        let answer = a.handle_now(
            &request("carol", Some(respond("carol", b"pw3", &c))),
            at(T0),
        );
        assert_eq!(answer.event, Event::Token);
        let c = challenge_for(&a, "alice", at(T0));
        let answer = a.handle_now(&request("alice", Some(respond("alice", b"pw", &c))), at(T0));
        assert_eq!(answer.event, Event::Rejected, "alice is gone");
    }

    #[test]
    fn guessing_is_throttled_per_account_and_junk_is_not_counted() {
        let a = authority(UnknownUsers::Decoy);
        // Junk for made-up names and for alice herself: never a proof.
        for i in 0..200 {
            let junk = a.handle_now(
                &request(&format!("made-up{i}"), Some("garbage".into())),
                at(T0),
            );
            assert_eq!(junk.event, Event::Rejected);
            assert!(!junk.proof_evaluated);
            let forged = a.handle_now(
                &request(
                    "alice",
                    Some("SCRAM-SHA-256 n=alice,r=x,c=biws,r=xAAAA,p=AAAA".into()),
                ),
                at(T0),
            );
            assert!(!forged.proof_evaluated, "a forged nonce is not a guess");
        }
        let mut evaluated = 0;
        let mut refused = 0;
        for i in 0..100 {
            let c = challenge_for(&a, "alice", at(T0 + i));
            let answer = a.handle_now(
                &request("alice", Some(respond("alice", b"guess", &c))),
                at(T0 + i),
            );
            if answer.status == 429 {
                refused += 1;
                assert!(answer.retry_after.is_some() && !answer.proof_evaluated);
            } else {
                evaluated += 1;
            }
        }
        assert_eq!(evaluated, crate::throttle::GUESSES_PER_MINUTE);
        assert_eq!(refused, 100 - evaluated);
        // Alice on her own enrolled device is not locked out...
        let device = Origin {
            device: Some([9; 32]),
            ..at(T0 + 200)
        };
        let c = challenge_for(&a, "alice", device);
        let answer = a.handle_now(&request("alice", Some(respond("alice", b"pw", &c))), device);
        assert_eq!(answer.event, Event::Token);
        // ...and a minute on, anywhere.
        let later = at(T0 + 61_000);
        let c = challenge_for(&a, "alice", later);
        let answer = a.handle_now(&request("alice", Some(respond("alice", b"pw", &c))), later);
        assert_eq!(answer.event, Event::Token);
    }

    #[test]
    fn decoy_shapes_follow_the_stores_own_counts() {
        let mut store = Store::new().unwrap();
        for (name, iterations) in [("a", 4096), ("b", 4096), ("c", 4096), ("d", 10_000)] {
            store.users.insert(
                name.into(),
                User {
                    policy: Policy::Managed,
                    credential: Some(Store::scram_credential(b"pw", iterations).unwrap()),
                    account: None,
                },
            );
        }
        let shapes = DecoyShapes::of(&store);
        let iterations = |pick| match shapes.pick(pick) {
            Some(Shape::Scram { iterations }) => *iterations,
            other => panic!("{other:?}"),
        };
        let picked: Vec<u32> = (0..8).map(iterations).collect();
        assert_eq!(picked, [4096, 4096, 4096, 10_000, 4096, 4096, 4096, 10_000]);
        assert!(DecoyShapes::of(&Store::new().unwrap()).pick(7).is_none());
    }

    #[test]
    fn decoys_take_their_shape_from_the_store() {
        let a = authority(UnknownUsers::Decoy);
        let now = at(T0);
        // The store's only managed user has 4096 rounds; so do decoys.
        for name in ["mallory", "eve", "trent"] {
            assert_eq!(challenge_for(&a, name, now).iterations, 4096);
        }
        // A store of Digest users gets Digest decoys.
        let mut store = Store::new().unwrap();
        store.users.insert(
            "dave".into(),
            User {
                policy: Policy::Managed,
                credential: Some(Credential::Digest {
                    realm: "corp".into(),
                    algorithm: http_digest::Algorithm::Sha256,
                    qop: true,
                    ha1: "00".repeat(32),
                }),
                account: None,
            },
        );
        a.replace_store(store);
        let text = |user: &str| {
            dict(&a.handle_now(&request(user, None), now))["DigestChallenge"]
                .as_string()
                .unwrap()
                .to_owned()
        };
        let shape = |t: String| t.split("nonce=").next().unwrap().to_owned();
        assert!(
            text("mallory").starts_with("Digest "),
            "{}",
            text("mallory")
        );
        assert_eq!(shape(text("mallory")), shape(text("dave")));
    }

    #[test]
    fn wrong_password_and_unknown_users() {
        let a = authority(UnknownUsers::Unmanaged);
        let now = at(T0);
        let c = challenge_for(&a, "alice", now);
        let answer = a.handle_now(&request("alice", Some(respond("alice", b"nope", &c))), now);
        assert_eq!(dict(&answer)["AuthToken"].as_string(), Some(""));
        assert_eq!(a.handle_now(&request("bob", None), now).status, 410);
        assert_eq!(a.handle_now(&request("mallory", None), now).status, 410);

        let decoy = authority(UnknownUsers::Decoy);
        let first = challenge_for(&decoy, "mallory", now);
        let again = challenge_for(&decoy, "mallory", now);
        assert_eq!(first.salt, again.salt, "decoy salt is stable");
        assert_eq!(first.iterations, 4096, "the store's own count");
        let answer = decoy.handle_now(
            &request("mallory", Some(respond("mallory", b"x", &first))),
            now,
        );
        assert_eq!(dict(&answer)["AuthToken"].as_string(), Some(""));
    }

    #[test]
    fn the_directory_goes_to_enrolled_devices_only_and_unchanged_is_304() {
        let a = authority(UnknownUsers::Decoy);
        let refused = a.directory(at(T0), None);
        assert_eq!(refused.status, 403);
        assert!(refused.body.is_empty(), "nothing learned");
        let device = Origin {
            device: Some([7; 32]),
            now_ms: T0,
            channel: None,
        };
        let sent = a.directory(device, None);
        assert_eq!(sent.status, 200);
        let etag = sent.etag.clone().unwrap();
        let directory: crate::directory::Directory = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(directory.users.len(), 1, "bob has no account");
        assert_eq!(directory.users[0].name, "alice");
        assert_eq!(etag, format!("\"{}\"", directory.serial));
        let unchanged = a.directory(device, Some(&etag));
        assert_eq!(unchanged.status, 304);
        assert!(unchanged.body.is_empty());
        assert_eq!(a.directory(device, Some("\"other\"")).status, 200);
    }

    const UDID: &str = "01234567-89AB-CDEF-0123-456789ABCDEF";

    fn device_record(fingerprint: [u8; 32], revoked: bool) -> DeviceRecord {
        DeviceRecord {
            name: "laptop7".into(),
            udid: UDID.into(),
            fingerprint: crate::files::hex(&fingerprint),
            issued_at: T0 / 1000,
            not_after: T0 / 1000 + 90 * 86_400,
            revoked,
        }
    }

    fn from_device(fingerprint: [u8; 32]) -> Origin {
        Origin {
            device: Some(fingerprint),
            ..at(T0)
        }
    }

    #[test]
    fn a_revoked_device_is_no_device_and_a_recorded_one_keeps_its_udid() {
        const CURRENT: [u8; 32] = [1; 32];
        const REVOKED: [u8; 32] = [2; 32];
        const SITE_PKI: [u8; 32] = [3; 32];
        let devices = [
            ("01", device_record(CURRENT, false)),
            ("02", device_record(REVOKED, true)),
        ];
        for rule in [
            DeviceRule::Nothing,
            DeviceRule::Certificate,
            DeviceRule::CurrentDevice,
        ] {
            let a = authority_with(UnknownUsers::Decoy, &devices, rule);
            let loaded = a.current();
            let udid = UDID;
            // Current: the device, with its own budget, and the directory.
            let admitted = a.admit_device(&loaded, from_device(CURRENT), Some(udid));
            assert_eq!(admitted.map(|o| o.device), Ok(Some(CURRENT)));
            assert_eq!(a.directory(from_device(CURRENT), None).status, 200);
            // A certificate of the site's own PKI is a device, not on record.
            let admitted = a.admit_device(&loaded, from_device(SITE_PKI), Some(udid));
            assert_eq!(admitted.map(|o| o.device), Ok(Some(SITE_PKI)));
            // Another machine's UDID in the check-in: refused either way.
            let other = "FFFFFFFF-89AB-CDEF-0123-456789ABCDEF";
            assert!(a
                .admit_device(&loaded, from_device(CURRENT), Some(other))
                .is_err());
            // Revoked: no directory, and no device budget (or no login).
            assert_eq!(a.directory(from_device(REVOKED), None).status, 403);
            let revoked = a.admit_device(&loaded, from_device(REVOKED), Some(udid));
            let none = a.admit_device(&loaded, at(T0), Some(udid));
            if rule == DeviceRule::CurrentDevice {
                assert_eq!(
                    revoked.map(|o| o.device),
                    Err("login refused: device revoked (--require-device)")
                );
                assert!(none.is_err(), "no certificate at all");
                assert!(matches!(
                    a.check_password_now("alice", b"pw", from_device(REVOKED)),
                    PasswordCheck::Refused(_)
                ));
            } else if rule == DeviceRule::Certificate {
                // Any verified certificate will do, even a revoked one
                // (which earns no budget of its own); none will not.
                assert_eq!(revoked.map(|o| o.device), Ok(None));
                assert_eq!(
                    none.map(|o| o.device),
                    Err("login refused: no client certificate (--client-ca)")
                );
            } else {
                assert_eq!(revoked.map(|o| o.device), Ok(None));
                assert_eq!(none.map(|o| o.device), Ok(None));
            }
        }
    }

    #[test]
    fn a_clear_password_is_checked_against_the_verifier() {
        let authority = authority(UnknownUsers::Decoy);
        let origin = Origin {
            device: None,
            now_ms: 1_700_000_000_000,
            channel: None,
        };
        match authority.check_password_now("alice", b"pw", origin) {
            PasswordCheck::Token { token, fingerprint } => {
                assert_eq!(token.len(), 32);
                assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
                assert_eq!(fingerprint, token_fingerprint(&token));
            }
            _ => panic!("the right password"),
        }
        for (user, password) in [
            ("alice", &b"PW"[..]),
            ("bob", b"pw"),
            ("nobody-here", b"pw"),
        ] {
            assert!(
                matches!(
                    authority.check_password_now(user, password, origin),
                    PasswordCheck::Rejected { .. }
                ),
                "{user}"
            );
        }
    }
}
