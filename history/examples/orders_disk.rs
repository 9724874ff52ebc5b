//! Disk use of finished orders and fills in the history store: ingests `MILLIONS` million
//! orders and as many fills, shaped like the exchange-core flow of one market (sequential
//! order ids, fills between random orders near one price, a new timestamp every few fills),
//! in runs of 250,000 of each, and prints after every run the store's size and what the run
//! added per record (the first half of the runs holds orders only, the second fills only, so
//! each kind's share shows on its own; fjall's journal is counted before the first run).
//!
//! Usage: `cargo run -p clearline-history --example orders_disk -- MILLIONS DIRECTORY`
//! (defaults: 1, a temporary directory under the system's). The store is created in a fresh
//! temporary directory inside `DIRECTORY` and deleted at the end.

use std::path::PathBuf;

use clearline_engine::{Fill, Order, OrderState};
use clearline_history::{History, HistoryConfig, Run, RunCapacity, Watermark};
use clearline_test_support::Rng;

const RUN_RECORDS: usize = 250_000;
const TIMESTAMP_FIRST: u64 = 1 << 40;

fn main() {
    let mut args = std::env::args().skip(1);
    let millions: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let parent = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let directory = tempfile::tempdir_in(parent).expect("temporary directory");
    let history = History::open(&HistoryConfig {
        directory: directory.path().to_path_buf(),
        cache_bytes: 64 << 20,
    })
    .expect("open");
    let count = millions * 1_000_000;
    let mut random = Rng::new(7);
    let mut run = Run::with_capacity(RunCapacity {
        orders: RUN_RECORDS,
        fills: RUN_RECORDS,
        ..RunCapacity::default()
    });
    let mut timestamp = TIMESTAMP_FIRST;
    let mut sequence = 0u64;
    let mut written = 0u64;
    let mut before = history.disk_bytes();
    let runs = count.div_ceil(RUN_RECORDS as u64);
    for index in 0..2 * runs {
        run.clear();
        let orders = index < runs;
        for _ in 0..RUN_RECORDS {
            timestamp += 1 + random.below(4);
            if orders {
                written += 1;
                let order = Order {
                    id: written.into(),
                    base_account_id: 1 + u128::from(random.below(1_000)),
                    quote_account_id: 1_000_001 + u128::from(random.below(1_000)),
                    price: 99_000 + random.below(2_000),
                    quantity: 1 + random.below(10),
                    filled_quantity: random.below(10),
                    market: 1,
                    side: 1 + random.below(2) as u8,
                    time_in_force: 1,
                    state: OrderState::Filled as u8,
                    timestamp: timestamp - random.below(1_000),
                    ..Order::default()
                };
                run.push_order(&order, timestamp).expect("capacity");
            } else {
                sequence += 1;
                let quantity = 1 + random.below(10);
                let price = 99_000 + random.below(2_000);
                let fill = Fill {
                    taker_order_id: 1 + u128::from(random.below(count)),
                    maker_order_id: 1 + u128::from(random.below(count)),
                    quote_amount: u128::from(price * quantity),
                    price,
                    quantity,
                    taker_fee: 2 * quantity,
                    maker_fee: quantity,
                    sequence,
                    market: 1,
                    taker_side: 1 + random.below(2) as u8,
                    timestamp,
                    ..Fill::default()
                };
                run.push_fill(&fill).expect("capacity");
            }
        }
        let watermark = Watermark {
            sequence: index + 1,
            timestamp,
        };
        history.ingest(&run, watermark).expect("ingest");
        let bytes = history.disk_bytes();
        let what = if orders { "orders" } else { "fills" };
        println!(
            "run {index}: {RUN_RECORDS} {what}, store {:.1} MB, {:.0} bytes per {} added",
            bytes as f64 / 1e6,
            bytes.saturating_sub(before) as f64 / RUN_RECORDS as f64,
            &what[..what.len() - 1],
        );
        before = bytes;
    }
}
