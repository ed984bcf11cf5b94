//! What the PAM policy needs from libpam, as a trait: the FFI implements it
//! over a real `pam_handle_t`, and unit tests drive the policy through a
//! scripted implementation without root or libpam.

use std::marker::PhantomData;

use authtoken_core::outcome::PamCode;
use zeroize::Zeroizing;

/// A `pam_set_data` key bound to the one type stored under it. Part of the
/// FFI's `unsafe` contract: data read back under a key is assumed to be of
/// that key's type, so making a key is `unsafe` (see [`DataKey::new`]).
pub struct DataKey<T> {
    pub name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for DataKey<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for DataKey<T> {}

impl<T> DataKey<T> {
    /// # Safety
    ///
    /// `name` must belong to this key alone: no other `DataKey` (of any
    /// type) and no other code in the process may store data under it,
    /// because [`PamApi::get_data`] reads whatever is stored there as a `T`.
    /// A second key with the same name and another type would make that
    /// safe call undefined behaviour.
    #[allow(unsafe_code)] // the contract is the point; nothing unsafe runs
    pub const unsafe fn new(name: &'static str) -> Self {
        DataKey {
            name,
            _type: PhantomData,
        }
    }
}

/// One PAM transaction as the policy sees it.
pub trait PamApi {
    /// The user name as raw bytes (validated by the caller), asking through
    /// the conversation if the application has not set it.
    fn user(&mut self) -> Result<Vec<u8>, PamCode>;
    /// `PAM_SERVICE`, or empty.
    fn service(&self) -> String;
    /// `PAM_AUTHTOK` as set by an earlier module, if any.
    fn authtok(&self) -> Option<Zeroizing<Vec<u8>>>;
    /// Sets `PAM_AUTHTOK` so later modules can reuse the password.
    fn set_authtok(&mut self, password: &[u8]) -> Result<(), PamCode>;
    /// Asks for a secret with echo off.
    fn prompt_secret(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, PamCode>;
    /// Shows an error line to the user (not under `PAM_SILENT`). Used rather
    /// than `PAM_TEXT_INFO`, which sshd's keyboard-interactive only shows
    /// with the next prompt (OpenSSH bug 2876).
    fn error_message(&mut self, text: &str);
    /// `pam_putenv`: `NAME=value` sets, a bare `NAME` removes.
    fn putenv(&mut self, name_value: &str) -> Result<(), PamCode>;
    /// Module data stored under `key` by an earlier hook of this handle.
    fn get_data<T: 'static>(&self, key: DataKey<T>) -> Option<&T>;
    /// Stores module data for later hooks; `T`'s `Drop` runs when libpam
    /// cleans up the handle.
    fn set_data<T: 'static>(&mut self, key: DataKey<T>, value: T) -> Result<(), PamCode>;
}
