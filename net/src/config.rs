//! The server's limits: [`ServerConfig`], a named default for each, and the checks that they
//! can work together. Read by the event loop and by each connection; holds no state.

use std::net::SocketAddr;
use std::time::Duration;

use crate::frame::{BODY_SIZE_MAX, HEADER_SIZE, PIPELINE_DEPTH_CLIENT};
use crate::reply_memory::{CLASS_SIZE_MAX, QUERY_BODY_SIZE_MAX};

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
