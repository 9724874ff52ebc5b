//! The operations of the wire protocol (docs/protocol.md section 5) and the internal pulse, with
//! the sizes of their events and reply items.
//!
//! This table is the one place that says how large an event is; the network layer validates
//! frames with it and the engine decodes bodies with it.

use crate::limits::{BATCH_EVENTS_MAX, PULSE_EXPIRIES_MAX};

/// A bound on the timestamps one event of `place_orders`, `cancel_orders` or `amend_orders` may
/// use: one per ledger transfer it makes (its hold, and for every fill voids, legs and new
/// holds), at least one. The matching side caps the fills of one event so that its transfers
/// always fit (see `exchange.rs`). An event uses only what it needs, so this bounds how far one
/// order event moves engine time; it is not reserved ahead.
pub const SLOTS_PER_ORDER_EVENT: u64 = 1024;

/// One operation: what a request asks the engine to do.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Create accounts (`Account` events, `CreateResult` replies).
    CreateAccounts = 1,
    /// Create transfers (`Transfer` events, `CreateResult` replies).
    CreateTransfers = 2,
    /// Look accounts up by id (u128 events, `Account` replies).
    LookupAccounts = 3,
    /// Look transfers up by id (u128 events, `Transfer` replies).
    LookupTransfers = 4,
    /// Transfers of one account (one `AccountFilter`, `Transfer` replies).
    GetAccountTransfers = 5,
    /// Balance history of one account (one `AccountFilter`, `AccountBalance` replies).
    GetAccountBalances = 6,
    /// Accounts by user data, ledger and code (one `QueryFilter`, `Account` replies).
    QueryAccounts = 7,
    /// Transfers by user data, ledger and code (one `QueryFilter`, `Transfer` replies).
    QueryTransfers = 8,
    /// Create markets (`Market` events, `CreateResult` replies).
    CreateMarkets = 16,
    /// Place orders (`Order` events, `OrderResult` replies).
    PlaceOrders = 17,
    /// Cancel orders (u128 order id events, `CreateResult` replies).
    CancelOrders = 18,
    /// Amend orders (`OrderAmend` events, `CreateResult` replies).
    AmendOrders = 19,
    /// Look orders up by id (u128 events, `Order` replies).
    LookupOrders = 20,
    /// The L2 book of a market (one `BookFilter`, `BookLevel` replies).
    GetBook = 21,
    /// Fills of a market or order (one `FillFilter`, `Fill` replies).
    GetFills = 22,
    /// The engine's state hash, clock and counts (16 reserved zero bytes, one `State` reply).
    GetState = 23,
    /// Internal: expire what is due at the request's timestamp. Never accepted from a client;
    /// the core journals it like any request so replay expires the same things.
    Pulse = 128,
}

impl Operation {
    /// Every operation, in numeric order.
    pub const ALL: [Operation; 17] = [
        Operation::CreateAccounts,
        Operation::CreateTransfers,
        Operation::LookupAccounts,
        Operation::LookupTransfers,
        Operation::GetAccountTransfers,
        Operation::GetAccountBalances,
        Operation::QueryAccounts,
        Operation::QueryTransfers,
        Operation::CreateMarkets,
        Operation::PlaceOrders,
        Operation::CancelOrders,
        Operation::AmendOrders,
        Operation::LookupOrders,
        Operation::GetBook,
        Operation::GetFills,
        Operation::GetState,
        Operation::Pulse,
    ];

    /// The operation with this wire number, if any (including the internal pulse).
    pub fn from_u8(value: u8) -> Option<Operation> {
        Operation::ALL
            .iter()
            .copied()
            .find(|operation| *operation as u8 == value)
    }

    /// Whether a client may send this operation.
    pub fn is_client_operation(self) -> bool {
        self != Operation::Pulse
    }

    /// The operation's name as used in documentation and the repl.
    pub fn name(self) -> &'static str {
        match self {
            Operation::CreateAccounts => "create_accounts",
            Operation::CreateTransfers => "create_transfers",
            Operation::LookupAccounts => "lookup_accounts",
            Operation::LookupTransfers => "lookup_transfers",
            Operation::GetAccountTransfers => "get_account_transfers",
            Operation::GetAccountBalances => "get_account_balances",
            Operation::QueryAccounts => "query_accounts",
            Operation::QueryTransfers => "query_transfers",
            Operation::CreateMarkets => "create_markets",
            Operation::PlaceOrders => "place_orders",
            Operation::CancelOrders => "cancel_orders",
            Operation::AmendOrders => "amend_orders",
            Operation::LookupOrders => "lookup_orders",
            Operation::GetBook => "get_book",
            Operation::GetFills => "get_fills",
            Operation::GetState => "get_state",
            Operation::Pulse => "pulse",
        }
    }

    /// Size in bytes of one event of this operation's request body.
    pub fn event_size(self) -> usize {
        match self {
            Operation::CreateAccounts
            | Operation::CreateTransfers
            | Operation::GetAccountTransfers
            | Operation::GetAccountBalances
            | Operation::CreateMarkets
            | Operation::PlaceOrders => 128,
            Operation::LookupAccounts
            | Operation::LookupTransfers
            | Operation::CancelOrders
            | Operation::LookupOrders
            | Operation::GetState => 16,
            Operation::QueryAccounts
            | Operation::QueryTransfers
            | Operation::AmendOrders
            | Operation::GetBook
            | Operation::GetFills => 64,
            Operation::Pulse => 0,
        }
    }

    /// Size in bytes of one item of this operation's reply body.
    pub fn reply_item_size(self) -> usize {
        match self {
            Operation::CreateAccounts
            | Operation::CreateTransfers
            | Operation::CreateMarkets
            | Operation::CancelOrders
            | Operation::AmendOrders => 16,
            Operation::PlaceOrders | Operation::GetState => 64,
            Operation::GetBook => 32,
            Operation::LookupAccounts
            | Operation::LookupTransfers
            | Operation::GetAccountTransfers
            | Operation::GetAccountBalances
            | Operation::QueryAccounts
            | Operation::QueryTransfers
            | Operation::LookupOrders
            | Operation::GetFills => 128,
            Operation::Pulse => 0,
        }
    }

    /// The smallest and largest number of events one request may carry.
    pub fn events_range(self) -> (u32, u32) {
        match self {
            Operation::GetAccountTransfers
            | Operation::GetAccountBalances
            | Operation::QueryAccounts
            | Operation::QueryTransfers
            | Operation::GetBook
            | Operation::GetFills
            | Operation::GetState => (1, 1),
            Operation::Pulse => (0, 0),
            _ => (1, BATCH_EVENTS_MAX),
        }
    }

    /// Whether the operation changes state (and so is journaled).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Operation::CreateAccounts
                | Operation::CreateTransfers
                | Operation::CreateMarkets
                | Operation::PlaceOrders
                | Operation::CancelOrders
                | Operation::AmendOrders
                | Operation::Pulse
        )
    }

    /// How many timestamps the caller reserves for a request of `count` events: one per event
    /// for every write but the pulse, a fixed block for the pulse (one per possible expiry),
    /// none for reads. An order event that makes `k > 1` ledger transfers uses `k - 1` more
    /// timestamps beyond the reservation (see `Engine`: the engine's clock moves on by exactly
    /// what was used, at most `SLOTS_PER_ORDER_EVENT` per order event).
    pub fn timestamp_slots(self, count: u32) -> u64 {
        match self {
            Operation::Pulse => u64::from(PULSE_EXPIRIES_MAX),
            _ if self.is_write() => u64::from(count),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for operation in Operation::ALL {
            assert_eq!(Operation::from_u8(operation as u8), Some(operation));
        }
        assert_eq!(Operation::from_u8(0), None);
        assert_eq!(Operation::from_u8(9), None);
        assert_eq!(Operation::from_u8(23), Some(Operation::GetState));
        assert_eq!(Operation::from_u8(24), None);
        assert_eq!(Operation::from_u8(255), None);
    }

    #[test]
    fn largest_batch_fits_in_one_frame() {
        let body_size_max = 1_048_576 - 64;
        for operation in Operation::ALL {
            let (_, events_max) = operation.events_range();
            assert!(events_max as usize * operation.event_size() <= body_size_max);
        }
    }
}
