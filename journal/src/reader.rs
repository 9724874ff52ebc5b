//! Reading a journal's records while its writer appends them, from another thread of the same
//! process: what a primary sends to its backups (FORMAT.md, "Mirroring").
//!
//! The writer holds the directory's exclusive lock, so the reader takes none: it opens segment
//! files by name and reads them with `pread`. The page cache is shared with the writer's
//! mapping, so it sees the bytes appended; the caller says how far the log is written (the
//! durable sequence, read after the records were written, orders the writes before the reads).
//!
//! Invariants:
//! - a record is handed out only after its header checksum, magic, version, reserved bytes,
//!   generation, segment id, offset, size bound, sequence (= the expected one), hash chain link
//!   (to the record read before it) and body checksum have been checked, and its padding is
//!   zero (verify on read, as `replay` does);
//! - the read buffer is allocated once, when the reader is made, and holds one window of one
//!   segment file; it is dropped at the start of every call, because bytes past the log's end
//!   when it was read may have been written since;
//! - the position kept between calls is only a hint: a record that does not chain to it (the
//!   journal was truncated) makes the reader find its place again from the segment files.
//!
//! Does not write, lock or sync anything, and does not read checkpoint files: when the records
//! asked for were retired it says so, and the caller falls back to a checkpoint.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::error::{Corruption, JournalError};
use crate::le::u128_at;
use crate::record::{record_size, RecordHeader, SegmentHeader, RECORD_HEADER_SIZE};
use crate::{parse_segment_name, segment_file_name, SEGMENT_HEADER_SIZE};

/// Size of the read buffer (larger when the largest record is).
pub const READ_BUFFER_SIZE: usize = 1 << 20;

/// How many times a read starts again when a segment file disappears under it (retired
/// meanwhile) or the position it kept no longer chains (truncated meanwhile).
const ATTEMPTS_MAX: u32 = 3;

/// What [`RecordReader::read`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Appended `records` whole records; `next_sequence` is the sequence after the last one
    /// (`from` when none was appended).
    Read {
        /// Records appended to the output.
        records: u64,
        /// The sequence of the next record to ask for.
        next_sequence: u64,
    },
    /// The record `from` was retired with its segment: the caller starts from a checkpoint.
    Retired {
        /// The first sequence the segment files present hold; when they hold no record at all,
        /// `up_to + 1` (every record asked for is gone).
        first_available: u64,
    },
}

/// Reads whole records of one journal, by sequence, while its writer appends them (made by
/// [`crate::Journal::reader`]). `Send`: it owns the directory path, the generation and the
/// body size bound, an open segment file and its read buffer.
pub struct RecordReader {
    dir: PathBuf,
    generation: u64,
    body_size_max: u64,
    /// At least [`READ_BUFFER_SIZE`] and at least the largest record, so a record always fits
    /// in one window that starts at its header.
    buffer: Vec<u8>,
    /// `buffer[..window.size]` holds bytes `window.offset..` of the open segment file.
    window: Window,
    /// The segment file open, if any.
    file: Option<SegmentFile>,
    /// Where the record after the last one read starts, with its chain: a hint for the next
    /// call that continues from it.
    next: Option<Place>,
}

// A reader is made on the writer's thread and moved to the one that sends the records.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<RecordReader>();
};

#[derive(Clone, Copy, Debug, Default)]
struct Window {
    offset: u64,
    size: usize,
}

struct SegmentFile {
    id: u64,
    file: File,
    /// From the segment header, checked against the file's length.
    size: u64,
}

/// Where record `sequence` starts (or, at the end of a segment, where it would have started
/// had it fitted), and the header checksum of the record before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    segment: u64,
    offset: u64,
    sequence: u64,
    previous_checksum: u128,
}

/// Why a walk stopped short of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// No valid record with the expected sequence and chain where it should be.
    Missing(&'static str),
    /// The segment file is gone (retired).
    Gone,
}

/// The header found at a place, or why there is none.
enum Found {
    Record(RecordHeader),
    Stop(Stop),
}

/// Where a search by sequence ended.
enum Located {
    At(Place),
    /// Retired: the first sequence held, if any record is.
    Retired(Option<u64>),
    Stop(Stop, Place),
}

impl RecordReader {
    /// Another reader of the same journal, with its own position and buffer: each thread
    /// that reads at its own place should have one (a shared reader that moves between places
    /// finds each one again from the start of its segment).
    pub fn another(&self) -> RecordReader {
        RecordReader::new(self.dir.clone(), self.generation, self.body_size_max)
    }

    pub(crate) fn new(dir: PathBuf, generation: u64, body_size_max: u64) -> RecordReader {
        let record_size_max = usize::try_from(record_size(body_size_max))
            .expect("body_size_max is at most 4 GiB (config check)");
        RecordReader {
            dir,
            generation,
            body_size_max,
            buffer: vec![0; READ_BUFFER_SIZE.max(record_size_max)],
            window: Window::default(),
            file: None,
            next: None,
        }
    }

    /// Appends to `out` whole records (header, body and padding, as they are in the segment
    /// file, ready for [`crate::Journal::append_copied`]) with sequences from `from` (0 reads
    /// as 1) up to and including `up_to`, which must be written (pass the durable sequence, or
    /// one the writer reported written). Stops before `out` would grow above `bytes_max`, but
    /// appends at least one record when `from <= up_to`. Continuing with `from` = the returned
    /// next sequence goes on where this call stopped; another `from` finds its record by
    /// walking headers from the start of the segment file that holds it.
    ///
    /// # Errors
    ///
    /// [`JournalError::Corruption`] when a record up to `up_to` is missing or fails any check
    /// (never handed out), I/O errors. Records appended before the failing one are kept in
    /// `out` and reported; the next call reports the failure.
    pub fn read(
        &mut self,
        from: u64,
        up_to: u64,
        out: &mut Vec<u8>,
        bytes_max: usize,
    ) -> Result<ReadOutcome, JournalError> {
        let from = from.max(1);
        self.window = Window::default();
        if from > up_to {
            return Ok(ReadOutcome::Read {
                records: 0,
                next_sequence: from,
            });
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let kept = self.next.take().filter(|place| place.sequence == from);
            let start = match kept {
                Some(place) => place,
                None => match self.locate(from)? {
                    Located::At(place) => place,
                    Located::Retired(first) => {
                        return Ok(ReadOutcome::Retired {
                            first_available: first.unwrap_or(up_to + 1),
                        })
                    }
                    Located::Stop(Stop::Gone, _) if attempt < ATTEMPTS_MAX => continue,
                    Located::Stop(stop, place) => return Err(self.damaged(place, stop, up_to)),
                },
            };
            let (records, place, stop) = self.read_from(start, up_to, out, bytes_max)?;
            let Some(stop) = stop else {
                self.next = Some(place);
                return Ok(ReadOutcome::Read {
                    records,
                    next_sequence: place.sequence,
                });
            };
            if records > 0 {
                // The next call starts from the segment files again and reports it.
                return Ok(ReadOutcome::Read {
                    records,
                    next_sequence: place.sequence,
                });
            }
            let retry = stop == Stop::Gone || kept.is_some();
            if !retry || attempt >= ATTEMPTS_MAX {
                return Err(self.damaged(place, stop, up_to));
            }
        }
    }

    /// The header checksum of record `sequence`: what the record after it carries as its
    /// previous checksum, so two journals that agree on it hold the same records up to it.
    /// Sequence 0 is the empty prefix, whose checksum is 0 (the previous checksum of record
    /// 1): `Some(0)`. `None` when the segment files present hold no valid record `sequence`:
    /// not written yet, or retired. Only headers are read (the header checksum covers the
    /// body's), and the kept position does not move.
    ///
    /// # Errors
    ///
    /// I/O errors, and corruption of a segment file's header.
    pub fn checksum_at(&mut self, sequence: u64) -> Result<Option<u128>, JournalError> {
        if sequence == 0 {
            return Ok(Some(0));
        }
        self.window = Window::default();
        if let Some(place) = self.next.filter(|place| place.sequence <= sequence) {
            if let Some(checksum) = self.checksum_from(place, sequence)? {
                return Ok(Some(checksum));
            }
            // The kept place may be stale (the journal was truncated): search the files.
        }
        match self.locate(sequence)? {
            Located::At(place) => self.checksum_from(place, sequence),
            Located::Retired(_) | Located::Stop(..) => Ok(None),
        }
    }

    /// Where record `sequence` ends: the id of the segment file that holds it and the offset
    /// right after it (padding included). The file's bytes before that offset are the segment
    /// header and whole records up to `sequence`, which never change once written: a backup
    /// catching up from a checkpoint at `sequence` starts its journal with a copy of them.
    /// `None` when the segment files present hold no valid record `sequence`.
    ///
    /// # Errors
    ///
    /// I/O errors, and corruption of a segment file's header.
    pub fn end_of(&mut self, sequence: u64) -> Result<Option<(u64, u64)>, JournalError> {
        if sequence == 0 {
            return Ok(None);
        }
        self.window = Window::default();
        let mut place = match self.locate(sequence)? {
            Located::At(place) => place,
            Located::Retired(_) | Located::Stop(..) => return Ok(None),
        };
        match self.header(&mut place)? {
            Found::Record(header) if header.sequence == sequence => {
                Ok(Some((place.segment, place.offset + header.size())))
            }
            Found::Record(_) | Found::Stop(_) => Ok(None),
        }
    }

    /// The journal directory this reader reads.
    pub fn directory(&self) -> &std::path::Path {
        &self.dir
    }

    /// The header checksum of record `sequence`, walking headers from `place`.
    fn checksum_from(
        &mut self,
        mut place: Place,
        sequence: u64,
    ) -> Result<Option<u128>, JournalError> {
        assert!(place.sequence <= sequence);
        loop {
            match self.header(&mut place)? {
                Found::Record(header) if header.sequence == sequence => {
                    return Ok(Some(header.checksum))
                }
                Found::Record(header) => advance(&mut place, &header),
                Found::Stop(_) => return Ok(None),
            }
        }
    }

    /// Reads records from `place` (which holds record `place.sequence`) up to `up_to`, as
    /// `read` describes. Returns how many it appended, the place after the last, and why it
    /// stopped short of `up_to`, if it did (not counting `bytes_max`).
    fn read_from(
        &mut self,
        mut place: Place,
        up_to: u64,
        out: &mut Vec<u8>,
        bytes_max: usize,
    ) -> Result<(u64, Place, Option<Stop>), JournalError> {
        let mut records = 0u64;
        while place.sequence <= up_to {
            let header = match self.header(&mut place)? {
                Found::Record(header) => header,
                Found::Stop(stop) => return Ok((records, place, Some(stop))),
            };
            let size = header.size();
            if records > 0 && out.len() as u64 + size > bytes_max as u64 {
                break;
            }
            let size_in_buffer = size as usize;
            let bytes = self.bytes(place.offset, size_in_buffer)?;
            // The window may have been read again since the header was decoded.
            if u128_at(bytes, 0) != header.checksum {
                return Ok((
                    records,
                    place,
                    Some(Stop::Missing("record changed while read")),
                ));
            }
            let body_end = (RECORD_HEADER_SIZE + u64::from(header.body_size)) as usize;
            if !header.body_matches(&bytes[RECORD_HEADER_SIZE as usize..body_end]) {
                return Ok((
                    records,
                    place,
                    Some(Stop::Missing("body checksum mismatch")),
                ));
            }
            if bytes[body_end..].iter().any(|&byte| byte != 0) {
                return Ok((records, place, Some(Stop::Missing("padding is not zero"))));
            }
            out.extend_from_slice(bytes);
            records += 1;
            advance(&mut place, &header);
        }
        Ok((records, place, None))
    }

    /// Finds where record `sequence` starts: the last segment file whose first record is valid
    /// with a sequence at or below it, then its headers (and hash chain) up to it.
    fn locate(&mut self, sequence: u64) -> Result<Located, JournalError> {
        let ids = self.segment_ids()?;
        let mut start = None;
        let mut first_held = None;
        for &id in ids.iter().rev() {
            let Some(header) = self.first_header(id)? else {
                continue;
            };
            first_held = Some(header.sequence);
            if header.sequence <= sequence {
                start = Some(Place {
                    segment: id,
                    offset: SEGMENT_HEADER_SIZE,
                    sequence: header.sequence,
                    previous_checksum: header.previous_checksum,
                });
                break;
            }
        }
        let Some(mut place) = start else {
            return Ok(match first_held {
                Some(first) => Located::Retired(Some(first)),
                // No record held at all: retired when segments were, else not written yet.
                None if ids.first().is_none_or(|&first| first > 0) => Located::Retired(None),
                None => Located::Stop(
                    Stop::Missing("no record written yet"),
                    Place {
                        segment: 0,
                        offset: SEGMENT_HEADER_SIZE,
                        sequence,
                        previous_checksum: 0,
                    },
                ),
            });
        };
        loop {
            match self.header(&mut place)? {
                Found::Record(header) if header.sequence == sequence => {
                    return Ok(Located::At(place))
                }
                Found::Record(header) => advance(&mut place, &header),
                Found::Stop(stop) => return Ok(Located::Stop(stop, place)),
            }
        }
    }

    /// The ids of the segment files present, in order.
    fn segment_ids(&self) -> Result<Vec<u64>, JournalError> {
        let directory = self.dir.display().to_string();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|error| JournalError::io("listing to read records", &directory, error))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|error| JournalError::io("listing to read records", &directory, error))?;
            if let Some(id) = entry.file_name().to_str().and_then(parse_segment_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The first record header of segment `id`, if one validates there (no chain checks).
    fn first_header(&mut self, id: u64) -> Result<Option<RecordHeader>, JournalError> {
        if !self.open(id)? {
            return Ok(None);
        }
        Ok(self.decode(SEGMENT_HEADER_SIZE)?.0.ok())
    }

    /// The valid record with `place`'s sequence and chain at `place`, or at the start of the
    /// next segment when the writer moved on there (then `place` moves too): the rest of this
    /// segment starts with a zero header, or has no room for one, and the record there would
    /// not have fitted here. Bodies are not read.
    fn header(&mut self, place: &mut Place) -> Result<Found, JournalError> {
        if !self.open(place.segment)? {
            return Ok(Found::Stop(Stop::Gone));
        }
        let size = self.segment_size();
        if place.offset + RECORD_HEADER_SIZE <= size {
            match self.decode(place.offset)? {
                (Ok(header), _) => return Ok(found(place, header, size)),
                (Err(reason), false) => return Ok(Found::Stop(Stop::Missing(reason))),
                (Err(_), true) => {}
            }
        }
        let next = place.segment + 1;
        if !self.open(next)? {
            return Ok(Found::Stop(Stop::Missing(
                "segment ends here and the next segment file is missing",
            )));
        }
        let next_size = self.segment_size();
        let header = match self.decode(SEGMENT_HEADER_SIZE)?.0 {
            Ok(header) => header,
            Err(reason) => return Ok(Found::Stop(Stop::Missing(reason))),
        };
        if place.offset + header.size() <= size {
            return Ok(Found::Stop(Stop::Missing(
                "header is all zeros, and the record at the start of the next segment would \
                 have fitted here",
            )));
        }
        let moved = Place {
            segment: next,
            offset: SEGMENT_HEADER_SIZE,
            ..*place
        };
        let result = found(&moved, header, next_size);
        if let Found::Record(_) = result {
            *place = moved;
        }
        Ok(result)
    }

    /// Decodes the record header at `offset` of the open segment: the header or why it is
    /// invalid, and whether it is all zeros.
    fn decode(
        &mut self,
        offset: u64,
    ) -> Result<(Result<RecordHeader, &'static str>, bool), JournalError> {
        let segment = self.open_id();
        let (generation, body_size_max) = (self.generation, self.body_size_max);
        let bytes = self.bytes(offset, RECORD_HEADER_SIZE as usize)?;
        let zero = bytes.iter().all(|&byte| byte == 0);
        let header = RecordHeader::decode(bytes, generation, segment, offset, body_size_max);
        Ok((header, zero))
    }

    /// Bytes `offset..offset + size` of the open segment, from the window, read into it first
    /// when it does not hold them.
    fn bytes(&mut self, offset: u64, size: usize) -> Result<&[u8], JournalError> {
        assert!(size <= self.buffer.len());
        let file = self.file.as_ref().expect("a segment file is open");
        assert!(offset + size as u64 <= file.size);
        let window_end = self.window.offset + self.window.size as u64;
        if offset < self.window.offset || offset + size as u64 > window_end {
            let length = (self.buffer.len() as u64).min(file.size - offset) as usize;
            self.window = Window::default();
            file.file
                .read_exact_at(&mut self.buffer[..length], offset)
                .map_err(|error| {
                    JournalError::io("reading records", &segment_file_name(file.id), error)
                })?;
            self.window = Window {
                offset,
                size: length,
            };
        }
        let start = (offset - self.window.offset) as usize;
        Ok(&self.buffer[start..start + size])
    }

    /// Opens segment file `id` (unless it is the one open) and checks its header; false when
    /// the file does not exist.
    fn open(&mut self, id: u64) -> Result<bool, JournalError> {
        if self.file.as_ref().is_some_and(|file| file.id == id) {
            return Ok(true);
        }
        self.file = None;
        self.window = Window::default();
        let name = segment_file_name(id);
        let file = match File::open(self.dir.join(&name)) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(JournalError::io("opening a segment to read", &name, error)),
        };
        let length = file
            .metadata()
            .map_err(|error| JournalError::io("opening a segment to read", &name, error))?
            .len();
        let mut block = [0u8; RECORD_HEADER_SIZE as usize];
        let read = file.read_exact_at(&mut block, 0);
        let bad = |reason| {
            JournalError::Corruption(Corruption {
                segment: id,
                offset: 0,
                sequence: 0,
                reason,
                evidence: "found by a record reader in segment",
                evidence_sequence: id,
            })
        };
        if read.is_err() {
            return Err(bad("segment file shorter than its header"));
        }
        let header = SegmentHeader::decode(&block).map_err(bad)?;
        if header.generation != self.generation {
            return Err(bad("segment from another journal generation"));
        }
        if header.segment != id {
            return Err(bad("segment header names another segment id"));
        }
        if header.size != length || header.size < SEGMENT_HEADER_SIZE {
            return Err(bad("segment file size differs from its header"));
        }
        self.file = Some(SegmentFile {
            id,
            file,
            size: header.size,
        });
        Ok(true)
    }

    fn open_id(&self) -> u64 {
        self.file.as_ref().expect("a segment file is open").id
    }

    fn segment_size(&self) -> u64 {
        self.file.as_ref().expect("a segment file is open").size
    }

    /// The error for a record that is not where the caller said it was written.
    fn damaged(&self, place: Place, stop: Stop, up_to: u64) -> JournalError {
        let reason = match stop {
            Stop::Missing(reason) => reason,
            Stop::Gone => "segment file removed while it was read",
        };
        JournalError::Corruption(Corruption {
            segment: place.segment,
            offset: place.offset,
            sequence: place.sequence,
            reason,
            evidence: "a record reader was told the journal is written up to sequence",
            evidence_sequence: up_to,
        })
    }
}

/// `header`, decoded at `place`, as the record there: when its sequence and chain are the
/// ones expected, and it fits its segment of `segment_size` bytes.
fn found(place: &Place, header: RecordHeader, segment_size: u64) -> Found {
    if header.sequence != place.sequence {
        return Found::Stop(Stop::Missing(
            "sequence out of order (misplaced or stale record)",
        ));
    }
    if header.previous_checksum != place.previous_checksum {
        return Found::Stop(Stop::Missing(
            "hash chain broken: previous checksum does not match",
        ));
    }
    if header.offset + header.size() > segment_size {
        return Found::Stop(Stop::Missing("record does not fit in its segment"));
    }
    Found::Record(header)
}

/// Moves `place` past the record `header` found there.
fn advance(place: &mut Place, header: &RecordHeader) {
    assert_eq!(header.sequence, place.sequence);
    assert_eq!(header.segment, place.segment);
    assert_eq!(header.offset, place.offset);
    *place = Place {
        segment: place.segment,
        offset: place.offset + header.size(),
        sequence: place.sequence + 1,
        previous_checksum: header.checksum,
    };
}
