//! A backup's watch on the leader key (docs/replication.md, "Leadership"): wakes the leadership
//! thread as soon as the key changes, so a deletion (the primary's lease revoked or expired) is
//! noticed within milliseconds instead of at the next poll.
//!
//! Invariants:
//! - a watch starts at the revision right after the read of the leader key that opened it, so
//!   every change after that read is reported, none is skipped between the read and the watch;
//! - a report means only "the key changed, read it again": no role, candidacy or campaign is
//!   decided from an event itself (its kind is not even looked at), so a late, repeated or
//!   spurious event costs one read and nothing else;
//! - every wait is bounded by the caller's slice, and a stream that ends, fails or is canceled by
//!   the server is reported as an error for the caller to drop; nothing here panics.
//!
//! Does not poll and does not reconnect by itself: the leadership thread keeps polling at
//! `poll_interval` whatever the watch does, and opens a new watch at its next read.

use std::fmt;
use std::time::Duration;

use etcd_client::{Client, WatchOptions, WatchStream};

/// Why a watch stopped working; the caller drops it and opens a new one at its next read.
#[derive(Debug)]
pub(super) enum WatchError {
    /// Opening the watch failed.
    Open(etcd_client::Error),
    /// Opening the watch took longer than the call timeout.
    OpenTimeout,
    /// Receiving from the stream failed.
    Receive(etcd_client::Error),
    /// The server closed the stream.
    Closed,
    /// The server canceled the watch (compaction, or its own reasons).
    Canceled,
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchError::Open(error) => write!(f, "cannot open: {error}"),
            WatchError::OpenTimeout => write!(f, "cannot open: no answer in time"),
            WatchError::Receive(error) => write!(f, "{error}"),
            WatchError::Closed => write!(f, "the server closed the stream"),
            WatchError::Canceled => write!(f, "the server canceled the watch"),
        }
    }
}

/// One open watch on the leader key.
pub(super) struct LeaderWatch {
    stream: WatchStream,
}

impl LeaderWatch {
    /// Opens a watch on `key` reporting every change after `read_revision`, the store revision
    /// at which the caller read the key (0 if unknown: then from now on).
    pub(super) async fn open(
        client: &mut Client,
        key: &str,
        read_revision: i64,
        timeout: Duration,
    ) -> Result<LeaderWatch, WatchError> {
        let mut options = WatchOptions::new();
        if read_revision > 0 {
            options = options.with_start_revision(read_revision.saturating_add(1));
        }
        match tokio::time::timeout(timeout, client.watch(key.as_bytes(), Some(options))).await {
            Ok(Ok(stream)) => Ok(LeaderWatch { stream }),
            Ok(Err(error)) => Err(WatchError::Open(error)),
            Err(_elapsed) => Err(WatchError::OpenTimeout),
        }
    }

    /// Waits at most `slice` for the next message; `Ok(true)` if it reports a change of the key,
    /// `Ok(false)` if the slice passed or the message reported none (the server's answer to the
    /// creation, for example).
    ///
    /// Receiving is cancel-safe (tonic keeps the stream's state in the stream, not in the
    /// future), so giving up after `slice` loses no message.
    pub(super) async fn changed_within(&mut self, slice: Duration) -> Result<bool, WatchError> {
        match tokio::time::timeout(slice, self.stream.message()).await {
            Err(_elapsed) => Ok(false),
            Ok(Err(error)) => Err(WatchError::Receive(error)),
            Ok(Ok(None)) => Err(WatchError::Closed),
            Ok(Ok(Some(response))) => {
                if response.canceled() || response.compact_revision() != 0 {
                    return Err(WatchError::Canceled);
                }
                Ok(!response.events().is_empty())
            }
        }
    }
}
