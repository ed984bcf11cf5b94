//! Server: an MDM check-in, `Content-Type` value on the first line, the
//! body after it (XML or binary plist: anything). A request that parses
//! reads the same once written back.
#![no_main]
use authtoken_protocol::mdm::request_body;
use authtoken_server::handlers::media_type_of;
use authtoken_server::proto::mdm::parse_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let _ = media_type_of(header);
    if let Ok(request) = parse_request(body) {
        if let Ok(written) = request_body(&request.identity, request.digest_response.as_deref()) {
            let again = parse_request(&written).expect("a request we wrote parses");
            assert_eq!(again.identity, request.identity);
            assert_eq!(again.digest_response, request.digest_response);
        }
    }
});
