//! Shared by the history store's tests: a seeded generator of every kind of history record cut
//! into runs, a naive in-memory model of the store's answers, and a temporary store.

#![allow(dead_code)] // Each test file uses a different part.

use std::path::Path;

use clearline_engine::{
    AccountBalance, AccountFilter, AccountFilterFlags, QueryFilter, QueryFilterFlags, Transfer,
    TransferFlags,
};
use clearline_history::{BalanceRow, BurnedId, History, HistoryConfig, Resolution, Run};
use clearline_history::{RunCapacity, Watermark};
use clearline_test_support::Rng;

pub const ACCOUNTS: u64 = 50;
pub const CACHE_BYTES: u64 = 8 << 20;

/// Whether the generator gives `account` balance rows (as the engine does for accounts
/// flagged `history`).
pub fn has_history(account: u128) -> bool {
    account.is_multiple_of(5)
}

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

/// Room for `events` events of the generator, whatever their kinds.
pub fn capacity(events: usize) -> RunCapacity {
    RunCapacity {
        transfers: events,
        burned_ids: events,
        resolutions: events,
        balances: 2 * events,
        ..RunCapacity::default()
    }
}

/// Random records with increasing timestamps (random gaps), 50 accounts, a few user data
/// values, ledgers and codes so that filters select something. Transfers are client or
/// settlement ones (a settlement id sometimes repeats a client id, as the namespaces allow),
/// some pending; burned ids, resolutions of earlier pending transfers and balance rows of the
/// accounts with history come in between.
pub struct Generator {
    pub rng: Rng,
    pub timestamp: u64,
    pub sequence: u64,
    /// Pending transfers not yet resolved: `(id, settlement)`.
    pending: Vec<(u128, bool)>,
    /// Recent client ids, for settlement transfers to reuse.
    client_ids: Vec<u128>,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: Rng::new(seed),
            timestamp: 1_000,
            sequence: 0,
            pending: Vec::new(),
            client_ids: Vec::new(),
        }
    }

    /// Mostly the next timestamp, as the engine gives a batch's events, sometimes a gap: the
    /// store keeps records in blocks of a bucket of 64 timestamps, both full and sparse.
    fn next_timestamp(&mut self) -> u64 {
        self.timestamp += if self.rng.chance(7, 8) {
            1
        } else {
            self.rng.range(1, 3_000)
        };
        self.timestamp
    }

    /// A fresh odd id (absent ids in the checks are even).
    fn fresh_id(&mut self) -> u128 {
        (u128::from(self.rng.next_u64()) << 64 | u128::from(self.rng.next_u64())) | 1
    }

    pub fn transfer(&mut self) -> Transfer {
        let debit_account_id = u128::from(self.rng.range(1, ACCOUNTS));
        let mut credit_account_id = u128::from(self.rng.range(1, ACCOUNTS));
        if credit_account_id == debit_account_id {
            credit_account_id = debit_account_id % u128::from(ACCOUNTS) + 1;
        }
        let timestamp = self.next_timestamp();
        let settlement = self.rng.chance(1, 5);
        let id = if settlement && !self.client_ids.is_empty() && self.rng.chance(1, 2) {
            // Each client id is reused at most once: once per namespace.
            let index = self.rng.below(self.client_ids.len() as u64) as usize;
            self.client_ids.swap_remove(index)
        } else {
            self.fresh_id()
        };
        let mut flags = if settlement {
            TransferFlags::SETTLEMENT
        } else {
            self.client_ids.push(id);
            if self.client_ids.len() > 64 {
                self.client_ids.remove(0);
            }
            0
        };
        if self.rng.chance(1, 6) {
            flags |= TransferFlags::PENDING;
            self.pending.push((id, settlement));
        }
        let rng = &mut self.rng;
        Transfer {
            id,
            debit_account_id,
            credit_account_id,
            amount: u128::from(rng.range(1, 1_000)),
            user_data_128: u128::from(rng.below(4)),
            user_data_64: rng.below(3),
            user_data_32: rng.below(3) as u32,
            ledger: rng.range(1, 2) as u32,
            code: rng.range(1, 3) as u16,
            flags,
            timestamp,
            ..Transfer::default()
        }
    }

    fn balance(&mut self, timestamp: u64) -> AccountBalance {
        AccountBalance {
            debits_pending: u128::from(self.rng.below(1_000)),
            debits_posted: u128::from(self.rng.next_u64()) << 40,
            credits_pending: u128::from(self.rng.below(1_000)),
            credits_posted: self.rng.next_u128(),
            timestamp,
            reserved: [0; 56],
        }
    }

    /// The next `count` events as a run, with the watermark that covers them (one journal
    /// record per event).
    pub fn run(&mut self, count: usize) -> (Run, Watermark) {
        let mut run = Run::with_capacity(capacity(count));
        self.fill(&mut run, count);
        (run, self.watermark())
    }

    /// Appends the next `count` events to `run`, and counts them as journal records.
    pub fn fill(&mut self, run: &mut Run, count: usize) {
        for _ in 0..count {
            match self.rng.below(100) {
                0..=7 => {
                    let (id, timestamp) = (self.fresh_id(), self.next_timestamp());
                    run.push_burned(id, timestamp)
                        .expect("run sized for its events");
                }
                8..=19 if !self.pending.is_empty() => {
                    let index = self.rng.below(self.pending.len() as u64) as usize;
                    let (id, settlement) = self.pending.swap_remove(index);
                    let status = self.rng.range(2, 4) as u8;
                    let timestamp = self.next_timestamp();
                    run.push_resolution(id, settlement, status, timestamp)
                        .expect("run sized for its events");
                }
                _ => {
                    let transfer = self.transfer();
                    run.push(&transfer).expect("run sized for its events");
                    for account in [transfer.debit_account_id, transfer.credit_account_id] {
                        if has_history(account) {
                            let row = self.balance(transfer.timestamp);
                            run.push_balance(account, &row).expect("run sized");
                        }
                    }
                }
            }
        }
        self.sequence += count as u64;
    }

    pub fn watermark(&self) -> Watermark {
        Watermark {
            sequence: self.sequence,
            timestamp: self.timestamp,
        }
    }
}

/// Appends to `into` every record of `run` with a timestamp at or above `from`.
pub fn push_from(run: &Run, from: u64, into: &mut Run) {
    for transfer in run.transfers().iter().filter(|t| t.timestamp >= from) {
        into.push(transfer).expect("capacity");
    }
    for burned in run.burned_ids().iter().filter(|b| b.timestamp >= from) {
        into.push_burned(burned.id, burned.timestamp)
            .expect("capacity");
    }
    for resolution in run.resolutions().iter().filter(|r| r.timestamp >= from) {
        let Resolution {
            id,
            settlement,
            status,
            timestamp,
        } = *resolution;
        into.push_resolution(id, settlement, status, timestamp)
            .expect("capacity");
    }
    for row in run
        .balances()
        .iter()
        .filter(|r| r.balance.timestamp >= from)
    {
        into.push_balance(row.account_id, &row.balance)
            .expect("capacity");
    }
}

/// Every record the store should hold, each kind in timestamp order.
#[derive(Default)]
pub struct Model {
    pub transfers: Vec<Transfer>,
    pub burned_ids: Vec<BurnedId>,
    pub resolutions: Vec<Resolution>,
    pub balances: Vec<BalanceRow>,
    /// The watermark's timestamp: records at or below it are not added again.
    pub watermark: u64,
}

impl Model {
    /// What ingesting `run` with `watermark` adds: its records above the model's watermark.
    pub fn add(&mut self, run: &Run, watermark: Watermark) {
        let above = self.watermark;
        let fresh = |timestamp: u64| timestamp > above;
        self.transfers.extend(
            run.transfers()
                .iter()
                .filter(|transfer| fresh(transfer.timestamp)),
        );
        self.burned_ids.extend(
            run.burned_ids()
                .iter()
                .filter(|burned| fresh(burned.timestamp)),
        );
        self.resolutions.extend(
            run.resolutions()
                .iter()
                .filter(|resolution| fresh(resolution.timestamp)),
        );
        self.balances.extend(
            run.balances()
                .iter()
                .filter(|row| fresh(row.balance.timestamp)),
        );
        self.watermark = self.watermark.max(watermark.timestamp);
    }

    pub fn transfer_in(&self, id: u128, settlement: bool) -> Option<Transfer> {
        self.transfers
            .iter()
            .find(|t| t.id == id && t.flags().settlement() == settlement)
            .copied()
    }

    pub fn transfer_at(&self, timestamp: u64) -> Option<Transfer> {
        let index = self
            .transfers
            .binary_search_by_key(&timestamp, |t| t.timestamp)
            .ok()?;
        Some(self.transfers[index])
    }

    pub fn burned(&self, id: u128) -> bool {
        self.burned_ids.iter().any(|burned| burned.id == id)
    }

    pub fn resolution(&self, id: u128, settlement: bool) -> Option<(u8, u64)> {
        self.resolutions
            .iter()
            .find(|r| r.id == id && r.settlement == settlement)
            .map(|r| (r.status, r.timestamp))
    }

    fn account_filter_valid(filter: &AccountFilter) -> bool {
        let flags = filter.flags;
        filter.account_id != 0
            && filter.account_id != u128::MAX
            && filter.limit != 0
            && flags & !0x7 == 0
            && flags & (AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS) != 0
            && (filter.timestamp_max == 0 || filter.timestamp_min <= filter.timestamp_max)
            && filter.timestamp_min < 1 << 63
            && filter.timestamp_max < 1 << 63
            && filter.reserved.iter().all(|byte| *byte == 0)
    }

    /// Whether `transfer` is one `filter` selects for its account (side, fields, range).
    fn account_selects(filter: &AccountFilter, t: &Transfer) -> bool {
        let flags = filter.flags;
        let debits =
            flags & AccountFilterFlags::DEBITS != 0 && t.debit_account_id == filter.account_id;
        let credits =
            flags & AccountFilterFlags::CREDITS != 0 && t.credit_account_id == filter.account_id;
        (debits || credits)
            && (filter.user_data_128 == 0 || t.user_data_128 == filter.user_data_128)
            && (filter.user_data_64 == 0 || t.user_data_64 == filter.user_data_64)
            && (filter.user_data_32 == 0 || t.user_data_32 == filter.user_data_32)
            && (filter.code == 0 || t.code == filter.code)
            && t.timestamp >= filter.timestamp_min
            && (filter.timestamp_max == 0 || t.timestamp <= filter.timestamp_max)
    }

    fn ordered<T>(mut selected: Vec<T>, reversed: bool, limit: u32) -> Vec<T> {
        if reversed {
            selected.reverse();
        }
        selected.truncate(limit as usize);
        selected
    }

    /// The engine's `get_account_transfers`, written the obvious way.
    pub fn account_transfers(&self, filter: &AccountFilter) -> Vec<Transfer> {
        if !Self::account_filter_valid(filter) {
            return Vec::new();
        }
        let selected = self
            .transfers
            .iter()
            .filter(|t| Self::account_selects(filter, t))
            .copied()
            .collect();
        let reversed = filter.flags & AccountFilterFlags::REVERSED != 0;
        Self::ordered(selected, reversed, filter.limit)
    }

    /// The engine's `get_account_balances`: the rows of the account whose transfers
    /// `account_transfers` selects.
    pub fn account_balances(&self, filter: &AccountFilter) -> Vec<AccountBalance> {
        if !Self::account_filter_valid(filter) {
            return Vec::new();
        }
        let mut selected: Vec<BalanceRow> = self
            .balances
            .iter()
            .filter(|row| row.account_id == filter.account_id)
            .filter(|row| {
                let transfer = self.transfer_at(row.balance.timestamp);
                transfer.is_some_and(|t| Self::account_selects(filter, &t))
            })
            .copied()
            .collect();
        selected.sort_by_key(|row| row.balance.timestamp);
        let rows = selected.iter().map(|row| row.balance).collect();
        let reversed = filter.flags & AccountFilterFlags::REVERSED != 0;
        Self::ordered(rows, reversed, filter.limit)
    }

    /// The engine's `query_transfers`, written the obvious way.
    pub fn query_transfers(&self, filter: &QueryFilter) -> Vec<Transfer> {
        let valid = filter.reserved.iter().all(|byte| *byte == 0)
            && filter.limit != 0
            && filter.flags & !QueryFilterFlags::REVERSED == 0
            && filter.timestamp_min < 1 << 63
            && filter.timestamp_max < 1 << 63
            && (filter.timestamp_max == 0 || filter.timestamp_min <= filter.timestamp_max);
        if !valid {
            return Vec::new();
        }
        let selected = self
            .transfers
            .iter()
            .filter(|t| {
                (filter.user_data_128 == 0 || t.user_data_128 == filter.user_data_128)
                    && (filter.user_data_64 == 0 || t.user_data_64 == filter.user_data_64)
                    && (filter.user_data_32 == 0 || t.user_data_32 == filter.user_data_32)
                    && (filter.ledger == 0 || t.ledger == filter.ledger)
                    && (filter.code == 0 || t.code == filter.code)
                    && t.timestamp >= filter.timestamp_min
                    && (filter.timestamp_max == 0 || t.timestamp <= filter.timestamp_max)
            })
            .copied()
            .collect();
        let reversed = filter.flags & QueryFilterFlags::REVERSED != 0;
        Self::ordered(selected, reversed, filter.limit)
    }

    /// A timestamp bound over the model's span: 0, any value, or often exactly a stored
    /// timestamp or one off it, to test inclusiveness.
    fn bound(&self, rng: &mut Rng) -> u64 {
        let first = self.transfers.first().map_or(0, |t| t.timestamp);
        let last = self.transfers.last().map_or(0, |t| t.timestamp);
        match rng.below(4) {
            0 => 0,
            1 => rng.range(first.saturating_sub(10), last + 10),
            _ if self.transfers.is_empty() => 0,
            _ => {
                let index = rng.below(self.transfers.len() as u64) as usize;
                (self.transfers[index].timestamp + rng.range(0, 2)).saturating_sub(1)
            }
        }
    }

    fn range(&self, rng: &mut Rng) -> (u64, u64) {
        let (mut minimum, mut maximum) = (self.bound(rng), self.bound(rng));
        if maximum != 0 && minimum > maximum && !rng.chance(1, 30) {
            std::mem::swap(&mut minimum, &mut maximum); // Else invalid: selects nothing.
        }
        if rng.chance(1, 60) {
            maximum = 1 << 63; // Beyond TIMESTAMP_MAX: invalid.
        }
        (minimum, maximum)
    }

    fn limit(rng: &mut Rng) -> u32 {
        if rng.chance(1, 3) {
            rng.range(1, 5) as u32
        } else if rng.chance(1, 40) {
            0 // Invalid.
        } else {
            rng.range(1, 10_000) as u32
        }
    }

    /// A random account filter over the model's span: any side mix, some fields set, ranges
    /// that cut runs, small and large limits, sometimes invalid in each way the engine checks.
    pub fn random_filter(&self, rng: &mut Rng) -> AccountFilter {
        let (timestamp_min, timestamp_max) = self.range(rng);
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
        if rng.chance(1, 40) {
            flags |= 1 << rng.range(3, 31); // A padding bit: invalid.
        }
        let field = |rng: &mut Rng, values: u64| {
            if rng.chance(1, 4) {
                rng.below(values)
            } else {
                0
            }
        };
        let mut filter = AccountFilter {
            account_id: if rng.chance(1, 30) {
                u128::from(ACCOUNTS + 7) // Never used.
            } else if rng.chance(1, 3) {
                u128::from(rng.range(1, ACCOUNTS / 5)) * 5 // With history.
            } else {
                u128::from(rng.range(1, ACCOUNTS))
            },
            user_data_128: u128::from(field(rng, 4)),
            user_data_64: field(rng, 3),
            user_data_32: field(rng, 3) as u32,
            code: field(rng, 3) as u16,
            timestamp_min,
            timestamp_max,
            limit: Self::limit(rng),
            flags,
            ..AccountFilter::default()
        };
        if rng.chance(1, 40) {
            let index = rng.below(filter.reserved.len() as u64) as usize;
            filter.reserved[index] = 1; // Invalid.
        }
        filter
    }

    /// A random query filter over the model's span, sometimes invalid.
    pub fn random_query(&self, rng: &mut Rng) -> QueryFilter {
        let (timestamp_min, timestamp_max) = self.range(rng);
        let field = |rng: &mut Rng, values: u64| {
            if rng.chance(1, 3) {
                rng.below(values)
            } else {
                0
            }
        };
        let mut flags = if rng.chance(1, 2) {
            QueryFilterFlags::REVERSED
        } else {
            0
        };
        if rng.chance(1, 40) {
            flags |= 1 << rng.range(1, 31); // A padding bit: invalid.
        }
        let mut filter = QueryFilter {
            user_data_128: u128::from(field(rng, 4)),
            user_data_64: field(rng, 3),
            user_data_32: field(rng, 3) as u32,
            ledger: field(rng, 3) as u32,
            code: field(rng, 4) as u16,
            timestamp_min,
            timestamp_max,
            limit: Self::limit(rng),
            flags,
            ..QueryFilter::default()
        };
        if rng.chance(1, 40) {
            filter.reserved[rng.below(6) as usize] = 1; // Invalid.
        }
        filter
    }
}

/// Compares every kind of answer of `history` with `model`: each transfer by id in both
/// namespaces and by timestamp, some absent ids and timestamps, one batch by id, every burned
/// id and resolution, and `queries` random filters of each query (account transfers, account
/// balances, query transfers). With `queries` 0 only what the model holds is checked, and
/// absent ids, so records above the watermark (after a crash) may be present.
pub fn check_against_model(history: &History, model: &Model, rng: &mut Rng, queries: usize) {
    let exact = queries > 0;
    let mut ids: Vec<u128> = Vec::new();
    for transfer in &model.transfers {
        let settlement = transfer.flags().settlement();
        let (id, timestamp) = (transfer.id, transfer.timestamp);
        assert_eq!(
            history.transfer_in(id, settlement).ok(),
            Some(Some(*transfer))
        );
        assert_eq!(history.transfer_at(timestamp).ok(), Some(Some(*transfer)));
        ids.push(id);
        if !exact {
            continue; // Records above the watermark may name this id.
        }
        let other = model.transfer_in(id, !settlement);
        assert_eq!(
            history.transfer_in(id, !settlement).ok(),
            Some(other),
            "{id}"
        );
        assert_eq!(
            history.transfer(id).ok(),
            Some(model.transfer_in(id, false))
        );
        assert_eq!(history.burned(id).ok(), Some(model.burned(id)));
        for namespace in [false, true] {
            let expected = model.resolution(id, namespace);
            assert_eq!(
                history.resolution(id, namespace).ok(),
                Some(expected),
                "{id}"
            );
        }
    }
    for burned in &model.burned_ids {
        assert_eq!(history.burned(burned.id).ok(), Some(true));
        assert_eq!(history.transfer_in(burned.id, false).ok(), Some(None));
        assert_eq!(history.transfer_at(burned.timestamp).ok(), Some(None));
    }
    for resolution in &model.resolutions {
        let found = history.resolution(resolution.id, resolution.settlement);
        let expected = (resolution.status, resolution.timestamp);
        assert_eq!(found.ok(), Some(Some(expected)));
    }
    for pair in model.transfers.windows(2).take(200) {
        // Between two stored transfers, below the watermark: nothing else is a transfer.
        let gap = pair[0].timestamp + 1;
        if gap < pair[1].timestamp {
            assert_eq!(history.transfer_at(gap).ok(), Some(None));
        }
    }
    for _ in 0..50 {
        let absent = u128::from(rng.next_u64()) << 1; // Even: generated ids are odd.
        for namespace in [false, true] {
            assert_eq!(history.transfer_in(absent, namespace).ok(), Some(None));
            assert_eq!(history.resolution(absent, namespace).ok(), Some(None));
        }
        assert_eq!(history.burned(absent).ok(), Some(false));
        ids.push(absent);
    }
    // Request order, not storage order.
    for index in (1..ids.len()).rev() {
        ids.swap(index, rng.below(index as u64 + 1) as usize);
    }
    let mut found = Vec::new();
    assert!(history.transfers_by_id(&ids, &mut found).is_ok());
    let expected: Vec<Transfer> = ids
        .iter()
        .filter_map(|id| model.transfer_in(*id, false))
        .collect();
    assert_eq!(found, expected);

    let mut transfers = Vec::new();
    let mut balances = Vec::new();
    for query in 0..queries {
        let filter = model.random_filter(rng);
        transfers.clear();
        if let Err(error) = history.account_transfers(&filter, &mut transfers) {
            panic!("query {query} {filter:?}: {error}");
        }
        let expected = model.account_transfers(&filter);
        assert_eq!(transfers.len(), expected.len(), "query {query} {filter:?}");
        assert!(transfers == expected, "query {query} {filter:?}");

        balances.clear();
        if let Err(error) = history.account_balances(&filter, &mut balances) {
            panic!("balances {query} {filter:?}: {error}");
        }
        let expected = model.account_balances(&filter);
        assert_eq!(
            balances.len(),
            expected.len(),
            "balances {query} {filter:?}"
        );
        assert!(balances == expected, "balances {query} {filter:?}");

        let filter = model.random_query(rng);
        transfers.clear();
        if let Err(error) = history.query_transfers(&filter, &mut transfers) {
            panic!("query_transfers {query} {filter:?}: {error}");
        }
        let expected = model.query_transfers(&filter);
        assert_eq!(
            transfers.len(),
            expected.len(),
            "query_transfers {query} {filter:?}"
        );
        assert!(transfers == expected, "query_transfers {query} {filter:?}");
    }
}
