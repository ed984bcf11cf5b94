//! The NSS module: the cache file it reads in every process that looks up
//! a user (root writes it, but a damaged or foreign file must not crash
//! anyone): the header, lookups by name and id, enumeration, the line
//! parsers and the layout into the caller's buffer.
#![no_main]
use std::sync::OnceLock;

use authtoken_directory::nss_cache::{Group, Passwd, Reader, Section};
use libfuzzer_sys::fuzz_target;
use nss_authtoken::entry;

fn scratch() -> &'static std::path::Path {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("nss-cache-fuzz-{}", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::write(scratch(), data).expect("scratch file");
    std::fs::set_permissions(scratch(), std::fs::Permissions::from_mode(0o644)).expect("mode");
    let owner = std::fs::metadata(scratch()).expect("scratch file").uid();
    let Some(reader) = Reader::open_owned_by(scratch(), owner) else {
        return;
    };
    // Keys taken from the input itself, so lookups can hit.
    let key = data.get(..data.len().min(12)).unwrap_or_default();
    let id = data
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .unwrap_or(10_000);
    let mut buf = vec![0u8; 512];
    let base = buf.as_ptr() as usize;
    for line in [reader.user_by_name(key), reader.user_by_uid(id)].into_iter().flatten() {
        let _ = entry::passwd(&line, &mut buf);
    }
    for line in [reader.group_by_name(key), reader.group_by_gid(id)].into_iter().flatten() {
        let _ = entry::group(&line, &mut buf, base);
    }
    let _ = reader.groups_of(key);
    // Enumeration ends, and moves forward every step.
    for section in [Section::Passwd, Section::Group] {
        let mut cursor = 0;
        for _ in 0..100_000 {
            let Some((line, next)) = reader.entry(section, cursor) else {
                break;
            };
            assert!(next > cursor, "enumeration must move forward");
            cursor = next;
            if let Some(user) = Passwd::parse(&line) {
                let _ = (user.uid, user.shell);
                let _ = entry::passwd(&line, &mut buf);
            }
            if let Some(group) = Group::parse(&line) {
                let _ = group.member_names().count();
                let _ = entry::group(&line, &mut buf, base);
            }
        }
    }
});
