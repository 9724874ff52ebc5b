//! Checkpoints and retirement: a checkpoint written by a forked child bounds recovery, segments
//! both newest checkpoints cover are deleted or archived, a corrupt checkpoint falls back to the
//! previous one and its journal, a retired prefix without a covering checkpoint is refused, a
//! failed child leaves nothing, and a crash at any step of finishing a checkpoint (simulated
//! storage) or between the child's exit and the rename (real files) keeps every record.
//!
//! The fork path runs under the ordinary multi-threaded test harness on purpose: the child of a
//! multi-threaded process must not allocate or lock. The parent-death test starts this test
//! binary again as the checkpointing process (`CLEARLINE_CHECKPOINT_PARENT=<dir>`) and kills it.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clearline_journal::sim::{SimDisk, SimStorage};
use clearline_journal::{
    checkpoint_file_name, inspect, record_size, segment_file_name, verify, Backend, CheckpointDone,
    Journal, JournalConfig, JournalError, Recovery, SyncMode, RECORD_HEADER_SIZE,
    RETENTION_HOLD_SEGMENTS_MAX, SEGMENT_HEADER_SIZE, SEGMENT_SIZE_MIN,
};

const PARENT_ENV: &str = "CLEARLINE_CHECKPOINT_PARENT";
/// Generous: the machine is shared and loaded.
const DEADLINE: Duration = Duration::from_secs(30);

fn config(backend: Backend, sync: SyncMode) -> JournalConfig {
    JournalConfig {
        segment_size: SEGMENT_SIZE_MIN,
        sync,
        body_size_max: 4096,
        backend,
        ..JournalConfig::default()
    }
}

/// The body of record `sequence` (about 1000 bytes: 53 records per 64 KiB segment).
fn body(sequence: u64) -> Vec<u8> {
    (0..1000u64)
        .map(|index| (sequence.wrapping_mul(131) ^ index.wrapping_mul(7)) as u8)
        .collect()
}

fn append_up_to(journal: &mut Journal, last: u64) {
    while journal.written_sequence() < last {
        let sequence = journal.written_sequence() + 1;
        journal.append(sequence * 10, &body(sequence)).unwrap();
    }
}

fn image_byte(sequence: u64, position: u64) -> u8 {
    (position.wrapping_mul(31) ^ sequence.wrapping_mul(7) ^ (position >> 12)) as u8
}

/// The image a checkpoint at `sequence` holds (larger than the journal's 1 MiB stream buffer
/// when `size` is, so the child drains the buffer several times).
fn image(sequence: u64, size: u64) -> Vec<u8> {
    (0..size)
        .map(|position| image_byte(sequence, position))
        .collect()
}

/// Writes `image(sequence, size)` without allocating (it runs in the forked child).
fn image_writer(sequence: u64, size: u64) -> impl FnMut(&mut dyn Write) -> io::Result<()> {
    move |out: &mut dyn Write| {
        let mut block = [0u8; 4096];
        let mut written = 0u64;
        while written < size {
            let count = (size - written).min(block.len() as u64) as usize;
            for (index, byte) in block[..count].iter_mut().enumerate() {
                *byte = image_byte(sequence, written + index as u64);
            }
            out.write_all(&block[..count])?;
            written += count as u64;
        }
        Ok(())
    }
}

/// Starts a checkpoint of everything written, with an image of `size` bytes.
fn start(journal: &mut Journal, size: u64) -> u64 {
    let sequence = journal.written_sequence();
    let started = journal
        .checkpoint_start(&mut image_writer(sequence, size))
        .unwrap()
        .expect("records were written since the last checkpoint");
    assert_eq!(started.sequence, sequence);
    assert_eq!(started.timestamp, sequence * 10);
    sequence
}

/// Polls until the running checkpoint is finished (or fails the test after the deadline).
fn finish(journal: &mut Journal) -> CheckpointDone {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match journal.checkpoint_poll() {
            Ok(Some(done)) => return done,
            Ok(None) => {}
            Err(error) => panic!("checkpoint failed: {error}"),
        }
        assert!(Instant::now() < deadline, "the checkpoint did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls until the running checkpoint fails, and returns the error.
fn finish_with_error(journal: &mut Journal) -> JournalError {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match journal.checkpoint_poll() {
            Ok(Some(done)) => panic!("the checkpoint was expected to fail: {done}"),
            Ok(None) => {}
            Err(error) => return error,
        }
        assert!(Instant::now() < deadline, "the checkpoint did not end");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Replays from `from` to the end and checks every record; returns how many there were.
fn check_records(journal: &Journal, from: u64) -> u64 {
    let mut expected = from;
    let count = journal
        .replay(from, |record| {
            assert_eq!(record.sequence, expected);
            assert_eq!(record.timestamp, expected * 10);
            assert_eq!(record.body, &body(expected)[..], "body of {expected}");
            expected += 1;
        })
        .unwrap();
    assert_eq!(expected - 1, journal.written_sequence());
    count
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Opens the journal in `dir`, waiting while it is locked: a checkpoint child another test of
/// this process forks inherits every open descriptor, this journal's lock included, until its
/// first instructions close them, which a loaded machine can delay.
fn reopen(dir: &Path, config: &JournalConfig) -> Result<(Journal, Recovery), JournalError> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match Journal::open(dir, config) {
            Err(JournalError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

#[test]
fn checkpoint_in_a_forked_child_then_reopen_replays_only_after_it() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let config = config(Backend::Mmap, SyncMode::Data);
    let (mut journal, _) = reopen(dir, &config).unwrap();
    append_up_to(&mut journal, 100);
    let size = 3 << 20;
    let sequence = journal.written_sequence();
    let started = journal
        .checkpoint_start(&mut image_writer(sequence, size))
        .unwrap()
        .unwrap();
    assert!(started.pid > 0, "a child process writes it");
    // The core keeps appending while the child writes.
    append_up_to(&mut journal, 120);
    let done = finish(&mut journal);
    assert_eq!((done.sequence, done.timestamp), (100, 1000));
    assert_eq!(done.image_size, size);
    assert_eq!(done.retired, None, "one checkpoint retires nothing");
    assert!(dir.join(checkpoint_file_name(100)).exists());
    assert!(!names(dir).iter().any(|name| name.ends_with(".tmp")));
    append_up_to(&mut journal, 150);
    journal.close().unwrap();

    let (journal, recovery) = reopen(dir, &config).unwrap();
    let checkpoint = recovery.checkpoint.clone().unwrap();
    assert_eq!((checkpoint.sequence, checkpoint.timestamp), (100, 1000));
    assert!(
        checkpoint.image == image(100, size),
        "the image round-trips"
    );
    assert_eq!(
        recovery.records, 50,
        "only the records after it are replayed"
    );
    assert_eq!(recovery.last_sequence, 150);
    assert_eq!(check_records(&journal, 101), 50);
    journal.close().unwrap();
}

#[test]
fn open_overlapped_hands_the_newest_checkpoint_to_its_work_and_returns_the_result() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let config = config(Backend::Mmap, SyncMode::Data);
    let opener = std::thread::current().id();
    // A fresh journal: the work runs, on another thread, with no checkpoint.
    let (mut journal, _, seen) = Journal::open_overlapped(dir, &config, |checkpoint| {
        (checkpoint.is_none(), std::thread::current().id() != opener)
    })
    .unwrap();
    assert_eq!(seen, (true, true));
    append_up_to(&mut journal, 40);
    let size = 1 << 20;
    journal
        .checkpoint_start(&mut image_writer(40, size))
        .unwrap()
        .unwrap();
    finish(&mut journal);
    append_up_to(&mut journal, 60);
    journal.close().unwrap();

    let (journal, recovery, seen) = Journal::open_overlapped(dir, &config, |checkpoint| {
        checkpoint.map(|checkpoint| (checkpoint.sequence, checkpoint.image == image(40, size)))
    })
    .unwrap();
    assert_eq!(seen, Some((40, true)), "the work saw the newest image");
    assert_eq!(
        recovery
            .checkpoint
            .as_ref()
            .map(|checkpoint| checkpoint.sequence),
        Some(40),
        "the image is still handed to the caller"
    );
    assert_eq!(recovery.records, 20);
    journal.close().unwrap();
}

#[test]
fn only_one_checkpoint_runs_at_a_time_and_a_killed_child_leaves_no_file() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let (mut journal, _) = reopen(dir, &config(Backend::Mmap, SyncMode::Data)).unwrap();
    append_up_to(&mut journal, 10);
    let mut stalled = |_: &mut dyn Write| -> io::Result<()> {
        loop {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let started = journal.checkpoint_start(&mut stalled).unwrap().unwrap();
    let second = journal.checkpoint_start(&mut image_writer(10, 10));
    assert!(
        matches!(
            second,
            Err(JournalError::CheckpointRunning { sequence: 10 })
        ),
        "{second:?}"
    );
    assert!(dir
        .join(format!("{}.tmp", checkpoint_file_name(10)))
        .exists());
    let status = Command::new("kill")
        .args(["-KILL", &started.pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let error = finish_with_error(&mut journal);
    assert!(error.to_string().contains("killed by signal 9"), "{error}");
    assert!(
        !names(dir)
            .iter()
            .any(|name| name.starts_with("checkpoint-")),
        "{:?}",
        names(dir)
    );
    // Not fatal: the next checkpoint works.
    start(&mut journal, 1000);
    assert_eq!(finish(&mut journal).sequence, 10);
    journal.close().unwrap();
}

#[test]
fn a_failing_image_writer_leaves_no_file_and_the_next_checkpoint_works() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let (mut journal, _) = reopen(dir, &config(Backend::File, SyncMode::Data)).unwrap();
    append_up_to(&mut journal, 20);
    let mut failing = |out: &mut dyn Write| -> io::Result<()> {
        out.write_all(&[7u8; 5000])?;
        Err(io::Error::from(io::ErrorKind::InvalidData))
    };
    journal.checkpoint_start(&mut failing).unwrap().unwrap();
    let error = finish_with_error(&mut journal);
    assert!(
        matches!(error, JournalError::CheckpointFailed { .. }),
        "{error}"
    );
    assert!(
        !names(dir)
            .iter()
            .any(|name| name.starts_with("checkpoint-")),
        "{:?}",
        names(dir)
    );
    start(&mut journal, 5000);
    finish(&mut journal);
    journal.close().unwrap();
    let (journal, recovery) = reopen(dir, &config(Backend::File, SyncMode::Data)).unwrap();
    assert_eq!(recovery.checkpoint.unwrap().image, image(20, 5000));
    journal.close().unwrap();
}

/// Three checkpoints at 300, 600 and 900 with segments of 53 records: returns the journal's
/// directory state after the third, with the journal closed.
fn three_checkpoints(dir: &Path, config: &JournalConfig) -> (CheckpointDone, CheckpointDone) {
    let (mut journal, _) = reopen(dir, config).unwrap();
    append_up_to(&mut journal, 300);
    start(&mut journal, 4000);
    assert_eq!(finish(&mut journal).retired, None);
    assert!(dir.join(segment_file_name(0)).exists());
    append_up_to(&mut journal, 600);
    start(&mut journal, 4000);
    let second = finish(&mut journal);
    // Retired: every segment whose records are all at or before 300 (the older checkpoint).
    let (first, last) = second
        .retired
        .expect("segments covered by both checkpoints");
    assert_eq!(first, 0);
    assert_eq!(journal.first_segment(), last + 1);
    assert!(second.first_sequence <= 301, "{second}");
    for id in 0..=last {
        assert!(!dir.join(segment_file_name(id)).exists(), "segment {id}");
    }
    assert!(dir.join(checkpoint_file_name(300)).exists());
    assert!(dir.join(checkpoint_file_name(600)).exists());
    append_up_to(&mut journal, 900);
    start(&mut journal, 4000);
    let third = finish(&mut journal);
    assert!(third.first_sequence <= 601, "{third}");
    assert!(third.first_sequence > 301, "{third}");
    // The newest two are kept.
    assert!(!dir.join(checkpoint_file_name(300)).exists());
    assert!(dir.join(checkpoint_file_name(600)).exists());
    assert!(dir.join(checkpoint_file_name(900)).exists());
    append_up_to(&mut journal, 950);
    journal.close().unwrap();
    (second, third)
}

#[test]
fn retirement_deletes_the_segments_both_checkpoints_cover() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let config = config(Backend::Mmap, SyncMode::Data);
    let (_, third) = three_checkpoints(dir, &config);
    let (last_retired, first_kept) = (third.retired.unwrap().1, third.first_sequence);

    // Exactly the covered segments went: the first kept one holds sequence 601 or earlier,
    // and the one after it starts later.
    let report = inspect(dir).unwrap();
    assert_eq!(report.segments[0].id, last_retired + 1);
    assert_eq!(report.segments[0].sequences.unwrap().0, first_kept);
    assert!(report.segments[1].sequences.unwrap().0 > 601);
    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "segments 0-{last_retired} retired; first kept sequence {first_kept}"
        )),
        "{text}"
    );
    assert!(text.contains("sequence 900"), "{text}");
    assert!(text.contains("verify: OK"), "{text}");
    let verified = verify(dir).unwrap();
    assert_eq!(verified.first_sequence, first_kept);
    assert_eq!(verified.last_sequence, 950);
    assert_eq!(verified.records, 950 - first_kept + 1);
    assert_eq!(verified.checkpoints.len(), 2);

    let (mut journal, recovery) = reopen(dir, &config).unwrap();
    assert_eq!(recovery.checkpoint.as_ref().unwrap().sequence, 900);
    assert_eq!(recovery.checkpoint_previous.as_ref().unwrap().sequence, 600);
    assert_eq!(recovery.retired_segments, last_retired + 1);
    assert_eq!(recovery.first_sequence, first_kept);
    assert_eq!(recovery.records, 50);
    assert!(recovery.to_string().contains("retired"), "{recovery}");
    // The previous checkpoint stays usable: its image and the journal after it.
    let previous = journal.load_checkpoint(600).unwrap();
    assert_eq!(previous.image, image(600, 4000));
    assert_eq!(check_records(&journal, 601), 350);
    assert!(matches!(
        journal.replay(first_kept - 1, |_| {}),
        Err(JournalError::Retired { .. })
    ));
    // The journal keeps going on the retired prefix.
    append_up_to(&mut journal, 1000);
    journal.close().unwrap();
    let (journal, recovery) = reopen(dir, &config).unwrap();
    assert_eq!(recovery.last_sequence, 1000);
    journal.close().unwrap();
}

fn archive_test(archive: &Path) {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let config = JournalConfig {
        archive: Some(archive.to_owned()),
        ..config(Backend::Mmap, SyncMode::Data)
    };
    let (_, third) = three_checkpoints(dir, &config);
    let (_, last) = third.retired.unwrap();
    for id in 0..=last {
        let archived = archive.join(segment_file_name(id));
        assert_eq!(
            fs::metadata(&archived).unwrap().len(),
            SEGMENT_SIZE_MIN,
            "segment {id}"
        );
        assert!(!dir.join(segment_file_name(id)).exists());
    }
    assert!(!names(archive).iter().any(|name| name.ends_with(".tmp")));
    // The archive plus the journal is the whole log again: the archived segments are intact.
    let whole = tempfile::tempdir().unwrap();
    for name in names(archive).iter().chain(names(dir).iter()) {
        if name.starts_with("segment-") {
            let source = if archive.join(name).exists() {
                archive.join(name)
            } else {
                dir.join(name)
            };
            fs::copy(source, whole.path().join(name)).unwrap();
        }
    }
    let report = verify(whole.path()).unwrap();
    assert_eq!((report.first_sequence, report.last_sequence), (1, 950));
}

#[test]
fn retirement_moves_segments_to_the_archive() {
    let archive = tempfile::tempdir().unwrap();
    archive_test(&archive.path().join("archive"));
}

/// /dev/shm is another file system than the temporary directory on most machines: the archive
/// then copies, syncs and removes instead of renaming. Where it is the same, this repeats the
/// rename case.
#[test]
fn retirement_archives_across_file_systems() {
    let Ok(archive) = tempfile::tempdir_in("/dev/shm") else {
        archive_test(&tempfile::tempdir().unwrap().path().join("archive"));
        return;
    };
    archive_test(archive.path());
}

/// Damages a checkpoint's image: flips a bit of its last byte.
fn flip_last_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(path, &bytes).unwrap();
}

/// Recovery reads only the header of the checkpoint before the newest: a damaged older image
/// does not stop a start that needs only the newest, it is refused when it is loaded, and
/// `journal verify` still reads it and names it.
#[test]
fn a_damaged_older_image_is_found_when_loaded_and_by_verify() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let config = config(Backend::File, SyncMode::Data);
    three_checkpoints(dir, &config);
    let path = dir.join(checkpoint_file_name(600));
    flip_last_byte(&path);

    let (mut journal, recovery) = reopen(dir, &config).unwrap();
    let checkpoint = recovery.checkpoint.clone().unwrap();
    assert_eq!(checkpoint.sequence, 900);
    assert_eq!(checkpoint.image, image(900, 4000));
    assert!(recovery.checkpoints_rejected.is_empty(), "{recovery}");
    let previous = recovery.checkpoint_previous.clone().unwrap();
    assert_eq!(previous.sequence, 600);
    match journal.load_checkpoint(600) {
        Err(JournalError::CheckpointInvalid { file, reason }) => {
            assert_eq!(file, checkpoint_file_name(600));
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("a damaged image must be refused, got {other:?}"),
    }
    journal.close().unwrap();
    let error = verify(dir).unwrap_err();
    assert!(
        error.to_string().contains(&checkpoint_file_name(600)),
        "{error}"
    );

    // A header that does not match its file is refused at open, without reading the image.
    let mut bytes = fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 1);
    fs::write(&path, &bytes).unwrap();
    let (journal, recovery) = reopen(dir, &config).unwrap();
    assert_eq!(recovery.checkpoint.as_ref().unwrap().sequence, 900);
    assert_eq!(recovery.checkpoints_rejected.len(), 1, "{recovery}");
    assert!(
        recovery.checkpoints_rejected[0].contains("size"),
        "{recovery}"
    );
    journal.close().unwrap();
}

#[test]
fn corrupt_newest_checkpoint_falls_back_to_the_previous_and_its_journal() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let config = config(Backend::File, SyncMode::Data);
    three_checkpoints(dir, &config);
    let path = dir.join(checkpoint_file_name(900));
    flip_last_byte(&path);

    let (journal, recovery) = reopen(dir, &config).unwrap();
    let checkpoint = recovery.checkpoint.clone().unwrap();
    assert_eq!(checkpoint.sequence, 600);
    assert_eq!(checkpoint.image, image(600, 4000));
    assert_eq!(recovery.checkpoints_rejected.len(), 1);
    assert!(
        recovery.checkpoints_rejected[0].contains(&checkpoint_file_name(900)),
        "{recovery}"
    );
    assert_eq!(recovery.records, 350);
    assert_eq!(check_records(&journal, 601), 350);
    journal.close().unwrap();
}

#[test]
fn a_retired_prefix_without_a_covering_checkpoint_is_refused() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let config = config(Backend::File, SyncMode::Data);
    let (_, third) = three_checkpoints(dir, &config);
    let first_segment = third.retired.unwrap().1 + 1;
    let first_kept = third.first_sequence;
    fs::remove_file(dir.join(checkpoint_file_name(900))).unwrap();
    fs::remove_file(dir.join(checkpoint_file_name(600))).unwrap();
    let message = format!(
        "segments before {first_segment} were retired but no checkpoint covers sequence {}",
        first_kept - 1
    );
    let error = reopen(dir, &config).err().expect("refused");
    assert!(
        matches!(error, JournalError::RetiredUncovered { .. }),
        "{error}"
    );
    assert!(error.to_string().contains(&message), "{error}");
    let error = verify(dir).unwrap_err();
    assert!(error.to_string().contains(&message), "{error}");
}

/// Drop without close after the child exited, before the rename (the sequence is not durable
/// yet in manual sync mode): the next open removes the temporary file and recovers every record
/// from the previous checkpoint.
#[test]
fn crash_between_child_exit_and_rename_keeps_every_record() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let config = config(Backend::Mmap, SyncMode::Manual);
    let (mut journal, _) = reopen(dir, &config).unwrap();
    append_up_to(&mut journal, 100);
    journal.sync().unwrap();
    start(&mut journal, 2000);
    finish(&mut journal);
    append_up_to(&mut journal, 200);
    let started = journal
        .checkpoint_start(&mut image_writer(200, 2000))
        .unwrap()
        .unwrap();
    // Wait for the child to exit: it stays a zombie until the journal reaps it in a poll, and
    // the poll cannot finish the checkpoint before sequence 200 is durable.
    let stat = format!("/proc/{}/stat", started.pid);
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert_eq!(journal.checkpoint_poll().unwrap(), None);
        let exited = fs::read_to_string(&stat)
            .map(|text| text.contains(") Z "))
            .unwrap_or(true);
        if exited {
            break;
        }
        assert!(Instant::now() < deadline, "the child did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(journal.checkpoint_poll().unwrap(), None);
    journal.sync().unwrap();
    drop(journal);
    let temporary_name = format!("{}.tmp", checkpoint_file_name(200));
    assert!(dir.join(&temporary_name).exists());

    let (journal, recovery) = reopen(dir, &config).unwrap();
    assert!(!dir.join(&temporary_name).exists());
    assert!(!dir.join(checkpoint_file_name(200)).exists());
    assert_eq!(recovery.checkpoint.unwrap().sequence, 100);
    assert_eq!(recovery.last_sequence, 200);
    assert_eq!(check_records(&journal, 101), 100);
    journal.close().unwrap();
}

fn open_sim(disk: &SimDisk) -> Result<(Journal, Recovery), JournalError> {
    let storage = SimStorage::open(disk).expect("the previous journal was dropped");
    Journal::open_storage(Box::new(storage), &config(Backend::Mmap, SyncMode::Manual))
}

/// Records 1..=300 with a finished checkpoint at 150, then a started one at 300 whose finishing
/// (write, rename, directory sync, read back, pruning, retirement of the segments up to 150)
/// crashes after `operations` storage operations. Returns whether the crash happened.
fn crash_while_finishing(operations: u64) -> bool {
    let disk = SimDisk::new(0xc4ec_0000 + operations);
    let (mut journal, _) = open_sim(&disk).unwrap();
    append_up_to(&mut journal, 150);
    journal.sync().unwrap();
    start(&mut journal, 3000);
    assert_eq!(finish(&mut journal).sequence, 150);
    append_up_to(&mut journal, 300);
    journal.sync().unwrap();
    disk.crash_after(operations);
    let outcome = journal
        .checkpoint_start(&mut image_writer(300, 3000))
        .and_then(|_| journal.checkpoint_poll());
    let crashed = disk.crashed();
    if !crashed {
        let done = outcome.unwrap().unwrap();
        assert!(done.retired.is_some(), "{done}");
    }
    drop(journal);
    disk.crash();

    let (journal, recovery) = open_sim(&disk)
        .unwrap_or_else(|error| panic!("crash after {operations} operations: {error}"));
    assert_eq!(recovery.last_sequence, 300, "after {operations}");
    let checkpoint = recovery.checkpoint.unwrap();
    assert!(
        checkpoint.sequence == 150 || checkpoint.sequence == 300,
        "after {operations}: {}",
        checkpoint.sequence
    );
    assert_eq!(checkpoint.image, image(checkpoint.sequence, 3000));
    assert!(disk.file_names().iter().all(|name| !name.ends_with(".tmp")));
    check_records(&journal, checkpoint.sequence + 1);
    check_records(&journal, journal.first_sequence());
    assert!(journal.first_sequence() <= 151, "after {operations}");
    journal.close().unwrap();
    crashed
}

#[test]
fn crash_at_every_step_of_finishing_a_checkpoint_keeps_every_record() {
    let mut operations = 0;
    while crash_while_finishing(operations) {
        operations += 1;
        assert!(operations < 1000, "finishing a checkpoint never completes");
    }
    assert!(
        operations > 5,
        "the crash points covered the steps ({operations})"
    );
}

#[test]
fn storage_full_while_writing_a_checkpoint_is_reported_and_not_fatal() {
    let disk = SimDisk::new(7);
    let (mut journal, _) = open_sim(&disk).unwrap();
    append_up_to(&mut journal, 50);
    journal.sync().unwrap();
    disk.set_space_max(Some(0));
    let outcome = journal
        .checkpoint_start(&mut image_writer(50, 100_000))
        .and_then(|_| journal.checkpoint_poll());
    let error = match outcome {
        Err(error) => error,
        Ok(_) => finish_with_error(&mut journal),
    };
    assert!(matches!(error, JournalError::StorageFull { .. }), "{error}");
    assert!(!disk
        .file_names()
        .iter()
        .any(|name| name.starts_with("checkpoint-")));
    disk.set_space_max(None);
    start(&mut journal, 1000);
    assert_eq!(finish(&mut journal).sequence, 50);
    journal.close().unwrap();
}

/// The checkpointing process of the parent-death test: open, append, start a checkpoint whose
/// child never finishes, report the child's pid, and wait to be killed.
fn checkpointing_parent(dir: &Path) {
    let (mut journal, _) = reopen(dir, &config(Backend::Mmap, SyncMode::Data)).unwrap();
    append_up_to(&mut journal, 10);
    journal.sync().unwrap();
    let mut stalled = |_: &mut dyn Write| -> io::Result<()> {
        loop {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let started = journal.checkpoint_start(&mut stalled).unwrap().unwrap();
    // On its own line: the harness prints the test's name without a newline before it.
    println!("\ncheckpoint-child-pid={}", started.pid);
    io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The child inherits the directory lock: if it outlived a killed parent, a restart could not
/// lock the journal. PR_SET_PDEATHSIG kills it with the parent.
#[test]
fn a_killed_parent_takes_its_checkpoint_child_along() {
    if let Some(dir) = std::env::var_os(PARENT_ENV) {
        checkpointing_parent(Path::new(&dir));
        return;
    }
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let mut parent = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_killed_parent_takes_its_checkpoint_child_along",
            "--exact",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env(PARENT_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = parent.stdout.take().unwrap();
    let mut pid = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(number) = line.strip_prefix("checkpoint-child-pid=") {
            pid = Some(number.parse::<u32>().unwrap());
            break;
        }
    }
    let pid = pid.expect("the parent started a checkpoint child");
    let stat = format!("/proc/{pid}/stat");
    assert!(Path::new(&stat).exists(), "the child runs");
    assert!(matches!(
        Journal::open(dir, &config(Backend::Mmap, SyncMode::Data)),
        Err(JournalError::Locked { .. })
    ));
    parent.kill().unwrap(); // SIGKILL to our own child process, by its handle.
    parent.wait().unwrap();
    let deadline = Instant::now() + DEADLINE;
    let (journal, recovery) = loop {
        match Journal::open(dir, &config(Backend::Mmap, SyncMode::Data)) {
            Ok(opened) => break opened,
            Err(JournalError::Locked { .. }) => {
                assert!(
                    Instant::now() < deadline,
                    "the checkpoint child still holds the lock"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => panic!("{error}"),
        }
    };
    // PR_SET_PDEATHSIG: the child dies with its parent (then init reaps it).
    loop {
        let dead = fs::read_to_string(&stat)
            .map(|text| text.contains(") Z "))
            .unwrap_or(true);
        if dead {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the checkpoint child outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(recovery.last_sequence, 10);
    assert!(recovery.checkpoint.is_none());
    assert!(!names(dir).iter().any(|name| name.ends_with(".tmp")));
    journal.close().unwrap();
}

/// Where record `sequence` of a journal written by `append_up_to` from record 1 lies: its
/// segment id and the offset of its body in that segment. Records are laid end to end after each
/// segment's header, and a record that does not fit starts the next segment.
fn body_position(config: &JournalConfig, sequence: u64) -> (u64, u64) {
    let size = record_size(body(1).len() as u64);
    let (mut segment, mut offset) = (0, SEGMENT_HEADER_SIZE);
    for _ in 1..sequence {
        offset += size;
        if offset + size > config.segment_size {
            segment += 1;
            offset = SEGMENT_HEADER_SIZE;
        }
    }
    (segment, offset + RECORD_HEADER_SIZE)
}

#[test]
fn recovery_reads_no_body_the_newest_checkpoint_covers_and_verify_still_does() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let config = config(Backend::File, SyncMode::Data);
    let (mut journal, _) = reopen(dir, &config).unwrap();
    append_up_to(&mut journal, 130);
    start(&mut journal, 4000);
    finish(&mut journal);
    append_up_to(&mut journal, 160);
    journal.close().unwrap();
    // Recovery scans from the first record of the segment that holds 131; damage the body (not
    // the header) of a record before 131 in that segment, which the checkpoint covers.
    let (segment, _) = body_position(&config, 131);
    let covered = (1..=130)
        .rev()
        .take_while(|&sequence| body_position(&config, sequence).0 == segment)
        .last()
        .expect("a record before the checkpoint's shares the segment of the one after it");
    let (_, offset) = body_position(&config, covered);
    let path = dir.join(segment_file_name(segment));
    let mut bytes = fs::read(&path).unwrap();
    let offset = offset as usize;
    assert_eq!(
        bytes[offset..offset + 1000],
        body(covered)[..],
        "the layout is as computed"
    );
    bytes[offset + 500] ^= 1;
    fs::write(&path, &bytes).unwrap();

    // Recovery replays from 131 and never reads the damaged body.
    let (journal, recovery) = reopen(dir, &config).unwrap();
    assert_eq!(recovery.checkpoint.as_ref().map(|c| c.sequence), Some(130));
    assert_eq!(recovery.records, 30);
    assert_eq!(check_records(&journal, 131), 30);
    journal.close().unwrap();

    // The offline check reads every body and reports the damaged record.
    let error = verify(dir).unwrap_err();
    assert!(
        matches!(&error, JournalError::Corruption(corruption) if corruption.sequence == covered),
        "{error}"
    );
}

/// A retention hold keeps the records at and after it through a retirement, until it is
/// lifted; it is not honoured once more than `RETENTION_HOLD_SEGMENTS_MAX` segments come before
/// the one written.
#[test]
fn a_retention_hold_keeps_records_a_reader_needs_within_its_bound() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let config = config(Backend::Mmap, SyncMode::Data);
    let (mut journal, _) = reopen(dir, &config).unwrap();
    let hold = journal.retention_hold();
    assert_eq!(hold.load(std::sync::atomic::Ordering::Acquire), u64::MAX);
    hold.store(100, std::sync::atomic::Ordering::Release);
    append_up_to(&mut journal, 300);
    start(&mut journal, 4000);
    assert_eq!(finish(&mut journal).retired, None);
    append_up_to(&mut journal, 400);
    start(&mut journal, 4000);
    let held = finish(&mut journal);
    // Without the hold every segment up to sequence 300 would go; with it only those whose
    // records are all before 100.
    assert!(held.first_sequence <= 100, "{held}");
    assert!(held.first_sequence > 1, "{held}");
    assert!(journal.first_sequence() <= 100);
    // Lifted: the next retirement takes everything the checkpoints cover.
    hold.store(u64::MAX, std::sync::atomic::Ordering::Release);
    append_up_to(&mut journal, 500);
    start(&mut journal, 4000);
    let lifted = finish(&mut journal);
    assert!(lifted.first_sequence > 300, "{lifted}");
    assert!(lifted.first_sequence <= 401, "{lifted}");
    // Bounded: a hold far behind is not honoured once the journal holds more segments before
    // the one written than RETENTION_HOLD_SEGMENTS_MAX (53 records a segment here).
    hold.store(lifted.first_sequence, std::sync::atomic::Ordering::Release);
    let far = 400 + (RETENTION_HOLD_SEGMENTS_MAX + 4) * 53;
    append_up_to(&mut journal, far);
    start(&mut journal, 4000);
    let bounded = finish(&mut journal);
    assert!(bounded.first_sequence > lifted.first_sequence, "{bounded}");
    assert!(bounded.first_sequence > 447, "{bounded}");
    journal.close().unwrap();
}
