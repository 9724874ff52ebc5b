//! `Run`: the transfers of one interval, in the order the core applied them, to be ingested as
//! one sorted run.
//!
//! A run's buffer is allocated once, at its capacity, and never grows: `push` past the capacity
//! is an error, and `clear` keeps the buffer, so runs handed back by the history writer are
//! reused without allocating.

use clearline_engine::Transfer;

use crate::error::HistoryError;

/// The transfers of one interval, at most `capacity`, expected in strictly increasing
/// timestamp order (`History::ingest` checks it).
#[derive(Debug)]
pub struct Run {
    /// Never grows past the capacity it was created with.
    transfers: Vec<Transfer>,
}

impl Run {
    /// An empty run that holds up to `capacity` transfers, allocated now.
    pub fn with_capacity(capacity: usize) -> Run {
        Run {
            transfers: Vec::with_capacity(capacity),
        }
    }

    /// Appends a copy of `transfer`.
    ///
    /// # Errors
    ///
    /// `RunFull` if the run holds its capacity; the run is unchanged.
    pub fn push(&mut self, transfer: &Transfer) -> Result<(), HistoryError> {
        if self.transfers.len() == self.transfers.capacity() {
            return Err(HistoryError::RunFull {
                capacity: self.transfers.capacity(),
            });
        }
        self.transfers.push(*transfer);
        Ok(())
    }

    /// Empties the run, keeping its buffer.
    pub fn clear(&mut self) {
        self.transfers.clear();
    }

    /// Number of transfers.
    pub fn len(&self) -> usize {
        self.transfers.len()
    }

    /// Whether the run holds no transfer.
    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty()
    }

    /// How many transfers the run holds without allocating.
    pub fn capacity(&self) -> usize {
        self.transfers.capacity()
    }

    /// The transfers, in the order pushed.
    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_stops_at_capacity_and_clear_keeps_it() {
        let mut run = Run::with_capacity(2);
        let capacity = run.capacity();
        assert!(capacity >= 2);
        for index in 0..capacity {
            let transfer = Transfer {
                timestamp: index as u64 + 1,
                ..Transfer::default()
            };
            assert!(run.push(&transfer).is_ok());
        }
        assert!(matches!(
            run.push(&Transfer::default()),
            Err(HistoryError::RunFull { .. })
        ));
        assert_eq!(run.len(), capacity);
        run.clear();
        assert!(run.is_empty());
        assert_eq!(run.capacity(), capacity);
    }
}
