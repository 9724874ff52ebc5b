//! The clearline journal: segment files, checksummed records, group commit, replay and snapshots.
//!
//! It knows records and bytes, not accounts or orders.
#![deny(unsafe_code)]
