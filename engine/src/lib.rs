//! The clearline engine: the deterministic state machine for accounts, transfers, markets and
//! orders.
//!
//! It does no I/O, reads no clock, spawns no threads and allocates nothing after creation; time
//! arrives inside commands. `Engine::execute` is the byte-level entry point the server and the
//! journal replay call; the typed methods are for tests and embedding. The ledger's rules are in
//! `ledger.rs` (creates, expiry, invariants) and `query.rs` (reads).
#![forbid(unsafe_code)]

#[macro_use]
mod flags;
#[macro_use]
mod wire;
#[macro_use]
pub mod result;
pub mod account;
pub mod book;
mod checkpoint;
mod digest;
mod exchange;
mod expiry;
pub mod history;
mod id_filter;
mod index;
mod ledger;
pub mod limits;
pub mod market;
mod operation;
pub mod order;
mod query;
pub mod state;
pub mod transfer;

pub use account::{Account, AccountBalance, AccountFilter, AccountFilterFlags, AccountFlags};
pub use checkpoint::{CheckpointError, CHECKPOINT_FORMAT_VERSION};
pub use exchange::{BOOK_LEVELS_MAX, FILLS_PER_ORDER_MAX, SETTLEMENT_ID_BIT};
pub use id_filter::{IdFilter, ID_FILTER_BITS_PER_ID};
pub use ledger::unused_memory;
pub use limits::{Config, BATCH_EVENTS_MAX, PULSE_EXPIRIES_MAX, TIMESTAMP_MAX};
pub use market::{CreateMarketStatus, Market};
pub use operation::{Operation, SLOTS_PER_ORDER_EVENT};
pub use order::{BookFilter, BookLevel, Fill, FillFilter, Order, OrderAmend, OrderResult};
pub use order::{OrderState, OrderStatus};
pub use result::{CreateAccountStatus, CreateResult, CreateTransferStatus};
pub use state::State;
pub use transfer::{QueryFilter, QueryFilterFlags, Transfer, TransferFlags};

/// "No position" in the engine's arrays: the end of a list, a free slot's link, a transfer or
/// order not queued for expiry.
pub(crate) const NO_POSITION: u32 = u32::MAX;

use core::mem;

use digest::Digest;
use exchange::Exchange;
use ledger::Ledger;

/// Decode and reply buffers for `execute`, allocated once so requests allocate nothing.
struct Scratch {
    accounts: Vec<Account>,
    transfers: Vec<Transfer>,
    ids: Vec<u128>,
    results: Vec<CreateResult>,
    balances: Vec<AccountBalance>,
    markets: Vec<Market>,
    orders: Vec<Order>,
    amends: Vec<OrderAmend>,
    order_results: Vec<OrderResult>,
    levels: Vec<BookLevel>,
    fills: Vec<Fill>,
}

/// The state machine: `state + (timestamp, request) -> state + reply`.
///
/// Time. The `timestamp` of a write is the batch timestamp `T` assigned by the caller, which
/// guarantees that `T` strictly increases between writes by at least
/// `Operation::timestamp_slots`. The engine keeps a clock: the last timestamp any write used.
/// A write's effective batch timestamp is `T' = max(T, clock + slots)` (at most
/// `TIMESTAMP_MAX`), so it never reuses a timestamp even when an earlier order write used more
/// than its reservation; `T' = T` whenever the caller's time is ahead of the engine's.
/// - account, transfer and market creation: event `i` of `n` gets `T' - n + i + 1`;
/// - the pulse: expiry `k` uses `T' - PULSE_EXPIRIES_MAX + k + 1`;
/// - order writes (`n` events, reserved `n`): event 0 starts at `max(T - n + 1, clock + 1)`; an
///   event that makes `k` ledger transfers uses `max(1, k)` timestamps (its first for its order,
///   result and fills and for its first transfer, one per further transfer), and the next
///   event starts right after. An event that makes no transfer (a cancel of an unknown id, a
///   rejected order) uses exactly one.
///
/// So a request moves engine time on by exactly the timestamps it used: `n` for `n` order
/// events that make no transfer, and at most `FILLS_PER_ORDER_MAX x 4` (512, below
/// `SLOTS_PER_ORDER_EVENT`) per order event. The engine never reads a clock.
pub struct Engine {
    ledger: Ledger,
    exchange: Exchange,
    scratch: Scratch,
    /// The last timestamp used by a write (0 before the first).
    clock: u64,
}

impl Engine {
    /// Creates an empty engine, allocating every store to its capacity.
    ///
    /// # Panics
    ///
    /// If `config` fails `Config::assert_valid`.
    pub fn new(config: &Config) -> Engine {
        config.assert_valid();
        let batch = config.batch_events_max as usize;
        let results = (config.query_results_max as usize).min(BATCH_EVENTS_MAX as usize);
        Engine {
            ledger: Ledger::new(config),
            exchange: Exchange::new(config),
            scratch: Scratch {
                accounts: Vec::with_capacity(batch.max(results)),
                transfers: Vec::with_capacity(batch.max(results)),
                ids: Vec::with_capacity(batch),
                results: Vec::with_capacity(batch),
                balances: Vec::with_capacity(results),
                markets: Vec::with_capacity(batch),
                orders: Vec::with_capacity(batch.max(results)),
                amends: Vec::with_capacity(batch),
                order_results: Vec::with_capacity(batch),
                levels: Vec::with_capacity(2 * BookFilter::DEPTH_MAX as usize),
                fills: Vec::with_capacity(results),
            },
            clock: 0,
        }
    }

    fn batch_timestamp(&mut self, timestamp: u64, slots: u64) -> u64 {
        batch_timestamp(&mut self.clock, timestamp, slots)
    }

    /// The last timestamp used by a write (0 before the first). A caller that assigns the
    /// next batch timestamp from its own clock may start from here to keep engine time and its
    /// own together.
    pub fn timestamp_last(&self) -> u64 {
        self.clock
    }

    /// Runs the `count` events of an order write (with room for `results` results) at batch
    /// timestamp `timestamp`: `event(exchange, ledger, i, first)` handles event `i` whose
    /// timestamps start at `first`. Each event uses `max(1, transfers made)` timestamps; the
    /// clock ends at the last one used.
    ///
    /// # Panics
    ///
    /// If `results != count`, there are more than `batch_events_max` events, or `timestamp` is
    /// below the request's timestamp slots or above `TIMESTAMP_MAX`.
    fn order_events(
        &mut self,
        timestamp: u64,
        (count, results): (usize, usize),
        mut event: impl FnMut(&mut Exchange, &mut Ledger, usize, u64),
    ) {
        assert_eq!(count, results);
        assert!(count <= self.ledger.config.batch_events_max as usize);
        let (clock, exchange, ledger) = (&mut self.clock, &mut self.exchange, &mut self.ledger);
        assert!(timestamp <= TIMESTAMP_MAX);
        assert!(
            timestamp >= count as u64,
            "timestamp below the request's timestamp slots"
        );
        let mut cursor = (timestamp - count as u64 + 1).max(*clock + 1);
        for index in 0..count {
            event(exchange, ledger, index, cursor);
            let used = ledger.transfers_timestamp_max().max(cursor);
            cursor = used + 1;
        }
        *clock = (*clock).max(timestamp).max(cursor - 1);
    }

    /// The capacities the engine was created with.
    pub fn config(&self) -> &Config {
        &self.ledger.config
    }

    /// Creates accounts; writes one result per event into `results`.
    ///
    /// # Panics
    ///
    /// If `results.len() != events.len()`, there are more than `batch_events_max` events, or
    /// `timestamp` is below the number of events or above `TIMESTAMP_MAX` (caller bugs).
    pub fn create_accounts(
        &mut self,
        timestamp: u64,
        events: &[Account],
        results: &mut [CreateResult],
    ) {
        let timestamp = self.batch_timestamp(timestamp, events.len() as u64);
        self.ledger.create_accounts(timestamp, events, results);
    }

    /// Creates transfers (including posts and voids); writes one result per event.
    ///
    /// # Panics
    ///
    /// As `create_accounts`.
    pub fn create_transfers(
        &mut self,
        timestamp: u64,
        events: &[Transfer],
        results: &mut [CreateResult],
    ) {
        let timestamp = self.batch_timestamp(timestamp, events.len() as u64);
        self.ledger.create_transfers(timestamp, events, results);
    }

    /// Clears `out` and pushes the accounts found, in the order of `ids`.
    pub fn lookup_accounts(&self, ids: &[u128], out: &mut Vec<Account>) {
        self.ledger.lookup_accounts(ids, out);
    }

    /// Clears `out` and pushes the transfers found (burned ids are not found), in order.
    pub fn lookup_transfers(&self, ids: &[u128], out: &mut Vec<Transfer>) {
        self.ledger.lookup_transfers(ids, out);
    }

    /// Clears `out` and pushes the account's transfers selected by `filter`, at most
    /// `min(filter.limit, query_results_max, out.capacity())`; nothing for an invalid filter.
    pub fn get_account_transfers(&self, filter: &AccountFilter, out: &mut Vec<Transfer>) {
        self.ledger.get_account_transfers(filter, out);
    }

    /// Clears `out` and pushes the account's balance after each selected transfer (accounts
    /// with `history` only), with the same limits as `get_account_transfers`.
    pub fn get_account_balances(&self, filter: &AccountFilter, out: &mut Vec<AccountBalance>) {
        self.ledger.get_account_balances(filter, out);
    }

    /// Clears `out` and pushes the accounts matching `filter` in timestamp order.
    pub fn query_accounts(&self, filter: &QueryFilter, out: &mut Vec<Account>) {
        self.ledger.query_accounts(filter, out);
    }

    /// Clears `out` and pushes the transfers matching `filter` in timestamp order.
    pub fn query_transfers(&self, filter: &QueryFilter, out: &mut Vec<Transfer>) {
        self.ledger.query_transfers(filter, out);
    }

    /// Creates markets; writes one result per event (`CreateMarketStatus` codes).
    ///
    /// # Panics
    ///
    /// As `create_accounts`.
    pub fn create_markets(
        &mut self,
        timestamp: u64,
        events: &[Market],
        results: &mut [CreateResult],
    ) {
        assert!(events.len() <= self.ledger.config.batch_events_max as usize);
        let timestamp = self.batch_timestamp(timestamp, events.len() as u64);
        self.exchange
            .create_markets(&self.ledger, timestamp, events, results);
    }

    /// Places orders; writes one result per event. Each event uses the timestamps it needs
    /// (see the type docs).
    ///
    /// # Panics
    ///
    /// If `results.len() != events.len()`, there are more than `batch_events_max` events, or
    /// `timestamp` is below the request's timestamp slots or above `TIMESTAMP_MAX`.
    pub fn place_orders(&mut self, timestamp: u64, events: &[Order], results: &mut [OrderResult]) {
        let counts = (events.len(), results.len());
        self.order_events(timestamp, counts, |exchange, ledger, index, block| {
            results[index] = exchange.place(ledger, block, &events[index]);
            exchange.history_note(events[index].id, block);
        });
    }

    /// Cancels resting orders, releasing their holds; one result per id (`OrderStatus` codes).
    ///
    /// # Panics
    ///
    /// As `place_orders`.
    pub fn cancel_orders(&mut self, timestamp: u64, ids: &[u128], results: &mut [CreateResult]) {
        let counts = (ids.len(), results.len());
        self.order_events(timestamp, counts, |exchange, ledger, index, block| {
            let status = exchange.cancel(ledger, ids[index]);
            exchange.history_note(ids[index], block);
            results[index] = order_command_result(block, status);
        });
    }

    /// Amends resting orders (new price and/or quantity, holds swapped); one result per event.
    ///
    /// # Panics
    ///
    /// As `place_orders`.
    pub fn amend_orders(
        &mut self,
        timestamp: u64,
        events: &[OrderAmend],
        results: &mut [CreateResult],
    ) {
        let counts = (events.len(), results.len());
        self.order_events(timestamp, counts, |exchange, ledger, index, block| {
            let status = exchange.amend(ledger, block, &events[index]);
            exchange.history_note(events[index].order_id, block);
            results[index] = order_command_result(block, status);
        });
    }

    /// Clears `out` and pushes the orders found, in the order of `ids` (at most its capacity).
    pub fn lookup_orders(&self, ids: &[u128], out: &mut Vec<Order>) {
        self.exchange.lookup_orders(&self.ledger, ids, out);
    }

    /// Clears `out` and pushes the L2 book of `filter.market`: up to `depth` bids best first,
    /// then up to `depth` asks best first (at most its capacity); nothing for a bad filter.
    pub fn get_book(&self, filter: &BookFilter, out: &mut Vec<BookLevel>) {
        self.exchange.get_book(filter, out);
    }

    /// Clears `out` and pushes the fills selected by `filter` (at most its capacity).
    pub fn get_fills(&self, filter: &FillFilter, out: &mut Vec<Fill>) {
        self.exchange.get_fills(&self.ledger, filter, out);
    }

    /// Quote charged as fees by every fill in memory of the markets paying into this account
    /// (every fill ever made, unless history mode moved older ones to the store).
    pub fn fees_charged(&self, fee_account_id: u128) -> u128 {
        self.exchange.fees_to(fee_account_id)
    }

    /// Expires pending transfers due at or before `timestamp` (at most `PULSE_EXPIRIES_MAX`,
    /// in `(expires_at, timestamp)` order), then good-till-time orders due, releasing their
    /// holds, within the same budget; returns how many transfers and orders expired.
    ///
    /// # Panics
    ///
    /// If `timestamp < PULSE_EXPIRIES_MAX` or `timestamp > TIMESTAMP_MAX` (caller bugs).
    pub fn pulse(&mut self, timestamp: u64) -> u32 {
        let timestamp = self.batch_timestamp(timestamp, u64::from(PULSE_EXPIRIES_MAX));
        let used = self.ledger.pulse(timestamp);
        let expired = self.exchange.pulse(&mut self.ledger, timestamp, used);
        self.exchange.history_note_expired(timestamp);
        used + expired
    }

    /// A deterministic 128-bit digest of the whole state: accounts, transfers, pending statuses,
    /// burned ids and history in insertion order, then markets, orders, holds and fills.
    pub fn state_hash(&self) -> u128 {
        let mut digest = Digest::new();
        digest.u128(self.ledger.state_hash());
        self.exchange.digest(&mut digest);
        digest.u64(self.clock);
        digest.finish()
    }

    /// What `get_state` answers: the state hash, the clock and the accounts and transfers
    /// counts. Walks the whole in-memory state for the hash, as `state_hash` does.
    ///
    /// # Panics
    ///
    /// In history mode, if records are not drained (as `state_hash`).
    pub fn state(&self) -> State {
        State {
            state_hash: self.state_hash(),
            timestamp: self.clock,
            accounts_count: u64::from(self.accounts_count()),
            transfers_count: u64::from(self.transfers_count()),
            ..State::default()
        }
    }

    /// Switches this empty engine to history mode (docs/history.md): records that can no
    /// longer change are handed out by `history_drain` and leave memory on `history_evict`;
    /// what has left is read back through `reader`. The id filter is sized for `ids_max` ids.
    /// In history mode `transfers_max`, the burned-id store (`transfers_max / 2`) and
    /// `account_balances_max` size memory, not history: no create is refused for them, and the
    /// caller keeps room for each command (`history_room`).
    ///
    /// # Panics
    ///
    /// If the engine holds any transfer or is already in history mode.
    pub fn enable_history(&mut self, reader: Box<dyn history::HistoryRead>, ids_max: u64) {
        self.ledger.enable_history(reader, ids_max);
        self.exchange.enable_history(ids_max);
    }

    /// The address ranges of memory the first `transfers` transfers in memory will use and
    /// none has used yet, for a caller that has the kernel back them before the core first
    /// writes them (`clearline_journal::populate`), or that keeps them out of a forked
    /// checkpoint writer, which never reads them (`clearline_journal::keep_from_fork`).
    /// Addresses only: nothing is borrowed, and the ranges stay where they are, because the
    /// stores never reallocate.
    pub fn unused_transfer_memory(&self, transfers: usize) -> [(usize, usize); 3] {
        self.ledger.unused_transfer_memory(transfers)
    }

    /// The address range of the transfer id index's table: a checkpoint image does not hold
    /// it, so a forked checkpoint writer never reads it (`clearline_journal::keep_from_fork`
    /// keeps the core's writes to it from copying its pages while one runs).
    pub fn transfer_index_memory(&self) -> (usize, usize) {
        self.ledger.transfer_index_memory()
    }

    /// The address range of the id filter, in history mode (see `unused_transfer_memory`).
    pub fn id_filter_memory(&self) -> Option<(usize, usize)> {
        self.ledger.id_filter_memory()
    }

    /// The address ranges of the memory for ids inserted while a checkpoint is written, in
    /// history mode (zero-sized otherwise): a forked checkpoint writer never reads them (see
    /// `unused_transfer_memory`).
    pub fn id_filter_aside_memory(&self) -> [(usize, usize); 2] {
        self.ledger.id_filter_aside_memory()
    }

    /// Starts (`true`) or stops keeping newly stored ids out of the id filter, whose memory a
    /// forked checkpoint writer shares while it runs: every first write to a shared page
    /// copies it. The ids are answered from a small filter of their own meanwhile, and moved
    /// into the main one by `history_filter_merge` once the writer is gone. No answer depends
    /// on it; only the cost of the writes does.
    pub fn history_filter_defer(&mut self, deferring: bool) {
        self.ledger.history_filter_defer(deferring);
    }

    /// Moves up to `count` ids kept aside (`history_filter_defer`) into the id filter; returns
    /// whether none is left. Before a checkpoint image is taken every id must be moved
    /// (`usize::MAX`): the image holds only the main filter. Does nothing while deferring.
    pub fn history_filter_merge(&mut self, count: usize) -> bool {
        self.ledger.history_filter_merge(count)
    }

    /// Whether the engine is in history mode.
    pub fn history_enabled(&self) -> bool {
        self.ledger.history_enabled()
    }

    /// Hands every record not yet handed over to `sink` (history mode).
    ///
    /// # Panics
    ///
    /// If the engine is not in history mode.
    pub fn history_drain(&mut self, sink: &mut dyn history::HistorySink) {
        self.ledger.history_drain(sink);
        self.exchange.history_drain(sink);
    }

    /// Drops from memory what the store holds durably, every record at or below `through`
    /// (history mode; see `HistoryRead` for what the store must answer). Call it after a
    /// drain, with a timestamp the store is durable up to.
    ///
    /// # Panics
    ///
    /// If the engine is not in history mode or records are not drained.
    pub fn history_evict(&mut self, through: u64) {
        self.ledger.history_evict(through);
        self.exchange.history_evict(through);
    }

    /// After `from_checkpoint_with_history`: the next `history_drain` hands out again every
    /// record above `after`, the history store's durable watermark, so that the store gets
    /// back what a crash lost (the image holds everything above what left memory).
    ///
    /// # Panics
    ///
    /// If the engine is not in history mode, or `after` is below `history_evicted_through`
    /// (the store cannot be behind what left memory).
    pub fn history_redrain(&mut self, after: u64) {
        self.ledger.history_redrain(after);
        self.exchange.history_redrain(after);
    }

    /// Everything at or below this timestamp may have left memory (0: nothing has).
    pub fn history_evicted_through(&self) -> u64 {
        self.ledger.history_evicted_through()
    }

    /// Room left in memory in history mode: `(transfers, burned ids, balance rows)`. The
    /// caller keeps each at least what its next command can add, evicting (or waiting for the
    /// store) when short; a command that finds no room panics.
    pub fn history_room(&self) -> (usize, usize, usize) {
        self.ledger.history_room()
    }

    /// Room left in memory in history mode for `(orders, fills)`: `orders_max` and
    /// `fills_max` size the orders (resting, and finished not yet evicted) and the fills in
    /// memory. The caller keeps room for what its next command can add where it can; when even
    /// an eviction of everything durable leaves too little, the command is answered
    /// `orders_capacity_exceeded` or `fills_capacity_exceeded`.
    pub fn history_order_room(&self) -> (usize, usize) {
        self.exchange.history_room()
    }

    /// Number of accounts.
    pub fn accounts_count(&self) -> u32 {
        self.ledger.accounts.len() as u32
    }

    /// Number of stored transfers (burned ids are not transfers).
    pub fn transfers_count(&self) -> u32 {
        self.ledger.transfers.len() as u32
    }

    /// When the next unresolved pending transfer (its timestamp plus its timeout) or resting
    /// good-till-time order expires, if any. The server journals a pulse once the clock passes
    /// it; the engine itself never expires anything outside a pulse. For orders it may be
    /// early (an order canceled or filled before its time), which costs one pulse that expires
    /// nothing and moves the bound on.
    pub fn expiry_next(&self) -> Option<u64> {
        match (self.ledger.expiry_next(), self.exchange.expiry_next()) {
            (Some(transfers), Some(orders)) => Some(transfers.min(orders)),
            (transfers, orders) => transfers.or(orders),
        }
    }

    /// Number of pending transfers not yet posted, voided or expired.
    pub fn pending_count(&self) -> u32 {
        self.ledger.pending_count()
    }

    /// Bytes of memory per stored transfer: the 128-byte record, its links and status, its
    /// expiry slot and its share of the id index (history rows, 80 bytes per row, are extra).
    pub fn bytes_per_transfer(&self) -> usize {
        self.ledger.bytes_per_transfer()
    }

    /// Bytes the books take for `config` (the shared order and level pools, sized by
    /// `orders_max`, and every market's record and empty book), allocated by `Engine::new`.
    pub fn books_bytes(config: &Config) -> u64 {
        Exchange::books_bytes(config)
    }

    /// Bytes one market costs while no order rests in it (its record, its book state and its
    /// share of the market index of an engine with `markets_max` markets).
    pub fn bytes_per_market(markets_max: u32) -> usize {
        Exchange::bytes_per_market(markets_max)
    }

    /// Forgets all state, keeping every allocation (for benchmarks and tests that reuse one
    /// engine; never called by the server).
    pub fn clear(&mut self) {
        self.ledger.clear();
        self.exchange.clear();
        self.clock = 0;
    }

    /// O(n) invariant checks.
    ///
    /// # Panics
    ///
    /// On the first violated invariant: per ledger, pending and posted debits equal credits; no
    /// account breaks its limit flag; indexes, lists, pending statuses and the expiry queue are
    /// consistent; no book is crossed; every resting order holds exactly what it still needs
    /// and other orders hold nothing; every account's pending balances are its unresolved
    /// pending transfers plus the holds on it; fee accounts have received at least the fees of
    /// the stored fills.
    pub fn verify(&self) {
        self.ledger.verify();
        self.exchange.verify(&self.ledger);
    }

    /// One write request: decodes `body` into the event buffer that `buffers` picks out of the
    /// scratch space, gives `apply` the events and a default result per event, and encodes the
    /// results into `reply`; returns the bytes written. The buffers are borrowed out of the
    /// scratch space and put back, so nothing is allocated.
    fn write_batch<Event, Result: Clone + Default, const EVENT: usize, const RESULT: usize>(
        &mut self,
        body: &[u8],
        reply: &mut [u8],
        buffers: fn(&mut Scratch) -> (&mut Vec<Event>, &mut Vec<Result>),
        decode: fn(&[u8; EVENT]) -> Event,
        encode: fn(&Result, &mut [u8; RESULT]),
        apply: impl FnOnce(&mut Engine, &[Event], &mut [Result]),
    ) -> usize {
        let count = body.len() / EVENT;
        assert!(count <= self.ledger.config.batch_events_max as usize);
        let (events, results) = buffers(&mut self.scratch);
        let (mut events, mut results) = (mem::take(events), mem::take(results));
        decode_events(body, &mut events, decode);
        results.clear();
        results.resize(count, Result::default());
        apply(self, &events, &mut results);
        let written = encode_items(&results, reply, encode);
        let (events_slot, results_slot) = buffers(&mut self.scratch);
        (*events_slot, *results_slot) = (events, results);
        written
    }

    /// Applies one request. `body` holds `count` events of `operation.event_size()` bytes (the
    /// caller has validated sizes); writes the reply items into `reply` and returns the bytes
    /// written. `reply` is at least 1 MiB - 64. Never panics on any body content.
    ///
    /// # Panics
    ///
    /// If the body size is not a multiple of the event size, holds more events than the
    /// operation allows, or `reply` is smaller than the largest reply (caller bugs); for
    /// `get_state` in history mode, if records are not drained (see `state`).
    pub fn execute(
        &mut self,
        operation: Operation,
        timestamp: u64,
        body: &[u8],
        reply: &mut [u8],
    ) -> usize {
        let event_size = operation.event_size();
        let count = body.len().checked_div(event_size).unwrap_or(0);
        assert_eq!(body.len(), count * event_size, "body is whole events");
        let (_, events_max) = operation.events_range();
        assert!(count <= events_max as usize);
        match operation {
            Operation::CreateAccounts => self.write_batch(
                body,
                reply,
                |scratch| (&mut scratch.accounts, &mut scratch.results),
                Account::decode,
                CreateResult::encode,
                |engine, events, results| engine.create_accounts(timestamp, events, results),
            ),
            Operation::CreateTransfers => self.write_batch(
                body,
                reply,
                |scratch| (&mut scratch.transfers, &mut scratch.results),
                Transfer::decode,
                CreateResult::encode,
                |engine, events, results| engine.create_transfers(timestamp, events, results),
            ),
            Operation::LookupAccounts => {
                decode_events(body, &mut self.scratch.ids, decode_id);
                self.ledger
                    .lookup_accounts(&self.scratch.ids, &mut self.scratch.accounts);
                encode_items(&self.scratch.accounts, reply, Account::encode)
            }
            Operation::LookupTransfers => {
                decode_events(body, &mut self.scratch.ids, decode_id);
                self.ledger
                    .lookup_transfers(&self.scratch.ids, &mut self.scratch.transfers);
                encode_items(&self.scratch.transfers, reply, Transfer::encode)
            }
            Operation::GetAccountTransfers | Operation::GetAccountBalances => {
                assert_eq!(count, 1);
                let filter = AccountFilter::decode(body.try_into().expect("one filter"));
                if operation == Operation::GetAccountTransfers {
                    let out = &mut self.scratch.transfers;
                    self.ledger.get_account_transfers(&filter, out);
                    encode_items(out, reply, Transfer::encode)
                } else {
                    let out = &mut self.scratch.balances;
                    self.ledger.get_account_balances(&filter, out);
                    encode_items(out, reply, AccountBalance::encode)
                }
            }
            Operation::QueryAccounts | Operation::QueryTransfers => {
                assert_eq!(count, 1);
                let filter = QueryFilter::decode(body.try_into().expect("one filter"));
                if operation == Operation::QueryAccounts {
                    let out = &mut self.scratch.accounts;
                    self.ledger.query_accounts(&filter, out);
                    encode_items(out, reply, Account::encode)
                } else {
                    let out = &mut self.scratch.transfers;
                    self.ledger.query_transfers(&filter, out);
                    encode_items(out, reply, Transfer::encode)
                }
            }
            Operation::Pulse => {
                assert!(body.is_empty());
                let slots = u64::from(PULSE_EXPIRIES_MAX);
                let timestamp = batch_timestamp(&mut self.clock, timestamp, slots);
                let used = self.ledger.pulse(timestamp);
                self.exchange.pulse(&mut self.ledger, timestamp, used);
                self.exchange.history_note_expired(timestamp);
                0
            }
            Operation::CreateMarkets => self.write_batch(
                body,
                reply,
                |scratch| (&mut scratch.markets, &mut scratch.results),
                Market::decode,
                CreateResult::encode,
                |engine, events, results| engine.create_markets(timestamp, events, results),
            ),
            Operation::PlaceOrders => self.write_batch(
                body,
                reply,
                |scratch| (&mut scratch.orders, &mut scratch.order_results),
                Order::decode,
                OrderResult::encode,
                |engine, events, results| engine.place_orders(timestamp, events, results),
            ),
            Operation::CancelOrders => self.write_batch(
                body,
                reply,
                |scratch| (&mut scratch.ids, &mut scratch.results),
                decode_id,
                CreateResult::encode,
                |engine, ids, results| engine.cancel_orders(timestamp, ids, results),
            ),
            Operation::AmendOrders => self.write_batch(
                body,
                reply,
                |scratch| (&mut scratch.amends, &mut scratch.results),
                OrderAmend::decode,
                CreateResult::encode,
                |engine, events, results| engine.amend_orders(timestamp, events, results),
            ),
            Operation::LookupOrders => {
                decode_events(body, &mut self.scratch.ids, decode_id);
                let out = &mut self.scratch.orders;
                self.exchange
                    .lookup_orders(&self.ledger, &self.scratch.ids, out);
                encode_items(out, reply, Order::encode)
            }
            Operation::GetBook => {
                assert_eq!(count, 1);
                let filter = BookFilter::decode(body.try_into().expect("one filter"));
                let out = &mut self.scratch.levels;
                self.exchange.get_book(&filter, out);
                encode_items(out, reply, BookLevel::encode)
            }
            Operation::GetFills => {
                assert_eq!(count, 1);
                let filter = FillFilter::decode(body.try_into().expect("one filter"));
                let out = &mut self.scratch.fills;
                self.exchange.get_fills(&self.ledger, &filter, out);
                encode_items(out, reply, Fill::encode)
            }
            Operation::GetState => {
                assert_eq!(count, 1);
                // The event is reserved: like a filter with a reserved byte set, a non-zero
                // byte gets no items.
                if body.iter().any(|byte| *byte != 0) {
                    return 0;
                }
                encode_items(&[self.state()], reply, State::encode)
            }
        }
    }
}

/// The effective batch timestamp of a write that reserves `slots` timestamps (see `Engine`);
/// moves the clock to it.
fn batch_timestamp(clock: &mut u64, timestamp: u64, slots: u64) -> u64 {
    assert!(timestamp <= TIMESTAMP_MAX);
    let effective = timestamp
        .max(clock.saturating_add(slots))
        .min(TIMESTAMP_MAX);
    *clock = effective;
    effective
}

/// The result of a cancel or amend whose timestamps start at `block`.
fn order_command_result(block: u64, status: OrderStatus) -> CreateResult {
    CreateResult {
        timestamp: block,
        status: status as u32,
        reserved: 0,
    }
}

/// Clears `events` and decodes every whole event of `body` into it, within its capacity.
fn decode_events<Event, const SIZE: usize>(
    body: &[u8],
    events: &mut Vec<Event>,
    decode: fn(&[u8; SIZE]) -> Event,
) {
    events.clear();
    assert!(body.len() / SIZE <= events.capacity());
    for chunk in body.chunks_exact(SIZE) {
        events.push(decode(chunk.try_into().expect("chunk of SIZE")));
    }
}

/// Decodes one 16-byte little-endian id.
fn decode_id(bytes: &[u8; 16]) -> u128 {
    u128::from_le_bytes(*bytes)
}

fn encode_items<T, const SIZE: usize>(
    items: &[T],
    reply: &mut [u8],
    encode: fn(&T, &mut [u8; SIZE]),
) -> usize {
    let size = items.len() * SIZE;
    assert!(reply.len() >= size, "reply buffer too small");
    for (item, chunk) in items.iter().zip(reply.chunks_exact_mut(SIZE)) {
        encode(item, chunk.try_into().expect("chunk of SIZE"));
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills `bytes` from a seeded xorshift, biased toward extreme byte values.
    fn fill(bytes: &mut [u8], state: &mut u64) {
        for byte in bytes.iter_mut() {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *byte = match *state % 4 {
                0 => 0,
                1 => 0xFF,
                2 => (*state >> 8) as u8 & 3,
                _ => (*state >> 16) as u8,
            };
        }
    }

    /// `get_state` through `execute`: one `State` of the engine's hash, clock and counts; a
    /// non-zero reserved byte gets no items.
    #[test]
    fn get_state_reports_the_hash_clock_and_counts() {
        let mut engine = Engine::new(&Config::test_small());
        let mut reply = vec![0u8; (1 << 20) - 64];
        let get_state = |engine: &mut Engine, reply: &mut [u8]| {
            let written = engine.execute(Operation::GetState, 0, &[0; 16], reply);
            assert_eq!(written, State::SIZE);
            State::decode(reply[..State::SIZE].try_into().expect("64 bytes"))
        };
        let empty = get_state(&mut engine, &mut reply);
        assert_eq!(empty.state_hash, engine.state_hash());
        assert_eq!((empty.timestamp, empty.accounts_count), (0, 0));
        assert_eq!(
            get_state(&mut engine, &mut reply),
            empty,
            "a read changes nothing"
        );

        let mut accounts = [0u8; 2 * 128];
        for (index, chunk) in accounts.chunks_exact_mut(128).enumerate() {
            let account = Account {
                id: index as u128 + 1,
                ledger: 1,
                code: 1,
                ..Account::default()
            };
            account.encode(chunk.try_into().expect("128 bytes"));
        }
        engine.execute(Operation::CreateAccounts, 1_000, &accounts, &mut reply);
        let transfer = Transfer {
            id: 9,
            debit_account_id: 1,
            credit_account_id: 2,
            amount: 5,
            ledger: 1,
            code: 1,
            ..Transfer::default()
        };
        let mut transfers = [0u8; 128];
        transfer.encode(&mut transfers);
        engine.execute(Operation::CreateTransfers, 2_000, &transfers, &mut reply);
        let state = get_state(&mut engine, &mut reply);
        assert_ne!(state.state_hash, empty.state_hash);
        assert_eq!(state.state_hash, engine.state_hash());
        assert_eq!(state.timestamp, 2_000);
        assert_eq!((state.accounts_count, state.transfers_count), (2, 1));
        assert_eq!(state.reserved, [0; 24]);

        for byte in 0..16 {
            let mut body = [0u8; 16];
            body[byte] = 1;
            assert_eq!(
                engine.execute(Operation::GetState, 0, &body, &mut reply),
                0,
                "reserved byte {byte}"
            );
        }
    }

    #[test]
    fn execute_survives_arbitrary_bodies() {
        let mut engine = Engine::new(&Config::test_small());
        let mut reply = vec![0u8; (1 << 20) - 64];
        let mut body = vec![0u8; 64 * 128];
        let mut timestamp = 1u64 << 40;
        for seed in 1..=200u64 {
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            for operation in Operation::ALL {
                let (events_min, events_max) = operation.events_range();
                let count =
                    (seed as usize % 64 + 1).clamp(events_min as usize, events_max as usize);
                let size = count * operation.event_size();
                fill(&mut body[..size], &mut state);
                if seed % 3 == 0 && operation == Operation::CreateTransfers {
                    // Valid accounts for some events, so deeper paths run too.
                    for chunk in body[..size].chunks_exact_mut(128) {
                        chunk[16..32].copy_from_slice(&(seed as u128 % 4 + 1).to_le_bytes());
                        chunk[32..48].copy_from_slice(&(seed as u128 % 5 + 1).to_le_bytes());
                        chunk[120..128].copy_from_slice(&[0; 8]);
                    }
                }
                timestamp += operation.timestamp_slots(count as u32) + count as u64 + seed;
                let written = engine.execute(operation, timestamp, &body[..size], &mut reply);
                if matches!(
                    operation,
                    Operation::CreateAccounts | Operation::CreateTransfers
                ) {
                    assert_eq!(written, count * CreateResult::SIZE);
                }
                assert_eq!(written % operation.reply_item_size().max(1), 0);
            }
            if seed == 1 {
                // Plain accounts 1..=5 so that transfers can reach the balance rules.
                let mut bytes = [0u8; 5 * 128];
                for (index, chunk) in bytes.chunks_exact_mut(128).enumerate() {
                    let account = Account {
                        id: index as u128 + 1,
                        ledger: u32::from_le_bytes([0xFF; 4]),
                        code: 1,
                        ..Account::default()
                    };
                    account.encode(chunk.try_into().unwrap());
                }
                timestamp += 10;
                engine.execute(Operation::CreateAccounts, timestamp, &bytes, &mut reply);
            }
        }
        engine.verify();
        // Timestamps at the very end of time are still handled.
        let count = 8u64;
        fill(&mut body[..count as usize * 128], &mut 99);
        engine.execute(
            Operation::CreateTransfers,
            TIMESTAMP_MAX,
            &body[..1024],
            &mut reply,
        );
        engine.execute(Operation::Pulse, TIMESTAMP_MAX, &[], &mut reply);
        engine.verify();
    }
}
