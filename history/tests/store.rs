//! The history store against a naive model of every kind of record, across reopening,
//! repeated ingests, a crash between the tables and the watermark, an ingest that fails at the
//! records, and runs it must refuse.

mod support;

use clearline_engine::{AccountBalance, AccountFilter, AccountFilterFlags, Transfer};
use clearline_engine::{QueryFilter, TransferFlags};
use clearline_history::{HistoryError, Run, RunCapacity, Watermark};
use clearline_history::{RESOLUTION_EXPIRED, RESOLUTION_POSTED, RESOLUTION_VOIDED};
use clearline_test_support::Rng;
use support::{capacity, check_against_model, open, push_from, Generator, Model};

const SEED: u64 = 0x4849_5354;
const RUN_EVENTS: usize = 700;

#[test]
fn answers_match_the_model_over_several_runs() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = open(directory.path());
    assert_eq!(history.watermark(), None);
    let mut generator = Generator::new(SEED);
    let mut model = Model::default();
    let mut rng = Rng::new(SEED + 1);
    for index in 0..5 {
        let (run, watermark) = generator.run(RUN_EVENTS - index * 50);
        let report = history.ingest(&run, watermark).expect("ingest");
        assert_eq!(report.transfers_ingested, run.transfers().len());
        assert_eq!(report.burned_ids_ingested, run.burned_ids().len());
        assert_eq!(report.resolutions_ingested, run.resolutions().len());
        assert_eq!(report.balances_ingested, run.balances().len());
        assert!(!run.burned_ids().is_empty());
        assert!(!run.resolutions().is_empty());
        assert!(!run.balances().is_empty());
        assert_eq!(report.transfers_skipped, 0);
        assert_eq!(report.others_skipped, 0);
        assert!(report.account_entries <= support::ACCOUNTS as usize);
        assert!(report.account_entries >= 2);
        assert_eq!(history.watermark(), Some(watermark));
        model.add(&run, watermark);
    }
    check_against_model(&history, &model, &mut rng, 1_500);
    assert!(history.disk_bytes() > (model.transfers.len() * Transfer::SIZE) as u64);
}

#[test]
fn data_and_watermark_survive_reopening_and_ingest_continues() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut generator = Generator::new(SEED + 2);
    let mut model = Model::default();
    let mut rng = Rng::new(SEED + 3);
    {
        let history = open(directory.path());
        for _ in 0..2 {
            let (run, watermark) = generator.run(RUN_EVENTS);
            history.ingest(&run, watermark).expect("ingest");
            model.add(&run, watermark);
        }
    }
    let history = open(directory.path());
    assert_eq!(history.watermark(), Some(generator.watermark()));
    check_against_model(&history, &model, &mut rng, 400);

    let (run, watermark) = generator.run(RUN_EVENTS);
    history
        .ingest(&run, watermark)
        .expect("ingest after reopening");
    model.add(&run, watermark);
    drop(history);
    let history = open(directory.path());
    // A stale watermark here would mean the reopened store numbered its writes below the old.
    assert_eq!(history.watermark(), Some(watermark));
    check_against_model(&history, &model, &mut rng, 600);
}

#[test]
fn ingesting_a_run_again_changes_nothing() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = open(directory.path());
    let mut generator = Generator::new(SEED + 4);
    let mut model = Model::default();
    let mut rng = Rng::new(SEED + 5);
    let (first, first_watermark) = generator.run(RUN_EVENTS);
    history.ingest(&first, first_watermark).expect("ingest");
    model.add(&first, first_watermark);
    let (second, second_watermark) = generator.run(RUN_EVENTS);
    history.ingest(&second, second_watermark).expect("ingest");
    model.add(&second, second_watermark);

    // The same run with the same watermark: all of it is skipped.
    let report = history
        .ingest(&second, second_watermark)
        .expect("ingest again");
    assert_eq!(report.transfers_skipped, second.transfers().len());
    assert_eq!(
        report.others_skipped,
        second.len() - second.transfers().len()
    );
    assert_eq!(report.transfers_ingested, 0);
    assert_eq!(report.balances_ingested, 0);
    assert_eq!(history.watermark(), Some(second_watermark));
    check_against_model(&history, &model, &mut rng, 300);

    // A run that overlaps the watermark: the second half of `second`, then new records.
    let half = second.transfers()[second.transfers().len() / 2].timestamp;
    let mut overlapping = Run::with_capacity(capacity(RUN_EVENTS * 2));
    push_from(&second, half, &mut overlapping);
    let (third, third_watermark) = generator.run(RUN_EVENTS);
    push_from(&third, 0, &mut overlapping);
    let report = history
        .ingest(&overlapping, third_watermark)
        .expect("overlap");
    let repeated = second.transfers().iter().filter(|t| t.timestamp >= half);
    assert_eq!(report.transfers_skipped, repeated.count());
    assert_eq!(report.transfers_ingested, third.transfers().len());
    assert_eq!(report.burned_ids_ingested, third.burned_ids().len());
    assert_eq!(report.resolutions_ingested, third.resolutions().len());
    assert_eq!(report.balances_ingested, third.balances().len());
    model.add(&overlapping, third_watermark);
    assert_eq!(history.watermark(), Some(third_watermark));
    check_against_model(&history, &model, &mut rng, 500);
}

#[test]
fn a_crash_before_the_watermark_is_repaired_by_ingesting_again() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut generator = Generator::new(SEED + 6);
    let mut model = Model::default();
    let mut rng = Rng::new(SEED + 7);
    let (first, first_watermark) = generator.run(RUN_EVENTS);
    // The lost attempt loaded two intervals at once; after the crash they come back as two
    // runs, so the repaired store's entries start where the lost ones did only for the first.
    let (second, second_watermark) = generator.run(RUN_EVENTS);
    let (third, third_watermark) = generator.run(RUN_EVENTS);
    let mut lost = Run::with_capacity(capacity(RUN_EVENTS * 2));
    push_from(&second, 0, &mut lost);
    push_from(&third, 0, &mut lost);
    {
        let history = open(directory.path());
        history.ingest(&first, first_watermark).expect("ingest");
        model.add(&first, first_watermark);
        let report = history.ingest_tables(&lost).expect("tables only");
        let transfers = second.transfers().len() + third.transfers().len();
        assert_eq!(report.transfers_ingested, transfers);
        // The process dies here: the watermark was never written.
    }
    let history = open(directory.path());
    assert_eq!(history.watermark(), Some(first_watermark));
    // Above the watermark, the lost attempt's records may be visible; below it, exactly the
    // first run.
    check_against_model(&history, &model, &mut rng, 0);

    history.ingest(&second, second_watermark).expect("repair");
    model.add(&second, second_watermark);
    history.ingest(&third, third_watermark).expect("repair");
    model.add(&third, third_watermark);
    check_against_model(&history, &model, &mut rng, 800);
    drop(history);
    let history = open(directory.path());
    assert_eq!(history.watermark(), Some(third_watermark));
    check_against_model(&history, &model, &mut rng, 200);
}

#[test]
fn an_ingest_that_fails_at_the_records_leaves_no_index_entry_without_its_record() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut generator = Generator::new(SEED + 8);
    let (first, first_watermark) = generator.run(RUN_EVENTS);
    let (second, second_watermark) = generator.run(RUN_EVENTS);
    {
        let history = open(directory.path());
        history.ingest(&first, first_watermark).expect("ingest");
        history.fail_next_records_load();
        let error = history
            .ingest(&second, second_watermark)
            .expect_err("the injected failure");
        assert!(matches!(error, HistoryError::Io { .. }), "{error}");
        // The process dies here.
    }
    let history = open(directory.path());
    assert_eq!(history.watermark(), Some(first_watermark));
    // No id of the failed run leads to a missing record: each is absent, not damaged.
    for transfer in second.transfers() {
        let settlement = transfer.flags().settlement();
        let found = history.transfer_in(transfer.id, settlement);
        assert!(
            matches!(found, Ok(None)),
            "id {} after the failed ingest: {found:?}",
            transfer.id
        );
    }
    history.ingest(&second, second_watermark).expect("repair");
    for transfer in second.transfers() {
        let settlement = transfer.flags().settlement();
        let found = history.transfer_in(transfer.id, settlement).expect("read");
        assert_eq!(found, Some(*transfer));
    }
}

/// A run the store must refuse, what it is, and whether an error is the expected refusal.
struct Refusal {
    name: &'static str,
    run: Run,
    expected: fn(&HistoryError) -> bool,
}

fn refusal(name: &'static str, run: Run, expected: fn(&HistoryError) -> bool) -> Refusal {
    Refusal {
        name,
        run,
        expected,
    }
}

/// A run of `transfers`, then `fill` adds other records.
fn run_of(transfers: &[Transfer], fill: impl FnOnce(&mut Run)) -> Run {
    let mut run = Run::with_capacity(capacity(transfers.len() + 8));
    for transfer in transfers {
        run.push(transfer).expect("capacity");
    }
    fill(&mut run);
    run
}

#[test]
fn refused_runs_change_nothing_and_empty_runs_move_the_watermark() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = open(directory.path());
    let mut generator = Generator::new(SEED + 8);
    let mut model = Model::default();
    let mut rng = Rng::new(SEED + 9);
    let (run, watermark) = generator.run(100);
    history.ingest(&run, watermark).expect("ingest");
    model.add(&run, watermark);

    let (mut next, next_watermark) = generator.run(100);
    let transfers: Vec<Transfer> = next
        .transfers()
        .iter()
        .filter(|t| !t.flags().settlement())
        .copied()
        .collect();
    let (t0, t1, t2) = (transfers[0], transfers[1], transfers[2]);
    let row = |account: u128, timestamp: u64| AccountBalance {
        debits_posted: account,
        timestamp,
        ..AccountBalance::default()
    };
    let swapped = run_of(&[t0, t2, t1], |_| {});
    let refused = history.ingest(&swapped, next_watermark);
    assert!(
        matches!(
            refused,
            Err(HistoryError::RunOutOfOrder {
                kind: "transfers",
                index: 2,
                ..
            })
        ),
        "{refused:?}"
    );
    let cases: Vec<Refusal> = vec![
        refusal("repeated transfer", run_of(&[t0, t0], |_| {}), |e| {
            matches!(e, HistoryError::RunOutOfOrder { index: 1, .. })
        }),
        refusal(
            "same client id",
            run_of(&[t0, Transfer { id: t0.id, ..t1 }], |_| {}),
            |e| {
                matches!(
                    e,
                    HistoryError::RunDuplicateId {
                        settlement: false,
                        ..
                    }
                )
            },
        ),
        refusal(
            "same settlement id",
            run_of(
                &[
                    Transfer {
                        flags: TransferFlags::SETTLEMENT,
                        ..t0
                    },
                    Transfer {
                        id: t0.id,
                        flags: TransferFlags::SETTLEMENT,
                        ..t1
                    },
                ],
                |_| {},
            ),
            |e| {
                matches!(
                    e,
                    HistoryError::RunDuplicateId {
                        settlement: true,
                        ..
                    }
                )
            },
        ),
        refusal(
            "burned twice",
            run_of(&[t0], |run| {
                run.push_burned(5, t0.timestamp + 1).expect("capacity");
                run.push_burned(5, t0.timestamp + 2).expect("capacity");
            }),
            |e| matches!(e, HistoryError::RunDuplicateBurnedId { id: 5 }),
        ),
        refusal(
            "burned and a client transfer",
            run_of(&[t0, t1], |run| {
                run.push_burned(t1.id, t0.timestamp + 1).expect("capacity");
            }),
            |e| matches!(e, HistoryError::RunBurnedIdIsTransfer { .. }),
        ),
        refusal(
            "burned out of order",
            run_of(&[], |run| {
                run.push_burned(5, t1.timestamp).expect("capacity");
                run.push_burned(6, t0.timestamp).expect("capacity");
            }),
            |e| {
                matches!(
                    e,
                    HistoryError::RunOutOfOrder {
                        kind: "burned ids",
                        ..
                    }
                )
            },
        ),
        refusal(
            "resolved twice",
            run_of(&[], |run| {
                run.push_resolution(3, true, RESOLUTION_POSTED, t0.timestamp)
                    .expect("capacity");
                run.push_resolution(3, true, RESOLUTION_VOIDED, t1.timestamp)
                    .expect("capacity");
            }),
            |e| {
                matches!(
                    e,
                    HistoryError::RunDuplicateResolution {
                        id: 3,
                        settlement: true
                    }
                )
            },
        ),
        refusal(
            "resolutions out of order",
            run_of(&[], |run| {
                run.push_resolution(3, false, RESOLUTION_POSTED, t1.timestamp)
                    .expect("capacity");
                run.push_resolution(4, false, RESOLUTION_EXPIRED, t1.timestamp)
                    .expect("capacity");
            }),
            |e| {
                matches!(
                    e,
                    HistoryError::RunOutOfOrder {
                        kind: "resolutions",
                        ..
                    }
                )
            },
        ),
        refusal(
            "two rows of one account at one timestamp",
            run_of(&[t0], |run| {
                let account = t0.debit_account_id;
                run.push_balance(account, &row(account, t0.timestamp))
                    .expect("capacity");
                run.push_balance(account, &row(account, t0.timestamp))
                    .expect("capacity");
            }),
            |e| matches!(e, HistoryError::RunDuplicateBalance { .. }),
        ),
        refusal(
            "a row with no transfer",
            run_of(&[t0, t1], |run| {
                let account = t0.debit_account_id;
                run.push_balance(account, &row(account, t0.timestamp + 1))
                    .expect("capacity");
            }),
            |e| matches!(e, HistoryError::RunBalanceWithoutTransfer { .. }),
        ),
        refusal(
            "a row of an account the transfer does not move",
            run_of(&[t0], |run| {
                let account = u128::from(support::ACCOUNTS + 3);
                run.push_balance(account, &row(account, t0.timestamp))
                    .expect("capacity");
            }),
            |e| matches!(e, HistoryError::RunBalanceWithoutTransfer { .. }),
        ),
        refusal(
            "rows out of order",
            run_of(&[t0, t1], |run| {
                let (first, second) = (t0.debit_account_id, t1.debit_account_id);
                run.push_balance(second, &row(second, t1.timestamp))
                    .expect("capacity");
                run.push_balance(first, &row(first, t0.timestamp))
                    .expect("capacity");
            }),
            |e| {
                matches!(
                    e,
                    HistoryError::RunOutOfOrder {
                        kind: "balance rows",
                        ..
                    }
                )
            },
        ),
        refusal(
            "a resolution beyond the watermark",
            run_of(&[t0], |run| {
                let late = next_watermark.timestamp + 1;
                run.push_resolution(3, false, RESOLUTION_POSTED, late)
                    .expect("capacity");
            }),
            |e| {
                matches!(
                    e,
                    HistoryError::RunBeyondWatermark {
                        kind: "resolutions",
                        ..
                    }
                )
            },
        ),
        refusal(
            "a burned id beyond the watermark",
            run_of(&[], |run| {
                let late = next_watermark.timestamp + 1;
                run.push_burned(3, late).expect("capacity");
            }),
            |e| {
                matches!(
                    e,
                    HistoryError::RunBeyondWatermark {
                        kind: "burned ids",
                        ..
                    }
                )
            },
        ),
    ];
    for Refusal {
        name,
        run,
        expected,
    } in &cases
    {
        let refused = history.ingest(run, next_watermark);
        assert!(refused.as_ref().is_err_and(expected), "{name}: {refused:?}");
    }
    let short = Watermark {
        timestamp: transfers[10].timestamp,
        ..next_watermark
    };
    assert!(matches!(
        history.ingest(&next, short),
        Err(HistoryError::RunBeyondWatermark { .. })
    ));
    let backwards = Watermark {
        sequence: watermark.sequence - 1,
        ..next_watermark
    };
    assert!(matches!(
        history.ingest(&next, backwards),
        Err(HistoryError::WatermarkBackwards { .. })
    ));
    assert_eq!(history.watermark(), Some(watermark));
    check_against_model(&history, &model, &mut rng, 200);
    for transfer in next.transfers() {
        let settlement = transfer.flags().settlement();
        assert_eq!(
            history.transfer_in(transfer.id, settlement).ok(),
            Some(None)
        );
        assert_eq!(history.transfer_at(transfer.timestamp).ok(), Some(None));
    }
    for burned in next.burned_ids() {
        assert_eq!(history.burned(burned.id).ok(), Some(false));
    }
    assert_eq!(history.burned(5).ok(), Some(false));
    assert_eq!(history.resolution(3, true).ok(), Some(None));

    next.clear();
    let empty_watermark = Watermark {
        sequence: next_watermark.sequence,
        timestamp: next_watermark.timestamp,
    };
    let report = history.ingest(&next, empty_watermark).expect("empty run");
    assert_eq!(report.transfers_ingested, 0);
    assert_eq!(history.watermark(), Some(empty_watermark));
    drop(history);
    assert_eq!(open(directory.path()).watermark(), Some(empty_watermark));
}

#[test]
fn one_id_lives_once_in_each_namespace() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let (id, burned_id, history_account) = (7u128, 9u128, 5u128);
    let transfer = |timestamp: u64, flags: u16, code: u16| Transfer {
        id,
        debit_account_id: history_account,
        credit_account_id: 2,
        amount: 10,
        ledger: 1,
        code,
        flags,
        timestamp,
        ..Transfer::default()
    };
    let client = transfer(100, TransferFlags::PENDING, 1);
    let settlement = transfer(101, TransferFlags::PENDING | TransferFlags::SETTLEMENT, 2);
    // A settlement transfer may use an id burned in the client namespace.
    let settlement_burned = Transfer {
        id: burned_id,
        timestamp: 103,
        ..settlement
    };
    let mut run = Run::with_capacity(RunCapacity {
        transfers: 3,
        burned_ids: 1,
        resolutions: 2,
        balances: 3,
        ..RunCapacity::default()
    });
    for transfer in [client, settlement, settlement_burned] {
        run.push(&transfer).expect("capacity");
        let row = AccountBalance {
            debits_pending: u128::from(transfer.timestamp),
            timestamp: transfer.timestamp,
            ..AccountBalance::default()
        };
        run.push_balance(history_account, &row).expect("capacity");
    }
    run.push_burned(burned_id, 102).expect("capacity");
    run.push_resolution(id, false, RESOLUTION_POSTED, 104)
        .expect("capacity");
    run.push_resolution(id, true, RESOLUTION_EXPIRED, 105)
        .expect("capacity");
    let watermark = Watermark {
        sequence: 6,
        timestamp: 105,
    };
    let check = |history: &clearline_history::History| {
        assert_eq!(history.transfer_in(id, false).ok(), Some(Some(client)));
        assert_eq!(history.transfer(id).ok(), Some(Some(client)));
        assert_eq!(history.transfer_in(id, true).ok(), Some(Some(settlement)));
        assert_eq!(history.transfer_in(burned_id, false).ok(), Some(None));
        let found = history.transfer_in(burned_id, true);
        assert_eq!(found.ok(), Some(Some(settlement_burned)));
        assert_eq!(history.burned(burned_id).ok(), Some(true));
        assert_eq!(history.burned(id).ok(), Some(false));
        let posted = Some((RESOLUTION_POSTED, 104));
        assert_eq!(history.resolution(id, false).ok(), Some(posted));
        let expired = Some((RESOLUTION_EXPIRED, 105));
        assert_eq!(history.resolution(id, true).ok(), Some(expired));
        assert_eq!(history.resolution(burned_id, true).ok(), Some(None));
        for timestamp in [99, 102, 104, 105] {
            assert_eq!(history.transfer_at(timestamp).ok(), Some(None));
        }
        assert_eq!(history.transfer_at(101).ok(), Some(Some(settlement)));

        let mut out = Vec::new();
        history
            .transfers_by_id(&[burned_id, id, id], &mut out)
            .expect("lookup");
        assert_eq!(out, [client, client]);

        // Balance rows are selected through their transfers' fields.
        let filter = AccountFilter {
            account_id: history_account,
            code: 2,
            limit: 10,
            flags: AccountFilterFlags::DEBITS | AccountFilterFlags::REVERSED,
            ..AccountFilter::default()
        };
        let mut balances = Vec::new();
        history
            .account_balances(&filter, &mut balances)
            .expect("balances");
        let timestamps: Vec<u64> = balances.iter().map(|row| row.timestamp).collect();
        assert_eq!(timestamps, [103, 101]);
        assert_eq!(balances[0].debits_pending, 103);
        let credits = AccountFilter {
            flags: AccountFilterFlags::CREDITS,
            ..filter
        };
        balances.clear();
        history
            .account_balances(&credits, &mut balances)
            .expect("balances");
        assert!(balances.is_empty());

        let query = QueryFilter {
            ledger: 1,
            limit: 2,
            ..QueryFilter::default()
        };
        out.clear();
        history.query_transfers(&query, &mut out).expect("query");
        assert_eq!(out, [client, settlement]);
    };
    {
        let history = open(directory.path());
        history.ingest(&run, watermark).expect("ingest");
        check(&history);
    }
    check(&open(directory.path()));
}

/// Bytes of the files under `directory` that the page cache holds.
fn cached_bytes_under(directory: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(directory).expect("read directory") {
        let entry = entry.expect("directory entry");
        let path = entry.path();
        if entry.file_type().expect("file type").is_dir() {
            total += cached_bytes_under(&path);
        } else {
            let file = std::fs::File::open(&path).expect("open store file");
            total += clearline_journal::cached_bytes(&file).expect("page cache residency");
        }
    }
    total
}

#[test]
fn an_ingest_leaves_the_records_out_of_the_page_cache_and_the_ids_in_it() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = open(directory.path());
    let mut generator = Generator::new(SEED + 40);
    let mut model = Model::default();
    let (run, watermark) = generator.run(RUN_EVENTS * 4);
    history.ingest(&run, watermark).expect("ingest");
    model.add(&run, watermark);
    let paths = history.key_space_paths();
    let cached = |name: &str| {
        let (_, path) = paths
            .iter()
            .find(|(key_space, _)| *key_space == name)
            .expect(name);
        cached_bytes_under(path)
    };
    // Just written and synced: without the drop, every page would still be cached.
    for name in ["transfers", "account_runs", "balances"] {
        assert_eq!(cached(name), 0, "{name} is still in the page cache");
    }
    assert!(cached("transfer_ids") > 0, "the ids left the page cache");
    // Reads still find everything, from the device.
    let mut rng = Rng::new(SEED + 41);
    check_against_model(&history, &model, &mut rng, 200);
}

#[test]
fn ids_in_sequence_are_found_across_run_boundaries_and_a_rebuilt_run() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = open(directory.path());
    let mut timestamp = 1_000u64;
    let mut expected: Vec<Transfer> = Vec::new();
    // Client ids `ids` in order, each followed by a settlement transfer with the same id when
    // `settlement(id)`.
    let mut make = |ids: std::ops::Range<u128>, settlement: &dyn Fn(u128) -> bool| {
        let mut transfers = Vec::new();
        for id in ids {
            let namespaces: &[u16] = if settlement(id) {
                &[0, TransferFlags::SETTLEMENT]
            } else {
                &[0]
            };
            for flags in namespaces {
                timestamp += 1;
                transfers.push(Transfer {
                    id,
                    debit_account_id: 1,
                    credit_account_id: 2,
                    amount: id,
                    ledger: 1,
                    code: 1,
                    flags: *flags,
                    timestamp,
                    ..Transfer::default()
                });
            }
        }
        transfers
    };
    let watermark_of = |transfers: &[Transfer]| Watermark {
        sequence: transfers.last().expect("transfers").timestamp,
        timestamp: transfers.last().expect("transfers").timestamp,
    };
    // Run 1 ends inside the block of 1024..1039; run 2 starts in it.
    let first = make(1_000..1_038, &|id| id % 7 == 0);
    let second = make(1_038..1_071, &|id| id % 5 == 0);
    // Run 3 is lost after its tables were written; it is then rebuilt shorter, and run 4
    // takes the rest and more.
    let third = make(1_071..1_101, &|_| false);
    let rest = make(1_101..1_140, &|id| id % 3 == 0);
    let rebuilt = &third[..10];
    let fourth: Vec<Transfer> = third[10..].iter().chain(&rest).copied().collect();
    for transfers in [&first[..], &second[..]] {
        history
            .ingest(&run_of(transfers, |_| {}), watermark_of(transfers))
            .expect("ingest");
        expected.extend_from_slice(transfers);
    }
    history
        .ingest_tables(&run_of(&third, |_| {}))
        .expect("tables of the lost run");
    for transfers in [rebuilt, &fourth[..]] {
        history
            .ingest(&run_of(transfers, |_| {}), watermark_of(transfers))
            .expect("ingest");
        expected.extend_from_slice(transfers);
    }
    drop(history);
    let history = open(directory.path());
    for transfer in &expected {
        let settlement = transfer.flags().settlement();
        let found = history
            .transfer_in(transfer.id, settlement)
            .expect("read")
            .unwrap_or_else(|| panic!("id {} (settlement {settlement}) lost", transfer.id));
        assert_eq!(found, *transfer);
    }
    for (id, settlement) in [(999, false), (1_140, false), (1_024, true), (5_000, false)] {
        assert_eq!(history.transfer_in(id, settlement).expect("read"), None);
    }
}
