//! Backend `rest`: the protocol crate's flavors over the helper's HTTPS
//! transport (verified https only: the config refuses http for `rest`,
//! since the password itself travels). The body is never logged.

use authtoken_config::Config;
use authtoken_core::kinds::RestFlavor;
use authtoken_core::outcome::Outcome;
use authtoken_core::username::Username;
use authtoken_protocol::rest;

use crate::transport::{report, Authorities, Http};

pub fn authenticate(
    config: &Config,
    http: &Http,
    user: &Username,
    password: &[u8],
    step: &mut dyn FnMut(&str),
) -> (Outcome, Option<String>) {
    // A checked config has a flavor for backend rest.
    let Some(flavor) = config.rest.flavor else {
        return (
            Outcome::unavailable("backend rest without rest.flavor"),
            None,
        );
    };
    if config.url.iter().any(|url| !url.is_https()) {
        return (
            Outcome::unavailable("backend rest needs verified https"),
            None,
        );
    }
    let mut authorities = Authorities::new(http, &config.url);
    step(&format!(
        "rest {}: the password goes to the authority over verified https",
        flavor.name()
    ));
    let outcome = rest::user_authenticate(
        &mut authorities,
        flavor,
        user.as_str(),
        password,
        config.rest.token_duration,
        authtoken_core::clock::unix_secs(),
        step,
    );
    if flavor == RestFlavor::Deki {
        step("deki: no token duration in this API");
    }
    report(&authorities, step);
    (outcome, authorities.answered_by().map(str::to_owned))
}
