//! The journal: open and recover, append records (its own, or copied verbatim from a primary's
//! journal), group commit through a syncer thread, replay, checkpoints written by a forked
//! child, retirement of covered segments, truncation of a mirror's diverged tail, close.
//!
//! Invariants:
//! - `written` is the sequence of the last record whose header and body are both in the
//!   segment; `durable <= written` always; `durable` is published only after a sync that began
//!   after every record up to it was written (J5: the syncer reads `written` and the dirty
//!   ranges together, under one lock, before it syncs them); it moves back only in
//!   `truncate_after`, to the cut, once nothing is pending and the dropped bytes are zeroed;
//! - no record on disk carries a watermark above what is durable in this journal: a copied
//!   record waits for its watermark to be durable here before it is written;
//! - after a failed sync `durable` never moves again and every append fails (J6);
//! - there is always at least one spare, preallocated segment after the current one (J1), so a
//!   full disk is reported by `append` before the current segment fills;
//! - records are written only by the owner of `&mut Journal`; the syncer only syncs;
//! - at most one checkpoint child runs; its file is renamed into place only after the child
//!   exited 0 and the checkpoint's sequence is durable, and it counts only once read back valid;
//! - a segment is retired (deleted or archived) only when every record in it is at or before
//!   the older of the two newest valid checkpoints, never the segment being written, and always
//!   the oldest first, so the segments present stay contiguous after a crash at any point.
//!
//! Does not interpret record bodies or checkpoint images.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use xxhash_rust::xxh3::{xxh3_128, Xxh3Default};

use crate::error::{Corruption, JournalError};
use crate::le::u64_at;
use crate::mmap::{fork_child, ChildExit, ChildProcess, EXIT_PANIC, EXIT_PARENT_GONE};
use crate::prefault::{Prefaulter, SegmentAt};
use crate::reader::RecordReader;
use crate::record::{
    body_checksum, record_size, CheckpointHeader, RecordHeader, SegmentHeader,
    CHECKPOINT_HEADER_SIZE, RECORD_HEADER_SIZE, RECORD_SEGMENT_OFFSET, SEGMENT_HEADER_SIZE,
    SEGMENT_SIZE_MIN,
};
use crate::replay::{
    first_after, first_record, locate, scan, zero_range, zero_tail, Anchor, Cursor, OpenSegment,
    Position, ScanBodies, Step, Walker,
};
use crate::storage::{is_storage_full, SegmentSync, Storage};
use crate::{
    checkpoint_file_name, parse_checkpoint_name, parse_segment_name, segment_file_name, Backend,
    Checkpoint, CheckpointDone, CheckpointInfo, CheckpointStarted, FileStorage, JournalConfig,
    MmapStorage, RecordView, Recovery, SyncMode, TruncatedTail,
};

/// Size of the buffer a checkpoint image is streamed through (allocated once, before the first
/// fork; the child writes through its copy-on-write copy).
pub const CHECKPOINT_BUFFER_SIZE: usize = 1 << 20;

/// Segments before the one written that a retention hold may keep
/// ([`Journal::retention_hold`]): 8 GiB with the default 1 GiB segments.
pub const RETENTION_HOLD_SEGMENTS_MAX: u64 = 8;

/// Exit code of a checkpoint child that could not write or sync its file.
const EXIT_IO: i32 = 1;
/// Exit code of a checkpoint child that found the device full.
const EXIT_STORAGE_FULL: i32 = 2;
/// Exit code of a checkpoint child whose file, read back after its sync, did not match the
/// checksum it wrote.
const EXIT_READ_BACK: i32 = 3;

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

    /// The highest sequence written (whole in the files, perhaps not yet durable): a reader on
    /// another thread may read every record up to it.
    pub fn written_sequence(&self) -> u64 {
        self.written.load(Ordering::Acquire)
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
    /// Segments the writer has moved on from; once `ranges` (taken with them) are synced,
    /// everything written to them is durable and their pages may be released.
    finished: Vec<Arc<dyn SegmentSync>>,
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
        let (ranges, written, finished) = {
            let mut pending = lock(&self.pending);
            (
                std::mem::take(&mut pending.ranges),
                pending.written,
                std::mem::take(&mut pending.finished),
            )
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
        // After the publication, so that releasing pages never delays a reply.
        for range in &ranges {
            range.syncer.release_durable();
        }
        for syncer in &finished {
            syncer.release_all();
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
    /// The journal directory on disk (None on simulated storage: checkpoints are then written
    /// in process, and there is no archive).
    dir: Option<PathBuf>,
    /// Timestamp of record `written`.
    last_timestamp: u64,
    /// The first sequence the journal holds, and the checksum its record must chain to.
    first_sequence: u64,
    first_previous: u128,
    /// Valid checkpoints, newest first, at most two.
    checkpoints: Vec<CheckpointInfo>,
    /// The checkpoint being written, if any.
    running: Option<Running>,
    /// The buffer a checkpoint child streams its image through.
    image_buffer: Vec<u8>,
    /// Faults in the pages ahead of the writer (mapped storage on disk only).
    prefaulter: Option<Prefaulter>,
    /// Records at or after this sequence are kept even when checkpoints cover them
    /// ([`Journal::retention_hold`]); `u64::MAX` holds nothing.
    hold: Arc<AtomicU64>,
}

/// A checkpoint in progress.
struct Running {
    sequence: u64,
    timestamp: u64,
    chain_checksum: u128,
    name: String,
    temporary: String,
    started: Instant,
    state: RunState,
    /// The file's writer read the image back after its sync and matched its checksum (a
    /// forked child does), so finishing checks only the header and the size.
    read_back: bool,
}

enum RunState {
    /// The child is (or may still be) running.
    Process(ChildProcess),
    /// The file is written (or failed); waiting for the sequence to be durable.
    Finished(Result<(), JournalError>),
}

/// The checkpoint child hands its file to the device in windows of this size, at most two
/// queued at once (`mmap::write_behind`): the journal's syncs, which every reply waits for,
/// then queue behind a few milliseconds of checkpoint writes instead of the whole image.
const WRITE_BEHIND_WINDOW: u64 = 8 << 20;

/// Streams a checkpoint image into its file through a fixed buffer, with a running checksum.
/// Runs in the forked child: it never allocates.
struct ImageWriter<'a> {
    file: &'a File,
    buffer: &'a mut [u8],
    filled: usize,
    offset: u64,
    /// Where the bytes not yet handed to `write_behind` start.
    behind: u64,
    size: u64,
    hasher: Xxh3Default,
}

impl ImageWriter<'_> {
    fn drain(&mut self) -> io::Result<()> {
        if self.filled > 0 {
            let bytes = &self.buffer[..self.filled];
            self.file.write_all_at(bytes, self.offset)?;
            self.hasher.update(bytes);
            self.offset += self.filled as u64;
            self.filled = 0;
            if self.offset - self.behind >= WRITE_BEHIND_WINDOW {
                crate::mmap::write_behind(self.file, self.behind, WRITE_BEHIND_WINDOW);
                self.behind += WRITE_BEHIND_WINDOW;
            }
        }
        Ok(())
    }
}

impl io::Write for ImageWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.filled == self.buffer.len() {
            self.drain()?;
        }
        let count = bytes.len().min(self.buffer.len() - self.filled);
        self.buffer[self.filled..self.filled + count].copy_from_slice(&bytes[..count]);
        self.filled += count;
        self.size += count as u64;
        Ok(count)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()
    }
}

/// The body of the checkpoint child: placeholder header, image, real header, fsync. Returns the
/// exit code. Allocates nothing, locks nothing, prints nothing.
fn checkpoint_child(
    file: &File,
    buffer: &mut [u8],
    mut header: CheckpointHeader,
    write_image: &mut dyn FnMut(&mut dyn io::Write) -> io::Result<()>,
) -> i32 {
    let mut write = || -> io::Result<bool> {
        file.write_all_at(&[0u8; CHECKPOINT_HEADER_SIZE as usize], 0)?;
        let mut writer = ImageWriter {
            file,
            buffer,
            filled: 0,
            offset: CHECKPOINT_HEADER_SIZE,
            behind: 0,
            size: 0,
            hasher: Xxh3Default::new(),
        };
        write_image(&mut writer)?;
        writer.drain()?;
        header.image_size = writer.size;
        header.image_checksum = writer.hasher.digest128();
        let mut bytes = [0u8; CHECKPOINT_HEADER_SIZE as usize];
        header.encode(&mut bytes);
        file.write_all_at(&bytes, 0)?;
        file.sync_all()?;
        // Read back here, not on the core: the image is hundreds of MiB. Its pages stay
        // cached: a restart reads both kept checkpoints first thing.
        Ok(image_mismatch(file, buffer, &header)?.is_none())
    };
    match write() {
        Ok(true) => 0,
        Ok(false) => EXIT_READ_BACK,
        Err(error) if is_storage_full(&error) => EXIT_STORAGE_FULL,
        Err(_) => EXIT_IO,
    }
}

/// What is wrong with the image in `file` (after its header) against the size and checksum
/// `header` gives, read through `buffer`; `None` when it matches. Allocates nothing: the
/// checkpoint child reads its file back with it, and the core checks a file it did not see
/// written.
fn image_mismatch(
    file: &File,
    buffer: &mut [u8],
    header: &CheckpointHeader,
) -> io::Result<Option<&'static str>> {
    let mut hasher = Xxh3Default::new();
    let mut offset = CHECKPOINT_HEADER_SIZE;
    loop {
        let count = file.read_at(buffer, offset)?;
        if count == 0 {
            break;
        }
        hasher.update(&buffer[..count]);
        offset += count as u64;
    }
    Ok(if offset - CHECKPOINT_HEADER_SIZE != header.image_size {
        Some("checkpoint image size does not match the file size")
    } else if hasher.digest128() != header.image_checksum {
        Some("checkpoint image checksum mismatch")
    } else {
        None
    })
}

/// The error for a checkpoint child that did not exit 0.
fn child_error(exit: ChildExit, file: &str, directory: &str) -> JournalError {
    let reason = match exit {
        ChildExit::Code(EXIT_STORAGE_FULL) => {
            return JournalError::StorageFull {
                directory: directory.to_owned(),
            }
        }
        ChildExit::Code(EXIT_IO) => "the writer could not write or sync the file".to_owned(),
        ChildExit::Code(EXIT_READ_BACK) => {
            "the file, read back after its sync, does not match the image written".to_owned()
        }
        ChildExit::Code(EXIT_PARENT_GONE) => "the writer found its parent gone".to_owned(),
        ChildExit::Code(EXIT_PANIC) => "the writer panicked".to_owned(),
        ChildExit::Code(code) => format!("the writer exited with code {code}"),
        ChildExit::Signal(signal) => format!("the writer was killed by signal {signal}"),
    };
    JournalError::CheckpointFailed {
        file: file.to_owned(),
        reason,
    }
}

/// Writes one record at `offset` of `segment`: the body first, then the header (J4), so an
/// in-process reader never sees a header without its body.
fn write_record(
    segment: &mut OpenSegment,
    offset: u64,
    header: &[u8],
    body: &[u8],
) -> Result<(), JournalError> {
    let id = segment.id;
    segment
        .file
        .write(offset + RECORD_HEADER_SIZE, body)
        .map_err(|error| {
            JournalError::io("writing a record body", &segment_file_name(id), error)
        })?;
    segment
        .file
        .write(offset, header)
        .map_err(|error| JournalError::io("writing a record header", &segment_file_name(id), error))
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
    /// [`JournalError::RetiredUncovered`] when the first segments were retired and no valid
    /// checkpoint covers them, [`JournalError::StorageFull`] when the first segments cannot be
    /// allocated, and I/O errors.
    pub fn open(dir: &Path, config: &JournalConfig) -> Result<(Journal, Recovery), JournalError> {
        Journal::open_overlapped(dir, config, |_| ())
            .map(|(journal, recovery, ())| (journal, recovery))
    }

    /// [`Journal::open`], running `work` on another thread while recovery scans the records
    /// after the newest valid checkpoint, which `work` is given (`None` without one). Loading
    /// that checkpoint's image does not depend on the scan, so a caller can build its state from
    /// it meanwhile; `work` starts once the directory is locked. Its result is returned with
    /// the journal, or dropped when recovery fails.
    ///
    /// # Errors
    ///
    /// As [`Journal::open`].
    ///
    /// # Panics
    ///
    /// If `work` panics (the panic is resumed on the calling thread).
    pub fn open_overlapped<T: Send>(
        dir: &Path,
        config: &JournalConfig,
        work: impl FnOnce(Option<&Checkpoint>) -> T + Send,
    ) -> Result<(Journal, Recovery, T), JournalError> {
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
        Journal::open_at(storage, config, Some(dir.to_owned()), work)
    }

    /// Opens a journal on any [`Storage`] (the simulated one in tests). See [`Journal::open`].
    ///
    /// # Errors
    ///
    /// As [`Journal::open`].
    pub fn open_storage(
        storage: Box<dyn Storage>,
        config: &JournalConfig,
    ) -> Result<(Journal, Recovery), JournalError> {
        Journal::open_at(storage, config, None, |_| ())
            .map(|(journal, recovery, ())| (journal, recovery))
    }

    fn open_at<T: Send>(
        mut storage: Box<dyn Storage>,
        config: &JournalConfig,
        dir: Option<PathBuf>,
        work: impl FnOnce(Option<&Checkpoint>) -> T + Send,
    ) -> Result<(Journal, Recovery, T), JournalError> {
        let started = Instant::now();
        config.check()?;
        let directory = storage.describe();
        if let Some(archive) = &config.archive {
            if dir.is_none() {
                return Err(JournalError::Config {
                    reason: "an archive directory needs a journal directory on disk",
                });
            }
            fs::create_dir_all(archive).map_err(|error| {
                JournalError::io(
                    "creating the archive",
                    &archive.display().to_string(),
                    error,
                )
            })?;
        }
        let names = storage
            .list()
            .map_err(|error| JournalError::io("listing", &directory, error))?;
        // Leftovers of an interrupted segment creation or checkpoint write: never valid data.
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
        let mut checkpoints =
            load_checkpoints(&mut *storage, &names, generation, OlderImages::HeaderOnly);
        let checkpoint_found = names
            .iter()
            .any(|name| parse_checkpoint_name(name).is_some());
        if segments.is_empty() && checkpoint_found {
            return Err(JournalError::Corruption(Corruption {
                segment: 0,
                offset: 0,
                sequence: 1,
                reason: "segment files missing",
                evidence: "checkpoint files exist; records expected from sequence",
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
            dir,
            last_timestamp: 0,
            first_sequence: 1,
            first_previous: 0,
            checkpoints: Vec::new(),
            running: None,
            image_buffer: Vec::new(),
            prefaulter: None,
            hold: Arc::new(AtomicU64::new(u64::MAX)),
        };
        if journal.segments.is_empty() {
            journal.create_segment(0)?;
        }
        let (mut recovery, worked) = journal.recover(&mut checkpoints, work)?;
        journal.ensure_spare()?;
        // Only a mapped segment has pages to fault in (`SegmentSync::prefault`).
        if journal.dir.is_some() && journal.config.backend == Backend::Mmap {
            journal.prefaulter = Prefaulter::start();
        }
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
        Ok((journal, recovery, worked))
    }

    /// Recovery: pick the newest valid checkpoint, check that the journal still reaches it when
    /// older segments were retired, scan from it (running `work` on that checkpoint meanwhile),
    /// decide the tail, zero a torn tail.
    fn recover<T: Send>(
        &mut self,
        checkpoints: &mut Checkpoints,
        work: impl FnOnce(Option<&Checkpoint>) -> T + Send,
    ) -> Result<(Recovery, T), JournalError> {
        let body_size_max = self.config.body_size_max;
        let first_id = self.segments[0].id;
        let newest = checkpoints.valid.first();
        let (base, anchor) = log_base(&self.segments, self.generation, body_size_max, newest)?;
        // The image moves to the caller (it may be large: no copy).
        let checkpoint = checkpoints
            .valid
            .first_mut()
            .map(|(header, image, _)| Checkpoint {
                sequence: header.sequence,
                timestamp: header.timestamp,
                image: std::mem::take(image),
            });
        self.first_sequence = base.sequence;
        self.first_previous = base.previous_checksum;
        let start = locate(
            &self.segments,
            self.generation,
            body_size_max,
            anchor.sequence + 1,
            base,
        )?;
        // The scan reads the bodies after the anchor front to back, from the device (caches
        // were dropped at open): let it read ahead across all of them at once. Up to the
        // anchor it reads one header per record, so the read-ahead starts after it: a whole
        // segment before the anchor would be read for nothing.
        let after = first_after(
            &self.segments,
            self.generation,
            body_size_max,
            start,
            anchor.sequence,
        )?;
        for (index, segment) in self.segments.iter().enumerate().skip(after.index) {
            let offset = if index == after.index {
                after.offset
            } else {
                0
            };
            segment.file.will_need(offset);
        }
        let segments = &self.segments;
        let generation = self.generation;
        // Whichever thread runs `work` takes it from here.
        let work = std::sync::Mutex::new(Some(work));
        let run_work = |checkpoint: Option<&Checkpoint>| {
            let work = work
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .expect("the work runs once");
            work(checkpoint)
        };
        let (result, worked) = std::thread::scope(|scope| {
            let checkpoint = checkpoint.as_ref();
            let working = std::thread::Builder::new()
                .name("recovery-load".to_owned())
                .spawn_scoped(scope, move || run_work(checkpoint));
            let result = scan(
                segments,
                generation,
                body_size_max,
                start,
                anchor,
                &[],
                ScanBodies::AfterAnchor,
            );
            // A thread that cannot start leaves the work to this one, after the scan.
            let worked = match working {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => run_work(checkpoint),
            };
            (result, worked)
        });
        let result = result?;
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
        // The scans faulted in the segments they read (to the end of the last one, checking
        // that the tail is zero); none of it needs to stay resident.
        for syncer in &self.syncers {
            syncer.release_all();
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
        let last_timestamp = result.last_timestamp.unwrap_or_else(|| {
            checkpoint
                .as_ref()
                .map_or(0, |checkpoint| checkpoint.timestamp)
        });
        self.last_timestamp = last_timestamp;
        // A checkpoint is usable only while the journal holds the records after it.
        let first_sequence = self.first_sequence;
        self.checkpoints = checkpoints
            .valid
            .iter()
            .map(|(header, _, _)| header.info())
            .filter(|info| info.sequence + 1 >= first_sequence)
            .take(2)
            .collect();
        Ok((
            Recovery {
                checkpoint,
                checkpoint_previous: self.checkpoints.get(1).cloned(),
                checkpoints_rejected: checkpoints.rejected.clone(),
                records: result.records,
                first_sequence,
                retired_segments: first_id,
                last_sequence: self.written,
                last_timestamp,
                truncated: result.tail,
                elapsed: std::time::Duration::ZERO,
            },
            worked,
        ))
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
        let mut finished = None;
        if self.offset + size > self.segments[self.current].file.size() {
            finished = Some(self.move_to_spare()?);
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
        write_record(segment, self.offset, &self.header, body)?;
        let start = self.offset;
        self.offset += size;
        self.appended(start, sequence, timestamp, header.checksum, finished);
        Ok(sequence)
    }

    /// Moves the writer to the start of the spare segment, once the spare after it exists (J1).
    /// Returns the index of the segment it left.
    ///
    /// # Errors
    ///
    /// [`JournalError::StorageFull`] and I/O errors creating the next spare; the writer has
    /// not moved then.
    fn move_to_spare(&mut self) -> Result<usize, JournalError> {
        if self.segments.len() < self.current + 3 {
            let id = self.segments[self.current + 1].id + 1;
            self.create_segment(id)?;
        }
        let finished = self.current;
        self.current += 1;
        self.offset = SEGMENT_HEADER_SIZE;
        assert!(self.segments.len() >= self.current + 2);
        Ok(finished)
    }

    /// Everything after record `sequence` was written at `start..self.offset` of the current
    /// segment (body, then header): prefaulting follows the writer, the written state moves
    /// to it, and its bytes are handed to the syncer (or published at once without syncs).
    /// `finished` is the segment the writer left to write it, if it moved.
    fn appended(
        &mut self,
        start: u64,
        sequence: u64,
        timestamp: u64,
        checksum: u128,
        finished: Option<usize>,
    ) {
        assert_eq!(sequence, self.written + 1);
        assert!(start < self.offset);
        assert!(self.offset <= self.segments[self.current].file.size());
        if let Some(prefaulter) = &mut self.prefaulter {
            let segment_at = |index: usize| SegmentAt {
                id: self.segments[index].id,
                size: self.segments[index].file.size(),
                sync: &self.syncers[index],
            };
            prefaulter.follow(
                &segment_at(self.current),
                &segment_at(self.current + 1),
                self.offset,
            );
        }
        self.written = sequence;
        self.last_timestamp = timestamp;
        self.previous_checksum = checksum;
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
                if let Some(index) = finished {
                    pending.finished.push(Arc::clone(&self.syncers[index]));
                }
                if pending.syncer_sleeping {
                    self.shared.wake.notify_one();
                }
            }
        }
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
    /// written one; returns how many it visited. Every record it visits is verified again as it
    /// is read; records before `from_sequence` are passed over by their headers and the hash
    /// chain, without reading their bodies.
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
        if from_sequence < self.first_sequence {
            return Err(JournalError::Retired {
                sequence: from_sequence,
                first: self.first_sequence,
            });
        }
        let body_size_max = self.config.body_size_max;
        let start = locate(
            &self.segments,
            self.generation,
            body_size_max,
            from_sequence,
            self.base(),
        )?;
        let mut walker = Walker::new(&self.segments, self.generation, body_size_max, start);
        // The walk starts at the first record of `from_sequence`'s segment: the records before
        // it are passed over by their headers and the hash chain, their bodies not read.
        walker.headers_only_through = from_sequence - 1;
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

    /// The header checksum of record `sequence` (zero for 0): the checkpoint's chain anchor.
    fn record_checksum(&self, sequence: u64) -> Result<u128, JournalError> {
        if sequence == 0 {
            return Ok(0);
        }
        if sequence == self.written {
            return Ok(self.previous_checksum);
        }
        if sequence + 1 == self.first_sequence {
            return Ok(self.first_previous);
        }
        if sequence < self.first_sequence {
            return Err(JournalError::Retired {
                sequence,
                first: self.first_sequence,
            });
        }
        let (header, _) = self.find_record(sequence, false)?;
        Ok(header.checksum)
    }

    /// Record `sequence`, which the journal holds (written, not retired), and the cursor of
    /// the record after it. With `headers_only` its body's checksum is not checked again.
    fn find_record(
        &self,
        sequence: u64,
        headers_only: bool,
    ) -> Result<(RecordHeader, Cursor), JournalError> {
        let body_size_max = self.config.body_size_max;
        let start = locate(
            &self.segments,
            self.generation,
            body_size_max,
            sequence,
            self.base(),
        )?;
        let mut walker = Walker::new(&self.segments, self.generation, body_size_max, start);
        if headers_only {
            walker.headers_only_through = sequence;
        }
        loop {
            match walker.step()? {
                Step::Record(header) if header.sequence == sequence => {
                    return Ok((header, walker.cursor));
                }
                Step::Record(_) => {}
                Step::End(end) => return Err(self.vanished(end.cursor, end.reason)),
            }
        }
    }

    /// The cursor of the first record the journal holds.
    fn base(&self) -> Cursor {
        Cursor {
            position: Position {
                index: 0,
                offset: SEGMENT_HEADER_SIZE,
            },
            sequence: self.first_sequence,
            previous_checksum: self.first_previous,
        }
    }

    /// The first sequence the journal holds (above 1 once segments were retired).
    pub fn first_sequence(&self) -> u64 {
        self.first_sequence
    }

    /// Id of the first segment present (the ones before it were retired).
    pub fn first_segment(&self) -> u64 {
        self.segments[0].id
    }

    /// The valid checkpoints, newest first (at most two).
    pub fn checkpoints(&self) -> &[CheckpointInfo] {
        &self.checkpoints
    }

    /// Whether a checkpoint is being written.
    pub fn checkpoint_running(&self) -> bool {
        self.running.is_some()
    }

    /// Reads, validates and returns the checkpoint at `sequence` (one of
    /// [`Journal::checkpoints`]), checking its chain checksum against the journal's record. For
    /// a caller that cannot use the newest image: it loads the previous one and replays from
    /// its sequence + 1.
    ///
    /// # Errors
    ///
    /// [`JournalError::CheckpointInvalid`] when the file fails validation or does not match the
    /// journal, [`JournalError::Retired`] when the journal no longer reaches it, I/O errors.
    pub fn load_checkpoint(&mut self, sequence: u64) -> Result<Checkpoint, JournalError> {
        let name = checkpoint_file_name(sequence);
        let bytes = self
            .storage
            .read_file(&name)
            .map_err(|error| JournalError::io("reading a checkpoint", &name, error))?;
        let invalid = |reason| JournalError::CheckpointInvalid {
            file: name.clone(),
            reason,
        };
        let (header, image) = CheckpointHeader::decode(&bytes).map_err(invalid)?;
        belongs(&header, sequence, Some(self.generation)).map_err(invalid)?;
        if header.chain_checksum != self.record_checksum(sequence)? {
            return Err(invalid(
                "does not match the journal's record at its sequence",
            ));
        }
        Ok(Checkpoint {
            sequence,
            timestamp: header.timestamp,
            image: image.to_vec(),
        })
    }

    /// Starts a checkpoint of the state after every record written so far: call it at a batch
    /// boundary, when every written record is applied. It notes the sequence, timestamp and
    /// chain checksum of the last record, then forks; the child calls `write_image` to stream
    /// the image (it must not allocate, lock or print: the child of a multi-threaded process
    /// may not), writes `checkpoint-S.ckpt.tmp`, fsyncs it and exits. This thread returns at
    /// once; [`Journal::checkpoint_poll`] finishes the checkpoint. On storage without a
    /// directory (the simulated one) the image is written in process instead.
    ///
    /// The kernel kills the child when the thread that called this exits (PR_SET_PDEATHSIG
    /// follows the thread, not the process): call it from a thread that lives as long as the
    /// journal, such as the core thread, and finish with `checkpoint_poll` or `close` there.
    ///
    /// Returns `None` when the newest checkpoint already covers every written record.
    ///
    /// # Errors
    ///
    /// [`JournalError::CheckpointRunning`] while another one runs,
    /// [`JournalError::SyncFailed`], and I/O errors creating the file or forking.
    pub fn checkpoint_start(
        &mut self,
        write_image: &mut dyn FnMut(&mut dyn io::Write) -> io::Result<()>,
    ) -> Result<Option<CheckpointStarted>, JournalError> {
        if let Some(running) = &self.running {
            return Err(JournalError::CheckpointRunning {
                sequence: running.sequence,
            });
        }
        if self.shared.durability.failed() {
            return Err(JournalError::SyncFailed);
        }
        let sequence = self.written;
        if self
            .checkpoints
            .first()
            .is_some_and(|newest| newest.sequence >= sequence)
        {
            return Ok(None);
        }
        let header = CheckpointHeader {
            generation: self.generation,
            sequence,
            timestamp: self.last_timestamp,
            chain_checksum: self.previous_checksum,
            image_size: 0,
            image_checksum: 0,
        };
        let name = checkpoint_file_name(sequence);
        let temporary = format!("{name}.tmp");
        let started = Instant::now();
        let read_back = self.dir.is_some();
        let (state, pid, pause) = match &self.dir {
            Some(dir) => {
                if self.image_buffer.is_empty() {
                    self.image_buffer = vec![0; CHECKPOINT_BUFFER_SIZE];
                }
                let path = dir.join(&temporary);
                // Read too: the child reads its image back after the sync.
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o644)
                    .open(&path)
                    .map_err(|error| {
                        JournalError::io("creating a checkpoint", &temporary, error)
                    })?;
                let buffer = &mut self.image_buffer;
                let forked = fork_child(&file, &mut || {
                    checkpoint_child(&file, buffer, header, write_image)
                });
                drop(file);
                let (child, pause) = forked.map_err(|error| {
                    let _ = fs::remove_file(&path);
                    JournalError::io("forking the checkpoint writer", &temporary, error)
                })?;
                (RunState::Process(child), child.id(), pause)
            }
            None => {
                let result = self.checkpoint_in_process(&temporary, header, write_image);
                (RunState::Finished(result), 0, started.elapsed())
            }
        };
        self.running = Some(Running {
            sequence,
            timestamp: self.last_timestamp,
            chain_checksum: self.previous_checksum,
            name,
            temporary,
            started,
            state,
            read_back,
        });
        Ok(Some(CheckpointStarted {
            sequence,
            timestamp: self.last_timestamp,
            pid,
            pause,
        }))
    }

    /// Writes the checkpoint file in this process (storage without a directory).
    fn checkpoint_in_process(
        &mut self,
        temporary: &str,
        mut header: CheckpointHeader,
        write_image: &mut dyn FnMut(&mut dyn io::Write) -> io::Result<()>,
    ) -> Result<(), JournalError> {
        let mut bytes = vec![0u8; CHECKPOINT_HEADER_SIZE as usize];
        write_image(&mut bytes).map_err(|error| JournalError::CheckpointFailed {
            file: temporary.to_owned(),
            reason: format!("the image could not be written: {error}"),
        })?;
        let image = &bytes[CHECKPOINT_HEADER_SIZE as usize..];
        header.image_size = image.len() as u64;
        header.image_checksum = xxh3_128(image);
        let mut header_bytes = [0u8; CHECKPOINT_HEADER_SIZE as usize];
        header.encode(&mut header_bytes);
        bytes[..CHECKPOINT_HEADER_SIZE as usize].copy_from_slice(&header_bytes);
        if let Err(error) = self.storage.write_file(temporary, &bytes) {
            let _ = self.storage.remove(temporary);
            return Err(JournalError::io("writing a checkpoint", temporary, error));
        }
        Ok(())
    }

    /// Finishes a started checkpoint without blocking: when the child has exited 0 (after it
    /// read its file back and verified it) and the checkpoint's sequence is durable, renames
    /// the file into place, syncs the directory, checks the header and the size, keeps the
    /// newest two checkpoints (removing older files) and retires the segments they both cover.
    /// Returns `None` while there is nothing to finish yet (or no checkpoint runs).
    ///
    /// # Errors
    ///
    /// [`JournalError::CheckpointFailed`] or [`JournalError::StorageFull`] when the child
    /// failed (its temporary file is removed; the caller logs it and tries again later),
    /// [`JournalError::CheckpointInvalid`] when the file does not read back valid (removed),
    /// and I/O errors renaming, syncing or retiring.
    pub fn checkpoint_poll(&mut self) -> Result<Option<CheckpointDone>, JournalError> {
        let directory = self.storage.describe();
        let Some(running) = &mut self.running else {
            return Ok(None);
        };
        if let RunState::Process(child) = running.state {
            running.state = match child.poll() {
                Ok(None) => return Ok(None),
                Ok(Some(ChildExit::Code(0))) => RunState::Finished(Ok(())),
                Ok(Some(exit)) => {
                    RunState::Finished(Err(child_error(exit, &running.name, &directory)))
                }
                Err(error) => RunState::Finished(Err(JournalError::io(
                    "waiting for the checkpoint writer",
                    &running.name,
                    error,
                ))),
            };
        }
        let written_ok = matches!(running.state, RunState::Finished(Ok(())));
        let durable = self.shared.durability.durable_sequence() >= running.sequence;
        if written_ok && !durable && !self.shared.durability.failed() {
            return Ok(None);
        }
        let Some(running) = self.running.take() else {
            return Ok(None);
        };
        if let RunState::Finished(Err(error)) = running.state {
            self.remove_quietly(&running.temporary);
            return Err(error);
        }
        if self.shared.durability.failed() {
            self.remove_quietly(&running.temporary);
            return Err(JournalError::SyncFailed);
        }
        self.finish_checkpoint(&running).map(Some)
    }

    /// Removes a file that must not stay (a failed checkpoint's temporary file), best effort:
    /// a leftover `.tmp` file is removed at the next open anyway.
    fn remove_quietly(&mut self, name: &str) {
        if self.storage.remove(name).is_ok() {
            let _ = self.storage.sync_directory();
        }
    }

    /// Rename, verify, keep two, retire.
    fn finish_checkpoint(&mut self, running: &Running) -> Result<CheckpointDone, JournalError> {
        let directory = self.storage.describe();
        let name = &running.name;
        self.storage
            .rename(&running.temporary, name)
            .map_err(|error| JournalError::io("renaming a checkpoint", name, error))?;
        self.storage
            .sync_directory()
            .map_err(|error| JournalError::io("syncing the directory", &directory, error))?;
        let verified = self
            .verify_checkpoint_file(name, running.read_back)
            .and_then(|header| {
                let expected = (
                    self.generation,
                    running.sequence,
                    running.timestamp,
                    running.chain_checksum,
                );
                let found = (
                    header.generation,
                    header.sequence,
                    header.timestamp,
                    header.chain_checksum,
                );
                if expected == found {
                    Ok(header)
                } else {
                    Err(JournalError::CheckpointInvalid {
                        file: name.clone(),
                        reason: "header does not describe the checkpoint that was started",
                    })
                }
            });
        let header = match verified {
            Ok(header) => header,
            Err(error) => {
                self.remove_quietly(name);
                return Err(error);
            }
        };
        let info = header.info();
        self.checkpoints
            .retain(|other| other.sequence != info.sequence);
        self.checkpoints.push(info);
        self.checkpoints
            .sort_by_key(|checkpoint| std::cmp::Reverse(checkpoint.sequence));
        self.checkpoints.truncate(2);
        self.prune_checkpoints()?;
        let retired = self.retire()?;
        Ok(CheckpointDone {
            sequence: header.sequence,
            timestamp: header.timestamp,
            image_size: header.image_size,
            elapsed: running.started.elapsed(),
            retired,
            first_sequence: self.first_sequence,
        })
    }

    /// Validates a just written checkpoint file and returns its header: the header, and either
    /// the file's size when its writer already read the image back (`read_back`), or the
    /// image's size and checksum, streamed through the image buffer on disk and read whole on
    /// other storage.
    fn verify_checkpoint_file(
        &mut self,
        name: &str,
        read_back: bool,
    ) -> Result<CheckpointHeader, JournalError> {
        let invalid = |reason| JournalError::CheckpointInvalid {
            file: name.to_owned(),
            reason,
        };
        let Some(dir) = &self.dir else {
            let bytes = self
                .storage
                .read_file(name)
                .map_err(|error| JournalError::io("reading a checkpoint back", name, error))?;
            return CheckpointHeader::decode(&bytes)
                .map(|(header, _)| header)
                .map_err(invalid);
        };
        let io_error = |error| JournalError::io("reading a checkpoint back", name, error);
        let mut file = File::open(dir.join(name)).map_err(io_error)?;
        let mut header_bytes = [0u8; CHECKPOINT_HEADER_SIZE as usize];
        if file.read_exact(&mut header_bytes).is_err() {
            return Err(invalid("checkpoint file shorter than its header"));
        }
        let header = CheckpointHeader::decode_header(&header_bytes).map_err(invalid)?;
        if read_back {
            // The child that wrote the file read its image back and matched the checksum after
            // the sync (`image_mismatch`): the core does not read hundreds of MiB again.
            let size = file.metadata().map_err(io_error)?.len();
            if size.checked_sub(CHECKPOINT_HEADER_SIZE) != Some(header.image_size) {
                return Err(invalid(
                    "checkpoint image size does not match the file size",
                ));
            }
            return Ok(header);
        }
        if self.image_buffer.is_empty() {
            self.image_buffer = vec![0; CHECKPOINT_BUFFER_SIZE];
        }
        match image_mismatch(&file, &mut self.image_buffer, &header).map_err(io_error)? {
            Some(reason) => Err(invalid(reason)),
            None => Ok(header),
        }
    }

    /// Removes every checkpoint file but the (at most two) valid ones kept.
    fn prune_checkpoints(&mut self) -> Result<(), JournalError> {
        let directory = self.storage.describe();
        let names = self
            .storage
            .list()
            .map_err(|error| JournalError::io("listing", &directory, error))?;
        let mut removed = false;
        for name in names {
            let Some(sequence) = parse_checkpoint_name(&name) else {
                continue;
            };
            if self
                .checkpoints
                .iter()
                .any(|kept| kept.sequence == sequence)
            {
                continue;
            }
            self.storage
                .remove(&name)
                .map_err(|error| JournalError::io("removing an old checkpoint", &name, error))?;
            removed = true;
        }
        if removed {
            self.storage
                .sync_directory()
                .map_err(|error| JournalError::io("syncing the directory", &directory, error))?;
        }
        Ok(())
    }

    /// Retires the segments whose records are all at or before the older of the two newest
    /// valid checkpoints, oldest first, never the segment being written. Returns the ids
    /// retired, first and last.
    fn retire(&mut self) -> Result<Option<(u64, u64)>, JournalError> {
        let Some(older) = self
            .checkpoints
            .get(1)
            .map(|checkpoint| checkpoint.sequence)
        else {
            return Ok(None);
        };
        let mut retired: Option<(u64, u64)> = None;
        while self.current > 0 {
            let next = first_record(
                &self.segments,
                self.generation,
                self.config.body_size_max,
                1,
            )?;
            let Some(next) = next else { break };
            if next.sequence > older + 1 {
                break;
            }
            // Held for a reader that still needs these records (a backup catching up), while
            // the journal holds few segments before the one written.
            let held = next.sequence > self.hold.load(Ordering::Acquire);
            if held && (self.current as u64) <= RETENTION_HOLD_SEGMENTS_MAX {
                break;
            }
            let segment = self.segments.remove(0);
            self.syncers.remove(0);
            self.current -= 1;
            let id = segment.id;
            drop(segment);
            self.first_sequence = next.sequence;
            self.first_previous = next.previous_checksum;
            self.dispose_segment(id)?;
            retired = Some((retired.map_or(id, |(first, _)| first), id));
        }
        Ok(retired)
    }

    /// Deletes a retired segment, or moves it to the archive; then syncs the directory, so
    /// that segments always disappear oldest first.
    fn dispose_segment(&mut self, id: u64) -> Result<(), JournalError> {
        let name = segment_file_name(id);
        let directory = self.storage.describe();
        match (&self.config.archive, &self.dir) {
            (Some(archive), Some(dir)) => archive_segment(dir, archive, &name)?,
            _ => self
                .storage
                .remove(&name)
                .map_err(|error| JournalError::io("removing a retired segment", &name, error))?,
        }
        self.storage
            .sync_directory()
            .map_err(|error| JournalError::io("syncing the directory", &directory, error))
    }

    /// Writes a checkpoint from a whole image in memory, on this thread: `image` is the state
    /// after applying records 1..=`sequence`, and `timestamp` the timestamp of record
    /// `sequence`. Waits until `sequence` is durable, writes a temporary file, syncs it,
    /// renames it, syncs the directory, reads it back and verifies it, keeps the newest two
    /// checkpoints and retires the segments they cover (as [`Journal::checkpoint_poll`]).
    ///
    /// # Errors
    ///
    /// [`JournalError::CheckpointSequenceAboveWritten`], [`JournalError::CheckpointRunning`],
    /// [`JournalError::StorageFull`] (the previous checkpoints stay),
    /// [`JournalError::SyncFailed`], and I/O errors.
    pub fn write_checkpoint(
        &mut self,
        sequence: u64,
        timestamp: u64,
        image: &[u8],
    ) -> Result<(), JournalError> {
        if sequence > self.written {
            return Err(JournalError::CheckpointSequenceAboveWritten {
                sequence,
                written: self.written,
            });
        }
        if let Some(running) = &self.running {
            return Err(JournalError::CheckpointRunning {
                sequence: running.sequence,
            });
        }
        // A checkpoint must never cover records a crash could still drop.
        if self.shared.durability.durable_sequence() < sequence {
            self.sync()?;
            self.shared.durability.wait_durable(sequence)?;
        }
        let header = CheckpointHeader {
            generation: self.generation,
            sequence,
            timestamp,
            chain_checksum: self.record_checksum(sequence)?,
            image_size: image.len() as u64,
            image_checksum: xxh3_128(image),
        };
        let mut bytes = vec![0u8; CHECKPOINT_HEADER_SIZE as usize];
        let mut header_bytes = [0u8; CHECKPOINT_HEADER_SIZE as usize];
        header.encode(&mut header_bytes);
        bytes.copy_from_slice(&header_bytes);
        bytes.extend_from_slice(image);
        let name = checkpoint_file_name(sequence);
        let temporary = format!("{name}.tmp");
        if let Err(error) = self.storage.write_file(&temporary, &bytes) {
            let _ = self.storage.remove(&temporary);
            return Err(JournalError::io("writing a checkpoint", &temporary, error));
        }
        let running = Running {
            sequence,
            timestamp,
            chain_checksum: header.chain_checksum,
            name,
            temporary,
            started: Instant::now(),
            state: RunState::Finished(Ok(())),
            read_back: false,
        };
        self.finish_checkpoint(&running).map(|_| ())
    }

    /// Final sync, then waits for a running checkpoint child and finishes its checkpoint,
    /// then stops the syncer thread.
    ///
    /// # Errors
    ///
    /// [`JournalError::SyncFailed`] when the final (or an earlier) sync failed; the errors of
    /// [`Journal::checkpoint_poll`] when the running checkpoint failed (every record is durable
    /// then; only the checkpoint is missing).
    pub fn close(mut self) -> Result<(), JournalError> {
        if self.config.sync == SyncMode::Manual {
            self.shared.sync_pending()?;
        }
        let mut checkpoint = Ok(());
        if let Some(running) = &mut self.running {
            if let RunState::Process(child) = running.state {
                let directory = self.storage.describe();
                running.state = match child.wait() {
                    Ok(ChildExit::Code(0)) => RunState::Finished(Ok(())),
                    Ok(exit) => {
                        RunState::Finished(Err(child_error(exit, &running.name, &directory)))
                    }
                    Err(error) => RunState::Finished(Err(JournalError::io(
                        "waiting for the checkpoint writer",
                        &running.name,
                        error,
                    ))),
                };
            }
            checkpoint = self.sync().and_then(|_| self.checkpoint_poll().map(|_| ()));
        }
        self.stop_syncer();
        if self.shared.durability.failed() {
            return Err(JournalError::SyncFailed);
        }
        if self.config.sync == SyncMode::Data {
            assert_eq!(self.shared.durability.durable_sequence(), self.written);
        }
        checkpoint
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

/// Mirroring: a backup keeps a byte-identical copy of a primary's journal (FORMAT.md,
/// "Mirroring"). The primary reads its records with [`Journal::reader`]; the backup appends
/// them with [`Journal::append_copied`], after taking the primary's generation with
/// [`Journal::set_generation_if_empty`], and drops a diverged tail with
/// [`Journal::truncate_after`].
impl Journal {
    /// Appends one whole record copied verbatim from another journal of the same generation
    /// and segment size (its header, body and zero padding: exactly `record_size(body size)`
    /// bytes, as [`crate::RecordReader::read`] returns them) and returns its sequence. The
    /// record goes where the primary wrote it, which must be where this journal writes next:
    /// at the current offset of the current segment, or, when the header names the next
    /// segment at offset [`SEGMENT_HEADER_SIZE`] and the record does not fit in the rest of
    /// the current one (the rule `append` moves on by), at the start of the spare, creating
    /// the spare after it as `append` does.
    ///
    /// Everything is checked before a byte is written, in this order: the header (checksum,
    /// magic, version, reserved bytes, generation, segment id and offset, body size bound,
    /// watermark), the length against the header's body size, the sequence (the written one +
    /// 1), the hash chain (its previous checksum is this journal's last record's), the place
    /// (it fits where it is, or did not fit here when it names the next segment), the body
    /// checksum and the zero padding.
    ///
    /// The record's watermark (the primary's durable sequence when it wrote it) is kept; so
    /// that it is true of this journal too (recovery trusts it, J7), the record is written only
    /// once this journal's durable sequence reaches it: this waits for the syncer
    /// ([`SyncMode::Data`]) or syncs on this thread ([`SyncMode::Manual`]) when it does not.
    /// After the write it is exactly an `append`: durable once
    /// [`Durability::durable_sequence`] reaches it.
    ///
    /// # Errors
    ///
    /// [`JournalError::CopiedRecordRefused`] naming the failed check (nothing written),
    /// [`JournalError::StorageFull`] when the next spare cannot be allocated (nothing written),
    /// [`JournalError::SyncFailed`], and I/O errors.
    pub fn append_copied(&mut self, record: &[u8]) -> Result<u64, JournalError> {
        if self.shared.durability.failed() {
            return Err(JournalError::SyncFailed);
        }
        let sequence = self.written + 1;
        let refuse = |reason: &'static str| JournalError::CopiedRecordRefused { sequence, reason };
        if (record.len() as u64) < RECORD_HEADER_SIZE {
            return Err(refuse("shorter than a record header"));
        }
        let (header_bytes, rest) = record.split_at(RECORD_HEADER_SIZE as usize);
        // The header names the place it was written at (its checksum covers it): here, or the
        // start of the next segment. Decoding at that place checks it is the one.
        let current_id = self.segments[self.current].id;
        let current_size = self.segments[self.current].file.size();
        let named_segment = u64_at(header_bytes, RECORD_SEGMENT_OFFSET);
        let (moves, offset) = if named_segment == current_id {
            (false, self.offset)
        } else if named_segment == current_id + 1 {
            (true, SEGMENT_HEADER_SIZE)
        } else {
            return Err(refuse(
                "record names a segment other than the current one and the next",
            ));
        };
        let header = RecordHeader::decode(
            header_bytes,
            self.generation,
            named_segment,
            offset,
            self.config.body_size_max,
        )
        .map_err(refuse)?;
        let size = header.size();
        if record.len() as u64 != size {
            return Err(refuse(
                "length differs from the record size its header gives",
            ));
        }
        if header.sequence != sequence {
            return Err(refuse("sequence is not the next one"));
        }
        if header.previous_checksum != self.previous_checksum {
            return Err(refuse(
                "hash chain broken: previous checksum is not the last record's",
            ));
        }
        if moves {
            if self.offset + size <= current_size {
                return Err(refuse(
                    "record names the next segment but fits in the current one",
                ));
            }
            if SEGMENT_HEADER_SIZE + size > self.segments[self.current + 1].file.size() {
                return Err(refuse("record does not fit in the next segment"));
            }
        } else if self.offset + size > current_size {
            return Err(refuse(
                "record names the current segment but does not fit in its rest",
            ));
        }
        let (body, padding) = rest.split_at(header.body_size as usize);
        if !header.body_matches(body) {
            return Err(refuse("body checksum mismatch"));
        }
        if padding.iter().any(|&byte| byte != 0) {
            return Err(refuse("padding is not zero"));
        }
        if header.watermark > self.shared.durability.durable_sequence() {
            // The watermark is below the record's sequence: every record it covers is written.
            self.make_durable(header.watermark)?;
            assert!(self.shared.durability.durable_sequence() >= header.watermark);
        }
        let finished = if moves {
            Some(self.move_to_spare()?)
        } else {
            None
        };
        let segment = &mut self.segments[self.current];
        assert_eq!(segment.id, header.segment);
        assert_eq!(self.offset, header.offset);
        assert!(self.offset + size <= segment.file.size());
        // The body with its padding, as it came.
        write_record(segment, self.offset, header_bytes, rest)?;
        let start = self.offset;
        self.offset += size;
        self.appended(start, sequence, header.timestamp, header.checksum, finished);
        Ok(sequence)
    }

    /// The retention hold: a sequence another thread sets so that retirement keeps every
    /// record at or after it, even when checkpoints cover them (a primary keeps what a backup
    /// that is behind still needs). `u64::MAX`, the initial value, holds nothing. The hold is
    /// honoured only while at most [`RETENTION_HOLD_SEGMENTS_MAX`] segments come before the one
    /// written, so a reader that never comes back cannot fill the disk; it takes effect at the
    /// next retirement (after a checkpoint).
    pub fn retention_hold(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.hold)
    }

    /// Makes every record up to `sequence` (written already) durable before returning: syncs
    /// on this thread in [`SyncMode::Manual`], waits for the syncer in [`SyncMode::Data`], and
    /// has nothing to do in [`SyncMode::None`].
    fn make_durable(&self, sequence: u64) -> Result<(), JournalError> {
        match self.config.sync {
            SyncMode::Manual => {
                self.shared.sync_pending()?;
            }
            SyncMode::Data => {
                self.shared.durability.wait_durable(sequence)?;
            }
            SyncMode::None => {}
        }
        Ok(())
    }

    /// Gives a journal that holds nothing yet the generation `generation` (a backup takes its
    /// primary's, so that copied records validate here): removes its (empty) segment files,
    /// newest first, each removal synced, and creates segment 0 and its spare anew with it.
    /// Allowed only while the journal holds no record and no checkpoint file, and no
    /// checkpoint runs. Readers made before ([`Journal::reader`]) keep the old generation: make
    /// them again.
    ///
    /// A crash at any point leaves segment files of one generation only (or none, which the
    /// next open takes for a new journal), so the directory always opens.
    ///
    /// # Errors
    ///
    /// [`JournalError::JournalNotEmpty`] saying what the journal holds, and I/O errors.
    pub fn set_generation_if_empty(&mut self, generation: u64) -> Result<(), JournalError> {
        let refuse = |reason| Err(JournalError::JournalNotEmpty { reason });
        if self.written != 0 {
            return refuse("holds records");
        }
        if self.first_sequence != 1 {
            return refuse("has retired records");
        }
        if !self.checkpoints.is_empty() || self.running.is_some() {
            return refuse("has a checkpoint");
        }
        let directory = self.storage.describe();
        let names = self
            .storage
            .list()
            .map_err(|error| JournalError::io("listing", &directory, error))?;
        if names
            .iter()
            .any(|name| parse_checkpoint_name(name.trim_end_matches(".tmp")).is_some())
        {
            return refuse("has checkpoint files");
        }
        assert_eq!(self.current, 0);
        assert_eq!(self.offset, SEGMENT_HEADER_SIZE);
        assert_eq!(self.previous_checksum, 0);
        // The segment files are removed, newest first, and made anew: at every point a crash
        // can stop this, the segment files present share one generation (none present is a
        // new journal at the next open). Rewriting the headers in place could leave two.
        assert_eq!(
            self.segments[0].id, 0,
            "an empty journal starts at segment 0"
        );
        let ids: Vec<u64> = self.segments.iter().map(|segment| segment.id).collect();
        self.segments.clear();
        self.syncers.clear();
        for id in ids.iter().rev() {
            let name = segment_file_name(*id);
            self.storage
                .remove(&name)
                .map_err(|error| JournalError::io("removing an empty segment", &name, error))?;
            self.storage
                .sync_directory()
                .map_err(|error| JournalError::io("syncing the directory", &directory, error))?;
        }
        self.generation = generation;
        self.create_segment(0)?;
        self.ensure_spare()
    }

    /// Drops every record after `sequence` (a backup whose journal diverged from a new
    /// primary's keeps the common prefix) and returns what was dropped. First makes everything
    /// written durable (so that no sync of the old tail can publish after the cut), then
    /// zeroes the dropped bytes and syncs them, so recovery never sees them (backwards, in
    /// steps: a crash in the middle leaves a shorter log that still opens, and the caller
    /// truncates again); then the journal
    /// continues after record `sequence`: the next append is `sequence + 1`, the durable
    /// sequence is lowered to at most `sequence`, and nothing stays pending for the syncer.
    /// Whole segments past the new end stay as zeroed spares. `sequence` at or above the
    /// written sequence drops nothing.
    ///
    /// Callers must not be waiting ([`Durability::wait_durable`]) for a dropped sequence: the
    /// records that get it next are new ones. Readers ([`Journal::reader`]) notice the cut at
    /// their next read by the hash chain and find their place again.
    ///
    /// # Errors
    ///
    /// [`JournalError::TruncationRefused`] when `sequence` is below the newest checkpoint's
    /// sequence or below the first sequence held - 1, [`JournalError::CheckpointRunning`],
    /// [`JournalError::SyncFailed`], corruption when a written record no longer validates, and
    /// I/O errors.
    pub fn truncate_after(&mut self, sequence: u64) -> Result<TruncatedTail, JournalError> {
        let refuse = |reason| Err(JournalError::TruncationRefused { sequence, reason });
        if sequence >= self.written {
            return Ok(TruncatedTail {
                records: 0,
                first_sequence: self.written + 1,
                last_sequence: self.written,
                last_timestamp: 0,
            });
        }
        if let Some(running) = &self.running {
            return Err(JournalError::CheckpointRunning {
                sequence: running.sequence,
            });
        }
        if self.shared.durability.failed() {
            return Err(JournalError::SyncFailed);
        }
        let newest = self.checkpoints.first();
        if newest.is_some_and(|checkpoint| sequence < checkpoint.sequence) {
            return refuse("a checkpoint covers a later record");
        }
        if sequence + 1 < self.first_sequence {
            return refuse("the records up to it were retired");
        }
        let (end, last_timestamp) = if sequence + 1 == self.first_sequence {
            let timestamp = newest
                .filter(|checkpoint| checkpoint.sequence == sequence)
                .map_or(0, |checkpoint| checkpoint.timestamp);
            (self.base(), timestamp)
        } else {
            let (header, after) = self.find_record(sequence, true)?;
            (after, header.timestamp)
        };
        assert_eq!(end.sequence, sequence + 1);
        // No sync of the old tail may publish after the cut: make it all durable first, so that
        // nothing is pending and the syncer has published its last batch.
        self.make_durable(self.written)?;
        assert_eq!(self.shared.durability.durable_sequence(), self.written);
        let dropped = TruncatedTail {
            records: self.written - sequence,
            first_sequence: sequence + 1,
            last_sequence: self.written,
            last_timestamp: self.last_timestamp,
        };
        self.zero_dropped(end)?;
        self.current = end.position.index;
        self.offset = end.position.offset;
        self.written = sequence;
        self.previous_checksum = end.previous_checksum;
        self.last_timestamp = last_timestamp;
        assert!(self.segments.len() >= self.current + 2);
        {
            let mut pending = lock(&self.shared.pending);
            assert!(pending.ranges.is_empty());
            pending.written = sequence;
            let durability = &self.shared.durability;
            durability.written.store(sequence, Ordering::Release);
            durability.durable.fetch_min(sequence, Ordering::SeqCst);
        }
        Ok(dropped)
    }

    /// Zeroes the records from `end` (the cursor after the last record kept) to the end of
    /// the log, and syncs them, so that a crash at any point leaves a log that recovery opens:
    /// the records dropped so far are always a tail of the log, and no record left carries a
    /// watermark over one that is gone (J7 would call that corruption). The zeroing therefore
    /// goes backwards in steps, each synced before the next, and a step's records carry no
    /// watermark at or above its first sequence, so any part of it the device kept is a torn
    /// tail. Within a group commit the watermarks are all equal: a step is about one of them.
    fn zero_dropped(&mut self, end: Cursor) -> Result<(), JournalError> {
        let body_size_max = self.config.body_size_max;
        let first_id = self.segments[0].id;
        // Where each dropped record starts, its sequence and its watermark.
        let mut dropped: Vec<(Position, u64, u64)> = Vec::new();
        let mut walker = Walker::new(&self.segments, self.generation, body_size_max, end);
        walker.headers_only_through = self.written;
        while walker.cursor.sequence <= self.written {
            match walker.step()? {
                Step::Record(header) => {
                    let index = usize::try_from(header.segment - first_id)
                        .expect("segment index fits usize");
                    let position = Position {
                        index,
                        offset: header.offset,
                    };
                    dropped.push((position, header.sequence, header.watermark));
                }
                Step::End(end) => return Err(self.vanished(end.cursor, end.reason)),
            }
        }
        assert_eq!(dropped.len() as u64, self.written - (end.sequence - 1));
        let mut zero_end = Position {
            index: self.current,
            offset: self.offset,
        };
        let mut step_end = dropped.len();
        while step_end > 0 {
            let mut step_start = step_end - 1;
            let mut watermark_max = dropped[step_start].2;
            while step_start > 0 {
                let (_, sequence, watermark) = dropped[step_start - 1];
                if watermark_max.max(watermark) >= sequence {
                    break;
                }
                watermark_max = watermark_max.max(watermark);
                step_start -= 1;
            }
            assert!(watermark_max < dropped[step_start].1);
            let from = dropped[step_start].0;
            zero_range(&mut self.segments, from, zero_end)?;
            zero_end = from;
            step_end = step_start;
        }
        // The rest of a segment the first dropped record did not fit in is zero already.
        zero_range(&mut self.segments, end.position, zero_end)
    }

    /// A reader of this journal's records for another thread of this process, while this one
    /// writes (see [`RecordReader`]). It takes no lock: this journal holds the directory's.
    ///
    /// # Errors
    ///
    /// [`JournalError::Config`] on storage without a directory (the simulated one).
    pub fn reader(&self) -> Result<RecordReader, JournalError> {
        let Some(dir) = &self.dir else {
            return Err(JournalError::Config {
                reason: "a record reader needs a journal directory on disk",
            });
        };
        Ok(RecordReader::new(
            dir.clone(),
            self.generation,
            self.config.body_size_max,
        ))
    }

    /// The size of new segment files, from the configuration. Segments created before keep
    /// theirs ([`Journal::segment_sizes`]): a journal reopened with another size has segments
    /// of both, and a mirror is byte-identical only while its primary's segments have the same
    /// sizes as its own.
    pub fn segment_size(&self) -> u64 {
        self.config.segment_size
    }

    /// Id and size in bytes of every segment file present, in id order (the spares included).
    pub fn segment_sizes(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.segments
            .iter()
            .map(|segment| (segment.id, segment.file.size()))
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Dropped without close (a crash, as far as the files go): stop a checkpoint child so
        // that it outlives nothing; its temporary file is removed at the next open.
        if let Some(running) = self.running.take() {
            if let RunState::Process(child) = running.state {
                child.kill();
                let _ = child.wait();
            }
        }
        self.stop_syncer();
    }
}

/// Moves `name` from `dir` to `archive`: a rename on the same file system, else a copy that is
/// synced and renamed into place before the original is removed. Either way a crash leaves the
/// segment in the journal, in the archive, or in both, never in neither.
fn archive_segment(dir: &Path, archive: &Path, name: &str) -> Result<(), JournalError> {
    let source = dir.join(name);
    let target = archive.join(name);
    let archive_name = archive.display().to_string();
    let fail = |operation: &'static str, error: io::Error| {
        JournalError::io(operation, &archive_name, error)
    };
    match fs::rename(&source, &target) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EXDEV) => {
            let temporary = archive.join(format!("{name}.tmp"));
            fs::copy(&source, &temporary)
                .map_err(|error| fail("copying a segment to the archive", error))?;
            File::open(&temporary)
                .and_then(|file| file.sync_all())
                .map_err(|error| fail("syncing an archived segment", error))?;
            fs::rename(&temporary, &target)
                .map_err(|error| fail("naming an archived segment", error))?;
            crate::mmap::sync_directory(archive)
                .map_err(|error| fail("syncing the archive", error))?;
            return fs::remove_file(&source)
                .map_err(|error| fail("removing an archived segment", error));
        }
        Err(error) => return Err(fail("moving a segment to the archive", error)),
    }
    crate::mmap::sync_directory(archive).map_err(|error| fail("syncing the archive", error))
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

/// Checkpoint files found in a directory: valid ones newest first, and the rejected ones.
pub(crate) struct Checkpoints {
    pub valid: Vec<(CheckpointHeader, Vec<u8>, String)>,
    pub rejected: Vec<String>,
}

/// How much of the checkpoints older than the newest valid one `load_checkpoints` checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OlderImages {
    /// Read and check every image (`clearline journal verify` and `inspect`).
    Check,
    /// Check only their headers: recovery needs the newest valid image, and reads an older one
    /// only if the newest cannot be loaded (`Journal::load_checkpoint`, which checks it then).
    /// An image is hundreds of megabytes after 100 M transfers; reading 700 MB from the page
    /// cache into memory alone takes about 0.4 s on the 2-core benchmark machine.
    HeaderOnly,
}

/// Reads and validates the checkpoint files, newest first: until one is valid, each whole;
/// after it, each whole or only its header, as `older` says.
pub(crate) fn load_checkpoints(
    storage: &mut dyn Storage,
    names: &[String],
    generation: Option<u64>,
    older: OlderImages,
) -> Checkpoints {
    let mut found: Vec<(u64, &String)> = names
        .iter()
        .filter_map(|name| parse_checkpoint_name(name).map(|sequence| (sequence, name)))
        .collect();
    found.sort();
    found.reverse();
    let mut checkpoints = Checkpoints {
        valid: Vec::new(),
        rejected: Vec::new(),
    };
    for (sequence, name) in found {
        if older == OlderImages::HeaderOnly && !checkpoints.valid.is_empty() {
            match checked_header(storage, name, sequence, generation) {
                Ok(header) => checkpoints.valid.push((header, Vec::new(), name.clone())),
                Err(reason) => checkpoints.rejected.push(format!("{name}: {reason}")),
            }
            continue;
        }
        let reason = match storage.read_file(name) {
            Err(_) => "cannot be read",
            Ok(mut bytes) => match CheckpointHeader::decode(&bytes) {
                Err(reason) => reason,
                Ok((header, _)) if let Err(reason) = belongs(&header, sequence, generation) => {
                    reason
                }
                Ok((header, image)) => {
                    // Only the newest image is handed to the caller; the others are checked
                    // and described, and loaded again on demand (`Journal::load_checkpoint`).
                    // The image is the file's tail: moved down in place, not copied to fresh
                    // memory (it may be gigabytes).
                    let image = if checkpoints.valid.is_empty() {
                        let start = bytes.len() - image.len();
                        bytes.drain(..start);
                        bytes
                    } else {
                        Vec::new()
                    };
                    checkpoints.valid.push((header, image, name.clone()));
                    continue;
                }
            },
        };
        checkpoints.rejected.push(format!("{name}: {reason}"));
    }
    checkpoints
}

/// Whether a checkpoint `header` belongs to this journal: its generation, and the sequence its
/// file is named for.
fn belongs(
    header: &CheckpointHeader,
    sequence: u64,
    generation: Option<u64>,
) -> Result<(), &'static str> {
    if Some(header.generation) != generation {
        return Err("from another journal generation");
    }
    if header.sequence != sequence {
        return Err("file name and sequence differ");
    }
    Ok(())
}

/// The header of checkpoint file `name`, read without its image and checked: its own checksum
/// and fields, the journal generation, the sequence its name gives, and the file's size
/// against the image size it records.
fn checked_header(
    storage: &mut dyn Storage,
    name: &str,
    sequence: u64,
    generation: Option<u64>,
) -> Result<CheckpointHeader, &'static str> {
    let (head, size) = storage
        .read_file_head(name, CHECKPOINT_HEADER_SIZE as usize)
        .map_err(|_| "cannot be read")?;
    let header = CheckpointHeader::decode_header(&head)?;
    belongs(&header, sequence, generation)?;
    if size.checked_sub(CHECKPOINT_HEADER_SIZE) != Some(header.image_size) {
        return Err("checkpoint image size does not match the file size");
    }
    Ok(header)
}

/// Where the log the journal holds starts, and the anchor of the newest valid checkpoint. The
/// log starts at sequence 1 in segment 0; once older segments were retired, at the first record
/// of the first segment kept, which the checkpoint must reach (its sequence + 1 or later is
/// retired only after it). The hash chain stays verified: the scan from there must pass the
/// checkpoint's record with its chain checksum, or start right after it with that checksum as
/// the previous one.
///
/// # Errors
///
/// [`JournalError::RetiredUncovered`] when segments were retired and no valid checkpoint
/// covers the records they held; I/O errors.
pub(crate) fn log_base(
    segments: &[OpenSegment],
    generation: u64,
    body_size_max: u64,
    newest: Option<&(CheckpointHeader, Vec<u8>, String)>,
) -> Result<(Cursor, Anchor), JournalError> {
    let anchor = newest.map_or(Anchor::default(), |(header, _, _)| Anchor {
        sequence: header.sequence,
        chain_checksum: header.chain_checksum,
    });
    let first_id = segments[0].id;
    if first_id == 0 {
        return Ok((log_start(), anchor));
    }
    let head = first_record(segments, generation, body_size_max, 0)?;
    let covered = match (newest, head) {
        (None, _) => false,
        (Some((checkpoint, _, _)), Some(head)) => head.sequence <= checkpoint.sequence + 1,
        (Some(_), None) => true,
    };
    if !covered {
        return Err(JournalError::RetiredUncovered {
            segment: first_id,
            sequence: head.map_or(0, |head| head.sequence - 1),
        });
    }
    let position = Position {
        index: 0,
        offset: SEGMENT_HEADER_SIZE,
    };
    let base = match head {
        Some(head) => Cursor {
            position,
            sequence: head.sequence,
            previous_checksum: head.previous_checksum,
        },
        // The first kept segment holds no valid record yet: the log continues there, right
        // after the checkpoint.
        None => Cursor {
            position,
            sequence: anchor.sequence + 1,
            previous_checksum: anchor.chain_checksum,
        },
    };
    Ok((base, anchor))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint file with `image` after a header that describes it.
    fn checkpoint_file(image: &[u8]) -> (tempfile::NamedTempFile, CheckpointHeader) {
        let header = CheckpointHeader {
            generation: 1,
            sequence: 7,
            timestamp: 9,
            chain_checksum: 11,
            image_size: image.len() as u64,
            image_checksum: xxh3_128(image),
        };
        let mut bytes = [0u8; CHECKPOINT_HEADER_SIZE as usize];
        header.encode(&mut bytes);
        let file = tempfile::NamedTempFile::new().expect("temporary file");
        file.as_file().write_all_at(&bytes, 0).expect("header");
        file.as_file()
            .write_all_at(image, CHECKPOINT_HEADER_SIZE)
            .expect("image");
        (file, header)
    }

    #[test]
    fn image_mismatch_accepts_the_image_written_and_refuses_any_change() {
        // Larger than the buffer, and not a multiple of it.
        let image: Vec<u8> = (0..40_000u32)
            .map(|index| (index * 31 % 251) as u8)
            .collect();
        let mut buffer = vec![0u8; 4096];
        let mut mismatch = |file: &tempfile::NamedTempFile, header: &CheckpointHeader| {
            image_mismatch(file.as_file(), &mut buffer, header).expect("read")
        };
        let (file, header) = checkpoint_file(&image);
        assert_eq!(mismatch(&file, &header), None);

        let flipped = CHECKPOINT_HEADER_SIZE + 33_333;
        file.as_file()
            .write_all_at(&[image[33_333] ^ 1], flipped)
            .expect("flip");
        assert_eq!(
            mismatch(&file, &header),
            Some("checkpoint image checksum mismatch")
        );

        let size = Some("checkpoint image size does not match the file size");
        let (file, header) = checkpoint_file(&image);
        file.as_file()
            .set_len(CHECKPOINT_HEADER_SIZE + image.len() as u64 - 1)
            .expect("truncate");
        assert_eq!(mismatch(&file, &header), size);

        let (file, header) = checkpoint_file(&image);
        file.as_file()
            .write_all_at(&[0], CHECKPOINT_HEADER_SIZE + image.len() as u64)
            .expect("extend");
        assert_eq!(mismatch(&file, &header), size);
    }
}
