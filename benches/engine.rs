//! Criterion benchmarks of the engine alone: `create_transfers` in batches of 8,190.
//!
//! Cases (group `create_transfers`, throughput in transfers): single-phase transfers between
//! 10,000 accounts and between 1,000,000 accounts chosen uniformly at random; two-phase (half
//! pending, half posts of those pending in the same batch); linked chains of eight; and a
//! baseline that only copies the batch. Engines are sized for the case; when one would run out
//! of transfer capacity it is cleared and its accounts recreated outside the timed part. Only
//! the `create_transfers` call is timed (`iter_custom`); new ids are written into the batch
//! between calls, also untimed.

// `criterion_group!` generates a public function without documentation.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use clearline_engine::{Account, Config, CreateResult, Engine, Transfer, TransferFlags};
use clearline_test_support::Rng;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const BATCH_SIZE: usize = 8190;
const TRANSFERS_MAX: u32 = 2_000_000;
const CHAIN_SIZE: usize = 8;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    SinglePhase,
    TwoPhase,
    Linked,
}

struct Case {
    engine: Engine,
    accounts_count: u64,
    kind: Kind,
    /// A fixed seed per case, so every run measures the same sequence.
    random: Rng,
    next_id: u128,
    now: u64,
    batch: Vec<Transfer>,
    results: Vec<CreateResult>,
}

impl Case {
    fn new(accounts_count: u64, kind: Kind) -> Case {
        let config = Config {
            accounts_max: accounts_count as u32,
            transfers_max: TRANSFERS_MAX,
            transfers_pending_max: 16_384,
            account_balances_max: 0,
            ..Config::default()
        };
        let mut case = Case {
            engine: Engine::new(&config),
            accounts_count,
            kind,
            random: Rng::new(0x5EED + accounts_count),
            next_id: 1,
            now: 1_000_000_000,
            batch: vec![Transfer::default(); BATCH_SIZE],
            results: vec![CreateResult::default(); BATCH_SIZE],
        };
        case.create_accounts();
        // Touch every page of the transfer stores once (fill to capacity, then clear), so
        // the measurement sees the steady state rather than first-touch page faults.
        while case.engine.transfers_count() as usize + BATCH_SIZE <= TRANSFERS_MAX as usize {
            case.prepare();
            case.engine
                .create_transfers(case.now, &case.batch, &mut case.results);
        }
        case.engine.clear();
        case.create_accounts();
        case
    }

    fn create_accounts(&mut self) {
        let mut accounts = Vec::with_capacity(BATCH_SIZE);
        let mut results = vec![CreateResult::default(); BATCH_SIZE];
        let mut id = 1u64;
        while id <= self.accounts_count {
            accounts.clear();
            while accounts.len() < BATCH_SIZE && id <= self.accounts_count {
                accounts.push(Account {
                    id: u128::from(id),
                    ledger: 1,
                    code: 1,
                    ..Account::default()
                });
                id += 1;
            }
            self.now += accounts.len() as u64 + 1;
            let results = &mut results[..accounts.len()];
            self.engine.create_accounts(self.now, &accounts, results);
            assert!(results
                .iter()
                .all(|r| r.status == CreateResult::STATUS_CREATED));
        }
    }

    fn account(&mut self) -> u128 {
        u128::from(1 + self.random.next_u64() % self.accounts_count)
    }

    /// Writes the next batch (fresh ids, random accounts).
    fn prepare(&mut self) {
        if self.engine.transfers_count() as usize + BATCH_SIZE > TRANSFERS_MAX as usize {
            self.engine.clear();
            self.create_accounts();
        }
        for index in 0..BATCH_SIZE {
            let debit = self.account();
            let mut credit = self.account();
            if credit == debit {
                credit = debit % u128::from(self.accounts_count) + 1;
            }
            let id = self.next_id + index as u128;
            let mut transfer = Transfer {
                id,
                debit_account_id: debit,
                credit_account_id: credit,
                amount: 1 + u128::from(self.random.next_u64() % 1000),
                ledger: 1,
                code: 1,
                ..Transfer::default()
            };
            match self.kind {
                Kind::SinglePhase => {}
                Kind::TwoPhase => {
                    let half = BATCH_SIZE / 2;
                    if index < half {
                        transfer.flags = TransferFlags::PENDING;
                    } else {
                        transfer = Transfer {
                            id,
                            pending_id: self.next_id + (index - half) as u128,
                            amount: u128::MAX,
                            flags: TransferFlags::POST_PENDING_TRANSFER,
                            ..Transfer::default()
                        };
                    }
                }
                Kind::Linked => {
                    if (index + 1) % CHAIN_SIZE != 0 && index + 1 != BATCH_SIZE {
                        transfer.flags = TransferFlags::LINKED;
                    }
                }
            }
            self.batch[index] = transfer;
        }
        self.next_id += BATCH_SIZE as u128;
        self.now += BATCH_SIZE as u64 + 1;
    }

    fn run(&mut self, iterations: u64) -> Duration {
        let mut elapsed = Duration::ZERO;
        for _ in 0..iterations {
            self.prepare();
            let start = Instant::now();
            self.engine
                .create_transfers(self.now, black_box(&self.batch), &mut self.results);
            elapsed += start.elapsed();
            assert_eq!(
                self.results[BATCH_SIZE - 1].status,
                CreateResult::STATUS_CREATED
            );
        }
        elapsed
    }
}

fn create_transfers(c: &mut Criterion) {
    let mut group = c.benchmark_group("create_transfers");
    group.throughput(Throughput::Elements(BATCH_SIZE as u64));
    group.sample_size(20);

    let source = vec![
        Transfer {
            id: 1,
            amount: 5,
            ledger: 1,
            code: 1,
            ..Transfer::default()
        };
        BATCH_SIZE
    ];
    let mut target = vec![Transfer::default(); BATCH_SIZE];
    group.bench_function("baseline_copy_batch", |b| {
        b.iter(|| target.copy_from_slice(black_box(&source)))
    });
    black_box(&target);

    let cases = [
        ("accounts_10k", 10_000, Kind::SinglePhase),
        ("accounts_1m_random", 1_000_000, Kind::SinglePhase),
        ("two_phase_10k", 10_000, Kind::TwoPhase),
        ("linked_chains_of_8_10k", 10_000, Kind::Linked),
    ];
    for (name, accounts_count, kind) in cases {
        let mut case = Case::new(accounts_count, kind);
        eprintln!(
            "{name}: {} bytes per stored transfer",
            case.engine.bytes_per_transfer()
        );
        group.bench_function(name, |b| b.iter_custom(|iterations| case.run(iterations)));
    }
    group.finish();
}

criterion_group!(benches, create_transfers);
criterion_main!(benches);
