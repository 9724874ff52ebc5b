//! Criterion benchmarks: journal append throughput (128-byte and 1 MiB bodies, without sync and
//! with group commit), sync latency (msync of one record, and a plain write + fdatasync
//! baseline), and replay rate.
//!
//! Files go to `$CLEARLINE_BENCH_DIR` (default: the system temporary directory). Run with
//! `cargo bench --bench journal -- --measurement-time 2 --warm-up-time 1`.

// `criterion_group!` generates a public function without documentation.
#![allow(missing_docs)]

mod support;

use std::fs::OpenOptions;
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use clearline_journal::{Journal, JournalConfig, SyncMode};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use support::temporary_dir;

const SMALL_BODY_SIZE: usize = 128;
const LARGE_BODY_SIZE: usize = 1 << 20;
const SEGMENT_SIZE: u64 = 64 << 20;
const REPLAY_RECORDS: u64 = 500_000;
const SYNC_SAMPLES: usize = 200;

fn config(sync: SyncMode) -> JournalConfig {
    JournalConfig {
        segment_size: SEGMENT_SIZE,
        sync,
        ..JournalConfig::default()
    }
}

/// Appends `iterations` records and, with group commit, waits until the last one is durable,
/// so the time includes the syncs needed to keep up.
fn append_run(journal: &mut Journal, body: &[u8], iterations: u64) -> Duration {
    let started = Instant::now();
    let mut last = 0;
    for index in 0..iterations {
        last = journal.append(index, black_box(body)).expect("append");
    }
    journal.durability().wait_durable(last).expect("durable");
    started.elapsed()
}

fn append(c: &mut Criterion) {
    for (name, body_size) in [("128", SMALL_BODY_SIZE), ("1mib", LARGE_BODY_SIZE)] {
        let body = vec![0x5au8; body_size];
        let mut group = c.benchmark_group(format!("journal_append_{name}"));
        if body_size == SMALL_BODY_SIZE {
            group.throughput(Throughput::Elements(1));
        } else {
            group.throughput(Throughput::Bytes(body_size as u64));
        }
        group.sample_size(10);

        // Baseline: the same bytes with a plain write() to a file, no sync.
        let dir = temporary_dir();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("baseline"))
            .expect("baseline file");
        group.bench_function("baseline_write", |b| {
            b.iter(|| file.write_all(black_box(&body)).expect("write"));
        });
        drop(file);

        for (mode_name, mode) in [
            ("sync_none", SyncMode::None),
            ("group_commit", SyncMode::Data),
        ] {
            let dir = temporary_dir();
            let (mut journal, _) = Journal::open(dir.path(), &config(mode)).expect("open");
            group.bench_function(mode_name, |b| {
                b.iter_custom(|iterations| append_run(&mut journal, &body, iterations));
            });
            journal.close().expect("close");
        }
        group.finish();
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index]
}

fn print_distribution(name: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    println!(
        "{name}: n={} min={:?} p50={:?} p90={:?} p99={:?} max={:?}",
        samples.len(),
        samples[0],
        percentile(samples, 0.5),
        percentile(samples, 0.9),
        percentile(samples, 0.99),
        samples[samples.len() - 1]
    );
}

fn sync_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal_sync");
    group.sample_size(20);
    let body = vec![0x33u8; SMALL_BODY_SIZE];

    // One record appended, then one msync on the caller's thread.
    let dir = temporary_dir();
    let (mut journal, _) = Journal::open(dir.path(), &config(SyncMode::Manual)).expect("open");
    group.bench_function("append_128_then_msync", |b| {
        b.iter(|| {
            journal.append(1, black_box(&body)).expect("append");
            journal.sync().expect("sync")
        });
    });
    let mut samples = Vec::with_capacity(SYNC_SAMPLES);
    for _ in 0..SYNC_SAMPLES {
        journal.append(1, &body).expect("append");
        let started = Instant::now();
        journal.sync().expect("sync");
        samples.push(started.elapsed());
    }
    print_distribution("journal msync after one 128-byte record", &mut samples);
    journal.close().expect("close");

    // Baseline: write() of the same record bytes plus fdatasync.
    let dir = temporary_dir();
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("baseline"))
        .unwrap();
    let record = vec![0x33u8; 256];
    group.bench_function("baseline_write_256_fdatasync", |b| {
        b.iter(|| {
            file.write_all(black_box(&record)).expect("write");
            file.sync_data().expect("fdatasync");
        });
    });
    let mut samples = Vec::with_capacity(SYNC_SAMPLES);
    for _ in 0..SYNC_SAMPLES {
        file.write_all(&record).expect("write");
        let started = Instant::now();
        file.sync_data().expect("fdatasync");
        samples.push(started.elapsed());
    }
    print_distribution("baseline fdatasync after one 256-byte write", &mut samples);
    group.finish();
}

fn replay(c: &mut Criterion) {
    let dir = temporary_dir();
    let body = vec![0x77u8; SMALL_BODY_SIZE];
    {
        let (mut journal, _) = Journal::open(dir.path(), &config(SyncMode::None)).expect("open");
        for index in 0..REPLAY_RECORDS {
            journal.append(index, &body).expect("append");
        }
        journal.close().expect("close");
    }
    let (journal, recovery) = Journal::open(dir.path(), &config(SyncMode::None)).expect("open");
    assert_eq!(recovery.last_sequence, REPLAY_RECORDS);
    println!(
        "recovery of {REPLAY_RECORDS} records (scan and checks) took {:?}",
        recovery.elapsed
    );
    let mut group = c.benchmark_group("journal_replay");
    group.throughput(Throughput::Elements(REPLAY_RECORDS));
    group.sample_size(10);
    group.bench_function("replay_128", |b| {
        b.iter_batched(
            || 0u64,
            |mut total| {
                journal
                    .replay(1, |record| total += record.body.len() as u64)
                    .expect("replay");
                black_box(total)
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
    journal.close().expect("close");
}

criterion_group!(benches, append, sync_latency, replay);
criterion_main!(benches);
