//! The body of a journal record: one request as the core applied it.
//!
//! ```text
//! off size field
//!   0    1 operation (engine::Operation as u8; 128 = pulse)
//!   1    3 reserved, zero
//!   4    4 count (events)
//!   8    8 reserved, zero
//!  16    n events, count x event size bytes, exactly as they arrived
//! ```
//!
//! The record's timestamp (in the journal's record header) is the batch timestamp the core
//! assigned; replay hands both back to the engine, so the engine sees exactly what it saw live.
//!
//! One record is not a request: the **epoch record**, which a node writes first when it becomes
//! the primary of a replication group (docs/replication.md). The engine never sees it.
//!
//! ```text
//! off size field
//!   0    1 224 (no operation has this number)
//!   1    3 reserved, zero
//!   4    4 count, always 1
//!   8    8 reserved, zero
//!  16    8 epoch (never zero)
//!  24    8 node id of the primary that wrote it (never zero)
//! ```

use clearline_engine::Operation;

/// Size of the prefix before the events.
pub const PREFIX_SIZE: usize = 16;

/// The first byte of an epoch record.
pub const EPOCH_RECORD_TAG: u8 = 224;
/// The size of an epoch record's body.
pub const EPOCH_RECORD_SIZE: usize = PREFIX_SIZE + 16;

/// An epoch record: the primary of `epoch`, node `node_id`, wrote the records after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochRecord {
    /// The primary's epoch (never zero).
    pub epoch: u64,
    /// The primary's node id (never zero).
    pub node_id: u64,
}

/// Writes an epoch record's body into `out` (cleared first).
pub fn encode_epoch(record: EpochRecord, out: &mut Vec<u8>) {
    assert!(record.epoch != 0 && record.node_id != 0);
    out.clear();
    out.push(EPOCH_RECORD_TAG);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&record.epoch.to_le_bytes());
    out.extend_from_slice(&record.node_id.to_le_bytes());
}

/// The epoch record `body` holds; `None` when it is not one (a request, or damaged).
pub fn decode_epoch(body: &[u8]) -> Option<EpochRecord> {
    if body.len() != EPOCH_RECORD_SIZE || body[0] != EPOCH_RECORD_TAG {
        return None;
    }
    let prefix_ok =
        body[1..4] == [0; 3] && body[4..8] == 1u32.to_le_bytes() && body[8..16] == [0; 8];
    let field = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let record = EpochRecord {
        epoch: field(16),
        node_id: field(24),
    };
    (prefix_ok && record.epoch != 0 && record.node_id != 0).then_some(record)
}

/// What a journal record's body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journaled<'a> {
    /// The epoch record of a new primary.
    Epoch(EpochRecord),
    /// A write request: its operation, count and events.
    Write(Operation, u32, &'a [u8]),
}

/// Reads a journal record's body: an epoch record or a write request. Replay and a backup's
/// core read records with it alike.
///
/// # Errors
/// Why the body is neither (a read is never journaled), in words for the operator.
pub fn decode_journaled(body: &[u8]) -> Result<Journaled<'_>, String> {
    if let Some(epoch) = decode_epoch(body) {
        return Ok(Journaled::Epoch(epoch));
    }
    match decode(body) {
        Ok((operation, _, _)) if !operation.is_write() => Err(format!(
            "the body is not a write request ({} is a read, never journaled)",
            operation.name()
        )),
        Ok((operation, count, events)) => Ok(Journaled::Write(operation, count, events)),
        Err(error) => Err(format!("the body is not a request ({error})")),
    }
}

/// Why a record body cannot be a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Shorter than the prefix.
    TooShort,
    /// The operation byte names no operation.
    OperationUnknown(u8),
    /// Reserved bytes are not zero.
    ReservedNotZero,
    /// The count is outside the operation's range.
    CountInvalid(u32),
    /// The events do not fill the body exactly.
    SizeMismatch,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::TooShort => write!(f, "record body shorter than its prefix"),
            RecordError::OperationUnknown(value) => write!(f, "unknown operation {value}"),
            RecordError::ReservedNotZero => write!(f, "reserved bytes are not zero"),
            RecordError::CountInvalid(count) => write!(f, "count {count} is out of range"),
            RecordError::SizeMismatch => write!(f, "events do not match the count"),
        }
    }
}

/// Writes the prefix and the events into `out` (cleared first; its capacity is reused).
pub fn encode(operation: Operation, count: u32, events: &[u8], out: &mut Vec<u8>) {
    assert_eq!(events.len(), count as usize * operation.event_size());
    out.clear();
    out.push(operation as u8);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(events);
}

/// Splits a record body into its operation, count and events.
pub fn decode(body: &[u8]) -> Result<(Operation, u32, &[u8]), RecordError> {
    if body.len() < PREFIX_SIZE {
        return Err(RecordError::TooShort);
    }
    let operation = Operation::from_u8(body[0]).ok_or(RecordError::OperationUnknown(body[0]))?;
    if body[1..4].iter().chain(&body[8..16]).any(|byte| *byte != 0) {
        return Err(RecordError::ReservedNotZero);
    }
    let count = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
    let events = &body[PREFIX_SIZE..];
    let (events_min, events_max) = operation.events_range();
    if count < events_min || count > events_max {
        return Err(RecordError::CountInvalid(count));
    }
    if events.len() != count as usize * operation.event_size() {
        return Err(RecordError::SizeMismatch);
    }
    Ok((operation, count, events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let events = [7u8; 256];
        let mut out = Vec::new();
        encode(Operation::CreateTransfers, 2, &events, &mut out);
        assert_eq!(out.len(), PREFIX_SIZE + 256);
        assert_eq!(&out[..8], &[2, 0, 0, 0, 2, 0, 0, 0]);
        let (operation, count, decoded) = decode(&out).expect("valid");
        assert_eq!(operation, Operation::CreateTransfers);
        assert_eq!(count, 2);
        assert_eq!(decoded, &events[..]);
    }

    #[test]
    fn rejects_damaged_bodies() {
        assert_eq!(decode(&[2; 8]), Err(RecordError::TooShort));
        let mut out = Vec::new();
        encode(Operation::Pulse, 0, &[], &mut out);
        assert!(decode(&out).is_ok());
        out[0] = 99;
        assert_eq!(decode(&out), Err(RecordError::OperationUnknown(99)));
        out[0] = 128;
        out[9] = 1;
        assert_eq!(decode(&out), Err(RecordError::ReservedNotZero));
        out[9] = 0;
        out[4] = 1;
        assert_eq!(decode(&out), Err(RecordError::CountInvalid(1)));
        encode(Operation::CreateAccounts, 1, &[0; 128], &mut out);
        out.truncate(out.len() - 1);
        assert_eq!(decode(&out), Err(RecordError::SizeMismatch));
    }

    #[test]
    fn epoch_records_round_trip_and_are_not_requests() {
        let record = EpochRecord {
            epoch: 7,
            node_id: 3,
        };
        let mut out = Vec::new();
        encode_epoch(record, &mut out);
        assert_eq!(out.len(), EPOCH_RECORD_SIZE);
        assert_eq!(decode_epoch(&out), Some(record));
        assert_eq!(
            decode(&out),
            Err(RecordError::OperationUnknown(EPOCH_RECORD_TAG))
        );
        for at in 0..out.len() {
            let mut damaged = out.clone();
            damaged[at] ^= 0x10;
            let decoded = decode_epoch(&damaged);
            assert!(decoded.is_none() || at >= 16, "byte {at}");
            assert_ne!(decoded, Some(record), "byte {at}");
        }
        encode(Operation::Pulse, 0, &[], &mut out);
        assert_eq!(decode_epoch(&out), None);
    }
}
