//! The helper's parts, shared by `authtoken-helper` (run by the module as
//! root, or by an administrator) and `authtoken-chkpwd` (the setuid entry
//! point for callers without root): HTTPS, the two backends, and dropping
//! root before the network.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod commands;
pub mod directory;
pub mod enroll;
pub mod hem;
pub mod mdm;
pub mod privilege;
pub mod rest;
pub mod sync;
pub mod tls;
pub mod transport;

use std::time::{Duration, Instant};

use authtoken_config::{Backend, Config};
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
        Backend::Rest => rest::authenticate(config, &http, user, password, step),
    };
    let (outcome, verifier) = settle_offline(outcome, &offline, password, step);
    Handshake {
        outcome,
        authority,
        verifier,
    }
}

/// What the offline policy makes of the authority's outcome: a new
/// verifier beside a token when one was asked for, and the local check
/// only when no authority answered at all, never after an answer.
fn settle_offline(
    outcome: Outcome,
    offline: &OfflineAsk<'_>,
    password: &[u8],
    step: &mut dyn FnMut(&str),
) -> (Outcome, Option<OfflineVerifier>) {
    match (outcome, offline.verifier) {
        (outcome @ Outcome::Token { .. }, _) if offline.want_verifier => {
            match authtoken_protocol::offline::new_verifier(password) {
                Ok(new) => (outcome, Some(new)),
                Err(e) => {
                    step(&format!("no offline verifier: {e}"));
                    (outcome, None)
                }
            }
        }
        (Outcome::Unreachable { reason }, Some(stored)) => {
            step(&format!(
                "no authority reachable ({reason}): checking offline"
            ));
            let outcome = match authtoken_protocol::offline::matches(password, stored) {
                Ok(true) => Outcome::OfflineVerified,
                Ok(false) => Outcome::OfflineRejected,
                Err(e) => Outcome::unavailable(e.to_string()),
            };
            (outcome, None)
        }
        (outcome, _) => (outcome, None),
    }
}

/// What one handshake ended in, which authority answered, and a new
/// offline verifier when one was asked for and a token was issued.
pub struct Handshake {
    pub outcome: Outcome,
    pub authority: Option<String>,
    pub verifier: Option<OfflineVerifier>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn settle(outcome: Outcome, offline: OfflineAsk<'_>, password: &[u8]) -> (Outcome, bool) {
        let (outcome, verifier) = settle_offline(outcome, &offline, password, &mut |_| {});
        (outcome, verifier.is_some())
    }

    fn token() -> Outcome {
        Outcome::token(Zeroizing::new("t".into()))
    }

    #[test]
    fn a_verifier_is_made_beside_a_token_only_when_asked() {
        let asked = OfflineAsk {
            want_verifier: true,
            verifier: None,
        };
        let (outcome, made) = settle(token(), asked, b"pw");
        assert!(matches!(outcome, Outcome::Token { .. }) && made);
        let (_, made) = settle(token(), OfflineAsk::default(), b"pw");
        assert!(!made);
        let asked = OfflineAsk {
            want_verifier: true,
            verifier: None,
        };
        let (outcome, made) = settle(Outcome::Rejected, asked, b"pw");
        assert!(matches!(outcome, Outcome::Rejected) && !made);
    }

    #[test]
    fn the_local_check_runs_only_when_no_authority_answered() {
        let stored = authtoken_protocol::offline::new_verifier(b"right").unwrap();
        let with = || OfflineAsk {
            want_verifier: false,
            verifier: Some(&stored),
        };
        let unreachable = || Outcome::Unreachable {
            reason: "refused".into(),
        };
        assert!(matches!(
            settle(unreachable(), with(), b"right").0,
            Outcome::OfflineVerified
        ));
        // An authority that answered decides, whatever the local verifier
        // would say: a rejection or an error is never retried offline.
        assert!(matches!(
            settle(Outcome::Rejected, with(), b"right").0,
            Outcome::Rejected
        ));
        assert!(matches!(
            settle(Outcome::unavailable("HTTP 500"), with(), b"right").0,
            Outcome::Unavailable { .. }
        ));
        assert!(matches!(
            settle(Outcome::Unmanaged, with(), b"right").0,
            Outcome::Unmanaged
        ));
        // No verifier sent: unreachable stays unreachable.
        assert!(matches!(
            settle(unreachable(), OfflineAsk::default(), b"right").0,
            Outcome::Unreachable { .. }
        ));
    }

    #[test]
    fn a_malformed_verifier_is_unavailable_not_a_rejection() {
        let mut stored = authtoken_protocol::offline::new_verifier(b"right").unwrap();
        stored.iterations = 1;
        let ask = OfflineAsk {
            want_verifier: false,
            verifier: Some(&stored),
        };
        let unreachable = Outcome::Unreachable {
            reason: "refused".into(),
        };
        assert!(matches!(
            settle(unreachable, ask, b"right").0,
            Outcome::Unavailable { .. }
        ));
    }
}
