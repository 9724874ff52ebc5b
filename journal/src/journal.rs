//! The journal: open and recover, append records, group commit through a syncer thread, replay,
//! snapshots, close.
//!
//! Invariants:
//! - `written` is the sequence of the last record whose header and body are both in the
//!   segment; `durable <= written` always; `durable` is published only after a sync that began
//!   after every record up to it was written (J5: the syncer reads `written` and the dirty
//!   ranges together, under one lock, before it syncs them);
//! - after a failed sync `durable` never moves again and every append fails (J6);
//! - there is always at least one spare, preallocated segment after the current one (J1), so a
//!   full disk is reported by `append` before the current segment fills;
//! - records are written only by the owner of `&mut Journal`; the syncer only syncs.
//!
//! Does not interpret record bodies, and never deletes segments (see FORMAT.md, "Retention").

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use xxhash_rust::xxh3::xxh3_128;

use crate::error::{Corruption, JournalError};
use crate::record::{
    body_checksum, record_size, RecordHeader, SegmentHeader, SnapshotHeader, RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE, SEGMENT_SIZE_MIN, SNAPSHOT_HEADER_SIZE,
};
use crate::replay::{locate, scan, zero_tail, Anchor, Cursor, OpenSegment, Position, Step, Walker};
use crate::storage::{SegmentSync, Storage};
use crate::{
    parse_segment_name, parse_snapshot_name, segment_file_name, snapshot_file_name, Backend,
    FileStorage, JournalConfig, MmapStorage, RecordView, Recovery, Snapshot, SyncMode,
};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning means another thread panicked on an assertion, and with `panic = "abort"` the
    // process is already gone; in tests keep the data as it is.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the syncer and waiters share: the durable sequence, the fatal flag and a condition
/// variable to wait on without spinning.
pub struct Durability {
    /// Shared by `Arc` so that readers outside the journal (the net thread) read this one
    /// sequence rather than a copy of it.
    durable: Arc<AtomicU64>,
    written: AtomicU64,
    failed: AtomicBool,
    /// Threads inside `wait_durable`'s slow path; publishers skip the lock and the futex wake
    /// when it is zero (the common case: one publication per append in `SyncMode::None`).
    waiters: AtomicU64,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Durability {
    fn new(sequence: u64) -> Durability {
        Durability {
            durable: Arc::new(AtomicU64::new(sequence)),
            written: AtomicU64::new(sequence),
            failed: AtomicBool::new(false),
            waiters: AtomicU64::new(0),
            lock: Mutex::new(()),
            changed: Condvar::new(),
        }
    }

    /// The highest sequence known durable: every record up to it survives a crash.
    pub fn durable_sequence(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The durable sequence itself, for a reader on another thread that polls it (the net
    /// thread gates replies on it). Only the journal advances it.
    pub fn durable_shared(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.durable)
    }

    /// Whether a sync failed. Fatal: the caller must stop acknowledging and exit non-zero.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Blocks (on a condition variable, not spinning) until `sequence` is durable, and returns
    /// the durable sequence then.
    ///
    /// # Errors
    ///
    /// [`JournalError::SyncFailed`] when a sync failed before `sequence` became durable.
    ///
    /// # Panics
    ///
    /// If `sequence` has not been written (waiting for it would never end).
    pub fn wait_durable(&self, sequence: u64) -> Result<u64, JournalError> {
        let durable = self.durable_sequence();
        if durable >= sequence {
            return Ok(durable);
        }
        let written = self.written.load(Ordering::Acquire);
        assert!(
            sequence <= written,
            "waiting for sequence {sequence}, written {written}"
        );
        let mut guard = lock(&self.lock);
        // SeqCst pairs with `wake`: either this thread sees the new durable sequence (or the
        // failure) below, or the publisher sees `waiters > 0` and notifies under the lock.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            let durable = self.durable.load(Ordering::SeqCst);
            if durable >= sequence {
                break Ok(durable);
            }
            if self.failed.load(Ordering::SeqCst) {
                break Err(JournalError::SyncFailed);
            }
            guard = self
                .changed
                .wait(guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
        result
    }

    fn wake(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _guard = lock(&self.lock);
            self.changed.notify_all();
        }
    }

    fn publish(&self, sequence: u64) {
        assert!(!self.failed());
        assert!(sequence <= self.written.load(Ordering::Acquire));
        self.durable.fetch_max(sequence, Ordering::SeqCst);
        self.wake();
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        self.wake();
    }
}

/// A dirty byte range of one segment, waiting for the next sync.
struct DirtyRange {
    segment: u64,
    syncer: Arc<dyn SegmentSync>,
    start: u64,
    end: u64,
}

/// Work handed from the writer to the syncer.
#[derive(Default)]
struct Pending {
    ranges: Vec<DirtyRange>,
    /// Highest sequence whose bytes are inside `ranges` or already synced.
    written: u64,
    syncer_sleeping: bool,
    stop: bool,
}

type Callback = Box<dyn Fn(u64) + Send + Sync>;

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    durability: Arc<Durability>,
    callback: Mutex<Option<Callback>>,
}

impl Shared {
    fn notify(&self, sequence: u64) {
        if let Some(callback) = lock(&self.callback).as_ref() {
            callback(sequence);
        }
    }

    /// One group commit: takes the dirty ranges and `written = W` together, syncs the ranges,
    /// then publishes W. Returns the durable sequence.
    fn sync_pending(&self) -> Result<u64, JournalError> {
        if self.durability.failed() {
            return Err(JournalError::SyncFailed);
        }
        let (ranges, written) = {
            let mut pending = lock(&self.pending);
            (std::mem::take(&mut pending.ranges), pending.written)
        };
        for range in &ranges {
            if range
                .syncer
                .sync(range.start, range.end - range.start)
                .is_err()
            {
                // J6: never retry and carry on; the pages may already be marked clean.
                self.durability.fail();
                self.notify(self.durability.durable_sequence());
                return Err(JournalError::SyncFailed);
            }
        }
        if written > self.durability.durable_sequence() {
            self.durability.publish(written);
            self.notify(written);
        }
        Ok(self.durability.durable_sequence())
    }
}

fn syncer_main(shared: Arc<Shared>) {
    loop {
        {
            let mut pending = lock(&shared.pending);
            while pending.ranges.is_empty() && !pending.stop {
                pending.syncer_sleeping = true;
                pending = shared
                    .wake
                    .wait(pending)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                pending.syncer_sleeping = false;
            }
            if pending.ranges.is_empty() && pending.stop {
                return;
            }
        }
        if shared.sync_pending().is_err() {
            return;
        }
    }
}

/// An open journal: the single writer of its directory.
pub struct Journal {
    storage: Box<dyn Storage>,
    config: JournalConfig,
    generation: u64,
    /// Contiguous ids; `segments[i].id == segments[0].id + i`.
    segments: Vec<OpenSegment>,
    syncers: Vec<Arc<dyn SegmentSync>>,
    /// Index of the segment being written; `segments.len() >= current + 2` (one spare).
    current: usize,
    /// Where the next record goes in the current segment.
    offset: u64,
    written: u64,
    previous_checksum: u128,
    shared: Arc<Shared>,
    syncer: Option<JoinHandle<()>>,
    header: [u8; RECORD_HEADER_SIZE as usize],
}

fn new_generation(directory: &str) -> u64 {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    let seed = format!("{time} {} {directory}", std::process::id());
    let generation = xxh3_128(seed.as_bytes()) as u64;
    generation.max(1)
}

impl Journal {
    /// Opens (creating if missing) the journal in `dir`: takes the exclusive lock, recovers
    /// (truncating a torn tail, refusing corruption) and starts the syncer thread when
    /// `config.sync` is [`SyncMode::Data`].
    ///
    /// # Errors
    ///
    /// [`JournalError::Locked`] when another process holds the directory,
    /// [`JournalError::Corruption`] when recovery finds damaged acknowledged data,
    /// [`JournalError::StorageFull`] when the first segments cannot be allocated, and I/O
    /// errors.
    pub fn open(dir: &Path, config: &JournalConfig) -> Result<(Journal, Recovery), JournalError> {
        let directory = dir.display().to_string();
        let storage: Box<dyn Storage> =
            match config.backend {
                Backend::Mmap => Box::new(MmapStorage::open(dir).map_err(|error| {
                    lock_error(&directory, "locking the journal directory", error)
                })?),
                Backend::File => Box::new(FileStorage::open(dir).map_err(|error| {
                    lock_error(&directory, "locking the journal directory", error)
                })?),
            };
        Journal::open_storage(storage, config)
    }

    /// Opens a journal on any [`Storage`] (the simulated one in tests). See [`Journal::open`].
    ///
    /// # Errors
    ///
    /// As [`Journal::open`].
    pub fn open_storage(
        mut storage: Box<dyn Storage>,
        config: &JournalConfig,
    ) -> Result<(Journal, Recovery), JournalError> {
        let started = Instant::now();
        config.check()?;
        let directory = storage.describe();
        let names = storage
            .list()
            .map_err(|error| JournalError::io("listing", &directory, error))?;
        // Leftovers of an interrupted segment creation or snapshot write: never valid data.
        let mut removed = false;
        for name in names.iter().filter(|name| name.ends_with(".tmp")) {
            storage
                .remove(name)
                .map_err(|error| JournalError::io("removing", name, error))?;
            removed = true;
        }
        if removed {
            storage
                .sync_directory()
                .map_err(|error| JournalError::io("syncing the directory", &directory, error))?;
        }
        let (generation, segments) = load_segments(&mut *storage, &names)?;
        let snapshots = load_snapshots(&mut *storage, &names, generation);
        let snapshot_found = names.iter().any(|name| parse_snapshot_name(name).is_some());
        if segments.is_empty() && snapshot_found {
            return Err(JournalError::Corruption(Corruption {
                segment: 0,
                offset: 0,
                sequence: 1,
                reason: "segment files missing",
                evidence: "snapshot files exist; records expected from sequence",
                evidence_sequence: 1,
            }));
        }
        let generation = generation.unwrap_or_else(|| new_generation(&directory));
        let syncers = segments
            .iter()
            .map(|segment| segment.file.syncer())
            .collect();
        let mut journal = Journal {
            storage,
            config: config.clone(),
            generation,
            segments,
            syncers,
            current: 0,
            offset: SEGMENT_HEADER_SIZE,
            written: 0,
            previous_checksum: 0,
            shared: Arc::new(Shared {
                pending: Mutex::new(Pending::default()),
                wake: Condvar::new(),
                durability: Arc::new(Durability::new(0)),
                callback: Mutex::new(None),
            }),
            syncer: None,
            header: [0; RECORD_HEADER_SIZE as usize],
        };
        if journal.segments.is_empty() {
            journal.create_segment(0)?;
        }
        let mut recovery = journal.recover(&snapshots)?;
        journal.ensure_spare()?;
        journal.shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                written: journal.written,
                ..Pending::default()
            }),
            wake: Condvar::new(),
            durability: Arc::new(Durability::new(journal.written)),
            callback: Mutex::new(None),
        });
        if journal.config.sync == SyncMode::Data {
            let shared = Arc::clone(&journal.shared);
            let handle = std::thread::Builder::new()
                .name("journal-syncer".to_owned())
                .spawn(move || syncer_main(shared))
                .map_err(|error| {
                    JournalError::io("starting the syncer thread", &directory, error)
                })?;
            journal.syncer = Some(handle);
        }
        recovery.elapsed = started.elapsed();
        Ok((journal, recovery))
    }

    /// Recovery: pick the newest valid snapshot, scan from it, decide the tail, zero a torn tail.
    fn recover(&mut self, snapshots: &Snapshots) -> Result<Recovery, JournalError> {
        let body_size_max = self.config.body_size_max;
        let (snapshot, anchor) = match snapshots.valid.first() {
            Some((header, image, _)) => (
                Some(Snapshot {
                    sequence: header.sequence,
                    timestamp: header.timestamp,
                    image: image.clone(),
                }),
                Anchor {
                    sequence: header.sequence,
                    chain_checksum: header.chain_checksum,
                },
            ),
            None => (None, Anchor::default()),
        };
        let start = if anchor.sequence == 0 {
            locate(&self.segments, self.generation, body_size_max, 1)?
        } else {
            locate(
                &self.segments,
                self.generation,
                body_size_max,
                anchor.sequence + 1,
            )?
        };
        let result = scan(
            &self.segments,
            self.generation,
            body_size_max,
            start,
            anchor,
            &[],
        )?;
        if let Some(tail) = &result.tail {
            zero_tail(&mut self.segments, result.end.position)?;
            assert!(tail.sequence == result.end.sequence);
        }
        // What we recovered is what the device holds (caches were dropped at open); make sure
        // of it once more before counting it durable.
        for index in start.position.index..=result.end.position.index {
            let size = self.segments[index].file.size();
            self.syncers[index].sync(0, size).map_err(|error| {
                JournalError::io(
                    "syncing recovered segments",
                    &self.storage.describe(),
                    error,
                )
            })?;
        }
        self.written = result.end.sequence - 1;
        self.previous_checksum = result.end.previous_checksum;
        self.current = result.end.position.index;
        self.offset = result.end.position.offset;
        if self.current > 0 && self.offset == SEGMENT_HEADER_SIZE {
            // The log ends at the start of an empty segment: it ends just as well at the end of
            // the previous one. Resume there, as the writer did before it moved on, so the empty
            // segment stays the spare and opening needs no new segment: a journal that filled
            // the disk (or `segments_max`) opens again and reads are served.
            self.current -= 1;
            self.offset = self.segments[self.current].file.size();
        }
        let last_timestamp = result
            .last_timestamp
            .unwrap_or_else(|| snapshot.as_ref().map_or(0, |snapshot| snapshot.timestamp));
        Ok(Recovery {
            snapshot,
            snapshots_rejected: snapshots.rejected.clone(),
            records: result.records,
            last_sequence: self.written,
            last_timestamp,
            truncated: result.tail,
            elapsed: std::time::Duration::ZERO,
        })
    }

    /// Creates segment `id` (allocated, header written and synced, directory synced). One more
    /// segment than `segments_max` is refused as [`JournalError::StorageFull`], like a full disk.
    fn create_segment(&mut self, id: u64) -> Result<(), JournalError> {
        let directory = self.storage.describe();
        if self.segments.len() as u64 >= self.config.segments_max {
            return Err(JournalError::StorageFull { directory });
        }
        let name = segment_file_name(id);
        let temporary = format!("{name}.tmp");
        let mut block = vec![0u8; SEGMENT_HEADER_SIZE as usize];
        SegmentHeader {
            generation: self.generation,
            segment: id,
            size: self.config.segment_size,
        }
        .encode(&mut block);
        let file = self
            .storage
            .create(&temporary, self.config.segment_size, &block)
            .map_err(|error| JournalError::io("allocating a segment", &directory, error))?;
        self.storage
            .rename(&temporary, &name)
            .map_err(|error| JournalError::io("naming a new segment", &name, error))?;
        self.storage
            .sync_directory()
            .map_err(|error| JournalError::io("syncing the directory", &directory, error))?;
        let expected = self.segments.last().map_or(id, |last| last.id + 1);
        assert_eq!(id, expected);
        self.syncers.push(file.syncer());
        self.segments.push(OpenSegment { id, file });
        Ok(())
    }

    /// Keeps one spare segment after the current one.
    fn ensure_spare(&mut self) -> Result<(), JournalError> {
        while self.segments.len() < self.current + 2 {
            let id = self.segments.last().map_or(0, |last| last.id + 1);
            self.create_segment(id)?;
        }
        Ok(())
    }

    /// Appends one record and returns its sequence (the first record is 1). Durable only once
    /// [`Durability::durable_sequence`] reaches it.
    ///
    /// # Errors
    ///
    /// [`JournalError::StorageFull`] when the next spare segment cannot be allocated (nothing
    /// written, retry later), [`JournalError::SyncFailed`] after a failed sync,
    /// [`JournalError::BodySizeAboveMax`], and I/O errors.
    pub fn append(&mut self, timestamp: u64, body: &[u8]) -> Result<u64, JournalError> {
        let body_size = body.len() as u64;
        if body_size > self.config.body_size_max {
            return Err(JournalError::BodySizeAboveMax {
                size: body_size,
                max: self.config.body_size_max,
            });
        }
        if self.shared.durability.failed() {
            return Err(JournalError::SyncFailed);
        }
        let size = record_size(body_size);
        if self.offset + size > self.segments[self.current].file.size() {
            // Move into the spare, but only once the spare after it exists (J1).
            if self.segments.len() < self.current + 3 {
                let id = self.segments[self.current + 1].id + 1;
                self.create_segment(id)?;
            }
            self.current += 1;
            self.offset = SEGMENT_HEADER_SIZE;
        }
        let segment = &mut self.segments[self.current];
        assert!(self.offset + size <= segment.file.size());
        let sequence = self.written + 1;
        let mut header = RecordHeader {
            checksum: 0,
            body_checksum: body_checksum(body, self.generation, segment.id, sequence),
            previous_checksum: self.previous_checksum,
            body_size: u32::try_from(body_size).expect("body_size_max fits u32 (config check)"),
            generation: self.generation,
            segment: segment.id,
            offset: self.offset,
            sequence,
            timestamp,
            watermark: self.shared.durability.durable_sequence(),
        };
        header.encode(&mut self.header);
        // Pair assertion (verify before write; replay verifies after read).
        let check = RecordHeader::decode(
            &self.header,
            self.generation,
            segment.id,
            self.offset,
            self.config.body_size_max,
        );
        assert_eq!(check, Ok(header), "encoded record header does not verify");
        // Body first, then header (J4): an in-process reader never sees a header without body.
        let id = segment.id;
        segment
            .file
            .write(self.offset + RECORD_HEADER_SIZE, body)
            .map_err(|error| {
                JournalError::io("writing a record body", &segment_file_name(id), error)
            })?;
        segment
            .file
            .write(self.offset, &self.header)
            .map_err(|error| {
                JournalError::io("writing a record header", &segment_file_name(id), error)
            })?;
        let start = self.offset;
        self.offset += size;
        self.written = sequence;
        self.previous_checksum = header.checksum;
        self.shared
            .durability
            .written
            .store(sequence, Ordering::Release);
        match self.config.sync {
            SyncMode::None => {
                self.shared.durability.publish(sequence);
                self.shared.notify(sequence);
            }
            SyncMode::Data | SyncMode::Manual => {
                let id = self.segments[self.current].id;
                let mut pending = lock(&self.shared.pending);
                match pending.ranges.last_mut() {
                    Some(range) if range.segment == id => range.end = self.offset,
                    _ => pending.ranges.push(DirtyRange {
                        segment: id,
                        syncer: Arc::clone(&self.syncers[self.current]),
                        start,
                        end: self.offset,
                    }),
                }
                pending.written = sequence;
                if pending.syncer_sleeping {
                    self.shared.wake.notify_one();
                }
            }
        }
        Ok(sequence)
    }

    /// The sequence of the last record appended (or recovered).
    pub fn written_sequence(&self) -> u64 {
        self.written
    }

    /// The shared durability handle (durable sequence, waiting, the fatal flag).
    pub fn durability(&self) -> Arc<Durability> {
        Arc::clone(&self.shared.durability)
    }

    /// Registers `callback`, called with the durable sequence after each publication, and once
    /// more after a sync failure (then [`Durability::failed`] is true). It runs on the syncer
    /// thread ([`SyncMode::Data`]), inside `append` ([`SyncMode::None`]) or inside
    /// [`Journal::sync`] ([`SyncMode::Manual`]); it must be quick (wake a thread, no I/O).
    pub fn on_durable(&mut self, callback: Box<dyn Fn(u64) + Send + Sync>) {
        *lock(&self.shared.callback) = Some(callback);
    }

    /// Makes everything written durable and returns the durable sequence: syncs on this thread
    /// in [`SyncMode::Manual`], waits for the syncer in [`SyncMode::Data`], and does nothing in
    /// [`SyncMode::None`].
    ///
    /// # Errors
    ///
    /// [`JournalError::SyncFailed`] when this or an earlier sync failed.
    pub fn sync(&mut self) -> Result<u64, JournalError> {
        match self.config.sync {
            SyncMode::Manual => self.shared.sync_pending(),
            SyncMode::Data => self.shared.durability.wait_durable(self.written),
            SyncMode::None => Ok(self.shared.durability.durable_sequence()),
        }
    }

    /// Calls `f` for every record with sequence >= `from_sequence`, in order, up to the last
    /// written one; returns how many it visited. Every record is verified again as it is read.
    ///
    /// # Errors
    ///
    /// Corruption when a written record no longer validates, and I/O errors.
    pub fn replay(
        &self,
        from_sequence: u64,
        mut f: impl FnMut(RecordView<'_>),
    ) -> Result<u64, JournalError> {
        let from_sequence = from_sequence.max(1);
        if from_sequence > self.written {
            return Ok(0);
        }
        let body_size_max = self.config.body_size_max;
        let start = locate(
            &self.segments,
            self.generation,
            body_size_max,
            from_sequence,
        )?;
        let mut walker = Walker::new(&self.segments, self.generation, body_size_max, start);
        let mut count = 0u64;
        while walker.cursor.sequence <= self.written {
            match walker.step()? {
                Step::Record(header) => {
                    if header.sequence >= from_sequence {
                        count += 1;
                        f(RecordView {
                            sequence: header.sequence,
                            timestamp: header.timestamp,
                            body: &walker.body,
                            segment: header.segment,
                            offset: header.offset,
                        });
                    }
                }
                Step::End(end) => return Err(self.vanished(end.cursor, end.reason)),
            }
        }
        Ok(count)
    }

    fn vanished(&self, cursor: Cursor, reason: &'static str) -> JournalError {
        JournalError::Corruption(Corruption {
            segment: self.segments[cursor.position.index].id,
            offset: cursor.position.offset,
            sequence: cursor.sequence,
            reason,
            evidence: "it was written by this process; written sequence is",
            evidence_sequence: self.written,
        })
    }

    /// The header checksum of record `sequence` (zero for 0): the snapshot's chain anchor.
    fn record_checksum(&self, sequence: u64) -> Result<u128, JournalError> {
        if sequence == 0 {
            return Ok(0);
        }
        if sequence == self.written {
            return Ok(self.previous_checksum);
        }
        let body_size_max = self.config.body_size_max;
        let start = locate(&self.segments, self.generation, body_size_max, sequence)?;
        let mut walker = Walker::new(&self.segments, self.generation, body_size_max, start);
        loop {
            match walker.step()? {
                Step::Record(header) if header.sequence == sequence => return Ok(header.checksum),
                Step::Record(_) => {}
                Step::End(end) => return Err(self.vanished(end.cursor, end.reason)),
            }
        }
    }

    /// Writes a snapshot: `image` is the state after applying records 1..=`sequence`, and
    /// `timestamp` the timestamp of record `sequence`. Waits until `sequence` is durable, then
    /// writes a temporary file, syncs it, renames it, syncs the directory, reads it back and
    /// verifies it, and only then removes snapshots older than the previous one.
    ///
    /// # Errors
    ///
    /// [`JournalError::SnapshotSequenceAboveWritten`], [`JournalError::StorageFull`] (the
    /// previous snapshots stay), [`JournalError::SyncFailed`], and I/O errors.
    pub fn write_snapshot(
        &mut self,
        sequence: u64,
        timestamp: u64,
        image: &[u8],
    ) -> Result<(), JournalError> {
        if sequence > self.written {
            return Err(JournalError::SnapshotSequenceAboveWritten {
                sequence,
                written: self.written,
            });
        }
        // A snapshot must never cover records a crash could still drop.
        if self.shared.durability.durable_sequence() < sequence {
            self.sync()?;
            self.shared.durability.wait_durable(sequence)?;
        }
        let header = SnapshotHeader {
            generation: self.generation,
            sequence,
            timestamp,
            chain_checksum: self.record_checksum(sequence)?,
            image_size: image.len() as u64,
            image_checksum: xxh3_128(image),
        };
        let mut bytes = vec![0u8; SNAPSHOT_HEADER_SIZE as usize];
        let mut header_bytes = [0u8; SNAPSHOT_HEADER_SIZE as usize];
        header.encode(&mut header_bytes);
        bytes.copy_from_slice(&header_bytes);
        bytes.extend_from_slice(image);
        let name = snapshot_file_name(sequence);
        let temporary = format!("{name}.tmp");
        let directory = self.storage.describe();
        if let Err(error) = self.storage.write_file(&temporary, &bytes) {
            let _ = self.storage.remove(&temporary);
            return Err(JournalError::io("writing a snapshot", &temporary, error));
        }
        self.storage
            .rename(&temporary, &name)
            .map_err(|error| JournalError::io("renaming a snapshot", &name, error))?;
        self.storage
            .sync_directory()
            .map_err(|error| JournalError::io("syncing the directory", &directory, error))?;
        let read_back = self
            .storage
            .read_file(&name)
            .map_err(|error| JournalError::io("reading a snapshot back", &name, error))?;
        match SnapshotHeader::decode(&read_back) {
            Ok((decoded, decoded_image)) => {
                assert_eq!(decoded, header);
                assert_eq!(decoded_image, image);
            }
            Err(reason) => return Err(JournalError::SnapshotInvalid { file: name, reason }),
        }
        // Verified: keep it and the one before it; older ones may go.
        let names = self
            .storage
            .list()
            .map_err(|error| JournalError::io("listing", &directory, error))?;
        let mut older: Vec<(u64, String)> = names
            .into_iter()
            .filter_map(|name| parse_snapshot_name(&name).map(|sequence| (sequence, name)))
            .filter(|(other, _)| *other < sequence)
            .collect();
        older.sort();
        older.pop();
        if !older.is_empty() {
            for (_, old) in &older {
                self.storage
                    .remove(old)
                    .map_err(|error| JournalError::io("removing an old snapshot", old, error))?;
            }
            self.storage
                .sync_directory()
                .map_err(|error| JournalError::io("syncing the directory", &directory, error))?;
        }
        Ok(())
    }

    /// Final sync, then stops the syncer thread.
    ///
    /// # Errors
    ///
    /// [`JournalError::SyncFailed`] when the final (or an earlier) sync failed.
    pub fn close(mut self) -> Result<(), JournalError> {
        if self.config.sync == SyncMode::Manual {
            self.shared.sync_pending()?;
        }
        self.stop_syncer();
        if self.shared.durability.failed() {
            return Err(JournalError::SyncFailed);
        }
        if self.config.sync == SyncMode::Data {
            assert_eq!(self.shared.durability.durable_sequence(), self.written);
        }
        Ok(())
    }

    /// Stops the syncer after it has synced everything pending (or failed).
    fn stop_syncer(&mut self) {
        if let Some(handle) = self.syncer.take() {
            {
                let mut pending = lock(&self.shared.pending);
                pending.stop = true;
                self.shared.wake.notify_one();
            }
            // A panic in the syncer aborts the process in release builds; in tests, join
            // reports it here.
            handle.join().expect("the syncer thread does not panic");
        }
    }

    /// The journal's generation (random, chosen at creation).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Segment id and offset where the next record will be written (before any move to the
    /// next segment).
    pub fn write_position(&self) -> (u64, u64) {
        (self.segments[self.current].id, self.offset)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.stop_syncer();
    }
}

fn lock_error(directory: &str, operation: &'static str, error: std::io::Error) -> JournalError {
    if error.kind() == std::io::ErrorKind::WouldBlock {
        return JournalError::Locked {
            directory: directory.to_owned(),
        };
    }
    JournalError::io(operation, directory, error)
}

/// Opens every segment file, checks its header, and returns the generation (None when there
/// are no segments yet) and the segments in id order.
pub(crate) fn load_segments(
    storage: &mut dyn Storage,
    names: &[String],
) -> Result<(Option<u64>, Vec<OpenSegment>), JournalError> {
    let mut ids: Vec<u64> = names
        .iter()
        .filter_map(|name| parse_segment_name(name))
        .collect();
    ids.sort_unstable();
    let mut segments: Vec<OpenSegment> = Vec::with_capacity(ids.len());
    let mut generation = None;
    for (index, &id) in ids.iter().enumerate() {
        let bad = |reason: &'static str| {
            JournalError::Corruption(Corruption {
                segment: id,
                offset: 0,
                sequence: 0,
                reason,
                evidence: "segments present from id",
                evidence_sequence: ids[0],
            })
        };
        if index > 0 && id != ids[index - 1] + 1 {
            return Err(JournalError::Corruption(Corruption {
                segment: ids[index - 1] + 1,
                offset: 0,
                sequence: 0,
                reason: "segment file missing (gap in segment ids)",
                evidence: "the next segment present is",
                evidence_sequence: id,
            }));
        }
        let name = segment_file_name(id);
        let file = storage
            .open(&name)
            .map_err(|error| JournalError::io("opening a segment", &name, error))?;
        if file.size() < SEGMENT_SIZE_MIN {
            return Err(bad("segment file shorter than the minimum segment size"));
        }
        let mut block = [0u8; 128];
        file.read(0, &mut block)
            .map_err(|error| JournalError::io("reading a segment header", &name, error))?;
        let header = SegmentHeader::decode(&block).map_err(bad)?;
        if header.segment != id {
            return Err(bad("segment header names another segment id"));
        }
        if header.size != file.size() {
            return Err(bad(
                "segment file size differs from its header (truncated?)",
            ));
        }
        match generation {
            None => generation = Some(header.generation),
            Some(expected) if expected != header.generation => {
                return Err(bad("segment from another journal generation"));
            }
            Some(_) => {}
        }
        segments.push(OpenSegment { id, file });
    }
    Ok((generation, segments))
}

/// Snapshot files found in a directory: valid ones newest first, and the rejected ones.
pub(crate) struct Snapshots {
    pub valid: Vec<(SnapshotHeader, Vec<u8>, String)>,
    pub rejected: Vec<String>,
}

/// Reads and validates every snapshot file.
pub(crate) fn load_snapshots(
    storage: &mut dyn Storage,
    names: &[String],
    generation: Option<u64>,
) -> Snapshots {
    let mut found: Vec<(u64, &String)> = names
        .iter()
        .filter_map(|name| parse_snapshot_name(name).map(|sequence| (sequence, name)))
        .collect();
    found.sort();
    found.reverse();
    let mut snapshots = Snapshots {
        valid: Vec::new(),
        rejected: Vec::new(),
    };
    for (sequence, name) in found {
        let reason = match storage.read_file(name) {
            Err(_) => "cannot be read",
            Ok(bytes) => match SnapshotHeader::decode(&bytes) {
                Err(reason) => reason,
                Ok((header, _)) if Some(header.generation) != generation => {
                    "from another journal generation"
                }
                Ok((header, _)) if header.sequence != sequence => "file name and sequence differ",
                Ok((header, image)) => {
                    snapshots.valid.push((header, image.to_vec(), name.clone()));
                    continue;
                }
            },
        };
        snapshots.rejected.push(format!("{name}: {reason}"));
    }
    snapshots
}

/// The start cursor of a whole-log scan.
pub(crate) fn log_start() -> Cursor {
    Cursor {
        position: Position {
            index: 0,
            offset: SEGMENT_HEADER_SIZE,
        },
        sequence: 1,
        previous_checksum: 0,
    }
}
