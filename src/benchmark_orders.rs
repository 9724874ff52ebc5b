//! `clearline benchmark --orders`: an order flow against one market, in the mix of
//! exchange-core's benchmark (9% good-till-cancel, 3% immediate-or-cancel, 6% cancel, 82% amend
//! that moves the price), with every fill settled through the ledger by the server.
//!
//! The flow is `clearline_test_support::orders`, the generator the matching benches run, so
//! the end-to-end figures and the benches measure the same commands for a seed. With `--orders`,
//! `--transfer-count` is the number of order commands and `--transfer-batch-count` the commands
//! per round. Each round sends up to three requests (one `place_orders`, one `cancel_orders`,
//! one `amend_orders`, in the order the generator applies them to its model of the book)
//! pipelined on one connection; the latency of each request is recorded. Traders have no
//! balance limits, so holds never fail for lack of funds and the server's book stays equal to
//! the generator's model: cancels and amends name resting orders. The flow measures matching
//! and settlement, not risk rejections. At the end the benchmark checks that, per ledger, debits
//! equal credits (posted and pending).

use std::time::Instant;

use clearline_engine::{
    Account, CreateResult, Operation, Order, OrderAmend, OrderResult, OrderStatus,
};
use clearline_net::Client;
use clearline_test_support::orders::{self, OrderFlow, OrderRound, QUOTE_LEDGER, TRADERS_MAX};

use crate::benchmark::{duration_ns, histogram, BoxError, Measurement};
use crate::cli::BenchmarkArgs;

/// Rounds drawn ahead of the one being sent.
const ROUNDS_AHEAD: usize = 2;

/// What the flow saw.
#[derive(Default)]
struct Tally {
    commands: u64,
    ok: u64,
    rejected: u64,
    /// Rejections by result code, in code order (deterministic output).
    rejections: std::collections::BTreeMap<u32, u64>,
    fills: u64,
    requests: u64,
}

fn order_status_ok(status: u32) -> bool {
    status == OrderStatus::Ok as u32
}

/// Runs the order flow against `addr`.
pub fn drive(args: &BenchmarkArgs, addr: std::net::SocketAddr) -> Result<Measurement, BoxError> {
    if args.clients != 1 {
        return Err("--orders drives one market from one client; leave --clients at 1".into());
    }
    if args.account_count == 0 {
        return Err("--orders needs --account-count of at least 1 (the traders)".into());
    }
    let traders = u64::from(args.account_count).min(TRADERS_MAX);
    let mut client = Client::connect(addr)?;
    let accounts = accounts(traders);
    setup(&mut client, &accounts)?;

    let mut flow = OrderFlow::new(args.seed, traders);
    let mut tally = Tally::default();
    let mut latencies = histogram();

    // Prefill: resting orders on both sides, not timed.
    let mut places = Vec::with_capacity(8_191 * Order::SIZE);
    for order in flow.prefill() {
        push_order(&mut places, order);
    }
    let reply = client.request(Operation::PlaceOrders, &places)?;
    count_order_results(&reply.body, &mut Tally::default());

    // The rounds are drawn on their own thread, a few ahead, so the model's cost stays out of
    // the measured request loop. The model follows the requests in the order they are sent, so
    // drawing needs no reply.
    let batch = u64::from(args.transfer_batch_count);
    let commands_count = args.transfer_count;
    let (rounds_tx, rounds) = std::sync::mpsc::sync_channel::<OrderRound>(ROUNDS_AHEAD);
    let draw = move || {
        let mut drawn = 0u64;
        while drawn < commands_count && batch > 0 {
            let count = batch.min(commands_count - drawn);
            let mut round = OrderRound::default();
            flow.next_round(count as usize, &mut round);
            drawn += count;
            if rounds_tx.send(round).is_err() {
                return; // The request loop stopped early.
            }
        }
    };
    let mut cancels = Vec::with_capacity(8_191 * 16);
    let mut amends = Vec::with_capacity(8_191 * OrderAmend::SIZE);
    let send_rounds = || -> Result<std::time::Duration, BoxError> {
        // Timed from the first request: wait for the first round to be drawn.
        let mut rounds = rounds.into_iter().peekable();
        rounds.peek();
        let start = Instant::now();
        for round in rounds {
            places.clear();
            for order in &round.places {
                push_order(&mut places, order);
            }
            cancels.clear();
            for order_id in &round.cancels {
                cancels.extend_from_slice(&order_id.to_le_bytes());
            }
            amends.clear();
            for amend in &round.amends {
                let mut bytes = [0u8; OrderAmend::SIZE];
                amend.encode(&mut bytes);
                amends.extend_from_slice(&bytes);
            }
            let mut in_flight = Vec::with_capacity(3);
            for (operation, body) in [
                (Operation::PlaceOrders, &places),
                (Operation::CancelOrders, &cancels),
                (Operation::AmendOrders, &amends),
            ] {
                if !body.is_empty() {
                    client.send(operation, body)?;
                    in_flight.push((operation, Instant::now()));
                }
            }
            for (operation, sent_at) in in_flight {
                let reply = client.receive()?;
                latencies.record(duration_ns(sent_at.elapsed()).max(1))?;
                tally.requests += 1;
                match operation {
                    Operation::PlaceOrders => count_order_results(&reply.body, &mut tally),
                    _ => count_create_results(&reply.body, &mut tally),
                }
            }
        }
        Ok(start.elapsed())
    };
    let elapsed = std::thread::scope(|scope| {
        scope.spawn(draw);
        send_rounds()
    })?;
    report(&tally, elapsed);
    verify_ledgers(&mut client, &accounts)?;
    Ok(Measurement {
        latencies,
        requests: tally.requests,
        events: tally.commands,
        elapsed,
    })
}

/// The market's accounts and the traders' accounts.
fn accounts(traders: u64) -> Vec<Account> {
    let mut accounts = orders::market_accounts().to_vec();
    accounts.extend(orders::trader_accounts(traders));
    accounts
}

fn setup(client: &mut Client, accounts: &[Account]) -> Result<(), BoxError> {
    let mut body = Vec::with_capacity(accounts.len() * Account::SIZE);
    for account in accounts {
        let mut bytes = [0u8; Account::SIZE];
        account.encode(&mut bytes);
        body.extend_from_slice(&bytes);
    }
    for chunk in body.chunks(8_189 * Account::SIZE) {
        let reply = client.request(Operation::CreateAccounts, chunk)?;
        for result in reply.body.chunks_exact(CreateResult::SIZE) {
            let result = CreateResult::decode(result.try_into().expect("16-byte chunk"));
            // 21 is `exists`: a server reused across runs already has the accounts.
            if result.status != CreateResult::STATUS_CREATED && result.status != 21 {
                return Err(format!("create_accounts: result code {}", result.status).into());
            }
        }
    }
    let mut bytes = [0u8; clearline_engine::Market::SIZE];
    orders::market().encode(&mut bytes);
    let reply = client.request(Operation::CreateMarkets, &bytes)?;
    let result = CreateResult::decode(reply.body[..16].try_into().map_err(|_| "short reply")?);
    if result.status != CreateResult::STATUS_CREATED {
        return Err(format!("create_markets: result code {}", result.status).into());
    }
    Ok(())
}

fn push_order(body: &mut Vec<u8>, order: &Order) {
    let mut bytes = [0u8; Order::SIZE];
    order.encode(&mut bytes);
    body.extend_from_slice(&bytes);
}

fn count_order_results(body: &[u8], tally: &mut Tally) {
    for chunk in body.chunks_exact(OrderResult::SIZE) {
        let result = OrderResult::decode(chunk.try_into().expect("64-byte chunk"));
        tally.commands += 1;
        tally.fills += u64::from(result.fill_count);
        if order_status_ok(result.status) {
            tally.ok += 1;
        } else {
            tally.rejected += 1;
            *tally.rejections.entry(result.status).or_default() += 1;
        }
    }
}

fn count_create_results(body: &[u8], tally: &mut Tally) {
    for chunk in body.chunks_exact(CreateResult::SIZE) {
        let result = CreateResult::decode(chunk.try_into().expect("16-byte chunk"));
        tally.commands += 1;
        if result.status == CreateResult::STATUS_CREATED {
            tally.ok += 1;
        } else {
            tally.rejected += 1;
            *tally.rejections.entry(result.status).or_default() += 1;
        }
    }
}

/// Prints what the flow saw; the throughput and latency lines are printed by the caller.
fn report(tally: &Tally, elapsed: std::time::Duration) {
    say!(
        "{} order commands ({} ok, {} rejected) in {} requests, {} fills, in {:.2} s, \
         settled through the ledger",
        tally.commands,
        tally.ok,
        tally.rejected,
        tally.requests,
        tally.fills,
        elapsed.as_secs_f64()
    );
    for (status, count) in &tally.rejections {
        let name = OrderStatus::from_u32(*status).map_or("unknown", OrderStatus::name);
        say!("  rejected with {name} ({status}): {count}");
    }
}

fn verify_ledgers(client: &mut Client, accounts: &[Account]) -> Result<(), BoxError> {
    let ids: Vec<u128> = accounts.iter().map(|account| account.id).collect();
    // Per ledger: debits posted, credits posted, debits pending, credits pending.
    let mut sums = [[0u128; 4]; 2];
    let mut found = 0usize;
    for chunk in ids.chunks(8_189) {
        let body: Vec<u8> = chunk.iter().flat_map(|id| id.to_le_bytes()).collect();
        let reply = client.request(Operation::LookupAccounts, &body)?;
        for item in reply.body.chunks_exact(Account::SIZE) {
            let account = Account::decode(item.try_into().expect("128-byte chunk"));
            let ledger = usize::from(account.ledger == QUOTE_LEDGER);
            sums[ledger][0] += account.debits_posted;
            sums[ledger][1] += account.credits_posted;
            sums[ledger][2] += account.debits_pending;
            sums[ledger][3] += account.credits_pending;
            found += 1;
        }
    }
    let balanced = sums.iter().all(|sum| sum[0] == sum[1] && sum[2] == sum[3]);
    say!(
        "ledgers: {found} accounts; base posted {} = {}, pending {} = {}; quote posted {} = {}, \
         pending {} = {}: {}",
        sums[0][0],
        sums[0][1],
        sums[0][2],
        sums[0][3],
        sums[1][0],
        sums[1][1],
        sums[1][2],
        sums[1][3],
        if balanced && found == ids.len() {
            "add up"
        } else {
            "DO NOT ADD UP"
        }
    );
    if balanced && found == ids.len() {
        Ok(())
    } else {
        Err("ledgers do not add up".into())
    }
}
