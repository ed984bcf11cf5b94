//! What a setuid-root program must not inherit from its caller. Resource
//! limits, signal dispositions, the signal mask and the umask all survive
//! `execve` of a setuid file, so a caller could otherwise make a record
//! write fail (`RLIMIT_FSIZE` 0 with `SIGXFSZ` ignored), stop the program
//! mid-attempt, or leave a core file of its memory.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{setgid, setuid, Gid, Uid};

/// Descriptors a setuid program gets, whatever its caller had.
pub const OPEN_FILES: libc::rlim_t = 1024;
const STACK_BYTES: libc::rlim_t = 8 << 20;

/// Resets what the caller could have set, before anything else runs:
/// * descriptors 0–2: opened on `/dev/null` where the caller closed them;
/// * limits: no file-size, CPU or data limit, an 8 MiB stack, no core
///   files, [`OPEN_FILES`] descriptors (and no address-space limit on
///   Linux);
/// * signals: every one at its default and unblocked, then the ones a
///   terminal sends (interrupt, quit, stop, hang-up) and `SIGPIPE` ignored;
/// * the umask: 077;
/// * the real and saved ids: root's, like the effective ones, so the
///   caller can no longer signal the process (a caller may signal a
///   process whose real uid is its own).
///
/// Must run while the effective uid is root.
pub fn reset_inherited_state() -> Result<(), String> {
    open_standard_descriptors()?;
    let limits = [
        (Resource::RLIMIT_FSIZE, RLIM_INFINITY, RLIM_INFINITY),
        (Resource::RLIMIT_CPU, RLIM_INFINITY, RLIM_INFINITY),
        (Resource::RLIMIT_DATA, RLIM_INFINITY, RLIM_INFINITY),
        (Resource::RLIMIT_STACK, STACK_BYTES, RLIM_INFINITY),
        (Resource::RLIMIT_CORE, 0, 0),
        (Resource::RLIMIT_NOFILE, OPEN_FILES, OPEN_FILES),
        // FreeBSD's address-space limit is RLIMIT_VMEM, which nix does not
        // name; its data and stack limits are reset above.
        #[cfg(target_os = "linux")]
        (Resource::RLIMIT_AS, RLIM_INFINITY, RLIM_INFINITY),
    ];
    for (resource, soft, hard) in limits {
        set_limit(resource, soft, hard);
    }
    // What must hold for an attempt to be recorded and checked at all;
    // if the caller's hard limits keep it from holding, refuse.
    for (resource, least) in [
        (Resource::RLIMIT_FSIZE, 1 << 20),
        (Resource::RLIMIT_NOFILE, 64),
    ] {
        let (soft, _) = getrlimit(resource).map_err(|e| format!("getrlimit {resource:?}: {e}"))?;
        if soft != RLIM_INFINITY && soft < least {
            return Err(format!(
                "the caller's hard {resource:?} ({soft}) cannot be raised to {least}"
            ));
        }
    }
    reset_signals();
    umask(Mode::from_bits_truncate(0o077));
    setgid(Gid::from_raw(0)).map_err(|e| format!("setgid: {e}"))?;
    setuid(Uid::from_raw(0)).map_err(|e| format!("setuid: {e}"))?;
    Ok(())
}

/// Sets a limit; where the hard limit cannot be raised (no
/// `CAP_SYS_RESOURCE`, as in some containers), takes the soft limit as
/// close to `soft` as the hard one allows.
fn set_limit(resource: Resource, soft: libc::rlim_t, hard: libc::rlim_t) {
    if setrlimit(resource, soft, hard).is_ok() {
        return;
    }
    if let Ok((_, current_hard)) = getrlimit(resource) {
        let reachable = if current_hard == RLIM_INFINITY {
            soft
        } else if soft == RLIM_INFINITY {
            current_hard
        } else {
            soft.min(current_hard)
        };
        let _ = setrlimit(resource, reachable, current_hard);
    }
}

/// A caller may start us with stdin, stdout or stderr closed, so that the
/// next file we open takes that number and our output lands in it: each
/// closed one is opened on `/dev/null` first (as sudo and unix_chkpwd do).
fn open_standard_descriptors() -> Result<(), String> {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only asks whether this process has `fd` open.
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
            && nix::errno::Errno::last() == nix::errno::Errno::EBADF;
        if closed {
            // The lowest free number is `fd`: the ones below are open.
            let null = std::fs::File::options()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| format!("/dev/null: {e}"))?;
            if std::os::fd::IntoRawFd::into_raw_fd(null) != fd {
                return Err(format!("descriptor {fd} could not be reopened"));
            }
        }
    }
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
