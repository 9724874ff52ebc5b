//! History mode (docs/history.md): an engine that drops records from memory once a store holds
//! them gives exactly the replies of an engine that keeps everything, whatever the store's lag.
//!
//! Differential tests: the seeded ledger workload (transfers, pending ones with and without
//! timeouts, posts and voids of old pending transfers, retried old ids, burned ids, linked
//! chains, balancing, closing, pulses) runs on an engine that keeps everything in memory and on
//! one in history mode whose memory holds a few batches; after every request the second drains
//! into an in-memory model store and evicts up to a lagging watermark. Every create result and
//! a stream of random queries (lookups of any id, account transfers and balances and transfer
//! queries with random filters, ranges and limits that straddle the watermark) must be equal.
//! The state hash of a history-mode engine must not depend on how much it evicted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use clearline_engine::history::{HistoryRead, HistorySink, Resolution};
use clearline_engine::{Account, OrderAmend, OrderResult};
use clearline_engine::{
    AccountBalance, AccountFilter, AccountFilterFlags, Config, CreateResult, Engine, Fill,
    FillFilter, Order, OrderState, QueryFilter, QueryFilterFlags, Transfer, TransferFlags,
    PULSE_EXPIRIES_MAX, SLOTS_PER_ORDER_EVENT,
};
use clearline_test_support::ledger::{accounts, workload, Request, ACCOUNTS_COUNT, SECOND};
use clearline_test_support::orders::{market, market_accounts, trader_accounts, OrderFlow};
use clearline_test_support::orders::{OrderRound, BASE_LEDGER, MARKET, MID_PRICE, QUOTE_LEDGER};
use clearline_test_support::Rng;

/// What the model store holds: every record drained, in drain order. Reads see only records
/// at or below `durable_through`, as a real store holds only the runs it has made durable: the
/// engine must never need anything newer from it.
#[derive(Default)]
struct Stored {
    durable_through: u64,
    transfers: Vec<Transfer>,
    ids: BTreeMap<(u128, bool), usize>,
    timestamps: BTreeMap<u64, usize>,
    burned: BTreeMap<u128, u64>,
    resolutions: BTreeMap<(u128, bool), (Resolution, u64)>,
    /// (account id, timestamp) -> balance.
    balances: BTreeMap<(u128, u64), AccountBalance>,
    /// Finished orders: id -> (order, finish timestamp).
    orders: BTreeMap<u128, (Order, u64)>,
    /// Fills by sequence.
    fills: BTreeMap<u64, Fill>,
}

/// A store kept in memory, shared by the sink (the test) and the reader (the engine).
#[derive(Clone, Default)]
struct ModelStore(Arc<Mutex<Stored>>);

impl HistorySink for ModelStore {
    fn transfer(&mut self, transfer: &Transfer) {
        let mut stored = self.0.lock().unwrap();
        let settlement = transfer.flags().settlement();
        // A store may be handed again what it holds (after a restart); it must be identical.
        if let Some(index) = stored.ids.get(&(transfer.id, settlement)) {
            assert_eq!(&stored.transfers[*index], transfer, "a record handed again");
            return;
        }
        let index = stored.transfers.len();
        if let Some(last) = stored.transfers.last() {
            assert!(
                transfer.timestamp > last.timestamp,
                "transfers in timestamp order"
            );
        }
        assert!(stored
            .ids
            .insert((transfer.id, settlement), index)
            .is_none());
        stored.timestamps.insert(transfer.timestamp, index);
        stored.transfers.push(*transfer);
    }
    fn burned(&mut self, id: u128, timestamp: u64) {
        let mut stored = self.0.lock().unwrap();
        let before = stored.burned.insert(id, timestamp);
        assert!(
            before.is_none_or(|t| t == timestamp),
            "an id is burned once"
        );
    }
    fn resolution(&mut self, id: u128, settlement: bool, status: Resolution, timestamp: u64) {
        let mut stored = self.0.lock().unwrap();
        assert!(
            stored.ids.contains_key(&(id, settlement)),
            "resolution of a stored transfer"
        );
        let resolution = (status, timestamp);
        let before = stored.resolutions.insert((id, settlement), resolution);
        assert!(before.is_none_or(|r| r == resolution), "resolved once");
    }
    fn balance(&mut self, account_id: u128, balance: &AccountBalance) {
        let mut stored = self.0.lock().unwrap();
        let key = (account_id, balance.timestamp);
        let before = stored.balances.insert(key, *balance);
        assert!(
            before.is_none_or(|b| b == *balance),
            "one row per account and transfer"
        );
    }
    fn order(&mut self, order: &Order, finished_at: u64) {
        let mut stored = self.0.lock().unwrap();
        assert_ne!(order.state, OrderState::Resting as u8, "a finished order");
        assert!(finished_at >= order.timestamp);
        let before = stored.orders.insert(order.id, (*order, finished_at));
        assert!(
            before.is_none_or(|(b, _)| b == *order),
            "an order finishes once"
        );
    }
    fn fill(&mut self, fill: &Fill) {
        let mut stored = self.0.lock().unwrap();
        let before = stored.fills.insert(fill.sequence, *fill);
        assert!(before.is_none_or(|b| b == *fill), "a fill handed again");
    }
}

fn in_range(timestamp: u64, minimum: u64, maximum: u64) -> bool {
    timestamp >= minimum && (maximum == 0 || timestamp <= maximum)
}

fn account_matches(filter: &AccountFilter, transfer: &Transfer) -> bool {
    let side = (filter.flags().debits() && transfer.debit_account_id == filter.account_id)
        || (filter.flags().credits() && transfer.credit_account_id == filter.account_id);
    side && in_range(
        transfer.timestamp,
        filter.timestamp_min,
        filter.timestamp_max,
    ) && (filter.user_data_128 == 0 || transfer.user_data_128 == filter.user_data_128)
        && (filter.user_data_64 == 0 || transfer.user_data_64 == filter.user_data_64)
        && (filter.user_data_32 == 0 || transfer.user_data_32 == filter.user_data_32)
        && (filter.code == 0 || transfer.code == filter.code)
}

/// The stored transfers `selected` picks, in order (newest first when `reversed`), at most
/// `limit`, mapped through `map`.
fn select<T>(
    stored: &Stored,
    reversed: bool,
    limit: u32,
    selected: impl Fn(&Transfer) -> bool,
    mut map: impl FnMut(&Transfer) -> Option<T>,
    out: &mut Vec<T>,
) {
    let mut taken = 0u32;
    let mut visit = |transfer: &Transfer| {
        if taken < limit && transfer.timestamp <= stored.durable_through && selected(transfer) {
            if let Some(item) = map(transfer) {
                out.push(item);
                taken += 1;
            }
        }
    };
    if reversed {
        stored.transfers.iter().rev().for_each(&mut visit);
    } else {
        stored.transfers.iter().for_each(&mut visit);
    }
}

impl HistoryRead for ModelStore {
    fn transfer(&self, id: u128, settlement: bool) -> Option<Transfer> {
        let stored = self.0.lock().unwrap();
        let transfer = stored
            .ids
            .get(&(id, settlement))
            .map(|index| stored.transfers[*index]);
        transfer.filter(|transfer| transfer.timestamp <= stored.durable_through)
    }
    fn transfer_at(&self, timestamp: u64) -> Option<Transfer> {
        let stored = self.0.lock().unwrap();
        let transfer = stored
            .timestamps
            .get(&timestamp)
            .map(|index| stored.transfers[*index]);
        transfer.filter(|transfer| transfer.timestamp <= stored.durable_through)
    }
    fn burned(&self, id: u128) -> Option<u64> {
        let stored = self.0.lock().unwrap();
        let burned = stored.burned.get(&id).copied();
        burned.filter(|timestamp| *timestamp <= stored.durable_through)
    }
    fn resolution(&self, id: u128, settlement: bool) -> Option<Resolution> {
        let stored = self.0.lock().unwrap();
        let resolution = stored.resolutions.get(&(id, settlement)).copied();
        resolution
            .filter(|(_, timestamp)| *timestamp <= stored.durable_through)
            .map(|(status, _)| status)
    }
    fn account_transfers(&self, filter: &AccountFilter, out: &mut Vec<Transfer>) {
        let stored = self.0.lock().unwrap();
        let matches = |transfer: &Transfer| account_matches(filter, transfer);
        let reversed = filter.flags().reversed();
        select(&stored, reversed, filter.limit, matches, |t| Some(*t), out);
    }
    fn account_balances(&self, filter: &AccountFilter, out: &mut Vec<AccountBalance>) {
        let stored = self.0.lock().unwrap();
        let matches = |transfer: &Transfer| account_matches(filter, transfer);
        let row = |transfer: &Transfer| {
            let key = (filter.account_id, transfer.timestamp);
            Some(
                *stored
                    .balances
                    .get(&key)
                    .expect("a row per transfer of a history account"),
            )
        };
        select(
            &stored,
            filter.flags().reversed(),
            filter.limit,
            matches,
            row,
            out,
        );
    }
    fn query_transfers(&self, filter: &QueryFilter, out: &mut Vec<Transfer>) {
        let stored = self.0.lock().unwrap();
        let matches = |transfer: &Transfer| {
            in_range(
                transfer.timestamp,
                filter.timestamp_min,
                filter.timestamp_max,
            ) && (filter.user_data_128 == 0 || transfer.user_data_128 == filter.user_data_128)
                && (filter.user_data_64 == 0 || transfer.user_data_64 == filter.user_data_64)
                && (filter.user_data_32 == 0 || transfer.user_data_32 == filter.user_data_32)
                && (filter.ledger == 0 || transfer.ledger == filter.ledger)
                && (filter.code == 0 || transfer.code == filter.code)
        };
        let reversed = filter.flags().reversed();
        select(&stored, reversed, filter.limit, matches, |t| Some(*t), out);
    }
    fn order(&self, id: u128) -> Option<(Order, u64)> {
        let stored = self.0.lock().unwrap();
        let order = stored.orders.get(&id).copied();
        order.filter(|(_, at)| *at <= stored.durable_through)
    }
    fn fills(&self, filter: &FillFilter, out: &mut Vec<Fill>) {
        let stored = self.0.lock().unwrap();
        let selected = |fill: &&Fill| {
            fill.timestamp <= stored.durable_through
                && in_range(fill.timestamp, filter.timestamp_min, filter.timestamp_max)
                && (filter.market == 0 || fill.market == filter.market)
                && (filter.order_id == 0
                    || fill.taker_order_id == filter.order_id
                    || fill.maker_order_id == filter.order_id)
        };
        let limit = filter.limit as usize;
        if filter.flags & FillFilter::REVERSED != 0 {
            out.extend(stored.fills.values().rev().filter(selected).take(limit));
        } else {
            out.extend(stored.fills.values().filter(selected).take(limit));
        }
    }
}

/// The id filter's size in most tests.
const IDS_MAX: u64 = 1 << 16;

/// The same sizes for both engines, except the memory of the one in history mode.
fn config(transfers_max: u32) -> Config {
    Config {
        transfers_max,
        account_balances_max: transfers_max * 2,
        ..Config::test_small()
    }
}

/// Drains the history engine into the model store, and evicts what the store held durably
/// `lag` requests ago (the store is behind the engine by that much).
fn drain_and_evict(history: &mut Engine, store: &ModelStore, durable: &mut Vec<u64>, lag: usize) {
    let mut sink = store.clone();
    history.history_drain(&mut sink);
    durable.push(history.timestamp_last());
    if durable.len() > lag {
        let through = durable[durable.len() - 1 - lag];
        let mut stored = store.0.lock().unwrap();
        stored.durable_through = stored.durable_through.max(through);
        drop(stored);
        history.history_evict(through);
    }
}

/// The two engines under comparison and the store behind the second.
struct Pair {
    full: Engine,
    history: Engine,
    store: ModelStore,
    /// Timestamps up to which the store held everything, after each request: the watermark
    /// evicts up to one of these, `lag` requests behind.
    durable: Vec<u64>,
    lag: usize,
    now: u64,
}

impl Pair {
    fn new(memory: u32, lag: usize) -> Pair {
        Pair::with_filter(memory, lag, IDS_MAX)
    }

    /// As `new`, with the id filter sized for `ids_max` ids (a tiny one answers "maybe" for
    /// almost every id, so every new id is looked up in the store).
    fn with_filter(memory: u32, lag: usize, ids_max: u64) -> Pair {
        let full = Engine::new(&config(1 << 20));
        let mut history = Engine::new(&config(memory));
        let store = ModelStore::default();
        history.enable_history(Box::new(store.clone()), ids_max);
        let mut pair = Pair {
            full,
            history,
            store,
            durable: Vec::new(),
            lag,
            now: 1_000 * SECOND,
        };
        let accounts = accounts();
        let mut results = vec![CreateResult::default(); accounts.len()];
        for engine in [&mut pair.full, &mut pair.history] {
            engine.create_accounts(pair.now, &accounts, &mut results);
            assert!(results
                .iter()
                .all(|r| r.status == CreateResult::STATUS_CREATED));
        }
        pair
    }

    /// Applies one request to both engines and compares the results; then the history engine
    /// drains and evicts up to the watermark `lag` requests back.
    fn apply(&mut self, request: &Request) {
        match request {
            Request::Transfers(batch) => {
                self.now += batch.len() as u64 + SECOND / 3;
                let mut expected = vec![CreateResult::default(); batch.len()];
                let mut actual = expected.clone();
                self.full.create_transfers(self.now, batch, &mut expected);
                self.history.create_transfers(self.now, batch, &mut actual);
                assert_eq!(actual, expected, "create_transfers at {}", self.now);
            }
            Request::Pulse => {
                self.now += u64::from(PULSE_EXPIRIES_MAX);
                assert_eq!(self.history.pulse(self.now), self.full.pulse(self.now));
            }
        }
        drain_and_evict(&mut self.history, &self.store, &mut self.durable, self.lag);
    }

    /// Random queries with filters that straddle the watermark; both engines must agree.
    fn compare_queries(&self, random: &mut Rng, ids_max: u128) {
        let first = 1_000 * SECOND;
        let span = self.now - first;
        let bound = |random: &mut Rng| match random.below(4) {
            0 => 0,
            _ => first + random.below(span + 1),
        };
        for _ in 0..8 {
            let ids: Vec<u128> = (0..16).map(|_| 1 + random.next_u128() % ids_max).collect();
            let (mut expected, mut actual) = (Vec::with_capacity(16), Vec::with_capacity(16));
            self.full.lookup_transfers(&ids, &mut expected);
            self.history.lookup_transfers(&ids, &mut actual);
            assert_eq!(actual, expected, "lookup_transfers {ids:?}");

            let (a, b) = (bound(random), bound(random));
            let (minimum, maximum) = if a == 0 || b == 0 {
                (a, b)
            } else {
                (a.min(b), a.max(b))
            };
            let limit = 1 + random.below(300) as u32;
            let mut flags = match random.below(3) {
                0 => AccountFilterFlags::DEBITS,
                1 => AccountFilterFlags::CREDITS,
                _ => AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS,
            };
            if random.below(2) == 0 {
                flags |= AccountFilterFlags::REVERSED;
            }
            let filter = AccountFilter {
                account_id: 1 + u128::from(random.below(ACCOUNTS_COUNT)),
                user_data_64: if random.below(4) == 0 {
                    random.below(4)
                } else {
                    0
                },
                code: if random.below(4) == 0 {
                    1 + random.below(3) as u16
                } else {
                    0
                },
                timestamp_min: minimum,
                timestamp_max: maximum,
                limit,
                flags,
                ..AccountFilter::default()
            };
            let (mut expected, mut actual) = (Vec::with_capacity(300), Vec::with_capacity(300));
            self.full.get_account_transfers(&filter, &mut expected);
            self.history.get_account_transfers(&filter, &mut actual);
            assert_same(
                &actual,
                &expected,
                |t| t.timestamp,
                "get_account_transfers",
                &filter,
            );

            // Every eighth account, from id 1, keeps history.
            let filter = AccountFilter {
                account_id: 1 + 8 * u128::from(random.below(ACCOUNTS_COUNT / 8)),
                ..filter
            };
            let (mut expected, mut actual) = (Vec::with_capacity(300), Vec::with_capacity(300));
            self.full.get_account_balances(&filter, &mut expected);
            self.history.get_account_balances(&filter, &mut actual);
            assert_same(
                &actual,
                &expected,
                |b| b.timestamp,
                "get_account_balances",
                &filter,
            );

            let filter = QueryFilter {
                user_data_64: if random.below(3) == 0 {
                    random.below(4)
                } else {
                    0
                },
                code: if random.below(3) == 0 {
                    1 + random.below(3) as u16
                } else {
                    0
                },
                ledger: if random.below(4) == 0 { 1 } else { 0 },
                timestamp_min: minimum,
                timestamp_max: maximum,
                limit,
                flags: if random.below(2) == 0 {
                    QueryFilterFlags::REVERSED
                } else {
                    0
                },
                ..QueryFilter::default()
            };
            let (mut expected, mut actual) = (Vec::with_capacity(300), Vec::with_capacity(300));
            self.full.query_transfers(&filter, &mut expected);
            self.history.query_transfers(&filter, &mut actual);
            assert_same(
                &actual,
                &expected,
                |t| t.timestamp,
                "query_transfers",
                &filter,
            );
        }
    }
}

/// Compares two query answers, naming the first difference by the records' timestamps (the
/// answers themselves are too long to read).
fn assert_same<T: PartialEq + std::fmt::Debug>(
    actual: &[T],
    expected: &[T],
    timestamp: impl Fn(&T) -> u64,
    query: &str,
    filter: &dyn std::fmt::Debug,
) {
    if actual == expected {
        return;
    }
    let actual: Vec<u64> = actual.iter().map(&timestamp).collect();
    let expected: Vec<u64> = expected.iter().map(&timestamp).collect();
    let first = actual.iter().zip(&expected).position(|(a, e)| a != e);
    panic!(
        "{query} {filter:?}: {} results, expected {}; first difference at {first:?}\n\
         actual {:?}\nexpected {:?}",
        actual.len(),
        expected.len(),
        &actual[..actual.len().min(12)],
        &expected[..expected.len().min(12)],
    );
}

/// Runs `requests_count` requests of the workload for `seed` on a pair; returns it.
fn run(seed: u64, requests_count: usize, memory: u32, lag: usize) -> Pair {
    let requests = workload(seed, requests_count);
    let mut pair = Pair::new(memory, lag);
    let mut random = Rng::new(seed ^ 0x5EED);
    for (index, request) in requests.iter().enumerate() {
        pair.apply(request);
        if index % 5 == 4 {
            pair.history.verify();
            pair.compare_queries(&mut random, 130 * index as u128 + 2);
        }
    }
    pair.full.verify();
    pair.history.verify();
    pair
}

#[test]
fn history_mode_answers_as_if_everything_stayed_in_memory() {
    for seed in 1..=4 {
        let pair = run(seed, 400, 8192, 2);
        assert!(
            pair.history.history_evicted_through() > 0,
            "seed {seed}: something left memory"
        );
        assert!(
            (pair.history.transfers_count() as usize) < pair.full.transfers_count() as usize / 4,
            "seed {seed}: memory holds a fraction of the transfers"
        );
    }
}

/// As a server does around each checkpoint: every id in the main filter before the image, new
/// ids kept aside while the child would run (`requests_aside` requests), then moved in a few
/// at a time. With a filter sized for `ids_max` ids, the room aside is as small, so it also
/// fills and the rest go straight in. Every reply and query must stay the same.
fn run_with_ids_kept_aside(seed: u64, ids_max: u64, requests_aside: usize, merge_step: usize) {
    let requests = workload(seed, 300);
    let mut pair = Pair::with_filter(4096, 2, ids_max);
    let mut random = Rng::new(seed ^ 0xA51DE);
    let mut images = 0;
    for (index, request) in requests.iter().enumerate() {
        match index % (requests_aside + 7) {
            0 => {
                assert!(pair.history.history_filter_merge(usize::MAX));
                let mut image = Vec::new();
                pair.history.checkpoint_write(&mut image).expect("image");
                images += 1;
                pair.history.history_filter_defer(true);
            }
            phase if phase == requests_aside => pair.history.history_filter_defer(false),
            _ => {}
        }
        pair.apply(request);
        pair.history.history_filter_merge(merge_step);
        if index % 5 == 4 {
            pair.history.verify();
            pair.compare_queries(&mut random, 130 * index as u128 + 2);
        }
    }
    assert!(images > 10);
    assert!(pair.history.history_evicted_through() > 0);
    pair.history.history_filter_defer(false);
    assert!(pair.history.history_filter_merge(usize::MAX));
    pair.compare_queries(&mut random, 130 * requests.len() as u128);
}

#[test]
fn history_mode_answers_the_same_with_ids_kept_aside_during_checkpoints() {
    run_with_ids_kept_aside(41, IDS_MAX, 6, 64);
    run_with_ids_kept_aside(42, IDS_MAX, 15, 1);
    // Room for 512 ids aside: most batches overflow it into the main filter.
    run_with_ids_kept_aside(43, 512, 6, 16);
}

#[test]
fn history_mode_with_eviction_right_behind_the_writes() {
    for seed in 11..=13 {
        run(seed, 300, 4096, 0);
    }
}

#[test]
fn history_mode_with_a_store_far_behind() {
    run(21, 300, 32_768, 40);
}

#[test]
fn history_state_hash_does_not_depend_on_what_left_memory() {
    let requests = workload(5, 200);
    let mut hashes = Vec::new();
    for lag in [0, 3, usize::MAX] {
        let mut pair = Pair::new(1 << 16, lag);
        for request in &requests {
            pair.apply(request);
        }
        hashes.push(pair.history.state_hash());
    }
    assert_eq!(hashes[0], hashes[1]);
    assert_eq!(hashes[0], hashes[2]);
    // And the hash still tells different histories apart.
    let mut pair = Pair::new(1 << 16, 0);
    for request in &workload(6, 200) {
        pair.apply(request);
    }
    assert_ne!(pair.history.state_hash(), hashes[0]);
}

/// A copy of the store as a crash would leave it: only what it held durably up to `through`.
fn store_as_of(store: &ModelStore, through: u64) -> ModelStore {
    let source = store.0.lock().unwrap();
    let mut copy = Stored {
        durable_through: through,
        ..Stored::default()
    };
    for transfer in source.transfers.iter().filter(|t| t.timestamp <= through) {
        let index = copy.transfers.len();
        copy.ids
            .insert((transfer.id, transfer.flags().settlement()), index);
        copy.timestamps.insert(transfer.timestamp, index);
        copy.transfers.push(*transfer);
    }
    copy.burned = source
        .burned
        .iter()
        .filter(|(_, t)| **t <= through)
        .map(|(i, t)| (*i, *t))
        .collect();
    copy.resolutions = source
        .resolutions
        .iter()
        .filter(|(_, (_, t))| *t <= through)
        .map(|(key, value)| (*key, *value))
        .collect();
    copy.balances = source
        .balances
        .iter()
        .filter(|((_, t), _)| *t <= through)
        .map(|(key, value)| (*key, *value))
        .collect();
    copy.orders = source
        .orders
        .iter()
        .filter(|(_, (_, t))| *t <= through)
        .map(|(key, value)| (*key, *value))
        .collect();
    copy.fills = source
        .fills
        .iter()
        .filter(|(_, fill)| fill.timestamp <= through)
        .map(|(key, value)| (*key, *value))
        .collect();
    ModelStore(Arc::new(Mutex::new(copy)))
}

#[test]
fn history_mode_restarts_from_a_checkpoint_with_the_store_behind_or_ahead() {
    // A filter of 64 ids is saturated at once: every new id is looked up in the store, so a
    // store read that counted records the replay has not reached would change answers.
    let ids_max = 64;
    let requests = workload(31, 300);
    let (first, rest) = requests.split_at(180);
    let mut pair = Pair::with_filter(8192, 3, ids_max);
    for request in first {
        pair.apply(request);
    }
    // The same state as an engine in history mode that never stopped.
    let mut continuous = Pair::with_filter(8192, 3, ids_max);
    for request in &requests {
        continuous.apply(request);
    }
    let mut image = Vec::new();
    pair.history.checkpoint_write(&mut image).unwrap();
    // The store lost its last runs in the crash: it holds up to what left memory, or a little
    // more.
    let evicted = pair.history.history_evicted_through();
    assert!(evicted > 0);
    // Behind: what left memory, or a little more. Ahead: runs made durable after the
    // checkpoint, up to the end of the workload (the crash came later).
    let ahead = continuous.durable[continuous.durable.len() - 1];
    for store_through in [evicted, pair.durable[pair.durable.len() - 2], ahead] {
        let source = if store_through == ahead {
            &continuous.store
        } else {
            &pair.store
        };
        let store = store_as_of(source, store_through);
        let config = config(8192);
        let reader = Box::new(store.clone());
        let mut loaded =
            Engine::from_checkpoint_with_history(&config, &image, reader, ids_max).unwrap();
        loaded.history_redrain(store_through);
        let mut restarted = Pair {
            full: Engine::new(&self::config(1 << 20)),
            history: loaded,
            store,
            durable: pair.durable.clone(),
            lag: 3,
            now: pair.now,
        };
        // The full engine replays the same prefix to stand for the state before the crash.
        let accounts = accounts();
        let mut results = vec![CreateResult::default(); accounts.len()];
        restarted
            .full
            .create_accounts(1_000 * SECOND, &accounts, &mut results);
        let mut now = 1_000 * SECOND;
        for request in first {
            match request {
                Request::Transfers(batch) => {
                    now += batch.len() as u64 + SECOND / 3;
                    let mut results = vec![CreateResult::default(); batch.len()];
                    restarted.full.create_transfers(now, batch, &mut results);
                }
                Request::Pulse => {
                    now += u64::from(PULSE_EXPIRIES_MAX);
                    restarted.full.pulse(now);
                }
            }
        }
        assert_eq!(now, restarted.now);
        let mut random = Rng::new(7);
        for (index, request) in rest.iter().enumerate() {
            restarted.apply(request);
            if index % 7 == 0 {
                restarted.compare_queries(&mut random, 130 * 300);
            }
        }
        restarted.history.verify();
        assert_eq!(
            restarted.history.state_hash(),
            continuous.history.state_hash(),
            "store through {store_through}"
        );
    }
}

#[test]
fn a_checkpoint_in_history_mode_needs_the_store() {
    let mut pair = Pair::new(8192, 1);
    for request in &workload(3, 20) {
        pair.apply(request);
    }
    let mut image = Vec::new();
    pair.history.checkpoint_write(&mut image).unwrap();
    let error = Engine::from_checkpoint(&config(8192), &image)
        .err()
        .unwrap();
    assert!(error.to_string().contains("history mode"), "{error}");
    let mut image = Vec::new();
    pair.full.checkpoint_write(&mut image).unwrap();
    let store = Box::new(ModelStore::default());
    let error = Engine::from_checkpoint_with_history(&config(1 << 20), &image, store, 1 << 16)
        .err()
        .unwrap();
    assert!(
        error.to_string().contains("without history mode"),
        "{error}"
    );
}

#[test]
fn retried_old_ids_and_posts_of_old_pending_transfers_read_the_store() {
    let mut pair = Pair::new(1024, 0);
    let transfer = |id: u128, flags: u16, pending_id: u128| Transfer {
        id,
        debit_account_id: 3,
        credit_account_id: 4,
        amount: if pending_id == 0 { 10 } else { 0 },
        pending_id,
        ledger: if pending_id == 0 { 1 } else { 0 },
        code: if pending_id == 0 { 1 } else { 0 },
        flags,
        ..Transfer::default()
    };
    let first = vec![
        transfer(1, 0, 0),
        transfer(2, TransferFlags::PENDING, 0),
        transfer(3, TransferFlags::PENDING, 0),
    ];
    pair.apply(&Request::Transfers(first.clone()));
    pair.apply(&Request::Transfers(vec![transfer(
        4,
        TransferFlags::POST_PENDING_TRANSFER,
        2,
    )]));
    // Push the first requests out of memory.
    let mut id = 100;
    for _ in 0..30 {
        let batch: Vec<Transfer> = (0..100)
            .map(|_| {
                id += 1;
                transfer(id, 0, 0)
            })
            .collect();
        pair.apply(&Request::Transfers(batch));
    }
    assert!(pair.history.history_evicted_through() > pair.durable[1]);
    // Retries of id 1 (exists), a post of 2 (already posted), a void of 3 (still pending, so
    // still in memory) and a retry of 4 (exists, against its pending in the store).
    pair.apply(&Request::Transfers(vec![
        transfer(1, 0, 0),
        transfer(5, TransferFlags::POST_PENDING_TRANSFER, 2),
        transfer(6, TransferFlags::VOID_PENDING_TRANSFER, 3),
        transfer(4, TransferFlags::POST_PENDING_TRANSFER, 2),
    ]));
    let mut lookups = Vec::with_capacity(6);
    pair.history
        .lookup_transfers(&[1, 2, 3, 4, 6], &mut lookups);
    assert_eq!(
        lookups.iter().map(|t| t.id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 6]
    );
}

// ---------------------------------------------------------------------------------------------
// Orders and fills

/// Orders and fills in memory of the engine in history mode (the acceptance size); the engine
/// that keeps everything has room for the whole flow.
const ORDER_MEMORY: u32 = 4096;
const TRADERS: u64 = 200;
const SOURCE_BASE: u128 = 10_000_004;
const SOURCE_QUOTE: u128 = 10_000_005;

fn order_config(memory: Option<u32>) -> Config {
    let small = memory.is_some();
    Config {
        accounts_max: 1024,
        transfers_max: if small { 1 << 15 } else { 1 << 19 },
        transfers_pending_max: 8192,
        // Room for the rows of an order command's block (no account keeps history).
        account_balances_max: 4 * SLOTS_PER_ORDER_EVENT as u32,
        orders_max: memory.unwrap_or(1 << 17),
        fills_max: memory.unwrap_or(1 << 17),
        ..Config::test_small()
    }
}

/// One request of the order flow (or a retry of old ids, made by the test).
#[derive(Clone, Debug)]
enum OrderRequest {
    Place(Vec<Order>),
    Cancel(Vec<u128>),
    Amend(Vec<OrderAmend>),
}

/// The seeded exchange-core flow as requests: the prefill in batches, then rounds of places,
/// cancels and amends; every few rounds a place of old ids (the same order again, and changed)
/// and cancels and amends of old ids.
fn order_workload(seed: u64, rounds: usize) -> Vec<OrderRequest> {
    let mut flow = OrderFlow::new(seed, TRADERS);
    let mut requests: Vec<OrderRequest> = flow
        .prefill()
        .chunks(100)
        .map(|chunk| OrderRequest::Place(chunk.to_vec()))
        .collect();
    let mut placed: Vec<Order> = flow.prefill().to_vec();
    let mut random = Rng::new(seed ^ 0x0DE5);
    let mut round = OrderRound::default();
    for index in 0..rounds {
        flow.next_round(16, &mut round);
        placed.extend_from_slice(&round.places);
        for request in [
            OrderRequest::Place(round.places.clone()),
            OrderRequest::Cancel(round.cancels.clone()),
            OrderRequest::Amend(round.amends.clone()),
        ] {
            requests.push(request);
        }
        if index % 8 == 7 {
            let old = |random: &mut Rng| placed[random.below(placed.len() as u64) as usize];
            let same = old(&mut random);
            let changed = Order {
                price: old(&mut random).price + 1,
                ..old(&mut random)
            };
            requests.push(OrderRequest::Place(vec![same, changed]));
            let ids = vec![old(&mut random).id, old(&mut random).id];
            requests.push(OrderRequest::Cancel(ids));
            let amend = OrderAmend {
                order_id: old(&mut random).id,
                price: MID_PRICE,
                ..OrderAmend::default()
            };
            requests.push(OrderRequest::Amend(vec![amend]));
        }
    }
    requests
}

/// Accounts, funding and the market, on a new engine (in history mode with `history`).
fn order_engine(config: &Config, history: Option<(&ModelStore, u64)>) -> (Engine, u64) {
    let mut engine = Engine::new(config);
    if let Some((store, ids_max)) = history {
        engine.enable_history(Box::new(store.clone()), ids_max);
    }
    let mut now = 1_000 * SECOND;
    let source = |id: u128, ledger: u32| Account {
        id,
        ledger,
        code: 1,
        ..Account::default()
    };
    let mut accounts = market_accounts().to_vec();
    accounts.push(source(SOURCE_BASE, BASE_LEDGER));
    accounts.push(source(SOURCE_QUOTE, QUOTE_LEDGER));
    let traders = trader_accounts(TRADERS);
    accounts.extend_from_slice(&traders);
    let mut results = vec![CreateResult::default(); accounts.len()];
    now += accounts.len() as u64;
    engine.create_accounts(now, &accounts, &mut results);
    assert!(results
        .iter()
        .all(|r| r.status == CreateResult::STATUS_CREATED));
    let funding: Vec<Transfer> = traders
        .iter()
        .enumerate()
        .map(|(index, trader)| Transfer {
            id: 1 + index as u128,
            debit_account_id: if trader.ledger == BASE_LEDGER {
                SOURCE_BASE
            } else {
                SOURCE_QUOTE
            },
            credit_account_id: trader.id,
            amount: 1 << 60,
            ledger: trader.ledger,
            code: 1,
            ..Transfer::default()
        })
        .collect();
    let mut results = vec![CreateResult::default(); funding.len()];
    now += funding.len() as u64;
    engine.create_transfers(now, &funding, &mut results);
    assert!(results
        .iter()
        .all(|r| r.status == CreateResult::STATUS_CREATED));
    let mut results = [CreateResult::default()];
    now += 1;
    engine.create_markets(now, &[market()], &mut results);
    assert_eq!(results[0].status, CreateResult::STATUS_CREATED);
    let now = engine_now(&engine, now);
    (engine, now)
}

fn engine_now(engine: &Engine, now: u64) -> u64 {
    now.max(engine.timestamp_last())
}

/// The results of one order request, for comparison.
fn apply_order_request(engine: &mut Engine, now: u64, request: &OrderRequest) -> Vec<[u8; 64]> {
    let mut encoded = Vec::new();
    match request {
        OrderRequest::Place(orders) => {
            let mut results = vec![OrderResult::default(); orders.len()];
            engine.place_orders(now, orders, &mut results);
            for result in &results {
                let mut bytes = [0u8; 64];
                result.encode(&mut bytes);
                encoded.push(bytes);
            }
        }
        OrderRequest::Cancel(ids) => {
            let mut results = vec![CreateResult::default(); ids.len()];
            engine.cancel_orders(now, ids, &mut results);
            encoded.extend(results.iter().map(|r| {
                let mut bytes = [0u8; 64];
                bytes[..8].copy_from_slice(&r.timestamp.to_le_bytes());
                bytes[8..12].copy_from_slice(&r.status.to_le_bytes());
                bytes
            }));
        }
        OrderRequest::Amend(amends) => {
            let mut results = vec![CreateResult::default(); amends.len()];
            engine.amend_orders(now, amends, &mut results);
            encoded.extend(results.iter().map(|r| {
                let mut bytes = [0u8; 64];
                bytes[..8].copy_from_slice(&r.timestamp.to_le_bytes());
                bytes[8..12].copy_from_slice(&r.status.to_le_bytes());
                bytes
            }));
        }
    }
    encoded
}

fn request_len(request: &OrderRequest) -> usize {
    match request {
        OrderRequest::Place(orders) => orders.len(),
        OrderRequest::Cancel(ids) => ids.len(),
        OrderRequest::Amend(amends) => amends.len(),
    }
}

/// An engine that keeps everything and one in history mode with `ORDER_MEMORY` orders and
/// fills in memory, evicting `lag` requests behind.
struct OrderPair {
    full: Engine,
    history: Engine,
    store: ModelStore,
    durable: Vec<u64>,
    lag: usize,
    now: u64,
    /// Status counts of the history engine's place results.
    placed: u64,
}

impl OrderPair {
    fn new(lag: usize, ids_max: u64) -> OrderPair {
        let (full, now) = order_engine(&order_config(None), None);
        let store = ModelStore::default();
        let config = order_config(Some(ORDER_MEMORY));
        let (history, _) = order_engine(&config, Some((&store, ids_max)));
        OrderPair {
            full,
            history,
            store,
            durable: Vec::new(),
            lag,
            now,
            placed: 0,
        }
    }

    fn apply(&mut self, request: &OrderRequest) {
        let count = request_len(request);
        if count == 0 {
            return;
        }
        self.now += count as u64 + 1;
        let expected = apply_order_request(&mut self.full, self.now, request);
        let actual = apply_order_request(&mut self.history, self.now, request);
        for (index, (actual, expected)) in actual.iter().zip(&expected).enumerate() {
            assert_eq!(
                actual, expected,
                "{request:?} event {index} at {}",
                self.now
            );
        }
        if let OrderRequest::Place(_) = request {
            self.placed += count as u64;
        }
        self.now = engine_now(&self.full, self.now);
        assert_eq!(self.full.timestamp_last(), self.history.timestamp_last());
        drain_and_evict(&mut self.history, &self.store, &mut self.durable, self.lag);
    }

    /// Random lookups and fill queries (market and order filters, ranges, limits, both
    /// directions) that straddle the watermark; both engines must agree.
    fn compare_queries(&self, random: &mut Rng, ids_max: u128) {
        let first = 1_000 * SECOND;
        let span = self.now - first;
        for _ in 0..8 {
            let ids: Vec<u128> = (0..16)
                .map(|_| 1 + u128::from(random.below(ids_max as u64)))
                .collect();
            let mut expected = Vec::with_capacity(16);
            let mut actual = Vec::with_capacity(16);
            self.full.lookup_orders(&ids, &mut expected);
            self.history.lookup_orders(&ids, &mut actual);
            assert_eq!(actual, expected, "lookup_orders {ids:?}");
        }
        let bound = |random: &mut Rng| first + random.below(span + 1);
        for _ in 0..16 {
            let (mut minimum, mut maximum) = (bound(random), bound(random));
            if minimum > maximum {
                std::mem::swap(&mut minimum, &mut maximum);
            }
            let by_order = random.below(2) == 0;
            let filter = FillFilter {
                order_id: if by_order {
                    1 + u128::from(random.below(ids_max as u64))
                } else {
                    0
                },
                market: if by_order && random.below(2) == 0 {
                    0
                } else {
                    MARKET
                },
                limit: 1 + random.below(200) as u32,
                timestamp_min: if random.below(4) == 0 { 0 } else { minimum },
                timestamp_max: if random.below(4) == 0 { 0 } else { maximum },
                flags: if random.below(2) == 0 {
                    FillFilter::REVERSED
                } else {
                    0
                },
                ..FillFilter::default()
            };
            let mut expected = Vec::with_capacity(128);
            let mut actual = Vec::with_capacity(128);
            self.full.get_fills(&filter, &mut expected);
            self.history.get_fills(&filter, &mut actual);
            assert_eq!(actual, expected, "get_fills {filter:?}");
        }
    }

    /// How many fills the flow made so far.
    fn fills_made(&self) -> u64 {
        let filter = FillFilter {
            market: MARKET,
            limit: 1,
            flags: FillFilter::REVERSED,
            ..FillFilter::default()
        };
        let mut newest = Vec::with_capacity(1);
        self.full.get_fills(&filter, &mut newest);
        newest.first().map_or(0, |fill| fill.sequence)
    }
}

fn load_in_history_mode(image: &[u8], store: &ModelStore, ids_max: u64) -> Engine {
    let config = order_config(Some(ORDER_MEMORY));
    let reader = Box::new(store.clone());
    Engine::from_checkpoint_with_history(&config, image, reader, ids_max).unwrap()
}

#[test]
fn orders_and_fills_leave_memory_and_every_reply_stays_the_same() {
    // A small filter, so that many new ids are looked up in the store as well.
    let requests = order_workload(5, 14_000);
    let mut pair = OrderPair::new(2, 1 << 12);
    let mut random = Rng::new(11);
    for (index, request) in requests.iter().enumerate() {
        pair.apply(request);
        if index % 97 == 0 {
            pair.compare_queries(&mut random, u128::from(pair.placed) + 64);
        }
        if index % 1009 == 0 {
            pair.history.verify();
        }
    }
    pair.compare_queries(&mut random, u128::from(pair.placed) + 64);
    pair.history.verify();
    pair.full.verify();
    assert!(pair.history.history_evicted_through() > 0);
    // Many times what memory holds went through it, and nothing was refused for room: the
    // replies equal those of an engine with room for everything.
    let memory = u64::from(ORDER_MEMORY);
    assert!(pair.placed > 8 * memory, "{} orders placed", pair.placed);
    let fills = pair.fills_made();
    assert!(fills > 2 * memory, "{fills} fills");
    let stored = pair.store.0.lock().unwrap();
    assert!(stored.orders.len() as u64 > 4 * memory);
    assert_eq!(stored.fills.len() as u64, fills);
}

#[test]
fn orders_and_fills_restart_from_a_checkpoint_with_the_store_behind_or_ahead() {
    // A filter of 64 ids is saturated at once: every new order id is looked up in the store,
    // so a store read that counted orders the replay has not reached would change answers.
    let ids_max = 64;
    let requests = order_workload(9, 1_500);
    let (first, rest) = requests.split_at(requests.len() / 2);
    let mut pair = OrderPair::new(3, ids_max);
    for request in first {
        pair.apply(request);
    }
    let mut continuous = OrderPair::new(3, ids_max);
    for request in &requests {
        continuous.apply(request);
    }
    let mut image = Vec::new();
    pair.history.checkpoint_write(&mut image).unwrap();
    let evicted = pair.history.history_evicted_through();
    assert!(evicted > 0);
    // Orders that left memory before the checkpoint, looked up after the restart.
    let old_ids: Vec<u128> = (1..=64).collect();
    let mut old_orders = Vec::with_capacity(64);
    pair.full.lookup_orders(&old_ids, &mut old_orders);
    let ahead = continuous.durable[continuous.durable.len() - 1];
    for store_through in [evicted, pair.durable[pair.durable.len() - 2], ahead] {
        let source = if store_through == ahead {
            &continuous.store
        } else {
            &pair.store
        };
        let store = store_as_of(source, store_through);
        let mut loaded = load_in_history_mode(&image, &store, ids_max);
        loaded.history_redrain(store_through);
        // What the store lost is handed to it again; then the state hash is the one before
        // the crash.
        loaded.history_drain(&mut store.clone());
        assert_eq!(loaded.state_hash(), pair.history.state_hash());
        let mut found = Vec::with_capacity(64);
        loaded.lookup_orders(&old_ids, &mut found);
        assert_eq!(found, old_orders, "store through {store_through}");
        // The engine that keeps everything replays the prefix to stand for the state before
        // the crash.
        let mut restarted = OrderPair::new(3, ids_max);
        for request in first {
            restarted.apply(request);
        }
        restarted.history = loaded;
        restarted.store = store;
        restarted.durable = pair.durable.clone();
        let mut random = Rng::new(7);
        for (index, request) in rest.iter().enumerate() {
            restarted.apply(request);
            if index % 53 == 0 {
                restarted.compare_queries(&mut random, u128::from(restarted.placed) + 64);
            }
        }
        restarted.history.verify();
        assert_eq!(
            restarted.history.state_hash(),
            continuous.history.state_hash(),
            "store through {store_through}"
        );
    }
}
