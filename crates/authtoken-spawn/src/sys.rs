//! The system calls of the spawn that differ between Linux, FreeBSD and
//! macOS. Everything called in the child is async-signal-safe.

use std::os::fd::{OwnedFd, RawFd};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::Pid;

/// One past the highest signal number.
#[cfg(target_os = "linux")]
pub(crate) const NSIG: libc::c_int = 65;
#[cfg(target_os = "freebsd")]
pub(crate) const NSIG: libc::c_int = 129; // _SIG_MAXSIG + 1
#[cfg(target_os = "macos")]
pub(crate) const NSIG: libc::c_int = 32;

/// The request channel: a socketpair, because sending on it can be told
/// not to raise SIGPIPE in the host if the helper has already died.
pub(crate) fn request_channel() -> nix::Result<(OwnedFd, OwnedFd)> {
    #[cfg(not(target_os = "macos"))]
    {
        socket::socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
    }
    // macOS has no SOCK_CLOEXEC or MSG_NOSIGNAL: mark both ends
    // close-on-exec (a host thread forking in between could inherit them,
    // which exec-time closing in our own child still covers) and ask the
    // sending end for no SIGPIPE.
    #[cfg(target_os = "macos")]
    {
        let (ours, theirs) = socket::socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::empty(),
        )?;
        set_cloexec(&ours)?;
        set_cloexec(&theirs)?;
        let on: libc::c_int = 1;
        // SAFETY: SO_NOSIGPIPE takes an int flag; `on` outlives the call.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&ours),
                libc::SOL_SOCKET,
                libc::SO_NOSIGPIPE,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        nix::errno::Errno::result(rc)?;
        Ok((ours, theirs))
    }
}

/// Flags for every send on the request channel.
#[cfg(not(target_os = "macos"))]
pub(crate) const SEND_FLAGS: MsgFlags = MsgFlags::MSG_NOSIGNAL.union(MsgFlags::MSG_DONTWAIT);
#[cfg(target_os = "macos")]
pub(crate) const SEND_FLAGS: MsgFlags = MsgFlags::MSG_DONTWAIT;

/// The result pipe, close-on-exec at both ends.
pub(crate) fn result_pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    #[cfg(not(target_os = "macos"))]
    {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
    }
    #[cfg(target_os = "macos")]
    {
        let (read, write) = nix::unistd::pipe()?;
        set_cloexec(&read)?;
        set_cloexec(&write)?;
        Ok((read, write))
    }
}

#[cfg(target_os = "macos")]
fn set_cloexec(fd: &OwnedFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(drop)
}

/// Closes every descriptor from `first` up.
///
/// # Safety
/// Only in the child after `fork`: it closes descriptors nothing tracks.
pub(crate) unsafe fn close_from(first: RawFd, max_fd: RawFd) {
    #[cfg(target_os = "linux")]
    // SAFETY: close_range takes plain integers.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, first as u32, u32::MAX, 0u32) } == 0;
    #[cfg(target_os = "freebsd")]
    // SAFETY: close_range takes plain integers.
    let closed = unsafe { libc::close_range(first as u32, u32::MAX, 0) } == 0;
    #[cfg(target_os = "macos")]
    let closed = false;
    if !closed {
        for fd in first..max_fd {
            // SAFETY: close on any integer is harmless in the child.
            unsafe { libc::close(fd) };
        }
    }
}

/// What the child executes: the checked descriptor where the system can
/// run a descriptor, else the checked path.
pub(crate) struct Executable {
    pub fd: OwnedFd,
    /// macOS has neither `execveat` nor `fexecve`: it runs the path. The
    /// trust walk has just checked that only root can change any directory
    /// on it, so the file run is one root put there.
    #[cfg(target_os = "macos")]
    pub path: std::ffi::CString,
}

/// Executes `exe` (already at `exec_fd` in the child) with `argv`/`envp`;
/// returns only on failure, with errno set.
///
/// # Safety
/// Only in the child after `fork`; `argv` and `envp` are null-terminated
/// arrays of NUL-terminated strings.
pub(crate) unsafe fn exec(
    exe: &Executable,
    exec_fd: RawFd,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) {
    #[cfg(target_os = "linux")]
    {
        let _ = exe;
        // SAFETY: per the contract; an empty path with AT_EMPTY_PATH runs
        // the descriptor itself.
        let run = || unsafe {
            libc::syscall(
                libc::SYS_execveat,
                exec_fd,
                c"".as_ptr(),
                argv,
                envp,
                libc::AT_EMPTY_PATH,
            )
        };
        run();
        retry_script(exec_fd, run);
    }
    #[cfg(target_os = "freebsd")]
    {
        let _ = exe;
        // SAFETY: per the contract; `exec_fd` was opened O_EXEC.
        let run = || unsafe { libc::fexecve(exec_fd, argv, envp) };
        run();
        retry_script(exec_fd, run);
    }
    #[cfg(target_os = "macos")]
    {
        let _ = exec_fd;
        // SAFETY: per the contract; `path` is NUL-terminated.
        unsafe { libc::execve(exe.path.as_ptr(), argv, envp) };
    }
}

/// A script's interpreter reopens it as /dev/fd/N, which close-on-exec
/// would hide (ENOENT): keep the descriptor open for it and try again.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
fn retry_script<R>(exec_fd: RawFd, run: impl Fn() -> R) {
    if nix::errno::Errno::last_raw() == libc::ENOENT {
        // SAFETY: clears FD_CLOEXEC on our own descriptor.
        unsafe { libc::fcntl(exec_fd, libc::F_SETFD, 0) };
        run();
    }
}

/// A descriptor for the child process where the kernel has them (Linux
/// pidfd), so a kill can never reach a recycled pid.
pub(crate) fn process_handle(pid: Pid) -> Option<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        // SAFETY: pidfd_open returned a fresh descriptor owned by nobody else.
        (raw >= 0).then(|| unsafe { std::os::fd::FromRawFd::from_raw_fd(raw as RawFd) })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// SIGKILL through a [`process_handle`].
pub(crate) fn kill_handle(handle: &OwnedFd) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal on our own valid pidfd, no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                handle.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = handle;
}
