//! The FFI boundary: the `pam_sm_*` entry points and a small safe wrapper
//! over the libpam calls the policy in [`crate::module`] needs. Every
//! `unsafe` in the module side of the crate lives here.

use std::ffi::{CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use pam::constants::{PamFlag, PamResultCode, PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_SILENT};
use pam::conv::Conv;
use pam::items::{AuthTok, RHost, Service, Tty};
use pam::module::{PamHandle, PamHooks};
use zeroize::Zeroizing;

use crate::module;

const PAM_AUTHTOK_ITEM: libc::c_int = 6;

#[link(name = "pam")]
extern "C" {
    fn pam_get_user(
        pamh: *mut PamHandle,
        user: *mut *const libc::c_char,
        prompt: *const libc::c_char,
    ) -> libc::c_int;
    fn pam_set_item(
        pamh: *mut PamHandle,
        item_type: libc::c_int,
        item: *const libc::c_void,
    ) -> libc::c_int;
    fn pam_putenv(pamh: *mut PamHandle, name_value: *const libc::c_char) -> libc::c_int;
}

/// A raw libpam return value as a result code (unknown ones as system errors).
fn to_code(rc: libc::c_int) -> PamResultCode {
    PamResultCode::try_from(rc).unwrap_or(PamResultCode::PAM_SYSTEM_ERR)
}

/// Runs a hook body, turning a panic into `on_panic` so no unwind crosses
/// into C. (pam-bindings' own guard would answer `PAM_ABORT`; we want the
/// fail-closed code of each hook.)
fn guarded(on_panic: PamResultCode, body: impl FnOnce() -> PamResultCode) -> PamResultCode {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(code) => code,
        Err(payload) => {
            // Dropping a panic payload can itself panic; never let that escape.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            crate::log::send(
                module::LOG_IDENT,
                crate::log::Level::Error,
                "internal error (panic) contained at the PAM boundary",
            );
            on_panic
        }
    }
}

struct AuthTokenModule;
pam::pam_hooks!(AuthTokenModule);

impl PamHooks for AuthTokenModule {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guarded(PamResultCode::PAM_AUTHINFO_UNAVAIL, || {
            module::authenticate(&mut Pam::new(pamh, flags), &args)
        })
    }

    fn sm_setcred(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guarded(PamResultCode::PAM_CRED_ERR, || {
            module::setcred(&mut Pam::new(pamh, flags), &args)
        })
    }

    fn acct_mgmt(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guarded(PamResultCode::PAM_PERM_DENIED, || {
            module::acct_mgmt(&mut Pam::new(pamh, flags), &args)
        })
    }

    fn sm_open_session(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guarded(PamResultCode::PAM_SESSION_ERR, || {
            module::open_session(&mut Pam::new(pamh, flags), &args)
        })
    }

    fn sm_close_session(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guarded(PamResultCode::PAM_SESSION_ERR, || {
            module::close_session(&mut Pam::new(pamh, flags), &args)
        })
    }

    fn sm_chauthtok(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guarded(PamResultCode::PAM_SERVICE_ERR, || {
            module::chauthtok(&mut Pam::new(pamh, flags), &args)
        })
    }
}

/// A PAM handle for the duration of one hook call, with safe accessors.
pub struct Pam<'a> {
    handle: &'a mut PamHandle,
    flags: PamFlag,
}

impl<'a> Pam<'a> {
    fn new(handle: &'a mut PamHandle, flags: PamFlag) -> Self {
        Pam { handle, flags }
    }

    pub fn silent(&self) -> bool {
        self.flags & PAM_SILENT != 0
    }

    /// The user name as raw bytes (it is validated by the caller), asking
    /// through the conversation if the application has not set it.
    pub fn user(&mut self) -> Result<Vec<u8>, PamResultCode> {
        let mut ptr: *const libc::c_char = std::ptr::null();
        // SAFETY: `handle` is the live handle libpam passed to this hook; a
        // null prompt asks libpam for its default; `ptr` is an out-parameter.
        let rc = unsafe { pam_get_user(self.handle, &mut ptr, std::ptr::null()) };
        if rc != PamResultCode::PAM_SUCCESS as libc::c_int {
            return Err(to_code(rc));
        }
        if ptr.is_null() {
            return Err(PamResultCode::PAM_USER_UNKNOWN);
        }
        // SAFETY: on success libpam returns a NUL-terminated string it owns,
        // valid until the item changes; we copy it at once.
        Ok(unsafe { CStr::from_ptr(ptr) }.to_bytes().to_vec())
    }

    pub fn service(&self) -> String {
        self.handle
            .get_item::<Service>()
            .ok()
            .flatten()
            .map(|s| s.0.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn tty(&self) -> String {
        self.handle
            .get_item::<Tty>()
            .ok()
            .flatten()
            .map(|s| s.0.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn rhost(&self) -> String {
        self.handle
            .get_item::<RHost>()
            .ok()
            .flatten()
            .map(|s| s.0.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `PAM_AUTHTOK` as set by an earlier module, if any.
    pub fn authtok(&self) -> Option<Zeroizing<Vec<u8>>> {
        let item = self.handle.get_item::<AuthTok>().ok().flatten()?;
        Some(Zeroizing::new(item.as_bytes().to_vec()))
    }

    /// Sets `PAM_AUTHTOK` so later modules can reuse the password.
    pub fn set_authtok(&mut self, password: &[u8]) -> Result<(), PamResultCode> {
        if password.contains(&0) {
            return Err(PamResultCode::PAM_BUF_ERR);
        }
        let mut c_password = Zeroizing::new(Vec::with_capacity(password.len() + 1));
        c_password.extend_from_slice(password);
        c_password.push(0);
        // SAFETY: libpam copies the NUL-terminated string; our buffer stays
        // alive for the call and is zeroized afterwards.
        let rc = unsafe { pam_set_item(self.handle, PAM_AUTHTOK_ITEM, c_password.as_ptr().cast()) };
        match to_code(rc) {
            PamResultCode::PAM_SUCCESS => Ok(()),
            other => Err(other),
        }
    }

    /// Asks for a secret with echo off.
    pub fn prompt_secret(&self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, PamResultCode> {
        let conv = self
            .handle
            .get_item::<Conv>()?
            .ok_or(PamResultCode::PAM_CONV_ERR)?;
        let answer = conv
            .send(PAM_PROMPT_ECHO_OFF, prompt)?
            .ok_or(PamResultCode::PAM_CONV_ERR)?;
        Ok(Zeroizing::new(answer.as_bytes().to_vec()))
    }

    /// Shows an error line to the user (not under `PAM_SILENT`). Used rather
    /// than `PAM_TEXT_INFO`, which sshd's keyboard-interactive only shows
    /// with the next prompt (OpenSSH bug 2876).
    pub fn error_message(&self, text: &str) {
        if self.silent() {
            return;
        }
        if let Ok(Some(conv)) = self.handle.get_item::<Conv>() {
            let _ = conv.send(PAM_ERROR_MSG, text);
        }
    }

    /// Module data stored under `key`. Each key is only ever stored with one
    /// type, [`module::DataKey`] ties them together.
    pub fn get_data<T: 'static>(&self, key: module::DataKey<T>) -> Option<&T> {
        // SAFETY: every key is a `DataKey<T>` constant and is only ever
        // written by `set_typed_data` with that same `T`.
        unsafe { self.handle.get_data::<T>(key.name).ok() }
    }

    /// Stores module data for later hooks of this PAM handle; `T`'s `Drop`
    /// runs in libpam's cleanup callback.
    pub fn set_typed_data<T: 'static>(
        &mut self,
        key: module::DataKey<T>,
        value: T,
    ) -> Result<(), PamResultCode> {
        self.handle.set_data(key.name, Box::new(value))
    }

    /// `pam_putenv`: `NAME=value` sets, a bare `NAME` removes.
    pub fn putenv(&mut self, name_value: &str) -> Result<(), PamResultCode> {
        let c = CString::new(name_value).map_err(|_| PamResultCode::PAM_BUF_ERR)?;
        // SAFETY: libpam copies the NUL-terminated string.
        let rc = unsafe { pam_putenv(self.handle, c.as_ptr()) };
        match to_code(rc) {
            PamResultCode::PAM_SUCCESS => Ok(()),
            other => Err(other),
        }
    }
}
