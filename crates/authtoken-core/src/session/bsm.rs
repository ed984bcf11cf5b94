//! macOS and FreeBSD: the BSM audit session (`getaudit_addr`) and the
//! process table (`proc_pidinfo` on macOS, the `kern.proc.pid` sysctl on
//! FreeBSD). The structures are declared from OpenBSM's `bsm/audit.h`,
//! which both systems ship.

use std::mem::{size_of, zeroed};

/// `au_mask_t`
#[repr(C)]
struct AuMask {
    am_success: libc::c_uint,
    am_failure: libc::c_uint,
}

/// `au_tid_addr_t` (`dev_t` is 32 bits on macOS, 64 on FreeBSD).
#[repr(C)]
struct AuTidAddr {
    at_port: libc::dev_t,
    at_type: u32,
    at_addr: [u32; 4],
}

/// `auditinfo_addr_t`
#[repr(C)]
struct AuditinfoAddr {
    ai_auid: libc::uid_t,
    ai_mask: AuMask,
    ai_termid: AuTidAddr,
    ai_asid: libc::pid_t,
    ai_flags: u64,
}

extern "C" {
    // In libSystem on macOS (libbsm's syscall wrapper), in libc on FreeBSD.
    fn getaudit_addr(info: *mut AuditinfoAddr, length: libc::c_int) -> libc::c_int;
}

/// The audit session id. Every macOS login (loginwindow, sshd, Terminal's
/// login) gets one from the kernel; on FreeBSD it is set when the kernel
/// audits and login or sshd started a session. 0 (`AU_DEFAUDITSID`) and
/// negative values mean "none".
pub(super) fn audit_session_id() -> Option<u32> {
    // SAFETY: `info` is a zeroed, correctly sized `auditinfo_addr_t` the
    // kernel fills; the length passed is its size.
    let (rc, info) = unsafe {
        let mut info: AuditinfoAddr = zeroed();
        let rc = getaudit_addr(&mut info, size_of::<AuditinfoAddr>() as libc::c_int);
        (rc, info)
    };
    if rc != 0 || info.ai_asid <= 0 {
        return None;
    }
    u32::try_from(info.ai_asid).ok()
}

/// There is no logind here.
pub(super) fn logind_session() -> Option<String> {
    None
}

/// The start time (microseconds since the epoch) of `pid` if it is alive
/// and leads its own session, so a recycled pid never matches.
pub(super) fn leader_start_time(pid: i32) -> Option<u64> {
    if pid <= 0
        || nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid)))
            .ok()?
            .as_raw()
            != pid
    {
        return None;
    }
    let (seconds, micros) = process_start(pid)?;
    seconds.checked_mul(1_000_000)?.checked_add(micros)
}

#[cfg(target_os = "macos")]
fn process_start(pid: i32) -> Option<(u64, u64)> {
    let size = size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: `info` is a zeroed `proc_bsdinfo` of `size` bytes, which is
    // what PROC_PIDTBSDINFO writes; the return value is the bytes written.
    let (written, info) = unsafe {
        let mut info: libc::proc_bsdinfo = zeroed();
        let written = libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        );
        (written, info)
    };
    (written == size).then_some((info.pbi_start_tvsec, info.pbi_start_tvusec))
}

#[cfg(target_os = "freebsd")]
fn process_start(pid: i32) -> Option<(u64, u64)> {
    let mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PID, pid];
    let mut len = size_of::<libc::kinfo_proc>();
    // SAFETY: `info` is a zeroed `kinfo_proc` of `len` bytes; the kernel
    // writes at most `len` bytes and reports how many.
    let (rc, info) = unsafe {
        let mut info: libc::kinfo_proc = zeroed();
        let rc = libc::sysctl(
            mib.as_ptr(),
            mib.len() as libc::c_uint,
            (&mut info as *mut libc::kinfo_proc).cast(),
            &mut len,
            std::ptr::null(),
            0,
        );
        (rc, info)
    };
    if rc != 0 || len != size_of::<libc::kinfo_proc>() || info.ki_pid != pid {
        return None;
    }
    let seconds = u64::try_from(info.ki_start.tv_sec).ok()?;
    let micros = u64::try_from(info.ki_start.tv_usec).ok()?;
    Some((seconds, micros))
}

/// Neither system lists the audit sessions in use cheaply, so liveness of
/// an audit-keyed entry is unknown and it is kept until `close_session`
/// or reboot (`/var/run` is cleared at boot).
pub(super) fn live_audit_session_ids() -> Option<Vec<u32>> {
    None
}
