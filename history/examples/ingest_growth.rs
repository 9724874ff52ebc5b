//! Long-run ingest measurement of the history store: ingests `RUNS` runs of 1,000,000
//! transfers shaped like `clearline benchmark --history --account-count 1000000
//! --account-distribution zipfian` (sequential ids and timestamps, debit and credit accounts
//! zipfian with exponent 1 over 1,000,000 accounts), and prints one line per run: the ingest's
//! wall time and its steps (`IngestReport`), the CPU time the process spent in the run's cycle
//! (user and system, all threads, so fjall's background compactions count; the generator
//! thread's own CPU is left out), the store's size and each key space's table count. After the
//! last run it times the read cases of `benches/ingest.rs`: `lookup_present`, `lookup_absent`
//! and `account_range`.
//!
//! Usage: `cargo run --release -p clearline-history --example ingest_growth -- RUNS DIRECTORY`
//! (defaults: 40 runs, a temporary directory under the system's). The store is created in a
//! fresh temporary directory inside `DIRECTORY` and deleted at the end.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clearline_engine::{AccountFilter, AccountFilterFlags, Transfer};
use clearline_history::{History, HistoryConfig, Run, RunCapacity, Watermark};
use clearline_test_support::{AccountPicker, Rng};

const RUN_TRANSFERS: usize = 1_000_000;
const ACCOUNTS: usize = 1_000_000;
const CACHE_BYTES: u64 = 256 << 20;
const TIMESTAMP_FIRST: u64 = 1 << 40;
const RANGE_LIMIT: u32 = 8_190;
/// One id in this many is kept for `lookup_present`.
const ID_SAMPLE_STRIDE: u64 = 997;
/// Linux reports CPU time in `/proc` in ticks of 1/100 s (`USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds from a `/proc/.../stat` file: the process's (all threads)
/// for `/proc/self/stat`, the calling thread's for `/proc/thread-self/stat`.
fn cpu_seconds(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; the fields after it are space-separated,
    // starting with field 3, so utime (14) and stime (15) are at 11 and 12.
    let Some((_, fields)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = fields.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND
}

struct Generator {
    rng: Rng,
    accounts: AccountPicker,
    next_id: u128,
    timestamp: u64,
    ids_present: Vec<u128>,
}

impl Generator {
    fn fill(&mut self, run: &mut Run) -> Watermark {
        run.clear();
        for _ in 0..RUN_TRANSFERS {
            self.next_id += 1;
            let debit_account_id = self.accounts.pick(&mut self.rng);
            let mut credit_account_id = self.accounts.pick(&mut self.rng);
            if credit_account_id == debit_account_id {
                credit_account_id = debit_account_id % ACCOUNTS as u128 + 1;
            }
            self.timestamp += 1;
            if self.timestamp.is_multiple_of(ID_SAMPLE_STRIDE) {
                self.ids_present.push(self.next_id);
            }
            let transfer = Transfer {
                id: self.next_id,
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

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Mean and median of `samples`, in microseconds.
fn summary(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let total: Duration = samples.iter().sum();
    let mean = total.as_secs_f64() * 1e6 / samples.len().max(1) as f64;
    let median = samples
        .get(samples.len() / 2)
        .map_or(0.0, |median| median.as_secs_f64() * 1e6);
    (mean, median)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args
        .next()
        .map_or(40, |runs| runs.parse().expect("RUNS is a number"));
    let root = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&root).expect("directory");
    let directory = tempfile::tempdir_in(root).expect("temporary directory");
    let history = History::open(&HistoryConfig {
        directory: directory.path().to_path_buf(),
        cache_bytes: CACHE_BYTES,
    })
    .expect("open history");
    let mut generator = Generator {
        rng: Rng::new(0x00C1_EA41_14E0),
        accounts: AccountPicker::zipfian(ACCOUNTS),
        next_id: 0,
        timestamp: TIMESTAMP_FIRST,
        ids_present: Vec::new(),
    };
    let mut run = Run::with_capacity(RunCapacity::transfers(RUN_TRANSFERS));
    println!(
        "run  ingest_ms  rate_k/s  sort  transfers  ids  account_runs  others  watermark  \
         entries  cpu_s  disk_gb  tables(transfers,ids,account_runs)"
    );
    let (mut total_ingest, mut total_cpu) = (0.0, 0.0);
    for index in 1..=runs {
        let process_before = cpu_seconds("/proc/self/stat");
        let thread_before = cpu_seconds("/proc/thread-self/stat");
        let watermark = generator.fill(&mut run);
        let generated = cpu_seconds("/proc/thread-self/stat") - thread_before;
        let start = Instant::now();
        let report = history.ingest(&run, watermark).expect("ingest");
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds("/proc/self/stat") - process_before - generated;
        total_ingest += elapsed;
        total_cpu += cpu;
        let tables = history.key_space_tables();
        println!(
            "{index:3}  {:9.0}  {:8.0}  {:4.0}  {:9.0}  {:3.0}  {:12.0}  {:6.0}  {:9.1}  {:7}  \
             {cpu:5.2}  {:7.2}  {},{},{}",
            elapsed * 1e3,
            RUN_TRANSFERS as f64 / elapsed / 1e3,
            ms(report.sort_ns),
            ms(report.transfers_ns),
            ms(report.transfer_ids_ns),
            ms(report.account_runs_ns),
            ms(report.others_ns),
            ms(report.watermark_ns),
            report.account_entries,
            history.disk_bytes() as f64 / 1e9,
            tables[0].1,
            tables[1].1,
            tables[2].1,
        );
    }
    println!(
        "total: {runs} runs, ingest {total_ingest:.1} s, cpu {total_cpu:.1} s; tables: {:?}",
        history.key_space_tables()
    );

    let mut rng = Rng::new(7);
    let ids = &generator.ids_present;
    let mut samples: Vec<Duration> = (0..2_000)
        .map(|_| {
            let id = ids[rng.below(ids.len() as u64) as usize];
            let start = Instant::now();
            let found = history.transfer(id).expect("lookup");
            let elapsed = start.elapsed();
            assert!(found.is_some());
            elapsed
        })
        .collect();
    let (mean, median) = summary(&mut samples);
    println!("lookup_present: mean {mean:.1} us, median {median:.1} us");
    let mut samples: Vec<Duration> = (0..2_000)
        .map(|_| {
            let id = (rng.next_u128() & !1) | (1 << 100);
            let start = Instant::now();
            let found = history.transfer(id).expect("lookup");
            let elapsed = start.elapsed();
            assert!(found.is_none());
            elapsed
        })
        .collect();
    let (mean, median) = summary(&mut samples);
    println!("lookup_absent: mean {mean:.1} us, median {median:.1} us");
    let mut out = Vec::with_capacity(RANGE_LIMIT as usize);
    let mut returned = 0usize;
    let mut samples: Vec<Duration> = (0..200)
        .map(|_| {
            let filter = AccountFilter {
                account_id: generator.accounts.pick(&mut rng),
                limit: RANGE_LIMIT,
                flags: AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS,
                ..AccountFilter::default()
            };
            out.clear();
            let start = Instant::now();
            history.account_transfers(&filter, &mut out).expect("range");
            let elapsed = start.elapsed();
            returned += out.len();
            elapsed
        })
        .collect();
    let (mean, median) = summary(&mut samples);
    println!(
        "account_range: mean {:.2} ms, median {:.2} ms, {:.0} transfers per query",
        mean / 1e3,
        median / 1e3,
        returned as f64 / samples.len() as f64
    );
}
