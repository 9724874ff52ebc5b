//! The history writer thread: runs flow through in order, the durable watermark advances, runs
//! come back for reuse, and a failed ingest stops it with an error the owner reads.

mod support;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clearline_history::{HistoryError, HistoryWriter, Run, RunCapacity, Watermark};
use clearline_test_support::thread::nice_of_this_thread;
use clearline_test_support::Rng;
use support::{capacity, check_against_model, open, Generator, Model};

const RUN_TRANSFERS: usize = 300;
const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `condition` until it holds or the deadline passes.
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    condition()
}

#[test]
fn runs_flow_through_in_order_and_come_back_for_reuse() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = Arc::new(open(directory.path()));
    let (notices, notified) = mpsc::channel();
    let writer = HistoryWriter::spawn_notifying(
        Arc::clone(&history),
        4,
        Box::new(move |watermark| {
            let _ = notices.send(watermark);
        }),
    )
    .expect("spawn");
    assert_eq!(writer.durable(), None);
    let mut generator = Generator::new(0x5752);
    let mut model = Model::default();
    let mut watermarks = Vec::new();
    let mut reused = 0;
    for _ in 0..6 {
        let mut run = match writer.reclaim() {
            Some(run) => {
                reused += 1;
                run
            }
            None => Run::with_capacity(capacity(RUN_TRANSFERS)),
        };
        assert!(run.is_empty());
        generator.fill(&mut run, RUN_TRANSFERS);
        model.add(&run, generator.watermark());
        watermarks.push(generator.watermark());
        writer.submit(run, generator.watermark()).expect("submit");
    }
    let last = generator.watermark();
    assert!(eventually(|| writer.durable() == Some(last)));
    assert_eq!(history.watermark(), Some(last));
    // Every run not already reused comes back, emptied, with its buffer.
    assert!(eventually(|| {
        while let Some(run) = writer.reclaim() {
            assert!(run.is_empty());
            assert_eq!(run.capacity(), capacity(RUN_TRANSFERS));
            reused += 1;
        }
        reused == 6
    }));
    assert!(writer.close().is_ok());
    let notified: Vec<Watermark> = notified.try_iter().collect();
    assert_eq!(notified, watermarks);
    check_against_model(&history, &model, &mut Rng::new(3), 200);
}

#[test]
fn a_failed_ingest_stops_the_writer_with_its_error() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = Arc::new(open(directory.path()));
    let writer = HistoryWriter::spawn(Arc::clone(&history), 2).expect("spawn");
    let mut generator = Generator::new(0x5753);
    let (good, good_watermark) = generator.run(RUN_TRANSFERS);
    writer.submit(good, good_watermark).expect("submit");

    // Out of order: the writer must refuse it and ingest nothing after it.
    let (valid, _) = generator.run(RUN_TRANSFERS);
    let mut bad = Run::with_capacity(RunCapacity::transfers(RUN_TRANSFERS));
    for transfer in valid.transfers().iter().rev() {
        bad.push(transfer).expect("capacity");
    }
    writer.submit(bad, generator.watermark()).expect("submit");
    assert!(eventually(|| writer.failed()));
    let (after, after_watermark) = generator.run(RUN_TRANSFERS);
    let refused = writer.submit(after, after_watermark);
    assert!(
        matches!(refused, Err(HistoryError::WriterStopped)),
        "{refused:?}"
    );
    assert_eq!(writer.durable(), Some(good_watermark));
    assert_eq!(history.watermark(), Some(good_watermark));
    let closed = writer.close();
    assert!(
        matches!(closed, Err(HistoryError::RunOutOfOrder { .. })),
        "{closed:?}"
    );
}

#[test]
fn the_writer_thread_runs_at_background_priority() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = Arc::new(open(directory.path()));
    let (nices, reported) = mpsc::channel();
    // The notice runs on the writer thread: it reads that thread's priority.
    let writer = HistoryWriter::spawn_notifying(
        Arc::clone(&history),
        2,
        Box::new(move |_| {
            let _ = nices.send(nice_of_this_thread());
        }),
    )
    .expect("spawn");
    let mut generator = Generator::new(0x5754);
    let (run, watermark) = generator.run(RUN_TRANSFERS);
    writer.submit(run, watermark).expect("submit");
    let nice = reported.recv_timeout(DEADLINE).expect("a notice");
    assert_eq!(nice, clearline_journal::BACKGROUND_NICE);
    assert!(
        nice_of_this_thread() < nice,
        "the owner's thread keeps its priority"
    );
    assert!(writer.close().is_ok());
}
