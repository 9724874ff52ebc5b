//! The history store: transfers that can no longer change, on disk in fjall, loaded as one
//! sorted run per interval, off the core's thread (docs/history.md, "The history store").
//!
//! - [`History`]: the store; [`History::ingest`] loads a [`Run`] and makes it durable up to a
//!   [`Watermark`]; lookups by id and `get_account_transfers` over what it holds.
//! - [`HistoryWriter`]: a thread that ingests submitted runs in order and hands emptied runs
//!   back for reuse.
//!
//! Invariants: a durable watermark covers every transfer at or below its timestamp; runs only
//! move it forward; no input and no file content makes this crate panic (bad input is an
//! error, damaged content is [`HistoryError::Corrupt`]).
//!
//! Does not know about the journal or the engine's memory: which transfers form a run and
//! which watermark it reaches are the caller's to decide. Not wired into the server yet.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod account_runs;
mod error;
mod run;
mod store;
mod watermark;
mod writer;

pub use error::HistoryError;
pub use run::Run;
pub use store::{History, HistoryConfig, IngestReport};
pub use watermark::{Watermark, HISTORY_FORMAT_VERSION};
pub use writer::{DurableCallback, HistoryWriter};
