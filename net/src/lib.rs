//! The clearline network layer: the frame codec of docs/protocol.md, the mio server, a client.
//!
//! - [`frame`]: the 64-byte header, CRC-32C, [`FrameStatus`], validation in the docs/protocol.md
//!   order ([`check_request_header`], [`check_request_body`], [`check_reply_header`]).
//! - [`server`]: [`start`] binds and spawns the net thread, returning a [`ServerHandle`] for the
//!   owner and a [`CoreSide`] for the core thread.
//! - `config.rs`: [`ServerConfig`], the server's limits and their defaults.
//! - `loop_thread.rs`: what the server and the TigerBeetle gateway share as loops on a thread.
//! - `channel.rs`: what crosses between the net thread and the core ([`Request`], [`Reply`]),
//!   the queues and the wakeups ([`CoreSide`], [`Injector`], [`NetWaker`]).
//! - [`client`]: [`Client`], blocking, with pipelining.
//! - [`echo`]: a plain loopback echo of frames, the floor for the server benchmark.
//!
//! How the core thread uses the server:
//!
//! ```no_run
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use clearline_net::{start, Reply, ServerConfig};
//!
//! let durable = Arc::new(AtomicU64::new(0));
//! let config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
//! let (server, core) = start(&config, Arc::clone(&durable)).unwrap();
//! let core_thread = std::thread::spawn(move || {
//!     // Serve until the net thread ends: during shutdown it still sends durable replies.
//!     while !core.is_stopped() {
//!         // Sleeps on a condvar while the queue is empty; the net thread notifies it.
//!         if !core.wait_for_requests(Duration::from_millis(100)) {
//!             continue;
//!         }
//!         // Take what is waiting as one batch.
//!         while let Some(mut request) = core.pop_request() {
//!             let mut reply = Reply::to(&request);
//!             // ... append to the journal, apply, write `count` results into
//!             // `request.reply_body`, which has room for the largest reply ...
//!             reply.body = std::mem::take(&mut request.reply_body);
//!             reply.gate = 0; // the journal sequence that must be durable before sending
//!             core.recycle(request.body);
//!             core.push_reply(reply).expect("one reply per request always fits");
//!         }
//!         core.wake(); // once per batch
//!     }
//! });
//! // The journal syncer, after each sync: durable.store(sequence); waker.wake().
//! let waker = server.waker();
//! durable.store(1, Ordering::Release);
//! waker.wake();
//! server.shutdown().unwrap();
//! core_thread.join().unwrap();
//! ```
//!
//! Limits ([`ServerConfig`], each with a named default constant). Any limit that is reached
//! stops reading the connection concerned or closes it; nothing queues without bound.
//!
//! - `connections_max` 1,024: above it a new connection is accepted and closed at once.
//! - `connections_per_address_max` 64: the same, per peer IP address, so one peer cannot take
//!   the whole table.
//! - `idle_timeout` 60 s: a connection with no request in flight, no reply unsent and no partial
//!   frame that sends nothing for this long is closed. Accepted sockets also run TCP keepalive
//!   (first probe after 30 s), which finds peers that vanished while a request was in flight.
//! - `input_size_max` 64 KiB of unparsed input per connection.
//! - `output_size_max` 4 MiB of reply memory per connection, and `reply_memory_max` 256 MiB over
//!   all connections. When a request's body begins to arrive, the largest reply it can get
//!   ([`reply_size_max`]: from its operation, its count and, for queries, the limit in its
//!   filter) is reserved against both; a request that does not fit waits and its connection
//!   stops being read. The reservation is a reply buffer from a pool bounded by
//!   `reply_memory_max`, which the core fills without allocating, and it is held until the
//!   reply is sent. [`ServerStats`] reports the memory in use and its peak.
//! - `requests_in_flight_max` 32 per connection.
//! - `partial_frame_timeout` 2 s from a frame's first byte to its last.
//! - `reply_stall_timeout` 10 s for a client that does not read its replies.
//! - `request_queue_depth` 256 and `requests_at_core_max` 4,096 (the reply queue).
//! - `body_buffers_count` 256 request body buffers (at most 1 MiB each). A connection takes one
//!   only once body bytes arrive, and holds at most one. Bodies that are not yet complete may
//!   hold at most half of them, so slow senders cannot starve the rest; a connection holding one
//!   is always subject to the partial-frame deadline.
//! - `shutdown_grace` 5 s.
//!
//! So buffers take at most `body_buffers_count` MiB for request bodies, `reply_memory_max` for
//! replies (free pooled buffers included) and `connections_max x input_size_max` for input:
//! about 576 MiB with the defaults, whatever clients send.
//!
//! Rules for the core: answer every request popped exactly once, in pop order per connection;
//! give every request body back with [`CoreSide::recycle`], since the pool is what bounds
//! memory and an exhausted pool stops reading; write each reply into the request's
//! `reply_body` (never grow it) and build the reply with [`Reply::to`], which carries the
//! reservation back; replies with a status other than ok have an empty body, and ok replies
//! carry `count x reply item size` bytes (the net thread asserts both).
#![forbid(unsafe_code)]

mod channel;
pub mod client;
mod config;
mod connection;
pub mod echo;
pub mod frame;
mod loop_thread;
mod reply_memory;
pub mod server;
pub mod tigerbeetle;

pub use channel::{
    status_reply, ConnectionId, CoreSide, Injector, NetWaker, Reply, Request, ServerStats,
};
pub use client::{Client, ClientError, ReplyFrame};
pub use config::{ConfigError, ServerConfig};
pub use frame::{
    check_reply_body, check_reply_header, check_request, check_request_body, check_request_header,
    checksum, Action, FrameStatus, Header, Rejection, ReplyInvalid, RequestHeader, BODY_SIZE_MAX,
    FRAME_SIZE_MAX, HEADER_SIZE, MAGIC, PIPELINE_DEPTH_CLIENT, VERSION,
};
pub use reply_memory::reply_size_max;
pub use server::{start, ServerHandle};
