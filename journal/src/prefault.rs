//! Faulting in the journal's pages ahead of the writer, on a thread of its own.
//!
//! The writer appends through a shared mapping of preallocated segment files. The first write
//! to each page of a never written range faults: the kernel allocates a page-cache page,
//! zero-fills it (the extent was never written) and makes it writable. The thread that appends
//! is the server's core: over the 10 M benchmark these were about 9,000 of the 34,000 page
//! faults it took. Here a background thread makes the pages writable a chunk ahead of the
//! write position instead (`SegmentSync::prefault`, `MADV_POPULATE_WRITE` on the mapped
//! storage), so the writer's stores find them present.
//!
//! Invariants:
//! - prefaulting reads and writes no byte of a segment: what a crash leaves is what the writer
//!   wrote (the pages it touched ahead hold zeros, which is what those ranges held);
//! - the writer never waits for it: a request replaces the one not yet taken, and a thread that
//!   falls behind (or could not start) leaves the faults to the writer, as before;
//! - it reaches at most into the spare segment after the one being written.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::record::SEGMENT_HEADER_SIZE;
use crate::storage::SegmentSync;

/// Bytes prefaulted per request.
pub(crate) const PREFAULT_CHUNK: u64 = 16 << 20;
/// The next chunk is asked for once the writer is this close to the end of what was asked.
pub(crate) const PREFAULT_LOW_WATER: u64 = 8 << 20;

/// A range of one segment to prefault.
struct Range {
    segment: Arc<dyn SegmentSync>,
    offset: u64,
    size: u64,
}

#[derive(Default)]
struct Request {
    range: Option<Range>,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    request: Mutex<Request>,
    wake: Condvar,
}

fn lock(shared: &Shared) -> MutexGuard<'_, Request> {
    shared
        .request
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A segment as `Prefaulter::follow` sees it.
pub(crate) struct SegmentAt<'a> {
    pub id: u64,
    pub size: u64,
    pub sync: &'a Arc<dyn SegmentSync>,
}

/// The writer's side: asks the thread for the chunk after what it last asked for.
pub(crate) struct Prefaulter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// How far prefaulting was asked to reach: segment id and end offset.
    asked: (u64, u64),
}

impl Prefaulter {
    /// Starts the thread; `None` if it cannot start (the writer then takes its own faults).
    pub(crate) fn start() -> Option<Prefaulter> {
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("journal-prefault".to_owned())
            .spawn(move || run(&thread_shared))
            .ok()?;
        Some(Prefaulter {
            shared,
            thread: Some(thread),
            asked: (0, 0),
        })
    }

    /// After an append: the writer is at `offset` of `current`, with `next` the spare after
    /// it. Asks for the next chunk when the writer is within [`PREFAULT_LOW_WATER`] of what was
    /// asked for so far.
    pub(crate) fn follow(&mut self, current: &SegmentAt<'_>, next: &SegmentAt<'_>, offset: u64) {
        let (asked_id, asked_end) = self.asked;
        let ahead = if asked_id == current.id {
            asked_end.saturating_sub(offset)
        } else if asked_id == next.id {
            (current.size - offset) + asked_end.saturating_sub(SEGMENT_HEADER_SIZE)
        } else {
            0
        };
        if ahead >= PREFAULT_LOW_WATER {
            return;
        }
        // Continue from what was asked if it is still ahead of the writer, else from the writer.
        let (mut id, mut from) = if ahead > 0 {
            (asked_id, asked_end)
        } else {
            (current.id, offset)
        };
        if id == current.id && from >= current.size {
            (id, from) = (next.id, SEGMENT_HEADER_SIZE);
        }
        let segment = if id == current.id { current } else { next };
        let to = (from + PREFAULT_CHUNK).min(segment.size);
        if to <= from {
            return;
        }
        self.asked = (id, to);
        let mut request = lock(&self.shared);
        request.range = Some(Range {
            segment: Arc::clone(segment.sync),
            offset: from,
            size: to - from,
        });
        self.shared.wake.notify_one();
    }
}

impl Drop for Prefaulter {
    fn drop(&mut self) {
        lock(&self.shared).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // Prefaulting cannot fail in a way that matters; a panic there is not ours to
            // report.
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared) {
    loop {
        let range = {
            let mut request = lock(shared);
            loop {
                if request.stop {
                    return;
                }
                if let Some(range) = request.range.take() {
                    break range;
                }
                request = shared
                    .wake
                    .wait(request)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        range.segment.prefault(range.offset, range.size);
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::{Duration, Instant};

    use super::*;

    /// Records the ranges it is asked to prefault.
    #[derive(Default)]
    struct Recorder {
        ranges: Mutex<Vec<(u64, u64)>>,
    }

    impl SegmentSync for Recorder {
        fn sync(&self, _offset: u64, _size: u64) -> io::Result<()> {
            Ok(())
        }

        fn prefault(&self, offset: u64, size: u64) {
            self.ranges.lock().unwrap().push((offset, offset + size));
        }
    }

    fn ranges(recorder: &Recorder) -> Vec<(u64, u64)> {
        recorder.ranges.lock().unwrap().clone()
    }

    #[test]
    fn chunks_follow_the_writer_into_the_spare_and_never_behind_it() {
        const SIZE: u64 = 40 << 20;
        let first: Arc<Recorder> = Arc::new(Recorder::default());
        let second: Arc<Recorder> = Arc::new(Recorder::default());
        let first_sync: Arc<dyn SegmentSync> = first.clone();
        let second_sync: Arc<dyn SegmentSync> = second.clone();
        let current = SegmentAt {
            id: 7,
            size: SIZE,
            sync: &first_sync,
        };
        let next = SegmentAt {
            id: 8,
            size: SIZE,
            sync: &second_sync,
        };
        let mut prefaulter = Prefaulter::start().expect("a thread");
        let total = || ranges(&first).len() + ranges(&second).len();
        let mut requests = 0;
        let mut offset = SEGMENT_HEADER_SIZE;
        // The writer moves 1 MiB at a time to the end of the first segment.
        loop {
            let before = prefaulter.asked;
            prefaulter.follow(&current, &next, offset);
            let (id, end) = prefaulter.asked;
            assert!(
                id == 8 || end > offset,
                "asked {end} is not ahead of {offset}"
            );
            if prefaulter.asked != before {
                // One request at a time, so none is replaced before the thread takes it.
                requests += 1;
                let deadline = Instant::now() + Duration::from_secs(20);
                while total() < requests {
                    assert!(Instant::now() < deadline, "request {requests} not taken");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            if offset == SIZE {
                break;
            }
            offset = (offset + (1 << 20)).min(SIZE);
        }
        drop(prefaulter);
        let first = ranges(&first);
        assert_eq!(
            first[0].0, SEGMENT_HEADER_SIZE,
            "from the writer's position"
        );
        for pair in first.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "chunks follow each other: {first:?}");
        }
        assert_eq!(first.last().map(|range| range.1), Some(SIZE));
        assert!(first.iter().all(|(from, to)| to - from <= PREFAULT_CHUNK));
        let second = ranges(&second);
        assert_eq!(
            second[0].0, SEGMENT_HEADER_SIZE,
            "the spare from its first record"
        );
    }
}
