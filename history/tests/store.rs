//! The history store against a naive model, across reopening, repeated ingests, a crash
//! between the tables and the watermark, and runs it must refuse.

mod support;

use clearline_engine::Transfer;
use clearline_history::{HistoryError, Run, Watermark};
use clearline_test_support::Rng;
use support::{check_against_model, open, Generator, Model};

const SEED: u64 = 0x4849_5354;
const RUN_TRANSFERS: usize = 700;

#[test]
fn answers_match_the_model_over_several_runs() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = open(directory.path());
    assert_eq!(history.watermark(), None);
    let mut generator = Generator::new(SEED);
    let mut model = Model::default();
    let mut rng = Rng::new(SEED + 1);
    for index in 0..5 {
        let (run, watermark) = generator.run(RUN_TRANSFERS - index * 50);
        let report = history.ingest(&run, watermark).expect("ingest");
        assert_eq!(report.transfers_ingested, run.len());
        assert_eq!(report.transfers_skipped, 0);
        assert!(report.account_entries <= support::ACCOUNTS as usize);
        assert!(report.account_entries >= 2);
        assert_eq!(history.watermark(), Some(watermark));
        model.add(&run);
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
            let (run, watermark) = generator.run(RUN_TRANSFERS);
            history.ingest(&run, watermark).expect("ingest");
            model.add(&run);
        }
    }
    let history = open(directory.path());
    assert_eq!(history.watermark(), Some(generator.watermark()));
    check_against_model(&history, &model, &mut rng, 200);

    let (run, watermark) = generator.run(RUN_TRANSFERS);
    history
        .ingest(&run, watermark)
        .expect("ingest after reopening");
    model.add(&run);
    drop(history);
    let history = open(directory.path());
    // A stale watermark here would mean the reopened store numbered its writes below the old.
    assert_eq!(history.watermark(), Some(watermark));
    check_against_model(&history, &model, &mut rng, 300);
}

#[test]
fn ingesting_a_run_again_changes_nothing() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = open(directory.path());
    let mut generator = Generator::new(SEED + 4);
    let mut model = Model::default();
    let mut rng = Rng::new(SEED + 5);
    let (first, first_watermark) = generator.run(RUN_TRANSFERS);
    history.ingest(&first, first_watermark).expect("ingest");
    model.add(&first);
    let (second, second_watermark) = generator.run(RUN_TRANSFERS);
    history.ingest(&second, second_watermark).expect("ingest");
    model.add(&second);

    // The same run with the same watermark: all of it is skipped.
    let report = history
        .ingest(&second, second_watermark)
        .expect("ingest again");
    assert_eq!(report.transfers_skipped, second.len());
    assert_eq!(report.transfers_ingested, 0);
    assert_eq!(history.watermark(), Some(second_watermark));
    check_against_model(&history, &model, &mut rng, 300);

    // A run that overlaps the watermark: the second half of `second`, then new transfers.
    let mut overlapping = Run::with_capacity(RUN_TRANSFERS * 2);
    for transfer in &second.transfers()[RUN_TRANSFERS / 2..] {
        overlapping.push(transfer).expect("capacity");
    }
    let (third, third_watermark) = generator.run(RUN_TRANSFERS);
    for transfer in third.transfers() {
        overlapping.push(transfer).expect("capacity");
    }
    let report = history
        .ingest(&overlapping, third_watermark)
        .expect("overlap");
    assert_eq!(report.transfers_skipped, RUN_TRANSFERS - RUN_TRANSFERS / 2);
    assert_eq!(report.transfers_ingested, RUN_TRANSFERS);
    model.add(&third);
    assert_eq!(history.watermark(), Some(third_watermark));
    check_against_model(&history, &model, &mut rng, 500);
}

#[test]
fn a_crash_before_the_watermark_is_repaired_by_ingesting_again() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut generator = Generator::new(SEED + 6);
    let mut model = Model::default();
    let mut rng = Rng::new(SEED + 7);
    let (first, first_watermark) = generator.run(RUN_TRANSFERS);
    // The lost attempt loaded two intervals at once; after the crash they come back as two
    // runs, so the repaired store's entries start where the lost ones did only for the first.
    let (second, second_watermark) = generator.run(RUN_TRANSFERS);
    let (third, third_watermark) = generator.run(RUN_TRANSFERS);
    let mut lost = Run::with_capacity(RUN_TRANSFERS * 2);
    for transfer in second.transfers().iter().chain(third.transfers()) {
        lost.push(transfer).expect("capacity");
    }
    {
        let history = open(directory.path());
        history.ingest(&first, first_watermark).expect("ingest");
        model.add(&first);
        let report = history.ingest_tables(&lost).expect("tables only");
        assert_eq!(report.transfers_ingested, RUN_TRANSFERS * 2);
        // The process dies here: the watermark was never written.
    }
    let history = open(directory.path());
    assert_eq!(history.watermark(), Some(first_watermark));
    // Above the watermark, the lost attempt's transfers may be visible; below it, exactly the
    // first run.
    check_against_model(&history, &model, &mut rng, 0);
    for transfer in first.transfers() {
        assert_eq!(history.transfer(transfer.id).ok(), Some(Some(*transfer)));
    }

    history.ingest(&second, second_watermark).expect("repair");
    model.add(&second);
    history.ingest(&third, third_watermark).expect("repair");
    model.add(&third);
    check_against_model(&history, &model, &mut rng, 800);
    drop(history);
    let history = open(directory.path());
    assert_eq!(history.watermark(), Some(third_watermark));
    check_against_model(&history, &model, &mut rng, 200);
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
    model.add(&run);

    let (mut next, next_watermark) = generator.run(100);
    let mut swapped = Run::with_capacity(100);
    let transfers = next.transfers().to_vec();
    for index in [0, 2, 1, 3] {
        swapped.push(&transfers[index]).expect("capacity");
    }
    let refused = history.ingest(&swapped, next_watermark);
    assert!(
        matches!(refused, Err(HistoryError::RunOutOfOrder { index: 2, .. })),
        "{refused:?}"
    );
    let mut repeated = Run::with_capacity(2);
    repeated.push(&transfers[0]).expect("capacity");
    repeated.push(&transfers[0]).expect("capacity");
    assert!(matches!(
        history.ingest(&repeated, next_watermark),
        Err(HistoryError::RunOutOfOrder { index: 1, .. })
    ));
    let mut same_id = Run::with_capacity(2);
    same_id.push(&transfers[0]).expect("capacity");
    same_id
        .push(&Transfer {
            id: transfers[0].id,
            ..transfers[1]
        })
        .expect("capacity");
    assert!(matches!(
        history.ingest(&same_id, next_watermark),
        Err(HistoryError::RunDuplicateId { .. })
    ));
    let short = Watermark {
        timestamp: transfers[50].timestamp,
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
    for transfer in &transfers {
        assert_eq!(history.transfer(transfer.id).ok(), Some(None));
    }

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
