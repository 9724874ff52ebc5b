//! The seam between the hot set in memory and the history store on disk (docs/history.md).
//!
//! An engine in history mode (`Engine::enable_history`) hands every record that can no longer
//! change to a `HistorySink` (`Engine::history_drain`), and once the caller says those records
//! are durable in the store (`Engine::history_evict`), drops them from memory. What it no
//! longer holds it reads back through `HistoryRead`: idempotency checks of old ids (transfer
//! and order ids), posts and voids of old pending transfers, and the older part of every query
//! (`lookup_orders` and `get_fills` included). Finished orders and fills are the matching
//! side's records (exchange/history.rs).
//!
//! Determinism: the engine only drops records at or below a timestamp the caller says is
//! durable, and reads the store only for what it dropped. So every answer depends only on the
//! requests applied, never on how far the store has got: an engine that never drops anything
//! and one that drops everything as soon as it may give the same replies (the differential
//! test `engine/tests/history.rs` checks it).
//!
//! A store that fails to read cannot be answered around: implementations stop the process with
//! a clear message (as a failed journal sync does) rather than return a wrong answer.

use crate::account::{AccountBalance, AccountFilter};
use crate::order::{Fill, FillFilter, Order};
use crate::transfer::{QueryFilter, Transfer};

/// The final status of a pending transfer, as recorded when it was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Resolution {
    /// Posted (in full or in part) by a post transfer.
    Posted = 2,
    /// Voided by a void transfer.
    Voided = 3,
    /// Expired at its timeout.
    Expired = 4,
}

impl Resolution {
    /// The status for its byte, if it is one.
    pub fn from_u8(byte: u8) -> Option<Resolution> {
        match byte {
            2 => Some(Resolution::Posted),
            3 => Some(Resolution::Voided),
            4 => Some(Resolution::Expired),
            _ => None,
        }
    }
}

/// Receives the records that can no longer change, in the order the engine applied them.
/// Each kind arrives in strictly increasing timestamp order.
pub trait HistorySink {
    /// A created transfer (client or settlement; the `SETTLEMENT` flag tells which namespace
    /// its id and `pending_id` are in). Pending transfers arrive when created; their
    /// resolution arrives later through `resolution`.
    fn transfer(&mut self, transfer: &Transfer);
    /// A client transfer id burned by a transient failure at `timestamp`.
    fn burned(&mut self, id: u128, timestamp: u64);
    /// The pending transfer `id` (in the settlement namespace when `settlement`) was resolved
    /// at `timestamp`.
    fn resolution(&mut self, id: u128, settlement: bool, status: Resolution, timestamp: u64);
    /// The balances of account `account_id` (flagged `history`) right after the transfer at
    /// `balance.timestamp`.
    fn balance(&mut self, account_id: u128, balance: &AccountBalance);
    /// A finished order (its state is no longer resting), in its final form, finished by the
    /// command whose first timestamp is `finished_at`. Orders arrive in non-decreasing
    /// `finished_at` order (one command may finish several).
    fn order(&mut self, order: &Order, finished_at: u64);
    /// A fill, in sequence order (several share the timestamp of the command that made them).
    fn fill(&mut self, fill: &Fill);
}

/// Reads what the engine dropped from memory. Every read is answered over the store's whole
/// content; the engine narrows query filters to the timestamps it dropped, and ignores a
/// record newer than that, so it never reads what it still holds in memory, nor what a store
/// ahead of it holds (after a crash, a store may hold records a replay has not reached yet).
pub trait HistoryRead: Send {
    /// The transfer `id` in the client (`settlement` false) or settlement namespace.
    fn transfer(&self, id: u128, settlement: bool) -> Option<Transfer>;
    /// The transfer with this timestamp.
    fn transfer_at(&self, timestamp: u64) -> Option<Transfer>;
    /// When the client id was burned by a transient failure, if it was.
    fn burned(&self, id: u128) -> Option<u64>;
    /// How the pending transfer `id` was resolved, if it was.
    fn resolution(&self, id: u128, settlement: bool) -> Option<Resolution>;
    /// Appends `get_account_transfers(filter)` with the engine's semantics (docs/ledger.md).
    fn account_transfers(&self, filter: &AccountFilter, out: &mut Vec<Transfer>);
    /// Appends `get_account_balances(filter)` with the engine's semantics.
    fn account_balances(&self, filter: &AccountFilter, out: &mut Vec<AccountBalance>);
    /// Appends `query_transfers(filter)` with the engine's semantics.
    fn query_transfers(&self, filter: &QueryFilter, out: &mut Vec<Transfer>);
    /// The finished order `id` and the timestamp it finished at.
    fn order(&self, id: u128) -> Option<(Order, u64)>;
    /// Appends `get_fills(filter)` with the engine's semantics (docs/matching.md): the fills
    /// of `filter.market` (any market when 0 and `filter.order_id` is set) and, if
    /// `filter.order_id` is set, of that order as taker or maker, with timestamps in
    /// `timestamp_min..=timestamp_max` (set), at most `filter.limit`, oldest first or newest
    /// first when `FillFilter::REVERSED` is set. The engine passes only valid filters.
    fn fills(&self, filter: &FillFilter, out: &mut Vec<Fill>);
}
