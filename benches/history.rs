//! Criterion benchmarks: candidates for the history store (`docs/history.md`), fjall and redb,
//! measured with clearline's own key shapes.
//!
//! A sealed run of `RUN_TRANSFERS` transfers (128-byte records, random u128 ids, monotonic
//! timestamps) becomes three sorted key spaces: `timestamp -> record`, `id -> timestamp` and
//! `(account, timestamp) -> ()` for both accounts of each transfer. Keys are big-endian so byte
//! order is numeric order; both engines get the same bytes. Measured per account shape (10,000
//! accounts uniform, 1,000,000 accounts zipfian):
//!
//! - `ingest`: sort one run and load it. fjall writes each key space with its ingestion API
//!   for sorted input (tables written and synced directly, no journal); redb inserts the sorted
//!   keys into three tables in one write transaction, committed with its default durability.
//!   Every iteration loads a new run into the same store, so the store grows as history does.
//! - `lookup_present` / `lookup_absent`: an id that was ingested (then its record), and a fresh
//!   random id.
//! - `account_range`: one account's transfers by timestamp, at most `RANGE_LIMIT`, each record
//!   fetched. Accounts are drawn from the same distribution as the transfers.
//! - baselines: sorting the run alone, copying the sorted run in memory, and writing its bytes to
//!   a file with one `fdatasync` (the disk's floor for this much data).
//!
//! Store sizes on disk are printed to stderr after the reads. Files go to
//! `$CLEARLINE_BENCH_DIR` (default: the system temporary directory). Run with
//! `cargo bench --bench history`; a full run takes about five minutes on a 2-core machine.

// `criterion_group!` generates a public function without documentation.
#![allow(missing_docs)]

mod support;

use std::fs::OpenOptions;
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use clearline_engine::Transfer;
use clearline_test_support::{AccountPicker, Rng};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use redb::{ReadableDatabase, TableDefinition};
use support::temporary_dir;

const RUN_TRANSFERS: usize = 1_000_000;
const RANGE_LIMIT: usize = 8_190;
/// One id in this many is kept for `lookup_present`.
const ID_SAMPLE_STRIDE: usize = 997;
/// Block cache (fjall) and page cache (redb), equal so reads compare like for like.
const CACHE_SIZE: usize = 256 << 20;
const TIMESTAMP_FIRST: u64 = 1 << 40;

const REDB_RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
const REDB_IDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("ids");
const REDB_ACCOUNTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("accounts");

/// Produces consecutive runs of transfers, as the history writer would see them.
struct Generator {
    rng: Rng,
    accounts: AccountPicker,
    timestamp: u64,
    /// Ids that were generated, one in `ID_SAMPLE_STRIDE`.
    ids_present: Vec<u128>,
}

impl Generator {
    fn new(accounts: AccountPicker) -> Generator {
        Generator {
            rng: Rng::new(0x00C1_EA41_14E0),
            accounts,
            timestamp: TIMESTAMP_FIRST,
            ids_present: Vec::new(),
        }
    }

    fn run(&mut self) -> Vec<Transfer> {
        let mut run = Vec::with_capacity(RUN_TRANSFERS);
        for index in 0..RUN_TRANSFERS {
            let id = self.rng.next_u128() | 1;
            let debit_account_id = self.accounts.pick(&mut self.rng);
            let mut credit_account_id = self.accounts.pick(&mut self.rng);
            if credit_account_id == debit_account_id {
                credit_account_id = debit_account_id + 1;
            }
            self.timestamp += 1;
            if index % ID_SAMPLE_STRIDE == 0 {
                self.ids_present.push(id);
            }
            run.push(Transfer {
                id,
                debit_account_id,
                credit_account_id,
                amount: u128::from(self.rng.next_u64() % 1_000_000) + 1,
                ledger: 1,
                code: 1,
                timestamp: self.timestamp,
                ..Transfer::default()
            });
        }
        run
    }
}

/// A run made ready to load: each key space sorted by key, keys big-endian.
#[derive(Clone)]
struct SortedRun {
    /// `timestamp -> record`, already in timestamp order.
    records: Vec<([u8; 8], [u8; Transfer::SIZE])>,
    /// `id -> timestamp`.
    ids: Vec<([u8; 16], [u8; 8])>,
    /// `(account, timestamp)`, two per transfer.
    accounts: Vec<[u8; 24]>,
}

impl SortedRun {
    fn size(&self) -> usize {
        self.records.len() * (8 + Transfer::SIZE) + self.ids.len() * 24 + self.accounts.len() * 24
    }
}

fn account_key(account: u128, timestamp: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&account.to_be_bytes());
    key[16..].copy_from_slice(&timestamp.to_be_bytes());
    key
}

fn sort_run(run: &[Transfer]) -> SortedRun {
    let mut records = Vec::with_capacity(run.len());
    let mut ids = Vec::with_capacity(run.len());
    let mut accounts = Vec::with_capacity(run.len() * 2);
    for transfer in run {
        let mut record = [0u8; Transfer::SIZE];
        transfer.encode(&mut record);
        let timestamp = transfer.timestamp.to_be_bytes();
        records.push((timestamp, record));
        ids.push((transfer.id.to_be_bytes(), timestamp));
        accounts.push(account_key(transfer.debit_account_id, transfer.timestamp));
        accounts.push(account_key(transfer.credit_account_id, transfer.timestamp));
    }
    ids.sort_unstable_by_key(|entry| entry.0);
    accounts.sort_unstable();
    SortedRun {
        records,
        ids,
        accounts,
    }
}

fn directory_size(path: &Path) -> u64 {
    let mut size = 0;
    for entry in std::fs::read_dir(path).expect("read store directory") {
        let entry = entry.expect("directory entry");
        let metadata = entry.metadata().expect("metadata");
        if metadata.is_dir() {
            size += directory_size(&entry.path());
        } else {
            size += metadata.len();
        }
    }
    size
}

/// The operations the history store needs, over each candidate.
trait Store {
    fn name(&self) -> &'static str;
    fn ingest(&self, run: &SortedRun);
    /// The record of transfer `id`, if it was ingested.
    fn lookup(&self, id: u128) -> Option<Transfer>;
    /// Up to `RANGE_LIMIT` transfers of `account` in timestamp order; returns how many.
    fn account_range(&self, account: u128) -> usize;
    fn path(&self) -> &Path;
}

struct Fjall {
    directory: tempfile::TempDir,
    _database: fjall::Database,
    records: fjall::Keyspace,
    ids: fjall::Keyspace,
    accounts: fjall::Keyspace,
}

impl Fjall {
    fn open() -> Fjall {
        let directory = temporary_dir();
        let database = fjall::Database::builder(directory.path())
            .cache_size(CACHE_SIZE as u64)
            .open()
            .expect("open fjall");
        // Without compression, as measured (the workspace enables fjall's lz4 for the store).
        let options = || {
            fjall::KeyspaceCreateOptions::default().data_block_compression_policy(
                fjall::config::CompressionPolicy::all(fjall::CompressionType::None),
            )
        };
        let keyspace = |name| database.keyspace(name, options).expect("fjall keyspace");
        let (records, ids, accounts) = (keyspace("records"), keyspace("ids"), keyspace("accounts"));
        Fjall {
            directory,
            _database: database,
            records,
            ids,
            accounts,
        }
    }
}

impl Store for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn ingest(&self, run: &SortedRun) {
        let mut ingestion = self.records.start_ingestion().expect("ingestion");
        for (key, value) in &run.records {
            ingestion.write(&key[..], &value[..]).expect("write record");
        }
        ingestion.finish().expect("finish records");
        let mut ingestion = self.ids.start_ingestion().expect("ingestion");
        for (key, value) in &run.ids {
            ingestion.write(&key[..], &value[..]).expect("write id");
        }
        ingestion.finish().expect("finish ids");
        let mut ingestion = self.accounts.start_ingestion().expect("ingestion");
        for key in &run.accounts {
            ingestion.write(&key[..], &[][..]).expect("write account");
        }
        ingestion.finish().expect("finish accounts");
    }

    fn lookup(&self, id: u128) -> Option<Transfer> {
        let timestamp = self.ids.get(id.to_be_bytes()).expect("get id")?;
        let record = self.records.get(&timestamp).expect("get record")?;
        Some(Transfer::decode(
            record.as_ref().try_into().expect("record size"),
        ))
    }

    fn account_range(&self, account: u128) -> usize {
        let low = account_key(account, 0);
        let high = account_key(account, u64::MAX);
        let mut count = 0;
        for guard in self.accounts.range(low..=high).take(RANGE_LIMIT) {
            let key = guard.key().expect("account key");
            let record = self
                .records
                .get(&key[16..])
                .expect("get record")
                .expect("record");
            black_box(Transfer::decode(
                record.as_ref().try_into().expect("record size"),
            ));
            count += 1;
        }
        count
    }

    fn path(&self) -> &Path {
        self.directory.path()
    }
}

struct Redb {
    directory: tempfile::TempDir,
    database: redb::Database,
}

impl Redb {
    fn open() -> Redb {
        let directory = temporary_dir();
        let database = redb::Builder::new()
            .set_cache_size(CACHE_SIZE)
            .create(directory.path().join("history.redb"))
            .expect("open redb");
        Redb {
            directory,
            database,
        }
    }
}

impl Store for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn ingest(&self, run: &SortedRun) {
        let transaction = self.database.begin_write().expect("begin write");
        {
            let mut table = transaction.open_table(REDB_RECORDS).expect("records");
            for (key, value) in &run.records {
                table.insert(&key[..], &value[..]).expect("insert record");
            }
            let mut table = transaction.open_table(REDB_IDS).expect("ids");
            for (key, value) in &run.ids {
                table.insert(&key[..], &value[..]).expect("insert id");
            }
            let mut table = transaction.open_table(REDB_ACCOUNTS).expect("accounts");
            for key in &run.accounts {
                table.insert(&key[..], &[][..]).expect("insert account");
            }
        }
        transaction.commit().expect("commit");
    }

    fn lookup(&self, id: u128) -> Option<Transfer> {
        let transaction = self.database.begin_read().expect("begin read");
        let ids = transaction.open_table(REDB_IDS).expect("ids");
        let timestamp = ids.get(&id.to_be_bytes()[..]).expect("get id")?;
        let records = transaction.open_table(REDB_RECORDS).expect("records");
        let record = records.get(timestamp.value()).expect("get record")?;
        Some(Transfer::decode(
            record.value().try_into().expect("record size"),
        ))
    }

    fn account_range(&self, account: u128) -> usize {
        let transaction = self.database.begin_read().expect("begin read");
        let accounts = transaction.open_table(REDB_ACCOUNTS).expect("accounts");
        let records = transaction.open_table(REDB_RECORDS).expect("records");
        let low = account_key(account, 0);
        let high = account_key(account, u64::MAX);
        let mut count = 0;
        let range = accounts.range(&low[..]..=&high[..]).expect("range");
        for entry in range.take(RANGE_LIMIT) {
            let (key, _) = entry.expect("account entry");
            let record = records
                .get(&key.value()[16..])
                .expect("get record")
                .expect("record");
            black_box(Transfer::decode(
                record.value().try_into().expect("record size"),
            ));
            count += 1;
        }
        count
    }

    fn path(&self) -> &Path {
        self.directory.path()
    }
}

struct Shape {
    name: &'static str,
    accounts: fn() -> AccountPicker,
}

const SHAPES: [Shape; 2] = [
    Shape {
        name: "10k_uniform",
        accounts: || AccountPicker::Uniform { count: 10_000 },
    },
    Shape {
        name: "1m_zipfian",
        accounts: || AccountPicker::zipfian(1_000_000),
    },
];

fn baselines(c: &mut Criterion) {
    let mut generator = Generator::new(AccountPicker::Uniform { count: 10_000 });
    let run = generator.run();
    let sorted = sort_run(&run);
    let mut group = c.benchmark_group("history_baseline");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(RUN_TRANSFERS as u64));
    group.bench_function("sort_run", |b| b.iter(|| sort_run(black_box(&run))));
    group.bench_function("copy_sorted_run", |b| b.iter(|| black_box(&sorted).clone()));
    let directory = temporary_dir();
    let path = directory.path().join("run");
    group.bench_function("write_run_fdatasync", |b| {
        b.iter(|| {
            let mut file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)
                .expect("open run file");
            let mut buffer = Vec::with_capacity(1 << 20);
            let mut flush = |buffer: &mut Vec<u8>| {
                file.write_all(buffer).expect("write run");
                buffer.clear();
            };
            for (key, value) in &sorted.records {
                buffer.extend_from_slice(key);
                buffer.extend_from_slice(value);
                if buffer.len() >= 1 << 20 {
                    flush(&mut buffer);
                }
            }
            for (key, value) in &sorted.ids {
                buffer.extend_from_slice(key);
                buffer.extend_from_slice(value);
                if buffer.len() >= 1 << 20 {
                    flush(&mut buffer);
                }
            }
            for key in &sorted.accounts {
                buffer.extend_from_slice(key);
                if buffer.len() >= 1 << 20 {
                    flush(&mut buffer);
                }
            }
            flush(&mut buffer);
            file.sync_data().expect("fdatasync run");
        })
    });
    group.finish();
    eprintln!("history: a sorted run is {} bytes", sorted.size());
}

fn bench_store(c: &mut Criterion, shape: &Shape, store: &dyn Store) {
    let mut generator = Generator::new((shape.accounts)());
    let group_name = format!("history_{}_{}", store.name(), shape.name);
    let mut group = c.benchmark_group(&group_name);
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(RUN_TRANSFERS as u64));
    let mut runs = 0u64;
    group.bench_function("ingest", |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let run = generator.run();
                let started = Instant::now();
                let sorted = sort_run(&run);
                store.ingest(&sorted);
                elapsed += started.elapsed();
                runs += 1;
            }
            elapsed
        })
    });
    let transfers = runs * RUN_TRANSFERS as u64;
    let size = directory_size(store.path());
    eprintln!(
        "{group_name}: {transfers} transfers, {size} bytes on disk, {:.1} bytes per transfer",
        size as f64 / transfers as f64
    );

    group.sampling_mode(SamplingMode::Auto);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    let mut rng = Rng::new(0x5EED);
    let ids_present = std::mem::take(&mut generator.ids_present);
    group.bench_function("lookup_present", |b| {
        b.iter(|| {
            let id = ids_present[(rng.next_u64() % ids_present.len() as u64) as usize];
            let transfer = store.lookup(id).expect("present id");
            assert_eq!(transfer.id, id);
        })
    });
    group.bench_function("lookup_absent", |b| {
        b.iter(|| assert!(store.lookup(rng.next_u128() | 1).is_none()))
    });
    let mut queries = 0u64;
    let mut results = 0u64;
    group.sample_size(10);
    group.bench_function("account_range", |b| {
        b.iter(|| {
            let count = store.account_range(generator.accounts.pick(&mut rng));
            queries += 1;
            results += count as u64;
        })
    });
    group.finish();
    eprintln!(
        "{group_name}: account_range returned {:.0} transfers per query on average",
        results as f64 / queries as f64
    );
}

fn stores(c: &mut Criterion) {
    for shape in &SHAPES {
        bench_store(c, shape, &Fjall::open());
        bench_store(c, shape, &Redb::open());
    }
}

criterion_group!(benches, baselines, stores);
criterion_main!(benches);
