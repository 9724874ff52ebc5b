//! The transfer record and the query filter shared by `query_accounts` and `query_transfers`:
//! `Transfer`, `TransferFlags`, `QueryFilter` and `QueryFilterFlags`.
//!
//! Layouts are byte for byte those of docs/protocol.md sections 6.2 and 6.5; compile-time
//! checks pin sizes and offsets, and golden tests pin the bytes. Validation lives in the ledger.

use core::mem::{align_of, offset_of, size_of};

use crate::wire::{
    read_u128, read_u16, read_u32, read_u64, write_u128, write_u16, write_u32, write_u64,
};

/// A movement of `amount` from the debit account to the credit account (or a reservation,
/// post or void of one). Stored transfers never change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
// Aligned to a cache line (the layout is unchanged): a 128-byte record in a dense store then
// spans exactly two lines instead of three.
#[repr(C, align(64))]
pub struct Transfer {
    /// Client-chosen id, unique among transfers; never 0 or `u128::MAX`.
    pub id: u128,
    /// Account debited (post/void: 0 inherits the pending transfer's).
    pub debit_account_id: u128,
    /// Account credited (post/void: 0 inherits the pending transfer's).
    pub credit_account_id: u128,
    /// Amount; for balancing transfers an upper bound, stored as the amount actually moved.
    pub amount: u128,
    /// The pending transfer a post or void resolves; 0 otherwise.
    pub pending_id: u128,
    /// Opaque, queryable (0 means none; post/void inherit the pending's value).
    pub user_data_128: u128,
    /// Opaque, queryable.
    pub user_data_64: u64,
    /// Opaque, queryable.
    pub user_data_32: u32,
    /// Seconds until a pending transfer expires (0: never). Only for pending transfers.
    pub timeout: u32,
    /// Ledger of both accounts; never 0 (post/void: 0 inherits).
    pub ledger: u32,
    /// Reason code; never 0 (post/void: 0 inherits).
    pub code: u16,
    /// `TransferFlags` bits.
    pub flags: u16,
    /// Creation time in nanoseconds, set by the engine (or by the client for `imported`).
    pub timestamp: u64,
}

const _: () = assert!(size_of::<Transfer>() == 128);
const _: () = assert!(align_of::<Transfer>() == 64);
const _: () = assert!(offset_of!(Transfer, amount) == 48);
const _: () = assert!(offset_of!(Transfer, pending_id) == 64);
const _: () = assert!(offset_of!(Transfer, user_data_64) == 96);
const _: () = assert!(offset_of!(Transfer, timeout) == 108);
const _: () = assert!(offset_of!(Transfer, ledger) == 112);
const _: () = assert!(offset_of!(Transfer, code) == 116);
const _: () = assert!(offset_of!(Transfer, flags) == 118);
const _: () = assert!(offset_of!(Transfer, timestamp) == 120);

impl Transfer {
    /// The typed view of `flags`.
    #[inline(always)]
    #[must_use]
    pub const fn flags(&self) -> TransferFlags {
        TransferFlags(self.flags)
    }
    /// Encoded size in bytes.
    pub const SIZE: usize = 128;

    /// Writes the little-endian encoding.
    #[inline]
    pub fn encode(&self, bytes: &mut [u8; 128]) {
        write_u128(bytes, 0, self.id);
        write_u128(bytes, 16, self.debit_account_id);
        write_u128(bytes, 32, self.credit_account_id);
        write_u128(bytes, 48, self.amount);
        write_u128(bytes, 64, self.pending_id);
        write_u128(bytes, 80, self.user_data_128);
        write_u64(bytes, 96, self.user_data_64);
        write_u32(bytes, 104, self.user_data_32);
        write_u32(bytes, 108, self.timeout);
        write_u32(bytes, 112, self.ledger);
        write_u16(bytes, 116, self.code);
        write_u16(bytes, 118, self.flags);
        write_u64(bytes, 120, self.timestamp);
    }

    /// Reads the little-endian encoding. Every byte pattern decodes to some transfer.
    #[inline]
    pub fn decode(bytes: &[u8; 128]) -> Transfer {
        Transfer {
            id: read_u128(bytes, 0),
            debit_account_id: read_u128(bytes, 16),
            credit_account_id: read_u128(bytes, 32),
            amount: read_u128(bytes, 48),
            pending_id: read_u128(bytes, 64),
            user_data_128: read_u128(bytes, 80),
            user_data_64: read_u64(bytes, 96),
            user_data_32: read_u32(bytes, 104),
            timeout: read_u32(bytes, 108),
            ledger: read_u32(bytes, 112),
            code: read_u16(bytes, 116),
            flags: read_u16(bytes, 118),
            timestamp: read_u64(bytes, 120),
        }
    }
}

/// Bits of `Transfer::flags`; `Transfer::flags()` gives this typed view with a predicate per
/// bit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferFlags(pub u16);

flag_predicates!(TransferFlags(u16) {
    /// `LINKED` is set.
    linked = LINKED;
    /// `PENDING` is set.
    pending = PENDING;
    /// `POST_PENDING_TRANSFER` is set.
    post_pending_transfer = POST_PENDING_TRANSFER;
    /// `VOID_PENDING_TRANSFER` is set.
    void_pending_transfer = VOID_PENDING_TRANSFER;
    /// `BALANCING_DEBIT` is set.
    balancing_debit = BALANCING_DEBIT;
    /// `BALANCING_CREDIT` is set.
    balancing_credit = BALANCING_CREDIT;
    /// `CLOSING_DEBIT` is set.
    closing_debit = CLOSING_DEBIT;
    /// `CLOSING_CREDIT` is set.
    closing_credit = CLOSING_CREDIT;
    /// `IMPORTED` is set.
    imported = IMPORTED;
    /// `SETTLEMENT` is set: the matching side made this transfer.
    settlement = SETTLEMENT;
});

impl TransferFlags {
    /// Chain this event with the next one in the batch: all succeed or none.
    pub const LINKED: u16 = 1 << 0;
    /// Reserve the amount (debits/credits pending) until posted, voided or expired.
    pub const PENDING: u16 = 1 << 1;
    /// Post (some or all of) the pending transfer `pending_id`.
    pub const POST_PENDING_TRANSFER: u16 = 1 << 2;
    /// Void the pending transfer `pending_id`.
    pub const VOID_PENDING_TRANSFER: u16 = 1 << 3;
    /// Clamp the amount so the debit account's debits do not exceed its credits.
    pub const BALANCING_DEBIT: u16 = 1 << 4;
    /// Clamp the amount so the credit account's credits do not exceed its debits.
    pub const BALANCING_CREDIT: u16 = 1 << 5;
    /// Close the debit account while this pending transfer is unresolved.
    pub const CLOSING_DEBIT: u16 = 1 << 6;
    /// Close the credit account while this pending transfer is unresolved.
    pub const CLOSING_CREDIT: u16 = 1 << 7;
    /// The transfer carries a client-supplied historical timestamp.
    pub const IMPORTED: u16 = 1 << 8;
    /// Bits with no meaning; they must be zero in client transfers.
    pub const PADDING: u16 = !0x1FF;
    /// Set on the transfers the matching side makes (holds, their voids, the legs and fees of
    /// fills) and on no other: their ids are a namespace of their own, apart from client ids,
    /// so this flag tells the two apart where both appear (account transfers, queries). A
    /// client transfer with this bit fails with `reserved_flag` (it is one of `PADDING`).
    pub const SETTLEMENT: u16 = 1 << 15;
}

/// Selects accounts or transfers by user data, ledger, code and time: `query_accounts` and
/// `query_transfers`. Zero fields do not filter; an invalid filter selects nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct QueryFilter {
    /// `user_data_128` to match, or 0.
    pub user_data_128: u128,
    /// `user_data_64` to match, or 0.
    pub user_data_64: u64,
    /// `user_data_32` to match, or 0.
    pub user_data_32: u32,
    /// `ledger` to match, or 0.
    pub ledger: u32,
    /// `code` to match, or 0.
    pub code: u16,
    /// Must be zero.
    pub reserved: [u8; 6],
    /// Smallest timestamp, inclusive (0: unbounded).
    pub timestamp_min: u64,
    /// Largest timestamp, inclusive (0: unbounded).
    pub timestamp_max: u64,
    /// The most results wanted; not 0.
    pub limit: u32,
    /// `QueryFilterFlags` bits.
    pub flags: u32,
}

const _: () = assert!(size_of::<QueryFilter>() == 64);
const _: () = assert!(offset_of!(QueryFilter, ledger) == 28);
const _: () = assert!(offset_of!(QueryFilter, code) == 32);
const _: () = assert!(offset_of!(QueryFilter, reserved) == 34);
const _: () = assert!(offset_of!(QueryFilter, timestamp_min) == 40);
const _: () = assert!(offset_of!(QueryFilter, limit) == 56);
const _: () = assert!(offset_of!(QueryFilter, flags) == 60);

impl QueryFilter {
    /// The typed view of `flags`.
    #[inline(always)]
    #[must_use]
    pub const fn flags(&self) -> QueryFilterFlags {
        QueryFilterFlags(self.flags)
    }
    /// Encoded size in bytes.
    pub const SIZE: usize = 64;

    /// Writes the little-endian encoding.
    pub fn encode(&self, bytes: &mut [u8; 64]) {
        write_u128(bytes, 0, self.user_data_128);
        write_u64(bytes, 16, self.user_data_64);
        write_u32(bytes, 24, self.user_data_32);
        write_u32(bytes, 28, self.ledger);
        write_u16(bytes, 32, self.code);
        bytes[34..40].copy_from_slice(&self.reserved);
        write_u64(bytes, 40, self.timestamp_min);
        write_u64(bytes, 48, self.timestamp_max);
        write_u32(bytes, 56, self.limit);
        write_u32(bytes, 60, self.flags);
    }

    /// Reads the little-endian encoding.
    pub fn decode(bytes: &[u8; 64]) -> QueryFilter {
        let mut reserved = [0u8; 6];
        reserved.copy_from_slice(&bytes[34..40]);
        QueryFilter {
            user_data_128: read_u128(bytes, 0),
            user_data_64: read_u64(bytes, 16),
            user_data_32: read_u32(bytes, 24),
            ledger: read_u32(bytes, 28),
            code: read_u16(bytes, 32),
            reserved,
            timestamp_min: read_u64(bytes, 40),
            timestamp_max: read_u64(bytes, 48),
            limit: read_u32(bytes, 56),
            flags: read_u32(bytes, 60),
        }
    }
}

/// Bits of `QueryFilter::flags`; `QueryFilter::flags()` gives this typed view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryFilterFlags(pub u32);

flag_predicates!(QueryFilterFlags(u32) {
    /// `REVERSED` is set.
    reversed = REVERSED;
    /// A `PADDING` bit is set.
    padding = PADDING;
});

impl QueryFilterFlags {
    /// Newest first.
    pub const REVERSED: u32 = 1;
    /// Bits with no meaning; a filter with any of them set selects nothing.
    pub const PADDING: u32 = !0x1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{identity_bytes, pattern_u128, pattern_u16, pattern_u32, pattern_u64};

    #[test]
    fn transfer_golden_bytes() {
        let transfer = Transfer {
            id: pattern_u128(0),
            debit_account_id: pattern_u128(16),
            credit_account_id: pattern_u128(32),
            amount: pattern_u128(48),
            pending_id: pattern_u128(64),
            user_data_128: pattern_u128(80),
            user_data_64: pattern_u64(96),
            user_data_32: pattern_u32(104),
            timeout: pattern_u32(108),
            ledger: pattern_u32(112),
            code: pattern_u16(116),
            flags: pattern_u16(118),
            timestamp: pattern_u64(120),
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
            user_data_128: pattern_u128(0),
            user_data_64: pattern_u64(16),
            user_data_32: pattern_u32(24),
            ledger: pattern_u32(28),
            code: pattern_u16(32),
            reserved: [34, 35, 36, 37, 38, 39],
            timestamp_min: pattern_u64(40),
            timestamp_max: pattern_u64(48),
            limit: pattern_u32(56),
            flags: pattern_u32(60),
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
