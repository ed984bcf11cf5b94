//! The helper's parts, shared by `authtoken-helper` (run by the module as
//! root, or by an administrator) and `authtoken-chkpwd` (the setuid entry
//! point for callers without root): HTTPS, the two backends, and dropping
//! root before the network.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod hem;
pub mod mdm;
pub mod privilege;
pub mod transport;

use std::time::{Duration, Instant};

use authtoken_core::config::{Backend, Config};
use authtoken_core::offline::OfflineVerifier;
use authtoken_core::outcome::Outcome;
use authtoken_core::username::Username;

/// What the module asked of offline login for this handshake.
#[derive(Default)]
pub struct OfflineAsk<'a> {
    /// Compute a new verifier if the authority issues a token.
    pub want_verifier: bool,
    /// The verifier to check the password against if no authority can be
    /// reached at all.
    pub verifier: Option<&'a OfflineVerifier>,
}

/// Runs the configured backend under the handshake deadline.
pub fn run_backend(
    config: &Config,
    user: &Username,
    password: &[u8],
    started: Instant,
    offline: OfflineAsk<'_>,
    step: &mut dyn FnMut(&str),
) -> Handshake {
    let deadline = started + Duration::from_millis(config.timeout_ms);
    // Everything that needs root (the CA, the client key) is read here...
    let failed = |reason: String| Handshake {
        outcome: Outcome::unavailable(reason),
        authority: None,
        verifier: None,
    };
    let http = match transport::Http::new(config, deadline) {
        Ok(http) => http,
        Err(e) => return failed(e.to_string()),
    };
    // ...and root is gone before the first byte goes out.
    if let Err(e) = privilege::drop_to(config.helper_user.as_str()) {
        return failed(format!("cannot drop privileges: {e}"));
    }
    step(&format!(
        "running as uid {}, no new privileges",
        nix::unistd::Uid::effective()
    ));
    let (outcome, authority) = match config.backend {
        Backend::Mdm => mdm::authenticate(config, &http, user, password, step),
        Backend::Hem => hem::authenticate(config, &http, user, password, step),
    };
    let mut verifier = None;
    let outcome = match (outcome, offline.verifier) {
        (outcome @ Outcome::Token { .. }, _) if offline.want_verifier => {
            match authtoken_protocol::offline::new_verifier(password) {
                Ok(new) => verifier = Some(new),
                Err(e) => step(&format!("no offline verifier: {e}")),
            }
            outcome
        }
        // Only when no authority answered at all, never after an answer.
        (Outcome::Unreachable { reason }, Some(stored)) => {
            step(&format!(
                "no authority reachable ({reason}): checking offline"
            ));
            match authtoken_protocol::offline::matches(password, stored) {
                Ok(true) => Outcome::OfflineVerified,
                Ok(false) => Outcome::OfflineRejected,
                Err(e) => Outcome::unavailable(e.to_string()),
            }
        }
        (outcome, _) => outcome,
    };
    Handshake {
        outcome,
        authority,
        verifier,
    }
}

/// What one handshake ended in, which authority answered, and a new
/// offline verifier when one was asked for and a token was issued.
pub struct Handshake {
    pub outcome: Outcome,
    pub authority: Option<String>,
    pub verifier: Option<OfflineVerifier>,
}
