//! Model-based test: the engine against a deliberately simple reference ledger written straight
//! from docs/ledger.md, driven by a seeded random workload and compared
//! after every batch.
//!
//! The model keeps `BTreeMap`s of accounts, transfers and pending states, uses checked u128
//! arithmetic, and undoes a failed linked chain by restoring a copy taken when the chain
//! opened. After every batch the test compares every result (status and timestamp), every
//! account and every transfer id ever used, and checks the ledger invariants on the engine's
//! own answers. A failure names the seed and the batch index; `run_seed(seed, batches)`
//! replays it exactly.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use clearline_engine::limits::PULSE_EXPIRIES_MAX;
use clearline_engine::{Account, AccountFilterFlags, Config, CreateResult, Engine, Transfer};
use clearline_test_support::Rng;
use common::*;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// The reference model.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PendingStatus {
    Pending,
    Posted,
    Voided,
    Expired,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Accounts,
    Transfers,
}

/// Per-event facts the batch-level rules need.
struct EventHead {
    id: u128,
    linked: bool,
    imported: bool,
    timestamp: u64,
}

#[derive(Clone, Default)]
struct Model {
    accounts: BTreeMap<u128, Account>,
    transfers: BTreeMap<u128, Transfer>,
    pending: BTreeMap<u128, PendingStatus>,
    orphans: BTreeSet<u128>,
    resolutions: BTreeMap<u128, u32>,
    /// Balance after each transfer, for accounts with `history`: `(timestamp, balances)`.
    history: BTreeMap<u128, Vec<(u64, [u128; 4])>>,
}

fn expires_at(p: &Transfer) -> Option<u64> {
    (p.timeout > 0).then(|| p.timestamp + u64::from(p.timeout) * SECOND)
}

impl Model {
    fn max_account_timestamp(&self) -> u64 {
        self.accounts
            .values()
            .map(|a| a.timestamp)
            .max()
            .unwrap_or(0)
    }

    fn max_transfer_timestamp(&self) -> u64 {
        self.transfers
            .values()
            .map(|t| t.timestamp)
            .max()
            .unwrap_or(0)
    }

    fn max_timestamp(&self) -> u64 {
        self.max_account_timestamp()
            .max(self.max_transfer_timestamp())
    }

    /// Batch-level checks and linked chains; `apply` does the per-event rules and returns
    /// `(status, timestamp)`.
    fn run_batch(
        &mut self,
        kind: Kind,
        timestamp: u64,
        heads: &[EventHead],
        mut apply: impl FnMut(&mut Model, usize, u64, u64) -> (u32, u64),
    ) -> Vec<(u32, u64)> {
        let (expected, not_expected, out_of_range, not_advance) = match kind {
            Kind::Accounts => (
                AccountStatus::ImportedEventExpected as u32,
                AccountStatus::ImportedEventNotExpected as u32,
                AccountStatus::ImportedEventTimestampOutOfRange as u32,
                AccountStatus::ImportedEventTimestampMustNotAdvance as u32,
            ),
            Kind::Transfers => (
                TransferStatus::ImportedEventExpected as u32,
                TransferStatus::ImportedEventNotExpected as u32,
                TransferStatus::ImportedEventTimestampOutOfRange as u32,
                TransferStatus::ImportedEventTimestampMustNotAdvance as u32,
            ),
        };
        // The chain and timestamp rules have the same numbers for accounts and transfers.
        let chain_open = TransferStatus::LinkedEventChainOpen as u32;
        let chain_failed = TransferStatus::LinkedEventFailed as u32;
        let timestamp_must_be_zero = TransferStatus::TimestampMustBeZero as u32;
        let created = TransferStatus::Created as u32;
        assert_eq!(chain_open, AccountStatus::LinkedEventChainOpen as u32);
        assert_eq!(chain_failed, AccountStatus::LinkedEventFailed as u32);
        assert_eq!(
            timestamp_must_be_zero,
            AccountStatus::TimestampMustBeZero as u32
        );
        assert_eq!(created, AccountStatus::Created as u32);
        let n = heads.len();
        let batch_imported = n > 0 && heads[0].imported;
        let mut results: Vec<(u32, u64)> = Vec::with_capacity(n);
        let mut chain: Option<(usize, Model)> = None;
        let mut broken = false;
        for (index, head) in heads.iter().enumerate() {
            let slot = timestamp - n as u64 + index as u64 + 1;
            if head.linked && chain.is_none() {
                chain = Some((index, self.clone()));
            }
            let (status, ts) = if head.linked && index == n - 1 {
                (chain_open, slot)
            } else if broken {
                (chain_failed, slot)
            } else if head.imported && !batch_imported {
                (not_expected, slot)
            } else if !head.imported && batch_imported {
                (expected, slot)
            } else if batch_imported && !(1..=TS_MAX).contains(&head.timestamp) {
                (out_of_range, slot)
            } else if batch_imported && head.timestamp >= slot {
                // The imported edge as clearline defines it: the bound is the event's own slot.
                (not_advance, slot)
            } else if !batch_imported && head.timestamp != 0 {
                (timestamp_must_be_zero, slot)
            } else {
                let ts = if batch_imported { head.timestamp } else { slot };
                apply(self, index, slot, ts)
            };
            results.push((status, ts));
            if status != created {
                if let Some((start, snapshot)) = &chain {
                    if !broken {
                        broken = true;
                        *self = snapshot.clone();
                        for result in &mut results[*start..index] {
                            result.0 = chain_failed;
                        }
                    }
                }
                if kind == Kind::Transfers
                    && TransferStatus::from_u32(status).is_some_and(TransferStatus::is_transient)
                {
                    self.orphans.insert(head.id);
                }
            }
            if chain.is_some() && (!head.linked || status == chain_open) {
                chain = None;
                broken = false;
            }
        }
        results
    }

    fn create_accounts(&mut self, timestamp: u64, events: &[Account]) -> Vec<(u32, u64)> {
        let heads: Vec<EventHead> = events
            .iter()
            .map(|a| EventHead {
                id: a.id,
                linked: a.flags & A_LNK != 0,
                imported: a.flags & A_IMP != 0,
                timestamp: a.timestamp,
            })
            .collect();
        self.run_batch(
            Kind::Accounts,
            timestamp,
            &heads,
            |model, index, slot, ts| model.create_account(&events[index], slot, ts),
        )
    }

    fn create_account(&mut self, a: &Account, slot: u64, ts: u64) -> (u32, u64) {
        let fail = |status: AccountStatus| (status as u32, slot);
        if a.reserved != 0 {
            return fail(AccountStatus::ReservedField);
        }
        if a.flags & !0x3F != 0 {
            return fail(AccountStatus::ReservedFlag);
        }
        if a.id == 0 {
            return fail(AccountStatus::IdMustNotBeZero);
        }
        if a.id == MAX {
            return fail(AccountStatus::IdMustNotBeIntMax);
        }
        if let Some(e) = self.accounts.get(&a.id) {
            let status = if a.flags != e.flags {
                AccountStatus::ExistsWithDifferentFlags
            } else if a.user_data_128 != e.user_data_128 {
                AccountStatus::ExistsWithDifferentUserData128
            } else if a.user_data_64 != e.user_data_64 {
                AccountStatus::ExistsWithDifferentUserData64
            } else if a.user_data_32 != e.user_data_32 {
                AccountStatus::ExistsWithDifferentUserData32
            } else if a.ledger != e.ledger {
                AccountStatus::ExistsWithDifferentLedger
            } else if a.code != e.code {
                AccountStatus::ExistsWithDifferentCode
            } else {
                return (AccountStatus::Exists as u32, e.timestamp);
            };
            return fail(status);
        }
        if a.flags & A_DC != 0 && a.flags & A_CD != 0 {
            return fail(AccountStatus::FlagsAreMutuallyExclusive);
        }
        if a.debits_pending != 0 {
            return fail(AccountStatus::DebitsPendingMustBeZero);
        }
        if a.debits_posted != 0 {
            return fail(AccountStatus::DebitsPostedMustBeZero);
        }
        if a.credits_pending != 0 {
            return fail(AccountStatus::CreditsPendingMustBeZero);
        }
        if a.credits_posted != 0 {
            return fail(AccountStatus::CreditsPostedMustBeZero);
        }
        if a.ledger == 0 {
            return fail(AccountStatus::LedgerMustNotBeZero);
        }
        if a.code == 0 {
            return fail(AccountStatus::CodeMustNotBeZero);
        }
        if a.flags & A_IMP != 0
            && (ts <= self.max_account_timestamp()
                || self.transfers.values().any(|t| t.timestamp == ts))
        {
            return fail(AccountStatus::ImportedEventTimestampMustNotRegress);
        }
        self.accounts.insert(
            a.id,
            Account {
                timestamp: ts,
                ..*a
            },
        );
        (AccountStatus::Created as u32, ts)
    }

    fn create_transfers(&mut self, timestamp: u64, events: &[Transfer]) -> Vec<(u32, u64)> {
        let heads: Vec<EventHead> = events
            .iter()
            .map(|t| EventHead {
                id: t.id,
                linked: t.flags & LNK != 0,
                imported: t.flags & IMP != 0,
                timestamp: t.timestamp,
            })
            .collect();
        self.run_batch(
            Kind::Transfers,
            timestamp,
            &heads,
            |model, index, slot, ts| model.create_transfer(&events[index], slot, ts),
        )
    }

    fn create_transfer(&mut self, t: &Transfer, slot: u64, ts: u64) -> (u32, u64) {
        let fail = |status: TransferStatus| (status as u32, slot);
        let imported = t.flags & IMP != 0;
        if t.flags & !0x1FF != 0 {
            return fail(TransferStatus::ReservedFlag);
        }
        if t.id == 0 {
            return fail(TransferStatus::IdMustNotBeZero);
        }
        if t.id == MAX {
            return fail(TransferStatus::IdMustNotBeIntMax);
        }
        if let Some(e) = self.transfers.get(&t.id) {
            let status = self.transfer_exists(t, e);
            let at = if status == TransferStatus::Exists {
                e.timestamp
            } else {
                slot
            };
            return (status as u32, at);
        }
        if self.orphans.contains(&t.id) {
            return fail(TransferStatus::IdAlreadyFailed);
        }
        if t.flags & (POS | VOI) != 0 {
            return self.post_or_void(t, slot, ts);
        }
        if t.debit_account_id == 0 {
            return fail(TransferStatus::DebitAccountIdMustNotBeZero);
        }
        if t.debit_account_id == MAX {
            return fail(TransferStatus::DebitAccountIdMustNotBeIntMax);
        }
        if t.credit_account_id == 0 {
            return fail(TransferStatus::CreditAccountIdMustNotBeZero);
        }
        if t.credit_account_id == MAX {
            return fail(TransferStatus::CreditAccountIdMustNotBeIntMax);
        }
        if t.debit_account_id == t.credit_account_id {
            return fail(TransferStatus::AccountsMustBeDifferent);
        }
        if t.pending_id != 0 {
            return fail(TransferStatus::PendingIdMustBeZero);
        }
        let is_pending = t.flags & PEN != 0;
        if !is_pending {
            if t.timeout != 0 {
                return fail(TransferStatus::TimeoutReservedForPendingTransfer);
            }
            if t.flags & (CDR | CCR) != 0 {
                return fail(TransferStatus::ClosingTransferMustBePending);
            }
        }
        if t.ledger == 0 {
            return fail(TransferStatus::LedgerMustNotBeZero);
        }
        if t.code == 0 {
            return fail(TransferStatus::CodeMustNotBeZero);
        }
        let Some(dr) = self.accounts.get(&t.debit_account_id).copied() else {
            return fail(TransferStatus::DebitAccountNotFound);
        };
        let Some(cr) = self.accounts.get(&t.credit_account_id).copied() else {
            return fail(TransferStatus::CreditAccountNotFound);
        };
        if dr.ledger != cr.ledger {
            return fail(TransferStatus::AccountsMustHaveTheSameLedger);
        }
        if t.ledger != dr.ledger {
            return fail(TransferStatus::TransferMustHaveTheSameLedgerAsAccounts);
        }
        if imported {
            if ts <= self.max_transfer_timestamp()
                || self.accounts.values().any(|a| a.timestamp == ts)
            {
                return fail(TransferStatus::ImportedEventTimestampMustNotRegress);
            }
            if ts <= dr.timestamp {
                return fail(TransferStatus::ImportedEventTimestampMustPostdateDebitAccount);
            }
            if ts <= cr.timestamp {
                return fail(TransferStatus::ImportedEventTimestampMustPostdateCreditAccount);
            }
            if t.timeout != 0 {
                return fail(TransferStatus::ImportedEventTimeoutMustBeZero);
            }
        }
        if dr.flags & A_CLSD != 0 {
            return fail(TransferStatus::DebitAccountAlreadyClosed);
        }
        if cr.flags & A_CLSD != 0 {
            return fail(TransferStatus::CreditAccountAlreadyClosed);
        }
        let mut amount = t.amount;
        if t.flags & BDR != 0 {
            let used = dr
                .debits_posted
                .checked_add(dr.debits_pending)
                .expect("model invariant");
            amount = amount.min(dr.credits_posted.saturating_sub(used));
        }
        if t.flags & BCR != 0 {
            let used = cr
                .credits_posted
                .checked_add(cr.credits_pending)
                .expect("model invariant");
            amount = amount.min(cr.debits_posted.saturating_sub(used));
        }
        if is_pending {
            if dr.debits_pending.checked_add(amount).is_none() {
                return fail(TransferStatus::OverflowsDebitsPending);
            }
            if cr.credits_pending.checked_add(amount).is_none() {
                return fail(TransferStatus::OverflowsCreditsPending);
            }
        }
        if dr.debits_posted.checked_add(amount).is_none() {
            return fail(TransferStatus::OverflowsDebitsPosted);
        }
        if cr.credits_posted.checked_add(amount).is_none() {
            return fail(TransferStatus::OverflowsCreditsPosted);
        }
        let dr_total = dr
            .debits_pending
            .checked_add(dr.debits_posted)
            .expect("model invariant");
        let cr_total = cr
            .credits_pending
            .checked_add(cr.credits_posted)
            .expect("model invariant");
        if dr_total.checked_add(amount).is_none() {
            return fail(TransferStatus::OverflowsDebits);
        }
        if cr_total.checked_add(amount).is_none() {
            return fail(TransferStatus::OverflowsCredits);
        }
        if u128::from(ts) + u128::from(t.timeout) * u128::from(SECOND) > u128::from(TS_MAX) {
            return fail(TransferStatus::OverflowsTimeout);
        }
        if dr.flags & A_DC != 0 && dr_total + amount > dr.credits_posted {
            return fail(TransferStatus::ExceedsCredits);
        }
        if cr.flags & A_CD != 0 && cr_total + amount > cr.debits_posted {
            return fail(TransferStatus::ExceedsDebits);
        }
        let dr = self
            .accounts
            .get_mut(&t.debit_account_id)
            .expect("found above");
        if is_pending {
            dr.debits_pending += amount;
        } else {
            dr.debits_posted += amount;
        }
        if t.flags & CDR != 0 {
            dr.flags |= A_CLSD;
        }
        let cr = self
            .accounts
            .get_mut(&t.credit_account_id)
            .expect("found above");
        if is_pending {
            cr.credits_pending += amount;
        } else {
            cr.credits_posted += amount;
        }
        if t.flags & CCR != 0 {
            cr.flags |= A_CLSD;
        }
        if is_pending {
            self.pending.insert(t.id, PendingStatus::Pending);
        }
        self.transfers.insert(
            t.id,
            Transfer {
                amount,
                timestamp: ts,
                ..*t
            },
        );
        self.record_history(ts, [t.debit_account_id, t.credit_account_id]);
        (TransferStatus::Created as u32, ts)
    }

    /// Idempotency: `t` is the request, `e` the stored transfer with the same id.
    fn transfer_exists(&self, t: &Transfer, e: &Transfer) -> TransferStatus {
        if t.flags != e.flags {
            return TransferStatus::ExistsWithDifferentFlags;
        }
        if t.pending_id != e.pending_id {
            return TransferStatus::ExistsWithDifferentPendingId;
        }
        if t.timeout != e.timeout {
            return TransferStatus::ExistsWithDifferentTimeout;
        }
        if e.flags & (POS | VOI) == 0 {
            if t.debit_account_id != e.debit_account_id {
                return TransferStatus::ExistsWithDifferentDebitAccountId;
            }
            if t.credit_account_id != e.credit_account_id {
                return TransferStatus::ExistsWithDifferentCreditAccountId;
            }
            let amount_differs = if e.flags & (BDR | BCR) != 0 {
                t.amount < e.amount
            } else {
                t.amount != e.amount
            };
            if amount_differs {
                return TransferStatus::ExistsWithDifferentAmount;
            }
            if t.user_data_128 != e.user_data_128 {
                return TransferStatus::ExistsWithDifferentUserData128;
            }
            if t.user_data_64 != e.user_data_64 {
                return TransferStatus::ExistsWithDifferentUserData64;
            }
            if t.user_data_32 != e.user_data_32 {
                return TransferStatus::ExistsWithDifferentUserData32;
            }
            if t.ledger != e.ledger {
                return TransferStatus::ExistsWithDifferentLedger;
            }
            if t.code != e.code {
                return TransferStatus::ExistsWithDifferentCode;
            }
            return TransferStatus::Exists;
        }
        let p = self
            .transfers
            .get(&e.pending_id)
            .expect("a stored post/void has its pending");
        if t.debit_account_id != 0 && t.debit_account_id != e.debit_account_id {
            return TransferStatus::ExistsWithDifferentDebitAccountId;
        }
        if t.credit_account_id != 0 && t.credit_account_id != e.credit_account_id {
            return TransferStatus::ExistsWithDifferentCreditAccountId;
        }
        let amount_differs = if e.flags & VOI != 0 {
            if t.amount == 0 {
                e.amount != p.amount
            } else {
                t.amount != e.amount
            }
        } else if t.amount == MAX {
            e.amount != p.amount
        } else {
            t.amount != e.amount
        };
        if amount_differs {
            return TransferStatus::ExistsWithDifferentAmount;
        }
        let inherited = |request: u128, stored: u128, pending: u128| {
            if request == 0 {
                stored != pending
            } else {
                request != stored
            }
        };
        if inherited(t.user_data_128, e.user_data_128, p.user_data_128) {
            return TransferStatus::ExistsWithDifferentUserData128;
        }
        if inherited(
            t.user_data_64.into(),
            e.user_data_64.into(),
            p.user_data_64.into(),
        ) {
            return TransferStatus::ExistsWithDifferentUserData64;
        }
        if inherited(
            t.user_data_32.into(),
            e.user_data_32.into(),
            p.user_data_32.into(),
        ) {
            return TransferStatus::ExistsWithDifferentUserData32;
        }
        if t.ledger != 0 && t.ledger != e.ledger {
            return TransferStatus::ExistsWithDifferentLedger;
        }
        if t.code != 0 && t.code != e.code {
            return TransferStatus::ExistsWithDifferentCode;
        }
        TransferStatus::Exists
    }

    /// Post and void checks, then the commit.
    fn post_or_void(&mut self, t: &Transfer, slot: u64, ts: u64) -> (u32, u64) {
        let fail = |status: TransferStatus| (status as u32, slot);
        let is_post = t.flags & POS != 0;
        let is_void = t.flags & VOI != 0;
        if (is_post && is_void) || t.flags & (PEN | BDR | BCR | CDR | CCR) != 0 {
            return fail(TransferStatus::FlagsAreMutuallyExclusive);
        }
        if t.pending_id == 0 {
            return fail(TransferStatus::PendingIdMustNotBeZero);
        }
        if t.pending_id == MAX {
            return fail(TransferStatus::PendingIdMustNotBeIntMax);
        }
        if t.pending_id == t.id {
            return fail(TransferStatus::PendingIdMustBeDifferent);
        }
        if t.timeout != 0 {
            return fail(TransferStatus::TimeoutReservedForPendingTransfer);
        }
        let Some(p) = self.transfers.get(&t.pending_id).copied() else {
            return fail(TransferStatus::PendingTransferNotFound);
        };
        if p.flags & PEN == 0 {
            return fail(TransferStatus::PendingTransferNotPending);
        }
        if t.debit_account_id != 0 && t.debit_account_id != p.debit_account_id {
            return fail(TransferStatus::PendingTransferHasDifferentDebitAccountId);
        }
        if t.credit_account_id != 0 && t.credit_account_id != p.credit_account_id {
            return fail(TransferStatus::PendingTransferHasDifferentCreditAccountId);
        }
        if t.ledger != 0 && t.ledger != p.ledger {
            return fail(TransferStatus::PendingTransferHasDifferentLedger);
        }
        if t.code != 0 && t.code != p.code {
            return fail(TransferStatus::PendingTransferHasDifferentCode);
        }
        let amount = match (is_post, t.amount) {
            (true, MAX) => p.amount,
            (false, 0) => p.amount,
            (_, amount) => amount,
        };
        if amount > p.amount {
            return fail(TransferStatus::ExceedsPendingTransferAmount);
        }
        if is_void && amount < p.amount {
            return fail(TransferStatus::PendingTransferHasDifferentAmount);
        }
        match self.pending[&p.id] {
            PendingStatus::Pending => {}
            PendingStatus::Posted => return fail(TransferStatus::PendingTransferAlreadyPosted),
            PendingStatus::Voided => return fail(TransferStatus::PendingTransferAlreadyVoided),
            PendingStatus::Expired => return fail(TransferStatus::PendingTransferExpired),
        }
        if expires_at(&p).is_some_and(|due| due <= ts) {
            return fail(TransferStatus::PendingTransferExpired);
        }
        if t.flags & IMP != 0
            && (ts <= self.max_transfer_timestamp()
                || self.accounts.values().any(|a| a.timestamp == ts))
        {
            return fail(TransferStatus::ImportedEventTimestampMustNotRegress);
        }
        let dr_closed = self.accounts[&p.debit_account_id].flags & A_CLSD != 0;
        let cr_closed = self.accounts[&p.credit_account_id].flags & A_CLSD != 0;
        if !is_void && dr_closed {
            return fail(TransferStatus::DebitAccountAlreadyClosed);
        }
        if !is_void && cr_closed {
            return fail(TransferStatus::CreditAccountAlreadyClosed);
        }
        let pick = |request: u128, pending: u128| if request != 0 { request } else { pending };
        let stored = Transfer {
            id: t.id,
            debit_account_id: p.debit_account_id,
            credit_account_id: p.credit_account_id,
            amount,
            pending_id: p.id,
            user_data_128: pick(t.user_data_128, p.user_data_128),
            user_data_64: pick(t.user_data_64.into(), p.user_data_64.into()) as u64,
            user_data_32: pick(t.user_data_32.into(), p.user_data_32.into()) as u32,
            timeout: 0,
            ledger: p.ledger,
            code: p.code,
            flags: t.flags,
            timestamp: ts,
        };
        let dr = self
            .accounts
            .get_mut(&p.debit_account_id)
            .expect("pending's account");
        dr.debits_pending -= p.amount;
        if is_post {
            dr.debits_posted += amount;
        }
        if is_void && p.flags & CDR != 0 {
            dr.flags &= !A_CLSD;
        }
        let cr = self
            .accounts
            .get_mut(&p.credit_account_id)
            .expect("pending's account");
        cr.credits_pending -= p.amount;
        if is_post {
            cr.credits_posted += amount;
        }
        if is_void && p.flags & CCR != 0 {
            cr.flags &= !A_CLSD;
        }
        let status = if is_post {
            PendingStatus::Posted
        } else {
            PendingStatus::Voided
        };
        self.resolve(p.id, status);
        self.transfers.insert(t.id, stored);
        self.record_history(ts, [p.debit_account_id, p.credit_account_id]);
        (TransferStatus::Created as u32, ts)
    }

    /// Appends the balance rows a committed transfer writes for `history` accounts.
    fn record_history(&mut self, timestamp: u64, accounts: [u128; 2]) {
        for id in accounts {
            let a = self.accounts[&id];
            if a.flags & A_HIST != 0 {
                let balances = [
                    a.debits_pending,
                    a.debits_posted,
                    a.credits_pending,
                    a.credits_posted,
                ];
                self.history
                    .entry(id)
                    .or_default()
                    .push((timestamp, balances));
            }
        }
    }

    fn resolve(&mut self, pending_id: u128, status: PendingStatus) {
        self.pending.insert(pending_id, status);
        let count = self.resolutions.entry(pending_id).or_insert(0);
        *count += 1;
        assert_eq!(*count, 1, "model: pending {pending_id} resolved twice");
    }

    /// Expiry: expire what is due at or before `timestamp`, oldest due first.
    fn pulse(&mut self, timestamp: u64) -> u32 {
        let mut due: Vec<(u64, u64, u128)> = self
            .pending
            .iter()
            .filter(|(_, status)| **status == PendingStatus::Pending)
            .filter_map(|(id, _)| {
                let p = &self.transfers[id];
                expires_at(p)
                    .filter(|at| *at <= timestamp)
                    .map(|at| (at, p.timestamp, *id))
            })
            .collect();
        due.sort();
        due.truncate(PULSE_EXPIRIES_MAX as usize);
        for (_, _, id) in &due {
            let p = self.transfers[id];
            let dr = self
                .accounts
                .get_mut(&p.debit_account_id)
                .expect("pending's account");
            dr.debits_pending -= p.amount;
            if p.flags & CDR != 0 {
                dr.flags &= !A_CLSD;
            }
            let cr = self
                .accounts
                .get_mut(&p.credit_account_id)
                .expect("pending's account");
            cr.credits_pending -= p.amount;
            if p.flags & CCR != 0 {
                cr.flags &= !A_CLSD;
            }
            self.resolve(*id, PendingStatus::Expired);
        }
        due.len() as u32
    }

    /// `get_account_transfers` with debits and credits, all times, in timestamp order.
    fn account_transfers(&self, account_id: u128, reversed: bool) -> Vec<u128> {
        let mut found: Vec<(u64, u128)> = self
            .transfers
            .values()
            .filter(|t| t.debit_account_id == account_id || t.credit_account_id == account_id)
            .map(|t| (t.timestamp, t.id))
            .collect();
        found.sort();
        if reversed {
            found.reverse();
        }
        found.into_iter().map(|(_, id)| id).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The seeded workload.

const ACCOUNT_IDS: u64 = 32;
/// Accounts above this id live on ledger 2.
const LEDGER_2_FROM: u128 = 29;

fn ledger_of(id: u128) -> u32 {
    if id >= LEDGER_2_FROM {
        2
    } else {
        1
    }
}

struct Workload {
    rng: Rng,
    next_transfer_id: u128,
    sent: Vec<Transfer>,
    now: u64,
}

impl Workload {
    fn new(seed: u64) -> Workload {
        Workload {
            rng: Rng::new(seed),
            next_transfer_id: 1,
            sent: Vec::new(),
            now: 0,
        }
    }

    fn account_id(&mut self) -> u128 {
        match self.rng.below(100) {
            0 => 0,
            1 => MAX,
            2 => 99,
            _ => 1 + u128::from(self.rng.below(ACCOUNT_IDS)),
        }
    }

    fn amount(&mut self) -> u128 {
        match self.rng.below(100) {
            0..=54 => u128::from(self.rng.below(50)),
            55..=69 => u128::from(self.rng.below(1000)),
            70..=74 => MAX,
            75..=79 => MAX / 2 + u128::from(self.rng.below(3)),
            80..=84 => 0,
            _ => 50 + u128::from(self.rng.below(150)),
        }
    }

    fn account(&mut self, valid: bool) -> Account {
        let id = if valid {
            1 + u128::from(self.rng.below(ACCOUNT_IDS))
        } else {
            self.account_id()
        };
        let mut a = acct(id).lc(ledger_of(id), 1 + self.rng.below(2) as u16);
        a.user_data_128 = u128::from(self.rng.below(3));
        a.user_data_64 = self.rng.below(3);
        a.user_data_32 = self.rng.below(3) as u32;
        if self.rng.chance(30, 100) {
            a.flags |= A_DC;
        } else if self.rng.chance(25, 100) {
            a.flags |= A_CD;
        }
        if self.rng.chance(30, 100) {
            a.flags |= A_HIST;
        }
        if valid {
            return a;
        }
        match self.rng.below(40) {
            0 => a.flags |= A_DC | A_CD,
            1 => a.flags |= A_CLSD,
            2 => a.flags |= A_PADDING << self.rng.below(10),
            3 => a.reserved = 1,
            4 => a.timestamp = 1 + self.rng.below(1000),
            5 => a.debits_posted = 1,
            6 => a.credits_pending = 1,
            7 => a.ledger = 0,
            8 => a.code = 0,
            _ => {}
        }
        a
    }

    /// A transfer of some random kind; `model` supplies existing pending transfers.
    fn transfer(&mut self, model: &Model) -> Transfer {
        let kind = self.rng.below(100);
        if kind < 12 && !self.sent.is_empty() {
            return self.resend();
        }
        let id = match self.rng.below(200) {
            0 => 0,
            1 => MAX,
            _ => {
                self.next_transfer_id += 1;
                self.next_transfer_id - 1
            }
        };
        let pendings: Vec<u128> = model.pending.keys().copied().collect();
        if (12..40).contains(&kind) && !pendings.is_empty() {
            let pending_id = match self.rng.below(30) {
                0 => 0,
                1 => id,
                2 => self.next_transfer_id + 5,
                3 => model.transfers.keys().next().copied().unwrap_or(1),
                _ => self.rng.pick(&pendings),
            };
            let p = model.transfers.get(&pending_id).copied();
            let full = p.map_or(1, |p| p.amount);
            let is_post = kind < 28;
            let mut t = if is_post {
                post(id, pending_id, 0)
            } else {
                void(id, pending_id, 0)
            };
            t.amount = match self.rng.below(8) {
                0 => MAX,
                1 | 2 => full,
                3 => full / 2,
                4 => full.saturating_add(1),
                5 => full.saturating_sub(1),
                _ => 0,
            };
            if self.rng.chance(30, 100) {
                if let Some(p) = p {
                    t.debit_account_id = p.debit_account_id;
                    t.credit_account_id = p.credit_account_id;
                    t.ledger = p.ledger;
                    t.code = p.code;
                }
            }
            if self.rng.chance(4, 100) {
                t.credit_account_id = self.account_id();
            }
            if self.rng.chance(4, 100) {
                t.debit_account_id = self.account_id();
            }
            if self.rng.chance(5, 100) {
                t.code = 7;
            }
            if self.rng.chance(20, 100) {
                t = t.ud(u128::from(self.rng.below(3)), self.rng.below(3), 0);
            }
            if self.rng.chance(3, 100) {
                t.timeout = 1;
            }
            if self.rng.chance(3, 100) {
                t.flags |= self.rng.pick(&[PEN, BDR, BCR, CDR, POS | VOI]);
            }
            return t;
        }
        let debit = self.account_id();
        let mut credit = self.account_id();
        if self.rng.chance(85, 100) && (1..=ACCOUNT_IDS as u128).contains(&debit) {
            // Mostly stay on the debit account's ledger.
            let (low, count) = if ledger_of(debit) == 1 {
                (1, 28)
            } else {
                (29, 4)
            };
            credit = low + u128::from(self.rng.below(count));
        }
        if credit == debit && self.rng.chance(80, 100) {
            credit = 1 + (credit % ACCOUNT_IDS as u128);
        }
        let mut t = tr(id, debit, credit, self.amount()).lc(ledger_of(debit), 1);
        if self.rng.chance(3, 100) {
            t.ledger = self.rng.pick(&[0, 1, 2, 9]);
        }
        if self.rng.chance(2, 100) {
            t.code = 0;
        }
        t = t.ud(
            u128::from(self.rng.below(3)),
            self.rng.below(3),
            self.rng.below(3) as u32,
        );
        if (60..80).contains(&kind) {
            t.flags |= PEN;
            if self.rng.chance(50, 100) {
                t.timeout = 1 + self.rng.below(3) as u32;
            }
            if self.rng.chance(4, 100) {
                t.flags |= self.rng.pick(&[CDR, CCR, CDR | CCR]);
                t.amount = 0;
            }
        }
        if kind >= 80 {
            t.flags |= self.rng.pick(&[BDR, BCR, BDR | BCR]);
        }
        match self.rng.below(60) {
            0 => t.flags |= T_PADDING << self.rng.below(7),
            1 => t.flags |= CDR,
            2 => t.timeout = 1,
            3 => t.pending_id = 5,
            4 => t.timestamp = 7,
            _ => {}
        }
        t
    }

    fn resend(&mut self) -> Transfer {
        let mut t = self.rng.pick(&self.sent);
        t.flags &= !LNK;
        match self.rng.below(13) {
            0 => t.amount = t.amount.wrapping_add(1),
            1 => t.amount = t.amount.saturating_sub(1),
            2 => t.user_data_128 ^= 1,
            3 => t.user_data_64 ^= 1,
            4 => t.user_data_32 ^= 1,
            5 => t.ledger = 0,
            6 => t.code = 0,
            7 => t.timeout ^= 1,
            8 => t.debit_account_id = 0,
            9 => t.flags ^= PEN,
            10 => t.pending_id ^= 1,
            _ => {}
        }
        t
    }

    /// Gives some events the linked flag so chains form (some end the batch: chain open).
    fn link<T>(&mut self, events: &mut [T], flag: u16, flags: impl Fn(&mut T) -> &mut u16) {
        for event in events.iter_mut() {
            if self.rng.chance(20, 100) {
                *flags(event) |= flag;
            }
        }
    }

    /// Turns a batch into an imported one with valid, increasing timestamps after every object,
    /// then breaks some rules on purpose. Returns the batch timestamp to use.
    fn import<T>(
        &mut self,
        events: &mut [T],
        model: &Model,
        flag: u16,
        head: impl Fn(&mut T) -> (&mut u16, &mut u64),
    ) -> u64 {
        let n = events.len() as u64;
        let timestamp = self.now + 2 * n + 2 + self.rng.below(4);
        let mut ts = model.max_timestamp() + 1;
        for event in events.iter_mut() {
            let (flags, event_ts) = head(event);
            *flags |= flag;
            *event_ts = ts;
            ts += 1 + self.rng.below(2);
        }
        let slot = |index: u64| timestamp - n + index + 1;
        if self.rng.chance(40, 100) {
            let index = self.rng.below(n);
            let (flags, event_ts) = head(&mut events[index as usize]);
            match self.rng.below(7) {
                0 => *event_ts = 0,
                1 => *event_ts = u64::MAX - self.rng.below(2),
                2 => *event_ts = timestamp + self.rng.below(3),
                3 => *event_ts = slot(index) + self.rng.below(timestamp - slot(index) + 1),
                4 => *event_ts = 1,
                5 => *flags &= !flag,
                _ => *event_ts = (*event_ts).saturating_sub(1),
            }
        }
        timestamp
    }
}

// ---------------------------------------------------------------------------------------------
// The comparison.

struct Run {
    seed: u64,
    engine: Engine,
    model: Model,
    workload: Workload,
    results: Vec<CreateResult>,
    /// How often each `(kind, status)` occurred: the workload's coverage.
    seen: BTreeMap<(char, u32), u64>,
}

impl Run {
    fn new(seed: u64) -> Run {
        Run {
            seed,
            engine: Engine::new(&Config::test_small()),
            model: Model::default(),
            workload: Workload::new(seed),
            results: Vec::new(),
            seen: BTreeMap::new(),
        }
    }

    fn compare_results(
        &mut self,
        batch: usize,
        what: &str,
        model: &[(u32, u64)],
        name: fn(u32) -> String,
    ) {
        let kind = what.chars().nth(7).unwrap_or('?');
        for result in &self.results {
            *self.seen.entry((kind, result.status)).or_default() += 1;
        }
        let engine: Vec<(String, u64)> = self
            .results
            .iter()
            .map(|r| (name(r.status), r.timestamp))
            .collect();
        let model: Vec<(String, u64)> = model.iter().map(|(s, t)| (name(*s), *t)).collect();
        assert_eq!(
            engine, model,
            "seed {:#x} batch {batch}: {what} results differ (left engine, right model)",
            self.seed
        );
    }

    fn step(&mut self, batch: usize) {
        let seed = self.seed;
        let w = &mut self.workload;
        let choice = if batch == 0 { 0 } else { w.rng.below(100) };
        if choice < 12 {
            let n = if batch == 0 {
                ACCOUNT_IDS as usize
            } else {
                1 + w.rng.below(8) as usize
            };
            let valid = batch == 0;
            let mut events: Vec<Account> = (0..n).map(|_| w.account(valid)).collect();
            if batch == 0 {
                for (index, a) in events.iter_mut().enumerate() {
                    a.id = index as u128 + 1;
                    a.ledger = ledger_of(a.id);
                }
            } else {
                w.link(&mut events, A_LNK, |a| &mut a.flags);
            }
            let timestamp = if batch > 0 && w.rng.chance(15, 100) {
                w.import(&mut events, &self.model, A_IMP, |a| {
                    (&mut a.flags, &mut a.timestamp)
                })
            } else {
                w.now + n as u64 + w.rng.below(3)
            };
            w.now = timestamp;
            let expected = self.model.create_accounts(timestamp, &events);
            self.results = vec![CreateResult::default(); events.len()];
            self.engine
                .create_accounts(timestamp, &events, &mut self.results);
            self.compare_results(batch, "create_accounts", &expected, account_status_name);
        } else if choice < 90 {
            let n = 1 + w.rng.below(16) as usize;
            let mut events: Vec<Transfer> = (0..n).map(|_| w.transfer(&self.model)).collect();
            w.link(&mut events, LNK, |t| &mut t.flags);
            let timestamp = if w.rng.chance(6, 100) {
                w.import(&mut events, &self.model, IMP, |t| {
                    (&mut t.flags, &mut t.timestamp)
                })
            } else {
                let gap = match w.rng.below(10) {
                    0..=6 => w.rng.below(5),
                    7 | 8 => w.rng.below(1000),
                    _ => SECOND / 2 + w.rng.below(2 * SECOND),
                };
                w.now + n as u64 + gap
            };
            w.now = timestamp;
            w.sent
                .extend(events.iter().filter(|t| t.id != 0 && t.id != MAX));
            let expected = self.model.create_transfers(timestamp, &events);
            self.results = vec![CreateResult::default(); events.len()];
            self.engine
                .create_transfers(timestamp, &events, &mut self.results);
            self.compare_results(batch, "create_transfers", &expected, transfer_status_name);
        } else {
            let timestamp = w.now + u64::from(PULSE_EXPIRIES_MAX) + w.rng.below(2 * SECOND);
            w.now = timestamp;
            let expected = self.model.pulse(timestamp);
            let expired = self.engine.pulse(timestamp);
            assert_eq!(
                expired, expected,
                "seed {seed:#x} batch {batch}: pulse expiry count"
            );
        }
        self.check_state(batch);
    }

    fn check_state(&self, batch: usize) {
        let seed = self.seed;
        let context = format!("seed {seed:#x} batch {batch}");
        // Every account id the workload can name.
        let account_ids: Vec<u128> = [0, MAX, 99]
            .into_iter()
            .chain(1..=ACCOUNT_IDS as u128)
            .collect();
        let mut accounts = Vec::with_capacity(account_ids.len());
        self.engine.lookup_accounts(&account_ids, &mut accounts);
        let expected: Vec<Account> = account_ids
            .iter()
            .filter_map(|id| self.model.accounts.get(id).copied())
            .collect();
        assert_eq!(
            accounts, expected,
            "{context}: accounts differ (left engine, right model)"
        );

        // Every transfer id ever used.
        let transfer_ids: Vec<u128> = [0, MAX]
            .into_iter()
            .chain(1..self.workload.next_transfer_id + 8)
            .collect();
        let mut transfers = Vec::with_capacity(transfer_ids.len());
        self.engine.lookup_transfers(&transfer_ids, &mut transfers);
        let expected: Vec<Transfer> = transfer_ids
            .iter()
            .filter_map(|id| self.model.transfers.get(id).copied())
            .collect();
        if transfers != expected {
            let engine: BTreeMap<u128, Transfer> = transfers.iter().map(|t| (t.id, *t)).collect();
            for id in &transfer_ids {
                assert_eq!(
                    engine.get(id),
                    self.model.transfers.get(id),
                    "{context}: transfer {id} differs (left engine, right model)"
                );
            }
        }
        assert_eq!(
            self.engine.accounts_count() as usize,
            self.model.accounts.len(),
            "{context}"
        );
        assert_eq!(
            self.engine.transfers_count() as usize,
            self.model.transfers.len(),
            "{context}: transfers_count"
        );

        // Invariants on the engine's own answers.
        let mut sums: BTreeMap<u32, [(u128, u32); 4]> = BTreeMap::new();
        for a in &accounts {
            let entry = sums.entry(a.ledger).or_default();
            let balances = [
                a.debits_pending,
                a.credits_pending,
                a.debits_posted,
                a.credits_posted,
            ];
            for (sum, value) in entry.iter_mut().zip(balances) {
                let (low, carry) = sum.0.overflowing_add(value);
                *sum = (low, sum.1 + u32::from(carry));
            }
            let debits = a.debits_pending.checked_add(a.debits_posted);
            let credits = a.credits_pending.checked_add(a.credits_posted);
            assert!(
                debits.is_some() && credits.is_some(),
                "{context}: account {} totals",
                a.id
            );
            if a.flags & A_DC != 0 {
                assert!(
                    debits.unwrap() <= a.credits_posted,
                    "{context}: {a:?} breaks D<C"
                );
            }
            if a.flags & A_CD != 0 {
                assert!(
                    credits.unwrap() <= a.debits_posted,
                    "{context}: {a:?} breaks C<D"
                );
            }
        }
        for (ledger, [dp, cp, dpost, cpost]) in &sums {
            assert_eq!(
                dp, cp,
                "{context}: ledger {ledger} pending debits != pending credits"
            );
            assert_eq!(
                dpost, cpost,
                "{context}: ledger {ledger} posted debits != credits"
            );
        }
        let mut resolutions: BTreeMap<u128, u32> = BTreeMap::new();
        for t in &transfers {
            if t.flags & (POS | VOI) != 0 {
                *resolutions.entry(t.pending_id).or_default() += 1;
            }
        }
        for (pending_id, count) in &resolutions {
            assert_eq!(
                *count, 1,
                "{context}: pending {pending_id} resolved {count} times"
            );
            assert_ne!(
                self.model.pending.get(pending_id),
                Some(&PendingStatus::Expired),
                "{context}: pending {pending_id} both expired and resolved"
            );
        }
        self.engine.verify();

        // One account's transfers, as a query sees them.
        let account_id = 1 + u128::from(self.seed.wrapping_add(batch as u64) % ACCOUNT_IDS);
        let reversed = batch % 2 == 1;
        let mut filter = account_filter(account_id);
        if reversed {
            filter.flags |= AccountFilterFlags::REVERSED;
        }
        let mut out = Vec::with_capacity(8191);
        self.engine.get_account_transfers(&filter, &mut out);
        let got: Vec<u128> = out.iter().map(|t| t.id).collect();
        assert_eq!(
            got,
            self.model.account_transfers(account_id, reversed),
            "{context}: get_account_transfers of account {account_id}"
        );
        let mut rows = Vec::with_capacity(8191);
        self.engine
            .get_account_balances(&account_filter(account_id), &mut rows);
        let got: Vec<(u64, [u128; 4])> = rows
            .iter()
            .map(|r| {
                let balances = [
                    r.debits_pending,
                    r.debits_posted,
                    r.credits_pending,
                    r.credits_posted,
                ];
                (r.timestamp, balances)
            })
            .collect();
        let expected = self
            .model
            .history
            .get(&account_id)
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            got, expected,
            "{context}: get_account_balances of account {account_id}"
        );
    }
}

/// Runs `batches` batches of the workload for `seed`, comparing after each.
fn run_seed(seed: u64, batches: usize) -> Run {
    let mut run = Run::new(seed);
    for batch in 0..batches {
        run.step(batch);
    }
    run
}

#[test]
fn engine_matches_model_on_seeded_workloads() {
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen: BTreeMap<(char, u32), u64> = BTreeMap::new();
    for seed in 0..16u64 {
        let seed = 0x5EED_0000 + seed;
        let run = run_seed(seed, 200);
        *totals.entry("accounts".into()).or_default() += run.model.accounts.len() as u64;
        *totals.entry("transfers".into()).or_default() += run.model.transfers.len() as u64;
        for status in run.model.pending.values() {
            *totals.entry(format!("{status:?}")).or_default() += 1;
        }
        for (key, count) in run.seen {
            *seen.entry(key).or_default() += count;
        }
    }
    let named: Vec<String> = seen
        .iter()
        .map(|((kind, status), count)| {
            let name = if *kind == 'a' {
                account_status_name(*status)
            } else {
                transfer_status_name(*status)
            };
            format!("{kind} {name}: {count}")
        })
        .collect();
    println!("model workload coverage: {totals:?}\n{}", named.join("\n"));
    // The workload must actually exercise the interesting paths.
    for key in ["Pending", "Posted", "Voided", "Expired"] {
        assert!(
            totals.get(key).copied().unwrap_or(0) > 0,
            "workload never reached {key}"
        );
    }
    assert!(totals["transfers"] > 1000, "workload too small: {totals:?}");
    let required_accounts = [
        AccountStatus::Created,
        AccountStatus::Exists,
        AccountStatus::ExistsWithDifferentFlags,
        AccountStatus::LinkedEventFailed,
        AccountStatus::LinkedEventChainOpen,
        AccountStatus::ImportedEventTimestampMustNotAdvance,
    ];
    for status in required_accounts {
        assert!(
            seen.contains_key(&('a', status as u32)),
            "never saw {}",
            status.name()
        );
    }
    let required_transfers = [
        TransferStatus::Created,
        TransferStatus::Exists,
        TransferStatus::ExistsWithDifferentAmount,
        TransferStatus::LinkedEventFailed,
        TransferStatus::LinkedEventChainOpen,
        TransferStatus::IdAlreadyFailed,
        TransferStatus::ExceedsCredits,
        TransferStatus::ExceedsDebits,
        TransferStatus::PendingTransferAlreadyPosted,
        TransferStatus::PendingTransferAlreadyVoided,
        TransferStatus::PendingTransferExpired,
        TransferStatus::ExceedsPendingTransferAmount,
        TransferStatus::DebitAccountAlreadyClosed,
        TransferStatus::OverflowsDebitsPosted,
        TransferStatus::ImportedEventTimestampMustNotAdvance,
        TransferStatus::ImportedEventTimestampMustNotRegress,
    ];
    for status in required_transfers {
        assert!(
            seen.contains_key(&('t', status as u32)),
            "never saw {}",
            status.name()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model_on_arbitrary_seeds(seed in any::<u64>(), batches in 1usize..60) {
        run_seed(seed, batches);
    }
}
