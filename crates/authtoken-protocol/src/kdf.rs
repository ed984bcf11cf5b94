//! PBKDF2-HMAC-SHA256 at the speed of the machine's SHA-256: the one key
//! derivation of SCRAM (client and server), the HEM user secret and the
//! offline verifiers.
//!
//! A round of PBKDF2 is one HMAC of a 32-byte message. With the key's inner
//! and outer states computed once (SHA-256 of the padded key XOR ipad and
//! XOR opad), each round is exactly two compressions of one block each, the
//! message and padding fitting in one block. On x86_64 with the SHA
//! extensions the rounds after the first run in `authtoken-sha-ni`, which
//! also fixes the constant half of each block once (docs/BENCHMARKS.md,
//! "The KDF"); elsewhere they run here on `sha2::compress256` (which uses
//! the ARMv8 SHA-2 instructions when the CPU has them, and a portable
//! implementation otherwise). Nothing is allocated per round.

use sha2::block_api::compress256;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

const BLOCK: usize = 64;
/// SHA-256's initial state (FIPS 180-4 §5.3.3).
const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
/// Bits hashed by an inner or outer hash of a round: one key block plus a
/// 32-byte message.
const ROUND_BITS: u64 = ((BLOCK + 32) * 8) as u64;

/// The HMAC key as one block: the password, or its SHA-256 when longer
/// than a block, zero-padded.
fn key_block(password: &[u8]) -> Zeroizing<[u8; BLOCK]> {
    let mut key = Zeroizing::new([0u8; BLOCK]);
    if password.len() > BLOCK {
        key[..32].copy_from_slice(&Sha256::digest(password));
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    key
}

/// The key block XOR `pad` (0x36 inner, 0x5c outer).
fn padded(key: &[u8; BLOCK], pad: u8) -> Zeroizing<[u8; BLOCK]> {
    let mut block = Zeroizing::new([0u8; BLOCK]);
    for (b, k) in block.iter_mut().zip(key.iter()) {
        *b = k ^ pad;
    }
    block
}

/// HMAC-SHA256 keyed with the password, as the two states after the key
/// block.
struct HmacKey {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl HmacKey {
    fn new(key: &[u8; BLOCK]) -> HmacKey {
        let state_after = |pad: u8| {
            let mut state = IV;
            compress256(&mut state, &[*padded(key, pad)]);
            state
        };
        HmacKey {
            inner: state_after(0x36),
            outer: state_after(0x5c),
        }
    }

    /// HMAC of `salt || INT(block_index)`: the first round, a message of any
    /// length, so it goes through the ordinary hash (once per output block,
    /// not per round).
    fn first_round(key: &[u8; BLOCK], salt: &[u8], block_index: u32) -> [u32; 8] {
        let mut inner = Sha256::new();
        inner.update(*padded(key, 0x36));
        inner.update(salt);
        inner.update(block_index.to_be_bytes());
        let inner = inner.finalize();
        let mut outer = Sha256::new();
        outer.update(*padded(key, 0x5c));
        outer.update(inner);
        words(&outer.finalize().into())
    }

    /// One round: HMAC of a 32-byte message given as eight words, in two
    /// compressions from the precomputed states.
    #[inline(always)]
    fn round(&self, message: &[u32; 8], block: &mut [u8; BLOCK]) -> [u32; 8] {
        put_words(block.as_mut_slice(), message);
        let mut inner = self.inner;
        compress256(&mut inner, std::slice::from_ref(block));
        put_words(block.as_mut_slice(), &inner);
        let mut outer = self.outer;
        compress256(&mut outer, std::slice::from_ref(block));
        outer
    }
}

impl HmacKey {
    /// The rounds after the first, portably (where the SHA extensions are
    /// absent): U1 ^ … ^ U(count+1).
    fn later_rounds(&self, first: &[u32; 8], count: u32, block: &mut [u8; BLOCK]) -> [u32; 8] {
        let mut u = Zeroizing::new(*first);
        let mut t = *first;
        for _ in 0..count {
            *u = self.round(&u, block);
            for (t, u) in t.iter_mut().zip(u.iter()) {
                *t ^= u;
            }
        }
        t
    }
}

impl Drop for HmacKey {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

fn words(bytes: &[u8; 32]) -> [u32; 8] {
    let mut out = [0u32; 8];
    for (word, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    out
}

/// Writes eight words big-endian into the first 32 bytes of `out`.
#[inline(always)]
fn put_words(out: &mut [u8], message: &[u32; 8]) {
    for (chunk, word) in out[..32].chunks_exact_mut(4).zip(message) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
}

/// A round's block: the 32-byte message, then SHA-256 padding for a
/// message of [`ROUND_BITS`] bits (the key block came first).
fn round_block() -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    block[32] = 0x80;
    block[56..].copy_from_slice(&ROUND_BITS.to_be_bytes());
    block
}

/// PBKDF2-HMAC-SHA256 (RFC 8018 §5.2) of `password` and `salt` with
/// `rounds` iterations (0 counts as 1), filling `out`.
pub fn pbkdf2_hmac_sha256(password: &[u8], salt: &[u8], rounds: u32, out: &mut [u8]) {
    let key_block = key_block(password);
    let key = HmacKey::new(&key_block);
    let mut block = Zeroizing::new(round_block());
    for (index, chunk) in out.chunks_mut(32).enumerate() {
        let block_index = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let u = Zeroizing::new(HmacKey::first_round(&key_block, salt, block_index));
        let later = rounds.max(1) - 1;
        let t = Zeroizing::new(
            authtoken_sha_ni::rounds(&key.inner, &key.outer, &u, later)
                .unwrap_or_else(|| key.later_rounds(&u, later, &mut block)),
        );
        let mut bytes = Zeroizing::new([0u8; 32]);
        put_words(bytes.as_mut_slice(), &t);
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// Single-block SHA-256 compressions per call of [`compressions`]: the
/// yardstick the benchmark divides by (2 per round).
pub const COMPRESSIONS_PER_ROUND: u64 = 2;

/// Runs `count` chained single-block compressions, the machine's SHA-256
/// bound for the benchmark; returns the state so the work cannot be
/// optimised away.
pub fn compressions(count: u64) -> [u32; 8] {
    let mut state = IV;
    let mut block = [0u8; BLOCK];
    for i in 0..count {
        block[0] = i as u8;
        compress256(&mut state, std::slice::from_ref(&block));
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn derive(password: &[u8], salt: &[u8], rounds: u32, len: usize) -> String {
        let mut out = vec![0u8; len];
        pbkdf2_hmac_sha256(password, salt, rounds, &mut out);
        hex(&out)
    }

    /// The SHA-extension rounds and the portable ones agree (where the CPU
    /// has the extensions; elsewhere the portable path is the one above).
    #[test]
    fn the_two_paths_agree() {
        let key = HmacKey::new(&key_block(b"pencil"));
        let first = [0x0123_4567, 0x89ab_cdef, 1, 2, 3, 4, 5, 0xffff_ffff];
        let mut block = round_block();
        for count in [0, 1, 2, 3, 4095, 10_000] {
            let portable = key.later_rounds(&first, count, &mut block);
            if let Some(fast) = authtoken_sha_ni::rounds(&key.inner, &key.outer, &first, count) {
                assert_eq!(fast, portable, "{count} rounds");
            }
        }
        assert_eq!(
            authtoken_sha_ni::available(),
            authtoken_sha_ni::rounds(&key.inner, &key.outer, &first, 1).is_some()
        );
    }

    /// RFC 7914 §11, the PBKDF2-HMAC-SHA256 vectors (64-byte output: two
    /// blocks).
    #[test]
    fn rfc7914_vectors() {
        assert_eq!(
            derive(b"passwd", b"salt", 1, 64),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
             49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
        );
        assert_eq!(
            derive(b"Password", b"NaCl", 80000, 64),
            "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56\
             a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"
        );
    }

    /// Agrees with ring's PBKDF2 on keys shorter than, equal to and longer
    /// than a block, odd salts, odd output lengths and a round count of 1.
    #[test]
    fn agrees_with_ring() {
        use std::num::NonZeroU32;
        let long = [0x41u8; 100];
        let exact = [0x42u8; 64];
        for (password, salt, rounds, len) in [
            (&b""[..], &b""[..], 1u32, 32usize),
            (
                b"pencil",
                b"\x41\x25\xc2\x47\xe4\x3a\xb1\xe9\x3c\x6d\xff\x76",
                4096,
                32,
            ),
            (&long[..], b"salt", 1000, 20),
            (
                &exact[..],
                b"a much longer salt than usual, longer than one block of sixty-four",
                17,
                77,
            ),
        ] {
            let mut expected = vec![0u8; len];
            ring::pbkdf2::derive(
                ring::pbkdf2::PBKDF2_HMAC_SHA256,
                NonZeroU32::new(rounds).unwrap(),
                salt,
                password,
                &mut expected,
            );
            assert_eq!(derive(password, salt, rounds, len), hex(&expected));
        }
    }
}
