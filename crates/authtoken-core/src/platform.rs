//! Where things live on each system, and the one fact about the machine
//! the protocols need (its hardware or installation UUID).
//!
//! macOS: `/etc`, `/var` and `/tmp` are symlinks into `/private`, and the
//! trust walk refuses symlinks, so the defaults name the real directories.
//! Modules and helpers go under `/usr/local` (the system volume is
//! read-only). FreeBSD keeps third-party files under `/usr/local` too.

#[cfg(target_os = "linux")]
mod defaults {
    pub const CONFIG: &str = "/etc/authtoken/authtoken.toml";
    pub const HELPER: &str = "/usr/libexec/authtoken/authtoken-helper";
    pub const CHKPWD: &str = "/usr/libexec/authtoken/authtoken-chkpwd";
    pub const CACHE_DIR: &str = "/run/authtoken";
    pub const OFFLINE_DIR: &str = "/var/lib/authtoken/offline";
    pub const NSS_CACHE: &str = "/var/lib/authtoken/nss/directory";
    pub const HELPER_USER: &str = "authtoken";
    /// systemd's machine id: 32 hex digits.
    pub const HOST_ID_SOURCE: &str = "/etc/machine-id";
}

#[cfg(target_os = "macos")]
mod defaults {
    pub const CONFIG: &str = "/private/etc/authtoken/authtoken.toml";
    pub const HELPER: &str = "/usr/local/libexec/authtoken/authtoken-helper";
    pub const CHKPWD: &str = "/usr/local/libexec/authtoken/authtoken-chkpwd";
    pub const CACHE_DIR: &str = "/private/var/run/authtoken";
    pub const OFFLINE_DIR: &str = "/private/var/db/authtoken/offline";
    pub const NSS_CACHE: &str = "/private/var/db/authtoken/nss/directory";
    /// macOS names service accounts with a leading underscore.
    pub const HELPER_USER: &str = "_authtoken";
    /// The hardware UUID (`IOPlatformUUID`), which is also the Mac's MDM UDID.
    pub const HOST_ID_SOURCE: &str = "gethostuuid(2)";
}

#[cfg(target_os = "freebsd")]
mod defaults {
    pub const CONFIG: &str = "/usr/local/etc/authtoken/authtoken.toml";
    pub const HELPER: &str = "/usr/local/libexec/authtoken/authtoken-helper";
    pub const CHKPWD: &str = "/usr/local/libexec/authtoken/authtoken-chkpwd";
    pub const CACHE_DIR: &str = "/var/run/authtoken";
    pub const OFFLINE_DIR: &str = "/var/db/authtoken/offline";
    pub const NSS_CACHE: &str = "/var/db/authtoken/nss/directory";
    pub const HELPER_USER: &str = "authtoken";
    /// Written by rc.d/hostid at first boot: a UUID.
    pub const HOST_ID_SOURCE: &str = "/etc/hostid";
}

pub use defaults::{
    CACHE_DIR, CHKPWD, CONFIG, HELPER, HELPER_USER, HOST_ID_SOURCE, NSS_CACHE, OFFLINE_DIR,
};

/// The machine's id as text (32 hex digits or a hyphenated UUID), read from
/// [`HOST_ID_SOURCE`].
#[cfg(not(target_os = "macos"))]
pub fn host_id() -> std::io::Result<String> {
    std::fs::read_to_string(HOST_ID_SOURCE)
}

#[cfg(target_os = "macos")]
#[allow(unsafe_code)]
pub fn host_id() -> std::io::Result<String> {
    let mut id = [0u8; 16];
    let wait = libc::timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    // SAFETY: `id` is the 16-byte uuid_t the call fills; `wait` outlives it.
    let rc = unsafe { libc::gethostuuid(id.as_mut_ptr(), &wait) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(uuid::Uuid::from_bytes(id).hyphenated().to_string())
}

/// Drops every supplementary group (root only).
#[cfg(not(target_os = "macos"))]
pub fn clear_supplementary_groups() -> nix::Result<()> {
    nix::unistd::setgroups(&[])
}

/// nix leaves `setgroups` out on macOS (its group limits differ); an empty
/// list is valid there too.
#[cfg(target_os = "macos")]
#[allow(unsafe_code)]
pub fn clear_supplementary_groups() -> nix::Result<()> {
    // SAFETY: zero groups, so the pointer is never read.
    let rc = unsafe { libc::setgroups(0, std::ptr::null()) };
    nix::errno::Errno::result(rc).map(drop)
}
