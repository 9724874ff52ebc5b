//! Resident memory of the mapped segments (mmap backend, real files): once written bytes are
//! durable the journal releases the process's mapping of their pages, in batches, and all of a
//! segment's pages once it has moved on to the next one. The records stay in the files: reading
//! them back (replay, recovery, `verify`) finds every one intact.
//!
//! Resident pages are read from `/proc/self/smaps` (the `Rss:` of each segment file's mapping).
//! Tests in this binary run in parallel, but each maps only its own directory's files.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use clearline_journal::{segment_file_name, verify, Backend, Journal, JournalConfig, SyncMode};
use tempfile::TempDir;

/// Generous: the machine is shared and loaded. Release runs on the syncer thread just after it
/// publishes a durable sequence, so a test polls for it.
const DEADLINE: Duration = Duration::from_secs(20);

const MIB: u64 = 1 << 20;

/// The journal releases durable pages once this many new bytes are durable (its batch).
const RELEASE_BATCH: u64 = 64 * MIB;

/// Room for the pages around the write position and the page holding the durable end.
const MARGIN: u64 = MIB;

const BODY_SIZE: u64 = 60 * 1024;

fn config(segment_size: u64) -> JournalConfig {
    JournalConfig {
        segment_size,
        sync: SyncMode::Data,
        body_size_max: 64 * 1024,
        backend: Backend::Mmap,
        ..JournalConfig::default()
    }
}

/// The body of record `sequence`: its bytes depend on the sequence and the position.
fn body(sequence: u64) -> Vec<u8> {
    (0..BODY_SIZE)
        .map(|index| (sequence.wrapping_mul(31) ^ index.wrapping_mul(7)) as u8)
        .collect()
}

/// Bytes of `path`'s mappings in this process that are resident (`Rss:` of /proc/self/smaps).
fn resident_size(path: &Path) -> u64 {
    let smaps = fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let target = path.to_str().expect("a UTF-8 temporary path");
    let mut inside = false;
    let mut size_kib = 0u64;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if !first.ends_with(':') {
            // A mapping's header line: range, permissions, offset, device, inode, path.
            inside = line.ends_with(target) && fields.nth(4) == Some(target);
        } else if inside && first == "Rss:" {
            let value = fields.next().expect("Rss: has a value");
            size_kib += value.parse::<u64>().expect("Rss: in kB");
        }
    }
    size_kib * 1024
}

/// Polls until every segment in `segments` has at most `bound` resident bytes; returns the
/// last sizes seen (the caller asserts on them).
fn wait_resident_at_most(dir: &Path, segments: &[u64], bound: u64) -> Vec<u64> {
    let started = Instant::now();
    loop {
        let sizes: Vec<u64> = segments
            .iter()
            .map(|&id| resident_size(&dir.join(segment_file_name(id))))
            .collect();
        if sizes.iter().all(|&size| size <= bound) || started.elapsed() > DEADLINE {
            return sizes;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Appends `count` records, syncing every 64 records as group commit would, and waits until
/// all are durable.
fn append_all(journal: &mut Journal, count: u64) {
    for sequence in 1..=count {
        assert_eq!(journal.append(sequence, &body(sequence)).unwrap(), sequence);
        if sequence % 64 == 0 {
            journal.sync().unwrap();
        }
    }
    assert_eq!(journal.sync().unwrap(), count);
}

/// Every record 1..=count comes back with its timestamp and body, through the mapping.
fn check_replay(journal: &Journal, count: u64) {
    let mut next = 1u64;
    let visited = journal
        .replay(1, |record| {
            assert_eq!(record.sequence, next);
            assert_eq!(record.timestamp, next);
            assert!(record.body == body(next).as_slice(), "body of {next}");
            next += 1;
        })
        .unwrap();
    assert_eq!(visited, count);
    assert_eq!(next, count + 1);
}

/// Reopens the journal (recovery reads every record through a new mapping) and runs the
/// offline verifier.
fn check_reopen(dir: &Path, segment_size: u64, count: u64) {
    let (journal, recovery) = Journal::open(dir, &config(segment_size)).unwrap();
    assert_eq!(recovery.last_sequence, count);
    assert_eq!(recovery.records, count);
    assert!(recovery.truncated.is_none());
    check_replay(&journal, count);
    journal.close().unwrap();
    let report = verify(dir).unwrap();
    assert_eq!(report.records, count);
    assert_eq!(report.last_sequence, count);
}

#[test]
fn durable_pages_of_the_segment_being_written_are_released_in_batches() {
    let temporary = TempDir::new().unwrap();
    let dir = temporary.path();
    let segment_size = 128 * MIB;
    let count = 1600; // About 94 MiB of records, all in segment 0.
    let (mut journal, _) = Journal::open(dir, &config(segment_size)).unwrap();
    append_all(&mut journal, count);
    let (segment, written_size) = journal.write_position();
    assert_eq!(segment, 0);
    assert!(
        written_size > RELEASE_BATCH + 16 * MIB,
        "wrote {written_size} bytes"
    );

    let bound = RELEASE_BATCH + MARGIN;
    let resident = wait_resident_at_most(dir, &[0], bound)[0];
    assert!(
        resident <= bound,
        "segment 0 keeps {} MiB resident after {} MiB written and durable (bound {} MiB)",
        resident / MIB,
        written_size / MIB,
        bound / MIB
    );
    eprintln!(
        "segment 0: {} KiB resident after {} KiB written",
        resident / 1024,
        written_size / 1024
    );

    // The records are still in the file: reading faults the pages back in.
    check_replay(&journal, count);
    journal.close().unwrap();
    check_reopen(dir, segment_size, count);
}

#[test]
fn a_segment_the_journal_moved_on_from_is_released_whole() {
    let temporary = TempDir::new().unwrap();
    let dir = temporary.path();
    let segment_size = 16 * MIB;
    let count = 640; // About 38 MiB: segments 0 and 1 full, segment 2 partly written.
    let (mut journal, _) = Journal::open(dir, &config(segment_size)).unwrap();
    append_all(&mut journal, count);
    assert_eq!(journal.write_position().0, 2);

    let resident = wait_resident_at_most(dir, &[0, 1], 0);
    assert_eq!(
        resident,
        [0, 0],
        "segments 0 and 1 (16 MiB each, full and durable) keep these bytes resident"
    );

    check_replay(&journal, count);
    journal.close().unwrap();
    check_reopen(dir, segment_size, count);
}

#[test]
fn recovery_releases_the_pages_it_read() {
    let temporary = TempDir::new().unwrap();
    let dir = temporary.path();
    let segment_size = 16 * MIB;
    let count = 400; // About 24 MiB: segment 0 full, segment 1 partly written.
    {
        let (mut journal, _) = Journal::open(dir, &config(segment_size)).unwrap();
        append_all(&mut journal, count);
        journal.close().unwrap();
    }
    let (mut journal, recovery) = Journal::open(dir, &config(segment_size)).unwrap();
    assert_eq!(recovery.last_sequence, count);
    // Recovery read both segments through their mappings; the one it will not write again
    // is released at once.
    let resident = resident_size(&dir.join(segment_file_name(0)));
    assert_eq!(resident, 0, "segment 0 after recovery");

    for sequence in count + 1..=count + 10 {
        assert_eq!(journal.append(sequence, &body(sequence)).unwrap(), sequence);
    }
    assert_eq!(journal.sync().unwrap(), count + 10);
    check_replay(&journal, count + 10);
    journal.close().unwrap();
    check_reopen(dir, segment_size, count + 10);
}
