//! `authtoken sync`, root's half: run the helper's `fetch-directory` (which
//! drops to `helper_user` before the network), judge every record of what
//! it brought (docs/PROTOCOL.md, "The directory"), and replace the NSS
//! cache whole. Any failure keeps the last good cache and says why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use authtoken_config::Config;
use authtoken_core::trust::{self, Rules, TrustError};
use authtoken_directory::nss_cache::{self, Reader};
use authtoken_directory::{Fetched, Local, MachineRules, Refused};

use crate::directory::FETCH_TIMEOUT;

/// Where the machine's own accounts are read from (never through NSS).
pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";
/// The login shells a record may keep.
pub const SHELLS: &str = "/etc/shells";
/// Where packages declare the accounts they create (systemd-sysusers(8)
/// reads the same directories): those names are never a network
/// account's, whether or not the account exists yet.
pub const SYSUSERS_DIRS: [&str; 4] = [
    "/usr/lib/sysusers.d",
    "/usr/local/lib/sysusers.d",
    "/etc/sysusers.d",
    "/run/sysusers.d",
];

/// What a sync did.
#[derive(Debug, PartialEq, Eq)]
pub enum Synced {
    /// `[directory] enabled` is false: nothing fetched, nothing changed.
    Disabled,
    /// `--if-due`, and the last attempt is younger than `refresh_minutes`.
    NotDue,
    /// `304`: the cache is current.
    Unchanged { serial: String, authority: String },
    /// A new cache, and a line for every record dropped.
    Updated {
        serial: String,
        users: usize,
        groups: usize,
        dropped: Vec<String>,
        /// A line for every field the machine decided instead of the record.
        adjusted: Vec<String>,
        authority: String,
    },
}

/// Why a sync changed nothing. The last good cache stays in every case.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync needs root (it writes the NSS cache)")]
    NotRoot,
    #[error("{0}")]
    Helper(#[from] authtoken_spawn::HelperError),
    #[error("the helper's answer: {0}")]
    Answer(Refused),
    #[error("{0}")]
    Fetch(String),
    #[error("directory refused: {0}")]
    Refused(Refused),
    #[error("the authority answered 304 to a client without a directory")]
    UnchangedWithoutCache,
    #[error("cannot read the local accounts: {0}")]
    Local(std::io::Error),
    #[error("{0}")]
    Directory(#[from] TrustError),
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// The file beside the cache that records the last attempt, for `status`
/// and for `--if-due`: `ok UNIX` or `failed UNIX REASON`.
pub fn state_path(cache: &Path) -> PathBuf {
    authtoken_core::paths::last_sync(cache)
}

/// The last attempt: when (seconds since the epoch) and, if it failed, why.
#[derive(Debug, PartialEq, Eq)]
pub struct LastAttempt {
    pub at: u64,
    pub failure: Option<String>,
}

impl LastAttempt {
    pub fn read(cache: &Path) -> Option<LastAttempt> {
        let text = std::fs::read_to_string(state_path(cache)).ok()?;
        let line = text.lines().next()?;
        let mut words = line.splitn(3, ' ');
        let (kind, at) = (words.next()?, words.next()?.parse().ok()?);
        let failure = match kind {
            "ok" => None,
            "failed" => Some(words.next().unwrap_or("").to_owned()),
            _ => return None,
        };
        Some(LastAttempt { at, failure })
    }

    fn write(&self, cache: &Path) -> std::io::Result<()> {
        let text = match &self.failure {
            None => format!("ok {}\n", self.at),
            Some(why) => format!("failed {} {}\n", self.at, why.replace('\n', " ")),
        };
        trust::write_atomic(&state_path(cache), text.as_bytes(), 0o644, None)
    }
}

/// Whether `--if-due` should fetch: no attempt recorded, or the last one
/// at least `refresh_minutes` ago (or in the future: a clock set back).
pub fn due(last: Option<&LastAttempt>, refresh_minutes: u64, now: u64) -> bool {
    match last {
        None => true,
        Some(last) => last.at > now || now - last.at >= refresh_minutes.saturating_mul(60),
    }
}

/// Runs one sync for the config at `config_path` into `cache`.
pub fn sync(
    config_path: &Path,
    config: &Config,
    cache: &Path,
    if_due: bool,
) -> Result<Synced, SyncError> {
    if !config.directory.enabled {
        return Ok(Synced::Disabled);
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Err(SyncError::NotRoot);
    }
    let last = LastAttempt::read(cache);
    let now = authtoken_core::clock::unix_secs();
    if if_due && !due(last.as_ref(), config.directory.refresh_minutes, now) {
        return Ok(Synced::NotDue);
    }
    if let Some(dir) = cache.parent() {
        // Its parent too: the offline store may have made it 0700.
        if let Some(parent) = dir.parent() {
            trust::ensure_shared_dir(parent)?;
        }
        trust::ensure_shared_dir(dir)?;
    }
    let result = fetch_and_apply(config_path, config, cache, now);
    let attempt = LastAttempt {
        at: now,
        failure: result.as_ref().err().map(ToString::to_string),
    };
    attempt.write(cache).map_err(|error| SyncError::Write {
        path: state_path(cache),
        error,
    })?;
    result
}

fn fetch_and_apply(
    config_path: &Path,
    config: &Config,
    cache: &Path,
    now: u64,
) -> Result<Synced, SyncError> {
    let held = Reader::open(cache).map(|reader| reader.serial);
    let config_arg = config_path.to_string_lossy();
    let mut args = vec!["fetch-directory", "--config", &config_arg];
    if let Some(serial) = &held {
        args.extend(["--serial", serial]);
    }
    let output = authtoken_spawn::run_for_output(
        &config.helper,
        Rules::ROOT,
        &args,
        b"",
        authtoken_directory::MAX_DIRECTORY_BYTES + 64 * 1024,
        FETCH_TIMEOUT + Duration::from_secs(10),
    )?;
    let local = local_machine(
        Path::new(PASSWD),
        Path::new(GROUP),
        Path::new(SHELLS),
        &SYSUSERS_DIRS.map(Path::new),
    )?;
    apply(
        &output,
        held.as_deref(),
        &config.directory.rules,
        &local,
        cache,
        now,
    )
}

/// The machine's accounts, login shells and declared names, from the
/// files. `passwd` and `group` must be there; a machine without
/// `/etc/shells` has no shell a record may keep, and a `sysusers.d`
/// directory may be missing.
pub fn local_machine(
    passwd: &Path,
    group: &Path,
    shells: &Path,
    sysusers: &[&Path],
) -> Result<Local, SyncError> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .map_err(SyncError::Local)
    };
    let mut local = Local::from_files(&read(passwd)?, &read(group)?);
    match read(shells) {
        Ok(text) => local = local.with_shells(&text),
        Err(SyncError::Local(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    for dir in sysusers {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "conf") {
                local = local.with_sysusers(&read(&path)?);
            }
        }
    }
    Ok(local)
}

/// Root's judgement of `fetch-directory`'s answer: a new directory is
/// checked record by record and written whole; `304` keeps the cache (the
/// attempt itself is recorded by [`sync`]); anything else changes nothing.
pub fn apply(
    answer: &[u8],
    held: Option<&str>,
    rules: &MachineRules,
    local: &Local,
    cache: &Path,
    now: u64,
) -> Result<Synced, SyncError> {
    let (fetched, body) = Fetched::decode(answer).map_err(SyncError::Answer)?;
    match fetched {
        Fetched::Failed { reason } => Err(SyncError::Fetch(reason)),
        Fetched::Unchanged { authority } => {
            let serial = held.ok_or(SyncError::UnchangedWithoutCache)?.to_owned();
            Ok(Synced::Unchanged { serial, authority })
        }
        Fetched::New { authority } => {
            let accepted =
                authtoken_directory::accept(body, rules, local).map_err(SyncError::Refused)?;
            let bytes = nss_cache::render(&accepted.directory, now);
            trust::write_atomic(cache, &bytes, 0o644, None).map_err(|error| SyncError::Write {
                path: cache.to_owned(),
                error,
            })?;
            Ok(Synced::Updated {
                serial: accepted.directory.serial,
                users: accepted.directory.users.len(),
                groups: accepted.directory.groups.len(),
                dropped: accepted.dropped,
                adjusted: accepted.adjusted,
                authority,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> MachineRules {
        MachineRules::default()
    }

    fn new(body: &str) -> Vec<u8> {
        Fetched::New {
            authority: "https://a/directory".into(),
        }
        .encode(body.as_bytes())
    }

    const CAROL: &str = r#"{"serial":"s1","users":[{"name":"carol","uid":10001,"gid":10001,"gecos":"Carol","home":"/home/carol","shell":"/bin/bash"}],"groups":[{"name":"carol","gid":10001,"members":[]}]}"#;

    #[test]
    fn a_new_directory_replaces_the_cache_and_a_failure_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("directory");
        let local = Local::default();
        let synced = apply(&new(CAROL), None, &rules(), &local, &cache, 5).unwrap();
        assert!(matches!(
            synced,
            Synced::Updated {
                users: 1,
                groups: 1,
                ..
            }
        ));
        let before = std::fs::read(&cache).unwrap();
        let reader = Reader::open_owned_by(&cache, nix::unistd::geteuid().as_raw()).unwrap();
        assert_eq!((reader.serial.as_str(), reader.synced), ("s1", 5));
        assert!(reader.user_by_name(b"carol").is_some());
        for bad in [
            new("not json"),
            new(r#"{"serial":"s2","users":[]}"#),
            Fetched::Failed {
                reason: "no authority reachable".into(),
            }
            .encode(b""),
            b"garbage without a line".to_vec(),
        ] {
            assert!(apply(&bad, Some("s1"), &rules(), &local, &cache, 6).is_err());
            assert_eq!(std::fs::read(&cache).unwrap(), before, "cache kept");
        }
        let unchanged = Fetched::Unchanged {
            authority: "https://a/directory".into(),
        }
        .encode(b"");
        assert!(matches!(
            apply(&unchanged, Some("s1"), &rules(), &local, &cache, 7),
            Ok(Synced::Unchanged { .. })
        ));
        assert!(apply(&unchanged, None, &rules(), &local, &cache, 7).is_err());
    }

    #[test]
    fn a_removed_user_is_gone_after_the_next_sync() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("directory");
        let local = Local::default();
        apply(&new(CAROL), None, &rules(), &local, &cache, 5).unwrap();
        let empty = r#"{"serial":"s2","users":[],"groups":[]}"#;
        apply(&new(empty), Some("s1"), &rules(), &local, &cache, 6).unwrap();
        assert!(
            Reader::open_owned_by(&cache, nix::unistd::geteuid().as_raw())
                .unwrap()
                .user_by_name(b"carol")
                .is_none()
        );
    }

    #[test]
    fn due_after_refresh_minutes_or_a_clock_set_back() {
        let at = |at| LastAttempt { at, failure: None };
        assert!(due(None, 15, 1000));
        assert!(!due(Some(&at(1000)), 15, 1000 + 14 * 60));
        assert!(due(Some(&at(1000)), 15, 1000 + 15 * 60));
        assert!(due(Some(&at(5000)), 15, 1000));
    }

    #[test]
    fn the_last_attempt_is_recorded_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("directory");
        let failed = LastAttempt {
            at: 42,
            failure: Some("no authority\nreachable".into()),
        };
        failed.write(&cache).unwrap();
        let read = LastAttempt::read(&cache).unwrap();
        assert_eq!(read.at, 42);
        assert_eq!(read.failure.as_deref(), Some("no authority reachable"));
        LastAttempt {
            at: 43,
            failure: None,
        }
        .write(&cache)
        .unwrap();
        assert_eq!(LastAttempt::read(&cache).unwrap().failure, None);
    }
}
