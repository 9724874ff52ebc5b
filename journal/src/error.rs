//! The journal's operating errors: one hand-written enum with a `Display` that names what an
//! operator needs (directory, segment, offset, sequence).
//!
//! Bugs are not errors here: they are assertions.

use std::fmt;
use std::io;

/// Where and why the journal is damaged in a way recovery must not paper over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// Segment id (the file is `segment-<id>.log`, id in 16 decimal digits).
    pub segment: u64,
    /// Byte offset inside the segment file.
    pub offset: u64,
    /// The sequence that was expected at that place.
    pub sequence: u64,
    /// What failed validation.
    pub reason: &'static str,
    /// Why this counts as corruption rather than a torn tail (the rule of J7 that applied).
    pub evidence: &'static str,
    /// The sequence the evidence refers to (a watermark, or a later record's sequence).
    pub evidence_sequence: u64,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "journal corruption in segment {} (file {}), offset {}, sequence {}: {}; {} {}",
            self.segment,
            crate::segment_file_name(self.segment),
            self.offset,
            self.sequence,
            self.reason,
            self.evidence,
            self.evidence_sequence,
        )
    }
}

/// Everything that can go wrong opening, writing or reading a journal.
#[derive(Debug)]
pub enum JournalError {
    /// Another process (or another open `Journal`) holds the directory's lock.
    Locked {
        /// The journal directory.
        directory: String,
    },
    /// The device is full: a new segment or checkpoint could not be allocated. Nothing was
    /// written; data written before is intact; retrying after space is freed works.
    StorageFull {
        /// The journal directory.
        directory: String,
    },
    /// A sync failed earlier. Fatal: nothing more is acknowledged; the process must exit and
    /// recover from the device.
    SyncFailed,
    /// The journal is damaged; starting would lose or invent acknowledged data.
    Corruption(Corruption),
    /// A checkpoint file is damaged (verify reports it; recovery falls back to an older one).
    CheckpointInvalid {
        /// The checkpoint file name.
        file: String,
        /// What failed validation.
        reason: &'static str,
    },
    /// A record body is larger than the configured maximum.
    BodySizeAboveMax {
        /// The body length given.
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// The configuration cannot work (for example a body maximum that does not fit a segment).
    Config {
        /// Which rule was broken.
        reason: &'static str,
    },
    /// A checkpoint was requested for a sequence that has not been written.
    CheckpointSequenceAboveWritten {
        /// The requested sequence.
        sequence: u64,
        /// The highest written sequence.
        written: u64,
    },
    /// A checkpoint is already being written; only one runs at a time.
    CheckpointRunning {
        /// The sequence it covers.
        sequence: u64,
    },
    /// Writing a checkpoint failed (the child exited with an error or was killed); its
    /// temporary file was removed. Not fatal: the previous checkpoints and the journal are
    /// intact, and the next checkpoint tries again.
    CheckpointFailed {
        /// The checkpoint file that was not written.
        file: String,
        /// What went wrong.
        reason: String,
    },
    /// The first segments were retired, and no valid checkpoint covers the records they held.
    RetiredUncovered {
        /// The first segment id still present.
        segment: u64,
        /// The last sequence that is gone (the first kept record's sequence minus one).
        sequence: u64,
    },
    /// Records were asked for that were retired with their segments.
    Retired {
        /// The sequence asked for.
        sequence: u64,
        /// The first sequence the journal still holds.
        first: u64,
    },
    /// [`crate::Journal::append_copied`] refused a record: it is not the record that belongs at
    /// the journal's end (or it is damaged). Nothing was written.
    CopiedRecordRefused {
        /// The sequence the journal expected next (its written sequence + 1).
        sequence: u64,
        /// Which check failed.
        reason: &'static str,
    },
    /// [`crate::Journal::set_generation_if_empty`] refused: the journal is not empty.
    JournalNotEmpty {
        /// What the journal holds.
        reason: &'static str,
    },
    /// [`crate::Journal::truncate_after`] refused to drop the records after `sequence`.
    TruncationRefused {
        /// The sequence asked for: the last record to keep.
        sequence: u64,
        /// Which rule forbids it.
        reason: &'static str,
    },
    /// The directory holds no journal: no segment file and no checkpoint (the offline tools
    /// report this instead of checking nothing).
    NoJournal {
        /// The directory that was searched.
        directory: String,
    },
    /// An I/O error other than the ones above.
    Io {
        /// What the journal was doing.
        operation: &'static str,
        /// The file or directory involved.
        file: String,
        /// The operating system's error.
        error: io::Error,
    },
}

impl JournalError {
    /// Wraps an I/O error, turning out-of-space into [`JournalError::StorageFull`].
    pub(crate) fn io(operation: &'static str, file: &str, error: io::Error) -> JournalError {
        if crate::storage::is_storage_full(&error) {
            return JournalError::StorageFull {
                directory: file.to_owned(),
            };
        }
        JournalError::Io {
            operation,
            file: file.to_owned(),
            error,
        }
    }

    /// The corruption details, if this is a corruption error.
    pub fn corruption(&self) -> Option<&Corruption> {
        match self {
            JournalError::Corruption(corruption) => Some(corruption),
            _ => None,
        }
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Locked { directory } => write!(
                f,
                "journal directory {directory} is locked by another process (is a server \
                 running on it?)"
            ),
            JournalError::StorageFull { directory } => write!(
                f,
                "storage full: cannot allocate journal space in {directory}; nothing was \
                 written, earlier records are intact"
            ),
            JournalError::SyncFailed => write!(
                f,
                "a journal sync failed; nothing more can be acknowledged, the process must \
                 exit and recover from the device"
            ),
            JournalError::Corruption(corruption) => {
                write!(f, "{corruption}; refusing to start")
            }
            JournalError::CheckpointInvalid { file, reason } => {
                write!(f, "checkpoint {file} is invalid: {reason}")
            }
            JournalError::BodySizeAboveMax { size, max } => {
                write!(
                    f,
                    "record body of {size} bytes is above the maximum of {max} bytes"
                )
            }
            JournalError::Config { reason } => write!(f, "journal configuration: {reason}"),
            JournalError::CheckpointSequenceAboveWritten { sequence, written } => write!(
                f,
                "checkpoint requested at sequence {sequence}, but only {written} records are \
                 written"
            ),
            JournalError::CheckpointRunning { sequence } => write!(
                f,
                "a checkpoint at sequence {sequence} is still being written; one runs at a time"
            ),
            JournalError::CheckpointFailed { file, reason } => write!(
                f,
                "checkpoint {file} was not written: {reason}; the previous checkpoints and the \
                 journal are intact"
            ),
            JournalError::RetiredUncovered { segment, sequence } => write!(
                f,
                "segments before {segment} were retired but no checkpoint covers sequence \
                 {sequence}; restore the checkpoint files or the archived segments"
            ),
            JournalError::Retired { sequence, first } => write!(
                f,
                "sequence {sequence} was retired with its segment; the journal starts at \
                 sequence {first}"
            ),
            JournalError::CopiedRecordRefused { sequence, reason } => write!(
                f,
                "copied record refused at sequence {sequence}: {reason}; nothing was written"
            ),
            JournalError::JournalNotEmpty { reason } => write!(
                f,
                "the journal's generation can change only while it is empty, and it {reason}"
            ),
            JournalError::TruncationRefused { sequence, reason } => write!(
                f,
                "cannot drop the records after sequence {sequence}: {reason}"
            ),
            JournalError::NoJournal { directory } => write!(
                f,
                "no journal in {directory}: it holds no segment files (segment-<id>.log)"
            ),
            JournalError::Io {
                operation,
                file,
                error,
            } => {
                write!(f, "journal I/O error while {operation} ({file}): {error}")
            }
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}
