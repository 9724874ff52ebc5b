//! The expiry queue: unresolved pending transfers with a timeout, ordered by
//! `(expires_at, timestamp)`, as a binary min-heap over a preallocated vector.
//!
//! The heap is indexed: each queued transfer's position in the heap is kept in a caller-owned
//! slice (`positions[transfer]`), so posting or voiding removes the entry at once instead of
//! leaving a stale entry behind. Hence the queue never holds more entries than there are
//! unresolved pending transfers, and its capacity is `transfers_pending_max`.
//!
//! The key `(expires_at, timestamp)` is unique (timestamps are), so the order in which entries
//! leave the queue is fully determined whatever the heap's internal layout.

use crate::checkpoint::{CheckpointError, ImageReader, ImageWriter};
use crate::NO_POSITION;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExpiryEntry {
    /// When the transfer expires (its timestamp plus its timeout in nanoseconds).
    pub(crate) expires_at: u64,
    /// The pending transfer's timestamp (tie-breaker).
    pub(crate) timestamp: u64,
    /// The pending transfer's position in the transfer store.
    pub(crate) transfer: u32,
}

impl ExpiryEntry {
    #[inline]
    fn key(&self) -> (u64, u64) {
        (self.expires_at, self.timestamp)
    }
}

pub(crate) struct ExpiryQueue {
    heap: Vec<ExpiryEntry>,
}

impl ExpiryQueue {
    pub(crate) fn new(entries_max: u32) -> ExpiryQueue {
        ExpiryQueue {
            heap: Vec::with_capacity(entries_max as usize),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(crate) fn peek(&self) -> Option<&ExpiryEntry> {
        self.heap.first()
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }

    /// Adds an entry. `positions[entry.transfer]` must be `NO_POSITION` (not queued).
    pub(crate) fn insert(&mut self, entry: ExpiryEntry, positions: &mut [u32]) {
        assert!(self.heap.len() < self.heap.capacity(), "expiry queue full");
        assert_eq!(positions[entry.transfer as usize], NO_POSITION);
        self.heap.push(entry);
        let index = self.heap.len() - 1;
        positions[entry.transfer as usize] = index as u32;
        self.sift_up(index, positions);
    }

    /// Renames every queued transfer's position through `map` (the transfer store was
    /// compacted). The order of the heap does not depend on positions, so it stays valid; the
    /// caller moves the position table along with the transfers.
    pub(crate) fn remap(&mut self, map: impl Fn(u32) -> u32) {
        for entry in &mut self.heap {
            entry.transfer = map(entry.transfer);
            assert_ne!(
                entry.transfer, NO_POSITION,
                "a queued transfer stays in memory"
            );
        }
    }

    /// Removes the entry of `transfer`, which must be queued.
    pub(crate) fn remove(&mut self, transfer: u32, positions: &mut [u32]) -> ExpiryEntry {
        let index = positions[transfer as usize];
        assert_ne!(index, NO_POSITION, "transfer is not queued for expiry");
        let index = index as usize;
        let entry = self.heap[index];
        assert_eq!(entry.transfer, transfer);
        let last = self.heap.len() - 1;
        self.swap(index, last, positions);
        self.heap.pop();
        positions[transfer as usize] = NO_POSITION;
        if index < self.heap.len() {
            self.sift_down(index, positions);
            self.sift_up(index, positions);
        }
        entry
    }

    fn swap(&mut self, a: usize, b: usize, positions: &mut [u32]) {
        self.heap.swap(a, b);
        positions[self.heap[a].transfer as usize] = a as u32;
        positions[self.heap[b].transfer as usize] = b as u32;
    }

    fn sift_up(&mut self, mut index: usize, positions: &mut [u32]) {
        while index > 0 {
            let parent = (index - 1) / 2;
            if self.heap[parent].key() <= self.heap[index].key() {
                break;
            }
            self.swap(parent, index, positions);
            index = parent;
        }
    }

    fn sift_down(&mut self, mut index: usize, positions: &mut [u32]) {
        loop {
            let left = 2 * index + 1;
            let right = left + 1;
            let mut smallest = index;
            if left < self.heap.len() && self.heap[left].key() < self.heap[smallest].key() {
                smallest = left;
            }
            if right < self.heap.len() && self.heap[right].key() < self.heap[smallest].key() {
                smallest = right;
            }
            if smallest == index {
                break;
            }
            self.swap(smallest, index, positions);
            index = smallest;
        }
    }

    /// Checks the heap order and the position table (O(n), for `verify`).
    pub(crate) fn verify(&self, positions: &[u32]) {
        for (index, entry) in self.heap.iter().enumerate() {
            assert_eq!(positions[entry.transfer as usize], index as u32);
            if index > 0 {
                assert!(self.heap[(index - 1) / 2].key() < entry.key());
            }
        }
    }
}

/// The checkpoint image of the queue (see checkpoint.rs): the heap's entries in heap order.
impl ExpiryQueue {
    pub(crate) fn checkpoint_write(&self, writer: &mut ImageWriter) -> std::io::Result<()> {
        let ExpiryQueue { heap } = self;
        writer.count(heap.len())?;
        for entry in heap {
            let ExpiryEntry {
                expires_at,
                timestamp,
                transfer,
            } = entry;
            writer.u64(*expires_at)?;
            writer.u64(*timestamp)?;
            writer.u32(*transfer)?;
        }
        Ok(())
    }

    /// Reads the heap into this empty queue and fills `positions` (all `NO_POSITION`, one per
    /// stored transfer) with each queued transfer's heap position.
    pub(crate) fn checkpoint_read(
        &mut self,
        reader: &mut ImageReader,
        positions: &mut [u32],
    ) -> Result<(), CheckpointError> {
        const STORE: &str = "pending expiry queue";
        assert!(self.heap.is_empty());
        let count = reader.count(STORE, self.heap.capacity(), "--transfers-pending-max")?;
        for index in 0..count {
            let expires_at = reader.u64()?;
            let timestamp = reader.u64()?;
            let transfer = reader.position(STORE, positions.len())?;
            if positions[transfer as usize] != NO_POSITION {
                return Err(reader.invalid(STORE, "a transfer is queued twice"));
            }
            positions[transfer as usize] = index as u32;
            self.heap.push(ExpiryEntry {
                expires_at,
                timestamp,
                transfer,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_key_order_with_removals() {
        let mut positions = vec![NO_POSITION; 64];
        let mut queue = ExpiryQueue::new(64);
        let mut seed = 7u64;
        for transfer in 0..64u32 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let entry = ExpiryEntry {
                expires_at: (seed >> 60) + 100,
                timestamp: u64::from(transfer) + 1,
                transfer,
            };
            queue.insert(entry, &mut positions);
        }
        for transfer in (0..64u32).step_by(3) {
            queue.remove(transfer, &mut positions);
        }
        queue.verify(&positions);
        let mut previous = (0, 0);
        while let Some(top) = queue.peek().copied() {
            assert!(top.key() > previous);
            assert!(top.transfer % 3 != 0);
            previous = top.key();
            queue.remove(top.transfer, &mut positions);
        }
        assert!(positions.iter().all(|position| *position == NO_POSITION));
    }
}
