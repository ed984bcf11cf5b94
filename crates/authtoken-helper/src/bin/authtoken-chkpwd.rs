//! `authtoken-chkpwd`: the setuid-root entry point for callers without root
//! (screen lockers), in the way of pam_unix's `unix_chkpwd`.
//!
//! The PAM module runs it, instead of the helper, when it is not root. It
//! * signs in only the user its real uid belongs to, and refuses any other;
//! * ignores its environment and arguments, and reads the system config only;
//! * spaces one uid's attempts at least 1 s apart, doubling after each
//!   rejected password (up to 32 s), refusing at once when the wait would
//!   exceed 4 s;
//! * answers a user remembered as unmanaged (410) in this login session
//!   without a request, and remembers a new 410;
//! * runs the helper (which drops root before any network I/O) and keeps
//!   the token: the caller learns only whether it was issued, and the
//!   session's token file, if it has one, is refreshed in place.
//!
//! Request on stdin, result on stdout: the module's wire format.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authtoken_core::cache::Cache;
use authtoken_core::config::{Config, CHKPWD_MAX_WAIT_MS, DEFAULT_CONFIG_PATH};
use authtoken_core::log::{self, Level};
use authtoken_core::offline::{self, OfflineStore};
use authtoken_core::outcome::Outcome;
use authtoken_core::session::SessionKey;
use authtoken_core::wire::{self, HelperRequest, MAX_REQUEST_BYTES};
use authtoken_core::{trust, trust::Rules};
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Uid, User};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const IDENT: &str = "authtoken-chkpwd";
/// Spacing after an attempt: this, doubled per consecutive rejection.
const BASE_SPACING_MS: u64 = 1_000;
const MAX_DOUBLINGS: u32 = 5;

fn main() -> ExitCode {
    // A setuid program's environment is its caller's: drop all of it.
    for (name, _) in std::env::vars_os() {
        std::env::remove_var(name);
    }
    let outcome = check().unwrap_or_else(Outcome::unavailable);
    let reason = match &outcome {
        Outcome::Unavailable { reason } | Outcome::Unreachable { reason } => {
            format!(" reason={}", log::quote(reason))
        }
        _ => String::new(),
    };
    log::send(
        IDENT,
        Level::Info,
        &format!("uid={} outcome={}{reason}", Uid::current(), outcome.label()),
    );
    authtoken_helper::write_result(&outcome, None)
}

fn check() -> Result<Outcome, String> {
    if std::env::args_os().len() > 1 {
        return Err("takes no arguments (it reads the system config only)".into());
    }
    if !Uid::effective().is_root() {
        return Err("not installed setuid root".into());
    }
    let caller = Uid::current();
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
    let user = request.user.clone();
    let config = Config::load(Path::new(DEFAULT_CONFIG_PATH)).map_err(|e| e.to_string())?;

    // The caller's login session (the kernel's ids, never its environment).
    let session = Cache::open(&config.cache_dir)
        .and_then(|cache| Ok((cache, SessionKey::current()?)))
        .ok();
    if let Some((cache, key)) = &session {
        if cache.is_unmanaged(key, &user) {
            return Ok(Outcome::Unmanaged);
        }
    }

    // Offline login for this caller too (unlocking on a train): the system
    // policy decides, the record stays root's.
    let offline = OfflineStore::open(&config.offline.dir).ok();
    if let Some(store) = &offline {
        let ask = offline::prepare(&config.offline, store, &user, &request.service);
        if let Some(why) = &ask.withheld {
            log::send(IDENT, Level::Info, why);
        }
        request.want_verifier = ask.want_verifier;
        request.offline = ask.verifier;
    }
    let encoded = request.encode().map_err(|e| e.to_string())?;
    drop(request);

    let mut limit = RateLimit::open(&config.cache_dir, caller.as_raw())?;
    limit.wait_for_turn()?;
    let answer = run_helper(&config, &encoded)?;
    let outcome = answer.outcome;
    limit.record(&outcome)?;
    if let Some(store) = &offline {
        if let Err(e) = offline::settle(store, &user, &outcome, answer.verifier) {
            log::send(IDENT, Level::Warning, &format!("offline verifier: {e}"));
        }
    }

    Ok(match outcome {
        Outcome::Token { token } => {
            if let Some((cache, key)) = &session {
                // A new handshake killed the old token: refresh the session's
                // file if it has one (sudo does the same as root).
                if let Err(e) = cache.replace_token(key, &user, &token) {
                    log::send(IDENT, Level::Warning, &format!("session cache: {e}"));
                }
            }
            Outcome::Verified
        }
        Outcome::Unmanaged => {
            if let Some((cache, key)) = &session {
                let _ = cache.mark_unmanaged(key, &user);
            }
            Outcome::Unmanaged
        }
        Outcome::Verified => Outcome::unavailable("the helper answered verified"),
        other => other,
    })
}

/// Runs the configured helper, which drops root before the network, on the
/// same request; waits for it no longer than its kill deadline.
fn run_helper(config: &Config, request: &[u8]) -> Result<wire::HelperAnswer, String> {
    let executable = trust::open_executable(&config.helper).map_err(|e| e.to_string())?;
    // The file that was checked, by its descriptor: nothing can swap it.
    let path = format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&executable)
    );
    let mut child = Command::new(&path)
        .args(["authenticate", "--config", DEFAULT_CONFIG_PATH])
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the helper: {e}"))?;
    drop(executable);
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(request))
        .unwrap_or(Ok(()));
    let ends = Instant::now() + config.kill_deadline();
    let mut output = Zeroizing::new(Vec::new());
    if let Some(mut stdout) = child.stdout.take() {
        // The helper bounds its own time; the kill below bounds ours.
        let _ = (&mut stdout)
            .take(wire::MAX_RESULT_BYTES as u64 + 1)
            .read_to_end(&mut output);
    }
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < ends => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the helper did not finish in time".into());
            }
        }
    }
    written.map_err(|e| format!("writing the request: {e}"))?;
    wire::decode_answer(&output).map_err(|e| format!("helper result: {e}"))
}

/// One uid's attempts: when the last one began, and how many passwords in a
/// row were rejected. Kept root-only under the cache directory and locked
/// for the whole attempt, so one uid's attempts run one at a time.
struct RateLimit {
    file: Flock<File>,
    record: Record,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    last_ms: u64,
    rejections: u32,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RateLimit {
    fn open(cache_dir: &Path, uid: u32) -> Result<RateLimit, String> {
        Cache::open(cache_dir).map_err(|e| e.to_string())?;
        let dir = cache_dir.join("chkpwd");
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                std::os::unix::fs::chown(&dir, Some(0), Some(0)).map_err(|e| e.to_string())?
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
        let path: PathBuf = dir.join(uid.to_string());
        let file = match trust::open_read_write(&path, Rules::ROOT_PRIVATE) {
            Ok(file) => file,
            Err(trust::TrustError::Missing { .. }) => File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc_flags())
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) => return Err(e.to_string()),
        };
        let mut file =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| e.to_string())?;
        let mut text = String::new();
        let _ = (&mut *file).take(4096).read_to_string(&mut text);
        let record = serde_json::from_str(&text).unwrap_or_default();
        Ok(RateLimit { file, record })
    }

    /// Waits until this uid's next attempt is due, or refuses when that is
    /// too far off; then marks the attempt as begun.
    fn wait_for_turn(&mut self) -> Result<(), String> {
        let spacing = BASE_SPACING_MS << self.record.rejections.min(MAX_DOUBLINGS);
        let due = self.record.last_ms.saturating_add(spacing);
        let now = now_ms();
        if due > now {
            let wait = due - now;
            if wait > CHKPWD_MAX_WAIT_MS {
                return Err(format!(
                    "rate limited after {} rejected passwords; retry in {} s",
                    self.record.rejections,
                    wait.div_ceil(1000)
                ));
            }
            std::thread::sleep(Duration::from_millis(wait));
        }
        self.record.last_ms = now_ms();
        self.save()
    }

    /// Counts a rejected password; anything issued resets the count.
    fn record(&mut self, outcome: &Outcome) -> Result<(), String> {
        match outcome {
            Outcome::Rejected | Outcome::OfflineRejected => self.record.rejections += 1,
            Outcome::Token { .. } => self.record.rejections = 0,
            _ => {}
        }
        self.save()
    }

    fn save(&mut self) -> Result<(), String> {
        let text = serde_json::to_string(&self.record).map_err(|e| e.to_string())?;
        let file: &mut File = &mut self.file;
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .and_then(|()| file.write_all(text.as_bytes()))
            .map_err(|e| format!("rate-limit record: {e}"))
    }
}

fn libc_flags() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_CLOEXEC.bits()
}
