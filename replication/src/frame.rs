//! The frames of the replication stream between a primary and a backup, drawn byte by byte in
//! docs/replication.md ("The stream's framing").
//!
//! Every frame is a 32-byte header followed by a body whose layout depends on the kind. All
//! integers are little-endian. One CRC-32C covers header bytes 4..32 and the whole body, the
//! checksum the client protocol uses (docs/protocol.md).
//!
//! Invariants:
//! - encoding writes into the caller's buffer and allocates nothing; decoding borrows from the
//!   caller's bytes and allocates nothing;
//! - a frame that [`encode`] accepts decodes to the same [`Frame`], and [`encode`] refuses what
//!   [`decode`] would refuse (one set of body rules, [`check_message`], serves both);
//! - decoding never panics and never trusts a length before bounding it: magic, version and
//!   body size are checked before waiting for the body, then the checksum, then the kind,
//!   reserved bytes and the body's own rules;
//! - [`StreamDecoder`] holds one buffer, sized once for the largest frame it accepts.
//!
//! Does not do I/O beyond [`StreamDecoder::read_from`], and does not know what the journal
//! records inside a `Records` frame mean: it checks only that their size fits whole records.

use std::fmt;
use std::io;

use clearline_journal::le::{u128_at, u16_at, u32_at, u64_at};
use clearline_journal::{RECORD_ALIGNMENT, RECORD_HEADER_SIZE};

/// Size of the frame header in bytes.
pub const FRAME_HEADER_SIZE: usize = 32;
/// "CLRS" (clearline replication stream) as a little-endian u32.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"CLRS");
/// The framing version this code writes and the only one it reads.
pub const FRAME_VERSION: u16 = 1;
/// Largest body any frame may have: 4 MiB of records or checkpoint bytes plus the fixed part.
pub const FRAME_BODY_SIZE_MAX: u32 = 4 * 1024 * 1024 + 64;

const HELLO_BODY_SIZE: usize = 32;
const RECORDS_FIXED_SIZE: usize = 16;
const ACK_BODY_SIZE: usize = 8;
const TRUNCATE_BODY_SIZE: usize = 24;
const CATCH_UP_BODY_SIZE: usize = 40;
const WELCOME_BODY_SIZE: usize = 32;
const CATCH_UP_CHUNK_FIXED_SIZE: usize = 16;
const CATCH_UP_END_BODY_SIZE: usize = 16;

const _: () = assert!(FRAME_HEADER_SIZE % 8 == 0);
const _: () = assert!(CATCH_UP_CHUNK_FIXED_SIZE as u32 <= FRAME_BODY_SIZE_MAX);
const _: () = assert!(RECORDS_FIXED_SIZE as u64 + RECORD_HEADER_SIZE <= 4096);

/// The kind byte of a frame header.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Backup to primary, first frame on a connection.
    Hello = 1,
    /// Primary to backup: journal records.
    Records = 2,
    /// Backup to primary: what the backup holds durably.
    Ack = 3,
    /// Primary to backup: drop records from a sequence on.
    Truncate = 4,
    /// Primary to backup: what a catch-up from a checkpoint sends.
    CatchUp = 5,
    /// Primary to backup: a piece of a catch-up.
    CatchUpChunk = 6,
    /// Primary to backup, first frame on a connection: the journal the backup must mirror.
    Welcome = 7,
    /// Primary to backup: the catch-up is complete.
    CatchUpEnd = 8,
}

impl Kind {
    fn from_u8(value: u8) -> Option<Kind> {
        match value {
            1 => Some(Kind::Hello),
            2 => Some(Kind::Records),
            3 => Some(Kind::Ack),
            4 => Some(Kind::Truncate),
            5 => Some(Kind::CatchUp),
            6 => Some(Kind::CatchUpChunk),
            7 => Some(Kind::Welcome),
            8 => Some(Kind::CatchUpEnd),
            _ => None,
        }
    }
}

/// One message of the stream; byte slices borrow from the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A backup introduces itself; the header's epoch is the newest epoch it knows.
    Hello {
        /// The backup's node id (never zero).
        node_id: u64,
        /// The last sequence the backup holds durably (zero for an empty journal).
        durable_sequence: u64,
        /// The header checksum of that record (zero for an empty journal), to find divergence.
        durable_checksum: u128,
    },
    /// Records exactly as they are in the primary's journal, headers and padding included.
    Records {
        /// The sequence of the first record (never zero).
        first_sequence: u64,
        /// How many records `records` holds (never zero).
        records_count: u32,
        /// The records' bytes: at least `records_count` headers, a multiple of the alignment.
        records: &'a [u8],
    },
    /// The backup holds every record up to `durable_sequence` durably.
    Ack {
        /// The highest sequence on the backup's disk.
        durable_sequence: u64,
    },
    /// The backup must drop its records from `from_sequence` on.
    Truncate {
        /// The first sequence to drop (never zero).
        from_sequence: u64,
        /// The header checksum of record `from_sequence - 1`, which both journals share (zero
        /// when `from_sequence` is 1); the backup checks it before dropping anything.
        previous_checksum: u128,
    },
    /// The backup is too far behind: it must start again from the checkpoint at
    /// `checkpoint_sequence`, whose file, the start of the segment file holding the record
    /// it covers and (with `CATCH_UP_STORE`) a copy of the history store follow in
    /// `CatchUpChunk` frames, then a `CatchUpEnd`.
    CatchUp {
        /// The last sequence the checkpoint covers (never zero).
        checkpoint_sequence: u64,
        /// The checkpoint file's size in bytes (never zero).
        checkpoint_size: u64,
        /// The id of the segment file that holds record `checkpoint_sequence`.
        segment: u64,
        /// How many bytes of that file follow: its header and its records up to and including
        /// `checkpoint_sequence` (never zero).
        segment_prefix_size: u64,
        /// [`CATCH_UP_STORE`] when a copy of the history store follows, [`CATCH_UP_LZ4`] when
        /// chunks are compressed; other bits zero.
        flags: u64,
    },
    /// `bytes` of one part of a catch-up, at `offset` in it.
    CatchUpChunk {
        /// Which part: [`CatchUpPart`].
        part: CatchUpPart,
        /// Where `bytes` go in the part (the checkpoint file, the segment prefix); for the
        /// store copy, the bytes of the copy sent before this chunk. Counted uncompressed.
        offset: u64,
        /// The chunk (not empty). A store chunk holds whole entries of the copy.
        bytes: &'a [u8],
    },
    /// The primary answers a `Hello` with the facts of the journal the backup must mirror.
    Welcome {
        /// The primary journal's generation (never zero): a backup's journal takes it.
        generation: u64,
        /// The size of the primary's segment files: the backup's must be the same.
        segment_size: u64,
        /// The first sequence the primary's journal still holds (records before it were
        /// retired after a checkpoint).
        first_sequence: u64,
        /// The last sequence the primary has written.
        written_sequence: u64,
    },
    /// Every chunk of the catch-up was sent; the backup checks the store copy's totals.
    CatchUpEnd {
        /// Entries in the store copy (zero without one).
        store_entries: u64,
        /// Bytes of the store copy (zero without one).
        store_bytes: u64,
    },
}

/// The `CatchUp` flag that says a copy of the history store follows.
pub const CATCH_UP_STORE: u64 = 1;
/// The `CatchUp` flag that says every chunk's bytes are one LZ4 block (the block format, no
/// frame) after its uncompressed size as a little-endian u32.
pub const CATCH_UP_LZ4: u64 = 2;

/// The parts of a catch-up, in the order they are sent.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUpPart {
    /// The checkpoint file.
    Checkpoint = 1,
    /// The start of the segment file, up to the checkpoint's record.
    Segment = 2,
    /// The copy of the history store (`clearline_history::History::export`).
    Store = 3,
}

impl CatchUpPart {
    fn from_u8(value: u8) -> Option<CatchUpPart> {
        match value {
            1 => Some(CatchUpPart::Checkpoint),
            2 => Some(CatchUpPart::Segment),
            3 => Some(CatchUpPart::Store),
            _ => None,
        }
    }
}

impl Message<'_> {
    /// The message's kind byte.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello { .. } => Kind::Hello,
            Message::Records { .. } => Kind::Records,
            Message::Ack { .. } => Kind::Ack,
            Message::Truncate { .. } => Kind::Truncate,
            Message::CatchUp { .. } => Kind::CatchUp,
            Message::CatchUpChunk { .. } => Kind::CatchUpChunk,
            Message::Welcome { .. } => Kind::Welcome,
            Message::CatchUpEnd { .. } => Kind::CatchUpEnd,
        }
    }

    /// Size of the message's body in bytes.
    pub fn body_size(&self) -> usize {
        match self {
            Message::Hello { .. } => HELLO_BODY_SIZE,
            Message::Records { records, .. } => RECORDS_FIXED_SIZE + records.len(),
            Message::Ack { .. } => ACK_BODY_SIZE,
            Message::Truncate { .. } => TRUNCATE_BODY_SIZE,
            Message::CatchUp { .. } => CATCH_UP_BODY_SIZE,
            Message::CatchUpChunk { bytes, .. } => CATCH_UP_CHUNK_FIXED_SIZE + bytes.len(),
            Message::Welcome { .. } => WELCOME_BODY_SIZE,
            Message::CatchUpEnd { .. } => CATCH_UP_END_BODY_SIZE,
        }
    }
}

/// A decoded frame: the sender's epoch and its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The sender's epoch: the primary's for primary frames, the newest the backup knows for
    /// backup frames. Zero only in a `Hello` from a backup that never saw a primary.
    pub epoch: u64,
    /// The message.
    pub message: Message<'a>,
}

/// What is wrong with a frame (or with a buffer given to [`encode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame needs; not an error on a stream until it ends.
    Truncated {
        /// Bytes needed to go on: the header size, or the whole frame's size once the header
        /// is known.
        frame_size: usize,
    },
    /// The header does not start with [`FRAME_MAGIC`]: not a replication stream, or lost sync.
    MagicInvalid,
    /// A framing version this code does not read.
    VersionUnsupported {
        /// The version found.
        version: u16,
    },
    /// The body is larger than the receiver's limit.
    BodyTooLarge {
        /// The body size found or asked for.
        body_size: u32,
        /// The limit in force.
        body_size_max: u32,
    },
    /// The CRC-32C does not match the bytes.
    ChecksumMismatch,
    /// A kind byte with no meaning.
    KindUnknown {
        /// The kind byte found.
        kind: u8,
    },
    /// Reserved header or body bytes are not zero.
    ReservedMustBeZero,
    /// The body size does not fit the kind's layout.
    BodySizeInvalid {
        /// The frame's kind.
        kind: Kind,
        /// The body size found.
        body_size: u32,
    },
    /// Only a `Hello` may carry epoch zero.
    EpochMustNotBeZero,
    /// A node id, sequence or count that must not be zero is zero.
    FieldMustNotBeZero {
        /// The field's name.
        field: &'static str,
    },
    /// `Records` bytes are not a multiple of the record alignment, or too few for the count.
    RecordsSizeInvalid,
    /// A catch-up chunk is empty, or names a part that does not exist.
    ChunkInvalid,
    /// A `CatchUp` sets a flag this code does not know.
    FlagsUnknown,
    /// The caller's buffer cannot hold the frame being encoded.
    BufferTooSmall {
        /// The frame's size.
        frame_size: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::Truncated { frame_size } => {
                write!(f, "truncated frame: {frame_size} bytes needed")
            }
            FrameError::MagicInvalid => write!(f, "bad magic: not a replication frame"),
            FrameError::VersionUnsupported { version } => {
                write!(
                    f,
                    "unsupported framing version {version} (this build reads 1)"
                )
            }
            FrameError::BodyTooLarge {
                body_size,
                body_size_max,
            } => {
                write!(
                    f,
                    "body of {body_size} bytes is over the limit of {body_size_max}"
                )
            }
            FrameError::ChecksumMismatch => write!(f, "checksum mismatch"),
            FrameError::KindUnknown { kind } => write!(f, "unknown frame kind {kind}"),
            FrameError::ReservedMustBeZero => write!(f, "reserved bytes are not zero"),
            FrameError::BodySizeInvalid { kind, body_size } => {
                write!(f, "a {kind:?} body cannot be {body_size} bytes")
            }
            FrameError::EpochMustNotBeZero => write!(f, "epoch zero outside a Hello"),
            FrameError::FieldMustNotBeZero { field } => write!(f, "{field} must not be zero"),
            FrameError::RecordsSizeInvalid => {
                write!(
                    f,
                    "records bytes do not hold the announced number of whole records"
                )
            }
            FrameError::ChunkInvalid => {
                write!(f, "catch-up chunk is empty or names no part")
            }
            FrameError::FlagsUnknown => write!(f, "catch-up flags this build does not know"),
            FrameError::BufferTooSmall { frame_size } => {
                write!(f, "buffer too small for a frame of {frame_size} bytes")
            }
        }
    }
}

impl std::error::Error for FrameError {}

fn put(bytes: &mut [u8], at: usize, value: &[u8]) {
    bytes[at..at + value.len()].copy_from_slice(value);
}

/// The body rules both ends apply; `epoch` is the header's.
///
/// # Errors
///
/// The first rule the message breaks.
pub fn check_message(epoch: u64, message: &Message<'_>) -> Result<(), FrameError> {
    if epoch == 0 && message.kind() != Kind::Hello {
        return Err(FrameError::EpochMustNotBeZero);
    }
    match *message {
        Message::Hello { node_id, .. } => {
            if node_id == 0 {
                return Err(FrameError::FieldMustNotBeZero { field: "node_id" });
            }
        }
        Message::Records {
            first_sequence,
            records_count,
            records,
        } => {
            if first_sequence == 0 {
                return Err(FrameError::FieldMustNotBeZero {
                    field: "first_sequence",
                });
            }
            if records_count == 0 {
                return Err(FrameError::FieldMustNotBeZero {
                    field: "records_count",
                });
            }
            let size = records.len() as u64;
            if size % RECORD_ALIGNMENT != 0 || size < u64::from(records_count) * RECORD_HEADER_SIZE
            {
                return Err(FrameError::RecordsSizeInvalid);
            }
        }
        Message::Ack { .. } => {}
        Message::Truncate { from_sequence, .. } => {
            if from_sequence == 0 {
                return Err(FrameError::FieldMustNotBeZero {
                    field: "from_sequence",
                });
            }
        }
        Message::CatchUp {
            checkpoint_sequence,
            checkpoint_size,
            segment_prefix_size,
            flags,
            ..
        } => {
            for (field, value) in [
                ("checkpoint_sequence", checkpoint_sequence),
                ("checkpoint_size", checkpoint_size),
                ("segment_prefix_size", segment_prefix_size),
            ] {
                if value == 0 {
                    return Err(FrameError::FieldMustNotBeZero { field });
                }
            }
            if flags & !(CATCH_UP_STORE | CATCH_UP_LZ4) != 0 {
                return Err(FrameError::FlagsUnknown);
            }
        }
        Message::CatchUpChunk { bytes, .. } => {
            if bytes.is_empty() {
                return Err(FrameError::ChunkInvalid);
            }
        }
        Message::CatchUpEnd { .. } => {}
        Message::Welcome {
            generation,
            segment_size,
            first_sequence,
            ..
        } => {
            if generation == 0 {
                return Err(FrameError::FieldMustNotBeZero {
                    field: "generation",
                });
            }
            if segment_size == 0 {
                return Err(FrameError::FieldMustNotBeZero {
                    field: "segment_size",
                });
            }
            if first_sequence == 0 {
                return Err(FrameError::FieldMustNotBeZero {
                    field: "first_sequence",
                });
            }
        }
    }
    Ok(())
}

/// Encodes `frame` at the start of `buffer`; returns the frame's size in bytes.
///
/// # Errors
///
/// The message breaks a body rule ([`check_message`]), its body is over
/// [`FRAME_BODY_SIZE_MAX`], or `buffer` is too small.
pub fn encode(frame: &Frame<'_>, buffer: &mut [u8]) -> Result<usize, FrameError> {
    check_message(frame.epoch, &frame.message)?;
    let body_size = frame.message.body_size();
    let body_size_u32 = u32::try_from(body_size).unwrap_or(u32::MAX);
    if body_size_u32 > FRAME_BODY_SIZE_MAX {
        return Err(FrameError::BodyTooLarge {
            body_size: body_size_u32,
            body_size_max: FRAME_BODY_SIZE_MAX,
        });
    }
    let frame_size = FRAME_HEADER_SIZE + body_size;
    if buffer.len() < frame_size {
        return Err(FrameError::BufferTooSmall { frame_size });
    }
    let out = &mut buffer[..frame_size];
    out[..FRAME_HEADER_SIZE].fill(0);
    put(out, 4, &FRAME_MAGIC.to_le_bytes());
    put(out, 8, &FRAME_VERSION.to_le_bytes());
    out[10] = frame.message.kind() as u8;
    put(out, 12, &body_size_u32.to_le_bytes());
    put(out, 16, &frame.epoch.to_le_bytes());
    let body = &mut out[FRAME_HEADER_SIZE..];
    match frame.message {
        Message::Hello {
            node_id,
            durable_sequence,
            durable_checksum,
        } => {
            put(body, 0, &node_id.to_le_bytes());
            put(body, 8, &durable_sequence.to_le_bytes());
            put(body, 16, &durable_checksum.to_le_bytes());
        }
        Message::Records {
            first_sequence,
            records_count,
            records,
        } => {
            put(body, 0, &first_sequence.to_le_bytes());
            put(body, 8, &records_count.to_le_bytes());
            put(body, 12, &[0; 4]);
            put(body, RECORDS_FIXED_SIZE, records);
        }
        Message::Ack { durable_sequence } => put(body, 0, &durable_sequence.to_le_bytes()),
        Message::Truncate {
            from_sequence,
            previous_checksum,
        } => {
            put(body, 0, &from_sequence.to_le_bytes());
            put(body, 8, &previous_checksum.to_le_bytes());
        }
        Message::CatchUp {
            checkpoint_sequence,
            checkpoint_size,
            segment,
            segment_prefix_size,
            flags,
        } => {
            put(body, 0, &checkpoint_sequence.to_le_bytes());
            put(body, 8, &checkpoint_size.to_le_bytes());
            put(body, 16, &segment.to_le_bytes());
            put(body, 24, &segment_prefix_size.to_le_bytes());
            put(body, 32, &flags.to_le_bytes());
        }
        Message::CatchUpChunk {
            part,
            offset,
            bytes,
        } => {
            put(body, 0, &[part as u8, 0, 0, 0, 0, 0, 0, 0]);
            put(body, 8, &offset.to_le_bytes());
            put(body, CATCH_UP_CHUNK_FIXED_SIZE, bytes);
        }
        Message::CatchUpEnd {
            store_entries,
            store_bytes,
        } => {
            put(body, 0, &store_entries.to_le_bytes());
            put(body, 8, &store_bytes.to_le_bytes());
        }
        Message::Welcome {
            generation,
            segment_size,
            first_sequence,
            written_sequence,
        } => {
            put(body, 0, &generation.to_le_bytes());
            put(body, 8, &segment_size.to_le_bytes());
            put(body, 16, &first_sequence.to_le_bytes());
            put(body, 24, &written_sequence.to_le_bytes());
        }
    }
    let checksum = crc32c::crc32c(&out[4..]);
    put(out, 0, &checksum.to_le_bytes());
    Ok(frame_size)
}

/// Decodes the frame at the start of `bytes`; returns it and its size in bytes.
///
/// # Errors
///
/// [`FrameError::Truncated`] if `bytes` holds only part of a frame (more may come), any other
/// variant if the frame is malformed (the connection should be closed).
pub fn decode(bytes: &[u8], body_size_max: u32) -> Result<(Frame<'_>, usize), FrameError> {
    parse(bytes, body_size_max, Checksum::Verify)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Checksum {
    Verify,
    /// The same bytes were verified a moment ago ([`StreamDecoder::next_frame`]).
    AlreadyVerified,
}

fn parse(
    bytes: &[u8],
    body_size_max: u32,
    checksum: Checksum,
) -> Result<(Frame<'_>, usize), FrameError> {
    if bytes.len() < FRAME_HEADER_SIZE {
        return Err(FrameError::Truncated {
            frame_size: FRAME_HEADER_SIZE,
        });
    }
    if u32_at(bytes, 4) != FRAME_MAGIC {
        return Err(FrameError::MagicInvalid);
    }
    let version = u16_at(bytes, 8);
    if version != FRAME_VERSION {
        return Err(FrameError::VersionUnsupported { version });
    }
    let body_size = u32_at(bytes, 12);
    let body_size_max = body_size_max.min(FRAME_BODY_SIZE_MAX);
    if body_size > body_size_max {
        return Err(FrameError::BodyTooLarge {
            body_size,
            body_size_max,
        });
    }
    // Bounded by FRAME_BODY_SIZE_MAX just above, so the sum cannot overflow.
    let frame_size = FRAME_HEADER_SIZE + body_size as usize;
    if bytes.len() < frame_size {
        return Err(FrameError::Truncated { frame_size });
    }
    let frame_bytes = &bytes[..frame_size];
    if checksum == Checksum::Verify && crc32c::crc32c(&frame_bytes[4..]) != u32_at(bytes, 0) {
        return Err(FrameError::ChecksumMismatch);
    }
    let Some(kind) = Kind::from_u8(bytes[10]) else {
        return Err(FrameError::KindUnknown { kind: bytes[10] });
    };
    if bytes[11] != 0 || u64_at(bytes, 24) != 0 {
        return Err(FrameError::ReservedMustBeZero);
    }
    let epoch = u64_at(bytes, 16);
    let body = &frame_bytes[FRAME_HEADER_SIZE..];
    let size_invalid = FrameError::BodySizeInvalid { kind, body_size };
    let message = match kind {
        Kind::Hello => {
            if body.len() != HELLO_BODY_SIZE {
                return Err(size_invalid);
            }
            Message::Hello {
                node_id: u64_at(body, 0),
                durable_sequence: u64_at(body, 8),
                durable_checksum: u128_at(body, 16),
            }
        }
        Kind::Records => {
            if body.len() < RECORDS_FIXED_SIZE {
                return Err(size_invalid);
            }
            if u32_at(body, 12) != 0 {
                return Err(FrameError::ReservedMustBeZero);
            }
            Message::Records {
                first_sequence: u64_at(body, 0),
                records_count: u32_at(body, 8),
                records: &body[RECORDS_FIXED_SIZE..],
            }
        }
        Kind::Ack => {
            if body.len() != ACK_BODY_SIZE {
                return Err(size_invalid);
            }
            Message::Ack {
                durable_sequence: u64_at(body, 0),
            }
        }
        Kind::Truncate => {
            if body.len() != TRUNCATE_BODY_SIZE {
                return Err(size_invalid);
            }
            Message::Truncate {
                from_sequence: u64_at(body, 0),
                previous_checksum: u128_at(body, 8),
            }
        }
        Kind::CatchUp => {
            if body.len() != CATCH_UP_BODY_SIZE {
                return Err(size_invalid);
            }
            Message::CatchUp {
                checkpoint_sequence: u64_at(body, 0),
                checkpoint_size: u64_at(body, 8),
                segment: u64_at(body, 16),
                segment_prefix_size: u64_at(body, 24),
                flags: u64_at(body, 32),
            }
        }
        Kind::CatchUpChunk => {
            if body.len() < CATCH_UP_CHUNK_FIXED_SIZE {
                return Err(size_invalid);
            }
            if body[1..8].iter().any(|&byte| byte != 0) {
                return Err(FrameError::ReservedMustBeZero);
            }
            let Some(part) = CatchUpPart::from_u8(body[0]) else {
                return Err(FrameError::ChunkInvalid);
            };
            Message::CatchUpChunk {
                part,
                offset: u64_at(body, 8),
                bytes: &body[CATCH_UP_CHUNK_FIXED_SIZE..],
            }
        }
        Kind::CatchUpEnd => {
            if body.len() != CATCH_UP_END_BODY_SIZE {
                return Err(size_invalid);
            }
            Message::CatchUpEnd {
                store_entries: u64_at(body, 0),
                store_bytes: u64_at(body, 8),
            }
        }
        Kind::Welcome => {
            if body.len() != WELCOME_BODY_SIZE {
                return Err(size_invalid);
            }
            Message::Welcome {
                generation: u64_at(body, 0),
                segment_size: u64_at(body, 8),
                first_sequence: u64_at(body, 16),
                written_sequence: u64_at(body, 24),
            }
        }
    };
    check_message(epoch, &message)?;
    Ok((Frame { epoch, message }, frame_size))
}

/// Cuts a TCP byte stream into frames, with one buffer allocated at construction.
///
/// Use: write received bytes into [`StreamDecoder::spare`] and report them with
/// [`StreamDecoder::filled`] (or call [`StreamDecoder::read_from`]), then take frames with
/// [`StreamDecoder::next_frame`] until it returns `None`. After an error the decoder keeps
/// returning it: the stream has lost its framing and the connection must be closed.
pub struct StreamDecoder {
    /// Holds bytes `start..end` not yet decoded; its length is the largest frame accepted.
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    body_size_max: u32,
    failed: Option<FrameError>,
}

impl StreamDecoder {
    /// A decoder that accepts bodies up to `body_size_max` bytes (at most
    /// [`FRAME_BODY_SIZE_MAX`]); it allocates its buffer here, once.
    pub fn new(body_size_max: u32) -> StreamDecoder {
        let body_size_max = body_size_max.min(FRAME_BODY_SIZE_MAX);
        let buffer = vec![0u8; FRAME_HEADER_SIZE + body_size_max as usize].into_boxed_slice();
        StreamDecoder {
            buffer,
            start: 0,
            end: 0,
            body_size_max,
            failed: None,
        }
    }

    /// The free space after the buffered bytes, moved to the front first so that a whole frame
    /// always fits once the frames before it have been taken.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buffer[self.end..]
    }

    /// Records that the first `count` bytes of [`StreamDecoder::spare`] were filled.
    ///
    /// # Panics
    ///
    /// If `count` is larger than the spare space: the caller wrote past the slice it was given.
    pub fn filled(&mut self, count: usize) {
        assert!(
            count <= self.buffer.len() - self.end,
            "filled {count} bytes past the buffer"
        );
        self.end += count;
    }

    /// Reads once from `reader` into the spare space; returns the bytes read (zero at the end
    /// of the stream, or when a frame is waiting to be taken and the buffer is full).
    ///
    /// # Errors
    ///
    /// The reader's error.
    pub fn read_from(&mut self, reader: &mut impl io::Read) -> io::Result<usize> {
        let spare = self.spare();
        if spare.is_empty() {
            return Ok(0);
        }
        let count = reader.read(spare)?;
        self.filled(count);
        Ok(count)
    }

    /// Bytes received but not yet decoded (part of a frame, when no whole frame is waiting).
    pub fn buffered_size(&self) -> usize {
        self.end - self.start
    }

    /// Whether [`StreamDecoder::next_frame`] would return a frame or an error now rather than
    /// `None`: a whole frame is buffered, or bytes that cannot begin one. Reads only the
    /// header's sizes, so a caller can decide to read more without borrowing a frame.
    pub fn frame_ready(&self) -> bool {
        if self.failed.is_some() {
            return true;
        }
        let bytes = &self.buffer[self.start..self.end];
        if bytes.len() < FRAME_HEADER_SIZE {
            return false;
        }
        if u32_at(bytes, 4) != FRAME_MAGIC || u16_at(bytes, 8) != FRAME_VERSION {
            return true;
        }
        let body_size = u32_at(bytes, 12);
        if body_size > self.body_size_max {
            return true;
        }
        bytes.len() >= FRAME_HEADER_SIZE + body_size as usize
    }

    /// The next whole frame, `None` if more bytes are needed.
    ///
    /// # Errors
    ///
    /// The frame is malformed; every later call returns the same error.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let begin = self.start;
        let frame_size = match decode(&self.buffer[begin..self.end], self.body_size_max) {
            Ok((_, frame_size)) => frame_size,
            Err(FrameError::Truncated { .. }) => return Ok(None),
            Err(error) => {
                self.failed = Some(error);
                return Err(error);
            }
        };
        self.start += frame_size;
        // The bytes were verified just above; parse them again for a frame that borrows the
        // buffer after `start` moved. This cannot fail, but if it did the error is returned.
        let bytes = &self.buffer[begin..begin + frame_size];
        match parse(bytes, self.body_size_max, Checksum::AlreadyVerified) {
            Ok((frame, _)) => Ok(Some(frame)),
            Err(error) => {
                self.failed = Some(error);
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_golden_bytes() {
        let frame = Frame {
            epoch: 3,
            message: Message::Ack {
                durable_sequence: 0x0102,
            },
        };
        let mut buffer = [0u8; 64];
        let size = encode(&frame, &mut buffer).unwrap();
        assert_eq!(size, 40);
        let mut expected = [0u8; 40];
        expected[4..8].copy_from_slice(b"CLRS");
        expected[8] = 1; // version
        expected[10] = 3; // kind Ack
        expected[12] = 8; // body size
        expected[16] = 3; // epoch
        expected[32] = 0x02;
        expected[33] = 0x01;
        let checksum = crc32c::crc32c(&expected[4..]);
        expected[0..4].copy_from_slice(&checksum.to_le_bytes());
        assert_eq!(&buffer[..size], &expected[..]);
    }

    #[test]
    fn names_what_is_wrong() {
        let frame = Frame {
            epoch: 3,
            message: Message::Ack {
                durable_sequence: 9,
            },
        };
        let mut bytes = [0u8; 40];
        encode(&frame, &mut bytes).unwrap();
        let check = |change: &dyn Fn(&mut [u8; 40]), expected: FrameError| {
            let mut changed = bytes;
            change(&mut changed);
            assert_eq!(decode(&changed, 16), Err(expected));
        };
        let reseal = |bytes: &mut [u8; 40]| {
            let checksum = crc32c::crc32c(&bytes[4..]);
            bytes[0..4].copy_from_slice(&checksum.to_le_bytes());
        };
        check(&|b| b[4] = b'X', FrameError::MagicInvalid);
        check(&|b| b[8] = 2, FrameError::VersionUnsupported { version: 2 });
        check(&|b| b[35] ^= 1, FrameError::ChecksumMismatch);
        check(
            &|b| b[14] = 1,
            FrameError::BodyTooLarge {
                body_size: 0x1_0008,
                body_size_max: 16,
            },
        );
        check(
            &|b| {
                b[10] = 9;
                reseal(b);
            },
            FrameError::KindUnknown { kind: 9 },
        );
        check(
            &|b| {
                b[11] = 1;
                reseal(b);
            },
            FrameError::ReservedMustBeZero,
        );
        check(
            &|b| {
                b[16] = 0;
                reseal(b);
            },
            FrameError::EpochMustNotBeZero,
        );
        assert_eq!(
            decode(&bytes[..39], 8),
            Err(FrameError::Truncated { frame_size: 40 })
        );
        assert_eq!(
            decode(&bytes[..5], 8),
            Err(FrameError::Truncated { frame_size: 32 })
        );
    }
}
