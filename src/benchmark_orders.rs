//! `clearline benchmark --orders`: an order flow against one market, in the mix of
//! exchange-core's benchmark (9% good-till-cancel, 3% immediate-or-cancel, 6% cancel, 82% amend
//! that moves the price), with every fill settled through the ledger by the server.
//!
//! With `--orders`, `--transfer-count` is the number of order commands and
//! `--transfer-batch-count` the commands per round. Each round sends up to three requests (one
//! `place_orders`, one `cancel_orders`, one `amend_orders`) pipelined on one connection; the
//! latency of each request is recorded. Traders have no balance limits, so holds never fail for
//! lack of funds; the flow measures matching and settlement, not risk rejections. At the end the
//! benchmark checks that, per ledger, debits equal credits (posted and pending).

use std::time::Instant;

use clearline_engine::{
    Account, CreateResult, Market, Operation, Order, OrderAmend, OrderResult, OrderState,
    OrderStatus,
};
use clearline_net::Client;

use crate::benchmark::{duration_ns, histogram, BoxError, Measurement, Random};
use crate::cli::BenchmarkArgs;

const MARKET: u32 = 1;
const BASE_LEDGER: u32 = 1;
const QUOTE_LEDGER: u32 = 2;
const FEE_ACCOUNT: u128 = 1;
const BASE_ESCROW: u128 = 2;
const QUOTE_ESCROW: u128 = 3;
/// Trader `i` holds base account `TRADER_ID_BASE + 2i` and quote account `TRADER_ID_BASE + 2i + 1`.
const TRADER_ID_BASE: u128 = 16;
/// Order ids start here (orders have their own id space; this only keeps them readable).
const ORDER_ID_BASE: u128 = 1 << 40;
const MID_PRICE: u64 = 1_000_000;
/// Resting orders sit within this many ticks of the mid price (about 750 levels in all).
const PRICE_SPREAD: u64 = 375;
/// The flow keeps about this many of its resting orders known for cancels and amends.
const LIVE_ORDERS_MAX: usize = 1_000;
const TRADERS_MAX: u32 = 1_000;
/// A moved order may land this many ticks past the mid price, so some moves trade.
const AMEND_CROSS_TICKS: u64 = 4;

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
    let traders = args.account_count.min(TRADERS_MAX);
    let mut client = Client::connect(addr)?;
    setup(&mut client, traders)?;

    let mut random = Random(args.seed);
    let mut live: Vec<(u128, u8)> = Vec::with_capacity(LIVE_ORDERS_MAX + 8_192);
    let mut order_next = ORDER_ID_BASE;
    let mut tally = Tally::default();
    let mut latencies = histogram();

    // Prefill: resting orders on both sides, not timed.
    let mut places = Vec::with_capacity(8_191 * Order::SIZE);
    for _ in 0..LIVE_ORDERS_MAX {
        let order = gtc(&mut random, traders, &mut order_next);
        live.push((order.id, order.side));
        push_order(&mut places, &order);
    }
    let reply = client.request(Operation::PlaceOrders, &places)?;
    count_order_results(&reply.body, &mut Tally::default());

    let batch = u64::from(args.transfer_batch_count);
    let mut cancels = Vec::with_capacity(8_191 * 16);
    let mut amends = Vec::with_capacity(8_191 * OrderAmend::SIZE);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < args.transfer_count {
        let round = batch.min(args.transfer_count - sent);
        places.clear();
        cancels.clear();
        amends.clear();
        for _ in 0..round {
            let roll = random.below(100);
            if roll < 9 || live.is_empty() {
                let order = gtc(&mut random, traders, &mut order_next);
                live.push((order.id, order.side));
                push_order(&mut places, &order);
            } else if roll < 12 {
                let order = ioc(&mut random, traders, &mut order_next);
                push_order(&mut places, &order);
            } else if roll < 18 {
                let index = random.below(live.len() as u64) as usize;
                let (id, _) = live.swap_remove(index);
                cancels.extend_from_slice(&id.to_le_bytes());
            } else {
                let index = random.below(live.len() as u64) as usize;
                let (id, side) = live[index];
                let amend = OrderAmend {
                    order_id: id,
                    price: resting_price(&mut random, side, AMEND_CROSS_TICKS),
                    quantity: 0,
                    reserved: [0; 32],
                };
                let mut bytes = [0u8; OrderAmend::SIZE];
                amend.encode(&mut bytes);
                amends.extend_from_slice(&bytes);
            }
        }
        while live.len() > LIVE_ORDERS_MAX * 2 {
            live.swap_remove(0);
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
            forget_finished(operation, &reply.body, &amends, &mut live);
        }
        sent += round;
    }
    let elapsed = start.elapsed();
    report(&tally, elapsed);
    verify_ledgers(&mut client, traders)?;
    Ok(Measurement {
        latencies,
        requests: tally.requests,
        events: tally.commands,
        elapsed,
    })
}

fn setup(client: &mut Client, traders: u32) -> Result<(), BoxError> {
    let mut body = Vec::new();
    let mut push = |id: u128, ledger: u32| {
        let account = Account {
            id,
            ledger,
            code: 1,
            ..Account::default()
        };
        let mut bytes = [0u8; Account::SIZE];
        account.encode(&mut bytes);
        body.extend_from_slice(&bytes);
    };
    push(FEE_ACCOUNT, QUOTE_LEDGER);
    push(BASE_ESCROW, BASE_LEDGER);
    push(QUOTE_ESCROW, QUOTE_LEDGER);
    for trader in 0..u128::from(traders) {
        push(TRADER_ID_BASE + 2 * trader, BASE_LEDGER);
        push(TRADER_ID_BASE + 2 * trader + 1, QUOTE_LEDGER);
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
    let market = Market {
        fee_account_id: FEE_ACCOUNT,
        base_escrow_account_id: BASE_ESCROW,
        quote_escrow_account_id: QUOTE_ESCROW,
        lot_size: 1,
        tick_size: 1,
        maker_fee: 1,
        taker_fee: 2,
        id: MARKET,
        base_ledger: BASE_LEDGER,
        quote_ledger: QUOTE_LEDGER,
        code: 1,
        ..Market::default()
    };
    let mut bytes = [0u8; Market::SIZE];
    market.encode(&mut bytes);
    let reply = client.request(Operation::CreateMarkets, &bytes)?;
    let result = CreateResult::decode(reply.body[..16].try_into().map_err(|_| "short reply")?);
    if result.status != CreateResult::STATUS_CREATED {
        return Err(format!("create_markets: result code {}", result.status).into());
    }
    Ok(())
}

fn trader_accounts(random: &mut Random, traders: u32) -> (u128, u128) {
    let trader = u128::from(random.below(u64::from(traders)));
    (TRADER_ID_BASE + 2 * trader, TRADER_ID_BASE + 2 * trader + 1)
}

/// A price on `side`'s half of the book, reaching `cross` ticks past the mid price.
fn resting_price(random: &mut Random, side: u8, cross: u64) -> u64 {
    let offset = random.below(PRICE_SPREAD + cross);
    if side == 1 {
        MID_PRICE + cross - 1 - offset
    } else {
        MID_PRICE - cross + 1 + offset
    }
}

fn new_order(random: &mut Random, traders: u32, order_next: &mut u128) -> Order {
    let (base, quote) = trader_accounts(random, traders);
    *order_next += 1;
    Order {
        id: *order_next,
        base_account_id: base,
        quote_account_id: quote,
        quantity: 1 + random.below(10),
        market: MARKET,
        side: if random.below(2) == 0 { 1 } else { 2 },
        ..Order::default()
    }
}

fn gtc(random: &mut Random, traders: u32, order_next: &mut u128) -> Order {
    let mut order = new_order(random, traders, order_next);
    order.time_in_force = 1;
    order.price = resting_price(random, order.side, 0);
    order
}

fn ioc(random: &mut Random, traders: u32, order_next: &mut u128) -> Order {
    let mut order = new_order(random, traders, order_next);
    order.time_in_force = 2;
    // Reaches into the other side of the book, so it trades.
    order.price = if order.side == 1 {
        MID_PRICE + random.below(PRICE_SPREAD / 4)
    } else {
        MID_PRICE - random.below(PRICE_SPREAD / 4)
    };
    order
}

fn push_order(body: &mut Vec<u8>, order: &Order) {
    let mut bytes = [0u8; Order::SIZE];
    order.encode(&mut bytes);
    body.extend_from_slice(&bytes);
}

/// Drops from `live` the orders a reply shows are no longer resting: placed orders that did
/// not rest and amended orders that failed or filled, so later cancels and amends aim at
/// resting orders.
fn forget_finished(operation: Operation, body: &[u8], amends: &[u8], live: &mut Vec<(u128, u8)>) {
    let mut forget = |id: u128| {
        if let Some(index) = live.iter().position(|(live_id, _)| *live_id == id) {
            live.swap_remove(index);
        }
    };
    match operation {
        Operation::PlaceOrders => {
            for chunk in body.chunks_exact(OrderResult::SIZE) {
                let result = OrderResult::decode(chunk.try_into().expect("64-byte chunk"));
                if result.state != OrderState::Resting as u8 {
                    forget(result.order_id);
                }
            }
        }
        Operation::AmendOrders => {
            let results = body.chunks_exact(CreateResult::SIZE);
            for (chunk, amend) in results.zip(amends.chunks_exact(OrderAmend::SIZE)) {
                let result = CreateResult::decode(chunk.try_into().expect("16-byte chunk"));
                if result.status != CreateResult::STATUS_CREATED {
                    let amend = OrderAmend::decode(amend.try_into().expect("64-byte chunk"));
                    forget(amend.order_id);
                }
            }
        }
        _ => {}
    }
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

fn verify_ledgers(client: &mut Client, traders: u32) -> Result<(), BoxError> {
    let mut ids: Vec<u128> = vec![FEE_ACCOUNT, BASE_ESCROW, QUOTE_ESCROW];
    for trader in 0..u128::from(traders) {
        ids.push(TRADER_ID_BASE + 2 * trader);
        ids.push(TRADER_ID_BASE + 2 * trader + 1);
    }
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
