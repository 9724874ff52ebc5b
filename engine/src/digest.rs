//! A small, fixed, non-cryptographic 128-bit digest for `Engine::state_hash`.
//!
//! Two 64-bit lanes absorb 64-bit words with multiply-xorshift steps and are cross-mixed at the
//! end. It is deterministic across runs and machines (no seed, explicit little-endian word
//! order) and good enough to tell two states apart in tests; it is not meant to resist an
//! adversary.

#[derive(Clone)]
pub(crate) struct Digest {
    lane_a: u64,
    lane_b: u64,
    words_count: u64,
}

const MULTIPLIER_A: u64 = 0x9E37_79B9_7F4A_7C15;
const MULTIPLIER_B: u64 = 0xD6E8_FEB8_6659_FD93;

impl Digest {
    pub(crate) fn new() -> Digest {
        Digest {
            lane_a: 0x243F_6A88_85A3_08D3,
            lane_b: 0x1319_8A2E_0370_7344,
            words_count: 0,
        }
    }

    pub(crate) fn u64(&mut self, word: u64) {
        self.lane_a = (self.lane_a ^ word).wrapping_mul(MULTIPLIER_A);
        self.lane_a ^= self.lane_a >> 29;
        self.lane_b = (self.lane_b ^ word ^ self.lane_a.rotate_left(21)).wrapping_mul(MULTIPLIER_B);
        self.lane_b ^= self.lane_b >> 32;
        self.words_count += 1;
    }

    pub(crate) fn u128(&mut self, word: u128) {
        self.u64(word as u64);
        self.u64((word >> 64) as u64);
    }

    /// Absorbs a wire record that `encode` writes: its bytes as 16-byte little-endian words.
    pub(crate) fn record<const SIZE: usize>(&mut self, encode: impl FnOnce(&mut [u8; SIZE])) {
        let mut bytes = [0u8; SIZE];
        encode(&mut bytes);
        for chunk in bytes.chunks_exact(16) {
            self.u128(u128::from_le_bytes(chunk.try_into().expect("chunk of 16")));
        }
    }

    /// Writes the running state (checkpoint.rs).
    pub(crate) fn checkpoint_write(
        &self,
        writer: &mut crate::checkpoint::ImageWriter,
    ) -> std::io::Result<()> {
        writer.u64(self.lane_a)?;
        writer.u64(self.lane_b)?;
        writer.u64(self.words_count)
    }

    /// Reads the running state written by `checkpoint_write`.
    pub(crate) fn checkpoint_read(
        reader: &mut crate::checkpoint::ImageReader,
    ) -> Result<Digest, crate::checkpoint::CheckpointError> {
        Ok(Digest {
            lane_a: reader.u64()?,
            lane_b: reader.u64()?,
            words_count: reader.u64()?,
        })
    }

    pub(crate) fn finish(&self) -> u128 {
        let mut a = self.lane_a ^ self.words_count.wrapping_mul(MULTIPLIER_B);
        let mut b = self.lane_b ^ a.rotate_left(32);
        for _ in 0..2 {
            a = (a ^ (b >> 31)).wrapping_mul(MULTIPLIER_A);
            b = (b ^ (a >> 29)).wrapping_mul(MULTIPLIER_B);
        }
        (u128::from(a) << 64) | u128::from(b ^ (a >> 32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_content_matter() {
        let digest = |words: &[u64]| {
            let mut digest = Digest::new();
            for word in words {
                digest.u64(*word);
            }
            digest.finish()
        };
        assert_eq!(digest(&[1, 2, 3]), digest(&[1, 2, 3]));
        assert_ne!(digest(&[1, 2, 3]), digest(&[3, 2, 1]));
        assert_ne!(digest(&[0]), digest(&[0, 0]));
        assert_ne!(digest(&[]), digest(&[0]));
        // A fixed value pins the function itself: changing it changes every state hash, and
        // the golden state hash of engine/tests/determinism.rs with it.
        assert_eq!(
            digest(&[1, 2, 3]),
            0x1ec4_79ef_4c04_699c_e009_141f_e393_3569
        );
    }
}
