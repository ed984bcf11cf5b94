//! The FFI boundary: the `pam_sm_*` entry points and [`PamApi`] over a real
//! `pam_handle_t`, for Linux-PAM and OpenPAM (macOS, FreeBSD) from one
//! source. Every `unsafe` of the module outside the helper spawn lives
//! here ([`sys`] declares libpam's functions), and [`constants`] holds the
//! one mapping of [`PamCode`] to each implementation's numbers.

pub(crate) mod constants;
mod sys;

use std::ffi::{CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use authtoken_core::log::{self, Level};
use authtoken_core::outcome::PamCode;
use libc::{c_char, c_int, c_void};
use zeroize::{Zeroize, Zeroizing};

use self::constants::PLATFORM;
use self::sys::{PamConv, PamHandle, PamMessage, PamResponse};
use crate::pam_api::{DataKey, PamApi};
use crate::policy::{self, RealHost};

/// Runs one hook: reads the arguments, runs `body`, and turns a panic into
/// `on_panic` so no unwind crosses into C (and a null handle into
/// `PAM_SYSTEM_ERR`).
fn hook(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
    on_panic: PamCode,
    body: impl FnOnce(&mut Pam, &[&CStr]) -> PamCode,
) -> c_int {
    let run = || {
        if pamh.is_null() {
            return PamCode::SystemErr;
        }
        // SAFETY: libpam passes `argc` valid NUL-terminated strings in
        // `argv` that outlive the call.
        let args = unsafe { module_args(argc, argv) };
        body(
            &mut Pam {
                handle: pamh,
                flags,
            },
            &args,
        )
    };
    PLATFORM.code(match catch_unwind(AssertUnwindSafe(run)) {
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

/// The module's arguments from the pam.d line.
///
/// # Safety
/// `argv` must hold `argc` pointers, each null or a NUL-terminated string
/// that lives as long as the returned borrows.
unsafe fn module_args<'a>(argc: c_int, argv: *const *const c_char) -> Vec<&'a CStr> {
    let count = usize::try_from(argc).unwrap_or(0);
    if argv.is_null() {
        return Vec::new();
    }
    (0..count)
        // SAFETY: in bounds of the `argc` pointers the caller vouches for.
        .map(|i| unsafe { *argv.add(i) })
        .filter(|arg| !arg.is_null())
        // SAFETY: each non-null argument is a NUL-terminated string.
        .map(|arg| unsafe { CStr::from_ptr(arg) })
        .collect()
}

/// Declares a `pam_sm_*` entry point that runs a policy hook.
macro_rules! entry_point {
    ($name:ident, $on_panic:expr, $policy:path) => {
        // Exported to libpam by `no_mangle`, not through a Rust path.
        #[allow(unreachable_pub)]
        #[no_mangle]
        pub extern "C" fn $name(
            pamh: *mut PamHandle,
            flags: c_int,
            argc: c_int,
            argv: *const *const c_char,
        ) -> c_int {
            hook(pamh, flags, argc, argv, $on_panic, |pam, args| {
                $policy(pam, &RealHost, args)
            })
        }
    };
}

entry_point!(
    pam_sm_authenticate,
    PamCode::AuthinfoUnavail,
    policy::authenticate
);
entry_point!(pam_sm_setcred, PamCode::CredErr, policy::setcred);
entry_point!(pam_sm_acct_mgmt, PamCode::PermDenied, policy::acct_mgmt);
entry_point!(
    pam_sm_open_session,
    PamCode::SessionErr,
    policy::open_session
);
entry_point!(
    pam_sm_close_session,
    PamCode::SessionErr,
    policy::close_session
);
entry_point!(pam_sm_chauthtok, PamCode::ServiceErr, policy::chauthtok);

/// A PAM handle for the duration of one hook call, with safe accessors.
pub(crate) struct Pam {
    /// Non-null: the handle libpam passed to this hook.
    handle: *mut PamHandle,
    flags: c_int,
}

/// `Ok` for the platform's `PAM_SUCCESS`, else the policy's reading.
fn check(rc: c_int) -> Result<(), PamCode> {
    match PLATFORM.policy_code(rc) {
        PamCode::Success => Ok(()),
        other => Err(other),
    }
}

/// Frees a `malloc`ed C string after overwriting it (it may be a password).
///
/// # Safety
/// `text` must be null or a NUL-terminated string from `malloc` that
/// nothing else owns.
unsafe fn wipe_and_free(text: *mut c_char) {
    if text.is_null() {
        return;
    }
    // SAFETY: per the contract, `text` is a writable NUL-terminated string.
    unsafe {
        let len = libc::strlen(text);
        std::slice::from_raw_parts_mut(text.cast::<u8>(), len).zeroize();
        libc::free(text.cast());
    }
}

/// The cleanup libpam calls for data we stored: drops the box (zeroizing
/// what its type zeroizes), never unwinding into C.
unsafe extern "C" fn drop_boxed<T>(_pamh: *mut PamHandle, data: *mut c_void, _status: c_int) {
    if data.is_null() {
        return;
    }
    // SAFETY: `data` is the `Box<T>` that `set_data` leaked under a key of
    // type `T`, and libpam calls this once, when it lets go of it.
    let boxed = unsafe { Box::from_raw(data.cast::<T>()) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(boxed)));
}

impl Pam {
    fn silent(&self) -> bool {
        self.flags & PLATFORM.silent != 0
    }

    /// An item's pointer, if the application set it.
    fn item(&self, item_type: c_int) -> Result<*const c_void, PamCode> {
        let mut item: *const c_void = std::ptr::null();
        // SAFETY: live handle; `item` is an out-parameter.
        check(unsafe { sys::pam_get_item(self.handle, item_type, &mut item) })?;
        Ok(item)
    }

    /// A string item, copied; `None` when unset.
    fn string_item(&self, item_type: c_int) -> Option<Zeroizing<Vec<u8>>> {
        let ptr = self.item(item_type).ok()?;
        if ptr.is_null() {
            return None;
        }
        // SAFETY: string items are NUL-terminated strings libpam owns,
        // valid until the item changes; we copy at once.
        let text = unsafe { CStr::from_ptr(ptr.cast::<c_char>()) };
        Some(Zeroizing::new(text.to_bytes().to_vec()))
    }

    /// One message through the application's conversation; the answer, if
    /// any, copied into a zeroizing buffer and wiped from the C heap.
    fn converse(
        &mut self,
        style: c_int,
        text: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, PamCode> {
        let conv = self.item(PLATFORM.item_conv)?.cast::<PamConv>();
        if conv.is_null() {
            return Err(PamCode::ConvErr);
        }
        // SAFETY: PAM_CONV is a `struct pam_conv` the application set.
        let (function, appdata) = unsafe { ((*conv).conv, (*conv).appdata_ptr) };
        let function = function.ok_or(PamCode::ConvErr)?;
        let text = CString::new(text).map_err(|_| PamCode::BufErr)?;
        let message = PamMessage {
            msg_style: style,
            msg: text.as_ptr(),
        };
        let mut messages = [&message as *const PamMessage];
        let mut responses: *mut PamResponse = std::ptr::null_mut();
        // SAFETY: one message that outlives the call; `responses` is an
        // out-parameter the application fills with `malloc`ed memory.
        let rc = unsafe { function(1, messages.as_mut_ptr(), &mut responses, appdata) };
        check(rc).map_err(|code| match code {
            PamCode::BufErr => PamCode::BufErr,
            _ => PamCode::ConvErr,
        })?;
        if responses.is_null() {
            return Ok(None);
        }
        // SAFETY: on success `responses` is one `malloc`ed `pam_response`
        // whose `resp` is null or a `malloc`ed string; both are ours now.
        unsafe {
            let answer_ptr = (*responses).resp;
            let answer = (!answer_ptr.is_null())
                .then(|| Zeroizing::new(CStr::from_ptr(answer_ptr).to_bytes().to_vec()));
            wipe_and_free(answer_ptr);
            libc::free(responses.cast());
            Ok(answer)
        }
    }
}

impl PamApi for Pam {
    fn user(&mut self) -> Result<Vec<u8>, PamCode> {
        let mut ptr: *const c_char = std::ptr::null();
        // SAFETY: live handle; a null prompt asks libpam for its default;
        // `ptr` is an out-parameter.
        check(unsafe { sys::pam_get_user(self.handle, &mut ptr, std::ptr::null()) })?;
        if ptr.is_null() {
            return Err(PamCode::UserUnknown);
        }
        // SAFETY: on success libpam returns a NUL-terminated string it owns,
        // valid until the item changes; we copy it at once.
        Ok(unsafe { CStr::from_ptr(ptr) }.to_bytes().to_vec())
    }

    fn service(&self) -> String {
        self.string_item(PLATFORM.item_service)
            .map(|s| String::from_utf8_lossy(&s).into_owned())
            .unwrap_or_default()
    }

    fn authtok(&self) -> Option<Zeroizing<Vec<u8>>> {
        self.string_item(PLATFORM.item_authtok)
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
        check(unsafe {
            sys::pam_set_item(
                self.handle,
                PLATFORM.item_authtok,
                c_password.as_ptr().cast(),
            )
        })
    }

    fn prompt_secret(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, PamCode> {
        self.converse(PLATFORM.prompt_echo_off, prompt)?
            .ok_or(PamCode::ConvErr)
    }

    fn error_message(&mut self, text: &str) {
        if !self.silent() {
            let _ = self.converse(PLATFORM.error_msg, text);
        }
    }

    fn get_data<T: 'static>(&self, key: DataKey<T>) -> Option<&T> {
        let name = CString::new(key.name).ok()?;
        let mut data: *const c_void = std::ptr::null();
        // SAFETY: live handle, NUL-terminated name, `data` an out-parameter.
        check(unsafe { sys::pam_get_data(self.handle, name.as_ptr(), &mut data) }).ok()?;
        // SAFETY: `DataKey::new`'s contract gives this name to this `T`
        // alone, and only `set_data` with that same key writes it; the box
        // lives until libpam runs its cleanup, after this hook.
        unsafe { data.cast::<T>().as_ref() }
    }

    fn set_data<T: 'static>(&mut self, key: DataKey<T>, value: T) -> Result<(), PamCode> {
        let name = CString::new(key.name).map_err(|_| PamCode::BufErr)?;
        let data = Box::into_raw(Box::new(value));
        // SAFETY: libpam copies the name and keeps `data` until it calls
        // `drop_boxed::<T>` (on replacement or `pam_end`).
        let rc = unsafe {
            sys::pam_set_data(
                self.handle,
                name.as_ptr(),
                data.cast(),
                Some(drop_boxed::<T>),
            )
        };
        check(rc).inspect_err(|_| {
            // SAFETY: libpam refused it, so the box is still only ours.
            drop(unsafe { Box::from_raw(data) });
        })
    }

    fn putenv(&mut self, name_value: &str) -> Result<(), PamCode> {
        // OpenPAM cannot remove a variable (its pam_putenv wants `=`): a
        // removed one is left empty there.
        #[cfg(openpam)]
        let name_value = if name_value.contains('=') {
            name_value.to_owned()
        } else {
            format!("{name_value}=")
        };
        let c = CString::new(name_value).map_err(|_| PamCode::BufErr)?;
        // SAFETY: libpam copies the NUL-terminated string.
        check(unsafe { sys::pam_putenv(self.handle, c.as_ptr()) })
    }

    /// OpenPAM's own: `pam_get_authtok` reads `use_first_pass`,
    /// `try_first_pass` and `authtok_prompt` from the policy line, asks,
    /// and sets `PAM_AUTHTOK` itself.
    #[cfg(openpam)]
    fn password(
        &mut self,
        _options: &crate::policy::ModuleOptions,
        prompt: &str,
    ) -> Result<Zeroizing<Vec<u8>>, crate::pam_api::PasswordError> {
        use crate::pam_api::PasswordError;
        let prompt =
            CString::new(prompt).map_err(|_| PasswordError::Conversation(PamCode::BufErr))?;
        let mut token: *const c_char = std::ptr::null();
        // SAFETY: live handle; `token` is an out-parameter; the prompt
        // outlives the call.
        let rc = unsafe {
            sys::pam_get_authtok(
                self.handle,
                PLATFORM.item_authtok,
                &mut token,
                prompt.as_ptr(),
            )
        };
        if rc == PLATFORM.auth_err {
            // What it answers for use_first_pass without an earlier password.
            return Err(PasswordError::NoFirstPass);
        }
        check(rc).map_err(PasswordError::Conversation)?;
        if token.is_null() {
            return Err(PasswordError::Conversation(PamCode::ConvErr));
        }
        // SAFETY: on success it is the PAM_AUTHTOK item, a NUL-terminated
        // string libpam owns until the item changes; we copy it at once.
        let text = unsafe { CStr::from_ptr(token) };
        Ok(Zeroizing::new(text.to_bytes().to_vec()))
    }
}
