//! pam_authtoken: the PAM module. It signs users in through a
//! challenge/digest handshake with a token authority, which its helper
//! process runs; this crate carries no network or crypto code.
//!
//! Layout (docs/ARCHITECTURE.md): [`ffi`] is the only place that touches
//! libpam and implements [`pam_api::PamApi`]; [`policy`] decides, through
//! that trait and an injected [`policy::Host`]; the `authtoken-spawn` crate
//! runs the helper. `unsafe` is denied everywhere but in [`ffi`].

#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[allow(unsafe_code)]
mod ffi;
pub mod pam_api;
pub mod policy;

#[cfg(test)]
mod policy_tests;
