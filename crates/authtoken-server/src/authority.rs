//! The token authority's decisions for `UserAuthenticate`, without I/O:
//! which challenge to issue, whether a digest is right, which token to hand
//! out. Nonces are random, single use, bound to the user, and expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use authtoken_protocol::mdm::MESSAGE_TYPE;
use authtoken_protocol::scram::DEFAULT_SERVER_ITERATIONS;
use authtoken_protocol::{http_digest, random_bytes};
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use ring::{digest, hmac};
use zeroize::Zeroizing;

use crate::proto::digest as digest_server;
use crate::proto::mdm::{reply_body, CheckinRequest};
use crate::proto::scram::{self as scram_server, Verifier};
use crate::store::{Credential, Policy, Store};

/// How long an issued challenge may be answered.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(60);
/// Most challenges outstanding at once; beyond it the server answers 503.
pub const MAX_PENDING: usize = 10_000;

/// What to do with users the store does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnknownUsers {
    /// `410 Gone`, as NanoMDM and MicroMDM do.
    Unmanaged,
    /// A SCRAM challenge with a fake but stable salt, so user names cannot
    /// be probed; the digest is then always rejected.
    Decoy,
}

struct Pending {
    user: String,
    issued: Instant,
}

pub struct Authority {
    store: Store,
    unknown: UnknownUsers,
    failure_delay: Duration,
    pending: Mutex<HashMap<String, Pending>>,
    decoy_iterations: u32,
}

/// The reply to one request.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: Option<&'static str>,
    /// Wait this long before answering (after a failed digest).
    pub delay: Duration,
    /// What happened, for the request log: never a password, digest or token.
    pub event: String,
}

impl Answer {
    pub fn status(status: u16, event: impl Into<String>) -> Answer {
        Answer {
            status,
            body: Vec::new(),
            content_type: None,
            delay: Duration::ZERO,
            event: event.into(),
        }
    }

    fn plist(entries: &[(&str, &str)], event: impl Into<String>) -> Answer {
        Answer {
            status: 200,
            body: reply_body(entries),
            content_type: Some("application/xml"),
            delay: Duration::ZERO,
            event: event.into(),
        }
    }

    pub fn json(body: Vec<u8>, event: impl Into<String>) -> Answer {
        Answer {
            status: 200,
            body,
            content_type: Some("application/json"),
            delay: Duration::ZERO,
            event: event.into(),
        }
    }
}

/// A short, non-reversible fingerprint of a token for logs and tests.
pub fn token_fingerprint(token: &str) -> String {
    let hash = digest::digest(&digest::SHA256, token.as_bytes());
    hash.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Authority {
    pub fn new(store: Store, unknown: UnknownUsers, failure_delay: Duration) -> Authority {
        let decoy_iterations = store
            .users
            .values()
            .find_map(|u| match &u.credential {
                Some(Credential::Scram(v)) => Some(v.iterations),
                _ => None,
            })
            .unwrap_or(DEFAULT_SERVER_ITERATIONS);
        Authority {
            store,
            unknown,
            failure_delay,
            pending: Mutex::new(HashMap::new()),
            decoy_iterations,
        }
    }

    pub fn handle(&self, request: &CheckinRequest, now: Instant) -> Answer {
        if request.message_type != MESSAGE_TYPE {
            return Answer::status(
                400,
                format!("unsupported MessageType {}", request.message_type),
            );
        }
        let user = request.identity.short_name.as_str();
        match &request.digest_response {
            None => self.challenge(user, now),
            Some(response) => self.verify(user, response, now),
        }
    }

    fn challenge(&self, user: &str, now: Instant) -> Answer {
        let Some(entry) = self.store.users.get(user) else {
            return match self.unknown {
                UnknownUsers::Unmanaged => Answer::status(410, "unknown user: 410"),
                UnknownUsers::Decoy => self.issue(
                    user,
                    now,
                    |nonce| self.decoy_verifier(user).challenge(nonce),
                    "decoy",
                ),
            };
        };
        match (entry.policy, &entry.credential) {
            (Policy::Unmanaged, _) => Answer::status(410, "unmanaged: 410"),
            (Policy::NoToken, _) => Answer::plist(&[("DigestChallenge", "")], "no token needed"),
            (Policy::Managed, Some(Credential::Scram(verifier))) => {
                self.issue(user, now, |nonce| verifier.challenge(nonce), "scram")
            }
            (
                Policy::Managed,
                Some(Credential::Digest {
                    realm,
                    algorithm,
                    qop,
                    ..
                }),
            ) => self.issue(
                user,
                now,
                |nonce| {
                    digest_server::challenge_header(&http_digest::Challenge {
                        realm: realm.clone(),
                        nonce: nonce.to_owned(),
                        qop_auth: *qop,
                        algorithm: Some(*algorithm),
                        opaque: None,
                    })
                },
                "digest",
            ),
            (Policy::Managed, None) => Answer::status(500, "managed user without credential"),
        }
    }

    /// Registers a fresh nonce for `user` and answers with the challenge text.
    fn issue(
        &self,
        user: &str,
        now: Instant,
        challenge: impl FnOnce(&str) -> String,
        kind: &str,
    ) -> Answer {
        let Ok(bytes) = random_bytes(18) else {
            return Answer::status(500, "no randomness");
        };
        let nonce = B64URL.encode(bytes);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= MAX_PENDING {
            pending.retain(|_, p| now.duration_since(p.issued) < NONCE_LIFETIME);
            if pending.len() >= MAX_PENDING {
                return Answer::status(503, "too many outstanding challenges");
            }
        }
        pending.insert(
            nonce.clone(),
            Pending {
                user: user.to_owned(),
                issued: now,
            },
        );
        drop(pending);
        Answer::plist(
            &[("DigestChallenge", &challenge(&nonce))],
            format!("challenge {kind}"),
        )
    }

    /// Takes a nonce out of the table: valid only once, for its own user,
    /// within its lifetime.
    fn redeem(&self, nonce: &str, user: &str, now: Instant) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.remove(nonce) {
            Some(p) => p.user == user && now.duration_since(p.issued) < NONCE_LIFETIME,
            None => false,
        }
    }

    fn decoy_verifier(&self, user: &str) -> Verifier {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.store.secret);
        let salt = hmac::sign(&key, user.as_bytes()).as_ref()[..16].to_vec();
        Verifier {
            salt,
            iterations: self.decoy_iterations,
            stored_key: [0; 32],
            server_key: [0; 32],
        }
    }

    fn reject(&self, why: &str) -> Answer {
        Answer {
            delay: self.failure_delay,
            ..Answer::plist(&[("AuthToken", "")], format!("rejected: {why}"))
        }
    }

    fn verify(&self, user: &str, response: &str, now: Instant) -> Answer {
        let entry = self.store.users.get(user);
        if let Some(entry) = entry {
            if entry.policy == Policy::Unmanaged {
                return Answer::status(410, "unmanaged: 410");
            }
        }
        let credential = entry
            .filter(|e| e.policy == Policy::Managed)
            .and_then(|e| e.credential.as_ref());
        match credential {
            Some(Credential::Scram(verifier)) => self.verify_scram(user, verifier, response, now),
            Some(Credential::Digest {
                realm,
                algorithm,
                ha1,
                ..
            }) => self.verify_digest(user, realm, *algorithm, ha1, response, now),
            None => {
                // Unknown (decoy) or token-less user: spend the nonce, reject.
                if let Ok(parsed) = scram_server::parse_client_response(response) {
                    self.redeem(parsed.snonce(), user, now);
                }
                self.reject("no verifier for this user")
            }
        }
    }

    fn verify_scram(
        &self,
        user: &str,
        verifier: &Verifier,
        response: &str,
        now: Instant,
    ) -> Answer {
        let Ok(parsed) = scram_server::parse_client_response(response) else {
            return self.reject("malformed SCRAM response");
        };
        if !self.redeem(parsed.snonce(), user, now) {
            return self.reject("unknown, reused, expired or foreign nonce");
        }
        if parsed.user != user {
            return self.reject("n= names another user");
        }
        match scram_server::server_verify(verifier, &parsed) {
            Some(signature) => self.grant(&[("ServerSignature", &signature)]),
            None => self.reject("wrong proof"),
        }
    }

    fn verify_digest(
        &self,
        user: &str,
        realm: &str,
        algorithm: http_digest::Algorithm,
        ha1: &str,
        response: &str,
        now: Instant,
    ) -> Answer {
        let Ok(parsed) = digest_server::parse_client_response(response) else {
            return self.reject("malformed Digest response");
        };
        if !self.redeem(&parsed.nonce, user, now) {
            return self.reject("unknown, reused, expired or foreign nonce");
        }
        if parsed.username != user
            || parsed.realm != realm
            || parsed.uri != http_digest::URI
            || parsed.algorithm.is_some_and(|a| a != algorithm)
        {
            return self.reject("response for another user, realm or URI");
        }
        if digest_server::server_verify(algorithm, ha1, &parsed) {
            self.grant(&[])
        } else {
            self.reject("wrong response")
        }
    }

    fn grant(&self, extra: &[(&str, &str)]) -> Answer {
        let Ok(bytes) = random_bytes(32) else {
            return Answer::status(500, "no randomness");
        };
        let token = Zeroizing::new(B64.encode(bytes));
        let mut entries = vec![("AuthToken", token.as_str())];
        entries.extend_from_slice(extra);
        Answer::plist(
            &entries,
            format!("token issued sha256={}", token_fingerprint(&token)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::User;
    use authtoken_protocol::mdm::UserIdentity;
    use authtoken_protocol::scram;

    fn authority(unknown: UnknownUsers) -> Authority {
        let mut store = Store::new().unwrap();
        store.users.insert(
            "alice".into(),
            User {
                policy: Policy::Managed,
                credential: Some(Store::scram_credential(b"pw", 4096).unwrap()),
            },
        );
        store.users.insert(
            "bob".into(),
            User {
                policy: Policy::Unmanaged,
                credential: None,
            },
        );
        Authority::new(store, unknown, Duration::from_millis(1))
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

    fn challenge_for(a: &Authority, user: &str, now: Instant) -> scram::Challenge {
        let answer = a.handle(&request(user, None), now);
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
        let now = Instant::now();
        let c = challenge_for(&a, "alice", now);
        let good = respond("alice", b"pw", &c);
        let answer = a.handle(&request("alice", Some(good.clone())), now);
        assert!(!dict(&answer)["AuthToken"].as_string().unwrap().is_empty());
        // Replay of the same response: the nonce is spent.
        let replay = a.handle(&request("alice", Some(good)), now);
        assert_eq!(dict(&replay)["AuthToken"].as_string(), Some(""));
        assert!(replay.delay > Duration::ZERO);
        // Expired.
        let c = challenge_for(&a, "alice", now);
        let late = a.handle(
            &request("alice", Some(respond("alice", b"pw", &c))),
            now + NONCE_LIFETIME,
        );
        assert_eq!(dict(&late)["AuthToken"].as_string(), Some(""));
    }

    #[test]
    fn wrong_password_and_unknown_users() {
        let a = authority(UnknownUsers::Unmanaged);
        let now = Instant::now();
        let c = challenge_for(&a, "alice", now);
        let answer = a.handle(&request("alice", Some(respond("alice", b"nope", &c))), now);
        assert_eq!(dict(&answer)["AuthToken"].as_string(), Some(""));
        assert_eq!(a.handle(&request("bob", None), now).status, 410);
        assert_eq!(a.handle(&request("mallory", None), now).status, 410);

        let decoy = authority(UnknownUsers::Decoy);
        let first = challenge_for(&decoy, "mallory", now);
        let again = challenge_for(&decoy, "mallory", now);
        assert_eq!(first.salt, again.salt, "decoy salt is stable");
        assert_eq!(first.iterations, 4096, "decoy looks like a real user");
        let answer = decoy.handle(
            &request("mallory", Some(respond("mallory", b"x", &first))),
            now,
        );
        assert_eq!(dict(&answer)["AuthToken"].as_string(), Some(""));
    }
}
