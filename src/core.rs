//! The core: the one thread that owns the engine. It assigns timestamps, appends each write to
//! the journal before applying it, and applies it to the engine.
//!
//! Timestamps: a write of `n` events gets the batch timestamp `T = max(last, now) + n`, so event
//! `i` gets `T - n + i + 1`; timestamps strictly increase and are close to the wall clock. The
//! wall clock is read here, never in the engine, and the chosen `T` is journaled with the
//! request, so replay gives the engine exactly the same inputs.
//!
//! Durability: `apply` returns the journal sequence of a write; its reply may leave only once
//! that sequence is durable. A read is gated on the last written sequence, so it never reveals a
//! write that could still be lost.

use std::time::{SystemTime, UNIX_EPOCH};

use clearline_engine::{Config, Engine, Operation};
use clearline_journal::{Journal, JournalError, Recovery};

use crate::record;

/// Size of the reply scratch: the largest frame body.
pub const REPLY_SIZE_MAX: usize = 1_048_576 - 64;

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What applying one request produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Batch timestamp (0 for reads).
    pub timestamp: u64,
    /// Journal sequence of the write (0 for reads).
    pub sequence: u64,
    /// The reply may leave once this sequence is durable.
    pub gate: u64,
    /// Bytes of reply written.
    pub reply_size: usize,
}

/// Why a request was not applied.
#[derive(Debug)]
pub enum ApplyError {
    /// The journal has no room: writes are refused, reads still served.
    StorageFull,
    /// Any other journal failure: the server must stop.
    Journal(JournalError),
}

/// How often the core asks the engine whether a pending transfer is due to expire.
const PULSE_INTERVAL_NS: u64 = 100_000_000;

/// The engine, its journal and the clock state.
pub struct Core {
    engine: Engine,
    journal: Journal,
    timestamp_last: u64,
    record: Vec<u8>,
    /// Wall-clock time (ns) at which the core next considers a pulse.
    pulse_next_ns: u64,
}

/// What recovery did, for the start-up message.
#[derive(Debug, Clone, Copy)]
pub struct Replayed {
    /// Records applied.
    pub records: u64,
    /// Timestamp of the last record.
    pub timestamp_last: u64,
}

impl Core {
    /// Builds the engine and replays the journal into it.
    ///
    /// # Errors
    /// A record that is not a valid request (the journal's checksums passed, so this means the
    /// journal was written by something else) or a journal read failure.
    pub fn recover(
        config: &Config,
        journal: Journal,
        recovery: &Recovery,
    ) -> Result<(Core, Replayed), String> {
        let mut engine = Engine::new(config);
        let mut reply = vec![0u8; REPLY_SIZE_MAX];
        let mut timestamp_last = 0u64;
        let mut records = 0u64;
        let mut failure = None;
        journal
            .replay(1, |view| {
                if failure.is_some() {
                    return;
                }
                match record::decode(view.body) {
                    Ok((operation, _count, events)) => {
                        engine.execute(operation, view.timestamp, events, &mut reply);
                        timestamp_last = timestamp_last.max(view.timestamp);
                        records += 1;
                    }
                    Err(error) => {
                        failure = Some(format!("record {}: {error}", view.sequence));
                    }
                }
            })
            .map_err(|error| format!("replay failed: {error}"))?;
        if let Some(failure) = failure {
            return Err(failure);
        }
        timestamp_last = timestamp_last.max(recovery.last_timestamp);
        let record = Vec::with_capacity(REPLY_SIZE_MAX + record::PREFIX_SIZE);
        let core = Core {
            engine,
            journal,
            timestamp_last,
            record,
            pulse_next_ns: 0,
        };
        Ok((
            core,
            Replayed {
                records,
                timestamp_last,
            },
        ))
    }

    /// The journal (for the durability handle and shutdown).
    pub fn journal_mut(&mut self) -> &mut Journal {
        &mut self.journal
    }

    /// Consumes the core, returning its journal.
    pub fn into_journal(self) -> Journal {
        self.journal
    }

    fn next_timestamp(&mut self, slots: u64) -> u64 {
        let timestamp = self.timestamp_last.max(wall_clock_ns()) + slots;
        self.timestamp_last = timestamp;
        timestamp
    }

    /// Journals and applies a pulse when a pending transfer is due to expire, at most once per
    /// [`PULSE_INTERVAL_NS`]. The pulse is a journaled request like any other, so replay expires
    /// exactly what the live engine expired.
    ///
    /// # Errors
    /// As [`Core::apply`].
    pub fn pulse_if_due(&mut self, reply: &mut [u8]) -> Result<bool, ApplyError> {
        let now = wall_clock_ns();
        if now < self.pulse_next_ns {
            return Ok(false);
        }
        self.pulse_next_ns = now.saturating_add(PULSE_INTERVAL_NS);
        let due = match self.engine.expiry_next() {
            Some(expires_at) => expires_at <= self.timestamp_last.max(now),
            None => false,
        };
        if !due {
            return Ok(false);
        }
        self.apply(Operation::Pulse, 0, &[], reply)?;
        Ok(true)
    }

    /// Applies one validated request; writes the reply into `reply`.
    ///
    /// # Errors
    /// [`ApplyError::StorageFull`] when the journal cannot take the write (nothing applied);
    /// [`ApplyError::Journal`] for any other journal failure (the server must stop).
    pub fn apply(
        &mut self,
        operation: Operation,
        count: u32,
        events: &[u8],
        reply: &mut [u8],
    ) -> Result<Applied, ApplyError> {
        assert!(reply.len() >= REPLY_SIZE_MAX);
        if !operation.is_write() {
            let reply_size = self.engine.execute(operation, 0, events, reply);
            let gate = self.journal.written_sequence();
            return Ok(Applied {
                timestamp: 0,
                sequence: 0,
                gate,
                reply_size,
            });
        }
        let slots = operation.timestamp_slots(count);
        let timestamp_before = self.timestamp_last;
        let timestamp = self.next_timestamp(slots);
        record::encode(operation, count, events, &mut self.record);
        let sequence = match self.journal.append(timestamp, &self.record) {
            Ok(sequence) => sequence,
            Err(error) => {
                // Nothing was journaled, so the timestamps were not used.
                self.timestamp_last = timestamp_before;
                return Err(match error {
                    JournalError::StorageFull { .. } => ApplyError::StorageFull,
                    other => ApplyError::Journal(other),
                });
            }
        };
        let reply_size = self.engine.execute(operation, timestamp, events, reply);
        Ok(Applied {
            timestamp,
            sequence,
            gate: sequence,
            reply_size,
        })
    }
}
