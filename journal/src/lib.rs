//! The clearline journal: segment files, checksummed records, group commit, replay, checkpoint
//! files written by a forked child, retirement of the segments they cover, and mirroring: a
//! reader of the records while they are written ([`RecordReader`]) and a byte-identical copy
//! of them in another journal ([`Journal::append_copied`], [`Journal::truncate_after`]; rules
//! in FORMAT.md, "Mirroring").
//!
//! It knows records and bytes, not accounts or orders. The on-disk format is drawn in
//! `journal/FORMAT.md`; the rules it follows are J1-J14 of `docs/durability.md`.
//!
//! Architecture invariants:
//! - nothing is reported durable before a sync that began after it was written returned (J5);
//! - a failed sync is fatal and never retried (J6);
//! - recovery truncates only a tail that no watermark covers, and refuses anything else (J7);
//! - `unsafe` code lives only in `mmap.rs`; the rest of the crate is safe and runs unchanged on
//!   the plain-file and simulated storages.
#![deny(unsafe_code)]

mod error;
mod file;
mod journal;
pub mod le;
#[allow(unsafe_code)]
mod mmap;
mod prefault;
mod reader;
mod record;
mod replay;
pub mod sim;
mod storage;
mod tools;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use error::{Corruption, JournalError};
pub use file::FileStorage;
pub use journal::{Durability, Journal, CHECKPOINT_BUFFER_SIZE, RETENTION_HOLD_SEGMENTS_MAX};
pub use mmap::ChildExit;
pub use mmap::HugePageAllocator;
pub use mmap::MmapStorage;
pub use mmap::{
    cached_bytes, drop_cached_pages, keep_from_fork, lower_thread_priority, populate,
    BACKGROUND_NICE,
};
pub use reader::{ReadOutcome, RecordReader, READ_BUFFER_SIZE};
pub use record::{
    record_size, CHECKPOINT_HEADER_SIZE, FORMAT_VERSION, RECORD_ALIGNMENT, RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE, SEGMENT_SIZE_MIN,
};
pub use storage::{Segment, SegmentSync, Storage};
pub use tools::{inspect, verify, CheckpointSummary, InspectReport, SegmentSummary, VerifyReport};

/// When records become durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// A syncer thread runs msync/fdatasync continuously (group commit).
    Data,
    /// No syncs at all: every record counts as durable once written. For benchmarks and tests
    /// only: a power loss can lose anything written since the file was created.
    None,
    /// Syncs happen only when the caller calls [`Journal::sync`], on the caller's thread (for
    /// deterministic simulation, and callers that run their own commit loop).
    Manual,
}

/// Which storage implementation [`Journal::open`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Shared memory mapping with msync (the default).
    Mmap,
    /// pread/pwrite with fdatasync.
    File,
}

/// How a journal is opened.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// Size of each new segment file in bytes (existing segments keep their size).
    pub segment_size: u64,
    /// When records become durable.
    pub sync: SyncMode,
    /// Largest record body accepted; a record must fit in an empty segment.
    pub body_size_max: u64,
    /// Most segment files, the spare included (at least 2). When the next segment would be one
    /// too many, `append` reports [`JournalError::StorageFull`] as for a full disk, so an
    /// operator can bound the journal's disk use below the device's size.
    pub segments_max: u64,
    /// Storage implementation.
    pub backend: Backend,
    /// Where retired segments go: `None` deletes them; a directory receives them (renamed when
    /// it is on the same file system, else copied, synced and then removed from the journal).
    pub archive: Option<PathBuf>,
}

impl Default for JournalConfig {
    fn default() -> JournalConfig {
        JournalConfig {
            segment_size: 1 << 30,
            sync: SyncMode::Data,
            body_size_max: BODY_SIZE_MAX_DEFAULT,
            segments_max: u64::MAX,
            backend: Backend::Mmap,
            archive: None,
        }
    }
}

/// The fewest segment files a journal needs: the one being written and its spare.
pub const SEGMENTS_MIN: u64 = 2;

/// Default maximum body: one 1 MiB frame plus 64 bytes of request metadata.
pub const BODY_SIZE_MAX_DEFAULT: u64 = (1 << 20) + 64;

impl JournalConfig {
    /// Checks that the configuration can work.
    ///
    /// # Errors
    ///
    /// [`JournalError::Config`] naming the broken rule.
    pub fn check(&self) -> Result<(), JournalError> {
        if self.segment_size < SEGMENT_SIZE_MIN {
            return Err(JournalError::Config {
                reason: "segment_size below 64 KiB",
            });
        }
        if self.segment_size % RECORD_ALIGNMENT != 0 {
            return Err(JournalError::Config {
                reason: "segment_size not a multiple of 64",
            });
        }
        if self.segments_max < SEGMENTS_MIN {
            return Err(JournalError::Config {
                reason: "segments_max below 2 (the current segment and its spare)",
            });
        }
        if self.body_size_max > u64::from(u32::MAX) {
            return Err(JournalError::Config {
                reason: "body_size_max above 4 GiB - 1",
            });
        }
        if SEGMENT_HEADER_SIZE + record_size(self.body_size_max) > self.segment_size {
            return Err(JournalError::Config {
                reason: "body_size_max does not fit in an empty segment",
            });
        }
        Ok(())
    }
}

/// One record as replay hands it to the caller.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    /// Position in the log (the first record is 1).
    pub sequence: u64,
    /// The timestamp given to `append`.
    pub timestamp: u64,
    /// The body given to `append`.
    pub body: &'a [u8],
    /// Id of the segment that holds the record (for messages about it).
    pub segment: u64,
    /// Byte offset of the record's header in that segment.
    pub offset: u64,
}

/// A checkpoint with its image, as recovery or [`Journal::load_checkpoint`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The image is the state after records 1..=sequence.
    pub sequence: u64,
    /// Timestamp of record `sequence`.
    pub timestamp: u64,
    /// The opaque state image.
    pub image: Vec<u8>,
}

/// A valid checkpoint file, without its image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The image is the state after records 1..=sequence.
    pub sequence: u64,
    /// Timestamp of record `sequence`.
    pub timestamp: u64,
    /// Image size in bytes.
    pub image_size: u64,
}

/// What [`Journal::checkpoint_start`] started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointStarted {
    /// The checkpoint covers records 1..=sequence.
    pub sequence: u64,
    /// Timestamp of record `sequence`.
    pub timestamp: u64,
    /// Process id of the child writing it (0 when written in process, on simulated storage).
    pub pid: u32,
    /// How long the caller's thread was paused (the fork).
    pub pause: Duration,
}

/// What [`Journal::checkpoint_poll`] finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointDone {
    /// The checkpoint covers records 1..=sequence.
    pub sequence: u64,
    /// Timestamp of record `sequence`.
    pub timestamp: u64,
    /// Image size in bytes.
    pub image_size: u64,
    /// Time from the start of the checkpoint to its verified file.
    pub elapsed: Duration,
    /// Ids of the segments retired (deleted or archived) after it, first and last.
    pub retired: Option<(u64, u64)>,
    /// The first sequence the journal still holds.
    pub first_sequence: u64,
}

impl fmt::Display for CheckpointDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checkpoint at sequence {} ({} bytes) in {:?}",
            self.sequence, self.image_size, self.elapsed
        )?;
        if let Some((first, last)) = self.retired {
            write!(
                f,
                "; retired segments {first}-{last}, first kept sequence {}",
                self.first_sequence
            )?;
        }
        Ok(())
    }
}

/// What recovery dropped: a torn tail that no watermark covers (never acknowledged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// Segment of the first invalid record.
    pub segment: u64,
    /// Offset of the first invalid record.
    pub offset: u64,
    /// The first sequence dropped (the next record written gets it again).
    pub sequence: u64,
    /// Non-zero bytes zeroed from there to the end of the last segment.
    pub bytes_nonzero: u64,
    /// Valid-looking records found after the invalid one and dropped with it.
    pub records: u64,
    /// Why the first record was invalid.
    pub reason: &'static str,
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dropped the unacknowledged torn tail from sequence {} (segment {}, offset {}): {} \
             non-zero bytes zeroed, {} later intact record(s) dropped; first invalid record: {}",
            self.sequence, self.segment, self.offset, self.bytes_nonzero, self.records, self.reason
        )
    }
}

/// What [`Journal::truncate_after`] dropped: records `first_sequence..=last_sequence` (none when
/// `records` is 0, and then `last_sequence = first_sequence - 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TruncatedTail {
    /// How many records were dropped.
    pub records: u64,
    /// The first sequence dropped (the next record appended gets it again).
    pub first_sequence: u64,
    /// The last sequence dropped (the written sequence before the call).
    pub last_sequence: u64,
    /// Timestamp of the last record dropped (0 when none was).
    pub last_timestamp: u64,
}

/// What [`Journal::open`] recovered.
#[derive(Clone, Debug)]
pub struct Recovery {
    /// The newest valid checkpoint, if any; replay records after its sequence on top of it.
    pub checkpoint: Option<Checkpoint>,
    /// The valid checkpoint before it, if the journal still holds the records after it: when
    /// the caller cannot use the newest image, it loads this one with
    /// [`Journal::load_checkpoint`] and replays from its sequence + 1.
    pub checkpoint_previous: Option<CheckpointInfo>,
    /// Newer checkpoint files that failed validation and were skipped (name: reason).
    pub checkpoints_rejected: Vec<String>,
    /// Records after the checkpoint (or all records when there is none).
    pub records: u64,
    /// The first sequence the journal holds (above 1 when older segments were retired).
    pub first_sequence: u64,
    /// Segments retired before this open: ids `0..retired_segments` are gone.
    pub retired_segments: u64,
    /// Sequence of the last record.
    pub last_sequence: u64,
    /// Timestamp of the last record (or of the checkpoint; 0 for an empty journal).
    pub last_timestamp: u64,
    /// The torn tail that was truncated, if any; callers should log it.
    pub truncated: Option<Truncation>,
    /// Time recovery took.
    pub elapsed: Duration,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.checkpoint {
            Some(checkpoint) => write!(
                f,
                "checkpoint at sequence {} ({} bytes), ",
                checkpoint.sequence,
                checkpoint.image.len()
            )?,
            None => write!(f, "no checkpoint, ")?,
        }
        write!(
            f,
            "{} records after it, last sequence {}, last timestamp {}, in {:?}",
            self.records, self.last_sequence, self.last_timestamp, self.elapsed
        )?;
        if self.retired_segments > 0 {
            write!(
                f,
                "; segments 0-{} retired, first kept sequence {}",
                self.retired_segments - 1,
                self.first_sequence
            )?;
        }
        for rejected in &self.checkpoints_rejected {
            write!(f, "; skipped checkpoint {rejected}")?;
        }
        if let Some(truncation) = &self.truncated {
            write!(f, "; {truncation}")?;
        }
        Ok(())
    }
}

/// The file name of segment `id`.
pub fn segment_file_name(id: u64) -> String {
    format!("segment-{id:016}.log")
}

/// The file name of the checkpoint covering `sequence`.
pub fn checkpoint_file_name(sequence: u64) -> String {
    format!("checkpoint-{sequence:020}.ckpt")
}

fn parse_number(name: &str, prefix: &str, suffix: &str, digits: usize) -> Option<u64> {
    let number = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if number.len() != digits || !number.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    number.parse().ok()
}

pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    parse_number(name, "segment-", ".log", 16)
}

/// The sequence a checkpoint file's name says it covers, if it is one.
pub fn parse_checkpoint_name(name: &str) -> Option<u64> {
    parse_number(name, "checkpoint-", ".ckpt", 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        assert_eq!(parse_segment_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_checkpoint_name(&checkpoint_file_name(7)), Some(7));
        assert_eq!(parse_segment_name("segment-1.log"), None);
        assert_eq!(parse_segment_name("segment-0000000000000001.log.tmp"), None);
    }

    #[test]
    fn default_config_is_valid_and_tiny_segments_are_refused() {
        JournalConfig::default().check().unwrap();
        let config = JournalConfig {
            segment_size: 1 << 20,
            ..JournalConfig::default()
        };
        assert!(
            config.check().is_err(),
            "a 1 MiB + 64 body does not fit a 1 MiB segment"
        );
    }
}
