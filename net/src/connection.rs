//! One client connection of the server: its input buffer, the frame being read, and the replies
//! it owes the client in request order.
//!
//! Invariants:
//! - `entries` holds one entry per request read from this connection and not yet answered in
//!   full, in request order; its length never exceeds `requests_in_flight_max`, which is checked
//!   before a new header is parsed.
//! - Only a contiguous run of ready entries at the front, each with `gate <= durable`, is ever
//!   written, so replies leave in request order and never before their journal bytes are
//!   durable.
//! - `output_pending_size` is the sum of the frame sizes of the ready entries, less the bytes of
//!   the front entry already written.
//! - `reply_held` is the reply memory the connection holds: the reservations of its waiting
//!   entries (the pending request's included), the body capacities of its ready entries, and the
//!   reservation of the frame being read; it never exceeds `output_size_max` by more than what
//!   a core returned over a reservation.
//! - Every body buffer taken from the pool goes back to the pool (or to the core inside a
//!   request) and is never dropped while the pool has room. Every reply buffer goes back to the
//!   reply memory (`reply_memory.rs`) with the bytes it held, or travels with its request.
//!
//! Does not own the socket's registration with the poller, and does not decide when the
//! connection closes for a deadline; the event loop in `server.rs` does both.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::IpAddr;
use std::time::Instant;

use mio::net::TcpStream;

use crate::channel::{recycle, ConnectionId, Reply, Request, Shared};
use crate::config::ServerConfig;
use crate::frame::{
    check_request_body, check_request_header, Action, FrameStatus, Header, RequestHeader,
    HEADER_SIZE,
};
use crate::reply_memory::{class_size, reply_size_max, ReplyMemory, QUERY_BODY_SIZE_MAX};

/// The most slices one vectored write gathers (a header and a body per reply).
const WRITE_SLICES_MAX: usize = 32;

/// What the event loop keeps across connections while it drives one of them.
pub(crate) struct LoopState {
    /// Requests pushed to the core and not yet answered by a reply it pushed back.
    pub in_flight_total: usize,
    /// The capacity of the reply queue: `in_flight_total` never exceeds it, so the core can
    /// always push its replies.
    pub in_flight_total_max: usize,
    /// Whether a request was pushed since the core was last notified.
    pub pushed: bool,
    /// Whether the server is shutting down: new requests get `shutting_down`.
    pub shutting_down: bool,
    /// Connections holding a pooled body buffer for a body that has not arrived in full.
    pub partial_bodies: usize,
    /// The most such connections: a share of the pool, so that slow senders can never hold
    /// every buffer and a body that is already in full in its input buffer always finds one
    /// once the core gives buffers back.
    pub partial_bodies_max: usize,
    /// The reply buffers and the global reply budget.
    pub reply_memory: ReplyMemory,
    /// The time of the current loop iteration.
    pub now: Instant,
}

/// Why a connection stopped reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pause {
    /// The connection has `requests_in_flight_max` requests unanswered.
    InFlight,
    /// The connection holds more unsent reply bytes than `output_size_max`.
    Output,
    /// The request queue, the reply queue's share or the body buffer pool is exhausted.
    Core,
    /// The global reply budget has no room for the next request's worst-case reply.
    ReplyMemory,
}

/// What reading a connection led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// Everything available was read (or the input is no longer read).
    Drained,
    /// Reading stopped for a limit; resume when it frees.
    Paused(Pause),
    /// The socket failed; close the connection now.
    Failed,
}

/// What writing a connection led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    /// Nothing left that may be sent now (other entries wait for the core or for `durable`).
    Idle,
    /// The socket's send buffer is full; wait for a writable event.
    Blocked,
    /// The socket failed; close the connection now.
    Failed,
}

enum ReadState {
    /// Waiting for the 64 bytes of a header.
    Header,
    /// Reading the body of a valid header into a buffer from the pool. The buffer is taken
    /// only once body bytes have arrived: at once if the whole body is buffered, else if slow
    /// senders hold less than their share of the pool (`LoopState::partial_bodies_max`).
    ///
    /// Before the body buffer, the request's reply buffer is reserved (see `reply_memory.rs`).
    Body {
        request: RequestHeader,
        buffer: Option<Vec<u8>>,
        reply: Option<Vec<u8>>,
    },
    /// Discarding the body of a rejected frame whose connection is kept.
    Skip { remaining: usize },
}

enum Entry {
    /// The request is with the core, with `reserved` bytes of reply memory.
    Waiting { request_id: u64, reserved: usize },
    /// The reply frame, sent once `durable >= gate`.
    Ready {
        header: [u8; HEADER_SIZE],
        body: Vec<u8>,
        gate: u64,
    },
}

impl Entry {
    fn frame_size(&self) -> usize {
        match self {
            Entry::Waiting { .. } => 0,
            Entry::Ready { body, .. } => HEADER_SIZE + body.len(),
        }
    }
}

/// One accepted connection.
pub(crate) struct Connection {
    pub stream: TcpStream,
    pub id: ConnectionId,
    /// The peer's IP address, counted against `connections_per_address_max`.
    pub peer: IpAddr,
    /// When bytes last moved in either direction (or the connection opened): the start of
    /// the idle period, if the connection is idle.
    pub active_last: Instant,
    input: Box<[u8]>,
    input_start: usize,
    input_end: usize,
    state: ReadState,
    entries: VecDeque<Entry>,
    /// Bytes of the front entry's frame already written.
    front_written: usize,
    output_pending_size: usize,
    /// Reply memory reserved or held by this connection.
    reply_held: usize,
    /// A complete request the request queue had no room for; its entry is already in `entries`.
    pending_request: Option<Request>,
    /// The client closed its side; no more input will arrive.
    pub input_closed: bool,
    /// Input is ignored from now on; close once every entry is written.
    pub closing: bool,
    /// Whether read interest is registered.
    pub reading: bool,
    /// When the frame now being read began, if one has begun.
    pub partial_since: Option<Instant>,
    /// When a write last found the socket full with replies waiting, if it has not drained since.
    pub stalled_since: Option<Instant>,
    /// Whether the connection is in the event loop's list of connections with ready replies.
    pub listed_ready: bool,
    /// Whether the connection is in the event loop's list of paused connections.
    pub listed_paused: bool,
}

impl Connection {
    pub fn new(
        stream: TcpStream,
        id: ConnectionId,
        peer: IpAddr,
        config: &ServerConfig,
        now: Instant,
    ) -> Connection {
        Connection {
            stream,
            id,
            peer,
            active_last: now,
            input: vec![0u8; config.input_size_max].into_boxed_slice(),
            input_start: 0,
            input_end: 0,
            state: ReadState::Header,
            entries: VecDeque::with_capacity(config.requests_in_flight_max),
            front_written: 0,
            output_pending_size: 0,
            reply_held: 0,
            pending_request: None,
            input_closed: false,
            closing: false,
            reading: true,
            partial_since: None,
            stalled_since: None,
            listed_ready: false,
            listed_paused: false,
        }
    }

    /// Whether the connection has nothing left to do and may close.
    pub fn finished(&self) -> bool {
        (self.input_closed || self.closing)
            && self.entries.is_empty()
            && self.pending_request.is_none()
    }

    /// Whether the connection owes the client nothing and holds no request.
    pub fn is_idle(&self) -> bool {
        self.entries.is_empty() && self.pending_request.is_none()
    }

    /// Bytes of ready replies not yet written.
    pub fn output_pending_size(&self) -> usize {
        self.output_pending_size
    }

    /// Whether a ready entry waits at the front (for `durable` or for the socket).
    pub fn has_ready_front(&self) -> bool {
        matches!(self.entries.front(), Some(Entry::Ready { .. }))
    }

    /// Parses what is buffered and reads the socket until it would block, a limit pauses the
    /// connection, or the input ends.
    pub fn read(
        &mut self,
        shared: &Shared,
        config: &ServerConfig,
        state: &mut LoopState,
    ) -> ReadOutcome {
        loop {
            if let Some(pause) = self.parse(shared, config, state) {
                return ReadOutcome::Paused(pause);
            }
            if self.input_closed || self.closing {
                return ReadOutcome::Drained;
            }
            self.compact();
            if self.input_end == self.input.len() {
                // The buffer holds at least a header, so parsing always makes room; a full
                // buffer here means parsing stopped for a reason it reported above.
                return ReadOutcome::Drained;
            }
            match self.stream.read(&mut self.input[self.input_end..]) {
                Ok(0) => {
                    self.input_closed = true;
                    self.discard_partial_frame(shared, state);
                    return ReadOutcome::Drained;
                }
                Ok(size) => {
                    self.input_end += size;
                    self.active_last = state.now;
                    if self.partial_since.is_none() {
                        self.partial_since = Some(state.now);
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return ReadOutcome::Drained;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return ReadOutcome::Failed,
            }
        }
    }

    /// Moves unparsed bytes to the front of the input buffer so that a header is contiguous and
    /// the socket can fill the rest.
    fn compact(&mut self) {
        if self.input_start == self.input_end {
            self.input_start = 0;
            self.input_end = 0;
        } else if self.input_start > 0 {
            self.input.copy_within(self.input_start..self.input_end, 0);
            self.input_end -= self.input_start;
            self.input_start = 0;
        }
    }

    /// Consumes buffered input frame by frame. Returns the reason reading must pause, if any.
    fn parse(
        &mut self,
        shared: &Shared,
        config: &ServerConfig,
        state: &mut LoopState,
    ) -> Option<Pause> {
        loop {
            if let Some(request) = self.pending_request.take() {
                if let Err(request) = push_request(shared, state, request) {
                    self.pending_request = Some(request);
                    return Some(Pause::Core);
                }
            }
            if self.closing {
                self.input_start = self.input_end;
                return None;
            }
            let available = self.input_end - self.input_start;
            match &mut self.state {
                ReadState::Header => {
                    if available == 0 {
                        self.partial_since = None;
                        return None;
                    }
                    if self.entries.len() >= config.requests_in_flight_max {
                        return Some(Pause::InFlight);
                    }
                    if self.output_pending_size > config.output_size_max {
                        return Some(Pause::Output);
                    }
                    if available < HEADER_SIZE {
                        return None;
                    }
                    let mut bytes = [0u8; HEADER_SIZE];
                    bytes.copy_from_slice(
                        &self.input[self.input_start..self.input_start + HEADER_SIZE],
                    );
                    self.input_start += HEADER_SIZE;
                    self.partial_since = Some(state.now);
                    self.on_header(shared, state, &bytes);
                }
                ReadState::Body {
                    request,
                    buffer,
                    reply,
                } => {
                    let body_size = request.header.body_size as usize;
                    if buffer.is_none() {
                        if available == 0 {
                            // A header alone holds nothing from the pool.
                            return None;
                        }
                        if available < body_size && state.partial_bodies >= state.partial_bodies_max
                        {
                            // Slow senders hold their share of the pool already: keep the bytes
                            // in the input buffer until the body is complete, or until that
                            // buffer is full and a share frees.
                            return (available == self.input.len()).then_some(Pause::Core);
                        }
                        if reply.is_none() {
                            // A query's reply size depends on its filter: wait until the filter is
                            // in the input buffer, which always has room for one.
                            let filter_size = body_size.min(QUERY_BODY_SIZE_MAX);
                            let (events_min, events_max) = request.operation.events_range();
                            if events_min == events_max && available < filter_size {
                                return None;
                            }
                            let start = self.input_start;
                            let size = reply_size_max(
                                request.operation,
                                request.header.count,
                                &self.input[start..start + available.min(body_size)],
                            );
                            if self.reply_held + class_size(size) > config.output_size_max {
                                return Some(Pause::Output);
                            }
                            let Some(taken) = state.reply_memory.reserve(size) else {
                                return Some(Pause::ReplyMemory);
                            };
                            self.reply_held += taken.capacity();
                            *reply = Some(taken);
                        }
                        let Some(mut taken) = shared.buffers.pop() else {
                            return Some(Pause::Core);
                        };
                        // One allocation at most: the body never grows the buffer twice.
                        taken.reserve_exact(body_size);
                        *buffer = Some(taken);
                        state.partial_bodies += 1;
                    }
                    let Some(body) = buffer.as_mut() else {
                        unreachable!("the buffer was just taken");
                    };
                    let size = (body_size - body.len()).min(available);
                    body.extend_from_slice(&self.input[self.input_start..self.input_start + size]);
                    self.input_start += size;
                    if body.len() < body_size {
                        return None;
                    }
                    let request = *request;
                    let body = buffer.take().unwrap_or_default();
                    let reply_body = reply.take().unwrap_or_default();
                    state.partial_bodies -= 1;
                    self.state = ReadState::Header;
                    self.on_body(shared, state, request, body, reply_body);
                }
                ReadState::Skip { remaining } => {
                    let size = (*remaining).min(available);
                    *remaining -= size;
                    self.input_start += size;
                    if *remaining > 0 {
                        return None;
                    }
                    self.state = ReadState::Header;
                }
            }
        }
    }

    fn on_header(&mut self, shared: &Shared, state: &LoopState, bytes: &[u8; HEADER_SIZE]) {
        assert!(matches!(self.state, ReadState::Header));
        match check_request_header(bytes) {
            Err(rejection) => {
                shared
                    .stats
                    .frames_rejected
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let raw = Header::decode(bytes);
                self.push_status(&raw, rejection.status);
                match rejection.action {
                    Action::Close => self.closing = true,
                    Action::Keep => {
                        // A kept rejection has a body of at most BODY_SIZE_MAX bytes.
                        self.state = ReadState::Skip {
                            remaining: raw.body_size as usize,
                        };
                    }
                }
            }
            Ok(request) if state.shutting_down => {
                shared
                    .stats
                    .frames_rejected
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.push_status(&request.header, FrameStatus::ShuttingDown);
                self.closing = true;
            }
            Ok(request) => {
                self.state = ReadState::Body {
                    request,
                    buffer: None,
                    reply: None,
                };
            }
        }
    }

    fn on_body(
        &mut self,
        shared: &Shared,
        state: &mut LoopState,
        request: RequestHeader,
        body: Vec<u8>,
        reply_body: Vec<u8>,
    ) {
        let reply_reserved = reply_body.capacity();
        if let Err(rejection) = check_request_body(&request.header, &body) {
            shared
                .stats
                .frames_rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            recycle(shared, body);
            self.reply_held -= reply_reserved;
            state.reply_memory.release(reply_reserved, reply_body);
            self.push_status(&request.header, rejection.status);
            return;
        }
        self.entries.push_back(Entry::Waiting {
            request_id: request.header.request_id,
            reserved: reply_reserved,
        });
        let request = Request {
            connection: self.id,
            header: request.header,
            operation: request.operation,
            body,
            reply_body,
            reply_reserved,
        };
        if let Err(request) = push_request(shared, state, request) {
            self.pending_request = Some(request);
        }
    }

    /// Queues a status reply with an empty body (no gate: it reveals nothing of the journal).
    fn push_status(&mut self, raw: &Header, status: FrameStatus) {
        assert_ne!(status, FrameStatus::Ok);
        let mut header = Header {
            operation: raw.operation,
            status: status as u8,
            request_id: raw.request_id,
            ..Header::zeroed()
        };
        header.seal(&[]);
        self.entries.push_back(Entry::Ready {
            header: header.encode(),
            body: Vec::new(),
            gate: 0,
        });
        self.output_pending_size += HEADER_SIZE;
    }

    /// Whether the connection holds a pooled buffer for a body that has not arrived in full.
    pub fn holds_body_buffer(&self) -> bool {
        matches!(
            self.state,
            ReadState::Body {
                buffer: Some(_),
                ..
            }
        )
    }

    /// Gives back the buffers of a frame not yet complete: its body buffer to the pool, and
    /// its reply reservation.
    fn release_body_buffer(&mut self, shared: &Shared, state: &mut LoopState) {
        if let ReadState::Body { buffer, reply, .. } = &mut self.state {
            if let Some(buffer) = buffer.take() {
                recycle(shared, buffer);
                state.partial_bodies -= 1;
            }
            if let Some(reply) = reply.take() {
                self.reply_held -= reply.capacity();
                state.reply_memory.release(reply.capacity(), reply);
            }
        }
    }

    /// Drops a frame cut off by the end of the input: it has no effect.
    fn discard_partial_frame(&mut self, shared: &Shared, state: &mut LoopState) {
        self.release_body_buffer(shared, state);
        self.state = ReadState::Header;
        self.input_start = self.input_end;
        self.partial_since = None;
    }

    /// Starts shutting down: a request that has begun but has not reached the core is answered
    /// with `shutting_down`, and so is the next complete header already buffered; then the
    /// connection closes once its entries are written.
    pub fn begin_shutdown(
        &mut self,
        shared: &Shared,
        config: &ServerConfig,
        state: &mut LoopState,
    ) {
        assert!(state.shutting_down);
        if let Some(request) = self.pending_request.take() {
            let last = self.entries.pop_back();
            assert!(
                matches!(last, Some(Entry::Waiting { .. })),
                "pending request has no entry"
            );
            recycle(shared, request.body);
            self.reply_held -= request.reply_reserved;
            state
                .reply_memory
                .release(request.reply_reserved, request.reply_body);
            self.push_status(&request.header, FrameStatus::ShuttingDown);
            self.closing = true;
        }
        if let ReadState::Body { request, .. } = &self.state {
            let header = request.header;
            self.release_body_buffer(shared, state);
            self.state = ReadState::Header;
            self.push_status(&header, FrameStatus::ShuttingDown);
            self.closing = true;
        }
        if !self.closing {
            // Parse what is buffered: a complete header gets `shutting_down` in on_header. A
            // connection left open keeps reading until its next header or its last reply.
            let _ = self.parse(shared, config, state);
        }
        if self.is_idle() {
            self.closing = true;
        }
    }

    /// Fills in the reply to the oldest request with the core.
    ///
    /// # Panics
    ///
    /// If no request is with the core or the reply answers another request id: the core
    /// answers the requests of one connection in the order it popped them.
    pub fn on_reply(&mut self, reply: Reply, shared: &Shared, memory: &mut ReplyMemory) {
        let Reply {
            request_id,
            operation,
            status,
            count,
            timestamp,
            sequence,
            body,
            gate,
            ..
        } = reply;
        let capacity = body.capacity();
        let entry = self
            .entries
            .iter_mut()
            .find(|entry| matches!(entry, Entry::Waiting { .. }))
            .expect("a reply arrived for a connection with no request at the core");
        let Entry::Waiting {
            request_id: request_id_expected,
            reserved,
        } = *entry
        else {
            unreachable!("found a waiting entry");
        };
        assert_eq!(
            request_id, request_id_expected,
            "reply out of request order"
        );
        assert!(
            status == FrameStatus::Ok
                || body.is_empty()
                || (status == FrameStatus::NotPrimary
                    && count == 1
                    && body.len() == crate::frame::Redirect::SIZE),
            "a reply with status {status} must have an empty body (not_primary: one redirect)"
        );
        if status == FrameStatus::Ok {
            let size_expected = u64::from(count) * operation.reply_item_size() as u64;
            assert_eq!(
                body.len() as u64,
                size_expected,
                "reply body is not count x item size"
            );
        }
        let mut header = Header {
            operation: operation as u8,
            status: status as u8,
            request_id,
            body_size: u32::try_from(body.len()).expect("reply body over 4 GiB"),
            count,
            timestamp,
            sequence,
            ..Header::zeroed()
        };
        header.seal(&body);
        // The reply now holds its buffer's capacity instead of the reservation (less if the
        // reply has no body: the core dropped the buffer).
        if memory.settle(reserved, capacity) {
            shared
                .stats
                .replies_over_reservation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.reply_held = self.reply_held - reserved + capacity;
        self.output_pending_size += HEADER_SIZE + body.len();
        *entry = Entry::Ready {
            header: header.encode(),
            body,
            gate,
        };
    }

    /// Writes the ready front entries whose gate `durable` covers, until the socket is full.
    pub fn write(&mut self, memory: &mut ReplyMemory, durable: u64, now: Instant) -> WriteOutcome {
        loop {
            let mut slices: [IoSlice<'_>; WRITE_SLICES_MAX] = [IoSlice::new(&[]); WRITE_SLICES_MAX];
            let mut slices_count = 0;
            let mut skip = self.front_written;
            for entry in &self.entries {
                let Entry::Ready { header, body, gate } = entry else {
                    break;
                };
                if *gate > durable || slices_count + 2 > WRITE_SLICES_MAX {
                    break;
                }
                for part in [&header[..], &body[..]] {
                    let skipped = skip.min(part.len());
                    skip -= skipped;
                    if skipped < part.len() {
                        slices[slices_count] = IoSlice::new(&part[skipped..]);
                        slices_count += 1;
                    }
                }
            }
            if slices_count == 0 {
                self.stalled_since = None;
                return WriteOutcome::Idle;
            }
            match self.stream.write_vectored(&slices[..slices_count]) {
                Ok(0) => return WriteOutcome::Failed,
                Ok(size) => {
                    self.advance(memory, size);
                    self.stalled_since = None;
                    self.active_last = now;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if self.stalled_since.is_none() {
                        self.stalled_since = Some(now);
                    }
                    return WriteOutcome::Blocked;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return WriteOutcome::Failed,
            }
        }
    }

    fn advance(&mut self, memory: &mut ReplyMemory, mut size: usize) {
        while size > 0 {
            let front = self.entries.front().expect("wrote bytes of no entry");
            let frame_size = front.frame_size();
            assert!(frame_size > 0, "wrote bytes of a waiting entry");
            let remaining = frame_size - self.front_written;
            if size < remaining {
                self.front_written += size;
                self.output_pending_size -= size;
                return;
            }
            size -= remaining;
            self.output_pending_size -= remaining;
            self.front_written = 0;
            if let Some(Entry::Ready { body, .. }) = self.entries.pop_front() {
                self.reply_held -= body.capacity();
                memory.release(body.capacity(), body);
            }
        }
    }

    /// Returns every buffer the connection holds to the pool; the connection is being closed.
    ///
    /// The reservations of requests with the core stay counted until their replies come back
    /// (and are dropped): the core holds their buffers until then.
    pub fn release(mut self, shared: &Shared, state: &mut LoopState) {
        if let Some(request) = self.pending_request.take() {
            recycle(shared, request.body);
            state
                .reply_memory
                .release(request.reply_reserved, request.reply_body);
        }
        self.release_body_buffer(shared, state);
        for entry in self.entries.drain(..) {
            if let Entry::Ready { body, .. } = entry {
                state.reply_memory.release(body.capacity(), body);
            }
        }
    }
}

/// Pushes a request to the core unless the request queue is full or the core could not push
/// the reply to one more request.
// The request comes back by value to be kept as the connection's pending request; boxing it
// would allocate per request.
#[allow(clippy::result_large_err)]
fn push_request(shared: &Shared, state: &mut LoopState, request: Request) -> Result<(), Request> {
    if state.in_flight_total >= state.in_flight_total_max {
        return Err(request);
    }
    shared.requests.push(request)?;
    state.in_flight_total += 1;
    state.pushed = true;
    Ok(())
}
