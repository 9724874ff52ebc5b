//! Criterion benchmarks of the history store (`clearline_history`): ingest of runs of
//! 1,000,000 transfers into a growing store, then point reads and one account range.
//!
//! Two shapes:
//! - `seq_10k_uniform`: sequential ids, accounts uniform over 10,000 (what
//!   `clearline benchmark` sends);
//! - `random_1m_zipfian`: random u128 ids, accounts zipfian (exponent 1) over 1,000,000.
//!
//! `ingest`: each iteration generates a run (not timed), then times `History::ingest`, which
//! checks and sorts the run, loads the three key spaces transfers touch (the runs hold only
//! transfers) and syncs the watermark. The store grows by one run per iteration. After the
//! group, the mean time of each step (`IngestReport`) is printed to stderr, with the store's
//! size.
//! `lookup_present` / `lookup_absent`: `History::transfer` of an ingested id (one in 997 is
//! kept) and of a fresh one. `account_range`: `History::account_transfers` for one account
//! drawn like the transfers' accounts, both sides, at most 8,190 transfers.
//!
//! Files go to `$CLEARLINE_BENCH_DIR` (default: the system temporary directory). Run with
//! `cargo bench -p clearline-history`.

// `criterion_group!` generates a public function without documentation.
#![allow(missing_docs)]

use std::cell::RefCell;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clearline_engine::{AccountFilter, AccountFilterFlags, Transfer};
use clearline_history::{History, HistoryConfig, IngestReport, Run, RunCapacity, Watermark};
use clearline_test_support::{AccountPicker, Rng};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};

const RUN_TRANSFERS: usize = 1_000_000;
const RANGE_LIMIT: u32 = 8_190;
/// One id in this many is kept for `lookup_present`.
const ID_SAMPLE_STRIDE: usize = 997;
const CACHE_BYTES: u64 = 256 << 20;
const TIMESTAMP_FIRST: u64 = 1 << 40;

struct Generator {
    rng: Rng,
    accounts: AccountPicker,
    sequential_ids: bool,
    next_id: u128,
    timestamp: u64,
    ids_present: Vec<u128>,
}

impl Generator {
    fn fill(&mut self, run: &mut Run) -> Watermark {
        run.clear();
        for index in 0..RUN_TRANSFERS {
            let id = if self.sequential_ids {
                self.next_id += 1;
                self.next_id
            } else {
                self.rng.next_u128() | 1
            };
            let debit_account_id = self.accounts.pick(&mut self.rng);
            let mut credit_account_id = self.accounts.pick(&mut self.rng);
            if credit_account_id == debit_account_id {
                credit_account_id = debit_account_id + 1;
            }
            self.timestamp += 1;
            if index % ID_SAMPLE_STRIDE == 0 {
                self.ids_present.push(id);
            }
            let transfer = Transfer {
                id,
                debit_account_id,
                credit_account_id,
                amount: u128::from(self.rng.below(1_000_000)) + 1,
                ledger: 1,
                code: 1,
                timestamp: self.timestamp,
                ..Transfer::default()
            };
            run.push(&transfer).expect("run sized for RUN_TRANSFERS");
        }
        Watermark {
            sequence: self.timestamp,
            timestamp: self.timestamp,
        }
    }
}

struct Shape {
    name: &'static str,
    sequential_ids: bool,
    accounts: fn() -> AccountPicker,
}

const SHAPES: [Shape; 2] = [
    Shape {
        name: "seq_10k_uniform",
        sequential_ids: true,
        accounts: || AccountPicker::Uniform { count: 10_000 },
    },
    Shape {
        name: "random_1m_zipfian",
        sequential_ids: false,
        accounts: || AccountPicker::zipfian(1_000_000),
    },
];

fn bench_directory() -> tempfile::TempDir {
    let root =
        std::env::var_os("CLEARLINE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&root).expect("benchmark directory");
    tempfile::tempdir_in(root).expect("temporary directory")
}

fn history(c: &mut Criterion) {
    for shape in &SHAPES {
        let directory = bench_directory();
        let history = History::open(&HistoryConfig {
            directory: directory.path().to_path_buf(),
            cache_bytes: CACHE_BYTES,
        })
        .expect("open history");
        let generator = RefCell::new(Generator {
            rng: Rng::new(0x00C1_EA41_14E0),
            accounts: (shape.accounts)(),
            sequential_ids: shape.sequential_ids,
            next_id: 0,
            timestamp: TIMESTAMP_FIRST,
            ids_present: Vec::new(),
        });
        let mut run = Run::with_capacity(RunCapacity::transfers(RUN_TRANSFERS));
        let mut totals = IngestReport::default();
        let mut runs = 0u64;

        let mut group = c.benchmark_group(format!("history_{}", shape.name));
        group.sample_size(10);
        group.sampling_mode(SamplingMode::Flat);
        group.warm_up_time(Duration::from_millis(1));
        group.measurement_time(Duration::from_secs(1));
        group.throughput(Throughput::Elements(RUN_TRANSFERS as u64));
        group.bench_function("ingest", |b| {
            b.iter_custom(|iterations| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iterations {
                    let watermark = generator.borrow_mut().fill(&mut run);
                    let start = Instant::now();
                    let report = history.ingest(&run, watermark).expect("ingest");
                    elapsed += start.elapsed();
                    totals.sort_ns += report.sort_ns;
                    totals.transfers_ns += report.transfers_ns;
                    totals.transfer_ids_ns += report.transfer_ids_ns;
                    totals.account_runs_ns += report.account_runs_ns;
                    totals.watermark_ns += report.watermark_ns;
                    totals.account_entries += report.account_entries;
                    runs += 1;
                }
                elapsed
            })
        });
        let mean_ms = |ns: u64| ns as f64 / runs as f64 / 1e6;
        eprintln!(
            "history_{}: {runs} runs; mean per run: sort {:.0} ms, transfers {:.0} ms, \
             transfer_ids {:.0} ms, account_runs {:.0} ms ({} entries), watermark {:.1} ms; \
             store {:.2} GB",
            shape.name,
            mean_ms(totals.sort_ns),
            mean_ms(totals.transfers_ns),
            mean_ms(totals.transfer_ids_ns),
            mean_ms(totals.account_runs_ns),
            totals.account_entries as u64 / runs.max(1),
            mean_ms(totals.watermark_ns),
            history.disk_bytes() as f64 / 1e9,
        );

        group.throughput(Throughput::Elements(1));
        group.measurement_time(Duration::from_secs(3));
        group.warm_up_time(Duration::from_millis(500));
        let ids_present = generator.borrow().ids_present.clone();
        let mut rng = Rng::new(7);
        group.bench_function("lookup_present", |b| {
            b.iter(|| {
                let id = ids_present[rng.below(ids_present.len() as u64) as usize];
                let transfer = history.transfer(black_box(id)).expect("lookup");
                assert!(transfer.is_some());
            })
        });
        group.bench_function("lookup_absent", |b| {
            b.iter(|| {
                // Even ids are never generated at random; sequential ones stop far below 2^64.
                let id = (rng.next_u128() & !1) | (1 << 100);
                let transfer = history.transfer(black_box(id)).expect("lookup");
                assert!(transfer.is_none());
            })
        });
        let mut out = Vec::with_capacity(RANGE_LIMIT as usize);
        let mut returned = 0usize;
        let mut queries = 0usize;
        group.measurement_time(Duration::from_secs(5));
        group.bench_function("account_range", |b| {
            b.iter(|| {
                let account_id = generator.borrow().accounts.pick(&mut rng);
                let filter = AccountFilter {
                    account_id,
                    limit: RANGE_LIMIT,
                    flags: AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS,
                    ..AccountFilter::default()
                };
                out.clear();
                history.account_transfers(&filter, &mut out).expect("range");
                returned += out.len();
                queries += 1;
            })
        });
        group.finish();
        eprintln!(
            "history_{}: account_range returned {:.0} transfers per query on average; \
             store {:.2} GB",
            shape.name,
            returned as f64 / queries.max(1) as f64,
            history.disk_bytes() as f64 / 1e9,
        );
    }
}

criterion_group!(benches, history);
criterion_main!(benches);
