//! The hooks after `authenticate`: `setcred`, `acct_mgmt`, and the session
//! that keeps the token in the cache and exports its path.

use std::ffi::CStr;

use authtoken_core::log::{self, Level};
use authtoken_core::outcome::PamCode;
use authtoken_core::username::Username;
use zeroize::Zeroizing;

use super::data::{KeptToken, OpenedSession, OFFLINE_KEY, OPENED_KEY, TOKEN_KEY};
use super::{current_user, load_settings, options_or, session_cache, Host};
use crate::pam_api::PamApi;

/// The environment variable naming the session's token file.
pub const TOKEN_FILE_ENV: &str = "AUTHTOKEN_FILE";

/// Exported instead of `AUTHTOKEN_FILE` after an offline login.
pub const OFFLINE_ENV: &str = "AUTHTOKEN_OFFLINE";

/// The environment variable with the token's expiry (seconds since the
/// epoch), when the authority said one.
pub const EXPIRES_ENV: &str = "AUTHTOKEN_EXPIRES";

/// The token this handle's `authenticate` obtained for `user`, if any, and
/// when it expires.
fn kept_token<P: PamApi>(pam: &P, user: &Username) -> Option<(Zeroizing<String>, Option<u64>)> {
    pam.get_data(TOKEN_KEY)
        .filter(|kept| &kept.user == user)
        .map(|kept| (kept.token.clone(), kept.expires))
}

/// Whether we issued a token for the current user, in this handle or in a
/// forked authentication child of this process session.
fn authenticated_here<P: PamApi, H: Host>(pam: &mut P, host: &H, args: &[&CStr]) -> bool {
    let Some(user) = current_user(pam) else {
        return false;
    };
    if kept_token(pam, &user).is_some()
        || pam
            .get_data(OFFLINE_KEY)
            .is_some_and(|offline| offline.user == user)
    {
        return true;
    }
    // Authenticated by a forked child of this process (sshd)?
    let Ok(options) = options_or(host, args) else {
        return false;
    };
    let Ok(settings) = load_settings(host, &options.config_path) else {
        return false;
    };
    let handoff = host
        .open_cache(&settings.values.cache_dir)
        .and_then(|cache| Ok((cache, host.process_session()?)));
    handoff.is_ok_and(|(cache, key)| cache.has_handoff(&key, &user))
}

/// Success for a user we issued a token for, otherwise stay out of the way.
fn ours_or_ignore<P: PamApi, H: Host>(pam: &mut P, host: &H, args: &[&CStr]) -> PamCode {
    if authenticated_here(pam, host, args) {
        PamCode::Success
    } else {
        PamCode::Ignore
    }
}

/// No credentials beyond the token to establish.
pub fn setcred<P: PamApi, H: Host>(pam: &mut P, host: &H, args: &[&CStr]) -> PamCode {
    ours_or_ignore(pam, host, args)
}

/// We hold no account policy of our own: accounts we issued a token for are
/// fine, everyone else is left to the other modules.
pub fn acct_mgmt<P: PamApi, H: Host>(pam: &mut P, host: &H, args: &[&CStr]) -> PamCode {
    ours_or_ignore(pam, host, args)
}

/// Writes the token this handle obtained into the session cache and
/// exports its path as `AUTHTOKEN_FILE`.
pub fn open_session<P: PamApi, H: Host>(pam: &mut P, host: &H, args: &[&CStr]) -> PamCode {
    let Some(user) = current_user(pam) else {
        return PamCode::Ignore;
    };
    if pam
        .get_data(OFFLINE_KEY)
        .is_some_and(|offline| offline.user == user)
    {
        // Signed in offline: no token, so no token file; say so instead.
        return match pam.putenv(&format!("{OFFLINE_ENV}=1")) {
            Ok(()) => PamCode::Success,
            Err(_) => PamCode::SessionErr,
        };
    }
    let kept = kept_token(pam, &user);
    // Without a token of this handle's own, there may be nothing to do at
    // all: failures below are only errors when we hold a token.
    let failed = if kept.is_some() {
        PamCode::SessionErr
    } else {
        PamCode::Ignore
    };
    let Ok(options) = options_or(host, args) else {
        return failed;
    };
    let settings = match load_settings(host, &options.config_path) {
        Ok(settings) => settings,
        Err(e) => {
            if kept.is_some() {
                host.log(Level::Error, &format!("open_session: config: {e}"));
            }
            return failed;
        }
    };
    let Some((cache, key)) = session_cache(host, &settings.values) else {
        return failed;
    };
    // The token from this handle's authenticate, or else the one a forked
    // authentication child of this process session left (sshd).
    let process = host.process_session().ok();
    let (token, expires) = match (kept, &process) {
        (Some(kept), Some(process)) => {
            cache.discard_handoff(process, &user);
            kept
        }
        (Some(kept), None) => kept,
        (None, Some(process)) => match cache.take_handoff(process, &user) {
            Some(handed) => {
                // Kept in this handle as if its own authenticate had got
                // it: sshd calls pam_setcred after pam_open_session, in
                // the session's child, when the hand-off is gone.
                let kept = KeptToken {
                    user: user.clone(),
                    token: handed.token.clone(),
                    expires: handed.expires,
                    handoff: None,
                };
                if pam.set_data(TOKEN_KEY, kept).is_err() {
                    return PamCode::SessionErr;
                }
                (handed.token, handed.expires)
            }
            None => return PamCode::Ignore,
        },
        (None, None) => return PamCode::Ignore,
    };
    // A token past its expiry is not handed to the session.
    if let Some(at) = expires.filter(|&at| at <= authtoken_core::clock::unix_secs()) {
        host.log(
            Level::Warning,
            &format!(
                "open_session user={}: the token expired at {at}, before the session opened; not kept",
                log::quote(user.as_str())
            ),
        );
        return PamCode::Ignore;
    }
    let existed = cache.token_path(&key, &user).is_some();
    let path = match cache.store_token(&key, &user, &token, expires) {
        Ok(path) => path,
        Err(e) => {
            host.log(Level::Error, &format!("open_session: {e}"));
            return PamCode::SessionErr;
        }
    };
    if pam
        .putenv(&format!("{TOKEN_FILE_ENV}={}", path.display()))
        .is_err()
    {
        return PamCode::SessionErr;
    }
    if let Some(at) = expires {
        if pam.putenv(&format!("{EXPIRES_ENV}={at}")).is_err() {
            return PamCode::SessionErr;
        }
    }
    if !existed {
        let opened = OpenedSession {
            user: user.clone(),
            path,
            expiry_exported: expires.is_some(),
        };
        if pam.set_data(OPENED_KEY, opened).is_err() {
            return PamCode::SessionErr;
        }
    }
    cache.sweep(&|key| host.session_alive(key));
    host.log(
        Level::Info,
        &format!(
            "open_session user={} service={} session={} token cached",
            log::quote(user.as_str()),
            log::quote(&pam.service()),
            key.as_str()
        ),
    );
    PamCode::Success
}

/// Removes the token file this handle's `open_session` created.
pub fn close_session<P: PamApi, H: Host>(pam: &mut P, host: &H, args: &[&CStr]) -> PamCode {
    let Some(user) = current_user(pam) else {
        return PamCode::Ignore;
    };
    let Some((path, expiry_exported)) = pam
        .get_data(OPENED_KEY)
        .filter(|opened| opened.user == user)
        .map(|opened| (opened.path.clone(), opened.expiry_exported))
    else {
        return PamCode::Ignore;
    };
    let _ = pam.putenv(TOKEN_FILE_ENV);
    if expiry_exported {
        let _ = pam.putenv(EXPIRES_ENV);
    }
    let removed = host.remove_token_file(&path);
    let cache = options_or(host, args)
        .ok()
        .and_then(|options| load_settings(host, &options.config_path).ok())
        .and_then(|settings| host.open_cache(&settings.values.cache_dir).ok());
    if let Some(cache) = cache {
        cache.sweep(&|key| host.session_alive(key));
    }
    if removed {
        PamCode::Success
    } else {
        PamCode::Ignore
    }
}

/// Passwords are changed at the authority, not through PAM.
pub fn chauthtok<P: PamApi, H: Host>(_pam: &mut P, _host: &H, _args: &[&CStr]) -> PamCode {
    PamCode::Ignore
}
