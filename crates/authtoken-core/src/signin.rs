//! The sign-in flow of a root caller, written once: the PAM module in a
//! privileged host and the setuid `authtoken-chkpwd` both run it (pam_unix
//! shares `passverify.c` between the module and `unix_chkpwd` for the same
//! reason). What differs between them is behind [`Runner`]: where the
//! password comes from, how the helper is run, where lines are logged, and
//! which offline policy applies.
//!
//! The steps: a `410` remembered for this login session answers at once;
//! the offline policy decides what the request carries (and counts the
//! attempt before a verifier leaves); the helper runs; the offline records
//! and the session cache are kept in step with the outcome.

use std::path::Path;

use zeroize::Zeroizing;

use crate::cache::Cache;
use crate::log::{self, Level};
use crate::offline::OfflineConfig;
use crate::offline::{self, OfflineError, OfflineStore, OfflineVerifier};
use crate::outcome::Outcome;
use crate::session::SessionKey;
use crate::username::Username;
use crate::wire::HelperAnswer;

/// What the caller supplies.
pub trait Runner {
    type Error;
    /// Whether this attempt may go ahead at all (chkpwd's spacing of one
    /// uid's attempts), decided before anything is counted or sent.
    fn admit(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// The encoded request for the helper, with the offline fields given
    /// (the module asks PAM for the password only here).
    fn request(
        &mut self,
        want_verifier: bool,
        verifier: Option<OfflineVerifier>,
    ) -> Result<Zeroizing<Vec<u8>>, Self::Error>;
    /// Runs the helper on `request`.
    fn run(&mut self, request: &[u8]) -> Result<HelperAnswer, Self::Error>;
    fn open_offline(&self, dir: &Path) -> Result<OfflineStore, OfflineError>;
    fn log(&self, level: Level, message: &str);
}

/// One sign-in.
pub struct SignIn<'a> {
    pub user: &'a Username,
    pub service: &'a str,
    /// The offline policy for this caller (a caller without root has a
    /// service list of its own).
    pub offline: &'a OfflineConfig,
    /// This login session's cache, when it can be used.
    pub session: Option<(&'a Cache, &'a SessionKey)>,
}

/// How a sign-in ended.
pub struct SignedIn {
    pub outcome: Outcome,
    /// Answered from the session's memory of a `410`, without a request.
    pub remembered: bool,
}

impl SignIn<'_> {
    pub fn run<R: Runner>(&self, runner: &mut R) -> Result<SignedIn, R::Error> {
        if let Some((cache, key)) = self.session {
            if cache.is_unmanaged(key, self.user) {
                return Ok(SignedIn {
                    outcome: Outcome::Unmanaged,
                    remembered: true,
                });
            }
        }
        runner.admit()?;
        let store = if self.offline.enabled {
            runner
                .open_offline(&self.offline.dir)
                .inspect_err(|e| {
                    runner.log(
                        Level::Warning,
                        &format!("offline verifiers unavailable: {e}"),
                    )
                })
                .ok()
        } else {
            None
        };
        let mut ask = store
            .as_ref()
            .map(|store| offline::prepare(self.offline, store, self.user, self.service))
            .unwrap_or_default();
        if let Some(why) = &ask.withheld {
            runner.log(
                Level::Info,
                &format!("user={} {why}", log::quote(self.user.as_str())),
            );
        }
        let request = runner.request(ask.want_verifier, ask.verifier.take())?;
        let answer = runner.run(&request)?;
        drop(request);
        let outcome = match answer.outcome {
            // Only the setuid entry point withholds the token, and it is
            // not the helper.
            Outcome::Verified => {
                Outcome::unavailable("the helper answered verified without a token")
            }
            outcome => outcome,
        };
        if let Some(store) = &store {
            if let Err(e) =
                offline::settle(store, self.user, &outcome, answer.verifier, ask.counted)
            {
                runner.log(Level::Warning, &format!("offline verifier: {e}"));
            }
        }
        if let Some((cache, key)) = self.session {
            let stored = match &outcome {
                Outcome::Unmanaged => cache.mark_unmanaged(key, self.user),
                // A new handshake killed the old token: the session's file
                // is refreshed if it has one.
                Outcome::Token { token, expires } => cache
                    .replace_token(key, self.user, token, *expires)
                    .map(drop),
                _ => Ok(()),
            };
            if let Err(e) = stored {
                runner.log(Level::Warning, &format!("session cache: {e}"));
            }
        }
        Ok(SignedIn {
            outcome,
            remembered: false,
        })
    }
}
