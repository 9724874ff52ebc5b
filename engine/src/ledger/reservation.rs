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

#[cfg(test)]
mod tests {
    use crate::account::{Account, AccountFlags};
    use crate::ledger::Ledger;
    use crate::limits::Config;
    use crate::result::{CreateResult, CreateTransferStatus as S};
    use crate::transfer::{Transfer, TransferFlags};

    const TRADER: u128 = 1;
    const ESCROW: u128 = 2;
    const SOURCE: u128 = 3;
    const OTHER: u128 = 4;

    /// A trader limited to its credits, funded with 100; an escrow, a source and an account on
    /// another ledger.
    fn ledger() -> Ledger {
        let mut ledger = Ledger::new(&Config::test_small());
        let account = |id: u128, ledger: u32, flags: u16| Account {
            id,
            ledger,
            code: 1,
            flags,
            ..Account::default()
        };
        let accounts = [
            account(TRADER, 1, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            account(ESCROW, 1, 0),
            account(SOURCE, 1, 0),
            account(OTHER, 2, 0),
        ];
        let mut results = [CreateResult::default(); 4];
        ledger.create_accounts(100, &accounts, &mut results);
        assert!(results.iter().all(|r| r.status == u32::MAX));
        transfer(&mut ledger, 200, 10, SOURCE, TRADER, 100, 0);
        ledger
    }

    fn transfer(
        l: &mut Ledger,
        now: u64,
        id: u128,
        debit: u128,
        credit: u128,
        amount: u128,
        flags: u16,
    ) {
        let event = Transfer {
            id,
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            ledger: 1,
            code: 1,
            flags,
            ..Transfer::default()
        };
        let mut results = [CreateResult::default()];
        l.create_transfers(now, &[event], &mut results);
        assert_eq!(results[0].status, u32::MAX);
    }

    fn positions(l: &Ledger, debit: u128, credit: u128) -> (u32, u32) {
        let position = |id| l.account_position(id).expect("exists");
        (position(debit), position(credit))
    }

    /// `(debits_pending, credits_pending)` of the trader and the escrow.
    fn pending(l: &Ledger) -> [u128; 2] {
        let (trader, escrow) = positions(l, TRADER, ESCROW);
        [
            l.accounts[trader as usize].debits_pending,
            l.accounts[escrow as usize].credits_pending,
        ]
    }

    #[test]
    fn holds_check_like_pending_transfers_and_make_no_record() {
        let mut l = ledger();
        let transfers = l.transfers.len();
        let accounts = positions(&l, TRADER, ESCROW);
        assert_eq!(l.hold(accounts, 1, 60, 0), Ok(()));
        assert_eq!(pending(&l), [60, 60]);
        // The limit counts the hold: 60 held, 41 more would exceed the 100 credited.
        assert_eq!(l.hold(accounts, 1, 41, 0), Err(S::ExceedsCredits));
        // Replacing 60 by 100 fits; replacing by 101 does not; neither changes on refusal.
        assert_eq!(l.hold(accounts, 1, 101, 60), Err(S::ExceedsCredits));
        assert_eq!(pending(&l), [60, 60]);
        assert_eq!(l.hold(accounts, 1, 100, 60), Ok(()));
        assert_eq!(pending(&l), [100, 100]);
        assert_eq!(
            l.hold(accounts, 2, 1, 0),
            Err(S::TransferMustHaveTheSameLedgerAsAccounts)
        );
        let other = positions(&l, TRADER, OTHER);
        assert_eq!(
            l.hold(other, 1, 1, 0),
            Err(S::AccountsMustHaveTheSameLedger)
        );
        let missing = (crate::NO_POSITION, accounts.1);
        assert_eq!(l.hold(missing, 1, 1, 0), Err(S::DebitAccountNotFound));
        // A zero hold only releases what it replaces; a release cannot fail.
        assert_eq!(l.hold(accounts, 1, 0, 30), Ok(()));
        assert_eq!(pending(&l), [70, 70]);
        l.release(accounts, 70);
        assert_eq!(pending(&l), [0, 0]);
        assert_eq!(l.transfers.len(), transfers);
        l.verify();
    }

    #[test]
    fn closed_accounts_refuse_holds_but_release_them() {
        let mut l = ledger();
        let accounts = positions(&l, TRADER, ESCROW);
        assert_eq!(l.hold(accounts, 1, 50, 0), Ok(()));
        let closing = TransferFlags::PENDING | TransferFlags::CLOSING_DEBIT;
        transfer(&mut l, 300, 11, TRADER, SOURCE, 0, closing);
        assert_eq!(
            l.hold(accounts, 1, 10, 0),
            Err(S::DebitAccountAlreadyClosed)
        );
        // Swapping for a smaller hold is a new hold too: refused.
        assert_eq!(
            l.hold(accounts, 1, 10, 50),
            Err(S::DebitAccountAlreadyClosed)
        );
        l.release(accounts, 50);
        assert_eq!(pending(&l), [0, 0]);
    }

    #[test]
    fn a_rolled_back_settlement_step_restores_holds_and_transfers() {
        let mut l = ledger();
        let accounts = positions(&l, TRADER, ESCROW);
        assert_eq!(l.hold(accounts, 1, 80, 0), Ok(()));
        let transfers = l.transfers.len();
        let before: Vec<Account> = l.accounts.clone();
        l.settlement_begin();
        l.release(accounts, 30);
        let leg = Transfer {
            id: 1 << 127 | 3 << 120 | 1,
            debit_account_id: TRADER,
            credit_account_id: SOURCE,
            amount: 20,
            ledger: 1,
            code: 1,
            flags: TransferFlags::SETTLEMENT,
            ..Transfer::default()
        };
        assert_eq!(l.settlement_transfer(400, &leg), Ok(()));
        // 50 held and 20 posted of 100: 31 more does not fit.
        let too_much = Transfer {
            id: leg.id + 1,
            amount: 31,
            ..leg
        };
        assert_eq!(
            l.settlement_transfer(401, &too_much),
            Err(S::ExceedsCredits)
        );
        l.settlement_rollback();
        assert_eq!(l.transfers.len(), transfers);
        assert_eq!(l.accounts, before);
        assert_eq!(pending(&l), [80, 80]);
        l.verify();
    }
}
