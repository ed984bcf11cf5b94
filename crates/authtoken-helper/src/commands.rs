//! What the helper and the administrator's `authtoken` both do, said the
//! same way by both: the module's settings written beside the config, and
//! one directory sync (the timer runs the helper's, an administrator the
//! command's).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use authtoken_config::Config;
use authtoken_core::log::{self, Level};
use authtoken_core::settings::{self, ModuleSettings};

const LOG_IDENT: &str = log::HELPER_IDENT;

/// Writes the module's settings beside the config at `config_path`, when
/// root; a failure only costs the module a helper run per login.
pub fn write_module_settings(config_path: &Path, made: &ModuleSettings) -> Option<PathBuf> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    match settings::write(config_path, made) {
        Ok(()) => Some(settings::path_for(config_path)),
        Err(e) => {
            log::send(
                LOG_IDENT,
                Level::Warning,
                &format!(
                    "cannot write the module's settings {}: {e}",
                    settings::path_for(config_path).display()
                ),
            );
            None
        }
    }
}

/// `sync`: the device certificate renewed when it is due, then one
/// directory sync, said on stdout (and the log); exit 1 when either failed
/// (the last good cache and the current certificate stay).
pub fn sync(config_path: &Path, if_due: bool) -> ExitCode {
    let path = authtoken_core::trust::absolute(config_path);
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}; the last good cache stays");
            return ExitCode::FAILURE;
        }
    };
    let renewed = renew(&path, &config, if_due);
    let synced = sync_directory(&path, &config, if_due);
    if renewed && synced {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The renewal half of `sync`: whether it went well (or had nothing to do).
fn renew(config_path: &Path, config: &Config, quiet: bool) -> bool {
    use crate::enroll::{renew_if_due, Renewal};
    use authtoken_protocol::enroll::utc_text;
    if config.client_cert.is_none() || !nix::unistd::Uid::effective().is_root() {
        return true;
    }
    match renew_if_due(config_path, config, authtoken_core::clock::unix_secs()) {
        Ok(Renewal::Renewed(identity)) => {
            let text = format!(
                "device certificate renewed: {} serial {}, valid until {}",
                log::quote(&identity.name),
                identity.serial,
                utc_text(identity.not_after)
            );
            log::send(LOG_IDENT, Level::Info, &text);
            println!("{text}");
            true
        }
        Ok(Renewal::Expired { at }) => {
            let text = format!(
                "device certificate expired {}: the machine needs a new join token \
                 (authtoken-server join-token, then authtoken join)",
                utc_text(at)
            );
            log::send(LOG_IDENT, Level::Error, &text);
            eprintln!("error: {text}");
            false
        }
        Ok(Renewal::NotDue { at }) => {
            if !quiet {
                println!("device certificate: renewal due {}", utc_text(at));
            }
            true
        }
        Ok(Renewal::NoIdentity | Renewal::NotEnrolled) => true,
        Err(e) => {
            let text = format!("device certificate renewal failed, the current one stays: {e}");
            log::send(LOG_IDENT, Level::Error, &text);
            eprintln!("error: {text}");
            false
        }
    }
}

/// The directory half of `sync`.
fn sync_directory(path: &Path, config: &Config, if_due: bool) -> bool {
    use crate::sync::{self, Synced};
    let cache = Path::new(authtoken_core::platform::NSS_CACHE);
    match sync::sync(path, config, cache, if_due) {
        Ok(Synced::Disabled) => {
            if !if_due {
                println!("directory sync is off ([directory] enabled = false)");
            }
            true
        }
        Ok(Synced::NotDue) => true,
        Ok(Synced::Unchanged { serial, authority }) => {
            println!("directory unchanged (serial {serial}, from {authority})");
            true
        }
        Ok(Synced::Updated {
            serial,
            users,
            groups,
            dropped,
            adjusted,
            authority,
        }) => {
            for line in dropped.iter().chain(&adjusted) {
                log::send(LOG_IDENT, Level::Warning, &format!("directory: {line}"));
                eprintln!("warning: {line}");
            }
            let text = format!(
                "directory serial {serial} from {authority}: {users} users, {groups} groups, {} records dropped",
                dropped.len()
            );
            log::send(LOG_IDENT, Level::Info, &text);
            println!("{text}; cache {}", cache.display());
            true
        }
        Err(e) => {
            let text = format!("directory sync failed, the last good cache stays: {e}");
            log::send(LOG_IDENT, Level::Error, &text);
            eprintln!("error: {text}");
            false
        }
    }
}
