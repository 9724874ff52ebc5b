//! The steady state allocates nothing: 10,000 mixed transfers (single-phase, pending, post,
//! void, linked chains, balancing, closing, failures) prepared up front and applied to a warm
//! engine, through `create_transfers` and through `execute`, with pulses and queries in between,
//! make zero heap allocations. A counting global allocator (stats_alloc) proves it.

use std::alloc::System;

use clearline_engine::{
    Account, AccountFilter, AccountFilterFlags, AccountFlags, Config, CreateResult, Engine,
    Operation, QueryFilter, Transfer, TransferFlags, PULSE_EXPIRIES_MAX,
};

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations and reallocations since `region` started (this binary runs one test, so no
/// other thread allocates meanwhile).
fn allocations(region: &Region<System>) -> usize {
    let change = region.change();
    change.allocations + change.reallocations
}

const ACCOUNTS_COUNT: u64 = 64;
const SECOND: u64 = 1_000_000_000;

/// A small splitmix64 generator: fixed, seedable, no dependencies.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

enum Request {
    Transfers(Vec<Transfer>),
    Pulse,
}

fn accounts() -> Vec<Account> {
    (1..=ACCOUNTS_COUNT)
        .map(|id| {
            let flags = match id % 8 {
                0 => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
                1 => AccountFlags::HISTORY,
                2 => AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
                _ => 0,
            };
            Account {
                id: u128::from(id),
                ledger: 1,
                code: 1,
                flags,
                ..Account::default()
            }
        })
        .collect()
}

/// A mixed workload: transfers, pending with and without timeouts, posts, voids, linked chains
/// (some failing), balancing, closing, unknown accounts, duplicates; pulses in between.
fn workload(seed: u64, requests_count: usize) -> Vec<Request> {
    let mut random = Random(seed);
    let mut next_id: u128 = 1;
    let mut pending_ids: Vec<u128> = Vec::new();
    let mut requests = Vec::new();
    for _ in 0..requests_count {
        if random.below(10) == 0 {
            requests.push(Request::Pulse);
            continue;
        }
        let size = 1 + random.below(120) as usize;
        let mut batch = Vec::with_capacity(size);
        while batch.len() < size {
            let debit = 1 + u128::from(random.below(ACCOUNTS_COUNT));
            let mut credit = 1 + u128::from(random.below(ACCOUNTS_COUNT));
            if credit == debit {
                credit = debit % u128::from(ACCOUNTS_COUNT) + 1;
            }
            let mut t = Transfer {
                id: next_id,
                debit_account_id: debit,
                credit_account_id: credit,
                amount: u128::from(1 + random.below(100)),
                ledger: 1,
                code: 1 + random.below(3) as u16,
                user_data_64: random.below(4),
                ..Transfer::default()
            };
            next_id += 1;
            match random.below(16) {
                0..=5 => {}
                6 | 7 => {
                    t.flags = TransferFlags::PENDING;
                    t.timeout = random.below(3) as u32;
                    pending_ids.push(t.id);
                }
                8 | 9 if !pending_ids.is_empty() => {
                    let pending = pending_ids[random.below(pending_ids.len() as u64) as usize];
                    let post = random.below(2) == 0;
                    t = Transfer {
                        id: t.id,
                        pending_id: pending,
                        amount: if post {
                            u128::from(random.below(60))
                        } else {
                            0
                        },
                        flags: if post {
                            TransferFlags::POST_PENDING_TRANSFER
                        } else {
                            TransferFlags::VOID_PENDING_TRANSFER
                        },
                        ..Transfer::default()
                    };
                }
                10 if batch.len() + 3 < size => {
                    // A chain of three; the last member fails one time in three.
                    t.flags = TransferFlags::LINKED;
                    batch.push(t);
                    let mut second = t;
                    second.id = next_id;
                    next_id += 1;
                    batch.push(second);
                    let mut third = t;
                    third.id = next_id;
                    third.flags = 0;
                    next_id += 1;
                    if random.below(3) == 0 {
                        third.ledger = 0;
                    }
                    t = third;
                }
                11 => {
                    t.flags = if random.below(2) == 0 {
                        TransferFlags::BALANCING_DEBIT
                    } else {
                        TransferFlags::BALANCING_CREDIT
                    };
                    t.amount = u128::from(random.below(1000));
                }
                12 => t.debit_account_id = 1_000_000, // Unknown: burns the id.
                13 if next_id > 10 => t.id = 1 + u128::from(random.below(next_id as u64 - 1)),
                14 if random.below(8) == 0 => {
                    t.flags = TransferFlags::PENDING | TransferFlags::CLOSING_DEBIT;
                    t.timeout = 1;
                    t.amount = 0;
                }
                15 => t.flags = TransferFlags::PENDING | TransferFlags::BALANCING_DEBIT,
                _ => {}
            }
            batch.push(t);
        }
        requests.push(Request::Transfers(batch));
    }
    requests
}

const TRANSFERS_COUNT: usize = 10_000;

/// The workload cut to exactly `TRANSFERS_COUNT` transfers (plus pulses).
fn prepared() -> Vec<Request> {
    let mut requests = workload(0xA110C, 400);
    let mut total = 0usize;
    let mut keep = 0usize;
    for request in &mut requests {
        keep += 1;
        if let Request::Transfers(batch) = request {
            if total + batch.len() >= TRANSFERS_COUNT {
                batch.truncate(TRANSFERS_COUNT - total);
                total += batch.len();
                break;
            }
            total += batch.len();
        }
    }
    requests.truncate(keep);
    assert_eq!(
        total, TRANSFERS_COUNT,
        "the workload must hold enough transfers"
    );
    requests
}

fn account_filter() -> AccountFilter {
    AccountFilter {
        account_id: 9,
        limit: 100,
        flags: AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS,
        ..AccountFilter::default()
    }
}

fn warm_engine(config: &Config) -> Engine {
    let mut engine = Engine::new(config);
    let accounts = accounts();
    let mut results = vec![CreateResult::default(); accounts.len()];
    engine.create_accounts(SECOND, &accounts, &mut results);
    assert!(results
        .iter()
        .all(|r| r.status == CreateResult::STATUS_CREATED));
    engine
}

#[test]
fn applying_ten_thousand_transfers_allocates_nothing() {
    let config = Config::test_small();
    let requests = prepared();

    // Typed entry points, with queries whose outputs are reserved up front.
    let mut engine = warm_engine(&config);
    let mut results = vec![CreateResult::default(); config.batch_events_max as usize];
    let mut transfers_out: Vec<Transfer> = Vec::with_capacity(100);
    let mut balances_out = Vec::with_capacity(100);
    let mut accounts_out: Vec<Account> = Vec::with_capacity(100);
    let query = QueryFilter {
        ledger: 1,
        limit: 100,
        ..QueryFilter::default()
    };
    let mut now = 10 * SECOND;
    // The counter works: a fresh vector counts.
    let probe = Region::new(GLOBAL);
    let vector: Vec<u64> = Vec::with_capacity(7);
    assert!(allocations(&probe) >= 1);
    drop(vector);
    let region = Region::new(GLOBAL);
    for request in &requests {
        match request {
            Request::Transfers(batch) => {
                now += batch.len() as u64 + SECOND / 3;
                engine.create_transfers(now, batch, &mut results[..batch.len()]);
            }
            Request::Pulse => {
                now += u64::from(PULSE_EXPIRIES_MAX);
                engine.pulse(now);
                engine.get_account_transfers(&account_filter(), &mut transfers_out);
                engine.get_account_balances(&account_filter(), &mut balances_out);
                engine.query_accounts(&query, &mut accounts_out);
                engine.query_transfers(&query, &mut transfers_out);
                engine.lookup_accounts(&[1, 2, 3], &mut accounts_out);
            }
        }
    }
    let typed_allocations = allocations(&region);
    assert_eq!(typed_allocations, 0, "create_transfers allocated");
    assert!(
        engine.transfers_count() > 5_000,
        "most transfers should succeed"
    );
    engine.verify();
    let typed_hash = engine.state_hash();

    // Byte-level entry point: every body encoded up front, one reply buffer.
    let mut engine = warm_engine(&config);
    let bodies: Vec<Vec<u8>> = requests
        .iter()
        .map(|request| match request {
            Request::Transfers(batch) => {
                let mut body = vec![0u8; batch.len() * Transfer::SIZE];
                for (transfer, chunk) in batch.iter().zip(body.chunks_exact_mut(Transfer::SIZE)) {
                    transfer.encode(chunk.try_into().unwrap());
                }
                body
            }
            Request::Pulse => Vec::new(),
        })
        .collect();
    let mut filter_body = [0u8; AccountFilter::SIZE];
    account_filter().encode(&mut filter_body);
    let mut query_body = [0u8; QueryFilter::SIZE];
    query.encode(&mut query_body);
    let mut reply = vec![0u8; (1 << 20) - 64];
    let mut now = 10 * SECOND;
    let region = Region::new(GLOBAL);
    for (request, body) in requests.iter().zip(&bodies) {
        match request {
            Request::Transfers(batch) => {
                now += batch.len() as u64 + SECOND / 3;
                let size = engine.execute(Operation::CreateTransfers, now, body, &mut reply);
                assert_eq!(size, batch.len() * CreateResult::SIZE);
            }
            Request::Pulse => {
                now += u64::from(PULSE_EXPIRIES_MAX);
                engine.execute(Operation::Pulse, now, body, &mut reply);
                engine.execute(
                    Operation::GetAccountTransfers,
                    now,
                    &filter_body,
                    &mut reply,
                );
                engine.execute(Operation::GetAccountBalances, now, &filter_body, &mut reply);
                engine.execute(Operation::QueryTransfers, now, &query_body, &mut reply);
                engine.execute(Operation::LookupAccounts, now, &[1u8; 48], &mut reply);
            }
        }
    }
    let execute_allocations = allocations(&region);
    assert_eq!(execute_allocations, 0, "execute allocated");
    engine.verify();
    assert_eq!(
        engine.state_hash(),
        typed_hash,
        "execute and create_transfers differ"
    );
}
