//! The frame codec of docs/protocol.md: the 64-byte header, CRC-32C checksums, frame status codes,
//! the request flags, the [`Redirect`] record a `not_primary` reply carries, and the validation
//! of requests and replies in the order its section 4 prescribes.
//!
//! Invariants:
//! - `Header::encode` and `Header::decode` are exact inverses over all 64 bytes; neither checks
//!   anything, so a test can build any bad header byte by byte. The same holds for
//!   `Redirect::encode` and `Redirect::decode` over its 40 bytes; [`check_redirect`] validates.
//! - Validation never allocates, never trusts a length field before the header checksum, and
//!   never panics on any input (a property test feeds it arbitrary bytes).
//! - A request whose flags hold a bit this codec does not know is refused like a non-zero
//!   reserved byte, so a flag added later can never be silently ignored by an older server.
//!
//! Does not read or write sockets and does not know what the events of a body mean; the body is
//! opaque bytes whose size is checked against the operation table of the engine.

use std::fmt;
use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

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
    /// This server is a backup (or a deposed primary): the request was not executed. The body is
    /// one [`Redirect`] naming the primary if it is known. The connection is kept. Added within
    /// protocol version 1 with replication (docs/protocol.md section 4.1).
    NotPrimary = 10,
}

impl FrameStatus {
    /// Every status, in numeric order.
    pub const ALL: [FrameStatus; 11] = [
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
        FrameStatus::NotPrimary,
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
            FrameStatus::NotPrimary => "not_primary",
        }
    }

    /// The body size a reply with this status, `operation` and `count` must have, or `None`
    /// when `count` is not allowed with this status (docs/protocol.md section 4):
    ///
    /// - ok: `count x` the operation's reply item size;
    /// - `not_primary`: exactly one [`Redirect`], so `count` must be 1;
    /// - every other status: no body, so `count` must be 0.
    ///
    /// The server checks its replies with this and the client checks what it receives.
    pub fn reply_body_size(self, operation: Operation, count: u32) -> Option<u64> {
        match self {
            // Both factors fit in 32 bits, so the product fits in 64 without overflow.
            FrameStatus::Ok => Some(u64::from(count) * operation.reply_item_size() as u64),
            FrameStatus::NotPrimary => (count == 1).then_some(Redirect::SIZE as u64),
            _ => (count == 0).then_some(0),
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
    /// Requests: 0; replies: the journal sequence of the request (for a read that carries
    /// [`RequestFlags::READ_FROM_BACKUP`], the sequence the state it read reflects).
    pub sequence: u64,
    /// Header bytes 48..64. In replies all zero. In requests bytes 48..62 are zero and bytes
    /// 62..64 are the request flags, read and written with [`Header::request_flags`] and
    /// [`Header::set_request_flags`].
    // The flags stay inside this array instead of a field of their own so that code indexing
    // the 16 bytes (tests that set each reserved byte) keeps compiling and keeps its meaning:
    // every byte but the known flag bits is still refused.
    pub reserved: [u8; 16],
}

/// Offset of the request flags (a u16) in the header: the last two bytes of 48..64, so that
/// bytes 48..56 stay free for an aligned u64 field later.
pub const REQUEST_FLAGS_OFFSET: usize = 62;
const REQUEST_FLAGS_INDEX: usize = REQUEST_FLAGS_OFFSET - 48;
const _: () = assert!(REQUEST_FLAGS_INDEX + 2 == 16);

/// The flags of a request header (docs/protocol.md section 2.3), a u16 bitset at byte
/// [`REQUEST_FLAGS_OFFSET`]. Zero in replies. A request with a bit not listed here is refused
/// with `header_reserved_not_zero`, as a non-zero reserved byte was before flags existed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RequestFlags(u16);

impl RequestFlags {
    /// No flag set: what every client sent before flags existed.
    pub const NONE: RequestFlags = RequestFlags(0);
    /// Bit 0: a backup may serve this request if it is a read; its reply's `sequence` is the
    /// journal sequence the read reflects. Added within version 1 with replication.
    pub const READ_FROM_BACKUP: RequestFlags = RequestFlags(1 << 0);
    /// Every bit with a meaning.
    const KNOWN: u16 = RequestFlags::READ_FROM_BACKUP.0;

    /// The flags with these raw bits (unknown bits included, so a test can send them).
    pub const fn from_bits(bits: u16) -> RequestFlags {
        RequestFlags(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Whether a backup may serve this request (if it is a read).
    pub const fn read_from_backup(self) -> bool {
        self.0 & RequestFlags::READ_FROM_BACKUP.0 != 0
    }

    /// These flags with `flag`'s bits set (`on`) or cleared.
    pub const fn with(self, flag: RequestFlags, on: bool) -> RequestFlags {
        if on {
            RequestFlags(self.0 | flag.0)
        } else {
            RequestFlags(self.0 & !flag.0)
        }
    }

    /// The bits set that have no meaning (a request with any is refused).
    pub const fn unknown_bits(self) -> u16 {
        self.0 & !RequestFlags::KNOWN
    }
}

impl Header {
    /// A request header for `body` with both checksums filled in.
    ///
    /// The count is the number of whole events of `operation` in `body`; a body whose size is
    /// not a multiple of the event size makes a frame the server rejects, which tests rely on.
    pub fn request(operation: Operation, request_id: u64, body: &[u8]) -> Header {
        Header::request_flagged(operation, request_id, RequestFlags::NONE, body)
    }

    /// As [`Header::request`], with `flags` in the header (checksums computed once, after).
    pub fn request_flagged(
        operation: Operation,
        request_id: u64,
        flags: RequestFlags,
        body: &[u8],
    ) -> Header {
        let event_size = operation.event_size();
        let count = body.len().checked_div(event_size).unwrap_or(0);
        let mut header = Header {
            operation: operation as u8,
            request_id,
            body_size: u32::try_from(body.len()).unwrap_or(u32::MAX),
            count: u32::try_from(count).unwrap_or(u32::MAX),
            ..Header::zeroed()
        };
        header.set_request_flags(flags);
        header.seal(body);
        header
    }

    /// The request flags: bytes 62..64, little-endian (raw, unknown bits included).
    pub fn request_flags(&self) -> RequestFlags {
        let index = REQUEST_FLAGS_INDEX;
        RequestFlags(u16::from_le_bytes([
            self.reserved[index],
            self.reserved[index + 1],
        ]))
    }

    /// Writes the request flags into bytes 62..64; reseal the header afterwards.
    pub fn set_request_flags(&mut self, flags: RequestFlags) {
        let index = REQUEST_FLAGS_INDEX;
        self.reserved[index..index + 2].copy_from_slice(&flags.0.to_le_bytes());
    }

    /// Whether the request asks to be served by a backup if it is a read
    /// ([`RequestFlags::READ_FROM_BACKUP`]). The server core reads it on `request.header`.
    pub fn read_from_backup(&self) -> bool {
        self.request_flags().read_from_backup()
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
/// with the reserved bytes, and so are request flag bits that have no meaning. The internal
/// pulse operation is unknown to clients.
///
/// # Errors
///
/// The first check that fails, with the reply status and whether the connection is kept. A
/// kept connection must skip `body_size` bytes (at most [`BODY_SIZE_MAX`]) to find the next
/// frame; an unknown operation with a body over the maximum is therefore closed, because its
/// body cannot be skipped within the limits.
pub fn check_request_header(bytes: &[u8; HEADER_SIZE]) -> Result<RequestHeader, Rejection> {
    let header = check_common(bytes)?;
    let reserved_not_zero = header.reserved[..REQUEST_FLAGS_INDEX] != [0; REQUEST_FLAGS_INDEX];
    if reserved_not_zero || header.request_flags().unknown_bits() != 0 {
        return Err(Rejection::close(FrameStatus::HeaderReservedNotZero));
    }
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

/// The checks requests and replies share: header checksum, magic, version. The reserved bytes
/// differ (requests carry flags in two of them), so each caller checks its own.
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
    /// The body size is over the maximum or not what the status, operation and count call for
    /// ([`FrameStatus::reply_body_size`]).
    BodySizeInvalid,
    /// The body checksum does not match.
    BodyChecksumInvalid,
    /// The body of a `not_primary` reply is not a valid [`Redirect`].
    Redirect(RedirectInvalid),
}

impl fmt::Display for ReplyInvalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyInvalid::Header(status) => write!(f, "reply header invalid: {status}"),
            ReplyInvalid::StatusUnknown(value) => write!(f, "reply status {value} unknown"),
            ReplyInvalid::OperationUnknown(value) => write!(f, "reply operation {value} unknown"),
            ReplyInvalid::BodySizeInvalid => f.write_str("reply body size invalid"),
            ReplyInvalid::BodyChecksumInvalid => f.write_str("reply body checksum invalid"),
            ReplyInvalid::Redirect(invalid) => write!(f, "not_primary reply: {invalid}"),
        }
    }
}

/// Checks a reply header: the shared checks, zero reserved bytes (replies carry no flags), a
/// known status, and the body size [`FrameStatus::reply_body_size`] calls for: `count x reply
/// item size` for ok, one [`Redirect`] for `not_primary`, empty otherwise. Replies to frames
/// with an unknown operation echo that operation, so the operation must be known only for ok.
///
/// # Errors
///
/// The first check that fails.
pub fn check_reply_header(bytes: &[u8; HEADER_SIZE]) -> Result<Header, ReplyInvalid> {
    let header = check_common(bytes).map_err(|rejection| ReplyInvalid::Header(rejection.status))?;
    if header.reserved != [0; 16] {
        return Err(ReplyInvalid::Header(FrameStatus::HeaderReservedNotZero));
    }
    let Some(status) = FrameStatus::from_u8(header.status) else {
        return Err(ReplyInvalid::StatusUnknown(header.status));
    };
    if header.body_size as usize > BODY_SIZE_MAX {
        return Err(ReplyInvalid::BodySizeInvalid);
    }
    let operation = match Operation::from_u8(header.operation) {
        Some(operation) if operation.is_client_operation() => operation,
        _ if status == FrameStatus::Ok => {
            return Err(ReplyInvalid::OperationUnknown(header.operation));
        }
        // The size of a refusal does not depend on the operation: any stands in for it.
        _ => Operation::CreateAccounts,
    };
    let size_expected = status.reply_body_size(operation, header.count);
    if size_expected != Some(u64::from(header.body_size)) {
        return Err(ReplyInvalid::BodySizeInvalid);
    }
    Ok(header)
}

/// Checks the body of a reply whose header passed [`check_reply_header`]; the body of a
/// `not_primary` reply must also pass [`check_redirect`].
///
/// # Errors
///
/// [`ReplyInvalid::BodySizeInvalid`] when `body` is not `body_size` bytes,
/// [`ReplyInvalid::BodyChecksumInvalid`] when the checksum does not match,
/// [`ReplyInvalid::Redirect`] when a `not_primary` body is not a valid redirect.
pub fn check_reply_body(header: &Header, body: &[u8]) -> Result<(), ReplyInvalid> {
    if body.len() as u64 != u64::from(header.body_size) {
        return Err(ReplyInvalid::BodySizeInvalid);
    }
    if checksum(body) != header.body_checksum {
        return Err(ReplyInvalid::BodyChecksumInvalid);
    }
    if header.status == FrameStatus::NotPrimary as u8 {
        check_redirect(body).map_err(ReplyInvalid::Redirect)?;
    }
    Ok(())
}

/// The body of a `not_primary` reply (docs/protocol.md section 4.1): who the primary is and
/// where clients reach it, or all zero when the server knows of no primary.
///
/// Layout (40 bytes, little-endian integers):
///
/// ```text
/// offset size field
///      0    8 epoch u64     the primary's epoch; 0 when no primary is known
///      8    8 node_id u64   the primary's node id; 0 when unknown
///     16   16 address       the primary's client IP, IPv6 octets in network order (an IPv4
///                           address IPv4-mapped, ::ffff:a.b.c.d); all zero when unknown
///     32    2 port u16      the primary's client port; 0 when unknown
///     34    6 reserved      zero
/// ```
///
/// Invariant (checked by [`check_redirect`], which clients apply to what they receive): either
/// every field is zero ([`Redirect::NO_PRIMARY`]), or `epoch`, `node_id` and `port` are not
/// zero and `address` is not an unspecified address; `reserved` is always zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Redirect {
    /// The primary's epoch (docs/replication.md); 0 when no primary is known.
    pub epoch: u64,
    /// The primary's node id; 0 when no primary is known.
    pub node_id: u64,
    /// The primary's client IP address, IPv6 octets in network order; an IPv4 address is
    /// written IPv4-mapped (`::ffff:a.b.c.d`). All zero when no primary is known.
    pub address: [u8; 16],
    /// The primary's client port (little-endian on the wire, like every integer of the
    /// protocol); 0 when no primary is known.
    pub port: u16,
    /// Must be zero.
    pub reserved: [u8; 6],
}

const _: () = assert!(size_of::<Redirect>() == Redirect::SIZE);
const _: () = assert!(offset_of!(Redirect, epoch) == 0);
const _: () = assert!(offset_of!(Redirect, node_id) == 8);
const _: () = assert!(offset_of!(Redirect, address) == 16);
const _: () = assert!(offset_of!(Redirect, port) == 32);
const _: () = assert!(offset_of!(Redirect, reserved) == 34);

impl Redirect {
    /// Encoded size in bytes.
    pub const SIZE: usize = 40;

    /// No primary is known: every field zero. A client waits briefly and retries.
    pub const NO_PRIMARY: Redirect = Redirect {
        epoch: 0,
        node_id: 0,
        address: [0; 16],
        port: 0,
        reserved: [0; 6],
    };

    /// The redirect naming the primary of `epoch` with `node_id`, reached by clients at
    /// `client_address` (as in the leader key, docs/replication.md).
    ///
    /// # Errors
    ///
    /// [`RedirectInvalid::PrimaryIncomplete`] if `epoch`, `node_id` or the port is 0 or the IP
    /// address is unspecified (`0.0.0.0`, `::`): a client could not use it. Send
    /// [`Redirect::NO_PRIMARY`] instead.
    pub fn primary(
        epoch: u64,
        node_id: u64,
        client_address: SocketAddr,
    ) -> Result<Redirect, RedirectInvalid> {
        let ip = match client_address.ip() {
            IpAddr::V4(ip) => ip.to_ipv6_mapped(),
            IpAddr::V6(ip) => ip,
        };
        let redirect = Redirect {
            epoch,
            node_id,
            address: ip.octets(),
            port: client_address.port(),
            reserved: [0; 6],
        };
        redirect.check()?;
        Ok(redirect)
    }

    /// Whether this names a primary (otherwise it is [`Redirect::NO_PRIMARY`]).
    pub fn is_primary_known(&self) -> bool {
        *self != Redirect::NO_PRIMARY
    }

    /// The primary's client address, if one is named: an IPv4-mapped address comes back as
    /// IPv4.
    pub fn primary_address(&self) -> Option<SocketAddr> {
        if !self.is_primary_known() {
            return None;
        }
        let ip = Ipv6Addr::from(self.address);
        let ip = match ip.to_ipv4_mapped() {
            Some(ip) => IpAddr::V4(ip),
            None => IpAddr::V6(ip),
        };
        Some(SocketAddr::new(ip, self.port))
    }

    /// The 40 wire bytes, exactly as the fields say (nothing checked).
    pub fn encode(&self, bytes: &mut [u8; Redirect::SIZE]) {
        bytes[0..8].copy_from_slice(&self.epoch.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.node_id.to_le_bytes());
        bytes[16..32].copy_from_slice(&self.address);
        bytes[32..34].copy_from_slice(&self.port.to_le_bytes());
        bytes[34..40].copy_from_slice(&self.reserved);
    }

    /// The fields of 40 wire bytes, without any check (see [`check_redirect`]).
    pub fn decode(bytes: &[u8; Redirect::SIZE]) -> Redirect {
        let mut epoch = [0u8; 8];
        epoch.copy_from_slice(&bytes[0..8]);
        let mut node_id = [0u8; 8];
        node_id.copy_from_slice(&bytes[8..16]);
        let mut address = [0u8; 16];
        address.copy_from_slice(&bytes[16..32]);
        let mut reserved = [0u8; 6];
        reserved.copy_from_slice(&bytes[34..40]);
        Redirect {
            epoch: u64::from_le_bytes(epoch),
            node_id: u64::from_le_bytes(node_id),
            address,
            port: u16::from_le_bytes([bytes[32], bytes[33]]),
            reserved,
        }
    }

    /// The invariant of the type's documentation, in that order: reserved, then completeness.
    fn check(&self) -> Result<(), RedirectInvalid> {
        if self.reserved != [0; 6] {
            return Err(RedirectInvalid::ReservedNotZero);
        }
        if !self.is_primary_known() {
            return Ok(());
        }
        let ip = Ipv6Addr::from(self.address);
        let unspecified =
            ip.is_unspecified() || ip.to_ipv4_mapped().is_some_and(|ip| ip.is_unspecified());
        if self.epoch == 0 || self.node_id == 0 || self.port == 0 || unspecified {
            return Err(RedirectInvalid::PrimaryIncomplete);
        }
        Ok(())
    }
}

/// Why bytes are not a valid [`Redirect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectInvalid {
    /// The body is not exactly [`Redirect::SIZE`] bytes.
    SizeInvalid {
        /// The size received.
        size: usize,
    },
    /// A reserved byte is not zero.
    ReservedNotZero,
    /// Some fields name a primary and others are zero (or the address is unspecified): neither
    /// a primary a client can reach nor "no primary known".
    PrimaryIncomplete,
}

impl fmt::Display for RedirectInvalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedirectInvalid::SizeInvalid { size } => {
                write!(f, "redirect of {size} bytes, not {}", Redirect::SIZE)
            }
            RedirectInvalid::ReservedNotZero => f.write_str("redirect reserved bytes not zero"),
            RedirectInvalid::PrimaryIncomplete => {
                f.write_str("redirect names a primary only in part")
            }
        }
    }
}

/// Decodes and checks a redirect body: exactly [`Redirect::SIZE`] bytes, reserved bytes zero,
/// and either no primary (all zero) or a complete one (see [`Redirect`]).
///
/// # Errors
///
/// The first check that fails, in that order.
pub fn check_redirect(body: &[u8]) -> Result<Redirect, RedirectInvalid> {
    let Ok(bytes) = <&[u8; Redirect::SIZE]>::try_from(body) else {
        return Err(RedirectInvalid::SizeInvalid { size: body.len() });
    };
    let redirect = Redirect::decode(bytes);
    redirect.check()?;
    Ok(redirect)
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
        assert_eq!(FrameStatus::from_u8(11), None);
        assert_eq!(FrameStatus::from_u8(255), None);
    }

    #[test]
    fn magic_spells_clr1() {
        assert_eq!(&MAGIC.to_le_bytes(), b"CLR1");
    }
}
