//! Server: the emulated token device's file (TOML).
#![no_main]
use std::time::Duration;

use authtoken_server::device::{Device, DeviceState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Device::from_toml(text, DeviceState::Ready, Duration::ZERO);
    }
});
