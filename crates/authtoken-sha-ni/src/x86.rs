//! SHA-256 compressions with `sha256rnds2`, `sha256msg1` and `sha256msg2`
//! (Intel's SHA extensions), specialised for PBKDF2's one-block messages.
//! The state is kept as the instructions want it: `abef` holds (lane 3 to
//! lane 0) a, b, e, f and `cdgh` holds c, d, g, h.

use std::arch::x86_64::*;

/// FIPS 180-4 §4.2.2.
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// Bits hashed by a round's inner or outer hash: the key block, then the
/// 32-byte message.
const MESSAGE_BITS: u32 = (64 + 32) * 8;

/// Four words as one vector, the first in lane 0.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn vector(w: [u32; 4]) -> __m128i {
    _mm_set_epi32(w[3] as i32, w[2] as i32, w[1] as i32, w[0] as i32)
}

#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn words(v: __m128i) -> [u32; 4] {
    [
        _mm_extract_epi32::<0>(v) as u32,
        _mm_extract_epi32::<1>(v) as u32,
        _mm_extract_epi32::<2>(v) as u32,
        _mm_extract_epi32::<3>(v) as u32,
    ]
}

/// Round constants `i*4 .. i*4+4` as a vector.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn k(i: usize) -> __m128i {
    vector([K[4 * i], K[4 * i + 1], K[4 * i + 2], K[4 * i + 3]])
}

/// A state (a..h) as `abef`, `cdgh`.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn to_registers(state: &[u32; 8]) -> (__m128i, __m128i) {
    let dcba = vector([state[0], state[1], state[2], state[3]]);
    let hgfe = vector([state[4], state[5], state[6], state[7]]);
    let cdab = _mm_shuffle_epi32::<0xB1>(dcba);
    let efgh = _mm_shuffle_epi32::<0x1B>(hgfe);
    (
        _mm_alignr_epi8::<8>(cdab, efgh),
        _mm_blend_epi16::<0xF0>(efgh, cdab),
    )
}

/// `abef`, `cdgh` as the words a..h in two vectors, a first: the next
/// compression's message words 0 to 7.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn to_words(abef: __m128i, cdgh: __m128i) -> (__m128i, __m128i) {
    let feba = _mm_shuffle_epi32::<0x1B>(abef);
    let dchg = _mm_shuffle_epi32::<0xB1>(cdgh);
    (
        _mm_blend_epi16::<0xF0>(feba, dchg),
        _mm_alignr_epi8::<8>(dchg, feba),
    )
}

/// Four rounds with `wk` (message words plus constants).
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn rounds4(abef: &mut __m128i, cdgh: &mut __m128i, wk: __m128i) {
    *cdgh = _mm_sha256rnds2_epu32(*cdgh, *abef, wk);
    *abef = _mm_sha256rnds2_epu32(*abef, *cdgh, _mm_shuffle_epi32::<0x0E>(wk));
}

/// The next four message words from the sixteen before them.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn schedule(w0: __m128i, w1: __m128i, w2: __m128i, w3: __m128i) -> __m128i {
    let t = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8::<4>(w3, w2));
    _mm_sha256msg2_epu32(t, w3)
}

/// What does not depend on the message: words 8 to 15 (padding and
/// length) and their sums with the round constants.
struct Fixed {
    w2: __m128i,
    w3: __m128i,
    wk2: __m128i,
    wk3: __m128i,
}

impl Fixed {
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn new() -> Fixed {
        let w2 = vector([0x8000_0000, 0, 0, 0]);
        let w3 = vector([0, 0, 0, MESSAGE_BITS]);
        Fixed {
            w2,
            w3,
            wk2: _mm_add_epi32(w2, k(2)),
            wk3: _mm_add_epi32(w3, k(3)),
        }
    }
}

/// A compression's start (abef, cdgh), and the same with the first
/// four round constants added where its output's words a..d lie: the
/// next compression's first round sums come from the output in one add
/// and one shuffle, the shortest path from one compression to the next.
#[derive(Clone, Copy)]
struct Start {
    abef: __m128i,
    cdgh: __m128i,
    abef_k: __m128i,
    cdgh_k: __m128i,
}

impl Start {
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn new(state: &[u32; 8]) -> Start {
        let (abef, cdgh) = to_registers(state);
        Start {
            abef,
            cdgh,
            // a in lane 3, b in lane 2; c in lane 3, d in lane 2.
            abef_k: _mm_add_epi32(abef, vector([0, 0, K[1], K[0]])),
            cdgh_k: _mm_add_epi32(cdgh, vector([0, 0, K[3], K[2]])),
        }
    }
}

/// What the next compression needs of one's raw output (before the
/// feed-forward) and its start: the message words 0..7 (for the schedule
/// and the running XOR) and the first round sums, (a, b) and (c, d)
/// plus their constants in lanes 0 and 1.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn handover(abef: __m128i, cdgh: __m128i, start: &Start) -> Message {
    let (w0, w1) = to_words(
        _mm_add_epi32(abef, start.abef),
        _mm_add_epi32(cdgh, start.cdgh),
    );
    Message {
        w0,
        w1,
        wk_ab: _mm_shuffle_epi32::<0x1B>(_mm_add_epi32(abef, start.abef_k)),
        wk_cd: _mm_shuffle_epi32::<0x1B>(_mm_add_epi32(cdgh, start.cdgh_k)),
    }
}

/// A block's varying half: words 0..7, and the first round sums.
#[derive(Clone, Copy)]
struct Message {
    w0: __m128i,
    w1: __m128i,
    wk_ab: __m128i,
    wk_cd: __m128i,
}

impl Message {
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn from_words(w0: __m128i, w1: __m128i) -> Message {
        let wk = _mm_add_epi32(w0, k(0));
        Message {
            w0,
            w1,
            wk_ab: wk,
            wk_cd: _mm_shuffle_epi32::<0x0E>(wk),
        }
    }
}

/// One compression from `start` of the block whose words 0..7 are
/// `message` and whose words 8..15 are [`Fixed`]; the raw output, before
/// the feed-forward ([`handover`] adds it).
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn compress(start: &Start, message: &Message, fixed: &Fixed) -> (__m128i, __m128i) {
    let (mut abef, mut cdgh) = (start.abef, start.cdgh);
    let (mut w0, mut w1, mut w2, mut w3) = (message.w0, message.w1, fixed.w2, fixed.w3);
    cdgh = _mm_sha256rnds2_epu32(cdgh, abef, message.wk_ab);
    abef = _mm_sha256rnds2_epu32(abef, cdgh, message.wk_cd);
    rounds4(&mut abef, &mut cdgh, _mm_add_epi32(w1, k(1)));
    rounds4(&mut abef, &mut cdgh, fixed.wk2);
    rounds4(&mut abef, &mut cdgh, fixed.wk3);
    let mut w4 = schedule(w0, w1, w2, w3);
    rounds4(&mut abef, &mut cdgh, _mm_add_epi32(w4, k(4)));
    macro_rules! step {
        ($next:ident = $a:ident, $b:ident, $c:ident, $d:ident; $i:expr) => {
            $next = schedule($a, $b, $c, $d);
            rounds4(&mut abef, &mut cdgh, _mm_add_epi32($next, k($i)));
        };
    }
    step!(w0 = w1, w2, w3, w4; 5);
    step!(w1 = w2, w3, w4, w0; 6);
    step!(w2 = w3, w4, w0, w1; 7);
    step!(w3 = w4, w0, w1, w2; 8);
    step!(w4 = w0, w1, w2, w3; 9);
    step!(w0 = w1, w2, w3, w4; 10);
    step!(w1 = w2, w3, w4, w0; 11);
    step!(w2 = w3, w4, w0, w1; 12);
    step!(w3 = w4, w0, w1, w2; 13);
    step!(w4 = w0, w1, w2, w3; 14);
    step!(w0 = w1, w2, w3, w4; 15);
    let _ = (w0, w1, w2, w3, w4);
    (abef, cdgh)
}

/// See [`crate::rounds`].
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub(crate) fn rounds(inner: &[u32; 8], outer: &[u32; 8], u: &[u32; 8], count: u32) -> [u32; 8] {
    let fixed = Fixed::new();
    let (inner, outer) = (Start::new(inner), Start::new(outer));
    let mut u = Message::from_words(
        vector([u[0], u[1], u[2], u[3]]),
        vector([u[4], u[5], u[6], u[7]]),
    );
    let (mut t0, mut t1) = (u.w0, u.w1);
    for _ in 0..count {
        let (abef, cdgh) = compress(&inner, &u, &fixed);
        let x = handover(abef, cdgh, &inner);
        let (abef, cdgh) = compress(&outer, &x, &fixed);
        u = handover(abef, cdgh, &outer);
        t0 = _mm_xor_si128(t0, u.w0);
        t1 = _mm_xor_si128(t1, u.w1);
    }
    let (low, high) = (words(t0), words(t1));
    [
        low[0], low[1], low[2], low[3], high[0], high[1], high[2], high[3],
    ]
}

/// See [`crate::bulk`].
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub(crate) fn bulk(count: u64) -> [u32; 8] {
    let fixed = Fixed::new();
    let mut start = Start::new(&[
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ]);
    let mut message = Message::from_words(vector([1, 2, 3, 4]), vector([5, 6, 7, 8]));
    for i in 0..count {
        let (abef, cdgh) = compress(&start, &message, &fixed);
        start.abef = _mm_add_epi32(abef, start.abef);
        start.cdgh = _mm_add_epi32(cdgh, start.cdgh);
        // A message that changes but does not wait for the state.
        message = Message::from_words(
            _mm_add_epi32(message.w0, vector([i as u32, 0, 0, 0])),
            message.w1,
        );
    }
    let (low, high) = (words(start.abef), words(start.cdgh));
    [
        low[0], low[1], low[2], low[3], high[0], high[1], high[2], high[3],
    ]
}
