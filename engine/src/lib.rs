//! The clearline engine: the deterministic state machine for accounts, transfers, markets and
//! orders.
//!
//! It does no I/O, reads no clock, spawns no threads and allocates nothing after creation; time
//! arrives inside commands.
#![forbid(unsafe_code)]

pub mod limits;
mod operation;

pub use operation::Operation;
pub mod book;
pub mod market;
pub mod order;
