//! Criterion benchmarks: exchange-core's order mix on the order book alone, on the full engine
//! with ledger settlement, and on the `lobster` crate as the baseline, plus open-loop latency.
//!
//! The flow follows exchange-core's single-book benchmark: about 1,000 resting orders over 750
//! price levels, 1,000 accounts, commands 9% GTC, 3% IOC, 6% cancel and 82% move (amend to a
//! new price), generated up front from a seed by `clearline_test_support::orders`, the same
//! generator `clearline benchmark --orders` sends. `lobster` has no amend, so a move is a cancel
//! plus a new limit order with the same id and the remaining quantity.
//!
//! `engine_settled` runs the same commands through an `Engine` with one market (fee account and
//! escrows on their ledgers) and 1,000 traders whose base and quote accounts may not go negative
//! and are funded from a source account per ledger; every order holds funds, every fill settles
//! as ledger transfers. Each command is one request with its own timestamp block.
//!
//! The latency run injects commands at a fixed rate (open loop): command i is planned at
//! `start + i x gap`, and its latency is measured from that planned time to its completion, so
//! a stall delays every later command and shows up in the histogram (no coordinated omission).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clearline_engine::book::{Book, BookEvent};
use clearline_engine::order::{Order, Side, TimeInForce};
use clearline_engine::{Account, AccountFlags, Config, CreateResult, Engine, FillFilter};
use clearline_engine::{Fill, Operation, OrderResult, OrderState, Transfer};
use clearline_engine::{FILLS_PER_ORDER_MAX, SLOTS_PER_ORDER_EVENT};
use clearline_test_support::orders::{market, market_accounts, trader_accounts};
use clearline_test_support::orders::{OrderCommand, OrderFlow, BASE_LEDGER, QUOTE_LEDGER};
use clearline_test_support::orders::{
    BOOK_LEVELS_MAX, BOOK_ORDERS_MAX, PREFILL_ORDERS, TRADERS_MAX,
};
use criterion::{black_box, BatchSize, Criterion, Throughput};
use hdrhistogram::Histogram;

const SEED: u64 = 0x5EED_0001;
const COMMANDS: usize = 200_000;

/// The flow, generated up front: the prefill and the commands.
struct Workload {
    prefill: Vec<Order>,
    commands: Vec<OrderCommand>,
}

fn workload(seed: u64, count: usize) -> Workload {
    let mut flow = OrderFlow::new(seed, TRADERS_MAX);
    let prefill = flow.prefill().to_vec();
    let commands = (0..count).map(|_| flow.next_command()).collect();
    Workload { prefill, commands }
}

/// The book with the prefill applied; allocation happens here, outside the measurement.
fn prefilled(workload: &Workload) -> (Book, Vec<BookEvent>) {
    let mut book = Book::new(&market(), BOOK_ORDERS_MAX, BOOK_LEVELS_MAX);
    let mut events = Vec::with_capacity(BOOK_ORDERS_MAX as usize);
    for order in &workload.prefill {
        book.place(order, 0, &mut events);
        events.clear();
    }
    (book, events)
}

#[inline]
fn apply(book: &mut Book, events: &mut Vec<BookEvent>, command: &OrderCommand) -> u32 {
    events.clear();
    match command {
        OrderCommand::Place(order) => book.place(order, 0, events).fill_count,
        OrderCommand::Cancel(id) => u32::from(book.cancel(*id).is_some()),
        OrderCommand::Amend { amend, .. } => book.amend(amend, events).execution.fill_count,
    }
}

fn lobster_book(workload: &Workload) -> lobster::OrderBook {
    let mut book = lobster::OrderBook::new(BOOK_ORDERS_MAX as usize, 16, false);
    for order in &workload.prefill {
        lobster_apply(&mut book, &OrderCommand::Place(*order));
    }
    book
}

fn lobster_side(side: Side) -> lobster::Side {
    match side {
        Side::Buy => lobster::Side::Bid,
        Side::Sell => lobster::Side::Ask,
    }
}

#[inline]
fn lobster_apply(book: &mut lobster::OrderBook, command: &OrderCommand) -> bool {
    use lobster::{OrderEvent, OrderType};
    let event = match command {
        OrderCommand::Place(order) => {
            let side = lobster_side(Side::from_u8(order.side).expect("valid"));
            let event = book.execute(OrderType::Limit {
                id: order.id,
                side,
                qty: order.quantity,
                price: order.price,
            });
            if order.time_in_force == TimeInForce::ImmediateOrCancel as u8 {
                // lobster has no IOC: cancel whatever rested.
                book.execute(OrderType::Cancel { id: order.id });
            }
            event
        }
        OrderCommand::Cancel(id) => book.execute(OrderType::Cancel { id: *id }),
        OrderCommand::Amend {
            amend,
            side,
            remaining,
        } => {
            book.execute(OrderType::Cancel { id: amend.order_id });
            book.execute(OrderType::Limit {
                id: amend.order_id,
                side: lobster_side(*side),
                qty: *remaining,
                price: amend.price,
            })
        }
    };
    !matches!(event, OrderEvent::Unfilled { .. })
}

// ---------------------------------------------------------------------------------------------
// The engine with ledger settlement

const BASE_SOURCE: u128 = 10_000_004;
const QUOTE_SOURCE: u128 = 10_000_005;
/// Per trader and asset: far more than any trader's holds in this flow (a buy of 10 lots near
/// `MID_PRICE` holds about 10^6 quote).
const FUNDS: u128 = 1 << 60;
/// The engine timestamp before the setup (any value well above the setup's slots).
const START: u64 = 1 << 40;
const OK: u32 = u32::MAX;

/// Engine-made transfers a command may create at most: the four legs of each maker event (holds
/// are reservations on balances, not transfers).
const TRANSFERS_PER_COMMAND_MAX: u64 = FILLS_PER_ORDER_MAX as u64 * 4;

/// A config with room for `transfers` transfers, `fills` fills and `orders` orders, plus the
/// free block the engine requires before each order command.
fn settled_config(transfers: u64, fills: u64, orders: u64) -> Config {
    let block = SLOTS_PER_ORDER_EVENT;
    Config {
        accounts_max: 2 * TRADERS_MAX as u32 + 16,
        transfers_max: (transfers + 2 * block) as u32,
        transfers_pending_max: 16_384,
        account_balances_max: 4 * block as u32,
        markets_max: 1,
        orders_max: orders as u32 + 1_024,
        fills_max: (fills + 2 * FILLS_PER_ORDER_MAX as u64) as u32,
        ..Config::default()
    }
}

/// Clears `engine` and creates the accounts, funds the traders, creates the market and places
/// the prefill; returns the last timestamp used. Everything here is outside the measurement.
fn settled_setup(engine: &mut Engine, workload: &Workload) -> u64 {
    engine.clear();
    let mut now = START;
    let source = |id: u128, ledger: u32| Account {
        id,
        ledger,
        code: 1,
        ..Account::default()
    };
    let mut accounts = market_accounts().to_vec();
    accounts.push(source(BASE_SOURCE, BASE_LEDGER));
    accounts.push(source(QUOTE_SOURCE, QUOTE_LEDGER));
    let traders_first = accounts.len();
    let limited = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    let traders = trader_accounts(TRADERS_MAX).into_iter();
    accounts.extend(traders.map(|trader| Account {
        flags: limited,
        ..trader
    }));
    let mut results = vec![CreateResult::default(); accounts.len()];
    now += Operation::CreateAccounts.timestamp_slots(accounts.len() as u32);
    engine.create_accounts(now, &accounts, &mut results);
    assert!(results.iter().all(|r| r.status == OK), "accounts created");
    let funding: Vec<Transfer> = accounts[traders_first..]
        .iter()
        .enumerate()
        .map(|(index, trader)| {
            let source = if trader.ledger == BASE_LEDGER {
                BASE_SOURCE
            } else {
                QUOTE_SOURCE
            };
            Transfer {
                id: 1 + index as u128,
                debit_account_id: source,
                credit_account_id: trader.id,
                amount: FUNDS,
                ledger: trader.ledger,
                code: 1,
                ..Transfer::default()
            }
        })
        .collect();
    let mut results = vec![CreateResult::default(); funding.len()];
    now += Operation::CreateTransfers.timestamp_slots(funding.len() as u32);
    engine.create_transfers(now, &funding, &mut results);
    assert!(results.iter().all(|r| r.status == OK), "traders funded");
    let mut results = [CreateResult::default()];
    now += Operation::CreateMarkets.timestamp_slots(1);
    engine.create_markets(now, &[market()], &mut results);
    assert_eq!(results[0].status, OK, "market created");
    for order in &workload.prefill {
        let mut results = [OrderResult::default()];
        now += Operation::PlaceOrders.timestamp_slots(1);
        engine.place_orders(now, std::slice::from_ref(order), &mut results);
        assert_eq!(results[0].status, OK, "prefill placed");
    }
    now
}

/// Applies one command as its own request at the next timestamp block; returns the status.
#[inline]
/// Applies one command at the next batch timestamp; leaves `now` at the last timestamp the
/// engine used (an order event uses one more per ledger transfer it makes).
fn settled_apply(engine: &mut Engine, now: &mut u64, command: &OrderCommand) -> u32 {
    let status = settled_apply_at(engine, now, command);
    *now = (*now).max(engine.timestamp_last());
    status
}

fn settled_apply_at(engine: &mut Engine, now: &mut u64, command: &OrderCommand) -> u32 {
    match command {
        OrderCommand::Place(order) => {
            let mut results = [OrderResult::default()];
            *now += Operation::PlaceOrders.timestamp_slots(1);
            engine.place_orders(*now, std::slice::from_ref(order), &mut results);
            results[0].status
        }
        OrderCommand::Cancel(id) => {
            let mut results = [CreateResult::default()];
            *now += Operation::CancelOrders.timestamp_slots(1);
            engine.cancel_orders(*now, &[*id], &mut results);
            results[0].status
        }
        OrderCommand::Amend { amend, .. } => {
            let mut results = [CreateResult::default()];
            *now += Operation::AmendOrders.timestamp_slots(1);
            engine.amend_orders(*now, std::slice::from_ref(amend), &mut results);
            results[0].status
        }
    }
}

/// What one checked run of the flow through the engine did.
struct SettledStats {
    transfers: u64,
    fills: u64,
    orders: u64,
    traded: u64,
    resting: u64,
    pending: u64,
    transfers_per_command_max: u64,
    statuses: Vec<(u32, u64)>,
}

/// Runs the flow once on a fresh engine of `config`, counting fills per command from the fill
/// store, statuses, and the resting orders at the end; verifies the engine's invariants.
fn settled_check(workload: &Workload, config: &Config) -> SettledStats {
    let mut engine = Engine::new(config);
    let mut now = settled_setup(&mut engine, workload);
    let mut fills_out: Vec<Fill> = Vec::with_capacity(2 * FILLS_PER_ORDER_MAX);
    let mut statuses: HashMap<u32, u64> = HashMap::new();
    let (mut fills, mut traded, mut per_command_max) = (0u64, 0u64, 0u64);
    let mut ids: Vec<u128> = workload.prefill.iter().map(|o| o.id).collect();
    for command in &workload.commands {
        let before = u64::from(engine.transfers_count());
        let first = now + 1;
        let status = settled_apply(&mut engine, &mut now, command);
        per_command_max = per_command_max.max(u64::from(engine.transfers_count()) - before);
        *statuses.entry(status).or_default() += 1;
        if let OrderCommand::Place(order) = command {
            ids.push(order.id);
        }
        let filter = FillFilter {
            market: 1,
            limit: fills_out.capacity() as u32,
            timestamp_min: first,
            timestamp_max: now,
            ..FillFilter::default()
        };
        engine.get_fills(&filter, &mut fills_out);
        fills += fills_out.len() as u64;
        traded += u64::from(!fills_out.is_empty());
    }
    engine.verify();
    let mut orders = Vec::with_capacity(1024);
    let mut resting = 0u64;
    for chunk in ids.chunks(1024) {
        engine.lookup_orders(chunk, &mut orders);
        resting += orders
            .iter()
            .filter(|o| o.state == OrderState::Resting as u8)
            .count() as u64;
    }
    let mut statuses: Vec<(u32, u64)> = statuses.into_iter().collect();
    statuses.sort_unstable();
    SettledStats {
        transfers: u64::from(engine.transfers_count()),
        fills,
        orders: ids.len() as u64,
        traded,
        resting,
        pending: u64::from(engine.pending_count()),
        transfers_per_command_max: per_command_max,
        statuses,
    }
}

/// Sizes the engine for the flow: a first run on generous stores counts the transfers, fills
/// and orders the flow creates, and the config adds a quarter on top of each.
fn settled_sized(workload: &Workload) -> Config {
    let commands = workload.commands.len() as u64;
    let setup = 4 * TRADERS_MAX + PREFILL_ORDERS;
    let generous = settled_config(setup + 8 * commands, commands, setup + commands);
    let probe = settled_check(workload, &generous);
    let margin = |n: u64| n + n / 4;
    settled_config(
        margin(probe.transfers),
        margin(probe.fills),
        margin(probe.orders),
    )
}

fn settled_report(workload: &Workload, config: &Config) {
    let stats = settled_check(workload, config);
    let commands = workload.commands.len() as u64;
    println!(
        "engine_settled: transfers_max {}, fills_max {}, orders_max {}; after the run {} \
         transfers (at most {} per command, bound {}), {} fills, {:.1}% of commands traded, \
         {} orders stored, {} resting, {} pending transfers",
        config.transfers_max,
        config.fills_max,
        config.orders_max,
        stats.transfers,
        stats.transfers_per_command_max,
        TRANSFERS_PER_COMMAND_MAX,
        stats.fills,
        100.0 * stats.traded as f64 / commands as f64,
        stats.orders,
        stats.resting,
        stats.pending,
    );
    let statuses: Vec<String> = stats
        .statuses
        .iter()
        .map(|(code, count)| {
            if *code == OK {
                format!("ok {count}")
            } else {
                format!("{code} {count}")
            }
        })
        .collect();
    println!("engine_settled statuses: {}", statuses.join(", "));
    let failed: u64 = stats
        .statuses
        .iter()
        .filter(|(c, _)| *c != OK)
        .map(|(_, n)| n)
        .sum();
    assert!(
        failed * 100 <= commands,
        "more than 1% of commands rejected"
    );
    assert!(
        stats.fills > 0 && stats.resting > 0,
        "the flow keeps trading"
    );
}

fn throughput(c: &mut Criterion, workload: &Workload, config: &Config) {
    let mut group = c.benchmark_group("matching");
    group.throughput(Throughput::Elements(workload.commands.len() as u64));
    group.sample_size(10);
    group.bench_function("baseline_scan_commands", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for command in &workload.commands {
                if let OrderCommand::Place(order) = black_box(command) {
                    sum = sum.wrapping_add(order.price);
                }
            }
            sum
        })
    });
    group.bench_function("clearline_book", |b| {
        b.iter_batched_ref(
            || prefilled(workload),
            |(book, events)| {
                let mut fills = 0u32;
                for command in &workload.commands {
                    fills = fills.wrapping_add(apply(book, events, black_box(command)));
                }
                fills
            },
            BatchSize::LargeInput,
        )
    });
    let mut engine = Engine::new(config);
    group.bench_function("engine_settled", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // The engine's stores hold one run: clear and set up again, untimed.
                let mut now = settled_setup(&mut engine, workload);
                let start = Instant::now();
                for command in &workload.commands {
                    black_box(settled_apply(&mut engine, &mut now, black_box(command)));
                }
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function("lobster", |b| {
        b.iter_batched_ref(
            || lobster_book(workload),
            |book| {
                let mut accepted = 0u32;
                for command in &workload.commands {
                    accepted += u32::from(lobster_apply(book, black_box(command)));
                }
                accepted
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// Open loop at `rate` commands per second; returns the latency histogram in nanoseconds.
fn open_loop(workload: &Workload, rate: u64, mut run: impl FnMut(&OrderCommand)) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let gap_ns = 1_000_000_000 / rate;
    let start = Instant::now() + Duration::from_millis(1);
    for (index, command) in workload.commands.iter().enumerate() {
        let planned = start + Duration::from_nanos(gap_ns * index as u64);
        while Instant::now() < planned {
            std::hint::spin_loop();
        }
        run(command);
        let latency = Instant::now().duration_since(planned).as_nanos() as u64;
        histogram.saturating_record(latency.max(1));
    }
    histogram
}

fn report(name: &str, rate: u64, histogram: &Histogram<u64>) {
    println!(
        "latency {name} at {rate} commands/s, {} commands: p50 {} ns, p99 {} ns, \
         p99.9 {} ns, p99.99 {} ns, max {} ns",
        histogram.len(),
        histogram.value_at_quantile(0.50),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.value_at_quantile(0.9999),
        histogram.max(),
    );
}

fn latency(workload: &Workload, config: &Config) {
    for rate in [1_000_000u64, 2_000_000] {
        let (mut book, mut events) = prefilled(workload);
        // Warm-up pass at the same rate on a separate book, then the measured pass.
        open_loop(workload, rate, |command| {
            black_box(apply(&mut book, &mut events, command));
        });
        let (mut book, mut events) = prefilled(workload);
        let histogram = open_loop(workload, rate, |command| {
            black_box(apply(&mut book, &mut events, command));
        });
        report("clearline_book", rate, &histogram);
        let mut book = lobster_book(workload);
        let histogram = open_loop(workload, rate, |command| {
            black_box(lobster_apply(&mut book, command));
        });
        report("lobster", rate, &histogram);
    }
    let mut engine = Engine::new(config);
    for rate in [1_000_000u64, 250_000] {
        // Warm-up pass at the same rate, then the measured pass on a cleared engine.
        for pass in 0..2 {
            let mut now = settled_setup(&mut engine, workload);
            let histogram = open_loop(workload, rate, |command| {
                black_box(settled_apply(&mut engine, &mut now, command));
            });
            if pass == 1 {
                report("engine_settled", rate, &histogram);
            }
        }
    }
}

fn main() {
    let workload = workload(SEED, COMMANDS);
    let (mut book, mut events) = prefilled(&workload);
    // Commands that filled something (a successful cancel also returns 1 from `apply`).
    let (mut fills, mut trading) = (0u64, 0usize);
    for command in &workload.commands {
        let count = apply(&mut book, &mut events, command);
        if !matches!(command, OrderCommand::Cancel(_)) {
            fills += u64::from(count);
            trading += usize::from(count > 0);
        }
    }
    println!(
        "workload: {} commands, {} prefilled orders; after the run {} resting orders at {} \
         levels; {} fills, {:.1}% of commands traded",
        workload.commands.len(),
        workload.prefill.len(),
        book.orders_count(),
        book.levels_count(),
        fills,
        100.0 * trading as f64 / workload.commands.len() as f64,
    );
    let mix = |f: fn(&OrderCommand) -> bool| workload.commands.iter().filter(|c| f(c)).count();
    println!(
        "mix: gtc {} ioc {} cancel {} move {}",
        mix(|c| matches!(c, OrderCommand::Place(o) if o.time_in_force == 1)),
        mix(|c| matches!(c, OrderCommand::Place(o) if o.time_in_force == 2)),
        mix(|c| matches!(c, OrderCommand::Cancel(_))),
        mix(|c| matches!(c, OrderCommand::Amend { .. })),
    );
    let config = settled_sized(&workload);
    settled_report(&workload, &config);
    let mut criterion = Criterion::default().configure_from_args();
    throughput(&mut criterion, &workload, &config);
    criterion.final_summary();
    if std::env::args().any(|arg| arg == "--bench") {
        latency(&workload, &config);
    }
}
