//! What the PAM policy needs from libpam, as a trait: the FFI implements it
//! over a real `pam_handle_t`, and unit tests drive the policy through a
//! scripted implementation without root or libpam.

use std::marker::PhantomData;

use authtoken_core::options::ModuleOptions;
use authtoken_core::outcome::PamCode;
use authtoken_core::wire::MAX_PASSWORD_BYTES;
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

/// Why no password came.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordError {
    /// `use_first_pass`, and no earlier module set `PAM_AUTHTOK`.
    NoFirstPass,
    /// The conversation (or the library asking through it) failed.
    Conversation(PamCode),
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
    /// `pam_putenv`: `NAME=value` sets, a bare `NAME` removes (OpenPAM,
    /// which cannot remove, leaves it empty).
    fn putenv(&mut self, name_value: &str) -> Result<(), PamCode>;
    /// Module data stored under `key` by an earlier hook of this handle.
    fn get_data<T: 'static>(&self, key: DataKey<T>) -> Option<&T>;
    /// Stores module data for later hooks; `T`'s `Drop` runs when libpam
    /// cleans up the handle.
    fn set_data<T: 'static>(&mut self, key: DataKey<T>, value: T) -> Result<(), PamCode>;
    /// The password to check: an earlier module's (`use_first_pass`,
    /// `try_first_pass`) or one asked for with `prompt`, which later modules
    /// then find as `PAM_AUTHTOK`. OpenPAM's libpam does all of this itself
    /// (`pam_get_authtok`, reading the options from the policy line, with
    /// its `authtok_prompt` option and `PAM_AUTHTOK_PROMPT` item), and its
    /// FFI says so; elsewhere, [`first_pass_or_prompt`].
    fn password(
        &mut self,
        options: &ModuleOptions,
        prompt: &str,
    ) -> Result<Zeroizing<Vec<u8>>, PasswordError> {
        first_pass_or_prompt(self, options, prompt)
    }
}

/// Linux-PAM's way, which the module does itself: the earlier module's
/// password if the options allow it, else the conversation's, stored as
/// `PAM_AUTHTOK` unless it is one the module refuses anyway.
pub fn first_pass_or_prompt<P: PamApi + ?Sized>(
    pam: &mut P,
    options: &ModuleOptions,
    prompt: &str,
) -> Result<Zeroizing<Vec<u8>>, PasswordError> {
    if options.use_first_pass || options.try_first_pass {
        if let Some(password) = pam.authtok() {
            return Ok(password);
        }
        if options.use_first_pass {
            return Err(PasswordError::NoFirstPass);
        }
    }
    let password = pam
        .prompt_secret(prompt)
        .map_err(PasswordError::Conversation)?;
    if !password.is_empty() && password.len() <= MAX_PASSWORD_BYTES {
        // Failing to share the password with later modules is not fatal.
        let _ = pam.set_authtok(&password);
    }
    Ok(password)
}
