//! The PAM policy driven as scripts of PAM events, without root or libpam:
//! a scripted [`PamApi`] stands in for the handle and a [`Host`] with a
//! private cache directory, a parsed config and scripted helper outcomes
//! stands in for the system. The real module in the real libpam is tested
//! in `crates/authtoken-tests`; these cover the decisions in between.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use authtoken_config::Config;
use authtoken_core::cache::{Cache, CacheError};
use authtoken_core::log::Level;
use authtoken_core::outcome::{Outcome, PamCode};
use authtoken_core::session::{SessionError, SessionKey};
use authtoken_core::settings::{self, ModuleSettings, SettingsError};
use authtoken_core::trust::TrustError;
use authtoken_core::wire::HelperRequest;
use zeroize::Zeroizing;

use crate::pam_api::{DataKey, PamApi};
use crate::policy::{self, Host, TOKEN_FILE_ENV};
use authtoken_spawn::HelperError;

/// One PAM handle: what the application set, and what the module did.
struct FakePam {
    user: Vec<u8>,
    service: String,
    authtok: Option<Vec<u8>>,
    /// What the user types at a prompt; `None` fails the conversation.
    answer: Option<Vec<u8>>,
    prompts: Vec<String>,
    errors: Vec<String>,
    env: HashMap<String, String>,
    data: HashMap<&'static str, Box<dyn Any>>,
}

impl FakePam {
    fn new(user: &str, answer: Option<&str>) -> FakePam {
        FakePam {
            user: user.as_bytes().to_vec(),
            service: "login".into(),
            authtok: None,
            answer: answer.map(|a| a.as_bytes().to_vec()),
            prompts: Vec::new(),
            errors: Vec::new(),
            env: HashMap::new(),
            data: HashMap::new(),
        }
    }
}

impl PamApi for FakePam {
    fn user(&mut self) -> Result<Vec<u8>, PamCode> {
        Ok(self.user.clone())
    }
    fn service(&self) -> String {
        self.service.clone()
    }
    fn authtok(&self) -> Option<Zeroizing<Vec<u8>>> {
        self.authtok.clone().map(Zeroizing::new)
    }
    fn set_authtok(&mut self, password: &[u8]) -> Result<(), PamCode> {
        self.authtok = Some(password.to_vec());
        Ok(())
    }
    fn prompt_secret(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, PamCode> {
        self.prompts.push(prompt.to_owned());
        self.answer
            .clone()
            .map(Zeroizing::new)
            .ok_or(PamCode::ConvErr)
    }
    fn error_message(&mut self, text: &str) {
        self.errors.push(text.to_owned());
    }
    fn putenv(&mut self, name_value: &str) -> Result<(), PamCode> {
        match name_value.split_once('=') {
            Some((name, value)) => self.env.insert(name.into(), value.into()),
            None => self.env.remove(name_value),
        };
        Ok(())
    }
    fn get_data<T: 'static>(&self, key: DataKey<T>) -> Option<&T> {
        self.data.get(key.name)?.downcast_ref()
    }
    fn set_data<T: 'static>(&mut self, key: DataKey<T>, value: T) -> Result<(), PamCode> {
        self.data.insert(key.name, Box::new(value));
        Ok(())
    }
}

/// The system as one test sees it.
struct TestHost {
    dir: tempfile::TempDir,
    config_text: String,
    config_error: bool,
    outcomes: RefCell<VecDeque<Result<Outcome, HelperError>>>,
    requests: RefCell<Vec<(String, Vec<u8>, String)>>,
    login_session: Result<SessionKey, SessionError>,
    process_session: Result<SessionKey, SessionError>,
    /// The sessions that still exist; the cache sweeps the others.
    live_sessions: Vec<String>,
    privileged: bool,
    /// The programs run, in order.
    programs: RefCell<Vec<PathBuf>>,
    logs: RefCell<Vec<String>>,
    /// The module settings file beside the config (what the helper's
    /// `module-settings` writes, here by `make_settings`).
    settings_file: RefCell<Option<ModuleSettings>>,
    /// How often `module-settings` ran.
    settings_made: std::cell::Cell<usize>,
}

const CONFIG: &str = "/etc/authtoken/test.toml";

impl TestHost {
    fn new() -> TestHost {
        TestHost::with_config("")
    }

    fn with_config(extra: &str) -> TestHost {
        let dir = tempfile::tempdir().expect("temporary directory");
        let cache = dir.path().join("cache");
        let config_text = format!(
            "backend = \"mdm\"\nurl = \"https://authority.example/checkin\"\ncache_dir = \"{}\"\n{extra}\n",
            cache.display()
        );
        // As installed: the settings were written for this config.
        let written = Config::parse(&config_text)
            .expect("test config is valid")
            .module_settings(&config_text);
        TestHost {
            config_text,
            dir,
            config_error: false,
            outcomes: RefCell::new(VecDeque::new()),
            requests: RefCell::new(Vec::new()),
            login_session: Ok(SessionKey::parse("sid-100-1").expect("key")),
            process_session: Ok(SessionKey::parse("sid-100-1").expect("key")),
            live_sessions: vec!["sid-100-1".into()],
            privileged: true,
            programs: RefCell::new(Vec::new()),
            logs: RefCell::new(Vec::new()),
            settings_file: RefCell::new(Some(written)),
            settings_made: std::cell::Cell::new(0),
        }
    }

    /// The helper will answer these, in order.
    fn answers(self, outcomes: Vec<Result<Outcome, HelperError>>) -> TestHost {
        *self.outcomes.borrow_mut() = outcomes.into();
        self
    }

    fn helper_runs(&self) -> usize {
        self.requests.borrow().len()
    }

    fn logged(&self, needle: &str) -> bool {
        self.logs.borrow().iter().any(|l| l.contains(needle))
    }
}

impl Host for TestHost {
    fn read_config(&self, path: &Path) -> Result<Zeroizing<Vec<u8>>, TrustError> {
        assert_eq!(path, Path::new(CONFIG), "the config= path is passed on");
        Ok(Zeroizing::new(self.config_text.as_bytes().to_vec()))
    }

    fn read_settings(&self, config: &Path) -> Result<Option<ModuleSettings>, SettingsError> {
        assert_eq!(config, Path::new(CONFIG));
        Ok(self.settings_file.borrow().clone())
    }

    fn make_settings(
        &self,
        helper: &Path,
        config: &Path,
    ) -> Result<Zeroizing<Vec<u8>>, HelperError> {
        assert_eq!(config, Path::new(CONFIG));
        self.programs.borrow_mut().push(helper.to_owned());
        self.settings_made.set(self.settings_made.get() + 1);
        let answer = if self.config_error {
            settings::Answer::Refused(format!("{CONFIG}: broken on purpose"))
        } else {
            let made = Config::parse(&self.config_text)
                .expect("test config is valid")
                .module_settings(&self.config_text);
            *self.settings_file.borrow_mut() = Some(made.clone());
            settings::Answer::Settings(Box::new(made))
        };
        Ok(Zeroizing::new(serde_json::to_vec(&answer).expect("JSON")))
    }

    fn run_helper(
        &self,
        program: &Path,
        args: &[&str],
        request: &[u8],
        _deadline: Duration,
    ) -> Result<authtoken_core::wire::HelperAnswer, HelperError> {
        self.programs.borrow_mut().push(program.to_owned());
        if self.privileged {
            assert_eq!(&args[..3], ["authenticate", "--config", CONFIG]);
        } else {
            assert!(args.is_empty(), "chkpwd takes no arguments: {args:?}");
        }
        let request = HelperRequest::decode(request).expect("a valid request");
        self.requests.borrow_mut().push((
            request.user.to_string(),
            request.password().expect("password").to_vec(),
            request.service.clone(),
        ));
        self.outcomes
            .borrow_mut()
            .pop_front()
            .expect("the test scripted an answer for every helper run")
            .map(Into::into)
    }

    fn login_session(&self) -> Result<SessionKey, SessionError> {
        self.login_session.clone()
    }

    fn process_session(&self) -> Result<SessionKey, SessionError> {
        self.process_session.clone()
    }

    fn open_cache(&self, dir: &Path) -> Result<Cache, CacheError> {
        let owner = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        Cache::open_owned_by(dir, owner, "pam_authtoken-test")
    }

    fn open_offline(
        &self,
        dir: &Path,
    ) -> Result<authtoken_core::offline::OfflineStore, authtoken_core::offline::OfflineError> {
        let owner = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        authtoken_core::offline::OfflineStore::open_owned_by(dir, owner)
    }

    fn privileged(&self) -> bool {
        self.privileged
    }

    fn remove_token_file(&self, path: &Path) -> bool {
        authtoken_core::cache::remove_token_file(path)
    }

    fn session_alive(&self, key: &SessionKey) -> Option<bool> {
        Some(self.live_sessions.iter().any(|live| live == key.as_str()))
    }

    fn log(&self, _level: Level, message: &str) {
        self.logs.borrow_mut().push(message.to_owned());
    }
}

fn token(text: &str) -> Result<Outcome, HelperError> {
    Ok(Outcome::token(Zeroizing::new(text.into())))
}

const ARGS: [&CStr; 1] = [c"config=/etc/authtoken/test.toml"];

fn authenticate(pam: &mut FakePam, host: &TestHost, extra: &[&CStr]) -> PamCode {
    let mut args = ARGS.to_vec();
    args.extend_from_slice(extra);
    policy::authenticate(pam, host, &args)
}

fn token_file(pam: &FakePam) -> PathBuf {
    PathBuf::from(pam.env.get(TOKEN_FILE_ENV).expect("AUTHTOKEN_FILE set"))
}

#[test]
fn right_password_signs_in_and_shares_the_password() {
    let host = TestHost::new().answers(vec![token("tok-1")]);
    let mut pam = FakePam::new("alice", Some("correct horse"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::Success);
    assert_eq!(pam.prompts, ["Password: "]);
    assert_eq!(
        host.requests.borrow()[0],
        ("alice".into(), b"correct horse".to_vec(), "login".into())
    );
    assert_eq!(pam.authtok.as_deref(), Some(&b"correct horse"[..]));
    assert_eq!(
        policy::setcred(&mut pam, &host, &ARGS),
        PamCode::Success,
        "setcred for the user we issued a token for"
    );
    assert_eq!(policy::acct_mgmt(&mut pam, &host, &ARGS), PamCode::Success);
    assert!(host
        .logged("user=\"alice\" service=\"login\" backend=mdm outcome=token result=PAM_SUCCESS"));
    assert!(
        host.logs
            .borrow()
            .iter()
            .all(|l| !l.contains("correct horse") && !l.contains("tok-1")),
        "no secret in the log"
    );
}

#[test]
fn wrong_password_is_auth_err_and_keeps_nothing() {
    let host = TestHost::new().answers(vec![Ok(Outcome::Rejected)]);
    let mut pam = FakePam::new("alice", Some("wrong"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::AuthErr);
    assert_eq!(policy::setcred(&mut pam, &host, &ARGS), PamCode::Ignore);
    assert_eq!(
        policy::open_session(&mut pam, &host, &ARGS),
        PamCode::Ignore
    );
    assert!(pam.env.is_empty());
}

#[test]
fn unmanaged_user_is_remembered_for_the_login_session() {
    let host = TestHost::new().answers(vec![Ok(Outcome::Unmanaged)]);
    let mut pam = FakePam::new("bob", Some("pw"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::Ignore);
    // The rest of the session: no prompt, no helper.
    for _ in 0..3 {
        let mut again = FakePam::new("bob", Some("pw"));
        assert_eq!(authenticate(&mut again, &host, &[]), PamCode::Ignore);
        assert!(again.prompts.is_empty());
    }
    assert_eq!(host.helper_runs(), 1);
    assert!(host.logged("outcome=unmanaged result=PAM_IGNORE") && host.logged("cached=yes"));
}

#[test]
fn unmanaged_mark_belongs_to_one_session_and_one_user() {
    let mut host = TestHost::new().answers(vec![
        Ok(Outcome::Unmanaged),
        Ok(Outcome::Unmanaged),
        Ok(Outcome::Unmanaged),
    ]);
    assert_eq!(
        authenticate(&mut FakePam::new("bob", Some("pw")), &host, &[]),
        PamCode::Ignore
    );
    // Another user of the same session is asked.
    assert_eq!(
        authenticate(&mut FakePam::new("carol", Some("pw")), &host, &[]),
        PamCode::Ignore
    );
    assert_eq!(host.helper_runs(), 2);
    // The same user in another login session is asked again.
    host.login_session = Ok(SessionKey::parse("audit-7").expect("key"));
    assert_eq!(
        authenticate(&mut FakePam::new("bob", Some("pw")), &host, &[]),
        PamCode::Ignore
    );
    assert_eq!(host.helper_runs(), 3);
}

#[test]
fn use_first_pass_takes_the_earlier_password_without_a_prompt() {
    let host = TestHost::new().answers(vec![token("t")]);
    let mut pam = FakePam::new("alice", None);
    pam.authtok = Some(b"from pam_unix".to_vec());
    assert_eq!(
        authenticate(&mut pam, &host, &[c"use_first_pass"]),
        PamCode::Success
    );
    assert!(pam.prompts.is_empty());
    assert_eq!(host.requests.borrow()[0].1, b"from pam_unix");
}

#[test]
fn use_first_pass_without_an_earlier_password_fails_without_a_request() {
    let host = TestHost::new();
    let mut pam = FakePam::new("alice", Some("typed"));
    assert_eq!(
        authenticate(&mut pam, &host, &[c"use_first_pass"]),
        PamCode::AuthErr
    );
    assert!(pam.prompts.is_empty());
    assert_eq!(host.helper_runs(), 0);
}

#[test]
fn try_first_pass_prompts_only_when_there_is_nothing_to_reuse() {
    let host = TestHost::new().answers(vec![token("a"), token("b")]);
    let mut pam = FakePam::new("alice", Some("typed"));
    assert_eq!(
        authenticate(&mut pam, &host, &[c"try_first_pass"]),
        PamCode::Success
    );
    assert_eq!(pam.prompts.len(), 1);
    let mut reuse = FakePam::new("alice", None);
    reuse.authtok = Some(b"earlier".to_vec());
    assert_eq!(
        authenticate(&mut reuse, &host, &[c"try_first_pass"]),
        PamCode::Success
    );
    assert!(reuse.prompts.is_empty());
    assert_eq!(host.requests.borrow()[1].1, b"earlier");
}

#[test]
fn empty_password_is_refused_without_a_request() {
    let host = TestHost::new();
    let mut pam = FakePam::new("alice", Some(""));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::AuthErr);
    assert_eq!(host.helper_runs(), 0);
    assert!(host.logged("empty password refused"));
}

#[test]
fn overlong_password_is_refused_without_a_request() {
    let host = TestHost::new();
    let long = "x".repeat(4097);
    let mut pam = FakePam::new("alice", Some(&long));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::AuthErr);
    assert_eq!(host.helper_runs(), 0);
    let longest = "x".repeat(4096);
    let host = TestHost::new().answers(vec![token("t")]);
    let mut pam = FakePam::new("alice", Some(&longest));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::Success);
}

#[test]
fn failed_conversation_is_conv_err() {
    let host = TestHost::new();
    let mut pam = FakePam::new("alice", None);
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::ConvErr);
    assert_eq!(host.helper_runs(), 0);
}

#[test]
fn bad_user_names_are_refused_before_the_prompt() {
    let host = TestHost::new();
    let long = "a".repeat(257);
    for user in ["", "al\nice", "bob\u{7f}", long.as_str()] {
        let mut pam = FakePam::new(user, Some("pw"));
        assert_eq!(
            authenticate(&mut pam, &host, &[]),
            PamCode::UserUnknown,
            "{user:?}"
        );
        assert!(pam.prompts.is_empty());
    }
    assert_eq!(host.helper_runs(), 0);
}

#[test]
fn relative_config_path_fails_closed_in_every_hook() {
    let host = TestHost::new();
    let args = [c"config=etc/authtoken.toml"];
    let mut pam = FakePam::new("alice", Some("pw"));
    assert_eq!(
        policy::authenticate(&mut pam, &host, &args),
        PamCode::AuthinfoUnavail
    );
    assert!(pam.prompts.is_empty());
    assert_eq!(policy::setcred(&mut pam, &host, &args), PamCode::Ignore);
    assert_eq!(
        policy::open_session(&mut pam, &host, &args),
        PamCode::Ignore
    );
    assert!(host.logged("config=PATH must be absolute"));
}

#[test]
fn broken_config_fails_closed_and_tells_the_user() {
    let mut host = TestHost::new();
    // The config changed since its settings were written, and the helper
    // finds it broken.
    host.config_text.push_str("# edited\n");
    host.config_error = true;
    let mut pam = FakePam::new("alice", Some("pw"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::AuthinfoUnavail);
    assert!(pam.prompts.is_empty());
    assert!(host.logged("broken on purpose"));
    assert_eq!(
        pam.errors,
        ["pam_authtoken: configuration error, see the system log"]
    );
}

#[test]
fn helper_failures_and_unavailable_authorities_fall_through() {
    let host = TestHost::new().answers(vec![
        Err(HelperError::Timeout(1000)),
        Ok(Outcome::unavailable("connection refused")),
        Err(HelperError::Crashed(authtoken_spawn::Crash::Signal(
            nix::sys::signal::Signal::SIGSEGV,
        ))),
    ]);
    for _ in 0..3 {
        let mut pam = FakePam::new("alice", Some("pw"));
        assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::AuthinfoUnavail);
        assert!(pam.get_data(policy::TOKEN_KEY).is_none());
    }
    assert!(host.logged("reason=\"connection refused\""));
}

#[test]
fn empty_challenge_follows_the_policy_only_over_https() {
    let host = TestHost::new().answers(vec![Ok(Outcome::NoTokenNeeded)]);
    let mut pam = FakePam::new("carol", Some("pw"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::Ignore);

    let host = TestHost::with_config("empty_challenge = \"success\"")
        .answers(vec![Ok(Outcome::NoTokenNeeded)]);
    let mut pam = FakePam::new("carol", Some("pw"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::Success);

    let mut host =
        TestHost::with_config("empty_challenge = \"success\"\nallow_insecure_http = true")
            .answers(vec![Ok(Outcome::NoTokenNeeded)]);
    host.config_text = host
        .config_text
        .replace("https://authority.example", "http://127.0.0.1:8080");
    let mut pam = FakePam::new("carol", Some("pw"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::Ignore);
    assert!(host.logged("applies only over verified https; treated as ignore"));
}

#[test]
fn open_session_writes_the_token_and_close_session_removes_it() {
    let host = TestHost::new().answers(vec![token("session-token")]);
    let mut pam = FakePam::new("alice", Some("pw"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::Success);
    assert_eq!(
        policy::open_session(&mut pam, &host, &ARGS),
        PamCode::Success
    );
    let file = token_file(&pam);
    assert_eq!(
        std::fs::read_to_string(&file).expect("token file"),
        "session-token"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        policy::close_session(&mut pam, &host, &ARGS),
        PamCode::Success
    );
    assert!(!file.exists());
    assert!(!pam.env.contains_key(TOKEN_FILE_ENV));
}

#[test]
fn a_nested_session_leaves_the_enclosing_sessions_token_alone() {
    let host = TestHost::new().answers(vec![token("login"), token("sudo")]);
    let mut login = FakePam::new("alice", Some("pw"));
    assert_eq!(authenticate(&mut login, &host, &[]), PamCode::Success);
    assert_eq!(
        policy::open_session(&mut login, &host, &ARGS),
        PamCode::Success
    );
    let file = token_file(&login);
    // sudo inside the login session: its handshake replaces the token...
    let mut sudo = FakePam::new("alice", Some("pw"));
    sudo.service = "sudo".into();
    assert_eq!(authenticate(&mut sudo, &host, &[]), PamCode::Success);
    assert_eq!(std::fs::read_to_string(&file).expect("token"), "sudo");
    assert_eq!(
        policy::open_session(&mut sudo, &host, &ARGS),
        PamCode::Success
    );
    // ...but its close_session does not end the login session's file.
    assert_eq!(
        policy::close_session(&mut sudo, &host, &ARGS),
        PamCode::Ignore
    );
    assert!(file.exists());
    assert_eq!(
        policy::close_session(&mut login, &host, &ARGS),
        PamCode::Success
    );
    assert!(!file.exists());
}

#[test]
fn a_forked_authentication_child_hands_its_token_to_open_session() {
    // sshd: authenticate runs in a child process (its own PAM handle copy),
    // open_session in the parent, which never saw the token.
    let host = TestHost::new().answers(vec![token("via-handoff")]);
    let mut child = FakePam::new("alice", Some("pw"));
    child.service = "sshd".into();
    assert_eq!(authenticate(&mut child, &host, &[]), PamCode::Success);
    let mut parent = FakePam::new("alice", None);
    assert_eq!(
        policy::acct_mgmt(&mut parent, &host, &ARGS),
        PamCode::Success
    );
    assert_eq!(
        policy::open_session(&mut parent, &host, &ARGS),
        PamCode::Success
    );
    assert_eq!(
        std::fs::read_to_string(token_file(&parent)).expect("token"),
        "via-handoff"
    );
    // sshd's order: pam_setcred after pam_open_session took the hand-off.
    assert_eq!(policy::setcred(&mut parent, &host, &ARGS), PamCode::Success);
    // Taken once: another handle of the process session gets nothing.
    let mut other = FakePam::new("alice", None);
    assert_eq!(
        policy::open_session(&mut other, &host, &ARGS),
        PamCode::Ignore
    );
    assert_eq!(policy::acct_mgmt(&mut other, &host, &ARGS), PamCode::Ignore);
}

/// The hand-off files under the test host's cache.
fn handoffs(host: &TestHost) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(sessions) = std::fs::read_dir(host.dir.path().join("cache")) else {
        return out;
    };
    for session in sessions.flatten() {
        if let Ok(files) = std::fs::read_dir(session.path()) {
            out.extend(
                files
                    .flatten()
                    .map(|f| f.path())
                    .filter(|p| p.to_string_lossy().ends_with(".handoff")),
            );
        }
    }
    out
}

/// A handle of sshd's, or of a service marked `handoff`.
fn forked_auth(user: &str, password: Option<&str>) -> FakePam {
    let mut pam = FakePam::new(user, password);
    pam.service = "sshd".into();
    pam
}

#[test]
fn a_handle_that_ends_without_a_session_leaves_no_handoff() {
    // sshd's child ended after all: authenticate, then pam_end, no session.
    let host = TestHost::new().answers(vec![token("t1"), token("t2"), token("t3")]);
    let mut pam = forked_auth("alice", Some("pw"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::Success);
    assert_eq!(handoffs(&host).len(), 1, "left for a forked caller");
    drop(pam);
    assert!(handoffs(&host).is_empty(), "withdrawn at pam_end");
    // Signing in twice in one handle: the second hand-off is the one kept,
    // and it too goes with the handle.
    let mut pam = forked_auth("alice", Some("pw"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::Success);
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::Success);
    let left = handoffs(&host);
    assert_eq!(left.len(), 1);
    assert_eq!(std::fs::read_to_string(&left[0]).unwrap(), "t3");
    drop(pam);
    assert!(handoffs(&host).is_empty());
}

#[test]
fn only_a_forked_authentication_leaves_a_handoff() {
    // sudo -v exits without pam_end, so its handle's data is never dropped:
    // nothing may be left for it to withdraw.
    let host = TestHost::new().answers(vec![token("t1"), token("t2")]);
    let mut sudo = FakePam::new("alice", Some("pw"));
    sudo.service = "sudo".into();
    assert_eq!(authenticate(&mut sudo, &host, &[]), PamCode::Success);
    std::mem::forget(sudo);
    assert!(handoffs(&host).is_empty());
    // Any service whose pam.d line says it forks.
    let mut marked = FakePam::new("alice", Some("pw"));
    marked.service = "ftpd".into();
    let handoff = [c"handoff"];
    assert_eq!(authenticate(&mut marked, &host, &handoff), PamCode::Success);
    assert_eq!(handoffs(&host).len(), 1);
}

#[test]
fn a_handoff_is_only_for_its_own_user() {
    let host = TestHost::new().answers(vec![token("alice's")]);
    assert_eq!(
        authenticate(&mut forked_auth("alice", Some("pw")), &host, &[]),
        PamCode::Success
    );
    let mut mallory = FakePam::new("mallory", None);
    assert_eq!(policy::setcred(&mut mallory, &host, &ARGS), PamCode::Ignore);
    assert_eq!(
        policy::open_session(&mut mallory, &host, &ARGS),
        PamCode::Ignore
    );
    assert!(mallory.env.is_empty());
}

#[test]
fn a_session_less_host_signs_in_but_remembers_nothing() {
    let mut host = TestHost::new().answers(vec![
        Ok(Outcome::Unmanaged),
        Ok(Outcome::Unmanaged),
        token("t"),
    ]);
    host.login_session = Err(SessionError::LeaderNotVisible);
    host.process_session = Err(SessionError::LeaderNotVisible);
    for _ in 0..2 {
        let mut pam = FakePam::new("bob", Some("pw"));
        assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::Ignore);
        assert_eq!(pam.prompts.len(), 1, "asked every time: nothing remembered");
    }
    assert_eq!(host.helper_runs(), 2);
    let mut pam = FakePam::new("alice", Some("pw"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::Success);
    assert_eq!(
        policy::open_session(&mut pam, &host, &ARGS),
        PamCode::SessionErr,
        "a token, but no session to keep it in"
    );
    assert!(host.logged("session cache unavailable"));
    let cache_dir = host.dir.path().join("cache");
    let entries = std::fs::read_dir(&cache_dir)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(entries, 0, "nothing written under the cache");
}

#[test]
fn an_untrusted_cache_entry_is_ignored() {
    let host = TestHost::new().answers(vec![Ok(Outcome::Unmanaged), token("t")]);
    assert_eq!(
        authenticate(&mut FakePam::new("bob", Some("pw")), &host, &[]),
        PamCode::Ignore
    );
    // Someone loosened the mark's mode: it no longer counts.
    let key = SessionKey::parse("sid-100-1").expect("key");
    let mark = host
        .dir
        .path()
        .join("cache")
        .join(key.as_str())
        .join("bob.unmanaged");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&mark, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(
        authenticate(&mut FakePam::new("bob", Some("pw")), &host, &[]),
        PamCode::Success
    );
    assert_eq!(host.helper_runs(), 2, "the loosened mark was not trusted");
}

#[test]
fn sessions_that_ended_are_swept_when_a_session_opens() {
    let mut host = TestHost::new().answers(vec![Ok(Outcome::Unmanaged), token("t")]);
    host.login_session = Ok(SessionKey::parse("audit-41").expect("key"));
    assert_eq!(
        authenticate(&mut FakePam::new("bob", Some("pw")), &host, &[]),
        PamCode::Ignore
    );
    let ended = host.dir.path().join("cache").join("audit-41");
    assert!(ended.is_dir());
    host.login_session = Ok(SessionKey::parse("sid-100-1").expect("key"));
    let mut pam = FakePam::new("alice", Some("pw"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::Success);
    assert_eq!(
        policy::open_session(&mut pam, &host, &ARGS),
        PamCode::Success
    );
    assert!(!ended.exists(), "audit-41 is not alive: swept");
    assert!(token_file(&pam).exists(), "the live session stays");
}

#[test]
fn chauthtok_is_not_ours() {
    let host = TestHost::new();
    let mut pam = FakePam::new("alice", Some("pw"));
    assert_eq!(policy::chauthtok(&mut pam, &host, &ARGS), PamCode::Ignore);
    assert!(pam.prompts.is_empty());
}

#[test]
fn unknown_options_are_logged_and_ignored() {
    let host = TestHost::new().answers(vec![token("t")]);
    let mut pam = FakePam::new("alice", Some("pw"));
    assert_eq!(
        authenticate(&mut pam, &host, &[c"nonsense\n", c"debug"]),
        PamCode::Success
    );
    assert!(host.logged("ignoring unknown option \"nonsense\\u{a}\""));
    assert!(host.logged("running helper"), "debug adds protocol steps");
}

#[test]
fn a_caller_without_root_runs_chkpwd_and_keeps_no_token() {
    let mut host = TestHost::new().answers(vec![
        Ok(Outcome::Verified),
        Ok(Outcome::Rejected),
        token("a token must not come back"),
    ]);
    host.privileged = false;
    let mut pam = FakePam::new("alice", Some("pw"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::Success);
    assert!(pam.get_data(policy::TOKEN_KEY).is_none(), "nothing kept");
    assert_eq!(
        host.programs.borrow()[0],
        Path::new(authtoken_core::platform::CHKPWD)
    );
    assert_eq!(
        authenticate(&mut FakePam::new("alice", Some("wrong")), &host, &[]),
        PamCode::AuthErr
    );
    assert_eq!(
        authenticate(&mut FakePam::new("alice", Some("pw")), &host, &[]),
        PamCode::AuthinfoUnavail,
        "chkpwd never hands out tokens"
    );
    let cache_dir = host.dir.path().join("cache");
    assert!(!cache_dir.exists(), "no root cache touched without root");
}

#[test]
fn only_chkpwd_may_answer_verified() {
    let host = TestHost::new().answers(vec![Ok(Outcome::Verified)]);
    let mut pam = FakePam::new("alice", Some("pw"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::AuthinfoUnavail);
}

#[test]
fn settings_made_for_an_edited_config_are_used_until_it_changes_again() {
    let mut host = TestHost::new().answers(vec![token("t1"), token("t2"), token("t3")]);
    let login = |host: &TestHost| authenticate(&mut FakePam::new("alice", Some("pw")), host, &[]);
    assert_eq!(login(&host), PamCode::Success);
    assert_eq!(host.settings_made.get(), 0, "the written settings match");
    host.config_text.push_str("timeout_ms = 2000\n");
    assert_eq!(login(&host), PamCode::Success);
    assert_eq!(host.settings_made.get(), 1, "made again once");
    assert_eq!(
        host.programs.borrow()[1],
        Path::new(authtoken_core::platform::HELPER),
        "by the helper the old settings name"
    );
    assert_eq!(login(&host), PamCode::Success);
    assert_eq!(host.settings_made.get(), 1, "then used as written");
}

#[test]
fn without_root_old_settings_never_grant_an_empty_challenge() {
    let mut host = TestHost::with_config("empty_challenge = \"success\"")
        .answers(vec![Ok(Outcome::NoTokenNeeded), Ok(Outcome::NoTokenNeeded)]);
    host.privileged = false;
    let login = |host: &TestHost| authenticate(&mut FakePam::new("carol", Some("pw")), host, &[]);
    assert_eq!(
        login(&host),
        PamCode::Success,
        "current settings: the policy"
    );
    host.config_text.push_str("# edited\n");
    assert_eq!(login(&host), PamCode::Ignore, "old settings: ignore");
    assert_eq!(
        host.settings_made.get(),
        0,
        "a caller without root makes none"
    );
    assert!(host.logged("the config changed since its module settings were written"));
}

#[test]
fn without_root_and_without_settings_it_fails_closed_before_the_password() {
    let mut host = TestHost::new();
    host.privileged = false;
    *host.settings_file.borrow_mut() = None;
    let mut pam = FakePam::new("alice", Some("pw"));
    assert_eq!(authenticate(&mut pam, &host, &[]), PamCode::AuthinfoUnavail);
    assert!(pam.prompts.is_empty());
    assert!(host.logged("no module settings beside"));
    assert_eq!(host.helper_runs(), 0);
}
