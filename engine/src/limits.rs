//! Named limits of the engine. Every capacity is chosen when the engine is created; nothing grows
//! afterwards.

/// The most events one request may carry: a 1 MiB frame less its 64-byte header holds 8,191
/// events of 128 bytes.
pub const BATCH_EVENTS_MAX: u32 = 8191;

/// The largest timestamp (the top bit of a u64 stays clear, as in the reference ledger).
pub const TIMESTAMP_MAX: u64 = (1 << 63) - 1;

/// The most pending transfers one pulse expires; a pulse reserves this many timestamps.
pub const PULSE_EXPIRIES_MAX: u32 = 8189;
