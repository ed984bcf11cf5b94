//! What the PAM module, its helper, chkpwd and the reference server share,
//! and nothing that talks to a network, does cryptography or parses the
//! config's TOML: the protocols' vocabulary (`kinds`), the module settings,
//! file trust, the session cache and its key, validated user names, the
//! outcome model and the module-helper wire format, logging.
//!
//! The module links this crate into security-critical hosts (sshd, sudo,
//! login, gdm), so it stays small: see docs/ARCHITECTURE.md. `unsafe` is
//! denied except for the macOS/FreeBSD system calls in `session/bsm.rs` and
//! `platform.rs`.

#![deny(unsafe_code)]

pub mod attempts;
pub mod cache;
pub mod clock;
pub mod kinds;
pub mod log;
pub mod offline;
pub mod options;
pub mod outcome;
pub mod paths;
pub mod platform;
pub mod secret;
pub mod session;
pub mod settings;
pub mod signin;
pub mod trust;
pub mod username;
pub mod wire;
