//! `libnss_authtoken.so.2`: the NSS half of pam_authtoken. It answers
//! `passwd`, `group` and `initgroups` for the network users that
//! `authtoken sync` wrote to the cache (`/var/lib/authtoken/nss/directory`),
//! and nothing else: no network, no helper, no daemon, no threads, no
//! locks. glibc loads it into every process that looks up a user,
//! including sshd before authentication, so every call is a few `pread`s of
//! one file and returns at once; a missing or unreadable cache is
//! `NSS_STATUS_UNAVAIL`, and the next source in `nsswitch.conf` decides.
//!
//! The glibc ABI is written out by hand in [`ffi`] (the `libnss` crate is
//! LGPL-3.0, and linking it statically would put relinking obligations on
//! everyone who ships this MIT package). [`entry`] lays records out in the
//! caller's buffer without `unsafe`, so the layout is unit-tested.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod entry;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod ffi;

/// Where the cache is: fixed at build time, never from the environment
/// (setuid programs such as `su` load this module too).
pub const CACHE: &str = authtoken_core::platform::NSS_CACHE;
