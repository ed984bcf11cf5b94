//! Server: the user store file (TOML), and one user row of the PostgreSQL
//! store (the same fields as JSON). A store that parses is written back to
//! the same users; so is a row.
#![no_main]
use authtoken_server::store::Store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(store) = Store::parse(text) {
        let written = store.to_toml().expect("a parsed store can be written");
        let again = Store::parse(&written).expect("a written store parses");
        assert_eq!(again.users, store.users);
        assert_eq!(again.secret, store.secret);
    }
    if let Ok(user) = Store::user_from_json("fuzzed", text) {
        let written = Store::user_to_json(&user);
        let again = Store::user_from_json("fuzzed", &written).expect("a written row parses");
        assert_eq!(again, user);
    }
});
