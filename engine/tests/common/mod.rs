//! Shared helpers for the engine's conformance tests: record builders, status names for
//! messages (the numbers are the engine's own enums), and a harness that keeps the test's own
//! clock.
//!
//! The harness assigns batch timestamps the way the server does: a create batch of `n` events
//! gets a timestamp `T` at least `n` past the previous write, and event `i` owns the slot
//! `T - n + i + 1`. Balances that the reference's table reaches through a test backdoor are
//! reached here through real transfers from and to helper accounts (see `Harness::setup`).
#![allow(dead_code)]

use clearline_engine::limits::TIMESTAMP_MAX;
/// The status of one `create_accounts` event, as the engine declares it.
pub use clearline_engine::CreateAccountStatus as AccountStatus;
/// The status of one `create_transfers` event, as the engine declares it.
pub use clearline_engine::CreateTransferStatus as TransferStatus;
use clearline_engine::{
    Account, AccountBalance, AccountFilter, AccountFilterFlags, AccountFlags, Config, CreateResult,
    Engine, QueryFilter, Transfer, TransferFlags,
};

/// `u128::MAX`, the `-0` of the reference's table.
pub const MAX: u128 = u128::MAX;
/// Nanoseconds in a second.
pub const SECOND: u64 = 1_000_000_000;
/// The largest timestamp.
pub const TS_MAX: u64 = TIMESTAMP_MAX;

/// Account flag: linked.
pub const A_LNK: u16 = AccountFlags::LINKED;
/// Account flag: debits must not exceed credits.
pub const A_DC: u16 = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
/// Account flag: credits must not exceed debits.
pub const A_CD: u16 = AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS;
/// Account flag: history.
pub const A_HIST: u16 = AccountFlags::HISTORY;
/// Account flag: imported.
pub const A_IMP: u16 = AccountFlags::IMPORTED;
/// Account flag: closed.
pub const A_CLSD: u16 = AccountFlags::CLOSED;
/// The lowest padding bit of account flags.
pub const A_PADDING: u16 = 1 << 6;

/// Transfer flag: linked.
pub const LNK: u16 = TransferFlags::LINKED;
/// Transfer flag: pending.
pub const PEN: u16 = TransferFlags::PENDING;
/// Transfer flag: post pending transfer.
pub const POS: u16 = TransferFlags::POST_PENDING_TRANSFER;
/// Transfer flag: void pending transfer.
pub const VOI: u16 = TransferFlags::VOID_PENDING_TRANSFER;
/// Transfer flag: balancing debit.
pub const BDR: u16 = TransferFlags::BALANCING_DEBIT;
/// Transfer flag: balancing credit.
pub const BCR: u16 = TransferFlags::BALANCING_CREDIT;
/// Transfer flag: closing debit.
pub const CDR: u16 = TransferFlags::CLOSING_DEBIT;
/// Transfer flag: closing credit.
pub const CCR: u16 = TransferFlags::CLOSING_CREDIT;
/// Transfer flag: imported.
pub const IMP: u16 = TransferFlags::IMPORTED;
/// The lowest padding bit of transfer flags.
pub const T_PADDING: u16 = 1 << 9;

/// A create status enum of the engine: its wire number and the reference's name for a number.
pub trait Status: Copy {
    /// The wire number (`CreateResult::status`).
    fn number(self) -> u32;
    /// The reference name of a wire number, or `unknown(n)`, for messages.
    fn name_of(number: u32) -> String;
}

impl Status for AccountStatus {
    fn number(self) -> u32 {
        self as u32
    }
    fn name_of(number: u32) -> String {
        AccountStatus::from_u32(number).map_or(format!("unknown({number})"), |status| {
            status.name().to_string()
        })
    }
}

impl Status for TransferStatus {
    fn number(self) -> u32 {
        self as u32
    }
    fn name_of(number: u32) -> String {
        TransferStatus::from_u32(number).map_or(format!("unknown({number})"), |status| {
            status.name().to_string()
        })
    }
}

/// A create event: an account or a transfer, with the status enum of its operation.
pub trait Event: Copy {
    /// The status of one event.
    type Status: Status;
    /// The operation's name, for messages.
    const OPERATION: &'static str;
    /// Runs the operation on `engine`.
    fn create(engine: &mut Engine, timestamp: u64, events: &[Self], results: &mut [CreateResult]);
}

impl Event for Account {
    type Status = AccountStatus;
    const OPERATION: &'static str = "create_accounts";
    fn create(engine: &mut Engine, timestamp: u64, events: &[Self], results: &mut [CreateResult]) {
        engine.create_accounts(timestamp, events, results);
    }
}

impl Event for Transfer {
    type Status = TransferStatus;
    const OPERATION: &'static str = "create_transfers";
    fn create(engine: &mut Engine, timestamp: u64, events: &[Self], results: &mut [CreateResult]) {
        engine.create_transfers(timestamp, events, results);
    }
}

/// The reference name of an account status number, for messages.
pub fn account_status_name(status: u32) -> String {
    AccountStatus::name_of(status)
}

/// The reference name of a transfer status number, for messages.
pub fn transfer_status_name(status: u32) -> String {
    TransferStatus::name_of(status)
}

/// A default account on ledger 1, code 1, no flags.
pub fn acct(id: u128) -> Account {
    Account {
        id,
        ledger: 1,
        code: 1,
        ..Account::default()
    }
}

/// A single-phase transfer on ledger 1, code 1.
pub fn tr(id: u128, debit: u128, credit: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    }
}

/// A pending transfer on ledger 1, code 1, without timeout.
pub fn pending(id: u128, debit: u128, credit: u128, amount: u128) -> Transfer {
    tr(id, debit, credit, amount).flags(PEN)
}

/// A post of `pending_id` with all optional fields zero (inherited from the pending transfer).
pub fn post(id: u128, pending_id: u128, amount: u128) -> Transfer {
    Transfer {
        pending_id,
        flags: POS,
        ledger: 0,
        code: 0,
        ..tr(id, 0, 0, amount)
    }
}

/// A void of `pending_id` with all optional fields zero (inherited from the pending transfer).
pub fn void(id: u128, pending_id: u128, amount: u128) -> Transfer {
    Transfer {
        pending_id,
        flags: VOI,
        ledger: 0,
        code: 0,
        ..tr(id, 0, 0, amount)
    }
}

/// Chainable edits of an account or transfer event.
pub trait EventExt {
    /// Adds flags.
    fn flags(self, flags: u16) -> Self;
    /// Sets the three user data fields.
    fn ud(self, ud128: u128, ud64: u64, ud32: u32) -> Self;
    /// Sets ledger and code.
    fn lc(self, ledger: u32, code: u16) -> Self;
    /// Sets the (imported) timestamp and the imported flag.
    fn imported(self, timestamp: u64) -> Self;
}

/// Implements `EventExt` for an event type whose imported flag is `$imported`.
macro_rules! event_ext {
    ($event:ty, $imported:expr) => {
        impl EventExt for $event {
            fn flags(mut self, flags: u16) -> Self {
                self.flags |= flags;
                self
            }
            fn ud(mut self, ud128: u128, ud64: u64, ud32: u32) -> Self {
                (self.user_data_128, self.user_data_64, self.user_data_32) = (ud128, ud64, ud32);
                self
            }
            fn lc(mut self, ledger: u32, code: u16) -> Self {
                (self.ledger, self.code) = (ledger, code);
                self
            }
            fn imported(mut self, timestamp: u64) -> Self {
                self.flags |= $imported;
                self.timestamp = timestamp;
                self
            }
        }
    };
}

event_ext!(Account, A_IMP);
event_ext!(Transfer, IMP);

/// Chainable edits that only a transfer event has.
pub trait TransferExt {
    /// Sets the timeout in seconds.
    fn timeout(self, seconds: u32) -> Self;
}

impl TransferExt for Transfer {
    fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = seconds;
        self
    }
}

/// An account filter over debits and credits, unbounded in time, with a large limit.
pub fn account_filter(account_id: u128) -> AccountFilter {
    AccountFilter {
        account_id,
        limit: 8190,
        flags: AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS,
        ..AccountFilter::default()
    }
}

/// A query filter that selects everything, unbounded in time, with a large limit.
pub fn query_filter() -> QueryFilter {
    QueryFilter {
        limit: 8190,
        ..QueryFilter::default()
    }
}

/// Ids of helper accounts that `setup` creates (far from every id a test uses).
pub const HELPER_ACCOUNT_BASE: u128 = 1 << 120;
/// Ids of helper transfers that `setup` creates.
pub const HELPER_TRANSFER_BASE: u128 = 1 << 121;

/// The engine under test with the test's own clock.
pub struct Harness {
    /// The engine.
    pub engine: Engine,
    /// The batch timestamp of the last write.
    pub now: u64,
    /// `(T, n)` of the last create batch.
    pub last_batch: (u64, usize),
    helpers: u128,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// A fresh engine with `Config::test_small()` and the clock at 0.
    pub fn new() -> Harness {
        Harness::with_config(&Config::test_small())
    }

    /// A fresh engine with `config`.
    pub fn with_config(config: &Config) -> Harness {
        Harness {
            engine: Engine::new(config),
            now: 0,
            last_batch: (0, 0),
            helpers: 0,
        }
    }

    /// The slot timestamp of event `index` of the last create batch: `T - n + index + 1`.
    pub fn slot(&self, index: usize) -> u64 {
        let (timestamp, count) = self.last_batch;
        timestamp - count as u64 + index as u64 + 1
    }

    /// Submits a create batch at `timestamp`, or at the next batch timestamp if `None`, and
    /// asserts the status of every event.
    pub fn submit<E: Event>(
        &mut self,
        timestamp: Option<u64>,
        events: &[E],
        expected: &[E::Status],
    ) -> Vec<CreateResult> {
        let timestamp = timestamp.unwrap_or(self.now + events.len() as u64 + 1);
        assert!(
            timestamp >= self.now + events.len() as u64 && timestamp > self.now,
            "test clock: batch timestamp {timestamp} must advance past {} by {}",
            self.now,
            events.len()
        );
        self.now = timestamp;
        self.last_batch = (timestamp, events.len());
        let mut results = vec![CreateResult::default(); events.len()];
        E::create(&mut self.engine, timestamp, events, &mut results);
        check_statuses(E::OPERATION, &results, expected);
        results
    }

    /// Creates default accounts (ledger 1, code 1) with these ids; all must be created.
    pub fn open(&mut self, ids: &[u128]) {
        let events: Vec<Account> = ids.iter().map(|id| acct(*id)).collect();
        self.submit(None, &events, &vec![AccountStatus::Created; ids.len()]);
    }

    /// Advances the clock by `seconds` and runs the expiry pulse at the new time.
    pub fn tick_seconds(&mut self, seconds: u64) -> u32 {
        self.pulse_at(self.now + seconds * SECOND)
    }

    /// Runs the expiry pulse at `timestamp`.
    pub fn pulse_at(&mut self, timestamp: u64) -> u32 {
        assert!(timestamp > self.now);
        self.now = timestamp;
        self.engine.pulse(timestamp)
    }

    /// The account with this id, if it exists.
    pub fn account(&self, id: u128) -> Option<Account> {
        let mut out = Vec::with_capacity(1);
        self.engine.lookup_accounts(&[id], &mut out);
        assert!(out.len() <= 1);
        out.first().copied()
    }

    /// The transfer with this id, if it exists.
    pub fn transfer(&self, id: u128) -> Option<Transfer> {
        let mut out = Vec::with_capacity(1);
        self.engine.lookup_transfers(&[id], &mut out);
        assert!(out.len() <= 1);
        out.first().copied()
    }

    /// `[debits_pending, debits_posted, credits_pending, credits_posted]` of an account.
    pub fn balances(&self, id: u128) -> [u128; 4] {
        let a = self
            .account(id)
            .unwrap_or_else(|| panic!("account {id} not found"));
        [
            a.debits_pending,
            a.debits_posted,
            a.credits_pending,
            a.credits_posted,
        ]
    }

    /// Asserts an account's balances.
    pub fn assert_balances(&self, id: u128, expected: [u128; 4]) {
        assert_eq!(
            self.balances(id),
            expected,
            "balances [dp, dpost, cp, cpost] of account {id}"
        );
    }

    /// Asserts whether an account is closed.
    pub fn assert_closed(&self, id: u128, closed: bool) {
        let a = self
            .account(id)
            .unwrap_or_else(|| panic!("account {id} not found"));
        assert_eq!(
            a.flags & A_CLSD != 0,
            closed,
            "closed flag of account {id}: {a:?}"
        );
    }

    /// Asserts that a transfer exists with this amount.
    pub fn assert_amount(&self, id: u128, amount: u128) {
        let t = self
            .transfer(id)
            .unwrap_or_else(|| panic!("transfer {id} not found"));
        assert_eq!(t.amount, amount, "amount of transfer {id}");
    }

    /// Asserts that no transfer has this id.
    pub fn assert_no_transfer(&self, id: u128) {
        assert_eq!(self.transfer(id), None, "transfer {id} must not exist");
    }

    /// Asserts that no account has this id.
    pub fn assert_no_account(&self, id: u128) {
        assert_eq!(self.account(id), None, "account {id} must not exist");
    }

    /// Ids of `get_account_transfers(filter)`, in reply order.
    pub fn account_transfers(&self, filter: &AccountFilter) -> Vec<u128> {
        let mut out = Vec::with_capacity(8191);
        self.engine.get_account_transfers(filter, &mut out);
        out.iter().map(|t| t.id).collect()
    }

    /// `get_account_balances(filter)`.
    pub fn account_balances(&self, filter: &AccountFilter) -> Vec<AccountBalance> {
        let mut out = Vec::with_capacity(8191);
        self.engine.get_account_balances(filter, &mut out);
        out
    }

    /// Ids of `query_accounts(filter)`, in reply order.
    pub fn query_accounts(&self, filter: &QueryFilter) -> Vec<u128> {
        let mut out = Vec::with_capacity(8191);
        self.engine.query_accounts(filter, &mut out);
        out.iter().map(|a| a.id).collect()
    }

    /// Ids of `query_transfers(filter)`, in reply order.
    pub fn query_transfers(&self, filter: &QueryFilter) -> Vec<u128> {
        let mut out = Vec::with_capacity(8191);
        self.engine.query_transfers(filter, &mut out);
        out.iter().map(|t| t.id).collect()
    }

    /// Brings an existing account to the balances `[dp, dpost, cp, cpost]` (from zero) through
    /// real transfers with a fresh helper account on the same ledger, in an order that respects
    /// the account's limit flag. This replaces the reference's `setup` backdoor.
    pub fn setup(&mut self, id: u128, balances: [u128; 4]) {
        let target = self
            .account(id)
            .unwrap_or_else(|| panic!("setup: account {id} not found"));
        assert_eq!(self.balances(id), [0; 4], "setup starts from zero balances");
        self.helpers += 1;
        let helper = HELPER_ACCOUNT_BASE + self.helpers;
        let helper_account = acct(helper).lc(target.ledger, 1);
        self.submit(None, &[helper_account], &[AccountStatus::Created]);
        let [dp, dpost, cp, cpost] = balances;
        let legs: [(u128, bool, bool); 4] = if target.flags & A_CD != 0 {
            // (amount, account is debited, pending)
            [
                (dpost, true, false),
                (cpost, false, false),
                (cp, false, true),
                (dp, true, true),
            ]
        } else {
            [
                (cpost, false, false),
                (dpost, true, false),
                (dp, true, true),
                (cp, false, true),
            ]
        };
        for (index, (amount, debited, is_pending)) in legs.into_iter().enumerate() {
            if amount == 0 {
                continue;
            }
            let transfer_id = HELPER_TRANSFER_BASE + self.helpers * 8 + index as u128;
            let (debit, credit) = if debited { (id, helper) } else { (helper, id) };
            let mut t = tr(transfer_id, debit, credit, amount).lc(target.ledger, 1);
            if is_pending {
                t = t.flags(PEN);
            }
            self.submit(None, &[t], &[TransferStatus::Created]);
        }
        self.assert_balances(id, balances);
    }
}

/// Asserts statuses, naming each mismatch.
pub fn check_statuses<S: Status>(operation: &str, results: &[CreateResult], expected: &[S]) {
    assert_eq!(results.len(), expected.len(), "{operation}: result count");
    let mut mismatches = Vec::new();
    for (index, (result, want)) in results.iter().zip(expected).enumerate() {
        if result.status != want.number() {
            mismatches.push(format!(
                "  event {index}: expected {}, got {}",
                S::name_of(want.number()),
                S::name_of(result.status)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{operation}: statuses differ:\n{}\nall: {:?}",
        mismatches.join("\n"),
        results
            .iter()
            .map(|result| S::name_of(result.status))
            .collect::<Vec<_>>()
    );
}

/// One market between two ledgers with its fee, escrow and funding accounts, shared by the
/// settlement and full-store tests.
pub mod market {
    use clearline_engine::{Account, Market};

    /// The base ledger.
    pub const BASE: u32 = 1;
    /// The quote ledger.
    pub const QUOTE: u32 = 2;
    /// The fee account (quote ledger).
    pub const FEE: u128 = 3;
    /// The escrow of resting sells (base ledger).
    pub const BASE_ESCROW: u128 = 4;
    /// The escrow of resting buys (quote ledger).
    pub const QUOTE_ESCROW: u128 = 5;
    /// Funds traders' base accounts.
    pub const BASE_SOURCE: u128 = 6;
    /// Funds traders' quote accounts.
    pub const QUOTE_SOURCE: u128 = 7;
    /// The market's id.
    pub const MARKET: u32 = 1;

    /// An account on `ledger` with code 1.
    pub fn account(id: u128, ledger: u32, flags: u16) -> Account {
        Account {
            id,
            ledger,
            code: 1,
            flags,
            ..Account::default()
        }
    }

    /// The market's own accounts: fee, both escrows and both funding sources, without flags.
    pub fn market_accounts() -> [Account; 5] {
        [
            account(FEE, QUOTE, 0),
            account(BASE_ESCROW, BASE, 0),
            account(QUOTE_ESCROW, QUOTE, 0),
            account(BASE_SOURCE, BASE, 0),
            account(QUOTE_SOURCE, QUOTE, 0),
        ]
    }

    /// The market record, settling with transfer code 9.
    pub fn market(lot_size: u64, tick_size: u64, maker_fee: u64, taker_fee: u64) -> Market {
        Market {
            id: MARKET,
            base_ledger: BASE,
            quote_ledger: QUOTE,
            lot_size,
            tick_size,
            maker_fee,
            taker_fee,
            fee_account_id: FEE,
            base_escrow_account_id: BASE_ESCROW,
            quote_escrow_account_id: QUOTE_ESCROW,
            code: 9,
            ..Market::default()
        }
    }
}
