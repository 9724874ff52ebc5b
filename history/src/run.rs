//! `Run`: the history records of one interval, in the order the core produced them, to be
//! ingested as one sorted run: transfers, burned ids, resolutions of pending transfers,
//! balance rows, finished orders and fills.
//!
//! Each kind has its own buffer, allocated once at the capacity given in [`RunCapacity`] and
//! never grown: a push past a kind's capacity is `RunFull`, and `clear` keeps the buffers, so
//! runs handed back by the history writer are reused without allocating.
//!
//! A run checks nothing else when records are pushed: order, duplicates and the watermark are
//! checked by `History::ingest`, which refuses a bad run before writing anything.

use clearline_engine::{AccountBalance, Fill, Order, Transfer};

use crate::error::HistoryError;

/// How many records of each kind a run holds without allocating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCapacity {
    /// Transfers.
    pub transfers: usize,
    /// Burned ids.
    pub burned_ids: usize,
    /// Resolutions of pending transfers.
    pub resolutions: usize,
    /// Balance rows.
    pub balances: usize,
    /// Finished orders.
    pub orders: usize,
    /// Fills.
    pub fills: usize,
}

impl RunCapacity {
    /// Room for `transfers` transfers and nothing else.
    pub fn transfers(transfers: usize) -> RunCapacity {
        RunCapacity {
            transfers,
            ..RunCapacity::default()
        }
    }
}

/// The id of a client transfer that failed transiently: it stays used forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BurnedId {
    /// The id (client namespace).
    pub id: u128,
    /// Timestamp of the failed event.
    pub timestamp: u64,
}

/// How a pending transfer was resolved: `status` is `RESOLUTION_POSTED`, `RESOLUTION_VOIDED`
/// or `RESOLUTION_EXPIRED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The pending transfer's id.
    pub id: u128,
    /// Whether the id is in the settlement namespace (`TransferFlags::SETTLEMENT`).
    pub settlement: bool,
    /// The pending transfer's final status.
    pub status: u8,
    /// When it was resolved.
    pub timestamp: u64,
}

/// The pending transfer was posted.
pub const RESOLUTION_POSTED: u8 = 2;
/// The pending transfer was voided.
pub const RESOLUTION_VOIDED: u8 = 3;
/// The pending transfer expired.
pub const RESOLUTION_EXPIRED: u8 = 4;

/// Whether `status` is one a resolution may have.
pub(crate) fn resolution_status_valid(status: u8) -> bool {
    (RESOLUTION_POSTED..=RESOLUTION_EXPIRED).contains(&status)
}

/// One balance row of an account with `history`: its balances right after the transfer at
/// `balance.timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceRow {
    /// The account.
    pub account_id: u128,
    /// The balances; `timestamp` is the transfer's.
    pub balance: AccountBalance,
}

/// An order that can no longer change, and the first timestamp of the command that finished
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinishedOrder {
    /// The order in its final state.
    pub order: Order,
    /// When it finished.
    pub finished_at: u64,
}

/// The records of one interval, each kind at most its capacity, each expected in increasing
/// timestamp order (`History::ingest` checks it).
#[derive(Debug)]
pub struct Run {
    capacity: RunCapacity,
    /// Never longer than `capacity.transfers`, so never reallocated.
    transfers: Vec<Transfer>,
    /// Never longer than `capacity.burned_ids`.
    burned_ids: Vec<BurnedId>,
    /// Never longer than `capacity.resolutions`.
    resolutions: Vec<Resolution>,
    /// Never longer than `capacity.balances`.
    balances: Vec<BalanceRow>,
    /// Never longer than `capacity.orders`.
    orders: Vec<FinishedOrder>,
    /// Never longer than `capacity.fills`.
    fills: Vec<Fill>,
}

/// Appends `item` to `items` unless it holds `capacity`.
fn push_within<T>(
    items: &mut Vec<T>,
    capacity: usize,
    kind: &'static str,
    item: T,
) -> Result<(), HistoryError> {
    if items.len() >= capacity {
        return Err(HistoryError::RunFull { kind, capacity });
    }
    items.push(item);
    Ok(())
}

impl Run {
    /// An empty run with room for `capacity` records of each kind, allocated now.
    pub fn with_capacity(capacity: RunCapacity) -> Run {
        Run {
            capacity,
            transfers: Vec::with_capacity(capacity.transfers),
            burned_ids: Vec::with_capacity(capacity.burned_ids),
            resolutions: Vec::with_capacity(capacity.resolutions),
            balances: Vec::with_capacity(capacity.balances),
            orders: Vec::with_capacity(capacity.orders),
            fills: Vec::with_capacity(capacity.fills),
        }
    }

    /// Appends a finished order, finished by the command whose first timestamp is
    /// `finished_at` (orders in non-decreasing `finished_at` order).
    ///
    /// # Errors
    ///
    /// `RunFull` if the run holds its capacity of orders; the run is unchanged.
    pub fn push_order(&mut self, order: &Order, finished_at: u64) -> Result<(), HistoryError> {
        let finished = FinishedOrder {
            order: *order,
            finished_at,
        };
        push_within(&mut self.orders, self.capacity.orders, "orders", finished)
    }

    /// Appends a fill (fills in sequence order).
    ///
    /// # Errors
    ///
    /// `RunFull` if the run holds its capacity of fills; the run is unchanged.
    pub fn push_fill(&mut self, fill: &Fill) -> Result<(), HistoryError> {
        push_within(&mut self.fills, self.capacity.fills, "fills", *fill)
    }

    /// Appends a copy of `transfer` (client or settlement).
    ///
    /// # Errors
    ///
    /// `RunFull` if the run holds its capacity of transfers; the run is unchanged.
    pub fn push(&mut self, transfer: &Transfer) -> Result<(), HistoryError> {
        push_within(
            &mut self.transfers,
            self.capacity.transfers,
            "transfers",
            *transfer,
        )
    }

    /// Appends a burned id: a client transfer id that failed transiently at `timestamp`.
    ///
    /// # Errors
    ///
    /// `RunFull` if the run holds its capacity of burned ids; the run is unchanged.
    pub fn push_burned(&mut self, id: u128, timestamp: u64) -> Result<(), HistoryError> {
        let burned = BurnedId { id, timestamp };
        push_within(
            &mut self.burned_ids,
            self.capacity.burned_ids,
            "burned ids",
            burned,
        )
    }

    /// Appends the resolution of pending transfer `id` (in the settlement namespace if
    /// `settlement`): `status` 2 posted, 3 voided, 4 expired, at `timestamp`.
    ///
    /// # Errors
    ///
    /// `RunInvalidResolution` if `status` is not 2, 3 or 4; `RunFull` if the run holds its
    /// capacity of resolutions. The run is then unchanged.
    pub fn push_resolution(
        &mut self,
        id: u128,
        settlement: bool,
        status: u8,
        timestamp: u64,
    ) -> Result<(), HistoryError> {
        if !resolution_status_valid(status) {
            return Err(HistoryError::RunInvalidResolution { id, status });
        }
        let resolution = Resolution {
            id,
            settlement,
            status,
            timestamp,
        };
        push_within(
            &mut self.resolutions,
            self.capacity.resolutions,
            "resolutions",
            resolution,
        )
    }

    /// Appends the balance row of `account_id` after the transfer at `row.timestamp` (its
    /// `reserved` bytes are not stored).
    ///
    /// # Errors
    ///
    /// `RunFull` if the run holds its capacity of balance rows; the run is unchanged.
    pub fn push_balance(
        &mut self,
        account_id: u128,
        row: &AccountBalance,
    ) -> Result<(), HistoryError> {
        let row = BalanceRow {
            account_id,
            balance: AccountBalance {
                reserved: [0; 56],
                ..*row
            },
        };
        push_within(
            &mut self.balances,
            self.capacity.balances,
            "balance rows",
            row,
        )
    }

    /// The address range of the run's buffer for its first `transfers` transfers, past those
    /// it holds: memory allocated but not yet written, for a caller that has the kernel back
    /// it ahead of use. The buffer never reallocates, so the range stays valid while the run
    /// lives.
    pub fn unused_transfer_memory(&self, transfers: usize) -> (usize, usize) {
        clearline_engine::unused_memory(&self.transfers, transfers)
    }

    /// Empties the run, keeping its buffers.
    pub fn clear(&mut self) {
        self.transfers.clear();
        self.burned_ids.clear();
        self.resolutions.clear();
        self.balances.clear();
        self.orders.clear();
        self.fills.clear();
    }

    /// Number of records of every kind.
    pub fn len(&self) -> usize {
        self.transfers.len()
            + self.burned_ids.len()
            + self.resolutions.len()
            + self.balances.len()
            + self.orders.len()
            + self.fills.len()
    }

    /// Whether the run holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many records of each kind the run holds without allocating.
    pub fn capacity(&self) -> RunCapacity {
        self.capacity
    }

    /// The transfers, in the order pushed.
    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }

    /// The burned ids, in the order pushed.
    pub fn burned_ids(&self) -> &[BurnedId] {
        &self.burned_ids
    }

    /// The resolutions, in the order pushed.
    pub fn resolutions(&self) -> &[Resolution] {
        &self.resolutions
    }

    /// The balance rows, in the order pushed.
    pub fn balances(&self) -> &[BalanceRow] {
        &self.balances
    }

    /// The finished orders, in the order pushed.
    pub fn orders(&self) -> &[FinishedOrder] {
        &self.orders
    }

    /// The fills, in the order pushed.
    pub fn fills(&self) -> &[Fill] {
        &self.fills
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_transfer_memory_is_the_buffer_past_the_pushed_transfers() {
        let mut run = Run::with_capacity(RunCapacity::transfers(4));
        let size = std::mem::size_of::<Transfer>();
        let start = run.transfers().as_ptr() as usize;
        assert_eq!(run.unused_transfer_memory(3), (start, 3 * size));
        run.push(&Transfer {
            id: 1,
            timestamp: 1,
            ..Transfer::default()
        })
        .expect("room");
        assert_eq!(run.unused_transfer_memory(3), (start + size, 2 * size));
        assert_eq!(run.unused_transfer_memory(9), (start + size, 3 * size));
    }

    #[test]
    fn every_push_stops_at_its_capacity_and_clear_keeps_the_buffers() {
        let capacity = RunCapacity {
            transfers: 2,
            burned_ids: 1,
            resolutions: 3,
            balances: 2,
            orders: 1,
            fills: 1,
        };
        let mut run = Run::with_capacity(capacity);
        let pointers = |run: &Run| {
            (
                run.transfers.as_ptr() as usize,
                run.burned_ids.as_ptr() as usize,
                run.resolutions.as_ptr() as usize,
                run.balances.as_ptr() as usize,
            )
        };
        let before = pointers(&run);
        for round in 0..2u64 {
            for index in 0..2 {
                let transfer = Transfer {
                    timestamp: index + 1,
                    ..Transfer::default()
                };
                assert!(run.push(&transfer).is_ok());
                let row = AccountBalance {
                    timestamp: index + 1,
                    ..AccountBalance::default()
                };
                assert!(run.push_balance(7, &row).is_ok());
            }
            assert!(run.push_burned(9, 5).is_ok());
            for index in 0..3 {
                assert!(run.push_resolution(4, false, 2, 10 + index).is_ok());
            }
            let full = |result: Result<(), HistoryError>, expected: &str| {
                assert!(
                    matches!(&result, Err(HistoryError::RunFull { kind, .. }) if *kind == expected),
                    "round {round}: {result:?}"
                );
            };
            full(run.push(&Transfer::default()), "transfers");
            full(run.push_burned(1, 1), "burned ids");
            full(run.push_resolution(1, true, 3, 1), "resolutions");
            full(
                run.push_balance(1, &AccountBalance::default()),
                "balance rows",
            );
            assert!(run.push_order(&Order::default(), 3).is_ok());
            assert!(run.push_fill(&Fill::default()).is_ok());
            full(run.push_order(&Order::default(), 3), "orders");
            full(run.push_fill(&Fill::default()), "fills");
            assert_eq!(run.len(), 10);
            assert_eq!(pointers(&run), before);
            run.clear();
            assert!(run.is_empty());
            assert_eq!(run.capacity(), capacity);
        }
    }

    #[test]
    fn a_resolution_needs_a_final_status() {
        let mut run = Run::with_capacity(RunCapacity {
            resolutions: 8,
            ..RunCapacity::default()
        });
        for status in [0, 1, 5, 255] {
            assert!(matches!(
                run.push_resolution(1, false, status, 1),
                Err(HistoryError::RunInvalidResolution { id: 1, .. })
            ));
        }
        assert!(run.is_empty());
        for status in [2, 3, 4] {
            assert!(run.push_resolution(1, false, status, 1).is_ok());
        }
    }

    #[test]
    fn balance_rows_drop_reserved_bytes() {
        let mut run = Run::with_capacity(RunCapacity {
            balances: 1,
            ..RunCapacity::default()
        });
        let row = AccountBalance {
            debits_posted: 3,
            timestamp: 9,
            reserved: [1; 56],
            ..AccountBalance::default()
        };
        assert!(run.push_balance(2, &row).is_ok());
        assert_eq!(run.balances()[0].balance.reserved, [0; 56]);
        assert_eq!(run.balances()[0].balance.debits_posted, 3);
        assert_eq!(run.balances()[0].account_id, 2);
    }
}
