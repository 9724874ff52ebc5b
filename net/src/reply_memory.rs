//! Reply memory: the worst-case reply size of a request, and the net thread's bounded pool of
//! reply buffers that every request reserves from before it is read.
//!
//! A request's reply buffer is taken from this pool when its body begins to arrive, with room
//! for the largest reply the request can have ([`reply_size_max`]). The buffer travels to the
//! core inside the [`Request`](crate::Request), comes back as the reply body, is sent, and
//! returns here. The core writes into it and never allocates.
//!
//! Invariants:
//! - `size` is the capacity of every buffer this pool has handed out and not yet taken back
//!   (by its reservation until the reply comes back, then by the capacity of the body that came
//!   back), plus the capacity of the free buffers it keeps; `size <= size_max` except when a
//!   core returns a body larger than its reservation, which `replies_over_reservation` counts.
//! - Buffers have a class size: a power of two from [`CLASS_SIZE_MIN`] to [`CLASS_SIZE_MAX`],
//!   so a free buffer fits every reply of its class and a reservation wastes less than half.
//! - Free buffers are dropped, largest first, when a reservation needs their memory.
//!
//! Single-threaded: only the net thread reserves and releases.

use clearline_engine::{AccountFilter, BookFilter, FillFilter, Operation, QueryFilter};

use crate::frame::BODY_SIZE_MAX;

/// The smallest reply buffer: small replies (a few results) share this class.
pub(crate) const CLASS_SIZE_MIN: usize = 1024;
/// The largest reply buffer: room for the largest reply body, which is under 1 MiB.
pub(crate) const CLASS_SIZE_MAX: usize = 1 << 20;
const CLASS_COUNT: usize =
    (CLASS_SIZE_MAX.trailing_zeros() - CLASS_SIZE_MIN.trailing_zeros()) as usize + 1;
const _: () = assert!(BODY_SIZE_MAX <= CLASS_SIZE_MAX);

/// The largest request body whose reply size depends on the body (a query filter): the net
/// thread reads it from the input buffer before it reserves.
pub(crate) const QUERY_BODY_SIZE_MAX: usize = 128;

/// The largest reply body a request of `operation` with `count` events and this `body` can get:
/// `count` items for batches and `get_state` (always one), the filter's limit (or twice the book
/// depth) for queries, capped at what fits in one frame, as the engine caps them.
///
/// `body` may be only the first bytes of the body; a query whose filter is not all there gets
/// the largest reply of its operation.
pub fn reply_size_max(operation: Operation, count: u32, body: &[u8]) -> usize {
    let item_size = operation.reply_item_size();
    if item_size == 0 {
        return 0;
    }
    let items_max = (BODY_SIZE_MAX / item_size) as u64;
    let items = match operation {
        Operation::GetAccountTransfers | Operation::GetAccountBalances => body
            .get(..AccountFilter::SIZE)
            .and_then(|bytes| bytes.try_into().ok())
            .map_or(items_max, |bytes| {
                u64::from(AccountFilter::decode(bytes).limit)
            }),
        Operation::QueryAccounts | Operation::QueryTransfers => body
            .get(..QueryFilter::SIZE)
            .and_then(|bytes| bytes.try_into().ok())
            .map_or(items_max, |bytes| {
                u64::from(QueryFilter::decode(bytes).limit)
            }),
        Operation::GetFills => body
            .get(..FillFilter::SIZE)
            .and_then(|bytes| bytes.try_into().ok())
            .map_or(items_max, |bytes| {
                u64::from(FillFilter::decode(bytes).limit)
            }),
        // Up to `depth` levels on each side; a depth over the maximum gets nothing.
        Operation::GetBook => body
            .get(..BookFilter::SIZE)
            .and_then(|bytes| bytes.try_into().ok())
            .map_or(items_max, |bytes| {
                2 * u64::from(BookFilter::decode(bytes).depth.min(BookFilter::DEPTH_MAX))
            }),
        _ => u64::from(count),
    };
    items.min(items_max) as usize * item_size
}

/// The buffer capacity a reply of `size` bytes gets: 0 for none, else its class size.
pub(crate) fn class_size(size: usize) -> usize {
    if size == 0 {
        0
    } else {
        size.next_power_of_two()
            .clamp(CLASS_SIZE_MIN, CLASS_SIZE_MAX)
    }
}

fn class_index(class_size: usize) -> usize {
    (class_size.trailing_zeros() - CLASS_SIZE_MIN.trailing_zeros()) as usize
}

/// The pool; see the module documentation.
pub(crate) struct ReplyMemory {
    size_max: usize,
    size: usize,
    size_peak: usize,
    /// Free buffers by class, smallest class first; each has exactly its class's capacity.
    free: [Vec<Vec<u8>>; CLASS_COUNT],
    free_size: usize,
}

impl ReplyMemory {
    pub fn new(size_max: usize) -> ReplyMemory {
        assert!(size_max >= CLASS_SIZE_MAX);
        ReplyMemory {
            size_max,
            size: 0,
            size_peak: 0,
            free: std::array::from_fn(|_| Vec::new()),
            free_size: 0,
        }
    }

    /// Bytes reserved or held, free buffers included.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The most bytes ever reserved or held at once.
    pub fn size_peak(&self) -> usize {
        self.size_peak
    }

    /// An empty buffer with room for a reply of `size` bytes (its capacity is what is
    /// reserved), or `None` if the budget has no room for it now.
    pub fn reserve(&mut self, size: usize) -> Option<Vec<u8>> {
        let capacity = class_size(size);
        if capacity == 0 {
            return Some(Vec::new());
        }
        if let Some(buffer) = self.free[class_index(capacity)].pop() {
            self.free_size -= capacity;
            return Some(buffer);
        }
        // Drop free buffers of other classes, largest first, until the new one fits.
        let mut index = CLASS_COUNT;
        while self.size + capacity > self.size_max && self.free_size > 0 {
            while self.free[index - 1].is_empty() {
                index -= 1;
            }
            let dropped = self.free[index - 1]
                .pop()
                .map_or(0, |buffer| buffer.capacity());
            self.free_size -= dropped;
            self.size -= dropped;
        }
        if self.size + capacity > self.size_max {
            return None;
        }
        let buffer = Vec::with_capacity(capacity);
        self.size += buffer.capacity();
        self.size_peak = self.size_peak.max(self.size);
        Some(buffer)
    }

    /// A reply came back in a buffer of `capacity` bytes for a reservation of `reserved`: the
    /// reply now holds its buffer's capacity. Returns whether it exceeded the reservation.
    pub fn settle(&mut self, reserved: usize, capacity: usize) -> bool {
        self.size = self.size - reserved + capacity;
        self.size_peak = self.size_peak.max(self.size);
        capacity > reserved
    }

    /// Takes back `buffer`, which held `held` bytes of the budget: it is kept as a free buffer
    /// if it has a class's capacity and fits, else dropped.
    pub fn release(&mut self, held: usize, mut buffer: Vec<u8>) {
        self.size -= held;
        let capacity = buffer.capacity();
        if capacity == 0 || class_size(capacity) != capacity || self.size + capacity > self.size_max
        {
            return;
        }
        buffer.clear();
        self.size += capacity;
        self.free_size += capacity;
        self.free[class_index(capacity)].push(buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_case_follows_count_and_limits() {
        assert_eq!(reply_size_max(Operation::CreateTransfers, 10, &[]), 160);
        assert_eq!(
            reply_size_max(Operation::LookupAccounts, 8_191, &[]),
            8_191 * 128
        );
        assert_eq!(reply_size_max(Operation::PlaceOrders, 3, &[]), 192);
        let mut filter = [0u8; 128];
        filter[120..124].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(
            reply_size_max(Operation::GetAccountTransfers, 1, &filter),
            12_800
        );
        filter[120..124].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            reply_size_max(Operation::GetAccountTransfers, 1, &filter),
            8_191 * 128
        );
        // An incomplete filter gets the largest reply.
        assert_eq!(
            reply_size_max(Operation::QueryTransfers, 1, &[0; 10]),
            8_191 * 128
        );
        let mut book = [0u8; 64];
        book[4..8].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(reply_size_max(Operation::GetBook, 1, &book), 20 * 32);
        // get_state answers one State whatever its (reserved) event holds.
        assert_eq!(reply_size_max(Operation::GetState, 1, &[0xFF; 16]), 64);
        assert_eq!(reply_size_max(Operation::Pulse, 0, &[]), 0);
    }

    #[test]
    fn the_budget_bounds_reservations_and_free_buffers() {
        let mut memory = ReplyMemory::new(2 * CLASS_SIZE_MAX);
        let big = memory.reserve(CLASS_SIZE_MAX - 5).expect("fits");
        assert_eq!(big.capacity(), CLASS_SIZE_MAX);
        let small = memory.reserve(10).expect("fits");
        assert_eq!(small.capacity(), CLASS_SIZE_MIN);
        assert!(memory.reserve(CLASS_SIZE_MAX).is_none(), "over the budget");
        memory.release(CLASS_SIZE_MIN, small);
        assert_eq!(
            memory.size(),
            CLASS_SIZE_MAX + CLASS_SIZE_MIN,
            "kept as a free buffer"
        );
        // The free small buffer is dropped to make room for a large one.
        let second = memory
            .reserve(CLASS_SIZE_MAX)
            .expect("fits once the free one is dropped");
        assert_eq!(memory.size(), 2 * CLASS_SIZE_MAX);
        assert!(memory.settle(CLASS_SIZE_MAX, CLASS_SIZE_MAX + 1));
        memory.release(CLASS_SIZE_MAX + 1, second);
        memory.release(CLASS_SIZE_MAX, big);
        assert_eq!(
            memory.size(),
            2 * CLASS_SIZE_MAX,
            "both kept as free buffers"
        );
        let small = memory.reserve(10).expect("fits once a free one is dropped");
        assert_eq!(memory.size(), CLASS_SIZE_MAX + CLASS_SIZE_MIN);
        memory.release(CLASS_SIZE_MIN, small);
        assert_eq!(memory.size_peak(), 2 * CLASS_SIZE_MAX + 1);
    }
}
