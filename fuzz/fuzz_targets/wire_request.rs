//! Module, helper and chkpwd: the request on the helper's stdin. A request
//! that decodes encodes to bytes that decode to the same again.
#![no_main]
use authtoken_core::wire::HelperRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = HelperRequest::decode(data) {
        let encoded = request.encode().expect("a decoded request encodes");
        let again = HelperRequest::decode(&encoded).expect("an encoded request decodes");
        assert_eq!(*again.encode().unwrap(), *encoded);
    }
});
