//! Backend `rest`: web applications' "authenticate -> session token" APIs
//! (docs/PROTOCOL.md, "The rest backend"; seeds 002 and 003), one module
//! per flavor. Unlike `mdm` and `hem`, the password itself goes to the
//! server, so the config allows these over verified https only. Sans-IO
//! like the others: the helper's transport does the HTTPS.

pub mod deki;
pub mod json_authenticate;

pub use authtoken_core::kinds::RestFlavor;
use authtoken_core::outcome::Outcome;

use crate::transport::{Transport, TransportFailure};

/// The whole exchange for `flavor`: one request, its answer mapped to an
/// outcome. `now` (seconds since the epoch) turns a token's duration into
/// its expiry.
pub fn user_authenticate(
    transport: &mut dyn Transport,
    flavor: RestFlavor,
    user: &str,
    password: &[u8],
    token_duration: u32,
    now: u64,
    step: &mut dyn FnMut(&str),
) -> Outcome {
    match flavor {
        RestFlavor::JsonAuthenticate => json_authenticate::user_authenticate(
            transport,
            user,
            password,
            token_duration,
            now,
            step,
        ),
        RestFlavor::Deki => deki::user_authenticate(transport, user, password, step),
    }
}

/// What a failed request means: no authority at all, or one that did not
/// answer usably.
fn failed(failure: TransportFailure) -> Outcome {
    match failure {
        TransportFailure::Unreachable(reason) => Outcome::Unreachable { reason },
        TransportFailure::Failed(reason) => Outcome::unavailable(reason),
    }
}

/// A status neither flavor documents as an answer: a redirect (never
/// followed: the password would go wherever it points), an error page.
fn unexpected_status(status: u16) -> Outcome {
    match status {
        300..=399 => Outcome::unavailable(format!(
            "HTTP {status}: a redirect, not followed (the password goes to the configured url only)"
        )),
        _ => Outcome::unavailable(format!("HTTP {status} to the authentication")),
    }
}
