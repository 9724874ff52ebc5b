//! The ledger: accounts, transfers, pending transfers, burned ids and balance history, with the
//! create operations, expiry and whole-state checks. Queries are in query.rs.
//!
//! Semantics are those of docs/ledger.md (TigerBeetle 0.17's rules): every check of its
//! evaluation order in that order, idempotency, linked chains, two-phase transfers and expiry,
//! balancing, closing and overflow, timestamps. Where the reference has a sharp edge
//! (docs/ledger.md, where clearline differs) the choice made here is documented at the check.
//!
//! Storage (all allocated to capacity in `Ledger::new`, never grown):
//! - `accounts` and `transfers` are dense stores in insertion order, which is also strictly
//!   increasing timestamp order; ids map to positions through `IdIndex` hash indexes;
//! - `account_meta[a]` heads two newest-first lists: the account's transfers (linked through
//!   `TransferMeta::{debit,credit}_previous`) and its balance history rows (`BalanceRow`);
//! - `orphans` holds ids burned by transient failures; the transfer index maps them with
//!   `ORPHAN_BIT` set;
//! - `expiry` queues unresolved pending transfers with a timeout;
//! - `undo` records every change made by the members of the current linked chain, so a failing
//!   chain is rolled back exactly (it holds at most `UNDO_PER_EVENT` entries per event).
//!
//! Invariants (checked by `verify`): per ledger, total debits equal total credits for both
//! pending and posted amounts; no account breaks its limit flag; every index entry points at the
//! record with its id; each account's lists hold exactly its transfers and rows; the number of
//! unresolved pending transfers matches their statuses and the expiry queue.
//!
//! Nothing here panics on client input: client values are only compared, clamped or added with
//! `checked_add`; assertions guard our own invariants.

use crate::account::{Account, AccountFlags};
use crate::checkpoint::{CheckpointError, ImageReader, ImageWriter};
use crate::digest::Digest;
use crate::expiry::{ExpiryEntry, ExpiryQueue};
use crate::history::{HistoryRead, Resolution};
use crate::id_filter::{AsideIds, IdFilter};
use crate::index::{IdIndex, Vacancy};
use crate::limits::{Config, NS_PER_SECOND, PULSE_EXPIRIES_MAX, TIMESTAMP_MAX};
use crate::result::{CreateAccountStatus, CreateResult, CreateTransferStatus};
use crate::transfer::{Transfer, TransferFlags};
use crate::NO_POSITION;

mod eviction;
mod reservation;

/// Marks transfer index entries that point into `orphans` rather than `transfers`.
const ORPHAN_BIT: u32 = 1 << 31;

/// The most undo entries one event can produce (a post: two accounts, status, expiry removal,
/// transfer, two history rows).
const UNDO_PER_EVENT: usize = 7;

/// Events whose accounts are resolved together before they are applied: small enough that
/// their records stay in the first-level caches, large enough to overlap many misses.
const RESOLVE_CHUNK: usize = 32;

/// Status of a transfer in its two-phase life (`None` for transfers that are not pending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum PendingStatus {
    None = 0,
    Pending = 1,
    Posted = 2,
    Voided = 3,
    Expired = 4,
}

impl PendingStatus {
    /// How a resolved pending transfer was resolved (`None` while pending, or not pending).
    pub(crate) fn resolution(self) -> Option<Resolution> {
        match self {
            PendingStatus::Posted => Some(Resolution::Posted),
            PendingStatus::Voided => Some(Resolution::Voided),
            PendingStatus::Expired => Some(Resolution::Expired),
            PendingStatus::None | PendingStatus::Pending => None,
        }
    }
}

/// Per-account list heads (positions of the newest entries, or `NO_POSITION`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AccountMeta {
    pub(crate) transfer_newest: u32,
    pub(crate) balance_newest: u32,
}

/// Per-transfer links and two-phase state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TransferMeta {
    /// The previous transfer in the debit account's list.
    pub(crate) debit_previous: u32,
    /// The previous transfer in the credit account's list.
    pub(crate) credit_previous: u32,
    pub(crate) status: PendingStatus,
    /// When a pending transfer was posted, voided or expired (0 while it is not).
    pub(crate) resolved_at: u64,
}

/// One history row: an account's balances right after one of its transfers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BalanceRow {
    pub(crate) debits_pending: u128,
    pub(crate) debits_posted: u128,
    pub(crate) credits_pending: u128,
    pub(crate) credits_posted: u128,
    pub(crate) timestamp: u64,
    pub(crate) transfer: u32,
    /// The account's previous row.
    pub(crate) previous: u32,
}

/// One change made by a member of the current linked chain, undone in reverse order.
#[derive(Clone, Copy, Debug)]
enum Undo {
    AccountCreated,
    /// An account's balances and flags before a change.
    AccountChanged {
        account: u32,
        flags: u16,
        debits_pending: u128,
        debits_posted: u128,
        credits_pending: u128,
        credits_posted: u128,
    },
    TransferCreated {
        debit: u32,
        credit: u32,
    },
    BalanceRowCreated {
        account: u32,
    },
    StatusChanged {
        transfer: u32,
        status: PendingStatus,
    },
    ExpiryInserted {
        transfer: u32,
    },
    ExpiryRemoved {
        transfer: u32,
    },
}

enum TransferLookup {
    /// In memory, at this position.
    Found(u32),
    /// Only in the history store.
    Stored(Transfer),
    /// A burned id.
    Orphan,
    Missing(Vacancy),
}

pub(crate) struct Ledger {
    pub(crate) config: Config,
    pub(crate) accounts: Vec<Account>,
    pub(crate) account_meta: Vec<AccountMeta>,
    account_index: IdIndex,
    pub(crate) transfers: Vec<Transfer>,
    pub(crate) transfer_meta: Vec<TransferMeta>,
    /// Heap positions for `expiry`, parallel to `transfers` (`NO_POSITION` when not queued).
    expiry_positions: Vec<u32>,
    transfer_index: IdIndex,
    orphans: Vec<u128>,
    /// The timestamp of the event that burned each of `orphans`.
    orphan_timestamps: Vec<u64>,
    /// Capacity of `orphans`: `transfers_max / 2` (at least 1).
    orphans_max: usize,
    pub(crate) balances: Vec<BalanceRow>,
    expiry: ExpiryQueue,
    /// Pending transfers with status `Pending`.
    pending_count: u32,
    /// Expiries applied so far (each consumed one pulse timestamp).
    expired_count: u64,
    undo: Vec<Undo>,
    /// Whether changes are being recorded (inside a linked chain).
    undo_active: bool,
    /// `pending_count` when the current chain started.
    undo_pending_count: u32,
    /// Account positions `(debit, credit)` of each event of the current create_transfers
    /// batch (`NO_POSITION`: not found), resolved before the batch is applied.
    resolved: Vec<(u32, u32)>,
    /// History mode (docs/history.md): records leave memory once durable in the store.
    pub(crate) history: Option<Box<HistoryMode>>,
}

/// The ledger's side of history mode (see history.rs).
///
/// Memory holds every transfer, burned id and balance row with a timestamp above
/// `evicted_through`, plus the pending transfers at or below it that are unresolved or were
/// resolved after it (their status is not in the store yet). Everything at or below
/// `evicted_through` is in the store, so queries read the store up to it and memory above it.
pub(crate) struct HistoryMode {
    pub(crate) reader: Box<dyn HistoryRead>,
    /// Every transfer id (both namespaces) and burned id ever stored: an id it has never seen
    /// needs no store read.
    pub(crate) filter: IdFilter,
    /// Ids inserted while a checkpoint writer shares `filter`'s memory (id_filter.rs).
    pub(crate) aside: AsideIds,
    pub(crate) evicted_through: u64,
    /// The largest timestamp of a transfer dropped from memory.
    evicted_timestamp_max: u64,
    /// Records below these positions were handed to the sink.
    drained_transfers: usize,
    drained_orphans: usize,
    drained_rows: usize,
    /// Resolutions since the last drain: (pending's position, status, timestamp).
    resolutions: Vec<(u32, Resolution, u64)>,
    /// Records at or below this timestamp are already folded into `digests` (a drain after
    /// `history_redrain` hands them out again without folding them twice).
    folded_through: u64,
    digests: eviction::HistoryDigests,
    /// Scratch for eviction: each transfer's and row's new position.
    remap_transfers: Vec<u32>,
    remap_rows: Vec<u32>,
}

/// Whether the transfer index entry at `position` is `id` in the client namespace
/// (`settlement` false: client transfers and burned ids) or in the settlement namespace (the
/// transfers the matching side makes, flagged `SETTLEMENT`). The two namespaces share the index
/// but never match each other's entries, so every client id is usable whatever ids the engine
/// makes.
#[inline(always)]
fn transfer_matches(
    transfers: &[Transfer],
    orphans: &[u128],
    position: u32,
    id: u128,
    settlement: bool,
) -> bool {
    if position & ORPHAN_BIT != 0 {
        !settlement && orphans[(position & !ORPHAN_BIT) as usize] == id
    } else {
        let transfer = &transfers[position as usize];
        transfer.id == id && is_settlement(transfer) == settlement
    }
}

/// Whether `transfer` was made by the matching side (its id is in the settlement namespace).
#[inline(always)]
pub(crate) fn is_settlement(transfer: &Transfer) -> bool {
    transfer.flags().settlement()
}

/// Why an event failed the batch-level checks 3-4 of docs/ledger.md (Evaluation order). Each
/// failure has a status of the same name in both `CreateAccountStatus` and
/// `CreateTransferStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchFailure {
    /// The batch is imported but this event is not.
    ImportedEventExpected,
    /// This event is imported but the batch is not.
    ImportedEventNotExpected,
    /// A non-imported event carries a timestamp.
    TimestampMustBeZero,
    /// An imported timestamp is zero or above `TIMESTAMP_MAX`.
    ImportedEventTimestampOutOfRange,
    /// An imported timestamp is not below the event's slot.
    ImportedEventTimestampMustNotAdvance,
}

/// Maps each `BatchFailure` to the status of the same name in a create status type.
macro_rules! batch_failure_into {
    ($($status:ident),*) => {$(
        impl From<BatchFailure> for $status {
            fn from(failure: BatchFailure) -> Self {
                match failure {
                    BatchFailure::ImportedEventExpected => Self::ImportedEventExpected,
                    BatchFailure::ImportedEventNotExpected => Self::ImportedEventNotExpected,
                    BatchFailure::TimestampMustBeZero => Self::TimestampMustBeZero,
                    BatchFailure::ImportedEventTimestampOutOfRange => {
                        Self::ImportedEventTimestampOutOfRange
                    }
                    BatchFailure::ImportedEventTimestampMustNotAdvance => {
                        Self::ImportedEventTimestampMustNotAdvance
                    }
                }
            }
        }
    )*};
}

batch_failure_into!(CreateAccountStatus, CreateTransferStatus);

/// Batch-level checks 3-4 of docs/ledger.md (Evaluation order), shared by accounts and transfers.
#[inline(always)]
fn batch_check(
    event_imported: bool,
    batch_imported: bool,
    timestamp: u64,
    slot: u64,
) -> Result<(), BatchFailure> {
    if batch_imported && !event_imported {
        return Err(BatchFailure::ImportedEventExpected);
    }
    if !batch_imported && event_imported {
        return Err(BatchFailure::ImportedEventNotExpected);
    }
    if event_imported {
        if timestamp == 0 || timestamp > TIMESTAMP_MAX {
            return Err(BatchFailure::ImportedEventTimestampOutOfRange);
        }
        // Sharp edge (docs/ledger.md): the reference compares against the batch
        // timestamp T but then asserts that the imported timestamp is at most the event's own
        // slot `T - n + i + 1`, so a timestamp in `[slot, T)` crashes it. We compare against the
        // slot instead: such an event is rejected with `must_not_advance`, and every imported
        // timestamp stays strictly below its slot (and so below every later slot).
        if timestamp >= slot {
            return Err(BatchFailure::ImportedEventTimestampMustNotAdvance);
        }
    } else if timestamp != 0 {
        return Err(BatchFailure::TimestampMustBeZero);
    }
    Ok(())
}

/// What `Ledger::create_batch` needs to know of one kind of create: its event, its status codes
/// and the steps that differ between accounts and transfers.
trait BatchKind {
    type Event;
    type Status: Copy + PartialEq + From<BatchFailure>;
    const CREATED: Self::Status;
    const LINKED_EVENT_CHAIN_OPEN: Self::Status;
    const LINKED_EVENT_FAILED: Self::Status;

    fn code(status: Self::Status) -> u32;
    fn linked(event: &Self::Event) -> bool;
    fn imported(event: &Self::Event) -> bool;
    fn timestamp(event: &Self::Event) -> u64;

    /// Runs before event `index` is looked at.
    fn prepare(_ledger: &mut Ledger, _events: &[Self::Event], _index: usize) {}

    /// Checks and applies an event that passed the chain and batch checks.
    fn create(
        ledger: &mut Ledger,
        index: usize,
        event: &Self::Event,
        slot: u64,
    ) -> (Self::Status, u64);

    /// The status a failed event reports, given the status of its failing check.
    fn failure(_ledger: &mut Ledger, status: Self::Status) -> Self::Status {
        status
    }

    /// Runs after a failed event's chain was rolled back; `slot` is the event's timestamp.
    fn after_rollback(
        _ledger: &mut Ledger,
        _event: &Self::Event,
        _status: Self::Status,
        _slot: u64,
    ) {
    }
}

struct AccountCreate;

impl BatchKind for AccountCreate {
    type Event = Account;
    type Status = CreateAccountStatus;
    const CREATED: CreateAccountStatus = CreateAccountStatus::Created;
    const LINKED_EVENT_CHAIN_OPEN: CreateAccountStatus = CreateAccountStatus::LinkedEventChainOpen;
    const LINKED_EVENT_FAILED: CreateAccountStatus = CreateAccountStatus::LinkedEventFailed;

    fn code(status: CreateAccountStatus) -> u32 {
        status as u32
    }
    fn linked(account: &Account) -> bool {
        account.flags().linked()
    }
    fn imported(account: &Account) -> bool {
        account.flags().imported()
    }
    fn timestamp(account: &Account) -> u64 {
        account.timestamp
    }
    fn create(
        ledger: &mut Ledger,
        _index: usize,
        account: &Account,
        slot: u64,
    ) -> (CreateAccountStatus, u64) {
        ledger.create_account(account, slot)
    }
}

struct TransferCreate;

impl BatchKind for TransferCreate {
    type Event = Transfer;
    type Status = CreateTransferStatus;
    const CREATED: CreateTransferStatus = CreateTransferStatus::Created;
    const LINKED_EVENT_CHAIN_OPEN: CreateTransferStatus =
        CreateTransferStatus::LinkedEventChainOpen;
    const LINKED_EVENT_FAILED: CreateTransferStatus = CreateTransferStatus::LinkedEventFailed;

    fn code(status: CreateTransferStatus) -> u32 {
        status as u32
    }
    fn linked(transfer: &Transfer) -> bool {
        transfer.flags().linked()
    }
    fn imported(transfer: &Transfer) -> bool {
        transfer.flags().imported()
    }
    fn timestamp(transfer: &Transfer) -> u64 {
        transfer.timestamp
    }
    /// Resolves the accounts of each chunk of events before applying it (see
    /// `Ledger::resolve_accounts`).
    fn prepare(ledger: &mut Ledger, transfers: &[Transfer], index: usize) {
        if index % RESOLVE_CHUNK == 0 {
            let end = (index + RESOLVE_CHUNK).min(transfers.len());
            ledger.resolve_accounts(&transfers[index..end]);
        }
    }
    fn create(
        ledger: &mut Ledger,
        index: usize,
        transfer: &Transfer,
        slot: u64,
    ) -> (CreateTransferStatus, u64) {
        let accounts = ledger.resolved[index];
        ledger.create_transfer(transfer, slot, accounts, true)
    }
    fn failure(ledger: &mut Ledger, status: CreateTransferStatus) -> CreateTransferStatus {
        if status.is_transient()
            && ledger.history.is_none()
            && ledger.orphans.len() >= ledger.orphans_max
        {
            // Defined by clearline: with the store of burned ids full, the event fails with the
            // (non-transient) capacity code and its id stays usable.
            CreateTransferStatus::TransfersCapacityExceeded
        } else {
            status
        }
    }
    fn after_rollback(
        ledger: &mut Ledger,
        transfer: &Transfer,
        status: CreateTransferStatus,
        slot: u64,
    ) {
        if status.is_transient() {
            // After the rollback, as in the reference: the chain's other members stay
            // reusable, only the failing id is burned.
            ledger.burn(transfer.id, slot);
        }
    }
}

/// The linked chain of one batch, shared by `create_accounts` and `create_transfers`.
#[derive(Default)]
struct ChainState {
    /// Index of the chain's first event, while a chain is open.
    start: Option<usize>,
    /// A member failed: the chain was rolled back and the rest get `linked_event_failed`.
    broken: bool,
}

/// Whether a resent post or void differs from the stored one in a field that a zero request
/// value inherits from the pending transfer: zero must match what was inherited, anything else
/// must match what was stored.
#[inline(always)]
fn inherited_differs<T: PartialEq + Default>(request: T, stored: T, pending: T) -> bool {
    if request == T::default() {
        stored != pending
    } else {
        request != stored
    }
}

/// The address range of the slots of `vector` after its last element, among its first `count`:
/// memory allocated but never written while the vector has not been longer. For the callers
/// of `clearline_journal::populate` and `keep_from_fork` (addresses only, nothing borrowed).
pub fn unused_memory<T>(vector: &Vec<T>, count: usize) -> (usize, usize) {
    let size = std::mem::size_of::<T>();
    let unused = count.min(vector.capacity()).saturating_sub(vector.len());
    (
        vector.as_ptr() as usize + vector.len() * size,
        unused * size,
    )
}

impl Ledger {
    pub(crate) fn new(config: &Config) -> Ledger {
        config.assert_valid();
        let orphans_max = (config.transfers_max / 2).max(1);
        let batch = config.batch_events_max as usize;
        Ledger {
            config: *config,
            accounts: Vec::with_capacity(config.accounts_max as usize),
            account_meta: Vec::with_capacity(config.accounts_max as usize),
            account_index: IdIndex::new(config.accounts_max),
            transfers: Vec::with_capacity(config.transfers_max as usize),
            transfer_meta: Vec::with_capacity(config.transfers_max as usize),
            expiry_positions: Vec::with_capacity(config.transfers_max as usize),
            transfer_index: IdIndex::new(config.transfers_max + orphans_max),
            orphans: Vec::with_capacity(orphans_max as usize),
            orphan_timestamps: Vec::with_capacity(orphans_max as usize),
            orphans_max: orphans_max as usize,
            balances: Vec::with_capacity(config.account_balances_max as usize),
            expiry: ExpiryQueue::new(config.transfers_pending_max),
            pending_count: 0,
            expired_count: 0,
            undo: Vec::with_capacity(
                batch.max(crate::operation::SLOTS_PER_ORDER_EVENT as usize) * UNDO_PER_EVENT,
            ),
            undo_active: false,
            undo_pending_count: 0,
            resolved: Vec::with_capacity(batch),
            history: None,
        }
    }

    /// The address ranges of the transfer slots, among the first `transfers`, that no transfer
    /// has used yet: in the store, its metadata and the expiry positions.
    pub(crate) fn unused_transfer_memory(&self, transfers: usize) -> [(usize, usize); 3] {
        [
            unused_memory(&self.transfers, transfers),
            unused_memory(&self.transfer_meta, transfers),
            unused_memory(&self.expiry_positions, transfers),
        ]
    }

    /// Inserts every burned id into the transfer index, in position order: after the
    /// transfers, when the index is built again (loading a checkpoint, eviction).
    fn index_burned_ids(&mut self) {
        for (position, id) in self.orphans.iter().enumerate() {
            self.transfer_index
                .insert(*id, position as u32 | ORPHAN_BIT);
        }
    }

    /// The address range of the transfer id index's table. A checkpoint image does not hold
    /// the index (checkpoint.rs, version 7), so a forked writer never reads it.
    pub(crate) fn transfer_index_memory(&self) -> (usize, usize) {
        self.transfer_index.memory()
    }

    /// The address range of the id filter's bits, in history mode.
    pub(crate) fn id_filter_memory(&self) -> Option<(usize, usize)> {
        self.history.as_ref().map(|history| history.filter.memory())
    }

    /// The address ranges of the ids kept aside while a checkpoint is written, in history
    /// mode; a checkpoint writer never reads them.
    pub(crate) fn id_filter_aside_memory(&self) -> [(usize, usize); 2] {
        self.history
            .as_ref()
            .map_or([(0, 0); 2], |history| history.aside.memory())
    }

    /// Starts or stops keeping new ids out of the id filter (see `AsideIds`).
    pub(crate) fn history_filter_defer(&mut self, deferring: bool) {
        if let Some(history) = self.history.as_deref_mut() {
            history.aside.defer(deferring);
        }
    }

    /// Moves up to `count` ids kept aside into the id filter; returns whether none is left.
    pub(crate) fn history_filter_merge(&mut self, count: usize) -> bool {
        match self.history.as_deref_mut() {
            Some(history) => history.aside.merge(&mut history.filter, count),
            None => true,
        }
    }

    /// Forgets all state, keeping every allocation.
    pub(crate) fn clear(&mut self) {
        self.accounts.clear();
        self.account_meta.clear();
        self.account_index.clear();
        self.transfers.clear();
        self.transfer_meta.clear();
        self.expiry_positions.clear();
        self.transfer_index.clear();
        self.orphans.clear();
        self.orphan_timestamps.clear();
        self.balances.clear();
        self.expiry.clear();
        self.pending_count = 0;
        self.expired_count = 0;
        self.undo.clear();
        self.undo_active = false;
        if let Some(history) = self.history.as_deref_mut() {
            history.filter = IdFilter::new(history.filter.ids_max());
            history.aside.clear();
            history.evicted_through = 0;
            history.evicted_timestamp_max = 0;
            history.drained_transfers = 0;
            history.drained_orphans = 0;
            history.drained_rows = 0;
            history.resolutions.clear();
        }
    }

    /// Bytes of memory the ledger's structures use per stored transfer when every store is at
    /// capacity: the record, its metadata, its share of the id index and of the expiry
    /// position table (history rows and the expiry heap are counted separately by callers).
    pub(crate) fn bytes_per_transfer(&self) -> usize {
        let index = self.transfer_index.slots_count() * 8 / self.config.transfers_max as usize;
        size_of::<Transfer>() + size_of::<TransferMeta>() + size_of::<u32>() + index
    }

    #[inline(always)]
    pub(crate) fn account_position(&self, id: u128) -> Option<u32> {
        let accounts = &self.accounts;
        self.account_index
            .find(id, |position| accounts[position as usize].id)
    }

    #[inline(always)]
    fn transfer_lookup(&self, id: u128, settlement: bool) -> TransferLookup {
        let transfers = &self.transfers;
        let orphans = &self.orphans;
        let matches = |position| transfer_matches(transfers, orphans, position, id, settlement);
        match self.transfer_index.find_or_vacancy_with(id, matches) {
            Err(vacancy) => match &self.history {
                None => TransferLookup::Missing(vacancy),
                Some(history) => history
                    .lookup(id, settlement)
                    .unwrap_or(TransferLookup::Missing(vacancy)),
            },
            Ok(position) if position & ORPHAN_BIT != 0 => TransferLookup::Orphan,
            Ok(position) => TransferLookup::Found(position),
        }
    }

    /// The transfer `id` of a namespace, from memory or the history store (burned ids are not
    /// transfers), with its position when in memory.
    fn transfer_record(&self, id: u128, settlement: bool) -> Option<(Transfer, Option<u32>)> {
        match self.transfer_lookup(id, settlement) {
            TransferLookup::Found(position) => {
                Some((self.transfers[position as usize], Some(position)))
            }
            TransferLookup::Stored(transfer) => Some((transfer, None)),
            TransferLookup::Orphan | TransferLookup::Missing(_) => None,
        }
    }

    /// The stored client transfer with this id (not burned ids, not settlement transfers).
    pub(crate) fn transfer_position(&self, id: u128) -> Option<u32> {
        self.transfer_position_in(id, false)
    }

    /// The stored transfer with this id in the client or the settlement namespace.
    pub(crate) fn transfer_position_in(&self, id: u128, settlement: bool) -> Option<u32> {
        match self.transfer_lookup(id, settlement) {
            TransferLookup::Found(position) => Some(position),
            _ => None,
        }
    }

    fn accounts_timestamp_max(&self) -> u64 {
        self.accounts.last().map_or(0, |account| account.timestamp)
    }

    pub(crate) fn transfers_timestamp_max(&self) -> u64 {
        let evicted = self
            .history
            .as_deref()
            .map_or(0, |history| history.evicted_timestamp_max);
        self.transfers
            .last()
            .map_or(evicted, |transfer| transfer.timestamp.max(evicted))
    }

    fn account_has_timestamp(&self, timestamp: u64) -> bool {
        self.accounts
            .binary_search_by_key(&timestamp, |account| account.timestamp)
            .is_ok()
    }

    fn transfer_has_timestamp(&self, timestamp: u64) -> bool {
        if let Some(history) = self.history.as_deref() {
            if timestamp <= history.evicted_timestamp_max
                && history.reader.transfer_at(timestamp).is_some()
            {
                return true;
            }
        }
        self.transfers
            .binary_search_by_key(&timestamp, |transfer| transfer.timestamp)
            .is_ok()
    }

    // ---------------------------------------------------------------------------------------
    // Linked chains.

    /// Opens a chain at `index` when this event is linked and no chain is open.
    fn chain_enter(&mut self, chain: &mut ChainState, index: usize, linked: bool) {
        if linked && chain.start.is_none() {
            chain.start = Some(index);
            self.chain_begin();
        }
    }

    /// A member of the open chain failed: the first failure rolls the chain back and rewrites
    /// the results of its earlier members to `linked_event_failed` (3.5). Outside a chain, or
    /// once the chain is broken, there is nothing to undo.
    fn chain_fail(
        &mut self,
        chain: &mut ChainState,
        results: &mut [CreateResult],
        index: usize,
        linked_event_failed: u32,
    ) {
        if chain.broken {
            return;
        }
        if let Some(start) = chain.start {
            chain.broken = true;
            self.chain_rollback();
            for result in &mut results[start..index] {
                result.status = linked_event_failed;
            }
        }
    }

    /// After each event: an unlinked event ends the chain, committing it unless it broke.
    fn chain_leave(&mut self, chain: &mut ChainState, linked: bool) {
        if !linked {
            if chain.start.is_some() && !chain.broken {
                self.chain_end();
            }
            *chain = ChainState::default();
        }
    }

    fn chain_begin(&mut self) {
        assert!(!self.undo_active);
        assert!(self.undo.is_empty());
        self.undo_active = true;
        self.undo_pending_count = self.pending_count;
    }

    fn chain_end(&mut self) {
        assert!(self.undo_active);
        self.undo.clear();
        self.undo_active = false;
    }

    #[inline(always)]
    fn record(&mut self, entry: Undo) {
        if self.undo_active {
            assert!(self.undo.len() < self.undo.capacity(), "undo log full");
            self.undo.push(entry);
        }
    }

    #[inline(always)]
    fn record_account(&mut self, account: u32) {
        if self.undo_active {
            let stored = &self.accounts[account as usize];
            let entry = Undo::AccountChanged {
                account,
                flags: stored.flags,
                debits_pending: stored.debits_pending,
                debits_posted: stored.debits_posted,
                credits_pending: stored.credits_pending,
                credits_posted: stored.credits_posted,
            };
            self.record(entry);
        }
    }

    /// Undoes every change of the current chain, newest first, and stops recording.
    fn chain_rollback(&mut self) {
        assert!(self.undo_active);
        while let Some(entry) = self.undo.pop() {
            match entry {
                Undo::AccountCreated => {
                    let account = self.accounts.pop().expect("undo matches a created account");
                    let meta = self.account_meta.pop().expect("meta parallels accounts");
                    assert_eq!(meta.transfer_newest, NO_POSITION);
                    assert_eq!(meta.balance_newest, NO_POSITION);
                    let position = self.accounts.len() as u32;
                    self.account_index.remove_newest(account.id, position);
                }
                Undo::AccountChanged {
                    account,
                    flags,
                    debits_pending,
                    debits_posted,
                    credits_pending,
                    credits_posted,
                } => {
                    let stored = &mut self.accounts[account as usize];
                    stored.flags = flags;
                    stored.debits_pending = debits_pending;
                    stored.debits_posted = debits_posted;
                    stored.credits_pending = credits_pending;
                    stored.credits_posted = credits_posted;
                }
                Undo::TransferCreated { debit, credit } => {
                    let transfer = self.transfers.pop().expect("undo matches a transfer");
                    let meta = self.transfer_meta.pop().expect("meta parallels transfers");
                    let expiry_position = self.expiry_positions.pop().expect("parallel");
                    assert_eq!(expiry_position, NO_POSITION);
                    let position = self.transfers.len() as u32;
                    assert_eq!(self.account_meta[debit as usize].transfer_newest, position);
                    assert_eq!(self.account_meta[credit as usize].transfer_newest, position);
                    self.account_meta[debit as usize].transfer_newest = meta.debit_previous;
                    self.account_meta[credit as usize].transfer_newest = meta.credit_previous;
                    self.transfer_index.remove_newest(transfer.id, position);
                }
                Undo::BalanceRowCreated { account } => {
                    let row = self.balances.pop().expect("undo matches a row");
                    let position = self.balances.len() as u32;
                    assert_eq!(self.account_meta[account as usize].balance_newest, position);
                    self.account_meta[account as usize].balance_newest = row.previous;
                }
                Undo::StatusChanged { transfer, status } => {
                    self.transfer_meta[transfer as usize].status = status;
                    self.transfer_meta[transfer as usize].resolved_at = 0;
                    if let Some(history) = self.history.as_deref_mut() {
                        let undone = history.resolutions.pop().expect("a recorded resolution");
                        assert_eq!(undone.0, transfer);
                    }
                }
                Undo::ExpiryInserted { transfer } => {
                    self.expiry.remove(transfer, &mut self.expiry_positions);
                }
                Undo::ExpiryRemoved { transfer } => {
                    let entry = self.expiry_entry(transfer);
                    self.expiry.insert(entry, &mut self.expiry_positions);
                }
            }
        }
        self.pending_count = self.undo_pending_count;
        self.undo_active = false;
    }

    fn expiry_entry(&self, transfer: u32) -> ExpiryEntry {
        let pending = &self.transfers[transfer as usize];
        assert!(pending.timeout > 0);
        ExpiryEntry {
            expires_at: pending.timestamp + u64::from(pending.timeout) * NS_PER_SECOND,
            timestamp: pending.timestamp,
            transfer,
        }
    }

    // ---------------------------------------------------------------------------------------
    // create_accounts

    pub(crate) fn create_accounts(
        &mut self,
        timestamp: u64,
        events: &[Account],
        results: &mut [CreateResult],
    ) {
        self.create_batch::<AccountCreate>(timestamp, events, results);
    }

    fn create_account(&mut self, account: &Account, slot: u64) -> (CreateAccountStatus, u64) {
        use CreateAccountStatus as S;
        if account.reserved != 0 {
            return (S::ReservedField, slot);
        }
        if account.flags().padding() {
            return (S::ReservedFlag, slot);
        }
        if account.id == 0 {
            return (S::IdMustNotBeZero, slot);
        }
        if account.id == u128::MAX {
            return (S::IdMustNotBeIntMax, slot);
        }
        if let Some(position) = self.account_position(account.id) {
            let existing = &self.accounts[position as usize];
            let status = if account.flags != existing.flags {
                S::ExistsWithDifferentFlags
            } else if account.user_data_128 != existing.user_data_128 {
                S::ExistsWithDifferentUserData128
            } else if account.user_data_64 != existing.user_data_64 {
                S::ExistsWithDifferentUserData64
            } else if account.user_data_32 != existing.user_data_32 {
                S::ExistsWithDifferentUserData32
            } else if account.ledger != existing.ledger {
                S::ExistsWithDifferentLedger
            } else if account.code != existing.code {
                S::ExistsWithDifferentCode
            } else {
                return (S::Exists, existing.timestamp);
            };
            return (status, slot);
        }
        let failure = if account.flags().debits_must_not_exceed_credits()
            && account.flags().credits_must_not_exceed_debits()
        {
            Some(S::FlagsAreMutuallyExclusive)
        } else if account.debits_pending != 0 {
            Some(S::DebitsPendingMustBeZero)
        } else if account.debits_posted != 0 {
            Some(S::DebitsPostedMustBeZero)
        } else if account.credits_pending != 0 {
            Some(S::CreditsPendingMustBeZero)
        } else if account.credits_posted != 0 {
            Some(S::CreditsPostedMustBeZero)
        } else if account.ledger == 0 {
            Some(S::LedgerMustNotBeZero)
        } else if account.code == 0 {
            Some(S::CodeMustNotBeZero)
        } else {
            None
        };
        if let Some(status) = failure {
            return (status, slot);
        }
        let imported = account.flags().imported();
        let timestamp = if imported { account.timestamp } else { slot };
        if imported
            && (timestamp <= self.accounts_timestamp_max()
                || self.transfer_has_timestamp(timestamp))
        {
            return (S::ImportedEventTimestampMustNotRegress, slot);
        }
        if self.accounts.len() >= self.config.accounts_max as usize {
            return (S::AccountsCapacityExceeded, slot);
        }
        assert!(timestamp > self.accounts_timestamp_max());
        let position = self.accounts.len() as u32;
        self.accounts.push(Account {
            timestamp,
            ..*account
        });
        // Postcondition: the stored record is the input with its timestamp.
        assert_eq!(
            self.accounts[position as usize],
            Account {
                timestamp,
                ..*account
            }
        );
        self.account_meta.push(AccountMeta {
            transfer_newest: NO_POSITION,
            balance_newest: NO_POSITION,
        });
        self.account_index.insert(account.id, position);
        self.record(Undo::AccountCreated);
        (S::Created, timestamp)
    }

    // ---------------------------------------------------------------------------------------
    // create_transfers

    pub(crate) fn create_transfers(
        &mut self,
        timestamp: u64,
        events: &[Transfer],
        results: &mut [CreateResult],
    ) {
        self.resolved.clear();
        self.create_batch::<TransferCreate>(timestamp, events, results);
    }

    /// The batch loop of `create_accounts` and `create_transfers`: event `i` of `n` gets slot
    /// `timestamp - n + i + 1`; the linked-chain and batch-level checks (docs/ledger.md,
    /// Evaluation order, 1-4) come first, then `Kind::create`. A failing member of a chain
    /// rolls the chain back and fails its other members with `linked_event_failed`.
    fn create_batch<Kind: BatchKind>(
        &mut self,
        timestamp: u64,
        events: &[Kind::Event],
        results: &mut [CreateResult],
    ) {
        assert_eq!(events.len(), results.len());
        assert!(events.len() <= self.config.batch_events_max as usize);
        assert!(timestamp <= TIMESTAMP_MAX);
        assert!(timestamp >= events.len() as u64);
        assert!(!self.undo_active);
        let Some(first) = events.first() else {
            return;
        };
        let base = timestamp - events.len() as u64;
        let batch_imported = Kind::imported(first);
        let mut chain = ChainState::default();
        for (index, event) in events.iter().enumerate() {
            Kind::prepare(self, events, index);
            let slot = base + index as u64 + 1;
            let linked = Kind::linked(event);
            self.chain_enter(&mut chain, index, linked);
            let (mut status, result_timestamp) = if linked && index + 1 == events.len() {
                (Kind::LINKED_EVENT_CHAIN_OPEN, slot)
            } else if chain.broken {
                (Kind::LINKED_EVENT_FAILED, slot)
            } else {
                let event_imported = Kind::imported(event);
                match batch_check(event_imported, batch_imported, Kind::timestamp(event), slot) {
                    Ok(()) => Kind::create(self, index, event, slot),
                    Err(failure) => (failure.into(), slot),
                }
            };
            if status != Kind::CREATED {
                status = Kind::failure(self, status);
                let failed = Kind::code(Kind::LINKED_EVENT_FAILED);
                self.chain_fail(&mut chain, results, index, failed);
                Kind::after_rollback(self, event, status, slot);
            }
            results[index] = CreateResult {
                timestamp: result_timestamp,
                status: Kind::code(status),
                reserved: 0,
            };
            self.chain_leave(&mut chain, linked);
        }
        assert!(!self.undo_active);
    }

    /// Room left in the transfer, pending and history stores. In history mode transfers and
    /// rows have no capacity (memory is kept free by the caller, `history_room`), so the
    /// matching side never refuses for them.
    pub(crate) fn room(&self) -> (usize, usize, usize) {
        if self.history.is_some() {
            let unbounded = usize::MAX / 4;
            let pending = self.config.transfers_pending_max as usize - self.pending_count as usize;
            return (unbounded, pending, unbounded);
        }
        (
            self.config.transfers_max as usize - self.transfers.len(),
            self.config.transfers_pending_max as usize - self.pending_count as usize,
            self.config.account_balances_max as usize - self.balances.len(),
        )
    }

    /// Looks up the accounts of `events` and appends their positions to `resolved`. The
    /// lookups are independent, so the processor overlaps their cache misses, and the records'
    /// lines (ids, balances, ledger and flags, list heads) are in cache when the events are
    /// applied right after (and, in history mode, the id filter's block of each transfer id).
    /// Accounts do not change during create_transfers, so the positions stay valid; they are
    /// used only where the rules look the accounts up.
    fn resolve_accounts(&mut self, events: &[Transfer]) {
        let mut touched = 0u64;
        if let Some(history) = self.history.as_deref() {
            // Each new id is checked against the filter: its block is loaded here too, in a
            // loop of its own so that the chunk's loads (one miss each) are all in flight at
            // once.
            for event in events {
                touched ^= history.filter.touch(event.id);
            }
        }
        for event in events {
            let debit = self
                .account_position(event.debit_account_id)
                .unwrap_or(NO_POSITION);
            let credit = self
                .account_position(event.credit_account_id)
                .unwrap_or(NO_POSITION);
            for position in [debit, credit] {
                if position != NO_POSITION {
                    let account = &self.accounts[position as usize];
                    let meta = &self.account_meta[position as usize];
                    touched ^= u64::from(account.ledger) ^ u64::from(meta.transfer_newest);
                }
            }
            self.resolved.push((debit, credit));
        }
        // Keeps the touching loads; nothing depends on them, so they do not stall.
        core::hint::black_box(touched);
    }

    fn burn(&mut self, id: u128, timestamp: u64) {
        assert!(id != 0 && id != u128::MAX);
        assert!(matches!(
            self.transfer_lookup(id, false),
            TransferLookup::Missing(_)
        ));
        assert!(self.orphans.len() < self.orphans_max);
        let position = self.orphans.len() as u32 | ORPHAN_BIT;
        self.orphans.push(id);
        self.orphan_timestamps.push(timestamp);
        self.transfer_index.insert(id, position);
        if let Some(history) = self.history.as_deref_mut() {
            history.filter_insert(id);
        }
    }

    /// Checks and applies one transfer; returns its status and result timestamp.
    #[inline(always)]
    fn create_transfer(
        &mut self,
        transfer: &Transfer,
        slot: u64,
        accounts: (u32, u32),
        client: bool,
    ) -> (CreateTransferStatus, u64) {
        use CreateTransferStatus as S;
        // Clients cannot set `SETTLEMENT` (one of the padding bits); the matching side always
        // does, and its ids live in their own namespace.
        let padding = if client {
            TransferFlags::PADDING
        } else {
            TransferFlags::PADDING & !TransferFlags::SETTLEMENT
        };
        if transfer.flags().any(padding) {
            return (S::ReservedFlag, slot);
        }
        let settlement = is_settlement(transfer);
        debug_assert_eq!(settlement, !client);
        if transfer.id == 0 {
            return (S::IdMustNotBeZero, slot);
        }
        if transfer.id == u128::MAX {
            return (S::IdMustNotBeIntMax, slot);
        }
        let vacancy = match self.transfer_lookup(transfer.id, settlement) {
            TransferLookup::Found(position) => {
                let existing = self.transfers[position as usize];
                return self.transfer_exists_result(transfer, &existing, slot);
            }
            TransferLookup::Stored(existing) => {
                return self.transfer_exists_result(transfer, &existing, slot);
            }
            TransferLookup::Orphan => return (S::IdAlreadyFailed, slot),
            TransferLookup::Missing(vacancy) => vacancy,
        };
        let timestamp = if transfer.flags().imported() {
            transfer.timestamp
        } else {
            slot
        };
        let outcome = if transfer.flags().post_pending_transfer()
            || transfer.flags().void_pending_transfer()
        {
            self.post_or_void_transfer(transfer, timestamp, vacancy)
        } else {
            self.regular_transfer(transfer, timestamp, accounts, vacancy)
        };
        match outcome {
            Ok(()) => (S::Created, timestamp),
            Err(status) => (status, slot),
        }
    }

    /// The result of creating `transfer` whose id `existing` already has: `exists` with the
    /// stored timestamp, or the first difference at the event's slot.
    fn transfer_exists_result(
        &self,
        transfer: &Transfer,
        existing: &Transfer,
        slot: u64,
    ) -> (CreateTransferStatus, u64) {
        let status = self.transfer_exists(transfer, existing);
        let timestamp = if status == CreateTransferStatus::Exists {
            existing.timestamp
        } else {
            slot
        };
        (status, timestamp)
    }

    /// Idempotency comparison against the stored transfer `existing` (3.4).
    fn transfer_exists(&self, transfer: &Transfer, existing: &Transfer) -> CreateTransferStatus {
        use CreateTransferStatus as S;
        if transfer.flags != existing.flags {
            return S::ExistsWithDifferentFlags;
        }
        if transfer.pending_id != existing.pending_id {
            return S::ExistsWithDifferentPendingId;
        }
        if transfer.timeout != existing.timeout {
            return S::ExistsWithDifferentTimeout;
        }
        let resolves =
            existing.flags().post_pending_transfer() || existing.flags().void_pending_transfer();
        if !resolves {
            if transfer.debit_account_id != existing.debit_account_id {
                return S::ExistsWithDifferentDebitAccountId;
            }
            if transfer.credit_account_id != existing.credit_account_id {
                return S::ExistsWithDifferentCreditAccountId;
            }
            // A balancing amount is an upper bound: any bound at least the amount moved matches.
            let amount_differs =
                if existing.flags().balancing_debit() || existing.flags().balancing_credit() {
                    transfer.amount < existing.amount
                } else {
                    transfer.amount != existing.amount
                };
            if amount_differs {
                return S::ExistsWithDifferentAmount;
            }
            if transfer.user_data_128 != existing.user_data_128 {
                return S::ExistsWithDifferentUserData128;
            }
            if transfer.user_data_64 != existing.user_data_64 {
                return S::ExistsWithDifferentUserData64;
            }
            if transfer.user_data_32 != existing.user_data_32 {
                return S::ExistsWithDifferentUserData32;
            }
            if transfer.ledger != existing.ledger {
                return S::ExistsWithDifferentLedger;
            }
            if transfer.code != existing.code {
                return S::ExistsWithDifferentCode;
            }
            return S::Exists;
        }
        let (pending_transfer, _) = self
            .transfer_record(existing.pending_id, is_settlement(existing))
            .expect("a stored post/void's pending");
        let pending_transfer = &pending_transfer;
        if transfer.debit_account_id != 0 && transfer.debit_account_id != existing.debit_account_id
        {
            return S::ExistsWithDifferentDebitAccountId;
        }
        if transfer.credit_account_id != 0
            && transfer.credit_account_id != existing.credit_account_id
        {
            return S::ExistsWithDifferentCreditAccountId;
        }
        let amount_differs = if existing.flags().void_pending_transfer() {
            if transfer.amount == 0 {
                existing.amount != pending_transfer.amount
            } else {
                transfer.amount != existing.amount
            }
        } else if transfer.amount == u128::MAX {
            existing.amount != pending_transfer.amount
        } else {
            transfer.amount != existing.amount
        };
        if amount_differs {
            return S::ExistsWithDifferentAmount;
        }
        // Zero user data means "inherited from the pending transfer".
        if inherited_differs(
            transfer.user_data_128,
            existing.user_data_128,
            pending_transfer.user_data_128,
        ) {
            return S::ExistsWithDifferentUserData128;
        }
        if inherited_differs(
            transfer.user_data_64,
            existing.user_data_64,
            pending_transfer.user_data_64,
        ) {
            return S::ExistsWithDifferentUserData64;
        }
        if inherited_differs(
            transfer.user_data_32,
            existing.user_data_32,
            pending_transfer.user_data_32,
        ) {
            return S::ExistsWithDifferentUserData32;
        }
        if transfer.ledger != 0 && transfer.ledger != existing.ledger {
            return S::ExistsWithDifferentLedger;
        }
        if transfer.code != 0 && transfer.code != existing.code {
            return S::ExistsWithDifferentCode;
        }
        S::Exists
    }

    /// Steps 4-18 of the regular path (3.3) for a transfer whose id is new.
    #[inline(always)]
    fn regular_transfer(
        &mut self,
        transfer: &Transfer,
        timestamp: u64,
        (debit, credit): (u32, u32),
        vacancy: Vacancy,
    ) -> Result<(), CreateTransferStatus> {
        use CreateTransferStatus as S;
        if transfer.debit_account_id == 0 {
            return Err(S::DebitAccountIdMustNotBeZero);
        }
        if transfer.debit_account_id == u128::MAX {
            return Err(S::DebitAccountIdMustNotBeIntMax);
        }
        if transfer.credit_account_id == 0 {
            return Err(S::CreditAccountIdMustNotBeZero);
        }
        if transfer.credit_account_id == u128::MAX {
            return Err(S::CreditAccountIdMustNotBeIntMax);
        }
        if transfer.debit_account_id == transfer.credit_account_id {
            return Err(S::AccountsMustBeDifferent);
        }
        if transfer.pending_id != 0 {
            return Err(S::PendingIdMustBeZero);
        }
        let pending = transfer.flags().pending();
        if !pending {
            if transfer.timeout != 0 {
                return Err(S::TimeoutReservedForPendingTransfer);
            }
            if transfer.flags().closing_debit() || transfer.flags().closing_credit() {
                return Err(S::ClosingTransferMustBePending);
            }
        }
        if transfer.ledger == 0 {
            return Err(S::LedgerMustNotBeZero);
        }
        if transfer.code == 0 {
            return Err(S::CodeMustNotBeZero);
        }
        if debit == NO_POSITION {
            return Err(S::DebitAccountNotFound);
        }
        if credit == NO_POSITION {
            return Err(S::CreditAccountNotFound);
        }
        assert_ne!(debit, credit); // Distinct ids map to distinct positions.
        let debit_account = &self.accounts[debit as usize];
        let credit_account = &self.accounts[credit as usize];
        if debit_account.ledger != credit_account.ledger {
            return Err(S::AccountsMustHaveTheSameLedger);
        }
        if transfer.ledger != debit_account.ledger {
            return Err(S::TransferMustHaveTheSameLedgerAsAccounts);
        }
        if transfer.flags().imported() {
            if timestamp <= self.transfers_timestamp_max() || self.account_has_timestamp(timestamp)
            {
                return Err(S::ImportedEventTimestampMustNotRegress);
            }
            if timestamp <= debit_account.timestamp {
                return Err(S::ImportedEventTimestampMustPostdateDebitAccount);
            }
            if timestamp <= credit_account.timestamp {
                return Err(S::ImportedEventTimestampMustPostdateCreditAccount);
            }
            if transfer.timeout != 0 {
                return Err(S::ImportedEventTimeoutMustBeZero);
            }
        }
        if debit_account.flags().closed() {
            return Err(S::DebitAccountAlreadyClosed);
        }
        if credit_account.flags().closed() {
            return Err(S::CreditAccountAlreadyClosed);
        }
        // Both sums are kept at most u128::MAX by the overflow checks below.
        let dr_debits = debit_account.debits_pending + debit_account.debits_posted;
        let cr_credits = credit_account.credits_pending + credit_account.credits_posted;
        let mut amount = transfer.amount;
        if transfer.flags().balancing_debit() {
            amount = amount.min(debit_account.credits_posted.saturating_sub(dr_debits));
        }
        if transfer.flags().balancing_credit() {
            amount = amount.min(credit_account.debits_posted.saturating_sub(cr_credits));
        }
        if pending {
            if debit_account.debits_pending.checked_add(amount).is_none() {
                return Err(S::OverflowsDebitsPending);
            }
            if credit_account.credits_pending.checked_add(amount).is_none() {
                return Err(S::OverflowsCreditsPending);
            }
        }
        if debit_account.debits_posted.checked_add(amount).is_none() {
            return Err(S::OverflowsDebitsPosted);
        }
        if credit_account.credits_posted.checked_add(amount).is_none() {
            return Err(S::OverflowsCreditsPosted);
        }
        let Some(dr_debits_after) = dr_debits.checked_add(amount) else {
            return Err(S::OverflowsDebits);
        };
        let Some(cr_credits_after) = cr_credits.checked_add(amount) else {
            return Err(S::OverflowsCredits);
        };
        // `timestamp <= TIMESTAMP_MAX < 2^63` and the timeout in ns is below 2^63, so the sum
        // fits in u64; it must also fit in the 63 bits of a timestamp.
        let expires_at = timestamp + u64::from(transfer.timeout) * NS_PER_SECOND;
        if expires_at > TIMESTAMP_MAX {
            return Err(S::OverflowsTimeout);
        }
        if debit_account.flags().debits_must_not_exceed_credits()
            && dr_debits_after > debit_account.credits_posted
        {
            return Err(S::ExceedsCredits);
        }
        if credit_account.flags().credits_must_not_exceed_debits()
            && cr_credits_after > credit_account.debits_posted
        {
            return Err(S::ExceedsDebits);
        }
        self.check_capacity(pending, debit_account.flags(), credit_account.flags())?;

        assert!(amount <= transfer.amount);

        // Commit (4.1).
        self.record_account(debit);
        self.record_account(credit);
        let debit_account = &mut self.accounts[debit as usize];
        if pending {
            debit_account.debits_pending += amount;
        } else {
            debit_account.debits_posted += amount;
        }
        if transfer.flags().closing_debit() {
            debit_account.flags |= AccountFlags::CLOSED;
        }
        let credit_account = &mut self.accounts[credit as usize];
        if pending {
            credit_account.credits_pending += amount;
        } else {
            credit_account.credits_posted += amount;
        }
        if transfer.flags().closing_credit() {
            credit_account.flags |= AccountFlags::CLOSED;
        }
        // Postconditions: the debits (pending plus posted) of one account and the credits of
        // the other moved by exactly `amount`; the sums after were computed by the checks
        // above, before anything changed.
        assert_eq!(
            credit_account.credits_pending + credit_account.credits_posted,
            cr_credits_after
        );
        let debit_account = &self.accounts[debit as usize];
        assert_eq!(
            debit_account.debits_pending + debit_account.debits_posted,
            dr_debits_after
        );
        let status = if pending {
            PendingStatus::Pending
        } else {
            PendingStatus::None
        };
        let stored = Transfer {
            amount,
            timestamp,
            ..*transfer
        };
        let position = self.insert_transfer(&stored, debit, credit, status, vacancy);
        if pending {
            self.pending_count += 1;
            if transfer.timeout > 0 {
                let entry = ExpiryEntry {
                    expires_at,
                    timestamp,
                    transfer: position,
                };
                self.expiry.insert(entry, &mut self.expiry_positions);
                self.record(Undo::ExpiryInserted { transfer: position });
            }
        }
        Ok(())
    }

    /// Capacity checks, after every rule passed: clearline's own, non-transient failures.
    #[inline(always)]
    fn check_capacity(
        &self,
        pending: bool,
        debit_flags: AccountFlags,
        credit_flags: AccountFlags,
    ) -> Result<(), CreateTransferStatus> {
        // Memory is a cache in history mode: the caller keeps room for each command
        // (`Engine::history_room`), so no outcome depends on how much has left memory.
        let history = self.history.is_some();
        if !history && self.transfers.len() >= self.config.transfers_max as usize {
            return Err(CreateTransferStatus::TransfersCapacityExceeded);
        }
        if pending && self.pending_count >= self.config.transfers_pending_max {
            return Err(CreateTransferStatus::PendingTransfersCapacityExceeded);
        }
        if history {
            return Ok(());
        }
        let rows = usize::from(debit_flags.history()) + usize::from(credit_flags.history());
        if self.balances.len() + rows > self.config.account_balances_max as usize {
            return Err(CreateTransferStatus::AccountBalancesCapacityExceeded);
        }
        Ok(())
    }

    /// Appends a transfer whose balance effects are already applied: links it into both
    /// accounts' lists, indexes it and writes history rows.
    #[inline(always)]
    fn insert_transfer(
        &mut self,
        stored: &Transfer,
        debit: u32,
        credit: u32,
        status: PendingStatus,
        vacancy: Vacancy,
    ) -> u32 {
        assert!(self.transfers.len() < self.transfers.capacity());
        assert!(stored.timestamp > self.transfers_timestamp_max());
        let position = self.transfers.len() as u32;
        let debit_previous = self.account_meta[debit as usize].transfer_newest;
        let credit_previous = self.account_meta[credit as usize].transfer_newest;
        self.account_meta[debit as usize].transfer_newest = position;
        self.account_meta[credit as usize].transfer_newest = position;
        self.transfers.push(*stored);
        self.transfer_meta.push(TransferMeta {
            debit_previous,
            credit_previous,
            status,
            resolved_at: 0,
        });
        self.expiry_positions.push(NO_POSITION);
        self.transfer_index.insert_at(vacancy, position);
        if let Some(history) = self.history.as_deref_mut() {
            history.filter_insert(stored.id);
        }
        self.record(Undo::TransferCreated { debit, credit });
        for account in [debit, credit] {
            if self.accounts[account as usize].flags().history() {
                self.insert_balance_row(account, position, stored.timestamp);
            }
        }
        position
    }

    fn insert_balance_row(&mut self, account: u32, transfer: u32, timestamp: u64) {
        assert!(self.balances.len() < self.balances.capacity());
        let stored = &self.accounts[account as usize];
        let row = BalanceRow {
            debits_pending: stored.debits_pending,
            debits_posted: stored.debits_posted,
            credits_pending: stored.credits_pending,
            credits_posted: stored.credits_posted,
            timestamp,
            transfer,
            previous: self.account_meta[account as usize].balance_newest,
        };
        self.account_meta[account as usize].balance_newest = self.balances.len() as u32;
        self.balances.push(row);
        self.record(Undo::BalanceRowCreated { account });
    }

    /// The post/void path (3.3) for a transfer whose id is new.
    fn post_or_void_transfer(
        &mut self,
        transfer: &Transfer,
        timestamp: u64,
        vacancy: Vacancy,
    ) -> Result<(), CreateTransferStatus> {
        use CreateTransferStatus as S;
        let post = transfer.flags().post_pending_transfer();
        let void = transfer.flags().void_pending_transfer();
        let exclusive = TransferFlags::PENDING
            | TransferFlags::BALANCING_DEBIT
            | TransferFlags::BALANCING_CREDIT
            | TransferFlags::CLOSING_DEBIT
            | TransferFlags::CLOSING_CREDIT;
        if (post && void) || transfer.flags().any(exclusive) {
            return Err(S::FlagsAreMutuallyExclusive);
        }
        if transfer.pending_id == 0 {
            return Err(S::PendingIdMustNotBeZero);
        }
        if transfer.pending_id == u128::MAX {
            return Err(S::PendingIdMustNotBeIntMax);
        }
        if transfer.pending_id == transfer.id {
            return Err(S::PendingIdMustBeDifferent);
        }
        if transfer.timeout != 0 {
            return Err(S::TimeoutReservedForPendingTransfer);
        }
        // Burned ids count as not found.
        let settlement = is_settlement(transfer);
        let Some((pending_transfer, pending)) =
            self.transfer_record(transfer.pending_id, settlement)
        else {
            return Err(S::PendingTransferNotFound);
        };
        if !pending_transfer.flags().pending() {
            return Err(S::PendingTransferNotPending);
        }
        if transfer.debit_account_id != 0
            && transfer.debit_account_id != pending_transfer.debit_account_id
        {
            return Err(S::PendingTransferHasDifferentDebitAccountId);
        }
        if transfer.credit_account_id != 0
            && transfer.credit_account_id != pending_transfer.credit_account_id
        {
            return Err(S::PendingTransferHasDifferentCreditAccountId);
        }
        if transfer.ledger != 0 && transfer.ledger != pending_transfer.ledger {
            return Err(S::PendingTransferHasDifferentLedger);
        }
        if transfer.code != 0 && transfer.code != pending_transfer.code {
            return Err(S::PendingTransferHasDifferentCode);
        }
        let amount = if post {
            if transfer.amount == u128::MAX {
                pending_transfer.amount
            } else {
                transfer.amount
            }
        } else if transfer.amount == 0 {
            pending_transfer.amount
        } else {
            transfer.amount
        };
        if amount > pending_transfer.amount {
            return Err(S::ExceedsPendingTransferAmount);
        }
        if void && amount < pending_transfer.amount {
            return Err(S::PendingTransferHasDifferentAmount);
        }
        let status = match pending {
            Some(position) => self.transfer_meta[position as usize].status,
            None => self.stored_status(transfer.pending_id, settlement),
        };
        match status {
            PendingStatus::Pending => {}
            PendingStatus::Posted => return Err(S::PendingTransferAlreadyPosted),
            PendingStatus::Voided => return Err(S::PendingTransferAlreadyVoided),
            PendingStatus::Expired => return Err(S::PendingTransferExpired),
            PendingStatus::None => unreachable!("a pending transfer has a pending status"),
        }
        // Unresolved pending transfers never leave memory.
        let pending = pending.expect("an unresolved pending transfer is in memory");
        // Due but not yet swept: refused all the same (4.4). The sum was bounded at creation.
        if pending_transfer.timeout > 0
            && pending_transfer.timestamp + u64::from(pending_transfer.timeout) * NS_PER_SECOND
                <= timestamp
        {
            return Err(S::PendingTransferExpired);
        }
        if transfer.flags().imported()
            && (timestamp <= self.transfers_timestamp_max()
                || self.account_has_timestamp(timestamp))
        {
            return Err(S::ImportedEventTimestampMustNotRegress);
        }
        let debit = self
            .account_position(pending_transfer.debit_account_id)
            .expect("pending's debit account");
        let credit = self
            .account_position(pending_transfer.credit_account_id)
            .expect("pending's credit account");
        let dr_flags = self.accounts[debit as usize].flags();
        let cr_flags = self.accounts[credit as usize].flags();
        // Voids are allowed on closed accounts (they release funds and may reopen them).
        if !void && dr_flags.closed() {
            return Err(S::DebitAccountAlreadyClosed);
        }
        if !void && cr_flags.closed() {
            return Err(S::CreditAccountAlreadyClosed);
        }
        self.check_capacity(false, dr_flags, cr_flags)?;

        assert!(amount <= pending_transfer.amount);
        assert!(!post || !void);
        let debit_before = &self.accounts[debit as usize];
        let debits_before = debit_before.debits_pending + debit_before.debits_posted;
        let credit_before = &self.accounts[credit as usize];
        let credits_before = credit_before.credits_pending + credit_before.credits_posted;

        // Commit (4.3). No overflow or limit checks: moving pending to posted cannot overflow
        // or break a limit (5.3).
        self.record_account(debit);
        self.record_account(credit);
        self.release_pending(&pending_transfer, debit, credit);
        if post {
            self.accounts[debit as usize].debits_posted += amount;
            self.accounts[credit as usize].credits_posted += amount;
        }
        // Postconditions: the whole pending amount left the debits (pending plus posted) of one
        // account and the credits of the other, and a post added back exactly `amount` (a void
        // adds nothing). `amount <= pending amount <= each sum before`, so nothing wraps.
        let posted = if post { amount } else { 0 };
        let debit_after = &self.accounts[debit as usize];
        assert_eq!(
            debit_after.debits_pending + debit_after.debits_posted,
            debits_before - pending_transfer.amount + posted
        );
        let credit_after = &self.accounts[credit as usize];
        assert_eq!(
            credit_after.credits_pending + credit_after.credits_posted,
            credits_before - pending_transfer.amount + posted
        );
        self.resolve(
            pending,
            if post {
                PendingStatus::Posted
            } else {
                PendingStatus::Voided
            },
            timestamp,
        );
        let stored = Transfer {
            id: transfer.id,
            debit_account_id: pending_transfer.debit_account_id,
            credit_account_id: pending_transfer.credit_account_id,
            amount,
            pending_id: transfer.pending_id,
            user_data_128: if transfer.user_data_128 == 0 {
                pending_transfer.user_data_128
            } else {
                transfer.user_data_128
            },
            user_data_64: if transfer.user_data_64 == 0 {
                pending_transfer.user_data_64
            } else {
                transfer.user_data_64
            },
            user_data_32: if transfer.user_data_32 == 0 {
                pending_transfer.user_data_32
            } else {
                transfer.user_data_32
            },
            timeout: 0,
            ledger: pending_transfer.ledger,
            code: pending_transfer.code,
            flags: transfer.flags,
            timestamp,
        };
        self.insert_transfer(&stored, debit, credit, PendingStatus::None, vacancy);
        Ok(())
    }

    /// The status of a pending transfer that left memory: it was resolved, and its resolution
    /// is in the store (memory keeps pending transfers until then).
    #[cold]
    fn stored_status(&self, id: u128, settlement: bool) -> PendingStatus {
        let history = self
            .history
            .as_deref()
            .expect("only history mode drops transfers");
        match history.reader.resolution(id, settlement) {
            Some(Resolution::Posted) => PendingStatus::Posted,
            Some(Resolution::Voided) => PendingStatus::Voided,
            Some(Resolution::Expired) => PendingStatus::Expired,
            None => panic!("pending transfer {id} left memory with no stored resolution"),
        }
    }

    /// Removes a pending transfer's reservation and reopens accounts it closed (void, expiry;
    /// for a post the accounts cannot be closed by it).
    fn release_pending(&mut self, pending_transfer: &Transfer, debit: u32, credit: u32) {
        let debit_account = &mut self.accounts[debit as usize];
        debit_account.debits_pending -= pending_transfer.amount;
        if pending_transfer.flags().closing_debit() {
            debit_account.flags &= !AccountFlags::CLOSED;
        }
        let credit_account = &mut self.accounts[credit as usize];
        credit_account.credits_pending -= pending_transfer.amount;
        if pending_transfer.flags().closing_credit() {
            credit_account.flags &= !AccountFlags::CLOSED;
        }
    }

    /// Marks a pending transfer resolved and dequeues its expiry.
    fn resolve(&mut self, pending: u32, status: PendingStatus, timestamp: u64) {
        let meta = &mut self.transfer_meta[pending as usize];
        assert_eq!(meta.status, PendingStatus::Pending);
        let previous = meta.status;
        meta.status = status;
        meta.resolved_at = timestamp;
        if let Some(history) = self.history.as_deref_mut() {
            let resolution = status.resolution().expect("a resolved status");
            assert!(history.resolutions.len() < history.resolutions.capacity());
            history.resolutions.push((pending, resolution, timestamp));
        }
        self.record(Undo::StatusChanged {
            transfer: pending,
            status: previous,
        });
        assert!(self.pending_count > 0);
        self.pending_count -= 1;
        if self.transfers[pending as usize].timeout > 0 {
            self.expiry.remove(pending, &mut self.expiry_positions);
            self.record(Undo::ExpiryRemoved { transfer: pending });
        }
    }

    // ---------------------------------------------------------------------------------------
    // Expiry

    /// Expires pending transfers due at or before `timestamp`, in `(expires_at, timestamp)`
    /// order, at most `PULSE_EXPIRIES_MAX`. Expiry `k` uses timestamp
    /// `timestamp - PULSE_EXPIRIES_MAX + k + 1` of the pulse's reserved block.
    pub(crate) fn pulse(&mut self, timestamp: u64) -> u32 {
        assert!(timestamp <= TIMESTAMP_MAX);
        assert!(timestamp >= u64::from(PULSE_EXPIRIES_MAX));
        assert!(!self.undo_active);
        let base = timestamp - u64::from(PULSE_EXPIRIES_MAX);
        let mut expired: u32 = 0;
        while expired < PULSE_EXPIRIES_MAX {
            let Some(next) = self.expiry.peek().copied() else {
                break;
            };
            if next.expires_at > timestamp {
                break;
            }
            let expiry_timestamp = base + u64::from(expired) + 1;
            // Expiries create no transfer object (4.4); their timestamp is only consumed.
            assert!(expiry_timestamp > next.timestamp);
            let pending_transfer = self.transfers[next.transfer as usize];
            let debit = self
                .account_position(pending_transfer.debit_account_id)
                .expect("debit account");
            let credit = self
                .account_position(pending_transfer.credit_account_id)
                .expect("credit account");
            self.release_pending(&pending_transfer, debit, credit);
            self.resolve(next.transfer, PendingStatus::Expired, expiry_timestamp);
            self.expired_count += 1;
            expired += 1;
        }
        expired
    }

    // ---------------------------------------------------------------------------------------
    // Whole-state digest and checks

    pub(crate) fn state_hash(&self) -> u128 {
        let mut digest = Digest::new();
        digest.u64(self.accounts.len() as u64);
        for account in &self.accounts {
            digest.record(|bytes| account.encode(bytes));
        }
        if self.history.is_some() {
            // What left memory is folded into running digests as it is drained, so the hash
            // does not depend on how much has left.
            self.history_digest(&mut digest);
            digest.u64(u64::from(self.pending_count));
            digest.u64(self.expired_count);
            return digest.finish();
        }
        digest.u64(self.transfers.len() as u64);
        for (transfer, meta) in self.transfers.iter().zip(&self.transfer_meta) {
            digest.record(|bytes| transfer.encode(bytes));
            digest.u64(meta.status as u64);
        }
        digest.u64(self.orphans.len() as u64);
        for id in &self.orphans {
            digest.u128(*id);
        }
        digest.u64(self.balances.len() as u64);
        for row in &self.balances {
            digest.u128(row.debits_pending);
            digest.u128(row.debits_posted);
            digest.u128(row.credits_pending);
            digest.u128(row.credits_posted);
            digest.u64(row.timestamp);
            digest.u64(u64::from(row.transfer));
        }
        digest.u64(u64::from(self.pending_count));
        digest.u64(self.expired_count);
        digest.finish()
    }

    /// O(n) invariant checks; panics on the first violation.
    pub(crate) fn verify(&self) {
        assert!(!self.undo_active);
        assert!(self.undo.is_empty());
        assert_eq!(self.accounts.len(), self.account_meta.len());
        assert_eq!(self.transfers.len(), self.transfer_meta.len());
        assert_eq!(self.transfers.len(), self.expiry_positions.len());

        // Per ledger sums, through a sorted copy of (ledger, balances): verify may allocate.
        let mut per_ledger: Vec<(u32, u128, u128, u128, u128)> = Vec::new();
        for (position, a) in self.accounts.iter().enumerate() {
            if position > 0 {
                assert!(a.timestamp > self.accounts[position - 1].timestamp);
            }
            assert_eq!(self.account_position(a.id), Some(position as u32));
            let debits = a.debits_pending.checked_add(a.debits_posted);
            let credits = a.credits_pending.checked_add(a.credits_posted);
            assert!(debits.is_some(), "account {} debits overflow", a.id);
            assert!(credits.is_some(), "account {} credits overflow", a.id);
            if a.flags().debits_must_not_exceed_credits() {
                assert!(
                    debits.unwrap_or(u128::MAX) <= a.credits_posted,
                    "account {}",
                    a.id
                );
            }
            if a.flags().credits_must_not_exceed_debits() {
                assert!(
                    credits.unwrap_or(u128::MAX) <= a.debits_posted,
                    "account {}",
                    a.id
                );
            }
            per_ledger.push((
                a.ledger,
                a.debits_pending,
                a.debits_posted,
                a.credits_pending,
                a.credits_posted,
            ));
        }
        per_ledger.sort_by_key(|entry| entry.0);
        let mut start = 0;
        while start < per_ledger.len() {
            let ledger = per_ledger[start].0;
            let mut sums = [0u128; 4];
            let mut end = start;
            while end < per_ledger.len() && per_ledger[end].0 == ledger {
                let (_, dp, dpost, cp, cpost) = per_ledger[end];
                sums[0] = sums[0].wrapping_add(dp);
                sums[1] = sums[1].wrapping_add(dpost);
                sums[2] = sums[2].wrapping_add(cp);
                sums[3] = sums[3].wrapping_add(cpost);
                end += 1;
            }
            assert_eq!(
                sums[0], sums[2],
                "ledger {ledger}: pending debits != pending credits"
            );
            assert_eq!(
                sums[1], sums[3],
                "ledger {ledger}: posted debits != posted credits"
            );
            start = end;
        }

        // Transfers: index, order, pending statuses, expiry queue.
        let mut pending_count = 0u32;
        let mut queued = 0usize;
        let mut pending_sum = 0u128;
        for (position, (transfer, meta)) in
            self.transfers.iter().zip(&self.transfer_meta).enumerate()
        {
            if position > 0 {
                assert!(transfer.timestamp > self.transfers[position - 1].timestamp);
            }
            assert_eq!(
                self.transfer_position_in(transfer.id, is_settlement(transfer)),
                Some(position as u32)
            );
            let is_pending = transfer.flags().pending();
            assert_eq!(is_pending, meta.status != PendingStatus::None);
            if meta.status == PendingStatus::Pending {
                pending_count += 1;
                pending_sum = pending_sum.wrapping_add(transfer.amount);
                if transfer.timeout > 0 {
                    queued += 1;
                    assert_ne!(self.expiry_positions[position], NO_POSITION);
                }
            } else {
                assert_eq!(self.expiry_positions[position], NO_POSITION);
            }
        }
        assert_eq!(pending_count, self.pending_count);
        assert_eq!(queued, self.expiry.len());
        self.expiry.verify(&self.expiry_positions);
        let debits_pending = self
            .accounts
            .iter()
            .fold(0u128, |sum, a| sum.wrapping_add(a.debits_pending));
        // The rest of `debits_pending` is the matching side's order holds (reservations, see
        // ledger/reservation.rs), which `Exchange::verify` checks account by account.
        assert!(
            pending_sum <= debits_pending,
            "pending amounts above reserved balances"
        );
        for (position, id) in self.orphans.iter().enumerate() {
            let transfers = &self.transfers;
            let orphans = &self.orphans;
            let found = self.transfer_index.find_with(*id, |pending_transfer| {
                transfer_matches(transfers, orphans, pending_transfer, *id, false)
            });
            assert_eq!(found, Some(position as u32 | ORPHAN_BIT));
        }
        assert_eq!(
            self.account_index.entries_count() as usize,
            self.accounts.len()
        );
        assert_eq!(
            self.transfer_index.entries_count() as usize,
            self.transfers.len() + self.orphans.len()
        );
        assert_eq!(self.account_index.positions().count(), self.accounts.len());

        // Lists: each account's transfer list holds exactly its transfers, newest first.
        let mut links = 0usize;
        let mut rows = 0usize;
        for (position, a) in self.accounts.iter().enumerate() {
            let meta = &self.account_meta[position];
            let mut previous_timestamp = u64::MAX;
            let mut cursor = meta.transfer_newest;
            while cursor != NO_POSITION {
                let transfer = &self.transfers[cursor as usize];
                assert!(transfer.timestamp < previous_timestamp);
                previous_timestamp = transfer.timestamp;
                links += 1;
                cursor = if transfer.debit_account_id == a.id {
                    self.transfer_meta[cursor as usize].debit_previous
                } else {
                    assert_eq!(transfer.credit_account_id, a.id);
                    self.transfer_meta[cursor as usize].credit_previous
                };
            }
            let mut cursor = meta.balance_newest;
            while cursor != NO_POSITION {
                let row = &self.balances[cursor as usize];
                let transfer = &self.transfers[row.transfer as usize];
                assert!(transfer.debit_account_id == a.id || transfer.credit_account_id == a.id);
                assert_eq!(row.timestamp, transfer.timestamp);
                rows += 1;
                cursor = row.previous;
            }
        }
        let evicted = self.history_evicted_through();
        let listed = self.transfers.iter();
        let listed = listed
            .filter(|transfer| transfer.timestamp > evicted)
            .count();
        assert_eq!(links, listed * 2);
        assert_eq!(rows, self.balances.len());
    }

    pub(crate) fn pending_count(&self) -> u32 {
        self.pending_count
    }

    pub(crate) fn expiry_next(&self) -> Option<u64> {
        self.expiry.peek().map(|entry| entry.expires_at)
    }
}

/// The checkpoint image of the ledger (see checkpoint.rs). Each record store is its count and
/// its records in position order; the expiry queue's position table is not written, it is the
/// inverse of the heap and is rebuilt from it. The undo log and the batch's resolved accounts
/// are empty between commands and are not written.
impl Ledger {
    pub(crate) fn checkpoint_write(&self, writer: &mut ImageWriter) -> std::io::Result<()> {
        let Ledger {
            config: _,
            accounts,
            account_meta,
            account_index,
            transfers,
            transfer_meta,
            expiry_positions: _,
            transfer_index,
            orphans,
            orphan_timestamps: _,
            orphans_max: _,
            balances,
            expiry,
            pending_count,
            expired_count,
            undo: _,
            undo_active,
            undo_pending_count: _,
            resolved: _,
            // Written after the exchange's stores (`history_checkpoint_write`).
            history: _,
        } = self;
        assert!(!undo_active, "checkpoint inside a linked chain");
        let mut bytes = [0u8; 128];
        writer.count(accounts.len())?;
        for account in accounts {
            account.encode(&mut bytes);
            writer.bytes(&bytes)?;
        }
        writer.count(transfers.len())?;
        for transfer in transfers {
            transfer.encode(&mut bytes);
            writer.bytes(&bytes)?;
        }
        assert_eq!(transfer_meta.len(), transfers.len());
        for meta in transfer_meta {
            // `resolved_at` is written in the history section.
            let TransferMeta {
                debit_previous,
                credit_previous,
                status,
                resolved_at: _,
            } = meta;
            writer.u32(*debit_previous)?;
            writer.u32(*credit_previous)?;
            writer.u8(*status as u8)?;
        }
        writer.count(orphans.len())?;
        for id in orphans {
            writer.u128(*id)?;
        }
        writer.count(balances.len())?;
        for row in balances {
            let BalanceRow {
                debits_pending,
                debits_posted,
                credits_pending,
                credits_posted,
                timestamp,
                transfer,
                previous,
            } = row;
            writer.u128(*debits_pending)?;
            writer.u128(*debits_posted)?;
            writer.u128(*credits_pending)?;
            writer.u128(*credits_posted)?;
            writer.u64(*timestamp)?;
            writer.u32(*transfer)?;
            writer.u32(*previous)?;
        }
        assert_eq!(account_meta.len(), accounts.len());
        for meta in account_meta {
            let AccountMeta {
                transfer_newest,
                balance_newest,
            } = meta;
            writer.u32(*transfer_newest)?;
            writer.u32(*balance_newest)?;
        }
        account_index.checkpoint_write(writer)?;
        // The transfer index is built again by the loader: a forked writer never reads it
        // (`transfer_index_memory`).
        let _ = transfer_index;
        expiry.checkpoint_write(writer)?;
        writer.u32(*pending_count)?;
        writer.u64(*expired_count)?;
        // Two words that held the room kept for voids of order holds while holds were
        // pending transfers; holds are reservations now (ledger/reservation.rs), so they are
        // written as zero and read past, which keeps the layout.
        writer.u64(0)?;
        writer.u64(0)
    }

    /// Reads the image written by `checkpoint_write` into this empty ledger.
    pub(crate) fn checkpoint_read(
        &mut self,
        reader: &mut ImageReader,
    ) -> Result<(), CheckpointError> {
        assert!(self.accounts.is_empty() && self.transfers.is_empty());
        let mut bytes: [u8; 128];
        let count = reader.count("accounts", self.accounts.capacity(), "--accounts-max")?;
        for _ in 0..count {
            bytes = reader.record()?;
            self.accounts.push(Account::decode(&bytes));
        }
        let count = reader.count("transfers", self.transfers.capacity(), "--transfers-max")?;
        for _ in 0..count {
            bytes = reader.record()?;
            self.transfers.push(Transfer::decode(&bytes));
        }
        for _ in 0..count {
            let debit_previous = reader.link("transfer links", count)?;
            let credit_previous = reader.link("transfer links", count)?;
            let status = match reader.u8()? {
                0 => PendingStatus::None,
                1 => PendingStatus::Pending,
                2 => PendingStatus::Posted,
                3 => PendingStatus::Voided,
                4 => PendingStatus::Expired,
                _ => return Err(reader.invalid("transfer links", "unknown pending status")),
            };
            self.transfer_meta.push(TransferMeta {
                debit_previous,
                credit_previous,
                status,
                resolved_at: 0,
            });
            self.expiry_positions.push(NO_POSITION);
        }
        let count = reader.count("burned transfer ids", self.orphans_max, "--transfers-max")?;
        for _ in 0..count {
            self.orphans.push(reader.u128()?);
            // Burn timestamps are in the history section; only history mode reads them.
            self.orphan_timestamps.push(0);
        }
        let count = reader.count(
            "balance history rows",
            self.balances.capacity(),
            "--account-balances-max",
        )?;
        for _ in 0..count {
            let debits_pending = reader.u128()?;
            let debits_posted = reader.u128()?;
            let credits_pending = reader.u128()?;
            let credits_posted = reader.u128()?;
            let timestamp = reader.u64()?;
            let transfer = reader.position("balance history rows", self.transfers.len())?;
            let previous = reader.link("balance history rows", count)?;
            self.balances.push(BalanceRow {
                debits_pending,
                debits_posted,
                credits_pending,
                credits_posted,
                timestamp,
                transfer,
                previous,
            });
        }
        for _ in 0..self.accounts.len() {
            let transfer_newest = reader.link("account list heads", self.transfers.len())?;
            let balance_newest = reader.link("account list heads", self.balances.len())?;
            self.account_meta.push(AccountMeta {
                transfer_newest,
                balance_newest,
            });
        }
        let accounts = &self.accounts;
        self.account_index
            .checkpoint_read(reader, "account index", |position| {
                accounts.get(position as usize).map(|account| account.id)
            })?;
        if reader.transfer_index_written() {
            let (transfers, orphans) = (&self.transfers, &self.orphans);
            self.transfer_index
                .checkpoint_read(reader, "transfer index", |position| {
                    if position & ORPHAN_BIT != 0 {
                        orphans.get((position & !ORPHAN_BIT) as usize).copied()
                    } else {
                        transfers.get(position as usize).map(|transfer| transfer.id)
                    }
                })?;
        } else {
            // Transfers then burned ids, in position order, as eviction rebuilds it.
            let entries = self.transfers.len() + self.orphans.len();
            if entries > self.transfer_index.entries_max() as usize {
                return Err(reader.invalid(
                    "transfer index",
                    "more transfers and burned ids than the index holds",
                ));
            }
            for (position, transfer) in self.transfers.iter().enumerate() {
                self.transfer_index.insert(transfer.id, position as u32);
            }
            self.index_burned_ids();
        }
        self.expiry
            .checkpoint_read(reader, &mut self.expiry_positions)?;
        self.pending_count = reader.u32()?;
        let pending = self.transfer_meta.iter();
        let pending = pending.filter(|meta| meta.status == PendingStatus::Pending);
        if pending.count() != self.pending_count as usize {
            return Err(reader.invalid("transfers", "pending count does not match statuses"));
        }
        if self.pending_count > self.config.transfers_pending_max {
            return Err(CheckpointError::CapacityExceeded {
                store: "unresolved pending transfers",
                count: u64::from(self.pending_count),
                capacity: u64::from(self.config.transfers_pending_max),
                flag: "--transfers-pending-max",
            });
        }
        self.expired_count = reader.u64()?;
        // The retired room for voids of holds (see `checkpoint_write`); an image whose holds
        // were pending transfers is refused by the matching side's part of the image.
        reader.u64()?;
        reader.u64()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountFilter;
    use crate::account::AccountFilterFlags;
    use CreateTransferStatus as S;

    #[test]
    fn unused_memory_is_the_slots_past_the_last_element_among_the_first_count() {
        let mut vector: Vec<u64> = Vec::with_capacity(10);
        vector.extend([1, 2, 3]);
        let start = vector.as_ptr() as usize + 3 * 8;
        assert_eq!(unused_memory(&vector, 8), (start, 5 * 8));
        // Never past the capacity, and nothing when the count is already used.
        assert_eq!(unused_memory(&vector, 100), (start, 7 * 8));
        assert_eq!(unused_memory(&vector, 2), (start, 0));
    }

    const LNK: u16 = TransferFlags::LINKED;
    const PEN: u16 = TransferFlags::PENDING;
    const POS: u16 = TransferFlags::POST_PENDING_TRANSFER;
    const VOI: u16 = TransferFlags::VOID_PENDING_TRANSFER;
    const SECOND: u64 = NS_PER_SECOND;

    struct Harness {
        ledger: Ledger,
        /// The last batch timestamp used; every request advances it.
        now: u64,
    }

    fn account(id: u128, flags: u16) -> Account {
        Account {
            id,
            ledger: 1,
            code: 1,
            flags,
            ..Account::default()
        }
    }

    fn transfer(id: u128, debit: u128, credit: u128, amount: u128, flags: u16) -> Transfer {
        Transfer {
            id,
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            ledger: 1,
            code: 1,
            flags,
            ..Transfer::default()
        }
    }

    fn resolve(id: u128, pending_id: u128, amount: u128, flags: u16) -> Transfer {
        Transfer {
            id,
            pending_id,
            amount,
            flags,
            ..Transfer::default()
        }
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                ledger: Ledger::new(&Config::test_small()),
                now: 1_000_000,
            }
        }

        fn accounts(&mut self, events: &[Account]) -> Vec<CreateResult> {
            self.now += events.len() as u64 + 10;
            let mut results = vec![CreateResult::default(); events.len()];
            self.ledger.create_accounts(self.now, events, &mut results);
            self.ledger.verify();
            results
        }

        fn transfers(&mut self, events: &[Transfer]) -> Vec<S> {
            self.transfers_full(events)
                .iter()
                .map(|r| S::from_u32(r.status).unwrap())
                .collect()
        }

        fn transfers_full(&mut self, events: &[Transfer]) -> Vec<CreateResult> {
            self.now += events.len() as u64 + 10;
            let mut results = vec![CreateResult::default(); events.len()];
            self.ledger.create_transfers(self.now, events, &mut results);
            self.ledger.verify();
            results
        }

        fn balances(&self, id: u128) -> [u128; 4] {
            let a = &self.ledger.accounts[self.ledger.account_position(id).unwrap() as usize];
            [
                a.debits_pending,
                a.debits_posted,
                a.credits_pending,
                a.credits_posted,
            ]
        }

        fn closed(&self, id: u128) -> bool {
            let a = &self.ledger.accounts[self.ledger.account_position(id).unwrap() as usize];
            a.flags().closed()
        }

        fn amount(&self, id: u128) -> u128 {
            let position = self.ledger.transfer_position(id).unwrap();
            self.ledger.transfers[position as usize].amount
        }

        fn pulse_at(&mut self, timestamp: u64) -> u32 {
            self.now = timestamp;
            let count = self.ledger.pulse(timestamp);
            self.ledger.verify();
            count
        }
    }

    fn setup() -> Harness {
        let mut h = Harness::new();
        let created = h.accounts(&[
            account(1, 0),
            account(2, 0),
            account(3, 0),
            account(4, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        ]);
        assert!(created
            .iter()
            .all(|r| r.status == CreateResult::STATUS_CREATED));
        h
    }

    #[test]
    fn failed_chain_rolls_back_and_keeps_later_events() {
        let mut h = setup();
        h.transfers(&[transfer(10, 1, 4, 20, 0)]);
        let mut bad = transfer(2, 4, 1, 15, 0);
        bad.ledger = 0;
        let results = h.transfers(&[transfer(1, 4, 2, 15, LNK), bad, transfer(3, 4, 2, 15, 0)]);
        assert_eq!(
            results,
            [S::LinkedEventFailed, S::LedgerMustNotBeZero, S::Created]
        );
        assert_eq!(h.balances(4), [0, 15, 0, 20]);
        assert!(h.ledger.transfer_position(1).is_none());
        // Not burned: a non-transient failure and a rolled back member stay reusable.
        assert_eq!(h.transfers(&[transfer(1, 1, 2, 1, 0)]), [S::Created]);
    }

    #[test]
    fn exists_inside_a_chain_refers_to_a_rolled_back_object() {
        let mut h = setup();
        let events = [
            transfer(1, 1, 2, 5, LNK),
            transfer(1, 1, 2, 5, LNK),
            transfer(9, 1, 2, 5, 0),
            transfer(1, 1, 2, 5, 0),
        ];
        let results = h.transfers_full(&events);
        let statuses: Vec<S> = results
            .iter()
            .map(|r| S::from_u32(r.status).unwrap())
            .collect();
        assert_eq!(
            statuses,
            [
                S::LinkedEventFailed,
                S::Exists,
                S::LinkedEventFailed,
                S::Created
            ]
        );
        let base = h.now - 4;
        // The failed chain's first member keeps the timestamp it would have had; `exists`
        // reports that rolled back object's timestamp; later members get their own slot.
        assert_eq!(results[0].timestamp, base + 1);
        assert_eq!(results[1].timestamp, base + 1);
        assert_eq!(results[2].timestamp, base + 3);
        assert_eq!(results[3].timestamp, base + 4);
        assert_eq!(h.balances(1), [0, 5, 0, 0]);
    }

    #[test]
    fn transient_failure_in_a_chain_burns_only_the_failing_id() {
        let mut h = setup();
        let results = h.transfers(&[
            transfer(1, 1, 2, 41, LNK),
            transfer(2, 4, 3, 1, LNK),
            resolve(3, 2, 0, VOI),
        ]);
        assert_eq!(
            results,
            [
                S::LinkedEventFailed,
                S::ExceedsCredits,
                S::LinkedEventFailed
            ]
        );
        assert_eq!(
            h.transfers(&[transfer(2, 1, 2, 0, 0)]),
            [S::IdAlreadyFailed]
        );
        assert_eq!(h.transfers(&[transfer(1, 1, 2, 0, 0)]), [S::Created]);
        assert!(h.ledger.transfer_position(2).is_none());
        // A burned id is not a pending transfer either.
        assert_eq!(
            h.transfers(&[resolve(5, 2, 0, VOI)]),
            [S::PendingTransferNotFound]
        );
    }

    #[test]
    fn chain_open_wins_over_a_broken_chain() {
        let mut h = setup();
        let mut bad = transfer(2, 1, 2, 1, LNK);
        bad.code = 0;
        let results = h.transfers(&[transfer(1, 1, 2, 1, LNK), bad, transfer(3, 1, 2, 1, LNK)]);
        assert_eq!(
            results,
            [
                S::LinkedEventFailed,
                S::CodeMustNotBeZero,
                S::LinkedEventChainOpen
            ]
        );
        assert_eq!(h.ledger.transfers.len(), 0);
    }

    #[test]
    fn partial_post_releases_the_rest_and_idempotency_follows_the_amount_rules() {
        let mut h = setup();
        let mut pending = transfer(2, 1, 2, 15, PEN);
        pending.timeout = 1000;
        assert_eq!(h.transfers(&[pending]), [S::Created]);
        assert_eq!(h.balances(1), [15, 0, 0, 0]);
        assert_eq!(h.transfers(&[resolve(101, 2, 13, POS)]), [S::Created]);
        assert_eq!(h.balances(1), [0, 13, 0, 0]);
        assert_eq!(h.balances(2), [0, 0, 0, 13]);
        assert_eq!(h.amount(101), 13);
        for (amount, expected) in [
            (13, S::Exists),
            (14, S::ExistsWithDifferentAmount),
            (0, S::ExistsWithDifferentAmount),
            (u128::MAX, S::ExistsWithDifferentAmount),
        ] {
            assert_eq!(h.transfers(&[resolve(101, 2, amount, POS)]), [expected]);
        }
        assert_eq!(
            h.transfers(&[resolve(102, 2, 0, VOI)]),
            [S::PendingTransferAlreadyPosted]
        );
        // Post of MAX moves the whole amount and is `exists` for MAX and the exact amount.
        assert_eq!(h.transfers(&[transfer(5, 1, 2, 7, PEN)]), [S::Created]);
        assert_eq!(h.transfers(&[resolve(6, 5, u128::MAX, POS)]), [S::Created]);
        assert_eq!(h.amount(6), 7);
        assert_eq!(h.transfers(&[resolve(6, 5, 7, POS)]), [S::Exists]);
        assert_eq!(h.transfers(&[resolve(6, 5, u128::MAX, POS)]), [S::Exists]);
    }

    #[test]
    fn void_amount_rules() {
        let mut h = setup();
        assert_eq!(h.transfers(&[transfer(3, 1, 2, 15, PEN)]), [S::Created]);
        assert_eq!(
            h.transfers(&[resolve(4, 3, 16, VOI)]),
            [S::ExceedsPendingTransferAmount]
        );
        assert_eq!(
            h.transfers(&[resolve(4, 3, 14, VOI)]),
            [S::PendingTransferHasDifferentAmount]
        );
        assert_eq!(h.transfers(&[resolve(4, 3, 15, VOI)]), [S::Created]);
        assert_eq!(h.balances(1), [0, 0, 0, 0]);
        assert_eq!(
            h.transfers(&[resolve(5, 3, 0, POS)]),
            [S::PendingTransferAlreadyVoided]
        );
    }

    #[test]
    fn pulse_expires_in_order_and_post_at_due_time_is_refused() {
        let mut h = setup();
        let start = h.now;
        let mut events = Vec::new();
        for (index, timeout) in [3u32, 1, 2, 0].iter().enumerate() {
            let mut pending = transfer(10 + index as u128, 1, 2, 10 + index as u128, PEN);
            pending.timeout = *timeout;
            events.push(pending);
        }
        assert_eq!(h.transfers(&events), [S::Created; 4]);
        let created = h.now; // Transfer 10 + i has timestamp created - 3 + i.
        assert!(created > start);
        assert_eq!(h.balances(1)[0], 46);
        // The earliest due time is that of transfer 11 (timeout 1 s).
        assert_eq!(h.ledger.expiry_next(), Some(created - 2 + SECOND));
        // Due exactly now (not swept yet): post is refused.
        h.now = created - 2 + SECOND - 1;
        assert_eq!(
            h.transfers(&[resolve(20, 11, 0, POS)]),
            [S::PendingTransferExpired]
        );
        // The sweep at the due time of the first (timeout 1) expires exactly that one.
        assert_eq!(h.pulse_at(created - 2 + SECOND + 100_000), 1);
        assert_eq!(h.balances(1)[0], 35);
        assert_eq!(
            h.transfers(&[resolve(21, 11, 0, VOI)]),
            [S::PendingTransferExpired]
        );
        assert_eq!(h.pulse_at(created + 10 * SECOND), 2);
        assert_eq!(h.balances(1)[0], 13);
        assert_eq!(h.transfers(&[resolve(22, 13, 0, POS)]), [S::Created]);
        assert_eq!(h.pulse_at(created + 20 * SECOND), 0);
        assert_eq!(h.ledger.expiry_next(), None);
        // Expired transfers stay visible; expiries created no transfer objects.
        assert!(h.ledger.transfer_position(11).is_some());
        assert_eq!(h.ledger.transfers.len(), 5);
    }

    #[test]
    fn closing_pending_closes_and_void_or_expiry_reopens() {
        let mut h = setup();
        assert_eq!(h.transfers(&[transfer(1, 1, 2, 15, 0)]), [S::Created]);
        let close = transfer(2, 1, 3, 0, PEN | TransferFlags::CLOSING_DEBIT);
        assert_eq!(h.transfers(&[close]), [S::Created]);
        assert!(h.closed(1));
        assert_eq!(
            h.transfers(&[transfer(3, 1, 2, 5, 0)]),
            [S::DebitAccountAlreadyClosed]
        );
        assert_eq!(
            h.transfers(&[resolve(4, 2, 0, POS)]),
            [S::DebitAccountAlreadyClosed]
        );
        assert_eq!(h.transfers(&[resolve(5, 2, 0, VOI)]), [S::Created]);
        assert!(!h.closed(1));
        assert_eq!(
            h.transfers(&[transfer(3, 1, 2, 5, 0)]),
            [S::IdAlreadyFailed]
        );
        assert_eq!(h.transfers(&[transfer(7, 1, 2, 5, 0)]), [S::Created]);
        // Expiry of a closing transfer reopens too.
        let mut close = transfer(8, 3, 2, 0, PEN | TransferFlags::CLOSING_CREDIT);
        close.timeout = 1;
        assert_eq!(h.transfers(&[close]), [S::Created]);
        assert!(h.closed(2));
        assert_eq!(h.pulse_at(h.now + 2 * SECOND), 1);
        assert!(!h.closed(2));
    }

    #[test]
    fn closing_in_a_failed_chain_is_undone() {
        let mut h = setup();
        let close = transfer(1, 1, 3, 0, PEN | TransferFlags::CLOSING_DEBIT | LNK);
        let results = h.transfers(&[close, transfer(2, 3, 3, 1, 0)]);
        assert_eq!(results, [S::LinkedEventFailed, S::AccountsMustBeDifferent]);
        assert!(!h.closed(1));
        assert_eq!(h.ledger.pending_count(), 0);
    }

    #[test]
    fn post_in_a_failed_chain_is_undone() {
        let mut h = setup();
        let mut pending = transfer(1, 1, 2, 9, PEN);
        pending.timeout = 5;
        assert_eq!(h.transfers(&[pending]), [S::Created]);
        let mut bad = transfer(3, 1, 2, 1, 0);
        bad.ledger = 0;
        let results = h.transfers(&[resolve(2, 1, 4, POS | LNK), bad]);
        assert_eq!(results, [S::LinkedEventFailed, S::LedgerMustNotBeZero]);
        assert_eq!(h.balances(1), [9, 0, 0, 0]);
        assert_eq!(h.ledger.pending_count(), 1);
        assert_eq!(h.pulse_at(h.now + 6 * SECOND), 1);
        assert_eq!(h.balances(1), [0, 0, 0, 0]);
    }

    #[test]
    fn balancing_clamps_and_idempotency_uses_the_bound() {
        let mut h = setup();
        // A4 (D<C) gets credits 10; A1 -> A4.
        assert_eq!(h.transfers(&[transfer(1, 1, 4, 10, 0)]), [S::Created]);
        let bdr = TransferFlags::BALANCING_DEBIT;
        let results = h.transfers(&[
            transfer(2, 4, 3, 3, bdr),
            transfer(3, 4, 3, 13, bdr),
            transfer(4, 4, 3, 1, bdr),
        ]);
        assert_eq!(results, [S::Created; 3]);
        assert_eq!([h.amount(2), h.amount(3), h.amount(4)], [3, 7, 0]);
        assert_eq!(h.transfers(&[transfer(3, 4, 3, 7, bdr)]), [S::Exists]);
        assert_eq!(h.transfers(&[transfer(3, 4, 3, 100, bdr)]), [S::Exists]);
        assert_eq!(
            h.transfers(&[transfer(3, 4, 3, 6, bdr)]),
            [S::ExistsWithDifferentAmount]
        );
    }

    #[test]
    fn overflow_checks_run_in_the_documented_order() {
        let mut h = setup();
        // A1 [100, 200, 0, 0] and A3 [0, 0, 110, 210].
        h.transfers(&[
            transfer(1, 1, 2, 100, PEN),
            transfer(2, 1, 2, 200, 0),
            transfer(3, 2, 3, 110, PEN),
            transfer(4, 2, 3, 210, 0),
        ]);
        assert_eq!(h.balances(1), [100, 200, 0, 0]);
        assert_eq!(h.balances(3), [0, 0, 110, 210]);
        for (amount, expected) in [
            (u128::MAX - 99, S::OverflowsDebitsPending),
            (u128::MAX - 109, S::OverflowsCreditsPending),
            (u128::MAX - 199, S::OverflowsDebitsPosted),
            (u128::MAX - 209, S::OverflowsCreditsPosted),
            (u128::MAX - 299, S::OverflowsDebits),
            (u128::MAX - 319, S::OverflowsCredits),
        ] {
            assert_eq!(h.transfers(&[transfer(10, 1, 3, amount, PEN)]), [expected]);
        }
        // Timeout overflow near the end of time.
        let mut late = transfer(11, 1, 3, 1, PEN);
        late.timeout = 999;
        h.now = TIMESTAMP_MAX - 3 * SECOND - 11;
        assert_eq!(h.transfers(&[late]), [S::OverflowsTimeout]);
    }

    #[test]
    fn imported_timestamp_between_slot_and_batch_timestamp_is_rejected() {
        // docs/ledger.md, where clearline differs: the reference would crash here.
        let mut h = Harness::new();
        let imported = AccountFlags::IMPORTED;
        let batch_timestamp = h.now + 3 + 10;
        let mut a = account(1, imported);
        a.timestamp = batch_timestamp - 1; // Below T, but at/after slot T - 2.
        let mut b = account(2, imported);
        b.timestamp = 5;
        let mut c = account(3, imported);
        c.timestamp = 6;
        let results = h.accounts(&[a, b, c]);
        assert_eq!(h.now, batch_timestamp);
        let statuses: Vec<u32> = results.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [
                CreateAccountStatus::ImportedEventTimestampMustNotAdvance as u32,
                CreateResult::STATUS_CREATED,
                CreateResult::STATUS_CREATED
            ]
        );
        assert_eq!(results[1].timestamp, 5);
        // Exactly the slot is also rejected; one below it is accepted.
        let slot = h.now + 10 + 1;
        let mut d = account(4, imported);
        d.timestamp = slot;
        let results = h.accounts(&[d]);
        let advance = CreateAccountStatus::ImportedEventTimestampMustNotAdvance as u32;
        assert_eq!(results[0].status, advance);
        let mut d = account(4, imported);
        d.timestamp = h.now + 10;
        assert_eq!(h.accounts(&[d])[0].status, CreateResult::STATUS_CREATED);
    }

    #[test]
    fn capacity_failures_do_not_burn_ids() {
        let config = Config {
            accounts_max: 2,
            transfers_max: 2,
            ..Config::test_small()
        };
        let mut h = Harness {
            ledger: Ledger::new(&config),
            now: 1000,
        };
        let results = h.accounts(&[account(1, 0), account(2, 0), account(3, 0)]);
        let capacity = CreateAccountStatus::AccountsCapacityExceeded as u32;
        assert_eq!(results[2].status, capacity);
        h.transfers(&[transfer(1, 1, 2, 1, 0), transfer(2, 1, 2, 1, 0)]);
        assert_eq!(
            h.transfers(&[transfer(3, 1, 2, 1, 0)]),
            [S::TransfersCapacityExceeded]
        );
        h.ledger.clear();
        h.accounts(&[account(1, 0), account(2, 0)]);
        assert_eq!(h.transfers(&[transfer(3, 1, 2, 1, 0)]), [S::Created]);
    }

    #[test]
    fn history_rows_follow_transfers_not_expiries() {
        let mut h = Harness::new();
        h.accounts(&[
            account(1, AccountFlags::HISTORY),
            account(2, AccountFlags::HISTORY),
        ]);
        let mut pending = transfer(1, 1, 2, 5, PEN);
        pending.timeout = 1;
        h.transfers(&[pending, transfer(2, 1, 2, 3, 0)]);
        h.pulse_at(h.now + 2 * SECOND);
        let filter = AccountFilter {
            account_id: 1,
            limit: 10,
            flags: AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS,
            ..AccountFilter::default()
        };
        let mut rows = Vec::with_capacity(10);
        h.ledger.get_account_balances(&filter, &mut rows);
        let got: Vec<[u128; 4]> = rows
            .iter()
            .map(|r| {
                [
                    r.debits_pending,
                    r.debits_posted,
                    r.credits_pending,
                    r.credits_posted,
                ]
            })
            .collect();
        assert_eq!(got, [[5, 0, 0, 0], [5, 3, 0, 0]]);
        assert_eq!(h.balances(1), [0, 3, 0, 0]);
        let mut transfers = Vec::with_capacity(1);
        h.ledger.get_account_transfers(&filter, &mut transfers);
        assert_eq!(transfers.len(), 1); // Capped by the output's capacity.
        assert_eq!(transfers[0].id, 1);
    }
}
