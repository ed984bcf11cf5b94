//! `authtoken-chkpwd`: the setuid-root entry point for callers without root
//! (screen lockers), in the way of pam_unix's `unix_chkpwd`.
//!
//! The PAM module runs it, instead of the helper, when it is not root. It
//! * first resets what a caller can pass through a setuid exec (resource
//!   limits, signal dispositions and mask, umask) and takes root's real
//!   uid, so the caller can no longer signal it;
//! * signs in only the user its real uid belonged to, and refuses any other;
//! * ignores its environment and arguments, and reads the system config only;
//! * takes no offline decision from the caller: the verifier and whether to
//!   make one come from the system's records, and the offline services of a
//!   caller without root are `[offline] unprivileged_services`;
//! * spaces one uid's attempts at least 1 s apart, doubling after each
//!   rejected password (up to 32 s), refusing at once when the wait would
//!   exceed 4 s; each attempt is on record as a rejection before the helper
//!   runs;
//! * answers a user remembered as unmanaged (410) in this login session
//!   without a request, and remembers a new 410;
//! * runs the helper through the module's own spawner (the checked
//!   executable, a deadline on every read, the process group killed at the
//!   deadline) and keeps the token: the caller learns only whether it was
//!   issued, and the session's token file, if it has one, is refreshed.
//!
//! Request on stdin, result on stdout: the module's wire format.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use authtoken_core::attempts::Attempts;
use authtoken_core::cache::Cache;
use authtoken_core::config::{Config, CHKPWD_MAX_WAIT_MS, DEFAULT_CONFIG_PATH};
use authtoken_core::log::{self, Level};
use authtoken_core::offline::{self, OfflineStore};
use authtoken_core::outcome::Outcome;
use authtoken_core::session::SessionKey;
use authtoken_core::wire::{self, HelperRequest, MAX_REQUEST_BYTES};
use nix::unistd::{Uid, User};
use zeroize::Zeroizing;

const IDENT: &str = "authtoken-chkpwd";

fn main() -> ExitCode {
    // Who called, before the ids change.
    let caller = Uid::current();
    let outcome = match authtoken_spawn::setuid::reset_inherited_state() {
        Ok(()) => {
            // A setuid program's environment is its caller's: drop all of it.
            for (name, _) in std::env::vars_os() {
                std::env::remove_var(name);
            }
            check(caller).unwrap_or_else(Outcome::unavailable)
        }
        Err(e) => Outcome::unavailable(format!("cannot reset the caller's process state: {e}")),
    };
    let reason = match &outcome {
        Outcome::Unavailable { reason } | Outcome::Unreachable { reason } => {
            format!(" reason={}", log::quote(reason))
        }
        _ => String::new(),
    };
    log::send(
        IDENT,
        Level::Info,
        &format!("uid={caller} outcome={}{reason}", outcome.label()),
    );
    wire::write_answer(&outcome, None)
}

fn check(caller: Uid) -> Result<Outcome, String> {
    if std::env::args_os().len() > 1 {
        return Err("takes no arguments (it reads the system config only)".into());
    }
    if !Uid::effective().is_root() {
        return Err("not installed setuid root".into());
    }
    let caller_name = User::from_uid(caller)
        .ok()
        .flatten()
        .map(|u| u.name)
        .ok_or_else(|| format!("uid {caller} has no user name"))?;

    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_REQUEST_BYTES + 1));
    std::io::stdin()
        .lock()
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("reading request: {e}"))?;
    let mut request = HelperRequest::decode(&buf).map_err(|e| e.to_string())?;
    if request.user.as_str() != caller_name {
        return Err(format!(
            "uid {caller} may only authenticate {}, not {}",
            log::quote(&caller_name),
            log::quote(request.user.as_str())
        ));
    }
    // The offline fields are root's to fill in, never the caller's.
    request.offline = None;
    request.want_verifier = false;
    let user = request.user.clone();
    let config = Config::load(Path::new(DEFAULT_CONFIG_PATH)).map_err(|e| e.to_string())?;

    // The caller's login session (the kernel's ids, never its environment).
    let cache = Cache::open(&config.cache_dir).map_err(|e| e.to_string())?;
    let session = SessionKey::current().ok();
    if let Some(key) = &session {
        if cache.is_unmanaged(key, &user) {
            return Ok(Outcome::Unmanaged);
        }
    }

    let mut attempts = Attempts::open(&config.cache_dir, caller.as_raw())?;
    attempts.begin(CHKPWD_MAX_WAIT_MS)?;

    // Offline login for this caller too (unlocking on a train), under the
    // policy for callers without root; the record stays root's.
    let policy = config.offline.for_unprivileged_caller();
    let offline = if policy.enabled {
        OfflineStore::open(&policy.dir).ok()
    } else {
        None
    };
    let mut ask = offline
        .as_ref()
        .map(|store| offline::prepare(&policy, store, &user, &request.service))
        .unwrap_or_default();
    if let Some(why) = &ask.withheld {
        log::send(IDENT, Level::Info, why);
    }
    request.want_verifier = ask.want_verifier;
    request.offline = ask.verifier.take();
    let encoded = request.encode().map_err(|e| e.to_string())?;
    drop(request);

    let answer = authtoken_spawn::run_helper(
        &config.helper,
        &["authenticate", "--config", DEFAULT_CONFIG_PATH],
        &encoded,
        config.kill_deadline(),
    )
    .map_err(|e| e.to_string())?;
    let outcome = answer.outcome;
    attempts.finish(&outcome)?;
    if let Some(store) = &offline {
        if let Err(e) = offline::settle(store, &user, &outcome, answer.verifier, ask.counted) {
            log::send(IDENT, Level::Warning, &format!("offline verifier: {e}"));
        }
    }

    Ok(match outcome {
        Outcome::Token { token } => {
            if let Some(key) = &session {
                // A new handshake killed the old token: refresh the session's
                // file if it has one (sudo does the same as root).
                if let Err(e) = cache.replace_token(key, &user, &token) {
                    log::send(IDENT, Level::Warning, &format!("session cache: {e}"));
                }
            }
            Outcome::Verified
        }
        Outcome::Unmanaged => {
            if let Some(key) = &session {
                let _ = cache.mark_unmanaged(key, &user);
            }
            Outcome::Unmanaged
        }
        Outcome::Verified => Outcome::unavailable("the helper answered verified"),
        other => other,
    })
}
