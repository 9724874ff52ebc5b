//! The channel between the net thread and the core: the [`Request`] and [`Reply`] that cross
//! it, the bounded queues and the body buffer pool they share, and the wakeups both ways.
//!
//! - The net thread (and an [`Injector`] for another front end) pushes requests; the core holds
//!   the [`CoreSide`]: it waits for requests without spinning (a condvar the net thread notifies
//!   only when the core said it was waiting), pushes replies and calls [`CoreSide::wake`] once
//!   per batch.
//! - The journal syncer stores the durable sequence into the `durable` atomic and then calls
//!   [`NetWaker::wake`], so replies gated on that sequence leave.
//! - [`ServerStats`] counts what the net thread did, readable from any thread.
//!
//! Holds no socket and no connection; the event loop in `server.rs` owns those.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use clearline_engine::Operation;
use crossbeam_queue::ArrayQueue;
use mio::Waker;

use crate::config::ServerConfig;
use crate::frame::{FrameStatus, Header, Redirect};
use crate::reply_memory::CLASS_SIZE_MIN;

// A redirect fits in the smallest reply buffer, so writing it into a request's reply buffer
// does not allocate (except for a request whose largest reply is empty: see `Reply::redirect`).
const _: () = assert!(Redirect::SIZE <= CLASS_SIZE_MIN);

/// Which connection a request came from: a slot index and the slot's generation, so a reply
/// for a connection that closed (and whose slot was reused) is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnectionId {
    /// The slot index (0-based, below `connections_max`).
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many times the slot was used before.
    pub fn generation(self) -> u32 {
        self.generation
    }

    /// An id that names no connection of this server, for requests another front end submits
    /// through an [`Injector`]; `tag` is the front end's own. Its replies are never routed here.
    pub fn external(tag: u32) -> ConnectionId {
        ConnectionId {
            index: u32::MAX,
            generation: tag,
        }
    }

    /// Whether this id came from [`ConnectionId::external`] (slot indexes stay below
    /// `connections_max`, which is at most `u32::MAX / 2`).
    pub fn is_external(self) -> bool {
        self.index == u32::MAX
    }
}

/// A valid request on its way to the core.
#[derive(Debug)]
pub struct Request {
    /// The connection to answer.
    pub connection: ConnectionId,
    /// The request header, every check passed.
    pub header: Header,
    /// The operation (a client operation: never the pulse).
    pub operation: Operation,
    /// `header.count` events of `operation.event_size()` bytes, body checksum verified. A
    /// buffer from the pool: give it back with [`CoreSide::recycle`].
    pub body: Vec<u8>,
    /// An empty buffer with room for the largest reply this request can get: write the reply
    /// body into it (it never needs to grow) and send it back as [`Reply::body`]. Its memory
    /// is reserved from the server's reply budget until the reply is sent.
    pub reply_body: Vec<u8>,
    /// Bytes of the reply budget reserved for this request (the capacity `reply_body` had).
    pub reply_reserved: usize,
}

/// The core's answer to one request.
#[derive(Debug)]
pub struct Reply {
    /// The connection the request came from.
    pub connection: ConnectionId,
    /// The request's id.
    pub request_id: u64,
    /// The request's operation.
    pub operation: Operation,
    /// [`FrameStatus::Ok`]; [`FrameStatus::NotPrimary`] with one [`Redirect`] in the body (build
    /// it with [`Reply::redirect`]); or another status with an empty body (`storage_full`).
    pub status: FrameStatus,
    /// Items in `body`: `body.len()` is what [`FrameStatus::reply_body_size`] gives for the
    /// status, the operation and this count (`count x operation.reply_item_size()` for ok).
    pub count: u32,
    /// The engine timestamp of the request's last event (0 for reads).
    pub timestamp: u64,
    /// The journal sequence of the request (0 for reads).
    pub sequence: u64,
    /// The results, in the request's `reply_body` buffer; the net thread puts it back into the
    /// reply pool once it is sent.
    pub body: Vec<u8>,
    /// The reply leaves only once `durable >= gate` (0: at once).
    pub gate: u64,
    /// The request's `reply_reserved`, copied by [`Reply::to`]: what to give back to the reply
    /// budget if the connection has closed.
    pub reply_reserved: usize,
}

impl Reply {
    /// An empty ok reply to `request`, with no gate; fill in the rest.
    pub fn to(request: &Request) -> Reply {
        Reply {
            connection: request.connection,
            request_id: request.header.request_id,
            operation: request.operation,
            status: FrameStatus::Ok,
            count: 0,
            timestamp: 0,
            sequence: 0,
            body: Vec::new(),
            gate: 0,
            reply_reserved: request.reply_reserved,
        }
    }

    /// A `not_primary` reply to `request` (docs/protocol.md section 4.1): the request was not
    /// executed, and the body is `redirect` encoded into the request's `reply_body`, which this
    /// takes. No gate, `timestamp` and `sequence` 0: it reveals nothing of the journal.
    ///
    /// A backup answers this to every write, and to every read without
    /// [`RequestFlags::READ_FROM_BACKUP`](crate::frame::RequestFlags::READ_FROM_BACKUP); a
    /// deposed primary answers it to every request. Build `redirect` with
    /// [`Redirect::primary`], or use [`Redirect::NO_PRIMARY`] when no primary is known.
    ///
    /// Does not allocate: every request's reply buffer has room for at least the smallest reply
    /// class (1 KiB), except a query whose filter asks for no item (limit 0), whose buffer is
    /// empty. That one reply grows the buffer to 40 bytes, and the net thread counts it in
    /// `replies_over_reservation`.
    pub fn redirect(request: &mut Request, redirect: &Redirect) -> Reply {
        let mut bytes = [0u8; Redirect::SIZE];
        redirect.encode(&mut bytes);
        let mut body = std::mem::take(&mut request.reply_body);
        body.clear();
        body.extend_from_slice(&bytes);
        Reply {
            status: FrameStatus::NotPrimary,
            count: 1,
            body,
            ..Reply::to(request)
        }
    }
}

/// Counters of what the server did, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted into a slot.
    pub connections_accepted: u64,
    /// Connections accepted and closed at once because every slot was taken.
    pub connections_refused: u64,
    /// Connections accepted and closed at once because their address had
    /// `connections_per_address_max` connections open.
    pub connections_refused_address: u64,
    /// Connections that were accepted into a slot and have closed since, for any reason.
    pub connections_closed: u64,
    /// Connections closed because a frame did not arrive in full in time.
    pub connections_closed_partial_frame: u64,
    /// Connections closed because the client did not read its replies in time.
    pub connections_closed_reply_stall: u64,
    /// Connections closed because they were idle for `idle_timeout`.
    pub connections_closed_idle: u64,
    /// Frames answered with a frame-level error status (`shutting_down` included).
    pub frames_rejected: u64,
    /// Replies dropped because their connection had closed.
    pub replies_dropped: u64,
    /// Times a connection stopped reading because the core was behind.
    pub pauses_core: u64,
    /// Times a connection stopped reading because the reply budget (`reply_memory_max`) had no
    /// room for its next request's worst-case reply.
    pub pauses_reply_memory: u64,
    /// Reply memory reserved or held now, free pooled buffers included.
    pub reply_memory_size: u64,
    /// The most reply memory ever reserved or held at once; at most `reply_memory_max` unless
    /// `replies_over_reservation` is not zero.
    pub reply_memory_size_peak: u64,
    /// Replies whose body buffer came back larger than the reservation of their request (a
    /// core that grew `reply_body`).
    pub replies_over_reservation: u64,
}

#[derive(Default)]
pub(crate) struct StatsCounters {
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_refused_address: AtomicU64,
    pub connections_closed: AtomicU64,
    pub connections_closed_partial_frame: AtomicU64,
    pub connections_closed_reply_stall: AtomicU64,
    pub connections_closed_idle: AtomicU64,
    pub frames_rejected: AtomicU64,
    pub replies_dropped: AtomicU64,
    pub pauses_core: AtomicU64,
    pub pauses_reply_memory: AtomicU64,
    pub reply_memory_size: AtomicU64,
    pub reply_memory_size_peak: AtomicU64,
    pub replies_over_reservation: AtomicU64,
}

impl StatsCounters {
    pub(crate) fn snapshot(&self) -> ServerStats {
        ServerStats {
            connections_accepted: self.connections_accepted.load(Ordering::Relaxed),
            connections_refused: self.connections_refused.load(Ordering::Relaxed),
            connections_refused_address: self.connections_refused_address.load(Ordering::Relaxed),
            connections_closed: self.connections_closed.load(Ordering::Relaxed),
            connections_closed_partial_frame: self
                .connections_closed_partial_frame
                .load(Ordering::Relaxed),
            connections_closed_reply_stall: self
                .connections_closed_reply_stall
                .load(Ordering::Relaxed),
            connections_closed_idle: self.connections_closed_idle.load(Ordering::Relaxed),
            frames_rejected: self.frames_rejected.load(Ordering::Relaxed),
            replies_dropped: self.replies_dropped.load(Ordering::Relaxed),
            pauses_core: self.pauses_core.load(Ordering::Relaxed),
            pauses_reply_memory: self.pauses_reply_memory.load(Ordering::Relaxed),
            reply_memory_size: self.reply_memory_size.load(Ordering::Relaxed),
            reply_memory_size_peak: self.reply_memory_size_peak.load(Ordering::Relaxed),
            replies_over_reservation: self.replies_over_reservation.load(Ordering::Relaxed),
        }
    }
}

/// The request body buffers, handed out most recently returned first (a stack, not a queue).
/// A steady flow then keeps using the same few buffers: only their pages are touched, and
/// while a forked checkpoint writer shares the process's memory only theirs are copied on
/// write. Handed out in turn, every buffer was faulted in and then copied at each checkpoint:
/// 65,000 page faults each way on the net thread over the 10 M benchmark, for 256 buffers of
/// 1 MiB.
pub(crate) struct BodyPool {
    free: Mutex<Vec<Vec<u8>>>,
    count: usize,
}

impl BodyPool {
    /// A pool of `count` empty buffers (each grows to its first body's size).
    fn new(count: usize) -> BodyPool {
        let mut free = Vec::with_capacity(count);
        free.resize_with(count, Vec::new);
        BodyPool {
            free: Mutex::new(free),
            count,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Vec<u8>>> {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently returned buffer, if any is free.
    pub(crate) fn pop(&self) -> Option<Vec<u8>> {
        self.lock().pop()
    }

    /// Returns a buffer; drops it if the pool already holds `count` (never allocates).
    pub(crate) fn push(&self, buffer: Vec<u8>) {
        let mut free = self.lock();
        if free.len() < self.count {
            free.push(buffer);
        }
    }
}

/// What the net thread and the core share.
pub(crate) struct Shared {
    pub requests: ArrayQueue<Request>,
    pub replies: ArrayQueue<Reply>,
    pub buffers: BodyPool,
    pub waker: Arc<Waker>,
    pub durable: Arc<AtomicU64>,
    /// Set by the net thread when a connection waits for queue room or a buffer; the core wakes
    /// the net thread when it frees some.
    pub reader_paused: AtomicBool,
    /// Set by the core while it sleeps in `wait_for_requests`.
    pub core_waiting: AtomicBool,
    pub core_mutex: Mutex<()>,
    pub core_condvar: Condvar,
    pub shutdown: AtomicBool,
    /// Set when the net thread has ended.
    pub stopped: AtomicBool,
    pub stats: StatsCounters,
}

impl Shared {
    /// Empty queues sized by `config` and a full body buffer pool.
    pub(crate) fn new(config: &ServerConfig, waker: Arc<Waker>, durable: Arc<AtomicU64>) -> Shared {
        let buffers = BodyPool::new(config.body_buffers_count);
        Shared {
            requests: ArrayQueue::new(config.request_queue_depth),
            replies: ArrayQueue::new(config.requests_at_core_max),
            buffers,
            waker,
            durable,
            reader_paused: AtomicBool::new(false),
            core_waiting: AtomicBool::new(false),
            core_mutex: Mutex::new(()),
            core_condvar: Condvar::new(),
            shutdown: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            stats: StatsCounters::default(),
        }
    }

    pub(crate) fn wake_net(&self) {
        // A failed wake means the poller is gone, which only happens once the net thread ends.
        let _ = self.waker.wake();
    }

    pub(crate) fn notify_core(&self) {
        // Pairs with the fence in `CoreSide::wait_for_requests`: either the core sees the
        // pushed request before it sleeps, or this sees `core_waiting` and notifies.
        fence(Ordering::SeqCst);
        if self.core_waiting.load(Ordering::SeqCst) {
            let _guard = self.lock_core();
            self.core_condvar.notify_one();
        }
    }

    /// Wakes the core even if it did not say it was waiting (it checks `stopped`).
    pub(crate) fn notify_core_always(&self) {
        let _guard = self.lock_core();
        self.core_condvar.notify_all();
    }

    /// Locks the mutex the core sleeps on (a panic while it was held leaves nothing to repair).
    fn lock_core(&self) -> MutexGuard<'_, ()> {
        self.core_mutex
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub(crate) fn wake_net_if_paused(&self) {
        fence(Ordering::SeqCst);
        if self.reader_paused.load(Ordering::SeqCst)
            && self.reader_paused.swap(false, Ordering::SeqCst)
        {
            self.wake_net();
        }
    }
}

/// A handle that wakes the net thread: after the core pushed replies and after the journal
/// syncer advanced `durable`. Cheap to clone.
#[derive(Clone)]
pub struct NetWaker {
    pub(crate) shared: Arc<Shared>,
}

impl NetWaker {
    /// Wakes the net thread (one `eventfd` write); it then routes replies and sends the ones
    /// `durable` covers.
    pub fn wake(&self) {
        self.shared.wake_net();
    }
}

impl std::fmt::Debug for NetWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetWaker")
    }
}

/// The core thread's end of the server: pop requests, push replies, return buffers, wake.
pub struct CoreSide {
    pub(crate) shared: Arc<Shared>,
}

impl CoreSide {
    /// The next request, if one is queued. Never blocks.
    pub fn pop_request(&self) -> Option<Request> {
        let request = self.shared.requests.pop();
        if request.is_some() && self.shared.requests.len() <= self.shared.requests.capacity() / 2 {
            self.shared.wake_net_if_paused();
        }
        request
    }

    /// Waits until a request is queued or `timeout` passes, sleeping on a condvar (no spinning).
    /// Returns whether a request is queued.
    pub fn wait_for_requests(&self, timeout: Duration) -> bool {
        if !self.shared.requests.is_empty() {
            return true;
        }
        let guard = self.shared.lock_core();
        self.shared.core_waiting.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !self.shared.requests.is_empty() {
            self.shared.core_waiting.store(false, Ordering::SeqCst);
            return true;
        }
        let (guard, _) = self
            .shared
            .core_condvar
            .wait_timeout(guard, timeout)
            .unwrap_or_else(|poison| poison.into_inner());
        self.shared.core_waiting.store(false, Ordering::SeqCst);
        drop(guard);
        !self.shared.requests.is_empty()
    }

    /// Queues a reply for the net thread; call [`CoreSide::wake`] after a batch of them.
    ///
    /// # Errors
    ///
    /// Gives the reply back if the reply queue is full, which happens only if the core pushes
    /// more replies than it popped requests.
    pub fn push_reply(&self, reply: Reply) -> Result<(), Reply> {
        self.shared.replies.push(reply)
    }

    /// Returns a request body buffer to the pool (its capacity is kept for reuse).
    pub fn recycle(&self, buffer: Vec<u8>) {
        recycle(&self.shared, buffer);
        self.shared.wake_net_if_paused();
    }

    /// Wakes the net thread so it sends the replies pushed so far.
    pub fn wake(&self) {
        self.shared.wake_net();
    }

    /// A waker for the journal syncer (the same as [`ServerHandle::waker`]).
    pub fn waker(&self) -> NetWaker {
        NetWaker {
            shared: Arc::clone(&self.shared),
        }
    }

    /// A producer for the same request queue, for another front end.
    pub fn injector(&self) -> Injector {
        Injector {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The durable sequence the server gates replies on.
    pub fn durable(&self) -> &Arc<AtomicU64> {
        &self.shared.durable
    }

    /// Whether the server is shutting down: no new request will be queued, but the core
    /// should go on answering what it pops until [`CoreSide::is_stopped`].
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.load(Ordering::Acquire)
    }

    /// Whether the net thread has ended (after [`ServerHandle::shutdown`]); the core can stop.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }
}

/// A second producer for the core's request queue: another front end (the TigerBeetle gateway)
/// queues its requests here, behind the same bounded queue as this server's, and takes their
/// replies from the core on its own path.
#[derive(Clone)]
pub struct Injector {
    shared: Arc<Shared>,
}

impl Injector {
    /// Queues `request` (whose connection is [`ConnectionId::external`]) and wakes the core.
    ///
    /// # Errors
    ///
    /// Gives the request back while the queue is full; try again later.
    // The request is handed back whole so that its buffers return to the caller's pool;
    // boxing it would allocate per request.
    #[allow(clippy::result_large_err)]
    pub fn push(&self, request: Request) -> Result<(), Request> {
        self.shared.requests.push(request)?;
        self.shared.notify_core();
        Ok(())
    }
}

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Injector")
    }
}

impl std::fmt::Debug for CoreSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CoreSide")
    }
}

/// Sends a reply for `request` with `status` and an empty body: a convenience for cores that
/// refuse a request (for example `storage_full`). A `not_primary` reply carries a body: build it
/// with [`Reply::redirect`] instead.
///
/// # Panics
///
/// If `status` is [`FrameStatus::NotPrimary`] (a reply without its redirect body).
pub fn status_reply(request: &Request, status: FrameStatus) -> Reply {
    assert_ne!(
        status,
        FrameStatus::NotPrimary,
        "a not_primary reply needs a redirect body: use Reply::redirect"
    );
    Reply {
        status,
        ..Reply::to(request)
    }
}

/// Returns a body buffer to the pool, keeping its capacity; drops it when the pool is full.
///
/// Empty buffers go back too: the pool counts buffers, not bytes, and the core may answer with a
/// fresh vector while keeping the request's.
pub(crate) fn recycle(shared: &Shared, mut buffer: Vec<u8>) {
    buffer.clear();
    shared.buffers.push(buffer);
}

#[cfg(test)]
mod tests {
    use super::BodyPool;

    #[test]
    fn the_body_pool_hands_out_the_most_recently_returned_buffer_and_holds_at_most_its_count() {
        let pool = BodyPool::new(3);
        let mut taken: Vec<Vec<u8>> = (0..3).map(|_| pool.pop().expect("a buffer")).collect();
        assert!(pool.pop().is_none(), "three buffers in all");
        for (index, buffer) in taken.iter_mut().enumerate() {
            buffer.reserve_exact(1000 * (index + 1));
        }
        let capacities: Vec<usize> = taken.iter().map(Vec::capacity).collect();
        for buffer in taken {
            pool.push(buffer);
        }
        // Last in, first out: the same buffer keeps coming back while one at a time is used.
        for _ in 0..5 {
            let buffer = pool.pop().expect("a buffer");
            assert_eq!(buffer.capacity(), capacities[2]);
            pool.push(buffer);
        }
        pool.push(Vec::with_capacity(5));
        let held: Vec<usize> = std::iter::from_fn(|| pool.pop())
            .map(|buffer| buffer.capacity())
            .collect();
        assert_eq!(
            held,
            [capacities[2], capacities[1], capacities[0]],
            "a fourth is dropped"
        );
    }
}
