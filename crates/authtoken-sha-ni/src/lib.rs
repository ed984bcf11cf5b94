//! The rounds of PBKDF2-HMAC-SHA256 after the first, on the x86 SHA
//! extensions (SHA-NI), for `authtoken_protocol::kdf`, which falls back to
//! its portable loop when [`rounds`] answers `None` (another CPU, another
//! architecture).
//!
//! Why not a general SHA-256: a round is two compressions of one block
//! each, and half of each block is constant — the 32-byte message is
//! followed by the padding and length of a 96-byte message, always the
//! same. So the message words 8 to 15, their sums with the round
//! constants, and the schedule terms made only of them are computed once;
//! the state stays in the registers the instructions use (ABEF/CDGH), and
//! a compression's output becomes the next one's message words with four
//! shuffles, never going through bytes.
//!
//! Every `unsafe` here is a call of a function compiled for the SHA
//! extensions, made only after the CPU was found to have them.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
mod x86;

/// The `count` rounds after the first of one PBKDF2-HMAC-SHA256 output
/// block: `inner` and `outer` are the HMAC key's states after its padded
/// block, `u` is the first round's output (U1); returns U1 ^ U2 ^ … ^
/// U(count+1) as eight words. `None` when this CPU has no SHA extensions.
pub fn rounds(inner: &[u32; 8], outer: &[u32; 8], u: &[u32; 8], count: u32) -> Option<[u32; 8]> {
    #[cfg(target_arch = "x86_64")]
    {
        if available() {
            // SAFETY: the CPU has SHA, SSE4.1 and SSSE3 (`available`); the
            // function needs nothing else.
            return Some(unsafe { x86::rounds(inner, outer, u, count) });
        }
    }
    let _ = (inner, outer, u, count);
    None
}

/// `count` compressions chained through the state only, each message
/// independent of it, as bulk hashing (OpenSSL's, over a long buffer)
/// chains them: the benchmark's measure of what PBKDF2's other
/// dependency (each message is the last output) costs on top. `None`
/// without the SHA extensions.
pub fn bulk(count: u64) -> Option<[u32; 8]> {
    #[cfg(target_arch = "x86_64")]
    {
        if available() {
            // SAFETY: the CPU has SHA, SSE4.1 and SSSE3 (`available`).
            return Some(unsafe { x86::bulk(count) });
        }
    }
    let _ = count;
    None
}

/// Whether [`rounds`] runs on this CPU.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse4.1")
            && std::arch::is_x86_feature_detected!("ssse3")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}
