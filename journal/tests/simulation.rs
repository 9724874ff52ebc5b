//! Property tests of the journal on the simulated storage (docs/durability.md rows 1, 2, 3, 5, 12):
//! crashes at any operation (recovery included), torn writes, bit flips, misplaced records,
//! stale blocks, failed syncs. Every test is seeded; proptest prints the failing seed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clearline_journal::sim::{Rng, SimDisk, SimStorage, SECTOR_SIZE};
use clearline_journal::{
    record_size, segment_file_name, Journal, JournalConfig, JournalError, Recovery, SyncMode,
    RECORD_HEADER_SIZE, SEGMENT_SIZE_MIN,
};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

fn config(sync: SyncMode) -> JournalConfig {
    JournalConfig {
        segment_size: SEGMENT_SIZE_MIN,
        sync,
        body_size_max: 4096,
        ..Default::default()
    }
}

fn open(disk: &SimDisk, sync: SyncMode) -> Result<(Journal, Recovery), JournalError> {
    let storage = SimStorage::open(disk).expect("the previous journal was dropped");
    Journal::open_storage(Box::new(storage), &config(sync))
}

fn random_body(rng: &mut Rng, size_max: u64) -> Vec<u8> {
    let size = rng.below(size_max + 1) as usize;
    (0..size).map(|_| rng.next_u64() as u8).collect()
}

/// The image a checkpoint at `sequence` holds: a digest of the bodies up to it.
fn image_for(model: &[Vec<u8>], sequence: u64) -> Vec<u8> {
    let mut image = sequence.to_le_bytes().to_vec();
    let mut digest = 0u64;
    for body in &model[..sequence as usize] {
        for &byte in body {
            digest = digest.rotate_left(5) ^ u64::from(byte);
        }
        digest = digest.wrapping_mul(31);
    }
    image.extend_from_slice(&digest.to_le_bytes());
    image
}

/// Replays everything the journal holds (from its first kept record: checkpoints retire older
/// segments) and checks it equals the model's prefix.
fn check_prefix(seed: u64, journal: &Journal, model: &[Vec<u8>]) {
    let first = journal.first_sequence();
    let mut sequence = first - 1;
    let count = journal
        .replay(first, |record| {
            sequence += 1;
            assert_eq!(record.sequence, sequence, "seed {seed}");
            assert_eq!(record.timestamp, sequence * 10, "seed {seed}");
            let expected = &model[(sequence - 1) as usize];
            assert_eq!(
                record.body,
                &expected[..],
                "seed {seed}: body of {sequence}"
            );
        })
        .unwrap_or_else(|error| panic!("seed {seed}: replay failed: {error}"));
    assert_eq!(count, journal.written_sequence() + 1 - first, "seed {seed}");
}

/// Row 1 and 12: crash at any operation, in the workload or in recovery; recovery must give
/// exactly a prefix of what was appended, containing every record reported durable.
fn crash_workload(seed: u64) {
    let disk = SimDisk::new(seed);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut model: Vec<Vec<u8>> = Vec::new();
    let mut durable = 0u64;
    for _round in 0..4 {
        let (mut journal, recovery) = loop {
            if rng.chance(1, 3) {
                disk.crash_after(rng.below(30));
            }
            match open(&disk, SyncMode::Manual) {
                Ok(opened) => break opened,
                Err(error) => {
                    assert!(
                        disk.crashed(),
                        "seed {seed}: open failed by itself: {error}"
                    );
                    disk.crash();
                }
            }
        };
        let last = recovery.last_sequence;
        assert!(
            last >= durable,
            "seed {seed}: lost durable {durable}, recovered {last}"
        );
        assert!(
            last <= model.len() as u64,
            "seed {seed}: invented records up to {last}"
        );
        model.truncate(last as usize);
        check_prefix(seed, &journal, &model);
        if let Some(checkpoint) = &recovery.checkpoint {
            assert!(checkpoint.sequence <= last, "seed {seed}");
            assert_eq!(
                checkpoint.image,
                image_for(&model, checkpoint.sequence),
                "seed {seed}"
            );
        }
        durable = last;
        disk.crash_after(rng.below(300));
        let mut in_flight: Option<Vec<u8>> = None;
        for _ in 0..400 {
            let choice = rng.below(100);
            if choice < 80 {
                let body = random_body(&mut rng, 3000);
                let sequence = model.len() as u64 + 1;
                match journal.append(sequence * 10, &body) {
                    Ok(appended) => {
                        assert_eq!(appended, sequence, "seed {seed}");
                        model.push(body);
                    }
                    Err(_) => {
                        in_flight = Some(body);
                        break;
                    }
                }
            } else if choice < 95 {
                match journal.sync() {
                    Ok(synced) => durable = synced,
                    Err(_) => break,
                }
            } else {
                let first = journal.first_sequence() - 1;
                let sequence = first + rng.below(model.len() as u64 + 1 - first);
                let image = image_for(&model, sequence);
                if journal
                    .write_checkpoint(sequence, sequence * 10, &image)
                    .is_err()
                {
                    break;
                }
                durable = durable.max(sequence);
            }
        }
        drop(journal);
        disk.crash();
        // A crashing append can land whole (the tear may cover all of it): then it is part of
        // the log, with exactly the bytes we gave it.
        if let Some(body) = in_flight {
            model.push(body);
        }
    }
}

/// Appends `count` records with a sync every few, then two synced sentinel records, so every
/// record before the sentinels is covered by a watermark twice over: damage that spills from
/// the last covered record into the first (large) sentinel still leaves the second as evidence
/// (one sentinel would leave the residual window of J8). Returns the model and each record's
/// (segment id, offset).
fn covered_log(seed: u64, rng: &mut Rng, disk: &SimDisk) -> (Vec<Vec<u8>>, Vec<(u64, u64)>) {
    let (mut journal, _) = open(disk, SyncMode::Manual).unwrap();
    let count = 20 + rng.below(80);
    let mut model = Vec::new();
    let mut places = Vec::new();
    for sequence in 1..=count + 2 {
        let body = match sequence.checked_sub(count) {
            Some(1) => vec![0x5e; 4000],
            Some(2) => vec![0x5f; 10],
            _ => random_body(rng, 3000),
        };
        assert_eq!(
            journal.append(sequence * 10, &body).unwrap(),
            sequence,
            "seed {seed}"
        );
        let (segment, end) = journal.write_position();
        places.push((segment, end - record_size(body.len() as u64)));
        model.push(body);
        if rng.chance(1, 4) || sequence >= count {
            journal.sync().unwrap();
        }
    }
    journal.close().unwrap();
    (model, places)
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    FlipBit,
    Misplace,
    StaleBlock,
}

/// Row 3: damage to acknowledged records is refused (never dropped, never applied).
fn fault_workload(seed: u64, fault: Fault) {
    let disk = SimDisk::new(seed);
    let mut rng = Rng::new(seed ^ 0xfa17);
    let (model, places) = covered_log(seed, &mut rng, &disk);
    let covered = model.len() as u64 - 2; // Not counting the sentinels.
    let target = 1 + rng.below(covered);
    let (segment, offset) = places[(target - 1) as usize];
    let name = segment_file_name(segment);
    let target_size = RECORD_HEADER_SIZE + model[(target - 1) as usize].len() as u64;
    let must_fail = match fault {
        Fault::FlipBit => {
            disk.flip_bit(&name, offset + rng.below(target_size), rng.below(8) as u8);
            true
        }
        Fault::Misplace => {
            let mut source = 1 + rng.below(covered + 1);
            if source == target {
                source = if target > 1 { target - 1 } else { target + 1 };
            }
            let (source_segment, source_offset) = places[(source - 1) as usize];
            let source_size = RECORD_HEADER_SIZE + model[(source - 1) as usize].len() as u64;
            let bytes = disk.read(
                &segment_file_name(source_segment),
                source_offset,
                source_size,
            );
            let room = clearline_journal::SEGMENT_SIZE_MIN - offset;
            disk.overwrite(&name, offset, &bytes[..bytes.len().min(room as usize)]);
            true
        }
        Fault::StaleBlock => {
            // The sector as it was before the record was written: zeros (preallocated).
            let sector = (offset + rng.below(target_size)) / SECTOR_SIZE * SECTOR_SIZE;
            let before = disk.read(&name, sector, SECTOR_SIZE);
            disk.overwrite(&name, sector, &vec![0u8; SECTOR_SIZE as usize]);
            before.iter().any(|&byte| byte != 0)
        }
    };
    match open(&disk, SyncMode::Manual) {
        Err(JournalError::Corruption(corruption)) => {
            assert!(
                corruption.sequence <= target,
                "seed {seed} {fault:?}: {corruption}"
            );
            // Reported where the expected sequence was looked for: in the target's segment, or
            // at the end of the one before when the target opened a new segment.
            let near = corruption.segment == segment || corruption.segment + 1 == segment;
            assert!(near, "seed {seed} {fault:?}: {corruption}");
        }
        Err(error) => panic!("seed {seed} {fault:?}: unexpected error {error}"),
        Ok((journal, recovery)) => {
            assert!(
                !must_fail,
                "seed {seed} {fault:?}: damage to {target} was not refused"
            );
            assert_eq!(
                recovery.last_sequence,
                model.len() as u64,
                "seed {seed} {fault:?}"
            );
            check_prefix(seed, &journal, &model);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 40,
        rng_seed: RngSeed::Fixed(0x00c1_ea71),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn crash_anywhere_recovers_a_prefix_with_every_durable_record(seed in any::<u64>()) {
        crash_workload(seed);
    }

    #[test]
    fn flipped_bit_in_an_acknowledged_record_is_refused(seed in any::<u64>()) {
        fault_workload(seed, Fault::FlipBit);
    }

    #[test]
    fn misplaced_valid_record_is_never_applied(seed in any::<u64>()) {
        fault_workload(seed, Fault::Misplace);
    }

    #[test]
    fn stale_block_over_acknowledged_records_is_refused(seed in any::<u64>()) {
        fault_workload(seed, Fault::StaleBlock);
    }
}

/// Exhaustive crash points for a small workload: every operation index of the first open
/// and the appends that follow.
#[test]
fn crash_at_every_operation_of_a_small_workload() {
    for crash_point in 0..120 {
        let seed = 1000 + crash_point;
        let disk = SimDisk::new(seed);
        let mut rng = Rng::new(seed);
        disk.crash_after(crash_point);
        let mut model = Vec::new();
        let mut durable = 0;
        let mut in_flight = None;
        if let Ok((mut journal, _)) = open(&disk, SyncMode::Manual) {
            for sequence in 1..=40u64 {
                let body = random_body(&mut rng, 2000);
                if journal.append(sequence * 10, &body).is_err() {
                    in_flight = Some(body);
                    break;
                }
                model.push(body);
                if sequence % 3 == 0 {
                    match journal.sync() {
                        Ok(synced) => durable = synced,
                        Err(_) => break,
                    }
                }
            }
        }
        disk.crash();
        let (journal, recovery) = open(&disk, SyncMode::Manual)
            .unwrap_or_else(|error| panic!("crash point {crash_point}: {error}"));
        let last = recovery.last_sequence;
        assert!(
            last >= durable,
            "crash point {crash_point}: lost durable records"
        );
        if last == model.len() as u64 + 1 {
            model.push(in_flight.expect("an extra record can only be the crashing append"));
        }
        assert!(last <= model.len() as u64, "crash point {crash_point}");
        model.truncate(last as usize);
        check_prefix(seed, &journal, &model);
    }
}

/// Recovery twice in a row gives the same result (idempotent), and the truncation is reported
/// once only.
#[test]
fn recovery_is_idempotent() {
    for seed in 0..20 {
        let disk = SimDisk::new(seed);
        let mut rng = Rng::new(seed);
        let (mut journal, _) = open(&disk, SyncMode::Manual).unwrap();
        for sequence in 1..=30u64 {
            journal
                .append(sequence * 10, &random_body(&mut rng, 1000))
                .unwrap();
            if sequence == 20 {
                journal.sync().unwrap();
            }
        }
        drop(journal);
        disk.crash();
        let (journal, first) = open(&disk, SyncMode::Manual).unwrap();
        drop(journal);
        disk.crash();
        let (journal, second) = open(&disk, SyncMode::Manual).unwrap();
        assert_eq!(first.last_sequence, second.last_sequence, "seed {seed}");
        assert!(
            second.truncated.is_none(),
            "seed {seed}: {:?}",
            second.truncated
        );
        assert!(first.last_sequence >= 20, "seed {seed}");
        drop(journal);
    }
}

/// Row 5: a failed sync is fatal: no more acknowledgements, the callback hears of it, appends
/// fail, and after restart every record acknowledged before is present.
#[test]
fn failed_sync_is_fatal_and_never_acknowledges_more() {
    let disk = SimDisk::new(7);
    let (mut journal, _) = open(&disk, SyncMode::Data).unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let heard = Arc::clone(&calls);
    journal.on_durable(Box::new(move |_| {
        heard.fetch_add(1, Ordering::SeqCst);
    }));
    let durability = journal.durability();
    for sequence in 1..=10u64 {
        journal.append(sequence * 10, b"before").unwrap();
    }
    durability.wait_durable(10).unwrap();
    disk.fail_syncs(1);
    let sequence = journal.append(110, b"after").unwrap();
    assert!(matches!(
        durability.wait_durable(sequence),
        Err(JournalError::SyncFailed)
    ));
    assert!(durability.failed());
    assert_eq!(durability.durable_sequence(), 10);
    assert!(matches!(
        journal.append(120, b"more"),
        Err(JournalError::SyncFailed)
    ));
    assert!(matches!(journal.close(), Err(JournalError::SyncFailed)));
    // The syncer has stopped (close joined it), so its last callback has run.
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "callback called on success and on failure"
    );
    disk.crash();
    let (journal, recovery) = open(&disk, SyncMode::Manual).unwrap();
    assert!(recovery.last_sequence >= 10);
    let mut bodies = BTreeSet::new();
    journal
        .replay(1, |record| {
            bodies.insert(record.body.to_vec());
        })
        .unwrap();
    assert!(bodies.contains(b"before".as_slice()));
}

/// Row 4: a full disk gives a clean error, keeps earlier data, and writing resumes once space
/// is freed.
#[test]
fn storage_full_is_a_clean_error_and_writing_resumes() {
    let disk = SimDisk::new(9);
    disk.set_space_max(Some(4 * SEGMENT_SIZE_MIN + 8192));
    let (mut journal, _) = open(&disk, SyncMode::Manual).unwrap();
    let body = vec![0xab; 3000];
    let mut appended = 0u64;
    let error = loop {
        match journal.append((appended + 1) * 10, &body) {
            Ok(sequence) => appended = sequence,
            Err(error) => break error,
        }
        assert!(appended < 1000, "the space limit must be reached");
    };
    assert!(matches!(error, JournalError::StorageFull { .. }), "{error}");
    assert!(error.to_string().contains("storage full"), "{error}");
    journal.sync().unwrap();
    // Earlier records are intact and readable, and the same error repeats without harm.
    assert!(matches!(
        journal.append(1, &body),
        Err(JournalError::StorageFull { .. })
    ));
    assert_eq!(journal.replay(1, |_| {}).unwrap(), appended);
    disk.set_space_max(None);
    let sequence = journal.append((appended + 1) * 10, &body).unwrap();
    assert_eq!(sequence, appended + 1);
    journal.close().unwrap();
    let (journal, recovery) = open(&disk, SyncMode::Manual).unwrap();
    assert_eq!(recovery.last_sequence, appended + 1);
    drop(journal);

    // Allocation failing at creation: open refuses cleanly and leaves no file behind.
    let empty = SimDisk::new(10);
    empty.set_allocation_fails(true);
    assert!(matches!(
        open(&empty, SyncMode::Manual),
        Err(JournalError::StorageFull { .. })
    ));
    assert!(empty.file_names().is_empty(), "{:?}", empty.file_names());
}

/// `segments_max` bounds the journal like a full disk: appends past it get `StorageFull`,
/// nothing is lost, and a reopened journal (its spare kept) opens and refuses the same way.
#[test]
fn segments_max_bounds_the_journal_like_a_full_disk() {
    let disk = SimDisk::new(11);
    let bounded = JournalConfig {
        segments_max: 2,
        ..config(SyncMode::Manual)
    };
    let open_bounded = |disk: &SimDisk| {
        let storage = SimStorage::open(disk).expect("the previous journal was dropped");
        Journal::open_storage(Box::new(storage), &bounded)
    };
    let (mut journal, _) = open_bounded(&disk).unwrap();
    let body = vec![0xcd; 1000];
    let mut appended = 0u64;
    let error = loop {
        match journal.append((appended + 1) * 10, &body) {
            Ok(sequence) => appended = sequence,
            Err(error) => break error,
        }
        assert!(appended < 1000, "the segment limit must be reached");
    };
    assert!(matches!(error, JournalError::StorageFull { .. }), "{error}");
    assert!(appended > 0);
    // Then the smallest records, until not even a record header fits in the first segment.
    while let Ok(sequence) = journal.append((appended + 1) * 10, &[]) {
        appended = sequence;
    }
    // Only the first segment takes records; the second stays the spare.
    assert_eq!(disk.file_names().len(), 2, "{:?}", disk.file_names());
    journal.sync().unwrap();
    assert_eq!(journal.replay(1, |_| {}).unwrap(), appended);
    journal.close().unwrap();
    let (mut journal, recovery) = open_bounded(&disk).unwrap();
    assert_eq!(recovery.last_sequence, appended);
    assert!(matches!(
        journal.append((appended + 1) * 10, &body),
        Err(JournalError::StorageFull { .. })
    ));
    drop(journal);
    // Without the bound the same journal grows on.
    let (mut journal, _) = open(&disk, SyncMode::Manual).unwrap();
    assert_eq!(
        journal.append((appended + 1) * 10, &body).unwrap(),
        appended + 1
    );
    let too_few = JournalConfig {
        segments_max: 1,
        ..config(SyncMode::Manual)
    };
    assert!(matches!(too_few.check(), Err(JournalError::Config { .. })));
}

/// A checkpoint that cannot be written for lack of space leaves the previous one in place.
#[test]
fn checkpoint_on_a_full_disk_keeps_the_previous_checkpoint() {
    let disk = SimDisk::new(11);
    let (mut journal, _) = open(&disk, SyncMode::Manual).unwrap();
    for sequence in 1..=5u64 {
        journal.append(sequence * 10, b"x").unwrap();
    }
    journal.write_checkpoint(5, 50, b"image five").unwrap();
    let used: u64 = 2 * SEGMENT_SIZE_MIN + 200;
    disk.set_space_max(Some(used + 10));
    journal.append(60, b"y").unwrap();
    let error = journal
        .write_checkpoint(6, 60, &vec![1u8; 4096])
        .unwrap_err();
    assert!(matches!(error, JournalError::StorageFull { .. }), "{error}");
    disk.set_space_max(None);
    journal.close().unwrap();
    let (_, recovery) = open(&disk, SyncMode::Manual).unwrap();
    let checkpoint = recovery
        .checkpoint
        .expect("the previous checkpoint survives");
    assert_eq!(checkpoint.sequence, 5);
    assert_eq!(checkpoint.image, b"image five");
    assert_eq!(recovery.records, 1);
}

/// A torn final record that no watermark covers is truncated and reported (row 2); the
/// sequence is reused by the next append.
#[test]
fn torn_last_record_is_truncated_and_reported() {
    let disk = SimDisk::new(12);
    let (mut journal, _) = open(&disk, SyncMode::Manual).unwrap();
    for sequence in 1..=10u64 {
        journal
            .append(sequence * 10, &[sequence as u8; 300])
            .unwrap();
    }
    journal.sync().unwrap();
    journal.append(110, &[11u8; 300]).unwrap();
    let (segment, end) = journal.write_position();
    journal.sync().unwrap();
    journal.close().unwrap();
    // Tear the last record: keep its header, garble the end of its body.
    disk.overwrite(&segment_file_name(segment), end - 100, &[0xee; 40]);
    let (mut journal, recovery) = open(&disk, SyncMode::Manual).unwrap();
    let truncation = recovery.truncated.expect("the torn record is reported");
    assert_eq!(truncation.sequence, 11);
    assert!(
        truncation.to_string().contains("sequence 11"),
        "{truncation}"
    );
    assert_eq!(recovery.last_sequence, 10);
    assert_eq!(journal.append(111, b"again").unwrap(), 11);
}

/// A valid record copied into the free space after the log's end is not applied: it fails its
/// place check, and recovery zeroes it as part of the unacknowledged tail.
#[test]
fn valid_record_copied_past_the_end_is_not_applied() {
    let disk = SimDisk::new(13);
    let (mut journal, _) = open(&disk, SyncMode::Manual).unwrap();
    let mut places = Vec::new();
    for sequence in 1..=10u64 {
        journal
            .append(sequence * 10, &[sequence as u8; 200])
            .unwrap();
        let (segment, end) = journal.write_position();
        places.push((segment, end - record_size(200)));
    }
    let (segment, end) = journal.write_position();
    journal.close().unwrap();
    let (source_segment, source_offset) = places[2];
    let copy = disk.read(
        &segment_file_name(source_segment),
        source_offset,
        record_size(200),
    );
    disk.overwrite(&segment_file_name(segment), end, &copy);
    let (journal, recovery) = open(&disk, SyncMode::Manual).unwrap();
    assert_eq!(recovery.last_sequence, 10);
    let truncation = recovery.truncated.expect("the copy is zeroed");
    assert_eq!(truncation.sequence, 11);
    assert!(truncation.reason.contains("misplaced"), "{truncation}");
    assert_eq!(journal.replay(1, |_| {}).unwrap(), 10);
}

#[test]
fn journal_and_durability_cross_threads() {
    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send::<Journal>();
    assert_send_sync::<clearline_journal::Durability>();
}
