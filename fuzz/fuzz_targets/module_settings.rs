//! Module: its settings file beside the config, and the helper's
//! `module-settings` answer (JSON both).
#![no_main]
use authtoken_core::settings::{Answer, ModuleSettings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(settings) = serde_json::from_slice::<ModuleSettings>(data) {
        // What the module does with settings it read.
        let _ = settings.made_from(settings.source.as_bytes());
        assert!(settings.chkpwd_deadline() >= settings.kill_deadline());
        let again = serde_json::to_vec(&settings).expect("settings serialize");
        let back: ModuleSettings = serde_json::from_slice(&again).expect("written back reads");
        assert_eq!(back, settings);
    }
    let _ = serde_json::from_slice::<Answer>(data);
});
