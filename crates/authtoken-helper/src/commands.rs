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

/// `sync`: one directory sync, said on stdout (and the log), exit 1 when
/// the cache could not be brought up to date.
pub fn sync(config_path: &Path, if_due: bool) -> ExitCode {
    use crate::sync::{self, Synced};
    let path = authtoken_core::trust::absolute(config_path);
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}; the last good cache stays");
            return ExitCode::FAILURE;
        }
    };
    let cache = Path::new(authtoken_core::platform::NSS_CACHE);
    match sync::sync(&path, &config, cache, if_due) {
        Ok(Synced::Disabled) => {
            if !if_due {
                println!("directory sync is off ([directory] enabled = false)");
            }
            ExitCode::SUCCESS
        }
        Ok(Synced::NotDue) => ExitCode::SUCCESS,
        Ok(Synced::Unchanged { serial, authority }) => {
            println!("directory unchanged (serial {serial}, from {authority})");
            ExitCode::SUCCESS
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            let text = format!("directory sync failed, the last good cache stays: {e}");
            log::send(LOG_IDENT, Level::Error, &text);
            eprintln!("error: {text}");
            ExitCode::FAILURE
        }
    }
}
