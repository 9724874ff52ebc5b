//! The account record and the records that describe an account's history and queries:
//! `Account`, `AccountFlags`, `AccountBalance`, `AccountFilter` and `AccountFilterFlags`.
//!
//! Layouts are byte for byte those of docs/protocol.md section 6 (little-endian, no implicit
//! padding, 128 bytes, u128 fields 16-byte aligned); compile-time checks pin sizes and offsets,
//! and golden tests pin the bytes. This file knows nothing about validation rules.

use core::mem::align_of;

wire_record! {
    /// An account: four balances and immutable identity fields. Only the balances and the `closed`
    /// flag change after creation.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    // Aligned to a cache line (the layout is unchanged): a 128-byte record in a dense store then
    // spans exactly two lines instead of three.
    #[repr(C, align(64))]
    pub struct Account(128 bytes) {
        /// Client-chosen id, unique among accounts; never 0 or `u128::MAX`.
        pub id: u128 @ 0,
        /// Amount reserved by pending transfers debiting this account.
        pub debits_pending: u128 @ 16,
        /// Amount posted to the debit side.
        pub debits_posted: u128 @ 32,
        /// Amount reserved by pending transfers crediting this account.
        pub credits_pending: u128 @ 48,
        /// Amount posted to the credit side.
        pub credits_posted: u128 @ 64,
        /// Opaque, queryable (0 means none).
        pub user_data_128: u128 @ 80,
        /// Opaque, queryable (0 means none).
        pub user_data_64: u64 @ 96,
        /// Opaque, queryable (0 means none).
        pub user_data_32: u32 @ 104,
        /// Must be zero.
        pub reserved: u32 @ 108,
        /// Partition of accounts that may transact with each other; never 0.
        pub ledger: u32 @ 112,
        /// Chart-of-accounts type; never 0.
        pub code: u16 @ 116,
        /// `AccountFlags` bits.
        pub flags: u16 @ 118,
        /// Creation time in nanoseconds, set by the engine (or by the client for `imported`).
        pub timestamp: u64 @ 120,
    }
}

const _: () = assert!(align_of::<Account>() == 64);

flags! {
    /// Bits of `Account::flags`; `Account::flags()` gives this typed view with a predicate per bit.
    pub struct AccountFlags(u16) for Account {
        /// Chain this event with the next one in the batch: all succeed or none.
        LINKED = 1 << 0, linked;
        /// Reject transfers that would make pending plus posted debits exceed posted credits.
        DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1, debits_must_not_exceed_credits;
        /// Reject transfers that would make pending plus posted credits exceed posted debits.
        CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2, credits_must_not_exceed_debits;
        /// Keep the balance after every transfer, for `get_account_balances`.
        HISTORY = 1 << 3, history;
        /// The account carries a client-supplied historical timestamp.
        IMPORTED = 1 << 4, imported;
        /// The account rejects new transfers (voids of pending transfers are still allowed).
        CLOSED = 1 << 5, closed;
        /// Bits with no meaning; they must be zero.
        PADDING = !0x3F, padding;
    }
}

wire_record! {
    /// The balances of an account right after one transfer (a row of its history).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(C)]
    pub struct AccountBalance(128 bytes) {
        /// `Account::debits_pending` after the transfer.
        pub debits_pending: u128 @ 0,
        /// `Account::debits_posted` after the transfer.
        pub debits_posted: u128 @ 16,
        /// `Account::credits_pending` after the transfer.
        pub credits_pending: u128 @ 32,
        /// `Account::credits_posted` after the transfer.
        pub credits_posted: u128 @ 48,
        /// Timestamp of the transfer that produced this balance.
        pub timestamp: u64 @ 64,
        /// Zero.
        pub reserved: [u8; 56] @ 72,
    }
}

wire_record! {
    /// Selects transfers (or balance rows) of one account: `get_account_transfers` and
    /// `get_account_balances`. Zero fields do not filter; an invalid filter selects nothing.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(C)]
    pub struct AccountFilter(128 bytes) {
        /// The account; never 0 or `u128::MAX`.
        pub account_id: u128 @ 0,
        /// Transfer `user_data_128` to match, or 0.
        pub user_data_128: u128 @ 16,
        /// Transfer `user_data_64` to match, or 0.
        pub user_data_64: u64 @ 32,
        /// Transfer `user_data_32` to match, or 0.
        pub user_data_32: u32 @ 40,
        /// Transfer `code` to match, or 0.
        pub code: u16 @ 44,
        /// Must be zero.
        pub reserved: [u8; 58] @ 46,
        /// Smallest timestamp, inclusive (0: unbounded).
        pub timestamp_min: u64 @ 104,
        /// Largest timestamp, inclusive (0: unbounded).
        pub timestamp_max: u64 @ 112,
        /// The most results wanted; not 0.
        pub limit: u32 @ 120,
        /// `AccountFilterFlags` bits.
        pub flags: u32 @ 124,
    }
}

flags! {
    /// Bits of `AccountFilter::flags`; `AccountFilter::flags()` gives this typed view.
    pub struct AccountFilterFlags(u32) for AccountFilter {
        /// Select transfers that debit the account.
        DEBITS = 1, debits;
        /// Select transfers that credit the account.
        CREDITS = 2, credits;
        /// Newest first.
        REVERSED = 4, reversed;
        /// Bits with no meaning; a filter with any of them set selects nothing.
        PADDING = !0x7, padding;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{identity_bytes, pattern};

    #[test]
    fn account_golden_bytes() {
        let account = Account {
            id: pattern(0),
            debits_pending: pattern(16),
            debits_posted: pattern(32),
            credits_pending: pattern(48),
            credits_posted: pattern(64),
            user_data_128: pattern(80),
            user_data_64: pattern(96),
            user_data_32: pattern(104),
            reserved: pattern(108),
            ledger: pattern(112),
            code: pattern(116),
            flags: pattern(118),
            timestamp: pattern(120),
        };
        let mut bytes = [0u8; 128];
        account.encode(&mut bytes);
        assert_eq!(bytes, identity_bytes::<128>());
        assert_eq!(Account::decode(&bytes), account);
    }

    #[test]
    fn account_small_values_land_at_their_offsets() {
        let account = Account {
            id: 1,
            ledger: 0x0302,
            flags: 0x20,
            ..Account::default()
        };
        let mut bytes = [0u8; 128];
        account.encode(&mut bytes);
        let mut expected = [0u8; 128];
        expected[0] = 1;
        expected[112] = 2;
        expected[113] = 3;
        expected[118] = 0x20;
        assert_eq!(bytes, expected);
    }

    #[test]
    fn account_balance_golden_bytes() {
        let mut reserved = [0u8; 56];
        for (index, byte) in reserved.iter_mut().enumerate() {
            *byte = 72 + index as u8;
        }
        let balance = AccountBalance {
            debits_pending: pattern(0),
            debits_posted: pattern(16),
            credits_pending: pattern(32),
            credits_posted: pattern(48),
            timestamp: pattern(64),
            reserved,
        };
        let mut bytes = [0u8; 128];
        balance.encode(&mut bytes);
        assert_eq!(bytes, identity_bytes::<128>());
        assert_eq!(AccountBalance::decode(&bytes), balance);
    }

    #[test]
    fn account_filter_golden_bytes() {
        let mut reserved = [0u8; 58];
        for (index, byte) in reserved.iter_mut().enumerate() {
            *byte = 46 + index as u8;
        }
        let filter = AccountFilter {
            account_id: pattern(0),
            user_data_128: pattern(16),
            user_data_64: pattern(32),
            user_data_32: pattern(40),
            code: pattern(44),
            reserved,
            timestamp_min: pattern(104),
            timestamp_max: pattern(112),
            limit: pattern(120),
            flags: pattern(124),
        };
        let mut bytes = [0u8; 128];
        filter.encode(&mut bytes);
        assert_eq!(bytes, identity_bytes::<128>());
        assert_eq!(AccountFilter::decode(&bytes), filter);
    }

    #[test]
    fn flag_values_match_the_reference() {
        assert_eq!(AccountFlags::LINKED, 0x01);
        assert_eq!(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS, 0x02);
        assert_eq!(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS, 0x04);
        assert_eq!(AccountFlags::HISTORY, 0x08);
        assert_eq!(AccountFlags::IMPORTED, 0x10);
        assert_eq!(AccountFlags::CLOSED, 0x20);
        assert_eq!(AccountFlags::PADDING, 0xFFC0);
        assert_eq!(AccountFilterFlags::REVERSED, 4);
    }
}
