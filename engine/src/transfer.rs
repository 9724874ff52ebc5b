//! The transfer record and the query filter shared by `query_accounts` and `query_transfers`:
//! `Transfer`, `TransferFlags`, `QueryFilter` and `QueryFilterFlags`.
//!
//! Layouts are byte for byte those of docs/protocol.md sections 6.2 and 6.5; compile-time
//! checks pin sizes and offsets, and golden tests pin the bytes. Validation lives in the ledger.

use core::mem::align_of;

wire_record! {
    /// A movement of `amount` from the debit account to the credit account (or a reservation,
    /// post or void of one). Stored transfers never change.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    // Aligned to a cache line (the layout is unchanged): a 128-byte record in a dense store then
    // spans exactly two lines instead of three.
    #[repr(C, align(64))]
    pub struct Transfer(128 bytes) {
        /// Client-chosen id, unique among transfers; never 0 or `u128::MAX`.
        pub id: u128 @ 0,
        /// Account debited (post/void: 0 inherits the pending transfer's).
        pub debit_account_id: u128 @ 16,
        /// Account credited (post/void: 0 inherits the pending transfer's).
        pub credit_account_id: u128 @ 32,
        /// Amount; for balancing transfers an upper bound, stored as the amount actually moved.
        pub amount: u128 @ 48,
        /// The pending transfer a post or void resolves; 0 otherwise.
        pub pending_id: u128 @ 64,
        /// Opaque, queryable (0 means none; post/void inherit the pending's value).
        pub user_data_128: u128 @ 80,
        /// Opaque, queryable.
        pub user_data_64: u64 @ 96,
        /// Opaque, queryable.
        pub user_data_32: u32 @ 104,
        /// Seconds until a pending transfer expires (0: never). Only for pending transfers.
        pub timeout: u32 @ 108,
        /// Ledger of both accounts; never 0 (post/void: 0 inherits).
        pub ledger: u32 @ 112,
        /// Reason code; never 0 (post/void: 0 inherits).
        pub code: u16 @ 116,
        /// `TransferFlags` bits.
        pub flags: u16 @ 118,
        /// Creation time in nanoseconds, set by the engine (or by the client for `imported`).
        pub timestamp: u64 @ 120,
    }
}

const _: () = assert!(align_of::<Transfer>() == 64);

flags! {
    /// Bits of `Transfer::flags`; `Transfer::flags()` gives this typed view with a predicate per
    /// bit.
    pub struct TransferFlags(u16) for Transfer {
        /// Chain this event with the next one in the batch: all succeed or none.
        LINKED = 1 << 0, linked;
        /// Reserve the amount (debits/credits pending) until posted, voided or expired.
        PENDING = 1 << 1, pending;
        /// Post (some or all of) the pending transfer `pending_id`.
        POST_PENDING_TRANSFER = 1 << 2, post_pending_transfer;
        /// Void the pending transfer `pending_id`.
        VOID_PENDING_TRANSFER = 1 << 3, void_pending_transfer;
        /// Clamp the amount so the debit account's debits do not exceed its credits.
        BALANCING_DEBIT = 1 << 4, balancing_debit;
        /// Clamp the amount so the credit account's credits do not exceed its debits.
        BALANCING_CREDIT = 1 << 5, balancing_credit;
        /// Close the debit account while this pending transfer is unresolved.
        CLOSING_DEBIT = 1 << 6, closing_debit;
        /// Close the credit account while this pending transfer is unresolved.
        CLOSING_CREDIT = 1 << 7, closing_credit;
        /// The transfer carries a client-supplied historical timestamp.
        IMPORTED = 1 << 8, imported;
        /// Bits with no meaning; they must be zero in client transfers.
        PADDING = !0x1FF;
        /// Set on the transfers the matching side makes (holds, their voids, the legs and fees of
        /// fills) and on no other: their ids are a namespace of their own, apart from client ids,
        /// so this flag tells the two apart where both appear (account transfers, queries). A
        /// client transfer with this bit fails with `reserved_flag` (it is one of `PADDING`).
        SETTLEMENT = 1 << 15, settlement;
    }
}

wire_record! {
    /// Selects accounts or transfers by user data, ledger, code and time: `query_accounts` and
    /// `query_transfers`. Zero fields do not filter; an invalid filter selects nothing.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(C)]
    pub struct QueryFilter(64 bytes) {
        /// `user_data_128` to match, or 0.
        pub user_data_128: u128 @ 0,
        /// `user_data_64` to match, or 0.
        pub user_data_64: u64 @ 16,
        /// `user_data_32` to match, or 0.
        pub user_data_32: u32 @ 24,
        /// `ledger` to match, or 0.
        pub ledger: u32 @ 28,
        /// `code` to match, or 0.
        pub code: u16 @ 32,
        /// Must be zero.
        pub reserved: [u8; 6] @ 34,
        /// Smallest timestamp, inclusive (0: unbounded).
        pub timestamp_min: u64 @ 40,
        /// Largest timestamp, inclusive (0: unbounded).
        pub timestamp_max: u64 @ 48,
        /// The most results wanted; not 0.
        pub limit: u32 @ 56,
        /// `QueryFilterFlags` bits.
        pub flags: u32 @ 60,
    }
}

flags! {
    /// Bits of `QueryFilter::flags`; `QueryFilter::flags()` gives this typed view.
    pub struct QueryFilterFlags(u32) for QueryFilter {
        /// Newest first.
        REVERSED = 1, reversed;
        /// Bits with no meaning; a filter with any of them set selects nothing.
        PADDING = !0x1, padding;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{identity_bytes, pattern};

    #[test]
    fn transfer_golden_bytes() {
        let transfer = Transfer {
            id: pattern(0),
            debit_account_id: pattern(16),
            credit_account_id: pattern(32),
            amount: pattern(48),
            pending_id: pattern(64),
            user_data_128: pattern(80),
            user_data_64: pattern(96),
            user_data_32: pattern(104),
            timeout: pattern(108),
            ledger: pattern(112),
            code: pattern(116),
            flags: pattern(118),
            timestamp: pattern(120),
        };
        let mut bytes = [0u8; 128];
        transfer.encode(&mut bytes);
        assert_eq!(bytes, identity_bytes::<128>());
        assert_eq!(Transfer::decode(&bytes), transfer);
    }

    #[test]
    fn transfer_small_values_land_at_their_offsets() {
        let transfer = Transfer {
            amount: 0x0201,
            timeout: 7,
            flags: 0x100,
            ..Transfer::default()
        };
        let mut bytes = [0u8; 128];
        transfer.encode(&mut bytes);
        let mut expected = [0u8; 128];
        expected[48] = 1;
        expected[49] = 2;
        expected[108] = 7;
        expected[119] = 1;
        assert_eq!(bytes, expected);
    }

    #[test]
    fn query_filter_golden_bytes() {
        let filter = QueryFilter {
            user_data_128: pattern(0),
            user_data_64: pattern(16),
            user_data_32: pattern(24),
            ledger: pattern(28),
            code: pattern(32),
            reserved: [34, 35, 36, 37, 38, 39],
            timestamp_min: pattern(40),
            timestamp_max: pattern(48),
            limit: pattern(56),
            flags: pattern(60),
        };
        let mut bytes = [0u8; 64];
        filter.encode(&mut bytes);
        assert_eq!(bytes, identity_bytes::<64>());
        assert_eq!(QueryFilter::decode(&bytes), filter);
    }

    #[test]
    fn flag_values_match_the_reference() {
        assert_eq!(TransferFlags::PENDING, 2);
        assert_eq!(TransferFlags::POST_PENDING_TRANSFER, 4);
        assert_eq!(TransferFlags::VOID_PENDING_TRANSFER, 8);
        assert_eq!(TransferFlags::BALANCING_DEBIT, 16);
        assert_eq!(TransferFlags::BALANCING_CREDIT, 32);
        assert_eq!(TransferFlags::CLOSING_DEBIT, 64);
        assert_eq!(TransferFlags::CLOSING_CREDIT, 128);
        assert_eq!(TransferFlags::IMPORTED, 256);
        assert_eq!(TransferFlags::PADDING, 0xFE00);
        assert_eq!(TransferFlags::SETTLEMENT, 0x8000);
        assert_eq!(QueryFilterFlags::REVERSED, 1);
    }
}
