//! The TigerBeetle gateway: a mio loop on its own thread that serves TigerBeetle clients on
//! their own port and executes their requests through the core, like our own server does.
//!
//! Path of a request: the connection frames it (header checksum, size, cluster and reserved
//! fields at once, the body checksum once it is in; any failure closes the connection), the
//! session table decides (execute, resend the stored reply, drop, or evict), the body is split
//! into its batches, and each non-empty batch becomes one core [`Request`] pushed through the
//! [`Injector`] into the same bounded queue as our protocol's requests. The core applies it
//! (journal append first) and hands the [`Reply`] back through [`CoreLink`]. Once every batch
//! is answered and the journal is durable up to the highest gate, the gateway writes one reply
//! with the batches' results in batch order and stores it in the session for repeats.
//!
//! Invariants:
//! - No reply leaves before `durable` covers every batch's gate (the same rule as our server).
//! - Nothing grows without bound: connections, pending requests (one per session), batches
//!   with the core (the capacity of the [`CoreLink`] queue, so the core can always push),
//!   unparsed input (one message) and unsent output per connection all have a limit in
//!   [`GatewayConfig`]; a connection at a limit stops being read.
//! - A request that is still executing never blocks the connection: its repeats are dropped
//!   and other clients' requests go on.
//! - Client bytes never cause a panic; assertions check the core's side only.
//!
//! Sessions live in memory; see [`crate::tigerbeetle::session`] for how a client resumes
//! after a restart.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clearline_engine::Operation;
use crossbeam_queue::ArrayQueue;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Poll, Waker};

use crate::channel::{ConnectionId, Injector, Reply, Request};
use crate::frame::{FrameStatus, Header};
use crate::loop_thread::{
    listen, loop_handle_impls, poll_events, register_connection, LoopThread, Source,
};
use crate::tigerbeetle::header::{
    self, check_frame, eviction, pong, EvictionReason, Frame, HeaderError, PingHeader, ReplyHeader,
    RequestHeader, BODY_SIZE_MAX, HEADER_SIZE, MESSAGE_SIZE_MAX, RELEASE,
};
use crate::tigerbeetle::multi_batch::{encode_trailer, Batches};
use crate::tigerbeetle::session::{Decision, SessionTable};

/// Events (and results) per request for creates and lookups, and results per query reply:
/// what fits TigerBeetle's largest body with one batch.
pub const EVENTS_MAX: usize = 8_189;
/// The registration request's body size.
const REGISTER_REQUEST_SIZE: usize = 256;
/// The registration reply's body size.
const REGISTER_REPLY_SIZE: usize = 64;
/// How often the loop retries pushing batches while the core's queue is full.
const CORE_RETRY_INTERVAL: Duration = Duration::from_millis(1);
/// Bytes read from a socket per call.
const READ_CHUNK_SIZE: usize = 64 * 1024;

/// The gateway's limits, each with a named default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The address to listen on.
    pub addr: SocketAddr,
    /// The cluster id clients must use.
    pub cluster: u128,
    /// The most open connections; more are accepted and closed at once.
    pub connections_max: usize,
    /// The most client sessions; a registration into a full table evicts the least recently
    /// used idle session. Each session keeps its last reply (up to 1 MiB).
    pub sessions_max: usize,
    /// Requests executing per connection before the connection stops being read.
    pub requests_in_flight_max: usize,
    /// Batches with the core at once over all clients.
    pub batches_at_core_max: usize,
    /// Unsent reply bytes per connection above which it stops being read.
    pub output_size_max: usize,
    /// A message must arrive in full within this time of its first byte.
    pub partial_message_timeout: Duration,
    /// A connection that sends nothing for this long is closed (clients ping every 30 s).
    pub idle_timeout: Duration,
    /// How long shutdown waits for executing requests to be answered.
    pub shutdown_grace: Duration,
}

impl GatewayConfig {
    /// Default of [`GatewayConfig::connections_max`].
    pub const CONNECTIONS_MAX: usize = 256;
    /// Default of [`GatewayConfig::sessions_max`] (TigerBeetle's own `clients_max`).
    pub const SESSIONS_MAX: usize = 64;
    /// Default of [`GatewayConfig::requests_in_flight_max`].
    pub const REQUESTS_IN_FLIGHT_MAX: usize = 8;
    /// Default of [`GatewayConfig::batches_at_core_max`].
    pub const BATCHES_AT_CORE_MAX: usize = 1_024;
    /// Default of [`GatewayConfig::output_size_max`].
    pub const OUTPUT_SIZE_MAX: usize = 4 * MESSAGE_SIZE_MAX;
    /// Default of [`GatewayConfig::partial_message_timeout`].
    pub const PARTIAL_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default of [`GatewayConfig::idle_timeout`].
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
    /// Default of [`GatewayConfig::shutdown_grace`].
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

    /// The defaults, listening on `addr` for cluster `cluster`.
    pub fn new(addr: SocketAddr, cluster: u128) -> GatewayConfig {
        GatewayConfig {
            addr,
            cluster,
            connections_max: GatewayConfig::CONNECTIONS_MAX,
            sessions_max: GatewayConfig::SESSIONS_MAX,
            requests_in_flight_max: GatewayConfig::REQUESTS_IN_FLIGHT_MAX,
            batches_at_core_max: GatewayConfig::BATCHES_AT_CORE_MAX,
            output_size_max: GatewayConfig::OUTPUT_SIZE_MAX,
            partial_message_timeout: GatewayConfig::PARTIAL_MESSAGE_TIMEOUT,
            idle_timeout: GatewayConfig::IDLE_TIMEOUT,
            shutdown_grace: GatewayConfig::SHUTDOWN_GRACE,
        }
    }

    /// Checks that the limits can work together.
    ///
    /// # Errors
    ///
    /// The name of the first limit out of range.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.connections_max == 0 || self.connections_max > u32::MAX as usize / 2 {
            return Err("connections_max");
        }
        if self.sessions_max == 0 || self.sessions_max > 1 << 20 {
            return Err("sessions_max");
        }
        if self.requests_in_flight_max == 0 {
            return Err("requests_in_flight_max");
        }
        if self.batches_at_core_max == 0 || self.batches_at_core_max > 1 << 20 {
            return Err("batches_at_core_max");
        }
        if self.output_size_max < MESSAGE_SIZE_MAX {
            return Err("output_size_max");
        }
        if self.partial_message_timeout.is_zero() {
            return Err("partial_message_timeout");
        }
        if self.idle_timeout.is_zero() {
            return Err("idle_timeout");
        }
        Ok(())
    }
}

/// Counters of what the gateway did, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Connections accepted into a slot.
    pub connections_accepted: u64,
    /// Requests executed (registrations excluded).
    pub requests: u64,
    /// Of those, requests that carried more than one batch.
    pub requests_multi_batch: u64,
    /// Stored replies sent again for a repeated request.
    pub replies_resent: u64,
    /// Pongs sent.
    pub pongs: u64,
    /// Evictions sent.
    pub evictions: u64,
}

#[derive(Default)]
struct StatsCounters {
    connections_accepted: AtomicU64,
    requests: AtomicU64,
    requests_multi_batch: AtomicU64,
    replies_resent: AtomicU64,
    pongs: AtomicU64,
    evictions: AtomicU64,
}

impl StatsCounters {
    fn snapshot(&self) -> GatewayStats {
        GatewayStats {
            connections_accepted: self.connections_accepted.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            requests_multi_batch: self.requests_multi_batch.load(Ordering::Relaxed),
            replies_resent: self.replies_resent.load(Ordering::Relaxed),
            pongs: self.pongs.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The core's way back to the gateway: a reply queue as large as the gateway's limit on
/// batches with the core, so a push never fails, and a waker.
pub struct CoreLink {
    replies: ArrayQueue<Reply>,
    waker: Waker,
}

impl CoreLink {
    /// Queues the reply to a request whose connection is external; call [`CoreLink::wake`]
    /// after a batch of them.
    ///
    /// # Errors
    ///
    /// Gives the reply back if the queue is full, which happens only if the core pushes
    /// replies to requests the gateway never sent.
    pub fn push_reply(&self, reply: Reply) -> Result<(), Reply> {
        self.replies.push(reply)
    }

    /// Wakes the gateway: after replies were pushed, and after `durable` advanced.
    pub fn wake(&self) {
        let _ = self.waker.wake();
    }
}

impl std::fmt::Debug for CoreLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CoreLink")
    }
}

/// The owner's handle of a running gateway.
pub struct GatewayHandle {
    local_addr: SocketAddr,
    stats: Arc<StatsCounters>,
    link: Arc<CoreLink>,
    shutdown: Arc<AtomicBool>,
    thread: LoopThread,
}

impl GatewayHandle {
    /// The address the gateway listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What the gateway did so far.
    pub fn stats(&self) -> GatewayStats {
        self.stats.snapshot()
    }

    /// The core's way back (also the waker for `durable`).
    pub fn link(&self) -> Arc<CoreLink> {
        Arc::clone(&self.link)
    }

    /// Stops accepting and reading, answers what is executing within the grace period,
    /// closes every connection and joins the thread. Later calls return at once.
    ///
    /// # Errors
    ///
    /// The poller's error if the thread failed.
    pub fn shutdown(&self) -> io::Result<()> {
        self.thread.stop(|| {
            self.shutdown.store(true, Ordering::Release);
            self.link.wake();
        })
    }
}

loop_handle_impls!(GatewayHandle);

/// Binds `config.addr` and starts the gateway thread. Requests go to the core through
/// `injector`; replies are sent once `durable` covers them. The core must push every reply to
/// an external request into [`GatewayHandle::link`] and wake it; whoever advances `durable`
/// wakes it too.
///
/// # Errors
///
/// `InvalidInput` if a limit is out of range; the error of binding, polling or spawning.
pub fn start(
    config: &GatewayConfig,
    injector: Injector,
    durable: Arc<AtomicU64>,
) -> io::Result<GatewayHandle> {
    config.validate().map_err(|name| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("tigerbeetle limit {name} is out of range"),
        )
    })?;
    let listening = listen(config.addr)?;
    let link = Arc::new(CoreLink {
        replies: ArrayQueue::new(config.batches_at_core_max),
        waker: listening.waker,
    });
    let shutdown = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(StatsCounters::default());
    let mut gateway = Gateway::new(
        Arc::clone(&stats),
        config.clone(),
        listening.poll,
        listening.listener,
        injector,
        durable,
        Arc::clone(&link),
        Arc::clone(&shutdown),
    );
    let thread = LoopThread::spawn("clearline-tigerbeetle", "gateway", move || gateway.run())?;
    Ok(GatewayHandle {
        local_addr: listening.local_addr,
        stats,
        link,
        shutdown,
        thread,
    })
}

/// The engine operation and sizes of a TigerBeetle operation number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct OperationKind {
    operation: Operation,
    /// One filter per batch; results capped per reply.
    query: bool,
}

fn operation_kind(number: u8) -> Option<OperationKind> {
    let (operation, query) = match number {
        140 => (Operation::LookupAccounts, false),
        141 => (Operation::LookupTransfers, false),
        142 => (Operation::GetAccountTransfers, true),
        143 => (Operation::GetAccountBalances, true),
        144 => (Operation::QueryAccounts, true),
        145 => (Operation::QueryTransfers, true),
        146 => (Operation::CreateAccounts, false),
        147 => (Operation::CreateTransfers, false),
        _ => return None,
    };
    Some(OperationKind { operation, query })
}

/// Where a query filter keeps its `limit` (u32).
fn limit_offset(operation: Operation) -> usize {
    match operation {
        Operation::GetAccountTransfers | Operation::GetAccountBalances => 120,
        _ => 56,
    }
}

fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

struct Connection {
    stream: TcpStream,
    id: (u32, u32),
    /// Unparsed input: at most one message plus one read chunk.
    input: Vec<u8>,
    /// The checked frame of the message at the front of `input`, once its header is in.
    frame: Option<Frame>,
    output: Vec<u8>,
    output_sent: usize,
    reading: bool,
    /// Requests from this connection that are executing.
    in_flight: usize,
    partial_since: Option<Instant>,
    active_last: Instant,
}

/// One client request being executed.
struct Pending {
    header: RequestHeader,
    connection: (u32, u32),
    kind: OperationKind,
    /// The request body (events and trailer).
    body: Vec<u8>,
    batch_count: usize,
    /// The next batch to submit and the payload offset where it starts.
    batch_next: usize,
    offset_next: usize,
    /// Batches with the core.
    outstanding: usize,
    /// Results per batch, in batch order.
    counts: Vec<u16>,
    /// The reply body: results in batch order, then the trailer.
    reply: Vec<u8>,
    results_total: usize,
    gate: u64,
    timestamp: u64,
    /// A batch was refused (the journal is full): no reply, the client retries.
    refused: bool,
}

struct Gateway {
    stats: Arc<StatsCounters>,
    config: GatewayConfig,
    poll: Poll,
    listener: Option<TcpListener>,
    injector: Injector,
    durable: Arc<AtomicU64>,
    link: Arc<CoreLink>,
    shutdown: Arc<AtomicBool>,
    connections: Vec<Option<Connection>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    sessions: SessionTable,
    pending: Vec<Option<Pending>>,
    pending_free: Vec<u32>,
    /// Pending requests with batches left to submit, in arrival order.
    submit_queue: VecDeque<u32>,
    /// Pending requests whose batches are all answered, waiting for `durable`.
    completed: Vec<u32>,
    batches_at_core: usize,
    /// Buffers for batch bodies and reply bodies.
    buffers: Vec<Vec<u8>>,
    op_last: u64,
    timestamp_last: u64,
    read_chunk: Vec<u8>,
    now: Instant,
    shutdown_deadline: Option<Instant>,
}

impl Gateway {
    #[allow(clippy::too_many_arguments)] // Each is a separate part of the wiring.
    fn new(
        stats: Arc<StatsCounters>,
        config: GatewayConfig,
        poll: Poll,
        listener: TcpListener,
        injector: Injector,
        durable: Arc<AtomicU64>,
        link: Arc<CoreLink>,
        shutdown: Arc<AtomicBool>,
    ) -> Gateway {
        // Op numbers (and so session numbers) start at the wall clock in nanoseconds: above
        // every number an earlier run of the server gave out, which is how a session from an
        // earlier run is recognized and resumed.
        let op_first = wall_clock_ns().max(1);
        let mut connections = Vec::with_capacity(config.connections_max);
        connections.resize_with(config.connections_max, || None);
        let free = (0..config.connections_max as u32).rev().collect();
        let mut pending = Vec::with_capacity(config.sessions_max);
        pending.resize_with(config.sessions_max, || None);
        let pending_free = (0..config.sessions_max as u32).rev().collect();
        Gateway {
            stats,
            sessions: SessionTable::new(config.sessions_max, op_first),
            generations: vec![0; config.connections_max],
            submit_queue: VecDeque::with_capacity(config.sessions_max),
            completed: Vec::with_capacity(config.sessions_max),
            buffers: Vec::with_capacity(config.batches_at_core_max),
            config,
            poll,
            listener: Some(listener),
            injector,
            durable,
            link,
            shutdown,
            connections,
            free,
            pending,
            pending_free,
            batches_at_core: 0,
            op_last: op_first - 1,
            timestamp_last: 0,
            read_chunk: vec![0u8; READ_CHUNK_SIZE],
            now: Instant::now(),
            shutdown_deadline: None,
        }
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut deadline_check_last = Instant::now();
        loop {
            let timeout = if self.submit_queue.is_empty() {
                Duration::from_millis(100)
            } else {
                CORE_RETRY_INTERVAL
            };
            poll_events(&mut self.poll, &mut events, Some(timeout))?;
            self.now = Instant::now();
            for event in events.iter() {
                match Source::of(event.token()) {
                    Source::Listener => self.accept(),
                    Source::Waker => {}
                    Source::Connection(index) => {
                        if event.is_writable() || event.is_write_closed() {
                            self.flush(index);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(index);
                        }
                    }
                }
            }
            self.route_replies();
            self.submit();
            self.complete();
            self.resume_reading();
            if self.now.duration_since(deadline_check_last) >= Duration::from_millis(100) {
                deadline_check_last = self.now;
                self.check_deadlines();
            }
            if self.shutdown_deadline.is_none() && self.shutdown.load(Ordering::Acquire) {
                self.shutdown_deadline = Some(self.now + self.config.shutdown_grace);
                if let Some(mut listener) = self.listener.take() {
                    let _ = self.poll.registry().deregister(&mut listener);
                }
                for index in 0..self.connections.len() {
                    if let Some(connection) = self.connections[index].as_mut() {
                        connection.reading = false;
                    }
                }
            }
            if let Some(deadline) = self.shutdown_deadline {
                let idle = self.batches_at_core == 0 && self.completed.is_empty();
                if idle || self.now >= deadline {
                    // Requests still with the core are answered by the core and dropped here:
                    // their clients retry against the next run.
                    for index in 0..self.connections.len() as u32 {
                        self.flush(index);
                        self.close(index);
                    }
                    return Ok(());
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let Some(index) = self.free.pop() else {
                        continue; // Every slot is taken: the drop closes it.
                    };
                    if register_connection(&self.poll, &mut stream, index).is_err() {
                        self.free.push(index);
                        continue;
                    }
                    bump(&self.stats.connections_accepted);
                    self.connections[index as usize] = Some(Connection {
                        stream,
                        id: (index, self.generations[index as usize]),
                        input: Vec::new(),
                        frame: None,
                        output: Vec::new(),
                        output_sent: 0,
                        reading: true,
                        in_flight: 0,
                        partial_since: None,
                        active_last: self.now,
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // Out of descriptors or an aborted handshake: try again on the next event.
                Err(_) => return,
            }
        }
    }

    fn close(&mut self, index: u32) {
        let Some(slot) = self.connections.get_mut(index as usize) else {
            return;
        };
        let Some(mut connection) = slot.take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut connection.stream);
        self.generations[index as usize] = self.generations[index as usize].wrapping_add(1);
        self.free.push(index);
    }

    fn connection_mut(&mut self, id: (u32, u32)) -> Option<&mut Connection> {
        let connection = self.connections.get_mut(id.0 as usize)?.as_mut()?;
        (connection.id == id).then_some(connection)
    }

    /// Whether the connection may read more: under its in-flight and output limits.
    fn may_read(&self, connection: &Connection) -> bool {
        self.shutdown_deadline.is_none()
            && connection.in_flight < self.config.requests_in_flight_max
            && connection.output.len() - connection.output_sent < self.config.output_size_max
    }

    /// Reads until the socket would block or a limit is reached, handling every whole
    /// message.
    fn read(&mut self, index: u32) {
        loop {
            // Handle what is buffered before reading more, so input stays within one message.
            if self.handle_input(index).is_err() {
                self.close(index);
                return;
            }
            let Some(connection_ref) = self.connections[index as usize].as_ref() else {
                return;
            };
            if !self.may_read(connection_ref) {
                if let Some(connection) = self.connections[index as usize].as_mut() {
                    connection.reading = false;
                }
                self.flush(index);
                return;
            }
            let Some(connection) = self.connections[index as usize].as_mut() else {
                return;
            };
            connection.reading = true;
            let wanted = match connection.frame {
                Some(frame) => (frame.size as usize).saturating_sub(connection.input.len()),
                None => HEADER_SIZE.saturating_sub(connection.input.len()),
            }
            .clamp(1, READ_CHUNK_SIZE);
            match connection.stream.read(&mut self.read_chunk[..wanted]) {
                Ok(0) => {
                    self.close(index);
                    return;
                }
                Ok(size) => {
                    connection.input.extend_from_slice(&self.read_chunk[..size]);
                    connection.active_last = self.now;
                    if connection.partial_since.is_none() {
                        connection.partial_since = Some(self.now);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.flush(index);
                    return;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(index);
                    return;
                }
            }
        }
    }

    /// Handles every whole message in the connection's input. An error closes the connection.
    fn handle_input(&mut self, index: u32) -> Result<(), ()> {
        loop {
            let Some(connection) = self.connections[index as usize].as_mut() else {
                return Ok(());
            };
            if connection.frame.is_none() {
                if connection.input.len() < HEADER_SIZE {
                    return Ok(());
                }
                let mut bytes = [0u8; HEADER_SIZE];
                bytes.copy_from_slice(&connection.input[..HEADER_SIZE]);
                connection.frame = Some(check_frame(&bytes, self.config.cluster).map_err(|_| ())?);
            }
            let Some(frame) = connection.frame else {
                return Ok(());
            };
            let size = frame.size as usize;
            if connection.input.len() < size {
                return Ok(());
            }
            let mut message = std::mem::take(&mut connection.input);
            let rest = message.split_off(size);
            connection.input = rest;
            connection.frame = None;
            connection.partial_since = (!connection.input.is_empty()).then_some(self.now);
            let id = connection.id;
            let result = self.handle_message(id, frame, &message);
            self.recycle(message);
            result?;
        }
    }

    fn handle_message(&mut self, id: (u32, u32), frame: Frame, message: &[u8]) -> Result<(), ()> {
        let mut bytes = [0u8; HEADER_SIZE];
        bytes.copy_from_slice(&message[..HEADER_SIZE]);
        let body = &message[HEADER_SIZE..];
        if !frame.check_body(body) {
            return Err(());
        }
        match frame.command {
            header::Command::PingClient => {
                let ping = PingHeader::decode(&bytes, frame).map_err(|_| ())?;
                if ping.session != 0 && self.sessions.ping_evicts(ping.client, ping.session) {
                    self.evict(id, ping.client, EvictionReason::NoSession);
                } else {
                    bump(&self.stats.pongs);
                    let reply = pong(self.config.cluster, RELEASE, ping.ping_timestamp_monotonic);
                    self.send(id, &reply);
                }
                Ok(())
            }
            header::Command::Request => {
                let request = RequestHeader::decode(&bytes, frame).map_err(|_: HeaderError| ())?;
                self.handle_request(id, &request, body);
                Ok(())
            }
            _ => Err(()),
        }
    }

    fn evict(&mut self, id: (u32, u32), client: u128, reason: EvictionReason) {
        bump(&self.stats.evictions);
        let bytes = eviction(self.config.cluster, RELEASE, client, reason);
        self.send(id, &bytes);
    }

    fn handle_request(&mut self, id: (u32, u32), request: &RequestHeader, body: &[u8]) {
        match self.sessions.decide(request, id) {
            Decision::Drop => {}
            Decision::Evict(reason) => self.evict(id, request.client, reason),
            Decision::Resend => {
                let Some(session) = self.sessions.get_mut(request.client) else {
                    return;
                };
                let reply = std::mem::take(&mut session.reply);
                bump(&self.stats.replies_resent);
                self.send(id, &reply);
                if let Some(session) = self.sessions.get_mut(request.client) {
                    session.reply = reply;
                }
            }
            Decision::Register => self.register(id, request, body),
            Decision::Execute => {
                if let Err(reason) = self.execute(id, request, body) {
                    self.sessions.abandon(request.client);
                    self.evict(id, request.client, reason);
                }
            }
        }
    }

    fn register(&mut self, id: (u32, u32), request: &RequestHeader, body: &[u8]) {
        // The body announces the client's own batch size limit (0 from current clients).
        let valid = body.is_empty()
            || (body.len() == REGISTER_REQUEST_SIZE
                && body[4..].iter().all(|byte| *byte == 0)
                && u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize
                    <= BODY_SIZE_MAX);
        if !valid {
            self.evict(id, request.client, EvictionReason::InvalidRequestBody);
            return;
        }
        let mut reply_body = [0u8; REGISTER_REPLY_SIZE];
        reply_body[..4].copy_from_slice(&(BODY_SIZE_MAX as u32).to_le_bytes());
        let op = self.next_op();
        let (header, context) = ReplyHeader {
            cluster: self.config.cluster,
            view: 0,
            release: request.frame.release,
            request_checksum: request.frame.checksum,
            client: request.client,
            op,
            timestamp: self.next_timestamp(0),
            request: 0,
            operation: request.operation,
        }
        .encode(&reply_body);
        let mut message = self.buffer();
        message.extend_from_slice(&header);
        message.extend_from_slice(&reply_body);
        self.send(id, &message);
        self.sessions.register(request, id, op, message, context);
    }

    fn next_op(&mut self) -> u64 {
        self.op_last += 1;
        self.op_last
    }

    /// A reply timestamp: not 0, above the last one, at least every batch's timestamp.
    fn next_timestamp(&mut self, at_least: u64) -> u64 {
        let timestamp = (self.timestamp_last + 1).max(at_least).max(wall_clock_ns());
        self.timestamp_last = timestamp;
        timestamp
    }

    /// Checks the body and queues its batches. Returns the eviction reason for a bad body.
    fn execute(
        &mut self,
        id: (u32, u32),
        request: &RequestHeader,
        body: &[u8],
    ) -> Result<(), EvictionReason> {
        let kind =
            operation_kind(request.operation).ok_or(EvictionReason::InvalidRequestOperation)?;
        let event_size = kind.operation.event_size();
        let batches =
            Batches::decode(body, event_size).map_err(|_| EvictionReason::InvalidRequestBody)?;
        if kind.query {
            if (0..batches.batch_count()).any(|index| batches.count(index) != 1) {
                return Err(EvictionReason::InvalidRequestBody);
            }
        } else if batches.element_count() > EVENTS_MAX {
            return Err(EvictionReason::InvalidRequestBody);
        }
        let batch_count = batches.batch_count();
        bump(&self.stats.requests);
        if batch_count > 1 {
            bump(&self.stats.requests_multi_batch);
        }
        let Some(slot) = self.pending_free.pop() else {
            // Cannot happen: one pending request per session and a slot per session.
            return Err(EvictionReason::NoSession);
        };
        let mut stored = self.buffer();
        stored.extend_from_slice(body);
        let counts = vec![0; batch_count];
        self.pending[slot as usize] = Some(Pending {
            header: *request,
            connection: id,
            kind,
            body: stored,
            batch_count,
            batch_next: 0,
            offset_next: 0,
            outstanding: 0,
            counts,
            reply: self.buffer(),
            results_total: 0,
            gate: 0,
            timestamp: 0,
            refused: false,
        });
        if let Some(connection) = self.connection_mut(id) {
            connection.in_flight += 1;
        }
        self.submit_queue.push_back(slot);
        Ok(())
    }

    /// Pushes batches to the core in arrival order while the core has room.
    fn submit(&mut self) {
        while let Some(&slot) = self.submit_queue.front() {
            let Some(pending) = self.pending[slot as usize].as_mut() else {
                self.submit_queue.pop_front();
                continue;
            };
            let event_size = pending.kind.operation.event_size();
            let Ok(batches) = Batches::decode(&pending.body, event_size) else {
                unreachable!("the body was checked before it was queued");
            };
            while pending.batch_next < pending.batch_count {
                let count = batches.count(pending.batch_next);
                if count == 0 {
                    pending.batch_next += 1;
                    continue;
                }
                if self.batches_at_core >= self.config.batches_at_core_max {
                    return;
                }
                let size = count as usize * event_size;
                let mut events = self.buffers.pop().unwrap_or_default();
                events.clear();
                events.extend_from_slice(&pending.body[pending.offset_next..][..size]);
                if pending.kind.query {
                    // At most one reply's worth of results per filter.
                    let offset = limit_offset(pending.kind.operation);
                    let limit = u32::from_le_bytes([
                        events[offset],
                        events[offset + 1],
                        events[offset + 2],
                        events[offset + 3],
                    ]);
                    let capped = limit.min(EVENTS_MAX as u32);
                    events[offset..offset + 4].copy_from_slice(&capped.to_le_bytes());
                }
                let mut header = Header::zeroed();
                header.operation = pending.kind.operation as u8;
                header.request_id = u64::from(slot) << 32 | pending.batch_next as u64;
                header.count = count;
                header.body_size = size as u32;
                let core_request = Request {
                    connection: ConnectionId::external(0),
                    header,
                    operation: pending.kind.operation,
                    body: events,
                    // The gateway bounds its own reply memory (batches at the core, buffers
                    // reused); the core writes this request's results into `body`.
                    reply_body: Vec::new(),
                    reply_reserved: 0,
                };
                match self.injector.push(core_request) {
                    Ok(()) => {
                        pending.batch_next += 1;
                        pending.offset_next += size;
                        pending.outstanding += 1;
                        self.batches_at_core += 1;
                    }
                    Err(returned) => {
                        // The core's queue is full: retry on the next turn of the loop.
                        self.buffers.push(returned.body);
                        return;
                    }
                }
            }
            self.submit_queue.pop_front();
            if pending.outstanding == 0 {
                self.completed.push(slot);
            }
        }
    }

    fn route_replies(&mut self) {
        while let Some(reply) = self.link.replies.pop() {
            assert!(self.batches_at_core > 0, "a reply to no batch");
            self.batches_at_core -= 1;
            let slot = (reply.request_id >> 32) as usize;
            let batch = (reply.request_id & u64::from(u32::MAX)) as usize;
            let pending = self.pending.get_mut(slot).and_then(Option::as_mut);
            let Some(pending) = pending else {
                panic!("a reply for no pending request");
            };
            assert!(pending.outstanding > 0, "a reply for no outstanding batch");
            pending.outstanding -= 1;
            if reply.status == FrameStatus::Ok {
                let item_size = pending.kind.operation.reply_item_size();
                let mut results = reply.body.len() / item_size;
                if pending.kind.query {
                    results = results.min(EVENTS_MAX - pending.results_total);
                }
                pending
                    .reply
                    .extend_from_slice(&reply.body[..results * item_size]);
                pending.results_total += results;
                pending.counts[batch] = results as u16;
                pending.gate = pending.gate.max(reply.gate);
                pending.timestamp = pending.timestamp.max(reply.timestamp);
            } else {
                pending.refused = true;
            }
            let done = pending.outstanding == 0 && pending.batch_next == pending.batch_count;
            self.recycle(reply.body);
            if done {
                self.completed.push(slot as u32);
            }
        }
    }

    /// Sends the replies whose batches are all durable.
    fn complete(&mut self) {
        let durable = self.durable.load(Ordering::Acquire);
        let mut index = 0;
        while index < self.completed.len() {
            let slot = self.completed[index];
            let Some(pending) = self.pending[slot as usize].as_ref() else {
                self.completed.swap_remove(index);
                continue;
            };
            if pending.gate > durable {
                index += 1;
                continue;
            }
            self.completed.swap_remove(index);
            if let Some(pending) = self.pending[slot as usize].take() {
                self.pending_free.push(slot);
                self.reply(pending);
            }
        }
    }

    fn reply(&mut self, mut pending: Pending) {
        let client = pending.header.client;
        if let Some(connection) = self.connection_mut(pending.connection) {
            connection.in_flight = connection.in_flight.saturating_sub(1);
        }
        self.recycle(std::mem::take(&mut pending.body));
        if pending.refused {
            // Nothing to answer with: the client repeats the request on its timer and it runs
            // again (creates are idempotent by id).
            self.sessions.abandon(client);
            self.recycle(pending.reply);
            return;
        }
        let result_size = pending.kind.operation.reply_item_size();
        encode_trailer(&mut pending.reply, &pending.counts, result_size);
        let op = self.next_op();
        let timestamp = self.next_timestamp(pending.timestamp);
        let (header, context) = ReplyHeader {
            cluster: self.config.cluster,
            view: 0,
            release: pending.header.frame.release,
            request_checksum: pending.header.frame.checksum,
            client,
            op,
            timestamp,
            request: pending.header.request,
            operation: pending.header.operation,
        }
        .encode(&pending.reply);
        let mut message = self.buffer();
        message.extend_from_slice(&header);
        message.extend_from_slice(&pending.reply);
        self.recycle(pending.reply);
        let target = self
            .sessions
            .get_mut(client)
            .and_then(|session| session.connection);
        if let Some(target) = target {
            self.send(target, &message);
        }
        if let Some(old) = self.sessions.finish(client, message, context) {
            self.recycle(old);
        }
    }

    fn buffer(&mut self) -> Vec<u8> {
        let mut buffer = self.buffers.pop().unwrap_or_default();
        buffer.clear();
        buffer
    }

    /// Keeps a buffer for reuse, up to the limit on batches with the core.
    fn recycle(&mut self, mut buffer: Vec<u8>) {
        if self.buffers.len() < self.config.batches_at_core_max {
            buffer.clear();
            self.buffers.push(buffer);
        }
    }

    fn send(&mut self, id: (u32, u32), bytes: &[u8]) {
        let Some(connection) = self.connection_mut(id) else {
            return;
        };
        connection.output.extend_from_slice(bytes);
        self.flush(id.0);
    }

    fn flush(&mut self, index: u32) {
        let Some(connection) = self.connections[index as usize].as_mut() else {
            return;
        };
        while connection.output_sent < connection.output.len() {
            match connection
                .stream
                .write(&connection.output[connection.output_sent..])
            {
                Ok(0) => {
                    self.close(index);
                    return;
                }
                Ok(size) => connection.output_sent += size,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(index);
                    return;
                }
            }
        }
        connection.output.clear();
        connection.output_sent = 0;
    }

    /// Reads again from connections that stopped at a limit which has since freed.
    fn resume_reading(&mut self) {
        for index in 0..self.connections.len() as u32 {
            let paused = self.connections[index as usize]
                .as_ref()
                .is_some_and(|connection| !connection.reading && self.may_read(connection));
            if paused {
                self.read(index);
            }
        }
    }

    fn check_deadlines(&mut self) {
        for index in 0..self.connections.len() as u32 {
            let Some(connection) = self.connections[index as usize].as_ref() else {
                continue;
            };
            let partial = connection.reading
                && connection.partial_since.is_some_and(|since| {
                    self.now.duration_since(since) > self.config.partial_message_timeout
                });
            let idle = connection.in_flight == 0
                && self.now.duration_since(connection.active_last) > self.config.idle_timeout;
            if partial || idle {
                self.close(index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::CoreSide;
    use crate::config::ServerConfig;
    use crate::server::{start as start_server, ServerHandle};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::thread::JoinHandle;

    /// A gateway over a stand-in core that answers every create event with `created` and the
    /// batch's index as the timestamp, so tests can see which batch a result came from.
    struct Rig {
        _server: ServerHandle,
        durable: Arc<AtomicU64>,
        gateway: Option<GatewayHandle>,
        core: Option<JoinHandle<()>>,
        stop: Arc<AtomicBool>,
    }

    impl Rig {
        fn new() -> Rig {
            Rig::gated(0)
        }

        /// A rig whose stand-in core gates every reply on journal sequence `gate`.
        fn gated(gate: u64) -> Rig {
            let durable = Arc::new(AtomicU64::new(0));
            let addr = "127.0.0.1:0".parse().unwrap();
            let (server, core_side) =
                start_server(&ServerConfig::new(addr), Arc::clone(&durable)).unwrap();
            let gateway = start(
                &GatewayConfig::new(addr, 0),
                core_side.injector(),
                Arc::clone(&durable),
            )
            .unwrap();
            let link = gateway.link();
            let stop = Arc::new(AtomicBool::new(false));
            let core = {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || stand_in_core(&core_side, &link, &stop, gate))
            };
            Rig {
                _server: server,
                durable,
                gateway: Some(gateway),
                core: Some(core),
                stop,
            }
        }

        fn connect(&self) -> TcpStream {
            let addr = self.gateway.as_ref().unwrap().local_addr();
            let stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
        }
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            if let Some(gateway) = self.gateway.take() {
                gateway.shutdown().unwrap();
            }
            self.stop.store(true, Ordering::Release);
            if let Some(core) = self.core.take() {
                core.join().unwrap();
            }
        }
    }

    fn stand_in_core(core: &CoreSide, link: &CoreLink, stop: &AtomicBool, gate: u64) {
        while !stop.load(Ordering::Acquire) {
            if !core.wait_for_requests(Duration::from_millis(10)) {
                continue;
            }
            while let Some(request) = core.pop_request() {
                assert!(request.connection.is_external());
                let batch = request.header.request_id & 0xFFFF_FFFF;
                let mut body = request.body;
                body.clear();
                for _ in 0..request.header.count {
                    body.extend_from_slice(&(batch + 1).to_le_bytes());
                    body.extend_from_slice(&u32::MAX.to_le_bytes());
                    body.extend_from_slice(&[0u8; 4]);
                }
                let reply = Reply {
                    connection: request.connection,
                    request_id: request.header.request_id,
                    operation: request.operation,
                    status: FrameStatus::Ok,
                    count: request.header.count,
                    timestamp: 1,
                    sequence: gate,
                    gate,
                    body,
                    reply_reserved: 0,
                };
                link.push_reply(reply).unwrap();
            }
            link.wake();
        }
    }

    fn message(header: RequestHeader, body: &[u8]) -> Vec<u8> {
        let mut bytes = header.encode(0, body).to_vec();
        bytes.extend_from_slice(body);
        bytes
    }

    fn header(
        client: u128,
        session: u64,
        number: u32,
        operation: u8,
        parent: u128,
    ) -> RequestHeader {
        RequestHeader::for_test(client, session, number, operation, parent)
    }

    fn read_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
        let mut bytes = vec![0u8; HEADER_SIZE];
        stream.read_exact(&mut bytes).ok()?;
        let size = u32::from_le_bytes(bytes[96..100].try_into().unwrap()) as usize;
        bytes.resize(size, 0);
        stream.read_exact(&mut bytes[HEADER_SIZE..]).ok()?;
        Some(bytes)
    }

    /// Registers `client` and returns (session, context).
    fn register(stream: &mut TcpStream, client: u128) -> (u64, u128) {
        stream
            .write_all(&message(header(client, 0, 0, 2, 0), &[0u8; 256]))
            .unwrap();
        let reply = read_message(stream).unwrap();
        let session = u64::from_le_bytes(reply[216..224].try_into().unwrap());
        let context = u128::from_le_bytes(reply[160..176].try_into().unwrap());
        (session, context)
    }

    #[test]
    fn batches_are_answered_in_batch_order() {
        let rig = Rig::new();
        let mut stream = rig.connect();
        let (session, context) = register(&mut stream, 7);
        // Batches of 1, 0 and 2 accounts.
        let mut body = vec![0u8; 3 * 128];
        encode_trailer(&mut body, &[1, 0, 2], 128);
        stream
            .write_all(&message(header(7, session, 1, 146, context), &body))
            .unwrap();
        let reply = read_message(&mut stream).unwrap();
        assert_eq!(reply[114], 8);
        let body = &reply[HEADER_SIZE..];
        let batches = Batches::decode(body, 16).unwrap();
        assert_eq!(batches.batch_count(), 3);
        assert_eq!(
            (batches.count(0), batches.count(1), batches.count(2)),
            (1, 0, 2)
        );
        // The stand-in core stamps each result with its batch index + 1.
        let stamps: Vec<u64> = body[..48]
            .chunks(16)
            .map(|result| u64::from_le_bytes(result[..8].try_into().unwrap()))
            .collect();
        assert_eq!(stamps, [1, 3, 3]);
    }

    #[test]
    fn no_reply_before_the_journal_is_durable() {
        let rig = Rig::gated(5);
        let mut stream = rig.connect();
        let (session, context) = register(&mut stream, 8);
        let mut body = vec![0u8; 128];
        encode_trailer(&mut body, &[1], 128);
        stream
            .write_all(&message(header(8, session, 1, 146, context), &body))
            .unwrap();
        // The batch is applied at once, but its sequence 5 is not durable: nothing arrives.
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut byte = [0u8; 1];
        let early = stream.read(&mut byte);
        assert!(
            early.as_ref().is_err_and(|error| matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            )),
            "a reply left before its gate was durable: {early:?}"
        );
        rig.durable.store(4, Ordering::Release);
        rig.gateway.as_ref().unwrap().link().wake();
        assert!(
            stream.read(&mut byte).is_err(),
            "sequence 4 does not cover 5"
        );
        rig.durable.store(5, Ordering::Release);
        rig.gateway.as_ref().unwrap().link().wake();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reply = read_message(&mut stream).unwrap();
        assert_eq!((reply[114], reply[236]), (8, 146));
    }

    #[test]
    fn random_bytes_never_stop_the_gateway() {
        let rig = Rig::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..200 {
            let mut stream = rig.connect();
            let size = (next() % 700) as usize;
            let mut bytes: Vec<u8> = (0..size).map(|_| next() as u8).collect();
            if round % 2 == 0 && size >= HEADER_SIZE {
                // A valid checksum over random fields, so the checks past it are exercised.
                bytes[96..100].copy_from_slice(&(size as u32).to_le_bytes());
                bytes[114] = if round % 4 == 0 { 5 } else { 3 };
                bytes[80..96].copy_from_slice(&[0u8; 16]);
                let body_sum = crate::tigerbeetle::checksum::checksum(&bytes[HEADER_SIZE..]);
                bytes[32..48].copy_from_slice(&body_sum.to_le_bytes());
                let sum = crate::tigerbeetle::checksum::checksum(&bytes[16..HEADER_SIZE]);
                bytes[..16].copy_from_slice(&sum.to_le_bytes());
            }
            let _ = stream.write_all(&bytes);
        }
        // Still serving.
        let mut stream = rig.connect();
        let (session, _) = register(&mut stream, 99);
        assert!(session > 0);
    }

    #[test]
    fn operation_numbers_map_to_the_engine() {
        assert_eq!(
            operation_kind(146).map(|kind| kind.operation),
            Some(Operation::CreateAccounts)
        );
        assert_eq!(
            operation_kind(147).map(|kind| kind.operation),
            Some(Operation::CreateTransfers)
        );
        assert!(operation_kind(142).is_some_and(|kind| kind.query));
        assert!(operation_kind(140).is_some_and(|kind| !kind.query));
        // Change events, the pulse and the old unbatched operations are not served.
        for number in [0u8, 2, 128, 129, 137, 138, 139, 148, 255] {
            assert_eq!(operation_kind(number), None);
        }
    }

    #[test]
    fn limits_are_checked() {
        let addr = "127.0.0.1:0".parse().unwrap();
        assert!(GatewayConfig::new(addr, 0).validate().is_ok());
        let config = GatewayConfig {
            output_size_max: 1,
            ..GatewayConfig::new(addr, 0)
        };
        assert_eq!(config.validate(), Err("output_size_max"));
    }
}
