//! Backend `hem`: a local token device's `/api/auth/token` challenge and
//! response over HTTP(S).

use std::time::Instant;

use authtoken_core::config::Config;
use authtoken_core::outcome::Outcome;
use authtoken_core::username::Username;
use authtoken_protocol::hem;
use zeroize::Zeroizing;

use crate::transport::{report, Authorities, Http};
use authtoken_protocol::mdm::TransportFailure;

pub fn authenticate(
    config: &Config,
    http: &Http,
    user: &Username,
    password: &[u8],
    step: &mut dyn FnMut(&str),
) -> (Outcome, Option<String>) {
    let mut authorities = Authorities::new(http, &config.url);
    let outcome = exchange(config, &mut authorities, user, password, step);
    (outcome, authorities.answered_by().map(str::to_owned))
}

fn exchange(
    config: &Config,
    authorities: &mut Authorities<'_>,
    user: &Username,
    password: &[u8],
    step: &mut dyn FnMut(&str),
) -> Outcome {
    let reply = authorities.request("GET", hem::TOKEN_PATH, None, None);
    report(authorities, step);
    let reply = match reply {
        Ok(reply) => reply,
        Err(TransportFailure::Unreachable(reason)) => return Outcome::Unreachable { reason },
        Err(TransportFailure::Failed(reason)) => return Outcome::unavailable(reason),
    };
    step(&format!("challenge answered HTTP {}", reply.status));
    let challenge = match hem::parse_challenge(reply.status, &reply.body) {
        Ok(challenge) => challenge,
        Err(outcome) => return outcome,
    };
    // A pinned device identity: any other device is not our authority.
    if let Some(pinned) = &config.hem.eid {
        if &challenge.eid != pinned {
            return Outcome::unavailable(
                "device eid differs from hem.eid: not the configured device",
            );
        }
    }
    // The 410-style opt-out: the device belongs to another user.
    if hem::label_user(&challenge.lbl, &config.hem.labels) != Some(user.as_str()) {
        step("device label names another user: not managed");
        return Outcome::Unmanaged;
    }
    // A label is the device's word, not the admin's: it names the
    // superuser only through a mapping the admin wrote.
    if config.hem.labels.is_empty() && is_superuser(user.as_str()) {
        step("device label names a uid-0 account without a [hem.labels] mapping: not managed");
        return Outcome::Unmanaged;
    }
    let kdf_started = Instant::now();
    let secret = hem::user_secret(password, &challenge.eid);
    step(&format!(
        "key derivation ({} PBKDF2 rounds) took {} ms",
        hem::KDF_ITERATIONS,
        kdf_started.elapsed().as_millis()
    ));
    let now = authtoken_core::clock::unix_secs();
    let auth = match hem::client_auth(&secret, &challenge, &config.hem.scope, now) {
        Ok(auth) => auth,
        Err(e) => return Outcome::unavailable(e.to_string()),
    };
    let body = Zeroizing::new(serde_json::json!({ "auth": auth.as_str() }).to_string());
    let reply = match authorities.request(
        "POST",
        hem::TOKEN_PATH,
        Some("application/json"),
        Some(body.as_bytes()),
    ) {
        Ok(reply) => reply,
        Err(TransportFailure::Unreachable(reason) | TransportFailure::Failed(reason)) => {
            return Outcome::unavailable(reason)
        }
    };
    step(&format!("authentication answered HTTP {}", reply.status));
    hem::parse_token_reply(reply.status, &reply.body)
}

/// Whether `user` is an account with uid 0 (`root`, or an alias of it).
fn is_superuser(user: &str) -> bool {
    user == "root"
        || nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .is_some_and(|u| u.uid.is_root())
}
