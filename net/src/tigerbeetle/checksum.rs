//! The TigerBeetle checksum: the 128-bit tag of AEGIS-128L used as a MAC, with an all-zero key
//! and nonce, the input as associated data and nothing encrypted.
//!
//! AEGIS-128L keeps eight 16-byte state blocks; each update runs one AES round per block, every
//! round taking the previous state (so the eight rounds are independent and run as one
//! eight-way call). Absorbing 32 bytes is one update; the tag is the XOR of blocks 0..=6 after
//! seven finishing updates keyed by the input's length. Reference: the AEGIS family, Wu and
//! Preneel (CAESAR final portfolio), and the layout in `docs/tigerbeetle-compatibility.md`.
//!
//! This is the AEAD tag with an empty message, not the newer "AEGIS-MAC" mode, which gives a
//! different value; the test vectors below pin it. The AES round comes from the `aes` crate's
//! `hazmat` module, which uses the processor's AES instructions when it has them and a
//! constant-time software round otherwise, so the crate stays free of unsafe code.

use aes::hazmat::cipher_round_par;
use aes::{Block, Block8};

const C0: [u8; 16] = [
    0x00, 0x01, 0x01, 0x02, 0x03, 0x05, 0x08, 0x0d, 0x15, 0x22, 0x37, 0x59, 0x90, 0xe9, 0x79, 0x62,
];
const C1: [u8; 16] = [
    0xdb, 0x3d, 0x18, 0x55, 0x6d, 0xc2, 0x2f, 0xf1, 0x20, 0x11, 0x31, 0x42, 0x73, 0xb5, 0x28, 0xdd,
];

/// Bytes absorbed per state update.
const RATE: usize = 32;

struct State {
    blocks: Block8,
}

fn xor(a: &[u8; 16], b: &[u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for index in 0..16 {
        out[index] = a[index] ^ b[index];
    }
    out
}

impl State {
    /// The state after initialization with an all-zero key and nonce.
    fn new() -> State {
        let zero = [0u8; 16];
        let init = [zero, C1, C0, C1, zero, C0, C1, C0];
        let mut state = State {
            blocks: Block8::default(),
        };
        for (block, value) in state.blocks.iter_mut().zip(init) {
            *block = Block::from(value);
        }
        for _ in 0..10 {
            state.update(&zero, &zero);
        }
        state
    }

    /// One update: block i becomes AESRound(block i-1, block i), with the two message halves
    /// mixed into the round keys of blocks 0 and 4.
    fn update(&mut self, m0: &[u8; 16], m1: &[u8; 16]) {
        let old = self.blocks;
        let mut keys = old;
        let k0: [u8; 16] = old[0].into();
        let k4: [u8; 16] = old[4].into();
        keys[0] = Block::from(xor(&k0, m0));
        keys[4] = Block::from(xor(&k4, m1));
        for index in 0..8 {
            self.blocks[index] = old[(index + 7) % 8];
        }
        cipher_round_par(&mut self.blocks, &keys);
    }

    fn absorb(&mut self, chunk: &[u8; RATE]) {
        let mut m0 = [0u8; 16];
        let mut m1 = [0u8; 16];
        m0.copy_from_slice(&chunk[..16]);
        m1.copy_from_slice(&chunk[16..]);
        self.update(&m0, &m1);
    }

    fn tag(mut self, associated_size: usize) -> u128 {
        let mut lengths = [0u8; 16];
        let bits = (associated_size as u64).wrapping_mul(8);
        lengths[..8].copy_from_slice(&bits.to_le_bytes());
        let s2: [u8; 16] = self.blocks[2].into();
        let mixed = xor(&s2, &lengths);
        for _ in 0..7 {
            self.update(&mixed, &mixed);
        }
        let mut tag = [0u8; 16];
        for block in self.blocks.iter().take(7) {
            let bytes: [u8; 16] = (*block).into();
            tag = xor(&tag, &bytes);
        }
        u128::from_le_bytes(tag)
    }
}

/// The checksum of `bytes`, as TigerBeetle computes it for headers, bodies and reply contexts.
pub fn checksum(bytes: &[u8]) -> u128 {
    let mut state = State::new();
    let mut chunks = bytes.chunks_exact(RATE);
    for chunk in &mut chunks {
        let mut block = [0u8; RATE];
        block.copy_from_slice(chunk);
        state.absorb(&block);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut block = [0u8; RATE];
        block[..rest.len()].copy_from_slice(rest);
        state.absorb(&block);
    }
    state.tag(bytes.len())
}

/// The checksum of an empty input, which pongs and evictions carry as their body checksum.
pub const CHECKSUM_EMPTY: u128 = 0x49f1_7461_8255_402d_e6e7_e3c4_0d60_cc83;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_matches_the_reference_vector() {
        assert_eq!(checksum(&[]), CHECKSUM_EMPTY);
        assert_eq!(
            checksum(&[]).to_le_bytes(),
            [
                0x83, 0xcc, 0x60, 0x0d, 0xc4, 0xe3, 0xe7, 0xe6, 0x2d, 0x40, 0x55, 0x82, 0x61, 0x74,
                0xf1, 0x49
            ]
        );
    }

    #[test]
    fn sixteen_zero_bytes_match_the_reference_vector() {
        assert_eq!(
            checksum(&[0u8; 16]),
            0x263a_bed4_1c10_3361_65d1_5dd0_8dd4_2af7
        );
    }

    #[test]
    fn length_and_padding_change_the_tag() {
        // A zero-padded tail must not collide with the same bytes sent in full.
        assert_ne!(checksum(&[0u8; 16]), checksum(&[0u8; 32]));
        assert_ne!(checksum(&[1u8; 33]), checksum(&[1u8; 34]));
        assert_ne!(checksum(b"a"), checksum(b"b"));
    }
}
