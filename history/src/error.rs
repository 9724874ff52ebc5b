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
    /// A run's records of one kind are out of order: transfers, burned ids and resolutions
    /// must have strictly increasing timestamps, balance rows increasing ones.
    RunOutOfOrder {
        /// The kind of record ("transfers", "burned ids", "resolutions", "balance rows").
        kind: &'static str,
        /// 0-based index, among the run's records of that kind, of the one out of order.
        index: usize,
        /// Timestamp of the previous record.
        previous: u64,
        /// Timestamp of the record at `index`.
        timestamp: u64,
    },
    /// Two transfers of one run have the same id in the same namespace.
    RunDuplicateId {
        /// The id.
        id: u128,
        /// Whether the namespace is the settlement one.
        settlement: bool,
    },
    /// A run holds one finished order twice.
    RunDuplicateOrder {
        /// The order id.
        id: u128,
    },
    /// A run burns one id twice.
    RunDuplicateBurnedId {
        /// The id.
        id: u128,
    },
    /// A run burns an id it also holds as a client transfer.
    RunBurnedIdIsTransfer {
        /// The id.
        id: u128,
    },
    /// A run resolves one pending transfer twice.
    RunDuplicateResolution {
        /// The pending transfer's id.
        id: u128,
        /// Whether the namespace is the settlement one.
        settlement: bool,
    },
    /// A resolution with a status other than posted (2), voided (3) or expired (4).
    RunInvalidResolution {
        /// The pending transfer's id.
        id: u128,
        /// The status given.
        status: u8,
    },
    /// A run holds two balance rows of one account at one timestamp.
    RunDuplicateBalance {
        /// The account.
        account_id: u128,
        /// The timestamp.
        timestamp: u64,
    },
    /// A balance row whose timestamp is not that of a transfer of the run that debits or
    /// credits its account.
    RunBalanceWithoutTransfer {
        /// The account.
        account_id: u128,
        /// The row's timestamp.
        timestamp: u64,
    },
    /// A run holds a record above the watermark it was ingested with, which would leave that
    /// record uncovered.
    RunBeyondWatermark {
        /// The kind of record.
        kind: &'static str,
        /// Timestamp of the newest record of that kind in the run.
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
    /// A `Run` push past the capacity of that kind of record.
    RunFull {
        /// The kind of record.
        kind: &'static str,
        /// The run's capacity for that kind.
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

fn namespace(settlement: bool) -> &'static str {
    if settlement {
        "settlement"
    } else {
        "client"
    }
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
                kind,
                index,
                previous,
                timestamp,
            } => write!(
                f,
                "history run out of order: {kind} {index} has timestamp {timestamp}, \
                 after the previous {previous}"
            ),
            HistoryError::RunDuplicateId { id, settlement } => write!(
                f,
                "history run holds {} transfer id {id} twice",
                namespace(*settlement)
            ),
            HistoryError::RunDuplicateOrder { id } => {
                write!(f, "history run holds order {id} twice")
            }
            HistoryError::RunDuplicateBurnedId { id } => {
                write!(f, "history run burns id {id} twice")
            }
            HistoryError::RunBurnedIdIsTransfer { id } => write!(
                f,
                "history run burns id {id} and also holds it as a client transfer"
            ),
            HistoryError::RunDuplicateResolution { id, settlement } => write!(
                f,
                "history run resolves {} pending transfer {id} twice",
                namespace(*settlement)
            ),
            HistoryError::RunInvalidResolution { id, status } => write!(
                f,
                "history resolution of {id} has status {status}, expected 2 (posted), \
                 3 (voided) or 4 (expired)"
            ),
            HistoryError::RunDuplicateBalance {
                account_id,
                timestamp,
            } => write!(
                f,
                "history run holds two balance rows of account {account_id} at timestamp \
                 {timestamp}"
            ),
            HistoryError::RunBalanceWithoutTransfer {
                account_id,
                timestamp,
            } => write!(
                f,
                "history run holds a balance row of account {account_id} at timestamp \
                 {timestamp}, but no transfer of the run at that timestamp moves the account"
            ),
            HistoryError::RunBeyondWatermark {
                kind,
                timestamp,
                watermark_timestamp,
            } => write!(
                f,
                "history run holds {kind} at timestamp {timestamp}, above its watermark's \
                 {watermark_timestamp}"
            ),
            HistoryError::WatermarkBackwards { durable, given } => write!(
                f,
                "history watermark must not move back: durable (sequence {}, timestamp {}), \
                 given (sequence {}, timestamp {})",
                durable.0, durable.1, given.0, given.1
            ),
            HistoryError::RunFull { kind, capacity } => {
                write!(f, "history run is full ({capacity} {kind})")
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
