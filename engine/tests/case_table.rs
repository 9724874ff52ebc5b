//! The portable case table of ledger-semantics.md section 8.3, one test per row, plus the edges
//! clearline defines itself (section 11.1, capacity codes).
//!
//! Accounts default to ledger 1, code 1, no flags; `An` is account id `n` and `Tn` transfer id
//! `n`. The reference's `setup` backdoor is replaced by real transfers with helper accounts
//! (`Harness::setup`), so every test goes through the public API only. Where a row only says
//! "tick", the harness advances its clock by whole seconds and runs `pulse`.

mod common;

use clearline_engine::{
    AccountFilter, AccountFilterFlags, Config, CreateResult, QueryFilterFlags, Transfer,
};
use common::*;

// ---------------------------------------------------------------------------------------------
// Accounts: idempotency, validation order, chains, imported timestamps (rows 1-15).

#[test]
fn row_01_account_created_then_exists_in_same_batch() {
    let mut h = Harness::new();
    let a1 = acct(1).ud(2, 2, 2).lc(3, 4);
    let results = h.accounts(&[a1, a1], &[AccountStatus::Created, AccountStatus::Exists]);
    assert_eq!(results[0].timestamp, h.slot(0));
    assert_eq!(
        results[1].timestamp, results[0].timestamp,
        "exists returns the original's ts"
    );
    let stored = h.account(1).expect("A1 exists");
    assert_eq!(stored.timestamp, results[0].timestamp);
    assert_eq!(
        (
            stored.user_data_128,
            stored.user_data_64,
            stored.user_data_32
        ),
        (2, 2, 2)
    );
    assert_eq!((stored.ledger, stored.code, stored.flags), (3, 4, 0));
}

#[test]
fn row_02_account_exists_with_different_fields_in_precedence_order() {
    let mut h = Harness::new();
    let a1 = acct(1).ud(2, 2, 2).lc(3, 4);
    let created = h.accounts(&[a1], &[AccountStatus::Created]);
    let results = h.accounts(
        &[
            acct(1).flags(A_DC).ud(1, 1, 1).lc(9, 9),
            acct(1).ud(1, 1, 1).lc(9, 9),
            acct(1).ud(2, 1, 1).lc(9, 9),
            acct(1).ud(2, 2, 1).lc(9, 9),
            acct(1).ud(2, 2, 2).lc(9, 9),
            acct(1).ud(2, 2, 2).lc(3, 9),
            a1,
        ],
        &[
            AccountStatus::ExistsWithDifferentFlags,
            AccountStatus::ExistsWithDifferentUserData128,
            AccountStatus::ExistsWithDifferentUserData64,
            AccountStatus::ExistsWithDifferentUserData32,
            AccountStatus::ExistsWithDifferentLedger,
            AccountStatus::ExistsWithDifferentCode,
            AccountStatus::Exists,
        ],
    );
    assert_eq!(results[6].timestamp, created[0].timestamp);
    // Failures carry their own slot timestamp.
    assert_eq!(results[0].timestamp, h.slot(0));
    assert_eq!(h.account(1).expect("A1").timestamp, created[0].timestamp);
}

#[test]
fn row_03_account_timestamp_then_reserved_then_padding_then_id() {
    let mut h = Harness::new();
    let mut bad = acct(0).lc(0, 0).flags(A_DC | A_CD | A_PADDING);
    bad.debits_pending = 1;
    bad.debits_posted = 1;
    bad.credits_pending = 1;
    bad.credits_posted = 1;
    bad.reserved = 1;
    bad.timestamp = 1;
    let mut no_ts = bad;
    no_ts.timestamp = 0;
    let mut no_reserved = no_ts;
    no_reserved.reserved = 0;
    let mut no_padding = no_reserved;
    no_padding.flags &= !A_PADDING;
    h.accounts(
        &[bad, no_ts, no_reserved, no_padding],
        &[
            AccountStatus::TimestampMustBeZero,
            AccountStatus::ReservedField,
            AccountStatus::ReservedFlag,
            AccountStatus::IdMustNotBeZero,
        ],
    );
    assert_eq!(h.engine.accounts_count(), 0);
}

#[test]
fn row_04_account_id_int_max() {
    let mut h = Harness::new();
    h.accounts(&[acct(MAX)], &[AccountStatus::IdMustNotBeIntMax]);
    h.assert_no_account(MAX);
}

#[test]
fn row_05_new_account_faults_removed_one_by_one() {
    let mut h = Harness::new();
    let mut a = acct(2).lc(0, 0).flags(A_DC | A_CD);
    a.debits_pending = 1;
    a.debits_posted = 1;
    a.credits_pending = 1;
    a.credits_posted = 1;
    let mut events = vec![a];
    a.flags = A_DC;
    events.push(a);
    a.debits_pending = 0;
    events.push(a);
    a.debits_posted = 0;
    events.push(a);
    a.credits_pending = 0;
    events.push(a);
    a.credits_posted = 0;
    events.push(a);
    a.ledger = 1;
    events.push(a);
    a.code = 1;
    events.push(a);
    h.accounts(
        &events,
        &[
            AccountStatus::FlagsAreMutuallyExclusive,
            AccountStatus::DebitsPendingMustBeZero,
            AccountStatus::DebitsPostedMustBeZero,
            AccountStatus::CreditsPendingMustBeZero,
            AccountStatus::CreditsPostedMustBeZero,
            AccountStatus::LedgerMustNotBeZero,
            AccountStatus::CodeMustNotBeZero,
            AccountStatus::Created,
        ],
    );
    assert_eq!(h.account(2).expect("A2").flags, A_DC);
}

#[test]
fn row_06_account_chain_with_duplicate_fails_entirely() {
    let mut h = Harness::new();
    let results = h.accounts(
        &[
            acct(1).flags(A_LNK),
            acct(2).flags(A_LNK),
            acct(1).flags(A_LNK),
            acct(3),
        ],
        &[
            AccountStatus::LinkedEventFailed,
            AccountStatus::LinkedEventFailed,
            AccountStatus::Exists,
            AccountStatus::LinkedEventFailed,
        ],
    );
    // Members before the failure carry the timestamp they would have had; `exists` refers to
    // the rolled-back A1; members after the failure carry their own slot.
    assert_eq!(results[0].timestamp, h.slot(0));
    assert_eq!(results[1].timestamp, h.slot(1));
    assert_eq!(results[2].timestamp, h.slot(0));
    assert_eq!(results[3].timestamp, h.slot(3));
    for id in 1..=3 {
        h.assert_no_account(id);
    }
}

#[test]
fn row_07_account_linked_bit_is_compared() {
    let mut h = Harness::new();
    h.open(&[1]);
    h.accounts(
        &[acct(1).flags(A_LNK), acct(3)],
        &[
            AccountStatus::ExistsWithDifferentFlags,
            AccountStatus::LinkedEventFailed,
        ],
    );
    h.assert_no_account(3);
}

#[test]
fn row_08_account_chain_open_at_batch_end() {
    let mut h = Harness::new();
    h.accounts(
        &[
            acct(1).flags(A_LNK),
            acct(2).flags(A_LNK),
            acct(3),
            acct(4).flags(A_LNK),
            acct(5).flags(A_LNK),
        ],
        &[
            AccountStatus::Created,
            AccountStatus::Created,
            AccountStatus::Created,
            AccountStatus::LinkedEventFailed,
            AccountStatus::LinkedEventChainOpen,
        ],
    );
    for id in 1..=3 {
        assert!(h.account(id).is_some(), "A{id} created");
    }
    h.assert_no_account(4);
    h.assert_no_account(5);
}

#[test]
fn row_09_single_linked_account_is_chain_open() {
    let mut h = Harness::new();
    let results = h.accounts(
        &[acct(1).flags(A_LNK)],
        &[AccountStatus::LinkedEventChainOpen],
    );
    assert_eq!(results[0].timestamp, h.slot(0));
    h.assert_no_account(1);
}

#[test]
fn row_10_chain_open_wins_over_broken_chain() {
    let mut h = Harness::new();
    h.open(&[1]);
    h.accounts(
        &[
            acct(2).flags(A_LNK),
            acct(1).flags(A_LNK),
            acct(3).flags(A_LNK),
        ],
        &[
            AccountStatus::LinkedEventFailed,
            AccountStatus::ExistsWithDifferentFlags,
            AccountStatus::LinkedEventChainOpen,
        ],
    );
    h.assert_no_account(2);
    h.assert_no_account(3);
}

#[test]
fn row_11_account_created_closed_rejects_transfers() {
    let mut h = Harness::new();
    h.accounts(
        &[acct(1).flags(A_CLSD), acct(2)],
        &[AccountStatus::Created, AccountStatus::Created],
    );
    h.assert_closed(1, true);
    h.transfers(
        &[tr(1, 1, 2, 5)],
        &[TransferStatus::DebitAccountAlreadyClosed],
    );
    h.transfers(&[tr(1, 1, 2, 5)], &[TransferStatus::IdAlreadyFailed]);
    h.transfers(
        &[tr(2, 2, 1, 5)],
        &[TransferStatus::CreditAccountAlreadyClosed],
    );
    h.assert_balances(1, [0; 4]);
    h.assert_balances(2, [0; 4]);
}

#[test]
fn row_12_first_event_decides_imported_batch() {
    let mut h = Harness::new();
    let results = h.accounts_at(
        10,
        &[acct(1).imported(1), acct(2), acct(2).imported(2)],
        &[
            AccountStatus::Created,
            AccountStatus::ImportedEventExpected,
            AccountStatus::Created,
        ],
    );
    assert_eq!(results[0].timestamp, 1);
    assert_eq!(results[2].timestamp, 2);
    assert_eq!(h.account(1).expect("A1").timestamp, 1);
    assert_eq!(h.account(2).expect("A2").timestamp, 2);
    let results = h.accounts(
        &[acct(3), acct(4).imported(3)],
        &[
            AccountStatus::Created,
            AccountStatus::ImportedEventNotExpected,
        ],
    );
    assert_eq!(results[0].timestamp, h.slot(0));
    h.assert_no_account(4);
}

#[test]
fn row_13_imported_account_timestamp_rules() {
    let mut h = Harness::new();
    // The clock stands at about 10 ns.
    h.accounts_at(
        10,
        &[
            acct(1).imported(0),
            acct(1).imported(u64::MAX - 1),
            acct(1).imported(99),
            acct(1).imported(2),
        ],
        &[
            AccountStatus::ImportedEventTimestampOutOfRange,
            AccountStatus::ImportedEventTimestampOutOfRange,
            AccountStatus::ImportedEventTimestampMustNotAdvance,
            AccountStatus::Created,
        ],
    );
    h.accounts_at(
        20,
        &[
            acct(2).imported(1),
            acct(2).imported(3),
            acct(3).imported(9),
        ],
        &[
            AccountStatus::ImportedEventTimestampMustNotRegress,
            AccountStatus::Created,
            AccountStatus::Created,
        ],
    );
    assert_eq!(h.account(1).expect("A1").timestamp, 2);
    assert_eq!(h.account(2).expect("A2").timestamp, 3);
    assert_eq!(h.account(3).expect("A3").timestamp, 9);
}

#[test]
fn row_14_imported_account_resend_exists_regardless_of_timestamp() {
    let mut h = Harness::new();
    h.accounts_at(
        10,
        &[acct(1).imported(2), acct(2).imported(3)],
        &[AccountStatus::Created; 2],
    );
    let results = h.accounts_at(
        20,
        &[
            acct(2).imported(99),
            acct(2).imported(1),
            acct(2).imported(3),
            acct(2).imported(4),
        ],
        &[
            AccountStatus::ImportedEventTimestampMustNotAdvance,
            AccountStatus::Exists,
            AccountStatus::Exists,
            AccountStatus::Exists,
        ],
    );
    for result in &results[1..] {
        assert_eq!(result.timestamp, 3, "exists returns the original timestamp");
    }
}

#[test]
fn row_15_imported_account_must_not_reuse_a_transfer_timestamp() {
    let mut h = Harness::new();
    h.accounts_at(2, &[acct(1), acct(2)], &[AccountStatus::Created; 2]);
    let results = h.transfers_at(10, &[tr(1, 1, 2, 1)], &[TransferStatus::Created]);
    assert_eq!(results[0].timestamp, 10);
    h.accounts_at(
        20,
        &[acct(3).imported(10), acct(3).imported(11)],
        &[
            AccountStatus::ImportedEventTimestampMustNotRegress,
            AccountStatus::Created,
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Transfers: basics, validation order, overflow, limits (rows 16-28).

#[test]
fn row_16_single_phase_transfer_moves_balances() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    let results = h.transfers(&[tr(1, 1, 2, 15)], &[TransferStatus::Created]);
    h.assert_balances(1, [0, 15, 0, 0]);
    h.assert_balances(2, [0, 0, 0, 15]);
    let t = h.transfer(1).expect("T1");
    assert_eq!(t.timestamp, results[0].timestamp);
    assert_eq!(t.timestamp, h.slot(0));
    assert_eq!(
        (t.debit_account_id, t.credit_account_id, t.amount),
        (1, 2, 15)
    );
}

#[test]
fn row_17_failed_transfer_is_not_stored() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(
        &[tr(1, 1, 2, 15), tr(2, 1, 2, 15).lc(0, 1)],
        &[TransferStatus::Created, TransferStatus::LedgerMustNotBeZero],
    );
    h.assert_no_transfer(2);
    h.assert_balances(1, [0, 15, 0, 0]);
}

#[test]
fn row_18_zero_amount_transfer_is_created() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(&[tr(1, 1, 2, 0)], &[TransferStatus::Created]);
    h.assert_balances(1, [0; 4]);
    h.assert_balances(2, [0; 4]);
    h.assert_amount(1, 0);
}

#[test]
fn row_19_transfer_faults_removed_one_by_one() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    let mut t = Transfer {
        pending_id: 1,
        flags: PEN | T_PADDING,
        timestamp: 1,
        ..tr(0, 0, 0, 9).lc(0, 0)
    };
    let mut events = vec![t];
    t.timestamp = 0;
    events.push(t);
    t.flags = PEN;
    events.push(t);
    t.id = MAX;
    events.push(t);
    t.id = 100;
    events.push(t);
    t.debit_account_id = MAX;
    events.push(t);
    t.debit_account_id = 8;
    events.push(t);
    t.credit_account_id = MAX;
    events.push(t);
    t.credit_account_id = 8;
    events.push(t);
    t.credit_account_id = 9;
    events.push(t);
    t.pending_id = 0;
    t.flags = 0;
    t.timeout = 1;
    events.push(t);
    t.timeout = 0;
    t.flags = CDR;
    events.push(t);
    t.flags = PEN;
    events.push(t);
    t.ledger = 9;
    events.push(t);
    t.code = 1;
    events.push(t);
    events.push(tr(100, 1, 2, 1));
    h.transfers(
        &events,
        &[
            TransferStatus::TimestampMustBeZero,
            TransferStatus::ReservedFlag,
            TransferStatus::IdMustNotBeZero,
            TransferStatus::IdMustNotBeIntMax,
            TransferStatus::DebitAccountIdMustNotBeZero,
            TransferStatus::DebitAccountIdMustNotBeIntMax,
            TransferStatus::CreditAccountIdMustNotBeZero,
            TransferStatus::CreditAccountIdMustNotBeIntMax,
            TransferStatus::AccountsMustBeDifferent,
            TransferStatus::PendingIdMustBeZero,
            TransferStatus::TimeoutReservedForPendingTransfer,
            TransferStatus::ClosingTransferMustBePending,
            TransferStatus::LedgerMustNotBeZero,
            TransferStatus::CodeMustNotBeZero,
            TransferStatus::DebitAccountNotFound,
            TransferStatus::IdAlreadyFailed,
        ],
    );
    h.assert_no_transfer(100);
}

#[test]
fn row_20_transient_failure_burns_the_id() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(&[tr(1, 8, 2, 1)], &[TransferStatus::DebitAccountNotFound]);
    h.transfers(&[tr(1, 1, 2, 1)], &[TransferStatus::IdAlreadyFailed]);
    h.transfers(&[tr(2, 1, 9, 1)], &[TransferStatus::CreditAccountNotFound]);
    h.transfers(&[tr(2, 1, 2, 1)], &[TransferStatus::IdAlreadyFailed]);
    h.assert_no_transfer(1);
    h.assert_no_transfer(2);
    h.assert_balances(1, [0; 4]);
}

#[test]
fn row_21_accounts_must_have_the_same_ledger() {
    let mut h = Harness::new();
    h.accounts(&[acct(1), acct(2).lc(2, 1)], &[AccountStatus::Created; 2]);
    h.transfers(
        &[tr(1, 1, 2, 1).lc(9, 1)],
        &[TransferStatus::AccountsMustHaveTheSameLedger],
    );
    // Not transient: the id can be used again.
    h.open(&[3]);
    h.transfers(&[tr(1, 1, 3, 1)], &[TransferStatus::Created]);
}

#[test]
fn row_22_transfer_must_have_the_same_ledger_as_accounts() {
    let mut h = Harness::new();
    h.open(&[1, 3]);
    h.transfers(
        &[tr(1, 1, 3, 1).lc(9, 1)],
        &[TransferStatus::TransferMustHaveTheSameLedgerAsAccounts],
    );
}

#[test]
fn row_23_overflow_checks_in_order() {
    let mut h = Harness::new();
    h.open(&[1, 3]);
    h.setup(1, [100, 200, 0, 0]);
    h.setup(3, [0, 0, 110, 210]);
    let p = |amount: u128| pending(3, 1, 3, amount);
    h.transfers(
        &[
            p(MAX - 99),
            p(MAX - 109),
            p(MAX - 199),
            p(MAX - 209),
            p(MAX - 299),
            p(MAX - 319),
        ],
        &[
            TransferStatus::OverflowsDebitsPending,
            TransferStatus::OverflowsCreditsPending,
            TransferStatus::OverflowsDebitsPosted,
            TransferStatus::OverflowsCreditsPosted,
            TransferStatus::OverflowsDebits,
            TransferStatus::OverflowsCredits,
        ],
    );
    h.assert_balances(1, [100, 200, 0, 0]);
    h.assert_balances(3, [0, 0, 110, 210]);
    // Overflows are not transient: T3 is still usable.
    h.transfers(&[p(1)], &[TransferStatus::Created]);
}

#[test]
fn row_24_timeout_overflow_near_timestamp_max() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    let clock = TS_MAX - 3 * SECOND;
    h.transfers_at(
        clock,
        &[
            pending(1, 1, 2, 1).timeout(999),
            pending(2, 1, 2, 1).timeout(2),
        ],
        &[TransferStatus::OverflowsTimeout, TransferStatus::Created],
    );
    h.assert_balances(1, [1, 0, 0, 0]);
}

#[test]
fn row_25_limits_exceeded_and_ids_burned() {
    let mut h = Harness::new();
    h.accounts(
        &[acct(4).flags(A_DC), acct(5).flags(A_CD)],
        &[AccountStatus::Created; 2],
    );
    h.setup(4, [20, MAX - 700, 0, MAX - 500]);
    h.setup(5, [0, MAX - 1000, 10, MAX - 1100]);
    h.transfers(&[tr(3, 4, 5, 199)], &[TransferStatus::ExceedsCredits]);
    h.transfers(&[tr(3, 4, 5, 1)], &[TransferStatus::IdAlreadyFailed]);
    h.transfers(&[tr(4, 4, 5, 91)], &[TransferStatus::ExceedsDebits]);
    h.transfers(&[tr(4, 4, 5, 1)], &[TransferStatus::IdAlreadyFailed]);
    h.assert_balances(4, [20, MAX - 700, 0, MAX - 500]);
    h.assert_balances(5, [0, MAX - 1000, 10, MAX - 1100]);
    // One less fits exactly on both sides.
    h.transfers(&[tr(6, 4, 5, 90)], &[TransferStatus::Created]);
}

#[test]
fn row_26_posted_debits_overflow() {
    let mut h = Harness::new();
    h.open(&[2, 3]);
    h.transfers(&[tr(1, 2, 3, MAX)], &[TransferStatus::Created]);
    h.transfers(&[tr(2, 2, 3, 1)], &[TransferStatus::OverflowsDebitsPosted]);
    h.assert_balances(2, [0, MAX, 0, 0]);
    h.assert_balances(3, [0, 0, 0, MAX]);
}

#[test]
fn row_27_overflows_debits_precedes_overflows_credits() {
    let mut h = Harness::new();
    h.open(&[2, 3]);
    h.transfers(&[pending(1, 3, 2, 1)], &[TransferStatus::Created]);
    h.transfers(&[tr(2, 3, 2, MAX)], &[TransferStatus::OverflowsDebits]);
}

#[test]
fn row_28_pending_debits_count_against_the_limit() {
    let mut h = Harness::new();
    h.accounts(
        &[acct(1).flags(A_DC), acct(2)],
        &[AccountStatus::Created; 2],
    );
    h.setup(1, [0, 0, 0, 10]);
    h.transfers(
        &[
            tr(1, 1, 2, 0),
            pending(2, 1, 2, 6),
            tr(3, 1, 2, 5),
            tr(4, 1, 2, 4),
            void(5, 2, 0),
            tr(6, 1, 2, 6),
            tr(7, 1, 2, 1),
        ],
        &[
            TransferStatus::Created,
            TransferStatus::Created,
            TransferStatus::ExceedsCredits,
            TransferStatus::Created,
            TransferStatus::Created,
            TransferStatus::Created,
            TransferStatus::ExceedsCredits,
        ],
    );
    h.assert_balances(1, [0, 10, 0, 10]);
}

// ---------------------------------------------------------------------------------------------
// Transfer idempotency and linked chains (rows 29-35).

#[test]
fn row_29_transfer_exists_with_different_fields() {
    let mut h = Harness::new();
    h.open(&[1, 3, 4]);
    let t5 = pending(5, 1, 3, 123).timeout(1);
    let created = h.transfers(&[t5], &[TransferStatus::Created]);
    let mut swapped = t5;
    swapped.debit_account_id = 3;
    swapped.credit_account_id = 1;
    let results = h.transfers(
        &[
            t5.lc(2, 1),
            Transfer { flags: 0, ..t5 },
            swapped,
            Transfer {
                credit_account_id: 4,
                ..t5
            },
            Transfer { amount: MAX, ..t5 },
            t5.ud(1, 0, 0),
            t5.ud(0, 1, 0),
            t5.ud(0, 0, 1),
            t5.timeout(2),
            t5.lc(1, 2),
            // Precedence: flags before everything; debit id before amount, user data, code.
            Transfer {
                flags: 0,
                amount: MAX,
                ..t5.ud(1, 1, 1).lc(1, 2)
            },
            Transfer {
                amount: MAX,
                ..swapped.ud(1, 1, 1).lc(1, 2)
            },
            Transfer {
                amount: MAX,
                ..t5.ud(1, 1, 1).lc(1, 2)
            },
            t5,
        ],
        &[
            TransferStatus::ExistsWithDifferentLedger,
            TransferStatus::ExistsWithDifferentFlags,
            TransferStatus::ExistsWithDifferentDebitAccountId,
            TransferStatus::ExistsWithDifferentCreditAccountId,
            TransferStatus::ExistsWithDifferentAmount,
            TransferStatus::ExistsWithDifferentUserData128,
            TransferStatus::ExistsWithDifferentUserData64,
            TransferStatus::ExistsWithDifferentUserData32,
            TransferStatus::ExistsWithDifferentTimeout,
            TransferStatus::ExistsWithDifferentCode,
            TransferStatus::ExistsWithDifferentFlags,
            TransferStatus::ExistsWithDifferentDebitAccountId,
            TransferStatus::ExistsWithDifferentAmount,
            TransferStatus::Exists,
        ],
    );
    assert_eq!(results[13].timestamp, created[0].timestamp);
    h.assert_balances(1, [123, 0, 0, 0]);
}

#[test]
fn row_30_same_id_within_one_batch() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    let t1 = tr(1, 1, 2, 5);
    let results = h.transfers(
        &[
            t1,
            t1,
            Transfer { amount: 6, ..t1 },
            tr(1, 2, 1, 5),
            t1.flags(PEN),
            t1.flags(T_PADDING),
        ],
        &[
            TransferStatus::Created,
            TransferStatus::Exists,
            TransferStatus::ExistsWithDifferentAmount,
            TransferStatus::ExistsWithDifferentDebitAccountId,
            TransferStatus::ExistsWithDifferentFlags,
            TransferStatus::ReservedFlag,
        ],
    );
    assert_eq!(results[1].timestamp, results[0].timestamp);
    h.assert_balances(1, [0, 5, 0, 0]);
}

#[test]
fn row_31_resent_committed_chain_reports_exists_then_failed() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    let chain = [tr(1, 1, 2, 1).flags(LNK), tr(2, 1, 2, 2)];
    let created = h.transfers(&chain, &[TransferStatus::Created; 2]);
    let results = h.transfers(
        &chain,
        &[TransferStatus::Exists, TransferStatus::LinkedEventFailed],
    );
    assert_eq!(results[0].timestamp, created[0].timestamp);
    assert_eq!(results[1].timestamp, h.slot(1));
    let results = h.transfers(&chain[1..], &[TransferStatus::Exists]);
    assert_eq!(results[0].timestamp, created[1].timestamp);
    h.assert_balances(1, [0, 3, 0, 0]);
}

#[test]
fn row_32_exists_inside_chain_refers_to_rolled_back_transfer() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    let t1 = tr(1, 1, 2, 1);
    let results = h.transfers(
        &[t1.flags(LNK), t1.flags(LNK), tr(9, 1, 2, 1), t1],
        &[
            TransferStatus::LinkedEventFailed,
            TransferStatus::Exists,
            TransferStatus::LinkedEventFailed,
            TransferStatus::Created,
        ],
    );
    assert_eq!(results[0].timestamp, h.slot(0), "would-be timestamp");
    assert_eq!(
        results[1].timestamp,
        h.slot(0),
        "exists names the rolled-back T1"
    );
    assert_eq!(
        results[2].timestamp,
        h.slot(2),
        "after the failure: own slot"
    );
    assert_eq!(results[3].timestamp, h.slot(3));
    assert_eq!(h.transfer(1).expect("T1").timestamp, h.slot(3));
    h.assert_no_transfer(9);
    h.assert_balances(1, [0, 1, 0, 0]);
}

#[test]
fn row_33_failed_chain_is_undone_within_the_batch() {
    let mut h = Harness::new();
    h.accounts(
        &[acct(1).flags(A_DC), acct(2)],
        &[AccountStatus::Created; 2],
    );
    h.setup(1, [0, 0, 0, 20]);
    h.transfers(
        &[
            tr(1, 1, 2, 15).flags(LNK),
            tr(2, 1, 2, 5).lc(0, 1),
            tr(3, 1, 2, 15),
        ],
        &[
            TransferStatus::LinkedEventFailed,
            TransferStatus::LedgerMustNotBeZero,
            TransferStatus::Created,
        ],
    );
    h.assert_balances(1, [0, 15, 0, 20]);
    h.assert_balances(2, [0, 0, 0, 15]);
    h.assert_no_transfer(1);
    h.assert_no_transfer(2);
    assert!(h.transfer(3).is_some());
}

#[test]
fn row_34_pending_created_in_failed_chain_is_gone() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(
        &[
            pending(2, 1, 2, 5).flags(LNK),
            post(3, 2, MAX).flags(LNK),
            tr(4, 1, 2, 1).lc(0, 1),
        ],
        &[
            TransferStatus::LinkedEventFailed,
            TransferStatus::LinkedEventFailed,
            TransferStatus::LedgerMustNotBeZero,
        ],
    );
    h.assert_balances(1, [0; 4]);
    h.assert_no_transfer(2);
    h.assert_no_transfer(3);
    h.transfers(
        &[post(5, 2, MAX)],
        &[TransferStatus::PendingTransferNotFound],
    );
}

#[test]
fn row_35_per_transfer_invariant_chain_and_burned_ids() {
    let mut h = Harness::new();
    h.accounts(
        &[acct(1), acct(2), acct(3).flags(A_CD)],
        &[AccountStatus::Created; 3],
    );
    h.setup(2, [0, 40, 0, 0]);
    h.transfers(
        &[
            tr(1, 1, 2, 41).flags(LNK),
            pending(2, 2, 3, 1).flags(LNK | BDR),
            Transfer {
                pending_id: 2,
                flags: VOI,
                ..tr(3, 2, 3, 0)
            },
        ],
        &[
            TransferStatus::LinkedEventFailed,
            TransferStatus::ExceedsDebits,
            TransferStatus::LinkedEventFailed,
        ],
    );
    // Chain members that did not fail may be reused; the failing transient id is burned.
    h.transfers(
        &[tr(1, 1, 2, 0), tr(2, 2, 3, 0), tr(3, 2, 3, 0)],
        &[
            TransferStatus::Created,
            TransferStatus::IdAlreadyFailed,
            TransferStatus::Created,
        ],
    );
    h.transfers(
        &[
            tr(4, 1, 2, 40).flags(LNK),
            pending(5, 2, 3, 1).flags(LNK | BDR),
            Transfer {
                pending_id: 5,
                flags: VOI,
                ..tr(6, 2, 3, 0)
            },
        ],
        &[TransferStatus::Created; 3],
    );
    h.assert_amount(5, 0);
    h.assert_balances(1, [0, 40, 0, 0]);
    h.assert_balances(2, [0, 40, 0, 40]);
    h.assert_balances(3, [0; 4]);
}

// ---------------------------------------------------------------------------------------------
// Two-phase transfers (rows 36-51).

#[test]
fn row_36_partial_post_returns_the_rest() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(
        &[pending(2, 1, 2, 15).timeout(1000)],
        &[TransferStatus::Created],
    );
    h.assert_balances(1, [15, 0, 0, 0]);
    h.transfers(&[post(101, 2, 13)], &[TransferStatus::Created]);
    h.assert_amount(101, 13);
    h.assert_balances(1, [0, 13, 0, 0]);
    h.assert_balances(2, [0, 0, 0, 13]);
    let stored = h.transfer(101).expect("T101");
    assert_eq!((stored.debit_account_id, stored.credit_account_id), (1, 2));
    assert_eq!(
        (stored.ledger, stored.code, stored.timeout, stored.flags),
        (1, 1, 0, POS)
    );
}

#[test]
fn row_37_post_amount_max_means_full_amount() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(&[pending(5, 1, 2, 7)], &[TransferStatus::Created]);
    let created = h.transfers(&[post(105, 5, MAX)], &[TransferStatus::Created]);
    h.assert_amount(105, 7);
    let results = h.transfers(
        &[
            post(105, 5, 7).lc(1, 1),
            post(105, 5, 7),
            post(105, 5, MAX).lc(1, 1),
            post(105, 5, 8),
            post(105, 5, 6),
            post(105, 5, 0).lc(1, 1),
        ],
        &[
            TransferStatus::Exists,
            TransferStatus::Exists,
            TransferStatus::Exists,
            TransferStatus::ExistsWithDifferentAmount,
            TransferStatus::ExistsWithDifferentAmount,
            TransferStatus::ExistsWithDifferentAmount,
        ],
    );
    assert_eq!(results[0].timestamp, created[0].timestamp);
    h.assert_balances(1, [0, 7, 0, 0]);
}

#[test]
fn row_38_post_amount_zero_releases_everything() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(&[pending(7, 1, 2, 1)], &[TransferStatus::Created]);
    h.transfers(&[post(107, 7, 0)], &[TransferStatus::Created]);
    h.assert_amount(107, 0);
    h.assert_balances(1, [0; 4]);
    h.assert_balances(2, [0; 4]);
    h.transfers(
        &[post(107, 7, 0), post(107, 7, 1)],
        &[
            TransferStatus::Exists,
            TransferStatus::ExistsWithDifferentAmount,
        ],
    );
}

#[test]
fn row_39_post_more_than_pending_does_not_burn_the_id() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(&[pending(5, 1, 2, 7)], &[TransferStatus::Created]);
    h.transfers(
        &[post(105, 5, 8)],
        &[TransferStatus::ExceedsPendingTransferAmount],
    );
    h.assert_no_transfer(105);
    h.transfers(&[post(105, 5, MAX)], &[TransferStatus::Created]);
    h.assert_amount(105, 7);
}

#[test]
fn row_40_void_amount_must_be_zero_or_full() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(&[pending(3, 1, 2, 15)], &[TransferStatus::Created]);
    h.transfers(
        &[void(103, 3, 16), void(103, 3, 14), void(103, 3, 15)],
        &[
            TransferStatus::ExceedsPendingTransferAmount,
            TransferStatus::PendingTransferHasDifferentAmount,
            TransferStatus::Created,
        ],
    );
    h.assert_amount(103, 15);
    h.assert_balances(1, [0; 4]);
    h.assert_balances(2, [0; 4]);
}

#[test]
fn row_41_void_with_explicit_full_amount() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(&[pending(1, 1, 2, 10)], &[TransferStatus::Created]);
    h.transfers(&[void(2, 1, 10)], &[TransferStatus::Created]);
    h.assert_balances(1, [0; 4]);
    h.assert_balances(2, [0; 4]);
}

#[test]
fn row_42_pending_resolves_at_most_once() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(
        &[pending(2, 1, 2, 15), pending(3, 1, 2, 15)],
        &[TransferStatus::Created; 2],
    );
    h.transfers(
        &[post(101, 2, MAX), void(102, 3, 0)],
        &[TransferStatus::Created; 2],
    );
    h.transfers(
        &[post(103, 2, MAX), post(104, 3, MAX), void(105, 2, 0)],
        &[
            TransferStatus::PendingTransferAlreadyPosted,
            TransferStatus::PendingTransferAlreadyVoided,
            TransferStatus::PendingTransferAlreadyPosted,
        ],
    );
    h.assert_balances(1, [0, 15, 0, 0]);
}

#[test]
fn row_43_void_of_single_phase_transfer() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(&[tr(1, 1, 2, 5)], &[TransferStatus::Created]);
    h.transfers(
        &[void(2, 1, 0)],
        &[TransferStatus::PendingTransferNotPending],
    );
    // Not transient: the id is still usable.
    h.transfers(&[tr(2, 1, 2, 1)], &[TransferStatus::Created]);
}

#[test]
fn row_44_void_of_unknown_pending_burns_the_id() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(
        &[void(102, 103, 0)],
        &[TransferStatus::PendingTransferNotFound],
    );
    h.transfers(&[tr(102, 1, 2, 13)], &[TransferStatus::IdAlreadyFailed]);
    h.assert_no_transfer(102);
}

#[test]
fn row_45_void_fields_must_match_the_pending_transfer() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(&[pending(3, 1, 2, 15)], &[TransferStatus::Created]);
    let v = |dr: u128, cr: u128, ledger: u32, code: u16| Transfer {
        pending_id: 3,
        flags: VOI,
        ..tr(103, dr, cr, 0).lc(ledger, code)
    };
    h.transfers(
        &[
            v(8, 9, 6, 7),
            v(1, 9, 6, 7),
            v(1, 2, 6, 7),
            v(1, 2, 1, 7),
            v(1, 2, 1, 1),
        ],
        &[
            TransferStatus::PendingTransferHasDifferentDebitAccountId,
            TransferStatus::PendingTransferHasDifferentCreditAccountId,
            TransferStatus::PendingTransferHasDifferentLedger,
            TransferStatus::PendingTransferHasDifferentCode,
            TransferStatus::Created,
        ],
    );
}

#[test]
fn row_46_post_void_flag_combinations_are_exclusive() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    let combos = [
        PEN | POS | VOI,
        POS | BDR,
        VOI | BCR,
        PEN | VOI,
        PEN | POS,
        POS | VOI,
        POS | BDR | BCR,
        VOI | BDR | BCR,
        POS | BCR,
        VOI | BDR,
        POS | CDR,
        VOI | CCR,
        PEN | POS | VOI | BDR | BCR,
    ];
    let events: Vec<Transfer> = combos
        .iter()
        .map(|flags| Transfer {
            flags: *flags,
            ..tr(102, 8, 9, 16)
        })
        .collect();
    let expected = vec![TransferStatus::FlagsAreMutuallyExclusive; events.len()];
    h.transfers(&events, &expected);
}

#[test]
fn row_47_post_void_pending_id_and_timeout_checks() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(
        &[
            void(102, 0, 16),
            void(102, MAX, 16),
            void(102, 102, 16),
            void(102, 103, 16).timeout(50),
        ],
        &[
            TransferStatus::PendingIdMustNotBeZero,
            TransferStatus::PendingIdMustNotBeIntMax,
            TransferStatus::PendingIdMustBeDifferent,
            TransferStatus::TimeoutReservedForPendingTransfer,
        ],
    );
}

#[test]
fn row_48_post_void_idempotency_with_inherited_fields() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(
        &[pending(2, 1, 2, 15), pending(3, 1, 2, 15).ud(9, 9, 9)],
        &[TransferStatus::Created; 2],
    );
    let t101 = Transfer {
        pending_id: 2,
        flags: POS,
        ..tr(101, 1, 2, 13).ud(1, 1, 1)
    };
    h.transfers(&[t101, void(102, 3, 0)], &[TransferStatus::Created; 2]);
    h.transfers(
        &[
            post(101, 2, 13).ud(1, 1, 1),
            Transfer { amount: 14, ..t101 },
            Transfer { amount: 0, ..t101 },
            Transfer {
                pending_id: 3,
                ..t101
            },
            t101.ud(0, 1, 1),
            void(102, 3, 15).ud(9, 9, 9),
            void(102, 3, 0).ud(8, 0, 0),
        ],
        &[
            TransferStatus::Exists,
            TransferStatus::ExistsWithDifferentAmount,
            TransferStatus::ExistsWithDifferentAmount,
            TransferStatus::ExistsWithDifferentPendingId,
            TransferStatus::ExistsWithDifferentUserData128,
            TransferStatus::Exists,
            TransferStatus::ExistsWithDifferentUserData128,
        ],
    );
    let t101 = h.transfer(101).expect("T101");
    assert_eq!(
        (t101.user_data_128, t101.user_data_64, t101.user_data_32),
        (1, 1, 1)
    );
    let t102 = h.transfer(102).expect("T102");
    assert_eq!(
        (t102.user_data_128, t102.user_data_64, t102.user_data_32),
        (9, 9, 9)
    );
    assert_eq!(
        (t102.debit_account_id, t102.credit_account_id, t102.amount),
        (1, 2, 15)
    );
    assert_eq!((t102.ledger, t102.code, t102.timeout), (1, 1, 0));
}

#[test]
fn row_49_pending_transfers_expire_by_timeout() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(
        &[
            pending(1, 1, 2, 10),
            pending(2, 1, 2, 11).timeout(1),
            pending(3, 1, 2, 12).timeout(2),
            pending(4, 1, 2, 13).timeout(3),
        ],
        &[TransferStatus::Created; 4],
    );
    h.assert_balances(1, [46, 0, 0, 0]);
    assert_eq!(h.tick_seconds(1), 1);
    h.assert_balances(1, [35, 0, 0, 0]);
    h.assert_balances(2, [0, 0, 35, 0]);
    assert_eq!(h.tick_seconds(1), 1);
    h.assert_balances(1, [23, 0, 0, 0]);
    assert_eq!(h.tick_seconds(1), 1);
    h.assert_balances(1, [10, 0, 0, 0]);
    h.transfers(
        &[
            post(101, 1, 10),
            post(102, 2, 11),
            post(103, 3, 12),
            post(104, 4, 13),
        ],
        &[
            TransferStatus::Created,
            TransferStatus::PendingTransferExpired,
            TransferStatus::PendingTransferExpired,
            TransferStatus::PendingTransferExpired,
        ],
    );
    h.assert_balances(1, [0, 10, 0, 0]);
    h.assert_balances(2, [0, 0, 0, 10]);
    for id in 102..=104 {
        h.assert_no_transfer(id);
    }
    // The expired pending transfers themselves stay visible.
    for id in 2..=4 {
        assert!(h.transfer(id).is_some(), "T{id} stays lookup-able");
    }
}

#[test]
fn row_50_expiry_writes_no_transfer_and_no_balance_row() {
    let mut h = Harness::new();
    h.accounts(
        &[acct(1).flags(A_HIST), acct(2).flags(A_HIST)],
        &[AccountStatus::Created; 2],
    );
    h.transfers(
        &[pending(1, 1, 2, 5).timeout(1), tr(2, 1, 2, 3)],
        &[TransferStatus::Created; 2],
    );
    let ts1 = h.transfer(1).expect("T1").timestamp;
    let ts2 = h.transfer(2).expect("T2").timestamp;
    assert_eq!(h.tick_seconds(1), 1);
    let rows = h.account_balances(&account_filter(1));
    let got: Vec<(u64, [u128; 4])> = rows
        .iter()
        .map(|r| {
            (
                r.timestamp,
                [
                    r.debits_pending,
                    r.debits_posted,
                    r.credits_pending,
                    r.credits_posted,
                ],
            )
        })
        .collect();
    assert_eq!(got, vec![(ts1, [5, 0, 0, 0]), (ts2, [5, 3, 0, 0])]);
    assert_eq!(h.account_transfers(&account_filter(1)), vec![1, 2]);
    h.assert_balances(1, [0, 3, 0, 0]);
    assert!(h.transfer(1).is_some());
}

#[test]
fn row_51_pending_and_post_in_the_same_batch() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(
        &[pending(1, 1, 2, 10).timeout(1), post(2, 1, MAX)],
        &[TransferStatus::Created; 2],
    );
    h.assert_amount(2, 10);
    h.assert_balances(1, [0, 10, 0, 0]);
}

// ---------------------------------------------------------------------------------------------
// Balancing transfers (rows 52-59).

fn balancing_accounts(h: &mut Harness) {
    h.accounts(
        &[acct(1).flags(A_DC), acct(2).flags(A_CD), acct(3)],
        &[AccountStatus::Created; 3],
    );
    h.setup(1, [1, 0, 0, 10]);
    h.setup(2, [0, 10, 2, 0]);
}

fn balancing_transfers(h: &mut Harness) {
    h.transfers(
        &[
            tr(1, 1, 3, 3).flags(BDR),
            tr(2, 1, 3, 13).flags(BDR),
            tr(3, 1, 3, 1).flags(BDR),
            tr(4, 3, 2, 3).flags(BCR),
            tr(5, 3, 2, 13).flags(BCR),
            tr(6, 3, 2, 1).flags(BCR),
        ],
        &[TransferStatus::Created; 6],
    );
}

#[test]
fn row_52_balancing_clamps_to_the_available_balance() {
    let mut h = Harness::new();
    balancing_accounts(&mut h);
    balancing_transfers(&mut h);
    for (id, amount) in [(1, 3), (2, 6), (3, 0), (4, 3), (5, 5), (6, 0)] {
        h.assert_amount(id, amount);
    }
    h.assert_balances(1, [1, 9, 0, 10]);
    h.assert_balances(2, [0, 10, 2, 8]);
    h.assert_balances(3, [0, 8, 0, 9]);
}

#[test]
fn row_53_balancing_resend_amount_is_an_upper_bound() {
    let mut h = Harness::new();
    balancing_accounts(&mut h);
    balancing_transfers(&mut h);
    h.transfers(
        &[
            tr(1, 1, 3, 2).flags(BDR),
            tr(1, 1, 3, 0).flags(BDR),
            tr(1, 1, 3, 3).flags(BDR),
            tr(1, 1, 3, 4).flags(BDR),
            tr(2, 1, 3, 6).flags(BDR),
            tr(2, 1, 3, 0).flags(BDR),
            tr(4, 3, 2, 2).flags(BCR),
            tr(4, 3, 2, 4).flags(BCR),
            tr(5, 3, 2, 5).flags(BCR),
            tr(5, 3, 2, 0).flags(BCR),
        ],
        &[
            TransferStatus::ExistsWithDifferentAmount,
            TransferStatus::ExistsWithDifferentAmount,
            TransferStatus::Exists,
            TransferStatus::Exists,
            TransferStatus::Exists,
            TransferStatus::ExistsWithDifferentAmount,
            TransferStatus::ExistsWithDifferentAmount,
            TransferStatus::Exists,
            TransferStatus::Exists,
            TransferStatus::ExistsWithDifferentAmount,
        ],
    );
}

#[test]
fn row_54_balancing_with_zero_amounts() {
    let mut h = Harness::new();
    h.accounts(
        &[
            acct(1).flags(A_DC),
            acct(2).flags(A_CD),
            acct(3).flags(A_CD),
            acct(4),
        ],
        &[AccountStatus::Created; 4],
    );
    h.setup(1, [1, 0, 0, 10]);
    h.setup(2, [0, 10, 2, 0]);
    h.setup(3, [0, 10, 2, 0]);
    h.transfers(
        &[
            tr(1, 1, 4, 0).flags(BDR),
            tr(2, 4, 2, 0).flags(BCR),
            tr(3, 1, 4, 0).flags(BDR | BCR),
            pending(4, 4, 3, 0).flags(BCR),
            // A4 has no limit flag, but its net balance is zero, so the clamp gives zero.
            tr(5, 4, 1, 1).flags(BDR),
            tr(6, 2, 4, 1).flags(BCR),
        ],
        &[TransferStatus::Created; 6],
    );
    for id in 1..=6 {
        h.assert_amount(id, 0);
    }
    h.assert_balances(1, [1, 0, 0, 10]);
    h.assert_balances(2, [0, 10, 2, 0]);
    h.assert_balances(3, [0, 10, 2, 0]);
    h.assert_balances(4, [0; 4]);
}

#[test]
fn row_55_balancing_amount_max_with_balance_near_max() {
    let mut h = Harness::new();
    h.accounts(
        &[
            acct(1).flags(A_DC),
            acct(2).flags(A_DC),
            acct(3).flags(A_CD),
            acct(4).flags(A_CD),
        ],
        &[AccountStatus::Created; 4],
    );
    h.setup(1, [0, 0, 0, MAX - 1]);
    h.setup(4, [0, MAX - 1, 0, 0]);
    h.transfers(
        &[tr(1, 1, 2, MAX).flags(BDR), tr(2, 3, 4, MAX).flags(BCR)],
        &[TransferStatus::Created; 2],
    );
    h.assert_amount(1, MAX - 1);
    h.assert_amount(2, MAX - 1);
    h.assert_balances(1, [0, MAX - 1, 0, MAX - 1]);
    h.assert_balances(2, [0, 0, 0, MAX - 1]);
    h.assert_balances(3, [0, MAX - 1, 0, 0]);
    h.assert_balances(4, [0, MAX - 1, 0, MAX - 1]);
}

#[test]
fn row_56_balancing_debit_and_credit_together() {
    let mut h = Harness::new();
    h.accounts(
        &[acct(1).flags(A_DC), acct(2).flags(A_CD), acct(3)],
        &[AccountStatus::Created; 3],
    );
    h.setup(1, [0, 0, 0, 20]);
    h.setup(2, [0, 10, 0, 0]);
    h.setup(3, [0, 99, 0, 0]);
    h.transfers(
        &[
            tr(1, 1, 2, 1).flags(BDR | BCR),
            tr(2, 1, 2, 12).flags(BDR | BCR),
            tr(3, 1, 2, 1).flags(BDR | BCR),
            tr(4, 1, 3, 12).flags(BDR | BCR),
            tr(5, 1, 3, 1).flags(BDR | BCR),
        ],
        &[TransferStatus::Created; 5],
    );
    for (id, amount) in [(1, 1), (2, 9), (3, 0), (4, 10), (5, 0)] {
        h.assert_amount(id, amount);
    }
    h.assert_balances(1, [0, 20, 0, 20]);
    h.assert_balances(2, [0, 10, 0, 10]);
    h.assert_balances(3, [0, 99, 0, 10]);
}

#[test]
fn row_57_balancing_credit_counts_pending_credits() {
    let mut h = Harness::new();
    h.accounts(
        &[acct(1), acct(2).flags(A_CD)],
        &[AccountStatus::Created; 2],
    );
    h.setup(2, [0, 10, 0, 0]);
    h.transfers(
        &[
            pending(1, 1, 2, 7).flags(BCR),
            tr(2, 1, 2, 7).flags(BCR),
            tr(3, 1, 2, 7).flags(BCR),
            tr(4, 1, 2, 1),
        ],
        &[
            TransferStatus::Created,
            TransferStatus::Created,
            TransferStatus::Created,
            TransferStatus::ExceedsDebits,
        ],
    );
    for (id, amount) in [(1, 7), (2, 3), (3, 0)] {
        h.assert_amount(id, amount);
    }
    h.assert_balances(2, [0, 10, 7, 3]);
}

#[test]
fn row_58_balancing_clamps_only_its_own_side() {
    let mut h = Harness::new();
    h.accounts(
        &[acct(1).flags(A_DC), acct(2)],
        &[AccountStatus::Created; 2],
    );
    h.setup(1, [0, 0, 0, 4]);
    h.setup(2, [0, 5, 0, 0]);
    h.transfers(
        &[tr(1, 1, 2, 10).flags(BCR), tr(2, 1, 2, 10).flags(BDR)],
        &[TransferStatus::ExceedsCredits, TransferStatus::Created],
    );
    h.assert_no_transfer(1);
    h.assert_amount(2, 4);
    h.assert_balances(1, [0, 4, 0, 4]);
    h.assert_balances(2, [0, 5, 0, 4]);
}

/// The multi-debit recipe: sources A1-A3 (debits must not exceed credits), control A4, limit A5
/// (debits must not exceed credits), destination A6. `third` is A3's credit balance.
fn multi_debit(third: u128) -> (Harness, Vec<CreateResult>) {
    let mut h = Harness::new();
    h.accounts(
        &[
            acct(1).flags(A_DC),
            acct(2).flags(A_DC),
            acct(3).flags(A_DC),
            acct(4),
            acct(5).flags(A_DC),
            acct(6),
        ],
        &[AccountStatus::Created; 6],
    );
    h.setup(1, [0, 0, 0, 40]);
    h.setup(2, [0, 0, 0, 40]);
    h.setup(3, [0, 0, 0, third]);
    let results = h.create_transfers_at(
        h.now + 7,
        &[
            tr(1, 4, 5, 100).flags(LNK),
            tr(2, 1, 4, 100).flags(LNK | BDR | BCR),
            tr(3, 2, 4, 100).flags(LNK | BDR | BCR),
            tr(4, 3, 4, 100).flags(LNK | BDR | BCR),
            tr(5, 4, 6, 100).flags(LNK),
            tr(6, 5, 4, MAX).flags(BCR),
        ],
    );
    (h, results)
}

#[test]
fn row_59_multi_debit_recipe_chain() {
    let (h, got) = multi_debit(21);
    check_statuses("create_transfers", &got, &[TransferStatus::Created; 6]);
    h.assert_balances(1, [0, 40, 0, 40]);
    h.assert_balances(2, [0, 40, 0, 40]);
    h.assert_balances(3, [0, 20, 0, 21]);
    h.assert_balances(4, [0, 200, 0, 200]);
    h.assert_balances(5, [0, 100, 0, 100]);
    h.assert_balances(6, [0, 0, 0, 100]);

    let (h, got) = multi_debit(19);
    let mut expected = vec![TransferStatus::LinkedEventFailed; 5];
    expected.push(TransferStatus::ExceedsCredits);
    check_statuses("create_transfers", &got, &expected);
    h.assert_balances(4, [0; 4]);
    h.assert_balances(6, [0; 4]);
}

// ---------------------------------------------------------------------------------------------
// Closing accounts (rows 60-64).

#[test]
fn row_60_closing_requires_pending() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(
        &[
            tr(2, 1, 2, 0).flags(CDR),
            tr(2, 1, 2, 0).flags(CCR),
            tr(2, 1, 2, 0).flags(CDR | CCR),
        ],
        &[TransferStatus::ClosingTransferMustBePending; 3],
    );
    h.transfers(
        &[pending(2, 1, 2, 0).flags(CDR | CCR)],
        &[TransferStatus::Created],
    );
    h.assert_closed(1, true);
    h.assert_closed(2, true);
}

#[test]
fn row_61_closing_debit_then_void_reopens() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(&[tr(1, 1, 2, 15)], &[TransferStatus::Created]);
    h.transfers(
        &[pending(2, 1, 2, 0).flags(CDR)],
        &[TransferStatus::Created],
    );
    h.assert_closed(1, true);
    h.transfers(
        &[
            pending(2, 1, 2, 0).flags(CDR),
            tr(3, 1, 2, 5),
            tr(3, 1, 2, 5),
            tr(4, 2, 1, 5),
            tr(4, 1, 2, 5),
        ],
        &[
            TransferStatus::Exists,
            TransferStatus::DebitAccountAlreadyClosed,
            TransferStatus::IdAlreadyFailed,
            TransferStatus::CreditAccountAlreadyClosed,
            TransferStatus::IdAlreadyFailed,
        ],
    );
    h.assert_balances(1, [0, 15, 0, 0]);
    h.assert_closed(1, true);
    h.transfers(
        &[post(5, 2, 0), void(5, 2, 0)],
        &[
            TransferStatus::DebitAccountAlreadyClosed,
            TransferStatus::IdAlreadyFailed,
        ],
    );
    h.transfers(
        &[void(6, 2, 0), void(6, 2, 0), tr(7, 1, 2, 5)],
        &[
            TransferStatus::Created,
            TransferStatus::Exists,
            TransferStatus::Created,
        ],
    );
    h.assert_closed(1, false);
    h.assert_balances(1, [0, 20, 0, 0]);
    h.assert_balances(2, [0, 0, 0, 20]);
}

#[test]
fn row_62_closing_credit_with_timeout_expires_and_reopens() {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(
        &[
            pending(8, 1, 2, 10).timeout(1),
            pending(9, 1, 2, 10),
            pending(10, 1, 2, 0).timeout(2).flags(CCR),
        ],
        &[TransferStatus::Created; 3],
    );
    h.assert_closed(2, true);
    h.transfers(
        &[
            post(11, 9, 10),
            void(11, 9, 10),
            void(12, 9, 10),
            void(12, 9, 10),
        ],
        &[
            TransferStatus::CreditAccountAlreadyClosed,
            TransferStatus::IdAlreadyFailed,
            TransferStatus::Created,
            TransferStatus::Exists,
        ],
    );
    h.assert_balances(1, [10, 0, 0, 0]);
    h.assert_balances(2, [0, 0, 10, 0]);
    h.assert_closed(2, true);
    // Pending transfers on a closed account still expire.
    assert_eq!(h.tick_seconds(1), 1);
    h.assert_balances(1, [0; 4]);
    h.assert_balances(2, [0; 4]);
    h.assert_closed(2, true);
    // The closing transfer's own expiry reopens the account.
    assert_eq!(h.tick_seconds(1), 1);
    h.assert_closed(2, false);
    h.transfers(&[tr(13, 1, 2, 1)], &[TransferStatus::Created]);
}

#[test]
fn row_63_closed_account_cannot_be_closed_again() {
    let mut h = Harness::new();
    h.open(&[1, 2, 3]);
    h.transfers(
        &[pending(13, 1, 2, 0).flags(CDR | CCR)],
        &[TransferStatus::Created],
    );
    h.transfers(
        &[
            pending(16, 1, 3, 0).flags(CDR),
            pending(16, 1, 3, 0).flags(CDR),
            pending(17, 3, 2, 0).flags(CCR),
            pending(17, 3, 2, 0).flags(CCR),
        ],
        &[
            TransferStatus::DebitAccountAlreadyClosed,
            TransferStatus::IdAlreadyFailed,
            TransferStatus::CreditAccountAlreadyClosed,
            TransferStatus::IdAlreadyFailed,
        ],
    );
    h.assert_closed(3, false);
}

#[test]
fn row_64_closed_check_precedes_limit_check() {
    let mut h = Harness::new();
    h.accounts(
        &[acct(1).flags(A_DC), acct(2)],
        &[AccountStatus::Created; 2],
    );
    h.transfers(
        &[pending(1, 1, 2, 0).flags(CDR)],
        &[TransferStatus::Created],
    );
    h.transfers(
        &[
            tr(2, 1, 2, 5),
            post(3, 1, 0),
            void(4, 1, 0),
            tr(5, 1, 2, 5),
            tr(6, 1, 2, 0),
        ],
        &[
            TransferStatus::DebitAccountAlreadyClosed,
            TransferStatus::DebitAccountAlreadyClosed,
            TransferStatus::Created,
            TransferStatus::ExceedsCredits,
            TransferStatus::Created,
        ],
    );
    h.assert_closed(1, false);
    h.assert_balances(1, [0; 4]);
}

// ---------------------------------------------------------------------------------------------
// Imported transfers (rows 65-67).

#[test]
fn row_65_imported_transfer_timestamp_rules() {
    let mut h = Harness::new();
    h.accounts_at(
        10,
        &[
            acct(1).imported(2),
            acct(2).imported(3),
            acct(3).imported(9),
        ],
        &[AccountStatus::Created; 3],
    );
    let t = |id: u128, dr: u128, cr: u128, ts: u64| tr(id, dr, cr, 3).lc(1, 2).imported(ts);
    h.transfers_at(
        30,
        &[
            t(1, 1, 2, 2),
            t(1, 1, 2, 3),
            t(1, 3, 2, 4),
            t(1, 1, 3, 4),
            t(1, 1, 2, 4),
            t(2, 1, 2, 3),
            t(2, 1, 2, 5),
        ],
        &[
            TransferStatus::ImportedEventTimestampMustNotRegress,
            TransferStatus::ImportedEventTimestampMustNotRegress,
            TransferStatus::ImportedEventTimestampMustPostdateDebitAccount,
            TransferStatus::ImportedEventTimestampMustPostdateCreditAccount,
            TransferStatus::Created,
            TransferStatus::ImportedEventTimestampMustNotRegress,
            TransferStatus::Created,
        ],
    );
    let results = h.transfers_at(
        40,
        &[t(2, 1, 2, 99), t(2, 1, 2, 4), t(2, 1, 2, 5), t(2, 1, 2, 6)],
        &[
            TransferStatus::ImportedEventTimestampMustNotAdvance,
            TransferStatus::Exists,
            TransferStatus::Exists,
            TransferStatus::Exists,
        ],
    );
    assert_eq!(results[1].timestamp, 5);
    h.transfers_at(50, &[t(3, 1, 2, 10)], &[TransferStatus::Created]);
    assert_eq!(h.transfer(1).expect("T1").timestamp, 4);
    assert_eq!(h.transfer(2).expect("T2").timestamp, 5);
    assert_eq!(h.transfer(3).expect("T3").timestamp, 10);
    h.assert_balances(1, [0, 9, 0, 0]);
}

#[test]
fn row_66_imported_pending_needs_zero_timeout() {
    let mut h = Harness::new();
    h.accounts_at(
        10,
        &[acct(1).imported(1), acct(2).imported(2)],
        &[AccountStatus::Created; 2],
    );
    h.transfers_at(
        20,
        &[
            tr(1, 1, 2, 3).lc(1, 2).imported(3),
            pending(2, 1, 2, 4).lc(1, 2).timeout(1).imported(4),
            pending(2, 1, 2, 4).lc(1, 2).imported(4),
        ],
        &[
            TransferStatus::Created,
            TransferStatus::ImportedEventTimeoutMustBeZero,
            TransferStatus::Created,
        ],
    );
    h.assert_balances(1, [4, 3, 0, 0]);
    let results = h.transfers_at(
        30,
        &[Transfer {
            pending_id: 2,
            flags: POS,
            ..tr(3, 1, 2, 4).lc(1, 2)
        }
        .imported(5)],
        &[TransferStatus::Created],
    );
    assert_eq!(results[0].timestamp, 5);
    assert_eq!(h.transfer(3).expect("T3").timestamp, 5);
    h.assert_balances(1, [0, 7, 0, 0]);
    h.assert_balances(2, [0, 0, 0, 7]);
}

#[test]
fn row_67_imported_chain_fails_and_succeeds_as_a_whole() {
    let mut h = Harness::new();
    let results = h.accounts_at(
        10,
        &[
            acct(1).flags(A_LNK).imported(1),
            acct(2).flags(A_LNK).imported(2),
            acct(3).imported(0),
        ],
        &[
            AccountStatus::LinkedEventFailed,
            AccountStatus::LinkedEventFailed,
            AccountStatus::ImportedEventTimestampOutOfRange,
        ],
    );
    assert_eq!(results[0].timestamp, 1, "would-be imported timestamp");
    assert_eq!(results[1].timestamp, 2, "would-be imported timestamp");
    assert_eq!(results[2].timestamp, h.slot(2));
    h.assert_no_account(1);
    h.accounts_at(
        20,
        &[
            acct(1).flags(A_LNK).imported(1),
            acct(2).flags(A_LNK).imported(2),
            acct(3).imported(3),
        ],
        &[AccountStatus::Created; 3],
    );
    let t = |id: u128, ts: u64| tr(id, 1, 2, 3).lc(1, 2).imported(ts);
    let results = h.transfers_at(
        30,
        &[t(1, 4).flags(LNK), t(2, 5).flags(LNK), t(3, 0)],
        &[
            TransferStatus::LinkedEventFailed,
            TransferStatus::LinkedEventFailed,
            TransferStatus::ImportedEventTimestampOutOfRange,
        ],
    );
    assert_eq!((results[0].timestamp, results[1].timestamp), (4, 5));
    h.transfers_at(
        40,
        &[t(1, 4).flags(LNK), t(2, 5).flags(LNK), t(3, 6)],
        &[TransferStatus::Created; 3],
    );
    h.assert_balances(1, [0, 9, 0, 0]);
    h.assert_balances(2, [0, 0, 0, 9]);
    h.assert_balances(3, [0; 4]);
    for (id, ts) in [(1, 4), (2, 5), (3, 6)] {
        assert_eq!(h.transfer(id).expect("transfer").timestamp, ts);
    }
}

// ---------------------------------------------------------------------------------------------
// Queries (rows 68-71).

fn four_transfers_on_a1() -> (Harness, [u64; 5]) {
    let mut h = Harness::new();
    h.open(&[1, 2]);
    h.transfers(
        &[
            tr(1, 1, 2, 10).ud(1000, 10, 1).lc(1, 1),
            tr(2, 2, 1, 11).ud(1001, 10, 2).lc(1, 2),
            tr(3, 1, 2, 12).ud(1000, 20, 2).lc(1, 1),
            tr(4, 2, 1, 13).ud(1001, 20, 1).lc(1, 2),
        ],
        &[TransferStatus::Created; 4],
    );
    let mut ts = [0; 5];
    for (id, slot) in ts.iter_mut().enumerate().skip(1) {
        *slot = h.transfer(id as u128).expect("transfer").timestamp;
    }
    (h, ts)
}

#[test]
fn row_68_get_account_transfers_filters() {
    let (h, ts) = four_transfers_on_a1();
    let base = account_filter(1);
    let dr = AccountFilterFlags::DEBITS;
    let cr = AccountFilterFlags::CREDITS;
    let rev = AccountFilterFlags::REVERSED;
    let cases: Vec<(&str, AccountFilter, Vec<u128>)> = vec![
        ("debits and credits", base, vec![1, 2, 3, 4]),
        ("limit 2", AccountFilter { limit: 2, ..base }, vec![1, 2]),
        (
            "timestamp_min T3",
            AccountFilter {
                timestamp_min: ts[3],
                ..base
            },
            vec![3, 4],
        ),
        (
            "timestamp_max T2",
            AccountFilter {
                timestamp_max: ts[2],
                ..base
            },
            vec![1, 2],
        ),
        (
            "T2 <= ts <= T3",
            AccountFilter {
                timestamp_min: ts[2],
                timestamp_max: ts[3],
                ..base
            },
            vec![2, 3],
        ),
        (
            "reversed",
            AccountFilter {
                flags: dr | cr | rev,
                ..base
            },
            vec![4, 3, 2, 1],
        ),
        (
            "reversed limit 2",
            AccountFilter {
                flags: dr | cr | rev,
                limit: 2,
                ..base
            },
            vec![4, 3],
        ),
        (
            "debits only",
            AccountFilter { flags: dr, ..base },
            vec![1, 3],
        ),
        (
            "credits only",
            AccountFilter { flags: cr, ..base },
            vec![2, 4],
        ),
        (
            "user_data_128",
            AccountFilter {
                user_data_128: 1001,
                ..base
            },
            vec![2, 4],
        ),
        (
            "user_data_64",
            AccountFilter {
                user_data_64: 10,
                ..base
            },
            vec![1, 2],
        ),
        (
            "user_data_32",
            AccountFilter {
                user_data_32: 1,
                ..base
            },
            vec![1, 4],
        ),
        ("code", AccountFilter { code: 1, ..base }, vec![1, 3]),
        (
            "all filters",
            AccountFilter {
                user_data_128: 1000,
                user_data_64: 20,
                user_data_32: 2,
                code: 1,
                ..base
            },
            vec![3],
        ),
        (
            "no match",
            AccountFilter {
                user_data_128: 1000,
                code: 2,
                ..base
            },
            vec![],
        ),
    ];
    for (name, filter, expected) in cases {
        assert_eq!(
            h.account_transfers(&filter),
            expected,
            "get_account_transfers: {name}"
        );
    }
    // The other side of the same transfers.
    assert_eq!(h.account_transfers(&account_filter(2)), vec![1, 2, 3, 4]);
}

#[test]
fn row_69_invalid_account_filters_return_nothing() {
    let mut h = Harness::new();
    h.accounts(
        &[acct(1).flags(A_HIST), acct(2)],
        &[AccountStatus::Created; 2],
    );
    h.transfers(&[tr(1, 1, 2, 1)], &[TransferStatus::Created]);
    let base = account_filter(1);
    assert_eq!(h.account_transfers(&base), vec![1]);
    assert_eq!(h.account_balances(&base).len(), 1);
    let mut reserved = base;
    reserved.reserved[0] = 1;
    let invalid = [
        (
            "unknown account",
            AccountFilter {
                account_id: 9,
                ..base
            },
        ),
        (
            "account 0",
            AccountFilter {
                account_id: 0,
                ..base
            },
        ),
        (
            "account MAX",
            AccountFilter {
                account_id: MAX,
                ..base
            },
        ),
        (
            "neither debits nor credits",
            AccountFilter { flags: 0, ..base },
        ),
        (
            "reversed only",
            AccountFilter {
                flags: AccountFilterFlags::REVERSED,
                ..base
            },
        ),
        (
            "padding flag",
            AccountFilter {
                flags: base.flags | 8,
                ..base
            },
        ),
        (
            "min > max",
            AccountFilter {
                timestamp_min: 10,
                timestamp_max: 9,
                ..base
            },
        ),
        (
            "min beyond TS_MAX",
            AccountFilter {
                timestamp_min: TS_MAX + 1,
                ..base
            },
        ),
        (
            "max beyond TS_MAX",
            AccountFilter {
                timestamp_max: u64::MAX,
                ..base
            },
        ),
        ("limit 0", AccountFilter { limit: 0, ..base }),
        ("reserved bytes", reserved),
    ];
    for (name, filter) in invalid {
        assert_eq!(
            h.account_transfers(&filter),
            Vec::<u128>::new(),
            "transfers: {name}"
        );
        assert!(h.account_balances(&filter).is_empty(), "balances: {name}");
    }
}

#[test]
fn row_70_balances_need_history() {
    let mut h = Harness::new();
    h.accounts(
        &[acct(1), acct(2), acct(3).flags(A_HIST)],
        &[AccountStatus::Created; 3],
    );
    h.transfers(&[tr(1, 1, 2, 5)], &[TransferStatus::Created]);
    assert!(
        h.account_balances(&account_filter(2)).is_empty(),
        "A2 has no history flag"
    );
    assert_eq!(h.account_transfers(&account_filter(2)), vec![1]);
    assert!(
        h.account_balances(&account_filter(3)).is_empty(),
        "no opening-balance row"
    );
}

#[test]
fn row_71_query_accounts_filters() {
    let mut h = Harness::new();
    let specs: [(u128, u64, u32, u32, u16); 8] = [
        (1000, 10, 1, 1, 1),
        (1000, 10, 2, 1, 2),
        (1000, 20, 1, 2, 1),
        (1001, 10, 1, 1, 1),
        (1001, 20, 2, 2, 2),
        (1000, 10, 1, 1, 1),
        (0, 0, 0, 3, 3),
        (1000, 20, 2, 1, 1),
    ];
    let events: Vec<_> = specs
        .iter()
        .enumerate()
        .map(|(index, (ud128, ud64, ud32, ledger, code))| {
            acct(index as u128 + 1)
                .ud(*ud128, *ud64, *ud32)
                .lc(*ledger, *code)
        })
        .collect();
    h.accounts(&events, &[AccountStatus::Created; 8]);
    let ts = |id: u128| h.account(id).expect("account").timestamp;
    let base = query_filter();
    let rev = QueryFilterFlags::REVERSED;
    use clearline_engine::QueryFilter as Q;
    let cases: Vec<(&str, Q, Vec<u128>)> = vec![
        ("all", base, (1..=8).collect()),
        (
            "user_data_128",
            Q {
                user_data_128: 1000,
                ..base
            },
            vec![1, 2, 3, 6, 8],
        ),
        (
            "user_data_128 reversed",
            Q {
                user_data_128: 1000,
                flags: rev,
                ..base
            },
            vec![8, 6, 3, 2, 1],
        ),
        (
            "user_data_64 + user_data_32",
            Q {
                user_data_64: 10,
                user_data_32: 1,
                ..base
            },
            vec![1, 4, 6],
        ),
        (
            "all five fields",
            Q {
                user_data_128: 1000,
                user_data_64: 10,
                user_data_32: 1,
                ledger: 1,
                code: 1,
                ..base
            },
            vec![1, 6],
        ),
        ("ledger", Q { ledger: 2, ..base }, vec![3, 5]),
        ("code", Q { code: 2, ..base }, vec![2, 5]),
        (
            "time range",
            Q {
                timestamp_min: ts(3),
                timestamp_max: ts(6),
                ..base
            },
            vec![3, 4, 5, 6],
        ),
        (
            "time range + user_data_128",
            Q {
                timestamp_min: ts(3),
                timestamp_max: ts(6),
                user_data_128: 1000,
                ..base
            },
            vec![3, 6],
        ),
        ("limit 3", Q { limit: 3, ..base }, vec![1, 2, 3]),
        (
            "limit 3 reversed",
            Q {
                limit: 3,
                flags: rev,
                ..base
            },
            vec![8, 7, 6],
        ),
        ("limit 0", Q { limit: 0, ..base }, vec![]),
        (
            "no match",
            Q {
                user_data_128: 1001,
                ledger: 3,
                ..base
            },
            vec![],
        ),
        (
            "min > max",
            Q {
                timestamp_min: ts(6),
                timestamp_max: ts(3),
                ..base
            },
            vec![],
        ),
        ("padding flag", Q { flags: 2, ..base }, vec![]),
        (
            "reserved",
            Q {
                reserved: [1, 0, 0, 0, 0, 0],
                ..base
            },
            vec![],
        ),
    ];
    for (name, filter, expected) in cases {
        assert_eq!(
            h.query_accounts(&filter),
            expected,
            "query_accounts: {name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Beyond the table: names and numbers, clearline's own edges.

/// The reference's status names in number order from 1 (`-` marks a number it retired), then
/// clearline's capacity codes in number order from 200. Every other test takes its statuses from
/// the engine's enums; this golden ties those enums to the numbers on the wire.
const REFERENCE_ACCOUNT_STATUSES: (&str, &str) = (
    concat!(
        "linked_event_failed linked_event_chain_open timestamp_must_be_zero ",
        "reserved_field reserved_flag id_must_not_be_zero id_must_not_be_int_max ",
        "flags_are_mutually_exclusive debits_pending_must_be_zero ",
        "debits_posted_must_be_zero credits_pending_must_be_zero ",
        "credits_posted_must_be_zero ledger_must_not_be_zero code_must_not_be_zero ",
        "exists_with_different_flags exists_with_different_user_data_128 ",
        "exists_with_different_user_data_64 exists_with_different_user_data_32 ",
        "exists_with_different_ledger exists_with_different_code exists ",
        "imported_event_expected imported_event_not_expected ",
        "imported_event_timestamp_out_of_range imported_event_timestamp_must_not_advance ",
        "imported_event_timestamp_must_not_regress ",
    ),
    "accounts_capacity_exceeded",
);

/// As `REFERENCE_ACCOUNT_STATUSES`, for transfers.
const REFERENCE_TRANSFER_STATUSES: (&str, &str) = (
    concat!(
        "linked_event_failed linked_event_chain_open timestamp_must_be_zero ",
        "reserved_flag id_must_not_be_zero id_must_not_be_int_max ",
        "flags_are_mutually_exclusive debit_account_id_must_not_be_zero ",
        "debit_account_id_must_not_be_int_max credit_account_id_must_not_be_zero ",
        "credit_account_id_must_not_be_int_max accounts_must_be_different ",
        "pending_id_must_be_zero pending_id_must_not_be_zero ",
        "pending_id_must_not_be_int_max pending_id_must_be_different ",
        "timeout_reserved_for_pending_transfer - ledger_must_not_be_zero ",
        "code_must_not_be_zero debit_account_not_found credit_account_not_found ",
        "accounts_must_have_the_same_ledger ",
        "transfer_must_have_the_same_ledger_as_accounts pending_transfer_not_found ",
        "pending_transfer_not_pending pending_transfer_has_different_debit_account_id ",
        "pending_transfer_has_different_credit_account_id ",
        "pending_transfer_has_different_ledger pending_transfer_has_different_code ",
        "exceeds_pending_transfer_amount pending_transfer_has_different_amount ",
        "pending_transfer_already_posted pending_transfer_already_voided ",
        "pending_transfer_expired exists_with_different_flags ",
        "exists_with_different_debit_account_id exists_with_different_credit_account_id ",
        "exists_with_different_amount exists_with_different_pending_id ",
        "exists_with_different_user_data_128 exists_with_different_user_data_64 ",
        "exists_with_different_user_data_32 exists_with_different_timeout ",
        "exists_with_different_code exists overflows_debits_pending ",
        "overflows_credits_pending overflows_debits_posted overflows_credits_posted ",
        "overflows_debits overflows_credits overflows_timeout exceeds_credits ",
        "exceeds_debits imported_event_expected imported_event_not_expected ",
        "imported_event_timestamp_out_of_range imported_event_timestamp_must_not_advance ",
        "imported_event_timestamp_must_not_regress ",
        "imported_event_timestamp_must_postdate_debit_account ",
        "imported_event_timestamp_must_postdate_credit_account ",
        "imported_event_timeout_must_be_zero closing_transfer_must_be_pending ",
        "debit_account_already_closed credit_account_already_closed ",
        "exists_with_different_ledger id_already_failed ",
    ),
    concat!(
        "transfers_capacity_exceeded pending_transfers_capacity_exceeded ",
        "account_balances_capacity_exceeded",
    ),
);

/// Checks one enum, through `name` (number to name), against a golden; and `created`.
fn check_reference(golden: (&str, &str), name: fn(u32) -> Option<&'static str>) {
    let (numbered, capacity) = golden;
    let numbers = (1u32..).zip(numbered.split_whitespace());
    let capacity = (200u32..).zip(capacity.split_whitespace());
    for (number, expected) in numbers.chain(capacity).filter(|(_, text)| *text != "-") {
        assert_eq!(name(number), Some(expected), "status {number}");
    }
    assert_eq!(name(u32::MAX), Some("created"));
}

#[test]
fn status_numbers_and_names_match_the_reference() {
    check_reference(REFERENCE_ACCOUNT_STATUSES, |number| {
        AccountStatus::from_u32(number).map(AccountStatus::name)
    });
    check_reference(REFERENCE_TRANSFER_STATUSES, |number| {
        TransferStatus::from_u32(number).map(TransferStatus::name)
    });
    assert_eq!(AccountStatus::from_u32(199), None);
    assert_eq!(TransferStatus::from_u32(69), None);
}

#[test]
fn imported_account_between_slot_and_batch_timestamp_is_rejected() {
    // Section 11.1: event 0 of 3 at T = 100 owns slot 98; a timestamp of 99 is below T but
    // above the slot. clearline rejects it instead of tripping an assertion.
    let mut h = Harness::new();
    let results = h.accounts_at(
        100,
        &[
            acct(1).imported(99),
            acct(2).imported(5),
            acct(3).imported(6),
        ],
        &[
            AccountStatus::ImportedEventTimestampMustNotAdvance,
            AccountStatus::Created,
            AccountStatus::Created,
        ],
    );
    assert_eq!(
        results[0].timestamp, 98,
        "a rejected event carries its slot"
    );
    h.assert_no_account(1);
    // The bound is the event's own slot, inclusive, as the reference's `T` is for the batch:
    // event 1 of 3 at T = 300 owns slot 299, so 299 is rejected like 300 is for event 2.
    h.accounts_at(
        300,
        &[
            acct(4).imported(297),
            acct(5).imported(299),
            acct(6).imported(300),
        ],
        &[
            AccountStatus::Created,
            AccountStatus::ImportedEventTimestampMustNotAdvance,
            AccountStatus::ImportedEventTimestampMustNotAdvance,
        ],
    );
    assert_eq!(h.account(4).expect("A4").timestamp, 297);
    // A chain whose first member sits between its slot and T fails as a whole.
    h.accounts_at(
        400,
        &[
            acct(8).flags(A_LNK).imported(399),
            acct(9).flags(A_LNK).imported(390),
            acct(10).imported(391),
        ],
        &[
            AccountStatus::ImportedEventTimestampMustNotAdvance,
            AccountStatus::LinkedEventFailed,
            AccountStatus::LinkedEventFailed,
        ],
    );
    for id in 8..=10 {
        h.assert_no_account(id);
    }
    h.engine.verify();
}

#[test]
fn imported_transfer_between_slot_and_batch_timestamp_is_rejected() {
    let mut h = Harness::new();
    h.accounts_at(
        10,
        &[acct(1).imported(1), acct(2).imported(2)],
        &[AccountStatus::Created; 2],
    );
    // Events 0..3 of 4 at T = 100 own slots 97..100.
    let t = |id: u128, ts: u64| tr(id, 1, 2, 1).imported(ts);
    let results = h.transfers_at(
        100,
        &[t(1, 98), t(2, 50), t(3, 98), t(4, 100)],
        &[
            TransferStatus::ImportedEventTimestampMustNotAdvance,
            TransferStatus::Created,
            TransferStatus::Created,
            TransferStatus::ImportedEventTimestampMustNotAdvance,
        ],
    );
    assert_eq!(
        results[0].timestamp, 97,
        "a rejected event carries its slot"
    );
    assert_eq!(results[2].timestamp, 98);
    h.assert_no_transfer(1);
    h.assert_no_transfer(4);
    h.assert_balances(1, [0, 2, 0, 0]);
    // The ids were not burned.
    h.transfers_at(200, &[t(1, 150), t(4, 151)], &[TransferStatus::Created; 2]);
    h.assert_balances(1, [0, 4, 0, 0]);
    h.engine.verify();
}

#[test]
fn accounts_capacity_exhaustion_returns_the_capacity_code() {
    let config = Config {
        accounts_max: 8,
        ..Config::test_small()
    };
    let mut h = Harness::with_config(&config);
    let ids: Vec<u128> = (1..=8).collect();
    h.open(&ids);
    let results = h.accounts(
        &[acct(9), acct(1), acct(10)],
        &[
            AccountStatus::AccountsCapacityExceeded,
            AccountStatus::Exists,
            AccountStatus::AccountsCapacityExceeded,
        ],
    );
    assert_eq!(results[0].timestamp, h.slot(0));
    h.assert_no_account(9);
    // Not transient: the same id gets the same answer again.
    h.accounts(&[acct(9)], &[AccountStatus::AccountsCapacityExceeded]);
    assert_eq!(h.engine.accounts_count(), 8);
    h.engine.verify();
}

#[test]
fn transfers_capacity_exhaustion_returns_the_capacity_code() {
    let config = Config {
        transfers_max: 8,
        ..Config::test_small()
    };
    let mut h = Harness::with_config(&config);
    h.open(&[1, 2]);
    let events: Vec<Transfer> = (1..=8).map(|id| tr(id, 1, 2, 1)).collect();
    h.transfers(&events, &[TransferStatus::Created; 8]);
    h.transfers(
        &[tr(9, 1, 2, 1), tr(1, 1, 2, 1), tr(9, 1, 2, 1)],
        &[
            TransferStatus::TransfersCapacityExceeded,
            TransferStatus::Exists,
            TransferStatus::TransfersCapacityExceeded,
        ],
    );
    h.assert_no_transfer(9);
    h.assert_balances(1, [0, 8, 0, 0]);
    assert_eq!(h.engine.transfers_count(), 8);
    h.engine.verify();
}

#[test]
fn pending_capacity_exhaustion_returns_the_capacity_code() {
    let config = Config {
        transfers_pending_max: 4,
        ..Config::test_small()
    };
    let mut h = Harness::with_config(&config);
    h.open(&[1, 2]);
    let events: Vec<Transfer> = (1..=4).map(|id| pending(id, 1, 2, 1)).collect();
    h.transfers(&events, &[TransferStatus::Created; 4]);
    h.transfers(
        &[pending(5, 1, 2, 1), tr(6, 1, 2, 1), pending(5, 1, 2, 1)],
        &[
            TransferStatus::PendingTransfersCapacityExceeded,
            TransferStatus::Created,
            TransferStatus::PendingTransfersCapacityExceeded,
        ],
    );
    h.assert_no_transfer(5);
    h.assert_balances(1, [4, 1, 0, 0]);
    h.engine.verify();
}

#[test]
fn account_balances_capacity_exhaustion_returns_the_capacity_code() {
    let config = Config {
        account_balances_max: 4,
        ..Config::test_small()
    };
    let mut h = Harness::with_config(&config);
    h.accounts(
        &[acct(1).flags(A_HIST), acct(2), acct(3)],
        &[AccountStatus::Created; 3],
    );
    let events: Vec<Transfer> = (1..=4).map(|id| tr(id, 1, 2, 1)).collect();
    h.transfers(&events, &[TransferStatus::Created; 4]);
    h.transfers(
        &[tr(5, 1, 2, 1), tr(6, 3, 2, 1), tr(5, 1, 2, 1)],
        &[
            TransferStatus::AccountBalancesCapacityExceeded,
            TransferStatus::Created,
            TransferStatus::AccountBalancesCapacityExceeded,
        ],
    );
    h.assert_no_transfer(5);
    assert_eq!(h.account_balances(&account_filter(1)).len(), 4);
    h.engine.verify();
}

#[test]
fn capacity_failure_inside_a_chain_rolls_the_chain_back() {
    let config = Config {
        transfers_max: 4,
        ..Config::test_small()
    };
    let mut h = Harness::with_config(&config);
    h.open(&[1, 2]);
    h.transfers(
        &[tr(1, 1, 2, 1), tr(2, 1, 2, 1), tr(3, 1, 2, 1)],
        &[TransferStatus::Created; 3],
    );
    h.transfers(
        &[tr(4, 1, 2, 1).flags(LNK), tr(5, 1, 2, 1)],
        &[
            TransferStatus::LinkedEventFailed,
            TransferStatus::TransfersCapacityExceeded,
        ],
    );
    h.assert_no_transfer(4);
    h.assert_balances(1, [0, 3, 0, 0]);
    h.transfers(&[tr(4, 1, 2, 1)], &[TransferStatus::Created]);
}

#[test]
fn pulse_expires_at_most_pulse_expiries_max() {
    let config = Config {
        transfers_pending_max: 8300,
        ..Config::test_small()
    };
    let mut h = Harness::with_config(&config);
    h.open(&[1, 2]);
    let first: Vec<Transfer> = (1..=8190)
        .map(|id| pending(id, 1, 2, 1).timeout(1))
        .collect();
    h.transfers(&first, &vec![TransferStatus::Created; first.len()]);
    let second: Vec<Transfer> = (8191..=8200)
        .map(|id| pending(id, 1, 2, 1).timeout(1))
        .collect();
    h.transfers(&second, &[TransferStatus::Created; 10]);
    let limit = clearline_engine::PULSE_EXPIRIES_MAX;
    assert_eq!(h.tick_seconds(1), limit);
    h.assert_balances(1, [8200 - u128::from(limit), 0, 0, 0]);
    // A pending transfer that is due but not yet swept cannot be posted either.
    h.transfers(
        &[post(9001, 1, MAX), post(9002, 8200, MAX)],
        &[
            TransferStatus::PendingTransferExpired,
            TransferStatus::PendingTransferExpired,
        ],
    );
    h.assert_balances(1, [8200 - u128::from(limit), 0, 0, 0]);
    assert_eq!(h.pulse_at(h.now + u64::from(limit) + 1), 8200 - limit);
    h.assert_balances(1, [0; 4]);
    h.assert_balances(2, [0; 4]);
    assert_eq!(h.pulse_at(h.now + u64::from(limit) + 1), 0);
}
