//! The steady state allocates nothing: 10,000 mixed transfers (single-phase, pending, post,
//! void, linked chains, balancing, closing, failures) prepared up front and applied to a warm
//! engine, through `create_transfers` and through `execute`, with pulses and queries in between,
//! make zero heap allocations. A per-thread counting allocator (allocation-counter) proves it.

use clearline_engine::{
    Account, AccountFilter, AccountFilterFlags, Config, CreateResult, Engine, Operation,
    QueryFilter, Transfer, PULSE_EXPIRIES_MAX,
};

/// Heap allocations (reallocations included) that `run` makes on this thread.
fn allocations(run: impl FnOnce()) -> u64 {
    allocation_counter::measure(run).count_total
}

use clearline_test_support::ledger::{accounts, workload, Request, SECOND};

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
    assert!(
        allocations(|| {
            std::hint::black_box(Vec::<u64>::with_capacity(7));
        }) >= 1
    );
    let typed_allocations = allocations(|| {
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
    });
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
    let execute_allocations = allocations(|| {
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
    });
    assert_eq!(execute_allocations, 0, "execute allocated");
    engine.verify();
    assert_eq!(
        engine.state_hash(),
        typed_hash,
        "execute and create_transfers differ"
    );
}
