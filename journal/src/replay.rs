//! Reading the log: walking validated records in order, and the recovery scan that decides
//! between a torn tail and corruption by the watermark rule (docs/durability.md, J7).
//!
//! Invariants:
//! - a record is yielded only after its header checksum, magic, version, reserved bytes,
//!   generation, segment, offset, size bound, sequence (= the expected one), hash chain link and
//!   body checksum have all been checked, in that order (verify on read);
//! - the first invalid record at sequence `s` is corruption when `s` is at or below the highest
//!   watermark seen (or the checkpoint's sequence), or when any valid record after it carries a
//!   watermark at or above `s`; otherwise it is a torn tail that was never acknowledged;
//! - classification reads only; zeroing the tail is a separate step whose repetition after a
//!   crash gives the same classification (idempotent recovery).

use crate::error::{Corruption, JournalError};
use crate::record::{
    RecordHeader, RECORD_ALIGNMENT, RECORD_HEADER_SIZE, RECORD_MAGIC, RECORD_MAGIC_OFFSET,
    SEGMENT_HEADER_SIZE,
};
use crate::storage::Segment;
use crate::{segment_file_name, Truncation};

/// One open segment file of the journal.
pub(crate) struct OpenSegment {
    /// Segment id (ids in a journal are contiguous).
    pub id: u64,
    /// The file.
    pub file: Box<dyn Segment>,
}

/// A place in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    /// Index into the segment list (not the id).
    pub index: usize,
    /// Byte offset inside the segment.
    pub offset: u64,
}

/// The hash chain state at a position: what the record there must carry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursor {
    pub position: Position,
    /// Sequence the record at `position` must have.
    pub sequence: u64,
    /// Header checksum of the record before it (zero before sequence 1).
    pub previous_checksum: u128,
}

/// What the walker found where the valid log ends.
#[derive(Clone, Copy, Debug)]
pub(crate) struct End {
    pub cursor: Cursor,
    pub reason: &'static str,
}

/// One step of the walk.
pub(crate) enum Step {
    Record(RecordHeader),
    End(End),
}

fn io_error(segment: u64, operation: &'static str, error: std::io::Error) -> JournalError {
    JournalError::io(operation, &segment_file_name(segment), error)
}

/// Walks validated records forward from a cursor.
pub(crate) struct Walker<'a> {
    segments: &'a [OpenSegment],
    generation: u64,
    body_size_max: u64,
    pub cursor: Cursor,
    header: [u8; RECORD_HEADER_SIZE as usize],
    /// The body of the last record yielded.
    pub body: Vec<u8>,
    /// Records up to this sequence are checked by their header and the hash chain only; their
    /// bodies are not read (see `scan`). 0: every body is read and checked.
    pub headers_only_through: u64,
}

impl<'a> Walker<'a> {
    pub fn new(
        segments: &'a [OpenSegment],
        generation: u64,
        body_size_max: u64,
        cursor: Cursor,
    ) -> Walker<'a> {
        Walker {
            segments,
            generation,
            body_size_max,
            cursor,
            header: [0; RECORD_HEADER_SIZE as usize],
            body: Vec::new(),
            headers_only_through: 0,
        }
    }

    /// Reads and validates the header at `position` (no chain checks).
    fn header_at(
        &mut self,
        position: Position,
    ) -> Result<Result<RecordHeader, &'static str>, JournalError> {
        let segment = &self.segments[position.index];
        segment
            .file
            .read(position.offset, &mut self.header)
            .map_err(|error| io_error(segment.id, "reading a record header", error))?;
        Ok(RecordHeader::decode(
            &self.header,
            self.generation,
            segment.id,
            position.offset,
            self.body_size_max,
        ))
    }

    /// Reads the body of `header` into `self.body` and checks it.
    fn body_valid(&mut self, index: usize, header: &RecordHeader) -> Result<bool, JournalError> {
        let segment = &self.segments[index];
        if header.offset + header.size() > segment.file.size() {
            return Ok(false);
        }
        self.body.resize(header.body_size as usize, 0);
        segment
            .file
            .read(header.offset + RECORD_HEADER_SIZE, &mut self.body)
            .map_err(|error| io_error(segment.id, "reading a record body", error))?;
        Ok(header.body_matches(&self.body))
    }

    /// Checks the chain fields of a decoded header against the cursor.
    fn chain_error(&self, header: &RecordHeader) -> Option<&'static str> {
        if header.sequence != self.cursor.sequence {
            return Some("sequence out of order (misplaced or stale record)");
        }
        if header.previous_checksum != self.cursor.previous_checksum {
            return Some("hash chain broken: previous checksum does not match");
        }
        None
    }

    /// The next valid record, or where and why the valid log ends.
    pub fn step(&mut self) -> Result<Step, JournalError> {
        loop {
            let position = self.cursor.position;
            let segment_size = self.segments[position.index].file.size();
            if position.offset + RECORD_HEADER_SIZE > segment_size {
                if position.index + 1 == self.segments.len() {
                    return Ok(Step::End(End {
                        cursor: self.cursor,
                        reason: "end of segments",
                    }));
                }
                self.cursor.position = Position {
                    index: position.index + 1,
                    offset: SEGMENT_HEADER_SIZE,
                };
                continue;
            }
            let header = match self.header_at(position)? {
                Ok(header) => header,
                Err(reason) => {
                    let zero = self.header.iter().all(|&byte| byte == 0);
                    if zero && self.next_segment_continues(position, segment_size)? {
                        self.cursor.position = Position {
                            index: position.index + 1,
                            offset: SEGMENT_HEADER_SIZE,
                        };
                        continue;
                    }
                    return Ok(Step::End(End {
                        cursor: self.cursor,
                        reason,
                    }));
                }
            };
            if let Some(reason) = self.chain_error(&header) {
                return Ok(Step::End(End {
                    cursor: self.cursor,
                    reason,
                }));
            }
            // A record that would not fit its segment is never valid, body read or not.
            let header_only = header.sequence <= self.headers_only_through
                && header.offset + header.size() <= segment_size;
            if !header_only && !self.body_valid(position.index, &header)? {
                return Ok(Step::End(End {
                    cursor: self.cursor,
                    reason: "body checksum mismatch",
                }));
            }
            self.cursor = Cursor {
                position: Position {
                    index: position.index,
                    offset: position.offset + header.size(),
                },
                sequence: header.sequence + 1,
                previous_checksum: header.checksum,
            };
            return Ok(Step::Record(header));
        }
    }

    /// Whether the log legitimately continues in the next segment: the writer moves on when a
    /// record does not fit, leaving the rest of the segment zero.
    fn next_segment_continues(
        &mut self,
        position: Position,
        segment_size: u64,
    ) -> Result<bool, JournalError> {
        if position.index + 1 == self.segments.len() {
            return Ok(false);
        }
        let next = Position {
            index: position.index + 1,
            offset: SEGMENT_HEADER_SIZE,
        };
        let Ok(header) = self.header_at(next)? else {
            return Ok(false);
        };
        if self.chain_error(&header).is_some() || position.offset + header.size() <= segment_size {
            return Ok(false);
        }
        // The whole record must be valid: if it is torn, the log ends here, in this segment, and
        // the next record may fit here when it is written again.
        self.body_valid(next.index, &header)
    }
}

/// Where to start reading to reach `sequence` (>= 1): the last segment whose first record is
/// valid with a sequence at or below it; the start of the log when there is none.
///
/// `start` is the cursor of the first kept record: sequence 1 at the start of segment 0, or,
/// when older segments were retired, the first record of the first segment kept.
pub(crate) fn locate(
    segments: &[OpenSegment],
    generation: u64,
    body_size_max: u64,
    sequence: u64,
    start: Cursor,
) -> Result<Cursor, JournalError> {
    let mut walker = Walker::new(segments, generation, body_size_max, start);
    for index in (1..segments.len()).rev() {
        let position = Position {
            index,
            offset: SEGMENT_HEADER_SIZE,
        };
        if let Ok(header) = walker.header_at(position)? {
            if header.sequence <= sequence {
                return Ok(Cursor {
                    position,
                    sequence: header.sequence,
                    previous_checksum: header.previous_checksum,
                });
            }
        }
    }
    Ok(start)
}

/// Where the first record after `sequence` starts, walking from `start` by headers and the
/// hash chain only (no body is read): where recovery's reads of bodies begin. When the valid
/// log ends at or before `sequence`, where it ends. The scan that follows checks everything
/// again; this only tells it where to read ahead.
///
/// # Errors
///
/// I/O errors.
pub(crate) fn first_after(
    segments: &[OpenSegment],
    generation: u64,
    body_size_max: u64,
    start: Cursor,
    sequence: u64,
) -> Result<Position, JournalError> {
    let mut walker = Walker::new(segments, generation, body_size_max, start);
    walker.headers_only_through = sequence;
    while walker.cursor.sequence <= sequence {
        if let Step::End(end) = walker.step()? {
            return Ok(end.cursor.position);
        }
    }
    Ok(walker.cursor.position)
}

/// The header of the first record of segment `index`, if one validates there.
///
/// # Errors
///
/// I/O errors.
pub(crate) fn first_record(
    segments: &[OpenSegment],
    generation: u64,
    body_size_max: u64,
    index: usize,
) -> Result<Option<RecordHeader>, JournalError> {
    let start = Cursor {
        position: Position {
            index,
            offset: SEGMENT_HEADER_SIZE,
        },
        sequence: 0,
        previous_checksum: 0,
    };
    let mut walker = Walker::new(segments, generation, body_size_max, start);
    Ok(walker.header_at(start.position)?.ok())
}

/// The hash chain anchor of a checkpoint: records up to `sequence` are covered by it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Anchor {
    pub sequence: u64,
    pub chain_checksum: u128,
}

/// Which record bodies a scan reads and checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanBodies {
    /// Every record's (the offline tools).
    All,
    /// Only those after the anchor (recovery).
    AfterAnchor,
}

/// The result of a recovery scan.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Where the next record goes, with its sequence and chain link.
    pub end: Cursor,
    /// Records with sequence above the anchor.
    pub records: u64,
    /// Timestamp of the last valid record scanned, if any was.
    pub last_timestamp: Option<u64>,
    /// Highest watermark of any valid record scanned (or the anchor's sequence).
    pub watermark_max: u64,
    /// Non-zero bytes after the end that recovery must zero, if any.
    pub tail: Option<Truncation>,
    /// Checksums of records whose sequence is in `wanted` (for checking checkpoints).
    pub checksums: Vec<(u64, u128)>,
}

/// Scans from `start` to the end of the valid log and classifies what follows it.
///
/// `wanted` lists sequences whose header checksums the caller wants (checkpoint anchors).
///
/// # Errors
///
/// Corruption by the rules of J7, a chain that does not match the anchor, and I/O errors.
///
/// With `bodies` [`ScanBodies::AfterAnchor`], the records up to the anchor (those the newest
/// checkpoint covers: recovery never replays them) are checked by their header checksum and the
/// hash chain, and their bodies are not read: recovery reads only what it replays. A record a
/// fallback to an older checkpoint replays is still checked in full when it is replayed, and
/// `clearline journal verify` reads every body.
pub(crate) fn scan(
    segments: &[OpenSegment],
    generation: u64,
    body_size_max: u64,
    start: Cursor,
    anchor: Anchor,
    wanted: &[u64],
    bodies: ScanBodies,
) -> Result<Scan, JournalError> {
    let mut walker = Walker::new(segments, generation, body_size_max, start);
    if bodies == ScanBodies::AfterAnchor {
        walker.headers_only_through = anchor.sequence;
    }
    let mut records = 0u64;
    let mut last_timestamp = None;
    let mut watermark_max = anchor.sequence;
    let mut checksums = Vec::new();
    if anchor.sequence > 0 && start.sequence == anchor.sequence + 1 {
        check_anchor(segments, start, start.previous_checksum, anchor)?;
    }
    let end = loop {
        match walker.step()? {
            Step::Record(header) => {
                watermark_max = watermark_max.max(header.watermark);
                last_timestamp = Some(header.timestamp);
                if header.sequence > anchor.sequence {
                    records += 1;
                }
                if header.sequence == anchor.sequence {
                    let at = Cursor {
                        sequence: header.sequence,
                        ..walker.cursor
                    };
                    check_anchor(segments, at, header.checksum, anchor)?;
                }
                if wanted.contains(&header.sequence) {
                    checksums.push((header.sequence, header.checksum));
                }
            }
            Step::End(end) => break end,
        }
    };
    let tail = classify(segments, generation, body_size_max, end, watermark_max)?;
    Ok(Scan {
        end: end.cursor,
        records,
        last_timestamp,
        watermark_max,
        tail,
        checksums,
    })
}

fn check_anchor(
    segments: &[OpenSegment],
    at: Cursor,
    checksum: u128,
    anchor: Anchor,
) -> Result<(), JournalError> {
    if checksum == anchor.chain_checksum {
        return Ok(());
    }
    Err(JournalError::Corruption(Corruption {
        segment: segments[at.position.index].id,
        offset: at.position.offset,
        sequence: anchor.sequence,
        reason: "record does not match the checkpoint's chain checksum",
        evidence: "the checkpoint covers sequence",
        evidence_sequence: anchor.sequence,
    }))
}

/// Size of the chunks read while looking past the end of the valid log.
const CHUNK_SIZE: u64 = 1 << 20;
const _: () = assert!(CHUNK_SIZE % RECORD_ALIGNMENT == 0);

/// Applies J7 to the first invalid record: corruption, or a torn tail (with what it covers).
fn classify(
    segments: &[OpenSegment],
    generation: u64,
    body_size_max: u64,
    end: End,
    watermark_max: u64,
) -> Result<Option<Truncation>, JournalError> {
    let cursor = end.cursor;
    let corruption = |evidence: &'static str, evidence_sequence: u64| {
        JournalError::Corruption(Corruption {
            segment: segments[cursor.position.index].id,
            offset: cursor.position.offset,
            sequence: cursor.sequence,
            reason: end.reason,
            evidence,
            evidence_sequence,
        })
    };
    if cursor.sequence <= watermark_max {
        return Err(corruption(
            "it was acknowledged: an earlier record or checkpoint reports durable up to",
            watermark_max,
        ));
    }
    let mut bytes_nonzero = 0u64;
    let mut records = 0u64;
    let mut chunk = vec![0u8; CHUNK_SIZE as usize];
    let mut walker = Walker::new(segments, generation, body_size_max, cursor);
    for (index, segment) in segments.iter().enumerate().skip(cursor.position.index) {
        let size = segment.file.size();
        let mut offset = if index == cursor.position.index {
            cursor.position.offset
        } else {
            SEGMENT_HEADER_SIZE
        };
        while offset < size {
            // What the file system reports as a hole reads as zeros: no record and no byte to
            // count there. Skipping it spares reading a preallocated segment's unwritten rest.
            let data = segment.file.next_data(offset) / RECORD_ALIGNMENT * RECORD_ALIGNMENT;
            if data > offset {
                offset = data;
                continue;
            }
            let length = CHUNK_SIZE.min(size - offset) as usize;
            let bytes = &mut chunk[..length];
            segment
                .file
                .read(offset, bytes)
                .map_err(|error| io_error(segment.id, "scanning past the log end", error))?;
            bytes_nonzero += count_nonzero(bytes);
            let mut slot = 0usize;
            while slot + RECORD_MAGIC_OFFSET + 8 <= length {
                let magic = &bytes[slot + RECORD_MAGIC_OFFSET..slot + RECORD_MAGIC_OFFSET + 8];
                let slot_offset = offset + slot as u64;
                let is_end =
                    index == cursor.position.index && slot_offset == cursor.position.offset;
                if magic == RECORD_MAGIC.to_le_bytes() && !is_end {
                    let position = Position {
                        index,
                        offset: slot_offset,
                    };
                    if let Ok(header) = walker.header_at(position)? {
                        if walker.body_valid(index, &header)? {
                            records += 1;
                            if header.watermark >= cursor.sequence {
                                return Err(corruption(
                                    "a later valid record reports durable up to",
                                    header.watermark,
                                ));
                            }
                        }
                    }
                }
                slot += RECORD_ALIGNMENT as usize;
            }
            offset += length as u64;
        }
    }
    if bytes_nonzero == 0 {
        return Ok(None);
    }
    Ok(Some(Truncation {
        segment: segments[cursor.position.index].id,
        offset: cursor.position.offset,
        sequence: cursor.sequence,
        bytes_nonzero,
        records,
        reason: end.reason,
    }))
}

/// Zeroes every non-zero chunk from the end of the valid log to the end of the last segment,
/// then syncs what it changed. Safe to interrupt and repeat.
///
/// # Errors
///
/// I/O errors.
pub(crate) fn zero_tail(segments: &mut [OpenSegment], from: Position) -> Result<(), JournalError> {
    let last = segments.len() - 1;
    let to = Position {
        index: last,
        offset: segments[last].file.size(),
    };
    zero_range(segments, from, to)
}

/// Zeroes every non-zero chunk from `from` up to `to` (exclusive, in the same or a later
/// segment; the segment headers in between are kept), then syncs, in each segment it changed,
/// the range it covered there. Safe to interrupt and repeat.
///
/// # Errors
///
/// I/O errors.
pub(crate) fn zero_range(
    segments: &mut [OpenSegment],
    from: Position,
    to: Position,
) -> Result<(), JournalError> {
    assert!(
        (from.index, from.offset) <= (to.index, to.offset),
        "zero_range from {from:?} to {to:?}"
    );
    assert!(to.index < segments.len());
    let zeros = vec![0u8; CHUNK_SIZE as usize];
    let mut chunk = vec![0u8; CHUNK_SIZE as usize];
    let count = to.index - from.index + 1;
    for (index, segment) in segments.iter_mut().enumerate().skip(from.index).take(count) {
        let start = if index == from.index {
            from.offset
        } else {
            SEGMENT_HEADER_SIZE
        };
        let end = if index == to.index {
            to.offset
        } else {
            segment.file.size()
        };
        assert!(end <= segment.file.size());
        let mut offset = start;
        let mut changed = false;
        while offset < end {
            let length = CHUNK_SIZE.min(end - offset) as usize;
            segment
                .file
                .read(offset, &mut chunk[..length])
                .map_err(|error| io_error(segment.id, "reading the torn tail", error))?;
            if count_nonzero(&chunk[..length]) > 0 {
                segment
                    .file
                    .write(offset, &zeros[..length])
                    .map_err(|error| io_error(segment.id, "zeroing the torn tail", error))?;
                changed = true;
            }
            offset += length as u64;
        }
        if changed {
            segment
                .file
                .syncer()
                .sync(start, end - start)
                .map_err(|error| io_error(segment.id, "syncing the truncated tail", error))?;
        }
    }
    Ok(())
}

/// Number of non-zero bytes, with a fast path for all-zero chunks (the common case when the
/// scan crosses the unused part of a preallocated segment).
fn count_nonzero(bytes: &[u8]) -> u64 {
    let words = bytes.chunks_exact(8);
    let rest = words.remainder();
    let zero = words.fold(0u64, |acc, word| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(word);
        acc | u64::from_le_bytes(raw)
    }) == 0
        && rest.iter().all(|&byte| byte == 0);
    if zero {
        return 0;
    }
    bytes.iter().filter(|&&byte| byte != 0).count() as u64
}
