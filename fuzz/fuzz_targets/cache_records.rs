//! Module and chkpwd: session-cache entries (410 marks, hand-offs) and
//! offline records, as read back from disk. A record that parses is
//! written back to the same record.
#![no_main]
use authtoken_core::cache::{handoff_token, records_unmanaged};
use authtoken_core::offline::parse_record;
use authtoken_core::username::Username;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let alice = Username::parse(b"alice").unwrap();
    let _ = records_unmanaged(data, &alice);
    if let Some(handed) = handoff_token(data) {
        assert!(!handed.token.is_empty());
        assert!(!handed.token.chars().any(char::is_control));
    }
    if let Some(record) = parse_record(data, &alice) {
        assert_eq!(record.user, "alice");
        let written = serde_json::to_vec(&record).unwrap();
        assert_eq!(parse_record(&written, &alice), Some(record));
    }
});
