//! Module, helper and chkpwd: the config file (TOML), parsed and checked.
#![no_main]
use authtoken_config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // Parsing takes in every check (TryFrom of the raw file).
        if let Ok(config) = Config::parse(text) {
            let _ = config.weaknesses();
            let _ = config.empty_challenge_policy();
        }
    }
});
