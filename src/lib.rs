//! pam_authtoken: a PAM module that signs users in through a challenge/digest
//! handshake with a token authority, plus the pieces its helper and reference
//! server share.
//!
//! Layout: [`ffi`] is the only place that touches libpam; [`module`] holds
//! the PAM policy; [`spawn`] runs the helper; [`protocol`] is pure protocol
//! logic with no I/O; [`config`] and [`wire`] are shared by all binaries.

pub mod cache;
pub mod config;
pub mod log;
pub mod outcome;
pub mod protocol;
pub mod trust;
pub mod username;
pub mod wire;

mod ffi;
mod module;
mod spawn;
