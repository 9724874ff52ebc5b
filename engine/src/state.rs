//! `State`: the reply item of `get_state` (docs/protocol.md section 6.14), the engine's state
//! hash and clock and two counts, for an operator to compare one server's state across a
//! restart or with another's.
//!
//! The layout is declared with `wire_record!` (size and offsets checked at compile time). The
//! request is one event of 16 reserved bytes, all zero, so it has no record of its own.
//!
//! Does not compute anything: `Engine::state` fills it.

wire_record! {
    /// The engine's state as `get_state` reports it (64 bytes).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct State(64 bytes) {
        /// `Engine::state_hash`: a deterministic digest of the whole state. In history mode it
        /// folds in what left memory, so it does not depend on how much memory holds.
        pub state_hash: u128 @ 0,
        /// The last timestamp a write used (0 before the first write).
        pub timestamp: u64 @ 16,
        /// Accounts created.
        pub accounts_count: u64 @ 24,
        /// Transfers held in memory: every transfer stored, or in history mode those not yet
        /// dropped from memory (burned ids are not transfers).
        pub transfers_count: u64 @ 32,
        /// Zero.
        pub reserved: [u8; 24] @ 40,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{identity_bytes, pattern};

    #[test]
    fn state_golden_bytes() {
        let mut reserved = [0u8; 24];
        for (index, byte) in reserved.iter_mut().enumerate() {
            *byte = 40 + index as u8;
        }
        let state = State {
            state_hash: pattern(0),
            timestamp: pattern(16),
            accounts_count: pattern(24),
            transfers_count: pattern(32),
            reserved,
        };
        let mut bytes = [0u8; 64];
        state.encode(&mut bytes);
        assert_eq!(bytes, identity_bytes::<64>());
        assert_eq!(State::decode(&bytes), state);
    }

    #[test]
    fn state_small_values_land_at_their_offsets() {
        let state = State {
            state_hash: 0x0201,
            timestamp: 3,
            accounts_count: 4,
            transfers_count: 0x0605,
            ..State::default()
        };
        let mut bytes = [0xAAu8; 64];
        state.encode(&mut bytes);
        let mut expected = [0u8; 64];
        expected[0] = 1;
        expected[1] = 2;
        expected[16] = 3;
        expected[24] = 4;
        expected[32] = 5;
        expected[33] = 6;
        assert_eq!(bytes, expected);
    }
}
