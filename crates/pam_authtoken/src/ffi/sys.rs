//! The libpam C interface the module uses. The signatures and structures
//! are the same in Linux-PAM (`security/pam_modules.h`, `_pam_types.h`)
//! and OpenPAM (`security/pam_types.h`, `pam_modules.h`); only the numbers
//! differ (see `constants`).

use libc::{c_char, c_int, c_void};

/// `pam_handle_t`: opaque, only ever behind a pointer libpam gave us.
#[repr(C)]
pub(crate) struct PamHandle {
    _private: [u8; 0],
}

/// `struct pam_message`.
#[repr(C)]
pub(super) struct PamMessage {
    pub msg_style: c_int,
    pub msg: *const c_char,
}

/// `struct pam_response`; the application allocates both the array and
/// each `resp` with `malloc`, and the module frees them.
#[repr(C)]
pub(super) struct PamResponse {
    pub resp: *mut c_char,
    pub resp_retcode: c_int,
}

/// The conversation function. With one message, Linux-PAM's "array of
/// pointers" and Solaris' "pointer to an array" readings of `msg` agree.
pub(super) type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

/// `struct pam_conv`.
#[repr(C)]
pub(super) struct PamConv {
    pub conv: Option<ConvFn>,
    pub appdata_ptr: *mut c_void,
}

/// The cleanup callback of `pam_set_data`.
pub(super) type CleanupFn =
    unsafe extern "C" fn(pamh: *mut PamHandle, data: *mut c_void, error_status: c_int);

#[link(name = "pam")]
extern "C" {
    pub(super) fn pam_get_user(
        pamh: *mut PamHandle,
        user: *mut *const c_char,
        prompt: *const c_char,
    ) -> c_int;
    pub(super) fn pam_get_item(
        pamh: *const PamHandle,
        item_type: c_int,
        item: *mut *const c_void,
    ) -> c_int;
    pub(super) fn pam_set_item(
        pamh: *mut PamHandle,
        item_type: c_int,
        item: *const c_void,
    ) -> c_int;
    pub(super) fn pam_get_data(
        pamh: *const PamHandle,
        module_data_name: *const c_char,
        data: *mut *const c_void,
    ) -> c_int;
    pub(super) fn pam_set_data(
        pamh: *mut PamHandle,
        module_data_name: *const c_char,
        data: *mut c_void,
        cleanup: Option<CleanupFn>,
    ) -> c_int;
    pub(super) fn pam_putenv(pamh: *mut PamHandle, name_value: *const c_char) -> c_int;
    /// OpenPAM's (`security/pam_appl.h`); Linux-PAM's differs in options.
    #[cfg(openpam)]
    pub(super) fn pam_get_authtok(
        pamh: *mut PamHandle,
        item: c_int,
        authtok: *mut *const c_char,
        prompt: *const c_char,
    ) -> c_int;
}
