//! The frame codec of docs/protocol.md: the 64-byte header, CRC-32C checksums, frame status codes
//! and the validation of requests and replies in the order its section 4 prescribes.
//!
//! Invariants:
//! - `Header::encode` and `Header::decode` are exact inverses over all 64 bytes; neither checks
//!   anything, so a test can build any bad header byte by byte.
//! - Validation never allocates, never trusts a length field before the header checksum, and
//!   never panics on any input (a property test feeds it arbitrary bytes).
//!
//! Does not read or write sockets and does not know what the events of a body mean; the body is
//! opaque bytes whose size is checked against the operation table of the engine.

use std::fmt;

use clearline_engine::Operation;

/// Size in bytes of a frame header.
pub const HEADER_SIZE: usize = clearline_engine::limits::FRAME_HEADER_SIZE;
/// Size in bytes of the largest frame, header included.
pub const FRAME_SIZE_MAX: usize = clearline_engine::limits::FRAME_SIZE_MAX;
/// Size in bytes of the largest body.
pub const BODY_SIZE_MAX: usize = FRAME_SIZE_MAX - HEADER_SIZE;
/// The magic number: the bytes `C L R 1` read as a little-endian u32.
pub const MAGIC: u32 = 0x3152_4C43;
/// The protocol version this codec speaks.
pub const VERSION: u16 = 1;
/// How many requests a client may send before it reads replies (docs/protocol.md, section 7).
pub const PIPELINE_DEPTH_CLIENT: usize = 16;

const _: () = assert!(BODY_SIZE_MAX == 1_048_512);
const _: () = assert!(BODY_SIZE_MAX <= u32::MAX as usize);

/// CRC-32C (Castagnoli) of `bytes`, as used by both checksums of the header.
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// A frame status: the `status` byte of a reply header (docs/protocol.md section 4).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameStatus {
    /// The request was accepted (its events may still carry their own result codes).
    Ok = 0,
    /// The header checksum is wrong; the framing can't be trusted, so the connection closes.
    HeaderChecksumInvalid = 1,
    /// The magic number is wrong; the connection closes.
    MagicInvalid = 2,
    /// The protocol version is not one the server speaks; the connection closes.
    VersionUnsupported = 3,
    /// A reserved header byte (or a field that must be zero in requests) is not zero; the
    /// connection closes.
    HeaderReservedNotZero = 4,
    /// The operation is not one a client may send; the connection is kept.
    OperationUnknown = 5,
    /// The body size is over the maximum (connection closed) or does not match the count and
    /// the operation (connection kept).
    BodySizeInvalid = 6,
    /// The body checksum is wrong; the connection is kept.
    BodyChecksumInvalid = 7,
    /// The journal is full: writes are refused, reads are still served.
    StorageFull = 8,
    /// The server is shutting down; the connection closes.
    ShuttingDown = 9,
}

impl FrameStatus {
    /// Every status, in numeric order.
    pub const ALL: [FrameStatus; 10] = [
        FrameStatus::Ok,
        FrameStatus::HeaderChecksumInvalid,
        FrameStatus::MagicInvalid,
        FrameStatus::VersionUnsupported,
        FrameStatus::HeaderReservedNotZero,
        FrameStatus::OperationUnknown,
        FrameStatus::BodySizeInvalid,
        FrameStatus::BodyChecksumInvalid,
        FrameStatus::StorageFull,
        FrameStatus::ShuttingDown,
    ];

    /// The status with this wire number, if any.
    pub fn from_u8(value: u8) -> Option<FrameStatus> {
        FrameStatus::ALL.get(usize::from(value)).copied()
    }

    /// The status's name as docs/protocol.md writes it.
    pub fn name(self) -> &'static str {
        match self {
            FrameStatus::Ok => "ok",
            FrameStatus::HeaderChecksumInvalid => "header_checksum_invalid",
            FrameStatus::MagicInvalid => "magic_invalid",
            FrameStatus::VersionUnsupported => "version_unsupported",
            FrameStatus::HeaderReservedNotZero => "header_reserved_not_zero",
            FrameStatus::OperationUnknown => "operation_unknown",
            FrameStatus::BodySizeInvalid => "body_size_invalid",
            FrameStatus::BodyChecksumInvalid => "body_checksum_invalid",
            FrameStatus::StorageFull => "storage_full",
            FrameStatus::ShuttingDown => "shutting_down",
        }
    }
}

impl fmt::Display for FrameStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The 64-byte frame header, field for field (docs/protocol.md section 2.1).
///
/// The fields hold raw wire values; nothing here is validated. Use [`check_request_header`] or
/// [`check_reply_header`] on received bytes before trusting a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// CRC-32C of header bytes 4..64.
    pub header_checksum: u32,
    /// CRC-32C of the body (0 for an empty body).
    pub body_checksum: u32,
    /// Must be [`MAGIC`].
    pub magic: u32,
    /// Must be [`VERSION`].
    pub version: u16,
    /// The operation number (docs/protocol.md section 5).
    pub operation: u8,
    /// Requests: 0; replies: a [`FrameStatus`] number.
    pub status: u8,
    /// Chosen by the client, echoed in the reply.
    pub request_id: u64,
    /// Bytes after the header.
    pub body_size: u32,
    /// Events in the body (requests) or results (replies).
    pub count: u32,
    /// Requests: 0; replies: the engine timestamp of the request's last event.
    pub timestamp: u64,
    /// Requests: 0; replies: the journal sequence of the request.
    pub sequence: u64,
    /// Must be zero.
    pub reserved: [u8; 16],
}

impl Header {
    /// A request header for `body` with both checksums filled in.
    ///
    /// The count is the number of whole events of `operation` in `body`; a body whose size is
    /// not a multiple of the event size makes a frame the server rejects, which tests rely on.
    pub fn request(operation: Operation, request_id: u64, body: &[u8]) -> Header {
        let event_size = operation.event_size();
        let count = body.len().checked_div(event_size).unwrap_or(0);
        let mut header = Header {
            operation: operation as u8,
            request_id,
            body_size: u32::try_from(body.len()).unwrap_or(u32::MAX),
            count: u32::try_from(count).unwrap_or(u32::MAX),
            ..Header::zeroed()
        };
        header.seal(body);
        header
    }

    /// A header with the magic and version set and every other field zero.
    pub fn zeroed() -> Header {
        Header {
            header_checksum: 0,
            body_checksum: 0,
            magic: MAGIC,
            version: VERSION,
            operation: 0,
            status: 0,
            request_id: 0,
            body_size: 0,
            count: 0,
            timestamp: 0,
            sequence: 0,
            reserved: [0; 16],
        }
    }

    /// Sets `body_checksum` from `body` and then `header_checksum` from the other fields.
    pub fn seal(&mut self, body: &[u8]) {
        self.body_checksum = checksum(body);
        self.seal_header();
    }

    /// Sets `header_checksum` from the other fields, leaving `body_checksum` as it is.
    pub fn seal_header(&mut self) {
        let bytes = self.encode();
        self.header_checksum = checksum(&bytes[4..]);
    }

    /// The header's 64 wire bytes, exactly as the fields say (checksums are not recomputed).
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut bytes = [0u8; HEADER_SIZE];
        bytes[0..4].copy_from_slice(&self.header_checksum.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.body_checksum.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.magic.to_le_bytes());
        bytes[12..14].copy_from_slice(&self.version.to_le_bytes());
        bytes[14] = self.operation;
        bytes[15] = self.status;
        bytes[16..24].copy_from_slice(&self.request_id.to_le_bytes());
        bytes[24..28].copy_from_slice(&self.body_size.to_le_bytes());
        bytes[28..32].copy_from_slice(&self.count.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.timestamp.to_le_bytes());
        bytes[40..48].copy_from_slice(&self.sequence.to_le_bytes());
        bytes[48..64].copy_from_slice(&self.reserved);
        bytes
    }

    /// The fields of 64 wire bytes, without any check.
    pub fn decode(bytes: &[u8; HEADER_SIZE]) -> Header {
        let mut reserved = [0u8; 16];
        reserved.copy_from_slice(&bytes[48..64]);
        Header {
            header_checksum: u32_at(bytes, 0),
            body_checksum: u32_at(bytes, 4),
            magic: u32_at(bytes, 8),
            version: u16::from_le_bytes([bytes[12], bytes[13]]),
            operation: bytes[14],
            status: bytes[15],
            request_id: u64_at(bytes, 16),
            body_size: u32_at(bytes, 24),
            count: u32_at(bytes, 28),
            timestamp: u64_at(bytes, 32),
            sequence: u64_at(bytes, 40),
            reserved,
        }
    }
}

fn u32_at(bytes: &[u8; HEADER_SIZE], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8; HEADER_SIZE], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

/// What the server does with a connection after a frame-level error reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Keep the connection: the framing is intact and the next frame follows the body.
    Keep,
    /// Send the error reply (when it can) and close the connection.
    Close,
}

/// A request the server refuses at frame level: the status to reply with and what to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The status of the reply (never [`FrameStatus::Ok`]).
    pub status: FrameStatus,
    /// Whether the connection survives.
    pub action: Action,
}

impl Rejection {
    fn close(status: FrameStatus) -> Rejection {
        Rejection {
            status,
            action: Action::Close,
        }
    }

    fn keep(status: FrameStatus) -> Rejection {
        Rejection {
            status,
            action: Action::Keep,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Keep => "connection kept",
            Action::Close => "connection closed",
        };
        write!(f, "{} ({})", self.status, action)
    }
}

/// A request header that passed every header check, with its operation resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// The decoded header.
    pub header: Header,
    /// The operation, a client operation (never the internal pulse).
    pub operation: Operation,
}

/// Checks a request header in the docs/protocol.md order: header checksum, magic, version,
/// reserved header bytes, operation, body size and count. The body checksum is checked later by
/// [`check_request_body`], once the body has arrived.
///
/// The fields `status`, `timestamp` and `sequence` must be zero in requests, so this counts them
/// with the reserved bytes. The internal pulse operation is unknown to clients.
///
/// # Errors
///
/// The first check that fails, with the reply status and whether the connection is kept. A
/// kept connection must skip `body_size` bytes (at most [`BODY_SIZE_MAX`]) to find the next
/// frame; an unknown operation with a body over the maximum is therefore closed, because its
/// body cannot be skipped within the limits.
pub fn check_request_header(bytes: &[u8; HEADER_SIZE]) -> Result<RequestHeader, Rejection> {
    let header = check_common(bytes)?;
    if header.status != 0 || header.timestamp != 0 || header.sequence != 0 {
        return Err(Rejection::close(FrameStatus::HeaderReservedNotZero));
    }
    let body_size = header.body_size as usize;
    let Some(operation) = Operation::from_u8(header.operation) else {
        return Err(unknown_operation(body_size));
    };
    if !operation.is_client_operation() {
        return Err(unknown_operation(body_size));
    }
    if body_size > BODY_SIZE_MAX {
        return Err(Rejection::close(FrameStatus::BodySizeInvalid));
    }
    let (events_min, events_max) = operation.events_range();
    if header.count < events_min || header.count > events_max {
        return Err(Rejection::keep(FrameStatus::BodySizeInvalid));
    }
    // Both factors fit in 32 bits, so the product fits in 64 without overflow.
    let size_expected = u64::from(header.count) * operation.event_size() as u64;
    if size_expected != u64::from(header.body_size) {
        return Err(Rejection::keep(FrameStatus::BodySizeInvalid));
    }
    Ok(RequestHeader { header, operation })
}

fn unknown_operation(body_size: usize) -> Rejection {
    if body_size > BODY_SIZE_MAX {
        Rejection::close(FrameStatus::OperationUnknown)
    } else {
        Rejection::keep(FrameStatus::OperationUnknown)
    }
}

/// The checks requests and replies share: header checksum, magic, version, reserved bytes.
fn check_common(bytes: &[u8; HEADER_SIZE]) -> Result<Header, Rejection> {
    let header = Header::decode(bytes);
    if checksum(&bytes[4..]) != header.header_checksum {
        return Err(Rejection::close(FrameStatus::HeaderChecksumInvalid));
    }
    if header.magic != MAGIC {
        return Err(Rejection::close(FrameStatus::MagicInvalid));
    }
    if header.version != VERSION {
        return Err(Rejection::close(FrameStatus::VersionUnsupported));
    }
    if header.reserved != [0; 16] {
        return Err(Rejection::close(FrameStatus::HeaderReservedNotZero));
    }
    Ok(header)
}

/// Checks the body of a request whose header passed [`check_request_header`].
///
/// # Errors
///
/// [`FrameStatus::BodyChecksumInvalid`] (connection kept) when the checksum does not match.
///
/// # Panics
///
/// If `body` is not `body_size` bytes long: the caller reads exactly that many.
pub fn check_request_body(header: &Header, body: &[u8]) -> Result<(), Rejection> {
    assert_eq!(
        body.len() as u64,
        u64::from(header.body_size),
        "body read to the wrong size"
    );
    if checksum(body) != header.body_checksum {
        return Err(Rejection::keep(FrameStatus::BodyChecksumInvalid));
    }
    Ok(())
}

/// Checks a whole request frame (header and body), as the server does in two steps.
///
/// # Errors
///
/// As [`check_request_header`], then [`FrameStatus::BodySizeInvalid`] (kept) when `frame` is
/// not exactly header plus `body_size` bytes, then as [`check_request_body`].
pub fn check_request(frame: &[u8]) -> Result<RequestHeader, Rejection> {
    let Some(header_bytes) = frame.first_chunk::<HEADER_SIZE>() else {
        return Err(Rejection::close(FrameStatus::BodySizeInvalid));
    };
    let request = check_request_header(header_bytes)?;
    let body = &frame[HEADER_SIZE..];
    if body.len() as u64 != u64::from(request.header.body_size) {
        return Err(Rejection::keep(FrameStatus::BodySizeInvalid));
    }
    check_request_body(&request.header, body)?;
    Ok(request)
}

/// Why a reply frame cannot be trusted (checked by the client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyInvalid {
    /// One of the shared header checks failed (checksum, magic, version, reserved bytes).
    Header(FrameStatus),
    /// The status byte is not a known frame status.
    StatusUnknown(u8),
    /// The operation byte is not a client operation.
    OperationUnknown(u8),
    /// The body size is over the maximum, not `count x reply item size`, or not empty for a
    /// status other than ok.
    BodySizeInvalid,
    /// The body checksum does not match.
    BodyChecksumInvalid,
}

impl fmt::Display for ReplyInvalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyInvalid::Header(status) => write!(f, "reply header invalid: {status}"),
            ReplyInvalid::StatusUnknown(value) => write!(f, "reply status {value} unknown"),
            ReplyInvalid::OperationUnknown(value) => write!(f, "reply operation {value} unknown"),
            ReplyInvalid::BodySizeInvalid => f.write_str("reply body size invalid"),
            ReplyInvalid::BodyChecksumInvalid => f.write_str("reply body checksum invalid"),
        }
    }
}

/// Checks a reply header: the shared checks, a known status, and a body size that is
/// `count x reply item size` for status ok (empty otherwise). Replies to frames with an unknown
/// operation echo that operation, so the size rule applies only to known operations.
///
/// # Errors
///
/// The first check that fails.
pub fn check_reply_header(bytes: &[u8; HEADER_SIZE]) -> Result<Header, ReplyInvalid> {
    let header = check_common(bytes).map_err(|rejection| ReplyInvalid::Header(rejection.status))?;
    let Some(status) = FrameStatus::from_u8(header.status) else {
        return Err(ReplyInvalid::StatusUnknown(header.status));
    };
    if header.body_size as usize > BODY_SIZE_MAX {
        return Err(ReplyInvalid::BodySizeInvalid);
    }
    if status != FrameStatus::Ok {
        if header.body_size != 0 || header.count != 0 {
            return Err(ReplyInvalid::BodySizeInvalid);
        }
        return Ok(header);
    }
    let operation = Operation::from_u8(header.operation)
        .filter(|operation| operation.is_client_operation())
        .ok_or(ReplyInvalid::OperationUnknown(header.operation))?;
    let size_expected = u64::from(header.count) * operation.reply_item_size() as u64;
    if size_expected != u64::from(header.body_size) {
        return Err(ReplyInvalid::BodySizeInvalid);
    }
    Ok(header)
}

/// Checks the body of a reply whose header passed [`check_reply_header`].
///
/// # Errors
///
/// [`ReplyInvalid::BodySizeInvalid`] when `body` is not `body_size` bytes,
/// [`ReplyInvalid::BodyChecksumInvalid`] when the checksum does not match.
pub fn check_reply_body(header: &Header, body: &[u8]) -> Result<(), ReplyInvalid> {
    if body.len() as u64 != u64::from(header.body_size) {
        return Err(ReplyInvalid::BodySizeInvalid);
    }
    if checksum(body) != header.body_checksum {
        return Err(ReplyInvalid::BodyChecksumInvalid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_the_castagnoli_check_value() {
        assert_eq!(checksum(b"123456789"), 0xE306_9283);
        assert_eq!(checksum(b""), 0);
    }

    #[test]
    fn status_numbers_round_trip() {
        for (index, status) in FrameStatus::ALL.iter().enumerate() {
            assert_eq!(*status as usize, index);
            assert_eq!(FrameStatus::from_u8(*status as u8), Some(*status));
        }
        assert_eq!(FrameStatus::from_u8(10), None);
        assert_eq!(FrameStatus::from_u8(255), None);
    }

    #[test]
    fn magic_spells_clr1() {
        assert_eq!(&MAGIC.to_le_bytes(), b"CLR1");
    }
}
