//! The FFI boundary: the `pam_sm_*` entry points and [`PamApi`] over a real
//! `pam_handle_t`. Every `unsafe` of the module outside the helper spawn
//! lives here, and so does the one mapping of [`PamCode`] to libpam's
//! numbers.

use std::ffi::{CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use authtoken_core::log::{self, Level};
use authtoken_core::outcome::PamCode;
use pam::constants::{PamFlag, PamResultCode, PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_SILENT};
use pam::conv::Conv;
use pam::items::{AuthTok, Service};
use pam::module::{PamHandle, PamHooks};
use zeroize::Zeroizing;

use crate::pam_api::{DataKey, PamApi};
use crate::policy::{self, RealHost};

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

/// The one place where the policy's results become libpam's numbers.
pub fn platform_code(code: PamCode) -> PamResultCode {
    match code {
        PamCode::Success => PamResultCode::PAM_SUCCESS,
        PamCode::AuthErr => PamResultCode::PAM_AUTH_ERR,
        PamCode::Ignore => PamResultCode::PAM_IGNORE,
        PamCode::AuthinfoUnavail => PamResultCode::PAM_AUTHINFO_UNAVAIL,
        PamCode::UserUnknown => PamResultCode::PAM_USER_UNKNOWN,
        PamCode::ConvErr => PamResultCode::PAM_CONV_ERR,
        PamCode::BufErr => PamResultCode::PAM_BUF_ERR,
        PamCode::SessionErr => PamResultCode::PAM_SESSION_ERR,
        PamCode::CredErr => PamResultCode::PAM_CRED_ERR,
        PamCode::PermDenied => PamResultCode::PAM_PERM_DENIED,
        PamCode::ServiceErr => PamResultCode::PAM_SERVICE_ERR,
        PamCode::SystemErr => PamResultCode::PAM_SYSTEM_ERR,
    }
}

/// A libpam failure as the policy sees it (anything unexpected is a
/// system error).
fn policy_code(code: PamResultCode) -> PamCode {
    match code {
        PamResultCode::PAM_SUCCESS => PamCode::Success,
        PamResultCode::PAM_CONV_ERR => PamCode::ConvErr,
        PamResultCode::PAM_BUF_ERR => PamCode::BufErr,
        PamResultCode::PAM_USER_UNKNOWN => PamCode::UserUnknown,
        PamResultCode::PAM_PERM_DENIED => PamCode::PermDenied,
        _ => PamCode::SystemErr,
    }
}

/// Runs a hook body, turning a panic into `on_panic` so no unwind crosses
/// into C. (pam-bindings' own guard would answer `PAM_ABORT`; we want the
/// fail-closed code of each hook.)
fn guarded(on_panic: PamCode, body: impl FnOnce() -> PamCode) -> PamResultCode {
    platform_code(match catch_unwind(AssertUnwindSafe(body)) {
        Ok(code) => code,
        Err(payload) => {
            // Dropping a panic payload can itself panic; never let that escape.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            log::send(
                log::MODULE_IDENT,
                Level::Error,
                "internal error (panic) contained at the PAM boundary",
            );
            on_panic
        }
    })
}

struct AuthTokenModule;
pam::pam_hooks!(AuthTokenModule);

impl PamHooks for AuthTokenModule {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guarded(PamCode::AuthinfoUnavail, || {
            policy::authenticate(&mut Pam::new(pamh, flags), &RealHost, &args)
        })
    }

    fn sm_setcred(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guarded(PamCode::CredErr, || {
            policy::setcred(&mut Pam::new(pamh, flags), &RealHost, &args)
        })
    }

    fn acct_mgmt(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guarded(PamCode::PermDenied, || {
            policy::acct_mgmt(&mut Pam::new(pamh, flags), &RealHost, &args)
        })
    }

    fn sm_open_session(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guarded(PamCode::SessionErr, || {
            policy::open_session(&mut Pam::new(pamh, flags), &RealHost, &args)
        })
    }

    fn sm_close_session(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guarded(PamCode::SessionErr, || {
            policy::close_session(&mut Pam::new(pamh, flags), &RealHost, &args)
        })
    }

    fn sm_chauthtok(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guarded(PamCode::ServiceErr, || {
            policy::chauthtok(&mut Pam::new(pamh, flags), &RealHost, &args)
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

    fn silent(&self) -> bool {
        self.flags & PAM_SILENT != 0
    }
}

impl PamApi for Pam<'_> {
    fn user(&mut self) -> Result<Vec<u8>, PamCode> {
        let mut ptr: *const libc::c_char = std::ptr::null();
        // SAFETY: `handle` is the live handle libpam passed to this hook; a
        // null prompt asks libpam for its default; `ptr` is an out-parameter.
        let rc = unsafe { pam_get_user(self.handle, &mut ptr, std::ptr::null()) };
        if rc != PamResultCode::PAM_SUCCESS as libc::c_int {
            return Err(policy_code(to_code(rc)));
        }
        if ptr.is_null() {
            return Err(PamCode::UserUnknown);
        }
        // SAFETY: on success libpam returns a NUL-terminated string it owns,
        // valid until the item changes; we copy it at once.
        Ok(unsafe { CStr::from_ptr(ptr) }.to_bytes().to_vec())
    }

    fn service(&self) -> String {
        self.handle
            .get_item::<Service>()
            .ok()
            .flatten()
            .map(|s| s.0.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn authtok(&self) -> Option<Zeroizing<Vec<u8>>> {
        let item = self.handle.get_item::<AuthTok>().ok().flatten()?;
        Some(Zeroizing::new(item.as_bytes().to_vec()))
    }

    fn set_authtok(&mut self, password: &[u8]) -> Result<(), PamCode> {
        if password.contains(&0) {
            return Err(PamCode::BufErr);
        }
        let mut c_password = Zeroizing::new(Vec::with_capacity(password.len() + 1));
        c_password.extend_from_slice(password);
        c_password.push(0);
        // SAFETY: libpam copies the NUL-terminated string; our buffer stays
        // alive for the call and is zeroized afterwards.
        let rc = unsafe { pam_set_item(self.handle, PAM_AUTHTOK_ITEM, c_password.as_ptr().cast()) };
        match to_code(rc) {
            PamResultCode::PAM_SUCCESS => Ok(()),
            other => Err(policy_code(other)),
        }
    }

    fn prompt_secret(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, PamCode> {
        let conv = self
            .handle
            .get_item::<Conv>()
            .map_err(policy_code)?
            .ok_or(PamCode::ConvErr)?;
        let answer = conv
            .send(PAM_PROMPT_ECHO_OFF, prompt)
            .map_err(policy_code)?
            .ok_or(PamCode::ConvErr)?;
        Ok(Zeroizing::new(answer.as_bytes().to_vec()))
    }

    fn error_message(&mut self, text: &str) {
        if self.silent() {
            return;
        }
        if let Ok(Some(conv)) = self.handle.get_item::<Conv>() {
            let _ = conv.send(PAM_ERROR_MSG, text);
        }
    }

    fn get_data<T: 'static>(&self, key: DataKey<T>) -> Option<&T> {
        // SAFETY: every key is a `DataKey<T>` constant and is only ever
        // written by `set_data` with that same `T` (see `DataKey`).
        unsafe { self.handle.get_data::<T>(key.name).ok() }
    }

    fn set_data<T: 'static>(&mut self, key: DataKey<T>, value: T) -> Result<(), PamCode> {
        self.handle
            .set_data(key.name, Box::new(value))
            .map_err(policy_code)
    }

    fn putenv(&mut self, name_value: &str) -> Result<(), PamCode> {
        let c = CString::new(name_value).map_err(|_| PamCode::BufErr)?;
        // SAFETY: libpam copies the NUL-terminated string.
        let rc = unsafe { pam_putenv(self.handle, c.as_ptr()) };
        match to_code(rc) {
            PamResultCode::PAM_SUCCESS => Ok(()),
            other => Err(policy_code(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every policy result has its own Linux-PAM number, and the ones the
    /// stacks depend on are the documented ones.
    #[test]
    fn codes_map_to_linux_pam_numbers() {
        let all = [
            PamCode::Success,
            PamCode::AuthErr,
            PamCode::Ignore,
            PamCode::AuthinfoUnavail,
            PamCode::UserUnknown,
            PamCode::ConvErr,
            PamCode::BufErr,
            PamCode::SessionErr,
            PamCode::CredErr,
            PamCode::PermDenied,
            PamCode::ServiceErr,
            PamCode::SystemErr,
        ];
        let numbers: Vec<i32> = all.iter().map(|c| platform_code(*c) as i32).collect();
        let mut unique = numbers.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), all.len(), "{numbers:?}");
        assert_eq!(platform_code(PamCode::Success) as i32, 0);
        assert_eq!(platform_code(PamCode::AuthErr) as i32, 7);
        assert_eq!(platform_code(PamCode::AuthinfoUnavail) as i32, 9);
        assert_eq!(platform_code(PamCode::UserUnknown) as i32, 10);
        assert_eq!(platform_code(PamCode::Ignore) as i32, 25);
    }
}
