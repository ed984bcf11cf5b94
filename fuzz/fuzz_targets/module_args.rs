//! Module: the arguments of its pam.d line (NUL between arguments).
#![no_main]
use std::ffi::CString;

use authtoken_core::options::ModuleOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let args: Vec<CString> = data
        .split(|&b| b == 0)
        .filter_map(|arg| CString::new(arg).ok())
        .collect();
    let refs: Vec<&std::ffi::CStr> = args.iter().map(|a| a.as_c_str()).collect();
    if let Ok(options) = ModuleOptions::parse(&refs) {
        assert!(options.config_path.is_absolute());
    }
});
