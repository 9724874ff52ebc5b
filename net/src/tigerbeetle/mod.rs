//! TigerBeetle's client protocol (release 0.17.8) for a cluster of one replica.
//!
//! Official TigerBeetle clients speak to clearline on a port of their own, through a gateway
//! that turns their messages into ordinary core requests:
//! - [`checksum`]: the AEGIS-128L checksum of headers and bodies;
//! - [`header`]: the 256-byte headers the gateway reads (request, ping) and writes (reply,
//!   pong, eviction), with every rule the clients check;
//! - [`multi_batch`]: bodies that carry several batches of one operation, and their trailers;
//! - [`session`]: client sessions, request numbering, repeated requests and evictions;
//! - [`gateway`]: the mio loop that frames messages, applies the session rules and feeds each
//!   batch to the core through the same queue, journal and durability gate as our own protocol.
//!
//! Everything but the gateway deals in bytes and integers only. The protocol is described in
//! `docs/tigerbeetle-compatibility.md`.

pub mod checksum;
pub mod gateway;
pub mod header;
pub mod multi_batch;
pub mod session;
