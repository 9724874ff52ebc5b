//! Finished orders and fills in the store: what is ingested is read back by id, and
//! `get_fills` over the store answers as the engine does (the same filter semantics as a naive
//! model over every fill), across runs, after a reopen, and when a run repeats records.

mod support;

use clearline_engine::{Fill, FillFilter, Order, OrderState};
use clearline_history::{History, HistoryError, Run, RunCapacity, Watermark};
use clearline_test_support::Rng;

const MARKETS: u32 = 3;
const ORDERS: u128 = 400;

/// Seeded fills between random orders of three markets, several per timestamp, and the
/// orders they finish.
fn records(seed: u64, count: u64) -> (Vec<Fill>, Vec<(Order, u64)>) {
    let mut random = Rng::new(seed);
    let mut fills = Vec::new();
    let mut timestamp = 1_000;
    for sequence in 1..=count {
        if random.below(3) == 0 {
            timestamp += 1 + random.below(50);
        }
        let taker = 1 + u128::from(random.below(ORDERS as u64));
        let mut maker = 1 + u128::from(random.below(ORDERS as u64));
        if maker == taker {
            maker = taker % ORDERS + 1;
        }
        fills.push(Fill {
            taker_order_id: taker,
            maker_order_id: maker,
            quote_amount: u128::from(sequence) * 7,
            price: 100 + random.below(10),
            quantity: 1 + random.below(5),
            sequence,
            market: 1 + random.below(u64::from(MARKETS)) as u32,
            timestamp,
            ..Fill::default()
        });
    }
    let orders = (1..=ORDERS)
        .map(|id| {
            let order = Order {
                id,
                price: 100 + id as u64,
                quantity: 10,
                market: 1,
                state: OrderState::Filled as u8,
                timestamp: 500 + id as u64,
                ..Order::default()
            };
            (order, 900 + id as u64)
        })
        .collect();
    (fills, orders)
}

fn model(fills: &[Fill], filter: &FillFilter) -> Vec<Fill> {
    let maximum = if filter.timestamp_max == 0 {
        u64::MAX
    } else {
        filter.timestamp_max
    };
    let selected = |fill: &&Fill| {
        fill.timestamp >= filter.timestamp_min
            && fill.timestamp <= maximum
            && (filter.market == 0 || fill.market == filter.market)
            && (filter.order_id == 0
                || fill.taker_order_id == filter.order_id
                || fill.maker_order_id == filter.order_id)
    };
    if filter.limit == 0 || (filter.market == 0 && filter.order_id == 0) {
        return Vec::new();
    }
    let limit = filter.limit as usize;
    if filter.flags & FillFilter::REVERSED != 0 {
        fills
            .iter()
            .rev()
            .filter(selected)
            .take(limit)
            .copied()
            .collect()
    } else {
        fills.iter().filter(selected).take(limit).copied().collect()
    }
}

fn ingest_in_runs(history: &History, fills: &[Fill], orders: &[(Order, u64)], runs: usize) {
    let capacity = RunCapacity {
        orders: orders.len(),
        fills: fills.len(),
        ..RunCapacity::default()
    };
    let mut run = Run::with_capacity(capacity);
    let chunk = fills.len().div_ceil(runs);
    for (index, part) in fills.chunks(chunk).enumerate() {
        run.clear();
        for fill in part {
            run.push_fill(fill).expect("capacity");
        }
        if index == 0 {
            for (order, finished_at) in orders {
                run.push_order(order, *finished_at).expect("capacity");
            }
        }
        let last = part[part.len() - 1].timestamp;
        let watermark = Watermark {
            sequence: index as u64 + 1,
            timestamp: last.max(900 + ORDERS as u64),
        };
        history.ingest(&run, watermark).expect("ingest");
    }
}

fn check_queries(history: &History, fills: &[Fill], seed: u64) {
    let mut random = Rng::new(seed);
    let first = fills[0].timestamp;
    let span = fills[fills.len() - 1].timestamp - first;
    for _ in 0..400 {
        let by_order = random.below(2) == 0;
        let (mut low, mut high) = (
            first + random.below(span + 1),
            first + random.below(span + 1),
        );
        if low > high {
            std::mem::swap(&mut low, &mut high);
        }
        let filter = FillFilter {
            order_id: if by_order {
                1 + u128::from(random.below(ORDERS as u64 + 5))
            } else {
                0
            },
            market: if by_order && random.below(2) == 0 {
                0
            } else {
                random.below(u64::from(MARKETS) + 1) as u32
            },
            limit: random.below(60) as u32,
            timestamp_min: if random.below(4) == 0 { 0 } else { low },
            timestamp_max: if random.below(4) == 0 { 0 } else { high },
            flags: if random.below(2) == 0 {
                FillFilter::REVERSED
            } else {
                0
            },
            ..FillFilter::default()
        };
        let mut actual = Vec::new();
        history.fills(&filter, &mut actual).expect("fills");
        assert_eq!(actual, model(fills, &filter), "{filter:?}");
    }
}

#[test]
fn orders_and_fills_are_read_back_with_the_engine_semantics() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let (fills, orders) = records(17, 3_000);
    {
        let history = support::open(directory.path());
        ingest_in_runs(&history, &fills, &orders, 4);
        check_queries(&history, &fills, 1);
        for (order, finished_at) in &orders {
            assert_eq!(
                history.order(order.id).expect("read"),
                Some((*order, *finished_at))
            );
        }
        assert_eq!(history.order(ORDERS + 1).expect("read"), None);
        // A run that repeats what the store holds (a restart) leaves the same answers.
        let mut run = Run::with_capacity(RunCapacity {
            orders: 1,
            fills: 10,
            ..RunCapacity::default()
        });
        for fill in &fills[fills.len() - 10..] {
            run.push_fill(fill).expect("capacity");
        }
        run.push_order(&orders[0].0, orders[0].1).expect("capacity");
        let durable = history.watermark().expect("a watermark");
        history.ingest(&run, durable).expect("ingest again");
        check_queries(&history, &fills, 2);
    }
    let history = support::open(directory.path());
    check_queries(&history, &fills, 3);
    assert_eq!(history.order(7).expect("read"), Some(orders[6]));
}

#[test]
fn a_run_with_one_order_twice_or_fills_out_of_order_is_refused() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = support::open(directory.path());
    let capacity = RunCapacity {
        orders: 2,
        fills: 2,
        ..RunCapacity::default()
    };
    let watermark = Watermark {
        sequence: 1,
        timestamp: 100,
    };
    let order = Order {
        id: 5,
        state: OrderState::Canceled as u8,
        ..Order::default()
    };
    let mut run = Run::with_capacity(capacity);
    run.push_order(&order, 10).expect("capacity");
    run.push_order(&order, 11).expect("capacity");
    assert!(matches!(
        history.ingest(&run, watermark),
        Err(HistoryError::RunDuplicateOrder { id: 5 })
    ));
    let mut run = Run::with_capacity(capacity);
    for sequence in [2, 1] {
        let fill = Fill {
            sequence,
            timestamp: 10,
            market: 1,
            ..Fill::default()
        };
        run.push_fill(&fill).expect("capacity");
    }
    assert!(matches!(
        history.ingest(&run, watermark),
        Err(HistoryError::RunOutOfOrder { .. })
    ));
    let mut run = Run::with_capacity(capacity);
    run.push_order(&order, 101).expect("capacity");
    assert!(matches!(
        history.ingest(&run, watermark),
        Err(HistoryError::RunBeyondWatermark { .. })
    ));
    assert_eq!(history.watermark(), None);
}
