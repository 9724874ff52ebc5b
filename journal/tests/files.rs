//! Tests on real files (mmap and plain-file backends): lock refusal, file surgery (torn tail,
//! flipped bit, truncated segment), checkpoints with fallback, and the offline tools.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use clearline_journal::{
    checkpoint_file_name, inspect, record_size, segment_file_name, verify, Backend, Journal,
    JournalConfig, JournalError, SyncMode, RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE,
};

fn config(backend: Backend) -> JournalConfig {
    JournalConfig {
        segment_size: 256 * 1024,
        sync: SyncMode::Data,
        body_size_max: 8192,
        backend,
        ..JournalConfig::default()
    }
}

fn body(sequence: u64) -> Vec<u8> {
    (0..(sequence % 700) + 1)
        .map(|index| (sequence as u8).wrapping_add(index as u8))
        .collect()
}

/// Writes `count` records, all durable, and returns where each one starts.
fn write_log(dir: &Path, backend: Backend, count: u64) -> Vec<(u64, u64)> {
    let (mut journal, _) = Journal::open(dir, &config(backend)).unwrap();
    let mut places = Vec::new();
    for sequence in 1..=count {
        let record = body(sequence);
        assert_eq!(journal.append(sequence * 10, &record).unwrap(), sequence);
        let (segment, end) = journal.write_position();
        places.push((segment, end - record_size(record.len() as u64)));
        if sequence % 50 == 0 {
            journal.sync().unwrap();
        }
    }
    journal.close().unwrap();
    places
}

fn patch(dir: &Path, segment: u64, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new()
        .write(true)
        .open(dir.join(segment_file_name(segment)))
        .unwrap();
    file.write_all_at(bytes, offset).unwrap();
    file.sync_all().unwrap();
}

fn read(dir: &Path, segment: u64, offset: u64, size: usize) -> Vec<u8> {
    let file = fs::File::open(dir.join(segment_file_name(segment))).unwrap();
    let mut bytes = vec![0u8; size];
    file.read_exact_at(&mut bytes, offset).unwrap();
    bytes
}

#[test]
fn records_round_trip_on_both_backends_across_segments() {
    for backend in [Backend::Mmap, Backend::File] {
        let temporary = tempfile::tempdir().unwrap();
        let dir = temporary.path();
        let places = write_log(dir, backend, 1200);
        assert!(
            places.last().unwrap().0 >= 1,
            "the log spans several segments"
        );
        let (journal, recovery) = Journal::open(dir, &config(backend)).unwrap();
        assert_eq!(recovery.last_sequence, 1200);
        assert_eq!(recovery.last_timestamp, 12_000);
        assert!(recovery.truncated.is_none());
        let mut expected = 100;
        let count = journal
            .replay(100, |record| {
                assert_eq!(record.sequence, expected);
                assert_eq!(record.body, &body(expected)[..]);
                expected += 1;
            })
            .unwrap();
        assert_eq!(count, 1101);
        journal.close().unwrap();
        let report = verify(dir).unwrap();
        assert_eq!(report.records, 1200);
        assert!(report.to_string().contains("OK"), "{report}");
    }
}

#[test]
fn second_open_is_refused_with_the_directory_named() {
    let temporary = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(temporary.path(), &config(Backend::Mmap)).unwrap();
    let error = Journal::open(temporary.path(), &config(Backend::Mmap))
        .err()
        .unwrap();
    assert!(matches!(error, JournalError::Locked { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains(&temporary.path().display().to_string()),
        "{error}"
    );
    // The offline tools refuse too while the writer holds the lock.
    assert!(matches!(
        verify(temporary.path()),
        Err(JournalError::Locked { .. })
    ));
    journal.close().unwrap();
    assert!(Journal::open(temporary.path(), &config(Backend::Mmap)).is_ok());
}

#[test]
fn torn_tail_is_truncated_by_file_surgery() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let places = write_log(dir, Backend::Mmap, 300);
    // Tear the last record (sequence 300, never covered by a later watermark): zero the second
    // half of its header, as if the write had stopped in the middle.
    let (segment, offset) = places[299];
    patch(dir, segment, offset + 64, &[0u8; 64]);
    let report = verify(dir).unwrap();
    assert_eq!(report.last_sequence, 299);
    assert!(report.torn_tail.is_some());
    let (journal, recovery) = Journal::open(dir, &config(Backend::Mmap)).unwrap();
    let truncation = recovery.truncated.expect("the torn record is reported");
    assert_eq!(truncation.sequence, 300);
    assert_eq!((truncation.segment, truncation.offset), (segment, offset));
    assert_eq!(recovery.last_sequence, 299);
    // The dropped bytes are gone from the file.
    let size = RECORD_HEADER_SIZE as usize + body(300).len();
    assert!(read(dir, segment, offset, size)
        .iter()
        .all(|&byte| byte == 0));
    journal.close().unwrap();
    // Idempotent: a second open truncates nothing.
    let (journal, recovery) = Journal::open(dir, &config(Backend::Mmap)).unwrap();
    assert!(recovery.truncated.is_none());
    assert_eq!(recovery.last_sequence, 299);
    journal.close().unwrap();
}

#[test]
fn flipped_bit_in_the_middle_is_refused_with_its_place() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let places = write_log(dir, Backend::Mmap, 300);
    let (segment, offset) = places[149];
    let mut byte = read(dir, segment, offset + RECORD_HEADER_SIZE + 3, 1);
    byte[0] ^= 0x10;
    patch(dir, segment, offset + RECORD_HEADER_SIZE + 3, &byte);
    let error = Journal::open(dir, &config(Backend::Mmap))
        .err()
        .expect("corruption refused");
    let corruption = *error.corruption().expect("a corruption error");
    assert_eq!(corruption.sequence, 150);
    assert_eq!((corruption.segment, corruption.offset), (segment, offset));
    let message = error.to_string();
    assert!(message.contains("sequence 150"), "{message}");
    assert!(message.contains(&format!("offset {offset}")), "{message}");
    assert!(message.contains(&segment_file_name(segment)), "{message}");
    // verify names the same first problem; nothing was truncated by the refused open.
    let verify_error = verify(dir).unwrap_err();
    assert_eq!(verify_error.corruption(), Some(&corruption));
    assert_eq!(read(dir, segment, offset + RECORD_HEADER_SIZE + 3, 1), byte);
    let report = inspect(dir).unwrap().to_string();
    assert!(report.contains("FAILED"), "{report}");
    assert!(report.contains("body checksum mismatch"), "{report}");
}

#[test]
fn truncated_segment_file_is_refused() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    write_log(dir, Backend::Mmap, 100);
    let file = OpenOptions::new()
        .write(true)
        .open(dir.join(segment_file_name(0)))
        .unwrap();
    file.set_len(128 * 1024).unwrap();
    let error = Journal::open(dir, &config(Backend::Mmap))
        .err()
        .expect("refused");
    assert!(error.to_string().contains("truncated"), "{error}");
}

#[test]
fn checkpoint_round_trip_and_fallback_to_the_previous_one() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let (mut journal, _) = Journal::open(dir, &config(Backend::Mmap)).unwrap();
    for sequence in 1..=100 {
        journal.append(sequence * 10, &body(sequence)).unwrap();
    }
    journal.write_checkpoint(40, 400, b"state at 40").unwrap();
    journal.write_checkpoint(70, 700, b"state at 70").unwrap();
    journal.write_checkpoint(90, 900, b"state at 90").unwrap();
    journal.close().unwrap();
    // The newest two are kept; older ones were removed after the newest verified.
    assert!(!dir.join(checkpoint_file_name(40)).exists());
    assert!(dir.join(checkpoint_file_name(70)).exists());

    let (journal, recovery) = Journal::open(dir, &config(Backend::Mmap)).unwrap();
    let checkpoint = recovery.checkpoint.clone().unwrap();
    assert_eq!((checkpoint.sequence, checkpoint.timestamp), (90, 900));
    assert_eq!(checkpoint.image, b"state at 90");
    assert_eq!(recovery.records, 10);
    let mut replayed = Vec::new();
    journal
        .replay(checkpoint.sequence + 1, |record| {
            replayed.push(record.sequence)
        })
        .unwrap();
    assert_eq!(replayed, (91..=100).collect::<Vec<u64>>());
    journal.close().unwrap();

    // Corrupt the newest checkpoint: recovery falls back to the previous one; verify reports it.
    let path = dir.join(checkpoint_file_name(90));
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let error = verify(dir).unwrap_err();
    assert!(
        matches!(error, JournalError::CheckpointInvalid { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains(&checkpoint_file_name(90)),
        "{error}"
    );
    let (journal, recovery) = Journal::open(dir, &config(Backend::Mmap)).unwrap();
    let checkpoint = recovery.checkpoint.clone().unwrap();
    assert_eq!(checkpoint.sequence, 70);
    assert_eq!(checkpoint.image, b"state at 70");
    assert_eq!(recovery.records, 30);
    assert_eq!(recovery.checkpoints_rejected.len(), 1);
    assert!(
        recovery.to_string().contains("skipped checkpoint"),
        "{recovery}"
    );
    journal.close().unwrap();
}

#[test]
fn inspect_lists_segments_records_and_checkpoints() {
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let (mut journal, _) = Journal::open(dir, &config(Backend::Mmap)).unwrap();
    for sequence in 1..=700 {
        journal.append(sequence * 10, &body(sequence)).unwrap();
    }
    journal.write_checkpoint(500, 5000, b"image").unwrap();
    journal.close().unwrap();
    let report = inspect(dir).unwrap();
    let records: u64 = report.segments.iter().map(|segment| segment.records).sum();
    assert_eq!(records, 700);
    assert_eq!(report.segments[0].sequences.unwrap().0, 1);
    assert_eq!(report.segments[0].timestamps.unwrap().0, 10);
    assert!(report.segments[0].used_size > SEGMENT_HEADER_SIZE);
    let text = report.to_string();
    assert!(text.contains(&segment_file_name(0)), "{text}");
    assert!(text.contains("sequence 500"), "{text}");
    assert!(text.contains("verify: OK"), "{text}");
}
