//! The server: a mio event loop on its own thread that accepts connections, validates frames,
//! hands requests to the core through a bounded lock-free queue and sends the core's replies
//! back once the journal has made them durable.
//!
//! Threads and hand-offs:
//! - the net thread owns every socket; it pushes [`Request`]s into a bounded `ArrayQueue` and
//!   pops [`Reply`]s from another;
//! - the core thread holds the [`CoreSide`]: it waits for requests without spinning (a condvar
//!   the net thread notifies only when the core said it was waiting), pushes replies and calls
//!   [`CoreSide::wake`] once per batch;
//! - the journal syncer stores the durable sequence into the `durable` atomic and then calls
//!   [`NetWaker::wake`], so replies gated on that sequence leave.
//!
//! Invariants:
//! - Nothing grows without bound: connections (in all and per address), input bytes, reply
//!   memory and requests in flight per connection, queued requests, requests with the core, body
//!   buffers and reply memory over all connections all have a limit in [`ServerConfig`]. When
//!   one is reached the connection stops reading (its read interest is removed) and TCP flow
//!   control pushes back on the client.
//! - The core can always push a reply: the net thread never has more requests with the core
//!   than the reply queue holds.
//! - A reply reaches a connection only if the connection's generation matches, so a reply for
//!   a closed connection whose slot was reused is dropped.
//! - Client bytes never cause a panic; assertions here check the core's side of the contract.
//!
//! Does not apply requests, assign timestamps or know the journal; the core does.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clearline_engine::Operation;
use crossbeam_queue::ArrayQueue;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{SockRef, TcpKeepalive};

use crate::connection::{recycle, Connection, LoopState, Pause, ReadOutcome, WriteOutcome};
use crate::frame::{FrameStatus, Header, BODY_SIZE_MAX, HEADER_SIZE, PIPELINE_DEPTH_CLIENT};
use crate::reply_memory::{ReplyMemory, CLASS_SIZE_MAX, QUERY_BODY_SIZE_MAX};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const CONNECTION_TOKEN_FIRST: usize = 2;

/// How often the loop looks again while some connection waits for the core to free room.
const CORE_RECHECK_INTERVAL: Duration = Duration::from_millis(1);

/// TCP keepalive on every accepted socket: the first probe after this long without traffic,
/// then one every [`KEEPALIVE_INTERVAL`] (the kernel's probe count decides when it gives up).
/// It finds peers that vanished without a FIN or reset (a crashed host, a dropped NAT entry)
/// while the connection is not idle, for example while its requests wait for the journal.
const KEEPALIVE_TIME: Duration = Duration::from_secs(30);
/// The interval between keepalive probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// The limits of the server, each with a named default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// The address to listen on.
    pub addr: SocketAddr,
    /// The most open connections; above it, new connections are accepted and closed at once.
    pub connections_max: usize,
    /// The most open connections from one IP address; above it, new connections from that
    /// address are accepted and closed at once, so one peer cannot take the whole table.
    pub connections_per_address_max: usize,
    /// A connection that owes no reply, holds no request and no partial frame, and has sent
    /// nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Bytes of unparsed input buffered per connection (at least one header and one query
    /// filter).
    pub input_size_max: usize,
    /// Reply memory per connection: the worst-case reply sizes reserved for its requests in
    /// flight and the unsent replies it holds. A request that does not fit waits: the
    /// connection stops reading. At least one largest reply.
    pub output_size_max: usize,
    /// Reply memory over all connections, reserved like `output_size_max`; it bounds the pool
    /// of reply buffers, free ones included. At least one largest reply (1 MiB).
    pub reply_memory_max: usize,
    /// Requests read from one connection and not yet answered in full; at least
    /// [`PIPELINE_DEPTH_CLIENT`].
    pub requests_in_flight_max: usize,
    /// A frame must arrive in full within this time of its first byte, or the connection closes.
    pub partial_frame_timeout: Duration,
    /// A connection whose replies have waited this long for the client to read closes.
    pub reply_stall_timeout: Duration,
    /// Requests waiting in the queue to the core.
    pub request_queue_depth: usize,
    /// Requests with the core (queued, being applied or waiting for `durable`) over all
    /// connections; the capacity of the reply queue.
    pub requests_at_core_max: usize,
    /// Body buffers in the pool; each holds at most one body of up to 1 MiB, so request bodies
    /// take at most `body_buffers_count` MiB. Reading stops while the pool is empty.
    pub body_buffers_count: usize,
    /// How long [`ServerHandle::shutdown`] waits for replies to become durable and be sent.
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    /// Default of [`ServerConfig::connections_max`].
    pub const CONNECTIONS_MAX: usize = 1024;
    /// Default of [`ServerConfig::connections_per_address_max`]: a sixteenth of the table.
    pub const CONNECTIONS_PER_ADDRESS_MAX: usize = 64;
    /// Default of [`ServerConfig::idle_timeout`].
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default of [`ServerConfig::input_size_max`].
    pub const INPUT_SIZE_MAX: usize = 64 * 1024;
    /// Default of [`ServerConfig::output_size_max`].
    pub const OUTPUT_SIZE_MAX: usize = 4 * 1024 * 1024;
    /// Default of [`ServerConfig::reply_memory_max`].
    pub const REPLY_MEMORY_MAX: usize = 256 * 1024 * 1024;
    /// Default of [`ServerConfig::requests_in_flight_max`].
    pub const REQUESTS_IN_FLIGHT_MAX: usize = 32;
    /// Default of [`ServerConfig::partial_frame_timeout`].
    pub const PARTIAL_FRAME_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default of [`ServerConfig::reply_stall_timeout`].
    pub const REPLY_STALL_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default of [`ServerConfig::request_queue_depth`].
    pub const REQUEST_QUEUE_DEPTH: usize = 256;
    /// Default of [`ServerConfig::requests_at_core_max`].
    pub const REQUESTS_AT_CORE_MAX: usize = 4096;
    /// Default of [`ServerConfig::body_buffers_count`].
    pub const BODY_BUFFERS_COUNT: usize = 256;
    /// Default of [`ServerConfig::shutdown_grace`].
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

    /// The defaults, listening on `addr`.
    pub fn new(addr: SocketAddr) -> ServerConfig {
        ServerConfig {
            addr,
            connections_max: ServerConfig::CONNECTIONS_MAX,
            connections_per_address_max: ServerConfig::CONNECTIONS_PER_ADDRESS_MAX,
            idle_timeout: ServerConfig::IDLE_TIMEOUT,
            input_size_max: ServerConfig::INPUT_SIZE_MAX,
            output_size_max: ServerConfig::OUTPUT_SIZE_MAX,
            reply_memory_max: ServerConfig::REPLY_MEMORY_MAX,
            requests_in_flight_max: ServerConfig::REQUESTS_IN_FLIGHT_MAX,
            partial_frame_timeout: ServerConfig::PARTIAL_FRAME_TIMEOUT,
            reply_stall_timeout: ServerConfig::REPLY_STALL_TIMEOUT,
            request_queue_depth: ServerConfig::REQUEST_QUEUE_DEPTH,
            requests_at_core_max: ServerConfig::REQUESTS_AT_CORE_MAX,
            body_buffers_count: ServerConfig::BODY_BUFFERS_COUNT,
            shutdown_grace: ServerConfig::SHUTDOWN_GRACE,
        }
    }

    /// Checks that the limits can work together.
    ///
    /// # Errors
    ///
    /// The first limit that is out of range, by name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.connections_max == 0 || self.connections_max > u32::MAX as usize / 2 {
            return Err(ConfigError("connections_max"));
        }
        if self.connections_per_address_max == 0 {
            return Err(ConfigError("connections_per_address_max"));
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError("idle_timeout"));
        }
        if self.input_size_max < HEADER_SIZE.max(QUERY_BODY_SIZE_MAX) {
            return Err(ConfigError("input_size_max"));
        }
        if self.output_size_max < CLASS_SIZE_MAX.max(HEADER_SIZE + BODY_SIZE_MAX) {
            return Err(ConfigError("output_size_max"));
        }
        if self.reply_memory_max < CLASS_SIZE_MAX {
            return Err(ConfigError("reply_memory_max"));
        }
        if self.requests_in_flight_max < PIPELINE_DEPTH_CLIENT {
            return Err(ConfigError("requests_in_flight_max"));
        }
        if self.partial_frame_timeout.is_zero() {
            return Err(ConfigError("partial_frame_timeout"));
        }
        if self.reply_stall_timeout.is_zero() {
            return Err(ConfigError("reply_stall_timeout"));
        }
        if self.request_queue_depth == 0 {
            return Err(ConfigError("request_queue_depth"));
        }
        if self.requests_at_core_max < self.request_queue_depth {
            return Err(ConfigError("requests_at_core_max"));
        }
        if self.body_buffers_count == 0 {
            return Err(ConfigError("body_buffers_count"));
        }
        Ok(())
    }
}

/// A limit of [`ServerConfig`] that is out of range (the field's name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError(pub &'static str);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server limit {} is out of range", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Which connection a request came from: a slot index and the slot's generation, so a reply
/// for a connection that closed (and whose slot was reused) is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionId {
    index: u32,
    generation: u32,
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
    /// [`FrameStatus::Ok`], or a status with an empty body (`storage_full`).
    pub status: FrameStatus,
    /// Results in `body`: for status ok, `body.len() == count x operation.reply_item_size()`.
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
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    connections_refused_address: AtomicU64,
    connections_closed: AtomicU64,
    connections_closed_partial_frame: AtomicU64,
    connections_closed_reply_stall: AtomicU64,
    connections_closed_idle: AtomicU64,
    pub frames_rejected: AtomicU64,
    replies_dropped: AtomicU64,
    pauses_core: AtomicU64,
    pauses_reply_memory: AtomicU64,
    pub reply_memory_size: AtomicU64,
    pub reply_memory_size_peak: AtomicU64,
    pub replies_over_reservation: AtomicU64,
}

impl StatsCounters {
    fn snapshot(&self) -> ServerStats {
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

/// What the net thread and the core share.
pub(crate) struct Shared {
    pub requests: ArrayQueue<Request>,
    replies: ArrayQueue<Reply>,
    pub buffers: ArrayQueue<Vec<u8>>,
    waker: Arc<Waker>,
    durable: Arc<AtomicU64>,
    /// Set by the net thread when a connection waits for queue room or a buffer; the core wakes
    /// the net thread when it frees some.
    reader_paused: AtomicBool,
    /// Set by the core while it sleeps in `wait_for_requests`.
    core_waiting: AtomicBool,
    core_mutex: Mutex<()>,
    core_condvar: Condvar,
    shutdown: AtomicBool,
    /// Set when the net thread has ended.
    stopped: AtomicBool,
    pub stats: StatsCounters,
}

impl Shared {
    fn wake_net(&self) {
        // A failed wake means the poller is gone, which only happens once the net thread ends.
        let _ = self.waker.wake();
    }

    fn notify_core(&self) {
        // Pairs with the fence in `CoreSide::wait_for_requests`: either the core sees the
        // pushed request before it sleeps, or this sees `core_waiting` and notifies.
        fence(Ordering::SeqCst);
        if self.core_waiting.load(Ordering::SeqCst) {
            let _guard = self
                .core_mutex
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            self.core_condvar.notify_one();
        }
    }

    /// Wakes the core even if it did not say it was waiting (it checks `stopped`).
    fn notify_core_always(&self) {
        let _guard = self
            .core_mutex
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        self.core_condvar.notify_all();
    }

    fn wake_net_if_paused(&self) {
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
    shared: Arc<Shared>,
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
    shared: Arc<Shared>,
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
        let guard = self
            .shared
            .core_mutex
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
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

/// The owner's handle of a running server.
pub struct ServerHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<io::Result<()>>>>,
}

impl ServerHandle {
    /// The address the server listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A waker for the journal syncer and the core.
    pub fn waker(&self) -> NetWaker {
        NetWaker {
            shared: Arc::clone(&self.shared),
        }
    }

    /// What the server did so far.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats.snapshot()
    }

    /// Stops accepting and reading, answers requests that had not reached the core with
    /// `shutting_down`, sends every reply that becomes durable within the grace period, closes
    /// every connection and joins the net thread. Later calls return at once.
    ///
    /// # Errors
    ///
    /// The poller's error if the net thread failed.
    pub fn shutdown(&self) -> io::Result<()> {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        let Some(thread) = thread else {
            return Ok(());
        };
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.wake_net();
        match thread.join() {
            Ok(result) => result,
            Err(_) => Err(io::Error::other("the net thread panicked")),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// Binds `config.addr` and starts the net thread.
///
/// `durable` is the journal's durable sequence: a reply with gate `g` is sent once
/// `durable >= g`. Whoever advances it calls [`NetWaker::wake`] afterwards.
///
/// # Errors
///
/// `InvalidInput` if a limit is out of range; the error of binding, polling or spawning.
pub fn start(
    config: &ServerConfig,
    durable: Arc<AtomicU64>,
) -> io::Result<(ServerHandle, CoreSide)> {
    config
        .validate()
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let mut listener = TcpListener::bind(config.addr)?;
    let local_addr = listener.local_addr()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;

    let buffers = ArrayQueue::new(config.body_buffers_count);
    for _ in 0..config.body_buffers_count {
        let pushed = buffers.push(Vec::new());
        assert!(pushed.is_ok(), "the pool has room for every buffer");
    }
    let shared = Arc::new(Shared {
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
    });
    let mut event_loop = EventLoop::new(config.clone(), poll, listener, Arc::clone(&shared));
    let thread = std::thread::Builder::new()
        .name("clearline-net".to_string())
        .spawn(move || {
            let result = event_loop.run();
            event_loop.shared.stopped.store(true, Ordering::Release);
            event_loop.shared.notify_core_always();
            result
        })?;
    let handle = ServerHandle {
        local_addr,
        shared: Arc::clone(&shared),
        thread: Mutex::new(Some(thread)),
    };
    Ok((handle, CoreSide { shared }))
}

struct Slot {
    generation: u32,
    connection: Option<Connection>,
}

struct EventLoop {
    config: ServerConfig,
    poll: Poll,
    listener: Option<TcpListener>,
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    slots_free: Vec<u32>,
    connections_count: usize,
    /// Open connections per peer IP address; an address leaves the map when its count drops to
    /// zero, so the map never holds more than `connections_max` entries (its initial capacity).
    connections_per_address: HashMap<IpAddr, usize>,
    /// Connections whose front reply waits for `durable` or for the socket.
    ready: Vec<u32>,
    /// Connections that stopped reading for a limit.
    paused: Vec<u32>,
    /// A spare file descriptor, released to accept-and-close when the process runs out.
    reserve: Option<std::fs::File>,
    state: LoopState,
    deadline_check_last: Instant,
    shutdown_deadline: Option<Instant>,
}

impl EventLoop {
    fn new(
        config: ServerConfig,
        poll: Poll,
        listener: TcpListener,
        shared: Arc<Shared>,
    ) -> EventLoop {
        let mut slots = Vec::with_capacity(config.connections_max);
        let mut slots_free = Vec::with_capacity(config.connections_max);
        for index in 0..config.connections_max {
            slots.push(Slot {
                generation: 0,
                connection: None,
            });
            slots_free.push((config.connections_max - 1 - index) as u32);
        }
        let now = Instant::now();
        let connections_per_address = HashMap::with_capacity(config.connections_max);
        EventLoop {
            state: LoopState {
                in_flight_total: 0,
                in_flight_total_max: config.requests_at_core_max,
                pushed: false,
                shutting_down: false,
                partial_bodies: 0,
                partial_bodies_max: (config.body_buffers_count / 2).max(1),
                reply_memory: ReplyMemory::new(config.reply_memory_max),
                now,
            },
            ready: Vec::with_capacity(config.connections_max),
            paused: Vec::with_capacity(config.connections_max),
            config,
            poll,
            listener: Some(listener),
            shared,
            slots,
            slots_free,
            connections_count: 0,
            connections_per_address,
            reserve: std::fs::File::open("/dev/null").ok(),
            deadline_check_last: now,
            shutdown_deadline: None,
        }
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
            self.state.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(token) => {
                        let index = (token - CONNECTION_TOKEN_FIRST) as u32;
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(index);
                        }
                        if event.is_writable() || event.is_write_closed() {
                            self.write(index);
                        }
                    }
                }
            }
            self.route_replies();
            self.write_ready();
            self.resume_paused();
            let stats = &self.shared.stats;
            let memory = &self.state.reply_memory;
            stats
                .reply_memory_size
                .store(memory.size() as u64, Ordering::Relaxed);
            stats
                .reply_memory_size_peak
                .store(memory.size_peak() as u64, Ordering::Relaxed);
            if self.state.pushed {
                self.state.pushed = false;
                self.shared.notify_core();
            }
            if !self.state.shutting_down && self.shared.shutdown.load(Ordering::Acquire) {
                self.begin_shutdown();
            }
            if self.state.now.duration_since(self.deadline_check_last) >= self.tick() {
                self.deadline_check_last = self.state.now;
                self.check_deadlines();
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.connections_count == 0 || self.state.now >= deadline {
                    self.close_all();
                    return Ok(());
                }
            }
        }
    }

    /// How often deadlines are checked: a quarter of the shortest, between 1 ms and 250 ms.
    fn tick(&self) -> Duration {
        let shortest = self
            .config
            .partial_frame_timeout
            .min(self.config.reply_stall_timeout)
            .min(self.config.idle_timeout);
        (shortest / 4).clamp(Duration::from_millis(1), Duration::from_millis(250))
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let mut timeout = None;
        if self.connections_count > 0 {
            timeout = Some(self.tick());
        }
        if self.shutdown_deadline.is_some() {
            timeout = Some(self.tick().min(Duration::from_millis(10)));
        }
        if !self.paused.is_empty() {
            // The core wakes this thread when it frees room; this recheck only guards against a
            // wake that raced with the pause.
            timeout = Some(timeout.map_or(CORE_RECHECK_INTERVAL, |t| t.min(CORE_RECHECK_INTERVAL)));
        }
        timeout
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer.ip().to_canonical()),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // EMFILE (24) and ENFILE (23) on Linux: free the spare descriptor, accept and
                // close one connection so the backlog drains, then take the spare back. Without
                // it, the edge-triggered listener would report the same pending connection
                // forever and the loop would spin.
                Err(error) if matches!(error.raw_os_error(), Some(23 | 24)) => {
                    self.reserve = None;
                    if let Ok((stream, _)) = listener.accept() {
                        drop(stream);
                        self.shared
                            .stats
                            .connections_refused
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    self.reserve = std::fs::File::open("/dev/null").ok();
                    if self.reserve.is_none() {
                        return;
                    }
                }
                // Aborted handshakes and similar errors concern one connection; go on.
                Err(_) => {}
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, peer: IpAddr) {
        let from_peer = self
            .connections_per_address
            .get(&peer)
            .copied()
            .unwrap_or(0);
        if from_peer >= self.config.connections_per_address_max {
            // Closed at once (the drop), like a connection over the table's limit.
            self.shared
                .stats
                .connections_refused_address
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(index) = self.slots_free.pop() else {
            // Every slot is taken: close at once (the drop) so the client learns it promptly.
            self.shared
                .stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        let _ = stream.set_nodelay(true);
        let keepalive = TcpKeepalive::new()
            .with_time(KEEPALIVE_TIME)
            .with_interval(KEEPALIVE_INTERVAL);
        // Best effort: a socket without keepalive still has the idle and stall deadlines.
        let _ = SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let token = Token(index as usize + CONNECTION_TOKEN_FIRST);
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut stream, token, interest)
            .is_err()
        {
            self.slots_free.push(index);
            return;
        }
        let slot = &mut self.slots[index as usize];
        assert!(slot.connection.is_none(), "a free slot holds a connection");
        let id = ConnectionId {
            index,
            generation: slot.generation,
        };
        slot.connection = Some(Connection::new(
            stream,
            id,
            peer,
            &self.config,
            self.state.now,
        ));
        self.connections_count += 1;
        *self.connections_per_address.entry(peer).or_insert(0) += 1;
        self.shared
            .stats
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        if self.state.shutting_down {
            self.close(index);
        }
    }

    fn connection(&mut self, index: u32) -> Option<&mut Connection> {
        self.slots.get_mut(index as usize)?.connection.as_mut()
    }

    fn read(&mut self, index: u32) {
        let shared = Arc::clone(&self.shared);
        let Some(connection) = self.slots[index as usize].connection.as_mut() else {
            return;
        };
        if !connection.reading {
            return;
        }
        let outcome = connection.read(&shared, &self.config, &mut self.state);
        self.after_read(index, outcome);
    }

    fn after_read(&mut self, index: u32, outcome: ReadOutcome) {
        match outcome {
            ReadOutcome::Failed => {
                self.close(index);
                return;
            }
            ReadOutcome::Paused(pause) => self.pause(index, pause),
            ReadOutcome::Drained => {}
        }
        // Status replies may have been queued; send them.
        self.write(index);
    }

    fn pause(&mut self, index: u32, pause: Pause) {
        if pause == Pause::Core {
            self.shared
                .stats
                .pauses_core
                .fetch_add(1, Ordering::Relaxed);
            self.shared.reader_paused.store(true, Ordering::SeqCst);
        }
        if pause == Pause::ReplyMemory {
            self.shared
                .stats
                .pauses_reply_memory
                .fetch_add(1, Ordering::Relaxed);
        }
        // Room in the reply budget frees when any connection sends a reply or closes, so such a
        // connection is retried every loop like one waiting for the core.
        let core = matches!(pause, Pause::Core | Pause::ReplyMemory);
        let Some(connection) = self.slots[index as usize].connection.as_mut() else {
            return;
        };
        if connection.reading {
            connection.reading = false;
            let token = Token(index as usize + CONNECTION_TOKEN_FIRST);
            // Only writable interest is left: the socket is not read until room frees, and
            // the client's sends block once the kernel buffers fill.
            let _ =
                self.poll
                    .registry()
                    .reregister(&mut connection.stream, token, Interest::WRITABLE);
        }
        // A connection waiting for the core is retried every loop (and on the core's wake); one
        // waiting for its own client is retried when a write makes progress (see `write`).
        if core && !connection.listed_paused {
            connection.listed_paused = true;
            self.paused.push(index);
        }
    }

    fn resume_paused(&mut self) {
        let paused = std::mem::take(&mut self.paused);
        let shared = Arc::clone(&self.shared);
        for index in &paused {
            let Some(connection) = self.slots[*index as usize].connection.as_mut() else {
                continue;
            };
            connection.listed_paused = false;
            let held_body_buffer = connection.holds_body_buffer();
            let outcome = connection.read(&shared, &self.config, &mut self.state);
            if !matches!(outcome, ReadOutcome::Paused(_)) {
                // Time spent paused by the server does not count against the client, unless it
                // held a body buffer all along.
                if let (Some(since), false) = (connection.partial_since.as_mut(), held_body_buffer)
                {
                    *since = self.state.now;
                }
                if !connection.reading {
                    connection.reading = true;
                    let token = Token(*index as usize + CONNECTION_TOKEN_FIRST);
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    let _ =
                        self.poll
                            .registry()
                            .reregister(&mut connection.stream, token, interest);
                }
            }
            self.after_read(*index, outcome);
        }
        let mut paused = paused;
        paused.clear();
        if self.paused.is_empty() {
            self.paused = paused;
        }
    }

    fn route_replies(&mut self) {
        while let Some(reply) = self.shared.replies.pop() {
            assert!(self.state.in_flight_total > 0, "a reply to no request");
            self.state.in_flight_total -= 1;
            let id = reply.connection;
            let live = self
                .slots
                .get(id.index as usize)
                .is_some_and(|slot| slot.generation == id.generation && slot.connection.is_some());
            if !live {
                self.shared
                    .stats
                    .replies_dropped
                    .fetch_add(1, Ordering::Relaxed);
                self.state
                    .reply_memory
                    .release(reply.reply_reserved, reply.body);
                continue;
            }
            let Some(connection) = self.slots[id.index as usize].connection.as_mut() else {
                unreachable!("checked live above");
            };
            connection.on_reply(reply, &self.shared, &mut self.state.reply_memory);
            if !connection.listed_ready {
                connection.listed_ready = true;
                self.ready.push(id.index);
            }
        }
    }

    fn write(&mut self, index: u32) {
        let durable = self.shared.durable.load(Ordering::Acquire);
        let now = self.state.now;
        let Some(connection) = self.slots[index as usize].connection.as_mut() else {
            return;
        };
        let pending_before = connection.output_pending_size();
        match connection.write(&mut self.state.reply_memory, durable, now) {
            WriteOutcome::Failed => {
                self.close(index);
                return;
            }
            // The socket is full: an edge-triggered writable event comes when it drains.
            WriteOutcome::Blocked => {}
            // What is left waits for the core or for `durable`; the core's and the syncer's
            // wakes bring the loop back to the ready list.
            WriteOutcome::Idle => {
                if connection.has_ready_front() && !connection.listed_ready {
                    connection.listed_ready = true;
                    self.ready.push(index);
                }
            }
        }
        let progress = connection.output_pending_size() < pending_before;
        if self.state.shutting_down && connection.is_idle() {
            connection.closing = true;
        }
        if connection.finished() {
            self.close(index);
        } else if progress
            && !connection.reading
            && !connection.listed_paused
            && !connection.closing
        {
            // Writing freed in-flight or output room the connection may be waiting for.
            connection.listed_paused = true;
            self.paused.push(index);
        }
    }

    fn write_ready(&mut self) {
        let ready = std::mem::take(&mut self.ready);
        for index in &ready {
            if let Some(connection) = self.connection(*index) {
                connection.listed_ready = false;
                self.write(*index);
            }
        }
        let mut ready = ready;
        ready.clear();
        if self.ready.is_empty() {
            self.ready = ready;
        }
    }

    fn check_deadlines(&mut self) {
        let now = self.state.now;
        for index in 0..self.slots.len() as u32 {
            let Some(connection) = self.slots[index as usize].connection.as_ref() else {
                continue;
            };
            // A connection that holds a pooled body buffer is never exempt, even while paused.
            let partial_expired = (connection.reading || connection.holds_body_buffer())
                && !connection.closing
                && connection.partial_since.is_some_and(|since| {
                    now.duration_since(since) > self.config.partial_frame_timeout
                });
            let stall_expired = connection
                .stalled_since
                .is_some_and(|since| now.duration_since(since) > self.config.reply_stall_timeout);
            // Idle: nothing owed to the client, nothing held for it, no frame begun. A
            // connection with requests in flight or replies unsent is never idle, however long
            // the journal or the client takes.
            let idle_expired = connection.is_idle()
                && connection.partial_since.is_none()
                && !connection.closing
                && now.duration_since(connection.active_last) > self.config.idle_timeout;
            if partial_expired {
                self.shared
                    .stats
                    .connections_closed_partial_frame
                    .fetch_add(1, Ordering::Relaxed);
                self.close(index);
            } else if stall_expired {
                self.shared
                    .stats
                    .connections_closed_reply_stall
                    .fetch_add(1, Ordering::Relaxed);
                self.close(index);
            } else if idle_expired {
                self.shared
                    .stats
                    .connections_closed_idle
                    .fetch_add(1, Ordering::Relaxed);
                self.close(index);
            }
        }
    }

    fn begin_shutdown(&mut self) {
        self.state.shutting_down = true;
        self.shutdown_deadline = Some(self.state.now + self.config.shutdown_grace);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let shared = Arc::clone(&self.shared);
        for index in 0..self.slots.len() as u32 {
            let Some(connection) = self.slots[index as usize].connection.as_mut() else {
                continue;
            };
            connection.begin_shutdown(&shared, &self.config, &mut self.state);
            self.write(index);
        }
    }

    fn close(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        let Some(mut connection) = slot.connection.take() else {
            return;
        };
        slot.generation = slot.generation.wrapping_add(1);
        let _ = self.poll.registry().deregister(&mut connection.stream);
        let peer = connection.peer;
        connection.release(&self.shared, &mut self.state);
        self.slots_free.push(index);
        self.connections_count -= 1;
        let from_peer = self
            .connections_per_address
            .get_mut(&peer)
            .expect("an open connection's address is counted");
        *from_peer -= 1;
        if *from_peer == 0 {
            self.connections_per_address.remove(&peer);
        }
        self.shared
            .stats
            .connections_closed
            .fetch_add(1, Ordering::Relaxed);
        // Stale indexes in `ready` and `paused` are skipped: the slot is empty or its new
        // connection's flags are false, and a spurious visit only tries a read or a write.
    }

    fn close_all(&mut self) {
        for index in 0..self.slots.len() as u32 {
            self.close(index);
        }
    }
}

/// Sends a reply for `request` with `status` and an empty body: a convenience for cores that
/// refuse a request (for example `storage_full`).
pub fn status_reply(request: &Request, status: FrameStatus) -> Reply {
    Reply {
        status,
        ..Reply::to(request)
    }
}
