//! Mirroring on real files: a backup journal fed by a reader of its primary while the primary
//! writes ends byte-identical to it and replays the same records; `append_copied` refuses any
//! record that is not exactly the next one (and then writes nothing); a new journal takes
//! another's generation; a diverged mirror is cut back to the common prefix, reopens cleanly,
//! and follows another branch; the reader reports retired records and gives header checksums.
//!
//! Segments are the smallest allowed (64 KiB) and bodies are seeded random sizes, so records
//! cross many segments and many leave the rest of a segment empty.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use clearline_journal::le::{u128_at, u32_at, u64_at};
use clearline_journal::sim::{SimDisk, SimStorage};
use clearline_journal::{
    record_size, segment_file_name, Backend, Journal, JournalConfig, JournalError, ReadOutcome,
    RecordReader, Recovery, SyncMode, TruncatedTail, RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE,
    SEGMENT_SIZE_MIN,
};
use clearline_test_support::Rng;
use xxhash_rust::xxh3::xxh3_128;

const BODY_SIZE_MAX: u64 = 3000;
/// Generous: the machine is shared and loaded.
const DEADLINE: Duration = Duration::from_secs(30);

fn config(sync: SyncMode) -> JournalConfig {
    JournalConfig {
        segment_size: SEGMENT_SIZE_MIN,
        sync,
        body_size_max: BODY_SIZE_MAX,
        backend: Backend::Mmap,
        ..JournalConfig::default()
    }
}

/// One record as the caller gave it and replay returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    sequence: u64,
    timestamp: u64,
    body: Vec<u8>,
}

/// `count` records after `first - 1`: seeded random bodies of 0 to `BODY_SIZE_MAX` bytes
/// (mostly small, some large) and increasing timestamps.
fn entries(seed: u64, first: u64, count: u64) -> Vec<Entry> {
    let mut rng = Rng::new(seed);
    (first..first + count)
        .map(|sequence| {
            let size = if rng.chance(1, 8) {
                rng.range(1000, BODY_SIZE_MAX)
            } else {
                rng.below(400)
            };
            let mut body = vec![0u8; size as usize];
            rng.fill(&mut body);
            Entry {
                sequence,
                timestamp: sequence * 1000 + rng.below(1000),
                body,
            }
        })
        .collect()
}

fn append_all(journal: &mut Journal, entries: &[Entry]) {
    for entry in entries {
        assert_eq!(
            journal.append(entry.timestamp, &entry.body).unwrap(),
            entry.sequence
        );
    }
}

fn replayed(journal: &Journal, from: u64) -> Vec<Entry> {
    let mut entries = Vec::new();
    journal
        .replay(from, |record| {
            entries.push(Entry {
                sequence: record.sequence,
                timestamp: record.timestamp,
                body: record.body.to_vec(),
            });
        })
        .unwrap();
    entries
}

/// Splits the output of [`RecordReader::read`] into whole records.
fn split(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let size = record_size(u64::from(u32_at(bytes, 60))) as usize;
        records.push(bytes[..size].to_vec());
        bytes = &bytes[size..];
    }
    records
}

/// Every record `from..=up_to` through one reader, in calls of at most `bytes_max` bytes.
fn read_all(reader: &mut RecordReader, from: u64, up_to: u64, bytes_max: usize) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    let mut next = from;
    let mut out = Vec::new();
    while next <= up_to {
        out.clear();
        match reader.read(next, up_to, &mut out, bytes_max).unwrap() {
            ReadOutcome::Read {
                records: count,
                next_sequence,
            } => {
                assert!(count >= 1, "a read with records available returns one");
                assert_eq!(next_sequence, next + count);
                assert!(count == 1 || out.len() <= bytes_max, "{} bytes", out.len());
                let split = split(&out);
                assert_eq!(split.len() as u64, count);
                records.extend(split);
                next = next_sequence;
            }
            ReadOutcome::Retired { first_available } => {
                panic!("records from {next} retired (first available {first_available})")
            }
        }
    }
    records
}

fn sequence_of(record: &[u8]) -> u64 {
    u64_at(record, 88)
}

/// A new journal in `dir` with `generation`.
fn new_mirror(dir: &Path, sync: SyncMode, generation: u64) -> Journal {
    let (mut journal, recovery) = Journal::open(dir, &config(sync)).unwrap();
    assert_eq!(recovery.last_sequence, 0);
    journal.set_generation_if_empty(generation).unwrap();
    assert_eq!(journal.generation(), generation);
    journal
}

fn copy_all(mirror: &mut Journal, records: &[Vec<u8>]) {
    for record in records {
        let sequence = mirror.append_copied(record).unwrap();
        assert_eq!(sequence, sequence_of(record));
    }
}

/// Checks that the segment files holding records are byte-identical in both directories: every
/// segment up to the one being written in `primary` (past the log's end both are zero).
fn assert_identical(primary: &Path, mirror: &Path, last_segment: u64) {
    for id in 0..=last_segment {
        let name = segment_file_name(id);
        let expected = fs::read(primary.join(&name)).unwrap();
        let found = fs::read(mirror.join(&name)).unwrap();
        assert_eq!(expected.len(), found.len(), "{name}");
        if let Some(at) = (0..expected.len()).find(|&at| expected[at] != found[at]) {
            panic!("{name} differs at byte {at}");
        }
    }
}

#[test]
fn a_mirror_fed_while_the_primary_writes_is_byte_identical_and_replays_the_same() {
    let primary_dir = tempfile::tempdir().unwrap();
    let mirror_dir = tempfile::tempdir().unwrap();
    let (mut primary, _) = Journal::open(primary_dir.path(), &config(SyncMode::Data)).unwrap();
    let mut mirror = new_mirror(mirror_dir.path(), SyncMode::Data, primary.generation());
    let written = entries(1, 1, 3000);
    let total = written.len() as u64;
    let mut reader = primary.reader().unwrap();
    let durability = primary.durability();
    let mirroring = std::thread::spawn(move || {
        let deadline = Instant::now() + DEADLINE;
        let mut next = 1;
        let mut out = Vec::with_capacity(1 << 16);
        let mut calls = 0u64;
        while next <= total {
            assert!(Instant::now() < deadline, "the mirror did not catch up");
            let durable = durability.durable_sequence();
            if durable < next {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            out.clear();
            let ReadOutcome::Read { next_sequence, .. } =
                reader.read(next, durable, &mut out, 16 << 10).unwrap()
            else {
                panic!("nothing is retired");
            };
            calls += 1;
            for record in split(&out) {
                assert_eq!(mirror.append_copied(&record).unwrap(), sequence_of(&record));
            }
            next = next_sequence;
        }
        (mirror, calls)
    });
    for chunk in written.chunks(37) {
        append_all(&mut primary, chunk);
        std::thread::yield_now();
    }
    primary.sync().unwrap();
    let (mut mirror, calls) = mirroring.join().unwrap();
    assert!(calls > 10, "{calls} reads: the mirror followed the writer");
    assert_eq!(mirror.written_sequence(), total);
    assert_eq!(mirror.write_position(), primary.write_position());
    mirror.sync().unwrap();
    let (last_segment, _) = primary.write_position();
    assert!(last_segment >= 5, "records cross many segments");
    assert_identical(primary_dir.path(), mirror_dir.path(), last_segment);
    assert_eq!(replayed(&mirror, 1), written);
    mirror.close().unwrap();
    primary.close().unwrap();

    let (mirror, recovery) = Journal::open(mirror_dir.path(), &config(SyncMode::Data)).unwrap();
    assert!(recovery.truncated.is_none(), "{recovery}");
    assert_eq!(recovery.last_sequence, total);
    assert_eq!(replayed(&mirror, 1), written);
}

/// A record's header with `field` (at byte `at`) replaced by `value`, and a valid checksum.
fn patched(record: &[u8], at: usize, value: &[u8]) -> Vec<u8> {
    let mut record = record.to_vec();
    record[at..at + value.len()].copy_from_slice(value);
    let checksum = xxh3_128(&record[16..RECORD_HEADER_SIZE as usize]);
    record[..16].copy_from_slice(&checksum.to_le_bytes());
    record
}

fn refusal(mirror: &mut Journal, record: &[u8]) -> &'static str {
    let before = (mirror.written_sequence(), mirror.write_position());
    let error = mirror.append_copied(record).unwrap_err();
    assert_eq!(
        (mirror.written_sequence(), mirror.write_position()),
        before,
        "a refused copy moves nothing"
    );
    match error {
        JournalError::CopiedRecordRefused { sequence, reason } => {
            assert_eq!(sequence, mirror.written_sequence() + 1);
            reason
        }
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn append_copied_refuses_anything_but_the_next_record_and_writes_nothing() {
    let primary_dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let mirror_dir = tempfile::tempdir().unwrap();
    let (mut primary, _) = Journal::open(primary_dir.path(), &config(SyncMode::Manual)).unwrap();
    let written = entries(2, 1, 400);
    append_all(&mut primary, &written);
    primary.sync().unwrap();
    let records = read_all(&mut primary.reader().unwrap(), 1, 400, 1 << 20);
    assert_eq!(records.len(), 400);
    // Another journal's records: same places, another generation.
    let (mut other, _) = Journal::open(other_dir.path(), &config(SyncMode::Manual)).unwrap();
    append_all(&mut other, &written);
    other.sync().unwrap();
    let others = read_all(&mut other.reader().unwrap(), 1, 400, 1 << 20);

    let mut mirror = new_mirror(mirror_dir.path(), SyncMode::Manual, primary.generation());
    let mut copied = 0usize;
    let mut refusals = 0usize;
    let mut crossed_a_segment = false;
    while copied < records.len() {
        let record = &records[copied];
        let sequence = copied as u64 + 1;
        let place = (u64_at(record, 72), u64_at(record, 80));
        if copied % 40 == 0 || place.1 == SEGMENT_HEADER_SIZE {
            refusals += check_refusals(&mut mirror, &records, copied, &others[copied]);
        }
        if place.1 == SEGMENT_HEADER_SIZE && sequence > 1 {
            crossed_a_segment = true;
            // The record fits nowhere but at the start of the next segment.
            assert_ne!(place.0, mirror.write_position().0);
        }
        assert_eq!(mirror.append_copied(record).unwrap(), sequence);
        assert_eq!(mirror.write_position().0, place.0);
        copied += 1;
    }
    assert!(crossed_a_segment);
    assert!(refusals > 1000, "{refusals} refusals checked");
    mirror.sync().unwrap();
    assert_identical(
        primary_dir.path(),
        mirror_dir.path(),
        primary.write_position().0,
    );
    assert_eq!(replayed(&mirror, 1), written);
}

/// Tries every kind of wrong record where `records[next]` belongs; returns how many were
/// refused (all of them, or the test fails).
fn check_refusals(mirror: &mut Journal, records: &[Vec<u8>], next: usize, other: &[u8]) -> usize {
    let record = &records[next];
    let mut count = 0;
    let refuse = |mirror: &mut Journal, bad: &[u8], expected: &str| {
        let reason = refusal(mirror, bad);
        assert!(
            reason.contains(expected),
            "{reason:?}, expected {expected:?}"
        );
    };
    // Wrong sequence, at the right place, with a valid header checksum.
    let sequence = u64_at(record, 88);
    let ahead = patched(record, 88, &(sequence + 1).to_le_bytes());
    refuse(mirror, &ahead, "sequence is not the next one");
    count += 1;
    if sequence > 1 {
        let behind = patched(record, 88, &(sequence - 1).to_le_bytes());
        refuse(mirror, &behind, "sequence is not the next one");
        count += 1;
    }
    // Broken chain.
    let previous = u128_at(record, 32) ^ 1;
    let unchained = patched(record, 32, &previous.to_le_bytes());
    refuse(mirror, &unchained, "hash chain broken");
    count += 1;
    // Another generation, with or without a valid checksum.
    let generation = u64_at(record, 64) ^ 0x100;
    let foreign = patched(record, 64, &generation.to_le_bytes());
    refuse(mirror, &foreign, "another journal generation");
    count += 1;
    refuse(mirror, other, "another journal generation");
    count += 1;
    // Wrong offset, and a record that names the next segment although it fits here.
    let offset = u64_at(record, 80) + 64;
    let misplaced = patched(record, 80, &offset.to_le_bytes());
    refuse(mirror, &misplaced, "another offset");
    count += 1;
    let (segment, _) = mirror.write_position();
    if u64_at(record, 72) == segment {
        let mut early = patched(record, 72, &(segment + 1).to_le_bytes());
        early = patched(&early, 80, &SEGMENT_HEADER_SIZE.to_le_bytes());
        refuse(mirror, &early, "fits in the current one");
        count += 1;
    }
    // A record that is not the next one at all.
    if let Some(later) = records.get(next + 1) {
        let reason = refusal(mirror, later);
        let misplaced = ["offset", "segment", "sequence"];
        assert!(
            misplaced.iter().any(|word| reason.contains(word)),
            "{reason}"
        );
        count += 1;
    }
    // Wrong length.
    refuse(mirror, &record[..record.len() - 64], "length");
    count += 1;
    let mut longer = record.clone();
    longer.extend_from_slice(&[0; 64]);
    refuse(mirror, &longer, "length");
    count += 1;
    refuse(mirror, &record[..100], "shorter than a record header");
    count += 1;
    // Any flipped byte: header, body or padding.
    for at in 0..record.len() {
        let mut flipped = record.clone();
        flipped[at] ^= 0x10;
        refusal(mirror, &flipped);
        count += 1;
    }
    count
}

#[test]
fn set_generation_if_empty_works_on_a_new_journal_and_refuses_one_with_records() {
    let dir = tempfile::tempdir().unwrap();
    let generation = 0x5eed_0000_1234_5678;
    let journal = new_mirror(dir.path(), SyncMode::Data, generation);
    journal.close().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), &config(SyncMode::Data)).unwrap();
    assert_eq!(
        journal.generation(),
        generation,
        "the segment headers were rewritten"
    );
    let segments = journal.segment_sizes().count();
    assert!(segments >= 2, "the current segment and its spare");
    for (id, _) in journal.segment_sizes() {
        let bytes = fs::read(dir.path().join(segment_file_name(id))).unwrap();
        assert_eq!(u64_at(&bytes, 32), generation, "segment {id}");
    }
    journal.append(1, b"first").unwrap();
    let error = journal.set_generation_if_empty(7).unwrap_err();
    assert!(
        matches!(error, JournalError::JournalNotEmpty { reason } if reason.contains("records")),
        "{error}"
    );
    assert_eq!(journal.generation(), generation);
    journal.close().unwrap();
    let (journal, recovery) = Journal::open(dir.path(), &config(SyncMode::Data)).unwrap();
    assert_eq!(journal.generation(), generation);
    assert_eq!(recovery.last_sequence, 1);
}

#[test]
fn segment_sizes_are_the_files_and_segment_size_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), &config(SyncMode::None)).unwrap();
    assert_eq!(journal.segment_size(), SEGMENT_SIZE_MIN);
    append_all(&mut journal, &entries(3, 1, 50));
    journal.close().unwrap();
    let larger = JournalConfig {
        segment_size: 2 * SEGMENT_SIZE_MIN,
        ..config(SyncMode::None)
    };
    let (mut journal, _) = Journal::open(dir.path(), &larger).unwrap();
    assert_eq!(journal.segment_size(), 2 * SEGMENT_SIZE_MIN);
    let before: Vec<(u64, u64)> = journal.segment_sizes().collect();
    assert!(
        before.iter().all(|&(_, size)| size == SEGMENT_SIZE_MIN),
        "{before:?}"
    );
    append_all(&mut journal, &entries(4, 51, 400));
    let after: Vec<(u64, u64)> = journal.segment_sizes().collect();
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "existing segments keep their size"
    );
    assert!(after.len() > before.len());
    assert!(after[before.len()..]
        .iter()
        .all(|&(_, size)| size == 2 * SEGMENT_SIZE_MIN));
}

/// Two primaries that share the records 1..=`prefix` and then diverge: the second is a mirror
/// of the first's prefix that then appends its own records.
struct Branches {
    first_dir: tempfile::TempDir,
    second_dir: tempfile::TempDir,
    first: Journal,
    second: Journal,
    first_entries: Vec<Entry>,
    second_entries: Vec<Entry>,
}

fn branches(prefix: u64, first_count: u64, second_count: u64) -> Branches {
    let first_dir = tempfile::tempdir().unwrap();
    let second_dir = tempfile::tempdir().unwrap();
    let (mut first, _) = Journal::open(first_dir.path(), &config(SyncMode::Manual)).unwrap();
    let shared = entries(5, 1, prefix);
    append_all(&mut first, &shared);
    first.sync().unwrap();
    let mut second = new_mirror(second_dir.path(), SyncMode::Manual, first.generation());
    copy_all(
        &mut second,
        &read_all(&mut first.reader().unwrap(), 1, prefix, 1 << 16),
    );
    let first_tail = entries(6, prefix + 1, first_count - prefix);
    let second_tail = entries(7, prefix + 1, second_count - prefix);
    append_all(&mut first, &first_tail);
    append_all(&mut second, &second_tail);
    first.sync().unwrap();
    second.sync().unwrap();
    let mut first_entries = shared.clone();
    first_entries.extend(first_tail);
    let mut second_entries = shared;
    second_entries.extend(second_tail);
    Branches {
        first_dir,
        second_dir,
        first,
        second,
        first_entries,
        second_entries,
    }
}

#[test]
fn a_truncated_mirror_reopens_with_the_prefix_and_follows_another_branch() {
    let prefix = 700;
    let branches = branches(prefix, 1500, 1300);
    let (first, second) = (&branches.first, &branches.second);
    let mut first_reader = first.reader().unwrap();
    let mut second_reader = second.reader().unwrap();
    let common = first_reader.checksum_at(prefix).unwrap();
    assert!(common.is_some());
    assert_eq!(second_reader.checksum_at(prefix).unwrap(), common);
    assert_ne!(
        first_reader.checksum_at(prefix + 1).unwrap(),
        second_reader.checksum_at(prefix + 1).unwrap(),
        "the branches diverge after the prefix"
    );

    // A mirror of the first branch, written in Data mode so that truncation meets a syncer.
    let mirror_dir = tempfile::tempdir().unwrap();
    let mut mirror = new_mirror(mirror_dir.path(), SyncMode::Data, first.generation());
    copy_all(&mut mirror, &read_all(&mut first_reader, 1, 1500, 1 << 16));
    let durability = mirror.durability();
    assert_eq!(
        mirror.truncate_after(1500).unwrap().records,
        0,
        "nothing after the end"
    );
    let (segment_before, _) = mirror.write_position();
    let dropped = mirror.truncate_after(prefix).unwrap();
    assert_eq!(
        dropped,
        TruncatedTail {
            records: 1500 - prefix,
            first_sequence: prefix + 1,
            last_sequence: 1500,
            last_timestamp: branches.first_entries[1499].timestamp,
        }
    );
    assert_eq!(mirror.written_sequence(), prefix);
    assert!(durability.durable_sequence() <= prefix);
    let (segment_after, _) = mirror.write_position();
    assert!(
        segment_after + 3 <= segment_before,
        "whole segments were dropped"
    );
    let mut mirror_reader = mirror.reader().unwrap();
    assert_eq!(mirror_reader.checksum_at(prefix).unwrap(), common);
    assert_eq!(mirror_reader.checksum_at(prefix + 1).unwrap(), None);
    mirror.close().unwrap();

    let (mut mirror, recovery) = Journal::open(mirror_dir.path(), &config(SyncMode::Data)).unwrap();
    assert!(recovery.truncated.is_none(), "{recovery}");
    assert_eq!(recovery.last_sequence, prefix);
    assert_eq!(
        recovery.last_timestamp,
        branches.first_entries[prefix as usize - 1].timestamp
    );
    assert_eq!(
        replayed(&mirror, 1),
        &branches.first_entries[..prefix as usize]
    );
    copy_all(
        &mut mirror,
        &read_all(&mut second_reader, prefix + 1, 1300, 1 << 16),
    );
    mirror.sync().unwrap();
    assert_eq!(replayed(&mirror, 1), branches.second_entries);
    assert_identical(
        branches.second_dir.path(),
        mirror_dir.path(),
        second.write_position().0,
    );
    mirror.close().unwrap();
    let (mirror, recovery) = Journal::open(mirror_dir.path(), &config(SyncMode::Data)).unwrap();
    assert!(recovery.truncated.is_none(), "{recovery}");
    assert_eq!(replayed(&mirror, 1), branches.second_entries);
    assert!(branches.first_dir.path().exists());
}

#[test]
fn truncation_continues_in_place_without_reopening_and_in_manual_mode() {
    let prefix = 300;
    let branches = branches(prefix, 900, 800);
    let mirror_dir = tempfile::tempdir().unwrap();
    let mut mirror = new_mirror(
        mirror_dir.path(),
        SyncMode::Manual,
        branches.first.generation(),
    );
    let mut first_reader = branches.first.reader().unwrap();
    let mut second_reader = branches.second.reader().unwrap();
    // Unsynced records past the cut: truncation syncs them first, then drops them.
    copy_all(&mut mirror, &read_all(&mut first_reader, 1, 900, 1 << 16));
    // A reader of the mirror whose kept place (sequence 501 of the first branch) is stale
    // after the cut.
    let mut mirror_reader = mirror.reader().unwrap();
    assert_eq!(read_all(&mut mirror_reader, 1, 500, 1 << 16).len(), 500);
    assert_eq!(mirror.truncate_after(prefix).unwrap().records, 900 - prefix);
    assert_eq!(mirror.durability().durable_sequence(), prefix);
    let records = read_all(&mut second_reader, prefix + 1, 800, 1 << 16);
    assert_ne!(
        u64_at(&records[500 - prefix as usize], 80),
        u64_at(&read_all(&mut first_reader, 501, 501, 0)[0], 80),
        "record 501 is at another offset in each branch"
    );
    copy_all(&mut mirror, &records);
    assert_eq!(mirror.sync().unwrap(), 800);
    let expected = second_reader.checksum_at(600).unwrap();
    assert!(expected.is_some());
    assert_eq!(mirror_reader.checksum_at(600).unwrap(), expected);
    let continued = read_all(&mut mirror_reader, 501, 800, 1 << 16);
    assert_eq!(
        continued,
        &records[500 - prefix as usize..],
        "the reader found its place in the new branch"
    );
    assert_eq!(replayed(&mirror, 1), branches.second_entries);
    mirror.close().unwrap();
    let (mirror, recovery) = Journal::open(mirror_dir.path(), &config(SyncMode::Manual)).unwrap();
    assert!(recovery.truncated.is_none(), "{recovery}");
    assert_eq!(replayed(&mirror, 1), branches.second_entries);
}

#[test]
fn truncation_is_refused_below_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), &config(SyncMode::Data)).unwrap();
    let written = entries(8, 1, 300);
    append_all(&mut journal, &written);
    journal
        .write_checkpoint(200, written[199].timestamp, b"image")
        .unwrap();
    let error = journal.truncate_after(199).unwrap_err();
    assert!(
        matches!(error, JournalError::TruncationRefused { sequence: 199, .. }),
        "{error}"
    );
    assert_eq!(journal.written_sequence(), 300);
    assert_eq!(journal.truncate_after(200).unwrap().records, 100);
    assert_eq!(replayed(&journal, 1), &written[..200]);
    journal.close().unwrap();
    let (journal, recovery) = Journal::open(dir.path(), &config(SyncMode::Data)).unwrap();
    assert!(recovery.truncated.is_none(), "{recovery}");
    assert_eq!(
        recovery.checkpoint.map(|checkpoint| checkpoint.sequence),
        Some(200)
    );
    assert_eq!(journal.written_sequence(), 200);
}

#[test]
fn the_reader_reports_retired_records_and_checksums_match_the_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), &config(SyncMode::Data)).unwrap();
    let written = entries(9, 1, 1200);
    append_all(&mut journal, &written[..500]);
    journal
        .write_checkpoint(400, written[399].timestamp, b"first")
        .unwrap();
    append_all(&mut journal, &written[500..]);
    journal
        .write_checkpoint(1100, written[1099].timestamp, b"second")
        .unwrap();
    let first = journal.first_sequence();
    assert!(journal.first_segment() > 0, "segments were retired");
    assert!(first > 1 && first <= 401, "first kept sequence {first}");

    let mut reader = journal.reader().unwrap();
    let mut out = Vec::new();
    assert_eq!(
        reader.read(1, 1200, &mut out, 1 << 20).unwrap(),
        ReadOutcome::Retired {
            first_available: first
        }
    );
    assert_eq!(
        reader.read(first - 1, 1200, &mut out, 1 << 20).unwrap(),
        ReadOutcome::Retired {
            first_available: first
        }
    );
    assert!(out.is_empty());
    assert_eq!(reader.checksum_at(first - 1).unwrap(), None);
    assert_eq!(reader.checksum_at(0).unwrap(), Some(0), "the empty prefix");
    assert_eq!(reader.checksum_at(1201).unwrap(), None, "not written");

    let records = read_all(&mut reader, first, 1200, 20 << 10);
    assert_eq!(records.len() as u64, 1201 - first);
    let mut replay = written[first as usize - 1..].iter();
    for pair in records.windows(2) {
        let (record, next) = (&pair[0], &pair[1]);
        let sequence = sequence_of(record);
        let checksum = reader.checksum_at(sequence).unwrap();
        assert_eq!(checksum, Some(u128_at(record, 0)), "sequence {sequence}");
        assert_eq!(checksum, Some(u128_at(next, 32)), "chain at {sequence}");
        let entry = replay.next().unwrap();
        assert_eq!(entry.sequence, sequence);
        assert_eq!(u64_at(record, 96), entry.timestamp);
        let body_size = entry.body.len();
        assert_eq!(&record[128..128 + body_size], &entry.body[..]);
    }

    // Any `from`, in any order, and at least one record even when it exceeds `bytes_max`.
    let mut rng = Rng::new(10);
    for _ in 0..200 {
        let from = rng.range(first, 1200);
        let up_to = rng.range(from, 1200);
        out.clear();
        let outcome = reader.read(from, up_to, &mut out, 0).unwrap();
        assert_eq!(
            outcome,
            ReadOutcome::Read {
                records: 1,
                next_sequence: from + 1
            }
        );
        assert_eq!(out, records[(from - first) as usize]);
    }
    let reader_in_a_thread = std::thread::spawn(move || reader.checksum_at(first).unwrap());
    assert!(reader_in_a_thread.join().unwrap().is_some());
    journal.close().unwrap();
}

#[test]
fn a_journal_started_from_a_checkpoint_and_a_segment_prefix_follows_its_primary() {
    let primary_dir = tempfile::tempdir().unwrap();
    let (mut primary, _) = Journal::open(primary_dir.path(), &config(SyncMode::Data)).unwrap();
    let written = entries(21, 1, 1500);
    append_all(&mut primary, &written[..500]);
    primary
        .write_checkpoint(400, written[399].timestamp, b"first")
        .unwrap();
    append_all(&mut primary, &written[500..1200]);
    primary
        .write_checkpoint(1100, written[1099].timestamp, b"second")
        .unwrap();
    primary.sync().unwrap();
    let first = primary.first_sequence();
    assert!(first > 1, "records were retired");
    let mut reader = primary.reader().unwrap();
    assert_eq!(reader.end_of(0).unwrap(), None);
    assert_eq!(reader.end_of(first - 1).unwrap(), None, "retired");
    assert_eq!(reader.end_of(1201).unwrap(), None, "not written");
    // A record ends where the next one starts, or at the end of its segment's records.
    let (segment, end) = reader.end_of(1100).unwrap().unwrap();
    let (next_segment, next_end) = reader.end_of(1101).unwrap().unwrap();
    let next_size = record_size(written[1100].body.len() as u64);
    assert!(
        (next_segment == segment && next_end == end + next_size)
            || (next_segment == segment + 1 && next_end == SEGMENT_HEADER_SIZE + next_size),
        "1100 ends at {segment}:{end}, 1101 at {next_segment}:{next_end}"
    );

    // A backup starts with the checkpoint file and the segment's bytes up to that end.
    let mirror_dir = tempfile::tempdir().unwrap();
    let checkpoint = clearline_journal::checkpoint_file_name(1100);
    fs::copy(
        primary_dir.path().join(&checkpoint),
        mirror_dir.path().join(&checkpoint),
    )
    .unwrap();
    let name = segment_file_name(segment);
    let bytes = fs::read(primary_dir.path().join(&name)).unwrap();
    let file = fs::File::create(mirror_dir.path().join(&name)).unwrap();
    file.set_len(bytes.len() as u64).unwrap();
    file.write_all_at(&bytes[..end as usize], 0).unwrap();
    drop(file);
    let (mut mirror, recovery) = Journal::open(mirror_dir.path(), &config(SyncMode::Data)).unwrap();
    let loaded = recovery.checkpoint.expect("the checkpoint loads");
    assert_eq!((loaded.sequence, &loaded.image[..]), (1100, &b"second"[..]));
    assert_eq!(recovery.last_sequence, 1100);
    assert_eq!(recovery.records, 0);

    // It follows by copying, and ends byte-identical from that segment on.
    append_all(&mut primary, &written[1200..]);
    primary.sync().unwrap();
    copy_all(&mut mirror, &read_all(&mut reader, 1101, 1500, 64 << 10));
    assert_eq!(replayed(&mirror, 1101), replayed(&primary, 1101));
    let last = primary.write_position().0;
    for id in segment..=last {
        let name = segment_file_name(id);
        let expected = fs::read(primary_dir.path().join(&name)).unwrap();
        let found = fs::read(mirror_dir.path().join(&name)).unwrap();
        assert!(expected == found, "{name} differs");
    }
    mirror.close().unwrap();
    primary.close().unwrap();
}

#[test]
fn a_reader_of_a_journal_that_does_not_have_the_records_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (mut journal, _) = Journal::open(dir.path(), &config(SyncMode::Data)).unwrap();
    let mut reader = journal.reader().unwrap();
    let mut out = Vec::new();
    assert_eq!(
        reader.read(1, 0, &mut out, 1 << 20).unwrap(),
        ReadOutcome::Read {
            records: 0,
            next_sequence: 1
        }
    );
    assert_eq!(reader.checksum_at(1).unwrap(), None);
    // Asked for a record that is not written: an error, never a record.
    let error = reader.read(1, 1, &mut out, 1 << 20).unwrap_err();
    assert!(error.corruption().is_some(), "{error}");
    for sequence in 1..=3u64 {
        journal.append(sequence, &[sequence as u8; 100]).unwrap();
    }
    // The records written are handed out; the first one missing is an error at the next call.
    assert_eq!(
        reader.read(1, 4, &mut out, 1 << 20).unwrap(),
        ReadOutcome::Read {
            records: 3,
            next_sequence: 4
        }
    );
    assert_eq!(split(&out).len(), 3);
    let error = reader.read(4, 4, &mut out, 1 << 20).unwrap_err();
    assert!(error.corruption().is_some(), "{error}");
    // A damaged record is never handed out.
    let file = fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(segment_file_name(0)))
        .unwrap();
    file.write_all_at(&[0xff], SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE + 7)
        .unwrap();
    let mut fresh = journal.reader().unwrap();
    out.clear();
    let error = fresh.read(1, 3, &mut out, 1 << 20).unwrap_err();
    assert!(out.is_empty());
    assert!(
        error.to_string().contains("body checksum mismatch"),
        "{error}"
    );
}

#[test]
fn a_copied_record_is_written_only_once_its_watermark_is_durable_here() {
    let primary_dir = tempfile::tempdir().unwrap();
    let mirror_dir = tempfile::tempdir().unwrap();
    let (mut primary, _) = Journal::open(primary_dir.path(), &config(SyncMode::Manual)).unwrap();
    for chunk in entries(12, 1, 200).chunks(10) {
        append_all(&mut primary, chunk);
        primary.sync().unwrap();
    }
    let records = read_all(&mut primary.reader().unwrap(), 1, 200, 1 << 20);
    let mut mirror = new_mirror(mirror_dir.path(), SyncMode::Manual, primary.generation());
    let durability = mirror.durability();
    let mut watermark_max = 0;
    for record in &records {
        let watermark = u64_at(record, 104);
        watermark_max = watermark_max.max(watermark);
        mirror.append_copied(record).unwrap();
        assert!(
            durability.durable_sequence() >= watermark,
            "record {} claims {watermark} durable",
            sequence_of(record)
        );
    }
    assert_eq!(watermark_max, 190, "the primary's watermarks were copied");
    assert!(
        durability.durable_sequence() < 200,
        "no sync beyond what was needed"
    );
}

fn open_sim(disk: &SimDisk) -> Result<(Journal, Recovery), JournalError> {
    let storage = SimStorage::open(disk).expect("the previous journal was dropped");
    Journal::open_storage(Box::new(storage), &config(SyncMode::Manual))
}

/// Records 1..=300, synced every 10 (so later records' watermarks cover earlier ones, as on a
/// primary under load), then `truncate_after(100)` crashing after `operations` storage
/// operations. Returns whether the crash happened.
fn crash_while_truncating(operations: u64) -> bool {
    let disk = SimDisk::new(0x7a11_0000 + operations);
    let (mut journal, _) = open_sim(&disk).unwrap();
    let written = entries(13, 1, 300);
    for chunk in written.chunks(10) {
        append_all(&mut journal, chunk);
        journal.sync().unwrap();
    }
    disk.crash_after(operations);
    let outcome = journal.truncate_after(100);
    let crashed = disk.crashed();
    if !crashed {
        assert_eq!(outcome.unwrap().records, 200);
    }
    drop(journal);
    disk.crash();

    let (journal, recovery) = open_sim(&disk)
        .unwrap_or_else(|error| panic!("crash after {operations} operations: {error}"));
    let last = recovery.last_sequence;
    assert!((100..=300).contains(&last), "after {operations}: {last}");
    if !crashed {
        assert_eq!(last, 100);
    }
    assert_eq!(replayed(&journal, 1), &written[..last as usize]);
    crashed
}

#[test]
fn a_crash_at_any_step_of_a_truncation_leaves_a_log_that_opens() {
    let mut operations = 0;
    while crash_while_truncating(operations) {
        operations += 1;
        assert!(operations < 2000, "truncation never completes");
    }
    assert!(
        operations > 10,
        "the crash points covered the steps ({operations})"
    );
}

/// Copies `records` into a new simulated mirror that crashes after `operations` storage
/// operations; the mirror must open again with a prefix of them. Returns whether it crashed.
fn crash_while_mirroring(records: &[Vec<u8>], generation: u64, operations: u64) -> bool {
    let disk = SimDisk::new(0x3177_0000 + operations);
    let (mut mirror, _) = open_sim(&disk).unwrap();
    mirror.set_generation_if_empty(generation).unwrap();
    mirror.sync().unwrap();
    disk.crash_after(operations);
    let mut copied = 0u64;
    for record in records {
        if mirror.append_copied(record).is_err() {
            break;
        }
        copied += 1;
    }
    let closed = mirror.close();
    let crashed = disk.crashed();
    if !crashed {
        assert_eq!(copied, records.len() as u64);
        closed.unwrap();
    }
    disk.crash();
    let (mirror, recovery) = open_sim(&disk)
        .unwrap_or_else(|error| panic!("crash after {operations} operations: {error}"));
    let last = recovery.last_sequence;
    // The copy that failed may have reached the device whole: an I/O error says nothing of it.
    assert!(
        last <= copied + 1,
        "after {operations}: {last} > {copied} + 1"
    );
    if !crashed {
        assert_eq!(last, copied);
    }
    if last > 0 {
        assert_eq!(mirror.generation(), generation);
        let mut sequences = Vec::new();
        mirror
            .replay(1, |record| sequences.push(record.sequence))
            .unwrap();
        assert_eq!(sequences, (1..=last).collect::<Vec<u64>>());
    }
    crashed
}

#[test]
fn a_crash_while_mirroring_leaves_a_mirror_that_opens() {
    let primary_dir = tempfile::tempdir().unwrap();
    let (mut primary, _) = Journal::open(primary_dir.path(), &config(SyncMode::Manual)).unwrap();
    for chunk in entries(14, 1, 120).chunks(10) {
        append_all(&mut primary, chunk);
        primary.sync().unwrap();
    }
    let records = read_all(&mut primary.reader().unwrap(), 1, 120, 1 << 20);
    let mut operations = 0;
    while crash_while_mirroring(&records, primary.generation(), operations) {
        operations += 1;
        assert!(operations < 2000, "mirroring never completes");
    }
    assert!(
        operations > 10,
        "the crash points covered the copies ({operations})"
    );
}

/// Takes a new generation on a simulated journal that crashes after `operations` storage
/// operations; the journal must open again, with one generation. Returns whether it crashed.
fn crash_while_taking_a_generation(operations: u64) -> bool {
    let disk = SimDisk::new(0x6e6e_0000 + operations);
    let (journal, _) = open_sim(&disk).unwrap();
    let old = journal.generation();
    let new = old ^ 0x5555;
    drop(journal);
    let (mut journal, _) = open_sim(&disk).unwrap();
    disk.crash_after(operations);
    let taken = journal.set_generation_if_empty(new);
    let crashed = disk.crashed();
    if !crashed {
        taken.unwrap();
    }
    drop(journal);
    disk.crash();
    let (journal, recovery) = open_sim(&disk)
        .unwrap_or_else(|error| panic!("crash after {operations} operations: {error}"));
    assert_eq!(recovery.last_sequence, 0);
    if !crashed {
        assert_eq!(journal.generation(), new);
    }
    crashed
}

#[test]
fn a_crash_while_taking_a_generation_leaves_a_journal_that_opens() {
    let mut operations = 0;
    while crash_while_taking_a_generation(operations) {
        operations += 1;
        assert!(operations < 200, "taking a generation never completes");
    }
    assert!(
        operations > 4,
        "the crash points covered the steps ({operations})"
    );
}
