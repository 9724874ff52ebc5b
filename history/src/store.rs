//! `History`: the store itself, one fjall database with eleven key spaces (docs/history.md, "The
//! history store"), its ingest of sorted runs and its point reads. The filtered queries are in
//! query.rs; the key spaces of orders and fills (`orders`, `fills`, `fill_markets`,
//! `fill_orders`) are described in orders.rs.
//!
//! | key space | key (big-endian) | value |
//! |---|---|---|
//! | `transfers` | first timestamp (8) | 1 to 16 transfers of 128 bytes (blocks.rs) |
//! | `transfer_ids` | id (16), namespace (1); or a block's base (16), namespace + 0x80 (1) |
//! timestamp (8); or up to 16 ids' low nibbles and timestamps (id_blocks.rs) |
//! | `account_runs` | generation (8), account (16), first timestamp (8) | the account's transfers
//! in one run |
//! | `balances` | account (16), timestamp (8) | four balances (64) |
//! | `burned_ids` | id (16) | timestamp (8) |
//! | `resolutions` | id (16), namespace (1) | status (1), timestamp (8) |
//! | `meta` | `watermark` | format version, journal sequence, timestamp, checksum |
//! | `meta` | `generation`, name (8) | none: one per generation of `account_runs` |
//!
//! The namespace byte is 0 for client transfer ids and 1 for settlement ones (transfers with
//! `TransferFlags::SETTLEMENT`): the engine keeps the two apart, so one id may be in both.
//!
//! Every key space is written only through fjall's ingestion of sorted input, never through its
//! write-ahead log: each ingestion writes its tables, syncs them and their directory, then
//! makes them visible by atomically replacing the key space's version file. `ingest` checks the
//! whole run first, then loads `transfers`, then the key spaces that name transfers
//! (`transfer_ids`, `account_runs`, `balances`), then `burned_ids` and `resolutions`, and the
//! watermark last, so when a watermark is durable everything at or below it is, and a
//! reference between key spaces (an id to its timestamp, an account entry or a balance row to
//! its transfer) always points at a record that was made durable before it. A crash between
//! the steps leaves records above the watermark that a repeated ingest of the same run
//! replaces with identical copies.
//!
//! Invariants, checked when read and reported as `Corrupt` when broken: every key and value
//! has its exact length, a record's timestamp, id and namespace match the keys that led to
//! it, and every timestamp an index names has a record.
//!
//! Does not know about the journal, the engine's memory, or which transfers are "old enough":
//! the caller builds runs and chooses watermarks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use clearline_engine::Transfer;
use fjall::config::{CompressionPolicy, FilterPolicy, PinningPolicy};
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions};

use crate::account_runs::{self, Posting, SIDE_CREDIT, SIDE_DEBIT};
use crate::blocks::{self, Block};
use crate::error::HistoryError;
use crate::id_blocks;
use crate::orders::{self as order_records, FILLS, FILL_MARKETS, FILL_ORDERS, ORDERS};
use crate::records;
use crate::run::{BalanceRow, BurnedId, FinishedOrder, Resolution, Run};
use crate::watermark::{Watermark, WATERMARK_KEY};

pub(crate) const TRANSFERS: &str = "transfers";
pub(crate) const TRANSFER_IDS: &str = "transfer_ids";
pub(crate) const ACCOUNT_RUNS: &str = "account_runs";
pub(crate) const BALANCES: &str = "balances";
pub(crate) const BURNED_IDS: &str = "burned_ids";
pub(crate) const RESOLUTIONS: &str = "resolutions";
const META: &str = "meta";

/// The prefix of the `meta` keys that list the generations of `account_runs`, each followed by
/// a generation's name (8, big-endian), with no value. It sorts before `watermark`.
const GENERATION_KEY_PREFIX: &[u8] = b"generation";

/// Every key space but `meta`, which holds the watermark: all must exist under a watermark.
const RECORD_KEY_SPACES: [&str; 6] = [
    TRANSFERS,
    TRANSFER_IDS,
    ACCOUNT_RUNS,
    BALANCES,
    BURNED_IDS,
    RESOLUTIONS,
];

/// Where the store lives and how much memory it may cache.
#[derive(Clone, Debug)]
pub struct HistoryConfig {
    /// The store's directory; created if missing.
    pub directory: PathBuf,
    /// fjall's block cache, in bytes.
    pub cache_bytes: u64,
}

/// What one `ingest` did, with the time each step took (for benchmarks and logs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Transfers written.
    pub transfers_ingested: usize,
    /// Transfers at or below the durable watermark, skipped.
    pub transfers_skipped: usize,
    /// Entries written to `account_runs` (one per account touched).
    pub account_entries: usize,
    /// Balance rows written.
    pub balances_ingested: usize,
    /// Burned ids written.
    pub burned_ids_ingested: usize,
    /// Resolutions written.
    pub resolutions_ingested: usize,
    /// Burned ids, resolutions and balance rows at or below the durable watermark, skipped.
    pub others_skipped: usize,
    /// Checking the run and sorting its keys.
    pub sort_ns: u64,
    /// Loading `transfers`, synced.
    pub transfers_ns: u64,
    /// Loading `transfer_ids`, synced.
    pub transfer_ids_ns: u64,
    /// Building and loading `account_runs`, synced.
    pub account_runs_ns: u64,
    /// Loading `balances`, `burned_ids` and `resolutions`, synced.
    pub others_ns: u64,
    /// Writing and syncing the watermark.
    pub watermark_ns: u64,
    /// Dropping the store's synced pages from the page cache (`drop_cached_pages_under`).
    pub page_cache_ns: u64,
    /// Finished orders written.
    pub orders_ingested: usize,
    /// Fills written.
    pub fills_ingested: usize,
}

/// One transfer id as `transfer_ids` sorts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct IdEntry {
    id: u128,
    settlement: bool,
    timestamp: u64,
}

/// Buffers reused by every ingest, so a steady stream of runs of one size allocates none of
/// its own (fjall allocates per key).
#[derive(Default)]
struct Scratch {
    /// The run's transfer ids, sorted by id then namespace.
    ids: Vec<IdEntry>,
    /// Both sides of every transfer, sorted by account then timestamp.
    postings: Vec<Posting>,
    /// Per account, where its next posting goes while `postings` is placed
    /// (`place_postings`).
    account_starts: Vec<u32>,
    /// One encoded `account_runs` value.
    value: Vec<u8>,
    /// The run's burned ids, sorted by id.
    burned_ids: Vec<BurnedId>,
    /// The run's resolutions, sorted by id then namespace.
    resolutions: Vec<Resolution>,
    /// The run's balance rows, sorted by account then timestamp.
    balances: Vec<BalanceRow>,
    /// The `account_runs` generation the next run joins and the transfers it holds; `None`
    /// until the first ingest after the store is opened, which starts a new one.
    generation: Option<(u64, usize)>,
    /// The run's finished orders, sorted by id.
    orders: Vec<FinishedOrder>,
    /// The run's `fill_markets` keys, sorted.
    fill_markets: Vec<[u8; 20]>,
    /// The run's `fill_orders` keys, sorted.
    fill_orders: Vec<[u8; 32]>,
}

/// The run's records of each kind above the durable watermark.
struct Fresh<'run> {
    transfers: &'run [Transfer],
    burned_ids: &'run [BurnedId],
    resolutions: &'run [Resolution],
    balances: &'run [BalanceRow],
}

impl Fresh<'_> {
    fn is_empty(&self) -> bool {
        self.transfers.is_empty()
            && self.burned_ids.is_empty()
            && self.resolutions.is_empty()
            && self.balances.is_empty()
    }
}

/// The history store. Reads may run from any number of threads beside one ingest; ingests are
/// serialized.
pub struct History {
    directory: PathBuf,
    database: Database,
    pub(crate) transfers: Keyspace,
    transfer_ids: Keyspace,
    pub(crate) account_runs: Keyspace,
    pub(crate) balances: Keyspace,
    burned_ids: Keyspace,
    resolutions: Keyspace,
    pub(crate) orders: Keyspace,
    pub(crate) fills: Keyspace,
    pub(crate) fill_markets: Keyspace,
    pub(crate) fill_orders: Keyspace,
    meta: Keyspace,
    /// The durable watermark: updated only after it is synced.
    watermark: Mutex<Option<Watermark>>,
    /// Held for the whole of an ingest.
    scratch: Mutex<Scratch>,
    /// The generations of `account_runs` (see account_runs.rs).
    generations: Mutex<Generations>,
    /// Set by tests: the next load of `transfers` fails before writing anything.
    fail_next_records: AtomicBool,
}

/// The names of the generations of `account_runs`, ascending (eight bytes per full run of
/// history), and how many of them `meta` lists.
struct Generations {
    names: Vec<u64>,
    recorded: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing holding these locks leaves its data half-changed on a panic, and release builds
    // abort on panic anyway.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Checks that `timestamps` (of the records of one kind, in run order) increase: strictly, or
/// allowing equal neighbours (balance rows: one transfer gives a row to each of its accounts).
fn checked_order(
    kind: &'static str,
    timestamps: impl Iterator<Item = u64>,
    strictly: bool,
) -> Result<(), HistoryError> {
    let mut previous: Option<u64> = None;
    for (index, timestamp) in timestamps.enumerate() {
        if let Some(previous) = previous {
            if timestamp < previous || (strictly && timestamp == previous) {
                return Err(HistoryError::RunOutOfOrder {
                    kind,
                    index,
                    previous,
                    timestamp,
                });
            }
        }
        previous = Some(timestamp);
    }
    Ok(())
}

/// Refuses a run whose last record of a kind is above the new watermark.
fn checked_within(
    kind: &'static str,
    last: Option<u64>,
    watermark: &Watermark,
) -> Result<(), HistoryError> {
    match last {
        Some(timestamp) if timestamp > watermark.timestamp => {
            Err(HistoryError::RunBeyondWatermark {
                kind,
                timestamp,
                watermark_timestamp: watermark.timestamp,
            })
        }
        _ => Ok(()),
    }
}

/// The records of `items` (in increasing timestamp order) above `durable`.
fn above<T>(items: &[T], durable: Option<Watermark>, timestamp: fn(&T) -> u64) -> &[T] {
    let skipped = durable.map_or(0, |durable| {
        items.partition_point(|item| timestamp(item) <= durable.timestamp)
    });
    &items[skipped..]
}

/// Asks the kernel to drop the cached pages of every file under `directory`: those of the
/// tables just synced, and those reads brought in since the last call. Best effort: errors are
/// ignored, because only timing depends on it.
///
/// The store writes each record once and reads old ones rarely, so the files of its records
/// need not stay in the page cache, where they would grow it by tens of bytes per transfer for
/// as long as the server runs. Each page the cache grows into is memory the machine has not
/// used lately, and on a virtual machine whose free memory goes back to the host (free page
/// reporting) such a page costs a fault in the host besides. On the 2-core guest the
/// benchmarks run on, ingesting runs of a million transfers cost 0.62 s of CPU each until the
/// cache had grown by about 1.5 GB, then 0.85 s; dropping the pages after each run kept every
/// one of 40 runs at 0.59 to 0.67 s (`cargo run --release -p clearline-history --example
/// ingest_growth`, docs/history.md). Reads of old records then come from the device unless
/// fjall's block cache holds them.
pub(crate) fn drop_cached_pages_under(directory: &Path) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            drop_cached_pages_under(&path);
        } else if kind.is_file() {
            if let Ok(file) = std::fs::File::open(&path) {
                clearline_journal::drop_cached_pages(&file);
            }
        }
    }
}

/// Sorts the records above the durable watermark by each key space's key into `scratch`, and
/// refuses the run if two records would share a key or a balance row has no transfer.
fn sort_and_check(scratch: &mut Scratch, fresh: &Fresh<'_>) -> Result<(), HistoryError> {
    let ids = &mut scratch.ids;
    ids.clear();
    ids.extend(fresh.transfers.iter().map(|transfer| IdEntry {
        id: transfer.id,
        settlement: transfer.flags().settlement(),
        timestamp: transfer.timestamp,
    }));
    ids.sort_unstable();
    let same_id = |a: &IdEntry, b: &IdEntry| a.id == b.id && a.settlement == b.settlement;
    if let Some(pair) = ids.windows(2).find(|pair| same_id(&pair[0], &pair[1])) {
        return Err(HistoryError::RunDuplicateId {
            id: pair[0].id,
            settlement: pair[0].settlement,
        });
    }

    let burned_ids = &mut scratch.burned_ids;
    burned_ids.clear();
    burned_ids.extend_from_slice(fresh.burned_ids);
    burned_ids.sort_unstable_by_key(|burned| burned.id);
    if let Some(pair) = burned_ids.windows(2).find(|pair| pair[0].id == pair[1].id) {
        return Err(HistoryError::RunDuplicateBurnedId { id: pair[0].id });
    }
    // Both lists are sorted by id: one merge finds a burned id held as a client transfer.
    let mut clients = ids.iter().filter(|entry| !entry.settlement).peekable();
    for burned in burned_ids.iter() {
        while clients.next_if(|entry| entry.id < burned.id).is_some() {}
        if clients.peek().is_some_and(|entry| entry.id == burned.id) {
            return Err(HistoryError::RunBurnedIdIsTransfer { id: burned.id });
        }
    }

    let resolutions = &mut scratch.resolutions;
    resolutions.clear();
    resolutions.extend_from_slice(fresh.resolutions);
    resolutions.sort_unstable_by_key(|resolution| (resolution.id, resolution.settlement));
    let same_pending =
        |a: &Resolution, b: &Resolution| a.id == b.id && a.settlement == b.settlement;
    if let Some(pair) = resolutions
        .windows(2)
        .find(|pair| same_pending(&pair[0], &pair[1]))
    {
        return Err(HistoryError::RunDuplicateResolution {
            id: pair[0].id,
            settlement: pair[0].settlement,
        });
    }

    // Rows and transfers are both in timestamp order: one merge finds each row's transfer.
    let mut transfers = fresh.transfers.iter().peekable();
    for row in fresh.balances {
        let (account, timestamp) = (row.account_id, row.balance.timestamp);
        while transfers.next_if(|t| t.timestamp < timestamp).is_some() {}
        let moved = transfers.peek().is_some_and(|t| {
            t.timestamp == timestamp
                && (t.debit_account_id == account || t.credit_account_id == account)
        });
        if !moved {
            return Err(HistoryError::RunBalanceWithoutTransfer {
                account_id: account,
                timestamp,
            });
        }
    }
    let balances = &mut scratch.balances;
    balances.clear();
    balances.extend_from_slice(fresh.balances);
    balances.sort_unstable_by_key(|row| (row.account_id, row.balance.timestamp));
    let same_row = |a: &BalanceRow, b: &BalanceRow| {
        a.account_id == b.account_id && a.balance.timestamp == b.balance.timestamp
    };
    if let Some(pair) = balances
        .windows(2)
        .find(|pair| same_row(&pair[0], &pair[1]))
    {
        return Err(HistoryError::RunDuplicateBalance {
            account_id: pair[0].account_id,
            timestamp: pair[0].balance.timestamp,
        });
    }

    place_postings(
        fresh.transfers,
        &mut scratch.postings,
        &mut scratch.account_starts,
    );
    Ok(())
}

/// Account spans (largest account id less the smallest in a run) up to which
/// `place_postings` counts instead of sorting: a table of 4 M starts, 16 MiB.
const COUNTED_ACCOUNT_SPAN_MAX: u128 = 1 << 22;

/// The postings of `transfer`: one per side, or one for both sides when it moves money within
/// one account.
fn sides_of(transfer: &Transfer) -> (Posting, Option<Posting>) {
    let (debit, credit) = (transfer.debit_account_id, transfer.credit_account_id);
    let timestamp = transfer.timestamp;
    let posting = |account, side| Posting {
        account,
        timestamp,
        side,
    };
    if debit == credit {
        (posting(debit, SIDE_DEBIT | SIDE_CREDIT), None)
    } else {
        (
            posting(debit, SIDE_DEBIT),
            Some(posting(credit, SIDE_CREDIT)),
        )
    }
}

/// `sides_of` as an iterator, for collecting.
fn postings_of(transfer: &Transfer) -> impl Iterator<Item = Posting> {
    let (first, second) = sides_of(transfer);
    std::iter::once(first).chain(second)
}

/// Fills `postings` with both sides of every transfer of `transfers` (in increasing timestamp
/// order, as the run checks), sorted by account, then timestamp.
///
/// When the run's account ids lie close together (a span of at most
/// `COUNTED_ACCOUNT_SPAN_MAX` and at most twice the postings), each account's postings are
/// counted and then placed straight into their slots: the transfers come in timestamp order,
/// so each account's postings land in timestamp order and nothing is compared. Otherwise (ids
/// spread over the u128 range) the postings are sorted. Both give the same list.
fn place_postings(transfers: &[Transfer], postings: &mut Vec<Posting>, starts: &mut Vec<u32>) {
    postings.clear();
    // Plain loops over `sides_of` rather than `flat_map(postings_of)`: the chained iterator
    // kept its state on the stack and was most of the writer's time in this function.
    let mut count = 0usize;
    let (mut low, mut high) = (u128::MAX, u128::MIN);
    for transfer in transfers {
        let (first, second) = sides_of(transfer);
        let second_account = second.map_or(first.account, |second| second.account);
        count += 1 + usize::from(second.is_some());
        low = low.min(first.account).min(second_account);
        high = high.max(first.account).max(second_account);
    }
    let counted = count > 0
        && high - low < COUNTED_ACCOUNT_SPAN_MAX
        && high - low <= 2 * count as u128
        && u32::try_from(count).is_ok();
    if !counted {
        postings.extend(transfers.iter().flat_map(postings_of));
        postings.sort_unstable();
        return;
    }
    let slot_of = |account: u128| (account - low) as usize;
    starts.clear();
    starts.resize(slot_of(high) + 2, 0);
    for transfer in transfers {
        let (first, second) = sides_of(transfer);
        starts[slot_of(first.account) + 1] += 1;
        if let Some(second) = second {
            starts[slot_of(second.account) + 1] += 1;
        }
    }
    for index in 1..starts.len() {
        starts[index] += starts[index - 1];
    }
    let empty = Posting {
        account: 0,
        timestamp: 0,
        side: 0,
    };
    postings.resize(count, empty);
    let mut place = |posting: Posting| {
        let next = &mut starts[slot_of(posting.account)];
        postings[*next as usize] = posting;
        *next += 1;
    };
    for transfer in transfers {
        let (first, second) = sides_of(transfer);
        place(first);
        if let Some(second) = second {
            place(second);
        }
    }
    debug_assert!(postings.is_sorted());
}

/// Sorts the run's orders by id and its fills' index keys into `scratch`, and refuses the run
/// if it holds one order twice.
fn sort_orders_and_fills(scratch: &mut Scratch, run: &Run) -> Result<(), HistoryError> {
    let orders = &mut scratch.orders;
    orders.clear();
    orders.extend_from_slice(run.orders());
    orders.sort_unstable_by_key(|finished| finished.order.id);
    if let Some(pair) = orders
        .windows(2)
        .find(|pair| pair[0].order.id == pair[1].order.id)
    {
        return Err(HistoryError::RunDuplicateOrder {
            id: pair[0].order.id,
        });
    }
    scratch.fill_markets.clear();
    scratch.fill_orders.clear();
    for fill in run.fills() {
        let (timestamp, sequence) = (fill.timestamp, fill.sequence);
        let market_key = order_records::market_key(fill.market, timestamp, sequence);
        scratch.fill_markets.push(market_key);
        for order_id in [fill.taker_order_id, fill.maker_order_id] {
            let key = order_records::order_key(order_id, timestamp, sequence);
            scratch.fill_orders.push(key);
        }
    }
    scratch.fill_markets.sort_unstable();
    scratch.fill_orders.sort_unstable();
    scratch.fill_orders.dedup();
    Ok(())
}

/// Key space options with no index or filter block pinned in memory: they are read through
/// the block cache (`HistoryConfig::cache_bytes`), so the store's memory stays at that size
/// however much history it holds (fjall pins the first levels' blocks by default, memory that
/// grows with the store).
fn unpinned() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .index_block_pinning_policy(PinningPolicy::all(false))
        .filter_block_pinning_policy(PinningPolicy::all(false))
}

/// The generations of the store: as `meta` lists them, or, in a store written before `meta`
/// listed them (while `account_runs` holds entries but `meta` lists none), as found in
/// `account_runs`, to be listed at the next ingest.
fn opened_generations(
    meta: &Keyspace,
    account_runs: &Keyspace,
    directory: &Path,
) -> Result<Generations, HistoryError> {
    let fjall_error = |error| HistoryError::fjall(META, directory.to_path_buf(), error);
    let mut names = Vec::new();
    for guard in meta.prefix(GENERATION_KEY_PREFIX) {
        let (key, value) = guard.into_inner().map_err(fjall_error)?;
        let name = <[u8; 8]>::try_from(&key[GENERATION_KEY_PREFIX.len()..]);
        match name {
            Ok(name) if value.is_empty() => names.push(u64::from_be_bytes(name)),
            _ => {
                return Err(HistoryError::Corrupt {
                    what: "meta generations",
                    detail: format!(
                        "a generation key of {} bytes with a value of {} bytes, expected {} \
                         and 0",
                        key.len(),
                        value.len(),
                        GENERATION_KEY_PREFIX.len() + 8
                    ),
                })
            }
        }
    }
    if names.is_empty() && account_runs.first_key_value().is_some() {
        let names = stored_generations(account_runs, directory)?;
        return Ok(Generations { names, recorded: 0 });
    }
    let recorded = names.len();
    Ok(Generations { names, recorded })
}

/// The key in `meta` that lists a generation of `account_runs`.
fn generation_key(name: u64) -> [u8; GENERATION_KEY_PREFIX.len() + 8] {
    let mut key = [0u8; GENERATION_KEY_PREFIX.len() + 8];
    key[..GENERATION_KEY_PREFIX.len()].copy_from_slice(GENERATION_KEY_PREFIX);
    key[GENERATION_KEY_PREFIX.len()..].copy_from_slice(&name.to_be_bytes());
    key
}

/// The generations that `account_runs` holds, ascending: one seek per generation.
fn stored_generations(account_runs: &Keyspace, directory: &Path) -> Result<Vec<u64>, HistoryError> {
    let mut generations = Vec::new();
    let mut next = account_runs.first_key_value();
    while let Some(guard) = next {
        let key = guard
            .key()
            .map_err(|error| HistoryError::fjall(ACCOUNT_RUNS, directory.to_path_buf(), error))?;
        let (generation, _, _) = account_runs::key_parts(&key)?;
        generations.push(generation);
        next = match generation.checked_add(1) {
            Some(following) => account_runs
                .range(account_runs::key(following, 0, 0)..)
                .next(),
            None => None,
        };
    }
    Ok(generations)
}

impl History {
    /// Opens the store in `config.directory`, creating it if needed, and reads its watermark.
    ///
    /// # Errors
    ///
    /// `Io` if the directory cannot be created; `Fjall` if fjall cannot open it (for example
    /// another process holds it); `Corrupt` if fjall finds damaged files, the watermark is
    /// damaged or from another format version, or a key space is missing from a store that
    /// has a watermark.
    pub fn open(config: &HistoryConfig) -> Result<History, HistoryError> {
        let directory = config.directory.clone();
        std::fs::create_dir_all(&directory).map_err(|source| HistoryError::Io {
            context: "create directory",
            path: directory.clone(),
            source,
        })?;
        // One background worker. With more, fjall's first worker hands every compaction
        // request back to the queue to stay free for flushes, and while the others are busy it
        // takes the same request again at once: a busy loop that burned about a tenth of the
        // machine's CPU under load on two cores. The store flushes little (runs are ingested
        // as sorted tables), so one worker serving both costs nothing measurable.
        let database = Database::builder(&directory)
            .cache_size(config.cache_bytes)
            .worker_threads(1)
            .open()
            .map_err(|error| HistoryError::fjall("open", directory.clone(), error))?;
        let existed = RECORD_KEY_SPACES.map(|name| (name, database.keyspace_exists(name)));
        let keyspace = |name: &'static str, options: fn() -> KeyspaceCreateOptions| {
            database
                .keyspace(name, options)
                .map_err(|error| HistoryError::fjall(name, directory.clone(), error))
        };
        let meta = keyspace(META, KeyspaceCreateOptions::default)?;
        let watermark = match meta
            .get(WATERMARK_KEY)
            .map_err(|error| HistoryError::fjall("meta", directory.clone(), error))?
        {
            Some(value) => Some(Watermark::decode(&value)?),
            None => None,
        };
        if watermark.is_some() {
            if let Some((name, _)) = existed.iter().find(|(_, exists)| !exists) {
                return Err(HistoryError::Corrupt {
                    what: "store",
                    detail: format!(
                        "{}: a watermark is stored but key space {name} is missing",
                        directory.display()
                    ),
                });
            }
        }
        // Every read of `transfers` is a hit (its keys come from the other key spaces), so it
        // needs no Bloom filter.
        // No filters where they never save a read: a record is read only by the timestamp an
        // index named (it is there), and account lists only by range.
        let unfiltered = || unpinned().filter_policy(FilterPolicy::disabled());
        // Records compress well (most have zero fields) and are the bulk of what is written.
        let records = || {
            unpinned()
                .filter_policy(FilterPolicy::disabled())
                .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
        };
        let transfers = keyspace(TRANSFERS, records)?;
        let transfer_ids = keyspace(TRANSFER_IDS, unpinned)?;
        let account_runs = keyspace(ACCOUNT_RUNS, unfiltered)?;
        let balances = keyspace(BALANCES, unpinned)?;
        let burned_ids = keyspace(BURNED_IDS, unpinned)?;
        let resolutions = keyspace(RESOLUTIONS, unpinned)?;
        // Added in format version 4: a version 3 store gains them empty.
        let orders = keyspace(ORDERS, records)?;
        let fills = keyspace(FILLS, records)?;
        let fill_markets = keyspace(FILL_MARKETS, unfiltered)?;
        let fill_orders = keyspace(FILL_ORDERS, unfiltered)?;
        let generations = opened_generations(&meta, &account_runs, &directory)?;
        Ok(History {
            directory,
            database,
            transfers,
            transfer_ids,
            account_runs,
            balances,
            burned_ids,
            resolutions,
            orders,
            fills,
            fill_markets,
            fill_orders,
            meta,
            watermark: Mutex::new(watermark),
            scratch: Mutex::new(Scratch::default()),
            generations: Mutex::new(generations),
            fail_next_records: AtomicBool::new(false),
        })
    }

    /// The key spaces whose files are not kept in the page cache (`drop_cached_pages_under`):
    /// records and the indexes read by range. The key spaces of ids (`transfer_ids`,
    /// `burned_ids`, `resolutions`, `orders`) stay cached: the core reads them whenever the id
    /// filter answers "maybe" for a new id, and a read from the device there would stop it.
    fn uncached_key_spaces(&self) -> [&Keyspace; 6] {
        [
            &self.transfers,
            &self.account_runs,
            &self.balances,
            &self.fills,
            &self.fill_markets,
            &self.fill_orders,
        ]
    }

    /// The store's directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The durable watermark; `None` until the first ingest.
    pub fn watermark(&self) -> Option<Watermark> {
        *lock(&self.watermark)
    }

    pub(crate) fn fjall_error(
        &self,
        context: &'static str,
    ) -> impl FnOnce(fjall::Error) -> HistoryError {
        let path = self.directory.clone();
        move |error| HistoryError::fjall(context, path, error)
    }

    /// Loads one run. Transfers, burned ids and resolutions must be in strictly increasing
    /// timestamp order, balance rows in increasing order. Records at or below the current
    /// watermark's timestamp are skipped (a run rebuilt after a crash may repeat what was
    /// already loaded). Durable when it returns `Ok`: tables synced, then the watermark. A
    /// watermark equal to the durable one is not written again.
    ///
    /// # Errors
    ///
    /// Refused before anything is written: `WatermarkBackwards` if `watermark` is below the
    /// durable one; `RunOutOfOrder`; `RunBeyondWatermark` if a record is above
    /// `watermark.timestamp`; among the records above the durable watermark,
    /// `RunDuplicateId` (one id twice in one namespace), `RunDuplicateBurnedId`,
    /// `RunBurnedIdIsTransfer` (an id burned and held as a client transfer),
    /// `RunDuplicateResolution`, `RunDuplicateBalance` (two rows of one account at one
    /// timestamp) and `RunBalanceWithoutTransfer` (a row with no transfer of the run at its
    /// timestamp that moves its account). While writing: `Fjall` or `Corrupt`; some key spaces
    /// may then hold the run's records above the old watermark, which the next successful
    /// ingest of the same run makes whole.
    pub fn ingest(&self, run: &Run, watermark: Watermark) -> Result<IngestReport, HistoryError> {
        let mut scratch = lock(&self.scratch);
        let durable = self.watermark();
        if let Some(durable) = durable {
            if watermark.is_behind(&durable) {
                return Err(HistoryError::WatermarkBackwards {
                    durable: (durable.sequence, durable.timestamp),
                    given: (watermark.sequence, watermark.timestamp),
                });
            }
        }
        let mut report = self.ingest_tables_locked(&mut scratch, run, durable, Some(watermark))?;
        if durable != Some(watermark) {
            let start = Instant::now();
            let mut ingestion = self
                .meta
                .start_ingestion()
                .map_err(self.fjall_error("meta"))?;
            // Generations started since the last watermark are listed with it: reading the
            // list at open is one scan, where finding them in `account_runs` takes a seek each.
            let mut generations = lock(&self.generations);
            for &name in &generations.names[generations.recorded..] {
                ingestion
                    .write(&generation_key(name)[..], &[][..])
                    .map_err(self.fjall_error("meta"))?;
            }
            ingestion
                .write(WATERMARK_KEY, &watermark.encode()[..])
                .map_err(self.fjall_error("meta"))?;
            ingestion.finish().map_err(self.fjall_error("meta"))?;
            generations.recorded = generations.names.len();
            drop(generations);
            *lock(&self.watermark) = Some(watermark);
            report.watermark_ns = elapsed_ns(start);
        }
        let start = Instant::now();
        for keyspace in self.uncached_key_spaces() {
            drop_cached_pages_under(keyspace.path());
        }
        report.page_cache_ns = elapsed_ns(start);
        Ok(report)
    }

    /// The first part of `ingest` alone: the run's records above the durable watermark are
    /// loaded into their key spaces, and the watermark is left as it is. Stopping here is what
    /// a crash between the tables and the watermark leaves; tests use it to check recovery
    /// from that state.
    ///
    /// # Errors
    ///
    /// As `ingest`, without the watermark checks.
    #[doc(hidden)]
    pub fn ingest_tables(&self, run: &Run) -> Result<IngestReport, HistoryError> {
        let mut scratch = lock(&self.scratch);
        let durable = self.watermark();
        self.ingest_tables_locked(&mut scratch, run, durable, None)
    }

    /// Checks the run, then loads every key space but `meta`. `watermark`, when given, is the
    /// one the run is ingested with: no record may be above it.
    fn ingest_tables_locked(
        &self,
        scratch: &mut Scratch,
        run: &Run,
        durable: Option<Watermark>,
        watermark: Option<Watermark>,
    ) -> Result<IngestReport, HistoryError> {
        let start = Instant::now();
        checked_order(
            "transfers",
            run.transfers().iter().map(|t| t.timestamp),
            true,
        )?;
        checked_order(
            "burned ids",
            run.burned_ids().iter().map(|b| b.timestamp),
            true,
        )?;
        checked_order(
            "resolutions",
            run.resolutions().iter().map(|r| r.timestamp),
            true,
        )?;
        checked_order(
            "balance rows",
            run.balances().iter().map(|row| row.balance.timestamp),
            false,
        )?;
        if let Some(watermark) = &watermark {
            let last = run.transfers().last().map(|t| t.timestamp);
            checked_within("transfers", last, watermark)?;
            let last = run.burned_ids().last().map(|b| b.timestamp);
            checked_within("burned ids", last, watermark)?;
            let last = run.resolutions().last().map(|r| r.timestamp);
            checked_within("resolutions", last, watermark)?;
            let last = run.balances().last().map(|row| row.balance.timestamp);
            checked_within("balance rows", last, watermark)?;
            let last = run.orders().last().map(|order| order.finished_at);
            checked_within("orders", last, watermark)?;
            let last = run.fills().last().map(|fill| fill.timestamp);
            checked_within("fills", last, watermark)?;
        }
        checked_order(
            "orders",
            run.orders().iter().map(|order| order.finished_at),
            false,
        )?;
        checked_order(
            "fills",
            run.fills().iter().map(|fill| fill.timestamp),
            false,
        )?;
        checked_order(
            "fill sequences",
            run.fills().iter().map(|f| f.sequence),
            true,
        )?;
        sort_orders_and_fills(scratch, run)?;
        let fresh = Fresh {
            transfers: above(run.transfers(), durable, |t| t.timestamp),
            burned_ids: above(run.burned_ids(), durable, |b| b.timestamp),
            resolutions: above(run.resolutions(), durable, |r| r.timestamp),
            balances: above(run.balances(), durable, |row| row.balance.timestamp),
        };
        let mut report = IngestReport {
            transfers_ingested: fresh.transfers.len(),
            transfers_skipped: run.transfers().len() - fresh.transfers.len(),
            balances_ingested: fresh.balances.len(),
            burned_ids_ingested: fresh.burned_ids.len(),
            resolutions_ingested: fresh.resolutions.len(),
            others_skipped: run.len()
                - run.transfers().len()
                - run.orders().len()
                - run.fills().len()
                - fresh.balances.len()
                - fresh.burned_ids.len()
                - fresh.resolutions.len(),
            ..IngestReport::default()
        };
        // Orders and fills are written whatever the watermark (orders.rs).
        self.load_orders_and_fills(scratch, run)?;
        report.orders_ingested = run.orders().len();
        report.fills_ingested = run.fills().len();
        if fresh.is_empty() {
            return Ok(report);
        }
        // Everything that can refuse the run is checked before the first write.
        sort_and_check(scratch, &fresh)?;
        report.sort_ns = elapsed_ns(start);

        // The records first, then the key spaces that name them: each ingestion is synced
        // before the next starts, so after a crash every index entry on disk names a record
        // on disk (loading both at once left, after a kill -9 in the middle of an ingest,
        // `transfer_ids` entries whose records were lost, and the store could not be read).
        report.transfers_ns = self.load_records(&mut scratch.value, fresh.transfers)?;
        self.load_indexes(scratch, &fresh, &mut report)?;
        Ok(report)
    }

    /// Makes the next ingest fail when it loads `transfers`, before writing any of them: what
    /// a crash or a full disk at that step leaves. Tests use it to check that no key space
    /// naming records was loaded before them.
    #[doc(hidden)]
    pub fn fail_next_records_load(&self) {
        self.fail_next_records.store(true, Ordering::Relaxed);
    }

    /// Loads the run's records into `transfers`, in blocks (blocks.rs) encoded in `value`;
    /// returns how long it took in nanoseconds.
    fn load_records(
        &self,
        value: &mut Vec<u8>,
        transfers: &[Transfer],
    ) -> Result<u64, HistoryError> {
        let start = Instant::now();
        if self.fail_next_records.swap(false, Ordering::Relaxed) {
            return Err(HistoryError::Io {
                context: "load transfers (failure injected by a test)",
                path: self.directory.clone(),
                source: std::io::Error::other("injected"),
            });
        }
        if !transfers.is_empty() {
            let mut ingestion = self
                .transfers
                .start_ingestion()
                .map_err(self.fjall_error(TRANSFERS))?;
            for block in blocks::blocks(transfers) {
                blocks::encode(block, value);
                ingestion
                    .write(&block[0].timestamp.to_be_bytes()[..], &value[..])
                    .map_err(self.fjall_error(TRANSFERS))?;
            }
            ingestion.finish().map_err(self.fjall_error(TRANSFERS))?;
        }
        Ok(elapsed_ns(start))
    }

    /// Loads the run's ids, account lists, balance rows, burned ids and resolutions, sorted in
    /// `scratch`, recording the time of each step in `report`.
    fn load_indexes(
        &self,
        scratch: &mut Scratch,
        fresh: &Fresh<'_>,
        report: &mut IngestReport,
    ) -> Result<(), HistoryError> {
        let start = Instant::now();
        self.load_transfer_ids(&scratch.ids, &mut scratch.value)?;
        report.transfer_ids_ns = elapsed_ns(start);

        let start = Instant::now();
        if let Some(first) = fresh.transfers.first() {
            // A new generation is named by the run's first transfer, above every stored one.
            let (generation, transfers) = match scratch.generation {
                Some((generation, transfers)) if transfers < account_runs::GENERATION_TRANSFERS => {
                    (generation, transfers)
                }
                _ => (first.timestamp, 0),
            };
            let mut ingestion = self
                .account_runs
                .start_ingestion()
                .map_err(self.fjall_error(ACCOUNT_RUNS))?;
            for group in scratch.postings.chunk_by(|a, b| a.account == b.account) {
                account_runs::encode_list(group, &mut scratch.value);
                let key = account_runs::key(generation, group[0].account, group[0].timestamp);
                ingestion
                    .write(&key[..], &scratch.value[..])
                    .map_err(self.fjall_error(ACCOUNT_RUNS))?;
                report.account_entries += 1;
            }
            ingestion.finish().map_err(self.fjall_error(ACCOUNT_RUNS))?;
            scratch.generation = Some((generation, transfers + fresh.transfers.len()));
            let generations = &mut lock(&self.generations).names;
            if generations.last().is_none_or(|&last| last < generation) {
                generations.push(generation);
            }
        }
        report.account_runs_ns = elapsed_ns(start);

        let start = Instant::now();
        self.load(BALANCES, &self.balances, &scratch.balances, |row| {
            (
                records::balance_key(row.account_id, row.balance.timestamp),
                records::balance_value(&row.balance),
            )
        })?;
        self.load(
            BURNED_IDS,
            &self.burned_ids,
            &scratch.burned_ids,
            |burned| (burned.id.to_be_bytes(), burned.timestamp.to_be_bytes()),
        )?;
        self.load(
            RESOLUTIONS,
            &self.resolutions,
            &scratch.resolutions,
            |resolution| {
                (
                    records::id_key(resolution.id, resolution.settlement),
                    records::resolution_value(resolution.status, resolution.timestamp),
                )
            },
        )?;
        report.others_ns = elapsed_ns(start);
        Ok(())
    }

    /// Loads the run's ids (`ids`, sorted by id then namespace) into `transfer_ids`: the ids of
    /// one base as blocks (one per namespace, encoded in `value`) when their block keys sort
    /// after every key the key space holds, else one key each (id_blocks.rs).
    fn load_transfer_ids(&self, ids: &[IdEntry], value: &mut Vec<u8>) -> Result<(), HistoryError> {
        if ids.is_empty() {
            return Ok(());
        }
        let last = match self.transfer_ids.last_key_value() {
            Some(guard) => Some(guard.key().map_err(self.fjall_error(TRANSFER_IDS))?),
            None => None,
        };
        let mut ingestion = self
            .transfer_ids
            .start_ingestion()
            .map_err(self.fjall_error(TRANSFER_IDS))?;
        let same_base = |a: &IdEntry, b: &IdEntry| id_blocks::base(a.id) == id_blocks::base(b.id);
        for group in ids.chunk_by(same_base) {
            // The client block key is the smallest key of the base's blocks; once one base
            // goes in blocks, every later one does.
            let smallest = id_blocks::block_key(group[0].id, false);
            if last.as_ref().is_some_and(|last| smallest[..] <= last[..]) {
                for entry in group {
                    ingestion
                        .write(
                            &records::id_key(entry.id, entry.settlement)[..],
                            &entry.timestamp.to_be_bytes()[..],
                        )
                        .map_err(self.fjall_error(TRANSFER_IDS))?;
                }
                continue;
            }
            for settlement in [false, true] {
                value.clear();
                for entry in group.iter().filter(|entry| entry.settlement == settlement) {
                    id_blocks::push(value, entry.id, entry.timestamp);
                }
                if !value.is_empty() {
                    ingestion
                        .write(
                            &id_blocks::block_key(group[0].id, settlement)[..],
                            &value[..],
                        )
                        .map_err(self.fjall_error(TRANSFER_IDS))?;
                }
            }
        }
        ingestion.finish().map_err(self.fjall_error(TRANSFER_IDS))
    }

    /// Loads the run's finished orders and fills with their indexes, sorted in `scratch`.
    fn load_orders_and_fills(&self, scratch: &Scratch, run: &Run) -> Result<(), HistoryError> {
        self.load(ORDERS, &self.orders, &scratch.orders, |finished| {
            (
                finished.order.id.to_be_bytes(),
                order_records::order_value(finished),
            )
        })?;
        self.load(FILLS, &self.fills, run.fills(), |fill| {
            (fill.sequence.to_be_bytes(), order_records::fill_value(fill))
        })?;
        self.load(
            FILL_MARKETS,
            &self.fill_markets,
            &scratch.fill_markets,
            |key| (*key, [0u8; 0]),
        )?;
        self.load(
            FILL_ORDERS,
            &self.fill_orders,
            &scratch.fill_orders,
            |key| (*key, [0u8; 0]),
        )
    }

    /// Loads `items`, sorted by key, into `keyspace` with one ingestion (none if empty).
    fn load<T, const KEY: usize, const VALUE: usize>(
        &self,
        name: &'static str,
        keyspace: &Keyspace,
        items: &[T],
        entry: impl Fn(&T) -> ([u8; KEY], [u8; VALUE]),
    ) -> Result<(), HistoryError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut ingestion = keyspace.start_ingestion().map_err(self.fjall_error(name))?;
        for item in items {
            let (key, value) = entry(item);
            ingestion
                .write(&key[..], &value[..])
                .map_err(self.fjall_error(name))?;
        }
        ingestion.finish().map_err(self.fjall_error(name))
    }

    /// The record stored under `timestamp`, which an index named.
    pub(crate) fn record(
        &self,
        timestamp: u64,
        named_by: &'static str,
    ) -> Result<Transfer, HistoryError> {
        match self.transfer_at(timestamp)? {
            Some(transfer) => Ok(transfer),
            None => Err(HistoryError::Corrupt {
                what: named_by,
                detail: format!("names timestamp {timestamp}, which has no record"),
            }),
        }
    }

    /// The client transfer with `id`, if the store holds it: `transfer_in(id, false)`.
    ///
    /// # Errors
    ///
    /// As `transfer_in`.
    pub fn transfer(&self, id: u128) -> Result<Option<Transfer>, HistoryError> {
        self.transfer_in(id, false)
    }

    /// The transfer with `id` in the client namespace, or in the settlement namespace (the
    /// transfers with `TransferFlags::SETTLEMENT`) if `settlement`, if the store holds it.
    ///
    /// # Errors
    ///
    /// `Fjall` on a failed read; `Corrupt` if the id's entry or its record is damaged (the
    /// record's id or namespace differs from the key).
    pub fn transfer_in(
        &self,
        id: u128,
        settlement: bool,
    ) -> Result<Option<Transfer>, HistoryError> {
        // The id's block first, then its own key (id_blocks.rs).
        let in_block = match self
            .transfer_ids
            .get(id_blocks::block_key(id, settlement))
            .map_err(self.fjall_error(TRANSFER_IDS))?
        {
            Some(block) => id_blocks::find(id, &block)?,
            None => None,
        };
        let timestamp = match in_block {
            Some(timestamp) => timestamp,
            None => {
                let Some(value) = self
                    .transfer_ids
                    .get(records::id_key(id, settlement))
                    .map_err(self.fjall_error(TRANSFER_IDS))?
                else {
                    return Ok(None);
                };
                records::timestamp_value(TRANSFER_IDS, id, &value)?
            }
        };
        let transfer = self.record(timestamp, TRANSFER_IDS)?;
        if transfer.id != id || transfer.flags().settlement() != settlement {
            return Err(HistoryError::Corrupt {
                what: TRANSFER_IDS,
                detail: format!(
                    "id {id} (settlement: {settlement}) leads to the record of id {} with \
                     flags {:#06x}",
                    transfer.id, transfer.flags
                ),
            });
        }
        Ok(Some(transfer))
    }

    /// Appends to `out` the client transfers of `ids` that the store holds, in the order of
    /// `ids`.
    ///
    /// # Errors
    ///
    /// As `transfer`; `out` may then hold the transfers found before the error.
    pub fn transfers_by_id(
        &self,
        ids: &[u128],
        out: &mut Vec<Transfer>,
    ) -> Result<(), HistoryError> {
        for &id in ids {
            if let Some(transfer) = self.transfer(id)? {
                out.push(transfer);
            }
        }
        Ok(())
    }

    /// The transfer with this timestamp, if the store holds it.
    ///
    /// # Errors
    ///
    /// `Fjall` on a failed read; `Corrupt` if the record is damaged.
    pub fn transfer_at(&self, timestamp: u64) -> Result<Option<Transfer>, HistoryError> {
        // The block that holds `timestamp` starts in its bucket at or below it; the bucket may
        // hold other blocks, overlapping it or not (blocks.rs).
        let range = self
            .transfers
            .range(blocks::bucket_start(timestamp).to_be_bytes()..=timestamp.to_be_bytes());
        for guard in range {
            let (key, value) = guard.into_inner().map_err(self.fjall_error(TRANSFERS))?;
            if let Some(transfer) = Block::decode(&key, &value)?.find(timestamp) {
                return Ok(Some(transfer));
            }
        }
        Ok(None)
    }

    /// Whether `id` is burned: a client transfer with it failed transiently.
    ///
    /// # Errors
    ///
    /// `Fjall` on a failed read; `Corrupt` if its entry is damaged.
    pub fn burned(&self, id: u128) -> Result<bool, HistoryError> {
        Ok(self.burned_at(id)?.is_some())
    }

    /// When `id` was burned, if it was.
    ///
    /// # Errors
    ///
    /// As `burned`.
    pub fn burned_at(&self, id: u128) -> Result<Option<u64>, HistoryError> {
        let Some(value) = self
            .burned_ids
            .get(id.to_be_bytes())
            .map_err(self.fjall_error(BURNED_IDS))?
        else {
            return Ok(None);
        };
        records::timestamp_value(BURNED_IDS, id, &value).map(Some)
    }

    /// How the pending transfer `id` (client, or settlement if `settlement`) was resolved,
    /// if the store holds its resolution: `(status, timestamp)`, status 2 posted, 3 voided,
    /// 4 expired, at the timestamp it was resolved.
    ///
    /// # Errors
    ///
    /// `Fjall` on a failed read; `Corrupt` if its entry is damaged.
    pub fn resolution(
        &self,
        id: u128,
        settlement: bool,
    ) -> Result<Option<(u8, u64)>, HistoryError> {
        let Some(value) = self
            .resolutions
            .get(records::id_key(id, settlement))
            .map_err(self.fjall_error(RESOLUTIONS))?
        else {
            return Ok(None);
        };
        records::resolution_parts(id, &value).map(Some)
    }

    /// The generations of `account_runs`, ascending.
    pub(crate) fn generations(&self) -> Vec<u64> {
        lock(&self.generations).names.clone()
    }

    /// Every key space, `meta` last, in the order a copy of the store lists them
    /// (copy.rs): a key space's place in this list is its number there.
    pub(crate) fn all_key_spaces(&self) -> [(&'static str, &Keyspace); 11] {
        [
            (TRANSFERS, &self.transfers),
            (TRANSFER_IDS, &self.transfer_ids),
            (ACCOUNT_RUNS, &self.account_runs),
            (BALANCES, &self.balances),
            (BURNED_IDS, &self.burned_ids),
            (RESOLUTIONS, &self.resolutions),
            (ORDERS, &self.orders),
            (FILLS, &self.fills),
            (FILL_MARKETS, &self.fill_markets),
            (FILL_ORDERS, &self.fill_orders),
            (META, &self.meta),
        ]
    }

    /// The fjall database, for a consistent view across key spaces (copy.rs).
    pub(crate) fn database(&self) -> &Database {
        &self.database
    }

    /// Each key space's name and directory, for diagnostics (and for tests that damage
    /// files on purpose).
    pub fn key_space_paths(&self) -> [(&'static str, PathBuf); 7] {
        [
            (TRANSFERS, self.transfers.path().to_path_buf()),
            (TRANSFER_IDS, self.transfer_ids.path().to_path_buf()),
            (ACCOUNT_RUNS, self.account_runs.path().to_path_buf()),
            (BALANCES, self.balances.path().to_path_buf()),
            (BURNED_IDS, self.burned_ids.path().to_path_buf()),
            (RESOLUTIONS, self.resolutions.path().to_path_buf()),
            (META, self.meta.path().to_path_buf()),
        ]
    }

    /// Each key space's name, table count and level-0 table count, for diagnostics and
    /// benchmarks (how many tables an ingest and fjall's compactions leave).
    #[doc(hidden)]
    pub fn key_space_tables(&self) -> [(&'static str, usize, usize); 7] {
        let tables =
            |name, keyspace: &Keyspace| (name, keyspace.table_count(), keyspace.l0_table_count());
        [
            tables(TRANSFERS, &self.transfers),
            tables(TRANSFER_IDS, &self.transfer_ids),
            tables(ACCOUNT_RUNS, &self.account_runs),
            tables(BALANCES, &self.balances),
            tables(BURNED_IDS, &self.burned_ids),
            tables(RESOLUTIONS, &self.resolutions),
            tables(META, &self.meta),
        ]
    }

    /// Bytes the store takes on disk (tables and fjall's log), as fjall counts them; the
    /// log's part counts as 0 if it cannot be read.
    pub fn disk_bytes(&self) -> u64 {
        let keyspaces: u64 = [
            &self.transfers,
            &self.transfer_ids,
            &self.account_runs,
            &self.balances,
            &self.burned_ids,
            &self.resolutions,
            &self.orders,
            &self.fills,
            &self.fill_markets,
            &self.fill_orders,
            &self.meta,
        ]
        .iter()
        .map(|keyspace| keyspace.disk_space())
        .sum();
        keyspaces + self.database.journal_disk_space().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunCapacity;
    use clearline_engine::{AccountFilter, AccountFilterFlags, QueryFilter, QueryFilterFlags};

    fn config(directory: &Path) -> HistoryConfig {
        HistoryConfig {
            directory: directory.to_path_buf(),
            cache_bytes: 1 << 20,
        }
    }

    /// `place_postings` gives what sorting every posting gives, on both of its paths.
    #[test]
    fn placed_postings_are_the_sorted_postings() {
        type AccountOf = fn(&mut clearline_test_support::Rng) -> u128;
        let mut random = clearline_test_support::Rng::new(0x9057);
        let cases: [(&str, AccountOf); 4] = [
            ("close ids, counted", |random| {
                u128::from(random.below(300)) + 1
            }),
            ("ids near the top, counted", |random| {
                u128::MAX - u128::from(random.below(300))
            }),
            ("ids spread wide, sorted", |random| {
                u128::from(random.next_u64()) << 64 | u128::from(random.next_u64())
            }),
            ("one account", |_| 7),
        ];
        let (mut postings, mut starts) = (Vec::new(), Vec::new());
        for (name, account) in cases {
            let mut timestamp = 0;
            let transfers: Vec<Transfer> = (0..5_000u128)
                .map(|id| {
                    timestamp += 1 + random.below(3);
                    let debit = account(&mut random);
                    // One in ten moves money within one account.
                    let credit = if random.below(10) == 0 {
                        debit
                    } else {
                        account(&mut random)
                    };
                    Transfer {
                        id: id + 1,
                        debit_account_id: debit,
                        credit_account_id: credit,
                        timestamp,
                        ..Transfer::default()
                    }
                })
                .collect();
            let mut expected: Vec<Posting> = transfers.iter().flat_map(postings_of).collect();
            expected.sort_unstable();
            place_postings(&transfers, &mut postings, &mut starts);
            assert!(postings == expected, "{name}");
            // Reused buffers, fewer transfers: still the same.
            place_postings(&transfers[..100], &mut postings, &mut starts);
            let mut expected: Vec<Posting> =
                transfers[..100].iter().flat_map(postings_of).collect();
            expected.sort_unstable();
            assert!(postings == expected, "{name}, reused");
        }
        place_postings(&[], &mut postings, &mut starts);
        assert!(postings.is_empty());
    }

    /// Records stored one per key (format versions 3 and 4) beside blocks that hold the same
    /// transfers: each is found, and scans return every timestamp once, in order, both ways.
    #[test]
    fn records_of_one_per_key_beside_blocks_are_read_once() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let history = History::open(&config(directory.path())).expect("open");
        let timestamps: Vec<u64> = (120..140).chain([200, 260, 261]).collect();
        let transfers: Vec<Transfer> = timestamps
            .iter()
            .map(|&timestamp| Transfer {
                id: u128::from(timestamp) + 1,
                debit_account_id: 1,
                credit_account_id: 2,
                amount: 5,
                ledger: 1,
                code: 1,
                timestamp,
                ..Transfer::default()
            })
            .collect();
        // Some of them one per key, as format version 4 stored them, then all in blocks, as
        // an ingest of this version repeats a run that a crash cut short (newer tables win).
        let mut ingestion = history.transfers.start_ingestion().expect("ingestion");
        let mut record = [0u8; Transfer::SIZE];
        for transfer in transfers.iter().filter(|t| t.timestamp.is_multiple_of(3)) {
            transfer.encode(&mut record);
            ingestion
                .write(&transfer.timestamp.to_be_bytes()[..], &record[..])
                .expect("write");
        }
        ingestion.finish().expect("finish");
        let mut value = Vec::new();
        history
            .load_records(&mut value, &transfers)
            .expect("blocks");
        for transfer in &transfers {
            let found = history.transfer_at(transfer.timestamp).expect("read");
            assert_eq!(found, Some(*transfer));
        }
        for absent in [0, 119, 140, 141, 199, 201, 259, 262, u64::MAX] {
            assert_eq!(history.transfer_at(absent).expect("read"), None, "{absent}");
        }
        for (minimum, maximum) in [(0, 0), (121, 130), (130, 200), (201, 261), (262, 0)] {
            for reversed in [false, true] {
                let filter = QueryFilter {
                    timestamp_min: minimum,
                    timestamp_max: maximum,
                    limit: 100,
                    flags: if reversed {
                        QueryFilterFlags::REVERSED
                    } else {
                        0
                    },
                    ..QueryFilter::default()
                };
                let mut found = Vec::new();
                history.query_transfers(&filter, &mut found).expect("scan");
                let mut expected: Vec<Transfer> = transfers
                    .iter()
                    .filter(|t| t.timestamp >= minimum && (maximum == 0 || t.timestamp <= maximum))
                    .copied()
                    .collect();
                if reversed {
                    expected.reverse();
                }
                assert!(
                    found == expected,
                    "{minimum}..={maximum}, reversed {reversed}"
                );
            }
        }
    }

    /// The names `meta` lists.
    fn listed_generations(history: &History) -> Vec<u64> {
        history
            .meta
            .prefix(GENERATION_KEY_PREFIX)
            .map(|guard| {
                let key = guard.key().expect("key");
                u64::from_be_bytes(key[GENERATION_KEY_PREFIX.len()..].try_into().expect("8"))
            })
            .collect()
    }

    /// Each open starts a generation; `meta` lists them with the watermark, open reads the
    /// list, and a store whose `meta` lists none (written before it did) is read from
    /// `account_runs` and listed at its next ingest.
    #[test]
    fn generations_are_listed_in_meta() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let ingest_one = |history: &History, timestamp: u64| {
            let mut run = Run::with_capacity(RunCapacity::transfers(1));
            let transfer = Transfer {
                id: u128::from(timestamp),
                debit_account_id: 1,
                credit_account_id: 2,
                amount: 1,
                ledger: 1,
                code: 1,
                timestamp,
                ..Transfer::default()
            };
            run.push(&transfer).expect("room");
            let watermark = Watermark {
                sequence: timestamp,
                timestamp,
            };
            history.ingest(&run, watermark).expect("ingest");
        };
        for timestamp in [100, 200, 300] {
            let history = History::open(&config(directory.path())).expect("open");
            ingest_one(&history, timestamp);
        }
        let history = History::open(&config(directory.path())).expect("open");
        assert_eq!(listed_generations(&history), [100, 200, 300]);
        assert_eq!(history.generations(), [100, 200, 300]);
        assert_eq!(
            stored_generations(&history.account_runs, directory.path()).expect("scan"),
            [100, 200, 300]
        );
        for name in [100, 200, 300] {
            history.meta.remove(generation_key(name)).expect("remove");
        }
        drop(history);
        let history = History::open(&config(directory.path())).expect("open");
        assert!(listed_generations(&history).is_empty());
        assert_eq!(
            history.generations(),
            [100, 200, 300],
            "found in account_runs"
        );
        ingest_one(&history, 400);
        assert_eq!(listed_generations(&history), [100, 200, 300, 400]);
        drop(history);
        let history = History::open(&config(directory.path())).expect("open");
        assert_eq!(history.generations(), [100, 200, 300, 400]);
        let filter = AccountFilter {
            account_id: 1,
            limit: 10,
            flags: AccountFilterFlags::DEBITS,
            ..AccountFilter::default()
        };
        let mut found = Vec::new();
        history
            .account_transfers(&filter, &mut found)
            .expect("query");
        let timestamps: Vec<u64> = found.iter().map(|t| t.timestamp).collect();
        assert_eq!(timestamps, [100, 200, 300, 400]);
    }

    #[test]
    fn a_store_of_format_version_2_is_refused_at_open() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let watermark = Watermark {
            sequence: 3,
            timestamp: 9,
        };
        {
            let history = History::open(&config(directory.path())).expect("open");
            let mut ingestion = history.meta.start_ingestion().expect("meta");
            ingestion
                .write(WATERMARK_KEY, &watermark.encode_as(2)[..])
                .expect("write");
            ingestion.finish().expect("finish");
        }
        match History::open(&config(directory.path())) {
            Err(HistoryError::Corrupt { what, detail }) => {
                assert_eq!(what, "meta watermark");
                assert!(detail.contains("format version 2,"), "{detail}");
                assert!(detail.contains("reads only versions 3 to 6"), "{detail}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("a version 2 store was opened"),
        }
    }
}
