//! Named limits of the engine. Every capacity is chosen when the engine is created; nothing grows
//! afterwards.

/// Size in bytes of the largest request or reply frame, header included (1 MiB).
pub const FRAME_SIZE_MAX: usize = 1 << 20;

/// Size in bytes of a frame header.
pub const FRAME_HEADER_SIZE: usize = 64;

/// Size in bytes of the largest event a request carries (accounts, transfers, orders and
/// markets are all 128 bytes on the wire).
pub const EVENT_SIZE_MAX: usize = 128;

/// The most events one request may carry: as many of the largest events as fit in the body of
/// the largest frame (8,191).
pub const BATCH_EVENTS_MAX: u32 = ((FRAME_SIZE_MAX - FRAME_HEADER_SIZE) / EVENT_SIZE_MAX) as u32;

const _: () = {
    use crate::{Account, Market, Order, Transfer};
    assert!(Account::SIZE <= EVENT_SIZE_MAX && Transfer::SIZE <= EVENT_SIZE_MAX);
    assert!(Order::SIZE <= EVENT_SIZE_MAX && Market::SIZE <= EVENT_SIZE_MAX);
    assert!(BATCH_EVENTS_MAX == 8191);
};

/// The largest timestamp (the top bit of a u64 stays clear, as in the reference ledger).
pub const TIMESTAMP_MAX: u64 = (1 << 63) - 1;

/// The most pending transfers one pulse expires; a pulse reserves this many timestamps.
pub const PULSE_EXPIRIES_MAX: u32 = 8189;

/// Nanoseconds per second: transfer timeouts are given in seconds, timestamps in nanoseconds.
pub const NS_PER_SECOND: u64 = 1_000_000_000;

/// The largest value any `_max` capacity may take: indexes keep 32-bit slots and use the top bit
/// as a marker, so every count must stay below 2^31.
pub const CAPACITY_MAX: u32 = (1 << 31) - 1;

/// Capacities of one engine, fixed at creation. Every store is allocated to its maximum up front
/// by `Engine::new`, so memory use is known at start and no command allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Accounts the engine can hold.
    pub accounts_max: u32,
    /// Transfers the engine can hold (posts and voids are transfers too). Ids burned by
    /// transient failures are kept in a separate store of `transfers_max / 2` entries.
    pub transfers_max: u32,
    /// Pending transfers that may be unresolved (neither posted, voided nor expired) at once.
    pub transfers_pending_max: u32,
    /// Balance history rows (one per transfer side that touches an account with `history`).
    pub account_balances_max: u32,
    /// The most events one create request may carry (at most `BATCH_EVENTS_MAX`).
    pub batch_events_max: u32,
    /// The most results one query returns.
    pub query_results_max: u32,
    /// Markets the matching side can hold. A market costs a few hundred bytes until orders rest
    /// in it (`Engine::bytes_per_market`): the books share one pool of order and level slots.
    pub markets_max: u32,
    /// Orders the matching side can hold (resting and finished); also the size of the shared
    /// pool of resting orders and price levels of all books.
    pub orders_max: u32,
    /// Fills the matching side can hold.
    pub fills_max: u32,
}

impl Default for Config {
    /// Production sizes: about 2.5 GiB for the ledger when every store is full.
    fn default() -> Config {
        Config {
            accounts_max: 1_000_000,
            transfers_max: 10_000_000,
            transfers_pending_max: 1_000_000,
            account_balances_max: 4_000_000,
            batch_events_max: BATCH_EVENTS_MAX,
            query_results_max: BATCH_EVENTS_MAX,
            markets_max: 10_000,
            orders_max: 1_000_000,
            fills_max: 1_000_000,
        }
    }
}

impl Config {
    /// Small sizes for tests: quick to create, large enough for every test workload.
    pub fn test_small() -> Config {
        Config {
            accounts_max: 1024,
            transfers_max: 65_536,
            transfers_pending_max: 4096,
            account_balances_max: 65_536,
            batch_events_max: BATCH_EVENTS_MAX,
            query_results_max: BATCH_EVENTS_MAX,
            markets_max: 16,
            orders_max: 4096,
            fills_max: 65_536,
        }
    }

    /// Asserts that every capacity is within what the engine's indexes can address.
    ///
    /// # Panics
    ///
    /// If a capacity is zero where the engine needs at least one, or above `CAPACITY_MAX`, or the
    /// batch size exceeds `BATCH_EVENTS_MAX`. A bad configuration is an operator error caught at
    /// start, never a client input.
    pub fn assert_valid(&self) {
        if let Err(field) = self.check() {
            panic!("engine capacity {field} is out of range");
        }
    }

    /// Checks the capacities, for callers that turn a bad configuration into a message.
    ///
    /// # Errors
    ///
    /// The name of the first capacity that is zero where the engine needs at least one, or
    /// above `CAPACITY_MAX` (for the batch size: above `BATCH_EVENTS_MAX`).
    pub fn check(&self) -> Result<(), &'static str> {
        let at_least_one = |value: u32| (1..=CAPACITY_MAX).contains(&value);
        let at_most = |value: u32| value <= CAPACITY_MAX;
        let checks = [
            ("accounts_max", at_least_one(self.accounts_max)),
            ("transfers_max", at_least_one(self.transfers_max)),
            ("transfers_pending_max", at_most(self.transfers_pending_max)),
            ("account_balances_max", at_most(self.account_balances_max)),
            (
                "batch_events_max",
                (1..=BATCH_EVENTS_MAX).contains(&self.batch_events_max),
            ),
            ("query_results_max", at_most(self.query_results_max)),
            ("markets_max", at_most(self.markets_max)),
            ("orders_max", at_most(self.orders_max)),
            ("fills_max", at_most(self.fills_max)),
        ];
        match checks.iter().find(|(_, valid)| !valid) {
            Some((field, _)) => Err(field),
            None => Ok(()),
        }
    }
}

const _: () = assert!(PULSE_EXPIRIES_MAX < BATCH_EVENTS_MAX);
const _: () = assert!((u32::MAX as u64) * NS_PER_SECOND < TIMESTAMP_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_valid() {
        Config::default().assert_valid();
        Config::test_small().assert_valid();
        let no_accounts = Config {
            accounts_max: 0,
            ..Config::test_small()
        };
        assert_eq!(no_accounts.check(), Err("accounts_max"));
        let huge_orders = Config {
            orders_max: CAPACITY_MAX + 1,
            ..Config::test_small()
        };
        assert_eq!(huge_orders.check(), Err("orders_max"));
        assert_eq!(Config::test_small().accounts_max, 1024);
        assert_eq!(Config::default().batch_events_max, 8191);
    }
}
