//! The history store: records that can no longer change (transfers, burned ids, resolutions of
//! pending transfers, balance rows, finished orders and fills), on disk in fjall, loaded as one
//! sorted run per interval, off the core's thread (docs/history.md, "The history store").
//!
//! - [`History`]: the store; [`History::ingest`] loads a [`Run`] and makes it durable up to a
//!   [`Watermark`]; lookups by id (per namespace), by timestamp, of burned ids and
//!   resolutions, and `get_account_transfers`, `get_account_balances` and `query_transfers`
//!   over what it holds, with the engine's semantics.
//! - [`HistoryWriter`]: a thread that ingests submitted runs in order and hands emptied runs
//!   back for reuse.
//! - [`History::export`] and [`History::import`]: a copy of the whole store from one snapshot,
//!   loaded into an empty store (a backup catching up from a checkpoint).
//!
//! Invariants: a durable watermark covers every record at or below its timestamp; runs only
//! move it forward; no input and no file content makes this crate panic (bad input is an
//! error, damaged content is [`HistoryError::Corrupt`]).
//!
//! Does not know about the journal or the engine's memory: which transfers form a run and
//! which watermark it reaches are the caller's to decide.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod account_runs;
mod blocks;
mod copy;
mod error;
mod id_blocks;
mod orders;
mod query;
mod records;
mod run;
mod store;
mod watermark;
mod writer;

pub use copy::{CopyReport, COPY_ENTRY_HEADER_SIZE};
pub use error::HistoryError;
pub use run::{BalanceRow, BurnedId, FinishedOrder, Resolution, Run, RunCapacity};
pub use run::{RESOLUTION_EXPIRED, RESOLUTION_POSTED, RESOLUTION_VOIDED};
pub use store::{History, HistoryConfig, IngestReport};
pub use watermark::{Watermark, HISTORY_FORMAT_VERSION, HISTORY_FORMAT_VERSION_MIN};
pub use writer::{DurableCallback, HistoryWriter};
