//! The server: a mio event loop on its own thread that accepts connections, validates frames,
//! hands requests to the core through a bounded lock-free queue and sends the core's replies
//! back once the journal has made them durable.
//!
//! The net thread owns every socket; it pushes [`Request`]s into a bounded queue and pops
//! [`Reply`]s from another (the channel, `channel.rs`); each connection's frames and replies
//! are `connection.rs`, the limits `config.rs`.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll};
use socket2::{SockRef, TcpKeepalive};

use crate::channel::{ConnectionId, CoreSide, NetWaker, ServerStats, Shared};
#[cfg(doc)]
use crate::channel::{Reply, Request};
use crate::config::ServerConfig;
use crate::connection::{Connection, LoopState, Pause, ReadOutcome, WriteOutcome};
use crate::loop_thread::{
    connection_token, listen, loop_handle_impls, poll_events, register_connection, LoopThread,
    Source,
};
use crate::reply_memory::ReplyMemory;

/// How often the loop looks again while some connection waits for the core to free room.
const CORE_RECHECK_INTERVAL: Duration = Duration::from_millis(1);

/// TCP keepalive on every accepted socket: the first probe after this long without traffic,
/// then one every [`KEEPALIVE_INTERVAL`] (the kernel's probe count decides when it gives up).
/// It finds peers that vanished without a FIN or reset (a crashed host, a dropped NAT entry)
/// while the connection is not idle, for example while its requests wait for the journal.
const KEEPALIVE_TIME: Duration = Duration::from_secs(30);
/// The interval between keepalive probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// The owner's handle of a running server.
pub struct ServerHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    thread: LoopThread,
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
        self.thread.stop(|| {
            self.shared.shutdown.store(true, Ordering::Release);
            self.shared.wake_net();
        })
    }
}

loop_handle_impls!(ServerHandle);

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
    let listening = listen(config.addr)?;
    let local_addr = listening.local_addr;
    let shared = Arc::new(Shared::new(config, Arc::new(listening.waker), durable));
    let mut event_loop = EventLoop::new(
        config.clone(),
        listening.poll,
        listening.listener,
        Arc::clone(&shared),
    );
    let thread = LoopThread::spawn("clearline-net", "net", move || {
        let result = event_loop.run();
        event_loop.shared.stopped.store(true, Ordering::Release);
        event_loop.shared.notify_core_always();
        result
    })?;
    let handle = ServerHandle {
        local_addr,
        shared: Arc::clone(&shared),
        thread,
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
            poll_events(&mut self.poll, &mut events, timeout)?;
            self.state.now = Instant::now();
            for event in events.iter() {
                match Source::of(event.token()) {
                    Source::Listener => self.accept(),
                    Source::Waker => {}
                    Source::Connection(index) => {
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
        let keepalive = TcpKeepalive::new()
            .with_time(KEEPALIVE_TIME)
            .with_interval(KEEPALIVE_INTERVAL);
        // Best effort: a socket without keepalive still has the idle and stall deadlines.
        let _ = SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        if register_connection(&self.poll, &mut stream, index).is_err() {
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
            let token = connection_token(index);
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
                    let token = connection_token(*index);
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
            let stats = &self.shared.stats;
            let expired = if partial_expired {
                Some(&stats.connections_closed_partial_frame)
            } else if stall_expired {
                Some(&stats.connections_closed_reply_stall)
            } else if idle_expired {
                Some(&stats.connections_closed_idle)
            } else {
                None
            };
            if let Some(counter) = expired {
                counter.fetch_add(1, Ordering::Relaxed);
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
