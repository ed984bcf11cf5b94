//! Backend `hem`: the protocol crate's driver over the helper's HTTPS
//! transport, with the clock and the passwd database it leaves to us.

use authtoken_config::Config;
use authtoken_core::outcome::Outcome;
use authtoken_core::username::Username;
use authtoken_protocol::hem;

use crate::transport::{report, Authorities, Http};

pub fn authenticate(
    config: &Config,
    http: &Http,
    user: &Username,
    password: &[u8],
    step: &mut dyn FnMut(&str),
) -> (Outcome, Option<String>) {
    let mut authorities = Authorities::new(http, &config.url);
    let device = hem::DeviceSettings {
        eid: config.hem.eid.as_deref(),
        labels: &config.hem.labels,
        scope: &config.hem.scope,
    };
    let outcome = hem::user_authenticate(
        &mut authorities,
        &device,
        user.as_str(),
        password,
        authtoken_core::clock::unix_secs(),
        &is_superuser,
        step,
    );
    report(&authorities, step);
    (outcome, authorities.answered_by().map(str::to_owned))
}

/// Whether `user` is an account with uid 0 (`root`, or an alias of it).
fn is_superuser(user: &str) -> bool {
    user == "root"
        || nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .is_some_and(|u| u.uid.is_root())
}
