//! The 71 cases of docs/ledger.md ("Tested cases"), plus the edges clearline defines itself
//! (docs/ledger.md, "Where clearline differs from TigerBeetle"), written as data: each `Row` is
//! a name, a configuration and a list of `Step`s, and `run` walks a row on a fresh `Harness`.
//! `rows!` makes one `#[test]` per row, so a failure names its row, and `run` names the failing
//! step.
//!
//! Accounts default to ledger 1, code 1, no flags; `An` is account id `n` and `Tn` transfer id
//! `n`. The reference's `setup` backdoor is replaced by real transfers with helper accounts
//! (`Step::Setup`), so every row goes through the public API only. Where a row only says
//! "tick", the harness advances its clock by whole seconds and runs `pulse`.
//!
//! To add a row, append it to `table()` and its name to the `rows!` list; `every_row_has_a_test`
//! checks that the two agree.

mod common;

use clearline_engine::{
    Account, AccountFilter, AccountFilterFlags, Config, CreateResult, QueryFilter,
    QueryFilterFlags, Transfer, PULSE_EXPIRIES_MAX,
};
use common::*;
// The engine's statuses, short because the table spells so many of them.
use common::{AccountStatus as A, TransferStatus as T};

use At::{Is, Slot};
use Step::*;

// ---------------------------------------------------------------------------------------------
// The runner.

/// One row of the table: the steps run in order on a fresh engine with `config`.
struct Row {
    name: &'static str,
    config: Config,
    steps: Vec<Step>,
}

/// A row on `Config::test_small()`.
fn row(name: &'static str, steps: Vec<Step>) -> Row {
    Row {
        name,
        config: Config::test_small(),
        steps,
    }
}

/// A row on its own configuration.
fn row_with(name: &'static str, config: Config, steps: Vec<Step>) -> Row {
    Row {
        name,
        config,
        steps,
    }
}

/// A timestamp a step expects.
#[derive(Clone, Copy, Debug)]
enum At {
    /// The slot of event `n` of the last create batch (`T - count + n + 1`).
    Slot(usize),
    /// Exactly this value.
    Is(u64),
    /// The result timestamp of event `event` in the row's create batch `batch`; batches count
    /// only the `Accounts*` and `Transfers*` steps, from 0.
    Result { batch: usize, event: usize },
}

/// One step of a row: a request with the status of every event, or an expectation.
#[derive(Clone, Debug)]
enum Step {
    /// `create_accounts` at the next batch timestamp.
    Accounts(Vec<Account>, Vec<AccountStatus>),
    /// `create_accounts` at this batch timestamp.
    AccountsAt(u64, Vec<Account>, Vec<AccountStatus>),
    /// `create_transfers` at the next batch timestamp.
    Transfers(Vec<Transfer>, Vec<TransferStatus>),
    /// `create_transfers` at this batch timestamp.
    TransfersAt(u64, Vec<Transfer>, Vec<TransferStatus>),
    /// Default accounts with these ids, all created.
    Open(Vec<u128>),
    /// Brings a fresh account to `[dp, dpost, cp, cpost]` through helper transfers.
    Setup(u128, [u128; 4]),
    /// Advances the clock by whole seconds and pulses; the pulse expires this many.
    Tick(u64, u32),
    /// Pulses this many nanoseconds after the clock; the pulse expires this many.
    PulseAfter(u64, u32),
    /// The timestamp of event `n`'s result in the last create batch.
    ResultAt(usize, At),
    /// The stored timestamp of an account.
    AccountAt(u128, At),
    /// The stored timestamp of a transfer.
    TransferAt(u128, At),
    /// An account's `[debits_pending, debits_posted, credits_pending, credits_posted]`.
    Balances(u128, [u128; 4]),
    /// A stored transfer's amount.
    Amount(u128, u128),
    /// Whether an account is closed.
    Closed(u128, bool),
    /// An account exists.
    HasAccount(u128),
    /// No account has this id.
    NoAccount(u128),
    /// A transfer exists.
    HasTransfer(u128),
    /// No transfer has this id.
    NoTransfer(u128),
    /// The engine holds this many accounts.
    AccountsCount(u32),
    /// The engine holds this many transfers.
    TransfersCount(u32),
    /// Ids of `get_account_transfers`, in reply order, for the named filter: A1's debits and
    /// credits (`account_filter(1)`) as the function edits it.
    AccountTransfers(&'static str, fn(&mut AccountFilter, &Harness), Vec<u128>),
    /// How many rows `get_account_balances` returns for the named filter, made as for
    /// `AccountTransfers`.
    AccountBalancesCount(&'static str, fn(&mut AccountFilter, &Harness), usize),
    /// Ids of `query_accounts`, in reply order, for the named filter: everything
    /// (`query_filter()`) as the function edits it.
    QueryAccounts(&'static str, fn(&mut QueryFilter, &Harness), Vec<u128>),
    /// The engine's whole-structure check.
    Verify,
    /// A check of its own, described by its text.
    Check(&'static str, fn(&Harness)),
}

/// Names the row and step being run if a step panics.
struct StepContext<'a> {
    row: &'static str,
    index: usize,
    step: &'a Step,
}

impl Drop for StepContext<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = match self.step {
                Check(what, _) => format!("Check: {what}"),
                step => format!("{step:?}"),
            };
            let end = text
                .char_indices()
                .nth(400)
                .map_or(text.len(), |(at, _)| at);
            eprintln!("{}: step {} failed: {}", self.row, self.index, &text[..end]);
        }
    }
}

/// Runs one row on a fresh harness, asserting every step.
fn run(row: &Row) {
    let mut h = Harness::with_config(&row.config);
    let mut batches: Vec<Vec<CreateResult>> = Vec::new();
    for (index, step) in row.steps.iter().enumerate() {
        let _context = StepContext {
            row: row.name,
            index,
            step,
        };
        let at = |h: &Harness, batches: &[Vec<CreateResult>], at: At| match at {
            Slot(event) => h.slot(event),
            Is(timestamp) => timestamp,
            At::Result { batch, event } => batches[batch][event].timestamp,
        };
        match step {
            Accounts(events, expected) => batches.push(h.submit(None, events, expected)),
            AccountsAt(timestamp, events, expected) => {
                batches.push(h.submit(Some(*timestamp), events, expected));
            }
            Transfers(events, expected) => batches.push(h.submit(None, events, expected)),
            TransfersAt(timestamp, events, expected) => {
                batches.push(h.submit(Some(*timestamp), events, expected));
            }
            Open(ids) => h.open(ids),
            Setup(id, balances) => h.setup(*id, *balances),
            Tick(seconds, expired) => assert_eq!(h.tick_seconds(*seconds), *expired, "expired"),
            PulseAfter(nanoseconds, expired) => {
                assert_eq!(h.pulse_at(h.now + nanoseconds), *expired, "expired");
            }
            ResultAt(event, expected) => {
                let results = batches.last().expect("a create batch ran");
                let want = at(&h, &batches, *expected);
                assert_eq!(
                    results[*event].timestamp, want,
                    "timestamp of result {event}"
                );
            }
            AccountAt(id, expected) => {
                let stored = h.account(*id).unwrap_or_else(|| panic!("A{id} exists"));
                assert_eq!(
                    stored.timestamp,
                    at(&h, &batches, *expected),
                    "A{id} timestamp"
                );
            }
            TransferAt(id, expected) => {
                let stored = h.transfer(*id).unwrap_or_else(|| panic!("T{id} exists"));
                assert_eq!(
                    stored.timestamp,
                    at(&h, &batches, *expected),
                    "T{id} timestamp"
                );
            }
            Balances(id, balances) => h.assert_balances(*id, *balances),
            Amount(id, amount) => h.assert_amount(*id, *amount),
            Closed(id, closed) => h.assert_closed(*id, *closed),
            HasAccount(id) => assert!(h.account(*id).is_some(), "A{id} exists"),
            NoAccount(id) => h.assert_no_account(*id),
            HasTransfer(id) => assert!(h.transfer(*id).is_some(), "T{id} exists"),
            NoTransfer(id) => h.assert_no_transfer(*id),
            AccountsCount(count) => assert_eq!(h.engine.accounts_count(), *count),
            TransfersCount(count) => assert_eq!(h.engine.transfers_count(), *count),
            AccountTransfers(name, edit, ids) => {
                let mut filter = account_filter(1);
                edit(&mut filter, &h);
                let got = h.account_transfers(&filter);
                assert_eq!(&got, ids, "get_account_transfers: {name}");
            }
            AccountBalancesCount(name, edit, count) => {
                let mut filter = account_filter(1);
                edit(&mut filter, &h);
                let got = h.account_balances(&filter).len();
                assert_eq!(got, *count, "get_account_balances: {name}");
            }
            QueryAccounts(name, edit, ids) => {
                let mut filter = query_filter();
                edit(&mut filter, &h);
                let got = h.query_accounts(&filter);
                assert_eq!(&got, ids, "query_accounts: {name}");
            }
            Verify => h.engine.verify(),
            Check(_, check) => check(&h),
        }
    }
}

/// The result timestamp of event `event` in create batch `batch`.
fn result(batch: usize, event: usize) -> At {
    At::Result { batch, event }
}

/// The stored timestamp of a transfer that must exist.
fn transfer_timestamp(h: &Harness, id: u128) -> u64 {
    h.transfer(id).expect("transfer").timestamp
}

/// The stored timestamp of an account that must exist.
fn account_timestamp(h: &Harness, id: u128) -> u64 {
    h.account(id).expect("account").timestamp
}

/// One `#[test]` per row, named after it, and the list of those names.
macro_rules! rows {
    ($($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                let name = stringify!($name);
                let table = table();
                let row = table.iter().find(|row| row.name == name);
                run(row.unwrap_or_else(|| panic!("no row named {name}")));
            }
        )*

        /// The rows that have a test.
        const ROW_TESTS: &[&str] = &[$(stringify!($name),)*];
    };
}

#[test]
fn every_row_has_a_test() {
    let names: Vec<&str> = table().iter().map(|row| row.name).collect();
    assert_eq!(
        names, ROW_TESTS,
        "table() and rows! list the same rows in the same order"
    );
}

rows! {
    row_01_account_created_then_exists_in_same_batch,
    row_02_account_exists_with_different_fields_in_precedence_order,
    row_03_account_timestamp_then_reserved_then_padding_then_id,
    row_04_account_id_int_max,
    row_05_new_account_faults_removed_one_by_one,
    row_06_account_chain_with_duplicate_fails_entirely,
    row_07_account_linked_bit_is_compared,
    row_08_account_chain_open_at_batch_end,
    row_09_single_linked_account_is_chain_open,
    row_10_chain_open_wins_over_broken_chain,
    row_11_account_created_closed_rejects_transfers,
    row_12_first_event_decides_imported_batch,
    row_13_imported_account_timestamp_rules,
    row_14_imported_account_resend_exists_regardless_of_timestamp,
    row_15_imported_account_must_not_reuse_a_transfer_timestamp,
    row_16_single_phase_transfer_moves_balances,
    row_17_failed_transfer_is_not_stored,
    row_18_zero_amount_transfer_is_created,
    row_19_transfer_faults_removed_one_by_one,
    row_20_transient_failure_burns_the_id,
    row_21_accounts_must_have_the_same_ledger,
    row_22_transfer_must_have_the_same_ledger_as_accounts,
    row_23_overflow_checks_in_order,
    row_24_timeout_overflow_near_timestamp_max,
    row_25_limits_exceeded_and_ids_burned,
    row_26_posted_debits_overflow,
    row_27_overflows_debits_precedes_overflows_credits,
    row_28_pending_debits_count_against_the_limit,
    row_29_transfer_exists_with_different_fields,
    row_30_same_id_within_one_batch,
    row_31_resent_committed_chain_reports_exists_then_failed,
    row_32_exists_inside_chain_refers_to_rolled_back_transfer,
    row_33_failed_chain_is_undone_within_the_batch,
    row_34_pending_created_in_failed_chain_is_gone,
    row_35_per_transfer_invariant_chain_and_burned_ids,
    row_36_partial_post_returns_the_rest,
    row_37_post_amount_max_means_full_amount,
    row_38_post_amount_zero_releases_everything,
    row_39_post_more_than_pending_does_not_burn_the_id,
    row_40_void_amount_must_be_zero_or_full,
    row_41_void_with_explicit_full_amount,
    row_42_pending_resolves_at_most_once,
    row_43_void_of_single_phase_transfer,
    row_44_void_of_unknown_pending_burns_the_id,
    row_45_void_fields_must_match_the_pending_transfer,
    row_46_post_void_flag_combinations_are_exclusive,
    row_47_post_void_pending_id_and_timeout_checks,
    row_48_post_void_idempotency_with_inherited_fields,
    row_49_pending_transfers_expire_by_timeout,
    row_50_expiry_writes_no_transfer_and_no_balance_row,
    row_51_pending_and_post_in_the_same_batch,
    row_52_balancing_clamps_to_the_available_balance,
    row_53_balancing_resend_amount_is_an_upper_bound,
    row_54_balancing_with_zero_amounts,
    row_55_balancing_amount_max_with_balance_near_max,
    row_56_balancing_debit_and_credit_together,
    row_57_balancing_credit_counts_pending_credits,
    row_58_balancing_clamps_only_its_own_side,
    row_59_multi_debit_recipe_chain,
    row_59_multi_debit_recipe_chain_fails_as_a_whole,
    row_60_closing_requires_pending,
    row_61_closing_debit_then_void_reopens,
    row_62_closing_credit_with_timeout_expires_and_reopens,
    row_63_closed_account_cannot_be_closed_again,
    row_64_closed_check_precedes_limit_check,
    row_65_imported_transfer_timestamp_rules,
    row_66_imported_pending_needs_zero_timeout,
    row_67_imported_chain_fails_and_succeeds_as_a_whole,
    row_68_get_account_transfers_filters,
    row_69_invalid_account_filters_return_nothing,
    row_70_balances_need_history,
    row_71_query_accounts_filters,
    imported_account_between_slot_and_batch_timestamp_is_rejected,
    imported_transfer_between_slot_and_batch_timestamp_is_rejected,
    accounts_capacity_exhaustion_returns_the_capacity_code,
    transfers_capacity_exhaustion_returns_the_capacity_code,
    pending_capacity_exhaustion_returns_the_capacity_code,
    account_balances_capacity_exhaustion_returns_the_capacity_code,
    capacity_failure_inside_a_chain_rolls_the_chain_back,
    pulse_expires_at_most_pulse_expiries_max,
}

// ---------------------------------------------------------------------------------------------
// The table.

/// Every row, in order.
fn table() -> Vec<Row> {
    [
        account_rows(),
        transfer_rows(),
        chain_rows(),
        two_phase_rows(),
        balancing_rows(),
        closing_rows(),
        imported_transfer_rows(),
        query_rows(),
        clearline_rows(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Accounts: idempotency, validation order, chains, imported timestamps (rows 1-15).
fn account_rows() -> Vec<Row> {
    let a1 = acct(1).ud(2, 2, 2).lc(3, 4);
    vec![
        row(
            "row_01_account_created_then_exists_in_same_batch",
            vec![
                Accounts(vec![a1, a1], vec![A::Created, A::Exists]),
                ResultAt(0, Slot(0)),
                // `exists` returns the original's timestamp.
                ResultAt(1, result(0, 0)),
                AccountAt(1, result(0, 0)),
                Check("A1 keeps its user data, ledger, code and flags", |h| {
                    let stored = h.account(1).expect("A1 exists");
                    let user_data = (
                        stored.user_data_128,
                        stored.user_data_64,
                        stored.user_data_32,
                    );
                    assert_eq!(user_data, (2, 2, 2));
                    assert_eq!((stored.ledger, stored.code, stored.flags), (3, 4, 0));
                }),
            ],
        ),
        row(
            "row_02_account_exists_with_different_fields_in_precedence_order",
            vec![
                Accounts(vec![a1], vec![A::Created]),
                Accounts(
                    vec![
                        acct(1).flags(A_DC).ud(1, 1, 1).lc(9, 9),
                        acct(1).ud(1, 1, 1).lc(9, 9),
                        acct(1).ud(2, 1, 1).lc(9, 9),
                        acct(1).ud(2, 2, 1).lc(9, 9),
                        acct(1).ud(2, 2, 2).lc(9, 9),
                        acct(1).ud(2, 2, 2).lc(3, 9),
                        a1,
                    ],
                    vec![
                        A::ExistsWithDifferentFlags,
                        A::ExistsWithDifferentUserData128,
                        A::ExistsWithDifferentUserData64,
                        A::ExistsWithDifferentUserData32,
                        A::ExistsWithDifferentLedger,
                        A::ExistsWithDifferentCode,
                        A::Exists,
                    ],
                ),
                ResultAt(6, result(0, 0)),
                // Failures carry their own slot timestamp.
                ResultAt(0, Slot(0)),
                AccountAt(1, result(0, 0)),
            ],
        ),
        row(
            "row_03_account_timestamp_then_reserved_then_padding_then_id",
            vec![
                Accounts(
                    account_faults_in_precedence_order(),
                    vec![
                        A::TimestampMustBeZero,
                        A::ReservedField,
                        A::ReservedFlag,
                        A::IdMustNotBeZero,
                    ],
                ),
                AccountsCount(0),
            ],
        ),
        row(
            "row_04_account_id_int_max",
            vec![
                Accounts(vec![acct(MAX)], vec![A::IdMustNotBeIntMax]),
                NoAccount(MAX),
            ],
        ),
        row(
            "row_05_new_account_faults_removed_one_by_one",
            vec![
                Accounts(
                    new_account_faults_removed_one_by_one(),
                    vec![
                        A::FlagsAreMutuallyExclusive,
                        A::DebitsPendingMustBeZero,
                        A::DebitsPostedMustBeZero,
                        A::CreditsPendingMustBeZero,
                        A::CreditsPostedMustBeZero,
                        A::LedgerMustNotBeZero,
                        A::CodeMustNotBeZero,
                        A::Created,
                    ],
                ),
                Check("A2 has only debits_must_not_exceed_credits", |h| {
                    assert_eq!(h.account(2).expect("A2").flags, A_DC);
                }),
            ],
        ),
        row(
            "row_06_account_chain_with_duplicate_fails_entirely",
            vec![
                Accounts(
                    vec![
                        acct(1).flags(A_LNK),
                        acct(2).flags(A_LNK),
                        acct(1).flags(A_LNK),
                        acct(3),
                    ],
                    vec![
                        A::LinkedEventFailed,
                        A::LinkedEventFailed,
                        A::Exists,
                        A::LinkedEventFailed,
                    ],
                ),
                // Members before the failure carry the timestamp they would have had; `exists`
                // refers to the rolled-back A1; members after the failure carry their own slot.
                ResultAt(0, Slot(0)),
                ResultAt(1, Slot(1)),
                ResultAt(2, Slot(0)),
                ResultAt(3, Slot(3)),
                NoAccount(1),
                NoAccount(2),
                NoAccount(3),
            ],
        ),
        row(
            "row_07_account_linked_bit_is_compared",
            vec![
                Open(vec![1]),
                Accounts(
                    vec![acct(1).flags(A_LNK), acct(3)],
                    vec![A::ExistsWithDifferentFlags, A::LinkedEventFailed],
                ),
                NoAccount(3),
            ],
        ),
        row(
            "row_08_account_chain_open_at_batch_end",
            vec![
                Accounts(
                    vec![
                        acct(1).flags(A_LNK),
                        acct(2).flags(A_LNK),
                        acct(3),
                        acct(4).flags(A_LNK),
                        acct(5).flags(A_LNK),
                    ],
                    vec![
                        A::Created,
                        A::Created,
                        A::Created,
                        A::LinkedEventFailed,
                        A::LinkedEventChainOpen,
                    ],
                ),
                HasAccount(1),
                HasAccount(2),
                HasAccount(3),
                NoAccount(4),
                NoAccount(5),
            ],
        ),
        row(
            "row_09_single_linked_account_is_chain_open",
            vec![
                Accounts(vec![acct(1).flags(A_LNK)], vec![A::LinkedEventChainOpen]),
                ResultAt(0, Slot(0)),
                NoAccount(1),
            ],
        ),
        row(
            "row_10_chain_open_wins_over_broken_chain",
            vec![
                Open(vec![1]),
                Accounts(
                    vec![
                        acct(2).flags(A_LNK),
                        acct(1).flags(A_LNK),
                        acct(3).flags(A_LNK),
                    ],
                    vec![
                        A::LinkedEventFailed,
                        A::ExistsWithDifferentFlags,
                        A::LinkedEventChainOpen,
                    ],
                ),
                NoAccount(2),
                NoAccount(3),
            ],
        ),
        row(
            "row_11_account_created_closed_rejects_transfers",
            vec![
                Accounts(vec![acct(1).flags(A_CLSD), acct(2)], vec![A::Created; 2]),
                Closed(1, true),
                Transfers(vec![tr(1, 1, 2, 5)], vec![T::DebitAccountAlreadyClosed]),
                Transfers(vec![tr(1, 1, 2, 5)], vec![T::IdAlreadyFailed]),
                Transfers(vec![tr(2, 2, 1, 5)], vec![T::CreditAccountAlreadyClosed]),
                Balances(1, [0; 4]),
                Balances(2, [0; 4]),
            ],
        ),
        row(
            "row_12_first_event_decides_imported_batch",
            vec![
                AccountsAt(
                    10,
                    vec![acct(1).imported(1), acct(2), acct(2).imported(2)],
                    vec![A::Created, A::ImportedEventExpected, A::Created],
                ),
                ResultAt(0, Is(1)),
                ResultAt(2, Is(2)),
                AccountAt(1, Is(1)),
                AccountAt(2, Is(2)),
                Accounts(
                    vec![acct(3), acct(4).imported(3)],
                    vec![A::Created, A::ImportedEventNotExpected],
                ),
                ResultAt(0, Slot(0)),
                NoAccount(4),
            ],
        ),
        row(
            "row_13_imported_account_timestamp_rules",
            vec![
                // The clock stands at about 10 ns.
                AccountsAt(
                    10,
                    vec![
                        acct(1).imported(0),
                        acct(1).imported(u64::MAX - 1),
                        acct(1).imported(99),
                        acct(1).imported(2),
                    ],
                    vec![
                        A::ImportedEventTimestampOutOfRange,
                        A::ImportedEventTimestampOutOfRange,
                        A::ImportedEventTimestampMustNotAdvance,
                        A::Created,
                    ],
                ),
                AccountsAt(
                    20,
                    vec![
                        acct(2).imported(1),
                        acct(2).imported(3),
                        acct(3).imported(9),
                    ],
                    vec![
                        A::ImportedEventTimestampMustNotRegress,
                        A::Created,
                        A::Created,
                    ],
                ),
                AccountAt(1, Is(2)),
                AccountAt(2, Is(3)),
                AccountAt(3, Is(9)),
            ],
        ),
        row(
            "row_14_imported_account_resend_exists_regardless_of_timestamp",
            vec![
                AccountsAt(
                    10,
                    vec![acct(1).imported(2), acct(2).imported(3)],
                    vec![A::Created; 2],
                ),
                AccountsAt(
                    20,
                    vec![
                        acct(2).imported(99),
                        acct(2).imported(1),
                        acct(2).imported(3),
                        acct(2).imported(4),
                    ],
                    vec![
                        A::ImportedEventTimestampMustNotAdvance,
                        A::Exists,
                        A::Exists,
                        A::Exists,
                    ],
                ),
                // `exists` returns the original timestamp.
                ResultAt(1, Is(3)),
                ResultAt(2, Is(3)),
                ResultAt(3, Is(3)),
            ],
        ),
        row(
            "row_15_imported_account_must_not_reuse_a_transfer_timestamp",
            vec![
                AccountsAt(2, vec![acct(1), acct(2)], vec![A::Created; 2]),
                TransfersAt(10, vec![tr(1, 1, 2, 1)], vec![T::Created]),
                ResultAt(0, Is(10)),
                AccountsAt(
                    20,
                    vec![acct(3).imported(10), acct(3).imported(11)],
                    vec![A::ImportedEventTimestampMustNotRegress, A::Created],
                ),
            ],
        ),
    ]
}

/// Row 3's events: every fault at once, then removed in the order the checks run.
fn account_faults_in_precedence_order() -> Vec<Account> {
    let mut bad = acct(0).lc(0, 0).flags(A_DC | A_CD | A_PADDING);
    bad.debits_pending = 1;
    bad.debits_posted = 1;
    bad.credits_pending = 1;
    bad.credits_posted = 1;
    bad.reserved = 1;
    bad.timestamp = 1;
    let mut no_timestamp = bad;
    no_timestamp.timestamp = 0;
    let mut no_reserved = no_timestamp;
    no_reserved.reserved = 0;
    let mut no_padding = no_reserved;
    no_padding.flags &= !A_PADDING;
    vec![bad, no_timestamp, no_reserved, no_padding]
}

/// Row 5's events: a new account with every field fault, fixed one at a time.
fn new_account_faults_removed_one_by_one() -> Vec<Account> {
    let mut account = acct(2).lc(0, 0).flags(A_DC | A_CD);
    account.debits_pending = 1;
    account.debits_posted = 1;
    account.credits_pending = 1;
    account.credits_posted = 1;
    let mut events = vec![account];
    account.flags = A_DC;
    events.push(account);
    account.debits_pending = 0;
    events.push(account);
    account.debits_posted = 0;
    events.push(account);
    account.credits_pending = 0;
    events.push(account);
    account.credits_posted = 0;
    events.push(account);
    account.ledger = 1;
    events.push(account);
    account.code = 1;
    events.push(account);
    events
}

/// Transfers: basics, validation order, overflow, limits (rows 16-28).
fn transfer_rows() -> Vec<Row> {
    let pending_1_to_3 = |amount: u128| pending(3, 1, 3, amount);
    vec![
        row(
            "row_16_single_phase_transfer_moves_balances",
            vec![
                Open(vec![1, 2]),
                Transfers(vec![tr(1, 1, 2, 15)], vec![T::Created]),
                Balances(1, [0, 15, 0, 0]),
                Balances(2, [0, 0, 0, 15]),
                TransferAt(1, result(0, 0)),
                TransferAt(1, Slot(0)),
                Check("T1 moves 15 from A1 to A2", |h| {
                    let stored = h.transfer(1).expect("T1");
                    let fields = (
                        stored.debit_account_id,
                        stored.credit_account_id,
                        stored.amount,
                    );
                    assert_eq!(fields, (1, 2, 15));
                }),
            ],
        ),
        row(
            "row_17_failed_transfer_is_not_stored",
            vec![
                Open(vec![1, 2]),
                Transfers(
                    vec![tr(1, 1, 2, 15), tr(2, 1, 2, 15).lc(0, 1)],
                    vec![T::Created, T::LedgerMustNotBeZero],
                ),
                NoTransfer(2),
                Balances(1, [0, 15, 0, 0]),
            ],
        ),
        row(
            "row_18_zero_amount_transfer_is_created",
            vec![
                Open(vec![1, 2]),
                Transfers(vec![tr(1, 1, 2, 0)], vec![T::Created]),
                Balances(1, [0; 4]),
                Balances(2, [0; 4]),
                Amount(1, 0),
            ],
        ),
        row(
            "row_19_transfer_faults_removed_one_by_one",
            vec![
                Open(vec![1, 2]),
                Transfers(
                    transfer_faults_removed_one_by_one(),
                    vec![
                        T::TimestampMustBeZero,
                        T::ReservedFlag,
                        T::IdMustNotBeZero,
                        T::IdMustNotBeIntMax,
                        T::DebitAccountIdMustNotBeZero,
                        T::DebitAccountIdMustNotBeIntMax,
                        T::CreditAccountIdMustNotBeZero,
                        T::CreditAccountIdMustNotBeIntMax,
                        T::AccountsMustBeDifferent,
                        T::PendingIdMustBeZero,
                        T::TimeoutReservedForPendingTransfer,
                        T::ClosingTransferMustBePending,
                        T::LedgerMustNotBeZero,
                        T::CodeMustNotBeZero,
                        T::DebitAccountNotFound,
                        T::IdAlreadyFailed,
                    ],
                ),
                NoTransfer(100),
            ],
        ),
        row(
            "row_20_transient_failure_burns_the_id",
            vec![
                Open(vec![1, 2]),
                Transfers(vec![tr(1, 8, 2, 1)], vec![T::DebitAccountNotFound]),
                Transfers(vec![tr(1, 1, 2, 1)], vec![T::IdAlreadyFailed]),
                Transfers(vec![tr(2, 1, 9, 1)], vec![T::CreditAccountNotFound]),
                Transfers(vec![tr(2, 1, 2, 1)], vec![T::IdAlreadyFailed]),
                NoTransfer(1),
                NoTransfer(2),
                Balances(1, [0; 4]),
            ],
        ),
        row(
            "row_21_accounts_must_have_the_same_ledger",
            vec![
                Accounts(vec![acct(1), acct(2).lc(2, 1)], vec![A::Created; 2]),
                Transfers(
                    vec![tr(1, 1, 2, 1).lc(9, 1)],
                    vec![T::AccountsMustHaveTheSameLedger],
                ),
                // Not transient: the id can be used again.
                Open(vec![3]),
                Transfers(vec![tr(1, 1, 3, 1)], vec![T::Created]),
            ],
        ),
        row(
            "row_22_transfer_must_have_the_same_ledger_as_accounts",
            vec![
                Open(vec![1, 3]),
                Transfers(
                    vec![tr(1, 1, 3, 1).lc(9, 1)],
                    vec![T::TransferMustHaveTheSameLedgerAsAccounts],
                ),
            ],
        ),
        row(
            "row_23_overflow_checks_in_order",
            vec![
                Open(vec![1, 3]),
                Setup(1, [100, 200, 0, 0]),
                Setup(3, [0, 0, 110, 210]),
                Transfers(
                    vec![
                        pending_1_to_3(MAX - 99),
                        pending_1_to_3(MAX - 109),
                        pending_1_to_3(MAX - 199),
                        pending_1_to_3(MAX - 209),
                        pending_1_to_3(MAX - 299),
                        pending_1_to_3(MAX - 319),
                    ],
                    vec![
                        T::OverflowsDebitsPending,
                        T::OverflowsCreditsPending,
                        T::OverflowsDebitsPosted,
                        T::OverflowsCreditsPosted,
                        T::OverflowsDebits,
                        T::OverflowsCredits,
                    ],
                ),
                Balances(1, [100, 200, 0, 0]),
                Balances(3, [0, 0, 110, 210]),
                // Overflows are not transient: T3 is still usable.
                Transfers(vec![pending_1_to_3(1)], vec![T::Created]),
            ],
        ),
        row(
            "row_24_timeout_overflow_near_timestamp_max",
            vec![
                Open(vec![1, 2]),
                TransfersAt(
                    TS_MAX - 3 * SECOND,
                    vec![
                        pending(1, 1, 2, 1).timeout(999),
                        pending(2, 1, 2, 1).timeout(2),
                    ],
                    vec![T::OverflowsTimeout, T::Created],
                ),
                Balances(1, [1, 0, 0, 0]),
            ],
        ),
        row(
            "row_25_limits_exceeded_and_ids_burned",
            vec![
                Accounts(
                    vec![acct(4).flags(A_DC), acct(5).flags(A_CD)],
                    vec![A::Created; 2],
                ),
                Setup(4, [20, MAX - 700, 0, MAX - 500]),
                Setup(5, [0, MAX - 1000, 10, MAX - 1100]),
                Transfers(vec![tr(3, 4, 5, 199)], vec![T::ExceedsCredits]),
                Transfers(vec![tr(3, 4, 5, 1)], vec![T::IdAlreadyFailed]),
                Transfers(vec![tr(4, 4, 5, 91)], vec![T::ExceedsDebits]),
                Transfers(vec![tr(4, 4, 5, 1)], vec![T::IdAlreadyFailed]),
                Balances(4, [20, MAX - 700, 0, MAX - 500]),
                Balances(5, [0, MAX - 1000, 10, MAX - 1100]),
                // One less fits exactly on both sides.
                Transfers(vec![tr(6, 4, 5, 90)], vec![T::Created]),
            ],
        ),
        row(
            "row_26_posted_debits_overflow",
            vec![
                Open(vec![2, 3]),
                Transfers(vec![tr(1, 2, 3, MAX)], vec![T::Created]),
                Transfers(vec![tr(2, 2, 3, 1)], vec![T::OverflowsDebitsPosted]),
                Balances(2, [0, MAX, 0, 0]),
                Balances(3, [0, 0, 0, MAX]),
            ],
        ),
        row(
            "row_27_overflows_debits_precedes_overflows_credits",
            vec![
                Open(vec![2, 3]),
                Transfers(vec![pending(1, 3, 2, 1)], vec![T::Created]),
                Transfers(vec![tr(2, 3, 2, MAX)], vec![T::OverflowsDebits]),
            ],
        ),
        row(
            "row_28_pending_debits_count_against_the_limit",
            vec![
                Accounts(vec![acct(1).flags(A_DC), acct(2)], vec![A::Created; 2]),
                Setup(1, [0, 0, 0, 10]),
                Transfers(
                    vec![
                        tr(1, 1, 2, 0),
                        pending(2, 1, 2, 6),
                        tr(3, 1, 2, 5),
                        tr(4, 1, 2, 4),
                        void(5, 2, 0),
                        tr(6, 1, 2, 6),
                        tr(7, 1, 2, 1),
                    ],
                    vec![
                        T::Created,
                        T::Created,
                        T::ExceedsCredits,
                        T::Created,
                        T::Created,
                        T::Created,
                        T::ExceedsCredits,
                    ],
                ),
                Balances(1, [0, 10, 0, 10]),
            ],
        ),
    ]
}

/// Row 19's events: a transfer with every fault, fixed one at a time in check order, then a
/// valid transfer whose id the transient failure before it burned.
fn transfer_faults_removed_one_by_one() -> Vec<Transfer> {
    let mut transfer = Transfer {
        pending_id: 1,
        flags: PEN | T_PADDING,
        timestamp: 1,
        ..tr(0, 0, 0, 9).lc(0, 0)
    };
    let mut events = vec![transfer];
    transfer.timestamp = 0;
    events.push(transfer);
    transfer.flags = PEN;
    events.push(transfer);
    transfer.id = MAX;
    events.push(transfer);
    transfer.id = 100;
    events.push(transfer);
    transfer.debit_account_id = MAX;
    events.push(transfer);
    transfer.debit_account_id = 8;
    events.push(transfer);
    transfer.credit_account_id = MAX;
    events.push(transfer);
    transfer.credit_account_id = 8;
    events.push(transfer);
    transfer.credit_account_id = 9;
    events.push(transfer);
    transfer.pending_id = 0;
    transfer.flags = 0;
    transfer.timeout = 1;
    events.push(transfer);
    transfer.timeout = 0;
    transfer.flags = CDR;
    events.push(transfer);
    transfer.flags = PEN;
    events.push(transfer);
    transfer.ledger = 9;
    events.push(transfer);
    transfer.code = 1;
    events.push(transfer);
    events.push(tr(100, 1, 2, 1));
    events
}

/// Transfer idempotency and linked chains (rows 29-35).
fn chain_rows() -> Vec<Row> {
    let t5 = pending(5, 1, 3, 123).timeout(1);
    let swapped = Transfer {
        debit_account_id: 3,
        credit_account_id: 1,
        ..t5
    };
    let t1 = tr(1, 1, 2, 5);
    let chain = vec![tr(1, 1, 2, 1).flags(LNK), tr(2, 1, 2, 2)];
    vec![
        row(
            "row_29_transfer_exists_with_different_fields",
            vec![
                Open(vec![1, 3, 4]),
                Transfers(vec![t5], vec![T::Created]),
                Transfers(
                    vec![
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
                        // Precedence: flags before everything; debit id before amount, user
                        // data, code.
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
                    vec![
                        T::ExistsWithDifferentLedger,
                        T::ExistsWithDifferentFlags,
                        T::ExistsWithDifferentDebitAccountId,
                        T::ExistsWithDifferentCreditAccountId,
                        T::ExistsWithDifferentAmount,
                        T::ExistsWithDifferentUserData128,
                        T::ExistsWithDifferentUserData64,
                        T::ExistsWithDifferentUserData32,
                        T::ExistsWithDifferentTimeout,
                        T::ExistsWithDifferentCode,
                        T::ExistsWithDifferentFlags,
                        T::ExistsWithDifferentDebitAccountId,
                        T::ExistsWithDifferentAmount,
                        T::Exists,
                    ],
                ),
                ResultAt(13, result(0, 0)),
                Balances(1, [123, 0, 0, 0]),
            ],
        ),
        row(
            "row_30_same_id_within_one_batch",
            vec![
                Open(vec![1, 2]),
                Transfers(
                    vec![
                        t1,
                        t1,
                        Transfer { amount: 6, ..t1 },
                        tr(1, 2, 1, 5),
                        t1.flags(PEN),
                        t1.flags(T_PADDING),
                    ],
                    vec![
                        T::Created,
                        T::Exists,
                        T::ExistsWithDifferentAmount,
                        T::ExistsWithDifferentDebitAccountId,
                        T::ExistsWithDifferentFlags,
                        T::ReservedFlag,
                    ],
                ),
                ResultAt(1, result(0, 0)),
                Balances(1, [0, 5, 0, 0]),
            ],
        ),
        row(
            "row_31_resent_committed_chain_reports_exists_then_failed",
            vec![
                Open(vec![1, 2]),
                Transfers(chain.clone(), vec![T::Created; 2]),
                Transfers(chain.clone(), vec![T::Exists, T::LinkedEventFailed]),
                ResultAt(0, result(0, 0)),
                ResultAt(1, Slot(1)),
                Transfers(chain[1..].to_vec(), vec![T::Exists]),
                ResultAt(0, result(0, 1)),
                Balances(1, [0, 3, 0, 0]),
            ],
        ),
        row(
            "row_32_exists_inside_chain_refers_to_rolled_back_transfer",
            vec![
                Open(vec![1, 2]),
                Transfers(
                    vec![
                        tr(1, 1, 2, 1).flags(LNK),
                        tr(1, 1, 2, 1).flags(LNK),
                        tr(9, 1, 2, 1),
                        tr(1, 1, 2, 1),
                    ],
                    vec![
                        T::LinkedEventFailed,
                        T::Exists,
                        T::LinkedEventFailed,
                        T::Created,
                    ],
                ),
                // The would-be timestamp; `exists` names the rolled-back T1; after the failure,
                // each event has its own slot.
                ResultAt(0, Slot(0)),
                ResultAt(1, Slot(0)),
                ResultAt(2, Slot(2)),
                ResultAt(3, Slot(3)),
                TransferAt(1, Slot(3)),
                NoTransfer(9),
                Balances(1, [0, 1, 0, 0]),
            ],
        ),
        row(
            "row_33_failed_chain_is_undone_within_the_batch",
            vec![
                Accounts(vec![acct(1).flags(A_DC), acct(2)], vec![A::Created; 2]),
                Setup(1, [0, 0, 0, 20]),
                Transfers(
                    vec![
                        tr(1, 1, 2, 15).flags(LNK),
                        tr(2, 1, 2, 5).lc(0, 1),
                        tr(3, 1, 2, 15),
                    ],
                    vec![T::LinkedEventFailed, T::LedgerMustNotBeZero, T::Created],
                ),
                Balances(1, [0, 15, 0, 20]),
                Balances(2, [0, 0, 0, 15]),
                NoTransfer(1),
                NoTransfer(2),
                HasTransfer(3),
            ],
        ),
        row(
            "row_34_pending_created_in_failed_chain_is_gone",
            vec![
                Open(vec![1, 2]),
                Transfers(
                    vec![
                        pending(2, 1, 2, 5).flags(LNK),
                        post(3, 2, MAX).flags(LNK),
                        tr(4, 1, 2, 1).lc(0, 1),
                    ],
                    vec![
                        T::LinkedEventFailed,
                        T::LinkedEventFailed,
                        T::LedgerMustNotBeZero,
                    ],
                ),
                Balances(1, [0; 4]),
                NoTransfer(2),
                NoTransfer(3),
                Transfers(vec![post(5, 2, MAX)], vec![T::PendingTransferNotFound]),
            ],
        ),
        row(
            "row_35_per_transfer_invariant_chain_and_burned_ids",
            vec![
                Accounts(
                    vec![acct(1), acct(2), acct(3).flags(A_CD)],
                    vec![A::Created; 3],
                ),
                Setup(2, [0, 40, 0, 0]),
                Transfers(
                    vec![
                        tr(1, 1, 2, 41).flags(LNK),
                        pending(2, 2, 3, 1).flags(LNK | BDR),
                        Transfer {
                            pending_id: 2,
                            flags: VOI,
                            ..tr(3, 2, 3, 0)
                        },
                    ],
                    vec![T::LinkedEventFailed, T::ExceedsDebits, T::LinkedEventFailed],
                ),
                // Chain members that did not fail may be reused; the failing transient id is
                // burned.
                Transfers(
                    vec![tr(1, 1, 2, 0), tr(2, 2, 3, 0), tr(3, 2, 3, 0)],
                    vec![T::Created, T::IdAlreadyFailed, T::Created],
                ),
                Transfers(
                    vec![
                        tr(4, 1, 2, 40).flags(LNK),
                        pending(5, 2, 3, 1).flags(LNK | BDR),
                        Transfer {
                            pending_id: 5,
                            flags: VOI,
                            ..tr(6, 2, 3, 0)
                        },
                    ],
                    vec![T::Created; 3],
                ),
                Amount(5, 0),
                Balances(1, [0, 40, 0, 0]),
                Balances(2, [0, 40, 0, 40]),
                Balances(3, [0; 4]),
            ],
        ),
    ]
}

/// Two-phase transfers (rows 36-51).
fn two_phase_rows() -> Vec<Row> {
    let t101 = Transfer {
        pending_id: 2,
        flags: POS,
        ..tr(101, 1, 2, 13).ud(1, 1, 1)
    };
    let void_of_3 = |debit: u128, credit: u128, ledger: u32, code: u16| Transfer {
        pending_id: 3,
        flags: VOI,
        ..tr(103, debit, credit, 0).lc(ledger, code)
    };
    let exclusive_flags = [
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
    vec![
        row(
            "row_36_partial_post_returns_the_rest",
            vec![
                Open(vec![1, 2]),
                Transfers(vec![pending(2, 1, 2, 15).timeout(1000)], vec![T::Created]),
                Balances(1, [15, 0, 0, 0]),
                Transfers(vec![post(101, 2, 13)], vec![T::Created]),
                Amount(101, 13),
                Balances(1, [0, 13, 0, 0]),
                Balances(2, [0, 0, 0, 13]),
                Check("T101 inherits accounts, ledger and code; no timeout", |h| {
                    let stored = h.transfer(101).expect("T101");
                    let accounts = (stored.debit_account_id, stored.credit_account_id);
                    assert_eq!(accounts, (1, 2));
                    let fields = (stored.ledger, stored.code, stored.timeout, stored.flags);
                    assert_eq!(fields, (1, 1, 0, POS));
                }),
            ],
        ),
        row(
            "row_37_post_amount_max_means_full_amount",
            vec![
                Open(vec![1, 2]),
                Transfers(vec![pending(5, 1, 2, 7)], vec![T::Created]),
                Transfers(vec![post(105, 5, MAX)], vec![T::Created]),
                Amount(105, 7),
                Transfers(
                    vec![
                        post(105, 5, 7).lc(1, 1),
                        post(105, 5, 7),
                        post(105, 5, MAX).lc(1, 1),
                        post(105, 5, 8),
                        post(105, 5, 6),
                        post(105, 5, 0).lc(1, 1),
                    ],
                    vec![
                        T::Exists,
                        T::Exists,
                        T::Exists,
                        T::ExistsWithDifferentAmount,
                        T::ExistsWithDifferentAmount,
                        T::ExistsWithDifferentAmount,
                    ],
                ),
                ResultAt(0, result(1, 0)),
                Balances(1, [0, 7, 0, 0]),
            ],
        ),
        row(
            "row_38_post_amount_zero_releases_everything",
            vec![
                Open(vec![1, 2]),
                Transfers(vec![pending(7, 1, 2, 1)], vec![T::Created]),
                Transfers(vec![post(107, 7, 0)], vec![T::Created]),
                Amount(107, 0),
                Balances(1, [0; 4]),
                Balances(2, [0; 4]),
                Transfers(
                    vec![post(107, 7, 0), post(107, 7, 1)],
                    vec![T::Exists, T::ExistsWithDifferentAmount],
                ),
            ],
        ),
        row(
            "row_39_post_more_than_pending_does_not_burn_the_id",
            vec![
                Open(vec![1, 2]),
                Transfers(vec![pending(5, 1, 2, 7)], vec![T::Created]),
                Transfers(vec![post(105, 5, 8)], vec![T::ExceedsPendingTransferAmount]),
                NoTransfer(105),
                Transfers(vec![post(105, 5, MAX)], vec![T::Created]),
                Amount(105, 7),
            ],
        ),
        row(
            "row_40_void_amount_must_be_zero_or_full",
            vec![
                Open(vec![1, 2]),
                Transfers(vec![pending(3, 1, 2, 15)], vec![T::Created]),
                Transfers(
                    vec![void(103, 3, 16), void(103, 3, 14), void(103, 3, 15)],
                    vec![
                        T::ExceedsPendingTransferAmount,
                        T::PendingTransferHasDifferentAmount,
                        T::Created,
                    ],
                ),
                Amount(103, 15),
                Balances(1, [0; 4]),
                Balances(2, [0; 4]),
            ],
        ),
        row(
            "row_41_void_with_explicit_full_amount",
            vec![
                Open(vec![1, 2]),
                Transfers(vec![pending(1, 1, 2, 10)], vec![T::Created]),
                Transfers(vec![void(2, 1, 10)], vec![T::Created]),
                Balances(1, [0; 4]),
                Balances(2, [0; 4]),
            ],
        ),
        row(
            "row_42_pending_resolves_at_most_once",
            vec![
                Open(vec![1, 2]),
                Transfers(
                    vec![pending(2, 1, 2, 15), pending(3, 1, 2, 15)],
                    vec![T::Created; 2],
                ),
                Transfers(
                    vec![post(101, 2, MAX), void(102, 3, 0)],
                    vec![T::Created; 2],
                ),
                Transfers(
                    vec![post(103, 2, MAX), post(104, 3, MAX), void(105, 2, 0)],
                    vec![
                        T::PendingTransferAlreadyPosted,
                        T::PendingTransferAlreadyVoided,
                        T::PendingTransferAlreadyPosted,
                    ],
                ),
                Balances(1, [0, 15, 0, 0]),
            ],
        ),
        row(
            "row_43_void_of_single_phase_transfer",
            vec![
                Open(vec![1, 2]),
                Transfers(vec![tr(1, 1, 2, 5)], vec![T::Created]),
                Transfers(vec![void(2, 1, 0)], vec![T::PendingTransferNotPending]),
                // Not transient: the id is still usable.
                Transfers(vec![tr(2, 1, 2, 1)], vec![T::Created]),
            ],
        ),
        row(
            "row_44_void_of_unknown_pending_burns_the_id",
            vec![
                Open(vec![1, 2]),
                Transfers(vec![void(102, 103, 0)], vec![T::PendingTransferNotFound]),
                Transfers(vec![tr(102, 1, 2, 13)], vec![T::IdAlreadyFailed]),
                NoTransfer(102),
            ],
        ),
        row(
            "row_45_void_fields_must_match_the_pending_transfer",
            vec![
                Open(vec![1, 2]),
                Transfers(vec![pending(3, 1, 2, 15)], vec![T::Created]),
                Transfers(
                    vec![
                        void_of_3(8, 9, 6, 7),
                        void_of_3(1, 9, 6, 7),
                        void_of_3(1, 2, 6, 7),
                        void_of_3(1, 2, 1, 7),
                        void_of_3(1, 2, 1, 1),
                    ],
                    vec![
                        T::PendingTransferHasDifferentDebitAccountId,
                        T::PendingTransferHasDifferentCreditAccountId,
                        T::PendingTransferHasDifferentLedger,
                        T::PendingTransferHasDifferentCode,
                        T::Created,
                    ],
                ),
            ],
        ),
        row(
            "row_46_post_void_flag_combinations_are_exclusive",
            vec![
                Open(vec![1, 2]),
                Transfers(
                    exclusive_flags
                        .iter()
                        .map(|flags| Transfer {
                            flags: *flags,
                            ..tr(102, 8, 9, 16)
                        })
                        .collect(),
                    vec![T::FlagsAreMutuallyExclusive; exclusive_flags.len()],
                ),
            ],
        ),
        row(
            "row_47_post_void_pending_id_and_timeout_checks",
            vec![
                Open(vec![1, 2]),
                Transfers(
                    vec![
                        void(102, 0, 16),
                        void(102, MAX, 16),
                        void(102, 102, 16),
                        void(102, 103, 16).timeout(50),
                    ],
                    vec![
                        T::PendingIdMustNotBeZero,
                        T::PendingIdMustNotBeIntMax,
                        T::PendingIdMustBeDifferent,
                        T::TimeoutReservedForPendingTransfer,
                    ],
                ),
            ],
        ),
        row(
            "row_48_post_void_idempotency_with_inherited_fields",
            vec![
                Open(vec![1, 2]),
                Transfers(
                    vec![pending(2, 1, 2, 15), pending(3, 1, 2, 15).ud(9, 9, 9)],
                    vec![T::Created; 2],
                ),
                Transfers(vec![t101, void(102, 3, 0)], vec![T::Created; 2]),
                Transfers(
                    vec![
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
                    vec![
                        T::Exists,
                        T::ExistsWithDifferentAmount,
                        T::ExistsWithDifferentAmount,
                        T::ExistsWithDifferentPendingId,
                        T::ExistsWithDifferentUserData128,
                        T::Exists,
                        T::ExistsWithDifferentUserData128,
                    ],
                ),
                Check("T101 keeps its user data", |h| {
                    let t101 = h.transfer(101).expect("T101");
                    let user_data = (t101.user_data_128, t101.user_data_64, t101.user_data_32);
                    assert_eq!(user_data, (1, 1, 1));
                }),
                Check("T102 inherits all but the amount from T3", |h| {
                    let t102 = h.transfer(102).expect("T102");
                    let user_data = (t102.user_data_128, t102.user_data_64, t102.user_data_32);
                    assert_eq!(user_data, (9, 9, 9));
                    let moved = (t102.debit_account_id, t102.credit_account_id, t102.amount);
                    assert_eq!(moved, (1, 2, 15));
                    assert_eq!((t102.ledger, t102.code, t102.timeout), (1, 1, 0));
                }),
            ],
        ),
        row(
            "row_49_pending_transfers_expire_by_timeout",
            vec![
                Open(vec![1, 2]),
                Transfers(
                    vec![
                        pending(1, 1, 2, 10),
                        pending(2, 1, 2, 11).timeout(1),
                        pending(3, 1, 2, 12).timeout(2),
                        pending(4, 1, 2, 13).timeout(3),
                    ],
                    vec![T::Created; 4],
                ),
                Balances(1, [46, 0, 0, 0]),
                Tick(1, 1),
                Balances(1, [35, 0, 0, 0]),
                Balances(2, [0, 0, 35, 0]),
                Tick(1, 1),
                Balances(1, [23, 0, 0, 0]),
                Tick(1, 1),
                Balances(1, [10, 0, 0, 0]),
                Transfers(
                    vec![
                        post(101, 1, 10),
                        post(102, 2, 11),
                        post(103, 3, 12),
                        post(104, 4, 13),
                    ],
                    vec![
                        T::Created,
                        T::PendingTransferExpired,
                        T::PendingTransferExpired,
                        T::PendingTransferExpired,
                    ],
                ),
                Balances(1, [0, 10, 0, 0]),
                Balances(2, [0, 0, 0, 10]),
                NoTransfer(102),
                NoTransfer(103),
                NoTransfer(104),
                // The expired pending transfers themselves stay visible.
                HasTransfer(2),
                HasTransfer(3),
                HasTransfer(4),
            ],
        ),
        row(
            "row_50_expiry_writes_no_transfer_and_no_balance_row",
            vec![
                Accounts(
                    vec![acct(1).flags(A_HIST), acct(2).flags(A_HIST)],
                    vec![A::Created; 2],
                ),
                Transfers(
                    vec![pending(1, 1, 2, 5).timeout(1), tr(2, 1, 2, 3)],
                    vec![T::Created; 2],
                ),
                Tick(1, 1),
                Check("A1's balance rows are those of T1 and T2 only", |h| {
                    let rows = h.account_balances(&account_filter(1));
                    let got: Vec<(u64, [u128; 4])> = rows
                        .iter()
                        .map(|row| {
                            let balances = [
                                row.debits_pending,
                                row.debits_posted,
                                row.credits_pending,
                                row.credits_posted,
                            ];
                            (row.timestamp, balances)
                        })
                        .collect();
                    let expected = vec![
                        (transfer_timestamp(h, 1), [5, 0, 0, 0]),
                        (transfer_timestamp(h, 2), [5, 3, 0, 0]),
                    ];
                    assert_eq!(got, expected);
                }),
                AccountTransfers("A1", |_, _| {}, vec![1, 2]),
                Balances(1, [0, 3, 0, 0]),
                HasTransfer(1),
            ],
        ),
        row(
            "row_51_pending_and_post_in_the_same_batch",
            vec![
                Open(vec![1, 2]),
                Transfers(
                    vec![pending(1, 1, 2, 10).timeout(1), post(2, 1, MAX)],
                    vec![T::Created; 2],
                ),
                Amount(2, 10),
                Balances(1, [0, 10, 0, 0]),
            ],
        ),
    ]
}

/// Row 52's and 53's start: A1 (debits must not exceed credits), A2 (credits must not exceed
/// debits) and A3 with balances, then six balancing transfers.
fn balancing_start() -> Vec<Step> {
    vec![
        Accounts(
            vec![acct(1).flags(A_DC), acct(2).flags(A_CD), acct(3)],
            vec![A::Created; 3],
        ),
        Setup(1, [1, 0, 0, 10]),
        Setup(2, [0, 10, 2, 0]),
        Transfers(
            vec![
                tr(1, 1, 3, 3).flags(BDR),
                tr(2, 1, 3, 13).flags(BDR),
                tr(3, 1, 3, 1).flags(BDR),
                tr(4, 3, 2, 3).flags(BCR),
                tr(5, 3, 2, 13).flags(BCR),
                tr(6, 3, 2, 1).flags(BCR),
            ],
            vec![T::Created; 6],
        ),
    ]
}

/// The multi-debit recipe's start: sources A1-A3 (debits must not exceed credits), control A4,
/// limit A5 (debits must not exceed credits), destination A6. `third` is A3's credit balance.
fn multi_debit_start(third: u128) -> Vec<Step> {
    vec![
        Accounts(
            vec![
                acct(1).flags(A_DC),
                acct(2).flags(A_DC),
                acct(3).flags(A_DC),
                acct(4),
                acct(5).flags(A_DC),
                acct(6),
            ],
            vec![A::Created; 6],
        ),
        Setup(1, [0, 0, 0, 40]),
        Setup(2, [0, 0, 0, 40]),
        Setup(3, [0, 0, 0, third]),
    ]
}

/// The multi-debit recipe's chain: collect up to 100 from A1-A3 into A4, pay A6, and let A5's
/// balancing credit check that the sources covered the whole amount.
fn multi_debit_chain() -> Vec<Transfer> {
    vec![
        tr(1, 4, 5, 100).flags(LNK),
        tr(2, 1, 4, 100).flags(LNK | BDR | BCR),
        tr(3, 2, 4, 100).flags(LNK | BDR | BCR),
        tr(4, 3, 4, 100).flags(LNK | BDR | BCR),
        tr(5, 4, 6, 100).flags(LNK),
        tr(6, 5, 4, MAX).flags(BCR),
    ]
}

/// Balancing transfers (rows 52-59).
fn balancing_rows() -> Vec<Row> {
    let then = |start: Vec<Step>, steps: Vec<Step>| [start, steps].concat();
    vec![
        row(
            "row_52_balancing_clamps_to_the_available_balance",
            then(
                balancing_start(),
                vec![
                    Amount(1, 3),
                    Amount(2, 6),
                    Amount(3, 0),
                    Amount(4, 3),
                    Amount(5, 5),
                    Amount(6, 0),
                    Balances(1, [1, 9, 0, 10]),
                    Balances(2, [0, 10, 2, 8]),
                    Balances(3, [0, 8, 0, 9]),
                ],
            ),
        ),
        row(
            "row_53_balancing_resend_amount_is_an_upper_bound",
            then(
                balancing_start(),
                vec![Transfers(
                    vec![
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
                    vec![
                        T::ExistsWithDifferentAmount,
                        T::ExistsWithDifferentAmount,
                        T::Exists,
                        T::Exists,
                        T::Exists,
                        T::ExistsWithDifferentAmount,
                        T::ExistsWithDifferentAmount,
                        T::Exists,
                        T::Exists,
                        T::ExistsWithDifferentAmount,
                    ],
                )],
            ),
        ),
        row(
            "row_54_balancing_with_zero_amounts",
            vec![
                Accounts(
                    vec![
                        acct(1).flags(A_DC),
                        acct(2).flags(A_CD),
                        acct(3).flags(A_CD),
                        acct(4),
                    ],
                    vec![A::Created; 4],
                ),
                Setup(1, [1, 0, 0, 10]),
                Setup(2, [0, 10, 2, 0]),
                Setup(3, [0, 10, 2, 0]),
                Transfers(
                    vec![
                        tr(1, 1, 4, 0).flags(BDR),
                        tr(2, 4, 2, 0).flags(BCR),
                        tr(3, 1, 4, 0).flags(BDR | BCR),
                        pending(4, 4, 3, 0).flags(BCR),
                        // A4 has no limit flag, but its net balance is zero, so the clamp
                        // gives zero.
                        tr(5, 4, 1, 1).flags(BDR),
                        tr(6, 2, 4, 1).flags(BCR),
                    ],
                    vec![T::Created; 6],
                ),
                Amount(1, 0),
                Amount(2, 0),
                Amount(3, 0),
                Amount(4, 0),
                Amount(5, 0),
                Amount(6, 0),
                Balances(1, [1, 0, 0, 10]),
                Balances(2, [0, 10, 2, 0]),
                Balances(3, [0, 10, 2, 0]),
                Balances(4, [0; 4]),
            ],
        ),
        row(
            "row_55_balancing_amount_max_with_balance_near_max",
            vec![
                Accounts(
                    vec![
                        acct(1).flags(A_DC),
                        acct(2).flags(A_DC),
                        acct(3).flags(A_CD),
                        acct(4).flags(A_CD),
                    ],
                    vec![A::Created; 4],
                ),
                Setup(1, [0, 0, 0, MAX - 1]),
                Setup(4, [0, MAX - 1, 0, 0]),
                Transfers(
                    vec![tr(1, 1, 2, MAX).flags(BDR), tr(2, 3, 4, MAX).flags(BCR)],
                    vec![T::Created; 2],
                ),
                Amount(1, MAX - 1),
                Amount(2, MAX - 1),
                Balances(1, [0, MAX - 1, 0, MAX - 1]),
                Balances(2, [0, 0, 0, MAX - 1]),
                Balances(3, [0, MAX - 1, 0, 0]),
                Balances(4, [0, MAX - 1, 0, MAX - 1]),
            ],
        ),
        row(
            "row_56_balancing_debit_and_credit_together",
            vec![
                Accounts(
                    vec![acct(1).flags(A_DC), acct(2).flags(A_CD), acct(3)],
                    vec![A::Created; 3],
                ),
                Setup(1, [0, 0, 0, 20]),
                Setup(2, [0, 10, 0, 0]),
                Setup(3, [0, 99, 0, 0]),
                Transfers(
                    vec![
                        tr(1, 1, 2, 1).flags(BDR | BCR),
                        tr(2, 1, 2, 12).flags(BDR | BCR),
                        tr(3, 1, 2, 1).flags(BDR | BCR),
                        tr(4, 1, 3, 12).flags(BDR | BCR),
                        tr(5, 1, 3, 1).flags(BDR | BCR),
                    ],
                    vec![T::Created; 5],
                ),
                Amount(1, 1),
                Amount(2, 9),
                Amount(3, 0),
                Amount(4, 10),
                Amount(5, 0),
                Balances(1, [0, 20, 0, 20]),
                Balances(2, [0, 10, 0, 10]),
                Balances(3, [0, 99, 0, 10]),
            ],
        ),
        row(
            "row_57_balancing_credit_counts_pending_credits",
            vec![
                Accounts(vec![acct(1), acct(2).flags(A_CD)], vec![A::Created; 2]),
                Setup(2, [0, 10, 0, 0]),
                Transfers(
                    vec![
                        pending(1, 1, 2, 7).flags(BCR),
                        tr(2, 1, 2, 7).flags(BCR),
                        tr(3, 1, 2, 7).flags(BCR),
                        tr(4, 1, 2, 1),
                    ],
                    vec![T::Created, T::Created, T::Created, T::ExceedsDebits],
                ),
                Amount(1, 7),
                Amount(2, 3),
                Amount(3, 0),
                Balances(2, [0, 10, 7, 3]),
            ],
        ),
        row(
            "row_58_balancing_clamps_only_its_own_side",
            vec![
                Accounts(vec![acct(1).flags(A_DC), acct(2)], vec![A::Created; 2]),
                Setup(1, [0, 0, 0, 4]),
                Setup(2, [0, 5, 0, 0]),
                Transfers(
                    vec![tr(1, 1, 2, 10).flags(BCR), tr(2, 1, 2, 10).flags(BDR)],
                    vec![T::ExceedsCredits, T::Created],
                ),
                NoTransfer(1),
                Amount(2, 4),
                Balances(1, [0, 4, 0, 4]),
                Balances(2, [0, 5, 0, 4]),
            ],
        ),
        row(
            "row_59_multi_debit_recipe_chain",
            then(
                multi_debit_start(21),
                vec![
                    Transfers(multi_debit_chain(), vec![T::Created; 6]),
                    Balances(1, [0, 40, 0, 40]),
                    Balances(2, [0, 40, 0, 40]),
                    Balances(3, [0, 20, 0, 21]),
                    Balances(4, [0, 200, 0, 200]),
                    Balances(5, [0, 100, 0, 100]),
                    Balances(6, [0, 0, 0, 100]),
                ],
            ),
        ),
        row(
            "row_59_multi_debit_recipe_chain_fails_as_a_whole",
            then(
                multi_debit_start(19),
                vec![
                    Transfers(
                        multi_debit_chain(),
                        vec![
                            T::LinkedEventFailed,
                            T::LinkedEventFailed,
                            T::LinkedEventFailed,
                            T::LinkedEventFailed,
                            T::LinkedEventFailed,
                            T::ExceedsCredits,
                        ],
                    ),
                    Balances(4, [0; 4]),
                    Balances(6, [0; 4]),
                ],
            ),
        ),
    ]
}

/// Closing accounts (rows 60-64).
fn closing_rows() -> Vec<Row> {
    vec![
        row(
            "row_60_closing_requires_pending",
            vec![
                Open(vec![1, 2]),
                Transfers(
                    vec![
                        tr(2, 1, 2, 0).flags(CDR),
                        tr(2, 1, 2, 0).flags(CCR),
                        tr(2, 1, 2, 0).flags(CDR | CCR),
                    ],
                    vec![T::ClosingTransferMustBePending; 3],
                ),
                Transfers(vec![pending(2, 1, 2, 0).flags(CDR | CCR)], vec![T::Created]),
                Closed(1, true),
                Closed(2, true),
            ],
        ),
        row(
            "row_61_closing_debit_then_void_reopens",
            vec![
                Open(vec![1, 2]),
                Transfers(vec![tr(1, 1, 2, 15)], vec![T::Created]),
                Transfers(vec![pending(2, 1, 2, 0).flags(CDR)], vec![T::Created]),
                Closed(1, true),
                Transfers(
                    vec![
                        pending(2, 1, 2, 0).flags(CDR),
                        tr(3, 1, 2, 5),
                        tr(3, 1, 2, 5),
                        tr(4, 2, 1, 5),
                        tr(4, 1, 2, 5),
                    ],
                    vec![
                        T::Exists,
                        T::DebitAccountAlreadyClosed,
                        T::IdAlreadyFailed,
                        T::CreditAccountAlreadyClosed,
                        T::IdAlreadyFailed,
                    ],
                ),
                Balances(1, [0, 15, 0, 0]),
                Closed(1, true),
                Transfers(
                    vec![post(5, 2, 0), void(5, 2, 0)],
                    vec![T::DebitAccountAlreadyClosed, T::IdAlreadyFailed],
                ),
                Transfers(
                    vec![void(6, 2, 0), void(6, 2, 0), tr(7, 1, 2, 5)],
                    vec![T::Created, T::Exists, T::Created],
                ),
                Closed(1, false),
                Balances(1, [0, 20, 0, 0]),
                Balances(2, [0, 0, 0, 20]),
            ],
        ),
        row(
            "row_62_closing_credit_with_timeout_expires_and_reopens",
            vec![
                Open(vec![1, 2]),
                Transfers(
                    vec![
                        pending(8, 1, 2, 10).timeout(1),
                        pending(9, 1, 2, 10),
                        pending(10, 1, 2, 0).timeout(2).flags(CCR),
                    ],
                    vec![T::Created; 3],
                ),
                Closed(2, true),
                Transfers(
                    vec![
                        post(11, 9, 10),
                        void(11, 9, 10),
                        void(12, 9, 10),
                        void(12, 9, 10),
                    ],
                    vec![
                        T::CreditAccountAlreadyClosed,
                        T::IdAlreadyFailed,
                        T::Created,
                        T::Exists,
                    ],
                ),
                Balances(1, [10, 0, 0, 0]),
                Balances(2, [0, 0, 10, 0]),
                Closed(2, true),
                // Pending transfers on a closed account still expire.
                Tick(1, 1),
                Balances(1, [0; 4]),
                Balances(2, [0; 4]),
                Closed(2, true),
                // The closing transfer's own expiry reopens the account.
                Tick(1, 1),
                Closed(2, false),
                Transfers(vec![tr(13, 1, 2, 1)], vec![T::Created]),
            ],
        ),
        row(
            "row_63_closed_account_cannot_be_closed_again",
            vec![
                Open(vec![1, 2, 3]),
                Transfers(
                    vec![pending(13, 1, 2, 0).flags(CDR | CCR)],
                    vec![T::Created],
                ),
                Transfers(
                    vec![
                        pending(16, 1, 3, 0).flags(CDR),
                        pending(16, 1, 3, 0).flags(CDR),
                        pending(17, 3, 2, 0).flags(CCR),
                        pending(17, 3, 2, 0).flags(CCR),
                    ],
                    vec![
                        T::DebitAccountAlreadyClosed,
                        T::IdAlreadyFailed,
                        T::CreditAccountAlreadyClosed,
                        T::IdAlreadyFailed,
                    ],
                ),
                Closed(3, false),
            ],
        ),
        row(
            "row_64_closed_check_precedes_limit_check",
            vec![
                Accounts(vec![acct(1).flags(A_DC), acct(2)], vec![A::Created; 2]),
                Transfers(vec![pending(1, 1, 2, 0).flags(CDR)], vec![T::Created]),
                Transfers(
                    vec![
                        tr(2, 1, 2, 5),
                        post(3, 1, 0),
                        void(4, 1, 0),
                        tr(5, 1, 2, 5),
                        tr(6, 1, 2, 0),
                    ],
                    vec![
                        T::DebitAccountAlreadyClosed,
                        T::DebitAccountAlreadyClosed,
                        T::Created,
                        T::ExceedsCredits,
                        T::Created,
                    ],
                ),
                Closed(1, false),
                Balances(1, [0; 4]),
            ],
        ),
    ]
}

/// Imported transfers (rows 65-67).
fn imported_transfer_rows() -> Vec<Row> {
    let row_65 = |id: u128, debit: u128, credit: u128, timestamp: u64| {
        tr(id, debit, credit, 3).lc(1, 2).imported(timestamp)
    };
    let row_67 = |id: u128, timestamp: u64| tr(id, 1, 2, 3).lc(1, 2).imported(timestamp);
    vec![
        row(
            "row_65_imported_transfer_timestamp_rules",
            vec![
                AccountsAt(
                    10,
                    vec![
                        acct(1).imported(2),
                        acct(2).imported(3),
                        acct(3).imported(9),
                    ],
                    vec![A::Created; 3],
                ),
                TransfersAt(
                    30,
                    vec![
                        row_65(1, 1, 2, 2),
                        row_65(1, 1, 2, 3),
                        row_65(1, 3, 2, 4),
                        row_65(1, 1, 3, 4),
                        row_65(1, 1, 2, 4),
                        row_65(2, 1, 2, 3),
                        row_65(2, 1, 2, 5),
                    ],
                    vec![
                        T::ImportedEventTimestampMustNotRegress,
                        T::ImportedEventTimestampMustNotRegress,
                        T::ImportedEventTimestampMustPostdateDebitAccount,
                        T::ImportedEventTimestampMustPostdateCreditAccount,
                        T::Created,
                        T::ImportedEventTimestampMustNotRegress,
                        T::Created,
                    ],
                ),
                TransfersAt(
                    40,
                    vec![
                        row_65(2, 1, 2, 99),
                        row_65(2, 1, 2, 4),
                        row_65(2, 1, 2, 5),
                        row_65(2, 1, 2, 6),
                    ],
                    vec![
                        T::ImportedEventTimestampMustNotAdvance,
                        T::Exists,
                        T::Exists,
                        T::Exists,
                    ],
                ),
                ResultAt(1, Is(5)),
                TransfersAt(50, vec![row_65(3, 1, 2, 10)], vec![T::Created]),
                TransferAt(1, Is(4)),
                TransferAt(2, Is(5)),
                TransferAt(3, Is(10)),
                Balances(1, [0, 9, 0, 0]),
            ],
        ),
        row(
            "row_66_imported_pending_needs_zero_timeout",
            vec![
                AccountsAt(
                    10,
                    vec![acct(1).imported(1), acct(2).imported(2)],
                    vec![A::Created; 2],
                ),
                TransfersAt(
                    20,
                    vec![
                        tr(1, 1, 2, 3).lc(1, 2).imported(3),
                        pending(2, 1, 2, 4).lc(1, 2).timeout(1).imported(4),
                        pending(2, 1, 2, 4).lc(1, 2).imported(4),
                    ],
                    vec![T::Created, T::ImportedEventTimeoutMustBeZero, T::Created],
                ),
                Balances(1, [4, 3, 0, 0]),
                TransfersAt(
                    30,
                    vec![Transfer {
                        pending_id: 2,
                        flags: POS,
                        ..tr(3, 1, 2, 4).lc(1, 2)
                    }
                    .imported(5)],
                    vec![T::Created],
                ),
                ResultAt(0, Is(5)),
                TransferAt(3, Is(5)),
                Balances(1, [0, 7, 0, 0]),
                Balances(2, [0, 0, 0, 7]),
            ],
        ),
        row(
            "row_67_imported_chain_fails_and_succeeds_as_a_whole",
            vec![
                AccountsAt(
                    10,
                    vec![
                        acct(1).flags(A_LNK).imported(1),
                        acct(2).flags(A_LNK).imported(2),
                        acct(3).imported(0),
                    ],
                    vec![
                        A::LinkedEventFailed,
                        A::LinkedEventFailed,
                        A::ImportedEventTimestampOutOfRange,
                    ],
                ),
                // The would-be imported timestamps, then the failing event's own slot.
                ResultAt(0, Is(1)),
                ResultAt(1, Is(2)),
                ResultAt(2, Slot(2)),
                NoAccount(1),
                AccountsAt(
                    20,
                    vec![
                        acct(1).flags(A_LNK).imported(1),
                        acct(2).flags(A_LNK).imported(2),
                        acct(3).imported(3),
                    ],
                    vec![A::Created; 3],
                ),
                TransfersAt(
                    30,
                    vec![
                        row_67(1, 4).flags(LNK),
                        row_67(2, 5).flags(LNK),
                        row_67(3, 0),
                    ],
                    vec![
                        T::LinkedEventFailed,
                        T::LinkedEventFailed,
                        T::ImportedEventTimestampOutOfRange,
                    ],
                ),
                ResultAt(0, Is(4)),
                ResultAt(1, Is(5)),
                TransfersAt(
                    40,
                    vec![
                        row_67(1, 4).flags(LNK),
                        row_67(2, 5).flags(LNK),
                        row_67(3, 6),
                    ],
                    vec![T::Created; 3],
                ),
                Balances(1, [0, 9, 0, 0]),
                Balances(2, [0, 0, 0, 9]),
                Balances(3, [0; 4]),
                TransferAt(1, Is(4)),
                TransferAt(2, Is(5)),
                TransferAt(3, Is(6)),
            ],
        ),
    ]
}

/// Queries (rows 68-71).
fn query_rows() -> Vec<Row> {
    vec![
        row(
            "row_68_get_account_transfers_filters",
            account_transfers_filters(),
        ),
        row(
            "row_69_invalid_account_filters_return_nothing",
            invalid_account_filters(),
        ),
        row(
            "row_70_balances_need_history",
            vec![
                Accounts(
                    vec![acct(1), acct(2), acct(3).flags(A_HIST)],
                    vec![A::Created; 3],
                ),
                Transfers(vec![tr(1, 1, 2, 5)], vec![T::Created]),
                AccountBalancesCount(
                    "A2 has no history flag",
                    |filter, _| filter.account_id = 2,
                    0,
                ),
                AccountTransfers("A2", |filter, _| filter.account_id = 2, vec![1]),
                AccountBalancesCount(
                    "A3 has no opening-balance row",
                    |filter, _| filter.account_id = 3,
                    0,
                ),
            ],
        ),
        row("row_71_query_accounts_filters", query_accounts_filters()),
    ]
}

/// Row 68: four transfers on A1 with different user data and codes, then one filter per step.
fn account_transfers_filters() -> Vec<Step> {
    use AccountFilterFlags as Flags;
    vec![
        Open(vec![1, 2]),
        Transfers(
            vec![
                tr(1, 1, 2, 10).ud(1000, 10, 1).lc(1, 1),
                tr(2, 2, 1, 11).ud(1001, 10, 2).lc(1, 2),
                tr(3, 1, 2, 12).ud(1000, 20, 2).lc(1, 1),
                tr(4, 2, 1, 13).ud(1001, 20, 1).lc(1, 2),
            ],
            vec![T::Created; 4],
        ),
        AccountTransfers("debits and credits", |_, _| {}, vec![1, 2, 3, 4]),
        AccountTransfers("limit 2", |filter, _| filter.limit = 2, vec![1, 2]),
        AccountTransfers(
            "timestamp_min T3",
            |filter, h| filter.timestamp_min = transfer_timestamp(h, 3),
            vec![3, 4],
        ),
        AccountTransfers(
            "timestamp_max T2",
            |filter, h| filter.timestamp_max = transfer_timestamp(h, 2),
            vec![1, 2],
        ),
        AccountTransfers(
            "T2 <= ts <= T3",
            |filter, h| {
                (filter.timestamp_min, filter.timestamp_max) =
                    (transfer_timestamp(h, 2), transfer_timestamp(h, 3))
            },
            vec![2, 3],
        ),
        AccountTransfers(
            "reversed",
            |filter, _| filter.flags = Flags::DEBITS | Flags::CREDITS | Flags::REVERSED,
            vec![4, 3, 2, 1],
        ),
        AccountTransfers(
            "reversed limit 2",
            |filter, _| {
                (filter.flags, filter.limit) = (Flags::DEBITS | Flags::CREDITS | Flags::REVERSED, 2)
            },
            vec![4, 3],
        ),
        AccountTransfers(
            "debits only",
            |filter, _| filter.flags = Flags::DEBITS,
            vec![1, 3],
        ),
        AccountTransfers(
            "credits only",
            |filter, _| filter.flags = Flags::CREDITS,
            vec![2, 4],
        ),
        AccountTransfers(
            "user_data_128",
            |filter, _| filter.user_data_128 = 1001,
            vec![2, 4],
        ),
        AccountTransfers(
            "user_data_64",
            |filter, _| filter.user_data_64 = 10,
            vec![1, 2],
        ),
        AccountTransfers(
            "user_data_32",
            |filter, _| filter.user_data_32 = 1,
            vec![1, 4],
        ),
        AccountTransfers("code", |filter, _| filter.code = 1, vec![1, 3]),
        AccountTransfers(
            "all filters",
            |filter, _| {
                (
                    filter.user_data_128,
                    filter.user_data_64,
                    filter.user_data_32,
                    filter.code,
                ) = (1000, 20, 2, 1)
            },
            vec![3],
        ),
        AccountTransfers(
            "no match",
            |filter, _| (filter.user_data_128, filter.code) = (1000, 2),
            vec![],
        ),
        // The other side of the same transfers.
        AccountTransfers("A2", |filter, _| filter.account_id = 2, vec![1, 2, 3, 4]),
    ]
}

/// Row 69: a valid filter finds A1's transfer and balance row; each invalid one finds nothing.
fn invalid_account_filters() -> Vec<Step> {
    let mut steps = vec![
        Accounts(vec![acct(1).flags(A_HIST), acct(2)], vec![A::Created; 2]),
        Transfers(vec![tr(1, 1, 2, 1)], vec![T::Created]),
        AccountTransfers("valid", |_, _| {}, vec![1]),
        AccountBalancesCount("valid", |_, _| {}, 1),
    ];
    let mut nothing = |name: &'static str, edit: fn(&mut AccountFilter, &Harness)| {
        steps.push(AccountTransfers(name, edit, vec![]));
        steps.push(AccountBalancesCount(name, edit, 0));
    };
    nothing("unknown account", |filter, _| filter.account_id = 9);
    nothing("account 0", |filter, _| filter.account_id = 0);
    nothing("account MAX", |filter, _| filter.account_id = MAX);
    nothing("neither debits nor credits", |filter, _| filter.flags = 0);
    nothing("reversed only", |filter, _| {
        filter.flags = AccountFilterFlags::REVERSED
    });
    nothing("padding flag", |filter, _| filter.flags |= 8);
    nothing("min > max", |filter, _| {
        (filter.timestamp_min, filter.timestamp_max) = (10, 9)
    });
    nothing("min beyond TS_MAX", |filter, _| {
        filter.timestamp_min = TS_MAX + 1
    });
    nothing("max beyond TS_MAX", |filter, _| {
        filter.timestamp_max = u64::MAX
    });
    nothing("limit 0", |filter, _| filter.limit = 0);
    nothing("reserved bytes", |filter, _| filter.reserved[0] = 1);
    steps
}

/// Row 71: eight accounts with overlapping fields, then one query filter per step.
fn query_accounts_filters() -> Vec<Step> {
    let fields: [(u128, u64, u32, u32, u16); 8] = [
        (1000, 10, 1, 1, 1),
        (1000, 10, 2, 1, 2),
        (1000, 20, 1, 2, 1),
        (1001, 10, 1, 1, 1),
        (1001, 20, 2, 2, 2),
        (1000, 10, 1, 1, 1),
        (0, 0, 0, 3, 3),
        (1000, 20, 2, 1, 1),
    ];
    let accounts = (1..)
        .zip(fields)
        .map(
            |(id, (user_data_128, user_data_64, user_data_32, ledger, code))| {
                acct(id)
                    .ud(user_data_128, user_data_64, user_data_32)
                    .lc(ledger, code)
            },
        )
        .collect();
    vec![
        Accounts(accounts, vec![A::Created; 8]),
        QueryAccounts("all", |_, _| {}, (1..=8).collect()),
        QueryAccounts(
            "user_data_128",
            |filter, _| filter.user_data_128 = 1000,
            vec![1, 2, 3, 6, 8],
        ),
        QueryAccounts(
            "user_data_128 reversed",
            |filter, _| (filter.user_data_128, filter.flags) = (1000, QueryFilterFlags::REVERSED),
            vec![8, 6, 3, 2, 1],
        ),
        QueryAccounts(
            "user_data_64 + user_data_32",
            |filter, _| (filter.user_data_64, filter.user_data_32) = (10, 1),
            vec![1, 4, 6],
        ),
        QueryAccounts(
            "all five fields",
            |filter, _| {
                (
                    filter.user_data_128,
                    filter.user_data_64,
                    filter.user_data_32,
                    filter.ledger,
                    filter.code,
                ) = (1000, 10, 1, 1, 1)
            },
            vec![1, 6],
        ),
        QueryAccounts("ledger", |filter, _| filter.ledger = 2, vec![3, 5]),
        QueryAccounts("code", |filter, _| filter.code = 2, vec![2, 5]),
        QueryAccounts(
            "time range",
            |filter, h| {
                (filter.timestamp_min, filter.timestamp_max) =
                    (account_timestamp(h, 3), account_timestamp(h, 6))
            },
            vec![3, 4, 5, 6],
        ),
        QueryAccounts(
            "time range + user_data_128",
            |filter, h| {
                (
                    filter.timestamp_min,
                    filter.timestamp_max,
                    filter.user_data_128,
                ) = (account_timestamp(h, 3), account_timestamp(h, 6), 1000)
            },
            vec![3, 6],
        ),
        QueryAccounts("limit 3", |filter, _| filter.limit = 3, vec![1, 2, 3]),
        QueryAccounts(
            "limit 3 reversed",
            |filter, _| (filter.limit, filter.flags) = (3, QueryFilterFlags::REVERSED),
            vec![8, 7, 6],
        ),
        QueryAccounts("limit 0", |filter, _| filter.limit = 0, vec![]),
        QueryAccounts(
            "no match",
            |filter, _| (filter.user_data_128, filter.ledger) = (1001, 3),
            vec![],
        ),
        QueryAccounts(
            "min > max",
            |filter, h| {
                (filter.timestamp_min, filter.timestamp_max) =
                    (account_timestamp(h, 6), account_timestamp(h, 3))
            },
            vec![],
        ),
        QueryAccounts("padding flag", |filter, _| filter.flags = 2, vec![]),
        QueryAccounts(
            "reserved",
            |filter, _| filter.reserved = [1, 0, 0, 0, 0, 0],
            vec![],
        ),
    ]
}

/// Beyond the table: clearline's own edges (imported timestamps, capacity codes).
fn clearline_rows() -> Vec<Row> {
    let imported = |id: u128, timestamp: u64| tr(id, 1, 2, 1).imported(timestamp);
    let limit = PULSE_EXPIRIES_MAX;
    let left = 8200 - u128::from(limit);
    vec![
        row(
            "imported_account_between_slot_and_batch_timestamp_is_rejected",
            vec![
                // Imported edge: event 0 of 3 at T = 100 owns slot 98; a timestamp of 99 is
                // below T but above the slot. clearline rejects it instead of tripping an
                // assertion.
                AccountsAt(
                    100,
                    vec![
                        acct(1).imported(99),
                        acct(2).imported(5),
                        acct(3).imported(6),
                    ],
                    vec![
                        A::ImportedEventTimestampMustNotAdvance,
                        A::Created,
                        A::Created,
                    ],
                ),
                // A rejected event carries its slot.
                ResultAt(0, Is(98)),
                NoAccount(1),
                // The bound is the event's own slot, inclusive, as the reference's `T` is for
                // the batch: event 1 of 3 at T = 300 owns slot 299, so 299 is rejected like 300
                // is for event 2.
                AccountsAt(
                    300,
                    vec![
                        acct(4).imported(297),
                        acct(5).imported(299),
                        acct(6).imported(300),
                    ],
                    vec![
                        A::Created,
                        A::ImportedEventTimestampMustNotAdvance,
                        A::ImportedEventTimestampMustNotAdvance,
                    ],
                ),
                AccountAt(4, Is(297)),
                // A chain whose first member sits between its slot and T fails as a whole.
                AccountsAt(
                    400,
                    vec![
                        acct(8).flags(A_LNK).imported(399),
                        acct(9).flags(A_LNK).imported(390),
                        acct(10).imported(391),
                    ],
                    vec![
                        A::ImportedEventTimestampMustNotAdvance,
                        A::LinkedEventFailed,
                        A::LinkedEventFailed,
                    ],
                ),
                NoAccount(8),
                NoAccount(9),
                NoAccount(10),
                Verify,
            ],
        ),
        row(
            "imported_transfer_between_slot_and_batch_timestamp_is_rejected",
            vec![
                AccountsAt(
                    10,
                    vec![acct(1).imported(1), acct(2).imported(2)],
                    vec![A::Created; 2],
                ),
                // Events 0..3 of 4 at T = 100 own slots 97..100.
                TransfersAt(
                    100,
                    vec![
                        imported(1, 98),
                        imported(2, 50),
                        imported(3, 98),
                        imported(4, 100),
                    ],
                    vec![
                        T::ImportedEventTimestampMustNotAdvance,
                        T::Created,
                        T::Created,
                        T::ImportedEventTimestampMustNotAdvance,
                    ],
                ),
                // A rejected event carries its slot.
                ResultAt(0, Is(97)),
                ResultAt(2, Is(98)),
                NoTransfer(1),
                NoTransfer(4),
                Balances(1, [0, 2, 0, 0]),
                // The ids were not burned.
                TransfersAt(
                    200,
                    vec![imported(1, 150), imported(4, 151)],
                    vec![T::Created; 2],
                ),
                Balances(1, [0, 4, 0, 0]),
                Verify,
            ],
        ),
        row_with(
            "accounts_capacity_exhaustion_returns_the_capacity_code",
            Config {
                accounts_max: 8,
                ..Config::test_small()
            },
            vec![
                Open((1..=8).collect()),
                Accounts(
                    vec![acct(9), acct(1), acct(10)],
                    vec![
                        A::AccountsCapacityExceeded,
                        A::Exists,
                        A::AccountsCapacityExceeded,
                    ],
                ),
                ResultAt(0, Slot(0)),
                NoAccount(9),
                // Not transient: the same id gets the same answer again.
                Accounts(vec![acct(9)], vec![A::AccountsCapacityExceeded]),
                AccountsCount(8),
                Verify,
            ],
        ),
        row_with(
            "transfers_capacity_exhaustion_returns_the_capacity_code",
            Config {
                transfers_max: 8,
                ..Config::test_small()
            },
            vec![
                Open(vec![1, 2]),
                Transfers(
                    (1..=8).map(|id| tr(id, 1, 2, 1)).collect(),
                    vec![T::Created; 8],
                ),
                Transfers(
                    vec![tr(9, 1, 2, 1), tr(1, 1, 2, 1), tr(9, 1, 2, 1)],
                    vec![
                        T::TransfersCapacityExceeded,
                        T::Exists,
                        T::TransfersCapacityExceeded,
                    ],
                ),
                NoTransfer(9),
                Balances(1, [0, 8, 0, 0]),
                TransfersCount(8),
                Verify,
            ],
        ),
        row_with(
            "pending_capacity_exhaustion_returns_the_capacity_code",
            Config {
                transfers_pending_max: 4,
                ..Config::test_small()
            },
            vec![
                Open(vec![1, 2]),
                Transfers(
                    (1..=4).map(|id| pending(id, 1, 2, 1)).collect(),
                    vec![T::Created; 4],
                ),
                Transfers(
                    vec![pending(5, 1, 2, 1), tr(6, 1, 2, 1), pending(5, 1, 2, 1)],
                    vec![
                        T::PendingTransfersCapacityExceeded,
                        T::Created,
                        T::PendingTransfersCapacityExceeded,
                    ],
                ),
                NoTransfer(5),
                Balances(1, [4, 1, 0, 0]),
                Verify,
            ],
        ),
        row_with(
            "account_balances_capacity_exhaustion_returns_the_capacity_code",
            Config {
                account_balances_max: 4,
                ..Config::test_small()
            },
            vec![
                Accounts(
                    vec![acct(1).flags(A_HIST), acct(2), acct(3)],
                    vec![A::Created; 3],
                ),
                Transfers(
                    (1..=4).map(|id| tr(id, 1, 2, 1)).collect(),
                    vec![T::Created; 4],
                ),
                Transfers(
                    vec![tr(5, 1, 2, 1), tr(6, 3, 2, 1), tr(5, 1, 2, 1)],
                    vec![
                        T::AccountBalancesCapacityExceeded,
                        T::Created,
                        T::AccountBalancesCapacityExceeded,
                    ],
                ),
                NoTransfer(5),
                AccountBalancesCount("A1", |_, _| {}, 4),
                Verify,
            ],
        ),
        row_with(
            "capacity_failure_inside_a_chain_rolls_the_chain_back",
            Config {
                transfers_max: 4,
                ..Config::test_small()
            },
            vec![
                Open(vec![1, 2]),
                Transfers(
                    vec![tr(1, 1, 2, 1), tr(2, 1, 2, 1), tr(3, 1, 2, 1)],
                    vec![T::Created; 3],
                ),
                Transfers(
                    vec![tr(4, 1, 2, 1).flags(LNK), tr(5, 1, 2, 1)],
                    vec![T::LinkedEventFailed, T::TransfersCapacityExceeded],
                ),
                NoTransfer(4),
                Balances(1, [0, 3, 0, 0]),
                Transfers(vec![tr(4, 1, 2, 1)], vec![T::Created]),
            ],
        ),
        row_with(
            "pulse_expires_at_most_pulse_expiries_max",
            Config {
                transfers_pending_max: 8300,
                ..Config::test_small()
            },
            vec![
                Open(vec![1, 2]),
                Transfers(
                    (1..=8190)
                        .map(|id| pending(id, 1, 2, 1).timeout(1))
                        .collect(),
                    vec![T::Created; 8190],
                ),
                Transfers(
                    (8191..=8200)
                        .map(|id| pending(id, 1, 2, 1).timeout(1))
                        .collect(),
                    vec![T::Created; 10],
                ),
                Tick(1, limit),
                Balances(1, [left, 0, 0, 0]),
                // A pending transfer that is due but not yet swept cannot be posted either.
                Transfers(
                    vec![post(9001, 1, MAX), post(9002, 8200, MAX)],
                    vec![T::PendingTransferExpired; 2],
                ),
                Balances(1, [left, 0, 0, 0]),
                PulseAfter(u64::from(limit) + 1, 8200 - limit),
                Balances(1, [0; 4]),
                Balances(2, [0; 4]),
                PulseAfter(u64::from(limit) + 1, 0),
            ],
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Status numbers and names.

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
        A::from_u32(number).map(A::name)
    });
    check_reference(REFERENCE_TRANSFER_STATUSES, |number| {
        T::from_u32(number).map(T::name)
    });
    assert_eq!(A::from_u32(199), None);
    assert_eq!(T::from_u32(69), None);
}
