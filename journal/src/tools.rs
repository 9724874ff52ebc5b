//! Offline tools over a journal directory: `verify` (check every record and checkpoint, fail on
//! the first problem) and `inspect` (describe segments, records, checkpoints and what was
//! retired).
//!
//! Both are read-only: they use the plain-file storage under a shared lock, so they refuse to
//! run while a writer holds the directory, and they never truncate a torn tail (they report
//! what recovery would drop).

use std::fmt;
use std::path::Path;

use crate::error::JournalError;
use crate::journal::{load_checkpoints, load_segments, log_base, OlderImages};
use crate::record::{RecordHeader, RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE};
use crate::replay::{scan, OpenSegment, ScanBodies};
use crate::storage::Storage;
use crate::{
    parse_checkpoint_name, segment_file_name, CheckpointInfo, FileStorage, Truncation,
    BODY_SIZE_MAX_DEFAULT,
};

/// Largest body the offline tools accept: the format's limit (a u32), bounded by segment size.
const TOOL_BODY_SIZE_MAX: u64 = u32::MAX as u64;

fn open_read_only(dir: &Path) -> Result<(FileStorage, Vec<String>), JournalError> {
    let directory = dir.display().to_string();
    let mut storage = FileStorage::open_read_only(dir).map_err(|error| {
        if error.kind() == std::io::ErrorKind::WouldBlock {
            JournalError::Locked {
                directory: directory.clone(),
            }
        } else {
            JournalError::io("opening the journal directory", &directory, error)
        }
    })?;
    let names = storage
        .list()
        .map_err(|error| JournalError::io("listing", &directory, error))?;
    Ok((storage, names))
}

/// What `verify` checked.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    /// The journal directory.
    pub directory: String,
    /// Segment files checked.
    pub segments: u64,
    /// Records checked (header, body, chain).
    pub records: u64,
    /// Sequence of the first record present (above 1 once segments were retired).
    pub first_sequence: u64,
    /// Segments retired: ids `0..retired_segments` are gone.
    pub retired_segments: u64,
    /// Sequence of the last valid record.
    pub last_sequence: u64,
    /// Highest durable watermark carried by any record.
    pub watermark_max: u64,
    /// Valid checkpoints, newest first.
    pub checkpoints: Vec<CheckpointInfo>,
    /// The unacknowledged torn tail that the next open would truncate, if any.
    pub torn_tail: Option<Truncation>,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "journal {}: OK", self.directory)?;
        writeln!(f, "  segments checked:   {}", self.segments)?;
        writeln!(
            f,
            "  records checked:    {} (sequences {}..={})",
            self.records, self.first_sequence, self.last_sequence
        )?;
        writeln!(
            f,
            "  retired:            {}",
            retired_line(self.retired_segments, self.first_sequence)
        )?;
        writeln!(f, "  highest watermark:  {}", self.watermark_max)?;
        if self.checkpoints.is_empty() {
            writeln!(f, "  checkpoints:        none")?;
        }
        for checkpoint in &self.checkpoints {
            writeln!(
                f,
                "  checkpoint:         sequence {}, timestamp {}, image {} bytes, valid",
                checkpoint.sequence, checkpoint.timestamp, checkpoint.image_size
            )?;
        }
        match &self.torn_tail {
            Some(tail) => writeln!(f, "  torn tail:          the next open will have {tail}"),
            None => writeln!(f, "  torn tail:          none"),
        }
    }
}

/// "segments 0-7 retired; first kept sequence N", or "none".
fn retired_line(retired_segments: u64, first_sequence: u64) -> String {
    if retired_segments == 0 {
        return "none".to_owned();
    }
    format!(
        "segments 0-{} retired; first kept sequence {first_sequence}",
        retired_segments - 1
    )
}

/// Checks every record of the journal in `dir` (header, body, sequence, hash chain, and the
/// watermark rule for the tail) and every checkpoint, without changing anything.
///
/// # Errors
///
/// The first problem: [`JournalError::NoJournal`] when `dir` holds no segment file,
/// [`JournalError::Corruption`] naming segment, offset and sequence,
/// [`JournalError::CheckpointInvalid`], [`JournalError::Locked`] while a writer runs, I/O errors.
pub fn verify(dir: &Path) -> Result<VerifyReport, JournalError> {
    let (mut storage, names) = open_read_only(dir)?;
    let (generation, segments) = load_segments(&mut storage, &names)?;
    let checkpoints = load_checkpoints(&mut storage, &names, generation, OlderImages::Check);
    let mut report = VerifyReport {
        directory: dir.display().to_string(),
        segments: segments.len() as u64,
        records: 0,
        first_sequence: 1,
        retired_segments: 0,
        last_sequence: 0,
        watermark_max: 0,
        checkpoints: checkpoints
            .valid
            .iter()
            .map(|(header, _, _)| header.info())
            .collect(),
        torn_tail: None,
    };
    let Some(generation) = generation else {
        if let Some(rejected) = checkpoints.rejected.first() {
            return Err(JournalError::CheckpointInvalid {
                file: rejected.clone(),
                reason: "checkpoint without any segment",
            });
        }
        // Nothing to check is not a healthy journal: never report OK for it.
        return Err(JournalError::NoJournal {
            directory: report.directory,
        });
    };
    let (base, anchor) = log_base(
        &segments,
        generation,
        TOOL_BODY_SIZE_MAX,
        checkpoints.valid.first(),
    )?;
    report.first_sequence = base.sequence;
    report.retired_segments = segments[0].id;
    let wanted: Vec<u64> = report
        .checkpoints
        .iter()
        .map(|checkpoint| checkpoint.sequence)
        .collect();
    let result = scan(
        &segments,
        generation,
        TOOL_BODY_SIZE_MAX,
        base,
        anchor,
        &wanted,
        ScanBodies::All,
    )?;
    report.records = result.end.sequence - base.sequence;
    report.last_sequence = result.end.sequence - 1;
    report.watermark_max = result.watermark_max;
    report.torn_tail = result.tail;
    for (header, _, name) in &checkpoints.valid {
        let matches = (header.sequence == 0 && header.chain_checksum == 0)
            || (header.sequence + 1 == base.sequence
                && header.chain_checksum == base.previous_checksum)
            || result
                .checksums
                .contains(&(header.sequence, header.chain_checksum));
        if !matches {
            let reason = if header.sequence + 1 < base.sequence {
                "covers records that were retired: the journal no longer reaches it"
            } else {
                "does not match the journal's record at its sequence"
            };
            return Err(JournalError::CheckpointInvalid {
                file: name.clone(),
                reason,
            });
        }
    }
    if let Some(rejected) = checkpoints.rejected.first() {
        let (file, _) = rejected.split_once(':').unwrap_or((rejected, ""));
        let reason = "fails validation (see inspect)";
        return Err(JournalError::CheckpointInvalid {
            file: file.to_owned(),
            reason,
        });
    }
    Ok(report)
}

/// One segment as `inspect` sees it.
#[derive(Clone, Debug)]
pub struct SegmentSummary {
    /// Segment id.
    pub id: u64,
    /// File size in bytes.
    pub size: u64,
    /// Valid records found walking the segment from its start.
    pub records: u64,
    /// Sequence range of those records.
    pub sequences: Option<(u64, u64)>,
    /// Timestamp range of those records.
    pub timestamps: Option<(u64, u64)>,
    /// Bytes used: header block plus records.
    pub used_size: u64,
    /// Why the walk stopped, when it stopped at non-zero bytes.
    pub stopped: Option<&'static str>,
}

/// One checkpoint file as `inspect` sees it.
#[derive(Clone, Debug)]
pub struct CheckpointSummary {
    /// File name and, when invalid, why.
    pub description: String,
    /// Whether it validates.
    pub valid: bool,
}

/// The description of a journal directory.
#[derive(Clone, Debug)]
pub struct InspectReport {
    /// The journal directory.
    pub directory: String,
    /// Journal generation (None for an empty directory).
    pub generation: Option<u64>,
    /// Segments in id order.
    pub segments: Vec<SegmentSummary>,
    /// Checkpoints, newest first.
    pub checkpoints: Vec<CheckpointSummary>,
    /// Segments retired: ids `0..retired_segments` are gone.
    pub retired_segments: u64,
    /// Sequence of the first record of the first segment present, if it holds one.
    pub first_sequence: Option<u64>,
    /// The result of [`verify`] in one line.
    pub verdict: String,
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "journal {}", self.directory)?;
        match self.generation {
            Some(generation) => writeln!(f, "  generation {generation:#018x}")?,
            None => writeln!(f, "  empty (no segments)")?,
        }
        let records: u64 = self.segments.iter().map(|segment| segment.records).sum();
        writeln!(
            f,
            "  {} segment(s), {} record(s)",
            self.segments.len(),
            records
        )?;
        match (self.retired_segments, self.first_sequence) {
            (0, _) => writeln!(f, "  retired: none")?,
            (retired, Some(first)) => writeln!(f, "  retired: {}", retired_line(retired, first))?,
            (retired, None) => writeln!(f, "  retired: segments 0-{} retired", retired - 1)?,
        }
        for segment in &self.segments {
            write!(
                f,
                "  {}  {} bytes, {} used ({:.1}%), {} records",
                segment_file_name(segment.id),
                segment.size,
                segment.used_size,
                segment.used_size as f64 * 100.0 / segment.size.max(1) as f64,
                segment.records
            )?;
            if let Some((first, last)) = segment.sequences {
                write!(f, ", sequences {first}..={last}")?;
            }
            if let Some((first, last)) = segment.timestamps {
                write!(f, ", timestamps {first}..={last}")?;
            }
            if let Some(reason) = segment.stopped {
                write!(f, ", then unreadable bytes: {reason}")?;
            }
            writeln!(f)?;
        }
        if self.checkpoints.is_empty() {
            writeln!(f, "  no checkpoints")?;
        }
        for checkpoint in &self.checkpoints {
            let state = if checkpoint.valid { "valid" } else { "INVALID" };
            writeln!(f, "  {}  {state}", checkpoint.description)?;
        }
        writeln!(f, "  verify: {}", self.verdict)
    }
}

/// Describes the journal in `dir`: segments with record counts, sequence and time ranges,
/// checkpoints, and the verify verdict. Damage is described, not returned as an error.
///
/// # Errors
///
/// [`JournalError::NoJournal`] when `dir` holds neither segments nor checkpoints,
/// [`JournalError::Locked`] while a writer runs, corruption of segment headers (the walk cannot
/// start), and I/O errors.
pub fn inspect(dir: &Path) -> Result<InspectReport, JournalError> {
    let (mut storage, names) = open_read_only(dir)?;
    let (generation, segments) = load_segments(&mut storage, &names)?;
    let checkpoint_found = names
        .iter()
        .any(|name| parse_checkpoint_name(name).is_some());
    if generation.is_none() && !checkpoint_found {
        return Err(JournalError::NoJournal {
            directory: dir.display().to_string(),
        });
    }
    let loaded = load_checkpoints(&mut storage, &names, generation, OlderImages::Check);
    let mut checkpoints: Vec<CheckpointSummary> = loaded
        .valid
        .iter()
        .map(|(header, _, name)| CheckpointSummary {
            description: format!(
                "{name}: sequence {}, timestamp {}, image {} bytes",
                header.sequence, header.timestamp, header.image_size
            ),
            valid: true,
        })
        .collect();
    checkpoints.extend(loaded.rejected.iter().map(|description| CheckpointSummary {
        description: description.clone(),
        valid: false,
    }));
    let summaries = match generation {
        Some(generation) => {
            let mut summaries = Vec::with_capacity(segments.len());
            for segment in &segments {
                summaries.push(summarize(segment, generation)?);
            }
            summaries
        }
        None => Vec::new(),
    };
    drop(segments);
    drop(storage);
    let verdict = match verify(dir) {
        Ok(report) => match report.torn_tail {
            Some(tail) => format!("OK, with a torn tail: the next open will have {tail}"),
            None => "OK".to_owned(),
        },
        Err(error) => format!("FAILED: {error}"),
    };
    let retired_segments = summaries.first().map_or(0, |segment| segment.id);
    let first_sequence = summaries
        .first()
        .and_then(|segment| segment.sequences)
        .map(|(first, _)| first);
    Ok(InspectReport {
        directory: dir.display().to_string(),
        generation,
        segments: summaries,
        checkpoints,
        retired_segments,
        first_sequence,
        verdict,
    })
}

/// Walks one segment on its own: records that validate in place, in order.
fn summarize(segment: &OpenSegment, generation: u64) -> Result<SegmentSummary, JournalError> {
    let name = segment_file_name(segment.id);
    let size = segment.file.size();
    let mut summary = SegmentSummary {
        id: segment.id,
        size,
        records: 0,
        sequences: None,
        timestamps: None,
        used_size: SEGMENT_HEADER_SIZE,
        stopped: None,
    };
    let mut offset = SEGMENT_HEADER_SIZE;
    let mut header_bytes = [0u8; RECORD_HEADER_SIZE as usize];
    let mut body = Vec::new();
    let body_size_max = BODY_SIZE_MAX_DEFAULT.max(size);
    while offset + RECORD_HEADER_SIZE <= size {
        segment
            .file
            .read(offset, &mut header_bytes)
            .map_err(|error| JournalError::io("reading a record header", &name, error))?;
        if header_bytes.iter().all(|&byte| byte == 0) {
            break;
        }
        let header = match RecordHeader::decode(
            &header_bytes,
            generation,
            segment.id,
            offset,
            body_size_max,
        ) {
            Ok(header) if offset + header.size() <= size => header,
            Ok(_) => {
                summary.stopped = Some("record runs past the end of the segment");
                break;
            }
            Err(reason) => {
                summary.stopped = Some(reason);
                break;
            }
        };
        body.resize(header.body_size as usize, 0);
        segment
            .file
            .read(offset + RECORD_HEADER_SIZE, &mut body)
            .map_err(|error| JournalError::io("reading a record body", &name, error))?;
        if !header.body_matches(&body) {
            summary.stopped = Some("body checksum mismatch");
            break;
        }
        summary.records += 1;
        let first = summary
            .sequences
            .map_or(header.sequence, |(first, _)| first);
        summary.sequences = Some((first, header.sequence));
        let first = summary
            .timestamps
            .map_or(header.timestamp, |(first, _)| first);
        summary.timestamps = Some((first, header.timestamp));
        offset += header.size();
        summary.used_size = offset;
    }
    Ok(summary)
}
