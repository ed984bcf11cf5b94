//! Helper: the authority's two MDM replies (plist), NUL between them: the
//! challenge (SCRAM or HTTP Digest inside) and the token reply with its
//! `ServerSignature`. No reply signs anyone in without the signature.
#![no_main]
use authtoken_core::outcome::Outcome;
use authtoken_protocol::mdm::{parse_dict, read_challenge, read_token_reply, ClientSettings};
use authtoken_protocol::Scheme;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let first = parts.next().unwrap_or_default();
    let second = parts.next().unwrap_or_default();
    let settings = ClientSettings {
        schemes: vec![Scheme::ScramSha256, Scheme::DigestSha256, Scheme::DigestMd5],
        require_server_signature: true,
        min_scram_iterations: 4096,
        max_scram_iterations: 10_000_000,
        channel_binding: Default::default(),
    };
    let _ = read_challenge(first, &settings);
    let expected = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    if let Ok(Outcome::Token { .. }) = read_token_reply(second, Some(expected), &settings) {
        // XML may spell the signature many ways (entities, comments and
        // processing instructions inside the text): what counts is the
        // value read.
        let reply = parse_dict(second, "token reply").expect("a token came from a plist");
        assert_eq!(
            reply.get("ServerSignature").and_then(|v| v.as_string()),
            Some(expected),
            "a token only with the right signature"
        );
    }
});
