//! Backend `mdm`: who the device and user are, and the handshake over HTTPS.

use authtoken_config::Config;
use authtoken_core::outcome::Outcome;
use authtoken_core::username::Username;
use authtoken_protocol::mdm::{self, ClientSettings, UserIdentity};
use authtoken_protocol::scram;

use crate::transport::{report, Authorities, Http};

use authtoken_core::platform::{self, HOST_ID_SOURCE};

/// No device identity to send.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{HOST_ID_SOURCE}: {0}; set udid in the config")]
    MachineId(String),
}

/// The identity sent in both check-ins: configured UDID or the machine id,
/// configured or derived UserID, and the GECOS name when the user is local.
pub fn identity(config: &Config, user: &Username) -> Result<UserIdentity, IdentityError> {
    let user = user.as_str();
    let udid = match &config.udid {
        Some(udid) => udid.clone(),
        None => {
            let text = platform::host_id().map_err(|e| IdentityError::MachineId(e.to_string()))?;
            mdm::udid_from_host_id(&text).map_err(|e| IdentityError::MachineId(e.to_string()))?
        }
    };
    let user_id = config
        .user_ids
        .get(user)
        .map(|guid| guid.hyphenated().to_string().to_uppercase())
        .unwrap_or_else(|| mdm::derive_user_id(&udid, user));
    Ok(UserIdentity {
        udid,
        user_id,
        short_name: user.to_owned(),
        long_name: gecos_name(user).unwrap_or_else(|| user.to_owned()),
    })
}

/// The full-name field of the passwd entry, if there is one.
fn gecos_name(user: &str) -> Option<String> {
    let entry = nix::unistd::User::from_name(user).ok()??;
    let gecos = entry.gecos.to_string_lossy().into_owned();
    let name = gecos.split(',').next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

pub fn authenticate(
    config: &Config,
    http: &Http,
    user: &Username,
    password: &[u8],
    step: &mut dyn FnMut(&str),
) -> (Outcome, Option<String>) {
    let id = match identity(config, user) {
        Ok(id) => id,
        Err(e) => return (Outcome::unavailable(e.to_string()), None),
    };
    let settings = ClientSettings {
        schemes: config.schemes.clone(),
        require_server_signature: config.require_server_signature,
        min_scram_iterations: config.min_scram_iterations,
        max_scram_iterations: config.max_scram_iterations,
        channel_binding: config.channel_binding,
    };
    let mut authorities = Authorities::new(http, &config.url);
    let outcome = mdm::user_authenticate(
        &mut authorities,
        &id,
        password,
        &settings,
        &mut scram::new_cnonce,
        step,
    );
    report(&authorities, step);
    (outcome, authorities.answered_by().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::parse(&format!(
            "backend = \"mdm\"\nurl = \"https://mdm.example/checkin\"\nudid = \"UDID-1\"\n{extra}\n"
        ))
        .unwrap()
    }

    fn user(name: &str) -> Username {
        Username::parse(name.as_bytes()).unwrap()
    }

    #[test]
    fn identity_takes_the_configured_udid_and_derives_the_user_id() {
        let id = identity(&config(""), &user("no-such-user-here")).unwrap();
        assert_eq!(id.udid, "UDID-1");
        assert_eq!(
            id.user_id,
            mdm::derive_user_id("UDID-1", "no-such-user-here")
        );
        assert_eq!(id.short_name, "no-such-user-here");
        assert_eq!(
            id.long_name, "no-such-user-here",
            "no passwd entry: the short name"
        );
    }

    #[test]
    fn a_configured_user_id_wins_and_is_sent_as_an_upper_case_guid() {
        let config = config("[user_ids]\nalice = \"5c9e8a3b1d2f4e6a8b7c9d0e1f2a3b4c\"");
        let id = identity(&config, &user("alice")).unwrap();
        assert_eq!(id.user_id, "5C9E8A3B-1D2F-4E6A-8B7C-9D0E1F2A3B4C");
    }

    #[test]
    fn the_gecos_full_name_is_the_long_name() {
        // root's entry exists everywhere; its GECOS field is "root" on
        // Debian and "System Administrator" on macOS.
        let id = identity(&config(""), &user("root")).unwrap();
        assert!(!id.long_name.is_empty());
        assert!(!id.long_name.contains(','), "only the first GECOS field");
    }
}
