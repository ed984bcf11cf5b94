//! Runs the helper the way `unix_chkpwd` is run: fork + exec of the very
//! file that passed the trust checks (opened `O_NOFOLLOW` and run from that
//! descriptor: `execveat(fd, "", AT_EMPTY_PATH)` on Linux, `fexecve` on
//! FreeBSD; macOS, which has neither, runs the checked path), an empty
//! environment, the request on
//! stdin, the result on stdout, a hard deadline, and a wait on that one pid
//! only. The child starts clean: working directory `/`, every signal at its
//! default and unblocked, its own process group (killed whole at the
//! deadline).
//!
//! Host-process etiquette: no threads, no signal handlers, no change to the
//! host's `SIGCHLD` disposition, no zombie left behind, and it still works
//! when the host ignores `SIGCHLD` (the kernel then reaps the child itself).
//!
//! One spawner for the workspace: the PAM module and the setuid
//! `authtoken-chkpwd` both run the helper through [`run_helper`].

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
// One of the workspace's FFI rooms (see `[workspace.lints]`): fork, exec
// and descriptor plumbing are `unsafe` calls; each has its `// SAFETY:`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use zeroize::Zeroizing;

use authtoken_core::trust::{self, TrustError};
use authtoken_core::wire::{self, HelperAnswer, WireError};

pub mod setuid;
mod sys;
use sys::Executable;

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("helper {0} is missing; install the package or set helper in the config")]
    Missing(PathBuf),
    #[error("helper is not trusted: {0}")]
    Untrusted(TrustError),
    #[error("cannot start helper: {0}")]
    Spawn(#[from] SpawnError),
    #[error("helper did not answer within {0} ms and was killed")]
    Timeout(u128),
    #[error("helper failed: {0}")]
    Crashed(#[from] Crash),
    #[error("bad helper result: {0}")]
    Result(#[from] WireError),
}

/// Why the helper could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{0} contains NUL")]
    Nul(&'static str),
    /// A system call on the way (`what` names it) failed.
    #[error("{what}: {}", .errno.desc())]
    Sys { what: &'static str, errno: Errno },
}

/// How a started helper ended without a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum Crash {
    #[error("exit status {0}")]
    Exit(i32),
    #[error("killed by {0}")]
    Signal(nix::sys::signal::Signal),
    #[error("reading its result: {}", .0.desc())]
    Read(Errno),
    #[error("waiting for it: {}", .0.desc())]
    Wait(Errno),
}

fn sys_error(what: &'static str) -> impl Fn(Errno) -> HelperError {
    move |errno| SpawnError::Sys { what, errno }.into()
}

/// Runs `helper args…`, feeds it `request`, and returns the outcome it
/// reported. Every failure is an error, never an outcome. The helper must
/// be a root-owned executable nobody else can replace.
pub fn run_helper(
    helper: &Path,
    args: &[&str],
    request: &[u8],
    deadline: Duration,
) -> Result<HelperAnswer, HelperError> {
    run_helper_under(helper, trust::Rules::ROOT, args, request, deadline)
}

/// [`run_helper`] with the file-trust rules given: the spawner's own tests
/// run scripts they own, without root.
pub fn run_helper_under(
    helper: &Path,
    rules: trust::Rules,
    args: &[&str],
    request: &[u8],
    deadline: Duration,
) -> Result<HelperAnswer, HelperError> {
    let result = run_for_output(
        helper,
        rules,
        args,
        request,
        wire::MAX_RESULT_BYTES,
        deadline,
    )?;
    Ok(wire::decode_answer(&result)?)
}

/// Runs `helper module-settings --config CONFIG` under root's rules: the
/// module's settings as the helper makes them from the config, for the
/// module and chkpwd alike (neither parses the TOML itself).
pub fn make_module_settings(
    helper: &Path,
    config: &Path,
) -> Result<Zeroizing<Vec<u8>>, HelperError> {
    run_for_output(
        helper,
        trust::Rules::ROOT,
        &["module-settings", "--config", &config.to_string_lossy()],
        b"",
        authtoken_core::settings::MAX_SETTINGS_BYTES,
        authtoken_core::settings::COMPILE_DEADLINE,
    )
}

/// Runs `helper args…` the same way with `input` on its stdin, and returns
/// its stdout (at most `max_output` bytes) once it exited cleanly: for
/// answers other than a sign-in's (the module's settings).
pub fn run_for_output(
    helper: &Path,
    rules: trust::Rules,
    args: &[&str],
    input: &[u8],
    max_output: usize,
    deadline: Duration,
) -> Result<Zeroizing<Vec<u8>>, HelperError> {
    let executable = Executable {
        fd: above_stdio(open_helper(helper, rules)?)?,
        #[cfg(target_os = "macos")]
        path: CString::new(helper.as_os_str().as_encoded_bytes())
            .map_err(|_| SpawnError::Nul("helper path"))?,
    };
    let start = Instant::now();
    let prepared = Prepared::new(executable, args)?;
    // stdin is a socketpair rather than a pipe: a send on it cannot raise
    // SIGPIPE in the host if the helper has already died.
    let (request_end, child_stdin) =
        sys::request_channel().map_err(sys_error("request socketpair"))?;
    let (result_end, child_stdout) = sys::result_pipe().map_err(sys_error("result pipe"))?;
    let devnull = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| sys_error("open /dev/null")(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    let child_stdin = above_stdio(child_stdin)?;
    let child_stdout = above_stdio(child_stdout)?;
    let child_stderr = above_stdio(OwnedFd::from(devnull))?;

    let child = prepared.spawn(
        child_stdin.as_raw_fd(),
        child_stdout.as_raw_fd(),
        child_stderr.as_raw_fd(),
    )?;
    drop((child_stdin, child_stdout, child_stderr));

    let ends_at = start + deadline;
    // A helper that dies early shows up below as a crash, so a failed send
    // only stops the sending.
    let _ = send_request(&request_end, input, ends_at);
    drop(request_end);

    let result = match read_bounded(&result_end, max_output, ends_at) {
        Ok(result) => result,
        Err(ReadError::Timeout) => {
            child.kill_and_reap();
            return Err(HelperError::Timeout(deadline.as_millis()));
        }
        Err(ReadError::TooLarge) => {
            child.kill_and_reap();
            return Err(WireError::TooLarge(max_output).into());
        }
        Err(ReadError::Io(e)) => {
            child.kill_and_reap();
            return Err(Crash::Read(e).into());
        }
    };
    match child.wait_until(ends_at) {
        // Reaped elsewhere: the status is unknowable, and the complete,
        // well-formed output (the caller decodes it) decides.
        ExitKind::Success | ExitKind::ReapedElsewhere => Ok(result),
        ExitKind::Failed(crash) => Err(crash.into()),
        ExitKind::TimedOut => Err(HelperError::Timeout(deadline.as_millis())),
    }
}

/// The helper runs as root with the password: it must be a root-owned
/// executable nobody else can replace, reached through directories nobody
/// else can write. The descriptor returned is what gets executed.
fn open_helper(helper: &Path, rules: trust::Rules) -> Result<OwnedFd, HelperError> {
    trust::open_executable_under(helper, rules).map_err(|e| match e {
        TrustError::Missing { .. } => HelperError::Missing(helper.to_owned()),
        other => HelperError::Untrusted(other),
    })
}

/// Moves a descriptor to 3 or above so that the child's `dup2` onto 0–2
/// cannot clobber another of its descriptors (the host may have closed its
/// own stdio).
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, HelperError> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let moved = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
        .map_err(sys_error("F_DUPFD_CLOEXEC"))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// Everything the child needs, built before `fork` because the child may
/// only make async-signal-safe calls (the host can be multithreaded).
struct Prepared {
    executable: Executable,
    _args: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: [*const libc::c_char; 1],
    max_fd: libc::c_int,
}

impl Prepared {
    fn new(executable: Executable, args: &[&str]) -> Result<Prepared, HelperError> {
        let nul = |_| SpawnError::Nul("an argument");
        let mut owned = vec![CString::new("authtoken-helper").map_err(nul)?];
        for arg in args {
            owned.push(CString::new(*arg).map_err(nul)?);
        }
        let mut argv: Vec<*const libc::c_char> = owned.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let max_fd = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft.min(65_536) as libc::c_int)
            .unwrap_or(1024);
        Ok(Prepared {
            executable,
            _args: owned,
            argv,
            envp: [std::ptr::null()],
            max_fd,
        })
    }

    fn spawn(&self, stdin: RawFd, stdout: RawFd, stderr: RawFd) -> Result<Child, HelperError> {
        // SAFETY: the child branch only calls async-signal-safe functions on
        // memory prepared before the fork, then execs or `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(sys_error("fork")(Errno::last()));
        }
        if pid == 0 {
            // SAFETY: we are the freshly forked child; see `exec_child`.
            unsafe { self.exec_child(stdin, stdout, stderr) }
        }
        let pid = Pid::from_raw(pid);
        // The child does the same; whichever runs first wins, so the group
        // exists before any kill below can name it.
        let _ = nix::unistd::setpgid(pid, pid);
        Ok(Child::new(pid))
    }

    /// Child side of the fork. Never returns.
    ///
    /// # Safety
    /// Must only be called in the child right after `fork`.
    unsafe fn exec_child(&self, stdin: RawFd, stdout: RawFd, stderr: RawFd) -> ! {
        // SAFETY: sigemptyset/sigprocmask/signal/setpgid/chdir/dup2/fcntl/
        // syscall/close/_exit are async-signal-safe and only touch this
        // process's own state, on pointers prepared before the fork.
        unsafe {
            // The host may block, ignore or catch signals (exec keeps ignored
            // ones ignored); the helper starts with every default.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            for signal in 1..sys::NSIG {
                if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                    libc::signal(signal, libc::SIG_DFL);
                }
            }
            libc::setpgid(0, 0);
            if libc::chdir(c"/".as_ptr()) != 0 {
                libc::_exit(126);
            }
            if libc::dup2(stdin, 0) < 0 || libc::dup2(stdout, 1) < 0 || libc::dup2(stderr, 2) < 0 {
                libc::_exit(126);
            }
            // The executable moves to 3 (close-on-exec); the rest go.
            let executable = self.executable.fd.as_raw_fd();
            if executable != EXEC_FD
                && (libc::dup2(executable, EXEC_FD) != EXEC_FD
                    || libc::fcntl(EXEC_FD, libc::F_SETFD, libc::FD_CLOEXEC) != 0)
            {
                libc::_exit(126);
            }
            sys::close_from(EXEC_FD + 1, self.max_fd);
            sys::exec(
                &self.executable,
                EXEC_FD,
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            );
            libc::_exit(127)
        }
    }
}

/// Where the child holds the executable it runs.
const EXEC_FD: RawFd = 3;

/// Our one child. Dropping it without a reap kills and reaps it, so no
/// early return can leave a zombie or an orphan holding the password.
struct Child {
    pid: Pid,
    /// A pidfd, when the kernel has them, so a kill can never reach a
    /// recycled pid (relevant when the host ignores SIGCHLD).
    pidfd: Option<OwnedFd>,
    reaped: bool,
}

enum ExitKind {
    Success,
    /// The host ignores SIGCHLD or reaped it: the status is unknowable, and
    /// the complete, well-formed result decides.
    ReapedElsewhere,
    Failed(Crash),
    TimedOut,
}

impl Child {
    fn new(pid: Pid) -> Child {
        Child {
            pid,
            pidfd: sys::process_handle(pid),
            reaped: false,
        }
    }

    fn kill(&self) {
        // The helper's whole process group first: anything it started goes
        // too. The group exists while our unreaped child does.
        let _ = nix::sys::signal::killpg(self.pid, nix::sys::signal::Signal::SIGKILL);
        match &self.pidfd {
            Some(pidfd) => sys::kill_handle(pidfd),
            None => {
                // Without a pidfd, only signal a child that has not been reaped.
                if matches!(
                    waitpid(self.pid, Some(WaitPidFlag::WNOHANG)),
                    Ok(WaitStatus::StillAlive)
                ) {
                    let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
    }

    fn kill_and_reap(mut self) {
        self.kill();
        self.reap_blocking();
    }

    fn reap_blocking(&mut self) {
        while let Err(Errno::EINTR) = waitpid(self.pid, None) {}
        self.reaped = true;
    }

    /// Waits for the exit after the result was read, up to `ends_at`.
    fn wait_until(mut self, ends_at: Instant) -> ExitKind {
        let mut pause = Duration::from_millis(1);
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(WaitStatus::Exited(_, code)) => {
                    self.reaped = true;
                    return if code == 0 {
                        ExitKind::Success
                    } else {
                        ExitKind::Failed(Crash::Exit(code))
                    };
                }
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    self.reaped = true;
                    return ExitKind::Failed(Crash::Signal(signal));
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(Errno::ECHILD) => {
                    self.reaped = true;
                    return ExitKind::ReapedElsewhere;
                }
                Err(e) => {
                    self.kill_and_reap();
                    return ExitKind::Failed(Crash::Wait(e));
                }
            }
            if Instant::now() >= ends_at {
                self.kill_and_reap();
                return ExitKind::TimedOut;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            self.reap_blocking();
        }
    }
}

fn remaining(ends_at: Instant) -> Option<PollTimeout> {
    let left = ends_at.checked_duration_since(Instant::now())?;
    // Round up so a sub-millisecond remainder still waits, then cap to i32.
    let millis = (left.as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(millis).ok()
}

/// Waits until `fd` is ready for `events`, retrying on EINTR; `ETIMEDOUT`
/// once `ends_at` passes.
fn wait_ready(fd: &impl AsFd, events: PollFlags, ends_at: Instant) -> Result<(), Errno> {
    loop {
        let timeout = remaining(ends_at).ok_or(Errno::ETIMEDOUT)?;
        let mut fds = [PollFd::new(fd.as_fd(), events)];
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) => return Err(Errno::ETIMEDOUT),
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn send_request(fd: &OwnedFd, request: &[u8], ends_at: Instant) -> Result<(), Errno> {
    let mut sent = 0;
    while sent < request.len() {
        wait_ready(fd, PollFlags::POLLOUT, ends_at)?;
        match socket::send(fd.as_raw_fd(), &request[sent..], sys::SEND_FLAGS) {
            Ok(n) => sent += n,
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(e),
        }
    }
    socket::shutdown(fd.as_raw_fd(), socket::Shutdown::Write)
}

/// Why a bounded read ended without its bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    Timeout,
    TooLarge,
    Io(Errno),
}

/// Reads `fd` to EOF, at most `limit` bytes and until `ends_at`: the
/// helper's result here, and the setuid caller's request in chkpwd.
pub fn read_bounded(
    fd: &impl AsFd,
    limit: usize,
    ends_at: Instant,
) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let mut buf = Zeroizing::new(vec![0u8; limit + 1]);
    let mut len = 0;
    loop {
        match wait_ready(fd, PollFlags::POLLIN, ends_at) {
            Ok(()) => {}
            Err(Errno::ETIMEDOUT) => return Err(ReadError::Timeout),
            Err(e) => return Err(ReadError::Io(e)),
        }
        if len == buf.len() {
            return Err(ReadError::TooLarge);
        }
        match nix::unistd::read(fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    if len > limit {
        return Err(ReadError::TooLarge);
    }
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    //! The spawner against scripts standing in for the helper, without
    //! root: each script is a real child process, and what it does to its
    //! stdin, stdout and exit is what a helper could do.

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    use authtoken_core::outcome::Outcome;
    use authtoken_core::trust::Rules;

    struct Scripts {
        dir: tempfile::TempDir,
        rules: Rules,
    }

    impl Scripts {
        fn new() -> Scripts {
            let dir = tempfile::tempdir().unwrap();
            let uid = nix::unistd::geteuid().as_raw();
            Scripts {
                dir,
                rules: Rules {
                    also_owner: (uid != 0).then_some(uid),
                    private: false,
                },
            }
        }

        fn script(&self, name: &str, body: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        }

        fn run(
            &self,
            name: &str,
            body: &str,
            deadline_ms: u64,
        ) -> Result<HelperAnswer, HelperError> {
            let path = self.script(name, body);
            run_helper_under(
                &path,
                self.rules,
                &["authenticate"],
                b"{\"request\":1}\n",
                Duration::from_millis(deadline_ms),
            )
        }
    }

    const REJECTED: &str = r#"printf '{"v":1,"result":"rejected"}\n'"#;

    #[test]
    fn an_answer_is_read_and_the_request_arrives_on_stdin() {
        let scripts = Scripts::new();
        let seen = scripts.dir.path().join("seen");
        let answer = scripts
            .run(
                "echo",
                &format!("cat > '{}'; {REJECTED}", seen.display()),
                10_000,
            )
            .unwrap();
        assert!(matches!(answer.outcome, Outcome::Rejected));
        assert_eq!(std::fs::read(&seen).unwrap(), b"{\"request\":1}\n");
    }

    #[test]
    fn the_child_gets_an_empty_environment_and_no_stray_descriptors() {
        let scripts = Scripts::new();
        let seen = scripts.dir.path().join("seen");
        scripts
            .run(
                "env",
                &format!(
                    "{{ env; ls /proc/self/fd; }} > '{}'; {REJECTED}",
                    seen.display()
                ),
                10_000,
            )
            .unwrap();
        let seen = std::fs::read_to_string(&seen).unwrap();
        assert!(!seen.contains("HOME="), "{seen}");
        assert!(!seen.contains("RUST_"), "{seen}");
        // 0, 1, 2, and the one `ls` opens for /proc/self/fd (sh may keep
        // one for the script itself).
        let fds = seen.lines().filter(|l| l.parse::<u32>().is_ok()).count();
        assert!(fds <= 5, "{seen}");
    }

    #[test]
    fn a_helper_past_its_deadline_is_killed_with_its_group() {
        let scripts = Scripts::new();
        let pid_file = scripts.dir.path().join("grandchild.pid");
        let started = Instant::now();
        let result = scripts.run(
            "sleeper",
            &format!("sleep 30 & echo $! >{}; sleep 30", pid_file.display()),
            300,
        );
        assert!(
            matches!(result, Err(HelperError::Timeout(300))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        // What the helper started went with it: the background sleep is
        // gone (or a zombie waiting for init), well before its 30 s.
        let grandchild: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let alive = || {
            std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .ok()
                .and_then(|stat| {
                    let state = stat.rsplit(')').next()?.split_whitespace().next()?;
                    Some(state != "Z")
                })
                .unwrap_or(false)
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !alive(),
            "the helper's background child {grandchild} outlived it"
        );
    }

    #[test]
    fn exits_signals_and_bad_answers_are_errors_never_outcomes() {
        let scripts = Scripts::new();
        assert!(matches!(
            scripts.run("fails", &format!("{REJECTED}; exit 3"), 10_000),
            Err(HelperError::Crashed(Crash::Exit(3)))
        ));
        assert!(matches!(
            scripts.run("killed", "kill -SEGV $$", 10_000),
            Err(HelperError::Crashed(Crash::Signal(
                nix::sys::signal::Signal::SIGSEGV
            )))
        ));
        assert!(matches!(
            scripts.run("garbage", "echo '{\"v\":1,\"result\":\"token\"}'", 10_000),
            Err(HelperError::Result(_))
        ));
        assert!(matches!(
            scripts.run("silent", "exit 0", 10_000),
            Err(HelperError::Result(_))
        ));
        assert!(matches!(
            scripts.run("flood", "yes '{\"v\":1}'", 10_000),
            Err(HelperError::Result(WireError::TooLarge(_)))
        ));
    }

    #[test]
    fn only_a_trusted_executable_runs() {
        let scripts = Scripts::new();
        let missing = scripts.dir.path().join("missing");
        assert!(matches!(
            run_helper_under(&missing, scripts.rules, &[], b"", Duration::from_secs(1)),
            Err(HelperError::Missing(_))
        ));
        let path = scripts.script("writable", REJECTED);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            run_helper_under(&path, scripts.rules, &[], b"", Duration::from_secs(1)),
            Err(HelperError::Untrusted(TrustError::Writable { .. }))
        ));
        let link = scripts.dir.path().join("link");
        std::os::unix::fs::symlink(scripts.script("target", REJECTED), &link).unwrap();
        assert!(matches!(
            run_helper_under(&link, scripts.rules, &[], b"", Duration::from_secs(1)),
            Err(HelperError::Untrusted(TrustError::Symlink { .. }))
        ));
    }
}
