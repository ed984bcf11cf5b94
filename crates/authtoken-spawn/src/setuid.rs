//! What a setuid-root program must not inherit from its caller. Resource
//! limits, signal dispositions, the signal mask and the umask all survive
//! `execve` of a setuid file, so a caller could otherwise make a record
//! write fail (`RLIMIT_FSIZE` 0 with `SIGXFSZ` ignored), stop the program
//! mid-attempt, or leave a core file of its memory.

use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{setgid, setuid, Gid, Uid};

/// Descriptors a setuid program gets, whatever its caller had.
pub const OPEN_FILES: u64 = 1024;
const STACK_BYTES: u64 = 8 << 20;

/// Resets what the caller could have set, before anything else runs:
/// * limits: no file-size, CPU or data limit, an 8 MiB stack, no core
///   files, [`OPEN_FILES`] descriptors;
/// * signals: every one at its default and unblocked, then the ones a
///   terminal sends (interrupt, quit, stop, hang-up) and `SIGPIPE` ignored;
/// * the umask: 077;
/// * the real and saved ids: root's, like the effective ones, so the
///   caller can no longer signal the process (a caller may signal a
///   process whose real uid is its own).
///
/// Must run while the effective uid is root.
pub fn reset_inherited_state() -> Result<(), String> {
    let limits = [
        (Resource::RLIMIT_FSIZE, RLIM_INFINITY, RLIM_INFINITY),
        (Resource::RLIMIT_CPU, RLIM_INFINITY, RLIM_INFINITY),
        (Resource::RLIMIT_DATA, RLIM_INFINITY, RLIM_INFINITY),
        (Resource::RLIMIT_STACK, STACK_BYTES, RLIM_INFINITY),
        (Resource::RLIMIT_CORE, 0, 0),
        (Resource::RLIMIT_NOFILE, OPEN_FILES, OPEN_FILES),
    ];
    for (resource, soft, hard) in limits {
        setrlimit(resource, soft, hard).map_err(|e| format!("setrlimit {resource:?}: {e}"))?;
    }
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    setrlimit(Resource::RLIMIT_AS, RLIM_INFINITY, RLIM_INFINITY)
        .map_err(|e| format!("setrlimit RLIMIT_AS: {e}"))?;
    reset_signals();
    umask(Mode::from_bits_truncate(0o077));
    setgid(Gid::from_raw(0)).map_err(|e| format!("setgid: {e}"))?;
    setuid(Uid::from_raw(0)).map_err(|e| format!("setuid: {e}"))?;
    Ok(())
}

fn reset_signals() {
    // SAFETY: single-threaded at this point (the first thing main does);
    // sigprocmask and signal only change this process's own dispositions.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for signal in 1..crate::sys::NSIG {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        for signal in [
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGHUP,
            libc::SIGPIPE,
        ] {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
}
