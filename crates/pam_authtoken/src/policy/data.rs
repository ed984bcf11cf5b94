//! What one PAM handle keeps between its hooks (`pam_set_data`), each type
//! under the one key made for it.

use std::path::PathBuf;

use authtoken_core::cache::HandOff;
use authtoken_core::username::Username;
use zeroize::Zeroizing;

use crate::pam_api::DataKey;

/// The AuthToken of a successful handshake, kept for this PAM handle.
/// Zeroized when libpam runs the data cleanup (`Zeroizing` drop).
pub struct KeptToken {
    pub user: Username,
    pub token: Zeroizing<String>,
    /// When the authority said the token expires (seconds since the epoch).
    pub expires: Option<u64>,
    /// Withdrawn (its drop) with this data at `pam_end`: `sudo -v` and
    /// other handles that open no session leave no live token behind. A
    /// forked sshd child never ends its handle, so sshd's session still
    /// finds it.
    pub handoff: Option<HandOff>,
}

// SAFETY: "pam_authtoken.token" is used by this key alone (the three
// names here are distinct and prefixed with the module's name).
pub const TOKEN_KEY: DataKey<KeptToken> = unsafe { DataKey::new("pam_authtoken.token") };

/// The token file this handle's `open_session` created, which its
/// `close_session` removes. A file that already existed belongs to an
/// enclosing login session (sudo inside it) and is left in place.
pub struct OpenedSession {
    pub user: Username,
    pub path: PathBuf,
    /// `AUTHTOKEN_EXPIRES` was set beside `AUTHTOKEN_FILE`.
    pub expiry_exported: bool,
}

// SAFETY: "pam_authtoken.session" is used by this key alone (the three
// names here are distinct and prefixed with the module's name).
pub const OPENED_KEY: DataKey<OpenedSession> = unsafe { DataKey::new("pam_authtoken.session") };

/// The user this handle signed in offline (no token, so no token file).
pub struct SignedInOffline {
    pub user: Username,
}

// SAFETY: "pam_authtoken.offline" is used by this key alone (the three
// names here are distinct and prefixed with the module's name).
pub const OFFLINE_KEY: DataKey<SignedInOffline> = unsafe { DataKey::new("pam_authtoken.offline") };
