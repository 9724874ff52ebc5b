//! Shared by the history store's tests: a seeded generator of transfers cut into runs, a naive
//! in-memory model of the store's answers, and a temporary store.

#![allow(dead_code)] // Each test file uses a different part.

use std::path::Path;

use clearline_engine::{AccountFilter, AccountFilterFlags, Transfer};
use clearline_history::{History, HistoryConfig, Run, Watermark};
use clearline_test_support::Rng;

pub const ACCOUNTS: u64 = 50;
pub const CACHE_BYTES: u64 = 8 << 20;

pub fn open(directory: &Path) -> History {
    let config = HistoryConfig {
        directory: directory.to_path_buf(),
        cache_bytes: CACHE_BYTES,
    };
    match History::open(&config) {
        Ok(history) => history,
        Err(error) => panic!("open {}: {error}", directory.display()),
    }
}

/// Random transfers with increasing timestamps (random gaps), 50 accounts, a few user data
/// values and codes so that filters select something.
pub struct Generator {
    pub rng: Rng,
    pub timestamp: u64,
    pub sequence: u64,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: Rng::new(seed),
            timestamp: 1_000,
            sequence: 0,
        }
    }

    pub fn transfer(&mut self) -> Transfer {
        let rng = &mut self.rng;
        let debit_account_id = u128::from(rng.range(1, ACCOUNTS));
        let mut credit_account_id = u128::from(rng.range(1, ACCOUNTS));
        if credit_account_id == debit_account_id {
            credit_account_id = debit_account_id % u128::from(ACCOUNTS) + 1;
        }
        self.timestamp += rng.range(1, 3_000);
        let id = (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())) | 1;
        Transfer {
            id,
            debit_account_id,
            credit_account_id,
            amount: u128::from(rng.range(1, 1_000)),
            user_data_128: u128::from(rng.below(4)),
            user_data_64: rng.below(3),
            user_data_32: rng.below(3) as u32,
            ledger: 1,
            code: rng.range(1, 3) as u16,
            timestamp: self.timestamp,
            ..Transfer::default()
        }
    }

    /// The next `count` transfers as a run, with the watermark that covers them (one journal
    /// record per transfer).
    pub fn run(&mut self, count: usize) -> (Run, Watermark) {
        let mut run = Run::with_capacity(count);
        for _ in 0..count {
            let transfer = self.transfer();
            run.push(&transfer).expect("run sized for its transfers");
        }
        self.sequence += count as u64;
        (run, self.watermark())
    }

    pub fn watermark(&self) -> Watermark {
        Watermark {
            sequence: self.sequence,
            timestamp: self.timestamp,
        }
    }
}

/// Every transfer the store should hold, in timestamp order.
#[derive(Default)]
pub struct Model {
    pub transfers: Vec<Transfer>,
}

impl Model {
    pub fn add(&mut self, run: &Run) {
        for transfer in run.transfers() {
            if self
                .transfers
                .last()
                .is_none_or(|last| last.timestamp < transfer.timestamp)
            {
                self.transfers.push(*transfer);
            }
        }
    }

    pub fn transfer(&self, id: u128) -> Option<Transfer> {
        self.transfers
            .iter()
            .find(|transfer| transfer.id == id)
            .copied()
    }

    /// The engine's `get_account_transfers`, written the obvious way.
    pub fn account_transfers(&self, filter: &AccountFilter) -> Vec<Transfer> {
        let flags = filter.flags;
        let valid = filter.account_id != 0
            && filter.account_id != u128::MAX
            && filter.limit != 0
            && flags & !0x7 == 0
            && flags & (AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS) != 0
            && (filter.timestamp_max == 0 || filter.timestamp_min <= filter.timestamp_max)
            && filter.reserved.iter().all(|byte| *byte == 0);
        if !valid {
            return Vec::new();
        }
        let mut selected: Vec<Transfer> = self
            .transfers
            .iter()
            .filter(|t| {
                let debits = flags & AccountFilterFlags::DEBITS != 0
                    && t.debit_account_id == filter.account_id;
                let credits = flags & AccountFilterFlags::CREDITS != 0
                    && t.credit_account_id == filter.account_id;
                (debits || credits)
                    && (filter.user_data_128 == 0 || t.user_data_128 == filter.user_data_128)
                    && (filter.user_data_64 == 0 || t.user_data_64 == filter.user_data_64)
                    && (filter.user_data_32 == 0 || t.user_data_32 == filter.user_data_32)
                    && (filter.code == 0 || t.code == filter.code)
                    && t.timestamp >= filter.timestamp_min
                    && (filter.timestamp_max == 0 || t.timestamp <= filter.timestamp_max)
            })
            .copied()
            .collect();
        if flags & AccountFilterFlags::REVERSED != 0 {
            selected.reverse();
        }
        selected.truncate(filter.limit as usize);
        selected
    }

    /// A random filter over the model's span: any side mix, some fields set, ranges that cut
    /// runs, small and large limits, sometimes invalid.
    pub fn random_filter(&self, rng: &mut Rng) -> AccountFilter {
        let first = self.transfers.first().map_or(0, |t| t.timestamp);
        let last = self.transfers.last().map_or(0, |t| t.timestamp);
        // Bounds are often exactly a stored timestamp, or one off it, to test inclusiveness.
        let transfers = &self.transfers;
        let mut timestamp = || match rng.below(4) {
            0 => 0,
            1 => rng.range(first.saturating_sub(10), last + 10),
            _ if transfers.is_empty() => 0,
            _ => {
                let index = rng.below(transfers.len() as u64) as usize;
                (transfers[index].timestamp + rng.range(0, 2)).saturating_sub(1)
            }
        };
        let (mut timestamp_min, mut timestamp_max) = (timestamp(), timestamp());
        if timestamp_max != 0 && timestamp_min > timestamp_max {
            std::mem::swap(&mut timestamp_min, &mut timestamp_max);
        }
        let sides = [
            AccountFilterFlags::DEBITS,
            AccountFilterFlags::CREDITS,
            AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS,
        ];
        let mut flags = rng.pick(&sides);
        if rng.chance(1, 2) {
            flags |= AccountFilterFlags::REVERSED;
        }
        if rng.chance(1, 40) {
            flags = AccountFilterFlags::REVERSED; // No side: invalid, selects nothing.
        }
        let field = |rng: &mut Rng, values: u64| {
            if rng.chance(1, 4) {
                rng.below(values)
            } else {
                0
            }
        };
        AccountFilter {
            account_id: if rng.chance(1, 30) {
                u128::from(ACCOUNTS + 7) // Never used.
            } else {
                u128::from(rng.range(1, ACCOUNTS))
            },
            user_data_128: u128::from(field(rng, 4)),
            user_data_64: field(rng, 3),
            user_data_32: field(rng, 3) as u32,
            code: field(rng, 3) as u16,
            timestamp_min,
            timestamp_max,
            limit: if rng.chance(1, 3) {
                rng.range(1, 5) as u32
            } else if rng.chance(1, 40) {
                0 // Invalid.
            } else {
                rng.range(1, 10_000) as u32
            },
            flags,
            ..AccountFilter::default()
        }
    }
}

/// Compares every kind of answer of `history` with `model`: each id (and some absent ones)
/// singly and in one batch, and `queries` random account filters.
pub fn check_against_model(history: &History, model: &Model, rng: &mut Rng, queries: usize) {
    let mut ids: Vec<u128> = model.transfers.iter().map(|t| t.id).collect();
    for transfer in &model.transfers {
        assert_eq!(history.transfer(transfer.id).ok(), Some(Some(*transfer)));
    }
    for _ in 0..50 {
        let absent = u128::from(rng.next_u64()) << 1; // Even: generated ids are odd.
        assert_eq!(history.transfer(absent).ok(), Some(None));
        ids.push(absent);
    }
    // Request order, not storage order.
    for index in (1..ids.len()).rev() {
        ids.swap(index, rng.below(index as u64 + 1) as usize);
    }
    let mut found = Vec::new();
    assert!(history.transfers_by_id(&ids, &mut found).is_ok());
    let expected: Vec<Transfer> = ids.iter().filter_map(|id| model.transfer(*id)).collect();
    assert_eq!(found, expected);

    let mut out = Vec::new();
    for query in 0..queries {
        let filter = model.random_filter(rng);
        out.clear();
        if let Err(error) = history.account_transfers(&filter, &mut out) {
            panic!("query {query} {filter:?}: {error}");
        }
        let expected = model.account_transfers(&filter);
        assert_eq!(out.len(), expected.len(), "query {query} {filter:?}");
        assert!(out == expected, "query {query} {filter:?}");
    }
}
