//! The store's queries give the engine's own answers: an engine runs the seeded ledger
//! workload (pending transfers, posts, voids, expiry, burned ids, balancing, accounts with
//! history) and an order flow in one market (settlement transfers: holds, voids, fill legs,
//! fees, some on accounts with history); everything it stored is ingested into the store as
//! several runs; then random filters, valid and invalid, are put to both, before and after
//! reopening, and the answers must be equal: `get_account_transfers`,
//! `get_account_balances`, `query_transfers` and `lookup_transfers`.

mod support;

use clearline_engine::order::{Side, TimeInForce};
use clearline_engine::{
    Account, AccountBalance, AccountFilter, AccountFilterFlags, AccountFlags, Config, CreateResult,
    Engine, Order, OrderResult, QueryFilter, QueryFilterFlags, Transfer, TransferFlags,
    SLOTS_PER_ORDER_EVENT,
};
use clearline_history::{History, Run, RunCapacity, Watermark};
use clearline_history::{RESOLUTION_POSTED, RESOLUTION_VOIDED};
use clearline_test_support::ledger::{self, Request, SECOND};
use clearline_test_support::orders::{market, market_accounts, BASE_LEDGER, QUOTE_LEDGER};
use clearline_test_support::Rng;
use support::open;

const SEED: u64 = 0x454E_4749;
const REQUESTS: usize = 260;
const TRADERS: u32 = 6;
const RUNS: usize = 4;

fn base_account(trader: u32) -> u128 {
    5_000 + u128::from(trader)
}

fn quote_account(trader: u32) -> u128 {
    6_000 + u128::from(trader)
}

/// Traders with an odd number keep balance rows.
fn trader_flags(trader: u32) -> u16 {
    if trader % 2 == 1 {
        AccountFlags::HISTORY
    } else {
        0
    }
}

struct Driver {
    engine: Engine,
    now: u64,
    rng: Rng,
    next_order: u128,
    resting: Vec<u128>,
}

impl Driver {
    fn tick(&mut self) -> u64 {
        self.now += SECOND / 4;
        self.now
    }

    fn create_accounts(&mut self, accounts: &[Account]) {
        let mut results = vec![CreateResult::default(); accounts.len()];
        let now = self.tick();
        self.engine.create_accounts(now, accounts, &mut results);
        assert!(results.iter().all(|result| result.status == u32::MAX));
    }

    fn orders(&mut self) {
        let count = self.rng.range(1, 3) as usize;
        let mut orders = Vec::with_capacity(count);
        for _ in 0..count {
            let trader = self.rng.range(1, u64::from(TRADERS)) as u32;
            let side = if self.rng.chance(1, 2) {
                Side::Buy
            } else {
                Side::Sell
            };
            self.next_order += 1;
            orders.push(Order {
                id: self.next_order,
                base_account_id: base_account(trader),
                quote_account_id: quote_account(trader),
                user_data_64: self.rng.below(3),
                price: self.rng.range(97, 103),
                quantity: self.rng.range(1, 8),
                market: market().id,
                side: side as u8,
                time_in_force: TimeInForce::GoodTillCancel as u8,
                ..Order::default()
            });
        }
        let mut results = vec![OrderResult::default(); count];
        let now = self.tick() + SLOTS_PER_ORDER_EVENT * count as u64;
        self.engine.place_orders(now, &orders, &mut results);
        for (order, result) in orders.iter().zip(&results) {
            if result.status == u32::MAX {
                self.resting.push(order.id);
            }
        }
        if !self.resting.is_empty() && self.rng.chance(1, 3) {
            let index = self.rng.below(self.resting.len() as u64) as usize;
            let id = self.resting.swap_remove(index);
            let mut results = [CreateResult::default()];
            let now = self.tick() + SLOTS_PER_ORDER_EVENT;
            self.engine.cancel_orders(now, &[id], &mut results);
        }
    }
}

/// An engine that ran the ledger workload and the order flow, and the ids of its accounts.
fn drive() -> (Engine, Vec<u128>) {
    let mut driver = Driver {
        engine: Engine::new(&Config::test_small()),
        now: 1 << 40,
        rng: Rng::new(SEED),
        next_order: 0,
        resting: Vec::new(),
    };
    let mut accounts = ledger::accounts();
    accounts.extend(market_accounts());
    for trader in 1..=TRADERS {
        for (id, ledger) in [
            (base_account(trader), BASE_LEDGER),
            (quote_account(trader), QUOTE_LEDGER),
        ] {
            accounts.push(Account {
                id,
                ledger,
                code: 1,
                flags: trader_flags(trader),
                ..Account::default()
            });
        }
    }
    let ids: Vec<u128> = accounts.iter().map(|account| account.id).collect();
    driver.create_accounts(&accounts);
    let mut results = [CreateResult::default()];
    let now = driver.tick();
    driver.engine.create_markets(now, &[market()], &mut results);
    assert_eq!(results[0].status, u32::MAX);

    for (index, request) in ledger::workload(SEED, REQUESTS).into_iter().enumerate() {
        match request {
            Request::Transfers(batch) => {
                let mut results = vec![CreateResult::default(); batch.len()];
                let now = driver.tick();
                driver.engine.create_transfers(now, &batch, &mut results);
            }
            Request::Pulse => {
                let now = driver.tick();
                driver.engine.pulse(now);
            }
        }
        if index % 3 == 0 {
            driver.orders();
        }
    }
    driver.engine.verify();
    (driver.engine, ids)
}

/// Every stored transfer, oldest first, read through `query_transfers` page by page.
fn engine_transfers(engine: &Engine) -> Vec<Transfer> {
    let results_max = engine.config().query_results_max;
    let mut all = Vec::new();
    let mut page = Vec::with_capacity(results_max as usize);
    let mut timestamp_min = 1;
    loop {
        let filter = QueryFilter {
            timestamp_min,
            limit: results_max,
            ..QueryFilter::default()
        };
        engine.query_transfers(&filter, &mut page);
        let Some(last) = page.last() else {
            return all;
        };
        timestamp_min = last.timestamp + 1;
        all.extend_from_slice(&page);
    }
}

/// Every balance row of `account`, oldest first.
fn engine_balances(engine: &Engine, account: u128) -> Vec<AccountBalance> {
    let results_max = engine.config().query_results_max;
    let mut all = Vec::new();
    let mut page = Vec::with_capacity(results_max as usize);
    let mut timestamp_min = 1;
    loop {
        let filter = AccountFilter {
            account_id: account,
            timestamp_min,
            limit: results_max,
            flags: AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS,
            ..AccountFilter::default()
        };
        engine.get_account_balances(&filter, &mut page);
        let Some(last) = page.last() else {
            return all;
        };
        timestamp_min = last.timestamp + 1;
        all.extend_from_slice(&page);
    }
}

/// Loads everything the engine stored into `history`, cut into `RUNS` runs by timestamp:
/// transfers, the balance rows of every account, and the resolutions the posts and voids
/// record.
fn ingest_all(history: &History, engine: &Engine, accounts: &[u128], transfers: &[Transfer]) {
    let mut rows: Vec<(u128, AccountBalance)> = Vec::new();
    for &account in accounts {
        rows.extend(
            engine_balances(engine, account)
                .into_iter()
                .map(|row| (account, row)),
        );
    }
    rows.sort_by_key(|(_, row)| row.timestamp);
    assert!(rows.len() > 100, "{} rows", rows.len());
    let settlement_rows = rows.iter().filter(|(_, row)| {
        let index = transfers.partition_point(|t| t.timestamp < row.timestamp);
        transfers[index].flags().settlement()
    });
    assert!(settlement_rows.count() > 10);

    let chunk = transfers.len().div_ceil(RUNS);
    let mut run = Run::with_capacity(RunCapacity {
        transfers: chunk,
        burned_ids: 0,
        resolutions: chunk,
        balances: 2 * chunk,
        ..RunCapacity::default()
    });
    let mut rows = rows.iter().peekable();
    for (index, part) in transfers.chunks(chunk).enumerate() {
        run.clear();
        let last = part[part.len() - 1].timestamp;
        for transfer in part {
            run.push(transfer).expect("capacity");
            let flags = transfer.flags();
            if flags.post_pending_transfer() || flags.void_pending_transfer() {
                let status = if flags.post_pending_transfer() {
                    RESOLUTION_POSTED
                } else {
                    RESOLUTION_VOIDED
                };
                run.push_resolution(
                    transfer.pending_id,
                    flags.settlement(),
                    status,
                    transfer.timestamp,
                )
                .expect("capacity");
            }
        }
        while let Some((account, row)) = rows.next_if(|(_, row)| row.timestamp <= last) {
            run.push_balance(*account, row).expect("capacity");
        }
        let watermark = Watermark {
            sequence: index as u64 + 1,
            timestamp: last,
        };
        history.ingest(&run, watermark).expect("ingest");
    }
    assert!(rows.next().is_none());
}

/// A random account filter: any account (some unknown, some with history), some fields, a
/// range cut at stored timestamps, any limit, sometimes invalid in each way the engine checks.
fn account_filter(rng: &mut Rng, accounts: &[u128], transfers: &[Transfer]) -> AccountFilter {
    let (timestamp_min, timestamp_max) = range(rng, transfers);
    let sides = [
        AccountFilterFlags::DEBITS,
        AccountFilterFlags::CREDITS,
        AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS,
    ];
    let mut flags = rng.pick(&sides);
    if rng.chance(1, 2) {
        flags |= AccountFilterFlags::REVERSED;
    }
    if rng.chance(1, 40) {
        flags = AccountFilterFlags::REVERSED;
    }
    if rng.chance(1, 40) {
        flags |= 1 << rng.range(3, 31);
    }
    let field = |rng: &mut Rng, values: u64| {
        if rng.chance(1, 5) {
            rng.below(values)
        } else {
            0
        }
    };
    let mut filter = AccountFilter {
        account_id: if rng.chance(1, 30) {
            999_999
        } else {
            rng.pick(accounts)
        },
        user_data_128: u128::from(field(rng, 2)),
        user_data_64: field(rng, 4),
        user_data_32: field(rng, 2) as u32,
        code: field(rng, 4) as u16,
        timestamp_min,
        timestamp_max,
        limit: limit(rng),
        flags,
        ..AccountFilter::default()
    };
    if rng.chance(1, 40) {
        filter.reserved[rng.below(filter.reserved.len() as u64) as usize] = 1;
    }
    filter
}

fn query_filter(rng: &mut Rng, transfers: &[Transfer]) -> QueryFilter {
    let (timestamp_min, timestamp_max) = range(rng, transfers);
    let field = |rng: &mut Rng, values: u64| {
        if rng.chance(1, 3) {
            rng.below(values)
        } else {
            0
        }
    };
    let mut flags = if rng.chance(1, 2) {
        QueryFilterFlags::REVERSED
    } else {
        0
    };
    if rng.chance(1, 40) {
        flags |= 1 << rng.range(1, 31);
    }
    let mut filter = QueryFilter {
        user_data_128: u128::from(field(rng, 2)),
        user_data_64: field(rng, 4),
        user_data_32: field(rng, 2) as u32,
        ledger: field(rng, 3) as u32,
        code: field(rng, 4) as u16,
        timestamp_min,
        timestamp_max,
        limit: limit(rng),
        flags,
        ..QueryFilter::default()
    };
    if rng.chance(1, 40) {
        filter.reserved[rng.below(6) as usize] = 1;
    }
    filter
}

fn range(rng: &mut Rng, transfers: &[Transfer]) -> (u64, u64) {
    let mut bound = || match rng.below(3) {
        0 => 0,
        _ => {
            let index = rng.below(transfers.len() as u64) as usize;
            (transfers[index].timestamp + rng.range(0, 2)).saturating_sub(1)
        }
    };
    let (mut minimum, mut maximum) = (bound(), bound());
    if maximum != 0 && minimum > maximum && !rng.chance(1, 30) {
        std::mem::swap(&mut minimum, &mut maximum);
    }
    if rng.chance(1, 60) {
        maximum = 1 << 63;
    }
    (minimum, maximum)
}

fn limit(rng: &mut Rng) -> u32 {
    match rng.below(40) {
        0 => 0,
        1 => u32::MAX,
        2..=15 => rng.range(1, 5) as u32,
        _ => rng.range(1, 3_000) as u32,
    }
}

/// The limit the engine applies, given to the store as the caller would.
fn capped(limit: u32, engine: &Engine) -> u32 {
    limit.min(engine.config().query_results_max)
}

fn compare(history: &History, engine: &Engine, accounts: &[u128], transfers: &[Transfer]) {
    let results_max = engine.config().query_results_max as usize;
    let mut rng = Rng::new(SEED + 1);
    let (mut expected, mut found) = (Vec::with_capacity(results_max), Vec::new());
    let (mut expected_rows, mut found_rows) = (Vec::with_capacity(results_max), Vec::new());
    let (mut answered, mut answered_rows) = (0, 0);
    for query in 0..1_500 {
        let filter = account_filter(&mut rng, accounts, transfers);
        let store_filter = AccountFilter {
            limit: capped(filter.limit, engine),
            ..filter
        };
        engine.get_account_transfers(&filter, &mut expected);
        found.clear();
        let result = history.account_transfers(&store_filter, &mut found);
        assert!(result.is_ok(), "{result:?}");
        assert!(found == expected, "account transfers {query}: {filter:?}");
        answered += usize::from(!expected.is_empty());

        engine.get_account_balances(&filter, &mut expected_rows);
        found_rows.clear();
        let result = history.account_balances(&store_filter, &mut found_rows);
        assert!(result.is_ok(), "{result:?}");
        assert!(found_rows == expected_rows, "balances {query}: {filter:?}");
        answered_rows += usize::from(!expected_rows.is_empty());

        let filter = query_filter(&mut rng, transfers);
        let store_filter = QueryFilter {
            limit: capped(filter.limit, engine),
            ..filter
        };
        engine.query_transfers(&filter, &mut expected);
        found.clear();
        let result = history.query_transfers(&store_filter, &mut found);
        assert!(result.is_ok(), "{result:?}");
        assert!(found == expected, "query transfers {query}: {filter:?}");
    }
    // The comparisons are not all of empty answers.
    assert!(answered > 500, "{answered}");
    assert!(answered_rows > 100, "{answered_rows}");

    let mut ids: Vec<u128> = (0..3_000).map(|_| rng.range(1, 40_000).into()).collect();
    ids.extend(
        transfers
            .iter()
            .filter(|t| t.flags().settlement())
            .map(|t| t.id),
    );
    engine.lookup_transfers(&ids, &mut expected);
    found.clear();
    assert!(history.transfers_by_id(&ids, &mut found).is_ok());
    assert!(found == expected);
    for transfer in transfers {
        let found = history.transfer_in(transfer.id, transfer.flags().settlement());
        assert_eq!(found.ok(), Some(Some(*transfer)));
        let flags = transfer.flags();
        if flags.post_pending_transfer() || flags.void_pending_transfer() {
            let resolution = history.resolution(transfer.pending_id, flags.settlement());
            let (status, _) = resolution.ok().flatten().expect("resolved");
            let posted = status == RESOLUTION_POSTED;
            assert_eq!(posted, flags.post_pending_transfer());
        }
    }
}

#[test]
fn queries_answer_as_the_engine_does() {
    let (engine, accounts) = drive();
    let transfers = engine_transfers(&engine);
    assert_eq!(transfers.len(), engine.transfers_count() as usize);
    let settlement = transfers.iter().filter(|t| t.flags().settlement()).count();
    assert!(settlement > 50, "{settlement} settlement transfers");
    let pending = transfers
        .iter()
        .filter(|t| t.flags & TransferFlags::PENDING != 0);
    assert!(pending.count() > 50);

    let directory = tempfile::tempdir().expect("temporary directory");
    {
        let history = open(directory.path());
        ingest_all(&history, &engine, &accounts, &transfers);
        compare(&history, &engine, &accounts, &transfers);
    }
    let history = open(directory.path());
    compare(&history, &engine, &accounts, &transfers);
}
