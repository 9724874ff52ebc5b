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

use clearline_engine::Operation;

/// Size of the prefix before the events.
pub const PREFIX_SIZE: usize = 16;

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
}
