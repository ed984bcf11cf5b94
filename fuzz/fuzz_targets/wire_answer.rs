//! Module and chkpwd: the helper's result on its stdout. A result that
//! decodes encodes to bytes that decode to the same again.
#![no_main]
use authtoken_core::wire::{decode_answer, encode_answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(answer) = decode_answer(data) {
        let encoded = encode_answer(&answer.outcome, answer.verifier.as_ref())
            .expect("a decoded result encodes");
        let again = decode_answer(&encoded).expect("an encoded result decodes");
        let reencoded = encode_answer(&again.outcome, again.verifier.as_ref()).unwrap();
        assert_eq!(*reencoded, *encoded);
    }
});
