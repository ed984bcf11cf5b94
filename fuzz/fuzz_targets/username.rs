//! Module, helper and chkpwd: a user name as PAM hands it over. One that is
//! accepted maps to one safe file name and back.
#![no_main]
use authtoken_core::username::{from_file_name, to_file_name, Username};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(user) = Username::parse(data) {
        let name = to_file_name(user.as_str());
        assert!(!name.contains('/') && name != "." && name != ".." && !name.is_empty());
        assert!(!name.starts_with('.'), "never a hidden file: {name}");
        assert_eq!(from_file_name(&name).as_deref(), Some(user.as_str()));
    }
});
