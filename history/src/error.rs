//! `HistoryError`: every way an operation on the history store can fail.
//!
//! Three kinds: the caller broke a rule of the API (a run out of order, a watermark that moves
//! back), the disk failed (`Io`, most `Fjall`), or the store's content is damaged (`Corrupt`).
//! fjall's own checksum and format failures are classified as `Corrupt`, so a caller can tell
//! "the store is damaged" from "the disk is failing" without matching fjall's types. Nothing
//! here is on the core's path, so errors may carry a `String` and a path.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// An error from the history store.
#[derive(Debug)]
#[non_exhaustive]
pub enum HistoryError {
    /// A file system operation outside fjall failed.
    Io {
        /// What was being done.
        context: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// fjall failed for a reason other than damaged content (I/O, a locked directory, a store
    /// poisoned by an earlier failed sync).
    Fjall {
        /// What was being done.
        context: &'static str,
        /// The store's directory.
        path: PathBuf,
        /// fjall's error.
        source: fjall::Error,
    },
    /// Stored content failed a check: a checksum, a length, a format version, or a reference
    /// between key spaces that must hold. The store must not be trusted for the part named.
    Corrupt {
        /// Which part of the store (a key space, a value kind).
        what: &'static str,
        /// What was found, with the key where there is one.
        detail: String,
    },
    /// A run's timestamps are not strictly increasing.
    RunOutOfOrder {
        /// 0-based index in the run of the transfer that is not above its predecessor.
        index: usize,
        /// Timestamp of the previous transfer.
        previous: u64,
        /// Timestamp of the transfer at `index`.
        timestamp: u64,
    },
    /// Two transfers of one run have the same id.
    RunDuplicateId {
        /// The id.
        id: u128,
    },
    /// A run holds a transfer above the watermark it was ingested with, which would leave that
    /// transfer uncovered.
    RunBeyondWatermark {
        /// Timestamp of the newest transfer in the run.
        timestamp: u64,
        /// The watermark's timestamp.
        watermark_timestamp: u64,
    },
    /// The watermark given to `ingest` is below the durable one (in sequence or timestamp).
    WatermarkBackwards {
        /// The durable watermark's `(sequence, timestamp)`.
        durable: (u64, u64),
        /// The one given.
        given: (u64, u64),
    },
    /// `Run::push` on a run that holds its capacity.
    RunFull {
        /// The run's capacity, in transfers.
        capacity: usize,
    },
    /// The history writer has stopped (after an ingest failed, or it was closed); its first
    /// error is available from `HistoryWriter::take_error`.
    WriterStopped,
}

impl HistoryError {
    /// Wraps a fjall error: checksum, format and recovery failures become `Corrupt` (with
    /// `context` as `what`), everything else `Fjall`.
    pub(crate) fn fjall(context: &'static str, path: PathBuf, source: fjall::Error) -> Self {
        if fjall_error_is_corruption(&source) {
            HistoryError::Corrupt {
                what: context,
                detail: format!("{} ({source})", path.display()),
            }
        } else {
            HistoryError::Fjall {
                context,
                path,
                source,
            }
        }
    }

    /// Whether the error says the store's content is damaged.
    pub fn is_corruption(&self) -> bool {
        matches!(self, HistoryError::Corrupt { .. })
    }
}

/// Whether fjall reports damaged content rather than a failing operation.
fn fjall_error_is_corruption(error: &fjall::Error) -> bool {
    use fjall::Error as F;
    match error {
        F::Storage(storage) => {
            use fjall::LsmError as L;
            match storage {
                L::Io(io) => io_error_is_corruption(io),
                L::Decompress(_)
                | L::InvalidVersion(_)
                | L::Unrecoverable
                | L::ChecksumMismatch { .. }
                | L::InvalidTag(_)
                | L::InvalidTrailer
                | L::InvalidHeader(_)
                | L::Utf8(_) => true,
                _ => false,
            }
        }
        F::Io(io) => io_error_is_corruption(io),
        F::JournalRecovery(_)
        | F::InvalidVersion(_)
        | F::Decompress(_)
        | F::InvalidTrailer
        | F::InvalidTag(_)
        | F::Unrecoverable => true,
        _ => false,
    }
}

/// A file shorter than its own metadata says it is (a truncated table) reads as an unexpected
/// end of file, and malformed content as invalid data.
fn io_error_is_corruption(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
    )
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::Io {
                context,
                path,
                source,
            } => write!(f, "history store: {context} {}: {source}", path.display()),
            HistoryError::Fjall {
                context,
                path,
                source,
            } => write!(f, "history store {}: {context}: {source}", path.display()),
            HistoryError::Corrupt { what, detail } => {
                write!(f, "history store is damaged: {what}: {detail}")
            }
            HistoryError::RunOutOfOrder {
                index,
                previous,
                timestamp,
            } => write!(
                f,
                "history run out of order: transfer {index} has timestamp {timestamp}, \
                 not above the previous {previous}"
            ),
            HistoryError::RunDuplicateId { id } => {
                write!(f, "history run holds transfer id {id} twice")
            }
            HistoryError::RunBeyondWatermark {
                timestamp,
                watermark_timestamp,
            } => write!(
                f,
                "history run holds timestamp {timestamp}, above its watermark's \
                 {watermark_timestamp}"
            ),
            HistoryError::WatermarkBackwards { durable, given } => write!(
                f,
                "history watermark must not move back: durable (sequence {}, timestamp {}), \
                 given (sequence {}, timestamp {})",
                durable.0, durable.1, given.0, given.1
            ),
            HistoryError::RunFull { capacity } => {
                write!(f, "history run is full ({capacity} transfers)")
            }
            HistoryError::WriterStopped => write!(f, "history writer has stopped"),
        }
    }
}

impl std::error::Error for HistoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HistoryError::Io { source, .. } => Some(source),
            HistoryError::Fjall { source, .. } => Some(source),
            _ => None,
        }
    }
}
