//! The server's history pipeline (`clearline start --history`, docs/history.md): the core
//! hands every record that can no longer change to a run, the history writer ingests each run
//! into the store (DATA/history) on its own thread, and once a run is durable the core drops
//! its records from memory.
//!
//! Order of events for one run:
//! 1. after each write, the core drains the engine into the run being filled;
//! 2. once it holds `run_transfers` transfers (or memory is short) the run is sealed with its
//!    watermark: the journal sequence of its last write and the engine clock after it;
//! 3. it is submitted to the writer only when the journal is durable up to that sequence, so
//!    the store never holds a record a crash could take back;
//! 4. once the writer reports it durable, its records may leave memory: the core evicts
//!    everything the store holds when a write needs the room or a checkpoint is due.
//!
//! Memory is a cache in history mode: before each write the core makes room for the most the
//! write can add (sealing, waiting for the writer and evicting); a write that cannot fit even
//! with everything evicted is answered `storage_full` without being journaled. Nothing here
//! allocates after start-up: the runs are allocated once and circulate between the core and the
//! writer.
//!
//! A failed read of the store cannot be answered around: the process stops with the error
//! (exit code `EXIT_HISTORY_FAILED`), as it does on a failed journal sync; every acknowledged
//! write is in the journal.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clearline_engine::history::{HistoryRead, HistorySink, Resolution};
use clearline_engine::{
    AccountBalance, AccountFilter, Config, Engine, Fill, FillFilter, Operation, Order, QueryFilter,
    Transfer, FILLS_PER_ORDER_MAX, PULSE_EXPIRIES_MAX,
};
use clearline_history::{
    History, HistoryConfig, HistoryError, HistoryWriter, Run, RunCapacity, Watermark,
};
use clearline_journal::Durability;

/// The history store's folder inside the data directory.
pub const HISTORY_DIR_NAME: &str = "history";

/// Exit code when the history store fails: a read the engine needs, or an ingest.
pub const EXIT_HISTORY_FAILED: i32 = 4;

/// fjall's block cache for the store's reads.
const HISTORY_CACHE_BYTES: u64 = 64 << 20;

/// Runs in circulation: one filling, one sealed and waiting for the journal, and the writer's.
const RUNS_QUEUED_MAX: usize = 2;

/// How long the core sleeps between looks at the writer while it waits for room.
const ROOM_POLL: Duration = Duration::from_millis(1);

/// Stops the process after a failed store read (see the module docs).
fn store_failed(what: &str, error: &HistoryError) -> ! {
    pipeline_failed(&format!("the history store failed to {what}: {error}"))
}

/// Stops the process: the history pipeline cannot go on (a failed store, writer or journal
/// sync). Every acknowledged write is in the journal.
fn pipeline_failed(problem: &str) -> ! {
    eprintln!(
        "clearline: {problem}; stopping. Every acknowledged write is in the journal; see \
         docs/history.md (\"Crash safety\") before restarting"
    );
    std::process::exit(EXIT_HISTORY_FAILED)
}

/// The engine's view of the store (`HistoryRead`), on the core thread.
pub struct StoreReader(pub Arc<History>);

impl HistoryRead for StoreReader {
    fn transfer(&self, id: u128, settlement: bool) -> Option<Transfer> {
        self.0
            .transfer_in(id, settlement)
            .unwrap_or_else(|error| store_failed("read a transfer", &error))
    }
    fn transfer_at(&self, timestamp: u64) -> Option<Transfer> {
        self.0
            .transfer_at(timestamp)
            .unwrap_or_else(|error| store_failed("read a transfer", &error))
    }
    fn burned(&self, id: u128) -> Option<u64> {
        self.0
            .burned_at(id)
            .unwrap_or_else(|error| store_failed("read a burned id", &error))
    }
    fn resolution(&self, id: u128, settlement: bool) -> Option<Resolution> {
        let resolution = self
            .0
            .resolution(id, settlement)
            .unwrap_or_else(|error| store_failed("read a resolution", &error));
        resolution.map(|(status, _)| {
            Resolution::from_u8(status).unwrap_or_else(|| {
                let error = HistoryError::Corrupt {
                    what: "resolutions",
                    detail: format!("transfer {id}: status {status}"),
                };
                store_failed("read a resolution", &error)
            })
        })
    }
    fn account_transfers(&self, filter: &AccountFilter, out: &mut Vec<Transfer>) {
        self.0
            .account_transfers(filter, out)
            .unwrap_or_else(|error| store_failed("read an account's transfers", &error));
    }
    fn account_balances(&self, filter: &AccountFilter, out: &mut Vec<AccountBalance>) {
        self.0
            .account_balances(filter, out)
            .unwrap_or_else(|error| store_failed("read an account's balances", &error));
    }
    fn query_transfers(&self, filter: &QueryFilter, out: &mut Vec<Transfer>) {
        self.0
            .query_transfers(filter, out)
            .unwrap_or_else(|error| store_failed("query transfers", &error));
    }
    fn order(&self, id: u128) -> Option<(Order, u64)> {
        self.0
            .order(id)
            .unwrap_or_else(|error| store_failed("read an order", &error))
    }
    fn fills(&self, filter: &FillFilter, out: &mut Vec<Fill>) {
        self.0
            .fills(filter, out)
            .unwrap_or_else(|error| store_failed("read fills", &error));
    }
}

/// Fills a run from a drain. The run is sized so that a drain never overflows it (the core
/// seals before a write that could), so a push that fails is a broken invariant.
struct RunSink<'a>(&'a mut Run);

impl HistorySink for RunSink<'_> {
    fn transfer(&mut self, transfer: &Transfer) {
        self.0.push(transfer).expect("the run has room for a write");
    }
    fn burned(&mut self, id: u128, timestamp: u64) {
        self.0
            .push_burned(id, timestamp)
            .expect("the run has room for a write");
    }
    fn resolution(&mut self, id: u128, settlement: bool, status: Resolution, timestamp: u64) {
        self.0
            .push_resolution(id, settlement, status as u8, timestamp)
            .expect("the run has room for a write");
    }
    fn balance(&mut self, account_id: u128, balance: &AccountBalance) {
        self.0
            .push_balance(account_id, balance)
            .expect("the run has room for a write");
    }
    fn order(&mut self, order: &Order, finished_at: u64) {
        self.0
            .push_order(order, finished_at)
            .expect("the run has room for a write");
    }
    fn fill(&mut self, fill: &Fill) {
        self.0
            .push_fill(fill)
            .expect("the run has room for a write");
    }
}

/// The most ledger transfers one order event makes: the four legs of each of its fills (holds
/// are reservations on balances, docs/matching.md).
const ORDER_EVENT_TRANSFERS_MAX: usize = FILLS_PER_ORDER_MAX * 4;

/// The most records of each kind one write can add: `(transfers, burned ids, resolutions,
/// balance rows)`.
fn write_adds(operation: Operation, count: u32, config: &Config) -> (usize, usize, usize, usize) {
    let count = count as usize;
    let transfers = match operation {
        Operation::CreateTransfers => count,
        Operation::PlaceOrders | Operation::AmendOrders => count * ORDER_EVENT_TRANSFERS_MAX,
        // Room as for one record per expiry (the rows an expiry may write).
        Operation::Pulse => PULSE_EXPIRIES_MAX as usize,
        _ => 0,
    };
    let burned = if operation == Operation::CreateTransfers {
        count
    } else {
        0
    };
    // Each resolution resolves a pending transfer that exists or is made by the same write.
    let resolutions = (config.transfers_pending_max as usize + transfers)
        .min(transfers + PULSE_EXPIRIES_MAX as usize);
    (transfers, burned, resolutions, 2 * transfers)
}

/// The most orders and fills one write can add to memory: `(orders, fills)` (a place adds
/// one order; a place or an amend up to `FILLS_PER_ORDER_MAX` fills).
fn write_order_adds(operation: Operation, count: u32) -> (usize, usize) {
    let count = count as usize;
    match operation {
        Operation::PlaceOrders => (count, count * FILLS_PER_ORDER_MAX),
        Operation::AmendOrders => (0, count * FILLS_PER_ORDER_MAX),
        _ => (0, 0),
    }
}

/// The most orders one write can finish (each order event finishes its own order and up to
/// `FILLS_PER_ORDER_MAX` makers; a pulse expires up to `PULSE_EXPIRIES_MAX`).
fn write_finishes(operation: Operation, count: u32) -> usize {
    let count = count as usize;
    match operation {
        Operation::PlaceOrders | Operation::CancelOrders | Operation::AmendOrders => {
            count * (FILLS_PER_ORDER_MAX + 1)
        }
        Operation::Pulse => PULSE_EXPIRIES_MAX as usize,
        _ => 0,
    }
}

/// The pipeline's state on the core thread.
pub struct Pipeline {
    store: Arc<History>,
    writer: HistoryWriter,
    config: Config,
    /// The run being filled, and the watermark it reaches so far.
    filling: Run,
    filling_to: Watermark,
    /// A sealed run waiting for the journal to be durable up to its watermark.
    sealed: Option<(Run, Watermark)>,
    /// Runs handed back by the writer, or never used yet.
    spare: Vec<Run>,
    /// The watermark of the newest run submitted.
    submitted: Watermark,
    /// Everything at or below this timestamp was evicted.
    evicted: u64,
    /// Transfers per run before it is sealed.
    run_transfers: usize,
    /// Time writes spent waiting for room (for the start-up message).
    waited: Duration,
    /// Evictions so far, their time in all and the longest (the core applies nothing while
    /// one runs).
    evictions: Evictions,
}

/// What evicting cost the core, for the message at shutdown.
#[derive(Clone, Copy, Debug, Default)]
pub struct Evictions {
    pub count: u64,
    pub total: Duration,
    pub longest: Duration,
}

impl Pipeline {
    /// Opens (or creates) the store in `data`/history and starts its writer; runs seal at
    /// `run_transfers` transfers. Every run is allocated now.
    ///
    /// # Errors
    ///
    /// The store cannot be opened (damaged, another version) or the writer cannot start.
    pub fn open(
        data: &Path,
        config: &Config,
        run_transfers: usize,
    ) -> Result<Pipeline, HistoryError> {
        let store = Arc::new(History::open(&HistoryConfig {
            directory: data.join(HISTORY_DIR_NAME),
            cache_bytes: HISTORY_CACHE_BYTES,
        })?);
        let writer = HistoryWriter::spawn(Arc::clone(&store), RUNS_QUEUED_MAX)?;
        // A run holds a full interval plus the most one write adds, so a drain never finds it
        // full (pages of the buffers are only touched when used).
        let (transfers, burned, resolutions, balances) =
            write_adds(Operation::PlaceOrders, config.batch_events_max, config);
        let (_, fills) = write_order_adds(Operation::PlaceOrders, config.batch_events_max);
        let finishes = write_finishes(Operation::PlaceOrders, config.batch_events_max);
        let capacity = RunCapacity {
            transfers: run_transfers + transfers,
            burned_ids: run_transfers + burned.max(config.batch_events_max as usize),
            resolutions: run_transfers + resolutions,
            balances: 2 * run_transfers + balances,
            // The first drain after loading a checkpoint of an earlier version hands out every
            // finished order and fill in memory at once.
            orders: run_transfers + finishes.max(config.orders_max as usize),
            fills: run_transfers + fills.max(config.fills_max as usize),
        };
        let filling = Run::with_capacity(capacity);
        let spare = (0..RUNS_QUEUED_MAX + 1)
            .map(|_| Run::with_capacity(capacity))
            .collect();
        let durable = store.watermark().unwrap_or_default();
        Ok(Pipeline {
            store,
            writer,
            config: *config,
            filling,
            filling_to: durable,
            sealed: None,
            spare,
            submitted: durable,
            evicted: 0,
            run_transfers,
            waited: Duration::ZERO,
            evictions: Evictions::default(),
        })
    }

    /// The address ranges of memory the history pipeline will use in steady flow and has not
    /// used yet: each run's buffer for a full interval, the engine's memory for the transfers
    /// that are in memory at most while runs circulate, and the id filter.
    pub fn unused_memory(&self, engine: &Engine) -> Vec<(usize, usize)> {
        let interval = self.run_transfers + self.config.batch_events_max as usize;
        // Roughly in the order the core first writes them: the engine's stores, then the run
        // being filled, then the runs after it.
        let mut ranges = engine
            .unused_transfer_memory((RUNS_QUEUED_MAX + 2) * interval)
            .to_vec();
        ranges.extend(engine.id_filter_memory());
        ranges.extend(engine.id_filter_aside_memory());
        ranges.extend(self.runs_unused_memory(interval));
        ranges
    }

    /// The transfer buffer of the run being filled, then of each spare run, past its last
    /// record and among its first `transfers` slots.
    fn runs_unused_memory(&self, transfers: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        std::iter::once(&self.filling)
            .chain(&self.spare)
            .map(move |run| run.unused_transfer_memory(transfers))
    }

    /// The address ranges a forked checkpoint writer never reads and the core may write while
    /// it runs: the engine's transfer stores past their last record, the memory for ids kept
    /// out of the id filter while a checkpoint runs, and the runs' transfer buffers past their
    /// last record (`clearline_journal::keep_from_fork`). Populated at start, these pages would
    /// otherwise be shared with the child, and every first write to one while it lives would
    /// copy it.
    pub fn fork_unneeded_memory(&self, engine: &Engine) -> Vec<(usize, usize)> {
        let mut ranges = engine.unused_transfer_memory(usize::MAX).to_vec();
        ranges.extend(engine.id_filter_aside_memory());
        ranges.extend(self.runs_unused_memory(usize::MAX));
        ranges
    }

    /// Starts a short-lived background thread that has the kernel back `unused_memory` now,
    /// so that the core does not stop to have each new page zeroed when it first writes it
    /// (measured on a 2-core virtual machine: a fifth of the core's time over the first 10 M
    /// transfers after start, all of it in the first seven seconds). Recovery runs meanwhile
    /// and joins the thread before the server serves: a core that wrote pages the thread was
    /// still populating waited for it, and the first request of the 10 M benchmark took 0.67 s
    /// instead of 9 ms. Best effort: only timing depends on it, so a thread that cannot start
    /// (`None`) or a kernel that cannot populate (before Linux 5.14) changes nothing else.
    pub fn populate_unused_memory(&self, engine: &Engine) -> Option<std::thread::JoinHandle<()>> {
        let ranges = self.unused_memory(engine);
        std::thread::Builder::new()
            .name("memory-populate".to_owned())
            .spawn(move || {
                clearline_journal::lower_thread_priority(clearline_journal::BACKGROUND_NICE);
                for (address, size) in ranges {
                    if clearline_journal::populate(address, size).is_err() {
                        return;
                    }
                }
            })
            .ok()
    }

    /// The store, for the engine's reader.
    pub fn store(&self) -> Arc<History> {
        Arc::clone(&self.store)
    }

    /// How long writes have waited for room in memory so far.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// What evictions have cost the core so far.
    pub fn evictions(&self) -> Evictions {
        self.evictions
    }

    /// The store's durable watermark when it was opened or since.
    pub fn durable(&self) -> Watermark {
        self.writer
            .durable()
            .or_else(|| self.store.watermark())
            .unwrap_or_default()
    }

    /// After a write at journal `sequence` was applied: drains the engine into the run.
    pub fn after_write(&mut self, engine: &mut Engine, sequence: u64) {
        engine.history_drain(&mut RunSink(&mut self.filling));
        self.filling_to = Watermark {
            sequence,
            timestamp: engine.timestamp_last(),
        };
    }

    /// Work between writes: seals a full run and submits the sealed run once the journal is
    /// durable up to it. A failed writer stops the process. It evicts nothing: memory is
    /// compacted only when a write needs room (`make_room`) or a checkpoint is due
    /// (`evict_durable`).
    pub fn tick(&mut self, durability: &Durability) {
        if let Some(error) = self.writer.take_error() {
            pipeline_failed(&format!(
                "the history store failed to ingest a run: {error}"
            ));
        }
        while let Some(mut run) = self.writer.reclaim() {
            run.clear();
            self.spare.push(run);
        }
        if self.filling.len() >= self.run_transfers {
            self.seal();
        }
        if let Some((_, watermark)) = &self.sealed {
            if durability.durable_sequence() >= watermark.sequence {
                let (mut run, watermark) = self.sealed.take().expect("a sealed run");
                let durable = self.durable();
                if watermark.sequence <= durable.sequence
                    && watermark.timestamp <= durable.timestamp
                {
                    // Replayed writes the store already holds.
                    run.clear();
                    self.spare.push(run);
                } else if let Err(error) = self.writer.submit(run, watermark) {
                    pipeline_failed(&format!("the history writer stopped: {error}"));
                }
                self.submitted = watermark;
            }
        }
    }

    /// Drops from memory everything the store holds durably. Each eviction compacts memory:
    /// it moves every record that stays and re-points its index entry, so its cost is linear
    /// in what stays. Run only when memory is full, an eviction drops several runs for each
    /// one it keeps; run each time a run was ingested, it would move the two or three runs
    /// still on their way to the store once for every run it drops.
    pub fn evict_durable(&mut self, engine: &mut Engine) {
        let through = self.durable().timestamp.min(engine.timestamp_last());
        if through > self.evicted {
            let started = Instant::now();
            engine.history_evict(through);
            self.evicted = through;
            let took = started.elapsed();
            self.evictions.count += 1;
            self.evictions.total += took;
            self.evictions.longest = self.evictions.longest.max(took);
        }
    }

    /// Seals the filling run if it holds anything, there is no sealed run waiting, and a
    /// spare run can take its place.
    fn seal(&mut self) {
        if self.filling.is_empty() && self.filling_to.timestamp <= self.submitted.timestamp {
            return;
        }
        if self.sealed.is_some() {
            return;
        }
        let Some(next) = self.spare.pop() else {
            return;
        };
        let run = std::mem::replace(&mut self.filling, next);
        self.sealed = Some((run, self.filling_to));
    }

    /// Makes room in memory and in the filling run for the most `operation` with `count`
    /// events can add, waiting for the journal and the writer as needed. Returns false when
    /// even a caught-up store leaves too little memory: the write must be refused. A failed
    /// writer or journal sync stops the process. `waiting` runs each time it is about to wait
    /// (the core finishes checkpoints meanwhile).
    pub fn make_room(
        &mut self,
        engine: &mut Engine,
        operation: Operation,
        count: u32,
        durability: &Durability,
        waiting: &mut dyn FnMut(),
    ) -> bool {
        let (transfers, burned, _, rows) = write_adds(operation, count, &self.config);
        let (orders, fills) = write_order_adds(operation, count);
        let finishes = write_finishes(operation, count);
        if transfers == 0 && burned == 0 && orders == 0 && fills == 0 && finishes == 0 {
            return true;
        }
        loop {
            self.tick(durability);
            let fits = |engine: &Engine| {
                let (memory_transfers, memory_burned, memory_rows) = engine.history_room();
                memory_transfers >= transfers && memory_burned >= burned && memory_rows >= rows
            };
            let orders_fit = |engine: &Engine| {
                let (memory_orders, memory_fills) = engine.history_order_room();
                memory_orders >= orders && memory_fills >= fills
            };
            let mut memory = fits(engine);
            let mut order_memory = orders_fit(engine);
            if !memory || !order_memory {
                self.evict_durable(engine);
                memory = fits(engine);
                order_memory = orders_fit(engine);
            }
            let capacity = self.filling.capacity();
            let run = self.filling.len() + transfers <= capacity.transfers
                && self.filling.orders().len() + finishes <= capacity.orders
                && self.filling.fills().len() + fills <= capacity.fills;
            if memory && order_memory && run {
                return true;
            }
            // Everything applied is durable in the store and evicted: waiting gains nothing.
            let caught_up = self.sealed.is_none()
                && self.filling.is_empty()
                && self.durable().timestamp >= self.filling_to.timestamp
                && self.evicted >= self.filling_to.timestamp.min(engine.timestamp_last());
            if caught_up && run {
                // Memory then holds only resting orders (the same after any replay), so the
                // engine's own answer for orders and fills that do not fit is deterministic:
                // `orders_capacity_exceeded` or `fills_capacity_exceeded`.
                return memory;
            }
            self.seal();
            waiting();
            let started = Instant::now();
            match &self.sealed {
                Some((_, watermark)) if durability.durable_sequence() < watermark.sequence => {
                    if let Err(error) = durability.wait_durable(watermark.sequence) {
                        pipeline_failed(&format!("a journal sync failed: {error}"));
                    }
                }
                _ => std::thread::sleep(ROOM_POLL),
            }
            self.waited += started.elapsed();
        }
    }

    /// Lets the writer finish the runs it has (shutdown). Runs not submitted are not needed:
    /// the next start hands the store everything above its watermark again, from the
    /// checkpoint and the journal.
    ///
    /// # Errors
    ///
    /// The writer failed.
    pub fn close(self) -> Result<(), String> {
        self.writer
            .close()
            .map_err(|error| format!("the history writer failed: {error}"))
    }
}
