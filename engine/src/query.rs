//! Read operations of the ledger (docs/ledger.md, Queries): lookups by id, an account's
//! transfers and balance history, and queries over all accounts or transfers.
//!
//! Invalid filters select nothing (they are not errors). Every filtered query writes at most
//! `min(limit, query_results_max, out.capacity())` items and never grows `out`, so queries
//! allocate nothing. Lookups push one item per id found (at most `ids.len()`): callers that
//! must not allocate reserve that much. Ascending per-account results are produced from the
//! newest-first lists without extra memory: one pass counts the matches, a second pass skips the
//! newest surplus and pushes the rest, which are then reversed in place.

use crate::account::{Account, AccountBalance, AccountFilter, AccountFilterFlags};
use crate::ledger::Ledger;
use crate::limits::TIMESTAMP_MAX;
use crate::transfer::{QueryFilter, Transfer};
use crate::NO_POSITION;

/// Whether an optional timestamp bound is valid (0 = unbounded).
fn timestamp_bound_valid(timestamp: u64) -> bool {
    timestamp <= TIMESTAMP_MAX
}

fn range_valid(minimum: u64, maximum: u64) -> bool {
    timestamp_bound_valid(minimum)
        && timestamp_bound_valid(maximum)
        && (maximum == 0 || minimum <= maximum)
}

fn in_range(timestamp: u64, minimum: u64, maximum: u64) -> bool {
    timestamp >= minimum && (maximum == 0 || timestamp <= maximum)
}

impl AccountFilter {
    /// Whether the filter is valid (docs/ledger.md, Queries): an account id that is neither 0
    /// nor `u128::MAX`, zero reserved bytes, a timestamp range within `TIMESTAMP_MAX` whose
    /// minimum is not above its maximum, a limit, no padding flag and at least one side. An
    /// invalid filter selects nothing; the history store applies the same rule.
    pub fn is_valid(&self) -> bool {
        self.account_id != 0
            && self.account_id != u128::MAX
            && self.reserved.iter().all(|byte| *byte == 0)
            && range_valid(self.timestamp_min, self.timestamp_max)
            && self.limit != 0
            && !self.flags().padding()
            && self.flags & (AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS) != 0
    }
}

impl AccountFilter {
    /// Whether `transfer` has the user data and code the filter asks for (0: any value). The
    /// side and the timestamp range are checked apart. The history store applies the same rule.
    pub fn fields_match(&self, transfer: &Transfer) -> bool {
        (self.user_data_128 == 0 || transfer.user_data_128 == self.user_data_128)
            && (self.user_data_64 == 0 || transfer.user_data_64 == self.user_data_64)
            && (self.user_data_32 == 0 || transfer.user_data_32 == self.user_data_32)
            && (self.code == 0 || transfer.code == self.code)
    }
}

impl QueryFilter {
    /// Whether `transfer` has the user data, ledger and code the filter asks for (0: any
    /// value); the timestamp range is checked apart. The history store applies the same rule.
    pub fn selects_transfer(&self, transfer: &Transfer) -> bool {
        self.fields_match(transfer.query_fields())
    }

    /// The field conditions of `selects_transfer` on a record's `(user_data_128,
    /// user_data_64, user_data_32, ledger, code)`.
    fn fields_match(
        &self,
        (user_data_128, user_data_64, user_data_32, ledger, code): Fields,
    ) -> bool {
        (self.user_data_128 == 0 || user_data_128 == self.user_data_128)
            && (self.user_data_64 == 0 || user_data_64 == self.user_data_64)
            && (self.user_data_32 == 0 || user_data_32 == self.user_data_32)
            && (self.ledger == 0 || ledger == self.ledger)
            && (self.code == 0 || code == self.code)
    }

    /// Whether the filter is valid (docs/ledger.md, Queries): zero reserved bytes, a valid
    /// timestamp range, a limit and no padding flag. An invalid filter selects nothing.
    pub fn is_valid(&self) -> bool {
        self.reserved.iter().all(|byte| *byte == 0)
            && range_valid(self.timestamp_min, self.timestamp_max)
            && self.limit != 0
            && !self.flags().padding()
    }
}

impl Ledger {
    fn results_max(&self, limit: u32, capacity: usize) -> usize {
        (limit.min(self.config.query_results_max) as usize).min(capacity)
    }

    pub(crate) fn lookup_accounts(&self, ids: &[u128], out: &mut Vec<Account>) {
        out.clear();
        for id in ids {
            if let Some(position) = self.account_position(*id) {
                out.push(self.accounts[position as usize]);
            }
        }
    }

    pub(crate) fn lookup_transfers(&self, ids: &[u128], out: &mut Vec<Transfer>) {
        out.clear();
        for id in ids {
            if let Some(position) = self.transfer_position(*id) {
                out.push(self.transfers[position as usize]);
            } else if let Some(history) = self.history.as_deref() {
                if history.evicted_through > 0 && history.filter_may_contain(*id) {
                    let stored = history.reader.transfer(*id, false);
                    out.extend(stored.filter(|t| t.timestamp <= history.evicted_through));
                }
            }
        }
    }

    /// In history mode, the parts of an account query that memory (timestamps above the
    /// eviction watermark) and the store (at or below it) answer: `(memory, store)`, either
    /// `None` when its range is empty. Outside history mode memory answers all of it.
    fn split_account_filter(
        &self,
        filter: &AccountFilter,
    ) -> (Option<AccountFilter>, Option<AccountFilter>) {
        let evicted = self.history_evicted_through();
        let (memory, store) = split_range(filter.timestamp_min, filter.timestamp_max, evicted);
        let part = |(minimum, maximum)| AccountFilter {
            timestamp_min: minimum,
            timestamp_max: maximum,
            ..*filter
        };
        (memory.map(part), store.map(part))
    }

    /// Whether `transfer` matches the filter's side and field conditions for `account_id`.
    fn account_transfer_matches(filter: &AccountFilter, transfer: &Transfer) -> bool {
        let side = (filter.flags().debits() && transfer.debit_account_id == filter.account_id)
            || (filter.flags().credits() && transfer.credit_account_id == filter.account_id);
        side && filter.fields_match(transfer)
    }

    /// Visits the transfers of `filter.account_id` newest first, stopping below
    /// `filter.timestamp_min`; `visit` returns false to stop early.
    fn walk_account_transfers(
        &self,
        filter: &AccountFilter,
        newest: u32,
        mut visit: impl FnMut(u32, &Transfer) -> bool,
    ) {
        let (account_id, timestamp_min) = (filter.account_id, filter.timestamp_min);
        let mut cursor = newest;
        while cursor != NO_POSITION {
            let transfer = &self.transfers[cursor as usize];
            if transfer.timestamp < timestamp_min {
                return;
            }
            if !visit(cursor, transfer) {
                return;
            }
            let meta = &self.transfer_meta[cursor as usize];
            cursor = if transfer.debit_account_id == account_id {
                meta.debit_previous
            } else {
                meta.credit_previous
            };
        }
    }

    /// Positions (in `transfers`) of the filter's selection, pushed through `emit` in the
    /// requested order, at most `results_max`.
    fn select_account_transfers(
        &self,
        filter: &AccountFilter,
        newest: u32,
        results_max: usize,
        mut emit: impl FnMut(u32, &Transfer),
    ) -> usize {
        let matches = |transfer: &Transfer| {
            in_range(
                transfer.timestamp,
                filter.timestamp_min,
                filter.timestamp_max,
            ) && Self::account_transfer_matches(filter, transfer)
        };
        if results_max == 0 {
            return 0;
        }
        // The walk is newest first; oldest first skips the newest matches beyond the limit.
        let mut skip = 0usize;
        if !filter.flags().reversed() {
            let mut matched = 0usize;
            self.walk_account_transfers(filter, newest, |_, transfer| {
                matched += usize::from(matches(transfer));
                true
            });
            skip = matched.saturating_sub(results_max);
        }
        let mut emitted = 0usize;
        self.walk_account_transfers(filter, newest, |position, transfer| {
            if matches(transfer) {
                if skip > 0 {
                    skip -= 1;
                } else {
                    emit(position, transfer);
                    emitted += 1;
                }
            }
            emitted < results_max
        });
        emitted
    }

    pub(crate) fn get_account_transfers(&self, filter: &AccountFilter, out: &mut Vec<Transfer>) {
        out.clear();
        if !filter.is_valid() {
            return;
        }
        let Some(account) = self.account_position(filter.account_id) else {
            return;
        };
        let newest = self.account_meta[account as usize].transfer_newest;
        let results_max = self.results_max(filter.limit, out.capacity());
        let (memory, store) = self.split_account_filter(filter);
        let reversed = filter.flags().reversed();
        let from_store = |limit, out: &mut Vec<Transfer>| {
            if let (Some(store), Some(history)) = (store, self.history.as_deref()) {
                history
                    .reader
                    .account_transfers(&AccountFilter { limit, ..store }, out);
            }
        };
        let from_memory = |memory_max, out: &mut Vec<Transfer>| {
            if let Some(memory) = memory {
                let start = out.len();
                self.select_account_transfers(&memory, newest, memory_max, |_, transfer| {
                    out.push(*transfer)
                });
                if !reversed {
                    out[start..].reverse();
                }
            }
        };
        merge_halves(reversed, results_max, out, from_store, from_memory);
    }

    pub(crate) fn get_account_balances(
        &self,
        filter: &AccountFilter,
        out: &mut Vec<AccountBalance>,
    ) {
        out.clear();
        if !filter.is_valid() {
            return;
        }
        let Some(account) = self.account_position(filter.account_id) else {
            return;
        };
        if !self.accounts[account as usize].flags().history() {
            return;
        }
        let results_max = self.results_max(filter.limit, out.capacity());
        let (memory, store) = self.split_account_filter(filter);
        let reversed = filter.flags().reversed();
        let from_store = |limit, out: &mut Vec<AccountBalance>| {
            if let (Some(store), Some(history)) = (store, self.history.as_deref()) {
                history
                    .reader
                    .account_balances(&AccountFilter { limit, ..store }, out);
            }
        };
        let from_memory = |memory_max, out: &mut Vec<AccountBalance>| {
            if let Some(memory) = memory {
                let start = out.len();
                self.memory_account_balances(account, &memory, memory_max, out);
                if !reversed {
                    out[start..].reverse();
                }
            }
        };
        merge_halves(reversed, results_max, out, from_store, from_memory);
    }

    /// The account's balance rows held in memory that `filter` selects, newest first, at most
    /// `results_max`.
    fn memory_account_balances(
        &self,
        account: u32,
        filter: &AccountFilter,
        results_max: usize,
        out: &mut Vec<AccountBalance>,
    ) {
        // Rows are newest first and parallel to the account's transfers: walk both lists in
        // step so each selected transfer finds its row without a search.
        let mut row = self.account_meta[account as usize].balance_newest;
        let newest = self.account_meta[account as usize].transfer_newest;
        self.select_account_transfers(filter, newest, results_max, |position, _| {
            while row != NO_POSITION && self.balances[row as usize].transfer > position {
                row = self.balances[row as usize].previous;
            }
            assert!(
                row != NO_POSITION,
                "every transfer of a history account has a row"
            );
            let balance = &self.balances[row as usize];
            assert_eq!(balance.transfer, position);
            out.push(AccountBalance {
                debits_pending: balance.debits_pending,
                debits_posted: balance.debits_posted,
                credits_pending: balance.credits_pending,
                credits_posted: balance.credits_posted,
                timestamp: balance.timestamp,
                reserved: [0; 56],
            });
        });
    }

    pub(crate) fn query_accounts(&self, filter: &QueryFilter, out: &mut Vec<Account>) {
        self.query(&self.accounts, filter, out);
    }

    pub(crate) fn query_transfers(&self, filter: &QueryFilter, out: &mut Vec<Transfer>) {
        let Some(history) = self.history.as_deref() else {
            self.query(&self.transfers, filter, out);
            return;
        };
        out.clear();
        if !filter.is_valid() {
            return;
        }
        let results_max = self.results_max(filter.limit, out.capacity());
        let evicted = history.evicted_through;
        let (memory, store) = split_range(filter.timestamp_min, filter.timestamp_max, evicted);
        let reversed = filter.flags().reversed();
        let from_store = |limit, out: &mut Vec<Transfer>| {
            if let Some((timestamp_min, timestamp_max)) = store {
                let filter = QueryFilter {
                    timestamp_min,
                    timestamp_max,
                    limit,
                    ..*filter
                };
                history.reader.query_transfers(&filter, out);
            }
        };
        let from_memory = |memory_max: usize, out: &mut Vec<Transfer>| {
            if let Some((timestamp_min, timestamp_max)) = memory {
                let memory = QueryFilter {
                    timestamp_min,
                    timestamp_max,
                    ..*filter
                };
                self.query_into(&self.transfers, &memory, out.len() + memory_max, out);
            }
        };
        merge_halves(reversed, results_max, out, from_store, from_memory);
    }

    /// Clears `out` and pushes the records of the timestamp-sorted `store` that `filter`
    /// selects, in its order, at most `results_max`.
    fn query<Record: Queried>(
        &self,
        store: &[Record],
        filter: &QueryFilter,
        out: &mut Vec<Record>,
    ) {
        out.clear();
        if !filter.is_valid() {
            return;
        }
        let results_max = self.results_max(filter.limit, out.capacity());
        self.query_into(store, filter, results_max, out);
    }

    /// Appends to `out` the records of the timestamp-sorted `store` that `filter` selects, in
    /// its order, until `out` holds `results_max`.
    fn query_into<Record: Queried>(
        &self,
        store: &[Record],
        filter: &QueryFilter,
        results_max: usize,
        out: &mut Vec<Record>,
    ) {
        let selected = |record: &Record| filter.fields_match(record.query_fields());
        let range = timestamp_range(store, filter, Record::timestamp);
        let reversed = filter.flags().reversed();
        collect(&store[range], reversed, results_max, selected, out);
    }
}

/// An inclusive timestamp range `(minimum, maximum)`, 0 meaning unbounded.
type Range = (u64, u64);

/// Splits the timestamp range `[minimum, maximum]` (0: unbounded) at the eviction watermark
/// `evicted` into the part above it, answered by memory, and the part at or below it, answered
/// by the store: `(memory, store)`, each `None` when empty. With nothing evicted memory answers
/// the whole range.
fn split_range(minimum: u64, maximum: u64, evicted: u64) -> (Option<Range>, Option<Range>) {
    if evicted == 0 {
        return (Some((minimum, maximum)), None);
    }
    let memory = (maximum == 0 || maximum > evicted).then(|| (minimum.max(evicted + 1), maximum));
    let store = (minimum <= evicted).then(|| {
        let top = if maximum == 0 {
            evicted
        } else {
            maximum.min(evicted)
        };
        (minimum, top)
    });
    (memory, store)
}

/// A query in history mode from its two halves, at most `results_max` into `out`: the store's
/// (at or below the eviction watermark) first when oldest first, memory's first when
/// `reversed`, each with what is left of the limit. `from_store(limit, out)` and
/// `from_memory(results_max, out)` append their half in the query's order and do nothing when
/// their range is empty; the store is asked only while room is left.
fn merge_halves<T>(
    reversed: bool,
    results_max: usize,
    out: &mut Vec<T>,
    from_store: impl Fn(u32, &mut Vec<T>),
    from_memory: impl FnOnce(usize, &mut Vec<T>),
) {
    let store_half = |out: &mut Vec<T>| {
        let left = results_max.saturating_sub(out.len());
        if left > 0 {
            from_store(left.min(u32::MAX as usize) as u32, out);
            out.truncate(results_max);
        }
    };
    if !reversed {
        store_half(out);
    }
    from_memory(results_max.saturating_sub(out.len()), out);
    if reversed {
        store_half(out);
    }
}

/// The fields a `QueryFilter` selects on: `(user_data_128, user_data_64, user_data_32, ledger,
/// code)`.
type Fields = (u128, u64, u32, u32, u16);

/// A record that `query_accounts` or `query_transfers` selects with a `QueryFilter`.
trait Queried: Copy {
    /// `(user_data_128, user_data_64, user_data_32, ledger, code)`.
    fn query_fields(&self) -> Fields;
    fn timestamp(&self) -> u64;
}

/// Accounts and transfers name the queried fields alike.
macro_rules! queried {
    ($($record:ty),*) => {$(
        impl Queried for $record {
            fn query_fields(&self) -> Fields {
                (self.user_data_128, self.user_data_64, self.user_data_32, self.ledger, self.code)
            }
            fn timestamp(&self) -> u64 {
                self.timestamp
            }
        }
    )*};
}

queried!(Account, Transfer);

/// The index range of a timestamp-sorted store within the filter's bounds.
fn timestamp_range<T>(
    store: &[T],
    filter: &QueryFilter,
    timestamp: impl Fn(&T) -> u64,
) -> core::ops::Range<usize> {
    let start = store.partition_point(|item| timestamp(item) < filter.timestamp_min);
    let end = if filter.timestamp_max == 0 {
        store.len()
    } else {
        store.partition_point(|item| timestamp(item) <= filter.timestamp_max)
    };
    start..end.max(start)
}

fn collect<T: Copy>(
    items: &[T],
    reversed: bool,
    results_max: usize,
    selected: impl Fn(&T) -> bool,
    out: &mut Vec<T>,
) {
    if out.len() >= results_max {
        return;
    }
    let mut push = |item: &T| {
        if selected(item) {
            out.push(*item);
        }
        out.len() < results_max
    };
    if reversed {
        for item in items.iter().rev() {
            if !push(item) {
                return;
            }
        }
    } else {
        for item in items {
            if !push(item) {
                return;
            }
        }
    }
}
