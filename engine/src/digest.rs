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

/// Starting values of the four lanes a record is mixed in (`Digest::record`).
const RECORD_LANES: [u64; 4] = [
    0xA409_3822_299F_31D0,
    0x082E_FA98_EC4E_6C89,
    0x4528_21E6_38D0_1377,
    0xBE54_66CF_34E9_0C6C,
];

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

    /// Absorbs a wire record that `encode` writes. Its little-endian 64-bit words are first
    /// mixed into four independent record lanes (word i into lane i mod 4, so the multiplies of
    /// different lanes overlap), then the four lanes enter the running state as four words: a
    /// quarter of the dependent steps of absorbing every word, for the records the history
    /// mode folds on the core (every transfer and balance row).
    pub(crate) fn record<const SIZE: usize>(&mut self, encode: impl FnOnce(&mut [u8; SIZE])) {
        const { assert!(SIZE % 8 == 0, "records are whole 64-bit words") };
        let mut bytes = [0u8; SIZE];
        encode(&mut bytes);
        let mut lanes = RECORD_LANES;
        for (index, chunk) in bytes.chunks_exact(8).enumerate() {
            let word = u64::from_le_bytes(chunk.try_into().expect("chunk of 8"));
            let lane = &mut lanes[index % RECORD_LANES.len()];
            *lane = (*lane ^ word).wrapping_mul(MULTIPLIER_A);
            *lane ^= *lane >> 29;
        }
        for lane in lanes {
            self.u64(lane);
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

    #[test]
    fn every_word_of_a_record_and_its_position_matter() {
        let digest = |records: &[[u64; 16]]| {
            let mut digest = Digest::new();
            for record in records {
                digest.record(|bytes: &mut [u8; 128]| {
                    for (chunk, word) in bytes.chunks_exact_mut(8).zip(record) {
                        chunk.copy_from_slice(&word.to_le_bytes());
                    }
                });
            }
            digest.finish()
        };
        let base: [u64; 16] = core::array::from_fn(|index| index as u64 * 0x0101_0101 + 7);
        assert_eq!(digest(&[base]), digest(&[base]));
        for index in 0..16 {
            // One bit of any word, in any lane.
            let mut changed = base;
            changed[index] ^= 1 << (index * 3);
            assert_ne!(digest(&[base]), digest(&[changed]), "word {index}");
            // The same words in other places: words of one lane, and of two lanes.
            let mut swapped = base;
            swapped.swap(index, (index + 4) % 16);
            assert_ne!(
                digest(&[base]),
                digest(&[swapped]),
                "swap {index} in its lane"
            );
            let mut swapped = base;
            swapped.swap(index, (index + 1) % 16);
            assert_ne!(
                digest(&[base]),
                digest(&[swapped]),
                "swap {index} across lanes"
            );
        }
        let mut other = base;
        other[0] += 1;
        assert_ne!(digest(&[base, other]), digest(&[other, base]));
        assert_ne!(digest(&[base]), digest(&[base, base]));
    }
}
