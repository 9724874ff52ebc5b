//! Reservations: the matching side's order holds, kept on account balances rather than as
//! transfer records (docs/matching.md, holds).
//!
//! A reservation of `amount` from a debit account to a credit account adds `amount` to the
//! debit account's `debits_pending` and to the credit account's `credits_pending`, exactly as
//! a pending transfer between them would, so per ledger pending debits still equal pending
//! credits. It makes no transfer record, takes no id, no timestamp, no pending transfer slot and
//! no balance history row: the change shows in the account's next row. The matching side keeps
//! the amount of each order's reservation and releases it (all or part) itself.
//!
//! A new reservation passes the checks a pending transfer between the same accounts passes
//! (`regular_transfer`, the ones that can apply to it: same ledger, accounts open, overflow of
//! the pending, posted and total sums, the balance limit flags) and answers with the same
//! statuses. A release cannot fail: it only subtracts what a reservation added, closed accounts
//! included.
//!
//! Settlement of a command runs inside `settlement_begin` .. `settlement_commit` (or
//! `settlement_rollback`): reservation changes and the settlement transfers made in between are
//! recorded in the undo log like a linked chain's members, so a refused settlement leaves every
//! balance, record and index exactly as before `settlement_begin`.

use super::Ledger;
use crate::result::CreateTransferStatus;
use crate::transfer::Transfer;
use crate::NO_POSITION;

impl Ledger {
    /// Reserves `amount` from account `debit` to account `credit` (positions) on `ledger`,
    /// after first releasing `replacing` of a reservation between the same accounts: the
    /// checks see the balances with `replacing` released, and the accounts move by the
    /// difference. A zero `amount` only releases `replacing` and cannot fail.
    ///
    /// # Errors
    ///
    /// The status a pending transfer of `amount` between the accounts would fail with, and
    /// nothing changes.
    ///
    /// # Panics
    ///
    /// If a position is out of range or the accounts do not hold `replacing` (caller bugs).
    pub(crate) fn hold(
        &mut self,
        (debit, credit): (u32, u32),
        ledger: u32,
        amount: u128,
        replacing: u128,
    ) -> Result<(), CreateTransferStatus> {
        use CreateTransferStatus as S;
        if amount == 0 {
            self.release((debit, credit), replacing);
            return Ok(());
        }
        if debit == NO_POSITION {
            return Err(S::DebitAccountNotFound);
        }
        if credit == NO_POSITION {
            return Err(S::CreditAccountNotFound);
        }
        if debit == credit {
            return Err(S::AccountsMustBeDifferent);
        }
        let debit_account = &self.accounts[debit as usize];
        let credit_account = &self.accounts[credit as usize];
        if debit_account.ledger != credit_account.ledger {
            return Err(S::AccountsMustHaveTheSameLedger);
        }
        if ledger != debit_account.ledger {
            return Err(S::TransferMustHaveTheSameLedgerAsAccounts);
        }
        if debit_account.flags().closed() {
            return Err(S::DebitAccountAlreadyClosed);
        }
        if credit_account.flags().closed() {
            return Err(S::CreditAccountAlreadyClosed);
        }
        // The balances as they are once `replacing` is released.
        let debits_pending = debit_account.debits_pending.checked_sub(replacing);
        let credits_pending = credit_account.credits_pending.checked_sub(replacing);
        let (Some(debits_pending), Some(credits_pending)) = (debits_pending, credits_pending)
        else {
            panic!("released more than is reserved");
        };
        // Both sums are kept at most u128::MAX by the checks of every change.
        let dr_debits = debits_pending + debit_account.debits_posted;
        let cr_credits = credits_pending + credit_account.credits_posted;
        let Some(debits_pending_after) = debits_pending.checked_add(amount) else {
            return Err(S::OverflowsDebitsPending);
        };
        let Some(credits_pending_after) = credits_pending.checked_add(amount) else {
            return Err(S::OverflowsCreditsPending);
        };
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
        self.record_account(debit);
        self.record_account(credit);
        self.accounts[debit as usize].debits_pending = debits_pending_after;
        self.accounts[credit as usize].credits_pending = credits_pending_after;
        Ok(())
    }

    /// Releases `amount` of a reservation from account `debit` to account `credit`.
    ///
    /// # Panics
    ///
    /// If a position is out of range or the accounts do not hold `amount` (caller bugs).
    pub(crate) fn release(&mut self, (debit, credit): (u32, u32), amount: u128) {
        if amount == 0 {
            return;
        }
        self.record_account(debit);
        self.record_account(credit);
        let debit_account = &mut self.accounts[debit as usize];
        debit_account.debits_pending = debit_account
            .debits_pending
            .checked_sub(amount)
            .expect("a release takes back what was reserved");
        let credit_account = &mut self.accounts[credit as usize];
        credit_account.credits_pending = credit_account
            .credits_pending
            .checked_sub(amount)
            .expect("a release takes back what was reserved");
    }

    /// Opens a settlement step: every change until `settlement_commit` or
    /// `settlement_rollback` is recorded so that the step is all-or-nothing.
    ///
    /// # Panics
    ///
    /// If a chain or step is already open (caller bug).
    pub(crate) fn settlement_begin(&mut self) {
        self.chain_begin();
    }

    /// Keeps every change of the open settlement step.
    pub(crate) fn settlement_commit(&mut self) {
        self.chain_end();
    }

    /// Undoes every change of the open settlement step.
    pub(crate) fn settlement_rollback(&mut self) {
        self.chain_rollback();
    }

    /// Creates a settlement transfer (a fill's leg: single-phase, `TransferFlags::SETTLEMENT`,
    /// an id in the settlement namespace) at `timestamp` inside the open settlement step.
    /// Nothing is journaled here: replaying the command that made it makes it again. Failures
    /// burn no id.
    ///
    /// # Errors
    ///
    /// The status the transfer failed with; the caller rolls the step back.
    ///
    /// # Panics
    ///
    /// If no step is open, or `transfer` is linked, imported, two-phase or not a settlement
    /// transfer (caller bugs).
    pub(crate) fn settlement_transfer(
        &mut self,
        timestamp: u64,
        transfer: &Transfer,
    ) -> Result<(), CreateTransferStatus> {
        assert!(self.undo_active);
        let flags = transfer.flags();
        assert!(!flags.linked() && !flags.imported() && !flags.pending());
        assert!(super::is_settlement(transfer));
        assert!((1..=crate::limits::TIMESTAMP_MAX).contains(&timestamp));
        let debit = self
            .account_position(transfer.debit_account_id)
            .unwrap_or(NO_POSITION);
        let credit = self
            .account_position(transfer.credit_account_id)
            .unwrap_or(NO_POSITION);
        match self.create_transfer(transfer, timestamp, (debit, credit), false) {
            (CreateTransferStatus::Created, _) => Ok(()),
            (status, _) => Err(status),
        }
    }
}
