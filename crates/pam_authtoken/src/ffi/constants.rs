//! libpam's numbers, per implementation. Linux-PAM and OpenPAM (macOS,
//! FreeBSD) agree on items, message styles and `PAM_IGNORE`, but number
//! most result codes and `PAM_SILENT` differently, so a Linux number
//! returned on macOS would mean something else to the stack. Both tables
//! are compiled everywhere so each is unit-tested on every machine;
//! [`PLATFORM`] is the one this build talks to (`cfg(openpam)`: macOS,
//! FreeBSD, and the `openpam` feature's build against OpenPAM on Linux).

use authtoken_core::outcome::PamCode;
use libc::c_int;

/// The subset of a PAM implementation's `#define`s/enums the module uses.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PamConstants {
    pub name: &'static str,
    pub success: c_int,
    pub service_err: c_int,
    pub system_err: c_int,
    pub buf_err: c_int,
    pub conv_err: c_int,
    pub perm_denied: c_int,
    pub auth_err: c_int,
    pub authinfo_unavail: c_int,
    pub user_unknown: c_int,
    pub cred_err: c_int,
    pub session_err: c_int,
    pub no_module_data: c_int,
    pub ignore: c_int,
    /// Flag bit of every hook.
    pub silent: c_int,
    /// Items.
    pub item_service: c_int,
    pub item_conv: c_int,
    pub item_authtok: c_int,
    /// Message styles.
    pub prompt_echo_off: c_int,
    pub error_msg: c_int,
}

/// Linux-PAM, `security/_pam_types.h`.
#[cfg_attr(openpam, allow(dead_code))] // tested everywhere
pub(crate) const LINUX_PAM: PamConstants = PamConstants {
    name: "Linux-PAM",
    success: 0,
    service_err: 3,
    system_err: 4,
    buf_err: 5,
    perm_denied: 6,
    auth_err: 7,
    authinfo_unavail: 9,
    user_unknown: 10,
    session_err: 14,
    cred_err: 17,
    no_module_data: 18,
    conv_err: 19,
    ignore: 25,
    silent: 0x8000,
    item_service: 1,
    item_conv: 5,
    item_authtok: 6,
    prompt_echo_off: 1,
    error_msg: 3,
};

/// OpenPAM (macOS, FreeBSD), `security/pam_constants.h` (the XSSO
/// numbering).
#[cfg_attr(not(openpam), allow(dead_code))] // tested everywhere
pub(crate) const OPENPAM: PamConstants = PamConstants {
    name: "OpenPAM",
    success: 0,
    service_err: 3,
    system_err: 4,
    buf_err: 5,
    conv_err: 6,
    perm_denied: 7,
    auth_err: 9,
    authinfo_unavail: 12,
    user_unknown: 13,
    cred_err: 16,
    session_err: 19,
    no_module_data: 24,
    ignore: 25,
    silent: i32::MIN, // (-0x7fffffff - 1), i.e. 0x80000000
    item_service: 1,
    item_conv: 5,
    item_authtok: 6,
    prompt_echo_off: 1,
    error_msg: 3,
};

#[cfg(all(target_os = "linux", not(openpam)))]
pub(crate) const PLATFORM: &PamConstants = &LINUX_PAM;
/// macOS, FreeBSD, and the `openpam` build on Linux (build.rs).
#[cfg(openpam)]
pub(crate) const PLATFORM: &PamConstants = &OPENPAM;
#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "freebsd")))]
compile_error!("pam_authtoken knows the PAM constants of Linux-PAM and OpenPAM only");

impl PamConstants {
    /// The one place where the policy's results become libpam's numbers.
    pub(crate) fn code(&self, code: PamCode) -> c_int {
        match code {
            PamCode::Success => self.success,
            PamCode::AuthErr => self.auth_err,
            PamCode::Ignore => self.ignore,
            PamCode::AuthinfoUnavail => self.authinfo_unavail,
            PamCode::UserUnknown => self.user_unknown,
            PamCode::ConvErr => self.conv_err,
            PamCode::BufErr => self.buf_err,
            PamCode::SessionErr => self.session_err,
            PamCode::CredErr => self.cred_err,
            PamCode::PermDenied => self.perm_denied,
            PamCode::ServiceErr => self.service_err,
            PamCode::SystemErr => self.system_err,
        }
    }

    /// A libpam failure as the policy sees it; anything unexpected is a
    /// system error.
    pub(crate) fn policy_code(&self, rc: c_int) -> PamCode {
        match rc {
            rc if rc == self.success => PamCode::Success,
            rc if rc == self.conv_err => PamCode::ConvErr,
            rc if rc == self.buf_err => PamCode::BufErr,
            rc if rc == self.user_unknown => PamCode::UserUnknown,
            rc if rc == self.perm_denied => PamCode::PermDenied,
            _ => PamCode::SystemErr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [PamCode; 12] = [
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

    /// What each outcome must be on each implementation, as its header
    /// spells it (Linux-PAM `_pam_types.h`, OpenPAM `pam_constants.h`).
    fn header_value(table: &PamConstants, code: PamCode) -> c_int {
        let (linux, openpam) = match code {
            PamCode::Success => (0, 0),
            PamCode::ServiceErr => (3, 3),
            PamCode::SystemErr => (4, 4),
            PamCode::BufErr => (5, 5),
            PamCode::PermDenied => (6, 7),
            PamCode::AuthErr => (7, 9),
            PamCode::AuthinfoUnavail => (9, 12),
            PamCode::UserUnknown => (10, 13),
            PamCode::SessionErr => (14, 19),
            PamCode::CredErr => (17, 16),
            PamCode::ConvErr => (19, 6),
            PamCode::Ignore => (25, 25),
        };
        if table == &LINUX_PAM {
            linux
        } else {
            openpam
        }
    }

    #[test]
    fn every_outcome_gives_each_implementations_own_constant() {
        for table in [&LINUX_PAM, &OPENPAM] {
            let mut seen = Vec::new();
            for code in ALL {
                let number = table.code(code);
                assert_eq!(number, header_value(table, code), "{} {code:?}", table.name);
                assert!(!seen.contains(&number), "{}: {number} twice", table.name);
                seen.push(number);
                // What libpam hands back maps to the same policy code where
                // the policy reads it.
                if matches!(
                    code,
                    PamCode::Success
                        | PamCode::ConvErr
                        | PamCode::BufErr
                        | PamCode::UserUnknown
                        | PamCode::PermDenied
                ) {
                    assert_eq!(table.policy_code(number), code, "{}", table.name);
                }
            }
            assert_eq!(table.policy_code(table.no_module_data), PamCode::SystemErr);
        }
        assert_eq!(OPENPAM.silent as u32, 0x8000_0000);
        assert_eq!(LINUX_PAM.silent, 0x8000);
        // The issue that started this: a wrong password on macOS is 9, and
        // Linux's 9 there would have read as "unavailable".
        assert_eq!(OPENPAM.code(PamCode::AuthErr), 9);
        assert_eq!(LINUX_PAM.code(PamCode::AuthinfoUnavail), 9);
    }

    /// This build talks to the implementation it was built for.
    #[test]
    fn the_platform_table_is_the_systems() {
        let expected = if cfg!(openpam) {
            "OpenPAM"
        } else {
            "Linux-PAM"
        };
        assert_eq!(PLATFORM.name, expected);
    }

    /// A header's value of `name`: `#define NAME VALUE` (Linux-PAM) or an
    /// enumerator `NAME = VALUE,` (OpenPAM), decimal, hex, or OpenPAM's
    /// `(-0x7fffffff - 1)`.
    fn header_value_of(header: &str, name: &str) -> c_int {
        let text = header
            .lines()
            .find_map(|line| {
                let line = line.trim();
                let rest = line.strip_prefix("#define ").unwrap_or(line);
                let rest = rest.strip_prefix(name)?;
                // The whole name (PAM_AUTHTOK is not PAM_AUTHTOK_ERR).
                if !rest.starts_with([' ', '\t', '=']) {
                    return None;
                }
                let rest = rest.trim_start();
                if !(rest.starts_with('=') || line.starts_with("#define ")) {
                    return None;
                }
                let value = rest.trim_start_matches('=').trim();
                let value = value.split("/*").next().unwrap_or(value).trim();
                Some(value.trim_end_matches(',').trim().to_owned())
            })
            .unwrap_or_else(|| panic!("{name} not in the header"));
        let value = text.trim_start_matches('(').trim_end_matches(')');
        if value.replace(' ', "") == "-0x7fffffff-1" {
            return c_int::MIN;
        }
        let value = value.trim_end_matches(['U', 'u', 'L', 'l']);
        match value
            .strip_prefix("0x")
            .or_else(|| value.strip_prefix("0X"))
        {
            Some(hex) => c_int::from_str_radix(hex, 16),
            None => value.parse(),
        }
        .unwrap_or_else(|e| panic!("{name} = {text}: {e}"))
    }

    /// Every number of a table, by the name its header gives it.
    fn named_values(t: &PamConstants) -> [(&'static str, c_int); 19] {
        [
            ("PAM_SUCCESS", t.success),
            ("PAM_SERVICE_ERR", t.service_err),
            ("PAM_SYSTEM_ERR", t.system_err),
            ("PAM_BUF_ERR", t.buf_err),
            ("PAM_CONV_ERR", t.conv_err),
            ("PAM_PERM_DENIED", t.perm_denied),
            ("PAM_AUTH_ERR", t.auth_err),
            ("PAM_AUTHINFO_UNAVAIL", t.authinfo_unavail),
            ("PAM_USER_UNKNOWN", t.user_unknown),
            ("PAM_CRED_ERR", t.cred_err),
            ("PAM_SESSION_ERR", t.session_err),
            ("PAM_NO_MODULE_DATA", t.no_module_data),
            ("PAM_IGNORE", t.ignore),
            ("PAM_SILENT", t.silent),
            ("PAM_SERVICE", t.item_service),
            ("PAM_CONV", t.item_conv),
            ("PAM_AUTHTOK", t.item_authtok),
            ("PAM_PROMPT_ECHO_OFF", t.prompt_echo_off),
            ("PAM_ERROR_MSG", t.error_msg),
        ]
    }

    /// The OpenPAM build (feature `openpam`, tests/system/openpam.sh): the
    /// OpenPAM table equals the installed OpenPAM's `pam_constants.h`, the
    /// header of the library the module is linked with.
    #[cfg(feature = "openpam")]
    #[test]
    fn openpam_table_matches_the_installed_openpam_header() {
        let path = std::path::Path::new(env!("OPENPAM_HEADERS")).join("pam_constants.h");
        let header =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (name, value) in named_values(&OPENPAM) {
            assert_eq!(header_value_of(&header, name), value, "{name}");
        }
    }

    /// On a machine with Linux-PAM's headers (the test suite installs
    /// libpam0g-dev), the Linux table equals the header's `#define`s.
    #[test]
    fn linux_table_matches_the_installed_header() {
        let header = match std::fs::read_to_string("/usr/include/security/_pam_types.h") {
            Ok(header) => header,
            Err(e) if cfg!(target_os = "linux") => panic!("libpam0g-dev is not installed: {e}"),
            Err(_) => return,
        };
        for (name, value) in named_values(&LINUX_PAM) {
            assert_eq!(header_value_of(&header, name), value, "{name}");
        }
    }
}
